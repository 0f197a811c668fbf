/*
 * The DPO loss on qstar's engine (model/dpo.h): the forward is the language model's, the sequence
 * log-probabilities are row sums of its per-token cross-entropies, and the backward is the language
 * model's with per-token weights dL/dCE_t = −dL/dlogπ(row) instead of 1/n_valid — only Backend ops.
 */
#include "model/dpo.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

// Row sums of −CE over the targets that count (ignored targets have zero loss).
static void row_logprobs(Model* m, double* logp) {
    Activations* a = &m->acts;
    const int B = a->B, T = a->T, N = B * T;
    float* losses = xmalloc(sizeof(float) * (size_t)N);
    m->be->download(losses, a->losses, sizeof(float) * (size_t)N);
    for (int r = 0; r < B; r++) {
        double s = 0;
        for (int t = 0; t < T; t++) s += losses[(size_t)r * T + t];
        logp[r] = -s;
    }
    free(losses);
}

void dpo_sequence_logprobs(Model* m, const int32_t* inputs, const int32_t* targets, double* logp) {
    QSTAR_ASSERT(m->acts.memory != NULL);
    model_forward(m, inputs, targets, NULL);
    row_logprobs(m, logp);
}

// −log σ(z) = log(1 + e^{−z}), without overflow for either sign
static double neg_log_sigmoid(double z) { return z > 0 ? log1p(exp(-z)) : -z + log1p(exp(z)); }
static double sigmoid(double z) { return z >= 0 ? 1.0 / (1.0 + exp(-z)) : exp(z) / (1.0 + exp(z)); }

DpoStats dpo_loss(const double* pol, const double* ref, const float* w, int P, float beta, double* dlogp) {
    DpoStats st = {0};
    QSTAR_ASSERT(P > 0);
    for (int p = 0; p < P; p++) {
        const double rc = beta * (pol[2 * p] - ref[2 * p]), rr = beta * (pol[2 * p + 1] - ref[2 * p + 1]);
        const double z = rc - rr, wp = w ? w[p] : 1.0;
        st.loss += wp * neg_log_sigmoid(z) / P;
        st.reward_chosen += rc / P;
        st.reward_rejected += rr / P;
        st.margin += z / P;
        st.accuracy += (z > 0) / (double)P;
        // dL/dz = −(w/P) σ(−z); dz/dlogπ(y+) = β, dz/dlogπ(y−) = −β
        const double dz = -wp / P * sigmoid(-z);
        if (dlogp) {
            dlogp[2 * p] = beta * dz;
            dlogp[2 * p + 1] = -beta * dz;
        }
    }
    return st;
}

DpoStats dpo_step(Model* m, const int32_t* inputs, const int32_t* targets, const double* ref_logp,
                  const float* pair_weight, int P, float beta, float loss_scale, double* policy_logp) {
    const Backend* be = m->be;
    const ModelConfig* c = &m->cfg;
    Activations* a = &m->acts;
    const int B = a->B, T = a->T, N = B * T, V = vocab_padded(c);
    QSTAR_ASSERT(a->memory != NULL && B == 2 * P);
    double* logp = xmalloc(sizeof(double) * (size_t)B);
    double* dlogp = xmalloc(sizeof(double) * (size_t)B);
    dpo_sequence_logprobs(m, inputs, targets, logp);
    DpoStats st = dpo_loss(logp, ref_logp, pair_weight, P, beta, dlogp);
    if (policy_logp)
        for (int r = 0; r < B; r++) policy_logp[r] = logp[r];

    // per-token weights: d(loss_scale L)/dCE_t = −loss_scale dL/dlogπ(row); ignored targets get zero
    // gradient in the cross-entropy backward whatever their weight
    float* dl = xmalloc(sizeof(float) * (size_t)N);
    for (int r = 0; r < B; r++)
        for (int t = 0; t < T; t++) dl[(size_t)r * T + t] = (float)(-loss_scale * dlogp[r]);
    be->upload(a->dlosses, dl, sizeof(float) * (size_t)N);
    be->crossentropy_backward(a->logits, a->logits, a->targets, a->dlosses, N, V);
    model_backward_dlogits(m);
    free(dl);
    free(logp);
    free(dlogp);
    return st;
}

// ---- the reference cache --------------------------------------------------------------------------

uint64_t dpo_rows_key(const int32_t* inputs, const int32_t* targets, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a over both arrays' bytes
    const unsigned char* arrays[2] = {(const unsigned char*)inputs, (const unsigned char*)targets};
    for (int a = 0; a < 2; a++)
        for (size_t i = 0; i < n * sizeof(int32_t); i++) h = (h ^ arrays[a][i]) * 0x100000001b3ull;
    return h;
}

void dpo_ref_cache_save(const char* path, const double* logp, size_t count, uint64_t key) {
    const size_t bytes = 24 + 8 * count;
    unsigned char* buf = xmalloc(bytes);
    memcpy(buf, "QSDPOREF", 8);
    uint64_t c = count;
    memcpy(buf + 8, &c, 8);
    memcpy(buf + 16, &key, 8);
    memcpy(buf + 24, logp, 8 * count);
    write_file_atomic(path, buf, bytes);
    free(buf);
}

double* dpo_ref_cache_load(const char* path, size_t count, uint64_t key) {
    size_t len;
    char* text = read_file_maybe(path, &len);
    if (!text) return NULL;
    uint64_t c, k;
    if (len < 24 || memcmp(text, "QSDPOREF", 8)) fatal("%s: not a DPO reference cache", path);
    memcpy(&c, text + 8, 8);
    memcpy(&k, text + 16, 8);
    if (c != count) fatal("%s: holds %llu sequences, the data has %zu", path, (unsigned long long)c, count);
    if (len != 24 + 8 * count) fatal("%s: truncated (%zu bytes for %zu sequences)", path, len, count);
    if (k != key) fatal("%s: computed for other sequences (the pairs changed since)", path);
    double* out = xmalloc(8 * (count ? count : 1));
    memcpy(out, text + 24, 8 * count);
    free(text);
    return out;
}
