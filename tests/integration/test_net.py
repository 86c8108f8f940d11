"""virtio-net: user networking (libslirp: DHCP, the host's loopback out of reach unless
host-loopback=on, hostfwd) and a TAP in a netns.

All traffic stays on the test host's loopback or inside a network namespace the test creates.
Boots are few (one per backend): each test function checks one part of a shared boot.
"""
import ctypes
import functools
import hashlib
import http.server
import os
import queue
import re
import secrets
import shutil
import socket
import subprocess
import threading
import time

import pytest

EXIT_USAGE = 126
GUEST_PORT = 8000
PING = [shutil.which("ping")] if shutil.which("ping") else ["busybox", "ping"]  # busybox-static

# busybox udhcpc configures nothing itself: it runs a script with the lease in its environment.
# Written with printf because the kernel command line cannot carry newlines or double quotes.
DHCP_SCRIPT = ("printf '#!/bin/sh\\ncase $1 in bound) ifconfig $interface $ip netmask $subnet; "
               "route add default gw $router;; esac\\n' > /tmp/dhcp; chmod +x /tmp/dhcp")


class Guest:
    """ember running a guest command; stdout is read line by line while it runs."""

    def __init__(self, cmd, prefix=()):
        self.proc = subprocess.Popen([*map(str, prefix), *map(str, cmd)],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.lines = queue.Queue()
        self.out, self.err = [], []
        p = self.proc
        self.threads = [
            threading.Thread(target=self._read, args=(p.stdout, self.out, True), daemon=True),
            threading.Thread(target=self._read, args=(p.stderr, self.err, False), daemon=True),
        ]
        for t in self.threads:
            t.start()

    def _read(self, f, keep, to_queue):
        for raw in f:
            line = raw.decode(errors="replace").rstrip("\r\n")
            keep.append(line)
            if to_queue:
                self.lines.put(line)
        if to_queue:
            self.lines.put(None)  # EOF

    def __repr__(self):
        return (f"exit={self.proc.poll()}\n--- stdout ---\n" + "\n".join(self.out)[-4000:] +
                "\n--- stderr ---\n" + "\n".join(self.err)[-4000:])

    def wait_for(self, pattern, timeout=120):
        """The first new stdout line matching the regex; fails on timeout or exit."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"timed out waiting for {pattern!r}\n{self!r}", pytrace=False)
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                self.lines.put(None)
                pytest.fail(f"ember ended before {pattern!r}\n{self!r}", pytrace=False)
            m = re.search(pattern, line)
            if m:
                return m

    def finish(self, timeout=120):
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"ember did not exit\n{self!r}", pytrace=False)
        for t in self.threads:
            t.join(timeout=10)
        return self.proc.returncode

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def boot_args(ember, images, net, script):
    return [ember, "run", "--kernel", images / "bzImage", "--initrd", images / "initramfs.cpio.gz",
            "--memory", "256M", "--net", net, "--", "sh", "-c", script]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- user networking (libslirp): two boots ----

@pytest.fixture(scope="module")
def http_server(tmp_path_factory):
    """An HTTP server on the host's loopback only (127.0.0.1), serving one page."""
    root = tmp_path_factory.mktemp("www")
    token = secrets.token_hex(16)
    (root / "hello.txt").write_text(f"ember-page-{token}\n")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield {"port": server.server_address[1], "token": token}
    finally:
        server.shutdown()


def fetch_script(port):
    """Guest: get a lease, then try the host's loopback server through 10.0.2.2."""
    return ("ip link set lo up; ip link set eth0 up; " + DHCP_SCRIPT + "; "
            "udhcpc -i eth0 -q -n -t 5 -T 2 -s /tmp/dhcp || exit 3; ip addr show eth0; "
            f"if wget -q -O - http://10.0.2.2:{port}/hello.txt; then echo LOOPBACK-REACHED; "
            "else echo LOOPBACK-REFUSED; fi; ")


@pytest.fixture(scope="module")
def slirp_boot(ember, images, http_server):
    """--net user as it comes (the host's loopback out of reach) with a hostfwd rule: the guest
    gets a lease, tries the test's HTTP server on 127.0.0.1 through 10.0.2.2, then serves one
    connection on its forwarded port."""
    token = http_server["token"]
    host_port = free_port()
    script = (fetch_script(http_server["port"]) + "echo FWD-READY; "
              f"nc -l -p {GUEST_PORT} -e echo hello-from-guest-{token} || exit 5; echo GUEST-DONE")
    g = Guest(boot_args(ember, images, f"user,hostfwd=tcp:127.0.0.1:{host_port}-:{GUEST_PORT}",
                        script))
    result = {"guest": g, "token": token, "fwd_reply": b""}
    try:
        g.wait_for("^FWD-READY$", timeout=180)
        result["fwd_reply"] = connect_and_read(host_port, f"hello-from-guest-{token}".encode())
        result["code"] = g.finish(timeout=120)
        yield result
    finally:
        g.kill()


def connect_and_read(port, want, timeout=60):
    """Connect to the forwarded host port until the guest's server answers (it may not listen
    yet: slirp then resets the connection) and return what it sent."""
    deadline = time.monotonic() + timeout
    data = b""
    while time.monotonic() < deadline:
        data = b""
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                while True:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
        except OSError:
            pass
        if want in data:
            return data
        time.sleep(0.5)
    return data


def test_user_dhcp_lease(slirp_boot):
    g = slirp_boot["guest"]
    text = "\n".join(g.out)
    assert "lease of 10.0.2.15 obtained" in text, g
    assert re.search(r"inet 10\.0\.2\.15/24", text), g


def test_user_default_cannot_reach_host_loopback(slirp_boot):
    g = slirp_boot["guest"]
    assert "LOOPBACK-REFUSED" in g.out, g
    assert f"ember-page-{slirp_boot['token']}" not in g.out, g


def test_user_host_loopback_on_reaches_host_loopback(ember, images, http_server):
    g = Guest(boot_args(ember, images, "user,host-loopback=on",
                        fetch_script(http_server["port"]) + "echo GUEST-DONE"))
    try:
        g.wait_for("^GUEST-DONE$", timeout=180)
        assert g.finish(timeout=120) == 0, g
    finally:
        g.kill()
    assert f"ember-page-{http_server['token']}" in g.out, g
    assert "LOOPBACK-REACHED" in g.out, g


def test_user_hostfwd_reaches_guest_server(slirp_boot):
    g = slirp_boot["guest"]
    assert f"hello-from-guest-{slirp_boot['token']}".encode() in slirp_boot["fwd_reply"], g
    assert "GUEST-DONE" in g.out and slirp_boot["code"] == 0, g


# ---- TAP: one boot inside a network namespace ----

@pytest.fixture
def netns():
    name = f"ember-net-{os.getpid()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        for cmd in (["ip", "link", "set", "lo", "up"],
                    ["ip", "tuntap", "add", "dev", "tap0", "mode", "tap"],
                    ["ip", "addr", "add", "192.168.77.1/24", "dev", "tap0"],
                    ["ip", "link", "set", "tap0", "up"]):
            subprocess.run(["ip", "netns", "exec", name, *cmd], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


CLONE_NEWNET = 0x40000000
libc = ctypes.CDLL(None, use_errno=True)


def ns_socket(ns):
    """A TCP socket in network namespace ns: a socket keeps the namespace it was created in,
    so only the short-lived thread that creates it enters the namespace."""
    box = {}

    def make():
        try:
            fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns")
            finally:
                os.close(fd)
            box["sock"] = socket.socket()
        except Exception as e:  # handed to the caller
            box["error"] = e

    t = threading.Thread(target=make)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["sock"]


def receive_all(listener, result):
    """Accept one connection and hash what it sends until EOF."""
    try:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(120)
            h, n = hashlib.md5(), 0
            while True:
                b = conn.recv(65536)
                if not b:
                    break
                h.update(b)
                n += len(b)
        result["md5"], result["bytes"] = h.hexdigest(), n
    except OSError as e:
        result["error"] = e


def send_to_guest(ns, addr, data, timeout=120):
    """Connect (the guest may not listen yet), send everything, close."""
    deadline = time.monotonic() + timeout
    while True:
        s = ns_socket(ns)
        s.settimeout(10)
        try:
            s.connect(addr)
            break
        except OSError:
            s.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    with s:
        s.settimeout(120)
        s.sendall(data)


def test_tap_ping_and_transfer(ember, images, netns):
    payload = os.urandom(1 << 20)
    in_ns = ["ip", "netns", "exec", netns]
    listener = ns_socket(netns)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("192.168.77.1", 5001))
    listener.listen(1)
    listener.settimeout(300)
    received = {}
    receiver = threading.Thread(target=receive_all, args=(listener, received), daemon=True)
    receiver.start()
    script = ("ip link set lo up; ip addr add 192.168.77.2/24 dev eth0; ip link set eth0 up; "
              "ping -c 3 -W 5 192.168.77.1 || exit 3; echo GUEST-PING-OK; "
              "nc -l -p 5000 > /tmp/rx || exit 4; md5sum /tmp/rx; "
              "dd if=/dev/urandom of=/tmp/tx bs=1024 count=1024 2>/dev/null; md5sum /tmp/tx; "
              "nc 192.168.77.1 5001 < /tmp/tx || exit 5; echo GUEST-DONE")
    g = Guest(boot_args(ember, images, "tap=tap0", script), prefix=in_ns)
    try:
        g.wait_for("^GUEST-PING-OK$", timeout=180)
        ping = subprocess.run([*in_ns, *PING, "-c", "3", "-W", "5", "192.168.77.2"],
                              capture_output=True, text=True, timeout=60)
        assert ping.returncode == 0, (ping.stdout, ping.stderr, g)

        send_to_guest(netns, ("192.168.77.2", 5000), payload)
        rx = g.wait_for(r"^([0-9a-f]{32})  /tmp/rx$", timeout=120).group(1)
        assert rx == hashlib.md5(payload).hexdigest(), g

        tx = g.wait_for(r"^([0-9a-f]{32})  /tmp/tx$", timeout=120).group(1)
        receiver.join(timeout=120)
        assert received.get("md5") == tx and received.get("bytes") == 1 << 20, (received, g)
        g.wait_for("^GUEST-DONE$", timeout=60)
        assert g.finish() == 0, g
    finally:
        g.kill()
        listener.close()


def test_tap_fd_that_is_not_a_tap(ember, images):
    r, w = os.pipe()
    try:
        cp = subprocess.run([str(ember), "run", "--kernel", str(images / "bzImage"), "--net",
                             f"tap-fd={r}"], pass_fds=(r,), stdin=subprocess.DEVNULL,
                            capture_output=True, timeout=120)
    finally:
        os.close(r)
        os.close(w)
    err = cp.stderr.decode(errors="replace")
    assert cp.returncode == EXIT_USAGE, err
    assert f"--net tap-fd={r}" in err and "not an attached TAP" in err, err
