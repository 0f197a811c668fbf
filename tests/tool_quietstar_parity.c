/*
 * Quiet-STaR parity: runs qstar's Quiet-STaR step on a checkpoint and forced thoughts written by
 * tests/ref/quietstar_reference.py (the reference algorithm with its dense mask, in PyTorch) and
 * compares base and talk logits, base NLL, talk NLLs, rewards, advantages, policy and total loss
 * (relative <= 1e-4) and every gradient (relative <= 1e-3).
 *
 *   tool_quietstar_parity DIR
 */
// Backend buffers are read and written here as fp32 arrays: this file runs on fp32 tables (floatX =
// float, kernels/ops.h); the bf16 tables have their own tests (tests/test_bf16.c).
#define QSTAR_FLOATX float
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"
#include "common/util.h"
#include "model/quietstar.h"
#include "tests/check.h"
#include "io/weights.h"

static StIndex* ref;
static const char* dir;

static float* get(const char* name, size_t* n) {
    const StTensor* t = st_find(ref, name);
    if (!t) fatal("%s: reference has no %s", dir, name);
    float* b = xmalloc(sizeof(float) * (size_t)t->numel);
    st_read_f32(ref, t, b, t->shape, t->ndim);
    if (n) *n = (size_t)t->numel;
    return b;
}

static void compare(const char* what, const float* ours, const float* theirs, size_t n, double tol) {
    double md = 0, mr = 0;
    for (size_t i = 0; i < n; i++) {
        md = fmax(md, fabs(ours[i] - theirs[i]));
        mr = fmax(mr, fabs(theirs[i]));
    }
    double rel = md / (mr > 0 ? mr : 1);
    printf("  %-44s max abs diff %.3g (max |ref| %.3g, rel %.3g)\n", what, md, mr, rel);
    CHECK(rel <= tol, "%s: %s differs (relative %.3g > %.1g)", dir, what, rel, tol);
}

static void compare_scalar(const char* what, double ours, double theirs, double tol) {
    double rel = fabs(ours - theirs) / fmax(fabs(theirs), 1e-12);
    printf("  %-44s qstar %.8g  reference %.8g  (rel %.2g)\n", what, ours, theirs, rel);
    CHECK(rel <= tol, "%s: %s differs (rel %.3g)", dir, what, rel);
}

