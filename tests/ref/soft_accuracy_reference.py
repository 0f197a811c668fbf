#!/usr/bin/env python3
"""Independent reference for `qstar eval --task gsm8k|csqa --metric soft`: the Quiet-STaR reference's
zero-shot soft accuracy (eval_helpers.py: preprocess_eval_function_gsm/_csqa and compute_metrics),
computed with transformers and the `tokenizers` library on a checkpoint directory.

  soft_accuracy_reference.py make-model OUT_DIR --tokenizer tokenizer.json [--seed S]
      a tiny random MistralForCausalLM (vocabulary of the tokenizer) saved with its tokenizer.json
  soft_accuracy_reference.py score CKPT_DIR --task gsm8k|csqa --data FILE.jsonl [--json OUT]
      prints {"n", "accuracy", "scores", "valid_tokens"}

Differences from eval_helpers.py, all as qstar documents them: the valid answer ids come from the
checkpoint's tokenizer (the last token of "A: s", and for digits of "A: 1s", when it spells s with at
most a leading space) instead of Mistral's hard-coded lists; the first token of a numeric answer is
not skipped unconditionally but only when it is not a valid token; a prompt over 256 tokens keeps its
last 256 tokens instead of a random window.
"""
import argparse, json, os, sys
import torch

MARKER = "\nA:"


def load_items(path, task):
    items = []
    for line in open(path, encoding="utf-8"):
        if not line.strip():
            continue
        o = json.loads(line)
        if task == "gsm8k":
            text = "Q: " + o["question"] + MARKER + o["answer"].split("####")[-1].rstrip("\r\n") + "\n"
        else:
            if isinstance(o["question"], dict):
                stem = o["question"]["stem"]
                labels = [c["label"] for c in o["question"]["choices"]]
                texts = [c["text"] for c in o["question"]["choices"]]
            else:
                stem, labels, texts = o["question"], o["choices"]["label"], o["choices"]["text"]
            choices = "\n".join(f"({l}) {t}" for l, t in zip(labels, texts))
            text = f"Q: {stem}\n{choices}" + MARKER + " " + o["answerKey"] + "\n"
        items.append(text)
    return items


def valid_ids(tok, task):
    def last_spelling(context, s):
        ids = tok.encode(context, add_special_tokens=False).ids
        if not ids:
            return None
        t = tok.decode([ids[-1]], skip_special_tokens=False)
        if t.startswith(" ") and s != "\n":
            t = t[1:]
        return ids[-1] if t == s else None
    out = []
    for c in ("1234567890" if task == "gsm8k" else "ABCDE"):
        ctxs = ["A: " + c] + (["A: 1" + c] if task == "gsm8k" else [])
        found = [i for i in (last_spelling(x, c) for x in ctxs) if i is not None]
        assert found, f"no token for {c!r}"
        for i in found:
            if i not in out:
                out.append(i)
    nl = last_spelling("A: 1\n" if task == "gsm8k" else "A: A\n", "\n")
    assert nl is not None
    out.append(nl)
    return out


def score(a):
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM
    tok = Tokenizer.from_file(os.path.join(a.ckpt, "tokenizer.json"))
    model = AutoModelForCausalLM.from_pretrained(a.ckpt, torch_dtype=torch.float32, attn_implementation="eager")
    model.eval()
    valid = valid_ids(tok, a.task)
    scores = []
    for text in load_items(a.data, a.task):
        ids = tok.encode(text).ids[-256:]
        count = tok.decode(ids, skip_special_tokens=False).count(MARKER)
        assert count > 0
        for i in range(len(ids) - 1, 0, -1):  # as compute_metrics: the largest prefix lacking the last marker
            if tok.decode(ids[:i], skip_special_tokens=False).count(MARKER) < count:
                break
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0].double()
        probs = torch.softmax(logits, dim=-1)
        p = 1.0
        for j in range(i, len(ids) - 1):
            t = ids[j + 1]
            if t not in valid:
                continue
            f = torch.zeros_like(probs[j])
            f[valid] = probs[j][valid]
            p *= (f / f.sum())[t].item()
        scores.append(p)
    out = {"n": len(scores), "accuracy": sum(scores) / len(scores), "scores": scores, "valid_tokens": valid}
    s = json.dumps(out)
    if a.json:
        open(a.json, "w").write(s + "\n")
    print(s)


def make_model(a):
    from transformers import MistralConfig, MistralForCausalLM
    tj = json.load(open(a.tokenizer, encoding="utf-8"))
    vocab = max(max(tj["model"]["vocab"].values()), max([t["id"] for t in tj.get("added_tokens", [])] + [0])) + 1
    torch.manual_seed(a.seed)
    cfg = MistralConfig(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                        rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False, sliding_window=None,
                        bos_token_id=1, eos_token_id=2, attn_implementation="eager")
    model = MistralForCausalLM(cfg).float()
    with torch.no_grad():  # larger than default weights, so the answer probabilities are far from uniform
        for n, p in model.named_parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.3)
            else:
                p.uniform_(0.5, 1.5)
    os.makedirs(a.out, exist_ok=True)
    model.save_pretrained(a.out, safe_serialization=True)
    with open(os.path.join(a.out, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tj, f, ensure_ascii=False)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make-model")
    m.add_argument("out")
    m.add_argument("--tokenizer", required=True)
    m.add_argument("--seed", type=int, default=11)
    s = sub.add_parser("score")
    s.add_argument("ckpt")
    s.add_argument("--task", required=True, choices=["gsm8k", "csqa"])
    s.add_argument("--data", required=True)
    s.add_argument("--json")
    a = ap.parse_args()
    make_model(a) if a.cmd == "make-model" else score(a)


if __name__ == "__main__":
    main()
