#!/usr/bin/env python3
"""Start the kvmhost test host (QEMU) and relay the command's output and input.

Called by tests/kvmhost/run; not meant to be used by hand.

    launch.py --timeout S --log CONSOLE_LOG --cleanup JOBDIR --tty-file F
              -- qemu-system-x86_64 ARGS...
    launch.py --direct --timeout S -- CMD ARGS...

The command's stdout and stderr arrive on two virtio-serial ports whose QEMU
chardevs write into pipes read here and copied, as they come, to our own
stdout and stderr.  Our stdin goes the other way over a socketpair to the
port "kvmhost.in" (the command's stdin); our EOF shuts the socket down,
which the test host sees as EOF on the port.  A third port carries a tiny
line protocol (see init): the test host announces "DONE <status> <stdout
bytes> <stderr bytes>"; once that many bytes arrived here we answer "ACK"
and the test host powers off, so the tail of the output is never lost.
Exit status: the command's, 124 on timeout, 125 when the test host failed,
128+n on signal n.

Terminal mode: when our stdin and stdout are a terminal whose foreground we
are, we write its size into the --tty-file, and the test host runs the
command on a pseudo-terminal (pty.py).  From READY on our terminal is raw,
so every key reaches the command as it is; it is restored on every way out.
A terminal on stdin without terminal mode is not read: the command's stdin
is empty, as /dev/null.
"""

import atexit
import ctypes
import errno
import fcntl
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import shutil
import termios
import time
import tty

T0 = time.monotonic()
VERBOSE = os.environ.get("EMBER_KVMHOST_VERBOSE", "") not in ("", "0")

qemu = None
log_path = None
keep_log = False
cleanup_dir = None
scratch_tmp = None
qemu_log = None
child = None
tty_saved = None      # our terminal's settings while we hold it raw


def say(msg):
    end = "\r\n" if tty_saved is not None else "\n"   # raw: no \n -> \r\n
    try:
        os.write(2, ("kvmhost: %s%s" % (msg, end)).encode(errors="replace"))
    except OSError:
        pass


def restore_tty():
    """Give the terminal back as we found it (any way out; idempotent)."""
    global tty_saved
    if tty_saved is not None:
        # Even from the background (someone stopped us and ran bg).
        signal.signal(signal.SIGTTOU, signal.SIG_IGN)
        try:
            termios.tcsetattr(0, termios.TCSADRAIN, tty_saved)
        except termios.error:
            pass
        tty_saved = None


atexit.register(restore_tty)


def kill_qemu():
    global qemu
    if qemu is not None and qemu.poll() is None:
        try:
            qemu.kill()
        except OSError:
            pass
        try:
            qemu.wait(timeout=10)
        except Exception:
            pass


def finish(code, msg=None, show_log=False):
    kill_qemu()
    restore_tty()
    if msg:
        if show_log:
            try:
                with open(qemu_log, "rb") as f:
                    lines = f.read().decode(errors="replace").strip().splitlines()
                if lines:
                    msg += "; QEMU said: %s" % lines[-1]
            except (OSError, TypeError):
                pass
            msg += " (test host console log: %s)" % log_path
        say(msg)
    remove_empty_scratch()
    # The job dir holds the console log: keep it when it is worth reading.
    if cleanup_dir and not show_log and not keep_log:
        shutil.rmtree(cleanup_dir, ignore_errors=True)
    os._exit(code)


def remove_empty_scratch():
    """A scratch dir that run made itself and that stayed empty is removed."""
    if scratch_tmp:
        try:
            os.rmdir(scratch_tmp)
        except OSError:
            pass


def on_signal(signum, _frame):
    finish(128 + signum)


booted = False


def on_timeout(_signum, _frame):
    if booted:
        finish(124, "timeout: the command did not finish within %s s, killed the test host"
               % fmt(TIMEOUT), show_log=True)
    finish(124, "timeout: the test host did not start the command within %s s"
           % fmt(BOOT_TIMEOUT), show_log=True)


