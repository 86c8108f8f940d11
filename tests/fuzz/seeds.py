#!/usr/bin/env python3
"""Write the fuzz targets' seed corpora (tests/fuzz/corpus/<target>/seed-*): valid inputs for
each target, so the fuzzers start deep in the code. Re-run after changing an input format."""
import pathlib
import shutil
import struct

HERE = pathlib.Path(__file__).resolve().parent
# fuzz_common.h: the window starts at FZ_DESC; rings of the fuzzed 16-entry queue, then data.
DESC, AVAIL, USED, DATA = 0x1000, 0x1100, 0x1200, 0x1300
NEXT, WRITE, INDIRECT = 1, 2, 4


class Window:
    """Guest RAM from FZ_DESC, as a target's input lays it out."""

    def __init__(self):
        self.b = bytearray(DATA - DESC)

    def put(self, gpa, data):
        off = gpa - DESC
        if len(self.b) < off + len(data):
            self.b.extend(bytes(off + len(data) - len(self.b)))
        self.b[off:off + len(data)] = data

    def desc(self, i, addr, length, flags=0, nxt=0, table=DESC):
        self.put(table + 16 * i, struct.pack("<QIHH", addr, length, flags, nxt))

    def avail(self, slot, head):
        self.put(AVAIL + 4 + 2 * slot, struct.pack("<H", head))

    def chain(self, first, bufs, slot):
        """bufs: [(addr, len, flags)] in consecutive descriptors from `first`."""
        for k, (addr, length, flags) in enumerate(bufs):
            last = k == len(bufs) - 1
            self.desc(first + k, addr, length, flags | (0 if last else NEXT), first + k + 1)
        self.avail(slot, first)
        return first + len(bufs)


def device_input(sel, nr_avail, w):
    return bytes([sel, nr_avail]) + bytes(w.b)


def write(target, name, data):
    d = HERE / "corpus" / target
    d.mkdir(parents=True, exist_ok=True)
    (d / f"seed-{name}").write_bytes(data)


def virtq():
    # mode: size 16 = 4; +8 indirect, +16 EVENT_IDX, bits 5-7 start index
    w = Window()
    w.chain(0, [(DATA, 16, 0), (DATA + 0x100, 16, WRITE)], 0)
    write("virtq", "simple", device_input(4, 1, w))
    write("virtq", "wrapped-start", device_input(4 | 16 | (1 << 5), 1, w))
    w = Window()
    for i in range(3):
        w.desc(i, DATA + 0x200 + 0x40 * i, 0x40, (WRITE if i == 2 else 0) | (NEXT if i < 2 else 0),
               i + 1, table=DATA)
    w.desc(0, DATA, 3 * 16, INDIRECT)
    w.avail(0, 0)
    write("virtq", "indirect", device_input(4 | 8, 1, w))
    w = Window()
    w.desc(0, DATA, 8, NEXT, 1)
    w.desc(1, DATA, 8, NEXT, 0)  # a loop
    w.avail(0, 0)
    write("virtq", "loop", device_input(4, 1, w))
    w = Window()
    nxt = 0
    for slot in range(5):
        nxt = w.chain(nxt, [(DATA + 0x100 * slot, 32, 0), (DATA + 0x100 * slot + 0x80, 0, WRITE),
                            (DATA + 0x100 * slot + 0x40, 8, WRITE)], slot)
    write("virtq", "five-event-idx", device_input(4 | 16, 5, w))


def blk():
    IN, OUT, FLUSH, GET_ID, DISCARD, WZ = 0, 1, 4, 8, 11, 13
    feat = 0x08 | 0x10 | 0x20  # FLUSH, DISCARD, WRITE_ZEROES
    hdr = lambda t, sector: struct.pack("<IIQ", t, 0, sector)
    reqs = [(IN, 0, [(DATA + 0x1000, 512, WRITE)]),
            (OUT, 3, [(DATA + 0x1200, 1024, 0)]),
            (FLUSH, 0, []),
            (GET_ID, 0, [(DATA + 0x1800, 20, WRITE)]),
            (DISCARD, 0, [(DATA + 0x1900, 16, 0)]),
            (WZ, 0, [(DATA + 0x1a00, 16, 0)]),
            (99, 0, []),
            (IN, 1 << 40, [(DATA + 0x1000, 512, WRITE)])]
    for part in (0, 1):  # four requests each: 11 of the 16 descriptors
        w = Window()
        w.put(DATA + 0x1900, struct.pack("<QII", 8, 8, 0))
        w.put(DATA + 0x1a00, struct.pack("<QII", 16, 8, 1))
        nxt = 0
        for slot, (t, sector, data) in enumerate(reqs[4 * part:4 * part + 4]):
            w.put(DATA + 0x20 * slot, hdr(t, sector))
            nxt = w.chain(nxt, [(DATA + 0x20 * slot, 16, 0)] + data +
                          [(DATA + 0x800 + slot, 1, WRITE)], slot)
        write("blk", f"types-{part}", device_input(feat, 4, w))
        write("blk", f"types-{part}-ro", device_input(feat | 0x02, 4, w))
        write("blk", f"types-{part}-event-idx", device_input(feat | 0x40, 4, w))
    w = Window()
    w.put(DATA, hdr(OUT, 0))
    w.chain(0, [(DATA, 16, 0), (DATA + 0x100, 512, 0), (DATA + 0x400, 1, 0)], 0)  # status read-only
    write("blk", "status-read-only", device_input(feat, 1, w))


