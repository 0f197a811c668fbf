/*
 * The key/value-cache generator against the computations it must reproduce: without thoughts, its
 * greedy tokens equal those of full re-forwards of the growing sequence (model_generate); with
 * thoughts, the mixed logits it draws a token from equal the talk-step logits of the Quiet-STaR
 * training step at that slot when the training step is forced to think the same thought.
 */
// Backend buffers are read and written here as fp32 arrays: this file runs on fp32 tables (floatX =
// float, kernels/ops.h); the bf16 tables have their own tests (tests/test_bf16.c).
#define QSTAR_FLOATX float
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "model/generate.h"
#include "model/quietstar.h"
#include "tests/check.h"
#include "tests/tiny_config.h"

typedef struct {
    int32_t text[64], thought[64];
    int n_text, n_thought;
} Capture;

static void capture(void* user, int kind, int32_t token) {
    Capture* c = user;
    if (kind == GEN_TEXT) c->text[c->n_text++] = token;
    if (kind == GEN_THOUGHT_TOKEN) c->thought[c->n_thought++] = token;
}

int main(void) {
    const Backend* be = backend_get(getenv("QSTAR_TEST_DEVICE") ? getenv("QSTAR_TEST_DEVICE") : "cpu");
    const int32_t prompt[7] = {5, 17, 3, 44, 9, 9, 21};

    // 1. cached greedy generation == full re-forward greedy generation
    ModelConfig cfg = tiny_config(80, 64, 2, 0, 0.3f);  // init 0.3: peaked predictions, so greedy ties are unlikely
    Model m;
    model_create(&m, &cfg, be);
    model_init_random(&m, 3);
    int32_t full[20];
    int nfull = model_generate(&m, prompt, 7, 20, 0.0f, 1, -1, full);
    GenConfig gc = {.temperature = 0, .top_p = 1, .max_tokens = 20, .seed = 1, .stop_token = -1};
    Capture cap = {0};
    generate(&m, &gc, prompt, 7, capture, &cap);
    int same = nfull == cap.n_text;
    for (int i = 0; i < nfull && same; i++) same = full[i] == cap.text[i];
    printf("greedy: cached %d tokens, full re-forward %d tokens, %s\n", cap.n_text, nfull, same ? "identical" : "DIFFERENT");
    CHECK(same, "cached generation differs from full re-forward generation");
    model_destroy(&m);

    // 2. thinking before the first token == the training step's talk logits with that thought
    cfg = tiny_config(80, 64, 2, 1, 0.3f);
    model_create(&m, &cfg, be);
    model_init_random(&m, 4);
    float* theta = xmalloc(sizeof(float) * m.n_params);
    be->download(theta, m.params, sizeof(float) * m.n_params);
    for (int i = 0; i < cfg.hidden_size; i++) theta[m.off_mix_w4 + i] = 0.5f * sinf(1.3f * i);  // w != 0
    be->upload(m.params, theta, sizeof(float) * m.n_params);
    quietstar_init_thought_embeddings(&m, 12, 100.0f);
    const int NA = 7, L = 7, V = cfg.vocab_size;
    float* gen_logits = xmalloc(sizeof(float) * V);
    GenConfig tc = {.temperature = 0, .top_p = 1, .max_tokens = 1, .seed = 9, .thoughts = 1, .n_ahead = NA,
                    .embed_scale = 100.0f, .stop_token = -1, .first_logits = gen_logits};
    Capture tcap = {0};
    generate(&m, &tc, prompt, 7, capture, &tcap);
    CHECK(tcap.n_thought == NA - 3, "a thought has n_ahead - 3 sampled tokens (got %d)", tcap.n_thought);

    QuietStarConfig qc = quietstar_reference_config();
    qc.n_ahead = NA;
    qc.n_ahead_talk = 1;
    qc.n_passes = 1;
    QuietStar qs;
    quietstar_create(&qs, &m, &qc, 1, L);
    int32_t* forced = xcalloc((size_t)(NA - 3) * L, sizeof(int32_t));
    for (int k = 0; k < NA - 3; k++) forced[k * L + (L - 1)] = tcap.thought[k];  // the last slot thinks it
    qs.forced = forced;
    quietstar_forward(&qs, prompt, 0);
    float* qs_logits = xmalloc(sizeof(float) * V);
    be->download(qs_logits, qs.steps[NA - 1].logits + (size_t)(L - 1) * vocab_padded(&m.cfg), sizeof(float) * V);
    double md = 0, mr = 0;
    for (int v = 0; v < V; v++) {
        if (v == cfg.start_thought_id || v == cfg.end_thought_id) continue;
        md = fmax(md, fabs(gen_logits[v] - qs_logits[v]));
        mr = fmax(mr, fabs(qs_logits[v]));
    }
    printf("thinking: cached mixed logits vs training-step talk logits: max abs diff %.3g (max |logit| %.3g)\n", md, mr);
    CHECK(md <= 1e-4 * fmax(mr, 1), "cached thinking differs from the training step (%.3g)", md);
    quietstar_destroy(&qs);  // forced is the test's own
    model_destroy(&m);
    free(qs_logits);
    free(forced);
    free(gen_logits);
    free(theta);
    return test_summary();
}
