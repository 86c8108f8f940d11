"""Tiny guests booted by ember directly: serial output, boot marker, exit status, reset, panic."""
import re


def test_serial_output_and_poweroff(ember, tiny, run_cmd):
    r = run_cmd([ember, "run", "--kernel", tiny("hello")])
    assert r.code == 0, r
    assert "tiny-guest: hello from ember" in r.out, r
    assert "tiny-guest: 6 * 7 = 42" in r.out, r


def test_exit_status_device_and_boot_timer(ember, tiny, run_cmd):
    r = run_cmd([ember, "run", "--boot-timer", "--kernel", tiny("status")])
    assert r.code == 42, r
    assert "boot marker written" in r.out, r
    m = re.search(r"boot-timer: guest userspace started ([0-9.]+) ms after ember started "
                  r"\(([0-9.]+) ms ember CPU time\)", r.err)
    assert m, r
    assert float(m.group(1)) > 0 and float(m.group(2)) > 0, r
    first = re.search(r"boot-timer: first KVM_RUN ([0-9.]+) ms after ember started "
                      r"\(([0-9.]+) ms ember CPU time\)", r.err)
    assert first, r
    assert 0 < float(first.group(1)) <= float(m.group(1)), r


def test_boot_timer_is_silent_without_flag(ember, tiny, run_cmd):
    r = run_cmd([ember, "run", "--kernel", tiny("status")])
    assert r.code == 42, r
    assert "boot-timer" not in r.err, r


def test_i8042_reset_exits_120(ember, tiny, run_cmd):
    r = run_cmd([ember, "run", "--kernel", tiny("reset")])
    assert r.code == 120, r
    assert "resetting through the i8042" in r.out, r
    assert "still running after reset" not in r.out, r


def test_pvpanic_exits_121(ember, tiny, run_cmd):
    r = run_cmd([ember, "run", "--kernel", tiny("panic")])
    assert r.code == 121, r
    assert "pvpanic reports 0x3" in r.out, r
    assert "panicked" in r.err, r


def test_on_reboot_restart_boots_again(ember, tiny, run_cmd):
    """With --on-reboot restart the guest boots again after each reset; SIGTERM ends it."""
    import signal
    import subprocess
    import time
    p = subprocess.Popen([str(ember), "run", "--on-reboot", "restart", "--kernel", str(tiny("reset"))],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    seen = b""
    import os
    os.set_blocking(p.stdout.fileno(), False)
    while time.time() < deadline and seen.count(b"resetting through the i8042") < 3:
        chunk = p.stdout.read()
        if chunk:
            seen += chunk
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=30)
    seen += out or b""
    assert seen.count(b"resetting through the i8042") >= 3, (seen, err)
    assert p.returncode == 128 + signal.SIGTERM, (p.returncode, err)
