"""kvmhost terminal mode, in the test host: run CMD on a new pseudo-terminal.

    python3 -I -S pty.py SIZE_FILE -- /ABSOLUTE/CMD ARGS...

init starts it (through the job's pty.sh) with stdin the port kvmhost.in
(the keys of run's terminal, which launch.py holds raw) and stdout the port
kvmhost.out (that terminal's screen).  The pty between does what a terminal
does (echo, line editing, ^C -> SIGINT, \\n -> \\r\\n) until CMD makes it raw.
SIZE_FILE holds "ROWS COLS" of run's terminal.  Exits with CMD's status
(128+n if a signal n killed it) once CMD exited and its output is out.

Built-in modules only: anything else would be read over 9p under TCG.
"""

import os
import select
import sys
from _signal import SIG_DFL, SIGCHLD, SIGINT, SIGPIPE, SIGQUIT, SIGXFSZ, set_wakeup_fd, signal
from _struct import pack
from fcntl import ioctl

TIOCSCTTY = 0x540E  # x86 ioctl numbers (asm-generic/ioctls.h)
TIOCSWINSZ = 0x5414


def main():
    size_file, cmd = sys.argv[1], sys.argv[3:]
    try:
        with open(size_file) as f:
            rows, cols = (int(w) for w in f.read().split()[:2])
    except (OSError, ValueError):
        rows, cols = 24, 80
    master, slave = os.openpty()  # both close-on-exec
    ioctl(slave, TIOCSWINSZ, pack("HHHH", rows, cols, 0, 0))
    wake_r, wake_w = os.pipe()  # SIGCHLD wakes select() up through it
    os.set_blocking(wake_w, False)
    set_wakeup_fd(wake_w)
    signal(SIGCHLD, lambda *_: None)
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()  # a new session with the pty as its terminal
            ioctl(slave, TIOCSCTTY, 0)
            for fd in (0, 1, 2):
                os.dup2(slave, fd)
            # init started us in the background (SIGINT, SIGQUIT ignored),
            # python ignores SIGPIPE and SIGXFSZ: CMD gets the defaults, so
            # that ^C works.
            for sig in (SIGINT, SIGQUIT, SIGPIPE, SIGXFSZ):
                signal(sig, SIG_DFL)
            os.execv(cmd[0], cmd)  # an absolute path (os.execvp imports modules)
        except OSError as e:
            os.write(2, ("kvmhost: %s: %s\n" % (cmd[0], e.strerror)).encode())
        os._exit(127)
    os.close(slave)
    os.set_blocking(master, False)

    keys = b""  # read from stdin, not yet taken by the pty
    stdin_open = True
    status = None  # CMD's exit status once it exited
    while True:
        # stdin is read only when the pty took the last keys (the pty's input
        # queue, not our memory, holds what CMD did not read yet).
        rl = [master, wake_r] + ([0] if stdin_open and not keys and status is None else [])
        # Once CMD exited, its output is in the pty: stop at EIO (nobody else
        # has the pty open) or once it has been quiet a moment (a process
        # CMD left behind holds it).
        r, w, _ = select.select(rl, [master] if keys else [], [], None if status is None else 0.3)
        if not r and not w:
            break
        if wake_r in r:
            os.read(wake_r, 512)
            if status is None:
                got, st = os.waitpid(pid, os.WNOHANG)
                if got == pid:
                    status = os.waitstatus_to_exitcode(st)
        if 0 in r:
            try:
                keys = os.read(0, 65536)
            except OSError:
                keys = b""
            stdin_open = bool(keys)
        if master in w:
            try:
                keys = keys[os.write(master, keys):]
            except BlockingIOError:
                pass
            except OSError:
                keys = b""
        if master in r:
            try:
                data = os.read(master, 65536)
            except BlockingIOError:
                continue
            except OSError:  # EIO: nobody has the pty open any more
                break
            if not data:
                break
            while data:
                data = data[os.write(1, data):]
    if status is None:
        status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    return 128 - status if status < 0 else status


if __name__ == "__main__":
    os._exit(main())  # all written with os.write: skip the interpreter's teardown
