#!/usr/bin/env python3
"""Run the integration suite through tests/kvmhost/run: in parallel lanes, and so that a wedged
test host costs one test.

    tests/integration/runner.py --scratch DIR [--slow] [PYTEST-ARGS...]

The tests are collected here (collection needs no KVM) and their files shared out among
$EMBER_TEST_LANES lanes (default: 2 on a machine with 2 or more CPUs in the emulated test host,
1 where KVM runs directly), balanced by the durations measured last time
(~/.cache/ember/test-durations.json, else by test count).  Each lane runs its files in a test
host of its own (tests/kvmhost/run decides where, and gives each test host one vCPU) that
reports each test's start and end as they happen (conftest.py: $EMBER_TESTS_LOG).

Nested KVM under TCG emulation now and then wedges a whole test host (tests/kvmhost kills it
after 90 s of console silence, exit 125).  The lane then goes on in a fresh test host with the
tests not yet run; the test that was running when it was lost runs again, and a second loss
during the same test fails it.  Afterwards each failed test (up to 12) gets one more run in a
fresh test host: it counts as passed only if that run passes, and is named FLAKY.

Prints one line per test on stdout, "result<TAB>0|1<TAB>node-id<TAB>reason" (1 = failed, with
the first "E" line of the failure); everything else goes to stderr, each pytest line prefixed
with its lane.  Exit status: 0 when every test passed, 1 otherwise.
"""
import json
import os
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MAX_HOSTS = 8          # test hosts per lane before giving up on the rest
MAX_RETRIES = 12       # failed tests that get a second run
WEDGED = (124, 125)    # tests/kvmhost/run: time limit, test host lost
# Debian's python3 has pytest (python3-pytest); a python3 earlier on PATH may not.
PY = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable
CACHE = os.path.join(os.environ.get("EMBER_CACHE_DIR") or os.path.join(
    os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "ember"),
    "test-durations.json")
say_lock = threading.Lock()


def say(msg):
    with say_lock:
        print("integration: " + msg, file=sys.stderr, flush=True)


def collect(select):
    cp = subprocess.run([PY, "-m", "pytest", "-p", "no:cacheprovider", "--collect-only",
                         "-q"] + select, cwd=ROOT, capture_output=True, text=True)
    ids = [line for line in cp.stdout.splitlines() if "::" in line and not line.startswith(" ")]
    if cp.returncode not in (0, 5) or not ids and cp.returncode != 5:
        sys.stderr.write(cp.stdout[-3000:] + cp.stderr[-3000:])
        return None
    return ids


def direct_kvm():
    """Where tests/kvmhost/run will run the tests: directly (True) or in emulated test hosts."""
    p = subprocess.run([os.path.join(ROOT, "tests", "kvmhost", "run"), "--mode"],
                       capture_output=True, text=True)
    if p.returncode or p.stdout.strip() not in ("direct", "tcg"):
        sys.stderr.write(p.stderr)
        return None
    return p.stdout.strip() == "direct"


def read_log(path):
    """-> (ended {node: (outcome, reason)}, durations {node: s}, last started node or None)"""
    ended, secs, started = {}, {}, None
    try:
        with open(path) as f:
            for line in f:
                if not line.endswith("\n"):
                    break                      # torn last line: the host died mid-write
                parts = line.rstrip("\n").split("\t")
                if parts[0] == "start" and len(parts) == 2:
                    started = parts[1]
                elif parts[0] == "end" and len(parts) == 5:
                    ended[parts[1]] = (parts[2], parts[4])
                    try:
                        secs[parts[1]] = float(parts[3])
                    except ValueError:
                        pass
                    if started == parts[1]:
                        started = None
    except FileNotFoundError:
        pass
    return ended, secs, started


def relay(stream, prefix):
    for line in iter(stream.readline, b""):
        with say_lock:
            sys.stderr.buffer.write(prefix + line)
            sys.stderr.flush()


