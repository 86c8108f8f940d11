"""virtio-blk: root on a disk, read-only disks, two disks, serial numbers, host I/O errors."""
import hashlib
import os
import re
import shutil
import subprocess

import pytest

EXIT_USAGE = 126


def tool(name):
    path = shutil.which(name) or next(
        (p for p in (f"/sbin/{name}", f"/usr/sbin/{name}") if os.path.exists(p)), None)
    if not path:
        pytest.fail(f"{name} is missing: apt-get install e2fsprogs", pytrace=False)
    return path


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def lines(r):
    return [l.strip() for l in r.out.splitlines()]


def boot_root(ember, images, run_cmd, disk_args, cmdline, guest):
    """Boot with the root file system on a virtio-blk disk: no initrd."""
    cmd = [ember, "run", "--kernel", images / "bzImage", *disk_args, "--cmdline", cmdline,
           "--", *guest]
    return run_cmd(cmd, timeout=240)


def test_root_on_disk_keeps_writes(ember, images, run_cmd, scratch):
    disk = scratch / "root.ext4"
    shutil.copyfile(images / "rootfs.ext4", disk)
    r = boot_root(ember, images, run_cmd, ["--disk", disk], "root=/dev/vda rw",
                  ["sh", "-c", "echo data-123 > /hello.txt; sync; cat /sys/block/vda/serial; echo;"
                   " fstrim / && echo trimmed; cat /hello.txt"])
    assert r.code == 0, r
    assert "EMBER-EXIT=0" in lines(r), r
    assert "ember-disk-0" in lines(r), r  # the default serial number
    assert "trimmed" in lines(r), r  # discard went through
    assert "data-123" in lines(r), r
    # The guest did not unmount: replay the journal, which also checks the file system.
    fsck = subprocess.run([tool("e2fsck"), "-fy", str(disk)], capture_output=True, text=True)
    assert fsck.returncode in (0, 1), fsck.stdout + fsck.stderr
    cat = subprocess.run([tool("debugfs"), "-R", "cat /hello.txt", str(disk)], capture_output=True,
                         text=True)
    assert cat.stdout.strip() == "data-123", cat.stdout + cat.stderr


def test_read_only_disk_rejects_writes(ember, images, run_cmd, scratch):
    disk = scratch / "ro.ext4"
    shutil.copyfile(images / "rootfs.ext4", disk)
    before = sha256(disk)
    r = boot_root(ember, images, run_cmd, ["--disk", f"{disk},ro,id=ro-serial-7"],
                  "root=/dev/vda ro",
                  ["sh", "-c", "cat /sys/block/vda/serial; echo; cat /sys/block/vda/ro;"
                   " dd if=/dev/zero of=/dev/vda bs=4096 count=1 conv=fsync && exit 3;"
                   " echo x > /new.txt || exit 7"])
    assert "ro-serial-7" in lines(r), r
    assert "1" in lines(r), r  # the guest sees the disk read-only (VIRTIO_BLK_F_RO)
    assert "Read-only file system" in r.out, r
    assert r.code == 7, r
    assert sha256(disk) == before


def test_two_disks(ember, images, run_cmd, scratch):
    root = scratch / "root.ext4"
    raw = scratch / "raw.img"
    shutil.copyfile(images / "rootfs.ext4", root)
    with open(raw, "wb") as f:
        f.truncate(8 << 20)
        f.seek(100 * 512)
        f.write(b"host-pattern-42\n")
    r = boot_root(ember, images, run_cmd, ["--disk", root, "--disk", f"{raw},id=scratch-b"],
                  "root=/dev/vda ro",
                  ["sh", "-c", "cat /sys/block/vdb/serial; echo;"
                   " dd if=/dev/vdb bs=512 skip=100 count=1 2>/dev/null | head -n 1;"
                   " printf guest-pattern-77 > /tmp/p;"
                   " dd if=/tmp/p of=/dev/vdb bs=512 seek=3 conv=sync,fsync"])
    assert r.code == 0, r
    assert "scratch-b" in lines(r), r
    assert "host-pattern-42" in lines(r), r
    data = raw.read_bytes()
    assert len(data) == 8 << 20
    assert data[3 * 512:3 * 512 + 16] == b"guest-pattern-77", data[3 * 512:3 * 512 + 32]
    assert data[3 * 512 + 16:4 * 512] == bytes(512 - 16)  # conv=sync padding


def test_full_host_filesystem_gives_guest_io_errors(ember, images, run_cmd, scratch):
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs")
    mnt = scratch / "tiny"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1M", "tmpfs", str(mnt)], check=True)
    try:
        disk = mnt / "disk.img"
        with open(disk, "wb") as f:
            f.truncate(64 << 20)  # sparse: the file system has room for 1 MiB of it
        cmd = [ember, "run", "--kernel", images / "bzImage", "--initrd",
               images / "initramfs.cpio.gz", "--disk", disk, "--",
               "sh", "-c", "dd if=/dev/zero of=/dev/vda bs=1M count=8 conv=fsync;"
               " echo dd-exit=$?; exit 42"]
        r = run_cmd(cmd, timeout=240)
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
    m = re.search(r"dd-exit=(\d+)", r.out)
    assert m and m.group(1) != "0", r  # dd saw the I/O error
    assert r.code == 42, r  # ember stayed up and returned the guest's status
    assert "No space left on device" in r.err, r


@pytest.mark.parametrize("content,message", [
    (None, "No such file or directory"),
    (b"x" * 1000, "not a positive multiple of 512"),
])
def test_bad_disk_files(ember, images, run_cmd, scratch, content, message):
    disk = scratch / "disk.img"
    if content is not None:
        disk.write_bytes(content)
    r = run_cmd([ember, "run", "--kernel", images / "bzImage", "--disk", disk])
    assert r.code == EXIT_USAGE, r
    assert f"--disk {disk}" in r.err and message in r.err, r
    assert len(r.err.strip().splitlines()) == 1, r
