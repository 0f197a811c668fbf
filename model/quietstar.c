/*
 * The Quiet-STaR training step (algorithm and step schedule in quietstar.h). Host code only
 * orchestrates: every tensor operation is a backend op, and the step stays on the device. The text goes
 * up once per micro-step (an asynchronous upload); sampled thought tokens are written by the sampler
 * straight into the next step's input; the talk steps' inputs and every target are shifted copies of
 * the text made on the device; positions are uploaded once at creation and the loss weights built on
 * the device once per loss scale; losses, mixing weights, rewards and advantages are summed on the
 * device into a small stats buffer that the host reads once, at the end of the forward. A micro-step
 * (forward + backward) thus waits for the device once (tests/test_host_syncs.c counts it).
 */
#include "model/quietstar.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

// X(p, n): element n of a floatX buffer (the backend's precision decides the byte offset).
#define X(p, n) xat(be, (p), (n))

QuietStarConfig quietstar_reference_config(void) {
    QuietStarConfig c = {.n_ahead = 12,
                         .n_ahead_talk = 4,
                         .n_passes = 2,
                         .policy_weight = 1e6f,
                         .base_weight = 0.5f,
                         .talk_weight = 0.5f,
                         .reinforce_temperature = 3.0f,
                         .embed_scale = 100.0f,
                         .mask_thoughts_in_talk = 0,
                         .seed = 42};
    return c;
}

enum { STEP_BASE, STEP_POLICY, STEP_SILENT, STEP_TALK };

static int step_kind(const QuietStar* qs, int k) {
    if (k == 0) return STEP_BASE;
    if (k <= qs->NA - 3) return STEP_POLICY;
    if (k == qs->NA - 2) return STEP_SILENT;
    return STEP_TALK;
}

static void check_config(const ModelConfig* c, const QuietStarConfig* qc, int L) {
    if (c->start_thought_id < 0) fatal("quietstar: the model has no thought tokens (start_thought_token_id)");
    if (qc->n_ahead < 4) fatal("quietstar: --n-ahead must be at least 4 (start, one sampled token, end)");
    if (qc->n_ahead_talk < 1 || qc->n_ahead_talk > QS_MAX_TALK)
        fatal("quietstar: --n-ahead-talk must be between 1 and %d", QS_MAX_TALK);
    if (qc->n_passes < 1) fatal("quietstar: --n-passes must be positive");
    if (L < qc->n_ahead_talk + 2) fatal("quietstar: --seq must exceed --n-ahead-talk + 1");
    if (L + qc->n_ahead + qc->n_ahead_talk > c->max_position_embeddings)
        fatal("quietstar: --seq + n_ahead + n_ahead_talk exceeds max_position_embeddings (%d)",
              c->max_position_embeddings);
}

typedef struct {
    void** ptr;
    size_t bytes;
} Buf;

// The head buffers beside the per-step activations; one list so allocation and `info` agree.
static int head_buffers(QuietStar* qs, const ModelConfig* c, size_t f, int NA, int T, size_t N, Buf* b) {
    const size_t H = c->hidden_size;  // f: bytes of a floatX
    const size_t S = (size_t)NA + T - 1;
    int n = 0;
#define BUF(field, bytes) b[n++] = (Buf){(void**)&qs->field, (bytes)}
    BUF(hb, T * N * H * f);
    BUF(cat, T * N * 2 * H * f);
    BUF(a1, T * N * H * f);
    BUF(a2, T * N * H * f);
    BUF(w, T * N * f);
    BUF(hmix, T * N * H * f);
    BUF(dlnf, N * H * f);
    BUF(dlnf0, N * H * f);
    BUF(dhb, N * H * f);
    BUF(dhmix, N * H * f);
    BUF(da1, N * H * f);
    BUF(da2, N * H * f);
    BUF(dcat, N * 2 * H * f);
    BUF(dw, N * f);
    BUF(talk_losses, T * N * sizeof(float));
    BUF(reward, N * sizeof(float));
    BUF(advantage, N * sizeof(float));
    BUF(policy_dl, N * sizeof(float));
    BUF(base_dl, N * sizeof(float));
    BUF(talk_dl, T * N * sizeof(float));
    BUF(policy_losses, (size_t)(NA - 3) * N * sizeof(float));
    BUF(stats_dev, (2 * (size_t)T + 5) * sizeof(double));
    BUF(tokens, (size_t)S * N * sizeof(int32_t));
#undef BUF
    return n;
}

