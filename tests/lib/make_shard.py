#!/usr/bin/env python3
"""Writes a qstar token shard (format: io/shard.h) for tests, from a repeated pattern or random
tokens, with plain python3 (no venv). Also writes deliberately broken shards for bad-input tests.

  make_shard.py OUT --pattern "1,2,3,4" --tokens N        repeats the pattern to N tokens
  make_shard.py OUT --random VOCAB --tokens N --seed S    uniform random tokens
  make_shard.py OUT ... --corrupt truncate|magic|version|width
"""
import argparse, random, struct

MAGIC, VERSION, HEADER = 0x4B545351, 1, 64

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--pattern")
    ap.add_argument("--random", type=int)
    ap.add_argument("--tokens", type=int, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--width", type=int, default=2)
    ap.add_argument("--corrupt", choices=["truncate", "magic", "version", "width"])
    a = ap.parse_args()
    if a.pattern:
        pat = [int(x) for x in a.pattern.split(",")]
        toks = [pat[i % len(pat)] for i in range(a.tokens)]
    else:
        rng = random.Random(a.seed)
        toks = [rng.randrange(a.random) for _ in range(a.tokens)]
    magic, version, width = MAGIC, VERSION, a.width
    if a.corrupt == "magic": magic = 0x12345678
    if a.corrupt == "version": version = 99
    if a.corrupt == "width": width = 3
    header = struct.pack("<IIIIQ", magic, version, width, 0, len(toks)) + bytes(40)
    body = struct.pack("<%d%s" % (len(toks), "H" if a.width == 2 else "I"), *toks)
    if a.corrupt == "truncate": body = body[: len(body) // 2]
    with open(a.out, "wb") as f:
        f.write(header + body)

if __name__ == "__main__":
    main()
