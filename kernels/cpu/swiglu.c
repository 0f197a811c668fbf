/*
 * SwiGLU gate of the Mistral MLP: out = silu(gate) * up, where the fused gate/up projection writes
 * each row as [gate (IM) | up (IM)] so that one GEMM serves both.
 */
#include <math.h>

#include "kernels/cpu/cpu.h"
#include "kernels/cpu/fastexp.h"

void cpu_swiglu_forward(floatX* out, const floatX* gate_up, int N, int IM) {
#pragma omp parallel for schedule(static) if ((size_t)N * IM >= CPU_PARALLEL_MIN)
    for (int n = 0; n < N; n++) {
        const floatX* g = gate_up + (size_t)n * 2 * IM;
        const floatX* u = g + IM;
        floatX* y = out + (size_t)n * IM;
#pragma omp simd
        for (int i = 0; i < IM; i++) y[i] = g[i] / (1.0f + fast_expf(-g[i])) * u[i];
    }
}

// d silu(g)/dg = sig(g) * (1 + g * (1 - sig(g)))
void cpu_swiglu_backward(floatX* dgate_up, const floatX* dout, const floatX* gate_up, int N, int IM) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const floatX* g = gate_up + (size_t)n * 2 * IM;
        const floatX* u = g + IM;
        const floatX* dy = dout + (size_t)n * IM;
        floatX* dg = dgate_up + (size_t)n * 2 * IM;
        floatX* du = dg + IM;
#pragma omp simd
        for (int i = 0; i < IM; i++) {
            float sig = 1.0f / (1.0f + fast_expf(-g[i]));
            dg[i] = dy[i] * u[i] * sig * (1.0f + g[i] * (1.0f - sig));
            du[i] = dy[i] * g[i] * sig;
        }
    }
}
