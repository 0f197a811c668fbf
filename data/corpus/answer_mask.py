#!/usr/bin/env python3
"""Token shards with answer labels, for scoring the answer spans of the bundled corpus separately.

Reads JSONL documents with "text" and "answers" ([start, end) character spans, data/corpus/README.md),
tokenizes each exactly as `qstar tokenize` does (no special tokens, EOS after each document) with the
`tokenizers` library, and writes two shards of equal length (format: io/shard.h):
  OUT/tokens.bin        the tokens
  OUT/answer_mask.bin   1 where the token overlaps an answer span, else 0
`qstar eval --data OUT/tokens.bin --answer-mask OUT/answer_mask.bin` then reports the loss on all
tokens and on answer tokens.

  answer_mask.py --tokenizer data/corpus/tokenizer.json --in heldout.jsonl --out DIR
"""
import argparse, json, os, struct, sys
from tokenizers import Tokenizer

MAGIC, VERSION = 0x4B545351, 1

def write_shard(path, values, width):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<IIIIQ", MAGIC, VERSION, width, 0, len(values)) + bytes(40))
        f.write(struct.pack("<%d%s" % (len(values), "H" if width == 2 else "I"), *values))
    os.replace(tmp, path)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--in", dest="inp", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    tok = Tokenizer.from_file(a.tokenizer)
    eos = tok.token_to_id("</s>")
    if eos is None:
        sys.exit("answer_mask.py: %s: no </s> token" % a.tokenizer)
    ids, mask = [], []
    with open(a.inp, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
                text, spans = doc["text"], doc["answers"]
            except (ValueError, KeyError) as e:
                sys.exit("answer_mask.py: %s:%d: %s" % (a.inp, lineno, e))
            enc = tok.encode(text, add_special_tokens=False)
            for t, (s, e) in zip(enc.ids, enc.offsets):
                ids.append(t)
                mask.append(1 if any(s < ae and as_ < e for as_, ae in spans) else 0)
            ids.append(eos)
            mask.append(0)
    os.makedirs(a.out, exist_ok=True)
    width = 2 if tok.get_vocab_size() <= 65536 else 4
    write_shard(os.path.join(a.out, "tokens.bin"), ids, width)
    write_shard(os.path.join(a.out, "answer_mask.bin"), mask, 2)
    print("answer_mask.py: %d tokens, %d answer tokens (%.1f%%) -> %s" % (len(ids), sum(mask), 100.0 * sum(mask) / len(ids), a.out))

if __name__ == "__main__":
    main()
