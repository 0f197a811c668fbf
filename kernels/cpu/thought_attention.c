/*
 * Thought attention on the CPU (contract in ops.h). Per (row, kv head) — one thread each, so key
 * and value gradients never race — and per query head: the causal part is the same blocked sgemm
 * as plain attention over the step-0 keys; the thought part is k dot products per query with the
 * keys of its own slot at steps 1..k. Both parts share one running max and one normalizer, so the
 * result is the softmax over their union: O(L²·HD + L·k·HD) per step and head instead of the
 * reference's dense mask over (k+1)·L keys.
 *
 * The own-slot part reads one key/value row per (slot, step), C3 floats apart and spread over k step
 * blocks: few FLOPs per byte, so it is written for memory. It runs for all query heads of a kv group
 * at once (each key/value row fetched once for the group, not once per head), one step block at a
 * time (a stream through consecutive rows, prefetched a few rows ahead: the rows cross 4 KiB pages
 * every few slots, where hardware prefetchers stop), and the dK/dV of a row are summed over the
 * group's heads locally before one update.
 */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>

#include "common/util.h"
#include "kernels/cpu/cpu.h"
#include "kernels/cpu/fastexp.h"

#define QB 128
#define PREFETCH_ROWS 8  // own-slot rows fetched ahead

// dot and axpy over one head (HD floats): the own-slot part's inner loops, written for the vectorizer
static inline float dot(const floatX* restrict a, const floatX* restrict b, int n) {
    float d = 0.0f;
#pragma omp simd reduction(+ : d)
    for (int c = 0; c < n; c++) d += a[c] * b[c];
    return d;
}
static inline void axpy(floatX* restrict y, float a, const floatX* restrict x, int n) {
#pragma omp simd
    for (int c = 0; c < n; c++) y[c] += a * x[c];
}

void cpu_thought_attention_forward(floatX* out, float* lse, const floatX* qkv, size_t step_stride, int k, int R,
                                   int L, int NH, int NKV, int HD) {
    const int C3 = (NH + 2 * NKV) * HD, CO = NH * HD, group = NH / NKV, K1 = k + 1;
    const float scale = 1.0f / sqrtf((float)HD);
#pragma omp parallel
    {
        float* S = xmalloc(sizeof(float) * QB * L);
        float* own = xmalloc(sizeof(float) * group * L * K1);  // (group, L, k+1): scores, then probabilities
#pragma omp for collapse(2) schedule(static)
        for (int r = 0; r < R; r++) {
            for (int g = 0; g < NKV; g++) {
                const size_t row0 = (size_t)r * L;
                const floatX* Qk = qkv + k * step_stride + row0 * C3 + g * group * HD;  // the group's first head
                // own-slot scores of every head of the group, one step block at a time
                for (int j = 1; j <= k; j++) {
                    const floatX* Kj = qkv + j * step_stride + row0 * C3 + (NH + g) * HD;
                    for (int i = 0; i < L; i++) {
                        if (i + PREFETCH_ROWS < L) __builtin_prefetch(Kj + (size_t)(i + PREFETCH_ROWS) * C3);
                        for (int hh = 0; hh < group; hh++)
                            own[((size_t)hh * L + i) * K1 + j] =
                                dot(Qk + (size_t)i * C3 + hh * HD, Kj + (size_t)i * C3, HD) * scale;
                    }
                }
                for (int hh = 0; hh < group; hh++) {
                    const int h = g * group + hh;
                    const floatX* Q = Qk + hh * HD;
                    const floatX* K0 = qkv + row0 * C3 + (NH + g) * HD;
                    const floatX* V0 = qkv + row0 * C3 + (NH + NKV + g) * HD;
                    floatX* O = out + row0 * CO + h * HD;
                    float* LS = lse + ((size_t)r * NH + h) * L;
                    for (int q0 = 0; q0 < L; q0 += QB) {
                        const int nq = q0 + QB < L ? QB : L - q0, nk = q0 + nq;
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, HD, scale, Q + (size_t)q0 * C3,
                                    C3, K0, C3, 0.0f, S, nk);
                        for (int q = 0; q < nq; q++) {
                            const int i = q0 + q;
                            float* s = S + (size_t)q * nk;
                            float* e = own + ((size_t)hh * L + i) * K1;  // e[j], j = 1..k
                            float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
                            for (int j = 0; j <= i; j++) mx = s[j] > mx ? s[j] : mx;
                            for (int j = 1; j <= k; j++) mx = e[j] > mx ? e[j] : mx;
                            float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
                            for (int j = 0; j <= i; j++) {
                                s[j] = fast_expf(s[j] - mx);
                                sum += s[j];
                            }
                            for (int j = 1; j <= k; j++) {
                                e[j] = fast_expf(e[j] - mx);
                                sum += e[j];
                            }
                            const float inv = 1.0f / sum;
                            for (int j = 0; j <= i; j++) s[j] *= inv;
                            for (int j = i + 1; j < nk; j++) s[j] = 0.0f;
                            for (int j = 1; j <= k; j++) e[j] *= inv;
                            LS[i] = mx + logf(sum);
                        }
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, HD, nk, 1.0f, S, nk, V0, C3, 0.0f,
                                    O + (size_t)q0 * CO, CO);
                    }
                }
                // own-slot values: each output row adds j = 1..k in order after its causal part
                for (int j = 1; j <= k; j++) {
                    const floatX* Vj = qkv + j * step_stride + row0 * C3 + (NH + NKV + g) * HD;
                    for (int i = 0; i < L; i++) {
                        if (i + PREFETCH_ROWS < L) __builtin_prefetch(Vj + (size_t)(i + PREFETCH_ROWS) * C3);
                        for (int hh = 0; hh < group; hh++)
                            axpy(out + (row0 + i) * CO + (g * group + hh) * HD, own[((size_t)hh * L + i) * K1 + j],
                                 Vj + (size_t)i * C3, HD);
                    }
                }
            }
        }
        free(S);
        free(own);
    }
}

