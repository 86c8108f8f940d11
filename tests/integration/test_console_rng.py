"""virtio-console (hvc0) as the guest console, input and bulk output through it; virtio-rng."""
import re
import sys

import pytest

SEQ_N = 150000  # `seq 1 150000` prints about 0.9 MiB


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


@pytest.mark.parametrize("console", ["virtio", "serial"])
def test_bulk_output_arrives_complete(ember, images, run_cmd, console):
    # The guest times its own output (/proc/uptime, 10 ms resolution); every line must arrive.
    script = (f"a=$(cut -d' ' -f1 /proc/uptime); seq 1 {SEQ_N}; b=$(cut -d' ' -f1 /proc/uptime); "
              f"echo TIME $a $b")
    r = boot(ember, images, "--console", console, guest=["sh", "-c", script], timeout=900,
             run_cmd=run_cmd)
    assert r.code == 0, r
    out = r.out.replace("\r\n", "\n")
    expected = "".join(f"{i}\n" for i in range(1, SEQ_N + 1))
    assert expected in out, f"{len(out)} bytes of output\n{r!r}"
    m = re.search(r"^TIME ([\d.]+) ([\d.]+)$", out, re.M)
    assert m, r
    secs = max(float(m.group(2)) - float(m.group(1)), 0.01)
    mbs = len(expected) / secs / 1e6
    print(f"\n{console}: {len(expected)} bytes in {secs:.2f} s guest time = {mbs:.2f} MB/s",
          file=sys.stderr)
    assert "EMBER-EXIT=0" in lines(r), r
