/*
 * The Quiet-STaR training step (algorithm and step schedule in quietstar.h). Host code only
 * orchestrates: every tensor operation is a backend op, and the host touches per-row scalars (losses,
 * advantages, sampled ids) and nothing of size L x V or L x H.
 */
#include "model/quietstar.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "host/util.h"

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
static int head_buffers(QuietStar* qs, const ModelConfig* c, int T, size_t N, Buf* b) {
    const size_t H = c->hidden_size, f = sizeof(floatX);
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
    BUF(talk_dl, N * sizeof(float));
#undef BUF
    return n;
}

size_t quietstar_activation_bytes(const ModelConfig* c, const QuietStarConfig* qc, int B, int L) {
    const int R = B * qc->n_passes, S = qc->n_ahead + qc->n_ahead_talk - 1;
    const size_t N = (size_t)R * L;
    const size_t C3 = (size_t)(c->num_attention_heads + 2 * c->num_key_value_heads) * c->head_dim;
    size_t total = (size_t)S * model_activation_bytes(c, R, L, ACT_SAVED | ACT_HEAD);
    total += model_activation_bytes(c, R, L, ACT_SCRATCH);
    total += 2 * (size_t)S * c->num_hidden_layers * N * C3 * sizeof(floatX);
    QuietStar tmp;
    Buf b[32];
    int n = head_buffers(&tmp, c, qc->n_ahead_talk, N, b);
    for (int i = 0; i < n; i++) total += b[i].bytes;
    return total;
}

void quietstar_create(QuietStar* qs, Model* m, const QuietStarConfig* qc, int B, int L) {
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
    qs->qkv = be->alloc(sizeof(floatX) * qs->S * qs->step_stride);
    qs->dqkv = be->alloc(sizeof(floatX) * qs->S * qs->step_stride);
    qs->steps = xcalloc((size_t)qs->S, sizeof(Activations));
    for (int k = 0; k < qs->S; k++) {
        activations_alloc(be, c, &qs->steps[k], qs->R, L, ACT_SAVED | ACT_HEAD);
        qs->steps[k].qkv = qs->qkv + k * qs->step_stride;
    }
    activations_alloc(be, c, &qs->scratch, qs->R, L, ACT_SCRATCH);
    Buf b[32];
    int n = head_buffers(qs, c, qs->T, (size_t)qs->N, b);
    for (int i = 0; i < n; i++) *b[i].ptr = be->alloc(b[i].bytes);
    qs->step_tokens = xcalloc((size_t)qs->S * qs->N, sizeof(int32_t));
}

void quietstar_destroy(QuietStar* qs) {
    const Backend* be = qs->m->be;
    for (int k = 0; k < qs->S; k++) activations_free(be, &qs->steps[k]);
    activations_free(be, &qs->scratch);
    free(qs->steps);
    be->free(qs->qkv);
    be->free(qs->dqkv);
    Buf b[32];
    int n = head_buffers(qs, &qs->m->cfg, qs->T, (size_t)qs->N, b);
    for (int i = 0; i < n; i++) be->free(*b[i].ptr);
    free(qs->step_tokens);
    memset(qs, 0, sizeof *qs);
}

void quietstar_init_thought_embeddings(Model* m, int init_id, float embed_scale) {
    const int H = m->cfg.hidden_size;
    float* row = xmalloc(sizeof(float) * H);
    m->be->download(row, m->params + m->off_embed + (size_t)init_id * H, sizeof(float) * H);
    for (int i = 0; i < H; i++) row[i] /= embed_scale;
    m->be->upload(m->params + m->off_start, row, sizeof(float) * H);
    m->be->upload(m->params + m->off_end, row, sizeof(float) * H);
    free(row);
}

static ThoughtAttn thought_attn(QuietStar* qs, int k) {
    ThoughtAttn ta = {qs->qkv, qs->dqkv, qs->step_stride, k};
    return ta;
}

