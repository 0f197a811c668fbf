#!/usr/bin/env python3
"""The `tokenizers` side of bench/bench_tokenizer.c: encodes every line of a text file with
encode_batch (the library's fastest path for many documents) and prints "MBPS TOKENS" for the best of
--repeat runs. The caller sets RAYON_NUM_THREADS=1 and TOKENIZERS_PARALLELISM=false so that this is a
single-threaded measurement, like the C side.

usage: bench_tokenizer.py TOKENIZER.json TEXT.txt [REPEAT]
"""
import sys
import time

from tokenizers import Tokenizer


def main():
    tok = Tokenizer.from_file(sys.argv[1])
    data = open(sys.argv[2], encoding="utf-8", newline="").read()
    repeat = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    lines = data.split("\n")
    nbytes = len(data.encode("utf-8")) - (len(lines) - 1)  # the C side does not encode the newlines
    best, tokens = 0.0, 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        encs = tok.encode_batch(lines, add_special_tokens=False)
        dt = time.perf_counter() - t0
        tokens = sum(len(e.ids) for e in encs)
        best = max(best, nbytes / 1e6 / dt)
    print(f"{best:.3f} {tokens}")


if __name__ == "__main__":
    main()