size_t quietstar_activation_bytes(const ModelConfig* c, const QuietStarConfig* qc, size_t x_bytes, int recompute, int B,
                                  int L) {
    const int flags = recompute >= 1 ? ACT_MLP_RECOMPUTED : 0;
    const int R = B * qc->n_passes, S = qc->n_ahead + qc->n_ahead_talk - 1;
    const size_t N = (size_t)R * L;
    const size_t C3 = (size_t)(c->num_attention_heads + 2 * c->num_key_value_heads) * c->head_dim;
    size_t total;
    if (recompute >= 2) {  // the steps' heads, one step's saved tensors, every step's input and step 0's lnf
        total = (size_t)S * model_activation_bytes(c, x_bytes, R, L, ACT_HEAD | flags);
        total += model_activation_bytes(c, x_bytes, R, L, ACT_SAVED | flags);
        total += ((size_t)S + 1) * N * c->hidden_size * x_bytes;
    } else {
        total = (size_t)S * model_activation_bytes(c, x_bytes, R, L, ACT_SAVED | ACT_HEAD | flags);
    }
    total += model_activation_bytes(c, x_bytes, R, L, ACT_SCRATCH | flags);
    total += 2 * (size_t)S * c->num_hidden_layers * N * C3 * x_bytes;
    QuietStar tmp;
    Buf b[32];
    int n = head_buffers(&tmp, c, x_bytes, qc->n_ahead, qc->n_ahead_talk, N, b);
    for (int i = 0; i < n; i++) total += b[i].bytes;
    return total;
}

void quietstar_create(QuietStar* qs, Model* m, const QuietStarConfig* qc, int B, int L) {
    const int flags = m->recompute >= 1 ? ACT_MLP_RECOMPUTED : 0;
    memset(qs, 0, sizeof *qs);
    const ModelConfig* c = &m->cfg;
    check_config(c, qc, L);
    const Backend* be = m->be;
    qs->m = m;
    qs->qc = *qc;
    qs->B = B;
    qs->P = qc->n_passes;
    qs->R = B * qs->P;
    qs->L = L;
    qs->NA = qc->n_ahead;
    qs->T = qc->n_ahead_talk;
    qs->S = qs->NA + qs->T - 1;
    qs->N = qs->R * L;
    const size_t C3 = (size_t)(c->num_attention_heads + 2 * c->num_key_value_heads) * c->head_dim;
    const size_t layer_qkv = (size_t)qs->N * C3;
    qs->step_stride = (size_t)c->num_hidden_layers * layer_qkv;
    qs->qkv = be->alloc(be->x_bytes * qs->S * qs->step_stride);
    qs->dqkv = be->alloc(be->x_bytes * qs->S * qs->step_stride);
    qs->steps = xcalloc((size_t)qs->S, sizeof(Activations));
    for (int k = 0; k < qs->S; k++) {
        activations_alloc(be, c, &qs->steps[k], qs->R, L, (m->recompute >= 2 ? 0 : ACT_SAVED) | ACT_HEAD | flags);
        qs->steps[k].qkv = X(qs->qkv, k * qs->step_stride);
    }
    activations_alloc(be, c, &qs->scratch, qs->R, L, ACT_SCRATCH | flags);
    if (m->recompute >= 2) {
        activations_alloc(be, c, &qs->work, qs->R, L, ACT_SAVED | flags);
        qs->resid0 = be->alloc(be->x_bytes * (size_t)qs->S * qs->N * c->hidden_size);
        qs->lnf0 = be->alloc(be->x_bytes * (size_t)qs->N * c->hidden_size);
    }
    Buf b[32];
    int n = head_buffers(qs, c, be->x_bytes, qs->NA, qs->T, (size_t)qs->N, b);
    for (int i = 0; i < n; i++) *b[i].ptr = be->alloc(b[i].bytes);
    qs->step_tokens = xcalloc((size_t)qs->S * qs->N, sizeof(int32_t));
    // Once per shape: each step's positions i + k; the start/end ids at their steps (only read back by
    // quietstar_step_tokens: those steps feed the thought embeddings); a sampling step's targets are
    // the tokens of the step after it, where the sampler writes.
    const int N = qs->N;
    int32_t* h = xmalloc(sizeof(int32_t) * N);
    for (int k = 0; k < qs->S; k++) {
        Activations* a = &qs->steps[k];
        a->tokens = qs->tokens + (size_t)k * N;
        if (step_kind(qs, k) == STEP_POLICY) a->targets = qs->tokens + (size_t)(k + 1) * N;
        for (int i = 0; i < N; i++) h[i] = i % L + k;
        be->upload(a->pos, h, sizeof(int32_t) * N);
        if (k == 1 || k == qs->NA - 1) {
            for (int i = 0; i < N; i++) h[i] = k == 1 ? c->start_thought_id : c->end_thought_id;
            be->upload(a->tokens, h, sizeof(int32_t) * N);
        }
    }
    free(h);
}

