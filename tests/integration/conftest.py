"""Fixtures for ember's integration tests: paths to ember, guest images, tiny guests, scratch.

These tests need real KVM that can run standard guests; tests/run runs them through
tests/kvmhost/run, which provides it (directly, or inside the emulated test host).
"""
import os
import pathlib
import subprocess
import tempfile
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("EMBER_BUILD_DIR", ROOT / "build"))
IMAGES = pathlib.Path(os.environ.get("EMBER_IMAGES_DIR", ROOT / "guest-images" / "out"))


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: minutes in the emulated test host; "
                            "tests/run runs them only with EMBER_SLOW_TESTS=1")


# tests/integration/runner.py drives the suite through test hosts that may wedge: it names the
# tests to run in $EMBER_TESTS_ONLY (one node id per line) and reads each test's start and end
# from $EMBER_TESTS_LOG as they happen, so a lost test host loses only the test it was running.
def pytest_collection_modifyitems(config, items):
    only = os.environ.get("EMBER_TESTS_ONLY")
    if not only:
        return
    with open(only) as f:
        wanted = set(line.rstrip("\n") for line in f if line.strip())
    keep = [it for it in items if it.nodeid in wanted]
    drop = [it for it in items if it.nodeid not in wanted]
    if drop:
        config.hook.pytest_deselected(items=drop)
    items[:] = keep


_outcome = {}
_reason = {}
_started = {}


def _log_line(line):
    path = os.environ.get("EMBER_TESTS_LOG")
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())


def pytest_runtest_logstart(nodeid, location):
    _started[nodeid] = time.monotonic()
    _log_line("start\t" + nodeid)


def pytest_runtest_logreport(report):
    prev = _outcome.get(report.nodeid)
    if report.failed:
        _outcome[report.nodeid] = "failed"
        # The first "E ..." line of the failure, for the summary at the end of tests/run.
        lines = [ln[1:].strip() for ln in report.longreprtext.splitlines() if ln.startswith("E ")]
        _reason.setdefault(report.nodeid, (lines[0] if lines else report.when + " failed")[:160])
    elif prev is None or (prev == "passed" and report.skipped):
        _outcome[report.nodeid] = "skipped" if report.skipped else "passed"


def pytest_runtest_logfinish(nodeid, location):
    reason = _reason.pop(nodeid, "").replace("\t", " ")
    secs = time.monotonic() - _started.pop(nodeid, time.monotonic())
    _log_line("end\t%s\t%s\t%.1f\t%s" % (nodeid, _outcome.pop(nodeid, "failed"), secs, reason))


def _require(path: pathlib.Path, how: str) -> pathlib.Path:
    if not path.exists():
        pytest.fail(f"{path} is missing: {how}", pytrace=False)
    return path


@pytest.fixture(scope="session")
def ember():
    return _require(BUILD / "ember", "build ember first (meson setup build && meson compile -C build)")


@pytest.fixture(scope="session")
def images():
    for name in ("bzImage", "vmlinux", "initramfs.cpio.gz", "rootfs.ext4"):
        _require(IMAGES / name, "run guest-images/build first")
    return IMAGES


@pytest.fixture(scope="session")
def tiny():
    d = BUILD / "tests" / "guests"
    return lambda name: _require(d / f"{name}.elf", "build ember first (meson compile -C build)")


@pytest.fixture
def scratch():
    """A writable directory that survives the test host (under $EMBER_SCRATCH when set)."""
    base = os.environ.get("EMBER_SCRATCH")
    d = tempfile.mkdtemp(prefix="ember-test-", dir=base)
    return pathlib.Path(d)


class Result:
    def __init__(self, cp: subprocess.CompletedProcess):
        self.code = cp.returncode
        self.out = cp.stdout.decode(errors="replace")
        self.err = cp.stderr.decode(errors="replace")

    def __repr__(self):
        return f"exit={self.code}\n--- stdout ---\n{self.out[-4000:]}\n--- stderr ---\n{self.err[-4000:]}"


def run(cmd, timeout=120, input=None):
    """Run a command, capture stdout/stderr apart; a hang is a test failure, not a hang: on
    timeout the command is killed and the Result has code "timeout" and the output so far."""
    args = [str(c) for c in cmd]
    try:
        cp = subprocess.run(args, stdin=subprocess.DEVNULL if input is None else None,
                            input=input, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        cp = subprocess.CompletedProcess(args, f"timeout (killed after {timeout} s)",
                                         e.stdout or b"", e.stderr or b"")
    return Result(cp)


@pytest.fixture(scope="session")
def run_cmd():
    return run
