/*
 * --recompute 1 (model.h): the backward recomputes each layer's MLP activations (gate_up = ln2·W, mlp =
 * SwiGLU) instead of keeping them; --recompute 2 (Quiet-STaR) also reruns each thought step's forward from
 * its kept input before its backward. The gradients must be bitwise those of a run that kept everything,
 * for an lm step and a Quiet-STaR step (forced thought tokens, two passes), and the activation memory
 * must shrink (lm: by what the table says, 3·IM values per token and layer, less one layer of scratch).
 *   build/tests/test_recompute            on the cpu backend; QSTAR_TEST_DEVICE=emu|emu-bf16 for others
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "model/quietstar.h"
#include "tests/check.h"
#include "tests/tiny_config.h"

static const Backend* be;

static void make_model(Model* m, const ModelConfig* cfg, int recompute, const float* w) {
    model_create(m, cfg, be);
    m->recompute = recompute;
    model_set_weights(m, w);
}

// The gradient bytes of m (floatX, whatever the backend's precision).
static unsigned char* grad_bytes(const Model* m) {
    const size_t n = be->x_bytes * m->n_params;
    unsigned char* g = xmalloc(n);
    be->sync();
    be->download(g, m->grads, n);
    return g;
}

static void compare(const char* what, const Model* a, const Model* b) {
    unsigned char *ga = grad_bytes(a), *gb = grad_bytes(b);
    size_t differ = 0, nz = 0;
    for (size_t i = 0; i < be->x_bytes * a->n_params; i++) differ += ga[i] != gb[i], nz += ga[i] != 0;
    CHECK(nz > 0, "%s: the gradients are all zero (nothing compared)", what);
    CHECK(differ == 0, "%s: %zu gradient bytes differ with --recompute 1", what, differ);
    printf("  %-52s %s\n", what, differ ? "DIFFER" : "bitwise equal");
    free(ga), free(gb);
}

static void test_lm(const ModelConfig* cfg, const float* w) {
    const int B = 2, T = 24, N = B * T;
    Model m[2];
    int32_t x[48], y[48];
    for (int i = 0; i < N; i++) x[i] = (i * 29 + 3) % cfg->vocab_size, y[i] = (i * 17 + 11) % cfg->vocab_size;
    float loss[2];
    for (int r = 0; r < 2; r++) {
        make_model(&m[r], cfg, r, w);
        model_alloc_activations(&m[r], B, T);
        model_zero_grad(&m[r]);
        loss[r] = model_forward(&m[r], x, y, NULL);
        model_backward(&m[r], 1.0f);
        model_backward(&m[r], 0.5f);  // a second micro-batch: gradients accumulate the same way
    }
    CHECK(loss[0] == loss[1], "lm loss %.9g vs %.9g with --recompute 1", loss[0], loss[1]);
    compare("lm step (two accumulated backwards)", &m[0], &m[1]);
    const size_t b0 = m[0].acts.bytes, b1 = m[1].acts.bytes;
    const size_t mlp = (size_t)3 * cfg->intermediate_size * N * be->x_bytes;
    printf("  lm activations: %zu -> %zu bytes (MLP share %zu per layer)\n", b0, b1, mlp);
    CHECK(b1 < b0 && b0 - b1 >= (size_t)(cfg->num_hidden_layers - 1) * mlp,
          "lm activations shrink by %zu bytes, want >= %zu", b0 - b1, (size_t)(cfg->num_hidden_layers - 1) * mlp);
    model_destroy(&m[0]), model_destroy(&m[1]);
}

static void test_quietstar(const ModelConfig* cfg, const float* w) {
    QuietStarConfig qc = quietstar_reference_config();
    qc.n_ahead = 5;
    qc.n_ahead_talk = 2;
    qc.n_passes = 2;
    qc.policy_weight = 3.0f;
    const int B = 1, L = 12;
    Model m[3];
    QuietStar qs[3];
    int32_t ids[12];
    for (int i = 0; i < L; i++) ids[i] = (i * 37 + 5) % 60;
    double loss[3];
    int32_t* forced = NULL;
    for (int r = 0; r < 3; r++) {
        make_model(&m[r], cfg, r, w);
        quietstar_create(&qs[r], &m[r], &qc, B, L);
        if (!forced) {
            forced = xmalloc(sizeof(int32_t) * (qc.n_ahead - 3) * qs[r].N);
            for (int i = 0; i < (qc.n_ahead - 3) * qs[r].N; i++) forced[i] = (i * 13 + 7) % 60;
        }
        qs[r].forced = forced;
        model_zero_grad(&m[r]);
        loss[r] = quietstar_forward(&qs[r], ids, 3);
        quietstar_backward(&qs[r], 1.0f);
    }
    CHECK(loss[0] == loss[1] && loss[0] == loss[2], "quietstar loss %.9g vs %.9g, %.9g with --recompute 1, 2", loss[0],
          loss[1], loss[2]);
    compare("quietstar step, --recompute 1 (5 thought steps, 2 passes)", &m[0], &m[1]);
    compare("quietstar step, --recompute 2", &m[0], &m[2]);
    const size_t a0 = quietstar_activation_bytes(cfg, &qc, be->x_bytes, 0, B, L);
    const size_t a1 = quietstar_activation_bytes(cfg, &qc, be->x_bytes, 1, B, L);
    const size_t a2 = quietstar_activation_bytes(cfg, &qc, be->x_bytes, 2, B, L);
    printf("  quietstar activations: %zu -> %zu -> %zu bytes\n", a0, a1, a2);
    CHECK(a1 < a0 && a2 < a1, "quietstar activations do not shrink with --recompute 1, 2");
    for (int r = 0; r < 3; r++) quietstar_destroy(&qs[r]), model_destroy(&m[r]);
    free(forced);
}

int main(void) {
    const char* dev = getenv("QSTAR_TEST_DEVICE");
    be = backend_get(dev ? dev : "cpu");
    if (!be) {
        printf("FAIL backend %s is not built in (%s)\n", dev, backend_names());
        return 1;
    }
    ModelConfig cfg = tiny_config(64, 48, 3, 1, 0.15f);
    Model tmp;
    model_create(&tmp, &cfg, backend_get("cpu"));
    model_init_random(&tmp, 5);
    float* w = xmalloc(sizeof(float) * tmp.n_params);
    model_get_weights(&tmp, w);
    for (int i = 0; i < cfg.hidden_size; i++) w[tmp.off_mix_w4 + i] = 0.3f;  // every path carries gradient
    model_destroy(&tmp);
    printf("backend %s (%s)\n", be->name, be->precision);
    test_lm(&cfg, w);
    test_quietstar(&cfg, w);
    free(w);
    return test_summary();
}
