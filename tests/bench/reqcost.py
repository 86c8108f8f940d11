#!/usr/bin/env python3
"""Per-request cost: instructions ember executes per virtio request, counted by callgrind.

Runs build/tests/bench/bench_reqcost (tests/bench/reqcost.c: ember's real virtio-blk and
virtio-net code driven through the MMIO bus and event loop, no KVM) under
`valgrind --tool=callgrind`, counting only inside its measure_* functions (the queue
notification and the device work until the batch is used; the guest-driver side is not
counted, nor is the kernel's side of io_uring or the sockets). Instruction counts do not depend
on machine load, so the numbers can be compared commit to commit.
Usage: tests/bench/reqcost.py [--exe PATH] [--batches N] [--json FILE]
"""
import argparse
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("EMBER_BUILD_DIR", ROOT / "build"))
# net-tx / net-rx: 1500-byte frames, a backend that needs its own copy (slirp) and 2 KiB receive
# buffers; net-tx-tap: a backend that takes frames from guest memory (TAP's writev); net-rx-big:
# 64 KiB TSO frames into 70 KiB buffers (a guest with TSO and without MRG_RXBUF).
WORKLOADS = {"blk_read": "blk-read", "blk_write": "blk-write", "net_tx": "net-tx", "net_rx": "net-rx",
             "net_tx_tap": "net-tx-tap", "net_rx_big": "net-rx-big"}


def count(exe, mode, batches):
    with tempfile.TemporaryDirectory() as d:
        out = pathlib.Path(d) / "callgrind.out"
        p = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                            "--collect-atstart=no", "--toggle-collect=measure_notify",
                            "--toggle-collect=measure_rx", str(exe), mode, str(batches)],
                           capture_output=True, text=True, timeout=600)
        if p.returncode != 0:
            raise RuntimeError(f"{mode}: exit {p.returncode}\n{p.stdout}{p.stderr[-1500:]}")
        reqs = int(re.search(r"requests (\d+)", p.stdout).group(1))
        total = None
        for line in out.read_text().splitlines():
            if line.startswith(("totals:", "summary:")):
                total = int(line.split()[1])
        return total / reqs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--exe", default=str(BUILD / "tests" / "bench" / "bench_reqcost"))
    ap.add_argument("--batches", type=int, default=32, help="batches of 32 requests")
    ap.add_argument("--json")
    a = ap.parse_args()
    if subprocess.run(["which", "valgrind"], capture_output=True).returncode:
        sys.exit("valgrind missing: apt-get install valgrind (tests/deps)")
    res = {"batch": 32, "batches": a.batches}
    for key, mode in WORKLOADS.items():
        try:
            res[key] = round(count(a.exe, mode, a.batches))
        except (RuntimeError, AttributeError, TypeError, subprocess.TimeoutExpired) as e:
            res[key] = None
            res.setdefault("errors", []).append(str(e))
        print(f"{key}: {res[key]} instructions per request", flush=True)
    if a.json:
        pathlib.Path(a.json).write_text(json.dumps(res, indent=1))
    return 0 if all(res[k] is not None for k in WORKLOADS) else 1


if __name__ == "__main__":
    sys.exit(main())