lockup_seen = 0   # bytes of the console log already looked at
log_alive_at = time.monotonic()  # when the console log last grew (init logs "alive" every 15 s)
log_size = 0
# Console silence (s) that means the test host wedged; init logs a heartbeat every 15 s.
SILENCE = float(os.environ.get("EMBER_KVMHOST_SILENCE") or 90)


def diagnose():
    """Before killing a wedged test host, write what QEMU's threads and the emulated CPUs were
    doing into wedge.txt next to the console log (the job dir is kept)."""
    if qemu is None or qemu.poll() is not None or not log_path:
        return
    out = []
    task = "/proc/%d/task" % qemu.pid
    for _ in range(2):
        try:
            for t in sorted(os.listdir(task), key=int):
                with open("%s/%s/stat" % (task, t)) as f:
                    st = f.read()
                with open("%s/%s/comm" % (task, t)) as f:
                    comm = f.read().strip()
                rest = st[st.rindex(")") + 2:].split()
                out.append("thread %s %-16s state %s utime %s stime %s"
                           % (t, comm, rest[0], rest[11], rest[12]))
        except (OSError, ValueError):
            pass
        out.append("")
        time.sleep(1)
    sock_path = os.path.join(os.path.dirname(log_path), "monitor.sock")
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        s.connect(sock_path)
        s.sendall(b"info cpus\ninfo registers -a\ninfo registers -a\n")
        end = time.monotonic() + 8
        data = b""
        while time.monotonic() < end:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            data += chunk
        s.close()
        text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", data.decode(errors="replace"))
        out.extend(line for line in text.splitlines()
                   if not re.match(r"(\(qemu\)|FPR|YMM|XMM|FCW|DR[0-7])", line))
    except OSError as e:
        out.append("monitor %s: %s" % (sock_path, e))
    try:
        with open(os.path.join(os.path.dirname(log_path), "wedge.txt"), "w") as f:
            f.write("\n".join(out))
    except OSError:
        pass


def check_lockup():
    """Nested KVM under TCG can wedge the test host for good (its watchdog then reports CPUs
    stuck for minutes): give up on it rather than wait for the time limit."""
    global lockup_seen, log_alive_at, log_size
    try:
        with open(log_path, "rb") as f:
            f.seek(lockup_seen)
            text = f.read()
    except OSError:
        return
    now = time.monotonic()
    if lockup_seen + len(text) != log_size:
        log_size = lockup_seen + len(text)
        log_alive_at = now
    elif booted and now - log_alive_at > SILENCE:
        diagnose()
        finish(125, "the test host stopped responding (no heartbeat on its console for %d s: "
               "nested KVM under TCG wedged, not the command); killed it"
               % (now - log_alive_at), show_log=True)
    cut = text.rfind(b"\n") + 1
    lockup_seen += cut
    for m in re.finditer(rb"soft lockup - CPU#\d+ stuck for (\d+)s", text[:cut]):
        if int(m.group(1)) >= 120:
            diagnose()
            finish(125, "the test host locked up (its CPUs stuck for %s s: a hang of nested "
                   "KVM under TCG emulation, not of the command); killed it"
                   % m.group(1).decode(), show_log=True)


def fmt(secs):
    return ("%.1f" % secs).rstrip("0").rstrip(".")


def set_pdeathsig():
    # QEMU dies with us even if we are SIGKILLed.
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass
    # Ignore the terminal's ^C in QEMU: we handle it and kill QEMU ourselves.
    os.setpgrp()


def write_all(fd, data):
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def watch(sel, fd, events, data):
    """Keep fd registered in sel for exactly these events (0: not at all)."""
    key = sel.get_map().get(fd)
    if key and not events:
        sel.unregister(fd)
    elif not key and events:
        sel.register(fd, events, data)
    elif key and key.events != events:
        sel.modify(fd, events, data)


def in_foreground(fd):
    """fd is a terminal whose foreground process group is ours."""
    try:
        return os.tcgetpgrp(fd) == os.getpgrp()
    except OSError:
        return False


