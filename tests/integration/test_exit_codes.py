"""Every row of README's exit-code tables, each held by one test (here, or where named).

ember run ("Exit codes"):
  0 powered off             test_tiny_guests.py::test_serial_output_and_poweroff
  0 quit                    test_qmp.py::test_quit_before_boot_exits_zero_after_shutdown
  0-255 guest status        test_tiny_guests.py::test_exit_status_device_and_boot_timer
  120 reset                 test_tiny_guests.py::test_i8042_reset_exits_120
  121 panic                 test_tiny_guests.py::test_pvpanic_exits_121
  122 KVM cannot go on      test_kvm_run_error_exits_122
  123 forbidden call        test_sandbox.py::test_forbidden_syscall_is_named_and_exits_123
  124 time limit            test_exec.py::test_timeout
  125 ember failed          test_device_setup_out_of_descriptors_exits_125,
                            test_jailed_ember_killed_exits_125_and_terminal_restored
  126 bad input             test_boot.py::test_bad_flags (and the other test_boot.py file checks)
  128+n host signal         test_stop_signals_exit_128_plus_n, test_ctrl_a_x_exits_130
ember exec ("ember exec" table):
  0-255 CMD status          test_exec.py::test_exit_status_env_workdir
  128+n CMD killed          test_exec.py::test_signal_and_not_found
  123 forbidden call        test_exec_forbidden_syscall_exits_123
  124 --timeout             test_exec.py::test_timeout
  125 ember or VM failed    test_exec_guest_reboot_exits_125
  126 usage, not executable test_exec_usage_and_not_executable_exit_126
  127 CMD not found         test_exec.py::test_signal_and_not_found
"""
import fcntl
import os
import pathlib
import pty
import resource
import select
import signal
import subprocess
import termios
import time

import pytest

from conftest import ROOT

EXIT_USAGE = 126
SELFTEST = pathlib.Path(os.environ.get("EMBER_SELFTEST_BUILD_DIR", ROOT / "build-selftest")) / "ember"


def selftest_ember():
    if not SELFTEST.exists():
        pytest.fail(f"{SELFTEST} is missing: meson setup build-selftest -Dsandbox_selftest=true "
                    "&& meson compile -C build-selftest", pytrace=False)
    return SELFTEST


def test_closed_stderr_still_gives_the_exit_code(ember):
    """A reader that went away must not turn an error into a SIGPIPE death (141): stderr is a
    pipe nobody reads, the flag is bad, the code is still 126."""
    r, w = os.pipe()
    os.close(r)
    try:
        cp = subprocess.run([str(ember), "run", "--cpus", "0", "--kernel", "/nonexistent"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=w,
                            timeout=60)
    finally:
        os.close(w)
    assert cp.returncode == EXIT_USAGE, cp.returncode


def test_device_setup_out_of_descriptors_exits_125(ember, tiny, tmp_path):
    """Running out of descriptors (a host resource) while the disks are set up is ember
    failing, 125, not a bad option (126). RLIMIT_NOFILE from 8 up puts the failure at every
    step of the set-up in turn: opening a disk, its eventfds, KVM's."""
    disk = tmp_path / "d.img"
    disk.write_bytes(b"\0" * 65536)
    cmd = [str(ember), "run", "--kernel", str(tiny("hello"))] + ["--disk", str(disk)] * 8
    seen_disk = False
    for n in range(8, 64):
        def limit(n=n):
            resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))
        cp = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=60,
                            preexec_fn=limit)
        err = cp.stderr.decode(errors="replace")
        if cp.returncode == 0:
            break  # enough descriptors from here on
        assert "Too many open files" in err, (n, cp.returncode, err)
        assert cp.returncode == 125, (n, cp.returncode, err)
        seen_disk |= "--disk" in err
    assert seen_disk  # at least one run failed opening a disk


