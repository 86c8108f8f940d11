"""The sandbox (on by default) and the jail: capabilities, no-new-privs, seccomp on every
thread, descriptors, a forbidden call named with code 123, jail root, uid, namespaces."""
import fcntl
import os
import pathlib
import select
import signal
import subprocess
import time

import pytest

from conftest import BUILD, ROOT

EXIT_BAD_SYSCALL = 123
SELFTEST = pathlib.Path(os.environ.get("EMBER_SELFTEST_BUILD_DIR", ROOT / "build-selftest")) / "ember"


def start(ember, images, *args, guest=("sh", "-c", "echo up; sleep 30"), **kw):
    cmd = [str(ember), "run", *args, "--kernel", str(images / "bzImage"), "--initrd",
           str(images / "initramfs.cpio.gz"), "--", *guest]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def wait_for(p, text, timeout=240):
    """Read p's stdout until text shows up (the guest runs, so the sandbox is in)."""
    out = b""
    deadline = time.monotonic() + timeout
    while text not in out:
        assert time.monotonic() < deadline, out
        chunk = p.stdout.read1(4096)
        assert chunk, (out, p.stderr.read())
        out += chunk
    return out


def threads_status(pid):
    res = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        fields = {}
        for line in open(f"/proc/{pid}/task/{tid}/status"):
            k, _, v = line.partition(":")
            fields[k] = v.strip()
        res[tid] = fields
    return res


def descendants(pid):
    """pid and its children (the jail's supervisor forks the jailed ember)."""
    out = [pid]
    try:
        kids = open(f"/proc/{pid}/task/{pid}/children").read().split()
    except OSError:
        kids = []
    for k in kids:
        out += descendants(int(k))
    return out


def check_sandboxed(pid):
    st = threads_status(pid)
    assert len(st) >= 2, st  # the event loop and at least one vCPU
    for tid, f in st.items():
        assert f["CapEff"] == "0000000000000000", (tid, f)
        assert f["CapPrm"] == "0000000000000000", (tid, f)
        assert f["CapBnd"] == "0000000000000000", (tid, f)
        assert f["NoNewPrivs"] == "1", (tid, f)
        assert f["Seccomp"] == "2", (tid, f)
    return st


def test_every_thread_sandboxed_and_only_expected_fds(ember, images):
    r, w = os.pipe()  # an inherited descriptor ember must close
    p = start(ember, images, "--cpus", "2", "--disk", f"{images / 'rootfs.ext4'},ro",
              "--net", "user", pass_fds=(r,))
    try:
        wait_for(p, b"up")
        check_sandboxed(p.pid)
        fds = {int(fd): os.readlink(f"/proc/{p.pid}/fd/{fd}") for fd in os.listdir(f"/proc/{p.pid}/fd")}
        assert r not in fds or not fds[r].startswith("pipe:"), fds
        allowed = ("anon_inode:", "/dev/kvm", "/dev/null", "pipe:", "socket:", str(images))
        for fd, target in fds.items():
            assert target.startswith(allowed), (fd, target, fds)
        assert sum(t == "anon_inode:kvm-vcpu:0" or t.startswith("anon_inode:kvm-vcpu") for t in fds.values()) == 2, fds
    finally:
        p.terminate()
        p.wait(timeout=60)
        os.close(r)
        os.close(w)
    assert p.returncode == 143, p.returncode  # SIGTERM still ends it cleanly


def test_no_sandbox_flag(ember, images):
    p = start(ember, images, "--no-sandbox")
    try:
        wait_for(p, b"up")
        for f in threads_status(p.pid).values():
            assert f["Seccomp"] == "0", f
    finally:
        p.kill()
        p.wait()


@pytest.mark.parametrize("where", ["vcpu", "loop"])
def test_forbidden_syscall_is_named_and_exits_123(images, where):
    if not SELFTEST.exists():
        pytest.fail(f"{SELFTEST} is missing: meson setup build-selftest -Dsandbox_selftest=true "
                    "&& meson compile -C build-selftest", pytrace=False)
    env = dict(os.environ, EMBER_SELFTEST_FORBIDDEN=where)
    cp = subprocess.run([str(SELFTEST), "run", "--kernel", str(images / "bzImage"), "--initrd",
                         str(images / "initramfs.cpio.gz"), "--", "sleep", "30"],
                        capture_output=True, env=env, timeout=240, stdin=subprocess.DEVNULL)
    err = cp.stderr.decode(errors="replace")
    assert cp.returncode == EXIT_BAD_SYSCALL, (cp.returncode, err)
    thread = "vCPU 0" if where == "vcpu" else "event loop"
    assert f"forbidden system call: execve (number 59) on the {thread} thread" in err, err


