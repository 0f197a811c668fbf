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

#include "common/util.h"
#include "kernels/philox.h"
#include "kernels/cpu/simd.h"

// X(p, n): element n of a floatX buffer (the backend's precision decides the byte offset).
#define X(p, n) xat(be, (p), (n))

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

static floatX* alloc_x(Model* m, size_t n) { return m->be->alloc(m->be->x_bytes * n); }

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
    g->logits = alloc_x(m, vocab_padded(c));
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
    const floatX* P = m->params;
    int32_t p = pos;
    be->upload(g->pos, &p, sizeof p);
    for (int l = 0; l < c->num_hidden_layers; l++) {
        const LayerOffsets* lo = &m->layers[l];
        be->rmsnorm_forward(g->ln, g->rstd, g->x, X(P, lo->ln1), 1, H, c->rms_norm_eps);
        be->matmul_forward(g->qkv, g->ln, X(P, lo->qkv), 1, H, C3);
        be->rope_forward(g->qkv, g->pos, 1, NH, NKV, HD, c->rope_theta);
        floatX* kdst = thought_row >= 0 ? X(g->tk[l], (size_t)thought_row * KW) : X(g->k[l], (size_t)pos * KW);
        floatX* vdst = thought_row >= 0 ? X(g->tv[l], (size_t)thought_row * KW) : X(g->v[l], (size_t)pos * KW);
        be->copy_strided(kdst, KW, X(g->qkv, NH * HD), C3, 1, KW);
        be->copy_strided(vdst, KW, X(g->qkv, NH * HD + KW), C3, 1, KW);
        be->cached_attention_forward(g->att, g->qkv, g->k[l], g->v[l], n_text, g->tk[l], g->tv[l],
                                     thought_row >= 0 ? thought_row + 1 : 0, NH, NKV, HD);
        be->matmul_forward(g->tmp, g->att, X(P, lo->o), 1, NH * HD, H);
        be->add(g->mid, g->x, g->tmp, H);
        be->rmsnorm_forward(g->ln, g->rstd, g->mid, X(P, lo->ln2), 1, H, c->rms_norm_eps);
        be->matmul_forward(g->gu, g->ln, X(P, lo->gate_up), 1, H, 2 * IM);
        be->swiglu_forward(g->mlp, g->gu, 1, IM);
        be->matmul_forward(g->tmp, g->mlp, X(P, lo->down), 1, IM, H);
        be->add(g->x, g->mid, g->tmp, H);
    }
    be->rmsnorm_forward(g->lnf, g->rstd, g->x, X(P, m->off_norm), 1, H, c->rms_norm_eps);
}

