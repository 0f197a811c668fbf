#!/usr/bin/env python3
"""Writes the seed inputs of the fuzz corpora (tests/fuzz/corpus/<harness>/seed_*): small valid
files of every format and a few near-misses. The fuzzer's minimised finds are committed beside them
(the other files of each directory). Run from the repository root; only the standard library."""
import json, os, struct, glob

root = "tests/fuzz/corpus"


def put(harness, name, data):
    d = os.path.join(root, harness)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed_" + name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def safetensors(tensors, metadata=None, pad=True):
    header, blob = {}, b""
    sizes = {"F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "U8": 1}
    for name, dtype, shape, payload in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(blob), len(blob) + len(payload)]}
        blob += payload
    if metadata is not None:
        header["__metadata__"] = metadata
    h = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + blob


f32 = struct.pack("<4f", 1.0, -2.5, 0.0, 3e38)
f16 = struct.pack("<4H", 0x3C00, 0x7C00, 0x0001, 0xFE00)
bf16 = struct.pack("<4H", 0x3F80, 0x7F80, 0x0001, 0xFFC1)
put("safetensors", "mixed.safetensors", safetensors(
    [("w", "F32", [2, 2], f32), ("h", "F16", [4], f16), ("b", "BF16", [1, 4], bf16),
     ("i", "I64", [1], struct.pack("<q", 7)), ("e", "F32", [0, 3], b"")], {"format": "pt"}))
put("safetensors", "empty.safetensors", safetensors([], {}))
put("safetensors", "scalar.safetensors", safetensors([("s", "F32", [], f32[:4])]))
put("safetensors", "overlap.safetensors",
    struct.pack("<Q", 96) + json.dumps({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                        "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}
                                       ).encode().ljust(96) + f32)

put("safetensors_index", "index.json", json.dumps(
    {"metadata": {"total_size": 20}, "weight_map": {"a": "a.safetensors", "b": "a.safetensors", "c": "b.safetensors"}}))
put("safetensors_index", "index_fz.json", json.dumps(
    {"weight_map": {"a": "a.safetensors", "x": "fz.safetensors"}}).encode() + b"\0" +
    safetensors([("x", "F32", [1], f32[:4])], {"format": "pt"}))
put("safetensors_index", "missing.json", json.dumps({"weight_map": {"a": "nope.safetensors"}}))

for p in sorted(glob.glob("configs/*.json")) + sorted(glob.glob("tests/data/bad/*cfg*.json")):
    put("config", os.path.basename(p), open(p, "rb").read())
put("config", "quietstar.json", json.dumps({
    "vocab_size": 34, "hidden_size": 8, "intermediate_size": 12, "num_hidden_layers": 1, "num_attention_heads": 2,
    "num_key_value_heads": 1, "max_position_embeddings": 64, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
    "tie_word_embeddings": True, "sliding_window": None, "start_thought_token_id": 32, "end_thought_token_id": 33,
    "model_type": "llama", "hidden_act": "silu", "head_dim": 4}))


def trim_tokenizer(t, keep=48):
    """The structure of a real tokenizer file with a vocabulary of `keep` tokens (plus what merges
    need) and the merges among them."""
    m = t["model"]
    vocab = {k: v for k, v in m["vocab"].items() if v < keep}
    merges = []
    for mg in m["merges"]:
        a, b = mg.split(" ", 1) if isinstance(mg, str) else mg
        if a in vocab and b in vocab and (a + b) in vocab:
            merges.append(mg)
    # a few merges whose results are added to the vocabulary, so that BPE has work to do
    for mg in m["merges"][:24]:
        a, b = mg.split(" ", 1) if isinstance(mg, str) else mg
        for s in (a, b, a + b):
            if s not in vocab:
                vocab[s] = len(vocab) + keep
        if mg not in merges:
            merges.append(mg)
    m["vocab"], m["merges"] = vocab, merges
    return t


for p in sorted(glob.glob("data/tokenizers/*.json")):
    t = trim_tokenizer(json.load(open(p)))
    put("tokenizer", os.path.basename(p), json.dumps(t, ensure_ascii=False, separators=(",", ":")))
# tokenizer.json, NUL, tokenizer_config.json (BOS/EOS by name, as a string or an added-token object)
t = json.dumps(trim_tokenizer(json.load(open("data/tokenizers/mistral.json"))), separators=(",", ":"))
put("tokenizer", "mistral_with_config.json", t.encode() + b"\0" +
    json.dumps({"bos_token": "<s>", "eos_token": {"content": "</s>", "lstrip": False}}).encode())
for p in sorted(glob.glob("tests/data/bad/min_*.json")):
    put("tokenizer", os.path.basename(p), open(p, "rb").read())

put("shard", "u16.bin", struct.pack("<IIIIQ40x", 0x4B545351, 1, 2, 0, 3) + struct.pack("<3H", 1, 2, 65535))
put("shard", "u32.bin", struct.pack("<IIIIQ40x", 0x4B545351, 1, 4, 0, 2) + struct.pack("<2I", 7, 70000))
put("shard", "empty.bin", struct.pack("<IIIIQ40x", 0x4B545351, 1, 2, 0, 0))
put("shard", "short.bin", struct.pack("<IIIIQ40x", 0x4B545351, 1, 4, 0, 2) + b"\1\0\0\0")

put("state", "state.json", json.dumps({"step": 12, "data": {"epoch": 0, "shard_cursor": 1, "window_cursor": 40},
                                       "settings": {"lr": 0.001, "n_ahead": 12, "mode": "quietstar"}}, indent=2))
put("state", "nosettings.json", json.dumps({"step": 0, "data": {"epoch": 3, "shard_cursor": 0, "window_cursor": 0}}))
put("state", "big.json", '{"step": 2147483648, "data": {"epoch": 1e300}, "settings": {"lr": 1e10}}')

put("prompts", "prompts.jsonl", '{"prompt": "Compute 347 + 589.", "id": "a"}\n\n{"prompt": "2+2=", "id": 7}\n'
                                '{"prompt": "caf\\u00e9 \\ud83d\\ude00"}\n')
put("prompts", "bad_id.jsonl", '{"prompt": "x", "id": [1]}\n')
put("prompts", "surrogate.jsonl", '{"prompt": "\\ud800"}\n')

put("tokenize", "docs.jsonl", b"\0" + b'{"text": "The sum of 2 and 3 is 5."}\n  \n{"text": "caf\\u00e9", "x": 1}\r\n{"text": ""}\n')
put("tokenize", "doc.txt", b"\1" + "Line one.\n\nLine two: 12 \u00d7 3 = 36.\n".encode())
put("tokenize", "notext.jsonl", b"\0" + b'{"txt": "a"}\n')
put("tokenize", "badutf8.txt", b"\1ab\xff\xfe")
