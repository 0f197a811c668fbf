#!/usr/bin/env python3
"""Independent reference of one Quiet-STaR training step, written from the reference algorithm
(docs/quietstar.md §1-§10) the way the reference computes it: the transformers
Mistral layers run once per step over a growing key/value cache with a DENSE additive mask of shape
(L, (k+1)·L) — causal over the text block plus the diagonal of every thought block — and PyTorch
autograd differentiates the whole unrolled computation. The thought tokens are forced (given), so
qstar can run the same step and compare every number.

  quietstar_reference.py OUT_DIR [--n-ahead 6 --n-talk 3 --passes 2 --batch 2 --seq 12 --zero-mixer]
  quietstar_reference.py - --time N [--hidden 256 --layers 4 --heads 8 --kv-heads 2 --ffn 688 --vocab 2048 ...]

Writes OUT_DIR/model.safetensors + config.json (a qstar Quiet-STaR checkpoint: the Mistral tensors
plus quietstar.*) and OUT_DIR/ref.safetensors: ids, forced thoughts, base NLL, talk NLLs, rewards,
advantages, policy loss, total loss, base and talk logits, and the gradient of every parameter.
"""
import argparse, json, os
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from transformers import MistralConfig, MistralForCausalLM
from transformers.models.mistral.modeling_mistral import apply_rotary_pos_emb