def net():
    CSUM, HOST_TSO4 = 0x01, 0x08
    w = Window()
    frame = bytes(range(60))
    nxt = 0
    hdrs = [struct.pack("<BBHHHHH", 0, 0, 0, 0, 0, 0, 0),
            struct.pack("<BBHHHHH", 1, 0, 0, 0, 34, 16, 0),
            struct.pack("<BBHHHHH", 1, 1, 54, 1448, 34, 16, 0)]
    for slot, h in enumerate(hdrs):
        base = DATA + 0x100 * slot
        w.put(base, h + frame)
        nxt = w.chain(nxt, [(base, 12, 0), (base + 12, len(frame), 0)], slot)
    write("net", "tx", device_input(CSUM | HOST_TSO4, len(hdrs), w))
    w = Window()
    nxt = 0
    for slot in range(3):
        nxt = w.chain(nxt, [(DATA + 0x800 * slot, 0x800, WRITE)], slot)
    w.put(DATA + 0x2000, bytes([0xff] * 6 + [0x52, 0x54, 0, 1, 2, 3, 8, 0]) + bytes(range(46)))
    write("net", "rx", device_input(0x80 | 0x02, 3, w))


def console():
    w = Window()
    w.put(DATA, b"hello from the guest\n")
    nxt = w.chain(0, [(DATA, 21, 0)], 0)
    w.chain(nxt, [(DATA, 5, 0), (DATA + 5, 16, 0)], 1)
    write("console", "tx", device_input(0, 2, w))
    w = Window()
    nxt = 0
    for slot in range(2):
        nxt = w.chain(nxt, [(DATA + 0x100 * slot, 64, WRITE)], slot)
    w.put(DATA + 0x1000, b"typed input\n")
    write("console", "rx", device_input(0x80, 2, w))


def mmio():
    op = lambda kind, off=0, ln=0, v=0: struct.pack("<BBBBI", kind, off & 0xff, off >> 8, ln, v)
    regs = [0x000, 0x004, 0x008, 0x00c, 0x010, 0x034, 0x038, 0x044, 0x060, 0x070, 0x080, 0x0fc,
            0x100, 0x104, 0x108]
    write("mmio", "reads", b"".join(op(2, r) for r in regs))
    run = op(5, v=0) + op(6, ln=0) + op(7, ln=0) + op(3) + op(6, ln=1) + op(7, ln=1) + op(3)
    write("mmio", "echo", run)
    write("mmio", "reset-mid-run", run + op(0, 0x070, 0, 0) + op(6, ln=0) + op(7, ln=0) + op(3))
    write("mmio", "config", op(0, 0x100, 1, 0xee) + op(0, 0x104, 2, 7) + op(5) + op(2, 0x070))