// Cross-entropy of a->logits against host targets into losses (backend memory); returns the sum
// over rows (ignored rows contribute 0) and the count of counted rows.
static double head_loss(QuietStar* qs, Activations* a, const int32_t* targets, float* losses, int* n_valid,
                        float* host_losses) {
    const Backend* be = qs->m->be;
    const int N = qs->N, V = qs->m->cfg.vocab_size;
    be->upload(a->targets, targets, sizeof(int32_t) * N);
    be->crossentropy_forward(losses, a->logits, a->targets, N, V);
    be->download(host_losses, losses, sizeof(float) * N);
    double sum = 0;
    int count = 0;
    for (int i = 0; i < N; i++) {
        sum += host_losses[i];
        count += targets[i] >= 0;
    }
    *n_valid = count;
    return sum;
}

static void mask_thought_columns(QuietStar* qs, floatX* x, float value) {
    const ModelConfig* c = &qs->m->cfg;
    qs->m->be->mask_columns(x, qs->N, c->vocab_size, c->start_thought_id, c->start_thought_id + 1, value);
    qs->m->be->mask_columns(x, qs->N, c->vocab_size, c->end_thought_id, c->end_thought_id + 1, value);
}

// The mixing head at talk step s: w = MLP([hb, h]), hmix = (1−w)·hb + w·h, logits = lm_head(hmix).
static void mixer_forward(QuietStar* qs, int s, const floatX* h, floatX* logits) {
    Model* m = qs->m;
    const Backend* be = m->be;
    const int N = qs->N, H = m->cfg.hidden_size;
    const float* P = m->params;
    floatX *hb = qs->hb + (size_t)s * N * H, *cat = qs->cat + (size_t)s * N * 2 * H;
    floatX *a1 = qs->a1 + (size_t)s * N * H, *a2 = qs->a2 + (size_t)s * N * H;
    floatX *w = qs->w + (size_t)s * N, *hmix = qs->hmix + (size_t)s * N * H;
    be->roll_rows(hb, qs->steps[0].lnf, qs->R, qs->L, H, s);
    be->concat_columns(cat, hb, h, N, H, H);
    be->matmul_forward(a1, cat, P + m->off_mix_w0, N, 2 * H, H);
    be->add_bias(a1, P + m->off_mix_b0, N, H);
    be->relu_forward(a1, a1, (size_t)N * H);
    be->matmul_forward(a2, a1, P + m->off_mix_w2, N, H, H);
    be->add_bias(a2, P + m->off_mix_b2, N, H);
    be->relu_forward(a2, a2, (size_t)N * H);
    be->matmul_forward(w, a2, P + m->off_mix_w4, N, H, 1);
    be->mix_forward(hmix, hb, h, w, N, H);
    be->matmul_forward(logits, hmix, P + m->off_lm_head, N, H, m->cfg.vocab_size);
    if (qs->qc.mask_thoughts_in_talk) mask_thought_columns(qs, logits, -1e10f);
}

