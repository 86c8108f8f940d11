#!/usr/bin/env python3
"""Block and network benchmarks: fio and iperf3 in the guest, ember vs QEMU microvm.

Both VMMs boot the same kernel and initramfs with the benchmark image (tests/bench/image:
fio, iperf3 and their libraries) as a read-only virtio-blk disk; the guest mounts it and runs
its /bench/guest.sh (tests/bench/guest.sh):
  * blk: a second virtio-blk disk backed by the same raw file for both VMMs (fio, O_DIRECT in
    the guest, libaio, iodepth 16): sequential 1 MiB write and read (MB/s), 4 KiB random
    write and read (IOPS). Both VMMs use buffered I/O on the host file (ember: io_uring;
    QEMU: cache=writeback, aio=threads, its defaults).
  * net: iperf3 guest -> host and host -> guest (-R) to an iperf3 server on this host:
    slirp user networking (server on 127.0.0.1, reached as 10.0.2.2) and TAP (server on the
    TAP's host address; QEMU without vhost-net, which ember has no equivalent of).
Needs KVM that runs standard guests (tests/kvmhost/run) and, for TAP, root.
Usage: tests/bench/blknet.py [--runs N] [--seconds S] [--rows blk,slirp,tap] [--json FILE]
"""
import argparse
import json
import os
import pathlib
import re
import shutil
import statistics
import subprocess
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import boot  # noqa: E402  (paths, the QEMU machine options)

ROOT = boot.ROOT
QEMU = shutil.which("qemu-system-x86_64") or "/usr/bin/qemu-system-x86_64"
MEM = 256
TAP = "embench0"
TAP_HOST, TAP_GUEST = "192.168.213.1", "192.168.213.2"
SLIRP_HOST, SLIRP_GUEST = "10.0.2.2", "10.0.2.15"
# Find the benchmark image among the disks (the data disk is raw and does not mount), run its script.
FIND = ("for d in /dev/vd?; do mount -o ro $d /mnt 2>/dev/null && [ -x /mnt/bench/guest.sh ] && "
        "exec /mnt/bench/guest.sh $d {args}; umount /mnt 2>/dev/null; done; echo BENCH-ERROR no image; exit 99")
# The metrics each mode yields: key -> (label, unit, scale from the guest's number).
METRICS = {
    "blk": {"seqwrite": 1024 / 1e6, "seqread": 1024 / 1e6, "randwrite": None, "randread": None},
    "net": {"g2h": 1 / 1000, "h2g": 1 / 1000},
}


def bench_image():
    out = subprocess.run([str(ROOT / "tests" / "bench" / "image")], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"tests/bench/image failed:\n{out.stderr}")
    return out.stdout.strip().splitlines()[-1]


def guest_args(mode, seconds):
    if mode == "blk":
        return f"blk {seconds}"
    if mode == "slirp":
        return f"net {SLIRP_GUEST} {SLIRP_HOST} {seconds}"
    return f"net {TAP_GUEST} {TAP_HOST} {seconds}"


def ember_cmd(mode, image, data, seconds):
    cmd = [str(boot.BUILD / "ember"), "run", "--cpus", "1", "--memory", f"{MEM}M",
           "--kernel", str(boot.IMAGES / "bzImage"), "--initrd", str(boot.IMAGES / "initramfs.cpio.gz"),
           "--disk", f"{image},ro"]
    if mode == "blk":
        cmd += ["--disk", data]
    elif mode == "slirp":
        cmd += ["--net", "user,host-loopback=on"]  # the iperf3 server listens on 127.0.0.1
    else:
        cmd += ["--net", f"tap={TAP}"]
    return cmd + ["--", "sh", "-c", FIND.format(args=guest_args(mode, seconds))]