def test_kvm_run_error_exits_122(tiny):
    """KVM_RUN itself failing (here EFAULT: guest RAM taken away from KVM by a test-build
    hook) means KVM cannot go on running the guest: 122, like an internal error."""
    env = dict(os.environ, EMBER_SELFTEST_KVM_RUN="efault")
    cp = subprocess.run([str(selftest_ember()), "run", "--kernel", str(tiny("hello"))],
                        stdin=subprocess.DEVNULL, capture_output=True, env=env, timeout=60)
    err = cp.stderr.decode(errors="replace")
    assert "selftest: guest RAM made inaccessible" in err, err
    assert cp.returncode == 122, (cp.returncode, err)
    assert "KVM_RUN: Bad address" in err, err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_stop_signals_exit_128_plus_n(ember, tiny, sig):
    p = subprocess.Popen([str(ember), "run", "--kernel", str(tiny("idle"))],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert b"tiny-guest: idle" in p.stdout.readline()
        p.send_signal(sig)
        code = p.wait(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert code == 128 + sig, (code, p.stderr.read())


def test_ctrl_a_x_exits_130(ember, tiny):
    """Ctrl-a x on the terminal counts as SIGINT."""
    master, slave = pty.openpty()
    p = on_terminal(master, slave, [ember, "run", "--kernel", tiny("idle")])
    try:
        read_until(master, b"tiny-guest: idle")
        os.write(master, b"\x01x")
        code = p.wait(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
        os.close(master)
        os.close(slave)
    assert code == 130, (code, p.stderr.read())


# ---- ember exec (Linux guest images) ----

def exec_(ember, *args, env=None):
    return subprocess.run([str(ember), "exec", *map(str, args)], stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=300, env=env)


def test_exec_forbidden_syscall_exits_123(images):
    env = dict(os.environ, EMBER_SELFTEST_FORBIDDEN="loop")
    cp = exec_(selftest_ember(), "--", "sleep", "30", env=env)
    err = cp.stderr.decode(errors="replace")
    assert cp.returncode == 123, (cp.returncode, err)
    assert "forbidden system call: execve" in err, err


def test_exec_guest_reboot_exits_125(ember, images):
    """The VM failing under the command (here the guest reboots) is 125, not a status."""
    cp = exec_(ember, "--", "reboot", "-f")
    err = cp.stderr.decode(errors="replace")
    assert cp.returncode == 125, (cp.returncode, err)
    assert "rebooted before the command finished" in err, err


def test_exec_usage_and_not_executable_exit_126(ember, images):
    cp = exec_(ember, "--timeout", "soon", "--", "true")
    assert cp.returncode == 126 and b"--timeout" in cp.stderr, cp
    cp = exec_(ember, "--", "/etc/passwd")  # found, not executable
    assert cp.returncode == 126, cp


# ---- the jail's supervisor (tiny guests: they run on any /dev/kvm) ----

def on_terminal(master_fd, slave_fd, cmd, foreground=True):
    """Start cmd on a pseudo-terminal: its own session with the terminal as its controlling
    one, in the foreground process group, or (foreground=False) in a background group as
    `cmd &` from an interactive shell would be."""
    def setup():
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        if not foreground:
            # A process group of its own that is not the terminal's foreground group.
            bg = os.fork()
            if bg:  # the session leader keeps the foreground and waits
                _, st = os.waitpid(bg, os.WUNTRACED)
                if os.WIFSTOPPED(st):  # stopped by SIGTTOU/SIGTTIN: say so with 200
                    os.kill(bg, signal.SIGKILL)
                    os._exit(200)
                os._exit(os.WEXITSTATUS(st) if os.WIFEXITED(st) else 201)
            os.setpgid(0, 0)
    return subprocess.Popen([str(c) for c in cmd], stdin=slave_fd, stdout=slave_fd,
                            stderr=subprocess.PIPE, preexec_fn=setup)


def read_until(fd, text, timeout=60):
    out = b""
    deadline = time.monotonic() + timeout
    while text not in out:
        left = deadline - time.monotonic()
        assert left > 0, out
        r, _, _ = select.select([fd], [], [], left)
        if r:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                chunk = b""
            assert chunk, out
            out += chunk
    return out


@pytest.mark.parametrize("jailed", [False, True])
def test_background_start_on_a_terminal_neither_stops_nor_goes_raw(ember, tiny, tmp_path, jailed):
    """`ember run ... &` from an interactive shell: ember is not in the terminal's foreground
    process group, so putting the terminal in raw mode (or reading it) would stop it with
    SIGTTOU (SIGTTIN). It must run to the end and leave the terminal alone; jailed too, where
    the PID namespace hides every process group outside it."""
    jail = ["--jail", tmp_path / "jail"] if jailed else []
    if jailed:
        (tmp_path / "jail").mkdir()
    master, slave = pty.openpty()
    before = termios.tcgetattr(slave)
    p = on_terminal(master, slave, [ember, "run", *jail, "--kernel", tiny("hello")],
                    foreground=False)
    try:
        code = p.wait(timeout=60)
        after = termios.tcgetattr(slave)
    finally:
        if p.poll() is None:
            p.kill()
        os.close(master)
        os.close(slave)
    err = p.stderr.read().decode(errors="replace")
    assert code != 200, "ember stopped (SIGTTOU or SIGTTIN) " + err
    assert code == 0, (code, err)
    assert after == before


def jailed_child(pid, timeout=30):
    """The jailed ember under its supervisor pid, once its vCPU thread runs."""
    deadline = time.monotonic() + timeout
    while True:
        kids = open(f"/proc/{pid}/task/{pid}/children").read().split()
        if kids and len(os.listdir(f"/proc/{kids[0]}/task")) >= 2:
            return int(kids[0])
        assert time.monotonic() < deadline, kids
        time.sleep(0.05)


def test_jailed_ember_killed_exits_125_and_terminal_restored(ember, tiny, tmp_path):
    """The jailed ember put the terminal in raw mode and was killed (SIGKILL stands in for the
    OOM killer): the supervisor says so, exits 125 (not 137, "stopped cleanly on signal 9"),
    puts the terminal back and empties the jail."""
    jail = tmp_path / "jail"
    jail.mkdir()
    master, slave = pty.openpty()
    before = termios.tcgetattr(slave)
    p = on_terminal(master, slave, [ember, "run", "--jail", jail, "--kernel", tiny("idle")])
    try:
        read_until(master, b"tiny-guest: idle")
        assert not termios.tcgetattr(slave)[3] & termios.ICANON  # the child made it raw
        os.kill(jailed_child(p.pid), signal.SIGKILL)
        code = p.wait(timeout=60)
        err = p.stderr.read().decode(errors="replace")
        after = termios.tcgetattr(slave)
    finally:
        if p.poll() is None:
            p.kill()
        os.close(master)
        os.close(slave)
    assert code == 125, (code, err)
    assert "killed by signal 9" in err, err
    assert after == before, (after, before)
    assert list(jail.iterdir()) == [], list(jail.iterdir())


def wait_state(pid, state, timeout=30):
    """Until /proc says process pid is in state (T stopped, Z zombie)."""
    deadline = time.monotonic() + timeout
    while open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != state:
        assert time.monotonic() < deadline, state
        time.sleep(0.01)


def test_supervisor_survives_relay_to_a_dead_child(ember, tiny, tmp_path):
    """SIGTERM read before the SIGCHLD of a child that just died (signalfd hands out the lower
    number first): relaying it hits a closed pipe. The supervisor must not die of SIGPIPE (141,
    jail left behind): it reports the child and cleans up."""
    jail = tmp_path / "jail"
    jail.mkdir()
    p = subprocess.Popen([str(ember), "run", "--jail", str(jail), "--kernel", str(tiny("idle"))],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    try:
        child = jailed_child(p.pid)
        os.kill(p.pid, signal.SIGSTOP)
        wait_state(p.pid, "T")  # the supervisor cannot reap the child before the SIGTERM
        os.kill(child, signal.SIGKILL)
        wait_state(child, "Z")
        while len(os.listdir(f"/proc/{child}/task")) > 1:  # its threads hold the pipe too
            time.sleep(0.01)
        os.kill(p.pid, signal.SIGTERM)  # both pending now; SIGTERM (15) comes out first
        os.kill(p.pid, signal.SIGCONT)
        code = p.wait(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    err = p.stderr.read().decode(errors="replace")
    assert code == 125, (code, err)
    assert list(jail.iterdir()) == [], list(jail.iterdir())
