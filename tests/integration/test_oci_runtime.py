"""ember-oci as runc's callers drive it without an engine: the create/start/state/delete
lifecycle under a subreaper (the VMM is the pid file's process and exits with the workload's
status), conmon alone as the waiting parent, and bad input (missing bundle, broken config.json,
unknown ID, double create, delete of a running container, kill after exit): each a clear error
and exit code, nothing left behind. Every scenario runs against runc or crun first (the oracle)
and ember-oci must give the same answers."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import Result, run
from oci_env import EMBER_OCI, bundle, busybox_rootfs, leftovers, need, tmpdir, wait_for

RUNTIMES = {"crun": "/usr/bin/crun", "runc": "/usr/bin/runc", "ember": str(EMBER_OCI)}

# As conmon and containerd's shim do: become a subreaper, create, start, and reap the pid
# file's process, which must be our descendant; print its wait status as JSON.
SUBREAPER = textwrap.dedent("""
    import ctypes, json, os, subprocess, sys
    rt, root, b, cid, out, err = sys.argv[1:7]
    ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    with open(out, "wb") as o, open(err, "wb") as e:
        cp = subprocess.run([rt, "--root", root, "create", "--bundle", b, "--pid-file",
                             b + "/pid", cid], stdin=subprocess.DEVNULL, stdout=o, stderr=e)
    res = {"create": cp.returncode}
    if cp.returncode == 0:
        pid = int(open(b + "/pid").read())
        st = json.loads(subprocess.run([rt, "--root", root, "state", cid],
                                       capture_output=True).stdout)
        res["created"] = st["status"]
        res["pid_matches"] = st["pid"] == pid
        res["start"] = subprocess.run([rt, "--root", root, "start", cid]).returncode
        _, status = os.waitpid(pid, 0)
        res["exit"] = os.waitstatus_to_exitcode(status)
        st = json.loads(subprocess.run([rt, "--root", root, "state", cid],
                                       capture_output=True).stdout)
        res["after"] = st["status"]
    print(json.dumps(res))
