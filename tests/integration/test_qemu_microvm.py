"""The guest images under Debian's QEMU microvm machine: our side-by-side peer.

Checks the init contract with a VMM that is not ember: EMBER-INIT-READY, a command's output
and its EMBER-EXIT status, and the interactive shell when no command is given.
"""
import os
import select
import shutil
import subprocess
import time

import pytest

QEMU = shutil.which("qemu-system-x86_64") or "/usr/bin/qemu-system-x86_64"
APPEND = "console=ttyS0 reboot=k panic=1 quiet"


def qemu_cmd(images, append, extra=()):
    return [QEMU, "-M", "microvm,isa-serial=on,rtc=off", "-accel", "kvm", "-cpu", "host",
            "-m", "256", "-smp", "1", "-nodefaults", "-no-user-config", "-nographic",
            "-no-reboot", "-serial", "stdio",
            "-kernel", images / "bzImage", "-initrd", images / "initramfs.cpio.gz",
            "-append", append, *extra]


def test_qemu_microvm_runs_command(images, run_cmd):
    r = run_cmd(qemu_cmd(images, APPEND + ' -- sh -c "echo hello-from-qemu; exit 3"'),
                timeout=300)
    assert r.code == 0, r
    lines = [l.strip() for l in r.out.splitlines()]
    assert "EMBER-INIT-READY" in lines, r
    assert "hello-from-qemu" in lines, r
    assert "EMBER-EXIT=3" in lines, r
    assert lines.index("EMBER-INIT-READY") < lines.index("hello-from-qemu") < lines.index("EMBER-EXIT=3"), r


def test_qemu_microvm_interactive_shell(images):
    # QEMU's UART drops what arrives before the guest driver sets it up: type at the prompt.
    p = subprocess.Popen([str(c) for c in qemu_cmd(images, APPEND)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = b""
    deadline = time.monotonic() + 300
    try:
        while b"/ # " not in out and time.monotonic() < deadline:
            if select.select([p.stdout], [], [], 1)[0]:
                chunk = os.read(p.stdout.fileno(), 4096)
                if not chunk:
                    break
                out += chunk
        assert b"/ # " in out, out
        rest, err = p.communicate(b"echo shell-says-$((6*7))\nexit\n",
                                  timeout=max(1, deadline - time.monotonic()))
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    out = (out + rest).decode(errors="replace")
    assert p.returncode == 0, (out, err)
    assert "EMBER-INIT-READY" in out, out
    assert "shell-says-42" in out, out
