/*
 * Model configuration: the shape of a Mistral/Llama decoder, read from and written to a Hugging
 * Face config.json (the keys transformers writes), so a real checkpoint's config loads unchanged and
 * the configs we write load in transformers' MistralForCausalLM.
 */
#ifndef QSTAR_CONFIG_H
#define QSTAR_CONFIG_H

#include <stddef.h>

typedef struct {
    int vocab_size;
    int hidden_size;         // H
    int intermediate_size;   // IM, the SwiGLU width
    int num_hidden_layers;   // L
    int num_attention_heads; // NH
    int num_key_value_heads; // NKV (GQA when NKV < NH)
    int head_dim;            // HD = H / NH
    int max_position_embeddings;
    float rms_norm_eps;
    float rope_theta;
    int tie_word_embeddings;
    int sliding_window;       // 0 = none; attention spans the whole sequence, so longer sequences are refused
    int bos_token_id, eos_token_id;
    float initializer_range;  // std of the normal initialization
    // Quiet-STaR: ids of <|startthought|> and <|endthought|> (-1: a plain language model). When set,
    // the checkpoint also holds the start/end thought embeddings and the mixing head ("quietstar.*").
    int start_thought_id, end_thought_id;
} ModelConfig;

// path: a config.json file or a directory containing one. Validates every field; errors name the file.
void config_load(ModelConfig* c, const char* path);
// Writes an HF-compatible config.json atomically; torch_dtype names the dtype model.safetensors holds
// ("float32" or "bfloat16": transformers loads the checkpoint in it when asked for torch_dtype="auto").
void config_save(const ModelConfig* c, const char* path, const char* torch_dtype);
// Checks the shape is buildable (positive sizes, heads divide, even head_dim); msg names `source`.
void config_validate(const ModelConfig* c, const char* source);

// The vocabulary dimension as the model stores it: embed_tokens, lm_head and the logits have this many
// rows/columns, a multiple of 128 (32002, Mistral with thought tokens, becomes 32128), so logits rows
// start 16-byte aligned for vector loads and cuBLASLt, and the lm_head GEMM tiles evenly. The rows past
// vocab_size are zero weights that never train (no token has their ids); their logits are set to
// VOCAB_PAD_LOGIT after the lm_head, so softmax, cross-entropy and sampling over the padded row give
// exactly what the real vocabulary does, and their gradients are zero. Checkpoints hold vocab_size rows.
#define VOCAB_PAD 128
#define VOCAB_PAD_LOGIT (-1e10f)
static inline int vocab_padded(const ModelConfig* c) { return (c->vocab_size + VOCAB_PAD - 1) / VOCAB_PAD * VOCAB_PAD; }

#endif
