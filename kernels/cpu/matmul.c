/*
 * Linear layers through OpenBLAS sgemm, Hugging Face weight layout (OUT, IN): out = inp · Wᵀ.
 * Weight gradients accumulate (beta = 1) so that micro-batches and shared weights (tied
 * embeddings) add into one buffer.
 *
 * A forward over a few rows (a decoding step: one row per sequence of the batch) is done here
 * instead: each weight element is used only N times, so sgemm's packing of the weight matrix, a full
 * extra pass over it, costs as much as the products, and the whole step is a stream through the
 * weights. The kernel reads each weight row once per 4 input rows, computes 4 weight rows × 4 input
 * rows at a time (16 running sums of 16 lanes), and prefetches the next 4 weight rows as it goes.
 * Every output is the same sum in the same order whatever N (up to FEW_ROWS) and the neighbouring
 * rows are (16 lanes over the input columns in order, the lanes added in a fixed tree), so a row's
 * result does not depend on the batch it is computed in; above FEW_ROWS rows sgemm takes over, whose
 * sums are rounded differently (by a few ulps).
 */
#include <cblas.h>
#include <string.h>

#include "kernels/cpu/cpu.h"

#define FEW_ROWS 32  // at most this many rows: the streaming kernel below
#define OB 4         // weight rows per block
#define NB 4         // input rows per block
#define LANES 16

// out rows n0..n0+NB−1 (those below N), columns o0..o0+OB−1 (the caller makes sure they exist);
// prefetches the weight rows of the block after it. Rows past N are computed from row N−1 and dropped,
// so a ragged batch keeps the same loop.
static inline void few_rows_block(floatX* out, const floatX* inp, const float* W, int N, int IN, int OUT, int o0,
                                  int n0, int prefetch) {
    const float* w = W + (size_t)o0 * IN;
    const floatX* x[NB];
    for (int b = 0; b < NB; b++) x[b] = inp + (size_t)(n0 + b < N ? n0 + b : N - 1) * IN;
    float acc[OB][NB][LANES];
    memset(acc, 0, sizeof acc);
    int c = 0;
    for (; c + LANES <= IN; c += LANES) {
        if (prefetch)
            for (int a = 0; a < OB; a++) __builtin_prefetch(w + (size_t)(OB + a) * IN + c);
#pragma GCC unroll 4
        for (int a = 0; a < OB; a++)
#pragma GCC unroll 4
            for (int b = 0; b < NB; b++)
#pragma omp simd
                for (int l = 0; l < LANES; l++) acc[a][b][l] += w[(size_t)a * IN + c + l] * x[b][c + l];
    }
    for (; c < IN; c++)
        for (int a = 0; a < OB; a++)
            for (int b = 0; b < NB; b++) acc[a][b][0] += w[(size_t)a * IN + c] * x[b][c];
    for (int a = 0; a < OB; a++)
        for (int b = 0; b < NB && n0 + b < N; b++) {
            float* v = acc[a][b];
            for (int l = 0; l < 8; l++) v[l] += v[l + 8];
            for (int l = 0; l < 4; l++) v[l] += v[l + 4];
            for (int l = 0; l < 2; l++) v[l] += v[l + 2];
            out[(size_t)(n0 + b) * OUT + o0 + a] = v[0] + v[1];
        }
}

// One output the way few_rows_block computes it: for the columns past the last whole block, and for
// fewer than NB rows (where a block would compute mostly copies).
static float few_rows_one(const floatX* x, const float* w, int IN) {
    float v[LANES] = {0};
    int c = 0;
    for (; c + LANES <= IN; c += LANES)
        for (int l = 0; l < LANES; l++) v[l] += w[c + l] * x[c + l];
    for (; c < IN; c++) v[0] += w[c] * x[c];
    for (int l = 0; l < 8; l++) v[l] += v[l + 8];
    for (int l = 0; l < 4; l++) v[l] += v[l + 4];
    for (int l = 0; l < 2; l++) v[l] += v[l + 2];
    return v[0] + v[1];
}

static void few_rows_forward(floatX* out, const floatX* inp, const float* weight, int N, int IN, int OUT) {
    const int O4 = OUT / OB * OB;
#pragma omp parallel for schedule(static)
    for (int o0 = 0; o0 < OUT; o0 += OB) {
        if (o0 < O4 && N >= NB)
            for (int n0 = 0; n0 < N; n0 += NB)
                few_rows_block(out, inp, weight, N, IN, OUT, o0, n0, n0 == 0 && o0 + 2 * OB <= O4);
        else
            for (int o = o0; o < o0 + OB && o < OUT; o++)
                for (int n = 0; n < N; n++)
                    out[(size_t)n * OUT + o] = few_rows_one(inp + (size_t)n * IN, weight + (size_t)o * IN, IN);
    }
}

void cpu_matmul_forward(floatX* out, const floatX* inp, const float* weight, int N, int IN, int OUT) {
    if (N <= FEW_ROWS) {
        few_rows_forward(out, inp, weight, N, IN, OUT);
        return;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OUT, IN, 1.0f, inp, IN, weight, IN, 0.0f, out, OUT);
}

void cpu_matmul_backward(floatX* dinp, float* dweight, const floatX* dout, const floatX* inp, const float* weight,
                         int N, int IN, int OUT, int accumulate_dinp) {
    if (dinp)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, IN, OUT, 1.0f, dout, OUT, weight, IN,
                    accumulate_dinp ? 1.0f : 0.0f, dinp, IN);
    if (dweight)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OUT, IN, N, 1.0f, dout, OUT, inp, IN, 1.0f, dweight, IN);
}
