/*
 * Generation with a key/value cache, with or without Quiet-STaR thoughts before each token
 * (generate.c explains the schedule). Tokens are reported through a callback as they are made.
 */
#ifndef QSTAR_GENERATE_H
#define QSTAR_GENERATE_H

#include <stdint.h>

#include "model/model.h"

typedef struct {
    float temperature;  // 0: greedy
    float top_p;        // 1: the whole distribution
    int max_tokens;
    uint64_t seed;
    int thoughts;       // think before every token (needs a Quiet-STaR checkpoint)
    int n_ahead;        // thought length incl. start and end tokens
    float embed_scale;  // the start/end embeddings' scale (training's --thought-embed-scale)
    int stop_token;     // stop after this token (-1: never)
    float* first_logits;  // optional (V) host: receives the logits the first text token is drawn from
} GenConfig;

enum { GEN_TEXT, GEN_THOUGHT_START, GEN_THOUGHT_TOKEN, GEN_THOUGHT_END };
typedef void (*GenEmit)(void* user, int kind, int32_t token);

// Returns the number of text tokens produced.
int generate(Model* m, const GenConfig* gc, const int32_t* prompt, int n_prompt, GenEmit emit, void* user);

#endif
