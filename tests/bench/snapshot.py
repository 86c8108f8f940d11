#!/usr/bin/env python3
"""Snapshot benchmarks (tests/bench/suite.py rows restore, exec-snapshot, clones):
  * restore -> guest running: `ember run --restore` of a ticking 128 MiB guest until its first
    tick: wall, and host CPU until then of ember's main thread (reading the snapshot, building
    the VM, restoring its state) and of the whole process (with the vCPU thread, which also
    faults guest memory in from the snapshot and, under nested emulation, runs the guest);
    and ember's user-space instructions from exec to the vCPU thread (callgrind);
  * `ember exec -- true` restored from its cached snapshot against `crun run` of a busybox
    bundle (the same `true`), interleaved;
  * ten clones of an idle 128 MiB guest at once: host memory in all (PSS, shared pages counted
    once) against two freshly booted VMs.
Needs KVM that runs standard guests (tests/kvmhost/run), and crun for the exec row.
"""
import os
import pathlib
import select
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "integration"))
import boot  # noqa: E402
from qmp_client import QMP, wait_for_socket  # noqa: E402

EMBER = str(boot.BUILD / "ember")
TICK = "while :; do echo tick; sleep 0.05; done"
IDLE = "while :; do sleep 2; echo beat; done"


def _wait_line(p, word, timeout):
    """Read p's stdout until a line holding word; the time it came, or None."""
    buf, deadline = b"", time.monotonic() + timeout
    while time.monotonic() < deadline:
        r, _, _ = select.select([p.stdout], [], [], 1)
        if not r:
            continue
        chunk = os.read(p.stdout.fileno(), 65536)
        if not chunk:
            return None
        buf += chunk
        if word in buf:
            return time.monotonic()
    return None


