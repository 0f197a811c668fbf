#!/usr/bin/env python3
"""Builds the small test tokenizers (with the Hugging Face `tokenizers` library), the test corpus and
the reference ids the C tokenizer (text/tokenizer.c) is checked against.

Why: the C tokenizer must give exactly the ids `tokenizers` gives for the tokenizer.json files of real
models. We cannot ship real Mistral/Llama files, so we train small BPE models (~1.5-2k vocab) and wrap
them in the exact same pipeline configuration as the real files:

  mistral.json      SentencePiece family, older layout: normalizer Sequence[Prepend("▁"),
                    Replace(" "->"▁")], no pre-tokenizer, BPE byte_fallback+fuse_unk, decoder
                    Sequence[Replace, ByteFallback, Fuse, Strip], TemplateProcessing "<s> $A".
  llama2meta.json   same model, newer layout: pre-tokenizer Metaspace(prepend_scheme first, split
                    false), no normalizer (what transformers writes with legacy=False).
  metasplit.json    same model, Metaspace(prepend_scheme always, split true) pre-tokenizer and a
                    Metaspace decoder.
  llama3.json       byte-level family: Sequence[Split(Llama-3 regex), ByteLevel(use_regex false)],
                    BPE ignore_merges, ByteLevel decoder, Sequence[ByteLevel, TemplateProcessing]
                    post-processor adding <|begin_of_text|>.
  qwen2regex.json   llama3.json's model with Qwen2's regex (\\p{N} one digit at a time).
  gpt2.json         ByteLevel pre-tokenizer with its own GPT-2 regex, ByteLevel post-processor, an
                    lstrip special token <mask>.
  gpt2prefix.json   gpt2.json with add_prefix_space true.
  normadded.json    mistral.json with normalized added tokens and a single_word/lstrip/rstrip one.

Outputs (all committed): the *.json files, test_texts.jsonl (one JSON string per line) and
expected_<name>.jsonl with, per text: ids with and without special tokens, the library's decode of
both, and the ids after adding <|startthought|>/<|endthought|> as special tokens.

Run: .venv/bin/python data/tokenizers/build_tokenizers.py   (deterministic given the same library)
"""
import glob
import json
import os
import sys

from tokenizers import Regex, Tokenizer, AddedToken, decoders, models, normalizers
from tokenizers import pre_tokenizers as pt
from tokenizers import processors, trainers

HERE = os.path.dirname(os.path.abspath(__file__))

GPT2_RE = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
LLAMA3_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
             r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
            r"|\s*[\r\n]+|\s+(?!\S)|\s+")

THOUGHT_TOKENS = ["<|startthought|>", "<|endthought|>"]