void quietstar_destroy(QuietStar* qs) {
    const Backend* be = qs->m->be;
    for (int k = 0; k < qs->S; k++) activations_free(be, &qs->steps[k]);
    activations_free(be, &qs->scratch);
    if (qs->work.memory) {
        activations_free(be, &qs->work);
        be->free(qs->resid0);
        be->free(qs->lnf0);
    }
    free(qs->steps);
    be->free(qs->qkv);
    be->free(qs->dqkv);
    Buf b[32];
    int n = head_buffers(qs, &qs->m->cfg, be->x_bytes, qs->NA, qs->T, (size_t)qs->N, b);
    for (int i = 0; i < n; i++) be->free(*b[i].ptr);
    free(qs->step_tokens);
    memset(qs, 0, sizeof *qs);
}

void quietstar_init_thought_embeddings(Model* m, int init_id, float embed_scale) {
    const int H = m->cfg.hidden_size;
    float* w = xmalloc(sizeof(float) * m->n_params);  // through the master weights where there are some
    model_get_weights(m, w);
    for (int i = 0; i < H; i++)
        w[m->off_start + i] = w[m->off_end + i] = w[m->off_embed + (size_t)init_id * H + i] / embed_scale;
    model_set_weights(m, w);
    free(w);
}

// The saved tensors step k's decoder runs on: its own, or (--recompute 2) the one shared set, pointed at
// step k's positions and qkv slot of the stack.
static Activations* decoder_acts(QuietStar* qs, int k) {
    if (!qs->work.memory) return &qs->steps[k];
    qs->work.pos = qs->steps[k].pos;
    qs->work.qkv = qs->steps[k].qkv;
    return &qs->work;
}

static ThoughtAttn thought_attn(QuietStar* qs, int k) {
    ThoughtAttn ta = {qs->qkv, qs->dqkv, qs->step_stride, k};
    return ta;
}

static void mask_thought_columns(QuietStar* qs, floatX* x, float value) {
    const ModelConfig* c = &qs->m->cfg;
    qs->m->be->mask_columns(x, qs->N, vocab_padded(c), c->start_thought_id, c->start_thought_id + 1, value);
    qs->m->be->mask_columns(x, qs->N, vocab_padded(c), c->end_thought_id, c->end_thought_id + 1, value);
}

// The mixing head at talk step s: w = MLP([hb, h]), hmix = (1−w)·hb + w·h, logits = lm_head(hmix).
static void mixer_forward(QuietStar* qs, int s, const floatX* h, floatX* logits) {
    Model* m = qs->m;
    const Backend* be = m->be;
    const int N = qs->N, H = m->cfg.hidden_size;
    const floatX* P = m->params;
    const size_t NH = (size_t)N * H;
    floatX *hb = X(qs->hb, s * NH), *cat = X(qs->cat, s * 2 * NH);
    floatX *a1 = X(qs->a1, s * NH), *a2 = X(qs->a2, s * NH);
    floatX *w = X(qs->w, (size_t)s * N), *hmix = X(qs->hmix, s * NH);
    be->roll_rows(hb, qs->lnf0 ? qs->lnf0 : qs->steps[0].lnf, qs->R, qs->L, H, s);
    be->concat_columns(cat, hb, h, N, H, H);
    be->matmul_forward(a1, cat, X(P, m->off_mix_w0), N, 2 * H, H);
    be->add_bias(a1, X(P, m->off_mix_b0), N, H);
    be->relu_forward(a1, a1, (size_t)N * H);
    be->matmul_forward(a2, a1, X(P, m->off_mix_w2), N, H, H);
    be->add_bias(a2, X(P, m->off_mix_b2), N, H);
    be->relu_forward(a2, a2, (size_t)N * H);
    be->matmul_forward(w, a2, X(P, m->off_mix_w4), N, H, 1);
    be->mix_forward(hmix, hb, h, w, N, H);
    model_lm_head(m, logits, hmix, N);
    if (qs->qc.mask_thoughts_in_talk) mask_thought_columns(qs, logits, -1e10f);
}