def step(a, model, qsp, cfg, x, forced, causal, diag, check):
    """One Quiet-STaR step (forward and backward) the way the reference computes it."""
    NA, T, P, B, L = a.n_ahead, a.n_talk, a.passes, a.batch, a.seq
    R, S = B * P, NA + T - 1
    H, NH, NKV = cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads
    HD = H // NH
    start_id, end_id = cfg.vocab_size - 2, cfg.vocab_size - 1
    mm = model.model
    emb = mm.embed_tokens.weight
    lm_head = model.lm_head.weight
    caches = [([], []) for _ in mm.layers]

    def step_forward(inp, k):
        """One forward of L new tokens per row at positions i + k, appending to the caches."""
        mask = torch.cat([causal] + [diag] * k, dim=1)                     # (L, (k+1)L)
        pos = (torch.arange(L) + k).unsqueeze(0).expand(R, L)
        hcur = inp
        for li, layer in enumerate(mm.layers):
            att = layer.self_attn
            hn = layer.input_layernorm(hcur)
            q = att.q_proj(hn).view(R, L, NH, HD).transpose(1, 2)
            kk = att.k_proj(hn).view(R, L, NKV, HD).transpose(1, 2)
            vv = att.v_proj(hn).view(R, L, NKV, HD).transpose(1, 2)
            cos, sin = att.rotary_emb(vv, seq_len=L + S + 1)
            q, kk = apply_rotary_pos_emb(q, kk, cos, sin, pos)
            caches[li][0].append(kk); caches[li][1].append(vv)
            K = torch.cat(caches[li][0], dim=2).repeat_interleave(NH // NKV, dim=1)
            Vv = torch.cat(caches[li][1], dim=2).repeat_interleave(NH // NKV, dim=1)
            scores = q @ K.transpose(-1, -2) / HD ** 0.5 + mask
            o = (scores.softmax(-1) @ Vv).transpose(1, 2).reshape(R, L, H)
            hcur = hcur + att.o_proj(o)
            hcur = hcur + layer.mlp(layer.post_attention_layernorm(hcur))
        return mm.norm(hcur)

    def mixer(hb, ht):
        z = torch.cat([hb, ht], -1)
        z = F.relu(z @ qsp["quietstar.mixer.0.weight"].T + qsp["quietstar.mixer.0.bias"])
        z = F.relu(z @ qsp["quietstar.mixer.2.weight"].T + qsp["quietstar.mixer.2.bias"])
        return z @ qsp["quietstar.mixer.4.weight"].T                       # (R, L, 1), unbounded

    def ce(logits, targets):                                              # per-token CE, 0 where ignored
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100,
                               reduction="none").view(targets.shape)

    h0 = step_forward(emb[x], 0)
    logits0 = h0 @ lm_head.T
    # sanity: the dense-mask step 0 is transformers' own forward
    if check: assert (logits0 - model(input_ids=x).logits).abs().max().item() < 1e-4
    ignore = torch.full((R, 1), -100, dtype=torch.long)
    base_ce = ce(logits0, torch.cat([x[:, 1:], ignore], 1))               # (R, L), slot L-1 ignored
    base_nll = base_ce.sum() / (R * (L - 1))

    logp = []
    talk_ce, talk_logits = [], []
    nxt = None
    for k in range(1, S):
        if k == 1: inp = (qsp["quietstar.start_embedding"] * 100).expand(R, L, H)
        elif k == NA - 1: inp = (qsp["quietstar.end_embedding"] * 100).expand(R, L, H)
        elif k <= NA - 2: inp = emb[nxt]
        else:
            s = k - (NA - 1)
            tf = torch.cat([x[:, s:], torch.full((R, s), cfg.eos_token_id, dtype=torch.long)], 1)
            inp = emb[tf]
        h = step_forward(inp, k)
        if 1 <= k <= NA - 3:
            z = h @ lm_head.T
            z = z.clone(); z[..., start_id] = -1e10; z[..., end_id] = -1e10
            nxt = forced[k - 1]
            logp.append(F.log_softmax(z / 3.0, -1).gather(-1, nxt.unsqueeze(-1)).squeeze(-1))
        if k >= NA - 1:
            s = k - (NA - 1)
            hb = torch.cat([h0[:, s:], h0[:, :s]], 1)
            w = mixer(hb, h)
            lg = ((1 - w) * hb + w * h) @ lm_head.T
            tgt = torch.cat([x[:, s + 1:], torch.full((R, s + 1), -100, dtype=torch.long)], 1)
            talk_ce.append(ce(lg, tgt)); talk_logits.append(lg)
    talk_nll = torch.stack([talk_ce[s].sum() / (R * (L - 1 - s)) for s in range(T)])

    n_pol = L - 1 - T
    reward = torch.zeros(R, L)
    for s in range(T):
        reward[:, :n_pol] += (base_ce[:, s:s + n_pol] - talk_ce[s][:, :n_pol]).detach()
    if P > 1:
        adv = (reward.view(B, P, L) - reward.view(B, P, L).mean(1, keepdim=True)).view(R, L)
    else:
        adv = reward.clone()
    adv = adv.clamp(min=0)
    policy = torch.stack([(-adv[:, :n_pol] * lp[:, :n_pol]).mean() for lp in logp]).mean() * a.policy_weight
    loss = 0.5 * base_nll + 0.5 * talk_nll.mean() + policy
    loss.backward()
    return base_nll, talk_nll, reward, adv, policy, loss, logits0, talk_logits

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--n-ahead", type=int, default=6)
    ap.add_argument("--n-talk", type=int, default=3)
    ap.add_argument("--passes", type=int, default=2)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seq", type=int, default=12)
    ap.add_argument("--zero-mixer", action="store_true", help="last mixing layer at zero (its initial state)")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--policy-weight", type=float, default=1e6)
    # timing mode (bench/run_quietstar_ref.sh): a model of this shape, the step run --time times after a
    # warm-up, the best wall time printed; nothing written
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--ffn", type=int, default=48)
    ap.add_argument("--vocab", type=int, default=63, help="including the two thought tokens")
    ap.add_argument("--time", type=int, default=0, metavar="N")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall", help="cpu: process CPU time (with 1 thread)")
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    NA, T, P, B, L = a.n_ahead, a.n_talk, a.passes, a.batch, a.seq
    V0 = a.vocab - 2
    start_id, end_id = V0, V0 + 1
    cfg = MistralConfig(vocab_size=V0 + 2, hidden_size=a.hidden, intermediate_size=a.ffn, num_hidden_layers=a.layers,
                        num_attention_heads=a.heads, num_key_value_heads=a.kv_heads,
                        max_position_embeddings=max(128, 2 * (L + NA + T)),
                        rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False, sliding_window=None,
                        attn_implementation="eager")
    model = MistralForCausalLM(cfg).float()
    H = cfg.hidden_size
    with torch.no_grad():
        for n, p in model.named_parameters():
            if p.dim() == 2: p.normal_(0.0, 0.2)
            else: p.uniform_(0.7, 1.3)
    qsp = {
        "quietstar.start_embedding": torch.randn(H) * 0.01,   # stored /100, used x100
        "quietstar.end_embedding": torch.randn(H) * 0.01,
        "quietstar.mixer.0.weight": torch.randn(H, 2 * H) * 0.2,
        "quietstar.mixer.0.bias": torch.randn(H) * 0.1,
        "quietstar.mixer.2.weight": torch.randn(H, H) * 0.2,
        "quietstar.mixer.2.bias": torch.randn(H) * 0.1,
        "quietstar.mixer.4.weight": torch.zeros(1, H) if a.zero_mixer else torch.randn(1, H) * 0.3,
    }
    qsp = {k: v.clone().requires_grad_(True) for k, v in qsp.items()}

    R = B * P
    ids = torch.randint(0, V0, (B, L), generator=torch.Generator().manual_seed(a.seed + 1))
    x = ids.repeat_interleave(P, dim=0)                                   # (R, L), passes adjacent
    forced = torch.randint(0, V0, (NA - 3, R, L), generator=torch.Generator().manual_seed(a.seed + 2))

    causal = torch.full((L, L), float("-inf")).triu(1)                   # block 0: causal over the text
    diag = torch.full((L, L), float("-inf")).fill_diagonal_(0.0)          # thought blocks: own slot only

    if a.time > 0:
        import time
        clock = time.process_time if a.clock == "cpu" else time.perf_counter
        best = float("inf")
        for rep in range(a.time + 1):
            model.zero_grad(); [p.grad.zero_() for p in qsp.values() if p.grad is not None]
            t0 = clock()
            step(a, model, qsp, cfg, x, forced, causal, diag, check=False)
            if rep > 0: best = min(best, clock() - t0)
        print("reference step %.3f s (best of %d, %d threads)" % (best, a.time, torch.get_num_threads()))
        return
    base_nll, talk_nll, reward, adv, policy, loss, logits0, talk_logits = \
        step(a, model, qsp, cfg, x, forced, causal, diag, check=True)

    os.makedirs(a.out, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    state.update({k: v.detach().contiguous() for k, v in qsp.items()})
    save_file(state, os.path.join(a.out, "model.safetensors"), metadata={"format": "pt"})
    conf = json.loads(cfg.to_json_string())
    conf.update({"start_thought_token_id": start_id, "end_thought_token_id": end_id})
    json.dump(conf, open(os.path.join(a.out, "config.json"), "w"), indent=1)
    ref = {"ids": ids.to(torch.int32).contiguous(), "forced": forced.to(torch.int32).contiguous(),
           "shape": torch.tensor([NA, T, P, B, L], dtype=torch.int32),
           "policy_weight": torch.tensor([a.policy_weight], dtype=torch.float32),
           "base_nll": base_nll.detach().reshape(1), "talk_nll": talk_nll.detach(),
           "reward": reward.contiguous(), "advantage": adv.contiguous(),
           "policy_loss": policy.detach().reshape(1), "loss": loss.detach().reshape(1),
           "base_logits": logits0.detach().contiguous(),
           "talk_logits": torch.stack(talk_logits).detach().contiguous()}
    for n, p in model.named_parameters():
        ref["grad." + n] = p.grad.detach().contiguous()
    for n, p in qsp.items():
        ref["grad." + n] = p.grad.detach().contiguous()
    save_file(ref, os.path.join(a.out, "ref.safetensors"), metadata={"format": "pt"})
    print("wrote %s: loss %.6f base %.6f talk %s policy %.6f" % (a.out, loss.item(), base_nll.item(),
          [round(v, 6) for v in talk_nll.tolist()], policy.item()))

if __name__ == "__main__":
    main()
