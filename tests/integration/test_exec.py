"""`ember exec`: statuses, stdout/stderr apart and byte-exact, stdin, --copy-in, --timeout,
--net, --env/--workdir, nothing persists, and it runs sandboxed and jailed; every test twice:
booting (--no-snapshot) and restored from the cached "ready for a command" snapshot."""
import hashlib
import os
import socket
import subprocess
import threading
import time

import pytest

from test_sandbox import check_sandboxed, descendants, threads_status

EXIT_TIMEOUT = 124


@pytest.fixture(scope="session")
def exec_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("exec-cache")


def entries(cache):
    d = cache / "exec-snapshots"
    return {p.name for p in d.iterdir() if p.name not in ("hashes",)} if d.exists() else set()


@pytest.fixture(params=["boot", "snapshot"])
def exec_(request, ember, exec_cache):
    """Run `ember exec ARGS`. In snapshot mode an exec whose machine has no snapshot yet boots
    and saves one; it then runs again, restored, and that run is the one tested."""
    env = dict(os.environ, EMBER_CACHE_DIR=str(exec_cache))
    mode = ["--no-snapshot"] if request.param == "boot" else []

    def run(*args, input=None, timeout=300):
        for attempt in range(2):
            before = entries(exec_cache)
            cp = subprocess.run([str(ember), "exec", *mode, *map(str, args)], input=input,
                                stdin=None if input is not None else subprocess.DEVNULL,
                                capture_output=True, timeout=timeout, env=env)
            if mode or entries(exec_cache) == before:
                return cp
        pytest.fail("the restored exec saved yet another snapshot")
    run.mode = request.param
    run.env = env
    run.args = mode
    return run


@pytest.mark.parametrize("status", [0, 1, 42])
def test_exit_status_env_workdir(exec_, images, status):
    cp = exec_("--env", "GREETING=hi there", "--workdir", "/tmp", "--", "sh", "-c",
               f'printf "%s %s" "$GREETING" "$(pwd)"; printf "to-stderr" >&2; exit {status}')
    assert cp.returncode == status, cp
    assert cp.stdout == b"hi there /tmp", cp
    assert cp.stderr == b"to-stderr", cp


def test_signal_and_not_found(exec_, images):
    cp = exec_("--", "sh", "-c", "kill -TERM $$")
    assert cp.returncode == 128 + 15, cp
    cp = exec_("--", "no-such-command")
    assert cp.returncode == 127, cp
    assert b"no-such-command" in cp.stderr, cp


def test_binary_streams_stdin_and_copy_in(exec_, images, tmp_path):
    big = os.urandom(1 << 20)
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    (src / "big.bin").write_bytes(big)
    (src / "sub" / "note.txt").write_bytes(b"note")
    os.symlink("big.bin", src / "link")
    single = tmp_path / "one.txt"
    single.write_bytes(b"single")
    stdin = os.urandom(200_000)
    cp = exec_("--copy-in", f"{src}:/data", "--copy-in", f"{single}:/etc/one.txt", "--",
               "sh", "-c", "cat /data/link; cat >&2; cat /data/sub/note.txt /etc/one.txt >&2",
               input=stdin)
    assert cp.returncode == 0, cp.stderr[-2000:]
    assert hashlib.sha256(cp.stdout).hexdigest() == hashlib.sha256(big).hexdigest(), len(cp.stdout)
    assert cp.stderr == stdin + b"notesingle", (len(cp.stderr), cp.stderr[-200:])


def test_timeout(exec_, images):
    t0 = time.monotonic()
    cp = exec_("--timeout", "5", "--", "sleep", "600")
    assert cp.returncode == EXIT_TIMEOUT, cp
    assert b"--timeout 5" in cp.stderr, cp
    assert time.monotonic() - t0 < 120


@pytest.fixture
def loopback_server():
    """A TCP service on the host's 127.0.0.1 that answers every connection with a token."""
    token = b"host-loopback-" + os.urandom(8).hex().encode()
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)

    def serve():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            with c:
                c.sendall(token + b"\n")

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield srv.getsockname()[1], token
    finally:
        srv.close()


