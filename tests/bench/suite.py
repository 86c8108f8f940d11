#!/usr/bin/env python3
"""Every guest benchmark of tests/bench/run, ember and QEMU microvm interleaved (A B A B ...).

Runs where KVM can run standard guests (tests/bench/run starts it through tests/kvmhost/run)
and writes the raw samples as JSON; tests/bench/run turns them into the table. Rows:
  boot-128 / boot-1g   process start -> EMBER-INIT-READY, guest uptime at init, RSS beyond
                       guest RAM, console bytes before init (boot.py), 1 vCPU/128 MiB and
                       2 vCPU/1 GiB; same devices and kernel command line for both VMMs; at
                       least 5 runs each
  exits-128 / exits-1g the same boots with KVM's tracepoints on (kvmtrace.py): VM exits until
                       init by reason, pages mapped 4 KiB / 2 MiB at init (counts, not times)
  startup              exec -> first KVM_RUN (wall from main(), CPU of the whole process) with a
                       tiny guest (tests/guests/status.elf)
  density              N idle 128 MiB VMs started at once: start rate and host memory per VM
  blk / slirp / tap    fio and iperf3 (blknet.py)
  exec                 `ember exec --no-snapshot -- true` end to end (booting), when ember has
                       the exec command
  restore              `ember run --restore` of a ticking 128 MiB guest -> its first tick: wall
                       and ember's CPU (snapshot.py)
  exec-snapshot        `ember exec -- true` from its cached snapshot vs `crun run` of a busybox
                       bundle, interleaved (snapshot.py; the crun samples go on the QEMU side)
  clones               ten clones of an idle 128 MiB guest: host memory (PSS) in all, vs two
                       freshly booted VMs on the QEMU side (snapshot.py)
  oci                  podman + ember-oci vs `ember exec` (restored, booting) vs podman + crun,
                       interleaved; ember-oci's create/start without an engine (oci.py)
Usage: suite.py --out FILE [--runs N] [--quick] [--rows a,b,...]
"""
import argparse
import json
import os
import pathlib
import platform
import re
import select
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import blknet  # noqa: E402
import boot  # noqa: E402
import kvmtrace  # noqa: E402
import oci  # noqa: E402
import snapshot  # noqa: E402

ALL_ROWS = ["boot-128", "boot-1g", "exits-128", "exits-1g", "startup", "blk", "slirp", "tap", "density", "exec",
            "restore", "exec-snapshot", "clones", "oci"]
IDLE = ["sh", "-c", "sleep 100000"]
BOOT_ROWS = (("boot-128", 1, 128), ("boot-1g", 2, 1024))
EXIT_ROWS = (("exits-128", 1, 128), ("exits-1g", 2, 1024))
BOOT_RUNS = 5  # the boot rows' minimum (full bench)
EXIT_RUNS = 3  # exit counts vary little


def meminfo():
    out = {}
    for line in open("/proc/meminfo"):
        k, v = line.split(":", 1)
        out[k] = int(v.split()[0])  # kB
    return out


def loadavg():
    return open("/proc/loadavg").read().split()[:3]


def cpu_model():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def boot_pair(cpus, mem, trace=None):
    """One ember and one QEMU boot, same kernel/initramfs/vCPUs/memory/devices/command line
    (boot.py); with a kvmtrace.Trace, KVM's exits until init too."""
    out = {}
    for vmm, build in (("ember", boot.ember_cmd), ("qemu", boot.qemu_cmd)):
        out[vmm] = boot.one(build(cpus, mem), mem, trace=trace)
    return out


