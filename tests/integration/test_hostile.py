"""Hostile tiny guests: every virtio rule broken from the first instruction; ember stays up,
marks only the offending device NEEDS_RESET, answers with the right status, exits with the
guest's status; under ASan/UBSan no invalid host access. Floods must not starve the disk."""
import os
import pathlib
import re
import time

import pytest

from conftest import ROOT, run
from qmp_client import QMP, wait_for_socket
from test_net import Guest

ASAN_EMBER = pathlib.Path(os.environ.get("EMBER_ASAN_BUILD_DIR", ROOT / "build-asan")) / "ember"
SANITIZER_ERRORS = ("ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer")
MIN_VIRTIO_CASES = 77  # every case hostile_virtio.c has
FLOOD_BYTES = 2 << 20  # hostile_flood.c


def disks(scratch):
    rw, ro = scratch / "rw.img", scratch / "ro.img"
    for p in (rw, ro):
        with open(p, "wb") as f:
            f.truncate(1 << 20)  # 2048 sectors: the guests know the size
    return ["--disk", str(rw), "--disk", f"{ro},ro"]


def cases(r):
    found = re.findall(r"^case (\S+): (ok|FAIL.*)$", r.out.replace("\r", ""), re.M)
    failed = [f"{n}: {s}" for n, s in found if s != "ok"]
    return [n for n, _ in found], failed


def hostile_virtio(ember, tiny, scratch, *extra):
    return run([ember, "run", "--memory", "64M", "--kernel", tiny("hostile_virtio"),
                *disks(scratch), "--net", "user", *extra], timeout=600)


def test_hostile_virtio(ember, tiny, scratch):
    r = hostile_virtio(ember, tiny, scratch)
    names, failed = cases(r)
    assert not failed, (failed, r)
    assert len(names) >= MIN_VIRTIO_CASES, r
    assert f"cases: {len(names)} run, 0 failed" in r.out, r
    assert r.code == 0, r  # ember stayed up and passed on the guest's status
    # Every broken-chain case marked the rng NEEDS_RESET: ember said so, and only for it.
    assert "virtio-rng: bad request chain; device needs a reset" in r.err, r
    assert "virtio-blk: request without a writable status byte; device needs a reset" in r.err, r
    assert "virtio-net" not in r.err, r  # malformed frames are dropped, the device carries on


def test_hostile_virtio_under_sanitizers(tiny, scratch):
    if not ASAN_EMBER.exists():
        pytest.skip(f"{ASAN_EMBER} is missing (meson setup build-asan -Db_sanitize=address,undefined)")
    # --seccomp off: this run is about the devices. Under the sanitizers the filters get in
    # the way: the runtime calls sigaltstack when a thread ends (not allowed), and LeakSanitizer
    # counts the filter contexts, which stay allocated for the process's life, as leaks.
    r = hostile_virtio(ASAN_EMBER, tiny, scratch, "--seccomp", "off")
    names, failed = cases(r)
    assert not failed, (failed, r)
    assert len(names) >= MIN_VIRTIO_CASES, r
    assert r.code == 0, r
    assert not any(e in r.err for e in SANITIZER_ERRORS), r


def test_console_and_notify_floods_do_not_starve_the_disk(ember, tiny, scratch):
    r = run([ember, "run", "--memory", "64M", "--console", "virtio", "--kernel",
             tiny("hostile_flood"), *disks(scratch)[:2]], timeout=600)
    names, failed = cases(r)
    assert not failed, (failed, r)
    assert set(names) >= {"console-tx-writable-only", "notify-flood", "console-flood"}, r
    assert r.code == 0, r
    # Every byte of the flood came out, in one piece.
    flood = r.out.split("FLOOD-BEGIN\n", 1)[1].split("\nFLOOD-END", 1)[0]
    assert flood == "x" * FLOOD_BYTES, (len(flood), r)
    m = re.search(r"flood: (\d+) bytes of output, (\d+) disk reads", r.out)
    assert m and int(m.group(2)) > 0, r


def test_control_socket_answers_during_the_floods(ember, tiny, scratch, tmp_path):
    """The same floods with --api-sock: query-status keeps answering from the same event loop."""
    sock = str(tmp_path / "api.sock")  # not in scratch: no unix sockets on its 9p share
    g = Guest([ember, "run", "--api-sock", sock, "--memory", "64M", "--console", "virtio",
               "--kernel", tiny("hostile_flood"), *disks(scratch)[:2]])
    try:
        wait_for_socket(sock, g.proc)
        g.wait_for(r"hostile_flood: hvc0 up", timeout=300)
        latency, seen = [], 0
        with QMP(sock) as q:
            flooding = True
            while flooding and g.proc.poll() is None:
                t = time.monotonic()
                try:
                    status = q.cmd("query-status", timeout=60)["status"]
                except (ConnectionError, EOFError):
                    break  # the guest finished (and ember with it) between check and answer
                assert status == "running", g
                latency.append(time.monotonic() - t)
                lines = g.out[seen:]
                seen += len(lines)
                flooding = not any(line.startswith("FLOOD-END") for line in lines)
        assert g.finish(600) == 0, g  # also reads the rest of the output
    finally:
        if g.proc.poll() is None:
            g.proc.kill()
    assert any(line.startswith("FLOOD-END") for line in g.out), g
    # Answers kept coming while the guest flooded (notifications, then hvc0 output).
    assert len(latency) >= 3 and max(latency) < 10, (len(latency), max(latency, default=0), g)
    print(f"query-status during the floods: {len(latency)} answers, "
          f"max {max(latency) * 1000:.1f} ms")
