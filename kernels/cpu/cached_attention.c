/*
 * Generation-time attention on the CPU: one new query row against a key/value cache made of two
 * contiguous pieces (the text so far and, while thinking, the thought so far), and the strided copy
 * that moves keys and values from a qkv row into the cache.
 */
#include <math.h>
#include <string.h>

#include "kernels/cpu/cpu.h"
#include "kernels/cpu/dot.h"

void cpu_copy_strided(floatX* dst, size_t dst_stride, const floatX* src, size_t src_stride, int rows, int cols) {
    for (int r = 0; r < rows; r++) memcpy(dst + r * dst_stride, src + r * src_stride, sizeof(floatX) * cols);
}

// Heads in parallel when called alone (a decoding step's row); inside an enclosing parallel region
// (cpu_cached_attention_batched) the region is nested and runs on its thread.
void cpu_cached_attention_forward(floatX* out, const floatX* q, const floatX* k1, const floatX* v1, int n1,
                                  const floatX* k2, const floatX* v2, int n2, int NH, int NKV, int HD) {
    const int KW = NKV * HD, group = NH / NKV, n = n1 + n2;
    const float scale = 1.0f / sqrtf((float)HD);
#pragma omp parallel for schedule(static) if (NH > 1 && (size_t)n * HD * NH >= 16384)
    for (int h = 0; h < NH; h++) {
        float scores[n > 0 ? n : 1];
        const int g = h / group;
        const floatX* qh = q + h * HD;
        float mx = -INFINITY;
        for (int j = 0; j < n; j++) {
            const floatX* kj = j < n1 ? k1 + (size_t)j * KW + g * HD : k2 + (size_t)(j - n1) * KW + g * HD;
            scores[j] = cpu_dot(qh, kj, HD) * scale;
            mx = scores[j] > mx ? scores[j] : mx;
        }
        double sum = 0.0;
        for (int j = 0; j < n; j++) {
            scores[j] = expf(scores[j] - mx);
            sum += scores[j];
        }
        floatX* o = out + h * HD;
        for (int c = 0; c < HD; c++) o[c] = 0.0f;
        for (int j = 0; j < n; j++) {
            const floatX* vj = j < n1 ? v1 + (size_t)j * KW + g * HD : v2 + (size_t)(j - n1) * KW + g * HD;
            const float p = (float)(scores[j] / sum);
#pragma omp simd
            for (int c = 0; c < HD; c++) o[c] += p * vj[c];
        }
    }
}

void cpu_cached_attention_batched(floatX* out, const floatX* q, size_t q_stride, const floatX* k1, const floatX* v1,
                                  size_t stride1, const floatX* k2, const floatX* v2, size_t stride2,
                                  const int32_t* slot, const int32_t* n1, const int32_t* n2, int N, int max_n, int NH,
                                  int NKV, int HD) {
    (void)max_n;
#pragma omp parallel for schedule(dynamic)
    for (int r = 0; r < N; r++)
        cpu_cached_attention_forward(out + (size_t)r * NH * HD, q + (size_t)r * q_stride, k1 + (size_t)slot[r] * stride1,
                                     v1 + (size_t)slot[r] * stride1, n1[r], k2 + (size_t)slot[r] * stride2,
                                     v2 + (size_t)slot[r] * stride2, n2[r], NH, NKV, HD);
}
