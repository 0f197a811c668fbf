/*
 * Text generation with a key/value cache, optionally thinking before every token as Quiet-STaR does
 * at inference: after the text up to slot i, a thought of n_ahead − 3 sampled tokens between the
 * start and end embeddings runs at positions i+1 … i+n_ahead−1, attending to the cached text and to
 * itself; at the end token the mixing head blends its hidden state with the text's, and the next
 * token is drawn from that mixed prediction. Thought tokens are sampled at temperature 1 (as the
 * reference does, even in evaluation); the text at the caller's temperature and top-p, with the
 * thought tokens masked out. Each new token costs one cached row forward, plus n_ahead − 1 when
 * thinking, instead of the reference's full re-forward of the sequence.
 */
#include "model/generate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "host/util.h"
#include "kernels/philox.h"

typedef struct {
    Model* m;
    int max_len, n_thought;
    floatX **k, **v;    // per layer: (max_len, NKV*HD) keys and values of the text
    floatX **tk, **tv;  // per layer: (n_thought, NKV*HD) keys and values of the current thought
    // one-row buffers
    floatX *x, *ln, *qkv, *att, *tmp, *mid, *gu, *mlp, *lnf, *logits, *hb, *cat, *a1, *a2, *w, *hmix;
    float* rstd;
    int32_t *pos, *tok;
} Gen;

static floatX* alloc_x(Model* m, size_t n) { return m->be->alloc(sizeof(floatX) * n); }

static void gen_init(Gen* g, Model* m, int max_len, int n_thought) {
    const ModelConfig* c = &m->cfg;
    const int L = c->num_hidden_layers, H = c->hidden_size, KW = c->num_key_value_heads * c->head_dim;
    const int C3 = (c->num_attention_heads + 2 * c->num_key_value_heads) * c->head_dim;
    memset(g, 0, sizeof *g);
    g->m = m;
    g->max_len = max_len;
    g->n_thought = n_thought > 0 ? n_thought : 1;
    g->k = xcalloc((size_t)L, sizeof(floatX*));
    g->v = xcalloc((size_t)L, sizeof(floatX*));
    g->tk = xcalloc((size_t)L, sizeof(floatX*));
    g->tv = xcalloc((size_t)L, sizeof(floatX*));
    for (int l = 0; l < L; l++) {
        g->k[l] = alloc_x(m, (size_t)max_len * KW);
        g->v[l] = alloc_x(m, (size_t)max_len * KW);
        g->tk[l] = alloc_x(m, (size_t)g->n_thought * KW);
        g->tv[l] = alloc_x(m, (size_t)g->n_thought * KW);
    }
    g->x = alloc_x(m, H);
    g->ln = alloc_x(m, H);
    g->qkv = alloc_x(m, C3);
    g->att = alloc_x(m, (size_t)c->num_attention_heads * c->head_dim);
    g->tmp = alloc_x(m, H);
    g->mid = alloc_x(m, H);
    g->gu = alloc_x(m, 2 * (size_t)c->intermediate_size);
    g->mlp = alloc_x(m, c->intermediate_size);
    g->lnf = alloc_x(m, H);
    g->logits = alloc_x(m, c->vocab_size);
    g->hb = alloc_x(m, H);
    g->cat = alloc_x(m, 2 * (size_t)H);
    g->a1 = alloc_x(m, H);
    g->a2 = alloc_x(m, H);
    g->w = alloc_x(m, 1);
    g->hmix = alloc_x(m, H);
    g->rstd = m->be->alloc(sizeof(float));
    g->pos = m->be->alloc(sizeof(int32_t));
    g->tok = m->be->alloc(sizeof(int32_t));
}

static void gen_free(Gen* g) {
    const Backend* be = g->m->be;
    for (int l = 0; l < g->m->cfg.num_hidden_layers; l++) {
        be->free(g->k[l]);
        be->free(g->v[l]);
        be->free(g->tk[l]);
        be->free(g->tv[l]);
    }
    free(g->k);
    free(g->v);
    free(g->tk);
    free(g->tv);
    void* bufs[] = {g->x,  g->ln, g->qkv, g->att, g->tmp, g->mid, g->gu, g->mlp, g->lnf, g->logits,
                    g->hb, g->cat, g->a1, g->a2, g->w, g->hmix, g->rstd, g->pos, g->tok};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) be->free(bufs[i]);
}