def test_texts():
    """The test corpus: every kind of text the tokenizer must get exactly right."""
    prose = ("The quick brown fox jumps over the lazy dog. It wasn't the first time; the dog had "
             "seen it all before, and frankly, it didn't care. \"Why,\" asked the fox, \"don't you "
             "ever move?\" The dog's answer -- a long, slow yawn -- said everything.")
    texts = [
        "", "Hello world", " Hello world", "  two leading spaces", "trailing spaces   ",
        "tabs\tand\t\ttabs", "new\nlines\n\n\nmany", "\r\n windows \r\nline\r\n", "   ", "\n", " \n ",
        "\t \n \t", " ", "a", "\n\n", prose, prose.upper(), prose * 3,
        "I'm sure you'll see they're what we've done; it's Bob's. I'd go.",
        "I'M SURE YOU'LL SEE THEY'RE WHAT WE'VE DONE; IT'S BOB'S. I'D GO. 'Re 'rE 'LL 'Ll",
        "ſ 'ſ 'ſt the Kelvin K sign 'K",
        r"$$\int_0^\infty e^{-x^2}\,dx = \frac{\sqrt{\pi}}{2}$$",
        r"Let $f(x) = \sum_{n=1}^{N} a_n x^n$ where $a_n \in \mathbb{R}$ and $\|f\|_2 \leq 1$.",
        r"\begin{align} \nabla \cdot \mathbf{E} &= \frac{\rho}{\varepsilon_0} \\ "
        r"\nabla \times \mathbf{B} &= \mu_0 \mathbf{J} \end{align}",
        "12345678 3.14159 1,000,000 2024-01-01 0x1F 007 1e-10 99.9%",
        "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n\n"
        "print([fib(i) for i in range(10)])  # 0 1 1 2 3\n",
        "int main(void) {\n\tfor (int i = 0; i < 10; i++) {\n\t\tprintf(\"%d\\n\", i);\n\t}\n\treturn 0;\n}\n",
        "    indented = {'a': 1, \"b\": [2, 3]}  ;;  x->y && z||w != q",
        "你好，世界！这是一个测试。", "日本語のテキストとカタカナ、ひらがな。", "안녕하세요 세계",
        "I ❤️ emoji 😀🎉 👨‍👩‍👧‍👦 🇫🇷 done", "😀😀😀",
        "e\u0301te\u0301 cafe\u0301 n\u0303 a\u0308\u0304", "नमस्ते दुनिया", "مرحبا بالعالم", "สวัสดีครับ",
        "\u00a0nbsp\u2003em space\u3000ideographic \u2028line sep\u2029para",
        "nel\u0085 fs\u001c gs\u001d zwsp\u200b joiner\u200d end", "\x01\x02\x7f control",
        "a" * 300, " " * 50 + "x", "x" + " " * 7 + "\n" * 3 + " " * 2 + "y", "\t\t\tx\t\t", " \t \t",
        "٣٤٥ ១២៣ ½ ² Ⅻ numbers",
        "<s>Hello</s> world <unk>", "text with <|begin_of_text|> inside <|end_of_text|>",
        "<s>", "a<s>b", " <s> ", "</s></s>", "<|endoftext|>", "x <mask> y  <mask>z",
        "Think <|startthought|> step one <|endthought|> done", "<|startthought|><|endthought|>",
        "<<s>> <s<s>> <|begin_of_text|", "Say hello world <s> hello world</s>", "a <sw> b a<sw>b  <sw>  x",
        "a\u2581b \u2581\u2581 c\u2581", "▁leading meta",
        "mixed 中文 and English 123 with émojis 🎉 and $x^2$",
        "Ünïcödé ÀÉÎÕÜ ß ﬁ ligature ǅ titlecase",
        "!!!??? ... --- ___ *** ### @@@ ~~~", "'s 's's ''s 'ss",
        "line1\n\n\n\nline2\r\r\rline3 \n \n",
    ]
    return texts


def training_text():
    parts = []
    for name in ["GPL-3", "Apache-2.0", "GFDL-1.3"]:
        p = os.path.join("/usr/share/common-licenses", name)
        if os.path.exists(p):
            parts.append(open(p, encoding="utf-8").read())
    for p in sorted(glob.glob("/usr/lib/python3*/[a-f]*.py"))[:25]:
        parts.append(open(p, encoding="utf-8", errors="replace").read())
    parts += test_texts() * 5
    parts.append("数学是研究数量、结构以及空间等概念的一门学科。" * 20)
    parts.append(r"\frac{a}{b} \sum_{i=0}^{n} \alpha_i \beta^{i} \mathrm{d}x " * 30)
    # Split into paragraphs so the trainer sees many "documents".
    out = []
    for p in parts:
        out += [x for x in p.split("\n\n") if x]
    return out


def train_sp():
    """SentencePiece-like BPE: merges never cross a ▁ boundary; rare chars fall back to bytes."""
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.pre_tokenizer = pt.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    trainer = trainers.BpeTrainer(vocab_size=1500, special_tokens=[], limit_alphabet=180,
                                  show_progress=False)
    tok.train_from_iterator(training_text(), trainer)
    m = json.loads(tok.to_str())["model"]
    # Llama/Mistral layout: <unk> <s> </s>, then the 256 byte tokens, then the learned pieces.
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab["<0x%02X>" % b] = 3 + b
    for t, _ in sorted(m["vocab"].items(), key=lambda kv: kv[1]):
        if t not in vocab:
            vocab[t] = len(vocab)
    return vocab, m["merges"]


def sp_json(vocab, merges, layout):
    added = [{"id": i, "content": c, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for i, c in enumerate(["<unk>", "<s>", "</s>"])]
    j = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": None, "pre_tokenizer": None,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}},
        },
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True,
                  "vocab": vocab, "merges": merges},
    }
    if layout == "mistral":
        j["normalizer"] = {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "\u2581"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]}
    elif layout == "llama2meta":
        j["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first",
                              "split": False}
    elif layout == "metasplit":
        j["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always",
                              "split": True}
        j["decoder"] = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always",
                        "split": True}
    return Tokenizer.from_str(json.dumps(j))


