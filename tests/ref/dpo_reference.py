#!/usr/bin/env python3
"""Independent reference for the DPO test (tests/test_dpo.sh): two tiny random Mistral models in
transformers — the policy and a frozen reference with other weights — and P (prompt, chosen,
rejected) triples of different lengths. PyTorch computes, in float64 on the fp32 weights, each
response's summed log-probability (every sequence on its own, unpadded: qstar's padded rows must not
leak), the (weighted) DPO loss and its autograd gradient for every policy parameter. Written:

  OUT/policy/, OUT/reference/        config.json + model.safetensors
  OUT/ref.safetensors                 inputs, targets (2P, T) int32 in qstar's row layout (pair p:
                                      chosen row 2p, rejected row 2p+1; targets -100 off the response),
                                      pair_weight (P), beta (1), policy_logp, ref_logp (2P), loss (1),
                                      grad.<name> for every policy parameter

  dpo_reference.py OUT --case plain|weighted
"""
import argparse, os
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from transformers import MistralConfig, MistralForCausalLM

IGNORE = -100


def make_model(cfg, seed):
    torch.manual_seed(seed)
    m = MistralForCausalLM(cfg).float()
    with torch.no_grad():
        for _, p in m.named_parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.15)
            else:
                p.uniform_(0.5, 1.5)
    return m


def seq_logp(model, prompt, response):
    ids = torch.tensor([prompt + response])
    logits = model(input_ids=ids).logits[0]
    lp = F.log_softmax(logits, dim=-1)
    n = len(prompt)
    return sum(lp[n - 1 + j, response[j]] for j in range(len(response)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--case", required=True, choices=["plain", "weighted"])
    a = ap.parse_args()
    cfg = MistralConfig(vocab_size=97, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                        rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False,
                        sliding_window=None, attn_implementation="eager")
    policy = make_model(cfg, 11)
    reference = make_model(cfg, 12)
    os.makedirs(a.out, exist_ok=True)
    policy.save_pretrained(os.path.join(a.out, "policy"), safe_serialization=True)
    reference.save_pretrained(os.path.join(a.out, "reference"), safe_serialization=True)
    # float64 on the fp32 weights: the exact answer qstar's fp32 is held to (the default dtype too, or
    # transformers builds its causal mask in float32 from float64's minimum)
    torch.set_default_dtype(torch.float64)
    policy = policy.double()
    reference = reference.double()

    g = torch.Generator().manual_seed(5 if a.case == "plain" else 6)
    rnd = lambda lo, hi: int(torch.randint(lo, hi + 1, (1,), generator=g))
    toks = lambda n: torch.randint(1, cfg.vocab_size, (n,), generator=g).tolist()
    P, T = 3, 20
    triples = []
    for p in range(P):
        prompt = toks(rnd(2, 7))
        chosen = toks(rnd(2, T + 1 - len(prompt)))
        rejected = toks(rnd(1, T + 1 - len(prompt)))  # may be as short as one token (a truncated prefix)
        triples.append((prompt, chosen, rejected))
    # one pair whose response fills the row exactly (n - 1 == T)
    pr = triples[0][0]
    triples[0] = (pr, toks(T + 1 - len(pr)), triples[0][2])
    weights = [1.0] * P if a.case == "plain" else [0.5, 2.0, 1.25]
    beta = 0.1 if a.case == "plain" else 0.5

    inputs = torch.zeros(2 * P, T, dtype=torch.int32)
    targets = torch.full((2 * P, T), IGNORE, dtype=torch.int32)
    for p, (prompt, ch, rj) in enumerate(triples):
        for r, resp in ((2 * p, ch), (2 * p + 1, rj)):
            seq = prompt + resp
            for t in range(min(len(seq), T)):
                inputs[r, t] = seq[t]
            for t in range(len(prompt) - 1, len(seq) - 1):
                targets[r, t] = seq[t + 1]

    with torch.no_grad():
        ref_lp = torch.stack([seq_logp(reference, pr, resp) for pr, ch, rj in triples for resp in (ch, rj)])
    pol_lp = torch.stack([seq_logp(policy, pr, resp) for pr, ch, rj in triples for resp in (ch, rj)])
    w = torch.tensor(weights, dtype=torch.float64)
    z = beta * ((pol_lp[0::2] - ref_lp[0::2]) - (pol_lp[1::2] - ref_lp[1::2]))
    loss = (w * -F.logsigmoid(z)).sum() / P
    loss.backward()

    ref = {"inputs": inputs.contiguous(), "targets": targets.contiguous(),
           "pair_weight": torch.tensor(weights, dtype=torch.float32),
           "beta": torch.tensor([beta], dtype=torch.float32),
           "policy_logp": pol_lp.detach().float(), "ref_logp": ref_lp.detach().float(),
           "loss": loss.detach().reshape(1).float()}
    for n, p in policy.named_parameters():
        ref["grad." + n] = p.grad.detach().float().contiguous()
    save_file(ref, os.path.join(a.out, "ref.safetensors"), metadata={"format": "pt"})
    print("wrote", a.out, "loss", float(loss), "z", [round(float(x), 4) for x in z])


if __name__ == "__main__":
    main()
