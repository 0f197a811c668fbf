/*
 * Plain text generation for logs and quick checks: each new token recomputes the whole forward
 * over the prefix (no KV cache), which is simple and exact, and fast enough for the short samples
 * a training log shows. Sampling is Gumbel-max with Philox noise keyed by (seed, position), so a
 * sample is reproducible and identical on every backend; temperature 0 is greedy.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "kernels/philox.h"
#include "model/model.h"

int model_generate(Model* m, const int32_t* prompt, int n_prompt, int n_new, float temperature, uint64_t seed,
                   int stop_token, int32_t* out) {
    const int V = m->cfg.vocab_size;
    const int total = n_prompt + n_new;
    Activations saved = m->acts;  // generation must not disturb a training step's activations
    memset(&m->acts, 0, sizeof m->acts);
    int32_t* seq = xmalloc(sizeof(int32_t) * total);
    memcpy(seq, prompt, sizeof(int32_t) * n_prompt);
    float* row = xmalloc(sizeof(float) * V);
    int n = n_prompt, produced = 0;
    while (n < total) {
        activations_free(m->be, &m->acts);
        model_alloc_activations(m, 1, n);
        model_forward(m, seq, NULL, NULL);
        x_download(m->be, row, xat(m->be, m->acts.logits, (size_t)(n - 1) * vocab_padded(&m->cfg)), V);
        int best = 0;
        float best_score = -INFINITY;
        for (int v = 0; v < V; v++) {
            float score = row[v];
            if (temperature > 0) {
                Philox4 r = philox4x32((uint32_t)n, (uint32_t)v, 0x5A3D1Eu, 0, (uint32_t)seed, (uint32_t)(seed >> 32));
                score = row[v] / temperature - logf(-logf(philox_uniform(r.v[0])));
            }
            if (score > best_score) {
                best_score = score;
                best = v;
            }
        }
        seq[n++] = best;
        out[produced++] = best;
        if (best == stop_token) break;
    }
    activations_free(m->be, &m->acts);
    m->acts = saved;
    free(row);
    free(seq);
    return produced;
}
