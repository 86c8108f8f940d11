"""Snapshots: snapshot-save on the control socket, ember run --restore (and configure
{restore}): a counting guest carries on where it was saved, disk writes after restore land in
the new backing file, slirp hands out a lease after restore, ten clones share their memory,
and broken snapshots are refused naming the section.

Boots are few: one counting guest (2 vCPUs, disk, --net user, virtio console) saved once and
restored by several tests; one idle 128 MiB guest for the clones.
"""
import ctypes
import os
import re
import shutil
import subprocess
import struct
import time

import pytest

from qmp_client import QMP, wait_for_socket
from test_net import DHCP_SCRIPT, Guest, netns  # noqa: F401 - netns is a fixture

# Each turn: count, write the count into sector i of the disk (direct, so it reaches the
# host's file at once), and every fifth turn ask slirp for a lease.
COUNTER = ("ip link set lo up; ip link set eth0 up; " + DHCP_SCRIPT + "; i=0; while :; do "
           "i=$((i+1)); printf '%-16s' n$i | dd of=/dev/vda bs=512 seek=$i count=1 "
           "conv=sync,notrunc oflag=direct 2>/dev/null; echo count $i; "
           "if [ $((i % 5)) = 0 ]; then udhcpc -i eth0 -q -n -t 3 -T 1 -s /tmp/dhcp "
           ">/dev/null 2>&1 && echo lease $i; fi; sleep 0.3; done")
IDLE = "while :; do sleep 2; echo beat; done"
SECTION_HDR = 32
HEADER = 48


def counts(lines):
    return [int(m.group(1)) for m in map(re.compile(r"^count (\d+)$").match, lines) if m]


def run_args(ember, images, *extra):
    return [ember, "run", "--kernel", images / "bzImage", "--initrd",
            images / "initramfs.cpio.gz", *extra]


def pss_kib(pid):
    """Proportional set size: pages shared with other processes count in part."""
    with open(f"/proc/{pid}/smaps_rollup") as f:
        fields = dict(line.split(":", 1) for line in f if ":" in line)
    return int(fields["Pss"].split()[0]), int(fields["Rss"].split()[0])


def sector(path, i):
    with open(path, "rb") as f:
        f.seek(512 * i)
        return f.read(16).rstrip(b"\0 ").decode(errors="replace")


@pytest.fixture(scope="module")
def saved(ember, images, tmp_path_factory):
    """The counting guest, saved while it counts; the original's output up to the save."""
    d = tmp_path_factory.mktemp("snap")
    disk = d / "disk.img"
    disk.write_bytes(bytes(1 << 20))
    sock = str(d / "api.sock")
    g = Guest(run_args(ember, images, "--api-sock", sock, "--cpus", "2", "--memory", "128M",
                       "--console", "virtio", "--disk", disk, "--net", "user", "--",
                       "sh", "-c", COUNTER))
    try:
        wait_for_socket(sock, g.proc)
        q = QMP(sock)
        g.wait_for(r"^lease 5$", timeout=300)
        r = q.execute("snapshot-save", {"dir": str(d / "refused")})
        assert "needs a paused VM" in r["error"]["desc"], r
        q.cmd("stop")
        t0 = time.monotonic()
        q.cmd("snapshot-save", {"dir": str(d / "snap")}, timeout=120)
        save_s = time.monotonic() - t0
        r = q.execute("snapshot-save", {"dir": str(d / "snap")})
        assert "exists" in r["error"]["desc"], r
        q.cmd("quit")
        assert g.finish() == 0, g
    except Exception:
        print(g)
        raise
    finally:
        g.kill()
    snap = d / "snap"
    size = os.stat(snap / "memory").st_size
    used = os.stat(snap / "memory").st_blocks * 512
    print(f"\nMEASURE snapshot-save of a 128 MiB guest: {save_s * 1e3:.0f} ms, memory file "
          f"{used >> 20} MiB of {size >> 20} MiB, state {os.stat(snap / 'state').st_size} bytes")
    assert size == 128 << 20 and used < size // 2, (size, used)  # sparse
    return {"dir": snap, "disk": disk, "out": list(g.out), "tmp": d}


