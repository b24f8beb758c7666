#!/usr/bin/env python3
"""Change PCT% of the data of a raw disk image in place, the way a day of use
would: random extents of 64 KiB-4 MiB, 4 KiB aligned, inside allocated regions
(file data), with random content. Prints the number of bytes changed.
Usage: mutate.py IMAGE PCT [SEED]"""
import os, random, sys
path, pct = sys.argv[1], float(sys.argv[2])
rnd = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 42)
fd = os.open(path, os.O_RDWR)
size = os.fstat(fd).st_size
ext, off = [], 0
while off < size:
    try:
        d = os.lseek(fd, off, os.SEEK_DATA)
    except OSError:
        break
    h = os.lseek(fd, d, os.SEEK_HOLE)
    ext.append((d, h)); off = h
total = sum(h - d for d, h in ext)
target, changed, done = total * pct / 100, 0, set()
while changed < target:
    d, h = rnd.choice(ext)
    if h - d < 1 << 20: continue
    ln = rnd.randrange(64 << 10, 4 << 20, 4096)
    o = rnd.randrange(d, max(d + 1, h - ln)) & ~4095
    ln = min(ln, h - o)
    if any(not (o + ln <= a or b <= o) for a, b in done): continue
    done.add((o, o + ln))
    os.pwrite(fd, os.urandom(ln), o)
    changed += ln
os.fsync(fd); os.close(fd)
print(changed)
