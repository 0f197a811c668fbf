/*
 * Finite-difference check of the whole Quiet-STaR loss — base NLL, talk NLLs through the mixing
 * head, and the REINFORCE term — with the thoughts held fixed (forced tokens) and the advantages
 * held fixed (autograd's detach, which finite differences would otherwise differentiate through).
 * As in test_model_grad, each tensor is probed along its own gradient direction and at its largest
 * coordinate (tests/fd_probe.h), where the signal stands well above float32 rounding of the loss.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "model/quietstar.h"
#include "tests/check.h"
#include "tests/tiny_config.h"
#include "tests/fd_probe.h"

static Model m;
static QuietStar qs;
static int32_t* ids;

static double loss_at(const float* params) {
    m.be->upload(m.params, params, sizeof(float) * m.n_params);
    return quietstar_forward(&qs, ids, 3);
}

// Small steps because the mixing head's ReLUs put kinks in the loss (a step across one costs O(h));
// the start/end embeddings enter ×embed_scale, so their step is that much smaller.
static double thought_step(const ParamTensor* t) {
    return strstr(t->name, "quietstar.") && strstr(t->name, "_embedding") ? 1.0 / qs.qc.embed_scale : 1.0;
}

int main(void) {
    ModelConfig cfg = tiny_config(64, 48, 2, 1, 0.15f);
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

    FdProbe probe = {.step = 5e-4, .tol_dir = 1e-2, .tol_el = 1.5e-2, .n_top = 1, .step_scale = thought_step};
    fd_probe_model(&m, theta, grad, loss_at, &probe);
    quietstar_destroy(&qs);  // forced and fixed_advantage are the test's own
    model_destroy(&m);
    free(grad);
    free(adv);
    free(forced);
    free(ids);
    free(theta);
    return test_summary();
}
