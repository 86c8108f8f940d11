#!/usr/bin/env python3
"""Run the integration suite through tests/kvmhost/run so that a wedged test host costs one test.

    tests/integration/runner.py --scratch DIR [--slow] [PYTEST-ARGS...]

Nested KVM under TCG emulation now and then wedges the whole test host (tests/kvmhost kills it
after 90 s of console silence, exit 125).  This runner collects the tests here (collection needs
no KVM), runs them in a test host that reports each test's start and end as they happen
(conftest.py: $EMBER_TESTS_LOG), and when a test host is lost goes on in a fresh one with the
tests not yet run.  A test that was running when its test host wedged is run again; a second
wedge during the same test fails it.  Afterwards each failed test (up to 12) gets one more run
in a fresh test host: it counts as passed only if that run passes, and is named FLAKY.

Prints one line per test on stdout, "result<TAB>0|1<TAB>node-id<TAB>reason" (1 = failed, with
the first "E" line of the failure); everything else goes to stderr.  Exit status: 0 when every test passed, 1 otherwise.
"""
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MAX_HOSTS = 8          # test hosts per pass before giving up on the rest
MAX_RETRIES = 12       # failed tests that get a second run
WEDGED = (124, 125)    # tests/kvmhost/run: time limit, test host lost
# Debian's python3 has pytest (python3-pytest); a python3 earlier on PATH may not.
PY = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable


def say(msg):
    print("integration: " + msg, file=sys.stderr, flush=True)


def collect(select):
    cp = subprocess.run([PY, "-m", "pytest", "-p", "no:cacheprovider", "--collect-only",
                         "-q"] + select, cwd=ROOT, capture_output=True, text=True)
    ids = [line for line in cp.stdout.splitlines() if "::" in line and not line.startswith(" ")]
    if cp.returncode not in (0, 5) or not ids and cp.returncode != 5:
        sys.stderr.write(cp.stdout[-3000:] + cp.stderr[-3000:])
        return None
    return ids


def read_log(path):
    """-> (ended {node: (outcome, reason)}, last started node or None)"""
    ended, started = {}, None
    try:
        with open(path) as f:
            for line in f:
                if not line.endswith("\n"):
                    break                      # torn last line: the host died mid-write
                parts = line.rstrip("\n").split("\t")
                if parts[0] == "start" and len(parts) == 2:
                    started = parts[1]
                elif parts[0] == "end" and len(parts) == 4:
                    ended[parts[1]] = (parts[2], parts[3])
                    if started == parts[1]:
                        started = None
    except FileNotFoundError:
        pass
    return ended, started


def run_pass(ids, scratch, tag, extra):
    """Run ids through as many test hosts as it takes; -> {node: (outcome, reason)}, outcome
    "passed", "failed" or "skipped"."""
    outcome, wedges, pending = {}, {}, list(ids)
    for host in range(1, MAX_HOSTS + 1):
        if not pending:
            break
        only = os.path.join(scratch, "%s-%d.only" % (tag, host))
        log = os.path.join(scratch, "%s-%d.log" % (tag, host))
        with open(only, "w") as f:
            f.write("".join(n + "\n" for n in pending))
        env = dict(os.environ, EMBER_TESTS_ONLY=only, EMBER_TESTS_LOG=log,
                   PYTHONDONTWRITEBYTECODE="1")
        t0 = time.monotonic()
        rc = subprocess.run([os.path.join(ROOT, "tests", "kvmhost", "run"), "--scratch", scratch,
                             "--", PY, "-m", "pytest", "-p", "no:cacheprovider", "-vv",
                             "-rfE"] + extra + sorted(set(n.split("::")[0] for n in pending)),
                            cwd=ROOT, env=env, stdout=sys.stderr).returncode
        ended, started = read_log(log)
        outcome.update(ended)
        pending = [n for n in pending if n not in ended]
        if not pending:
            break
        if rc in WEDGED and started is not None:
            wedges[started] = wedges.get(started, 0) + 1
            if wedges[started] >= 2:
                say("the test host was lost twice during %s: failed" % started)
                outcome[started] = ("failed", "the test host wedged twice during this test")
                pending.remove(started)
            else:
                say("the test host was lost (exit %d) during %s after %.0f s; "
                    "%d test(s) left, going on in a fresh one" % (rc, started, time.monotonic() - t0,
                                                                   len(pending)))
            continue
        if rc in WEDGED:
            say("the test host was lost (exit %d) before a test started; trying a fresh one" % rc)
            continue
        # pytest ended on its own yet left tests unrun: an error of its own (exit 2-4).
        say("pytest exited %d with %d test(s) not run: failed" % (rc, len(pending)))
        break
    for n in pending:
        outcome.setdefault(n, ("failed", "not run (test hosts lost or pytest failed)"))
    return outcome


def main():
    args = sys.argv[1:]
    if len(args) < 2 or args[0] != "--scratch":
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    scratch, args = args[1], args[2:]
    slow = False
    if args and args[0] == "--slow":
        slow, args = True, args[1:]
    select = ([] if slow else ["-m", "not slow"]) + (args or ["tests/integration"])
    ids = collect(select)
    if ids is None:
        say("could not collect the tests (pytest --collect-only failed, output above)")
        return 1
    say("%d tests" % len(ids))
    marks = [] if slow else ["-m", "not slow"]
    outcome = run_pass(ids, scratch, "main", marks)
    failed = [n for n in ids if outcome[n][0] == "failed"]
    if failed and len(failed) <= MAX_RETRIES:
        say("running %d failed test(s) once more in a fresh test host" % len(failed))
        again = run_pass(failed, scratch, "retry", marks)
        for n in failed:
            if again[n][0] == "passed":
                say("FLAKY (failed, then passed on retry): " + n)
                outcome[n] = ("passed", "")
    bad = 0
    for n in ids:
        o, reason = outcome[n]
        if o == "skipped":
            continue
        bad += o == "failed"
        print("result\t%d\t%s\t%s" % (o == "failed", n, reason if o == "failed" else ""),
              flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
