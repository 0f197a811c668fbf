/*
 * Fused softmax cross-entropy. Forward gives one loss per row; backward recomputes the softmax from
 * the logits (never storing probabilities) and scales each row by its own upstream gradient, which
 * is how a mean over valid tokens, gradient accumulation and Quiet-STaR's per-token weights are all
 * expressed with one op. Rows whose target is negative (QSTAR_IGNORE_INDEX) contribute nothing.
 * The fused op is the two in one call (a loss whose upstream gradient is known before the forward);
 * here it computes exactly what forward then backward compute, so it is their oracle too.
 */
#include <math.h>

#include "kernels/cpu/cpu.h"
#include "kernels/cpu/fastexp.h"
#include "kernels/cpu/simd.h"

static float row_logsumexp(const floatX* x, int V) {
    const float mx = vmax_of(x, V, -INFINITY);
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int v = 0; v < V; v++) sum += fast_expf(x[v] - mx);
    return mx + logf(sum);
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
#pragma omp simd
        for (int v = 0; v < V; v++) dx[v] = d * fast_expf(x[v] - lse);
        dx[t] -= d;
    }
}

void cpu_crossentropy_fused(float* losses, floatX* dlogits, const floatX* logits, const int32_t* targets,
                            const float* dlosses, int N, int V) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const floatX* x = logits + (size_t)n * V;
        floatX* dx = dlogits + (size_t)n * V;
        const int t = targets[n];
        if (t < 0) {
            losses[n] = 0.0f;
            for (int v = 0; v < V; v++) dx[v] = 0.0f;
            continue;
        }
        const float lse = row_logsumexp(x, V);
        losses[n] = lse - x[t];  // before dx is written: dlogits may alias logits
        const float d = dlosses[n];
#pragma omp simd
        for (int v = 0; v < V; v++) dx[v] = d * fast_expf(x[v] - lse);
        dx[t] -= d;
    }
}
