#!/usr/bin/env python3
"""Generic code includes no architecture's header: the files named on the command line (the
generic sources meson.build lists) and every header outside include/boot/<arch>/ are checked for
an #include of an architecture's header, which the include path could still reach by a partial
path ("x86_64/layout.h"). Exit 1 naming each offending line."""
import pathlib
import re
import sys

ARCH = re.compile(r'#\s*include\s*[<"](?:boot/)?(?:x86_64|aarch64)/')
INCLUDE = pathlib.Path(__file__).resolve().parents[2] / "include"
X86_BARE = {p.name for p in (INCLUDE / "boot" / "x86_64").glob("*.h")}
files = sys.argv[1:] + [str(p) for p in sorted(INCLUDE.rglob("*.h"))
                        if p.parent.name not in ("x86_64", "aarch64")]
bad = 0
for name in files:
    for n, line in enumerate(pathlib.Path(name).read_text().splitlines(), 1):
        m = re.match(r'\s*#\s*include\s*"([^"]+)"', line)
        if ARCH.match(line) or (m and m.group(1) in X86_BARE):
            print(f"{name}:{n}: generic code includes an architecture's header: {line.strip()}")
            bad += 1
print(f"generic_includes: {len(files)} files, {bad} architecture includes")
sys.exit(1 if bad else 0)
