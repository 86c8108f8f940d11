"""The OCI row of tests/bench/suite.py: `podman run --rm --runtime ember-oci IMG true` against
`ember exec -- true` and `podman run --rm --runtime crun IMG true`, interleaved round by round in
the same test host, plus `ember exec --no-snapshot -- true` (booting) and ember-oci's own steps
without an engine (create until the guest agent is ready, start, the root disk: mkfs.ext4 -d
for a tree never seen, a copy of the cached disk after that; it is made while the guest boots
or is restored).

Both `ember exec` and ember-oci restore their guest from a "ready" snapshot after the first run.
The engine's own cost (podman, conmon, storage) is what podman + crun takes; what the OCI path
adds to ember exec is podman + ember-oci less that, over ember exec (target: at most 1.10)."""
import ctypes
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "integration"))
from oci_env import EMBER_OCI, Podman, bundle, busybox_rootfs, tmpdir  # noqa: E402

IMAGE = "localhost/ember-bench-bb:1"


def timed(cmd, env=None):
    """Wall seconds of cmd, its exit code and the end of its stderr (a file, not a pipe: a
    container keeps create's stdout and stderr, and a pipe read to its end would wait for it)."""
    with tempfile.TemporaryFile() as err:
        t0 = time.monotonic()
        cp = subprocess.run([str(c) for c in cmd], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=err, env=env, timeout=600)
        wall = time.monotonic() - t0
        err.seek(0)
        return wall, cp.returncode, err.read().decode(errors="replace")[-300:]


def direct(base, b, i):
    """ember-oci without an engine, under a subreaper (as conmon is): create (until the agent
    is ready), start, the VMM's end; the mkfs time from its debug log."""
    libc = ctypes.CDLL(None)
    libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    try:
        return direct_steps(base, b, i)
    finally:
        libc.prctl(36, 0, 0, 0, 0)
        try:
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
        except ChildProcessError:
            pass


def direct_steps(base, b, i):
    st, log = base / f"state{i}", base / f"log{i}"
    rt = [EMBER_OCI, "--root", st, "--debug", "--log", log]
    create, code, err = timed(rt + ["create", "--bundle", b, "--pid-file", b / "pid", "c"])
    if code:
        return {"error": f"create: {err}"}
    pid = int((b / "pid").read_text())
    start, code, err = timed(rt + ["start", "c"])
    os.waitpid(pid, 0)
    timed(rt + ["delete", "c"])
    m = re.search(r"(?:made|copied from the cache \(\w+\)) in (\d+) ms", log.read_text())
    return {"create_s": create, "start_s": start, "disk_ms": int(m.group(1)) if m else None,
            "mkfs_ms": mkfs_ms(base, b), **({"error": f"start: {err}"} if code else {})}


def mkfs_ms(base, b):
    """What a tree never seen before costs: ember-oci's mkfs.ext4 -d of the bundle's rootfs."""
    img = base / "mkfs.img"
    img.write_bytes(b"")
    os.truncate(img, 1 << 30)
    t0 = time.monotonic()
    cp = subprocess.run(["mkfs.ext4", "-q", "-F", "-t", "ext4", "-O", "^has_journal", "-m", "0",
                         "-N", "65536", "-L", "ember-root", "-d", str(b / ".." / "rootfs"),
                         str(img), "1048576k"], capture_output=True)
    ms = (time.monotonic() - t0) * 1000
    img.unlink()
    return ms if cp.returncode == 0 else None


def oci_row(n):
    ember = str(HERE.parents[1] / "build" / "ember")
    if not EMBER_OCI.exists() or not subprocess.run(["which", "podman", "crun"],
                                                    capture_output=True).returncode == 0:
        return {"ember": [{"error": "ember-oci, podman or crun missing (tests/deps)"}]}
    base = tmpdir("bench-oci-")
    pod = Podman(base)
    root = busybox_rootfs(base / "rootfs")
    tar = subprocess.run(["tar", "-C", str(root), "-cf", "-", "."], capture_output=True,
                         check=True).stdout
    r = pod.run("crun", "import", "-", IMAGE, input=tar)
    if r.code != 0:
        return {"ember": [{"error": f"podman import: {r.err[-300:]}"}]}
    b = bundle(base / "bundle", root, ["/bin/true"])
    podman = {rt: pod.cmd(rt, "run", "--rm", "--network", "none", IMAGE, "true")
              for rt in (str(EMBER_OCI), "crun")}
    for cmd in podman.values():  # first runs set storage and the snapshots up: not counted
        timed(cmd, pod.env)
    timed([ember, "exec", "--", "true"])
    direct(base, b, "warm")
    out = []
    for i in range(n):
        x = {}
        x["exec_s"], c1, e1 = timed([ember, "exec", "--", "true"])
        x["exec_boot_s"], c0, e0 = timed([ember, "exec", "--no-snapshot", "--", "true"])
        x["podman_ember_s"], c2, e2 = timed(podman[str(EMBER_OCI)], pod.env)
        x["podman_crun_s"], c3, e3 = timed(podman["crun"], pod.env)
        x.update(direct(base, b, i))
        bad = [f"{what} exit {c}: {e}" for what, c, e in (("exec", c1, e1), ("exec booting", c0, e0),
               ("podman ember-oci",
               c2, e2), ("podman crun", c3, e3)) if c]
        if bad:
            x["error"] = "; ".join(bad)
        else:
            x["overhead_ratio"] = (x["podman_ember_s"] - x["podman_crun_s"]) / x["exec_s"]
        out.append(x)
    pod.cleanup("crun")
    return {"ember": out}