def startup(n):
    """exec -> first KVM_RUN with a tiny guest, n times."""
    elf = boot.BUILD / "tests" / "guests" / "status.elf"
    res = []
    for _ in range(n):
        p = subprocess.run([str(boot.BUILD / "ember"), "run", "--boot-timer", "--kernel", str(elf)],
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
        err = p.stderr.decode(errors="replace")
        m = re.search(r"first KVM_RUN ([0-9.]+) ms after ember started \(([0-9.]+) ms", err)
        res.append({"exit": p.returncode, "wall_ms": float(m.group(1)) if m else None,
                    "cpu_ms": float(m.group(2)) if m else None})
    return res


def startup_instructions():
    """User-space instructions from exec until the first vCPU thread starts (tiny guest),
    counted by callgrind: deterministic, unlike CPU time under nested emulation."""
    elf = boot.BUILD / "tests" / "guests" / "status.elf"
    return boot.instructions_to_vcpu([str(boot.BUILD / "ember"), "run", "--kernel", str(elf)])


def density(vmm, n, timeout):
    """Start n idle 128 MiB VMs at once (bounded by n, free memory and timeout); time until
    all reached init; host memory used per VM (MemAvailable drop, and RSS)."""
    mem = 128
    before = meminfo()
    floor = before["MemTotal"] // 4
    procs, ready, buf = [], {}, {}
    t0 = time.monotonic()
    try:
        for _ in range(n):
            if meminfo()["MemAvailable"] < floor:
                break
            cmd = boot.ember_cmd(1, mem, IDLE, timer=False) if vmm == "ember" else boot.qemu_cmd(1, mem, IDLE)
            p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL, start_new_session=True)
            procs.append(p)
            buf[p.stdout.fileno()] = (p, b"")
        deadline = t0 + timeout
        while len(ready) < len(procs) and time.monotonic() < deadline:
            fds = [fd for fd, (p, _) in buf.items() if p.pid not in ready]
            r, _, _ = select.select(fds, [], [], 1)
            for fd in r:
                p, data = buf[fd]
                chunk = os.read(fd, 65536)
                if not chunk:
                    ready[p.pid] = None  # died
                    continue
                data += chunk
                buf[fd] = (p, data)
                if b"EMBER-INIT-READY" in data:
                    ready[p.pid] = time.monotonic() - t0
        ok = [t for t in ready.values() if t is not None]
        time.sleep(2)  # let the last ones settle
        after = meminfo()
        rss = []
        for p in procs:
            try:
                rss.append(int(re.search(r"VmRSS:\s+(\d+)", open(f"/proc/{p.pid}/status").read()).group(1)))
            except (OSError, AttributeError):
                pass
        started = len(ok)
        return {"asked": n, "launched": len(procs), "started": started,
                "all_ready_s": max(ok) if started == len(procs) and ok else None,
                "rate_per_s": started / max(ok) if ok else None,
                "mem_per_vm_mib": (before["MemAvailable"] - after["MemAvailable"]) / 1024 / started if started else None,
                "rss_per_vm_mib": sum(rss) / 1024 / len(rss) if rss else None,
                "mem_available_mib": before["MemAvailable"] / 1024}
    finally:
        boot.kill_groups(procs)


