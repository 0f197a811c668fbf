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
// Exits with "WHO: --max-tokens N: the prompt (P tokens) + N tokens[ + a thought] exceed the model's
// context of C positions" unless a prompt of prompt_tokens, gc->max_tokens new tokens and (with
// gc->thoughts) one thought of gc->n_ahead fit max_position_embeddings. In 64 bits, so a --max-tokens
// near 2^31 is refused, not wrapped; callers that size buffers by max_tokens call it first.
void generate_check_context(const ModelConfig* c, const GenConfig* gc, size_t prompt_tokens, const char* who);
int generate(Model* m, const GenConfig* gc, const int32_t* prompt, int n_prompt, GenEmit emit, void* user);

// ---- batched generation -------------------------------------------------------------------------
// Many requests (prompts of any lengths, each possibly several times as different samples), up to
// `batch` of them in flight at once: every step forwards one new token of each running request and
// the whole prompt of each newly admitted one as rows of the same matmuls, each row attending to its
// own request's key/value cache; a finished request's slot goes to the next waiting one at once.
// A request's tokens do not depend on the batch size or on the other requests: its sampling noise is
// keyed by (seed, position, purpose, sample), and sample 0 draws exactly what generate() draws.
enum { GEN_FINISH_LENGTH, GEN_FINISH_STOP };
typedef struct {
    const int32_t* prompt;  // (n_prompt) host
    int n_prompt;
    uint32_t sample;        // sample index: keys the sampling noise
    int32_t* out;           // (max_tokens) host, caller-allocated: the text tokens made
    int n_out;              // out: how many
    int finish;             // out: GEN_FINISH_STOP (stop token, or emit asked to stop) or _LENGTH
} GenRequest;
// Called for every token of request r as it is made (kinds as GenEmit); for GEN_TEXT a non-zero
// return ends the request with GEN_FINISH_STOP (the token is kept). emit may be NULL.
typedef int (*GenBatchEmit)(void* user, int r, int kind, int32_t token);
// gc->first_logits is ignored; gc->stop_token ends a request after that token.
void generate_batch(Model* m, const GenConfig* gc, GenRequest* reqs, int n_reqs, int batch, GenBatchEmit emit,
                    void* user);

#endif
