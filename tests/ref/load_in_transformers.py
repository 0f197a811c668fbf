#!/usr/bin/env python3
"""Checks that transformers loads a checkpoint qstar wrote: no missing or unexpected tensors, and,
when a reference file is given, the same logits on its tokens (max abs difference <= 1e-4).

  load_in_transformers.py CKPT_DIR [REF_SAFETENSORS]
"""
import sys
import torch
from safetensors.torch import load_file
from transformers import MistralForCausalLM

def main():
    ckpt = sys.argv[1]
    model, info = MistralForCausalLM.from_pretrained(ckpt, output_loading_info=True, attn_implementation="eager")
    bad = {k: v for k, v in info.items() if v}
    if bad:
        print("FAIL %s: loading info %s" % (ckpt, bad))
        sys.exit(1)
    if len(sys.argv) > 2:
        ref = load_file(sys.argv[2])
        with torch.no_grad():
            logits = model(input_ids=ref["tokens"].long()).logits
        diff = (logits - ref["logits"]).abs().max().item()
        if diff > 1e-4:
            print("FAIL %s: logits differ by %.3g" % (ckpt, diff))
            sys.exit(1)
        print("ok %s: loads in transformers, logits max abs diff %.3g" % (ckpt, diff))
    else:
        print("ok %s: loads in transformers with every tensor" % ckpt)

if __name__ == "__main__":
    main()
