#!/usr/bin/env python3
"""Independent reference for the parity test: builds a tiny random Mistral model with transformers,
saves it as a Hugging Face checkpoint, and records what transformers computes for one batch —
logits, the mean next-token loss and every parameter's gradient (PyTorch autograd) — in
ref.safetensors beside it. tests/tool_parity.c loads the same checkpoint into qstar and compares.

  mistral_reference.py OUT_DIR --case gqa|tied|bf16-sharded
    gqa           4 heads, 2 KV heads, untied lm_head, fp32 single file
    tied          tied embeddings, 4 heads, 4 KV heads, fp32 single file
    bf16-sharded  GQA weights stored in bf16 across several shards with an index; the reference
                  runs in fp32 on the bf16-rounded weights (what qstar's exact conversion loads)
"""
import argparse, os, sys
import torch
from safetensors.torch import save_file
from transformers import MistralConfig, MistralForCausalLM

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--case", required=True, choices=["gqa", "tied", "bf16-sharded"])
    a = ap.parse_args()
    torch.manual_seed({"gqa": 1, "tied": 2, "bf16-sharded": 3}[a.case])
    cfg = MistralConfig(vocab_size=97, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=4 if a.case == "tied" else 2,
                        max_position_embeddings=256, rms_norm_eps=1e-5, rope_theta=10000.0,
                        tie_word_embeddings=(a.case == "tied"), sliding_window=None,
                        attn_implementation="eager")
    model = MistralForCausalLM(cfg).float()
    # Larger-than-default weights so that attention patterns and norms are far from trivial.
    with torch.no_grad():
        for n, p in model.named_parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.15)
            else:
                p.uniform_(0.5, 1.5)
    if a.case == "bf16-sharded":
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(p.to(torch.bfloat16).float())
    B, T = 2, 24
    g = torch.Generator().manual_seed(7)
    ids = torch.randint(0, cfg.vocab_size, (B, T), generator=g)
    out = model(input_ids=ids, labels=ids)
    out.loss.backward()
    ref = {"tokens": ids.to(torch.int32).contiguous(),
           "logits": out.logits.detach().float().contiguous(),
           "loss": out.loss.detach().reshape(1).float()}
    seen = set()
    for n, p in model.named_parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        ref["grad." + n] = p.grad.detach().float().contiguous()
    # Save only after computing: casting the module to bf16 would also round its RoPE inv_freq buffer.
    os.makedirs(a.out, exist_ok=True)
    if a.case == "bf16-sharded":
        model.to(torch.bfloat16).save_pretrained(a.out, safe_serialization=True, max_shard_size="60KB")
    else:
        model.save_pretrained(a.out, safe_serialization=True)

    save_file(ref, os.path.join(a.out, "ref.safetensors"), metadata={"format": "pt"})
    print("wrote", a.out, "loss", float(out.loss), "files", sorted(os.listdir(a.out)))

if __name__ == "__main__":
    main()
