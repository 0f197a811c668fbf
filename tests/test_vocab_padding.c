/*
 * The padded vocabulary (model/config.h): a model of 70 tokens stores 128 rows of embed_tokens/lm_head
 * and 128 logits per row. On every backend built in (cpu, emu, emu-bf16) this checks what the padding
 * must never change: the parameter table keeps the real shape and leaves room for the padding rows;
 * the padding columns of the logits hold VOCAB_PAD_LOGIT; the loss equals a log-softmax over the 70
 * real logits computed here on the host (it would not if the padding took part: 58 extra e^0 terms);
 * the padding rows of the weights and of their gradients stay exactly zero through backward and AdamW
 * (tied and untied embeddings); and weights set from a host array with garbage in the padding still
 * have zero padding rows.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "kernels/ops.h"
#include "model/model.h"
#include "tests/check.h"
#include "tests/tiny_config.h"

// max |x| over the padding rows [V, Vp) of the vocabulary tensor at off (host fp32 copy of all params)
static double padding_max(const float* all, size_t off, int V, int Vp, int H) {
    double mx = 0;
    for (size_t i = off + (size_t)V * H; i < off + (size_t)Vp * H; i++) mx = fmax(mx, isnan(all[i]) ? INFINITY : fabs(all[i]));
    return mx;
}

static void check_backend(const Backend* be, int tied) {
    ModelConfig cfg = tiny_config(70, 48, 2, 0, 0.3f);
    cfg.tie_word_embeddings = tied;
    const int V = cfg.vocab_size, Vp = vocab_padded(&cfg), H = cfg.hidden_size, B = 2, T = 9, N = B * T;
    char tag[64];
    snprintf(tag, sizeof tag, "%s, %s embeddings", be->name, tied ? "tied" : "untied");
    CHECK(Vp == 128, "%s: vocab_padded(70) = %d, want 128", tag, Vp);

    Model m;
    model_create(&m, &cfg, be);
    const ParamTensor* emb = model_find_tensor(&m, "model.embed_tokens.weight");
    CHECK(emb && emb->shape[0] == V && emb->numel == (size_t)V * H, "%s: embed_tokens keeps its real shape", tag);
    CHECK(m.tensors[1].offset == m.off_embed + (size_t)Vp * H, "%s: the next tensor starts after %d padded rows", tag, Vp);

    // weights with garbage in the padding: model_set_weights must leave those rows zero
    model_init_random(&m, 11);
    float* w = xmalloc(sizeof(float) * m.n_params);
    model_get_weights(&m, w);
    CHECK(padding_max(w, m.off_embed, V, Vp, H) == 0, "%s: random init leaves the padding zero", tag);
    for (size_t i = m.off_embed + (size_t)V * H; i < m.off_embed + (size_t)Vp * H; i++) w[i] = NAN;
    for (size_t i = m.off_lm_head + (size_t)V * H; i < m.off_lm_head + (size_t)Vp * H; i++) w[i] = 7.0f;
    model_set_weights(&m, w);
    model_get_weights(&m, w);
    CHECK(padding_max(w, m.off_embed, V, Vp, H) == 0 && padding_max(w, m.off_lm_head, V, Vp, H) == 0,
          "%s: model_set_weights zeroes the padding rows", tag);

    int32_t tok[B * T], tgt[B * T];
    for (int i = 0; i < N; i++) tok[i] = (i * 37 + 5) % V, tgt[i] = i % 7 == 3 ? QSTAR_IGNORE_INDEX : (i * 53 + 1) % V;
    model_alloc_activations(&m, B, T);
    float* raw = xmalloc(sizeof(float) * (size_t)N * Vp);
    float* logits = xmalloc(sizeof(float) * (size_t)N * V);
    for (int step = 1; step <= 2; step++) {
        model_zero_grad(&m);
        const float loss = model_forward(&m, tok, tgt, NULL);
        x_download(be, raw, m.acts.logits, (size_t)N * Vp);
        model_download_logits(&m, logits, m.acts.logits, N);
        // the padding columns hold the mask value (as the storage type rounds it), the real ones match
        // the compacted download
        float pad_value;
        {
            floatX* one = be->alloc(be->x_bytes);
            x_upload(be, one, (const float[]){VOCAB_PAD_LOGIT}, 1);
            x_download(be, &pad_value, one, 1);
            be->free(one);
        }
        int pad_ok = 1, real_ok = 1;
        for (int n = 0; n < N; n++)
            for (int v = 0; v < Vp; v++) {
                const float x = raw[(size_t)n * Vp + v];
                if (v >= V) pad_ok &= x == pad_value;
                else real_ok &= x == logits[(size_t)n * V + v];
            }
        CHECK(pad_ok, "%s: padding logits hold %g", tag, pad_value);
        CHECK(real_ok, "%s: model_download_logits returns the real columns", tag);
        // the loss over the real vocabulary, here in double
        double sum = 0;
        int valid = 0;
        for (int n = 0; n < N; n++) {
            if (tgt[n] < 0) continue;
            const float* z = logits + (size_t)n * V;
            double mx = z[0], s = 0;
            for (int v = 1; v < V; v++) mx = fmax(mx, z[v]);
            for (int v = 0; v < V; v++) s += exp(z[v] - mx);
            sum += mx + log(s) - z[tgt[n]];
            valid++;
        }
        const double ref = sum / valid;
        printf("  %s, step %d: loss %.7f, over the real vocabulary on the host %.7f\n", tag, step, loss, ref);
        CHECK(fabs(loss - ref) <= 1e-5 * fabs(ref), "%s: loss %.7f differs from the real vocabulary's %.7f", tag, loss, ref);

        model_backward(&m, 1.0f);
        float* g = xmalloc(sizeof(float) * m.n_params);
        x_download(be, g, m.grads, m.n_params);
        CHECK(padding_max(g, m.off_embed, V, Vp, H) == 0 && padding_max(g, m.off_lm_head, V, Vp, H) == 0,
              "%s: the padding rows' gradients are zero", tag);
        CHECK(padding_max(g, m.off_lm_head, 0, V, H) > 0, "%s: the real lm_head rows have gradients", tag);
        free(g);
        AdamWConfig opt = {.beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f};
        model_adamw_step(&m, &opt, 1e-2f, 1.0f, step);
        model_get_weights(&m, w);
        CHECK(padding_max(w, m.off_embed, V, Vp, H) == 0 && padding_max(w, m.off_lm_head, V, Vp, H) == 0,
              "%s: the padding rows stay zero through AdamW (weight decay on)", tag);
    }
    free(raw), free(logits), free(w);
    model_destroy(&m);
}

int main(void) {
    const char* names[] = {"cpu", "emu", "emu-bf16"};
    int ran = 0;
    for (int i = 0; i < 3; i++) {
        const Backend* be = backend_get(names[i]);
        if (!be) {
            printf("%s backend not built in: skipped\n", names[i]);
            continue;
        }
        ran++;
        for (int tied = 0; tied <= 1; tied++) check_backend(be, tied);
    }
    CHECK(ran >= 1, "no backend to test");
    return test_summary();
}