def test_forbidden_io_uring_opcode_is_refused(tiny, tmp_path):
    """seccomp does not see io_uring's operations: a disk's ring itself must refuse any opcode
    virtio-blk does not use. A test-build hook submits an openat on the real ring."""
    if not SELFTEST.exists():
        pytest.fail(f"{SELFTEST} is missing: meson setup build-selftest -Dsandbox_selftest=true "
                    "&& meson compile -C build-selftest", pytrace=False)
    disk = tmp_path / "d.img"
    disk.write_bytes(b"\0" * 65536)
    env = dict(os.environ, EMBER_SELFTEST_FORBIDDEN="uring")
    cp = subprocess.run([str(SELFTEST), "run", "--disk", str(disk), "--kernel", str(tiny("hello"))],
                        capture_output=True, env=env, timeout=60, stdin=subprocess.DEVNULL)
    err = cp.stderr.decode(errors="replace")
    assert "selftest: io_uring openat refused: Permission denied" in err, err
    assert cp.returncode == 0, (cp.returncode, err)


def test_jail(ember, images, tmp_path):
    jail = tmp_path / "jail"
    jail.mkdir()
    p = start(ember, images, "--jail", str(jail), "--uid", "4242", "--gid", "4343",
              "--cgroup", "pids.max=64", "--rlimit-nofile", "200")
    try:
        wait_for(p, b"up")
        pids = descendants(p.pid)
        assert len(pids) == 2, pids  # supervisor and the jailed ember
        sup, child = pids
        check_sandboxed(child)
        for f in threads_status(sup).values():  # the supervisor keeps nothing either
            assert f["CapEff"] == "0000000000000000" and f["Seccomp"] == "2", f
        f = threads_status(child)[str(child)]
        assert f["Uid"].split()[:3] == ["4242"] * 3, f
        assert f["Gid"].split()[:3] == ["4343"] * 3, f
        assert f["Groups"] == "", f
        # The jail root: only what the VM needs.
        root = f"/proc/{child}/root"
        entries = sorted(os.listdir(root))
        assert entries == ["dev", "initrd", "kernel"], entries
        assert os.listdir(f"{root}/dev") == ["kvm"], os.listdir(f"{root}/dev")
        # New namespaces: mount, PID (it is PID 1 there), IPC, UTS.
        for ns in ("mnt", "pid", "ipc", "uts"):
            assert os.readlink(f"/proc/{child}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}"), ns
        nspid = [l for l in open(f"/proc/{child}/status") if l.startswith("NSpid:")][0].split()
        assert nspid[-1] == "1", nspid
        limits = open(f"/proc/{child}/limits").read()
        assert [l for l in limits.splitlines() if l.startswith("Max open files")][0].split()[3:5] == ["200", "200"], limits
        cg = open(f"/proc/{child}/cgroup").read().strip().split("::")[1]
        assert open(f"/sys/fs/cgroup{cg}/pids.max").read().strip() == "64", cg
    finally:
        p.terminate()
        p.wait(timeout=60)
    assert p.returncode == 143, (p.returncode, p.stderr.read())
    assert list(jail.iterdir()) == [], list(jail.iterdir())  # the supervisor cleaned up


def test_jail_refuses_missing_namespace_unless_told(ember, images, tmp_path):
    jail = tmp_path / "jail"
    jail.mkdir()
    # A cgroup parent that is not cgroup2 stands in for a host without cgroups.
    cmd = [ember, "run", "--jail", jail, "--cgroup", "pids.max=10", "--cgroup-parent", "/tmp",
           "--kernel", images / "bzImage", "--initrd", images / "initramfs.cpio.gz", "--", "true"]
    cp = subprocess.run([str(c) for c in cmd], capture_output=True, timeout=240, stdin=subprocess.DEVNULL)
    err = cp.stderr.decode()
    assert cp.returncode == 125, err
    assert "cgroup v2 (--cgroup) unavailable" in err and "--jail-best-effort" in err, err
    cp = subprocess.run([str(c) for c in cmd[:2] + ["--jail-best-effort"] + cmd[2:]], capture_output=True,
                        timeout=240, stdin=subprocess.DEVNULL)
    assert cp.returncode == 0, cp.stderr.decode()
    assert b"going on without it" in cp.stderr


# ---- the jail trusts nothing it is given (tiny guests: any /dev/kvm) ----

def jail_run(ember, tiny, jail, guest="hello"):
    return subprocess.run([str(ember), "run", "--jail", str(jail), "--kernel", str(tiny(guest))],
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=60)


@pytest.mark.parametrize("owner,mode,says", [
    (65534, 0o755, "owned by uid 65534"),
    (0, 0o777, "writable by its group or others (mode 777)"),
    (0, 0o775, "writable by its group or others (mode 775)"),
    (0, 0o1777, "writable by its group or others (mode 777)"),
])
def test_jail_refuses_a_directory_others_could_write(ember, tiny, tmp_path, owner, mode, says):
    jail = tmp_path / "jail"
    jail.mkdir()
    os.chown(jail, owner, owner)
    os.chmod(jail, mode)
    cp = jail_run(ember, tiny, jail)
    err = cp.stderr.decode(errors="replace")
    assert cp.returncode == 126, (cp.returncode, err)
    assert says in err and str(jail) in err, err
    assert list(jail.iterdir()) == []