def qemu_cmd(mode, image, data, seconds):
    append = ("console=ttyS0 reboot=k panic=1 quiet -- sh -c \"" +
              FIND.format(args=guest_args(mode, seconds)) + "\"")
    cmd = [QEMU, "-M", "microvm,isa-serial=on,rtc=off", "-accel", "kvm", "-cpu", "host",
           "-m", str(MEM), "-smp", "1", "-nodefaults", "-no-user-config", "-nographic",
           "-no-reboot", "-serial", "stdio", "-global", "virtio-mmio.force-legacy=false",
           "-kernel", str(boot.IMAGES / "bzImage"), "-initrd", str(boot.IMAGES / "initramfs.cpio.gz"),
           "-append", append,
           "-drive", f"id=img,file={image},format=raw,if=none,readonly=on",
           "-device", "virtio-blk-device,drive=img"]
    if mode == "blk":
        cmd += ["-drive", f"id=data,file={data},format=raw,if=none,cache=writeback,aio=threads",
                "-device", "virtio-blk-device,drive=data"]
    elif mode == "slirp":
        cmd += ["-netdev", "user,id=n0", "-device", "virtio-net-device,netdev=n0"]
    else:
        cmd += ["-netdev", f"tap,id=n0,ifname={TAP},script=no,downscript=no,vhost=off",
                "-device", "virtio-net-device,netdev=n0"]
    return cmd


def one(cmd, mode, timeout=600):
    """Run one guest; returns {metric: value in MB/s, IOPS or Mbit/s} plus exit and errors."""
    t0 = time.monotonic()
    try:
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
        out, err, code = p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace"), p.returncode
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace")
        err, code = "timeout", None
    res = {"exit": code, "wall_s": round(time.monotonic() - t0, 2)}
    kind = "blk" if mode == "blk" else "net"
    for name, scale in METRICS[kind].items():
        m = re.search(rf"^BENCH (?:fio|iperf) {name} ([0-9.]+)(?: ([0-9.]+))?\s*$", out, re.M)
        if not m:
            res[name] = None
        elif scale is None:  # IOPS
            res[name] = float(m.group(2))
        else:
            res[name] = float(m.group(1)) * scale
    errors = re.findall(r"^BENCH-ERROR.*$", out, re.M)
    if errors or any(res[n] is None for n in METRICS[kind]):
        res["error"] = ("\n".join(errors) or out[-600:]) + ("\n" + err[-600:] if err.strip() else "")
    return res


class Servers:
    """iperf3 server (all addresses, port 5201), the TAP device and the fio data file."""

    def __init__(self, modes, workdir):
        self.procs, self.tap, self.data = [], False, None
        workdir = pathlib.Path(workdir)
        if "blk" in modes:
            self.data = workdir / "fio-data.raw"
            with open(self.data, "wb") as f:
                os.posix_fallocate(f.fileno(), 0, 256 << 20)
        if "tap" in modes:
            subprocess.run(["ip", "tuntap", "del", "dev", TAP, "mode", "tap"], capture_output=True)
            for c in (["ip", "tuntap", "add", "dev", TAP, "mode", "tap"],
                      ["ip", "addr", "add", f"{TAP_HOST}/24", "dev", TAP],
                      ["ip", "link", "set", TAP, "up"]):
                subprocess.run(c, check=True)
            self.tap = True
        if "slirp" in modes or "tap" in modes:
            self.procs.append(subprocess.Popen(["iperf3", "-s", "-p", "5201"], stdin=subprocess.DEVNULL,
                                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            time.sleep(0.5)

    def close(self):
        for p in self.procs:
            p.terminate()
            p.wait()
        if self.tap:
            subprocess.run(["ip", "tuntap", "del", "dev", TAP, "mode", "tap"], capture_output=True)
        if self.data:
            self.data.unlink(missing_ok=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--rows", default="blk,slirp,tap")
    ap.add_argument("--json")
    a = ap.parse_args()
    modes = a.rows.split(",")
    image = bench_image()
    srv = Servers(modes, os.environ.get("TMPDIR", "/tmp"))
    res = {m: {"ember": [], "qemu": []} for m in modes}
    try:
        for i in range(a.runs):
            for m in modes:
                for vmm, build in (("ember", ember_cmd), ("qemu", qemu_cmd)):
                    r = one(build(m, image, srv.data, a.seconds), m)
                    res[m][vmm].append(r)
                    print(f"run {i + 1} {m} {vmm}: {r}", flush=True)
    finally:
        srv.close()
    for m in modes:
        for k in METRICS["blk" if m == "blk" else "net"]:
            e = [r[k] for r in res[m]["ember"] if r[k] is not None]
            q = [r[k] for r in res[m]["qemu"] if r[k] is not None]
            if e and q:
                print(f"{m} {k}: ember {statistics.median(e):.2f}  qemu {statistics.median(q):.2f}  "
                      f"ratio {statistics.median(e) / statistics.median(q):.2f}")
    if a.json:
        pathlib.Path(a.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
