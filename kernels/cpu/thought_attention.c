/*
 * Thought attention on the CPU (contract in ops.h). Per (row, kv head) — one thread each, so key
 * and value gradients never race — and per query head: the causal part is the same blocked sgemm
 * as plain attention over the step-0 keys; the thought part is k dot products per query with the
 * keys of its own slot at steps 1..k. Both parts share one running max and one normalizer, so the
 * result is the softmax over their union: O(L²·HD + L·k·HD) per step and head instead of the
 * reference's dense mask over (k+1)·L keys.
 *
 * The own-slot part reads one key/value row per (slot, step): few FLOPs per byte, so it is written
 * for the memory system. It runs for all query heads of a kv group at once (each key/value row
 * fetched once for the group, not once per head), and the dK/dV of a row are summed over the group's
 * heads locally before one update. Its loops run over blocks of SB slots, and inside a block over the
 * steps 1..k, then the block's slots: the block's query-side rows (Q, dO, dQ, out) stay in L1 while
 * the k step blocks pass by, and the key-side rows come in short runs of consecutive rows. Not slot
 * by slot over all steps: the rows of one slot at steps 1..k lie step_stride apart, a multiple of
 * 4 KiB, so they all fall into one cache set and evict one another. Each key-side row is prefetched
 * one step ahead (the same slot at step j+1, or the next block's slot at step 1).
 */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>

#include "common/util.h"
#include "kernels/cpu/cpu.h"
#include "kernels/cpu/dot.h"
#include "kernels/cpu/fastexp.h"
#include "kernels/cpu/simd.h"

#define QB 128  // queries per causal block (as attention.c)
#define SB 8    // slots per own-slot block

// cpu_dot (cpu.h) and axpy over one head (HD floats): the own-slot part's inner loops, written for the
// vectorizer (an `omp simd` reduction left the dot's lanes to a serial scalar loop, which dominated this
// part).
static inline void axpy(floatX* restrict y, float a, const floatX* restrict x, int n) {
#pragma omp simd
    for (int c = 0; c < n; c++) y[c] += a * x[c];
}
// every cache line of one head's row (HD floats)
static inline void prefetch_read(const floatX* p, int HD) {
    for (int c = 0; c < HD; c += 16) __builtin_prefetch(p + c, 0);
}
static inline void prefetch_write(const floatX* p, int HD) {
    for (int c = 0; c < HD; c += 16) __builtin_prefetch(p + c, 1);
}
// The own-slot row visited after (slot i, step j) in the block order: the same slot one step on, or
// at the last step the next block's slot at step 1; -1 at the end. Returned as a step offset (in
// units of step_stride, 1-based step) and a slot.
static inline int next_own_row(int i, int j, int k, int L, int* next_i) {
    if (j < k) {
        *next_i = i;
        return j + 1;
    }
    *next_i = i + SB;
    return i + SB < L ? 1 : -1;
}

// The own-slot loops run once per (slot, step) with a few vector operations each, so loop overhead
// counts: the usual head sizes get their own copy of them, with the head size a constant the compiler
// unrolls (HD_ in `call`).
#define OWN_SLOT_DISPATCH(HD, call)  \
    do {                             \
        if ((HD) == 32) {            \
            const int HD_ = 32;      \
            call;                    \
        } else if ((HD) == 64) {     \
            const int HD_ = 64;      \
            call;                    \
        } else if ((HD) == 128) {    \
            const int HD_ = 128;     \
            call;                    \
        } else {                     \
            const int HD_ = (HD);    \
            call;                    \
        }                            \
    } while (0)

// Own-slot scores of every head of a kv group for one (row, group): own[(hh·k + j−1)·L + i].
static inline __attribute__((always_inline)) void own_slot_scores(float* own, const floatX* Qk, const floatX* Kown,
                                                                   size_t step_stride, int k, int L, int C3, int group,
                                                                   const int HD, float scale) {
    for (int i0 = 0; i0 < L; i0 += SB) {
        const int i1 = i0 + SB < L ? i0 + SB : L;
        for (int j = 1; j <= k; j++) {
            for (int i = i0; i < i1; i++) {
                int ni, nj = next_own_row(i, j, k, L, &ni);
                if (nj > 0) prefetch_read(Kown + nj * step_stride + (size_t)ni * C3, HD);
                const floatX* kr = Kown + j * step_stride + (size_t)i * C3;
                for (int hh = 0; hh < group; hh++)
                    own[((size_t)hh * k + j - 1) * L + i] = cpu_dot(Qk + (size_t)i * C3 + hh * HD, kr, HD) * scale;
            }
        }
    }
}

