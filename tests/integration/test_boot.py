"""ember boots Linux: bzImage and PVH vmlinux, vCPUs, memory, command line, exit codes."""
import re

import pytest

EXIT_RESET, EXIT_PANIC, EXIT_USAGE = 120, 121, 126


def boot(ember, images, *args, kernel="bzImage", guest=(), timeout=300, run_cmd=None):
    cmd = [ember, "run", "--kernel", images / kernel, "--initrd", images / "initramfs.cpio.gz", *args]
    if guest:
        cmd += ["--", *guest]
    return run_cmd(cmd, timeout=timeout)


@pytest.mark.parametrize("kernel", ["bzImage", "vmlinux"])
def test_boots_to_init_and_runs_command(ember, images, run_cmd, kernel):
    r = boot(ember, images, kernel=kernel, guest=["sh", "-c", "echo hello from $(uname -s)"],
             run_cmd=run_cmd)
    lines = [l.strip() for l in r.out.splitlines()]
    assert "EMBER-INIT-READY" in lines, r
    assert "hello from Linux" in lines, r
    assert "EMBER-EXIT=0" in lines, r
    assert r.code == 0, r


@pytest.mark.parametrize("cpus", [1, 2, 4])
def test_vcpu_count(ember, images, run_cmd, cpus):
    r = boot(ember, images, "--cpus", str(cpus), guest=["nproc"], run_cmd=run_cmd)
    assert r.code == 0, r
    assert str(cpus) in [l.strip() for l in r.out.splitlines()], r


def test_memory_size(ember, images, run_cmd):
    r = boot(ember, images, "--memory", "512M", guest=["grep", "MemTotal", "/proc/meminfo"],
             run_cmd=run_cmd)
    assert r.code == 0, r
    m = re.search(r"MemTotal:\s+(\d+) kB", r.out)
    assert m, r
    total = int(m.group(1)) * 1024
    assert 0.90 * (512 << 20) <= total <= 512 << 20, (total, r)


def test_cmdline_and_initrd_reach_guest(ember, images, run_cmd):
    r = boot(ember, images, "--cmdline", "ember.test=xyz", guest=["cat", "/proc/cmdline"],
             run_cmd=run_cmd)
    assert r.code == 0, r
    assert "ember.test=xyz" in r.out, r
    assert "console=ttyS0" in r.out, r  # the default command line is there too


def test_no_default_cmdline_replaces_it(ember, images, run_cmd):
    # quiet: a full boot log through the UART takes minutes in the emulated test host.
    r = boot(ember, images, "--no-default-cmdline", "--cmdline", "console=ttyS0 reboot=k panic=1 quiet",
             guest=["cat", "/proc/cmdline"], run_cmd=run_cmd)
    assert r.code == 0, r
    assert "i8042.noaux" not in r.out, r


def test_virtio_devices_registered_once(ember, images, run_cmd):
    # The DSDT describes every virtio device. With virtio_mmio.device= on the command line as
    # well the kernel registered each twice and the second probe failed with an error line.
    r = boot(ember, images, guest=["sh", "-c", "cat /proc/cmdline; ls /sys/bus/virtio/devices"],
             run_cmd=run_cmd)
    assert r.code == 0, r
    assert "virtio_mmio.device=" not in r.out, r
    assert "can't request region" not in r.out, r
    assert "virtio0" in r.out.split(), r  # the entropy device, from the DSDT


def test_virtio_cmdline_for_kernels_without_acpi(ember, images, run_cmd):
    # acpi=off: the guest ignores the DSDT and finds the devices on its command line only
    # (and cannot power off without ACPI: it resets, through the i8042).
    r = boot(ember, images, "--virtio-cmdline", "--cmdline", "acpi=off",
             guest=["sh", "-c", "cat /proc/cmdline; ls /sys/bus/virtio/devices; reboot -f"],
             run_cmd=run_cmd)
    assert r.code == EXIT_RESET, r
    assert "virtio_mmio.device=4K@0x" in r.out, r
    assert "virtio0" in r.out.split(), r


def test_tsc_deadline_timer(ember, images, run_cmd):
    # KVM emulates the TSC-deadline timer but leaves the CPUID bit to the VMM; without it the
    # guest busy-waits 100 ms calibrating the LAPIC timer on every boot.
    r = boot(ember, images, guest=["cat", "/sys/devices/system/clockevents/clockevent0/current_device"],
             run_cmd=run_cmd)
    assert r.code == 0, r
    assert "lapic-deadline" in r.out.split(), r