// Backward of the mixing head at talk step s from dlogits; adds into qs->dlnf (this step's h) and
// into qs->dlnf0 (step 0's normed states, through the roll).
static void mixer_backward(QuietStar* qs, int s, const floatX* h, floatX* dlogits) {
    Model* m = qs->m;
    const Backend* be = m->be;
    const int N = qs->N, H = m->cfg.hidden_size;
    const float* P = m->params;
    float* G = m->grads;
    floatX *hb = qs->hb + (size_t)s * N * H, *cat = qs->cat + (size_t)s * N * 2 * H;
    floatX *a1 = qs->a1 + (size_t)s * N * H, *a2 = qs->a2 + (size_t)s * N * H;
    floatX *w = qs->w + (size_t)s * N, *hmix = qs->hmix + (size_t)s * N * H;
    if (qs->qc.mask_thoughts_in_talk) mask_thought_columns(qs, dlogits, 0.0f);
    be->matmul_backward(qs->dhmix, G + m->off_lm_head, dlogits, hmix, P + m->off_lm_head, N, H, m->cfg.vocab_size, 0);
    be->zero(qs->dhb, sizeof(floatX) * (size_t)N * H);
    be->mix_backward(qs->dhb, qs->dlnf, qs->dw, qs->dhmix, hb, h, w, N, H);
    be->matmul_backward(qs->da2, G + m->off_mix_w4, qs->dw, a2, P + m->off_mix_w4, N, H, 1, 0);
    be->relu_backward(qs->da2, qs->da2, a2, (size_t)N * H);
    be->column_sum(G + m->off_mix_b2, qs->da2, 1.0f, N, H);
    be->matmul_backward(qs->da1, G + m->off_mix_w2, qs->da2, a1, P + m->off_mix_w2, N, H, H, 0);
    be->relu_backward(qs->da1, qs->da1, a1, (size_t)N * H);
    be->column_sum(G + m->off_mix_b0, qs->da1, 1.0f, N, H);
    be->matmul_backward(qs->dcat, G + m->off_mix_w0, qs->da1, cat, P + m->off_mix_w0, N, 2 * H, H, 0);
    be->split_columns_backward(qs->dhb, qs->dlnf, qs->dcat, N, H, H);
    be->roll_rows_backward(qs->dlnf0, qs->dhb, qs->R, qs->L, H, s);
}