""")


@pytest.fixture(scope="module")
def rootfs():
    need("crun", "runc", "conmon")
    return busybox_rootfs(tmpdir("oci-rootfs-") / "rootfs")


@pytest.mark.parametrize("rt", ["crun", "ember"])
def test_lifecycle_under_a_subreaper(rt, rootfs, images):
    base = tmpdir("oci-life-")

    def hooks(c):  # on the host, the state on stdin: its pid is the pid file's
        hook = lambda name: {"path": "/bin/sh", "args": ["sh", "-c", f"cat > {base}/{name}.json"]}
        c["hooks"] = {"prestart": [hook("prestart")], "poststop": [hook("poststop")]}
    b = bundle(base / "bundle", rootfs,
               ["/bin/sh", "-c", "echo out; echo err >&2; sleep 1; exit 7"], edit=hooks)
    root = base / "state"
    r = run([sys.executable, "-c", SUBREAPER, RUNTIMES[rt], root, b, "life1", base / "out",
             base / "err"], timeout=300)
    assert r.code == 0, r
    res = json.loads(r.out.strip().splitlines()[-1])
    assert res == {"create": 0, "created": "created", "pid_matches": True, "start": 0,
                   "exit": 7, "after": "stopped"}, (res, (base / "err").read_text())
    # create printed nothing: its stdout and stderr are the container's, and they stay apart
    assert (base / "out").read_text() == "out\n"
    assert (base / "err").read_text() == "err\n"
    d = run([RUNTIMES[rt], "--root", root, "delete", "life1"])
    assert d.code == 0, d
    assert not (root / "life1").exists()
    pre = json.loads((base / "prestart.json").read_text())
    assert pre["id"] == "life1" and pre["pid"] == int((b / "pid").read_text()), pre
    assert json.loads((base / "poststop.json").read_text())["id"] == "life1"


def conmon_run(rt, base, rootfs, cid):
    b = bundle(base / "bundle", rootfs,
               ["/bin/sh", "-c", "echo out; echo err >&2; sleep 2; exit 7"])
    for d in ("exits", "sock"):
        (base / d).mkdir()
    r = run(["conmon", "--api-version", "1", "-c", cid, "-u", cid, "-r", RUNTIMES[rt],
             "-b", b, "-p", b / "pid", "-n", cid, "--exit-dir", base / "exits",
             "-l", f"k8s-file:{base}/ctr.log", "--socket-dir-path", base / "sock",
             "--conmon-pidfile", base / "conmon.pid",
             "--runtime-arg", "--root", "--runtime-arg", base / "state"])
    assert r.code == 0, r
    # conmon daemonizes; the pid file appears when create is done
    assert wait_for(lambda: (b / "pid").exists() and (b / "pid").read_text(), 240), \
        (base / "ctr.log").read_text() if (base / "ctr.log").exists() else "no log"
    return b


@pytest.mark.parametrize("rt", ["crun", "ember"])
def test_conmon_alone(rt, rootfs, images):
    base = tmpdir("oci-conmon-")
    state = base / "state"
    conmon_run(rt, base, rootfs, "cm1")

    def status():
        out = run([RUNTIMES[rt], "--root", state, "state", "cm1"]).out
        return json.loads(out)["status"] if out.strip() else None
    assert status() == "created"
    r = run([RUNTIMES[rt], "--root", state, "start", "cm1"])
    assert r.code == 0, r
    assert status() in ("running", "stopped")
    exitfile = base / "exits" / "cm1"
    assert wait_for(exitfile.exists, 120), "no exit file"
    assert wait_for(lambda: exitfile.read_text().strip() != "", 10)
    assert exitfile.read_text().strip() == "7"
    assert status() == "stopped"
    log = (base / "ctr.log").read_text().splitlines()
    streams = [(ln.split(" ")[1], ln.split(" ", 3)[3]) for ln in log if ln.count(" ") >= 3]
    assert ("stdout", "out") in streams and ("stderr", "err") in streams, log
    assert run([RUNTIMES[rt], "--root", state, "delete", "cm1"]).code == 0
    assert not (state / "cm1").exists()


def texts_of(r):
    return (r.out + r.err).lower()


def create(ort, base, *args):
    """create with its stdout and stderr in files: the container keeps them (a pipe read to its
    end would hang, as `runc create | cat` does)."""
    with open(base / "create.out", "w+b") as o, open(base / "create.err", "w+b") as e:
        cp = subprocess.run([str(a) for a in ort + ["create", *args]], stdin=subprocess.DEVNULL,
                            stdout=o, stderr=e, timeout=300)
        o.seek(0)
        e.seek(0)
        return Result(subprocess.CompletedProcess(cp.args, cp.returncode, o.read(), e.read()))


@pytest.mark.parametrize("rt", ["runc", "ember"])
def test_bad_input(rt, rootfs, images):
    """runc's texts are what containerd and podman match on ("does not exist", "exists",
    "not stopped", "not running"); runc is the oracle here."""
    base = tmpdir("oci-bad-")
    root = base / "state"
    ort = [RUNTIMES[rt], "--root", root]
    before = leftovers(root)

    r = create(ort, base, "--bundle", base / "nonexistent", "bad1")
    assert r.code == 1 and "nonexistent" in texts_of(r), r
    broken = base / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"ociVersion": "1.0.2", "process": {')
    r = create(ort, base, "--bundle", broken, "bad2")
    assert r.code == 1, r
    if rt == "ember":  # runc only says "unexpected EOF"; ember-oci names the file
        assert "config.json" in r.err and "not valid json" in texts_of(r), r
    for cmd in (["state"], ["start"], ["kill"], ["delete"]):
        r = run(ort + cmd + ["nosuch"])
        assert r.code == 1 and "does not exist" in texts_of(r), (cmd, r)
    assert leftovers(root) == before

    b = bundle(base / "b", rootfs, ["/bin/sleep", "600"])
    r = create(ort, base, "--bundle", b, "--pid-file", b / "pid", "c1")
    assert r.code == 0, r
    r = create(ort, base, "--bundle", b, "c1")
    assert r.code == 1 and "exists" in texts_of(r), r
    assert run(ort + ["start", "c1"]).code == 0
    r = run(ort + ["delete", "c1"])
    assert r.code == 1 and "not stopped" in texts_of(r), r
    assert run(ort + ["kill", "c1", "KILL"]).code == 0
    assert wait_for(lambda: json.loads(run(ort + ["state", "c1"]).out)["status"] == "stopped",
                    60)
    r = run(ort + ["kill", "c1", "TERM"])
    assert r.code == 1 and "not running" in texts_of(r), r
    assert run(ort + ["delete", "c1"]).code == 0
    assert wait_for(lambda: leftovers(root) == before, 30), leftovers(root)


def test_exec_is_refused(rootfs):
    r = run([EMBER_OCI, "exec", "--process", "/dev/null", "anything"])
    assert r.code == 1 and "exec is not supported" in r.err, r


def test_version_features_spec(tmp_path):
    r = run([EMBER_OCI, "--version"])
    assert r.code == 0 and len(r.out.splitlines()) == 3, r  # go-runc parses three lines
    assert r.out.startswith("ember-oci version ") and "spec: 1.0.2" in r.out, r
    f = json.loads(run([EMBER_OCI, "features"]).out)
    assert f["ociVersionMax"] == "1.0.2" and "prestart" in f["hooks"], f
    assert run([EMBER_OCI, "spec", "--bundle", tmp_path]).code == 0
    assert json.loads((tmp_path / "config.json").read_text())["root"]["path"] == "rootfs"
    # every global flag runc's callers send is accepted (gvisor-containerd-shim#41)
    r = run([EMBER_OCI, "--root", tmp_path / "r", "--log", tmp_path / "log.json",
             "--log-format", "json", "--systemd-cgroup", "--rootless=true", "--criu", "x",
             "--cgroup-manager", "disabled", "--debug", "state", "nosuch"])
    assert r.code == 1 and "does not exist" in r.err, r
    rec = json.loads((tmp_path / "log.json").read_text().splitlines()[-1])
    assert rec["level"] == "error" and "does not exist" in rec["msg"] and rec["time"], rec


def test_installed_layout_finds_the_images(tmp_path, images):
    """meson install puts ember, ember-oci and the guest images where ember-oci finds them
    without any environment variable."""
    env = {k: v for k, v in os.environ.items() if k != "EMBER_IMAGES_DIR"}
    r = subprocess.run(["meson", "install", "-C", str(EMBER_OCI.parent), "--destdir",
                        str(tmp_path), "--no-rebuild"], capture_output=True, env=env)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    bins = list(tmp_path.rglob("bin/ember-oci"))
    assert len(bins) == 1 and os.readlink(bins[0]) == "ember", bins
    cp = subprocess.run([str(bins[0]), "features"], capture_output=True, env=env)
    images = json.loads(cp.stdout)["annotations"]["org.ember.images"]
    assert os.path.realpath(images) == os.path.realpath(bins[0].parent.parent / "share" /
                                                        "ember" / "images"), images
    assert os.path.exists(os.path.join(images, "bzImage"))
    assert os.path.exists(os.path.join(images, "initramfs.cpio.gz"))


# As conmon does with --console-socket: take the pty master from runc's one message (the name
# as data, the fd as SCM_RIGHTS), start, resize the master, read what the workload printed.
CONSOLE = textwrap.dedent("""
    import array, fcntl, json, os, select, socket, struct, subprocess, sys, termios, time
    rt, root, b, cid, sock_path = sys.argv[1:6]
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(sock_path)
    srv.listen(1)
    create = subprocess.Popen([rt, "--root", root, "create", "--bundle", b, "--console-socket",
                               sock_path, cid], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    conn, _ = srv.accept()
    fds = array.array("i")
    name, anc, flags, _ = conn.recvmsg(256, socket.CMSG_LEN(fds.itemsize))
    level, kind, data = anc[0]
    assert level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS
    fds.frombytes(data[:fds.itemsize])
    master = fds[0]
    assert create.wait() == 0
    subprocess.run([rt, "--root", root, "start", cid], check=True)
    out, resized, end = b"", False, time.monotonic() + 120
    while time.monotonic() < end and b"second" not in out:
        r, _, _ = select.select([master], [], [], 1)
        if r:
            try:
                out += os.read(master, 4096)
            except OSError:
                break
        if b"first" in out and not resized:
            fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))
            resized = True
    print(json.dumps({"name": name.rstrip(b"\\0").decode(), "out": out.decode(errors="replace")}))
""")


@pytest.mark.parametrize("rt", ["crun", "ember"])
def test_console_socket_and_resize(rt, rootfs, images):
    base = tmpdir("oci-tty-")
    script = "stty size; echo first; sleep 3; stty size; tty; echo second"

    def size(c):
        c["process"]["consoleSize"] = {"height": 24, "width": 80}
    b = bundle(base / "bundle", rootfs, ["/bin/sh", "-c", script], terminal=True, edit=size)
    r = run([sys.executable, "-c", CONSOLE, RUNTIMES[rt], base / "state", b, "tty1",
             base / "console.sock"], timeout=300)
    assert r.code == 0, r
    res = json.loads(r.out.strip().splitlines()[-1])
    if rt == "ember":  # runc's message names the pty (crun sends a blank; no caller reads it)
        assert res["name"].startswith("/dev/pts/"), res
    # the workload's pty: its first size from consoleSize, then the master's new size; one
    # line discipline between them (\r\n, not \r\r\n)
    lines = res["out"].split("\r\n")
    assert lines[:3] == ["24 80", "first", "33 101"] and lines[4] == "second", res
    assert lines[3].startswith("/dev/pts/"), res
    run([RUNTIMES[rt], "--root", base / "state", "delete", "--force", "tty1"])
