#!/usr/bin/env python3
"""Boot benchmark: ember vs QEMU microvm, same kernel, initramfs, vCPUs, memory, devices and
kernel command line (ember's defaults; QEMU gets the same devices and ember's default command line).

Runs interleaved (ember, QEMU, ember, ...) and prints medians, min and max of:
  * process start -> EMBER-INIT-READY on the console (wall, measured here);
  * the guest kernel's own uptime when the command after init runs (/proc/uptime);
  * for ember: exec -> first KVM_RUN (wall and CPU, from --boot-timer);
  * RSS beyond guest memory after boot (sum of every mapping that is not guest RAM);
  * console bytes before EMBER-INIT-READY (each costs two port exits until init opens the tty).
Needs KVM that runs standard guests: run it through tests/kvmhost/run.
Usage: tests/bench/boot.py [--runs N] [--cpus N] [--memory MiB] [--json FILE]
"""
import argparse
import json
import os
import pathlib
import re
import select
import signal
import statistics
import subprocess
import tempfile
import time

import kvmtrace

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("EMBER_BUILD_DIR", ROOT / "build"))
IMAGES = pathlib.Path(os.environ.get("EMBER_IMAGES_DIR", ROOT / "guest-images" / "out"))
GUEST = ["sh", "-c", "cat /proc/uptime; sleep 1"]
# The same machine for both VMMs: COM1 as the console, one virtio-rng (virtio-mmio, described in
# the ACPI DSDT), pvpanic (ACPI QEMU0001) and the ACPI GED power button, 4 KiB pages, no PCI.
DEVICES = "COM1 serial console, virtio-rng (virtio-mmio in the DSDT), pvpanic, ACPI GED"


def fair_cmdline():
    """ember's default kernel command line (from `ember run --help`): QEMU gets exactly this."""
    h = subprocess.run([str(BUILD / "ember"), "run", "--help"], capture_output=True, text=True)
    m = re.search(r"^Default kernel command line: (.*)$", h.stdout + h.stderr, re.M)
    if not m:
        raise SystemExit("tests/bench/boot.py: `ember run --help` names no default kernel command line")
    return m.group(1).strip()


def ember_cmd(cpus, mem, guest=GUEST, cmdline="", timer=True, binary=None):
    """ember with its defaults (the devices of DEVICES, its default command line) plus cmdline."""
    return [str(binary or BUILD / "ember"), "run", *(["--boot-timer"] if timer else []), "--cpus", str(cpus),
            "--memory", f"{mem}M", "--kernel", str(IMAGES / "bzImage"),
            "--initrd", str(IMAGES / "initramfs.cpio.gz"), *(["--cmdline", cmdline] if cmdline else []),
            "--", *guest]


def qemu_cmd(cpus, mem, guest=GUEST, cmdline=""):
    """QEMU microvm with ember's devices and ember's default command line plus cmdline."""
    append = " ".join(x for x in (fair_cmdline(), cmdline) if x)
    append += " -- " + " ".join(a if " " not in a else f'"{a}"' for a in guest)
    return ["qemu-system-x86_64", "-M", "microvm,isa-serial=on,rtc=off", "-accel", "kvm", "-cpu", "host",
            "-m", str(mem), "-smp", str(cpus), "-nodefaults", "-no-user-config", "-nographic",
            "-no-reboot", "-serial", "stdio", "-global", "virtio-mmio.force-legacy=false",
            "-device", "virtio-rng-device", "-device", "pvpanic",
            "-kernel", str(IMAGES / "bzImage"), "-initrd", str(IMAGES / "initramfs.cpio.gz"), "-append", append]


def rss_beyond_guest(pid, guest_bytes, field="Rss"):
    """Sum a smaps field (Rss; or with field="Private_" Private_Clean+Private_Dirty) over every
    mapping except the guest RAM mapping(s) (sized like guest RAM), in MiB."""
    total, size = 0, 0
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            m = re.match(r"^([0-9a-f]+)-([0-9a-f]+) ", line)
            if m:
                size = int(m.group(2), 16) - int(m.group(1), 16)
            elif line.startswith(field) and size < guest_bytes:
                total += int(line.split()[1])
    return total / 1024.0


def instructions_to_vcpu(cmd):
    """User-space instructions cmd (an ember command line) runs from exec until its first
    vCPU thread starts, counted by callgrind; None when that cannot be measured."""
    with tempfile.TemporaryDirectory() as d:
        try:
            subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={d}/cg.out",
                            "--dump-before=vcpu_thread", *cmd],
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=300)
        except (OSError, subprocess.TimeoutExpired):
            return None
        for f in sorted(pathlib.Path(d).glob("cg.out*")):
            if f.name.endswith(".1"):  # the dump taken when vcpu_thread was entered
                m = re.search(r"^(?:summary|totals): (\d+)", f.read_text(), re.M)
                return int(m.group(1)) if m else None
    return None