def descendants(pid):
    """pid and all its descendants (best effort, from /proc)."""
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d, "rb") as f:
                st = f.read()
            ppid = int(st[st.rindex(b")") + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        kids.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def kill_tree(pid, sig):
    for p in descendants(pid):
        try:
            os.kill(p, sig)
        except OSError:
            pass


def run_direct(cmd, env=None):
    """Run CMD here, with the time limit; CMD stays in our process group so
    that the terminal's ^C reaches it as usual."""
    global child

    def forward(signum, _frame):
        if child is not None:
            try:
                child.send_signal(signum)
            except OSError:
                pass

    state = {"doomed": None}

    def expire(_signum, _frame):
        if state["doomed"] is None:
            say("timeout: the command did not finish within %s s, killed it" % fmt(TIMEOUT))
            state["doomed"] = descendants(child.pid)
            for p in state["doomed"]:
                try:
                    os.kill(p, signal.SIGTERM)
                except OSError:
                    pass
            signal.setitimer(signal.ITIMER_REAL, 5)   # then SIGKILL
        else:
            for p in state["doomed"] + descendants(child.pid):
                try:
                    os.kill(p, signal.SIGKILL)
                except OSError:
                    pass

    # ^C and ^\ go to the whole foreground process group: let CMD decide.
    # (A no-op handler, not SIG_IGN, so that CMD does not inherit "ignored".)
    signal.signal(signal.SIGINT, lambda *_: None)
    signal.signal(signal.SIGQUIT, lambda *_: None)
    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGHUP, forward)
    try:
        if env is not None:
            path = env.get(b"PATH", b"").decode(errors="surrogateescape")
            exe = shutil.which(cmd[0], path=path) or cmd[0]
            env[b"_"] = os.fsencode(exe)
            child = subprocess.Popen([exe] + cmd[1:], env=env)
        else:
            child = subprocess.Popen(cmd)
    except FileNotFoundError:
        say("%s: command not found" % cmd[0])
        return 127
    except OSError as e:
        say("%s: %s" % (cmd[0], e))
        return 126
    signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, TIMEOUT)
    while True:
        try:
            rc = child.wait()
            break
        except InterruptedError:
            continue
    signal.setitimer(signal.ITIMER_REAL, 0)
    if state["doomed"] is not None:
        for p in state["doomed"]:
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        return 124
    return 128 - rc if rc < 0 else rc