int main(int argc, char** argv) {
    if (argc < 2) fatal("usage: tool_quietstar_parity DIR");
    dir = argv[1];
    ModelConfig cfg;
    config_load(&cfg, dir);
    Model m;
    model_create(&m, &cfg, backend_get(getenv("QSTAR_TEST_DEVICE") ? getenv("QSTAR_TEST_DEVICE") : "cpu"));
    model_load_weights(&m, dir);
    char* ref_path = xsprintf("%s/ref.safetensors", dir);
    ref = st_open(ref_path);
    int32_t shape[5];
    st_read_raw(ref, st_find(ref, "shape"), shape);
    const int NA = shape[0], T = shape[1], P = shape[2], B = shape[3], L = shape[4], R = B * P, N = R * L;
    int32_t* ids = xmalloc(sizeof(int32_t) * B * L);
    st_read_raw(ref, st_find(ref, "ids"), ids);
    int32_t* forced = xmalloc(sizeof(int32_t) * (NA - 3) * N);
    st_read_raw(ref, st_find(ref, "forced"), forced);

    float* pw = get("policy_weight", NULL);
    QuietStarConfig qc = quietstar_reference_config();
    qc.policy_weight = pw[0];
    free(pw);
    qc.n_ahead = NA;
    qc.n_ahead_talk = T;
    qc.n_passes = P;
    QuietStar qs;
    quietstar_create(&qs, &m, &qc, B, L);
    qs.forced = forced;
    model_zero_grad(&m);
    double loss = quietstar_forward(&qs, ids, 0);
    printf("%s: n_ahead %d, talk %d, passes %d, batch %d, seq %d\n", dir, NA, T, P, B, L);

    const int V = cfg.vocab_size;
    float* buf = xmalloc(sizeof(float) * (size_t)N * V);
    size_t n;
    float* r = get("base_logits", &n);
    QSTAR_ASSERT(n == (size_t)N * V);
    model_download_logits(&m, buf, qs.steps[0].logits, N);
    compare("base logits", buf, r, n, 1e-4);
    free(r);
    r = get("talk_logits", &n);
    for (int s = 0; s < T; s++) {
        model_download_logits(&m, buf, qs.steps[NA - 1 + s].logits, N);
        char what[64];
        snprintf(what, sizeof what, "talk logits, step %d", s);
        compare(what, buf, r + (size_t)s * N * V, (size_t)N * V, 1e-4);
    }
    free(r);
    // With the mixing head's last layer at zero the mixed prediction is exactly the base model's:
    // talk step s at slot i must give the base logits of slot i + s.
    float* w4 = xmalloc(sizeof(float) * cfg.hidden_size);
    m.be->download(w4, m.params + m.off_mix_w4, sizeof(float) * cfg.hidden_size);
    int zero_mixer = 1;
    for (int i = 0; i < cfg.hidden_size; i++) zero_mixer &= w4[i] == 0.0f;
    free(w4);
    if (zero_mixer) {
        float* base = xmalloc(sizeof(float) * (size_t)N * V);
        model_download_logits(&m, base, qs.steps[0].logits, N);
        for (int s = 0; s < T; s++) {
            model_download_logits(&m, buf, qs.steps[NA - 1 + s].logits, N);
            double md = 0;
            for (int row = 0; row < R; row++)
                for (int i = 0; i + s < L; i++)
                    for (int v = 0; v < V; v++)
                        md = fmax(md, fabs(buf[((size_t)row * L + i) * V + v] -
                                           base[((size_t)row * L + i + s) * V + v]));
            printf("  zero mixer: talk step %d vs base logits shifted by %d: max abs diff %.3g\n", s, s, md);
            CHECK(md <= 1e-5, "%s: with a zero mixing head, talk step %d differs from the base logits by %.3g", dir, s,
                  md);
        }
        free(base);
    }
    r = get("base_nll", NULL);
    compare_scalar("base NLL", qs.stats.base_nll, r[0], 1e-4);
    free(r);
    r = get("talk_nll", NULL);
    for (int s = 0; s < T; s++) {
        char what[64];
        snprintf(what, sizeof what, "talk NLL %d", s);
        compare_scalar(what, qs.stats.talk_nll[s], r[s], 1e-4);
    }
    free(r);
    r = get("reward", &n);
    m.be->download(buf, qs.reward, sizeof(float) * n);
    compare("rewards", buf, r, n, 1e-4);
    free(r);
    r = get("advantage", &n);
    m.be->download(buf, qs.advantage, sizeof(float) * n);
    compare("advantages", buf, r, n, 1e-4);
    free(r);
    r = get("policy_loss", NULL);
    compare_scalar("policy loss", qs.stats.policy_loss, r[0], 1e-4);
    free(r);
    r = get("loss", NULL);
    compare_scalar("total loss", loss, r[0], 1e-4);
    free(r);

    quietstar_backward(&qs, 1.0f);
    float* g = xmalloc(sizeof(float) * m.n_params);
    m.be->download(g, m.grads, sizeof(float) * m.n_params);
    for (int i = 0; i < m.n_tensors; i++) {
        const ParamTensor* p = &m.tensors[i];
        char* name = xsprintf("grad.%s", p->name);
        r = get(name, &n);
        QSTAR_ASSERT(n == p->numel);
        char what[128];
        snprintf(what, sizeof what, "d %s", p->name);
        compare(what, g + p->offset, r, n, 1e-3);
        free(r);
        free(name);
    }
    free(g);
    free(buf);
    free(forced);
    free(ids);
    free(ref_path);
    quietstar_destroy(&qs);
    model_destroy(&m);
    st_close(ref);
    return test_summary();
}