// Backward of the mixing head at talk step s from dlogits; adds into qs->dlnf (this step's h) and
// into qs->dlnf0 (step 0's normed states, through the roll).
static void mixer_backward(QuietStar* qs, int s, const floatX* h, floatX* dlogits) {
    Model* m = qs->m;
    const Backend* be = m->be;
    const int N = qs->N, H = m->cfg.hidden_size;
    const floatX* P = m->params;
    floatX* G = m->grads;
    const size_t NH = (size_t)N * H;
    floatX *hb = X(qs->hb, s * NH), *cat = X(qs->cat, s * 2 * NH);
    floatX *a1 = X(qs->a1, s * NH), *a2 = X(qs->a2, s * NH);
    floatX *w = X(qs->w, (size_t)s * N), *hmix = X(qs->hmix, s * NH);
    if (qs->qc.mask_thoughts_in_talk) mask_thought_columns(qs, dlogits, 0.0f);
    be->matmul_backward(qs->dhmix, X(G, m->off_lm_head), dlogits, hmix, X(P, m->off_lm_head), N, H, vocab_padded(&m->cfg),
                        0);
    be->zero(qs->dhb, be->x_bytes * (size_t)N * H);
    be->mix_backward(qs->dhb, qs->dlnf, qs->dw, qs->dhmix, hb, h, w, N, H);
    be->matmul_backward(qs->da2, X(G, m->off_mix_w4), qs->dw, a2, X(P, m->off_mix_w4), N, H, 1, 0);
    be->relu_backward(qs->da2, qs->da2, a2, (size_t)N * H);
    be->column_sum(X(G, m->off_mix_b2), qs->da2, 1.0f, N, H);
    be->matmul_backward(qs->da1, X(G, m->off_mix_w2), qs->da2, a1, X(P, m->off_mix_w2), N, H, H, 0);
    be->relu_backward(qs->da1, qs->da1, a1, (size_t)N * H);
    be->column_sum(X(G, m->off_mix_b0), qs->da1, 1.0f, N, H);
    be->matmul_backward(qs->dcat, X(G, m->off_mix_w0), qs->da1, cat, X(P, m->off_mix_w0), N, 2 * H, H, 0);
    be->split_columns_backward(qs->dhb, qs->dlnf, qs->dcat, N, H, H);
    be->roll_rows_backward(qs->dlnf0, qs->dhb, qs->R, qs->L, H, s);
}