def run_lane(ids, scratch, tag, extra, durations):
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
        p = subprocess.Popen([os.path.join(ROOT, "tests", "kvmhost", "run"), "--scratch", scratch,
                              "--", PY, "-m", "pytest", "-p", "no:cacheprovider", "-vv", "-rfE"] +
                             extra + sorted(set(n.split("::")[0] for n in pending)),
                             cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        relay(p.stdout, ("[%s] " % tag).encode())
        rc = p.wait()
        ended, secs, started = read_log(log)
        outcome.update(ended)
        durations.update(secs)
        pending = [n for n in pending if n not in ended]
        if not pending:
            break
        if rc in WEDGED and started is not None:
            wedges[started] = wedges.get(started, 0) + 1
            if wedges[started] >= 2:
                say("[%s] the test host was lost twice during %s: failed" % (tag, started))
                outcome[started] = ("failed", "the test host wedged twice during this test")
                pending.remove(started)
            else:
                say("[%s] the test host was lost (exit %d) during %s after %.0f s; %d test(s) "
                    "left, going on in a fresh one"
                    % (tag, rc, started, time.monotonic() - t0, len(pending)))
            continue
        if rc in WEDGED:
            say("[%s] the test host was lost (exit %d) before a test started; trying a fresh one"
                % (tag, rc))
            continue
        # pytest ended on its own yet left tests unrun: an error of its own (exit 2-4).
        say("[%s] pytest exited %d with %d test(s) not run: failed" % (tag, rc, len(pending)))
        break
    for n in pending:
        outcome.setdefault(n, ("failed", "not run (test hosts lost or pytest failed)"))
    return outcome


def share_out(ids, lanes, durations):
    """Whole files to lanes (module fixtures stay together), longest first, to the lightest."""
    files = {}
    for n in ids:
        files.setdefault(n.split("::")[0], []).append(n)
    known = [durations[n] for n in ids if n in durations]
    typical = sorted(known)[len(known) // 2] if known else 30.0
    cost = {f: sum(durations.get(n, typical) for n in ns) for f, ns in files.items()}
    load, out = [0.0] * lanes, [[] for _ in range(lanes)]
    for f in sorted(files, key=lambda f: -cost[f]):
        i = load.index(min(load))
        load[i] += cost[f]
        out[i].extend(files[f])
    return [ns for ns in out if ns], load


def run_lanes(groups, scratch, tag, extra, durations):
    outcome, threads = {}, []

    def one(i, ids):
        outcome.update(run_lane(ids, scratch, "%s%d" % (tag, i + 1), extra, durations))

    for i, ids in enumerate(groups):
        t = threading.Thread(target=one, args=(i, ids))
        t.start()
        threads.append(t)
        time.sleep(2)  # staggered boots
    for t in threads:
        t.join()
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
    try:
        with open(CACHE) as f:
            durations = {k: float(v) for k, v in json.load(f).items()}
    except (OSError, ValueError, AttributeError):
        durations = {}
    direct = direct_kvm()
    if direct is None:
        say("tests/kvmhost/run --mode failed (above)")
        return 1
    lanes = int(os.environ.get("EMBER_TEST_LANES") or
                (1 if direct or (os.cpu_count() or 1) < 2 else 2))
    groups, load = share_out(ids, max(1, lanes), durations)
    say("%d tests in %d lane(s)%s, about %s s each (%s)"
        % (len(ids), len(groups), "" if direct else " of emulated test hosts",
           "/".join("%.0f" % x for x in load),
           "by the durations measured last time" if durations else "30 s a test: none measured yet"))
    marks = [] if slow else ["-m", "not slow"]
    outcome = run_lanes(groups, scratch, "lane", marks, durations)
    failed = [n for n in ids if outcome[n][0] == "failed"]
    if failed and len(failed) <= MAX_RETRIES:
        say("running %d failed test(s) once more in a fresh test host" % len(failed))
        again = run_lane(failed, scratch, "retry", marks, {})
        for n in failed:
            if again[n][0] == "passed":
                say("FLAKY (failed, then passed on retry): " + n)
                outcome[n] = ("passed", "")
    try:
        os.makedirs(os.path.dirname(CACHE), exist_ok=True)
        with open(CACHE + ".tmp", "w") as f:
            json.dump(durations, f, indent=0, sort_keys=True)
        os.replace(CACHE + ".tmp", CACHE)
    except OSError as e:
        say("could not keep the test durations in %s: %s" % (CACHE, e))
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
