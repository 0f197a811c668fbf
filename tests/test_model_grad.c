/*
 * Finite-difference check of the whole model loss on the tiny preset: the analytic gradient from
 * model_backward against central differences of model_forward's mean loss. Float32 forwards carry
 * ~1e-6 of rounding noise, so each tensor is probed where the signal is large: along its own
 * gradient direction (the derivative there is |g| when g is right) and at its three
 * largest-gradient coordinates. Weights use a wider init than training so gradients are not tiny.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "host/util.h"
#include "model/model.h"
#include "tests/check.h"

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

    float* probe = xmalloc(sizeof(float) * m.n_params);
    double worst_dir = 0, worst_el = 0;
    for (int ti = 0; ti < m.n_tensors; ti++) {
        const ParamTensor* t = &m.tensors[ti];
        const float* g = grad + t->offset;
        double gn = 0;
        for (size_t i = 0; i < t->numel; i++) gn += (double)g[i] * g[i];
        gn = sqrt(gn);
        // directional derivative along g/|g|
        const double h = 1e-2;
        memcpy(probe, theta, sizeof(float) * m.n_params);
        for (size_t i = 0; i < t->numel; i++) probe[t->offset + i] = theta[t->offset + i] + (float)(h * g[i] / gn);
        double lp = loss_at(probe);
        for (size_t i = 0; i < t->numel; i++) probe[t->offset + i] = theta[t->offset + i] - (float)(h * g[i] / gn);
        double lm = loss_at(probe);
        double fd = (lp - lm) / (2 * h), rel = fabs(fd - gn) / gn;
        worst_dir = fmax(worst_dir, rel);
        CHECK(rel < 5e-3, "%s: |g| %.6g but finite difference along g gives %.6g (rel %.3g)", t->name, gn, fd, rel);
        // the three largest coordinates
        size_t top[3] = {0, 0, 0};
        for (size_t i = 0; i < t->numel; i++) {
            if (fabsf(g[i]) > fabsf(g[top[0]])) { top[2] = top[1]; top[1] = top[0]; top[0] = i; }
            else if (fabsf(g[i]) > fabsf(g[top[1]]) && i != top[0]) { top[2] = top[1]; top[1] = i; }
            else if (fabsf(g[i]) > fabsf(g[top[2]]) && i != top[0] && i != top[1]) top[2] = i;
        }
        for (int k = 0; k < 3; k++) {
            size_t i = t->offset + top[k];
            const double he = 1e-2;
            memcpy(probe, theta, sizeof(float) * m.n_params);
            probe[i] = theta[i] + (float)he;
            double a = loss_at(probe);
            probe[i] = theta[i] - (float)he;
            double b = loss_at(probe);
            double fde = (a - b) / (2 * he), rele = fabs(fde - grad[i]) / fmax(fabs(grad[i]), 1e-4);
            worst_el = fmax(worst_el, rele);
            CHECK(rele < 1.5e-2, "%s[%zu]: analytic %.6g, finite difference %.6g (rel %.3g)", t->name, top[k], grad[i],
                  fde, rele);
        }
    }
    printf("worst relative error: %.3g along gradient directions, %.3g at single coordinates (%d tensors)\n",
           worst_dir, worst_el, m.n_tensors);
    model_destroy(&m);
    return test_summary();
}
