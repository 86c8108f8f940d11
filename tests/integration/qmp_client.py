"""A small QMP client (standard library only) for ember's control socket tests.

ember sends one JSON message per line; replies come in request order, events any time.
"""
import json
import os
import socket
import time


class QMPError(Exception):
    def __init__(self, error):
        super().__init__(f"{error.get('class')}: {error.get('desc')}")
        self.cls = error.get("class")
        self.desc = error.get("desc")


class QMP:
    def __init__(self, path, negotiate=True, timeout=60):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))
        self.buf = b""
        self.events = []
        self.greeting = self.recv()
        if negotiate:
            self.cmd("qmp_capabilities")

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send_raw(self, data: bytes):
        self.sock.sendall(data)

    def recv(self, timeout=None):
        """The next message (reply, error or event); None at EOF."""
        if timeout is not None:
            self.sock.settimeout(timeout)
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def reply(self, timeout=None):
        """The next reply or error, keeping events seen on the way in self.events."""
        while True:
            msg = self.recv(timeout)
            if msg is None:
                raise EOFError("ember closed the control socket")
            if "event" in msg:
                self.events.append(msg)
                continue
            return msg

    def execute(self, name, arguments=None, id=None, timeout=None):
        """Send a command and return its raw reply message."""
        msg = {"execute": name}
        if arguments is not None:
            msg["arguments"] = arguments
        if id is not None:
            msg["id"] = id
        self.send_raw(json.dumps(msg).encode() + b"\n")
        return self.reply(timeout)

    def cmd(self, name, arguments=None, timeout=None, **kw):
        """Run a command; its "return" value, or QMPError."""
        args = dict(arguments or {}, **kw) if (arguments or kw) else None
        r = self.execute(name, args, timeout=timeout)
        if "error" in r:
            raise QMPError(r["error"])
        return r["return"]

    def wait_event(self, name, timeout=120):
        """The first event called name (already seen ones first)."""
        deadline = time.monotonic() + timeout
        while True:
            for i, e in enumerate(self.events):
                if e["event"] == name:
                    return self.events.pop(i)
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {name} event within {timeout} s; saw {self.events}")
            msg = self.recv(left)
            if msg is None:
                raise EOFError(f"ember closed the control socket before {name}; saw {self.events}")
            if "event" in msg:
                self.events.append(msg)


def wait_for_socket(path, proc=None, timeout=30):
    """Wait until ember listens at path (or fail if it exited)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"ember exited with {proc.returncode} before listening")
        if os.path.exists(path):
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.connect(str(path))
                    return
            except OSError:
                pass
        time.sleep(0.02)
    raise TimeoutError(f"ember did not listen on {path}")