def train_bytelevel(regex, ignore_merges):
    tok = Tokenizer(models.BPE(ignore_merges=ignore_merges) if ignore_merges else models.BPE())
    if regex is None:
        tok.pre_tokenizer = pt.ByteLevel(add_prefix_space=False, use_regex=True)
    else:
        tok.pre_tokenizer = pt.Sequence([
            pt.Split(Regex(regex), behavior="isolated", invert=False),
            pt.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)])
    trainer = trainers.BpeTrainer(vocab_size=2000, special_tokens=[], show_progress=False,
                                  initial_alphabet=pt.ByteLevel.alphabet())
    tok.train_from_iterator(training_text(), trainer)
    tok.decoder = decoders.ByteLevel(add_prefix_space=True, trim_offsets=True, use_regex=True)
    return tok


def make_llama3(regex):
    tok = train_bytelevel(regex, ignore_merges=True)
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                "<|reserved_special_token_1|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    tok.add_special_tokens(specials)
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                      pair="<|begin_of_text|> $A <|begin_of_text|>:1 $B:1",
                                      special_tokens=[("<|begin_of_text|>", bos)])])
    return tok


def make_gpt2(prefix):
    tok = train_bytelevel(None, ignore_merges=False)
    tok.add_special_tokens(["<|endoftext|>", AddedToken("<mask>", lstrip=True, special=True, normalized=False)])
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    if prefix:
        tok.pre_tokenizer = pt.ByteLevel(add_prefix_space=True, use_regex=True)
    return tok


def normalized_added(tok):
    """mistral.json with added tokens matched after the normalizer (older Llama-2 files mark <s> etc.
    normalized), a normalized multi-word added token and a single_word/lstrip/rstrip special token."""
    j = json.loads(tok.to_str())
    for a in j["added_tokens"]:
        a["normalized"] = True
    n = len(j["model"]["vocab"])
    j["added_tokens"].append({"id": n, "content": " hello world", "single_word": False, "lstrip": False,
                              "rstrip": False, "normalized": True, "special": False})
    j["added_tokens"].append({"id": n + 1, "content": "<sw>", "single_word": True, "lstrip": True,
                              "rstrip": True, "normalized": False, "special": True})
    return Tokenizer.from_str(json.dumps(j))


def expected(tok, texts):
    thought = Tokenizer.from_str(tok.to_str())
    thought.add_special_tokens(THOUGHT_TOKENS)
    rows = []
    for t in texts:
        with_sp = tok.encode(t, add_special_tokens=True).ids
        plain = tok.encode(t, add_special_tokens=False).ids
        rows.append({"text": t, "ids": with_sp, "ids_plain": plain,
                     "decoded": tok.decode(with_sp, skip_special_tokens=False),
                     "decoded_plain": tok.decode(plain, skip_special_tokens=False),
                     "ids_thought": thought.encode(t, add_special_tokens=False).ids})
    return rows


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else HERE
    texts = test_texts()
    with open(os.path.join(out, "test_texts.jsonl"), "w", encoding="utf-8") as f:
        for t in texts:
            f.write(json.dumps(t) + "\n")
    vocab, merges = train_sp()
    toks = {
        "mistral": sp_json(vocab, merges, "mistral"),
        "llama2meta": sp_json(vocab, merges, "llama2meta"),
        "metasplit": sp_json(vocab, merges, "metasplit"),
        "llama3": make_llama3(LLAMA3_RE),
        "qwen2regex": make_llama3(QWEN2_RE),
        "gpt2": make_gpt2(False),
    }
    toks["gpt2prefix"] = Tokenizer.from_str(toks["gpt2"].to_str())
    toks["gpt2prefix"].pre_tokenizer = pt.ByteLevel(add_prefix_space=True, use_regex=True)
    toks["normadded"] = normalized_added(toks["mistral"])
    for name, tok in toks.items():
        tok.save(os.path.join(out, name + ".json"), pretty=True)
        with open(os.path.join(out, "expected_" + name + ".jsonl"), "w", encoding="utf-8") as f:
            for row in expected(tok, texts):
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        print(f"{name}: vocab {tok.get_vocab_size()}")


if __name__ == "__main__":
    main()