def one(cmd, mem, trace=None, keep_output=False, timeout=300):
    """Boot once. With a kvmtrace.Trace: also KVM's exits until init (summary) and the VM's
    debugfs counters at init (pages_4k, pages_2m, pf_fixed, ...)."""
    if trace:
        trace.arm()
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, ready, rss, private, kvm = b"", None, None, None, None
    deadline = t0 + timeout
    while time.monotonic() < deadline:
        r, _, _ = select.select([p.stdout], [], [], 1)
        if not r:
            continue
        chunk = os.read(p.stdout.fileno(), 65536)
        if not chunk:
            break
        out += chunk
        if ready is None and b"EMBER-INIT-READY" in out:
            ready = time.monotonic() - t0
            if trace:
                kvm = kvmtrace.vm_stats(p.pid)
        if rss is None and ready is not None and re.search(rb"\n\d+\.\d+ \d+\.\d+", out):
            rss = rss_beyond_guest(p.pid, mem << 20)
            private = rss_beyond_guest(p.pid, mem << 20, "Private_")
    try:
        p.wait(timeout=60 if ready is not None else 1)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
    err = p.stderr.read().decode(errors="replace")
    up = re.search(rb"\n(\d+\.\d+) \d+\.\d+", out)
    first = re.search(r"first KVM_RUN ([0-9.]+) ms after ember started \(([0-9.]+) ms", err)
    res = {"ready_s": ready, "uptime_s": float(up.group(1)) if up else None, "rss_mib": rss,
           "private_mib": private,
           "console_bytes": len(out.split(b"EMBER-INIT-READY")[0]) if ready is not None else None,
           "first_run_ms": float(first.group(1)) if first else None,
           "first_run_cpu_ms": float(first.group(2)) if first else None, "exit": p.returncode}
    if trace:
        res["trace"] = trace.summary()
        res["kvm_at_init"] = kvm
        res["exits"] = res["trace"]["exits"] if res["trace"]["reached_init"] else None
        res["pages_4k"], res["pages_2m"] = ((kvm or {}).get(k) for k in ("pages_4k", "pages_2m"))
    if keep_output:
        res["output"] = out.decode(errors="replace")
        res["stderr"] = err
    return res


def kill_groups(procs):
    """SIGKILL each process's group (started with start_new_session) and reap it."""
    for p in procs:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for p in procs:
        p.wait()


def stats(vals):
    vals = [v for v in vals if v is not None]
    if not vals:
        return "n/a"
    return f"{statistics.median(vals):.3f} (min {min(vals):.3f}, max {max(vals):.3f}, n={len(vals)})"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--cpus", type=int, default=1)
    ap.add_argument("--memory", type=int, default=128)
    ap.add_argument("--json")
    a = ap.parse_args()
    res = {"ember": [], "qemu": []}
    for i in range(a.runs):
        res["ember"].append(one(ember_cmd(a.cpus, a.memory), a.memory))
        res["qemu"].append(one(qemu_cmd(a.cpus, a.memory), a.memory))
        print(f"run {i + 1}: ember {res['ember'][-1]}  qemu {res['qemu'][-1]}", flush=True)
    print(f"\n{a.cpus} vCPU / {a.memory} MiB, {a.runs} interleaved runs; medians (min, max)")
    for key, label in [("ready_s", "process start -> EMBER-INIT-READY (s)"),
                       ("uptime_s", "guest kernel uptime at init (s)"),
                       ("rss_mib", "RSS beyond guest memory (MiB)"),
                       ("console_bytes", "console bytes before init"),
                       ("private_mib", "private memory beyond guest memory (MiB)"),
                       ("first_run_ms", "exec -> first KVM_RUN, wall (ms)"),
                       ("first_run_cpu_ms", "exec -> first KVM_RUN, CPU (ms)")]:
        e = [r[key] for r in res["ember"]]
        q = [r[key] for r in res["qemu"]]
        ratio = ""
        if all(v is not None for v in e + q) and q and statistics.median(q):
            ratio = f"  ratio ember/qemu {statistics.median(e) / statistics.median(q):.2f}"
        print(f"  {label}:\n    ember {stats(e)}\n    qemu  {stats(q)}{ratio}")
    if a.json:
        pathlib.Path(a.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
