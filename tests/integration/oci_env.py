"""Shared set-up of the ember-oci tests: a busybox root filesystem, the runtimes (ember-oci and
the oracle, crun or runc, which runs every script first), and the engines as the tests start
them in the test host: podman with its own storage, containerd, dockerd, conmon alone.

Everything lives in a temporary directory of the test host (its / is a tmpfs overlay, so the
engines' state directories are writable) and is torn down by the fixtures."""
import json
import os
import pathlib
import shutil
import signal
import subprocess
import tempfile
import time

from conftest import BUILD, Result, run

EMBER_OCI = BUILD / "ember-oci"
APPLETS = ["sh", "echo", "cat", "sleep", "true", "false", "tty", "stty", "ls", "id", "hostname",
           "mount", "pwd", "touch", "head", "dd", "env", "grep", "kill", "wc"]


def need(*tools):
    """Skip-free check: these Debian packages are part of the suite (tests/deps installs them)."""
    import pytest
    missing = [t for t in tools if not shutil.which(t)]
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: run tests/deps (apt-get install podman "
                    "conmon crun runc containerd docker.io)", pytrace=False)


def busybox_rootfs(root: pathlib.Path) -> pathlib.Path:
    """A small root filesystem: static busybox, its applets, a user 1000, a file that is not
    executable (/notexec)."""
    for d in ("bin", "etc", "proc", "sys", "dev", "tmp", "run", "root", "home/user"):
        (root / d).mkdir(parents=True, exist_ok=True)
    shutil.copy("/bin/busybox", root / "bin" / "busybox")
    for a in APPLETS:
        (root / "bin" / a).symlink_to("busybox")
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n"
                                         "user:x:1000:1000:user:/home/user:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\nuser:x:1000:\n")
    (root / "notexec").write_text("#!/bin/sh\necho never\n")
    os.chmod(root / "notexec", 0o644)
    os.chmod(root / "tmp", 0o1777)
    return root


def ember_processes():
    """Pids of ember processes (VMMs and jail supervisors) running now."""
    pids = []
    real = os.path.realpath(BUILD / "ember")
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                if os.readlink(f"/proc/{p}/exe") == real:
                    pids.append(int(p))
            except OSError:
                pass
    return pids


def leftovers(root="/run/ember-oci"):
    """What ember-oci left behind: state directories and VMMs."""
    try:
        dirs = sorted(os.listdir(root))
    except FileNotFoundError:
        dirs = []
    return dirs, ember_processes()


def wait_for(pred, timeout, step=0.2):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return pred()


class Podman:
    """podman with storage of its own, the given runtime, cgroupfs, no network."""

    def __init__(self, base: pathlib.Path):
        self.base = base
        self.conf = base / "containers.conf"
        self.conf.write_text(
            "[engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n"
            "runtime_supports_json = [\"crun\", \"runc\", \"ember-oci\"]\n"
            f"[engine.runtimes]\nember-oci = [\"{EMBER_OCI}\"]\n")
        self.env = dict(os.environ, CONTAINERS_CONF=str(self.conf))

    def cmd(self, runtime, *args):
        return ["podman", "--root", str(self.base / "storage"), "--runroot",
                str(self.base / "run"), "--storage-driver", "vfs", "--runtime", runtime,
                *map(str, args)]

    def run(self, runtime, *args, input=None, timeout=180):
        try:
            cp = subprocess.run(self.cmd(runtime, *args), input=input, env=self.env,
                                stdin=None if input is not None else subprocess.DEVNULL,
                                capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            cp = subprocess.CompletedProcess(args, f"timeout after {timeout} s",
                                             e.stdout or b"", e.stderr or b"")
        return Result(cp)

    def cleanup(self, runtime):
        self.run(runtime, "rm", "-af", "-t", "0", timeout=120)


def stop_daemon(proc, log, timeout):
    """SIGTERM, then SIGKILL after timeout seconds; the daemon's log closed."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()


class Containerd:
    """containerd with its own root, state and socket; ctr against it."""

    def __init__(self, base: pathlib.Path):
        self.base = base
        base.mkdir(parents=True, exist_ok=True)
        self.sock = base / "sock"
        conf = base / "config.toml"
        conf.write_text(f'version = 2\nroot = "{base}/root"\nstate = "{base}/state"\n'
                        'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
                        f'[grpc]\n  address = "{self.sock}"\n')
        self.log = open(base / "containerd.log", "wb")
        self.proc = subprocess.Popen(["containerd", "--config", str(conf)], stdout=self.log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        if not wait_for(lambda: self.sock.exists() and self.ctr("version").code == 0, 60):
            self.stop()
            raise RuntimeError("containerd did not start: " + (base / "containerd.log").read_text()[-2000:])

    def ctr(self, *args, input=None, timeout=180):
        return run(["ctr", "-a", self.sock, *args], input=input, timeout=timeout)

    def stop(self):
        stop_daemon(self.proc, self.log, 30)


class Dockerd:
    """dockerd (with the containerd it manages) without networking, ember-oci as runtime
    "ember" in its daemon.json; vfs storage in a directory of its own."""

    def __init__(self, base: pathlib.Path):
        base.mkdir(parents=True, exist_ok=True)
        self.sock = base / "docker.sock"
        conf = base / "daemon.json"
        conf.write_text(json.dumps({
            "runtimes": {"ember": {"path": str(EMBER_OCI)}},
            "bridge": "none", "iptables": False, "ip-masq": False, "storage-driver": "vfs",
            "data-root": str(base / "data"), "exec-root": str(base / "exec"),
            "pidfile": str(base / "docker.pid"), "hosts": [f"unix://{self.sock}"]}))
        self.log = open(base / "dockerd.log", "wb")
        self.proc = subprocess.Popen(["dockerd", "--config-file", str(conf)], stdout=self.log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        if not wait_for(lambda: self.sock.exists() and self.docker("version").code == 0, 120, 0.5):
            self.stop()
            raise RuntimeError("dockerd did not start: " + (base / "dockerd.log").read_text()[-2000:])

    def docker(self, *args, input=None, timeout=180):
        return run(["docker", "-H", f"unix://{self.sock}", *args], input=input, timeout=timeout)

    def stop(self):
        stop_daemon(self.proc, self.log, 60)


def bundle(base: pathlib.Path, rootfs: pathlib.Path, args, terminal=False, readonly=True,
           edit=None) -> pathlib.Path:
    """An OCI bundle from ember-oci's default spec, with our process and root."""
    base.mkdir(parents=True, exist_ok=True)
    cfg = base / "config.json"
    if cfg.exists():
        cfg.unlink()
    subprocess.run([str(EMBER_OCI), "spec", "--bundle", str(base)], check=True)
    c = json.loads(cfg.read_text())
    c["root"] = {"path": str(rootfs), "readonly": readonly}
    c["process"]["terminal"] = terminal
    c["process"]["args"] = list(args)
    if edit:
        edit(c)
    cfg.write_text(json.dumps(c))
    return base


def tmpdir(prefix):
    """A directory in the test host's own memory (not the 9p scratch: engines' storage wants a
    real local file system)."""
    return pathlib.Path(tempfile.mkdtemp(prefix=prefix))
