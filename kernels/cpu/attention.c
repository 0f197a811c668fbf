/*
 * Causal grouped-query attention on the CPU. Threads split the (batch, kv-head) pairs; for each
 * query head of the pair, the scores of a block of QB queries against the keys they may see are
 * one single-threaded sgemm (OpenBLAS runs serially inside an OpenMP region), the causal softmax
 * follows, and the weighted sum of values is a second sgemm; only a (QB, T) score block per thread
 * exists at a time. Splitting by kv head keeps each thread's key/value gradients its own. Forward keeps each query's log-sum-exp; backward recomputes the probabilities from it
 * (as flash attention does) instead of storing a (B, NH, T, T) tensor.
 */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "kernels/cpu/cpu.h"
#include "kernels/cpu/fastexp.h"
#include "kernels/cpu/simd.h"

#define QB 128  // query rows per block: big enough for efficient sgemm, small enough to skip most masked keys

void cpu_attention_forward(floatX* out, float* lse, const floatX* qkv, int B, int T, int NH, int NKV, int HD) {
    const int C3 = (NH + 2 * NKV) * HD, CO = NH * HD, group = NH / NKV;
    const float scale = 1.0f / sqrtf((float)HD);
#pragma omp parallel
    {
    float* S = xmalloc(sizeof(float) * QB * T);
#pragma omp for collapse(2) schedule(static)
    for (int b = 0; b < B; b++) {
        for (int g = 0; g < NKV; g++) {
          for (int h = g * group; h < (g + 1) * group; h++) {
            const floatX* Q = qkv + (size_t)b * T * C3 + h * HD;
            const floatX* K = qkv + (size_t)b * T * C3 + (NH + g) * HD;
            const floatX* Vv = qkv + (size_t)b * T * C3 + (NH + NKV + g) * HD;
            floatX* O = out + (size_t)b * T * CO + h * HD;
            float* L = lse + ((size_t)b * NH + h) * T;
            for (int q0 = 0; q0 < T; q0 += QB) {
                const int nq = q0 + QB < T ? QB : T - q0, nk = q0 + nq;  // keys 0..nk-1 are visible to the block
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, HD, scale, Q + (size_t)q0 * C3, C3, K, C3,
                            0.0f, S, nk);
                for (int r = 0; r < nq; r++) {
                    float* s = S + (size_t)r * nk;
                    const int last = q0 + r;  // causal: keys 0..last
                    const float mx = vmax_of(s, last + 1, -INFINITY);
                    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
                    for (int j = 0; j <= last; j++) {
                        s[j] = fast_expf(s[j] - mx);
                        sum += s[j];
                    }
                    float inv = 1.0f / sum;
#pragma omp simd
                    for (int j = 0; j <= last; j++) s[j] *= inv;
                    for (int j = last + 1; j < nk; j++) s[j] = 0.0f;
                    L[q0 + r] = mx + logf(sum);
                }
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, HD, nk, 1.0f, S, nk, Vv, C3, 0.0f,
                            O + (size_t)q0 * CO, CO);
            }
          }
        }
    }
    free(S);
    }
}

// With P = softmax(S), dP = dO·Vᵀ, D_i = Σ_d dO_i·O_i:  dS = P ∘ (dP − D),  dQ = scale·dS·K,
// dK += scale·dSᵀ·Q,  dV += Pᵀ·dO. Key/value gradients of a group accumulate over its query heads.
void cpu_attention_backward(floatX* dqkv, const floatX* dout, const floatX* out, const float* lse,
                            const floatX* qkv, int B, int T, int NH, int NKV, int HD) {
    const int C3 = (NH + 2 * NKV) * HD, CO = NH * HD, group = NH / NKV;
    const float scale = 1.0f / sqrtf((float)HD);
    memset(dqkv, 0, sizeof(floatX) * (size_t)B * T * C3);
#pragma omp parallel
    {
    float* P = xmalloc(sizeof(float) * QB * T);
    float* dP = xmalloc(sizeof(float) * QB * T);
    float* D = xmalloc(sizeof(float) * T);
#pragma omp for collapse(2) schedule(static)
    for (int b = 0; b < B; b++) {
        for (int g = 0; g < NKV; g++) {
          for (int h = g * group; h < (g + 1) * group; h++) {
            const size_t base = (size_t)b * T * C3;
            const floatX* Q = qkv + base + h * HD;
            const floatX* K = qkv + base + (NH + g) * HD;
            const floatX* Vv = qkv + base + (NH + NKV + g) * HD;
            floatX* dQ = dqkv + base + h * HD;
            floatX* dK = dqkv + base + (NH + g) * HD;
            floatX* dV = dqkv + base + (NH + NKV + g) * HD;
            const floatX* O = out + (size_t)b * T * CO + h * HD;
            const floatX* dO = dout + (size_t)b * T * CO + h * HD;
            const float* L = lse + ((size_t)b * NH + h) * T;
            for (int i = 0; i < T; i++) {
                double acc = 0.0;
                for (int d = 0; d < HD; d++) acc += (double)dO[(size_t)i * CO + d] * O[(size_t)i * CO + d];
                D[i] = (float)acc;
            }
            for (int q0 = 0; q0 < T; q0 += QB) {
                const int nq = q0 + QB < T ? QB : T - q0, nk = q0 + nq;
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, HD, scale, Q + (size_t)q0 * C3, C3, K, C3,
                            0.0f, P, nk);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, HD, 1.0f, dO + (size_t)q0 * CO, CO, Vv, C3,
                            0.0f, dP, nk);
                for (int r = 0; r < nq; r++) {
                    float* p = P + (size_t)r * nk;
                    float* dp = dP + (size_t)r * nk;
                    const int i = q0 + r;
                    const float Li = L[i], Di = D[i];
#pragma omp simd
                    for (int j = 0; j <= i; j++) {
                        p[j] = fast_expf(p[j] - Li);
                        dp[j] = p[j] * (dp[j] - Di);  // dp becomes dS
                    }
                    for (int j = i + 1; j < nk; j++) p[j] = dp[j] = 0.0f;
                }
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, HD, nk, scale, dP, nk, K, C3, 0.0f,
                            dQ + (size_t)q0 * C3, C3);
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, HD, nq, scale, dP, nk, Q + (size_t)q0 * C3, C3,
                            1.0f, dK, C3);
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, HD, nq, 1.0f, P, nk, dO + (size_t)q0 * CO, CO,
                            1.0f, dV, C3);
            }
          }
        }
    }
    free(P);
    free(dP);
    free(D);
    }
}
