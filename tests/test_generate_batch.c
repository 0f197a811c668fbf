/*
 * Batched generation (generate_batch) against single-prompt generation (generate): for prompts of
 * different lengths, several samples each, with and without Quiet-STaR thoughts, every request's
 * tokens are the same at every batch size, sample 0 of each prompt is exactly generate()'s output,
 * the samples of one prompt differ, greedy decoding equals full re-forwards (model_generate), and
 * the stop token and an emit callback's stop end a request where they should; and the sampled
 * tokens follow softmax(logits / T) restricted to the top-p nucleus.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "model/generate.h"
#include "model/quietstar.h"
#include "tests/check.h"
#include "tests/tiny_config.h"

enum { NP = 5, K = 3, MAXT = 14 };
static const int32_t prompts[NP][12] = {{5}, {17, 3, 44, 9}, {9, 21, 60, 2, 2, 7, 33, 70, 12, 1, 4, 8}, {40, 41}, {11, 12, 13, 14, 15, 16}};
static const int n_prompt[NP] = {1, 4, 12, 2, 6};

typedef struct {
    int32_t text[64];
    int n;
} Capture;

static void capture(void* user, int kind, int32_t token) {
    Capture* c = user;
    if (kind == GEN_TEXT) c->text[c->n++] = token;
}

typedef struct {
    int stop_after;  // end request 1 after this many text tokens (0: never)
    int thought_tokens[NP * K];
} Counter;

static int on_token(void* user, int r, int kind, int32_t token) {
    Counter* c = user;
    if (kind == GEN_THOUGHT_TOKEN) c->thought_tokens[r]++;
    (void)token;
    return 0;
}

static int stop_request1(void* user, int r, int kind, int32_t token) {
    static int seen = 0;
    (void)token;
    if (kind == GEN_TEXT && r == 1 && ++seen == ((Counter*)user)->stop_after) return 1;
    return 0;
}

static void run_batch(Model* m, const GenConfig* gc, GenRequest* reqs, int32_t* out, int batch, GenBatchEmit emit, void* u) {
    for (int p = 0; p < NP; p++)
        for (int k = 0; k < K; k++)
            reqs[p * K + k] = (GenRequest){.prompt = prompts[p], .n_prompt = n_prompt[p], .sample = (uint32_t)k,
                                           .out = out + (p * K + k) * MAXT};
    generate_batch(m, gc, reqs, NP * K, batch, emit, u);
}

static int same_requests(const GenRequest* a, const GenRequest* b) {
    for (int r = 0; r < NP * K; r++) {
        if (a[r].n_out != b[r].n_out || a[r].finish != b[r].finish) return 0;
        if (memcmp(a[r].out, b[r].out, sizeof(int32_t) * a[r].n_out)) return 0;
    }
    return 1;
}

static void check_model(Model* m, GenConfig gc, const char* what) {
    GenRequest ref[NP * K], got[NP * K];
    int32_t ref_out[NP * K * MAXT], got_out[NP * K * MAXT];
    Counter cnt = {0};
    run_batch(m, &gc, ref, ref_out, 1, on_token, &cnt);
    for (int r = 0; r < NP * K; r++)
        CHECK(!gc.thoughts || cnt.thought_tokens[r] == ref[r].n_out * (gc.n_ahead - 3),
              "%s: request %d: %d thought tokens for %d text tokens", what, r, cnt.thought_tokens[r], ref[r].n_out);
    const int batches[] = {2, 4, 7, 64};
    for (int i = 0; i < 4; i++) {
        run_batch(m, &gc, got, got_out, batches[i], NULL, NULL);
        CHECK(same_requests(ref, got), "%s: batch %d differs from batch 1", what, batches[i]);
    }
    int n_same = 0, distinct = 1;
    for (int p = 0; p < NP; p++) {
        Capture c = {0};
        generate(m, &gc, prompts[p], n_prompt[p], capture, &c);
        const GenRequest* q = &ref[p * K];
        int same = c.n == q->n_out && !memcmp(c.text, q->out, sizeof(int32_t) * c.n);
        n_same += same;
        CHECK(same, "%s: prompt %d: sample 0 differs from generate()", what, p);
        if (gc.temperature > 0)
            for (int k = 1; k < K; k++)
                if (q[k].n_out == q->n_out && !memcmp(q[k].out, q->out, sizeof(int32_t) * q->n_out)) distinct = 0;
    }
    CHECK(distinct, "%s: samples of one prompt repeat", what);
    printf("%s: %d requests identical at batch 1, 2, 4, 7, 64; sample 0 == generate() for %d/%d prompts\n", what,
           NP * K, n_same, NP);
}

static int by_desc(const void* a, const void* b) {
    double x = *(const double*)a, y = *(const double*)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

// The sampler draws from softmax(logits / T) restricted to the top-p nucleus: the first token of
// n_draws samples of one prompt against the distribution computed here from the same logits.
static void check_distribution(Model* m, float temperature, float top_p) {
    const int V = m->cfg.vocab_size, n_draws = 6000;
    float* z = xmalloc(sizeof(float) * V);
    GenConfig gc = {.temperature = 0, .top_p = 1, .max_tokens = 1, .seed = 1, .stop_token = -1, .first_logits = z};
    Capture c = {0};
    generate(m, &gc, prompts[1], n_prompt[1], capture, &c);
    double* p = xmalloc(sizeof(double) * V);
    double* sorted = xmalloc(sizeof(double) * V);
    double mx = z[0], sum = 0;
    for (int v = 1; v < V; v++) mx = z[v] > mx ? z[v] : mx;
    for (int v = 0; v < V; v++) sum += p[v] = exp((z[v] - mx) / temperature);
    for (int v = 0; v < V; v++) sorted[v] = p[v] /= sum;
    qsort(sorted, (size_t)V, sizeof(double), by_desc);
    double cut = 0, mass = 0;  // the nucleus: every token at least as probable as the one reaching top_p
    for (int k = 0; k < V && mass < top_p; k++) mass += (cut = sorted[k]);
    double kept = 0;
    for (int v = 0; v < V; v++) kept += p[v] = p[v] >= cut ? p[v] : 0;
    GenRequest* reqs = xcalloc(n_draws, sizeof(GenRequest));
    int32_t* out = xmalloc(sizeof(int32_t) * n_draws);
    for (int r = 0; r < n_draws; r++)
        reqs[r] = (GenRequest){.prompt = prompts[1], .n_prompt = n_prompt[1], .sample = (uint32_t)r, .out = out + r};
    gc = (GenConfig){.temperature = temperature, .top_p = top_p, .max_tokens = 1, .seed = 3, .stop_token = -1};
    generate_batch(m, &gc, reqs, n_draws, 64, NULL, NULL);
    double* freq = xcalloc((size_t)V, sizeof(double));
    for (int r = 0; r < n_draws; r++) freq[out[r]] += 1.0 / n_draws;
    double worst = 0, outside = 0;
    for (int v = 0; v < V; v++) {
        worst = fmax(worst, fabs(freq[v] - p[v] / kept));
        if (p[v] == 0) outside += freq[v];
    }
    printf("sampling T %.1f top-p %.2f: %d draws, max |frequency - probability| %.4f (bound 0.025), %.4f outside the "
           "nucleus (top token p = %.3f)\n", temperature, top_p, n_draws, worst, outside, sorted[0]);
    CHECK(worst <= 0.025 && outside == 0, "T %.1f top-p %.2f: the sampled distribution is off (%.4f, %.4f outside)",
          temperature, top_p, worst, outside);
    free(freq), free(out), free(reqs), free(sorted), free(p), free(z);
}

int main(void) {
    const char* device = getenv("QSTAR_TEST_DEVICE") ? getenv("QSTAR_TEST_DEVICE") : "cpu";
    const Backend* be = backend_get(device);
    if (!be) fatal("backend \"%s\" is not in this build (%s)", device, backend_names());
    ModelConfig cfg = tiny_config(80, 64, 2, 0, 0.3f);  // init 0.3: peaked predictions, so greedy ties are unlikely
    Model m;
    model_create(&m, &cfg, be);
    model_init_random(&m, 3);

    check_distribution(&m, 1.0f, 1.0f);
    check_distribution(&m, 0.7f, 0.8f);
    GenConfig gc = {.temperature = 1.0f, .top_p = 0.9f, .max_tokens = MAXT, .seed = 11, .stop_token = -1};
    check_model(&m, gc, "sampling");
    gc.temperature = 0;
    check_model(&m, gc, "greedy");
    // greedy == full re-forwards, for every prompt
    int all = 1;
    for (int p = 0; p < NP; p++) {
        GenRequest q = {.prompt = prompts[p], .n_prompt = n_prompt[p]};
        int32_t out[MAXT], full[MAXT];
        q.out = out;
        generate_batch(&m, &gc, &q, 1, 1, NULL, NULL);
        int n = model_generate(&m, prompts[p], n_prompt[p], MAXT, 0.0f, 1, -1, full);
        all &= n == q.n_out && !memcmp(out, full, sizeof(int32_t) * n);
    }
    CHECK(all, "batched greedy generation differs from full re-forwards");

    // stop token: every request ends right after its first occurrence; an emit stop ends request 1
    GenRequest reqs[NP * K];
    int32_t outs[NP * K * MAXT];
    gc.temperature = 1.0f;
    run_batch(&m, &gc, reqs, outs, 4, NULL, NULL);
    gc.stop_token = reqs[0].out[2];
    GenRequest st[NP * K];
    int32_t st_out[NP * K * MAXT];
    Counter stopper = {.stop_after = 3};
    run_batch(&m, &gc, st, st_out, 4, stop_request1, &stopper);
    int ok = 1;
    for (int r = 0; r < NP * K; r++) {
        int first = -1;
        for (int i = 0; i < reqs[r].n_out && first < 0; i++)
            if (reqs[r].out[i] == gc.stop_token) first = i;
        int want = first >= 0 ? first + 1 : reqs[r].n_out;
        if (r == 1 && want > 3) want = 3;
        ok &= st[r].n_out == want && !memcmp(st[r].out, reqs[r].out, sizeof(int32_t) * want);
        ok &= st[r].finish == (want < MAXT || first == MAXT - 1 || (r == 1 && want == 3) ? GEN_FINISH_STOP : GEN_FINISH_LENGTH);
    }
    CHECK(ok, "stop token / emit stop: requests end at the wrong token or with the wrong reason");
    model_destroy(&m);

    // Quiet-STaR: thinking before every token
    cfg = tiny_config(80, 64, 2, 1, 0.3f);
    model_create(&m, &cfg, be);
    model_init_random(&m, 4);
    float* theta = xmalloc(sizeof(float) * m.n_params);
    be->download(theta, m.params, sizeof(float) * m.n_params);
    for (int i = 0; i < cfg.hidden_size; i++) theta[m.off_mix_w4 + i] = 0.5f;  // the thought matters
    be->upload(m.params, theta, sizeof(float) * m.n_params);
    free(theta);
    quietstar_init_thought_embeddings(&m, 12, 100.0f);
    GenConfig tc = {.temperature = 1.0f, .top_p = 1, .max_tokens = MAXT, .seed = 5, .thoughts = 1, .n_ahead = 6,
                    .embed_scale = 100.0f, .stop_token = -1};
    check_model(&m, tc, "thoughts");
    model_destroy(&m);
    return test_summary();
}
