/*
 * The parameter table and everything that treats parameters as named tensors: building the table
 * from a config, allocating the four flat buffers, deterministic initialization, and loading and
 * saving Hugging Face safetensors by name. Tied embeddings share one tensor: lm_head then points at
 * embed_tokens and is neither stored twice nor written.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/partition.h"
#include "common/util.h"
#include "kernels/philox.h"
#include "model/model.h"

// A tensor of shape (d0, d1) (d1 = 0: a vector) stored in rows_stored >= d0 rows: the vocabulary tensors
// keep zero rows up to vocab_padded() after their d0 real ones (config.h).
static size_t add_tensor_rows(Model* m, int* cap, const char* name, int64_t d0, int64_t d1, int64_t rows_stored) {
    if (m->n_tensors == *cap) {
        *cap = *cap ? 2 * *cap : 64;
        ParamTensor* grown = xcalloc((size_t)*cap, sizeof(ParamTensor));
        if (m->tensors) memcpy(grown, m->tensors, sizeof(ParamTensor) * m->n_tensors);
        free(m->tensors);
        m->tensors = grown;
    }
    ParamTensor* t = &m->tensors[m->n_tensors++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = d1 > 0 ? 2 : 1;
    t->shape[0] = d0;
    t->shape[1] = d1 > 0 ? d1 : 0;
    t->numel = (size_t)d0 * (size_t)(d1 > 0 ? d1 : 1);
    t->offset = m->n_params;
    t->decay = t->ndim == 2;
    t->lr_mult = 1.0f;
    m->n_params += (size_t)rows_stored * (size_t)(d1 > 0 ? d1 : 1);
    return t->offset;
}

static size_t add_tensor(Model* m, int* cap, const char* name, int64_t d0, int64_t d1) {
    return add_tensor_rows(m, cap, name, d0, d1, d0);
}

void model_build_table(Model* m, const ModelConfig* cfg) {
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    const int H = cfg->hidden_size, IM = cfg->intermediate_size, HD = cfg->head_dim;
    const int NH = cfg->num_attention_heads, NKV = cfg->num_key_value_heads, L = cfg->num_hidden_layers;
    int cap = 0;
    char name[96];
    m->layers = xcalloc((size_t)L, sizeof(LayerOffsets));
    const int Vp = vocab_padded(cfg);
    m->off_embed = add_tensor_rows(m, &cap, "model.embed_tokens.weight", cfg->vocab_size, H, Vp);
    for (int l = 0; l < L; l++) {
        LayerOffsets* lo = &m->layers[l];
#define LAYER_TENSOR(field, suffix, d0, d1)                                \
    do {                                                                   \
        snprintf(name, sizeof name, "model.layers.%d.%s", l, suffix);      \
        size_t off = add_tensor(m, &cap, name, d0, d1);                    \
        field;                                                             \
        (void)off;                                                         \
    } while (0)
        LAYER_TENSOR(lo->ln1 = off, "input_layernorm.weight", H, 0);
        LAYER_TENSOR(lo->qkv = off, "self_attn.q_proj.weight", NH * HD, H);  // q, k, v adjacent: one (C3, H) matrix
        LAYER_TENSOR(, "self_attn.k_proj.weight", NKV * HD, H);
        LAYER_TENSOR(, "self_attn.v_proj.weight", NKV * HD, H);
        LAYER_TENSOR(lo->o = off, "self_attn.o_proj.weight", H, NH * HD);
        LAYER_TENSOR(lo->ln2 = off, "post_attention_layernorm.weight", H, 0);
        LAYER_TENSOR(lo->gate_up = off, "mlp.gate_proj.weight", IM, H);  // gate, up adjacent: one (2IM, H) matrix
        LAYER_TENSOR(, "mlp.up_proj.weight", IM, H);
        LAYER_TENSOR(lo->down = off, "mlp.down_proj.weight", H, IM);
#undef LAYER_TENSOR
    }
    m->off_norm = add_tensor(m, &cap, "model.norm.weight", H, 0);
    m->off_lm_head = cfg->tie_word_embeddings ? m->off_embed
                                              : add_tensor_rows(m, &cap, "lm_head.weight", cfg->vocab_size, H, Vp);
    if (cfg->start_thought_id >= 0) {
        // The reference decays these two too (they are matrix-shaped parameters there).
        m->off_start = add_tensor(m, &cap, "quietstar.start_embedding", H, 0);
        m->tensors[m->n_tensors - 1].decay = 1;
        m->off_end = add_tensor(m, &cap, "quietstar.end_embedding", H, 0);
        m->tensors[m->n_tensors - 1].decay = 1;
        m->off_mix_w0 = add_tensor(m, &cap, "quietstar.mixer.0.weight", H, 2 * H);
        m->off_mix_b0 = add_tensor(m, &cap, "quietstar.mixer.0.bias", H, 0);
        m->off_mix_w2 = add_tensor(m, &cap, "quietstar.mixer.2.weight", H, H);
        m->off_mix_b2 = add_tensor(m, &cap, "quietstar.mixer.2.bias", H, 0);
        m->off_mix_w4 = add_tensor(m, &cap, "quietstar.mixer.4.weight", 1, H);
    }
}

void model_create(Model* m, const ModelConfig* cfg, const Backend* be) { model_create_shard(m, cfg, be, 0, 1, 0); }

void model_create_shard(Model* m, const ModelConfig* cfg, const Backend* be, int rank, int world, int bf16_weights) {
    model_build_table(m, cfg);
    m->be = be;
    m->shard_rank = rank;
    m->shard_world = world;
    m->opt_offset = shard_offset(m->n_params, world, rank);
    m->opt_count = shard_count(m->n_params, world, rank);
    const size_t count = m->opt_count ? m->opt_count : 1;
    const size_t shard = sizeof(float) * count;
    m->bf16_state = bf16_weights;
    m->moment_bytes = bf16_weights ? be->x_bytes : sizeof(float);
    m->params = be->alloc(be->x_bytes * m->n_params);
    m->grads = be->alloc(be->x_bytes * m->n_params);
    // the reference's bf16 mode keeps no master: AdamW updates the bf16 params in place
    m->master = be->x_bytes == sizeof(float) || bf16_weights ? NULL : be->alloc(shard);
    // the reference's bf16 mode holds the moments in bf16 too (floatX: half the memory in bf16 precision)
    m->m = be->alloc(m->moment_bytes * count);
    m->v = be->alloc(m->moment_bytes * count);
    m->scalar = be->alloc(sizeof(float));
}

void model_destroy(Model* m) {
    const Backend* be = m->be;
    if (be) {
        be->free(m->params);
        be->free(m->grads);
        if (m->master) be->free(m->master);
        be->free(m->m);
        be->free(m->v);
        be->free(m->scalar);
        activations_free(be, &m->acts);
    }
    free(m->tensors);
    free(m->layers);
    memset(m, 0, sizeof *m);
}

size_t model_count_params(const Model* m) {
    size_t n = 0;
    for (int i = 0; i < m->n_tensors; i++) n += m->tensors[i].numel;
    return n;
}

const ParamTensor* model_find_tensor(const Model* m, const char* name) {
    for (int i = 0; i < m->n_tensors; i++)
        if (!strcmp(m->tensors[i].name, name)) return &m->tensors[i];
    return NULL;
}

void model_init_random(Model* m, uint64_t seed) {
    float* host = xcalloc(m->n_params, sizeof(float));  // the vocabulary's padding rows stay zero
    const float std = m->cfg.initializer_range;
    for (int ti = 0; ti < m->n_tensors; ti++) {
        const ParamTensor* t = &m->tensors[ti];
        float* w = host + t->offset;
        // Norm weights start at one, biases and the mixing head's last layer at zero (so the mixed
        // prediction starts equal to the base model's); start/end embeddings are set by Quiet-STaR
        // from a token's embedding.
        if (t->ndim == 1 || !strcmp(t->name, "quietstar.mixer.4.weight")) {
            float v = strstr(t->name, "norm") ? 1.0f : 0.0f;
            for (size_t i = 0; i < t->numel; i++) w[i] = v;
            continue;
        }
        // Counter = (element, tensor): each value depends only on its own coordinates.
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < t->numel; i++) {
            Philox4 r = philox4x32((uint32_t)i, (uint32_t)(i >> 32), (uint32_t)ti, 0x1417u, (uint32_t)seed,
                                   (uint32_t)(seed >> 32));
            w[i] = std * philox_normal(r.v[0], r.v[1]);
        }
    }
    model_set_weights(m, host);
    free(host);
}

// The zero rows that pad the vocabulary tensors (config.h) of the weights: on the backend and in the master.
static void zero_vocab_padding(Model* m) {
    const size_t H = m->cfg.hidden_size, V = m->cfg.vocab_size, Vp = vocab_padded(&m->cfg);
    if (Vp == V) return;
    const size_t offs[2] = {m->off_embed, m->off_lm_head};
    for (int i = 0; i < (m->off_lm_head == m->off_embed ? 1 : 2); i++) {
        const size_t lo = offs[i] + V * H, hi = offs[i] + Vp * H;
        m->be->zero(xat(m->be, m->params, lo), m->be->x_bytes * (hi - lo));
        const size_t r0 = m->opt_offset, r1 = m->opt_offset + m->opt_count;  // the master's range
        const size_t a = lo > r0 ? lo : r0, b = hi < r1 ? hi : r1;
        if (m->master && a < b) m->be->zero(m->master + (a - r0), sizeof(float) * (b - a));
    }
}

// Whatever a caller's host array holds at the padding, the padding rows stay zero.
void model_set_weights(Model* m, const float* host) {
    x_upload(m->be, m->params, host, m->n_params);
    if (m->master) m->be->upload(m->master, host + m->opt_offset, sizeof(float) * m->opt_count);
    zero_vocab_padding(m);
}

void model_get_weights(const Model* m, float* host) {
    x_download(m->be, host, m->params, m->n_params);
    if (m->master) m->be->download(host + m->opt_offset, m->master, sizeof(float) * m->opt_count);
}

void model_copy_matching(Model* dst, const Model* src, const float* src_weights) {
    float* d = xmalloc(sizeof(float) * dst->n_params);  // model_get_weights fills every entry
    model_get_weights(dst, d);
    for (int i = 0; i < dst->n_tensors; i++) {
        const ParamTensor* td = &dst->tensors[i];
        const ParamTensor* ts = model_find_tensor(src, td->name);
        if (!ts || ts->ndim != td->ndim || ts->shape[0] > td->shape[0] || ts->shape[1] != td->shape[1]) continue;
        memcpy(d + td->offset, src_weights + ts->offset, sizeof(float) * ts->numel);  // leading rows when it grew
    }
    model_set_weights(dst, d);
    free(d);
}