// One row through the decoder at position pos, input in g->x. Its key/value go to the text cache at
// `pos` (text row) or to thought row `thought_row` (>= 0); it attends to text rows 0..n_text-1 and
// thought rows 0..thought_row. Leaves the final-norm output in g->lnf.
static void row_forward(Gen* g, int pos, int n_text, int thought_row) {
    Model* m = g->m;
    const Backend* be = m->be;
    const ModelConfig* c = &m->cfg;
    const int H = c->hidden_size, IM = c->intermediate_size, NH = c->num_attention_heads;
    const int NKV = c->num_key_value_heads, HD = c->head_dim, KW = NKV * HD, C3 = (NH + 2 * NKV) * HD;
    const float* P = m->params;
    int32_t p = pos;
    be->upload(g->pos, &p, sizeof p);
    for (int l = 0; l < c->num_hidden_layers; l++) {
        const LayerOffsets* lo = &m->layers[l];
        be->rmsnorm_forward(g->ln, g->rstd, g->x, P + lo->ln1, 1, H, c->rms_norm_eps);
        be->matmul_forward(g->qkv, g->ln, P + lo->qkv, 1, H, C3);
        be->rope_forward(g->qkv, g->pos, 1, NH, NKV, HD, c->rope_theta);
        floatX* kdst = thought_row >= 0 ? g->tk[l] + (size_t)thought_row * KW : g->k[l] + (size_t)pos * KW;
        floatX* vdst = thought_row >= 0 ? g->tv[l] + (size_t)thought_row * KW : g->v[l] + (size_t)pos * KW;
        be->copy_strided(kdst, KW, g->qkv + NH * HD, C3, 1, KW);
        be->copy_strided(vdst, KW, g->qkv + NH * HD + KW, C3, 1, KW);
        be->cached_attention_forward(g->att, g->qkv, g->k[l], g->v[l], n_text, g->tk[l], g->tv[l],
                                     thought_row >= 0 ? thought_row + 1 : 0, NH, NKV, HD);
        be->matmul_forward(g->tmp, g->att, P + lo->o, 1, NH * HD, H);
        be->add(g->mid, g->x, g->tmp, H);
        be->rmsnorm_forward(g->ln, g->rstd, g->mid, P + lo->ln2, 1, H, c->rms_norm_eps);
        be->matmul_forward(g->gu, g->ln, P + lo->gate_up, 1, H, 2 * IM);
        be->swiglu_forward(g->mlp, g->gu, 1, IM);
        be->matmul_forward(g->tmp, g->mlp, P + lo->down, 1, IM, H);
        be->add(g->x, g->mid, g->tmp, H);
    }
    be->rmsnorm_forward(g->lnf, g->rstd, g->x, P + m->off_norm, 1, H, c->rms_norm_eps);
}

static void embed_token(Gen* g, int32_t token) {
    g->m->be->upload(g->tok, &token, sizeof token);
    g->m->be->embedding_forward(g->x, g->tok, g->m->params + g->m->off_embed, 1, g->m->cfg.hidden_size);
}

typedef struct {
    float p;
    int i;
} ProbIdx;

static int by_prob_desc(const void* a, const void* b) {
    float x = ((const ProbIdx*)a)->p, y = ((const ProbIdx*)b)->p;
    if (x != y) return x < y ? 1 : -1;
    return ((const ProbIdx*)a)->i - ((const ProbIdx*)b)->i;  // ties in id order: deterministic
}

// Draws from softmax(logits / temperature) restricted to the top-p nucleus (temperature 0: argmax),
// with thought tokens excluded; the uniform comes from Philox keyed by (seed, position, purpose).
static int32_t sample_row(Gen* g, float temperature, float top_p, uint64_t seed, int position, int purpose) {
    const ModelConfig* c = &g->m->cfg;
    const int V = c->vocab_size;
    float* z = xmalloc(sizeof(float) * V);
    g->m->be->download(z, g->logits, sizeof(float) * V);
    if (c->start_thought_id >= 0) z[c->start_thought_id] = z[c->end_thought_id] = -INFINITY;
    int best = 0;
    for (int v = 1; v < V; v++)
        if (z[v] > z[best]) best = v;
    if (temperature <= 0) {
        free(z);
        return best;
    }
    double sum = 0;
    for (int v = 0; v < V; v++) sum += (z[v] = expf((z[v] - z[best]) / temperature));
    // nucleus: the most probable tokens whose mass reaches top_p of the total
    ProbIdx* pi = xmalloc(sizeof(ProbIdx) * V);
    for (int v = 0; v < V; v++) pi[v] = (ProbIdx){z[v], v};
    int kept = V;
    double mass = sum;
    if (top_p < 1) {
        qsort(pi, (size_t)V, sizeof(ProbIdx), by_prob_desc);
        mass = 0;
        for (kept = 0; kept < V && mass < top_p * sum;) mass += pi[kept++].p;
    }
    Philox4 r = philox4x32((uint32_t)position, (uint32_t)purpose, 0x53414D50u, 0, (uint32_t)seed, (uint32_t)(seed >> 32));
    double u = philox_uniform(r.v[0]) * mass, acc = 0;
    int32_t out = pi[kept - 1].i;
    for (int j = 0; j < kept; j++) {
        acc += pi[j].p;
        if (u <= acc) {
            out = pi[j].i;
            break;
        }
    }
    free(pi);
    free(z);
    return out;
}

