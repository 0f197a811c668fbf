/*
 * Thought attention on the CPU (contract in ops.h). Per (row, kv head) — one thread each, so key
 * and value gradients never race — and per query head: the causal part is the same blocked sgemm
 * as plain attention over the step-0 keys; the thought part is k dot products per query with the
 * keys of its own slot at steps 1..k. Both parts share one running max and one normalizer, so the
 * result is the softmax over their union: O(L²·HD + L·k·HD) per step and head instead of the
 * reference's dense mask over (k+1)·L keys.
 */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>

#include "host/util.h"
#include "kernels/cpu/cpu.h"
#include "kernels/cpu/fastexp.h"

#define QB 128

void cpu_thought_attention_forward(floatX* out, float* lse, const floatX* qkv, size_t step_stride, int k, int R,
                                   int L, int NH, int NKV, int HD) {
    const int C3 = (NH + 2 * NKV) * HD, CO = NH * HD, group = NH / NKV;
    const float scale = 1.0f / sqrtf((float)HD);
#pragma omp parallel
    {
        float* S = xmalloc(sizeof(float) * QB * L);
        float* own = xmalloc(sizeof(float) * QB * (k + 1));
#pragma omp for collapse(2) schedule(static)
        for (int r = 0; r < R; r++) {
            for (int g = 0; g < NKV; g++) {
                for (int h = g * group; h < (g + 1) * group; h++) {
                    const size_t row0 = (size_t)r * L;
                    const floatX* Q = qkv + k * step_stride + row0 * C3 + h * HD;
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
                            const size_t n = row0 + i;
                            float* s = S + (size_t)q * nk;
                            float* e = own + (size_t)q * (k + 1);  // e[j], j = 1..k
                            const floatX* qi = Q + (size_t)i * C3;
                            float mx = -INFINITY;
                            for (int j = 0; j <= i; j++) mx = s[j] > mx ? s[j] : mx;
                            for (int j = 1; j <= k; j++) {
                                const floatX* kj = qkv + j * step_stride + n * C3 + (NH + g) * HD;
                                float d = 0.0f;
                                for (int c = 0; c < HD; c++) d += qi[c] * kj[c];
                                e[j] = d * scale;
                                mx = e[j] > mx ? e[j] : mx;
                            }
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
                        for (int q = 0; q < nq; q++) {
                            const size_t n = row0 + q0 + q;
                            floatX* o = O + (size_t)(q0 + q) * CO;
                            for (int j = 1; j <= k; j++) {
                                const float p = own[(size_t)q * (k + 1) + j];
                                const floatX* vj = qkv + j * step_stride + n * C3 + (NH + NKV + g) * HD;
                                for (int c = 0; c < HD; c++) o[c] += p * vj[c];
                            }
                        }
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
#pragma omp for collapse(2) schedule(static)
        for (int r = 0; r < R; r++) {
            for (int g = 0; g < NKV; g++) {
                for (int h = g * group; h < (g + 1) * group; h++) {
                    const size_t row0 = (size_t)r * L;
                    const floatX* Q = qkv + k * step_stride + row0 * C3 + h * HD;
                    const floatX* K0 = qkv + row0 * C3 + (NH + g) * HD;
                    const floatX* V0 = qkv + row0 * C3 + (NH + NKV + g) * HD;
                    floatX* dQ = dqkv + k * step_stride + row0 * C3 + h * HD;
                    floatX* dK0 = dqkv + row0 * C3 + (NH + g) * HD;
                    floatX* dV0 = dqkv + row0 * C3 + (NH + NKV + g) * HD;
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
                            const size_t n = row0 + i;
                            const floatX* qi = Q + (size_t)i * C3;
                            const floatX* doi = dO + (size_t)i * CO;
                            floatX* dqi = dQ + (size_t)i * C3;
                            float Di = 0.0f;
                            for (int c = 0; c < HD; c++) Di += doi[c] * O[(size_t)i * CO + c];
                            const float Li = LS[i];
                            float* p = P + (size_t)q * nk;
                            float* dp = dP + (size_t)q * nk;
#pragma omp simd
                            for (int j = 0; j <= i; j++) {
                                p[j] = fast_expf(p[j] - Li);
                                dp[j] = p[j] * (dp[j] - Di);
                            }
                            for (int j = i + 1; j < nk; j++) p[j] = dp[j] = 0.0f;
                            // own-slot keys of steps 1..k: everything per element
                            for (int j = 1; j <= k; j++) {
                                const size_t off = j * step_stride + n * C3;
                                const floatX* kj = qkv + off + (NH + g) * HD;
                                const floatX* vj = qkv + off + (NH + NKV + g) * HD;
                                floatX* dkj = dqkv + off + (NH + g) * HD;
                                floatX* dvj = dqkv + off + (NH + NKV + g) * HD;
                                float sc = 0.0f, dpj = 0.0f;
                                for (int c = 0; c < HD; c++) {
                                    sc += qi[c] * kj[c];
                                    dpj += doi[c] * vj[c];
                                }
                                const float pj = fast_expf(sc * scale - Li);
                                const float dsj = pj * (dpj - Di);
                                for (int c = 0; c < HD; c++) {
                                    dqi[c] += scale * dsj * kj[c];
                                    dkj[c] += scale * dsj * qi[c];
                                    dvj[c] += pj * doi[c];
                                }
                            }
                        }
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, HD, nk, scale, dP, nk, K0, C3, 1.0f,
                                    dQ + (size_t)q0 * C3, C3);
                        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, HD, nq, scale, dP, nk,
                                    Q + (size_t)q0 * C3, C3, 1.0f, dK0, C3);
                        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, HD, nq, 1.0f, P, nk,
                                    dO + (size_t)q0 * CO, CO, 1.0f, dV0, C3);
                    }
                }
            }
        }
        free(P);
        free(dP);
    }
}