def main():
    global qemu, log_path, TIMEOUT, BOOT_TIMEOUT, keep_log, cleanup_dir, booted, scratch_tmp
    global tty_saved
    BOOT_TIMEOUT = float(os.environ.get("EMBER_KVMHOST_BOOT_TIMEOUT") or 300)
    args = sys.argv[1:]
    direct = False
    env = None
    tty_file = None
    TIMEOUT = 3600.0
    while args and args[0] != "--":
        if args[0] == "--timeout":
            TIMEOUT = float(args[1])
            args = args[2:]
        elif args[0] == "--log":
            log_path = args[1]
            args = args[2:]
        elif args[0] == "--cleanup":
            cleanup_dir = args[1]
            args = args[2:]
        elif args[0] == "--tty-file":
            tty_file = args[1]
            args = args[2:]
        elif args[0] == "--scratch-tmp":
            scratch_tmp = args[1]
            args = args[2:]
        elif args[0] == "--env-fd":
            with os.fdopen(int(args[1]), "rb") as f:
                env_blob = f.read()
            env = {}
            for item in env_blob.split(b"\0"):
                if b"=" in item:
                    k, v = item.split(b"=", 1)
                    env[k] = v
            env.pop(b"_", None)
            args = args[2:]
        elif args[0] == "--direct":
            direct = True
            args = args[1:]
        else:
            say("launch.py: bad argument %r" % args[0])
            return 125
    if direct:
        rc = run_direct(args[1:], env)
        remove_empty_scratch()
        return rc
    qemu_argv = args[1:]
    keep_log = os.environ.get("EMBER_KVMHOST_KEEP_LOG", "") not in ("", "0")

    # Terminal mode (see the top).  run gave us /dev/null for a closed stdin.
    stdin_tty = os.isatty(0)
    terminal = (tty_file and stdin_tty and os.isatty(1) and in_foreground(0)
                and os.environ.get("EMBER_KVMHOST_TTY", "") != "0")
    if terminal:
        try:
            size = os.get_terminal_size(1)
            with open(tty_file, "w") as f:
                f.write("%d %d\n" % (size.lines or 24, size.columns or 80))
        except OSError as e:
            finish(125, "cannot write %s: %s" % (tty_file, e))

    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(s, on_signal)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    signal.signal(signal.SIGALRM, on_timeout)
    # Booting has its own limit; --timeout counts from the command's start.
    signal.setitimer(signal.ITIMER_REAL, BOOT_TIMEOUT)

    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    ctl_ours, ctl_qemu = socket.socketpair()   # the control port, both ways
    ctl_r = ctl_w_ours = ctl_ours.fileno()
    ctl_q = ctl_qemu.fileno()
    in_ours, in_qemu = socket.socketpair()     # our stdin -> kvmhost.in
    in_ours.setblocking(False)
    in_w, in_q = in_ours.fileno(), in_qemu.fileno()
    for fd in (out_r, err_r):
        try:
            fcntl.fcntl(fd, 1031, 1 << 20)  # F_SETPIPE_SZ: fewer stalls
        except OSError:
            pass
    qemu_argv += [
        "-add-fd", "fd=%d,set=1" % out_w,
        "-add-fd", "fd=%d,set=2" % err_w,
        "-chardev", "file,id=kvout,path=/dev/fdset/1,append=on",
        "-chardev", "file,id=kverr,path=/dev/fdset/2,append=on",
        "-chardev", "socket,id=kvctl,fd=%d" % ctl_q,
        "-chardev", "socket,id=kvin,fd=%d" % in_q,
        "-device", "virtio-serial-pci,id=kvser",
        "-device", "virtserialport,bus=kvser.0,chardev=kvout,name=kvmhost.out",
        "-device", "virtserialport,bus=kvser.0,chardev=kverr,name=kvmhost.err",
        "-device", "virtserialport,bus=kvser.0,chardev=kvctl,name=kvmhost.ctl",
        "-device", "virtserialport,bus=kvser.0,chardev=kvin,name=kvmhost.in",
    ]
    # QEMU's own messages must not mix with the command's stderr.
    global qemu_log
    qemu_log = os.path.join(os.path.dirname(log_path), "qemu.log")
    try:
        with open(qemu_log, "wb") as qlog:
            qemu = subprocess.Popen(qemu_argv, stdin=subprocess.DEVNULL,
                                    stdout=qlog, stderr=qlog,
                                    pass_fds=(out_w, err_w, ctl_q, in_q),
                                    preexec_fn=set_pdeathsig)
    except OSError as e:
        finish(125, "could not start %s: %s" % (qemu_argv[0], e))
    for fd in (out_w, err_w):
        os.close(fd)
    ctl_qemu.close()
    in_qemu.close()

    sel = selectors.PollSelector()   # unlike epoll, poll() takes files and /dev/null
    sel.register(out_r, selectors.EVENT_READ, 1)
    sel.register(err_r, selectors.EVENT_READ, 2)
    sel.register(ctl_r, selectors.EVENT_READ, 0)
    from_qemu = {out_r, err_r, ctl_r}   # we go on while one of them is open
    got = {1: 0, 2: 0}
    ctl_buf = b""
    done = None           # (status, out bytes, err bytes)
    acked = False
    failure = None
    ready_at = None
    # Our stdin: a chunk is read only once the socket took the last one, so
    # a command that does not read its stdin just leaves ours unread.  EOF
    # goes on only after READY: init waits for the port to be connected
    # before that (a port whose host side is gone reads as EOF, too).
    in_eof = stdin_tty and not terminal   # such a terminal is not read at all
    in_buf = b""          # read from stdin, not yet taken by the socket
    in_open = True        # the socket is there (no EOF sent, QEMU alive)

    while from_qemu:
        # In terminal mode, the keys go to the command once it runs (raw).
        watch(sel, 0, selectors.EVENT_READ if in_open and not in_eof and not in_buf
              and (booted or not terminal) else 0, "in")
        watch(sel, in_w, selectors.EVENT_WRITE if in_open and in_buf else 0, "sock")
        if in_open and in_eof and not in_buf and booted:
            try:
                in_ours.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            in_open = False
        events = sel.select(5)
        if not events:
            check_lockup()
        for key, _ in events:
            fd, what = key.fd, key.data
            if what == "in":
                try:
                    in_buf = os.read(0, 1 << 16)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    in_buf = b""
                in_eof = not in_buf
                continue
            if what == "sock":
                try:
                    in_buf = in_buf[in_ours.send(in_buf):]
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError:   # QEMU is gone
                    in_open, in_buf = False, b""
                continue
            try:
                data = os.read(fd, 1 << 20)
            except OSError as e:
                if e.errno == errno.EINTR:
                    continue
                raise
            if not data:
                sel.unregister(fd)
                from_qemu.discard(fd)
                continue
            if what:
                got[what] += len(data)
                try:
                    write_all(what, data)
                except OSError as e:
                    if e.errno == errno.EPIPE:
                        # Like the command getting SIGPIPE.
                        finish(128 + signal.SIGPIPE)
                    raise
            else:
                ctl_buf += data
                while b"\n" in ctl_buf:
                    line, ctl_buf = ctl_buf.split(b"\n", 1)
                    words = line.decode(errors="replace").split()
                    if not words:
                        continue
                    if words[0] == "READY":
                        booted = True
                        if terminal:
                            try:   # TCSANOW: keys typed during the boot stay
                                saved = termios.tcgetattr(0)
                                tty.setraw(0, termios.TCSANOW)
                                tty_saved = saved
                            except termios.error:
                                pass
                        signal.setitimer(signal.ITIMER_REAL, TIMEOUT)
                        ready_at = time.monotonic()
                        if VERBOSE:
                            say("test host ready after %.1f s" % (ready_at - T0))
                    elif words[0] == "DONE" and len(words) == 4:
                        done = tuple(int(w) for w in words[1:])
                    elif words[0] == "ERR":
                        failure = " ".join(words[1:])
                        finish(125, "test host setup failed: %s" % failure,
                               show_log=True)
            if done and not acked and got[1] >= done[1] and got[2] >= done[2]:
                try:
                    write_all(ctl_w_ours, b"ACK\n")
                except OSError:
                    pass
                acked = True
                end_at = time.monotonic()
                if VERBOSE:
                    say("command finished after %.1f s (%.1f s in the test host)"
                        % (end_at - T0, end_at - (ready_at or T0)))
                # Do not wait long for the power-off: the output is all here.
                signal.setitimer(signal.ITIMER_REAL, 0)
                poweroff_deadline = time.monotonic() + 10
                try:
                    qemu.wait(timeout=max(0.1, poweroff_deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
                kill_qemu()
                # Drain what is left (nothing, normally) without blocking.
                for k in list(sel.get_map().values()):
                    if k.data in (1, 2):
                        os.set_blocking(k.fd, False)
                        try:
                            while True:
                                d = os.read(k.fd, 1 << 20)
                                if not d:
                                    break
                                write_all(k.data, d)
                        except (BlockingIOError, OSError):
                            pass
                finish(done[0])

    # All pipes closed: QEMU is gone without a DONE.
    rc = qemu.wait()
    if done is None:
        finish(125, "the test host stopped before the command finished "
               "(QEMU exit status %d)" % rc, show_log=True)
    finish(done[0])


if __name__ == "__main__":
    sys.exit(main())
