/*
 * AdamW (decoupled weight decay, PyTorch's formulation; optionally with the Quiet-STaR reference's bf16
 * weights and moments, emulated as bf16 values in fp32) and the squared norm used for global
 * gradient clipping. The norm sums fixed-size chunks into a partials array and then adds those in
 * order, so its value does not depend on the number of threads: resumed and continuous runs match.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/cpu.h"
#include "kernels/philox.h"

// The bf16 value x rounds to, kept in fp32: to nearest even, or stochastically when seed != 0 with the
// CUDA kernel's draw (kernels/cuda/adamw.cuh bf16_value: Philox keyed by (seed, i)), so the cpu table in
// the reference's bf16 mode makes the same choices as the bf16 tables.
static inline float bf16_value(float x, uint64_t seed, size_t i) {
    uint32_t b;
    memcpy(&b, &x, 4);
    if ((b & 0x7F800000u) == 0x7F800000u) return x;  // inf, nan
    if (seed) {
        const Philox4 r = philox4x32((uint32_t)i, (uint32_t)(i >> 32), 0x5EEDu, 0, (uint32_t)seed, (uint32_t)(seed >> 32));
        b += r.v[0] & 0xFFFFu;
    } else {
        b += 0x7FFFu + ((b >> 16) & 1u);  // ties to even
    }
    b &= 0xFFFF0000u;
    memcpy(&x, &b, 4);
    return x;
}

// floatX is float here, so a master copy (if a caller keeps one) and the working copy hold the same value
// and stochastic rounding has nothing to round unless bf16_state asks for bf16 values (ops.h).
void cpu_adamw_update(float* param, float* master, const float* grad, void* m_, void* v_, size_t n, float lr,
                      float beta1, float beta2, float eps, float weight_decay, float grad_scale, int t, uint64_t seed,
                      size_t index0, int bf16_state) {
    float bc1 = 1.0f - powf(beta1, (float)t);
    float bc2 = 1.0f - powf(beta2, (float)t);
    float step_size = lr / bc1;
    float bc2_sqrt = sqrtf(bc2);
    float *m = m_, *v = v_;  // fp32 in either mode: floatX is float here
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float g = grad[i] * grad_scale;
        float* w = master ? master : param;
        float p = w[i] * (1.0f - lr * weight_decay);
        float mi = beta1 * m[i] + (1.0f - beta1) * g;
        float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
        if (bf16_state) {
            mi = bf16_value(mi, 0, i);
            vi = bf16_value(vi, 0, i);
        }
        m[i] = mi;
        v[i] = vi;
        float out = p - step_size * mi / (sqrtf(vi) / bc2_sqrt + eps);
        if (bf16_state) out = bf16_value(out, seed, index0 + i);
        w[i] = out;
        param[i] = out;
    }
}

void cpu_to_floatX(float* out, const float* x, size_t n) {
    if (n && out != x) memmove(out, x, n * sizeof(float));
}

void cpu_round_bf16(float* x, size_t n) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        uint32_t b;
        memcpy(&b, &x[i], 4);
        if ((b & 0x7F800000u) != 0x7F800000u) b += 0x7FFFu + ((b >> 16) & 1u);  // ties to even; inf/nan kept
        b &= 0xFFFF0000u;
        memcpy(&x[i], &b, 4);
    }
}

void cpu_sum_squares(float* out, const float* x, size_t n) {
    const size_t chunk = 1 << 16;
    size_t nchunks = (n + chunk - 1) / chunk;
    double* partial = malloc(sizeof(double) * (nchunks ? nchunks : 1));
#pragma omp parallel for schedule(static)
    for (size_t c = 0; c < nchunks; c++) {
        size_t end = (c + 1) * chunk < n ? (c + 1) * chunk : n;
        double acc = 0.0;
        for (size_t i = c * chunk; i < end; i++) acc += (double)x[i] * x[i];
        partial[c] = acc;
    }
    double total = 0.0;
    for (size_t c = 0; c < nchunks; c++) total += partial[c];
    free(partial);
    out[0] = (float)total;
}
