"""virtio-console (hvc0) as the guest console, input and bulk output through it; virtio-rng."""
import os
import re
import select
import subprocess
import sys
import time

import pytest

SEQ_N = 40000  # `seq 1 40000` prints ~250 KB: more than ember's 64 KiB ring plus a 64 KiB pipe
LINES_N = 1000


def boot(ember, images, *args, guest=(), timeout=300, input=None, run_cmd=None):
    cmd = [ember, "run", "--kernel", images / "bzImage", "--initrd", images / "initramfs.cpio.gz",
           *args]
    if guest:
        cmd += ["--", *guest]
    return run_cmd(cmd, timeout=timeout, input=input)


def lines(r):
    return [l.strip() for l in r.out.splitlines()]


def test_hvc0_is_the_console(ember, images, run_cmd):
    r = boot(ember, images, "--console", "virtio",
             guest=["sh", "-c", "echo on-hvc0; cat /sys/class/tty/console/active"],
             run_cmd=run_cmd)
    assert r.code == 0, r
    out = lines(r)
    assert "on-hvc0" in out, r
    assert "hvc0" in out, r
    assert "EMBER-EXIT=0" in out, r


def test_hvc0_input(ember, images, run_cmd):
    r = boot(ember, images, "--console", "virtio",
             guest=["sh", "-c", "read line; echo got-$line"], input=b"hello\n", run_cmd=run_cmd)
    assert r.code == 0, r
    assert "got-hello" in lines(r), r


def test_hvc0_input_waits_for_the_reader(ember, images, run_cmd):
    # The input is there from the start; the guest reads it only after a while. Nothing is lost.
    r = boot(ember, images, "--console", "virtio",
             guest=["sh", "-c", "sleep 2; read a; read b; echo got-$a-$b"],
             input=b"one\ntwo\n", run_cmd=run_cmd)
    assert r.code == 0, r
    assert "got-one-two" in lines(r), r


def test_hwrng(ember, images, run_cmd):
    r = boot(ember, images, guest=[
        "sh", "-c",
        "dd if=/dev/hwrng bs=64 count=4 2>/dev/null | wc -c; cat /sys/class/misc/hw_random/rng_current"],
        run_cmd=run_cmd)
    assert r.code == 0, r
    out = lines(r)
    assert "256" in out, r
    assert "virtio_rng.0" in out, r


def test_no_rng(ember, images, run_cmd):
    r = boot(ember, images, "--no-rng",
             guest=["sh", "-c", "cat /sys/class/misc/hw_random/rng_current"], run_cmd=run_cmd)
    assert r.code == 0, r
    assert "virtio_rng.0" not in r.out, r


def test_line_output_in_order(ember, images, run_cmd):
    # One write per line: thousands of small transmit chains, each a round trip to ember.
    r = boot(ember, images, "--console", "virtio", guest=["seq", "1", str(LINES_N)],
             run_cmd=run_cmd)
    assert r.code == 0, r
    out = r.out.replace("\r\n", "\n")
    assert "".join(f"{i}\n" for i in range(1, LINES_N + 1)) in out, r


# Slow in the emulated test host (hvc0 hands ember small chunks, each a round trip that costs
# milliseconds under nested emulation): run with EMBER_SLOW_TESTS=1 tests/run.
@pytest.mark.slow
def test_bulk_output_arrives_complete(ember, images, run_cmd):
    # About 250 KB in page-sized writes (no \n -> \r\n on the tty, so cat's writes stay whole).
    # The guest times its own output (/proc/uptime, 10 ms resolution).
    script = (f"seq 1 {SEQ_N} > /tmp/f; stty -onlcr; a=$(cut -d' ' -f1 /proc/uptime); cat /tmp/f; "
              f"b=$(cut -d' ' -f1 /proc/uptime); echo TIME $a $b")
    r = boot(ember, images, "--console", "virtio", guest=["sh", "-c", script], timeout=600,
             run_cmd=run_cmd)
    assert r.code == 0, r
    expected = "".join(f"{i}\n" for i in range(1, SEQ_N + 1))
    assert expected in r.out, f"{len(r.out)} bytes of output\n{r!r}"
    m = re.search(r"^TIME ([\d.]+) ([\d.]+)$", r.out, re.M)
    assert m, r
    secs = max(float(m.group(2)) - float(m.group(1)), 0.01)
    print(f"\nhvc0: {len(expected)} bytes in {secs:.2f} s guest time = "
          f"{len(expected) / secs / 1e6:.2f} MB/s", file=sys.stderr)
    assert "EMBER-EXIT=0" in lines(r), r


def read_all(proc, deadline, stop_at=None):
    """Read proc's stdout until EOF (or until stop_at shows up); returns the bytes read."""
    out = b""
    fd = proc.stdout.fileno()
    while time.monotonic() < deadline:
        if stop_at is not None and stop_at in out:
            return out
        ready, _, _ = select.select([fd], [], [], 1)
        if not ready:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            return out
        out += chunk
    raise AssertionError(f"timed out with {len(out)} bytes read")


@pytest.mark.slow
def test_stalled_reader_loses_nothing(ember, images):
    # The reader stops for a while once the guest starts writing ~250 KB: ember's ring and the
    # pipe fill up, the guest waits, and everything arrives once the reader goes on.
    script = f"seq 1 {SEQ_N} > /tmp/f; stty -onlcr; echo START; cat /tmp/f"
    cmd = [str(ember), "run", "--console", "virtio", "--kernel", str(images / "bzImage"),
           "--initrd", str(images / "initramfs.cpio.gz"), "--", "sh", "-c", script]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 600
        head = read_all(proc, deadline, stop_at=b"START\n")
        time.sleep(5)
        out = head + read_all(proc, deadline)
        code = proc.wait(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    err = proc.stderr.read().decode(errors="replace")
    expected = "".join(f"{i}\n" for i in range(1, SEQ_N + 1)).encode()
    assert code == 0, err
    assert expected in out, (len(out), out[-2000:], err)
    assert b"EMBER-EXIT=0" in out, (out[-2000:], err)