def _cpu_s(pid, tasks=None):
    """On-CPU time so far (schedstat, nanoseconds) of pid's threads, or of those named."""
    total = 0
    for t in tasks or os.listdir(f"/proc/{pid}/task"):
        try:
            total += int(open(f"/proc/{pid}/task/{t}/schedstat").read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total / 1e9


def _pss_kib(pid):
    for line in open(f"/proc/{pid}/smaps_rollup"):
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def _kill(p):
    if p.poll() is None:
        p.kill()
    p.wait()


def save(dirname, script, mem=128, settle_word=b"tick", settle=1):
    """Boot a guest running script, wait for settle lines of settle_word, snapshot it into
    dirname. Returns the PSS (KiB) the booted VM had then."""
    sock = dirname + ".sock"
    p = subprocess.Popen([EMBER, "run", "--api-sock", sock, "--memory", f"{mem}M", "--console",
                          "virtio", "--kernel", str(boot.IMAGES / "bzImage"), "--initrd",
                          str(boot.IMAGES / "initramfs.cpio.gz"), "--", "sh", "-c", script],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL)
    try:
        wait_for_socket(sock, p)
        with QMP(sock) as q:
            for _ in range(settle):
                if _wait_line(p, settle_word, 300) is None:
                    raise RuntimeError("the guest to snapshot did not come up")
            pss = _pss_kib(p.pid)
            q.cmd("stop")
            q.cmd("snapshot-save", {"dir": dirname}, timeout=300)
            q.cmd("quit")
        p.wait(60)
        return pss
    finally:
        _kill(p)


def restore_row(n):
    """n restores of a ticking guest: wall and ember CPU from exec to the first tick."""
    tmp = tempfile.mkdtemp()
    try:
        snap = os.path.join(tmp, "tick")
        try:
            save(snap, TICK)
        except (RuntimeError, OSError, subprocess.SubprocessError) as e:
            return {"ember": [{"error": f"saving the snapshot: {e}"}]}
        res = []
        for _ in range(n):
            t0 = time.monotonic()
            p = subprocess.Popen([EMBER, "run", "--restore", snap], stdin=subprocess.DEVNULL,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            try:
                t = _wait_line(p, b"tick", 120)
                cpu = _cpu_s(p.pid) if t else None
                main = _cpu_s(p.pid, [str(p.pid)]) if t else None
            finally:
                _kill(p)
            res.append({"wall_ms": (t - t0) * 1e3 if t else None,
                        "cpu_ms": cpu * 1e3 if cpu is not None else None,
                        "main_cpu_ms": main * 1e3 if main is not None else None,
                        "error": "" if t else p.stderr.read().decode(errors="replace")[-300:]})
        if res:  # deterministic: once is enough
            res[0]["instructions"] = boot.instructions_to_vcpu([EMBER, "run", "--restore", snap])
        return {"ember": res}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _bundle(root):
    """A busybox bundle for crun: /bin/true and sh from busybox-static, crun's default spec."""
    busybox = shutil.which("busybox") or "/bin/busybox"
    rootfs = os.path.join(root, "rootfs", "bin")
    os.makedirs(rootfs)
    shutil.copy(busybox, os.path.join(rootfs, "busybox"))
    for applet in ("sh", "true"):
        os.symlink("busybox", os.path.join(rootfs, applet))
    subprocess.run(["crun", "spec"], cwd=root, check=True, capture_output=True)
    spec = pathlib.Path(root, "config.json")
    text = spec.read_text().replace('"terminal": true', '"terminal": false')
    spec.write_text(text.replace('"sh"\n', '"true"\n'))


def exec_snapshot_row(n):
    """`ember exec -- true` restored from its snapshot vs `crun run` of `true`, interleaved."""
    tmp = tempfile.mkdtemp()
    env = dict(os.environ, EMBER_CACHE_DIR=os.path.join(tmp, "cache"))
    out = {"ember": [], "qemu": []}
    try:
        if not shutil.which("crun"):
            return {"ember": [], "qemu": [{"error": "crun is not installed (apt-get install crun)"}]}
        _bundle(os.path.join(tmp, "bundle"))
        first = subprocess.run([EMBER, "exec", "--", "true"], env=env, capture_output=True,
                               stdin=subprocess.DEVNULL, timeout=600)  # boots, saves
        if first.returncode:
            err = first.stderr.decode(errors="replace")[-300:]
            return {"ember": [{"error": f"first exec: {err}"}], "qemu": []}
        for i in range(n):
            for side, cmd, kw in (("ember", [EMBER, "exec", "--", "true"], {"env": env}),
                                  ("qemu", ["crun", "run", "--bundle", os.path.join(tmp, "bundle"),
                                            f"ember-bench-{os.getpid()}-{i}"], {})):
                t0 = time.monotonic()
                p = subprocess.run(cmd, capture_output=True, stdin=subprocess.DEVNULL,
                                   timeout=300, **kw)
                wall = time.monotonic() - t0
                out[side].append({"exit": p.returncode, "wall_s": wall if p.returncode == 0 else None,
                                  "error": "" if p.returncode == 0 else
                                  p.stderr.decode(errors="replace")[-300:]})
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def clones_row(count=10):
    """count clones of an idle 128 MiB guest at once against two fresh VMs (PSS, MiB)."""
    tmp = tempfile.mkdtemp()
    procs = []
    try:
        snap = os.path.join(tmp, "idle")
        try:
            fresh = save(snap, IDLE, settle_word=b"beat", settle=2)
        except (RuntimeError, OSError, subprocess.SubprocessError) as e:
            return {"ember": [{"error": f"saving the snapshot: {e}"}], "qemu": []}
        for _ in range(count):
            procs.append(subprocess.Popen([EMBER, "run", "--restore", snap],
                                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                          stderr=subprocess.DEVNULL, start_new_session=True))
        running = sum(_wait_line(p, b"beat", 300) is not None for p in procs)
        time.sleep(3)
        pss = [_pss_kib(p.pid) for p in procs if p.poll() is None]
        if running < count or len(pss) < count:
            return {"ember": [{"error": f"{running}/{count} clones ran"}], "qemu": []}
        total = sum(pss) / 1024
        return {"ember": [{"total_mib": total, "per_clone_mib": total / count}],
                "qemu": [{"total_mib": 2 * fresh / 1024}]}
    finally:
        boot.kill_groups(procs)
        shutil.rmtree(tmp, ignore_errors=True)
