/*
 * Fused softmax cross-entropy. Forward gives one loss per row; backward recomputes the softmax from
 * the logits (never storing probabilities) and scales each row by its own upstream gradient, which
 * is how a mean over valid tokens, gradient accumulation and Quiet-STaR's per-token weights are all
 * expressed with one op. Rows whose target is negative (QSTAR_IGNORE_INDEX) contribute nothing.
 */
#include <math.h>

#include "kernels/cpu/cpu.h"

static float row_logsumexp(const floatX* x, int V) {
    float mx = -INFINITY;
    for (int v = 0; v < V; v++) mx = x[v] > mx ? x[v] : mx;
    double sum = 0.0;
    for (int v = 0; v < V; v++) sum += expf(x[v] - mx);
    return mx + (float)log(sum);
}

void cpu_crossentropy_forward(float* losses, const floatX* logits, const int32_t* targets, int N, int V) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        if (targets[n] < 0) {
            losses[n] = 0.0f;
            continue;
        }
        const floatX* x = logits + (size_t)n * V;
        losses[n] = row_logsumexp(x, V) - x[targets[n]];
    }
}

void cpu_crossentropy_backward(floatX* dlogits, const floatX* logits, const int32_t* targets, const float* dlosses,
                               int N, int V) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const floatX* x = logits + (size_t)n * V;
        floatX* dx = dlogits + (size_t)n * V;
        if (targets[n] < 0) {
            for (int v = 0; v < V; v++) dx[v] = 0.0f;
            continue;
        }
        float lse = row_logsumexp(x, V);
        float d = dlosses[n];
        int t = targets[n];
        for (int v = 0; v < V; v++) dx[v] = d * (expf(x[v] - lse) - (v == t ? 1.0f : 0.0f));
    }
}