def test_mtrrs_enabled_so_the_guest_sets_up_pat(ember, images, run_cmd):
    # MTRRs on with write-back as the default type, as on a PC after its firmware: with them
    # disabled Linux skips PAT and ioremap_wc() cannot give write-combining.
    r = boot(ember, images, guest=["sh", "-c", "dmesg | grep x86/PAT:"], run_cmd=run_cmd)
    assert r.code == 0, r
    assert "MTRRs disabled" not in r.out, r
    assert re.search(r"x86/PAT: Configuration \[0-7\]: WB +WC", r.out), r


def test_exit_status_comes_back(ember, images, run_cmd):
    r = boot(ember, images, guest=["sh", "-c", "exit 42"], run_cmd=run_cmd)
    assert "EMBER-EXIT=42" in r.out, r
    assert r.code == 42, r


def test_guest_poweroff_exits_zero(ember, images, run_cmd):
    r = boot(ember, images, guest=["poweroff", "-f"], run_cmd=run_cmd)
    assert r.code == 0, r


def test_guest_reboot_exits_120(ember, images, run_cmd):
    r = boot(ember, images, guest=["reboot", "-f"], run_cmd=run_cmd)
    assert r.code == EXIT_RESET, r


def test_guest_panic_exits_121(ember, images, run_cmd):
    # init=/bin/false: PID 1 exits at once and the kernel panics; pvpanic (ACPI QEMU0001)
    # must report it before panic=1 reboots.
    r = boot(ember, images, "--cmdline", "rdinit=/bin/false", run_cmd=run_cmd)
    assert r.code == EXIT_PANIC, r
    assert "panicked" in r.err, r


def test_smp_guest_runs_command_on_every_cpu(ember, images, run_cmd):
    r = boot(ember, images, "--cpus", "2", guest=["sh", "-c", "grep -c ^processor /proc/cpuinfo"],
             run_cmd=run_cmd)
    assert r.code == 0, r
    assert "2" in [l.strip() for l in r.out.splitlines()], r


def test_bad_kernel_file(ember, images, run_cmd, scratch):
    bad = scratch / "not-a-kernel"
    bad.write_bytes(b"this is not a kernel\n" * 100)
    r = run_cmd([ember, "run", "--kernel", bad])
    assert r.code == EXIT_USAGE, r
    assert str(bad) in r.err and len(r.err.strip().splitlines()) == 1, r


def test_truncated_kernel(ember, images, run_cmd, scratch):
    bad = scratch / "truncated-bzImage"
    bad.write_bytes((images / "bzImage").read_bytes()[:4096])
    r = run_cmd([ember, "run", "--kernel", bad])
    assert r.code == EXIT_USAGE, r
    assert str(bad) in r.err, r


def test_missing_initrd(ember, images, run_cmd):
    r = run_cmd([ember, "run", "--kernel", images / "bzImage", "--initrd", "/nonexistent/initrd"])
    assert r.code == EXIT_USAGE, r
    assert "--initrd /nonexistent/initrd" in r.err and "No such file" in r.err, r


def test_initrd_too_large(ember, images, run_cmd, scratch):
    # 64 MiB of guest RAM holds the kernel (it needs ~36 MiB) but not a 96 MiB initrd.
    big = scratch / "big-initrd"
    with open(big, "wb") as f:
        f.truncate(96 << 20)
    r = run_cmd([ember, "run", "--memory", "64M", "--kernel", images / "bzImage", "--initrd", big])
    assert r.code == EXIT_USAGE, r
    assert "initrd" in r.err and "--memory" in r.err, r


@pytest.mark.parametrize("args,flag", [
    (["--cpus", "0"], "--cpus"),
    (["--memory", "lots"], "--memory"),
    (["--console", "tty9"], "--console"),
    (["--frobnicate"], "--frobnicate"),
])
def test_bad_flags(ember, images, run_cmd, args, flag):
    r = run_cmd([ember, "run", "--kernel", images / "bzImage", *args])
    assert r.code == EXIT_USAGE, r
    assert flag in r.err and len(r.err.strip().splitlines()) == 1, r
