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
// Writes an HF-compatible config.json atomically.
void config_save(const ModelConfig* c, const char* path);
// Checks the shape is buildable (positive sizes, heads divide, even head_dim); msg names `source`.
void config_validate(const ModelConfig* c, const char* source);

#endif
