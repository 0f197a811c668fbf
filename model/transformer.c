/*
 * Forward and backward of the decoder, and the optimizer step, written once against the backend
 * contract. The activation size table below is the single source of truth for what a step keeps:
 * allocation and `qstar info`'s memory estimate both come from it.
 *
 * Backward follows the residual stream: dresid carries d(loss)/d(residual) from the top down, and
 * each RMSNorm backward adds its branch's gradient into it (the op's dinp is "+="), so the skip
 * connections cost nothing extra.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "model/model.h"

typedef struct {
    void** ptr;
    size_t count;
    size_t elem;
    int group;
} ActSpec;

// Fills specs for (B, T); returns the number of entries. ptr fields point into `a`.
// With ACT_MLP_RECOMPUTED in flags, gate_up and mlp hold one layer and belong to the scratch group: the
// backward recomputes each layer's from its ln2 (model.h).
static int activation_specs(const ModelConfig* c, size_t x_bytes, int B, int T, int flags, Activations* a,
                            ActSpec* s) {
    const size_t N = (size_t)B * T, H = c->hidden_size, L = c->num_hidden_layers, IM = c->intermediate_size;
    const size_t C3 = (size_t)(c->num_attention_heads + 2 * c->num_key_value_heads) * c->head_dim;
    const size_t CO = (size_t)c->num_attention_heads * c->head_dim, V = vocab_padded(c), NH = c->num_attention_heads;
    int n = 0;
    const size_t X = x_bytes, F = sizeof(float), I = sizeof(int32_t);
#define SPEC(field, cnt, size, grp) s[n++] = (ActSpec){(void**)&a->field, (cnt), (size), (grp)}
    SPEC(resid, (L + 1) * N * H, X, ACT_SAVED);
    SPEC(ln1, L * N * H, X, ACT_SAVED);
    SPEC(ln1_rstd, L * N, F, ACT_SAVED);
    SPEC(qkv, L * N * C3, X, ACT_QKV);
    SPEC(att, L * N * CO, X, ACT_SAVED);
    SPEC(lse, L * N * NH, F, ACT_SAVED);
    SPEC(resid_mid, L * N * H, X, ACT_SAVED);
    SPEC(ln2, L * N * H, X, ACT_SAVED);
    SPEC(ln2_rstd, L * N, F, ACT_SAVED);
    const int mlp_group = flags & ACT_MLP_RECOMPUTED ? ACT_SCRATCH : ACT_SAVED;
    const size_t mlp_layers = flags & ACT_MLP_RECOMPUTED ? 1 : L;
    SPEC(gate_up, mlp_layers * N * 2 * IM, X, mlp_group);
    SPEC(mlp, mlp_layers * N * IM, X, mlp_group);
    SPEC(lnf, N * H, X, ACT_SAVED);
    SPEC(lnf_rstd, N, F, ACT_SAVED);
    SPEC(logits, N * V, X, ACT_HEAD);
    SPEC(losses, N, F, ACT_HEAD);
    SPEC(dlosses, N, F, ACT_HEAD);
    SPEC(tokens, N, I, ACT_HEAD);
    SPEC(targets, N, I, ACT_HEAD);
    SPEC(pos, N, I, ACT_HEAD);
    SPEC(tmp, N * H, X, ACT_SCRATCH);
    SPEC(dresid, N * H, X, ACT_SCRATCH);
    SPEC(dln, N * H, X, ACT_SCRATCH);
    SPEC(dqkv, N * C3, X, ACT_SCRATCH);
    SPEC(datt, N * CO, X, ACT_SCRATCH);
    SPEC(dgate_up, N * 2 * IM, X, ACT_SCRATCH);
    SPEC(dmlp, N * IM, X, ACT_SCRATCH);
#undef SPEC
    return n;
}

#define MAX_SPECS 40
static size_t align_up(size_t x) { return (x + 255) & ~(size_t)255; }

size_t model_activation_bytes(const ModelConfig* c, size_t x_bytes, int B, int T, int groups) {
    Activations a;
    ActSpec s[MAX_SPECS];
    int n = activation_specs(c, x_bytes, B, T, groups, &a, s);
    size_t total = 0;
    for (int i = 0; i < n; i++)
        if (s[i].group & groups) total += align_up(s[i].count * s[i].elem);
    return total;
}

void activations_alloc(const Backend* be, const ModelConfig* c, Activations* a, int B, int T, int groups) {
    memset(a, 0, sizeof *a);
    ActSpec s[MAX_SPECS];
    int n = activation_specs(c, be->x_bytes, B, T, groups, a, s);
    size_t total = model_activation_bytes(c, be->x_bytes, B, T, groups);
    char* base = be->alloc(total);
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        if (!(s[i].group & groups)) continue;
        *s[i].ptr = base + off;
        off += align_up(s[i].count * s[i].elem);
    }
    a->memory = base;
    a->bytes = total;
    a->B = B;
    a->T = T;
    a->mlp_recomputed = (groups & ACT_MLP_RECOMPUTED) != 0;
}

void activations_free(const Backend* be, Activations* a) {
    if (a->memory) be->free(a->memory);
    memset(a, 0, sizeof *a);
}

void model_alloc_activations(Model* m, int B, int T) {
    if (m->acts.memory && m->acts.B == B && m->acts.T == T) return;
    activations_free(m->be, &m->acts);
    activations_alloc(m->be, &m->cfg, &m->acts, B, T, ACT_ALL | (m->recompute >= 1 ? ACT_MLP_RECOMPUTED : 0));
}

// The MLP activations of layer l: its own slice when they are kept, the one-layer scratch when the
// backward recomputes them.
static floatX* layer_gate_up(const Backend* be, const Activations* a, const Activations* sc, int l, size_t n2im) {
    return a->mlp_recomputed || sc->mlp_recomputed ? sc->gate_up : xat(be, a->gate_up, (size_t)l * n2im);
}
static floatX* layer_mlp(const Backend* be, const Activations* a, const Activations* sc, int l, size_t nim) {
    return a->mlp_recomputed || sc->mlp_recomputed ? sc->mlp : xat(be, a->mlp, (size_t)l * nim);
}

// X(p, n): element n of a floatX buffer (the backend's precision decides the byte offset).
#define X(p, n) xat(be, (p), (n))

void decoder_forward(Model* m, Activations* a, Activations* sc, const ThoughtAttn* ta) {
    const Backend* be = m->be;
    const ModelConfig* c = &m->cfg;
    const int B = a->B, T = a->T, N = B * T, H = c->hidden_size, IM = c->intermediate_size;
    const int NH = c->num_attention_heads, NKV = c->num_key_value_heads, HD = c->head_dim;
    const size_t C3 = (size_t)(NH + 2 * NKV) * HD, CO = (size_t)NH * HD, NH_ = (size_t)N * H;
    const floatX* P = m->params;
    // Each residual add is fused with the norm that reads its result: the attention residual with
    // post_attention_layernorm, the MLP residual with the next layer's input_layernorm (or the
    // final norm). Only the first layer's input norm stands alone.
    be->rmsnorm_forward(a->ln1, a->ln1_rstd, a->resid, X(P, m->layers[0].ln1), N, H, c->rms_norm_eps);
    for (int l = 0; l < c->num_hidden_layers; l++) {
        const LayerOffsets* lo = &m->layers[l];
        const int last = l == c->num_hidden_layers - 1;
        floatX* x = X(a->resid, l * NH_);
        floatX* ln1 = X(a->ln1, l * NH_);
        floatX* qkv = X(a->qkv, l * N * C3);
        floatX* att = X(a->att, l * N * CO);
        float* lse = a->lse + (size_t)l * N * NH;
        floatX* mid = X(a->resid_mid, l * NH_);
        floatX* ln2 = X(a->ln2, l * NH_);
        floatX* gu = layer_gate_up(be, a, sc, l, (size_t)N * 2 * IM);
        floatX* mlp = layer_mlp(be, a, sc, l, (size_t)N * IM);
        be->matmul_forward(qkv, ln1, X(P, lo->qkv), N, H, (int)C3);
        be->rope_forward(qkv, a->pos, N, NH, NKV, HD, c->rope_theta);
        if (ta)
            be->thought_attention_forward(att, lse, X(ta->qkv, l * N * C3), ta->step_stride, ta->k, B, T, NH, NKV, HD);
        else
            be->attention_forward(att, lse, qkv, B, T, NH, NKV, HD);
        be->matmul_forward(sc->tmp, att, X(P, lo->o), N, (int)CO, H);
        be->add_rmsnorm_forward(mid, ln2, a->ln2_rstd + (size_t)l * N, x, sc->tmp, X(P, lo->ln2), N, H, c->rms_norm_eps);
        be->matmul_forward(gu, ln2, X(P, lo->gate_up), N, H, 2 * IM);
        be->swiglu_forward(mlp, gu, N, IM);
        be->matmul_forward(sc->tmp, mlp, X(P, lo->down), N, IM, H);
        if (last)
            be->add_rmsnorm_forward(X(x, NH_), a->lnf, a->lnf_rstd, mid, sc->tmp, X(P, m->off_norm), N, H,
                                    c->rms_norm_eps);
        else
            be->add_rmsnorm_forward(X(x, NH_), X(ln1, NH_), a->ln1_rstd + (size_t)(l + 1) * N, mid, sc->tmp,
                                    X(P, m->layers[l + 1].ln1), N, H, c->rms_norm_eps);
    }
}

void decoder_backward(Model* m, Activations* a, Activations* sc, const floatX* dlnf, const ThoughtAttn* ta) {
    const Backend* be = m->be;
    const ModelConfig* c = &m->cfg;
    const int B = a->B, T = a->T, N = B * T, H = c->hidden_size, IM = c->intermediate_size;
    const int NH = c->num_attention_heads, NKV = c->num_key_value_heads, HD = c->head_dim;
    const size_t C3 = (size_t)(NH + 2 * NKV) * HD, CO = (size_t)NH * HD, NH_ = (size_t)N * H;
    const floatX* P = m->params;
    floatX* G = m->grads;
    be->zero(sc->dresid, be->x_bytes * NH_);
    const floatX* top = X(a->resid, (size_t)c->num_hidden_layers * NH_);
    be->rmsnorm_backward(sc->dresid, X(G, m->off_norm), dlnf, top, X(P, m->off_norm), a->lnf_rstd, N, H);
    for (int l = c->num_hidden_layers - 1; l >= 0; l--) {
        const LayerOffsets* lo = &m->layers[l];
        const floatX* x = X(a->resid, l * NH_);
        const floatX* ln1 = X(a->ln1, l * NH_);
        const floatX* qkv = X(a->qkv, l * N * C3);
        const floatX* att = X(a->att, l * N * CO);
        const float* lse = a->lse + (size_t)l * N * NH;
        const floatX* mid = X(a->resid_mid, l * NH_);
        const floatX* ln2 = X(a->ln2, l * NH_);
        floatX* gu = layer_gate_up(be, a, sc, l, (size_t)N * 2 * IM);
        floatX* mlp = layer_mlp(be, a, sc, l, (size_t)N * IM);
        if (a->mlp_recomputed || sc->mlp_recomputed) {  // the forward's values again: same kernels, same inputs
            be->matmul_forward(gu, ln2, X(P, lo->gate_up), N, H, 2 * IM);
            be->swiglu_forward(mlp, gu, N, IM);
        }
        // MLP branch: resid_out = mid + down(swiglu(gate_up(ln2(mid))))
        be->matmul_backward(sc->dmlp, X(G, lo->down), sc->dresid, mlp, X(P, lo->down), N, IM, H, 0);
        be->swiglu_backward(sc->dgate_up, sc->dmlp, gu, N, IM);
        be->matmul_backward(sc->dln, X(G, lo->gate_up), sc->dgate_up, ln2, X(P, lo->gate_up), N, H, 2 * IM, 0);
        be->rmsnorm_backward(sc->dresid, X(G, lo->ln2), sc->dln, mid, X(P, lo->ln2), a->ln2_rstd + (size_t)l * N, N, H);
        // attention branch: mid = x + o(attention(rope(qkv(ln1(x)))))
        be->matmul_backward(sc->datt, X(G, lo->o), sc->dresid, att, X(P, lo->o), N, (int)CO, H, 0);
        floatX* dqkv = sc->dqkv;
        if (ta) {
            be->thought_attention_backward(X(ta->dqkv, l * N * C3), sc->datt, att, lse, X(ta->qkv, l * N * C3),
                                           ta->step_stride, ta->k, B, T, NH, NKV, HD);
            dqkv = X(ta->dqkv, ta->k * ta->step_stride + l * N * C3);  // complete: later steps ran first
        } else {
            be->attention_backward(dqkv, sc->datt, att, lse, qkv, B, T, NH, NKV, HD);
        }
        be->rope_backward(dqkv, a->pos, N, NH, NKV, HD, c->rope_theta);
        be->matmul_backward(sc->dln, X(G, lo->qkv), dqkv, ln1, X(P, lo->qkv), N, H, (int)C3, 0);
        be->rmsnorm_backward(sc->dresid, X(G, lo->ln1), sc->dln, x, X(P, lo->ln1), a->ln1_rstd + (size_t)l * N, N, H);
        if (m->grad_ready) {  // nothing below touches this layer's gradients again
            size_t off, count;
            model_layer_range(m, l, &off, &count);
            m->grad_ready(m->grad_ready_ctx, off, count);
        }
    }
}

void model_layer_range(const Model* m, int l, size_t* offset, size_t* count) {
    const LayerOffsets* lo = &m->layers[l];
    *offset = lo->ln1;  // the first tensor of a layer; down_proj is its last
    *count = lo->down + (size_t)m->cfg.hidden_size * m->cfg.intermediate_size - lo->ln1;
}

void model_lm_head(const Model* m, floatX* logits, const floatX* h, int N) {
    const Backend* be = m->be;
    const int V = m->cfg.vocab_size, Vp = vocab_padded(&m->cfg);
    be->matmul_forward(logits, h, X(m->params, m->off_lm_head), N, m->cfg.hidden_size, Vp);
    if (Vp > V) be->mask_columns(logits, N, Vp, V, Vp, VOCAB_PAD_LOGIT);
}

void model_download_logits(const Model* m, float* host, const floatX* logits, int N) {
    const size_t V = m->cfg.vocab_size, Vp = vocab_padded(&m->cfg);
    if (V == Vp) {
        x_download(m->be, host, logits, (size_t)N * V);
        return;
    }
    for (int n = 0; n < N; n++) x_download(m->be, host + n * V, xat(m->be, logits, n * Vp), V);
}

float model_forward(Model* m, const int32_t* tokens, const int32_t* targets, const int32_t* pos) {
    const Backend* be = m->be;
    const ModelConfig* c = &m->cfg;
    Activations* a = &m->acts;
    const int B = a->B, T = a->T, N = B * T, H = c->hidden_size;
    QSTAR_ASSERT(a->memory != NULL);

    int32_t* host_pos = NULL;
    if (!pos) {
        host_pos = xmalloc(sizeof(int32_t) * N);
        for (int i = 0; i < N; i++) host_pos[i] = i % T;
        pos = host_pos;
    }
    be->upload(a->tokens, tokens, sizeof(int32_t) * N);
    be->upload(a->pos, pos, sizeof(int32_t) * N);
    free(host_pos);

    be->embedding_forward(a->resid, a->tokens, X(m->params, m->off_embed), N, H);
    decoder_forward(m, a, a, NULL);
    model_lm_head(m, a->logits, a->lnf, N);
    if (!targets) return 0.0f;
    return model_loss(m, a, targets);
}

float model_loss(Model* m, Activations* a, const int32_t* targets) {
    const Backend* be = m->be;
    const int N = a->B * a->T, V = m->cfg.vocab_size;
    m->n_valid = 0;
    for (int i = 0; i < N; i++) {
        if (targets[i] >= V) fatal("target token %d is outside the vocabulary (%d)", targets[i], V);
        if (targets[i] >= 0) m->n_valid++;
    }
    be->upload(a->targets, targets, sizeof(int32_t) * N);
    be->crossentropy_forward(a->losses, a->logits, a->targets, N, vocab_padded(&m->cfg));
    float* losses = xmalloc(sizeof(float) * N);
    be->download(losses, a->losses, sizeof(float) * N);
    double sum = 0.0;
    for (int i = 0; i < N; i++) sum += losses[i];
    free(losses);
    return m->n_valid ? (float)(sum / m->n_valid) : 0.0f;
}

void model_backward(Model* m, float loss_scale) {
    const Backend* be = m->be;
    const ModelConfig* c = &m->cfg;
    Activations* a = &m->acts;
    const int N = a->B * a->T, Vp = vocab_padded(c);

    // d(loss_scale * mean)/d(loss_n) is the same for every counted token; ignored rows get zero anyway.
    // Filled on the device: the lm micro-step's only host sync is the forward's loss download.
    float d = m->n_valid ? loss_scale / (float)m->n_valid : 0.0f;
    be->row_weights(a->dlosses, NULL, d, N, N, N);

    // The per-row weights are known here, so the loss's forward and backward run as one pass over the
    // logits (the losses are recomputed, identical to the forward's); dlogits replace the logits.
    be->crossentropy_fused(a->losses, a->logits, a->logits, a->targets, a->dlosses, N, Vp);
    model_backward_dlogits(m);
}

void model_backward_dlogits(Model* m) {
    const Backend* be = m->be;
    Activations* a = &m->acts;
    const int N = a->B * a->T, H = m->cfg.hidden_size, V = m->cfg.vocab_size;
    be->matmul_backward(a->dln, X(m->grads, m->off_lm_head), a->logits, a->lnf, X(m->params, m->off_lm_head), N, H,
                        vocab_padded(&m->cfg), 0);
    decoder_backward(m, a, a, a->dln, NULL);
    be->embedding_backward(X(m->grads, m->off_embed), a->dresid, a->tokens, N, V, H);
}

void model_zero_grad(Model* m) { m->be->zero(m->grads, m->be->x_bytes * m->n_params); }

double model_grad_sum_squares(Model* m, size_t offset, size_t count) {
    m->be->sum_squares(m->scalar, xat(m->be, m->grads, offset), count);
    float ss;
    m->be->download(&ss, m->scalar, sizeof(float));
    return ss;
}

float model_grad_norm(Model* m) { return sqrtf((float)model_grad_sum_squares(m, 0, m->n_params)); }

void model_adamw_step(Model* m, const AdamWConfig* opt, float lr, float grad_scale, int t) {
    const size_t r0 = m->opt_offset, r1 = m->opt_offset + m->opt_count;
    // the moments' storage is the model's (floatX in the bf16 mode): the mode cannot change after creation
    QSTAR_ASSERT(!opt->bf16_weights == !m->bf16_state || m->be->x_bytes == sizeof(float));
    const int bf16_state = opt->bf16_weights || m->bf16_state;
    char *mom1 = m->m, *mom2 = m->v;
    for (int i = 0; i < m->n_tensors; i++) {
        const ParamTensor* p = &m->tensors[i];
        const size_t lo = p->offset > r0 ? p->offset : r0, hi = p->offset + p->numel < r1 ? p->offset + p->numel : r1;
        if (lo >= hi) continue;  // the tensor lies outside this rank's optimizer shard
        const int decay = p->decay || (opt->decay_norms && strstr(p->name, "norm"));
        // stochastic rounding keyed by (seed, step, tensor): a resumed run draws what a continuous one does
        const uint64_t seed = opt->stochastic_seed ? opt->stochastic_seed ^ ((uint64_t)t << 32) ^ (uint64_t)i : 0;
        m->be->adamw_update(xat(m->be, m->params, lo), m->master ? m->master + (lo - r0) : NULL,
                            xat(m->be, m->grads, lo), mom1 + m->moment_bytes * (lo - r0), mom2 + m->moment_bytes * (lo - r0), hi - lo, lr * p->lr_mult,
                            opt->beta1, opt->beta2, opt->eps, decay ? opt->weight_decay : 0.0f, grad_scale, t, seed,
                            lo - p->offset, bf16_state);
    }
}

double model_step_flops(const Model* m, int B, int T) {
    const ModelConfig* c = &m->cfg;
    double linear = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        const ParamTensor* t = &m->tensors[i];
        if (t->ndim == 2 && !strstr(t->name, "embed_tokens") && !strstr(t->name, "quietstar.")) linear += (double)t->numel;
    }
    if (c->tie_word_embeddings) linear += (double)c->vocab_size * c->hidden_size;  // the embedding reused as lm_head
    const double pairs = (double)T * (T + 1) / 2.0;
    return 6.0 * B * T * linear + 12.0 * c->num_hidden_layers * B * c->num_attention_heads * c->head_dim * pairs;
}