def loader():
    bz = bytearray(5 * 512 + 4096)
    struct.pack_into("<B", bz, 0x1f1, 4)  # setup_sects
    struct.pack_into("<I", bz, 0x1f4, 4096 // 16)  # syssize
    struct.pack_into("<H", bz, 0x1fe, 0xaa55)
    bz[0x200], bz[0x201] = 0xeb, 0x26c - 0x202
    struct.pack_into("<IH", bz, 0x202, 0x53726448, 0x020f)
    bz[0x211] = 1  # LOADED_HIGH
    struct.pack_into("<I", bz, 0x22c, 0x7fffffff)  # initrd_addr_max
    struct.pack_into("<IB", bz, 0x230, 0x200000, 1)  # kernel_alignment, relocatable
    struct.pack_into("<HI", bz, 0x236, 3, 2047)  # xloadflags, cmdline_size
    struct.pack_into("<QI", bz, 0x258, 16 << 20, 0x40000)  # pref_address, init_size
    write("loader", "bzimage", bytes(bz))
    # ELF64: one PT_LOAD at 1 MiB and a Xen PHYS32_ENTRY note.
    ehdr = struct.pack("<4sBBBB8sHHIQQQIHHHHHH", b"\x7fELF", 2, 1, 1, 0, bytes(8), 2, 62, 1,
                       0x100000, 64, 0, 0, 64, 56, 2, 0, 0, 0)
    note = struct.pack("<III4sQ", 4, 8, 18, b"Xen\0", 0x100010)
    note_off, text_off = 64 + 2 * 56, 512
    load = struct.pack("<IIQQQQQQ", 1, 5, text_off, 0x100000, 0x100000, 256, 8192, 0x1000)
    pnote = struct.pack("<IIQQQQQQ", 4, 4, note_off, 0, 0, len(note), len(note), 4)
    elf = bytearray(ehdr + load + pnote + note)
    elf.extend(bytes(text_off - len(elf)))
    elf.extend(bytes([0x90] * 256))
    write("loader", "elf-pvh", bytes(elf))
    elf64 = bytearray(elf)
    struct.pack_into("<H", elf64, 56, 1)  # e_phnum 1: no note, the 64-bit entry
    write("loader", "elf-64", bytes(elf64))
    # arm64 Image: the 64-byte header (text_offset 0, image_size 1 MiB, 4K pages), then a body.
    a64 = bytearray(4096)
    struct.pack_into("<IIQQQQQQII", a64, 0, 0x91005a4d, 0x14000000, 0, 1 << 20, 0x2, 0, 0, 0,
                     0x644d5241, 0)
    write("loader", "arm64-image", bytes(a64))


def qmp():
    # mode byte: bits 0-1 the control state (0 prelaunch, 1 running, 2 paused, 3 shutdown),
    # bits 2-7 the size of the pieces the bytes arrive in (0: at once).
    session = (b'{"execute": "qmp_capabilities"}\n'
               b'{"execute": "query-status", "id": 1}\n'
               b'{"execute": "configure", "arguments": {"kernel": "bzImage", "initrd": "initrd",'
               b' "memory": "256M", "args": ["sh", "-c", "echo hello from the guest"]}}\n'
               b'{"execute": "configure", "arguments": {"cpus": 2, "memory": 512, "console":'
               b' "virtio", "net": "user,hostfwd=tcp::8080-:80", "hugepages": false}}\n'
               b'{"execute": "cont", "id": "boot"}\n'
               b'{"execute": "query-status"}\n')
    write("qmp", "example-session", bytes([0]) + session)
    write("qmp", "example-session-pieces", bytes([3 << 2]) + session)
    queries = b"".join(b'{"execute": "%s", "id": %d}\r\n' % (name, i) for i, name in enumerate(
        [b"query-version", b"query-commands", b"query-status", b"query-config", b"query-block",
         b"query-metrics", b"query-cpus-fast", b"stop", b"system_reset", b"quit"]))
    neg = b'{"execute":"qmp_capabilities"}'
    for state in range(4):
        write("qmp", f"queries-state-{state}", bytes([state]) + neg + queries)
    write("qmp", "malformed",
          bytes([0]) + b'{"execute":"query-status"}\n' + neg +
          b'{"execute":"qmp_capabilities","arguments":{"enable":["oob"]}}\n'
          b'{bad\n[1]\n{"arguments":{}}\n{"execute":3}\n{"execute":"query-status","arguments":[]}\n'
          b'{"execute":"query-status","bogus":1,"id":9}\n{"execute":"nope"}\n'
          b'{"exe\0cute"}\n{"execute":"\xff\xfe"}\n'
          b'{"execute":"blockdev-change-medium","arguments":{"filename":1}}\n'
          b'{"execute":"configure","arguments":{"cpu":4}}\n'
          b'{"execute":"configure","arguments":{"cpus":4,"memory":"lots"}}\n'
          b'{"execute":"query-status","id":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}\n'
          b'{"execute":"cont","id":2}\n{"execute":"cont","id":3}\n')
    write("qmp", "split-objects", bytes([1 << 2]) + neg +
          b'{"execute":"query-version","id":5}{"execute":"query-status","id":6}')


def config():
    write("config", "docs-example",
          b'{"kernel": "guest-images/out/bzImage", "initrd": "guest-images/out/initramfs.cpio.gz",\n'
          b' "cpus": 2, "memory": "512M", "console": "virtio",\n'
          b' "disk": ["data.img,id=data"], "args": ["sh", "-c", "cat /proc/cpuinfo"]}\n')
    write("config", "all-fields",
          b'{"kernel": "k", "cpus": 2, "memory": "1G", "hugepages": true, "console": "virtio",'
          b' "disk": ["a.img,ro,id=root", "b.img"], "net": "user,hostfwd=tcp::8080-:80",'
          b' "args": ["sh", "-c", "x"], "cmdline": "quiet", "no-default-cmdline": true,'
          b' "no-rng": true, "boot-timer": false, "on-reboot": "restart", "api-sock": "/tmp/s"}')
    write("config", "numbers", b'{"memory": 512, "hugepages": false, "cpus": "4"}')
    write("config", "bad-memory", b'{"cpus": 4, "memory": "lots"}')
    write("config", "unknown-field", b'{"cpu": 4}')
    write("config", "recursion", b'{"config": "x.json"}')
    write("config", "bad-args", b'{"args": ["a", 1]}')
    write("config", "nul", b'{"kernel": "a\\u0000b"}')
    write("config", "fraction", b'{"cpus": 1.5}')
    write("config", "array", b'[1]')
    write("config", "trailing", b'{"cpus": 1} {"cpus": 2}')
    write("config", "truncated", b'{"disk": ["a.img",')


if __name__ == "__main__":
    for fn in (virtq, blk, net, console, mmio, loader, qmp, config):
        for old in (HERE / "corpus" / fn.__name__).glob("seed-*"):
            old.unlink()
        fn()
