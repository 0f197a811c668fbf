/*
 * Token embedding: a row gather forward, a scatter-add backward. The backward is parallel over
 * hidden columns rather than tokens so that repeated tokens add up in a fixed order without atomics.
 */
#include <string.h>

#include "kernels/cpu/cpu.h"

void cpu_embedding_forward(floatX* out, const int32_t* tokens, const float* table, int N, int H) {
#pragma omp parallel for schedule(static) if ((size_t)N * H >= CPU_PARALLEL_MIN)
    for (int n = 0; n < N; n++) memcpy(out + (size_t)n * H, table + (size_t)tokens[n] * H, sizeof(float) * H);
}

void cpu_embedding_backward(float* dtable, const floatX* dout, const int32_t* tokens, int N, int V, int H) {
    const int chunk = 64;
#pragma omp parallel for schedule(static)
    for (int c0 = 0; c0 < H; c0 += chunk) {
        int c1 = c0 + chunk < H ? c0 + chunk : H;
        for (int n = 0; n < N; n++) {
            float* dst = dtable + (size_t)tokens[n] * H;
            const floatX* src = dout + (size_t)n * H;
            for (int c = c0; c < c1; c++) dst[c] += src[c];
        }
    }
}
