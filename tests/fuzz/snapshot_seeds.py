#!/usr/bin/env python3
"""Seeds for fuzz_snapshot from real snapshots: the state files of three machines saved by
ember (2 vCPUs with disk, network, virtio console and entropy; an idle guest with a virtio
console; `ember exec`'s guest waiting for its command). Needs KVM that runs Linux guests:

    tests/kvmhost/run --rw tests/fuzz/corpus -- python3 tests/fuzz/snapshot_seeds.py

Each seed is fuzz_snapshot's input: a mode byte (1: the target fixes the checksums, so
mutations reach the values behind them), then the state file. Re-run after changing the
snapshot format."""
import os
import pathlib
import subprocess
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
from qmp_client import QMP, wait_for_socket  # noqa: E402

EMBER = ROOT / "build" / "ember"
IMAGES = pathlib.Path(os.environ.get("EMBER_IMAGES_DIR", ROOT / "guest-images" / "out"))
OUT = HERE / "corpus" / "snapshot"


def save(name, tmp, *args):
    sock = str(tmp / f"{name}.sock")
    p = subprocess.Popen([EMBER, "run", "--api-sock", sock, "--kernel", IMAGES / "bzImage",
                          "--initrd", IMAGES / "initramfs.cpio.gz", *args],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    try:
        wait_for_socket(sock, p)
        with QMP(sock) as q:
            for line in p.stdout:
                if b"tick" in line:
                    break
            q.cmd("stop")
            q.cmd("snapshot-save", {"dir": str(tmp / name)}, timeout=120)
            q.cmd("quit")
        p.wait(60)
    finally:
        p.kill()
    seed(tmp / name / "state", name)


def seed(state, name):
    (OUT / f"seed-{name}").write_bytes(b"\x01" + state.read_bytes())


def main():
    tmp = pathlib.Path(tempfile.mkdtemp())
    OUT.mkdir(parents=True, exist_ok=True)
    disk = tmp / "disk.img"
    disk.write_bytes(bytes(1 << 20))
    tick = "while :; do echo tick; sleep 0.5; done"
    save("devices", tmp, "--cpus", "2", "--memory", "128M", "--console", "virtio", "--disk",
         disk, "--net", "user", "--", "sh", "-c", tick)
    save("idle", tmp, "--memory", "64M", "--console", "virtio", "--", "sh", "-c", tick)
    env = dict(os.environ, EMBER_CACHE_DIR=str(tmp / "cache"))
    subprocess.run([EMBER, "exec", "--no-jail", "--", "true"], env=env, check=True,
                   stdin=subprocess.DEVNULL)
    state = next((tmp / "cache" / "exec-snapshots").glob("[0-9a-f]*/state"))
    seed(state, "exec-ready")
    print(f"seeds in {OUT}: {sorted(p.name for p in OUT.iterdir())}")


if __name__ == "__main__":
    main()
