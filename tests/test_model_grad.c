/*
 * Finite-difference check of the whole model loss on the tiny preset: the analytic gradient from
 * model_backward against central differences of model_forward's mean loss, probed per tensor along
 * its gradient and at its three largest coordinates (tests/fd_probe.h). Weights use a wider init
 * than training so gradients are not tiny.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "model/model.h"
#include "tests/check.h"
#include "tests/fd_probe.h"

static Model m;
static int32_t *tokens, *targets;
static float* theta;  // host copy of the parameters

static double loss_at(const float* params) {
    m.be->upload(m.params, params, sizeof(float) * m.n_params);
    return model_forward(&m, tokens, targets, NULL);
}

int main(void) {
    ModelConfig cfg;
    config_load(&cfg, "configs/tiny.json");
    cfg.initializer_range = 0.08f;
    const char* dev = getenv("QSTAR_TEST_DEVICE");
    model_create(&m, &cfg, backend_get(dev ? dev : "cpu"));
    model_init_random(&m, 7);
    const int B = 2, T = 12, N = B * T;
    model_alloc_activations(&m, B, T);
    tokens = xmalloc(sizeof(int32_t) * N);
    targets = xmalloc(sizeof(int32_t) * N);
    uint64_t s = 12345;
    for (int i = 0; i < N; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        tokens[i] = (int32_t)((s >> 33) % cfg.vocab_size);
    }
    for (int i = 0; i < N; i++) targets[i] = (i % T == T - 1) ? QSTAR_IGNORE_INDEX : tokens[i + 1];
    targets[3] = QSTAR_IGNORE_INDEX;  // an ignored target in the middle, too

    theta = xmalloc(sizeof(float) * m.n_params);
    m.be->download(theta, m.params, sizeof(float) * m.n_params);
    model_zero_grad(&m);
    double loss0 = model_forward(&m, tokens, targets, NULL);
    model_backward(&m, 1.0f);
    float* grad = xmalloc(sizeof(float) * m.n_params);
    m.be->download(grad, m.grads, sizeof(float) * m.n_params);
    printf("tiny preset: %zu parameters, loss %.6f\n", m.n_params, loss0);

    FdProbe probe = {.step = 1e-2, .tol_dir = 5e-3, .tol_el = 1.5e-2, .n_top = 3};
    fd_probe_model(&m, theta, grad, loss_at, &probe);
    model_destroy(&m);
    free(grad);
    free(theta);
    free(tokens);
    free(targets);
    return test_summary();
}