@pytest.mark.parametrize("plant", ["file-symlink", "dir-symlink", "foreign-dir"])
def test_jail_creates_nothing_through_a_symlink(ember, tiny, tmp_path, plant):
    """What is already in DIR is not followed: a symlink where ember puts /kernel or /dev
    (dangling, or to a directory elsewhere), or a directory someone else owns and may fill
    with symlinks. Nothing is created outside DIR; ember refuses and names the path."""
    jail, victim = tmp_path / "jail", tmp_path / "victim"
    jail.mkdir()
    if plant == "file-symlink":
        os.symlink(victim, jail / "kernel")  # dangling: O_CREAT would make the victim
    elif plant == "dir-symlink":
        victim.mkdir()
        os.symlink(victim, jail / "dev")
    else:
        (jail / "dev").mkdir()
        os.chown(jail / "dev", 65534, 65534)
    cp = jail_run(ember, tiny, jail)
    err = cp.stderr.decode(errors="replace")
    assert cp.returncode == 126, (cp.returncode, err)
    assert ("symlink" in err or "owned by uid 65534" in err) and str(jail) in err, err
    if plant == "file-symlink":
        assert not victim.exists()
    elif plant == "dir-symlink":
        assert list(victim.iterdir()) == []


def test_jail_leaves_what_was_there_and_no_way_out(ember, tiny, tmp_path):
    """Files that were in DIR stay as they were (ember removes only what it made), and the
    jailed ember keeps no descriptor of DIR: from one, openat would reach the host's files."""
    jail = tmp_path / "jail"
    jail.mkdir()
    (jail / "notes.txt").write_text("mine")
    (jail / "kernel").write_text("")  # an empty file to mount on, already there
    p = subprocess.Popen([str(ember), "run", "--jail", str(jail), "--kernel", str(tiny("idle"))],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert b"tiny-guest: idle" in p.stdout.readline()
        child = descendants(p.pid)[1]
        links = [os.readlink(f"/proc/{child}/fd/{fd}") for fd in os.listdir(f"/proc/{child}/fd")]
        assert not [t for t in links if t.startswith(str(tmp_path))], links
        p.terminate()
        assert p.wait(timeout=60) == 143
    finally:
        if p.poll() is None:
            p.kill()
    assert sorted(x.name for x in jail.iterdir()) == ["kernel", "notes.txt"]
    assert (jail / "notes.txt").read_text() == "mine"


EXIT_FLUSH_S = 5  # run.c: what is left to write at exit gets this long in all


def test_jailed_console_never_blocks_the_loop(ember, tiny, tmp_path):
    """Jailed, stdout a pipe whose reader is stuck while the guest floods its console: after
    pivot_root there is no /proc to reopen stdout non-blocking, and a blocking write() held
    the event loop, so the supervisor's relayed SIGTERM was never read. stdout is now opened
    before the jail: SIGTERM ends ember (143) within the exit's flush deadline and 2 s."""
    if os.geteuid() != 0:
        pytest.skip("the jail needs root")
    jail = tmp_path / "jail"
    jail.mkdir()
    disk = tmp_path / "disk.img"
    with open(disk, "wb") as f:
        f.truncate(1 << 20)
    r, w = os.pipe()
    fcntl.fcntl(w, 1031, 4096)  # F_SETPIPE_SZ: fills at once
    p = subprocess.Popen([str(ember), "run", "--jail", str(jail), "--memory", "64M",
                          "--console", "virtio", "--kernel", str(tiny("hostile_flood")),
                          "--disk", str(disk)],
                         stdin=subprocess.DEVNULL, stdout=w, stderr=subprocess.PIPE)
    os.close(w)
    try:
        # Read stdout until the flood begins, then never again: the pipe and the console's
        # ring fill up at once.
        seen, deadline = b"", time.monotonic() + 300
        while b"FLOOD-BEGIN" not in seen:
            assert time.monotonic() < deadline and p.poll() is None, (seen[-2000:], p.poll())
            if select.select([r], [], [], 1)[0]:
                seen += os.read(r, 4096)
        time.sleep(3)
        assert p.poll() is None, p.stderr.read()
        t = time.monotonic()
        p.send_signal(signal.SIGTERM)
        try:
            code = p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            code = "still running 60 s after SIGTERM"
        took = time.monotonic() - t
    finally:
        p.kill()
        p.wait()
        os.close(r)
    print(f"jailed, stdout stuck, console flooded: SIGTERM -> exit {code} in {took:.2f} s")
    assert code == 143 and took < EXIT_FLUSH_S + 2, (code, took, p.stderr.read())