def test_network_none_by_default_and_user_on_request(exec_, images, loopback_server):
    port, token = loopback_server
    script = "ip route; ip -o link | cut -d: -f2; wget -q -T 3 -O- http://10.0.2.2:9/ 2>&1; true"
    cp = exec_("--", "sh", "-c", script)
    assert cp.returncode == 0, cp
    assert b"default" not in cp.stdout and b"eth0" not in cp.stdout, cp.stdout
    # --net user: a network, but never the host's loopback unless asked for.
    fetch = f"ip route; nc -w 5 10.0.2.2 {port} </dev/null; true"
    cp = exec_("--net", "user", "--", "sh", "-c", fetch)
    assert cp.returncode == 0, cp
    assert b"default via 10.0.2.2" in cp.stdout, cp.stdout
    assert token not in cp.stdout, cp.stdout
    cp = exec_("--net", "user,host-loopback=on", "--", "sh", "-c", fetch)
    assert cp.returncode == 0, cp
    assert token in cp.stdout, cp.stdout


def test_writes_to_root_are_gone(exec_, images, tmp_path):
    root = tmp_path / "rootfs.ext4"
    root.write_bytes((images / "rootfs.ext4").read_bytes())
    before = hashlib.sha256(root.read_bytes()).hexdigest()
    cp = exec_("--rootfs", root, "--", "sh", "-c",
               "echo persisted > /marker && cat /marker && grep -c ' / overlay ' /proc/mounts")
    assert cp.returncode == 0, cp
    assert cp.stdout == b"persisted\n1\n", cp
    cp = exec_("--rootfs", root, "--", "test", "-e", "/marker")
    assert cp.returncode == 1, cp
    assert hashlib.sha256(root.read_bytes()).hexdigest() == before


def test_exec_runs_sandboxed_and_jailed(exec_, ember, images):
    exec_("--", "true")  # in snapshot mode: make sure the snapshot is there
    p = subprocess.Popen([str(ember), "exec", *exec_.args, "--", "sh", "-c",
                          "read line; echo got $line"], env=exec_.env,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while True:  # the VM is up once the jailed child has its vCPU thread
            pids = descendants(p.pid)
            if len(pids) == 2 and len(threads_status(pids[1])) >= 2:
                break
            assert time.monotonic() < deadline and p.poll() is None, pids
            time.sleep(0.5)
        time.sleep(1)
        check_sandboxed(pids[1])
        assert threads_status(pids[1])[str(pids[1])]["Uid"].split()[0] == "65534"
        out, err = p.communicate(b"hello\n", timeout=240)
    finally:
        p.kill()
    assert p.returncode == 0, err
    assert out == b"got hello\n", (out, err)


def test_stdout_socket_not_read_does_not_stop_the_timeout(exec_, ember, images):
    """stdout a socket nobody reads while the command writes 50 MB: ember wrote to it with a
    blocking write(), so the event loop stopped and --timeout never fired. Now the time limit
    ends it: 124, on time (plus the exit's flush deadline for the stuck reader)."""
    import socket
    exec_("--", "true")  # in snapshot mode: make sure the snapshot is there
    a, b = socket.socketpair()
    t = time.monotonic()
    p = subprocess.Popen([str(ember), "exec", *exec_.args, "--timeout", "40", "--", "head", "-c",
                          "50000000", "/dev/zero"], env=exec_.env, stdin=subprocess.DEVNULL,
                         stdout=a, stderr=subprocess.PIPE)
    a.close()
    try:
        try:
            code = p.wait(timeout=150)
        except subprocess.TimeoutExpired:
            code = "still running after 150 s"
        took = time.monotonic() - t
    finally:
        p.kill()
        p.wait()
        b.close()
    print(f"ember exec --timeout 40, stdout a socket nobody reads: exit {code} after {took:.1f} s")
    assert code == EXIT_TIMEOUT and took < 40 + 5 + 10, (code, took, p.stderr.read())