static void embed_token(Gen* g, int32_t token) {
    const Backend* be = g->m->be;
    g->m->be->upload(g->tok, &token, sizeof token);
    g->m->be->embedding_forward(g->x, g->tok, X(g->m->params, g->m->off_embed), 1, g->m->cfg.hidden_size);
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

// Draws from softmax(z / temperature) restricted to the top-p nucleus (temperature 0: argmax), with
// thought tokens excluded; the uniform comes from Philox keyed by (seed, position, purpose, stream),
// stream being the sample index of a batch request (0 in generate()). z (V, host) is overwritten.
static int32_t sample_logits(const ModelConfig* c, float* z, float temperature, float top_p, uint64_t seed,
                             int position, int purpose, uint32_t stream) {
    const int V = c->vocab_size;
    if (c->start_thought_id >= 0) z[c->start_thought_id] = z[c->end_thought_id] = -INFINITY;
    // argmax, the first index of the largest value (NaNs never win), in two passes that vectorize
    const float zmax = vmax_of(z, V, -INFINITY);
    int best = 0;
    while (best < V && !(z[best] == zmax)) best++;
    if (best == V) best = 0;  // every logit NaN
    if (temperature <= 0) return best;
    double sum = 0;
    for (int v = 0; v < V; v++) sum += (z[v] = expf((z[v] - zmax) / temperature));
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
    Philox4 r = philox4x32((uint32_t)position, (uint32_t)purpose, 0x53414D50u, stream, (uint32_t)seed, (uint32_t)(seed >> 32));
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
    return out;
}

static int32_t sample_row(Gen* g, float temperature, float top_p, uint64_t seed, int position, int purpose) {
    const int V = g->m->cfg.vocab_size;
    float* z = xmalloc(sizeof(float) * V);
    x_download(g->m->be, z, g->logits, V);
    int32_t t = sample_logits(&g->m->cfg, z, temperature, top_p, seed, position, purpose, 0);
    free(z);
    return t;
}

// Thinks at text slot i (text rows 0..i cached, g->hb holding the text's normed state at i) and
// leaves the mixed next-token logits in g->logits.
static void think(Gen* g, const GenConfig* gc, int i, GenEmit emit, void* user) {
    Model* m = g->m;
    const Backend* be = m->be;
    const int H = m->cfg.hidden_size, NA = gc->n_ahead;
    const floatX* P = m->params;
    emit(user, GEN_THOUGHT_START, m->cfg.start_thought_id);
    int32_t t = 0;
    for (int j = 1; j <= NA - 1; j++) {
        if (j == 1 || j == NA - 1)
            be->row_broadcast(g->x, X(P, (j == 1 ? m->off_start : m->off_end)), gc->embed_scale, 1, H);
        else
            embed_token(g, t);
        row_forward(g, i + j, i + 1, j - 1);
        if (j <= NA - 3) {
            model_lm_head(m, g->logits, g->lnf, 1);
            t = sample_row(g, 1.0f, 1.0f, gc->seed, i, 1000 + j);
            emit(user, GEN_THOUGHT_TOKEN, t);
        }
    }
    emit(user, GEN_THOUGHT_END, m->cfg.end_thought_id);
    // mixing head: w = MLP([h_text, h_thought]); hmix = (1 − w)·h_text + w·h_thought
    be->concat_columns(g->cat, g->hb, g->lnf, 1, H, H);
    be->matmul_forward(g->a1, g->cat, X(P, m->off_mix_w0), 1, 2 * H, H);
    be->add_bias(g->a1, X(P, m->off_mix_b0), 1, H);
    be->relu_forward(g->a1, g->a1, H);
    be->matmul_forward(g->a2, g->a1, X(P, m->off_mix_w2), 1, H, H);
    be->add_bias(g->a2, X(P, m->off_mix_b2), 1, H);
    be->relu_forward(g->a2, g->a2, H);
    be->matmul_forward(g->w, g->a2, X(P, m->off_mix_w4), 1, H, 1);
    be->mix_forward(g->hmix, g->hb, g->lnf, g->w, 1, H);
    model_lm_head(m, g->logits, g->hmix, 1);
}

void generate_check_context(const ModelConfig* c, const GenConfig* gc, size_t prompt_tokens, const char* who) {
    const int64_t need = (int64_t)prompt_tokens + gc->max_tokens + (gc->thoughts ? gc->n_ahead : 0);
    if (need > c->max_position_embeddings)
        fatal("%s: --max-tokens %d: the prompt (%zu tokens) + %d tokens%s exceed the model's context of %d positions",
              who, gc->max_tokens, prompt_tokens, gc->max_tokens, gc->thoughts ? " + a thought" : "",
              c->max_position_embeddings);
}

int generate(Model* m, const GenConfig* gc, const int32_t* prompt, int n_prompt, GenEmit emit, void* user) {
    const ModelConfig* c = &m->cfg;
    const int H = c->hidden_size, V = c->vocab_size;
    if (n_prompt < 1) fatal("generate: the prompt must have at least one token");
    if (gc->thoughts && c->start_thought_id < 0) fatal("generate: --thoughts needs a Quiet-STaR checkpoint");
    if (gc->thoughts && gc->n_ahead < 4) fatal("generate: n_ahead must be at least 4");
    generate_check_context(c, gc, (size_t)n_prompt, "generate");
    const int max_len = n_prompt + gc->max_tokens + (gc->thoughts ? gc->n_ahead : 0);
    Gen g;
    gen_init(&g, m, max_len, gc->thoughts ? gc->n_ahead : 1);
    int produced = 0;
    for (int i = 0; i < n_prompt; i++) {  // the prompt, one cached row at a time
        embed_token(&g, prompt[i]);
        row_forward(&g, i, i + 1, -1);
    }
    for (int i = n_prompt - 1; produced < gc->max_tokens; i++) {
        if (gc->thoughts) {
            m->be->copy(g.hb, g.lnf, m->be->x_bytes * H);
            think(&g, gc, i, emit, user);
        } else {
            model_lm_head(m, g.logits, g.lnf, 1);
        }
        if (produced == 0 && gc->first_logits) x_download(m->be, gc->first_logits, g.logits, V);
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

// ---------------------------------------------------------------------------------------------
// Batched generation (generate.h). The same schedule and ops as generate() above, over many rows:
// row r of a step belongs to slot row_slot[r] and runs at position pos[r]; its key/value go to that
// slot's text cache at pos[r] (or its thought cache), and it attends to that slot's cache only.

typedef struct {
    int slot, pos, n_text, thought_row;  // thought_row < 0: a text row (n_text = pos + 1)
} RowInfo;

typedef struct {
    Model* m;
    int slots, max_len, n_thought, cap;  // cap: rows per step
    floatX **k, **v;    // per layer: (slots * max_len, NKV*HD)
    floatX **tk, **tv;  // per layer: (slots * n_thought, NKV*HD)
    // (cap, ·) row buffers
    floatX *x, *ln, *qkv, *att, *tmp, *mid, *gu, *mlp, *lnf;
    float* rstd;
    int32_t *pos, *tok;
    int32_t* attn_rows;  // (3, cap): each row's slot, text keys and thought keys, for cached_attention_batched
    // (slots, ·) buffers: one row per running request
    floatX *hsel, *hb, *cat, *a1, *a2, *w, *hmix, *logits;
    int32_t *h_pos, *h_attn;  // host copies of pos and attn_rows
    float* h_logits;  // (slots, vocab_padded) host
} Batch;

static void batch_init(Batch* b, Model* m, int slots, int max_len, int n_thought, int cap) {
    const ModelConfig* c = &m->cfg;
    const int L = c->num_hidden_layers, H = c->hidden_size, KW = c->num_key_value_heads * c->head_dim;
    const size_t C3 = (size_t)(c->num_attention_heads + 2 * c->num_key_value_heads) * c->head_dim;
    memset(b, 0, sizeof *b);
    b->m = m;
    b->slots = slots;
    b->max_len = max_len;
    b->n_thought = n_thought > 0 ? n_thought : 1;
    b->cap = cap;
    b->k = xcalloc((size_t)L, sizeof(floatX*));
    b->v = xcalloc((size_t)L, sizeof(floatX*));
    b->tk = xcalloc((size_t)L, sizeof(floatX*));
    b->tv = xcalloc((size_t)L, sizeof(floatX*));
    for (int l = 0; l < L; l++) {
        b->k[l] = alloc_x(m, (size_t)slots * max_len * KW);
        b->v[l] = alloc_x(m, (size_t)slots * max_len * KW);
        b->tk[l] = alloc_x(m, (size_t)slots * b->n_thought * KW);
        b->tv[l] = alloc_x(m, (size_t)slots * b->n_thought * KW);
    }
    const size_t R = (size_t)cap, S = (size_t)slots;
    b->x = alloc_x(m, R * H);
    b->ln = alloc_x(m, R * H);
    b->qkv = alloc_x(m, R * C3);
    b->att = alloc_x(m, R * c->num_attention_heads * c->head_dim);
    b->tmp = alloc_x(m, R * H);
    b->mid = alloc_x(m, R * H);
    b->gu = alloc_x(m, R * 2 * c->intermediate_size);
    b->mlp = alloc_x(m, R * c->intermediate_size);
    b->lnf = alloc_x(m, R * H);
    b->rstd = m->be->alloc(sizeof(float) * R);
    b->pos = m->be->alloc(sizeof(int32_t) * R);
    b->tok = m->be->alloc(sizeof(int32_t) * R);
    b->attn_rows = m->be->alloc(sizeof(int32_t) * 3 * R);
    b->h_attn = xmalloc(sizeof(int32_t) * 3 * R);
    b->hsel = alloc_x(m, S * H);
    b->hb = alloc_x(m, S * H);
    b->cat = alloc_x(m, S * 2 * H);
    b->a1 = alloc_x(m, S * H);
    b->a2 = alloc_x(m, S * H);
    b->w = alloc_x(m, S);
    b->hmix = alloc_x(m, S * H);
    b->logits = alloc_x(m, S * vocab_padded(c));
    b->h_pos = xmalloc(sizeof(int32_t) * R);
    b->h_logits = xmalloc(sizeof(float) * S * vocab_padded(c));
}

static void batch_free(Batch* b) {
    const Backend* be = b->m->be;
    for (int l = 0; l < b->m->cfg.num_hidden_layers; l++) {
        be->free(b->k[l]);
        be->free(b->v[l]);
        be->free(b->tk[l]);
        be->free(b->tv[l]);
    }
    free(b->k);
    free(b->v);
    free(b->tk);
    free(b->tv);
    void* bufs[] = {b->x,    b->ln,  b->qkv, b->att, b->tmp, b->mid, b->gu, b->mlp, b->lnf,    b->rstd, b->pos,
                    b->tok,  b->hsel, b->hb, b->cat, b->a1,  b->a2,  b->w,  b->hmix, b->logits, b->attn_rows};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) be->free(bufs[i]);
    free(b->h_pos);
    free(b->h_attn);
    free(b->h_logits);
}

// N rows (inputs in b->x) through the decoder; the final-norm outputs in b->lnf.
static void batch_forward(Batch* b, const RowInfo* ri, int N) {
    Model* m = b->m;
    const Backend* be = m->be;
    const ModelConfig* c = &m->cfg;
    const int H = c->hidden_size, IM = c->intermediate_size, NH = c->num_attention_heads;
    const int NKV = c->num_key_value_heads, HD = c->head_dim, KW = NKV * HD, C3 = (NH + 2 * NKV) * HD;
    const floatX* P = m->params;
    // each row's slot and key counts: text rows 0..n_text-1 of its slot, and its thought so far
    int32_t *slot = b->h_attn, *n1 = slot + N, *n2 = n1 + N;
    int max_n = 1;
    for (int r = 0; r < N; r++) {
        b->h_pos[r] = ri[r].pos;
        slot[r] = ri[r].slot;
        n1[r] = ri[r].n_text;
        n2[r] = ri[r].thought_row >= 0 ? ri[r].thought_row + 1 : 0;
        if (n1[r] + n2[r] > max_n) max_n = n1[r] + n2[r];
    }
    be->upload(b->pos, b->h_pos, sizeof(int32_t) * N);
    be->upload(b->attn_rows, b->h_attn, sizeof(int32_t) * 3 * (size_t)N);
    const int32_t *d_slot = b->attn_rows, *d_n1 = d_slot + N, *d_n2 = d_n1 + N;
    for (int l = 0; l < c->num_hidden_layers; l++) {
        const LayerOffsets* lo = &m->layers[l];
        be->rmsnorm_forward(b->ln, b->rstd, b->x, X(P, lo->ln1), N, H, c->rms_norm_eps);
        be->matmul_forward(b->qkv, b->ln, X(P, lo->qkv), N, H, C3);
        be->rope_forward(b->qkv, b->pos, N, NH, NKV, HD, c->rope_theta);
        // keys and values into the caches, one copy per run of consecutive rows of one slot
        for (int r = 0; r < N;) {
            const RowInfo* a = &ri[r];
            int n = 1;
            while (r + n < N && ri[r + n].slot == a->slot && (a->thought_row < 0) == (ri[r + n].thought_row < 0) &&
                   (a->thought_row < 0 ? ri[r + n].pos == a->pos + n : ri[r + n].thought_row == a->thought_row + n))
                n++;
            const size_t at = a->thought_row >= 0 ? ((size_t)a->slot * b->n_thought + a->thought_row) * KW
                                                  : ((size_t)a->slot * b->max_len + a->pos) * KW;
            floatX* kdst = X(a->thought_row >= 0 ? b->tk[l] : b->k[l], at);
            floatX* vdst = X(a->thought_row >= 0 ? b->tv[l] : b->v[l], at);
            be->copy_strided(kdst, KW, X(b->qkv, (size_t)r * C3 + NH * HD), C3, n, KW);
            be->copy_strided(vdst, KW, X(b->qkv, (size_t)r * C3 + NH * HD + KW), C3, n, KW);
            r += n;
        }
        // every row in one call (each exactly what cached_attention_forward gives it alone)
        be->cached_attention_batched(b->att, b->qkv, C3, b->k[l], b->v[l], (size_t)b->max_len * KW, b->tk[l], b->tv[l],
                                     (size_t)b->n_thought * KW, d_slot, d_n1, d_n2, N, max_n, NH, NKV, HD);
        be->matmul_forward(b->tmp, b->att, X(P, lo->o), N, NH * HD, H);
        be->add(b->mid, b->x, b->tmp, (size_t)N * H);
        be->rmsnorm_forward(b->ln, b->rstd, b->mid, X(P, lo->ln2), N, H, c->rms_norm_eps);
        be->matmul_forward(b->gu, b->ln, X(P, lo->gate_up), N, H, 2 * IM);
        be->swiglu_forward(b->mlp, b->gu, N, IM);
        be->matmul_forward(b->tmp, b->mlp, X(P, lo->down), N, IM, H);
        be->add(b->x, b->mid, b->tmp, (size_t)N * H);
    }
    be->rmsnorm_forward(b->lnf, b->rstd, b->x, X(P, m->off_norm), N, H, c->rms_norm_eps);
}

// lm_head over the S rows of h, downloaded into b->h_logits (rows vocab_padded apart).
static void batch_logits(Batch* b, const floatX* h, int S) {
    model_lm_head(b->m, b->logits, h, S);
    x_download(b->m->be, b->h_logits, b->logits, (size_t)S * vocab_padded(&b->m->cfg));
}

typedef struct {
    int req;       // request in this slot, -1 when free
    int last;      // position of the last text row forwarded
    int32_t next;  // the token to feed at last + 1
    int leader;    // admitted this step with the same prompt as slot `leader`: shares its prompt rows (-1: no)
} Slot;

// The S running slots `act` (slot ids) think after their text row `last` (normed state in b->hb);
// leaves the mixed next-token logits on the host in b->h_logits (S rows). As think() above.
static void batch_think(Batch* b, const GenConfig* gc, const GenRequest* reqs, const Slot* sl, const int* act, int S,
                        RowInfo* ri, int32_t* toks, GenBatchEmit emit, void* user) {
    Model* m = b->m;
    const Backend* be = m->be;
    const ModelConfig* c = &m->cfg;
    const int H = c->hidden_size, V = vocab_padded(c), NA = gc->n_ahead;
    const floatX* P = m->params;
    for (int s = 0; s < S; s++)
        if (emit) emit(user, sl[act[s]].req, GEN_THOUGHT_START, c->start_thought_id);
    for (int j = 1; j <= NA - 1; j++) {
        if (j == 1 || j == NA - 1) {
            be->row_broadcast(b->x, X(P, (j == 1 ? m->off_start : m->off_end)), gc->embed_scale, S, H);
        } else {
            be->upload(b->tok, toks, sizeof(int32_t) * S);
            be->embedding_forward(b->x, b->tok, X(P, m->off_embed), S, H);
        }
        for (int s = 0; s < S; s++) {
            const Slot* a = &sl[act[s]];
            ri[s] = (RowInfo){act[s], a->last + j, a->last + 1, j - 1};
        }
        batch_forward(b, ri, S);
        if (j <= NA - 3) {
            batch_logits(b, b->lnf, S);
#pragma omp parallel for schedule(static) if (S > 1)  // each row's draw is keyed by its request: any order
            for (int s = 0; s < S; s++) {
                const Slot* a = &sl[act[s]];
                toks[s] = sample_logits(c, b->h_logits + (size_t)s * V, 1.0f, 1.0f, gc->seed, a->last, 1000 + j,
                                        reqs[a->req].sample);
            }
            if (emit)
                for (int s = 0; s < S; s++) emit(user, sl[act[s]].req, GEN_THOUGHT_TOKEN, toks[s]);
        }
    }
    for (int s = 0; s < S; s++)
        if (emit) emit(user, sl[act[s]].req, GEN_THOUGHT_END, c->end_thought_id);
    be->concat_columns(b->cat, b->hb, b->lnf, S, H, H);
    be->matmul_forward(b->a1, b->cat, X(P, m->off_mix_w0), S, 2 * H, H);
    be->add_bias(b->a1, X(P, m->off_mix_b0), S, H);
    be->relu_forward(b->a1, b->a1, (size_t)S * H);
    be->matmul_forward(b->a2, b->a1, X(P, m->off_mix_w2), S, H, H);
    be->add_bias(b->a2, X(P, m->off_mix_b2), S, H);
    be->relu_forward(b->a2, b->a2, (size_t)S * H);
    be->matmul_forward(b->w, b->a2, X(P, m->off_mix_w4), S, H, 1);
    be->mix_forward(b->hmix, b->hb, b->lnf, b->w, S, H);
    batch_logits(b, b->hmix, S);
}

void generate_batch(Model* m, const GenConfig* gc, GenRequest* reqs, int n_reqs, int batch, GenBatchEmit emit,
                    void* user) {
    const Backend* be = m->be;
    const ModelConfig* c = &m->cfg;
    const int H = c->hidden_size, V = c->vocab_size, Vp = vocab_padded(c);
    if (n_reqs <= 0) return;
    if (batch < 1) fatal("generate: the batch must be at least 1");
    if (gc->max_tokens < 1) fatal("generate: max_tokens must be at least 1");
    if (gc->thoughts && c->start_thought_id < 0) fatal("generate: --thoughts needs a Quiet-STaR checkpoint");
    if (gc->thoughts && gc->n_ahead < 4) fatal("generate: n_ahead must be at least 4");
    int max_prompt = 1;
    for (int r = 0; r < n_reqs; r++) {
        if (reqs[r].n_prompt < 1) fatal("generate: request %d: the prompt must have at least one token", r);
        for (int i = 0; i < reqs[r].n_prompt; i++)
            if (reqs[r].prompt[i] < 0 || reqs[r].prompt[i] >= V)
                fatal("generate: request %d: token %d is outside the vocabulary", r, reqs[r].prompt[i]);
        max_prompt = reqs[r].n_prompt > max_prompt ? reqs[r].n_prompt : max_prompt;
        reqs[r].n_out = 0;
        reqs[r].finish = GEN_FINISH_LENGTH;
    }
    generate_check_context(c, gc, (size_t)max_prompt, "generate");
    const int max_len = max_prompt + gc->max_tokens + (gc->thoughts ? gc->n_ahead : 0);
    const int slots = batch < n_reqs ? batch : n_reqs;
    // rows per step: the running requests' new tokens plus the prompts admitted (at least the longest)
    const int cap = slots + (max_prompt > 512 ? max_prompt : 512);
    Batch b;
    batch_init(&b, m, slots, max_len, gc->thoughts ? gc->n_ahead : 1, cap);
    Slot* sl = xmalloc(sizeof(Slot) * slots);
    for (int s = 0; s < slots; s++) sl[s] = (Slot){.req = -1};
    RowInfo* ri = xmalloc(sizeof(RowInfo) * cap);
    int32_t* toks = xmalloc(sizeof(int32_t) * cap);
    int* act = xmalloc(sizeof(int) * slots);
    int next_req = 0, running = 0;
    while (next_req < n_reqs || running > 0) {
        int N = 0, S = 0;
        // running requests: their last token; then admit waiting requests into free slots
        for (int s = 0; s < slots; s++)
            if (sl[s].req >= 0) {
                sl[s].leader = -1;
                sl[s].last++;
                toks[N] = sl[s].next;
                ri[N++] = (RowInfo){s, sl[s].last, sl[s].last + 1, -1};
            }
        // Requests admitted together with the same prompt (the samples of one prompt) forward it once:
        // the others get a copy of its keys and values and of its last hidden state.
        int prev = -1, n_followers = 0;
        for (int s = 0; s < slots && next_req < n_reqs; s++) {
            const GenRequest* q = &reqs[next_req];
            if (sl[s].req >= 0) continue;
            const GenRequest* pq = prev >= 0 ? &reqs[sl[prev].req] : NULL;
            const int same = pq && pq->n_prompt == q->n_prompt &&
                             (pq->prompt == q->prompt || !memcmp(pq->prompt, q->prompt, sizeof(int32_t) * q->n_prompt));
            if (!same && N + q->n_prompt > cap) continue;
            sl[s] = (Slot){.req = next_req++, .last = q->n_prompt - 1, .leader = same ? prev : -1};
            running++;
            if (same) {
                n_followers++;
                continue;
            }
            for (int i = 0; i < q->n_prompt; i++) {
                toks[N] = q->prompt[i];
                ri[N++] = (RowInfo){s, i, i + 1, -1};
            }
            prev = s;
        }
        m->be->upload(b.tok, toks, sizeof(int32_t) * N);
        m->be->embedding_forward(b.x, b.tok, X(m->params, m->off_embed), N, H);
        batch_forward(&b, ri, N);
        // each running slot's last row, then the followers' (their leader's)
        for (int r = 0; r < N; r++) {
            const Slot* a = &sl[ri[r].slot];
            if (ri[r].pos != a->last) continue;
            be->copy(X(b.hsel, (size_t)S * H), X(b.lnf, (size_t)r * H), be->x_bytes * H);
            act[S++] = ri[r].slot;
        }
        for (int s = 0; n_followers > 0 && s < slots; s++) {
            if (sl[s].req < 0 || sl[s].leader < 0) continue;
            const int ld = sl[s].leader;
            int at = 0;
            while (act[at] != ld) at++;  // the leader forwarded its prompt this step: it is in act
            be->copy(X(b.hsel, (size_t)S * H), X(b.hsel, (size_t)at * H), be->x_bytes * H);
            act[S++] = s;
            const size_t KW = (size_t)c->num_key_value_heads * c->head_dim, n = (size_t)(sl[s].last + 1) * KW;
            for (int l = 0; l < c->num_hidden_layers; l++) {
                be->copy(X(b.k[l], (size_t)s * b.max_len * KW), X(b.k[l], (size_t)ld * b.max_len * KW), be->x_bytes * n);
                be->copy(X(b.v[l], (size_t)s * b.max_len * KW), X(b.v[l], (size_t)ld * b.max_len * KW), be->x_bytes * n);
            }
        }
        if (gc->thoughts) {
            be->copy(b.hb, b.hsel, be->x_bytes * S * H);
            batch_think(&b, gc, reqs, sl, act, S, ri, toks, emit, user);
        } else {
            batch_logits(&b, b.hsel, S);
        }
#pragma omp parallel for schedule(static) if (S > 1)  // each row's draw is keyed by its request: any order
        for (int s = 0; s < S; s++) {
            const Slot* a = &sl[act[s]];
            toks[s] = sample_logits(c, b.h_logits + (size_t)s * Vp, gc->temperature, gc->top_p, gc->seed, a->last, 0,
                                    reqs[a->req].sample);
        }
        for (int s = 0; s < S; s++) {
            Slot* a = &sl[act[s]];
            GenRequest* q = &reqs[a->req];
            const int32_t t = toks[s];
            q->out[q->n_out++] = t;
            int stop = emit ? emit(user, a->req, GEN_TEXT, t) : 0;
            if (t == gc->stop_token || stop) q->finish = GEN_FINISH_STOP;
            if (q->finish == GEN_FINISH_STOP || q->n_out >= gc->max_tokens) {
                a->req = -1;
                running--;
            } else {
                a->next = t;
            }
        }
    }
    free(act);
    free(toks);
    free(ri);
    free(sl);
    batch_free(&b);
}
