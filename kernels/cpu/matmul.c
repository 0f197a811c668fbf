/*
 * Linear layers through OpenBLAS sgemm, Hugging Face weight layout (OUT, IN): out = inp · Wᵀ.
 * Weight gradients accumulate (beta = 1) so that micro-batches and shared weights (tied
 * embeddings) add into one buffer.
 *
 * A forward over a few rows (a decoding step: one row per sequence of the batch) is done here
 * instead: each weight element is used only N times, so sgemm's packing of the weight matrix, a full
 * extra pass over it, costs as much as the products, and the whole step is a stream through the
 * weights. The kernel takes 4 weight rows at a time (one contiguous block) and runs the input rows
 * past them in passes: each column step holds the 4 weight vectors in registers and loads each input
 * vector once for 4 products. Vectors are the target's width (kernels/cpu/simd.h) and a pass takes as
 * many rows as the registers allow: 6 with 32 vector registers (AVX-512, NEON: 24 running sums, 10
 * loads for 24 FMAs, so the FMA units and not the loads set the pace), 2 with 16 (AVX2: 8 sums, 6
 * loads for 8 FMAs, within what the two load ports give). Each pass prefetches its share of the next
 * block into L2, so the stream from memory is spread over the block's whole computation; into L2, not L1, because
 * the block (9 KB at SmolLM2's 576 inputs, 24 KB at 1536), the next one and 6 input rows overflow a
 * 32 KB L1, and prefetched lines there evict the weights and inputs the passes are reading (on the
 * 2-core EPYC: 45 → 35 ms for a 16-row SmolLM2 step's matmuls). At the end the lanes of 4 sums
 * are added in one tree of shuffles (vsum4: lane l with l+VLANES/2, then l+VLANES/4, … l+1).
 * Every output is that same sum in the same order whatever N (up to FEW_ROWS) and the neighbouring
 * rows are, so a row's result does not depend on the batch it is computed in; above FEW_ROWS rows
 * sgemm takes over, whose sums are rounded differently (by a few ulps). The order, and so the last
 * bits, differ between vector widths.
 */
#include <cblas.h>
#include <string.h>

#include "kernels/cpu/cpu.h"
#include "kernels/cpu/simd.h"

#define FEW_ROWS 32  // at most this many rows: the streaming kernel below
#define OB 4         // weight rows per block (vsum4 adds the lanes of 4 sums at once)
// Input rows per pass: as many as leave registers for the OB weight vectors and one input vector
// (32 registers, AVX-512 and NEON: 6, 24 sums in 29; 16 registers, AVX2: 2, 8 sums in 13).
#define NB_MAX (VREGS >= 32 ? 6 : 2)

// out rows n0..n0+nb−1, columns o0..o0+OB−1; prefetches pf_lines cache lines from pf meanwhile, evenly
// over its column steps.
// Always inlined with a constant nb, so that the loops over rows unroll into registers.
static inline __attribute__((always_inline)) void few_rows_pass(floatX* out, const floatX* inp, const float* W, int IN,
                                                                int OUT, int o0, int n0, int nb, const char* pf,
                                                                int pf_lines) {
    const float* w = W + (size_t)o0 * IN;
    const floatX* x[NB_MAX];
#pragma GCC unroll 8
    for (int b = 0; b < nb; b++) x[b] = inp + (size_t)(n0 + b) * IN;
    vfloat acc[NB_MAX][OB];
#pragma GCC unroll 8
    for (int b = 0; b < nb; b++)
#pragma GCC unroll 8
        for (int a = 0; a < OB; a++) acc[b][a] = (vfloat){0};
    const int steps = IN / VLANES, per_step = steps > 0 ? (pf_lines + steps - 1) / steps : 0;
    int c = 0;
    for (int i = 0; c + VLANES <= IN; c += VLANES, i++) {
        for (int j = i * per_step; j < (i + 1) * per_step && j < pf_lines; j++)
            __builtin_prefetch(pf + (size_t)j * 64, 0, 2);  // to L2 (see few_rows_forward)
        vfloat wv[OB];
#pragma GCC unroll 8
        for (int a = 0; a < OB; a++) {
            wv[a] = vload(w + (size_t)a * IN + c);
            VPIN(wv[a]);
        }
#pragma GCC unroll 8
        for (int b = 0; b < nb; b++) {
            vfloat xv = vload(x[b] + c);
            VPIN(xv);
#pragma GCC unroll 8
            for (int a = 0; a < OB; a++) acc[b][a] += wv[a] * xv;
        }
    }
    // the columns past the last whole vector go into lane 0, fused explicitly as few_rows_one does: the
    // compiler contracts a scalar's a += b * c into an FMA but not a vector element's
    for (; c < IN; c++)
        for (int b = 0; b < nb; b++)
            for (int a = 0; a < OB; a++) acc[b][a][0] = __builtin_fmaf(w[(size_t)a * IN + c], x[b][c], acc[b][a][0]);
#pragma GCC unroll 8
    for (int b = 0; b < nb; b++) {
        const vfloat s = vsum4(acc[b]);
        memcpy(out + (size_t)(n0 + b) * OUT + o0, &s, OB * sizeof(float));
    }
}

