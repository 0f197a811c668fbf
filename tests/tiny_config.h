/*
 * The small model the model-level tests share: configs/tiny.json narrowed to hidden 32, head_dim 8 and the
 * given vocabulary, MLP width and depth; with quietstar, the last two ids of the vocabulary are the
 * start/end thought tokens (the mixing head and thought embeddings then exist). init_range scales the
 * random weights (larger: more peaked predictions).
 */
#ifndef QSTAR_TESTS_TINY_CONFIG_H
#define QSTAR_TESTS_TINY_CONFIG_H

#include "model/config.h"

static inline ModelConfig tiny_config(int vocab, int intermediate, int layers, int quietstar, float init_range) {
    ModelConfig cfg;
    config_load(&cfg, "configs/tiny.json");
    cfg.vocab_size = vocab;
    cfg.hidden_size = 32;
    cfg.intermediate_size = intermediate;
    cfg.num_hidden_layers = layers;
    cfg.head_dim = 8;
    cfg.start_thought_id = quietstar ? vocab - 2 : -1;
    cfg.end_thought_id = quietstar ? vocab - 1 : -1;
    if (init_range > 0) cfg.initializer_range = init_range;
    return cfg;
}

#endif
