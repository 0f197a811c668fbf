#!/usr/bin/env python3
"""Compares two safetensors files tensor by tensor, for the tests that check two runs agree.

  compare_weights.py A B bitwise    every tensor bit for bit equal
  compare_weights.py A B BOUND      relative L2 distance of the whole parameter vector
                                    ||A - B|| / ||B|| <= BOUND (the largest per-tensor max-element
                                    difference is printed too, for context)
Exits 0 when they agree, 1 when not (or a file is missing).
"""
import os, sys
import numpy as np
from safetensors.numpy import load_file

def main():
    a_path, b_path, mode = sys.argv[1:4]
    for p in (a_path, b_path):
        if not os.path.exists(p):
            print("    missing: %s" % p); sys.exit(1)
    A, B = load_file(a_path), load_file(b_path)
    if A.keys() != B.keys():
        print("    different tensors: %s" % sorted(set(A) ^ set(B))); sys.exit(1)
    if mode == "bitwise":
        same = all((A[k].view(np.uint32) == B[k].view(np.uint32)).all() for k in A)
        print("    bitwise identical" if same else "    differ"); sys.exit(0 if same else 1)
    d = np.sqrt(sum(((A[k] - B[k]).astype(np.float64) ** 2).sum() for k in A))
    n = np.sqrt(sum((B[k].astype(np.float64) ** 2).sum() for k in A))
    elem = max(float(np.abs(A[k] - B[k]).max() / (np.abs(B[k]).max() + 1e-30)) for k in A)
    print("    relative L2 distance %.3g (largest per-tensor max-element difference %.3g)" % (d / n, elem))
    sys.exit(0 if d / n <= float(mode) else 1)

if __name__ == "__main__":
    main()
