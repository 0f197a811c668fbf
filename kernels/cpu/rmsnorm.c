/*
 * RMSNorm as in transformers' MistralRMSNorm: out = inp * rsqrt(mean(inp²) + eps) * weight, the
 * mean taken in fp32 (here accumulated in double, which only narrows the error). rstd is saved so
 * the backward needs no second reduction over the input.
 */
#include <math.h>

#include "kernels/cpu/cpu.h"

void cpu_rmsnorm_forward(floatX* out, float* rstd, const floatX* inp, const float* weight, int N, int H, float eps) {
#pragma omp parallel for schedule(static) if ((size_t)N * H >= CPU_PARALLEL_MIN)
    for (int n = 0; n < N; n++) {
        const floatX* x = inp + (size_t)n * H;
        double ss = 0.0;
        for (int i = 0; i < H; i++) ss += (double)x[i] * x[i];
        float r = 1.0f / sqrtf((float)(ss / H) + eps);
        rstd[n] = r;
        floatX* y = out + (size_t)n * H;
        for (int i = 0; i < H; i++) y[i] = weight[i] * (x[i] * r);
    }
}

void cpu_add_rmsnorm_forward(floatX* sum, floatX* out, float* rstd, const floatX* a, const floatX* b,
                             const float* weight, int N, int H, float eps) {
#pragma omp parallel for schedule(static) if ((size_t)N * H >= CPU_PARALLEL_MIN)
    for (int n = 0; n < N; n++) {
        const size_t o = (size_t)n * H;
        double ss = 0.0;
        for (int i = 0; i < H; i++) {
            sum[o + i] = a[o + i] + b[o + i];
            ss += (double)sum[o + i] * sum[o + i];
        }
        float r = 1.0f / sqrtf((float)(ss / H) + eps);
        rstd[n] = r;
        for (int i = 0; i < H; i++) out[o + i] = weight[i] * (sum[o + i] * r);
    }
}

// With xhat = x*r and g = dout*w:  dx = r * (g - xhat * mean(g*xhat)),  dw = Σ_n dout*xhat.
void cpu_rmsnorm_backward(floatX* dinp, float* dweight, const floatX* dout, const floatX* inp, const float* weight,
                          const float* rstd, int N, int H) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const floatX* x = inp + (size_t)n * H;
        const floatX* dy = dout + (size_t)n * H;
        float r = rstd[n];
        double dot = 0.0;
        for (int i = 0; i < H; i++) dot += (double)dy[i] * weight[i] * x[i] * r;
        float mean = (float)(dot / H);
        floatX* dx = dinp + (size_t)n * H;
        for (int i = 0; i < H; i++) dx[i] += r * (dy[i] * weight[i] - x[i] * r * mean);
    }
    // Column-parallel so each dweight[i] sums its rows in order: deterministic, no atomics.
#pragma omp parallel for schedule(static)
    for (int i = 0; i < H; i++) {
        double acc = 0.0;
        for (int n = 0; n < N; n++) acc += (double)dout[(size_t)n * H + i] * inp[(size_t)n * H + i] * rstd[n];
        dweight[i] += (float)acc;
    }
}