double quietstar_forward(QuietStar* qs, const int32_t* ids, uint32_t sample_step) {
    Model* m = qs->m;
    const Backend* be = m->be;
    const ModelConfig* c = &m->cfg;
    const int R = qs->R, L = qs->L, N = qs->N, H = c->hidden_size, V = c->vocab_size, NA = qs->NA, T = qs->T;
    const int pad = c->eos_token_id;
    QuietStarStats* st = &qs->stats;
    memset(st, 0, sizeof *st);
    int32_t* x = xmalloc(sizeof(int32_t) * N);  // the text, P adjacent copies of each sequence
    for (int r = 0; r < R; r++) memcpy(x + (size_t)r * L, ids + (size_t)(r / qs->P) * L, sizeof(int32_t) * L);
    int32_t* pos = xmalloc(sizeof(int32_t) * N);
    int32_t* targets = xmalloc(sizeof(int32_t) * N);
    float* host_losses = xmalloc(sizeof(float) * N);
    float* policy_nll = xcalloc((size_t)N, sizeof(float));  // Σ_k −log π_k per row

    for (int k = 0; k < qs->S; k++) {
        Activations* a = &qs->steps[k];
        const int kind = step_kind(qs, k);
        int32_t* tok = qs->step_tokens + (size_t)k * N;
        for (int n = 0; n < N; n++) pos[n] = n % L + k;
        be->upload(a->pos, pos, sizeof(int32_t) * N);
        // input of this step
        if (k == 1 || k == NA - 1) {
            const int is_start = k == 1;
            for (int n = 0; n < N; n++) tok[n] = is_start ? c->start_thought_id : c->end_thought_id;
            be->row_broadcast(a->resid, m->params + (is_start ? m->off_start : m->off_end), qs->qc.embed_scale, N, H);
        } else {
            if (k == 0) {
                memcpy(tok, x, sizeof(int32_t) * N);
            } else if (k >= NA) {  // steps 2..N-2 were filled by the sampler of the step before
                const int s = k - (NA - 1);
                for (int n = 0; n < N; n++) tok[n] = n % L + s < L ? x[n + s] : pad;
            }
            be->upload(a->tokens, tok, sizeof(int32_t) * N);
            be->embedding_forward(a->resid, a->tokens, m->params + m->off_embed, N, H);
        }
        ThoughtAttn ta = thought_attn(qs, k);
        decoder_forward(m, a, &qs->scratch, &ta);

        if (kind == STEP_BASE) {
            be->matmul_forward(a->logits, a->lnf, m->params + m->off_lm_head, N, H, V);
            for (int n = 0; n < N; n++) targets[n] = n % L < L - 1 ? x[n + 1] : QSTAR_IGNORE_INDEX;
            int nv;
            st->base_nll = head_loss(qs, a, targets, a->losses, &nv, host_losses) / nv;
        } else if (kind == STEP_POLICY) {
            be->matmul_forward(a->logits, a->lnf, m->params + m->off_lm_head, N, H, V);
            mask_thought_columns(qs, a->logits, -1e10f);
            int32_t* next = qs->step_tokens + (size_t)(k + 1) * N;  // the sampled token is the next step's input
            if (qs->forced) {
                memcpy(next, qs->forced + (size_t)(k - 1) * N, sizeof(int32_t) * N);
            } else {
                be->gumbel_sample(a->targets, a->logits, N, V, L, qs->qc.seed, sample_step, k);
                be->download(next, a->targets, sizeof(int32_t) * N);
            }
            // log π at the REINFORCE temperature is minus the cross-entropy of the scaled logits
            be->scale(a->logits, 1.0f / qs->qc.reinforce_temperature, (size_t)N * V);
            int nv;
            head_loss(qs, a, next, a->losses, &nv, host_losses);
            for (int n = 0; n < N; n++) policy_nll[n] += host_losses[n];
        } else if (kind == STEP_TALK) {
            const int s = k - (NA - 1);
            mixer_forward(qs, s, a->lnf, a->logits);
            for (int n = 0; n < N; n++) targets[n] = n % L < L - 1 - s ? x[n + s + 1] : QSTAR_IGNORE_INDEX;
            int nv;
            st->talk_nll[s] = head_loss(qs, a, targets, qs->talk_losses + (size_t)s * N, &nv, host_losses) / nv;
            float* w = xmalloc(sizeof(float) * N);
            be->download(w, qs->w + (size_t)s * N, sizeof(float) * N);
            double sw = 0;
            for (int n = 0; n < N; n++)
                if (targets[n] >= 0) sw += w[n];
            st->mean_mix_weight += sw / nv / T;
            free(w);
        }
    }

    // REINFORCE: advantage per slot, then the policy loss over the slots that have T true tokens after them
    be->quietstar_advantage(qs->reward, qs->advantage, qs->steps[0].losses, qs->talk_losses, qs->B, qs->P, L, T);
    if (qs->fixed_advantage) be->upload(qs->advantage, qs->fixed_advantage, sizeof(float) * N);
    float* rw = xmalloc(sizeof(float) * N);
    float* adv = xmalloc(sizeof(float) * N);
    be->download(rw, qs->reward, sizeof(float) * N);
    be->download(adv, qs->advantage, sizeof(float) * N);
    const double slots = (double)R * (L - 1 - T), n_policy = NA - 3;
    int positive = 0;
    double policy = 0;
    for (int n = 0; n < N; n++) {
        if (n % L >= L - 1 - T) continue;
        st->mean_reward += rw[n] / slots;
        st->mean_advantage += adv[n] / slots;
        positive += adv[n] > 0;
        policy += adv[n] * policy_nll[n];
    }
    st->frac_positive = positive / slots;
    st->policy_loss = qs->qc.policy_weight * policy / slots / n_policy;
    double talk = 0;
    for (int s = 0; s < T; s++) talk += st->talk_nll[s] / T;
    st->loss = qs->qc.base_weight * st->base_nll + qs->qc.talk_weight * talk + st->policy_loss;
    free(rw);
    free(adv);
    free(x);
    free(pos);
    free(targets);
    free(host_losses);
    free(policy_nll);
    return st->loss;
}

