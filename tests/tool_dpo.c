/*
 * The DPO loss and gradient against PyTorch autograd (tests/test_dpo.sh): loads the policy and the
 * frozen reference written by tests/ref/dpo_reference.py, computes the reference's sequence
 * log-probabilities once with qstar (the cache a DPO run keeps), checks both models' log-probabilities
 * (padded rows against PyTorch's unpadded sequences: no leak), then one dpo_step's loss and every
 * parameter gradient. Also checks that sft_make_row builds exactly the reference's rows.
 *
 *   tool_dpo DIR [--beta-scale S] [--device NAME]
 *   (S != 1 deliberately uses a wrong beta: the checks must fail; NAME: a backend of this build, cpu by
 *   default — emu runs the CUDA kernels on the CPU emulator)
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
#include "model/dpo.h"
#include "model/model.h"
#include "model/sft.h"
#include "tests/check.h"
#include "io/weights.h"

static void* read_tensor(const StIndex* st, const char* name, size_t* numel) {
    const StTensor* t = st_find(st, name);
    if (!t) fatal("reference has no tensor %s", name);
    size_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= (size_t)t->shape[i];
    void* buf = xmalloc(4 * n);
    if (!strcmp(name, "inputs") || !strcmp(name, "targets")) st_read_raw(st, t, buf);
    else st_read_f32(st, t, buf, t->shape, t->ndim);
    if (numel) *numel = n;
    return buf;
}

static const Backend* device;

static void load(Model* m, const char* dir) {
    ModelConfig cfg;
    config_load(&cfg, dir);
    model_create(m, &cfg, device);
    model_load_weights(m, dir);
}

int main(int argc, char** argv) {
    if (argc < 2) fatal("usage: tool_dpo DIR [--beta-scale S]");
    const char* dir = argv[1];
    float beta_scale = 1.0f;
    const char* dev = "cpu";
    for (int i = 2; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--beta-scale")) beta_scale = (float)atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--device")) dev = argv[i + 1];
        else fatal("tool_dpo: unknown option %s", argv[i]);
    }
    device = backend_get(dev);
    if (!device) fatal("tool_dpo: no backend \"%s\" in this build (%s)", dev, backend_names());
    char* pdir = xsprintf("%s/policy", dir);
    char* rdir = xsprintf("%s/reference", dir);
    char* refp = xsprintf("%s/ref.safetensors", dir);
    StIndex* ref = st_open(refp);
    const StTensor* ti = st_find(ref, "inputs");
    if (!ti || ti->ndim != 2) fatal("%s: no (2P, T) inputs", refp);
    const int B = (int)ti->shape[0], T = (int)ti->shape[1], P = B / 2;
    int32_t* inputs = read_tensor(ref, "inputs", NULL);
    int32_t* targets = read_tensor(ref, "targets", NULL);
    float* weights = read_tensor(ref, "pair_weight", NULL);
    float* beta = read_tensor(ref, "beta", NULL);
    float* want_pol = read_tensor(ref, "policy_logp", NULL);
    float* want_ref = read_tensor(ref, "ref_logp", NULL);
    float* want_loss = read_tensor(ref, "loss", NULL);

    // sft_make_row reproduces the rows: recover (prompt, response) from the targets and rebuild
    int rows_ok = 1;
    for (int r = 0; r < B; r++) {
        const int32_t* in = inputs + (size_t)r * T;
        const int32_t* tg = targets + (size_t)r * T;
        int first = 0, last = -1;
        while (first < T && tg[first] == QSTAR_IGNORE_INDEX) first++;
        for (int t = 0; t < T; t++)
            if (tg[t] != QSTAR_IGNORE_INDEX) last = t;
        const int np = first + 1, nc = last - first + 1;
        int32_t* resp = xmalloc(sizeof(int32_t) * (size_t)(nc + 1));
        for (int j = 0; j < nc; j++) resp[j] = tg[first + j];
        int32_t* ri = xmalloc(sizeof(int32_t) * (size_t)T);
        int32_t* rt = xmalloc(sizeof(int32_t) * (size_t)T);
        int counted = sft_make_row(in, np, resp, nc, T, 0, ri, rt);
        rows_ok &= counted == nc && !memcmp(ri, in, sizeof(int32_t) * (size_t)T) &&
                   !memcmp(rt, tg, sizeof(int32_t) * (size_t)T);
        free(resp), free(ri), free(rt);
    }
    CHECK(rows_ok, "sft_make_row differs from the reference's row layout");

    // the reference's log-probabilities, computed once (the cache)
    Model refm;
    load(&refm, rdir);
    model_alloc_activations(&refm, B, T);
    printf("%s: backend %s\n", dir, device->name);
    double* ref_logp = xmalloc(sizeof(double) * (size_t)B);
    dpo_sequence_logprobs(&refm, inputs, targets, ref_logp);
    double worst_lp = 0;
    for (int r = 0; r < B; r++) worst_lp = fmax(worst_lp, fabs(ref_logp[r] - want_ref[r]) / fmax(1.0, fabs(want_ref[r])));
    model_destroy(&refm);

    Model m;
    load(&m, pdir);
    model_alloc_activations(&m, B, T);
    model_zero_grad(&m);
    double* pol_logp = xmalloc(sizeof(double) * (size_t)B);
    const float b = beta[0] * beta_scale;
    DpoStats st = dpo_step(&m, inputs, targets, ref_logp, weights, P, b, 1.0f, pol_logp);
    for (int r = 0; r < B; r++) worst_lp = fmax(worst_lp, fabs(pol_logp[r] - want_pol[r]) / fmax(1.0, fabs(want_pol[r])));
    printf("%s: sequence log-probs (policy and reference, %d rows) worst relative difference %.3g\n", dir, B, worst_lp);
    CHECK(worst_lp <= 1e-5, "sequence log-probabilities differ from PyTorch's (%.3g)", worst_lp);
    const double loss_rel = fabs(st.loss - want_loss[0]) / fabs(want_loss[0]);
    printf("%s: loss qstar %.8f PyTorch %.8f (rel %.2g); margin %.4f accuracy %.2f\n", dir, st.loss, want_loss[0],
           loss_rel, st.margin, st.accuracy);
    CHECK(loss_rel <= 1e-5, "loss differs (rel %.3g)", loss_rel);

    double worst = 0;
    for (int i = 0; i < m.n_tensors; i++) {
        const ParamTensor* p = &m.tensors[i];
        char* name = xsprintf("grad.%s", p->name);
        size_t n;
        float* g = read_tensor(ref, name, &n);
        QSTAR_ASSERT(n == p->numel);
        double md = 0, mr = 0;
        for (size_t k = 0; k < n; k++) {
            md = fmax(md, fabs(m.grads[p->offset + k] - g[k]));
            mr = fmax(mr, fabs(g[k]));
        }
        const double rel = md / (mr > 0 ? mr : 1);
        worst = fmax(worst, rel);
        CHECK(mr > 0, "gradient of %s is zero in the reference", p->name);
        CHECK(rel <= 1e-4, "gradient of %s differs: max abs %.3g, relative %.3g", p->name, md, rel);
        free(g);
        free(name);
    }
    printf("%s: %d parameter gradients, worst relative difference %.3g\n", dir, m.n_tensors, worst);
    model_destroy(&m);
    st_close(ref);
    return test_summary();
}
