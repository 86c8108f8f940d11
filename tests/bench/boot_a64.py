#!/usr/bin/env python3
"""The aarch64 boot row: ember against qemu-system-aarch64 -M virt, both with KVM, in one arm64
test host (tests/kvmhost/run --arch aarch64), same Image, initramfs, kernel command line, vCPUs,
memory and console (hvc0 on virtio-console; virtio-rng on both).

Only arm64 programs run in there, so the timing is tests/bench/bootclock (of an aarch64 build)
and QEMU is Debian's arm64 qemu-system-arm package with the libraries this machine lacks
(cross/fetch-deb --closure). Runs alternate, ember first. Writes OUT as suite.py does:
  {"env": {...}, "samples": {"boot-a64": {"ember": [...], "qemu": [...]}}}
each sample {"ready_s": process start -> EMBER-INIT-READY, "uptime_s": the guest kernel's uptime
when init's command ran, "exit": status}.

  tests/bench/boot_a64.py --out FILE [--runs N] [--build build-aarch64]
"""
import argparse
import json
import os
import pathlib
import shlex
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
IMAGES = ROOT / "guest-images" / "out" / "aarch64"
CMDLINE = "console=hvc0 panic=1 quiet"
GUEST = ["sh", "-c", "cat /proc/uptime; sleep 1"]
CPUS, MEM_MIB = 1, 128


def qemu_closure():
    """qemu-system-aarch64 and the LD_LIBRARY_PATH it needs in the arm64 test host."""
    dirs = subprocess.run([str(ROOT / "cross" / "fetch-deb"), "--closure", "qemu-system-arm:arm64"],
                          check=True, capture_output=True, text=True).stdout.split()
    libs = [str(pathlib.Path(d) / sub) for d in dirs
            for sub in ("lib/aarch64-linux-gnu", "usr/lib/aarch64-linux-gnu")
            if (pathlib.Path(d) / sub).is_dir()]
    return str(pathlib.Path(dirs[0]) / "usr" / "bin" / "qemu-system-aarch64"), ":".join(libs)


def commands(build, qemu):
    image, initrd = str(IMAGES / "Image"), str(IMAGES / "initramfs.cpio.gz")
    ember = [str(build / "ember"), "run", "--cpus", str(CPUS), "--memory", f"{MEM_MIB}M",
             "--console", "virtio", "--no-default-cmdline", "--cmdline", CMDLINE,
             "--kernel", image, "--initrd", initrd, "--", *GUEST]
    # ember's command line is CMDLINE, " -- ", then the guest's arguments (quoted when they
    # have spaces): QEMU's is written the same.
    append = f'{CMDLINE} -- {GUEST[0]} {GUEST[1]} "{GUEST[2]}"'
    q = [qemu, "-M", "virt,gic-version=host", "-accel", "kvm", "-cpu", "host",
         "-m", str(MEM_MIB), "-smp", str(CPUS), "-nodefaults", "-no-user-config",
         "-display", "none", "-no-reboot", "-kernel", image, "-initrd", initrd, "-append", append,
         "-device", "virtio-serial-device", "-chardev", "stdio,id=con", "-device",
         "virtconsole,chardev=con", "-device", "virtio-rng-device"]
    return ember, q


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--build", default="build-aarch64")
    a = ap.parse_args()
    build = (ROOT / a.build).resolve()
    clock = build / "tests" / "bench" / "bootclock"
    for need in (build / "ember", clock, IMAGES / "Image", IMAGES / "initramfs.cpio.gz"):
        if not need.exists():
            sys.exit(f"tests/bench/boot_a64.py: {need} missing: meson setup {a.build} --cross-file "
                     "cross/aarch64-linux-gnu.ini && meson compile -C {a.build}; "
                     "guest-images/build --arch aarch64")
    qemu, libs = qemu_closure()
    ember, q = commands(build, qemu)
    out = pathlib.Path(a.out).resolve()
    scratch = pathlib.Path(tempfile.mkdtemp(prefix="ember-bench-a64.", dir=out.parent))
    lines = ["set -u", f"echo \"qemu $(LD_LIBRARY_PATH={shlex.quote(libs)} {shlex.quote(qemu)} "
             f"--version | head -n1)\"",
             "echo \"load_start $(cat /proc/loadavg)\"", "echo \"kernel $(uname -r)\""]
    for i in range(a.runs):
        lines.append(f"echo \"sample ember $({clock} 120 {shlex.join(ember)} </dev/null)\"")
        lines.append(f"echo \"sample qemu $(LD_LIBRARY_PATH={shlex.quote(libs)} {clock} 120 "
                     f"{shlex.join(q)} </dev/null)\"")
    lines.append("echo \"load_end $(cat /proc/loadavg)\"")
    (scratch / "inside.sh").write_text("\n".join(lines) + "\n")
    t0 = time.monotonic()
    p = subprocess.run([str(ROOT / "tests" / "kvmhost" / "run"), "--arch", "aarch64", "--scratch",
                        str(scratch), "--timeout", str(300 + 300 * a.runs), "--",
                        "sh", str(scratch / "inside.sh")],
                       cwd=ROOT, capture_output=True, text=True,
                       env=dict(os.environ, EMBER_KVMHOST_CPUS="1"))
    sys.stderr.write(p.stderr)
    res = {"env": {"kernel": "?", "runs": a.runs, "duration_s": round(time.monotonic() - t0),
                   "machine": f"{CPUS} vCPU, {MEM_MIB} MiB, hvc0 + virtio-rng"},
           "samples": {"boot-a64": {"ember": [], "qemu": []}}}
    for line in p.stdout.splitlines():
        word, _, rest = line.partition(" ")
        if word in ("qemu", "kernel"):
            res["env"][word] = rest
        elif word in ("load_start", "load_end"):
            res["env"][word] = rest.split()[:3]
        elif word == "sample":
            vmm, _, js = rest.partition(" ")
            try:
                s = json.loads(js)
            except ValueError:
                s = {"error": f"no result: {js[:100]!r}"}
            if s.get("exit") not in (0, None) or s.get("ready_s") is None:
                s.setdefault("error", f"exit {s.get('exit')}, marker "
                              f"{'seen' if s.get('ready_s') is not None else 'never seen'}")
            res["samples"]["boot-a64"][vmm].append(s)
    out.write_text(json.dumps(res, indent=1))
    subprocess.run(["rm", "-rf", str(scratch)])
    print(json.dumps(res["samples"]["boot-a64"]))
    return p.returncode


if __name__ == "__main__":
    sys.exit(main())
