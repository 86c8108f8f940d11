#!/usr/bin/python3
# Run it where KVM works: tests/kvmhost/run -- tests/bench/exec_vs_qemu.py [RUNS]
"""`ember exec -- true` vs QEMU microvm doing the same job (same bzImage + initramfs, `-- true`,
power off), interleaved; plus ember's RSS during an exec."""
import os, statistics, subprocess, sys, time
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IMG = ROOT + "/guest-images/out"
EMBER = [ROOT + "/build/ember", "exec", "--", "true"]
QEMU = ["qemu-system-x86_64", "-M", "microvm,isa-serial=on,rtc=off", "-accel", "kvm", "-cpu", "host",
        "-m", "256", "-smp", "1", "-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
        "-serial", "stdio", "-kernel", IMG + "/bzImage", "-initrd", IMG + "/initramfs.cpio.gz",
        "-append", "console=ttyS0 reboot=k panic=1 quiet -- true"]
N = int(sys.argv[1]) if len(sys.argv) > 1 else 20
def one(cmd):
    t = time.monotonic()
    cp = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return time.monotonic() - t, cp.returncode
e, q = [], []
for i in range(N):
    t, rc = one(EMBER); e.append(t); assert rc == 0, rc
    t, rc = one(QEMU); q.append(t)
    print(f"run {i}: ember {e[-1]:.2f}s qemu {q[-1]:.2f}s (rc {rc})", flush=True)
print(f"ember exec -- true: median {statistics.median(e):.2f}s min {min(e):.2f} max {max(e):.2f}")
print(f"qemu microvm true:  median {statistics.median(q):.2f}s min {min(q):.2f} max {max(q):.2f}")
# RSS: a command that stays up; sample the jailed ember and its supervisor.
p = subprocess.Popen([ROOT + "/build/ember", "exec", "--", "sh", "-c", "sleep 8"],
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
time.sleep(1)
best = {}
deadline = time.monotonic() + 60
while p.poll() is None and time.monotonic() < deadline:
    kids = open(f"/proc/{p.pid}/task/{p.pid}/children").read().split()
    for pid, name in [(p.pid, "supervisor")] + [(int(k), "jailed ember") for k in kids]:
        try:
            st = dict(l.split(":", 1) for l in open(f"/proc/{pid}/status"))
            rss = int(st["VmRSS"].split()[0])
            if rss > best.get(name, (0,))[0]:
                best[name] = (rss, st["RssAnon"].strip(), st["RssFile"].strip())
        except (OSError, KeyError):
            pass
    time.sleep(0.2)
p.wait()
for name, (rss, anon, f) in best.items():
    print(f"peak RSS {name}: {rss} kB (anon {anon}, file {f})")
