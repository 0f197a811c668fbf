/*
 * Finite-difference check of the whole Quiet-STaR loss — base NLL, talk NLLs through the mixing
 * head, and the REINFORCE term — with the thoughts held fixed (forced tokens) and the advantages
 * held fixed (autograd's detach, which finite differences would otherwise differentiate through).
 * As in test_model_grad, each tensor is probed along its own gradient direction and at its largest
 * coordinates, where the signal stands well above float32 rounding of the loss.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "host/util.h"
#include "model/quietstar.h"
#include "tests/check.h"

static Model m;
static QuietStar qs;
static int32_t* ids;

static double loss_at(const float* params) {
    m.be->upload(m.params, params, sizeof(float) * m.n_params);
    return quietstar_forward(&qs, ids, 3);
}

int main(void) {
    ModelConfig cfg;
    config_load(&cfg, "configs/tiny.json");
    cfg.vocab_size = 64;
    cfg.hidden_size = 32;
    cfg.intermediate_size = 48;
    cfg.num_hidden_layers = 2;
    cfg.head_dim = 8;
    cfg.start_thought_id = 62;
    cfg.end_thought_id = 63;
    cfg.initializer_range = 0.15f;
    const char* dev = getenv("QSTAR_TEST_DEVICE");
    model_create(&m, &cfg, backend_get(dev ? dev : "cpu"));
    model_init_random(&m, 11);
    // give the mixing head's last layer and the thought embeddings values, so every path carries gradient
    float* theta = xmalloc(sizeof(float) * m.n_params);
    m.be->download(theta, m.params, sizeof(float) * m.n_params);
    for (int i = 0; i < cfg.hidden_size; i++) {
        theta[m.off_mix_w4 + i] = 0.3f * sinf(1.7f * i);
        theta[m.off_start + i] = 0.004f * cosf(0.9f * i);
        theta[m.off_end + i] = 0.004f * sinf(1.3f * i + 0.5f);
        theta[m.off_mix_b0 + i] = 0.05f * cosf(2.1f * i);
    }
    m.be->upload(m.params, theta, sizeof(float) * m.n_params);

    QuietStarConfig qc = quietstar_reference_config();
    qc.n_ahead = 5;
    qc.n_ahead_talk = 2;
    qc.n_passes = 2;
    qc.policy_weight = 3.0f;  // large enough to matter, small enough to keep the loss O(1)
    const int B = 1, L = 10;
    quietstar_create(&qs, &m, &qc, B, L);
    ids = xmalloc(sizeof(int32_t) * B * L);
    for (int i = 0; i < B * L; i++) ids[i] = (i * 37 + 5) % 60;
    int32_t* forced = xmalloc(sizeof(int32_t) * (qc.n_ahead - 3) * qs.N);
    for (int i = 0; i < (qc.n_ahead - 3) * qs.N; i++) forced[i] = (i * 13 + 7) % 60;
    qs.forced = forced;

    model_zero_grad(&m);
    double loss0 = quietstar_forward(&qs, ids, 3);
    float* adv = xmalloc(sizeof(float) * qs.N);
    m.be->download(adv, qs.advantage, sizeof(float) * qs.N);
    int nonzero = 0;
    for (int n = 0; n < qs.N; n++) nonzero += adv[n] > 0;
    qs.fixed_advantage = adv;
    quietstar_backward(&qs, 1.0f);
    float* grad = xmalloc(sizeof(float) * m.n_params);
    m.be->download(grad, m.grads, sizeof(float) * m.n_params);
    printf("quietstar loss %.6f (base %.4f, policy %.4f), %d of %d slots with positive advantage\n", loss0,
           qs.stats.base_nll, qs.stats.policy_loss, nonzero, qs.N);
    CHECK(nonzero > 0 && qs.stats.policy_loss > 0, "the REINFORCE term must be active in this test");

    float* probe = xmalloc(sizeof(float) * m.n_params);
    double worst_dir = 0, worst_el = 0;
    for (int ti = 0; ti < m.n_tensors; ti++) {
        const ParamTensor* t = &m.tensors[ti];
        const float* g = grad + t->offset;
        double gn = 0;
        for (size_t i = 0; i < t->numel; i++) gn += (double)g[i] * g[i];
        gn = sqrt(gn);
        CHECK(gn > 0, "%s has no gradient", t->name);
        if (gn == 0) continue;
        // Small steps because the mixing head's ReLUs put kinks in the loss (a step across one costs
        // O(h)); the start/end embeddings enter ×embed_scale, so their step is that much smaller.
        const double h = (strstr(t->name, "_embedding") && strstr(t->name, "quietstar.") ? 1.0 / qc.embed_scale : 1.0) *
                         5e-4;
        memcpy(probe, theta, sizeof(float) * m.n_params);
        for (size_t i = 0; i < t->numel; i++) probe[t->offset + i] = theta[t->offset + i] + (float)(h * g[i] / gn);
        double lp = loss_at(probe);
        for (size_t i = 0; i < t->numel; i++) probe[t->offset + i] = theta[t->offset + i] - (float)(h * g[i] / gn);
        double lm = loss_at(probe);
        double fd = (lp - lm) / (2 * h), rel = fabs(fd - gn) / gn;
        worst_dir = fmax(worst_dir, rel);
        CHECK(rel < 1e-2, "%s: |g| %.6g but the finite difference along g is %.6g (rel %.3g)", t->name, gn, fd, rel);
        size_t top = 0;
        for (size_t i = 1; i < t->numel; i++)
            if (fabsf(g[i]) > fabsf(g[top])) top = i;
        size_t i = t->offset + top;
        const double he = h;
        memcpy(probe, theta, sizeof(float) * m.n_params);
        probe[i] = theta[i] + (float)he;
        double a = loss_at(probe);
        probe[i] = theta[i] - (float)he;
        double b = loss_at(probe);
        double fde = (a - b) / (2 * he), rele = fabs(fde - grad[i]) / fmax(fabs(grad[i]), 1e-4);
        worst_el = fmax(worst_el, rele);
        CHECK(rele < 1.5e-2, "%s[%zu]: analytic %.6g, finite difference %.6g (rel %.3g)", t->name, top, grad[i], fde,
              rele);
    }
    printf("worst relative error: %.3g along gradient directions, %.3g at the largest coordinates (%d tensors)\n",
           worst_dir, worst_el, m.n_tensors);
    quietstar_destroy(&qs);
    model_destroy(&m);
    return test_summary();
}
