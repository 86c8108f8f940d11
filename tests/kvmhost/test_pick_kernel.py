"""tests/kvmhost/run picks a test host kernel that has every module its init loads (a fake /boot
and /lib/modules through EMBER_KVMHOST_BOOT / EMBER_KVMHOST_MODULES; the real ones are not
touched). Runs on the host, no KVM needed."""
import os
import pathlib
import subprocess

import pytest

RUN = pathlib.Path(__file__).resolve().parent / "run"
ALL = ["kernel/drivers/virtio/virtio_pci.ko.xz", "kernel/net/9p/9pnet_virtio.ko.xz",
       "kernel/fs/9p/9p.ko.xz", "kernel/fs/overlayfs/overlay.ko.xz",
       "kernel/drivers/char/virtio_console.ko.xz", "kernel/arch/x86/kvm/kvm-amd.ko.xz",
       "kernel/drivers/net/tun.ko.xz"]
# Debian's cloud kernel: no 9p at all (seen: "cannot resolve kernel module 9pnet_virtio").
CLOUD = [m for m in ALL if "/9p" not in m]


def kernel(tmp, ver, modules, builtin=()):
    boot, mods = tmp / "boot", tmp / "modules" / ver
    boot.mkdir(exist_ok=True)
    mods.mkdir(parents=True)
    (boot / f"vmlinuz-{ver}").write_bytes(b"fake kernel")
    (boot / f"config-{ver}").write_text("# not a kernel\n")
    (mods / "modules.dep").write_text("".join(f"{m}: kernel/lib/dep.ko.xz\n" for m in modules))
    (mods / "modules.builtin").write_text("".join(f"{m}\n" for m in builtin))


def pick(tmp):
    env = dict(os.environ, EMBER_KVMHOST_BOOT=str(tmp / "boot"),
               EMBER_KVMHOST_MODULES=str(tmp / "modules"))
    return subprocess.run([str(RUN), "--which-kernel"], env=env, capture_output=True, text=True,
                          timeout=60)


def test_generic_kernel_beats_a_newer_cloud_kernel(tmp_path):
    kernel(tmp_path, "6.1.0-956-amd64", ALL)
    kernel(tmp_path, "6.1.0-957-cloud-amd64", CLOUD)
    p = pick(tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == str(tmp_path / "boot" / "vmlinuz-6.1.0-956-amd64")
    # It says which one and why, and what it passed over.
    assert "6.1.0-956-amd64" in p.stderr and "6.1.0-957-cloud-amd64 (lacks 9pnet_virtio 9p)" in p.stderr


def test_generic_flavour_preferred_over_cloud_with_every_module(tmp_path):
    kernel(tmp_path, "6.1.0-957-amd64", ALL)
    kernel(tmp_path, "6.1.0-958-cloud-amd64", ALL)
    p = pick(tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().endswith("vmlinuz-6.1.0-957-amd64")
    assert "generic" in p.stderr


def test_newest_generic_wins(tmp_path):
    kernel(tmp_path, "6.1.0-9-amd64", ALL)
    kernel(tmp_path, "6.1.0-10-amd64", ALL)  # version order, not string order
    p = pick(tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().endswith("vmlinuz-6.1.0-10-amd64")


def test_builtin_modules_count(tmp_path):
    kernel(tmp_path, "6.12.9-custom", [m for m in ALL if "tun" not in m and "overlay" not in m],
           builtin=["kernel/drivers/net/tun.ko", "kernel/fs/overlayfs/overlay.ko"])
    p = pick(tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().endswith("vmlinuz-6.12.9-custom")


@pytest.mark.parametrize("setup", ["cloud-only", "no-modules-dir"])
def test_no_suitable_kernel_names_the_package(tmp_path, setup):
    if setup == "cloud-only":
        kernel(tmp_path, "6.1.0-957-cloud-amd64", CLOUD)
    else:
        kernel(tmp_path, "6.1.0-957-amd64", ALL)
        (tmp_path / "modules" / "6.1.0-957-amd64" / "modules.dep").unlink()
    p = pick(tmp_path)
    assert p.returncode == 125
    assert p.stdout == ""
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert "apt-get install linux-image-amd64" in lines[0] and "6.1.0-957" in lines[0]


def test_empty_boot_names_the_package(tmp_path):
    (tmp_path / "boot").mkdir()
    p = pick(tmp_path)
    assert p.returncode == 125
    assert p.stderr.strip() == f"kvmhost: no kernel in {tmp_path}/boot: run apt-get install linux-image-amd64"


def test_mode_answers_without_a_command():
    p = subprocess.run([str(RUN), "--mode"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0
    assert p.stdout.strip() in ("direct", "tcg")
    forced = subprocess.run([str(RUN), "--mode"], capture_output=True, text=True, timeout=60,
                            env=dict(os.environ, EMBER_TEST_HOST="tcg"))
    assert forced.stdout.strip() == "tcg" and "EMBER_TEST_HOST" in forced.stderr