def test_counting_guest_carries_on_after_restore(ember, saved):
    before = counts(saved["out"])
    g = Guest([ember, "run", "--restore", saved["dir"]])
    try:
        g.wait_for(r"^count %d$" % (before[-1] + 3), timeout=120)
    finally:
        g.kill()
    after = counts(g.out)
    # Every count once: what the guest had written but ember not yet printed comes out after
    # the restore, nothing twice, nothing skipped.
    assert before + after == list(range(1, len(before) + len(after) + 1)), (before, after)


def test_disk_writes_after_restore_land_in_the_new_file(ember, saved, tmp_path):
    new = tmp_path / "copy.img"
    shutil.copyfile(saved["disk"], new)
    old = saved["disk"].read_bytes()  # other clones may have written it: it must not change now
    last = counts(saved["out"])[-1]
    sock = str(tmp_path / "api.sock")
    # Through the control socket this time: configure {restore, disk}, then cont.
    g = Guest([ember, "run", "--api-sock", sock])
    try:
        wait_for_socket(sock, g.proc)
        with QMP(sock) as q:
            q.cmd("configure", {"restore": str(saved["dir"]), "disk": [str(new)]})
            q.cmd("cont", timeout=60)
            g.wait_for(r"^count %d$" % (last + 4), timeout=120)
            q.cmd("quit")
        g.finish()
    finally:
        g.kill()
    for i in range(1, last + 4):  # what the original wrote, and what the clone wrote after it
        assert sector(new, i) == f"n{i}", (i, sector(new, i))
    assert saved["disk"].read_bytes() == old, "the clone wrote into the snapshot's disk"


def test_slirp_hands_out_a_lease_after_restore(ember, saved):
    last = counts(saved["out"])[-1]
    g = Guest([ember, "run", "--restore", saved["dir"]])
    try:
        m = g.wait_for(r"^lease (\d+)$", timeout=180)
    finally:
        g.kill()
    assert int(m.group(1)) > last, g  # from the fresh slirp, after the restore


def test_a_restored_guest_is_saved_again(ember, saved, tmp_path):
    """The clone's RAM is the snapshot's file where it wrote nothing: that data goes into the
    new snapshot too (the memory writer asks the old file where it has data)."""
    sock = str(tmp_path / "api.sock")
    g = Guest([ember, "run", "--restore", saved["dir"], "--api-sock", sock])
    try:
        wait_for_socket(sock, g.proc)
        g.wait_for(r"^count %d$" % (counts(saved["out"])[-1] + 3), timeout=120)
        cp = subprocess.run([ember, "snapshot", "--api-sock", sock, "--then", "quit",
                             tmp_path / "again"], capture_output=True, timeout=300)
        assert cp.returncode == 0, cp
        g.finish()
    finally:
        g.kill()
    mem, before = tmp_path / "again" / "memory", saved["dir"] / "memory"
    used = os.stat(mem).st_blocks * 512
    assert used < os.stat(mem).st_size // 2  # still sparse
    # ...and holds what the first snapshot held, though the clone touched little of it.
    assert used >= 0.9 * os.stat(before).st_blocks * 512, (used, os.stat(before).st_blocks)
    g2 = Guest([ember, "run", "--restore", tmp_path / "again"])
    try:
        m = g2.wait_for(r"^count (\d+)$", timeout=120)
    finally:
        g2.kill()
    assert int(m.group(1)) == counts(g.out)[-1] + 1, (counts(g.out)[-3:], m.group(0))


def test_restored_on_a_tap_instead_of_slirp(ember, saved, netns):
    """A new backend for the same interface: the guest's frames (its DHCP requests) now leave
    through the TAP in the namespace."""
    in_ns = ["ip", "netns", "exec", netns]

    def tap_rx():
        out = subprocess.run([*in_ns, "cat", "/sys/class/net/tap0/statistics/rx_packets"],
                             capture_output=True, text=True, timeout=30).stdout
        return int(out.strip() or 0)

    before = tap_rx()
    last = counts(saved["out"])[-1]
    g = Guest([ember, "run", "--restore", saved["dir"], "--net", "tap=tap0"], prefix=in_ns)
    try:
        g.wait_for(r"^count %d$" % (last + 7), timeout=180)  # past a DHCP attempt
    finally:
        g.kill()
    assert tap_rx() > before, g