// Own-slot values added to the group's output rows O (stride CO), j = 1..k in order.
static inline __attribute__((always_inline)) void own_slot_values(floatX* O, const float* own, const floatX* Vown,
                                                                   size_t step_stride, int k, int L, int C3, int CO,
                                                                   int group, const int HD) {
    for (int i0 = 0; i0 < L; i0 += SB) {
        const int i1 = i0 + SB < L ? i0 + SB : L;
        for (int j = 1; j <= k; j++) {
            for (int i = i0; i < i1; i++) {
                int ni, nj = next_own_row(i, j, k, L, &ni);
                if (nj > 0) prefetch_read(Vown + nj * step_stride + (size_t)ni * C3, HD);
                const floatX* vr = Vown + j * step_stride + (size_t)i * C3;
                for (int hh = 0; hh < group; hh++)
                    axpy(O + (size_t)i * CO + hh * HD, own[((size_t)hh * k + j - 1) * L + i], vr, HD);
            }
        }
    }
}

void cpu_thought_attention_forward(floatX* out, float* lse, const floatX* qkv, size_t step_stride, int k, int R,
                                   int L, int NH, int NKV, int HD) {
    const int C3 = (NH + 2 * NKV) * HD, CO = NH * HD, group = NH / NKV;
    const float scale = 1.0f / sqrtf((float)HD);
#pragma omp parallel
    {
        float* S = xmalloc(sizeof(float) * QB * L);
        // (group, k, L): own-slot scores, then probabilities; head hh, step j, slot i at (hh·k + j−1)·L + i
        float* own = xmalloc(sizeof(float) * group * (k > 0 ? k : 1) * L);
        float* mx = xmalloc(sizeof(float) * QB);   // per query of a block: the running max,
        float* sum = xmalloc(sizeof(float) * QB);  // the normalizer
#pragma omp for collapse(2) schedule(static)
        for (int r = 0; r < R; r++) {
            for (int g = 0; g < NKV; g++) {
                const size_t row0 = (size_t)r * L;
                const floatX* Qk = qkv + k * step_stride + row0 * C3 + g * group * HD;  // the group's first head
                const floatX* Kown = qkv + row0 * C3 + (NH + g) * HD;      // + j·step_stride: step j's keys
                const floatX* Vown = qkv + row0 * C3 + (NH + NKV + g) * HD;
                // own-slot scores of every head of the group
                OWN_SLOT_DISPATCH(HD, own_slot_scores(own, Qk, Kown, step_stride, k, L, C3, group, HD_, scale));
                for (int hh = 0; hh < group; hh++) {
                    const int h = g * group + hh;
                    const floatX* Q = Qk + hh * HD;
                    floatX* O = out + row0 * CO + h * HD;
                    float* LS = lse + ((size_t)r * NH + h) * L;
                    float* e = own + (size_t)hh * k * L;  // e[(j−1)·L + i]
                    for (int q0 = 0; q0 < L; q0 += QB) {
                        const int nq = q0 + QB < L ? QB : L - q0, nk = q0 + nq;
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, HD, scale, Q + (size_t)q0 * C3,
                                    C3, Kown, C3, 0.0f, S, nk);
                        // the block's own-slot maxima, vectorized over its queries
                        for (int q = 0; q < nq; q++) mx[q] = -INFINITY;
                        for (int j = 1; j <= k; j++) {
                            const float* ej = e + (size_t)(j - 1) * L + q0;
#pragma omp simd
                            for (int q = 0; q < nq; q++) mx[q] = ej[q] > mx[q] ? ej[q] : mx[q];
                        }
                        for (int q = 0; q < nq; q++) {
                            const int i = q0 + q;
                            float* s = S + (size_t)q * nk;
                            const float m = vmax_of(s, i + 1, mx[q]);
                            mx[q] = m;
                            float su = 0.0f;
#pragma omp simd reduction(+ : su)
                            for (int j = 0; j <= i; j++) {
                                s[j] = fast_expf(s[j] - m);
                                su += s[j];
                            }
                            sum[q] = su;
                        }
                        // own-slot probabilities, added to each normalizer in step order after its causal part
                        for (int j = 1; j <= k; j++) {
                            float* ej = e + (size_t)(j - 1) * L + q0;
#pragma omp simd
                            for (int q = 0; q < nq; q++) {
                                ej[q] = fast_expf(ej[q] - mx[q]);
                                sum[q] += ej[q];
                            }
                        }
                        for (int q = 0; q < nq; q++) {
                            const int i = q0 + q;
                            float* s = S + (size_t)q * nk;
                            const float inv = 1.0f / sum[q];
#pragma omp simd
                            for (int j = 0; j <= i; j++) s[j] *= inv;
                            for (int j = i + 1; j < nk; j++) s[j] = 0.0f;
                            LS[i] = mx[q] + logf(sum[q]);
                            sum[q] = inv;
                        }
                        for (int j = 1; j <= k; j++) {
                            float* ej = e + (size_t)(j - 1) * L + q0;
#pragma omp simd
                            for (int q = 0; q < nq; q++) ej[q] *= sum[q];
                        }
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, HD, nk, 1.0f, S, nk, Vown, C3, 0.0f,
                                    O + (size_t)q0 * CO, CO);
                    }
                }
                // own-slot values: each output row adds j = 1..k in order after its causal part
                OWN_SLOT_DISPATCH(HD, own_slot_values(out + row0 * CO + g * group * HD, own, Vown, step_stride, k, L, C3,
                                                      CO, group, HD_));
            }
        }
        free(S);
        free(own);
        free(mx);
        free(sum);
    }
}

