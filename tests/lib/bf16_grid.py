#!/usr/bin/env python3
"""How many F32 values of safetensors files lie off the bfloat16 grid (low 16 bits not zero).

  bf16_grid.py FILE...   prints the count over all the files' F32 tensors

Only the standard library: test_train.sh uses it to check that --bf16-weights keeps every weight and
moment a bf16 value, and that fp32 runs do not.
"""
import json
import struct
import sys


def off_grid(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    bad = 0
    for name, t in header.items():
        if name == "__metadata__" or t["dtype"] != "F32":
            continue
        b, e = t["data_offsets"]
        bad += sum(1 for w in struct.unpack("<%dI" % ((e - b) // 4), data[b:e]) if w & 0xFFFF)
    return bad


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    print(sum(off_grid(p) for p in sys.argv[1:]))