def test_restore_refuses_a_machine_that_does_not_fit(ember, saved, run_cmd):
    r = run_cmd([ember, "run", "--restore", saved["dir"], "--cpus", "1"], timeout=60)
    assert r.code == 126 and "--cpus" in r.err and "2 vCPUs" in r.err, r
    r = run_cmd([ember, "run", "--restore", saved["dir"], "--disk", saved["disk"],
                 "--disk", saved["disk"]], timeout=60)
    assert r.code == 126 and "has 1 disks, 2 given" in r.err, r


# ---- broken snapshots: one error line naming the section, exit 126, no VM ----

def sections(state: bytes):
    """(name tag, offset of its header, payload size) of every section."""
    out, pos = [], HEADER
    nr = struct.unpack_from("<I", state, 20)[0]
    for _ in range(nr):
        tag, inst, _, _, size = struct.unpack_from("<4sIIIQ", state, pos)
        out.append((tag.decode(), inst, pos, size))
        pos += SECTION_HDR + size
    return out


def broken_copy(saved, tmp_path, edit_state=None, memory_size=None):
    d = tmp_path / "broken"
    d.mkdir()
    state = bytearray((saved["dir"] / "state").read_bytes())
    if edit_state:
        edit_state(state)
    (d / "state").write_bytes(state)
    if memory_size is None:
        os.link(saved["dir"] / "memory", d / "memory")
    else:
        with open(d / "memory", "wb") as f:
            f.truncate(memory_size)
    return d


def refused(ember, run_cmd, d, *want):
    r = run_cmd([ember, "run", "--restore", d], timeout=60)
    errors = [line for line in r.err.splitlines() if line.startswith("ember: error:")]
    assert r.code == 126 and len(errors) == 1, r
    for w in want:
        assert w in errors[0], r
    return errors[0]


def test_corrupted_section_is_refused_by_name(ember, saved, tmp_path, run_cmd):
    def flip(state):
        vcpu1 = [s for s in sections(state) if s[0] == "VCPU" and s[1] == 1][0]
        state[vcpu1[2] + SECTION_HDR + 100] ^= 0x40
    d = broken_copy(saved, tmp_path, flip)
    refused(ember, run_cmd, d, "section vcpu1", "checksum mismatch")


def test_truncated_state_and_memory_are_refused(ember, saved, tmp_path, run_cmd):
    def cut(state):
        del state[len(state) - 100:]
    d = broken_copy(saved, tmp_path, cut)
    refused(ember, run_cmd, d, "header", "truncated")
    shutil.rmtree(d)
    d = broken_copy(saved, tmp_path, memory_size=64 << 20)
    refused(ember, run_cmd, d, "section memory", "truncated")


def reseal(state):
    """Recompute every checksum (libxxhash's XXH3, as ember does): the file is then intact as
    far as checksums go, so what ember refuses is the value itself."""
    x = ctypes.CDLL("libxxhash.so.0")
    x.XXH3_64bits.restype = x.XXH3_64bits_withSeed.restype = ctypes.c_uint64
    x.XXH3_64bits.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
    x.XXH3_64bits_withSeed.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint64]
    for _, _, pos, size in sections(state):
        seed = x.XXH3_64bits(bytes(state[pos:pos + 24]), 24)
        body = bytes(state[pos + SECTION_HDR:pos + SECTION_HDR + size])
        struct.pack_into("<Q", state, pos + 24, x.XXH3_64bits_withSeed(body, size, seed))
    struct.pack_into("<Q", state, 40, x.XXH3_64bits(bytes(state[:40]), 40))