// Same algebra as plain attention: dS = P ∘ (dP − D) with D_i = dO_i·O_i, applied to both parts.
void cpu_thought_attention_backward(floatX* dqkv, const floatX* dout, const floatX* out, const float* lse,
                                    const floatX* qkv, size_t step_stride, int k, int R, int L, int NH, int NKV,
                                    int HD) {
    const int C3 = (NH + 2 * NKV) * HD, CO = NH * HD, group = NH / NKV;
    const float scale = 1.0f / sqrtf((float)HD);
#pragma omp parallel
    {
        float* P = xmalloc(sizeof(float) * QB * L);
        float* dP = xmalloc(sizeof(float) * QB * L);
        float* D = xmalloc(sizeof(float) * group * L);    // D_i of every head of the group
        float* acc = xmalloc(sizeof(float) * 2 * HD);     // a row's dK and dV summed over the group's heads
#pragma omp for collapse(2) schedule(static)
        for (int r = 0; r < R; r++) {
            for (int g = 0; g < NKV; g++) {
                const size_t row0 = (size_t)r * L;
                const floatX* K0 = qkv + row0 * C3 + (NH + g) * HD;
                const floatX* V0 = qkv + row0 * C3 + (NH + NKV + g) * HD;
                floatX* dK0 = dqkv + row0 * C3 + (NH + g) * HD;
                floatX* dV0 = dqkv + row0 * C3 + (NH + NKV + g) * HD;
                for (int hh = 0; hh < group; hh++) {
                    const int h = g * group + hh;
                    const floatX* Q = qkv + k * step_stride + row0 * C3 + h * HD;
                    floatX* dQ = dqkv + k * step_stride + row0 * C3 + h * HD;
                    const floatX* O = out + row0 * CO + h * HD;
                    const floatX* dO = dout + row0 * CO + h * HD;
                    const float* LS = lse + ((size_t)r * NH + h) * L;
                    for (int q0 = 0; q0 < L; q0 += QB) {
                        const int nq = q0 + QB < L ? QB : L - q0, nk = q0 + nq;
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, HD, scale, Q + (size_t)q0 * C3,
                                    C3, K0, C3, 0.0f, P, nk);
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, HD, 1.0f, dO + (size_t)q0 * CO,
                                    CO, V0, C3, 0.0f, dP, nk);
                        for (int q = 0; q < nq; q++) {
                            const int i = q0 + q;
                            const float Di = D[(size_t)hh * L + i] = dot(dO + (size_t)i * CO, O + (size_t)i * CO, HD);
                            const float Li = LS[i];
                            float* p = P + (size_t)q * nk;
                            float* dp = dP + (size_t)q * nk;
#pragma omp simd
                            for (int j = 0; j <= i; j++) {
                                p[j] = fast_expf(p[j] - Li);
                                dp[j] = p[j] * (dp[j] - Di);
                            }
                            for (int j = i + 1; j < nk; j++) p[j] = dp[j] = 0.0f;
                        }
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, HD, nk, scale, dP, nk, K0, C3, 1.0f,
                                    dQ + (size_t)q0 * C3, C3);
                        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, HD, nq, scale, dP, nk,
                                    Q + (size_t)q0 * C3, C3, 1.0f, dK0, C3);
                        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, HD, nq, 1.0f, P, nk,
                                    dO + (size_t)q0 * CO, CO, 1.0f, dV0, C3);
                    }
                }
                // own-slot keys of steps 1..k, all heads of the group per key row; each dQ row adds
                // j = 1..k in order after its causal part
                for (int j = 1; j <= k; j++) {
                    const size_t off = j * step_stride + row0 * C3;
                    const floatX* Kj = qkv + off + (NH + g) * HD;
                    const floatX* Vj = qkv + off + (NH + NKV + g) * HD;
                    for (int i = 0; i < L; i++) {
                        if (i + PREFETCH_ROWS < L) {
                            __builtin_prefetch(Kj + (size_t)(i + PREFETCH_ROWS) * C3);
                            __builtin_prefetch(Vj + (size_t)(i + PREFETCH_ROWS) * C3);
                        }
                        const floatX* kj = Kj + (size_t)i * C3;
                        const floatX* vj = Vj + (size_t)i * C3;
                        float* dk = acc;
                        float* dv = acc + HD;
                        for (int c = 0; c < 2 * HD; c++) acc[c] = 0.0f;
                        for (int hh = 0; hh < group; hh++) {
                            const int h = g * group + hh;
                            const floatX* qi = qkv + k * step_stride + (row0 + i) * C3 + h * HD;
                            const floatX* doi = dout + (row0 + i) * CO + h * HD;
                            const float pj = fast_expf(dot(qi, kj, HD) * scale - lse[((size_t)r * NH + h) * L + i]);
                            const float dsj = scale * pj * (dot(doi, vj, HD) - D[(size_t)hh * L + i]);
                            axpy(dqkv + k * step_stride + (row0 + i) * C3 + h * HD, dsj, kj, HD);
                            axpy(dk, dsj, qi, HD);
                            axpy(dv, pj, doi, HD);
                        }
                        axpy(dqkv + off + (size_t)i * C3 + (NH + g) * HD, 1.0f, dk, HD);
                        axpy(dqkv + off + (size_t)i * C3 + (NH + NKV + g) * HD, 1.0f, dv, HD);
                    }
                }
            }
        }
        free(P);
        free(dP);
        free(D);
        free(acc);
    }
}