double quietstar_forward(QuietStar* qs, const int32_t* ids, uint32_t sample_step) {
    Model* m = qs->m;
    const Backend* be = m->be;
    const ModelConfig* c = &m->cfg;
    const int R = qs->R, L = qs->L, N = qs->N, H = c->hidden_size, V = vocab_padded(c), NA = qs->NA, T = qs->T;
    const int pad = c->eos_token_id;
    QuietStarStats* st = &qs->stats;
    memset(st, 0, sizeof *st);
    int32_t* x = xmalloc(sizeof(int32_t) * N);  // the text, P adjacent copies of each sequence
    for (int r = 0; r < R; r++) memcpy(x + (size_t)r * L, ids + (size_t)(r / qs->P) * L, sizeof(int32_t) * L);
    const int32_t* text = qs->steps[0].tokens;  // device
    be->upload(qs->steps[0].tokens, x, sizeof(int32_t) * N);
    free(x);

    for (int k = 0; k < qs->S; k++) {
        Activations* a = &qs->steps[k];  // the head's tensors: tokens, targets, logits, losses
        Activations* d = decoder_acts(qs, k);  // the decoder's saved tensors
        const int kind = step_kind(qs, k);
        // input of this step: the text, the start/end embedding, a sampled token (written into this
        // step's tokens by the sampler of the step before), or the true token s places ahead
        if (k == 1 || k == NA - 1) {
            be->row_broadcast(d->resid, X(m->params, (k == 1 ? m->off_start : m->off_end)), qs->qc.embed_scale, N, H);
        } else {
            if (k >= NA) {
                const int s = k - (NA - 1);
                be->shift_tokens(a->tokens, text, N, L, s, L - s, pad);
            }
            be->embedding_forward(d->resid, a->tokens, X(m->params, m->off_embed), N, H);
        }
        if (qs->work.memory) be->copy(X(qs->resid0, (size_t)k * N * H), d->resid, be->x_bytes * (size_t)N * H);
        ThoughtAttn ta = thought_attn(qs, k);
        decoder_forward(m, d, &qs->scratch, &ta);
        if (qs->work.memory && k == 0) be->copy(qs->lnf0, d->lnf, be->x_bytes * (size_t)N * H);

        if (kind == STEP_BASE) {
            model_lm_head(m, a->logits, d->lnf, N);
            be->shift_tokens(a->targets, text, N, L, 1, L - 1, QSTAR_IGNORE_INDEX);
            be->crossentropy_forward(a->losses, a->logits, a->targets, N, V);
        } else if (kind == STEP_POLICY) {
            model_lm_head(m, a->logits, d->lnf, N);
            mask_thought_columns(qs, a->logits, -1e10f);
            // a->targets is the next step's input: the sampled token feeds it and is this step's target
            if (qs->forced)
                be->upload(a->targets, qs->forced + (size_t)(k - 1) * N, sizeof(int32_t) * N);
            else
                be->gumbel_sample(a->targets, a->logits, N, V, L, qs->qc.seed, sample_step, k);
            // log π at the REINFORCE temperature is minus the cross-entropy of the scaled logits
            be->scale(a->logits, 1.0f / qs->qc.reinforce_temperature, (size_t)N * V);
            be->crossentropy_forward(qs->policy_losses + (size_t)(k - 1) * N, a->logits, a->targets, N, V);
        } else if (kind == STEP_TALK) {
            const int s = k - (NA - 1);
            mixer_forward(qs, s, d->lnf, a->logits);
            be->shift_tokens(a->targets, text, N, L, s + 1, L - 1 - s, QSTAR_IGNORE_INDEX);
            be->crossentropy_forward(qs->talk_losses + (size_t)s * N, a->logits, a->targets, N, V);
        }
    }

    // REINFORCE: advantage per slot, then the policy loss over the slots that have T true tokens after them
    be->quietstar_advantage(qs->reward, qs->advantage, qs->steps[0].losses, qs->talk_losses, qs->B, qs->P, L, T);
    if (qs->fixed_advantage) be->upload(qs->advantage, qs->fixed_advantage, sizeof(float) * N);
    be->quietstar_stats(qs->stats_dev, qs->steps[0].losses, qs->talk_losses, qs->w, qs->policy_losses, qs->reward,
                        qs->advantage, N, L, T, NA - 3);
    double sums[2 * QS_MAX_TALK + 5];
    be->download(sums, qs->stats_dev, sizeof(double) * (2 * (size_t)T + 5));  // the step's one host sync
    // every slot's text token is a real token, so the counted targets are the slots that have one
    st->base_nll = sums[0] / ((double)R * (L - 1));
    double talk = 0;
    for (int s = 0; s < T; s++) {
        const double nv = (double)R * (L - 1 - s);
        st->talk_nll[s] = sums[1 + s] / nv;
        st->mean_mix_weight += sums[1 + T + s] / nv / T;
        talk += st->talk_nll[s] / T;
    }
    const double slots = (double)R * (L - 1 - T), n_policy = NA - 3;
    st->mean_reward = sums[1 + 2 * T] / slots;
    st->mean_advantage = sums[2 + 2 * T] / slots;
    st->frac_positive = sums[3 + 2 * T] / slots;
    st->policy_loss = qs->qc.policy_weight * sums[4 + 2 * T] / slots / n_policy;
    st->loss = qs->qc.base_weight * st->base_nll + qs->qc.talk_weight * talk + st->policy_loss;
    return st->loss;
}

