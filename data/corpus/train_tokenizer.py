#!/usr/bin/env python3
"""Trains the small tokenizer of the bundled corpus and writes it in Mistral-7B's tokenizer.json shape.

The demo model is a miniature Mistral, so its tokenizer behaves like Mistral's (SentencePiece-style
BPE) but with a 1024-token vocabulary that fits the synthetic corpus:
  - normalizer Sequence[Prepend("▁"), Replace(" ", "▁")], no pre-tokenizer;
  - BPE with byte_fallback and fuse_unk; ids 0,1,2 = <unk>, <s>, </s>; ids 3..258 = <0x00>..<0xFF>;
  - every printable ASCII character is a token; everything else (newline, tab, non-ASCII) falls
    back to bytes, as in Mistral;
  - digits are always single tokens: no merge contains a digit, so numbers are spelled digit by
    digit and the answers of arithmetic problems cannot be memorised as whole tokens;
  - decoder Sequence[Replace("▁", " "), ByteFallback, Fuse, Strip(" ", 1, 0)];
  - post-processor TemplateProcessing "<s> $A" (BOS, no EOS).

Training runs with pre-tokenization that mirrors SentencePiece's word boundaries (split before each
"▁", isolate digits and newlines). Since no learned merge can then cross such a boundary, the final
tokenizer without a pre-tokenizer (Mistral's shape) segments text exactly as it was trained; the
script checks this on the corpus. The trainer is deterministic for a given corpus, and the result
is committed as data/corpus/tokenizer.json.

Usage: .venv/bin/python data/corpus/train_tokenizer.py [--corpus data/corpus/out/train.jsonl]
       [--out data/corpus/tokenizer.json]   (run data/corpus/build.sh first to make the corpus)
"""
import argparse
import json
import os
import sys

from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors, trainers
from tokenizers.models import BPE

VOCAB_SIZE = 1024
SPECIALS = ["<unk>", "<s>", "</s>"]
SP = "\u2581"  # "▁", SentencePiece's visible space
BYTES = ["<0x%02X>" % b for b in range(256)]
# Printable ASCII except the space (which the normalizer turns into ▁), plus ▁ itself.
ALPHABET = [SP] + [chr(c) for c in range(0x21, 0x7F)]


def mistral_shape(vocab, merges):
    """A Tokenizer configured like Mistral-7B's tokenizer.json around the given BPE vocab/merges."""
    tok = Tokenizer(BPE(vocab=vocab, merges=merges, unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend(SP), normalizers.Replace(" ", SP)])
    tok.decoder = decoders.Sequence([decoders.Replace(SP, " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    tok.add_special_tokens(SPECIALS)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s>:1 $B:1", special_tokens=[("<s>", 1)])
    return tok


def training_pre_tokenizer():
    # SentencePiece-like word boundaries: a new piece starts at each "▁"; digits and newlines stand
    # alone, so no merge can ever contain them.
    return pre_tokenizers.Sequence([
        pre_tokenizers.Split(SP, behavior="merged_with_next"),
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.Split("\n", behavior="isolated"),
    ])


def read_texts(path):
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)["text"]


def train(corpus):
    n_merged = VOCAB_SIZE - len(SPECIALS) - len(BYTES) - len(ALPHABET)
    t = Tokenizer(BPE(unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    t.normalizer = normalizers.Sequence([normalizers.Prepend(SP), normalizers.Replace(" ", SP)])
    t.pre_tokenizer = training_pre_tokenizer()
    # Ask for spare room: merges whose result string already exists add no token, and characters
    # outside ALPHABET (newline) are dropped afterwards; the merge list is cut to size below.
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE + 200, special_tokens=SPECIALS,
                                  initial_alphabet=ALPHABET, limit_alphabet=len(ALPHABET) + 16,
                                  min_frequency=2, show_progress=False)
    t.train_from_iterator(read_texts(corpus), trainer=trainer)
    model = json.loads(t.to_str())["model"]
    merges = model["merges"]
    merges = [m.split(" ") if isinstance(m, str) else list(m) for m in merges]

    # Final vocab: specials, bytes, alphabet, then merged tokens in merge order until 1024.
    vocab = {}
    for s in SPECIALS + BYTES + ALPHABET:
        vocab[s] = len(vocab)
    kept = []
    for a, b in merges:
        if len(vocab) == VOCAB_SIZE:
            break
        if a not in vocab or b not in vocab:
            continue  # a merge built on a dropped character (newline): unreachable, skip
        if any(ch.isdigit() for ch in a + b):
            raise SystemExit("train_tokenizer: merge %r %r contains a digit" % (a, b))
        kept.append((a, b))
        if a + b not in vocab:
            vocab[a + b] = len(vocab)
    if len(vocab) != VOCAB_SIZE:
        raise SystemExit("train_tokenizer: only %d tokens after %d merges (corpus too small?)" % (len(vocab), len(kept)))
    assert n_merged == VOCAB_SIZE - len(SPECIALS) - len(BYTES) - len(ALPHABET)
    return vocab, kept


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", default=os.path.join(here, "out", "train.jsonl"))
    ap.add_argument("--out", default=os.path.join(here, "tokenizer.json"))
    args = ap.parse_args()
    if not os.path.exists(args.corpus):
        raise SystemExit("train_tokenizer: %s missing; run data/corpus/build.sh first" % args.corpus)
    vocab, merges = train(args.corpus)
    tok = mistral_shape(vocab, merges)
    ref = mistral_shape(vocab, merges)
    ref.pre_tokenizer = training_pre_tokenizer()

    # Check: Mistral-shaped tokenizer (no pre-tokenizer) == trained segmentation, and lossless.
    n_docs = n_tok = 0
    for text in read_texts(args.corpus):
        enc = tok.encode(text, add_special_tokens=False)
        if enc.ids != ref.encode(text, add_special_tokens=False).ids:
            raise SystemExit("train_tokenizer: segmentation mismatch on doc %d" % n_docs)
        if tok.decode(enc.ids) != text:
            raise SystemExit("train_tokenizer: round trip failed on doc %d" % n_docs)
        n_docs += 1
        n_tok += len(enc.ids)
        if n_docs >= 2000:
            break
    tmp = args.out + ".tmp"
    tok.save(tmp, pretty=True)
    os.replace(tmp, args.out)
    print("train_tokenizer: vocab %d (%d merges); checked %d docs, %.1f tokens/doc -> %s"
          % (tok.get_vocab_size(), len(merges), n_docs, n_tok / max(n_docs, 1), args.out), file=sys.stderr)


if __name__ == "__main__":
    main()
