/*
 * Rotary position embedding in transformers' rotate-half convention: within each head, element j
 * pairs with element j + HD/2. Angles are computed exactly as transformers does in fp32
 * (inv_freq = 1 / theta^(2j/HD), angle = pos * inv_freq), so positions far from 0 round the same way.
 * Positions come per row, which is what lets thought tokens sit at position i + k.
 */
#include <math.h>

#include "common/util.h"
#include "kernels/cpu/cpu.h"

// sign = +1 rotates forward; -1 applies the inverse (transpose) rotation for the backward pass.
static void rope_apply(floatX* qkv, const int32_t* pos, int N, int NH, int NKV, int HD, float theta, float sign) {
    const int half = HD / 2;
    const int C3 = (NH + 2 * NKV) * HD;
    QSTAR_ASSERT(half <= 256);  // per-row angle tables below are on the stack
    float inv_freq[256];
    for (int j = 0; j < half; j++) inv_freq[j] = 1.0f / powf(theta, (float)(2 * j) / (float)HD);
#pragma omp parallel for schedule(static) if ((size_t)N * C3 >= CPU_PARALLEL_MIN)
    for (int n = 0; n < N; n++) {
        float c[256], s[256];
        for (int j = 0; j < half; j++) {
            float angle = (float)pos[n] * inv_freq[j];
            c[j] = cosf(angle);
            s[j] = sign * sinf(angle);
        }
        floatX* row = qkv + (size_t)n * C3;
        for (int h = 0; h < NH + NKV; h++) {
            floatX* x = row + h * HD;
            for (int j = 0; j < half; j++) {
                float x1 = x[j], x2 = x[j + half];
                x[j] = x1 * c[j] - x2 * s[j];
                x[j + half] = x2 * c[j] + x1 * s[j];
            }
        }
    }
}

void cpu_rope_forward(floatX* qkv, const int32_t* pos, int N, int NH, int NKV, int HD, float theta) {
    rope_apply(qkv, pos, N, NH, NKV, HD, theta, 1.0f);
}

void cpu_rope_backward(floatX* dqkv, const int32_t* pos, int N, int NH, int NKV, int HD, float theta) {
    rope_apply(dqkv, pos, N, NH, NKV, HD, theta, -1.0f);
}