// The own-slot part of the backward for one (row, kv group): per key row of steps 1..k, the group's
// probabilities recomputed from the log-sum-exps, dQ += dS·K, and the row's dK, dV summed over the
// group's heads before one update.
static inline __attribute__((always_inline)) void own_slot_backward(floatX* dqkv, const floatX* dout, const float* lse,
                                                                     const floatX* qkv, const float* D, float* acc,
                                                                     size_t step_stride, int k, int r, int g, int L,
                                                                     int NH, int NKV, const int HD, float scale) {
    const int C3 = (NH + 2 * NKV) * HD, CO = NH * HD, group = NH / NKV;
    const size_t row0 = (size_t)r * L, own0 = row0 * C3;  // + j·step_stride: step j's rows
    for (int i0 = 0; i0 < L; i0 += SB) {
        const int i1 = i0 + SB < L ? i0 + SB : L;
        for (int j = 1; j <= k; j++) {
            for (int i = i0; i < i1; i++) {
                int ni, nj = next_own_row(i, j, k, L, &ni);
                if (nj > 0) {
                    const size_t o = own0 + nj * step_stride + (size_t)ni * C3;
                    prefetch_read(qkv + o + (NH + g) * HD, HD);
                    prefetch_read(qkv + o + (NH + NKV + g) * HD, HD);
                    prefetch_write(dqkv + o + (NH + g) * HD, HD);
                    prefetch_write(dqkv + o + (NH + NKV + g) * HD, HD);
                }
                const size_t off = own0 + j * step_stride + (size_t)i * C3;
                const floatX* kj = qkv + off + (NH + g) * HD;
                const floatX* vj = qkv + off + (NH + NKV + g) * HD;
                float* dk = acc;
                float* dv = acc + HD;
                for (int c = 0; c < 2 * HD; c++) acc[c] = 0.0f;
                for (int hh = 0; hh < group; hh++) {
                    const int h = g * group + hh;
                    const floatX* qi = qkv + k * step_stride + (row0 + i) * C3 + h * HD;
                    const floatX* doi = dout + (row0 + i) * CO + h * HD;
                    const float pj = fast_expf(cpu_dot(qi, kj, HD) * scale - lse[((size_t)r * NH + h) * L + i]);
                    const float dsj = scale * pj * (cpu_dot(doi, vj, HD) - D[(size_t)hh * L + i]);
                    axpy(dqkv + k * step_stride + (row0 + i) * C3 + h * HD, dsj, kj, HD);
                    axpy(dk, dsj, qi, HD);
                    axpy(dv, pj, doi, HD);
                }
                axpy(dqkv + off + (NH + g) * HD, 1.0f, dk, HD);
                axpy(dqkv + off + (NH + NKV + g) * HD, 1.0f, dv, HD);
            }
        }
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
                // D_i of every head of the group, row by row: the forward's outputs were written long
                // before (this step's other layers and later steps came since), so they are fetched ahead
                const floatX* Og = out + row0 * CO + g * group * HD;
                const floatX* dOg = dout + row0 * CO + g * group * HD;
                for (int i = 0; i < L; i++) {
                    if (i + 4 < L) prefetch_read(Og + (size_t)(i + 4) * CO, group * HD);
                    for (int hh = 0; hh < group; hh++)
                        D[(size_t)hh * L + i] = cpu_dot(dOg + (size_t)i * CO + hh * HD, Og + (size_t)i * CO + hh * HD, HD);
                }
                for (int hh = 0; hh < group; hh++) {
                    const int h = g * group + hh;
                    const floatX* Q = qkv + k * step_stride + row0 * C3 + h * HD;
                    floatX* dQ = dqkv + k * step_stride + row0 * C3 + h * HD;
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
                            const float Di = D[(size_t)hh * L + i];
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
                // own-slot keys and values, all heads of the group per key row; each dQ row adds
                // j = 1..k in order after its causal part
                OWN_SLOT_DISPATCH(HD, own_slot_backward(dqkv, dout, lse, qkv, D, acc, step_stride, k, r, g, L, NH, NKV,
                                                        HD_, scale));
            }
        }
        free(P);
        free(dP);
        free(D);
        free(acc);
    }
}