def exec_row(n):
    ember = str(boot.BUILD / "ember")
    h = subprocess.run([ember, "help"], capture_output=True, text=True)
    if not re.search(r"^\s+exec\b", h.stdout, re.M):
        return {"available": False}
    res = []
    for _ in range(n):
        t0 = time.monotonic()
        p = subprocess.run([ember, "exec", "--no-snapshot", "--", "true"], stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=300)
        res.append({"exit": p.returncode, "wall_s": time.monotonic() - t0,
                    "err": p.stderr.decode(errors="replace")[-300:] if p.returncode else ""})
    return {"available": True, "samples": res}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rows", default=",".join(ALL_ROWS))
    ap.add_argument("--seconds", type=int, default=5, help="fio job / iperf3 test length")
    ap.add_argument("--density", type=int, default=6, help="VMs started at once (per VMM)")
    a = ap.parse_args()
    rows = a.rows.split(",")
    if a.quick:
        a.runs, a.seconds, a.density = 1, 1, 2
    out = pathlib.Path(a.out)
    qv = subprocess.run([blknet.QEMU, "--version"], capture_output=True, text=True).stdout.splitlines()
    res = {"env": {"kernel": platform.release(), "cpus": os.cpu_count(), "cpu": cpu_model(),
                   "mem_mib": meminfo()["MemTotal"] // 1024, "load_start": loadavg(),
                   "qemu": qv[0] if qv else "?", "kvm": "nested" if os.path.exists("/sys/module/kvm_amd") else "?",
                   "runs": a.runs, "seconds": a.seconds, "quick": a.quick,
                   "boot_devices": boot.DEVICES, "boot_cmdline": boot.fair_cmdline()},
           "samples": {}}
    s = res["samples"]

    def save():
        res["env"]["load_end"] = loadavg()
        res["env"]["duration_s"] = round(time.monotonic() - t_start)
        out.write_text(json.dumps(res, indent=1))

    t_start = time.monotonic()
    srv = None
    image = None
    net_rows = [r for r in ("blk", "slirp", "tap") if r in rows]
    if net_rows:
        image = blknet.bench_image()
        srv = blknet.Servers(net_rows, os.environ.get("TMPDIR", "/tmp"))
    boot_runs = a.runs if a.quick else max(a.runs, BOOT_RUNS)
    exit_runs = min(a.runs, EXIT_RUNS)
    res["env"]["boot_runs"], res["env"]["exit_runs"] = boot_runs, exit_runs
    trace = None
    if any(r in rows for r, _, _ in EXIT_ROWS):
        try:
            trace = kvmtrace.Trace()
        except OSError as e:
            print(f"exits rows skipped: {e}", flush=True)
            for row, _, _ in EXIT_ROWS:
                if row in rows:
                    s[row] = {"skipped": str(e)}  # measured only where tracefs is there (root)
    try:
        for i in range(max(a.runs, boot_runs)):
            for row, cpus, mem in BOOT_ROWS + EXIT_ROWS:
                is_exits = row.startswith("exits")
                if row not in rows or i >= (exit_runs if is_exits else boot_runs) or (is_exits and not trace):
                    continue
                pair = boot_pair(cpus, mem, trace if is_exits else None)
                for vmm, r in pair.items():
                    s.setdefault(row, {}).setdefault(vmm, []).append(r)
                brief = {v: {k: x for k, x in r.items() if k not in ("trace", "kvm_at_init")} for v, r in pair.items()}
                print(f"[{time.monotonic() - t_start:6.0f}s] run {i + 1} {row}: {brief}", flush=True)
                save()
            if i >= a.runs:
                continue
            if "startup" in rows:
                r = startup(3)
                if i == 0:  # deterministic: once is enough
                    r[0]["instructions"] = startup_instructions()
                s.setdefault("startup", {}).setdefault("ember", []).extend(r)
                print(f"[{time.monotonic() - t_start:6.0f}s] run {i + 1} startup: {r}", flush=True)
                save()
            for m in net_rows:
                for vmm, build in (("ember", blknet.ember_cmd), ("qemu", blknet.qemu_cmd)):
                    r = blknet.one(build(m, image, srv.data, a.seconds), m, timeout=300 if a.quick else 600)
                    s.setdefault(m, {}).setdefault(vmm, []).append(r)
                    print(f"[{time.monotonic() - t_start:6.0f}s] run {i + 1} {m} {vmm}: {r}", flush=True)
                save()
    finally:
        if srv:
            srv.close()
        if trace:
            trace.disarm()
    if "density" in rows:
        for vmm in ("ember", "qemu"):
            r = density(vmm, a.density, 120 if a.quick else 400)
            s.setdefault("density", {})[vmm] = [r]
            print(f"[{time.monotonic() - t_start:6.0f}s] density {vmm}: {r}", flush=True)
            save()
    if "exec" in rows:
        s["exec"] = exec_row(a.runs)
        print(f"[{time.monotonic() - t_start:6.0f}s] exec: {s['exec']}", flush=True)
        save()
    for row, fn in (("restore", lambda: snapshot.restore_row(a.runs)),
                    ("exec-snapshot", lambda: snapshot.exec_snapshot_row(a.runs)),
                    ("clones", lambda: snapshot.clones_row(10)),
                    ("oci", lambda: oci.oci_row(a.runs))):
        if row in rows:
            s[row] = fn()
            print(f"[{time.monotonic() - t_start:6.0f}s] {row}: {s[row]}", flush=True)
            save()
    save()


if __name__ == "__main__":
    main()