// Uploads a per-row loss weight: value for rows whose slot satisfies i < limit, 0 elsewhere.
static void upload_row_weights(QuietStar* qs, float* dst, float value, int limit, const float* per_row) {
    float* h = xmalloc(sizeof(float) * qs->N);
    for (int n = 0; n < qs->N; n++) h[n] = n % qs->L < limit ? value * (per_row ? per_row[n] : 1.0f) : 0.0f;
    qs->m->be->upload(dst, h, sizeof(float) * qs->N);
    free(h);
}

void quietstar_backward(QuietStar* qs, float loss_scale) {
    Model* m = qs->m;
    const Backend* be = m->be;
    const ModelConfig* c = &m->cfg;
    const int R = qs->R, L = qs->L, N = qs->N, H = c->hidden_size, V = c->vocab_size, NA = qs->NA, T = qs->T;
    float* G = m->grads;

    be->zero(qs->dqkv, sizeof(floatX) * qs->S * qs->step_stride);
    be->zero(qs->dlnf0, sizeof(floatX) * (size_t)N * H);
    float* adv = xmalloc(sizeof(float) * N);
    be->download(adv, qs->advantage, sizeof(float) * N);
    upload_row_weights(qs, qs->policy_dl,
                       (float)(loss_scale * qs->qc.policy_weight / ((double)R * (L - 1 - T)) / (NA - 3)), L - 1 - T,
                       adv);
    free(adv);

    for (int k = qs->S - 1; k >= 0; k--) {
        Activations* a = &qs->steps[k];
        const int kind = step_kind(qs, k);
        if (kind == STEP_TALK) {
            const int s = k - (NA - 1);
            upload_row_weights(qs, qs->talk_dl,
                               (float)(loss_scale * qs->qc.talk_weight / T / ((double)R * (L - 1 - s))), L - 1 - s,
                               NULL);
            be->crossentropy_backward(a->logits, a->logits, a->targets, qs->talk_dl, N, V);
            be->zero(qs->dlnf, sizeof(floatX) * (size_t)N * H);
            mixer_backward(qs, s, a->lnf, a->logits);
        } else if (kind == STEP_POLICY) {
            be->crossentropy_backward(a->logits, a->logits, a->targets, qs->policy_dl, N, V);
            be->scale(a->logits, 1.0f / qs->qc.reinforce_temperature, (size_t)N * V);
            mask_thought_columns(qs, a->logits, 0.0f);  // masked logits are constants: no gradient
            be->matmul_backward(qs->dlnf, G + m->off_lm_head, a->logits, a->lnf, m->params + m->off_lm_head, N, H,
                                V, 0);
        } else if (kind == STEP_BASE) {
            upload_row_weights(qs, qs->base_dl, (float)(loss_scale * qs->qc.base_weight / ((double)R * (L - 1))),
                               L - 1, NULL);
            be->crossentropy_backward(a->logits, a->logits, a->targets, qs->base_dl, N, V);
            be->matmul_backward(qs->dlnf, G + m->off_lm_head, a->logits, a->lnf, m->params + m->off_lm_head, N, H, V,
                                0);
            be->add(qs->dlnf, qs->dlnf, qs->dlnf0, (size_t)N * H);
        } else {
            be->zero(qs->dlnf, sizeof(floatX) * (size_t)N * H);
        }
        ThoughtAttn ta = thought_attn(qs, k);
        // a layer's gradients are final only once step 0, the last differentiated, is through it
        void (*ready)(void*, size_t, size_t) = m->grad_ready;
        if (k > 0) m->grad_ready = NULL;
        decoder_backward(m, a, &qs->scratch, qs->dlnf, &ta);
        m->grad_ready = ready;
        if (k == 1 || k == NA - 1)
            be->column_sum(G + (k == 1 ? m->off_start : m->off_end), qs->scratch.dresid, qs->qc.embed_scale, N, H);
        else
            be->embedding_backward(G + m->off_embed, qs->scratch.dresid, a->tokens, N, V, H);
    }
}