// One output the way few_rows_pass computes it, for the outputs past the last whole block of OB weight rows.
static float few_rows_one(const floatX* x, const float* w, int IN) {
    float v[VLANES] = {0};
    int c = 0;
    for (; c + VLANES <= IN; c += VLANES)
        for (int l = 0; l < VLANES; l++) v[l] += w[c + l] * x[c + l];
    for (; c < IN; c++) v[0] = __builtin_fmaf(w[c], x[c], v[0]);
    return vsum_lanes(v);
}

static void few_rows_forward(floatX* out, const floatX* inp, const float* weight, int N, int IN, int OUT) {
    const int O4 = OUT / OB * OB;
    const int passes = (N + NB_MAX - 1) / NB_MAX;
    const int lines = (int)(((size_t)OB * IN * sizeof(float) + 63) / 64);  // one block of weights
    const int pass_lines = (lines + passes - 1) / passes;                  // prefetched per pass
#pragma omp parallel for schedule(static)
    for (int o0 = 0; o0 < OUT; o0 += OB) {
        if (o0 >= O4) {
            for (int o = o0; o < o0 + OB && o < OUT; o++)
                for (int n = 0; n < N; n++)
                    out[(size_t)n * OUT + o] = few_rows_one(inp + (size_t)n * IN, weight + (size_t)o * IN, IN);
            continue;
        }
        const char* next = (const char*)(weight + (size_t)(o0 + OB) * IN);
        const int has_next = o0 + 2 * OB <= O4;
        // the rows in passes of near-equal size (16 = 6 + 5 + 5, 8 = 4 + 4)
        for (int p = 0, n0 = 0; p < passes; p++) {
            const int nb = (N - n0 + (passes - p) - 1) / (passes - p);
            const int first = p * pass_lines;  // this pass's share of the next block
            const char* pf = next + (size_t)first * 64;
            int pl = has_next ? lines - first : 0;  // the last pass's share may be short or empty
            pl = pl < 0 ? 0 : pl > pass_lines ? pass_lines : pl;
            // nb a constant in each call, so that the pass's loops unroll into registers
            switch (nb) {
#if NB_MAX >= 6
                case 6: few_rows_pass(out, inp, weight, IN, OUT, o0, n0, 6, pf, pl); break;
                case 5: few_rows_pass(out, inp, weight, IN, OUT, o0, n0, 5, pf, pl); break;
                case 4: few_rows_pass(out, inp, weight, IN, OUT, o0, n0, 4, pf, pl); break;
                case 3: few_rows_pass(out, inp, weight, IN, OUT, o0, n0, 3, pf, pl); break;
#endif
                case 2: few_rows_pass(out, inp, weight, IN, OUT, o0, n0, 2, pf, pl); break;
                default: few_rows_pass(out, inp, weight, IN, OUT, o0, n0, 1, pf, pl); break;
            }
            n0 += nb;
        }
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