const int32_t* quietstar_step_tokens(QuietStar* qs) {
    qs->m->be->download(qs->step_tokens, qs->tokens, sizeof(int32_t) * (size_t)qs->S * qs->N);
    return qs->step_tokens;
}

void quietstar_backward(QuietStar* qs, float loss_scale) {
    Model* m = qs->m;
    const Backend* be = m->be;
    const ModelConfig* c = &m->cfg;
    const int R = qs->R, L = qs->L, N = qs->N, H = c->hidden_size, V = vocab_padded(c), NA = qs->NA, T = qs->T;
    floatX* G = m->grads;

    be->zero(qs->dqkv, be->x_bytes * qs->S * qs->step_stride);
    be->zero(qs->dlnf0, be->x_bytes * (size_t)N * H);
    be->row_weights(qs->policy_dl, qs->advantage,
                    (float)(loss_scale * qs->qc.policy_weight / ((double)R * (L - 1 - T)) / (NA - 3)), N, L, L - 1 - T);
    if (qs->weights_scale != loss_scale) {  // the constant loss weights, once per loss scale
        be->row_weights(qs->base_dl, NULL, (float)(loss_scale * qs->qc.base_weight / ((double)R * (L - 1))), N, L,
                        L - 1);
        for (int s = 0; s < T; s++)
            be->row_weights(qs->talk_dl + (size_t)s * N, NULL,
                            (float)(loss_scale * qs->qc.talk_weight / T / ((double)R * (L - 1 - s))), N, L, L - 1 - s);
        qs->weights_scale = loss_scale;
    }

    for (int k = qs->S - 1; k >= 0; k--) {
        Activations* a = &qs->steps[k];
        Activations* d = decoder_acts(qs, k);
        const int kind = step_kind(qs, k);
        ThoughtAttn ta = thought_attn(qs, k);
        if (qs->work.memory) {  // --recompute 2: this step's forward again, from its kept input (bitwise the same)
            be->copy(d->resid, X(qs->resid0, (size_t)k * N * H), be->x_bytes * (size_t)N * H);
            decoder_forward(m, d, &qs->scratch, &ta);
        }
        if (kind == STEP_TALK) {
            const int s = k - (NA - 1);
            be->crossentropy_backward(a->logits, a->logits, a->targets, qs->talk_dl + (size_t)s * N, N, V);
            be->zero(qs->dlnf, be->x_bytes * (size_t)N * H);
            mixer_backward(qs, s, d->lnf, a->logits);
        } else if (kind == STEP_POLICY) {
            be->crossentropy_backward(a->logits, a->logits, a->targets, qs->policy_dl, N, V);
            be->scale(a->logits, 1.0f / qs->qc.reinforce_temperature, (size_t)N * V);
            mask_thought_columns(qs, a->logits, 0.0f);  // masked logits are constants: no gradient
            be->matmul_backward(qs->dlnf, X(G, m->off_lm_head), a->logits, d->lnf, X(m->params, m->off_lm_head), N, H,
                                V, 0);
        } else if (kind == STEP_BASE) {
            be->crossentropy_backward(a->logits, a->logits, a->targets, qs->base_dl, N, V);
            be->matmul_backward(qs->dlnf, X(G, m->off_lm_head), a->logits, d->lnf, X(m->params, m->off_lm_head), N, H, V,
                                0);
            be->add(qs->dlnf, qs->dlnf, qs->dlnf0, (size_t)N * H);
        } else {
            be->zero(qs->dlnf, be->x_bytes * (size_t)N * H);
        }
        // a layer's gradients are final only once step 0, the last differentiated, is through it
        void (*ready)(void*, size_t, size_t) = m->grad_ready;
        if (k > 0) m->grad_ready = NULL;
        decoder_backward(m, d, &qs->scratch, qs->dlnf, &ta);
        m->grad_ready = ready;
        if (k == 1 || k == NA - 1)
            be->column_sum(X(G, (k == 1 ? m->off_start : m->off_end)), qs->scratch.dresid, qs->qc.embed_scale, N, H);
        else
            be->embedding_backward(X(G, m->off_embed), qs->scratch.dresid, a->tokens, N, V, H);
    }
}
