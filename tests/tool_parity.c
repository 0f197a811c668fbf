/*
 * Parity with transformers: loads a checkpoint written by tests/ref/mistral_reference.py into qstar,
 * runs the same batch forward and backward, and compares logits, loss and every gradient with what
 * transformers and PyTorch autograd recorded in ref.safetensors. Optionally re-exports the weights
 * (model.safetensors + config.json) so the script can check that transformers loads what qstar writes.
 *
 *   tool_parity DIR [EXPORT_DIR]
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
#include "model/model.h"
#include "tests/check.h"
#include "io/weights.h"

static float* read_ref(const StIndex* st, const char* name, const int64_t* shape, int ndim) {
    const StTensor* t = st_find(st, name);
    if (!t) fatal("reference has no tensor %s", name);
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (size_t)shape[i];
    float* buf = xmalloc(sizeof(float) * n);
    st_read_f32(st, t, buf, shape, ndim);
    return buf;
}

int main(int argc, char** argv) {
    if (argc < 2) fatal("usage: tool_parity DIR [EXPORT_DIR]");
    const char* dir = argv[1];
    ModelConfig cfg;
    config_load(&cfg, dir);
    Model m;
    model_create(&m, &cfg, backend_get("cpu"));
    model_load_weights(&m, dir);

    char* ref_path = xsprintf("%s/ref.safetensors", dir);
    StIndex* ref = st_open(ref_path);
    const StTensor* tt = st_find(ref, "tokens");
    if (!tt || tt->ndim != 2) fatal("%s: no (B, T) tokens tensor", ref_path);
    const int B = (int)tt->shape[0], T = (int)tt->shape[1], N = B * T, V = cfg.vocab_size;
    int32_t* tokens = xmalloc(sizeof(int32_t) * N);
    st_read_raw(ref, tt, tokens);
    int32_t* targets = xmalloc(sizeof(int32_t) * N);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) targets[b * T + t] = t + 1 < T ? tokens[b * T + t + 1] : QSTAR_IGNORE_INDEX;

    model_alloc_activations(&m, B, T);
    model_zero_grad(&m);
    float loss = model_forward(&m, tokens, targets, NULL);
    // logits are overwritten by the backward, so compare them first
    int64_t lshape[3] = {B, T, V};
    float* ref_logits = read_ref(ref, "logits", lshape, 3);
    double max_diff = 0, max_ref = 0;
    float* logits = xmalloc(sizeof(float) * (size_t)N * V);
    model_download_logits(&m, logits, m.acts.logits, N);
    for (size_t i = 0; i < (size_t)N * V; i++) {
        max_diff = fmax(max_diff, fabs(logits[i] - ref_logits[i]));
        max_ref = fmax(max_ref, fabs(ref_logits[i]));
    }
    printf("%s: logits max abs diff %.3g (max |logit| %.3g)\n", dir, max_diff, max_ref);
    CHECK(max_diff <= 1e-4, "%s: logits differ by %.3g > 1e-4", dir, max_diff);
    int64_t one = 1;
    float* ref_loss = read_ref(ref, "loss", &one, 1);
    double loss_rel = fabs(loss - ref_loss[0]) / fabs(ref_loss[0]);
    printf("%s: loss qstar %.7f transformers %.7f (rel %.2g)\n", dir, loss, ref_loss[0], loss_rel);
    CHECK(loss_rel <= 1e-5, "%s: loss differs (rel %.3g)", dir, loss_rel);

    model_backward(&m, 1.0f);
    double worst = 0;
    for (int i = 0; i < m.n_tensors; i++) {
        const ParamTensor* p = &m.tensors[i];
        if (cfg.tie_word_embeddings && !strcmp(p->name, "lm_head.weight")) continue;
        char* name = xsprintf("grad.%s", p->name);
        float* g = read_ref(ref, name, p->shape, p->ndim);
        double md = 0, mr = 0;
        for (size_t k = 0; k < p->numel; k++) {
            md = fmax(md, fabs(m.grads[p->offset + k] - g[k]));
            mr = fmax(mr, fabs(g[k]));
        }
        double rel = md / (mr > 0 ? mr : 1);
        worst = fmax(worst, rel);
        CHECK(rel <= 1e-3, "%s: gradient of %s differs: max abs %.3g, relative %.3g", dir, p->name, md, rel);
        free(g);
        free(name);
    }
    printf("%s: %d gradients, worst relative difference %.3g\n", dir, m.n_tensors, worst);

    if (argc > 2) {
        mkdir_p(argv[2]);
        char* p = xsprintf("%s/model.safetensors", argv[2]);
        model_save_weights(&m, p);
        free(p);
        p = xsprintf("%s/config.json", argv[2]);
        config_save(&cfg, p, "float32");
        free(p);
    }
    free(ref_loss);
    free(ref_logits);
    free(logits);
    free(targets);
    free(tokens);
    free(ref_path);
    st_close(ref);
    model_destroy(&m);
    return test_summary();
}
