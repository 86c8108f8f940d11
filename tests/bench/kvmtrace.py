"""KVM's own view of a guest boot, read from the host kernel: VM exits by reason until the guest's init.

Counts, not times: the same on every machine for the same guest and VMM, so they show what a
change did even where wall times swing 3x (nested KVM under TCG).

  * Trace: the kvm tracepoints (kvm_exit, kvm_userspace_exit, kvm_pio, kvm_mmio) recorded in
    ftrace's ring buffer from before the VMM starts until the guest's init writes its marker
    byte to physical address 0xC0000000 (ember's initramfs init does that under every VMM;
    the write is an MMIO exit, and a `traceoff` trigger on it stops the recording there).
    summary() counts them: exits by the CPU's exit reason, exits to the VMM (user space) by
    kind, port I/O by port, MMIO by 4 KiB page.
  * vm_stats(pid): the VM's debugfs counters (/sys/kernel/debug/kvm/PID-FD/: pages_4k,
    pages_2m, pf_fixed, exits, halt_exits, ...), read while the VM is alive.

Needs root and a kernel with ftrace and KVM tracepoints (Debian's); mounts debugfs and tracefs
when they are not mounted. Only one VM should run while a trace is armed (the trace is
host-wide).
"""
import collections
import os
import re
import subprocess

INIT_MARKER_GPA = 0xC0000000
DEBUGFS = "/sys/kernel/debug"
EVENTS = ("kvm_exit", "kvm_userspace_exit", "kvm_pio", "kvm_mmio")


def _mount(fstype, path):
    if os.path.ismount(path):
        return True
    return subprocess.run(["mount", "-t", fstype, "nodev", path], capture_output=True).returncode == 0


def tracefs():
    """The tracefs directory, mounted if needed; None when unavailable (not root, no ftrace)."""
    for path, fstype in (("/sys/kernel/tracing", "tracefs"), (DEBUGFS + "/tracing", None)):
        if fstype and not os.path.isdir(path):
            continue
        if fstype:
            _mount(fstype, path)
        else:
            _mount("debugfs", DEBUGFS)
        if os.path.exists(path + "/events/kvm/kvm_exit"):
            return path
    return None


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


class Trace:
    """Records KVM's tracepoints from arm() until the guest's init marker (or stop())."""

    def __init__(self, buffer_kb=65536):
        self.dir = tracefs()
        if not self.dir:
            raise OSError("no tracefs with kvm events (needs root and CONFIG_FTRACE; run in the test host)")
        _mount("debugfs", DEBUGFS)
        self.buffer_kb = buffer_kb

    def arm(self):
        d = self.dir
        _write(f"{d}/tracing_on", "0")
        _write(f"{d}/buffer_size_kb", str(self.buffer_kb))
        _write(f"{d}/trace", "")  # clear
        trig = f"{d}/events/kvm/kvm_mmio/trigger"
        for line in open(trig).read().splitlines():
            if line and not line.startswith("#"):
                _write(trig, "!" + line.split(" if ")[0].split(":")[0] + "\n")
        for e in EVENTS:
            _write(f"{d}/events/kvm/{e}/enable", "1")
        _write(trig, f"traceoff if gpa == {INIT_MARKER_GPA:#x}\n")
        _write(f"{d}/tracing_on", "1")

    def stopped(self):
        """True once the init marker stopped the recording."""
        return open(f"{self.dir}/tracing_on").read().strip() == "0"

    def stop(self):
        _write(f"{self.dir}/tracing_on", "0")

    def disarm(self):
        self.stop()
        d = self.dir
        _write(f"{d}/events/kvm/kvm_mmio/trigger", f"!traceoff if gpa == {INIT_MARKER_GPA:#x}\n")
        for e in EVENTS:
            _write(f"{d}/events/kvm/{e}/enable", "0")
        _write(f"{d}/trace", "")
        _write(f"{d}/buffer_size_kb", "1408")

    def summary(self, pids=None):
        """Counts from the recording (of the threads in pids when given):
        {"exits": total, "by_reason": {reason: n}, "userspace": {kind: n}, "pio": {port: n},
         "mmio": {page: n}, "reached_init": bool, "lost": events dropped by a full buffer}."""
        self.stop()
        by_reason, user, pio, mmio = (collections.Counter() for _ in range(4))
        reached = False
        line_re = re.compile(r"-(\d+)\s+\[\d+\].*?\s(kvm_\w+): (.*)$")
        with open(f"{self.dir}/trace", errors="replace") as f:
            for line in f:
                m = line_re.search(line)
                if not m:
                    continue
                tid, ev, rest = int(m.group(1)), m.group(2), m.group(3)
                if pids is not None and tid not in pids:
                    continue
                if ev == "kvm_exit":
                    r = re.search(r"reason (\S+)", rest)
                    by_reason[r.group(1) if r else "?"] += 1
                elif ev == "kvm_userspace_exit":
                    r = re.match(r"reason (\S+)", rest)
                    user[r.group(1) if r else "?"] += 1
                elif ev == "kvm_pio":
                    r = re.search(r"at (0x[0-9a-f]+)", rest)
                    if r:
                        pio[f"{'in' if rest.startswith('pio_read') else 'out'} {r.group(1)}"] += 1
                elif ev == "kvm_mmio":
                    r = re.search(r"gpa (0x[0-9a-f]+)", rest)
                    if r:
                        gpa = int(r.group(1), 16)
                        if gpa == INIT_MARKER_GPA:
                            reached = True
                        mmio[f"{gpa & ~0xfff:#x}"] += 1
        lost = 0
        try:
            for line in open(f"{self.dir}/per_cpu/cpu0/stats"):
                if line.startswith("overrun:") or line.startswith("dropped events:"):
                    lost += int(line.split(":")[1])
        except OSError:
            pass
        return {"exits": sum(by_reason.values()), "by_reason": dict(by_reason.most_common()),
                "userspace": dict(user.most_common()), "pio": dict(pio.most_common(12)),
                "mmio": dict(mmio.most_common(12)), "reached_init": reached, "lost": lost}


def vm_stats(pid):
    """KVM's debugfs counters of the VM(s) of process pid, summed: {name: value}; {} if none."""
    out = collections.Counter()
    base = f"{DEBUGFS}/kvm"
    try:
        dirs = [d for d in os.listdir(base) if d.startswith(f"{pid}-")]
    except OSError:
        return {}
    for d in dirs:
        for name in os.listdir(f"{base}/{d}"):
            p = f"{base}/{d}/{name}"
            if not os.path.isfile(p):
                continue
            try:
                out[name] += int(open(p).read().split()[0])
            except (OSError, ValueError, IndexError):
                pass
    return dict(out)


def threads(pid):
    """The thread ids of process pid (for Trace.summary's pids)."""
    try:
        return {int(t) for t in os.listdir(f"/proc/{pid}/task")}
    except OSError:
        return set()
