"""transformers' side of tests/test_smollm2.sh on the converted SmolLM2 checkpoint: the token ids of a
sample text (tokenizers library), per-token log-probabilities of those tokens in fp32, and greedy
continuations of two chat prompts, written into OUT for the C side to be compared with.

usage: smollm2_reference.py CKPT_DIR OUT_DIR MAX_NEW_TOKENS
"""
import json
import os
import sys

import torch
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM, AutoTokenizer

ckpt, out, max_new = sys.argv[1], sys.argv[2], int(sys.argv[3])
torch.manual_seed(0)
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))

SAMPLE = (
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May? In May she sold 48 / 2 = 24 clips, "
    "so altogether 48 + 24 = 72 clips. #### 72\n\n"
    "def fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n\n"
    "The integral $\\int_0^1 x^2\\,dx = \\frac{1}{3}$, and 3.14159 ≈ π; naïve café, 東京 is Tokyo, "
    "١٢٣ are Arabic-Indic digits, ² and ½ are numbers too.   Several   spaces,\ttabs and\r\nnewlines.\n"
    "<|im_start|>user\nWhat is 12 * 13?<|im_end|>\n<|im_start|>assistant\n12 * 13 = 156.<|im_end|>\n"
    "Quiet-STaR teaches a language model to think before it speaks: it samples a rationale after "
    "every token, mixes the prediction with and without it, and rewards thoughts that help. "
    "The year 2024 had 366 days; 1,000,000 is a million and 0.001 is a thousandth.\n"
)
PROMPTS = [
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
    "<|im_start|>user\nWrite a sentence about the number 7.<|im_end|>\n<|im_start|>assistant\n",
]

tok = Tokenizer.from_file(os.path.join(ckpt, "tokenizer.json"))
ids = tok.encode(SAMPLE).ids
auto = AutoTokenizer.from_pretrained(ckpt)
assert auto(SAMPLE).input_ids == ids, "AutoTokenizer and tokenizers disagree"
assert auto.eos_token == "<|im_end|>" and auto.eos_token_id == 2, (auto.eos_token, auto.eos_token_id)
assert auto.bos_token == "<|im_start|>" and auto.bos_token_id == 1, (auto.bos_token, auto.bos_token_id)
assert tok.decode(ids, skip_special_tokens=False) == SAMPLE, "decode(encode(text)) != text"

model = AutoModelForCausalLM.from_pretrained(ckpt, torch_dtype=torch.float32).eval()
assert model.generation_config.eos_token_id == 2, model.generation_config.eos_token_id
with torch.no_grad():
    logits = model(torch.tensor([ids])).logits[0].double()
    lp = torch.log_softmax(logits, -1)[:-1].gather(1, torch.tensor(ids[1:])[:, None])[:, 0]
    greedy = []
    for p in PROMPTS:
        pid = tok.encode(p).ids
        g = model.generate(torch.tensor([pid]), max_new_tokens=max_new, do_sample=False, num_beams=1)[0, len(pid):]
        greedy.append({"prompt": p, "prompt_ids": pid, "ids": g.tolist(),
                       "text": tok.decode(pid + g.tolist(), skip_special_tokens=True)})

with open(os.path.join(out, "sample.jsonl"), "w") as f:
    f.write(json.dumps({"text": SAMPLE}) + "\n")
with open(os.path.join(out, "ids.txt"), "w") as f:
    f.write(" ".join(map(str, ids)) + "\n")
with open(os.path.join(out, "logprobs_ref.txt"), "w") as f:
    f.write("\n".join("%.9g" % v for v in lp.tolist()) + "\n")
with open(os.path.join(out, "greedy.json"), "w") as f:
    json.dump(greedy, f)
print(f"reference: {len(ids)} tokens, mean log-prob {lp.mean().item():.4f}; greedy: "
      + " | ".join(repr(g['text'][len(tok.decode(g['prompt_ids'], skip_special_tokens=True)):]) for g in greedy))