def test_foreign_version_and_bad_values_are_refused(ember, saved, tmp_path, run_cmd):
    def version(state):
        state[8] = 2
        reseal(state)
    d = broken_copy(saved, tmp_path, version)
    refused(ember, run_cmd, d, "header: format version 2", "reads version 1")
    shutil.rmtree(d)

    def ioapic_elsewhere(state):  # the VM section's IOAPIC base moves: KVM would move it too
        vm = [s for s in sections(state) if s[0] == "ARVM"][0]
        body = vm[2] + SECTION_HDR
        pic = struct.unpack_from("<I", state, body)[0]  # blob sizes: PIC, PIC, then the IOAPIC
        ioapic = body + 4 + pic + 4 + pic + 4
        assert struct.unpack_from("<Q", state, ioapic)[0] == 0xfec00000
        struct.pack_into("<Q", state, ioapic, 0xfeb00000)
        reseal(state)
    d = broken_copy(saved, tmp_path, ioapic_elsewhere)
    refused(ember, run_cmd, d, "section vm", "IOAPIC at 0xfeb00000")


# ---- ten clones of an idle 128 MiB guest ----

def test_ten_clones_share_their_memory(ember, images, tmp_path):
    sock = str(tmp_path / "api.sock")
    g = Guest(run_args(ember, images, "--api-sock", sock, "--memory", "128M", "--console",
                       "virtio", "--", "sh", "-c", IDLE))
    clones = []
    try:
        wait_for_socket(sock, g.proc)
        g.wait_for("^beat$", timeout=300)
        g.wait_for("^beat$", timeout=30)
        fresh_pss, _ = pss_kib(g.proc.pid)
        # From the command line this time: stop, snapshot-save, quit through the socket.
        cp = subprocess.run([ember, "snapshot", "--api-sock", sock, "--then", "quit",
                             tmp_path / "idle"], capture_output=True, timeout=300)
        assert cp.returncode == 0, cp
        assert g.finish() == 0, g
        clones = [Guest([ember, "run", "--restore", tmp_path / "idle"]) for _ in range(10)]
        for c in clones:
            c.wait_for("^beat$", timeout=240)
        time.sleep(3)
        usage = [pss_kib(c.proc.pid) for c in clones]
    finally:
        g.kill()
        for c in clones:
            c.kill()
    total_pss = sum(p for p, _ in usage)
    print(f"\nMEASURE ten clones of an idle 128 MiB guest: {total_pss / 1024:.1f} MiB PSS in "
          f"all ({total_pss / 10240:.1f} MiB each; RSS {usage[0][1] / 1024:.1f} MiB each), "
          f"one fresh VM {fresh_pss / 1024:.1f} MiB PSS")
    assert all(p < r * 0.6 for p, r in usage), usage  # most of each clone is shared
    assert total_pss < 2 * fresh_pss, (total_pss, fresh_pss)


# ---- clones differ where they must ----

def test_exec_clones_reseed_and_get_their_own_mac_and_time(ember, images, tmp_path):
    env = dict(os.environ, EMBER_CACHE_DIR=str(tmp_path))
    script = ("head -c 16 /dev/urandom | od -An -tx1 | tr -d ' '; "
              "cat /sys/class/net/eth0/address; date +%s")
    outs = []
    for i in range(3):  # the first boots and saves the snapshot, the others are clones of it
        if i == 1:
            time.sleep(6)  # a clone's clock must not lag by the time since the snapshot
        cp = subprocess.run([ember, "exec", "--no-jail", "--net", "user", "--", "sh", "-c",
                             script], capture_output=True, timeout=300, env=env,
                            stdin=subprocess.DEVNULL)
        assert cp.returncode == 0, cp
        outs.append(cp.stdout.decode().split() + [time.time()])
    assert len(list((tmp_path / "exec-snapshots").glob("[0-9a-f]*"))) == 1
    (rand1, mac1, _, _), (rand2, mac2, t2, now) = outs[1], outs[2]
    assert rand1 != rand2 and mac1 != mac2, outs
    assert abs(int(t2) - now) <= 3, outs