// Thinks at text slot i (text rows 0..i cached, g->hb holding the text's normed state at i) and
// leaves the mixed next-token logits in g->logits.
static void think(Gen* g, const GenConfig* gc, int i, GenEmit emit, void* user) {
    Model* m = g->m;
    const Backend* be = m->be;
    const int H = m->cfg.hidden_size, V = m->cfg.vocab_size, NA = gc->n_ahead;
    const float* P = m->params;
    emit(user, GEN_THOUGHT_START, m->cfg.start_thought_id);
    int32_t t = 0;
    for (int j = 1; j <= NA - 1; j++) {
        if (j == 1 || j == NA - 1)
            be->row_broadcast(g->x, P + (j == 1 ? m->off_start : m->off_end), gc->embed_scale, 1, H);
        else
            embed_token(g, t);
        row_forward(g, i + j, i + 1, j - 1);
        if (j <= NA - 3) {
            be->matmul_forward(g->logits, g->lnf, P + m->off_lm_head, 1, H, V);
            t = sample_row(g, 1.0f, 1.0f, gc->seed, i, 1000 + j);
            emit(user, GEN_THOUGHT_TOKEN, t);
        }
    }
    emit(user, GEN_THOUGHT_END, m->cfg.end_thought_id);
    // mixing head: w = MLP([h_text, h_thought]); hmix = (1 − w)·h_text + w·h_thought
    be->concat_columns(g->cat, g->hb, g->lnf, 1, H, H);
    be->matmul_forward(g->a1, g->cat, P + m->off_mix_w0, 1, 2 * H, H);
    be->add_bias(g->a1, P + m->off_mix_b0, 1, H);
    be->relu_forward(g->a1, g->a1, H);
    be->matmul_forward(g->a2, g->a1, P + m->off_mix_w2, 1, H, H);
    be->add_bias(g->a2, P + m->off_mix_b2, 1, H);
    be->relu_forward(g->a2, g->a2, H);
    be->matmul_forward(g->w, g->a2, P + m->off_mix_w4, 1, H, 1);
    be->mix_forward(g->hmix, g->hb, g->lnf, g->w, 1, H);
    be->matmul_forward(g->logits, g->hmix, P + m->off_lm_head, 1, H, V);
}

int generate(Model* m, const GenConfig* gc, const int32_t* prompt, int n_prompt, GenEmit emit, void* user) {
    const ModelConfig* c = &m->cfg;
    const int H = c->hidden_size, V = c->vocab_size;
    if (n_prompt < 1) fatal("generate: the prompt must have at least one token");
    if (gc->thoughts && c->start_thought_id < 0) fatal("generate: --thoughts needs a Quiet-STaR checkpoint");
    if (gc->thoughts && gc->n_ahead < 4) fatal("generate: n_ahead must be at least 4");
    const int max_len = n_prompt + gc->max_tokens + (gc->thoughts ? gc->n_ahead : 0);
    if (max_len > c->max_position_embeddings) fatal("generate: prompt + tokens exceed max_position_embeddings");
    Gen g;
    gen_init(&g, m, max_len, gc->thoughts ? gc->n_ahead : 1);
    int produced = 0;
    for (int i = 0; i < n_prompt; i++) {  // the prompt, one cached row at a time
        embed_token(&g, prompt[i]);
        row_forward(&g, i, i + 1, -1);
    }
    for (int i = n_prompt - 1; produced < gc->max_tokens; i++) {
        if (gc->thoughts) {
            m->be->copy(g.hb, g.lnf, sizeof(floatX) * H);
            think(&g, gc, i, emit, user);
        } else {
            m->be->matmul_forward(g.logits, g.lnf, m->params + m->off_lm_head, 1, H, V);
        }
        if (produced == 0 && gc->first_logits) m->be->download(gc->first_logits, g.logits, sizeof(float) * V);
        int32_t next = sample_row(&g, gc->temperature, gc->top_p, gc->seed, i, 0);
        emit(user, GEN_TEXT, next);
        produced++;
        if (next == gc->stop_token) break;
        embed_token(&g, next);
        row_forward(&g, i + 1, i + 2, -1);
    }
    gen_free(&g);
    return produced;
}
