/*
 * Thought attention: qstar's structured kernel against the reference's dense-mask attention, on
 * the CPU. The reference (docs/quietstar.md §4) runs step k's queries against the concatenated keys
 * [block 0 | block 1 | … | block k] with a dense additive mask of shape (L, (k+1)·L): causal over
 * the text block, and only the diagonal (the query's own slot) in each thought block. That costs
 * O(L²·(k+1)) per step and head; qstar's kernel (kernels/cpu/thought_attention.c) does the causal
 * block plus k own-slot dot products per query, O(L² + L·k). This binary measures what that buys.
 *
 * Method. The dense side is written here as efficiently as is fair, so that the ratio measures the
 * algorithm rather than a strawman: per (row, kv head) the key and value blocks of steps 0..k are
 * gathered into contiguous ((k+1)L, HD) buffers once and shared by the group's query heads, then
 * per tile of 128 queries (like qstar's tiles; measured a little faster here than one L-row sgemm,
 * whose L × (k+1)L scores stream through memory) S = Q·Kᵀ/√HD is one sgemm over all (k+1)L keys,
 * the mask is added, the row softmax uses the same vectorized exp as qstar, and O = P·V is one
 * sgemm, normalized afterwards on its HD columns. The backward recomputes P from the saved
 * log-sum-exp (as qstar does, instead of storing P) and does dP = dO·Vᵀ, dS = P∘(dP − rowsum(dO∘O)),
 * dQ = dS·K/√HD, dK = dSᵀ·Q/√HD, dV = Pᵀ·dO as sgemms over the concatenated blocks, then scatters
 * dK/dV back to their step blocks (+=, as the contract says). Threading is qstar's: OpenMP over (row, kv head)
 * pairs with single-threaded sgemm inside (OpenBLAS's OpenMP build runs serially in a parallel
 * region), and the workspaces and the mask are allocated once, outside the timed region, the way
 * the reference builds its mask once per step and shares it across layers.
 *
 * Both are first validated against each other (three small cases with ragged tiles, several rows
 * and GQA groups, then every timed case on its first run): outputs, log-sum-exps and all qkv
 * gradients must agree to 1e-4 of the largest magnitude, else exit 1. A timed "step" is a whole
 * Quiet-STaR step's attention for one layer: S = n_ahead + n_ahead_talk − 1 forwards k = 0..S−1,
 * then their backwards k = S−1..0 (later steps add key/value gradients into earlier blocks first).
 * FLOPs are counted analytically for what each implementation actually performs, including the
 * masked-out products the dense one computes and the block-causal waste of qstar's 128-query tiles,
 * so the time ratio can be set beside the FLOP ratio. Best of a few repeats of wall-clock time;
 * slow cases stop repeating after --max-seconds (the reps column says how many ran), so the default
 * run stays around a minute.
 *
 *   bench_thought_attention [--L 256,1024] [--n-ahead 12,24] [--talk 4] [--rows 1] [--heads 4]
 *                           [--kv-heads 2] [--head-dim 64] [--repeats 3] [--max-seconds 8]
 *                           [--dense-tile 128]   (queries per dense tile; ≥ L means untiled)
 */
// The CPU table's buffers, read as the float arrays they are (kernels/ops.h: floatX).
#define QSTAR_FLOATX float
#include <cblas.h>
#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "kernels/cpu/fastexp.h"
#include "kernels/cpu/simd.h"
#include "kernels/ops.h"

#define QB 128  // qstar's query tile (kernels/cpu/thought_attention.c), for its FLOP count

typedef struct {
    int R, L, NH, NKV, HD, S;  // S = number of steps (forwards) in one Quiet-STaR step
} Case;

// ---- dense-mask attention, the reference's algorithm ----------------------------------------------

// Per-thread buffers sized for the largest step, allocated once: scores/probabilities and their
// gradient for a tile of TQ queries (TQ × S·L each; tiling keeps them in cache instead of streaming
// an L × S·L matrix through memory several times per head), gathered keys/values and their
// gradients (S·L × HD each).
typedef struct {
    int nthreads, TQ;
    size_t LK;                    // S·L: key count at the last step
    float* mask;                  // (L, LK), step k uses the first (k+1)L columns
    float **Sb, **dPb, **Kc, **Vc, **dKc, **dVc, **inv;
} Dense;

static float* alloc_touched(size_t n) {
    float* p = xmalloc(sizeof(float) * n);
    memset(p, 0, sizeof(float) * n);  // fault the pages in now, not inside a timed run
    return p;
}

static void dense_init(Dense* d, const Case* c, int tile) {
    d->nthreads = omp_get_max_threads();
    d->TQ = tile < c->L ? tile : c->L;
    d->LK = (size_t)c->S * c->L;
    // The reference's mask: 0 where allowed, finfo.min elsewhere; it grows by one diagonal block per
    // step, so the mask of step k is the first (k+1)L columns of the last step's.
    d->mask = xmalloc(sizeof(float) * c->L * d->LK);
    for (int i = 0; i < c->L; i++)
        for (size_t j = 0; j < d->LK; j++) {
            int allowed = j < (size_t)c->L ? (int)j <= i : (int)(j % c->L) == i;
            d->mask[i * d->LK + j] = allowed ? 0.0f : -FLT_MAX;
        }
    float*** bufs[7] = {&d->Sb, &d->dPb, &d->Kc, &d->Vc, &d->dKc, &d->dVc, &d->inv};
    for (int b = 0; b < 7; b++) {
        *bufs[b] = xmalloc(sizeof(float*) * d->nthreads);
        for (int t = 0; t < d->nthreads; t++)
            (*bufs[b])[t] = alloc_touched(b < 2 ? (size_t)d->TQ * d->LK : b < 6 ? d->LK * c->HD : (size_t)d->TQ);
    }
}

static void dense_free(Dense* d) {
    float** bufs[7] = {d->Sb, d->dPb, d->Kc, d->Vc, d->dKc, d->dVc, d->inv};
    for (int b = 0; b < 7; b++) {
        for (int t = 0; t < d->nthreads; t++) free(bufs[b][t]);
        free(bufs[b]);
    }
    free(d->mask);
}

// K and V of kv head g, row r, steps 0..k into contiguous ((k+1)L, HD) buffers
static void gather_kv(float* Kc, float* Vc, const floatX* qkv, size_t step_stride, int k, int r, int g,
                      const Case* c) {
    const int C3 = (c->NH + 2 * c->NKV) * c->HD;
    for (int j = 0; j <= k; j++)
        for (int i = 0; i < c->L; i++) {
            const floatX* row = qkv + j * step_stride + ((size_t)r * c->L + i) * C3;
            memcpy(Kc + ((size_t)j * c->L + i) * c->HD, row + (c->NH + g) * c->HD, sizeof(float) * c->HD);
            memcpy(Vc + ((size_t)j * c->L + i) * c->HD, row + (c->NH + c->NKV + g) * c->HD, sizeof(float) * c->HD);
        }
}

// Same contract as thought_attention_forward (ops.h).
static void dense_forward(Dense* d, floatX* out, float* lse, const floatX* qkv, size_t step_stride, int k,
                          const Case* c) {
    const int L = c->L, NH = c->NH, NKV = c->NKV, HD = c->HD, group = NH / NKV;
    const int C3 = (NH + 2 * NKV) * HD, CO = NH * HD, LK = (k + 1) * L, TQ = d->TQ;
    const float scale = 1.0f / sqrtf((float)HD);
#pragma omp parallel
    {
        const int t = omp_get_thread_num();
        float *Sb = d->Sb[t], *Kc = d->Kc[t], *Vc = d->Vc[t], *inv = d->inv[t];
#pragma omp for collapse(2) schedule(static)
        for (int r = 0; r < c->R; r++) {
            for (int g = 0; g < NKV; g++) {
                gather_kv(Kc, Vc, qkv, step_stride, k, r, g, c);
                for (int h = g * group; h < (g + 1) * group; h++) {
                    const floatX* Q = qkv + k * step_stride + (size_t)r * L * C3 + h * HD;
                    floatX* O = out + (size_t)r * L * CO + h * HD;
                    float* LS = lse + ((size_t)r * NH + h) * L;
                    for (int q0 = 0; q0 < L; q0 += TQ) {
                        const int nq = q0 + TQ < L ? TQ : L - q0;
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, LK, HD, scale, Q + (size_t)q0 * C3,
                                    C3, Kc, HD, 0.0f, Sb, LK);
                        for (int q = 0; q < nq; q++) {
                            const int i = q0 + q;
                            float* s = Sb + (size_t)q * LK;
                            const float* m = d->mask + (size_t)i * d->LK;
#pragma omp simd
                            for (int j = 0; j < LK; j++) s[j] += m[j];
                            const float mx = vmax_of(s, LK, -INFINITY);
                            float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
                            for (int j = 0; j < LK; j++) {
                                s[j] = fast_expf(s[j] - mx);
                                sum += s[j];
                            }
                            inv[q] = 1.0f / sum;  // applied to the HD outputs, not the LK probabilities
                            LS[i] = mx + logf(sum);
                        }
                        floatX* Ot = O + (size_t)q0 * CO;
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, HD, LK, 1.0f, Sb, LK, Vc, HD, 0.0f,
                                    Ot, CO);
                        for (int q = 0; q < nq; q++)
                            for (int e = 0; e < HD; e++) Ot[(size_t)q * CO + e] *= inv[q];
                    }
                }
            }
        }
    }
}

// Same contract as thought_attention_backward (ops.h): dq, dk, dv accumulate (+=).
static void dense_backward(Dense* d, floatX* dqkv, const floatX* dout, const floatX* out, const float* lse,
                           const floatX* qkv, size_t step_stride, int k, const Case* c) {
    const int L = c->L, NH = c->NH, NKV = c->NKV, HD = c->HD, group = NH / NKV;
    const int C3 = (NH + 2 * NKV) * HD, CO = NH * HD, LK = (k + 1) * L, TQ = d->TQ;
    const float scale = 1.0f / sqrtf((float)HD);
#pragma omp parallel
    {
        const int t = omp_get_thread_num();
        float *P = d->Sb[t], *dP = d->dPb[t], *Kc = d->Kc[t], *Vc = d->Vc[t], *dKc = d->dKc[t], *dVc = d->dVc[t];
#pragma omp for collapse(2) schedule(static)
        for (int r = 0; r < c->R; r++) {
            for (int g = 0; g < NKV; g++) {
                gather_kv(Kc, Vc, qkv, step_stride, k, r, g, c);
                memset(dKc, 0, sizeof(float) * LK * HD);
                memset(dVc, 0, sizeof(float) * LK * HD);
                for (int h = g * group; h < (g + 1) * group; h++) {
                    const floatX* Q = qkv + k * step_stride + (size_t)r * L * C3 + h * HD;
                    floatX* dQ = dqkv + k * step_stride + (size_t)r * L * C3 + h * HD;
                    const floatX* O = out + (size_t)r * L * CO + h * HD;
                    const floatX* dO = dout + (size_t)r * L * CO + h * HD;
                    const float* LS = lse + ((size_t)r * NH + h) * L;
                    for (int q0 = 0; q0 < L; q0 += TQ) {
                        const int nq = q0 + TQ < L ? TQ : L - q0;
                        const floatX *Qt = Q + (size_t)q0 * C3, *dOt = dO + (size_t)q0 * CO;
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, LK, HD, scale, Qt, C3, Kc, HD, 0.0f,
                                    P, LK);
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, LK, HD, 1.0f, dOt, CO, Vc, HD, 0.0f,
                                    dP, LK);
                        for (int q = 0; q < nq; q++) {
                            const int i = q0 + q;
                            float Di = 0.0f;
                            for (int e = 0; e < HD; e++) Di += dO[(size_t)i * CO + e] * O[(size_t)i * CO + e];
                            const float Li = LS[i];
                            float* p = P + (size_t)q * LK;
                            float* dp = dP + (size_t)q * LK;
                            const float* m = d->mask + (size_t)i * d->LK;
#pragma omp simd
                            for (int j = 0; j < LK; j++) {
                                p[j] = fast_expf(p[j] + m[j] - Li);
                                dp[j] = p[j] * (dp[j] - Di);
                            }
                        }
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, HD, LK, scale, dP, LK, Kc, HD, 1.0f,
                                    dQ + (size_t)q0 * C3, C3);
                        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, LK, HD, nq, scale, dP, LK, Qt, C3, 1.0f,
                                    dKc, HD);
                        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, LK, HD, nq, 1.0f, P, LK, dOt, CO, 1.0f,
                                    dVc, HD);
                    }
                }
                for (int j = 0; j <= k; j++)
                    for (int i = 0; i < L; i++) {
                        floatX* row = dqkv + j * step_stride + ((size_t)r * L + i) * C3;
                        const float* dk = dKc + ((size_t)j * L + i) * HD;
                        const float* dv = dVc + ((size_t)j * L + i) * HD;
                        floatX* rk = row + (NH + g) * HD;
                        floatX* rv = row + (NH + NKV + g) * HD;
                        for (int e = 0; e < HD; e++) {
                            rk[e] += dk[e];
                            rv[e] += dv[e];
                        }
                    }
            }
        }
    }
}

// ---- one Quiet-STaR step's attention with either implementation ---------------------------------

typedef struct {
    float *qkv, *dout;             // inputs: S stacked qkv blocks, S upstream gradients
    float *out, *lse, *dqkv;       // results of one implementation
} Bufs;

static void bufs_alloc(Bufs* b, const Case* c) {
    const size_t N = (size_t)c->R * c->L, C3 = (size_t)(c->NH + 2 * c->NKV) * c->HD, CO = (size_t)c->NH * c->HD;
    b->out = alloc_touched(c->S * N * CO);
    b->lse = alloc_touched((size_t)c->S * c->R * c->NH * c->L);
    b->dqkv = alloc_touched(c->S * N * C3);
}

static void bufs_free(Bufs* b) {
    free(b->out);
    free(b->lse);
    free(b->dqkv);
}

// Runs forwards k = 0..S-1 then backwards k = S-1..0; dense == NULL means qstar's kernel.
static void run_step(const Backend* be, Dense* dense, Bufs* b, const Case* c, double* t_fwd, double* t_all) {
    const size_t N = (size_t)c->R * c->L, C3 = (size_t)(c->NH + 2 * c->NKV) * c->HD, CO = (size_t)c->NH * c->HD;
    const size_t stride = N * C3, lse_n = (size_t)c->R * c->NH * c->L;
    memset(b->dqkv, 0, sizeof(float) * c->S * stride);  // the contract accumulates
    double t0 = now_seconds();
    for (int k = 0; k < c->S; k++) {
        if (dense) dense_forward(dense, b->out + k * N * CO, b->lse + k * lse_n, b->qkv, stride, k, c);
        else be->thought_attention_forward(b->out + k * N * CO, b->lse + k * lse_n, b->qkv, stride, k, c->R, c->L,
                                           c->NH, c->NKV, c->HD);
    }
    double t1 = now_seconds();
    for (int k = c->S - 1; k >= 0; k--) {
        if (dense)
            dense_backward(dense, b->dqkv, b->dout + k * N * CO, b->out + k * N * CO, b->lse + k * lse_n, b->qkv,
                           stride, k, c);
        else be->thought_attention_backward(b->dqkv, b->dout + k * N * CO, b->out + k * N * CO, b->lse + k * lse_n,
                                            b->qkv, stride, k, c->R, c->L, c->NH, c->NKV, c->HD);
    }
    double t2 = now_seconds();
    *t_fwd = t1 - t0;
    *t_all = t2 - t0;
}

// max |a - b| / max |b|
static double rel_err(const float* a, const float* b, size_t n) {
    double diff = 0, mag = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]), m = fabs((double)b[i]);
        diff = d > diff ? d : diff;
        mag = m > mag ? m : mag;
    }
    return mag > 0 ? diff / mag : diff;
}

static void check(const char* what, const float* dense, const float* structured, size_t n, const Case* c) {
    double e = rel_err(dense, structured, n);
    printf("  validate R=%d L=%d NH=%d NKV=%d HD=%d steps=%d  %-4s max|dense-structured|/max|structured| = %.2e\n",
           c->R, c->L, c->NH, c->NKV, c->HD, c->S, what, e);
    if (!(e <= 1e-4)) {
        fprintf(stderr, "bench_thought_attention: dense and structured %s differ by %.3e (> 1e-4) at R=%d L=%d\n",
                what, e, c->R, c->L);
        exit(1);
    }
}

static void fill_inputs(Bufs* b, const Case* c, unsigned seed) {
    const size_t N = (size_t)c->R * c->L, C3 = (size_t)(c->NH + 2 * c->NKV) * c->HD, CO = (size_t)c->NH * c->HD;
    uint64_t s = 0x9E3779B97F4A7C15ull * (seed + 1);
    // inputs of a magnitude that gives peaked-but-not-degenerate softmaxes at HD = 64
    for (size_t i = 0; i < c->S * N * C3; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        b->qkv[i] = ((float)(s >> 40) / (float)(1 << 24) - 0.5f) * 2.0f;
    }
    for (size_t i = 0; i < c->S * N * CO; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        b->dout[i] = ((float)(s >> 40) / (float)(1 << 24) - 0.5f);
    }
}

// ---- FLOPs actually performed (per whole step: S forwards and S backwards) -------------------------

// qstar: per 128-query tile the causal sgemms cover nq × (q0 + nq) pairs (block-causal), plus k own-slot
// keys per query done as dot products/axpys. Forward: QKᵀ and PV, 4·HD per pair. Backward: QKᵀ
// recomputed, dP, dQ, dK, dV, 10·HD per pair.
static void flops_structured(const Case* c, double* fwd, double* bwd) {
    double tile_pairs = 0;
    for (int q0 = 0; q0 < c->L; q0 += QB) {
        int nq = q0 + QB < c->L ? QB : c->L - q0;
        tile_pairs += (double)nq * (q0 + nq);
    }
    double heads = (double)c->R * c->NH, f = 0, b = 0;
    for (int k = 0; k < c->S; k++) {
        double pairs = tile_pairs + (double)c->L * k;
        f += 4.0 * c->HD * pairs * heads;
        b += 10.0 * c->HD * pairs * heads;
    }
    *fwd = f;
    *bwd = b;
}

// dense: every query against all (k+1)L keys, masked or not
static void flops_dense(const Case* c, double* fwd, double* bwd) {
    double heads = (double)c->R * c->NH, f = 0, b = 0;
    for (int k = 0; k < c->S; k++) {
        double pairs = (double)c->L * (k + 1) * c->L;
        f += 4.0 * c->HD * pairs * heads;
        b += 10.0 * c->HD * pairs * heads;
    }
    *fwd = f;
    *bwd = b;
}

// ---- driver -------------------------------------------------------------------------------------

static int parse_list(const char* s, int* out, int max) {
    int n = 0;
    char* list = xstrdup(s);
    for (char* save = NULL, *p = strtok_r(list, ",", &save); p && n < max; p = strtok_r(NULL, ",", &save))
        out[n++] = atoi(p);
    free(list);
    return n;
}

// Validates dense against qstar on one case (all steps' outputs, log-sum-exps, all gradients).
static void validate(const Backend* be, const Case* c, unsigned seed, int tile) {
    const size_t N = (size_t)c->R * c->L, C3 = (size_t)(c->NH + 2 * c->NKV) * c->HD, CO = (size_t)c->NH * c->HD;
    Bufs s, d;
    s.qkv = d.qkv = alloc_touched(c->S * N * C3);
    s.dout = d.dout = alloc_touched(c->S * N * CO);
    fill_inputs(&s, c, seed);
    bufs_alloc(&s, c);
    bufs_alloc(&d, c);
    Dense dense;
    dense_init(&dense, c, tile);
    double tf, ta;
    run_step(be, NULL, &s, c, &tf, &ta);
    run_step(be, &dense, &d, c, &tf, &ta);
    check("out", d.out, s.out, c->S * N * CO, c);
    check("lse", d.lse, s.lse, (size_t)c->S * c->R * c->NH * c->L, c);
    check("dqkv", d.dqkv, s.dqkv, c->S * N * C3, c);
    dense_free(&dense);
    bufs_free(&s);
    bufs_free(&d);
    free(s.qkv);
    free(s.dout);
}

int main(int argc, char** argv) {
    const char *Ls = "256,1024", *aheads = "12,24";
    int talk = 4, rows = 1, heads = 4, kv_heads = 2, head_dim = 64, repeats = 3, tile = 128;
    double max_seconds = 8;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--L")) Ls = argv[i + 1];
        else if (!strcmp(argv[i], "--n-ahead")) aheads = argv[i + 1];
        else if (!strcmp(argv[i], "--talk")) talk = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--rows")) rows = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--heads")) heads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--kv-heads")) kv_heads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--head-dim")) head_dim = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--repeats")) repeats = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--max-seconds")) max_seconds = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--dense-tile")) tile = atoi(argv[i + 1]);
        else fatal("bench_thought_attention: unknown option %s", argv[i]);
    }
    if (argc % 2 == 0) fatal("bench_thought_attention: option %s needs a value", argv[argc - 1]);
    if (rows < 1 || heads < 1 || kv_heads < 1 || heads % kv_heads || head_dim < 1 || talk < 1 || repeats < 1 ||
        tile < 1)
        fatal("bench_thought_attention: need rows, heads, head-dim, talk, repeats >= 1 and heads %% kv-heads == 0");
    int Lv[16], Av[16];
    const int nL = parse_list(Ls, Lv, 16), nA = parse_list(aheads, Av, 16);
    for (int i = 0; i < nL; i++)
        if (Lv[i] < 1) fatal("bench_thought_attention: bad --L %s", Ls);
    for (int i = 0; i < nA; i++)
        if (Av[i] + talk - 1 < 1) fatal("bench_thought_attention: bad --n-ahead %s", aheads);
    const Backend* be = backend_get("cpu");
    if (!be) fatal("bench_thought_attention: no cpu backend");

    printf("thought attention, one Quiet-STaR step (steps = n_ahead + talk - 1 = forwards k = 0..steps-1), "
           "%d thread(s)\n", omp_get_max_threads());
    // Small cases first: ragged tiles (L not a multiple of 128), several rows, GQA groups of 1..3.
    Case small[] = {{2, 37, 4, 2, 16, 6}, {2, 150, 6, 2, 32, 5}, {1, 131, 2, 2, 8, 4}};
    for (size_t i = 0; i < sizeof small / sizeof small[0]; i++)
        validate(be, &small[i], 100 + (unsigned)i, i == 0 ? tile : 16);  // untiled, then 16-query tiles

    printf("\n%5s %7s %5s %-7s %12s %12s %8s %11s %11s %8s %9s %9s %5s\n", "L", "n_ahead", "steps", "pass",
           "struct ms", "dense ms", "dense/s", "struct GF", "dense GF", "GF ratio", "s GF/s", "d GF/s", "reps");
    char mem_lines[16 * 16][256];
    int n_mem = 0;
    for (int a = 0; a < nL; a++) {
        for (int b = 0; b < nA; b++) {
            Case c = {rows, Lv[a], heads, kv_heads, head_dim, Av[b] + talk - 1};
            const size_t N = (size_t)c.R * c.L, C3 = (size_t)(c.NH + 2 * c.NKV) * c.HD, CO = (size_t)c.NH * c.HD;
            Bufs s, d;
            s.qkv = d.qkv = alloc_touched(c.S * N * C3);
            s.dout = d.dout = alloc_touched(c.S * N * CO);
            fill_inputs(&s, &c, 7);
            bufs_alloc(&s, &c);
            bufs_alloc(&d, &c);
            Dense dense;
            dense_init(&dense, &c, tile);
            double sf = 1e30, sa = 1e30, df = 1e30, da = 1e30;
            int sreps = 0, dreps = 0;
            for (double spent = 0; sreps < repeats && (sreps == 0 || spent < max_seconds); sreps++) {
                double f, t;
                run_step(be, NULL, &s, &c, &f, &t);
                sf = f < sf ? f : sf;
                sa = t < sa ? t : sa;
                spent += t;
            }
            for (double spent = 0; dreps < repeats && (dreps == 0 || spent < max_seconds); dreps++) {
                double f, t;
                run_step(be, &dense, &d, &c, &f, &t);
                df = f < df ? f : df;
                da = t < da ? t : da;
                spent += t;
                if (dreps == 0) {  // every timed case is checked, on its first dense run
                    check("out", d.out, s.out, c.S * N * CO, &c);
                    check("lse", d.lse, s.lse, (size_t)c.S * c.R * c.NH * c.L, &c);
                    check("dqkv", d.dqkv, s.dqkv, c.S * N * C3, &c);
                }
            }
            double ff_s, fb_s, ff_d, fb_d;
            flops_structured(&c, &ff_s, &fb_s);
            flops_dense(&c, &ff_d, &fb_d);
            const char* pass[2] = {"fwd", "fwd+bwd"};
            double ts[2] = {sf, sa}, td[2] = {df, da}, fs[2] = {ff_s, ff_s + fb_s}, fd[2] = {ff_d, ff_d + fb_d};
            for (int p = 0; p < 2; p++)
                printf("%5d %7d %5d %-7s %12.2f %12.2f %8.2f %11.3f %11.3f %8.2f %9.1f %9.1f %2d/%-2d\n", c.L, Av[b],
                       c.S, pass[p], ts[p] * 1e3, td[p] * 1e3, td[p] / ts[p], fs[p] / 1e9, fd[p] / 1e9, fd[p] / fs[p],
                       fs[p] / ts[p] / 1e9, fd[p] / td[p] / 1e9, sreps, dreps);
            fflush(stdout);

            // Memory (fp32 bytes). The reference's mask is (R, 1, L, S·L) at the last step; its dense
            // attention materializes scores for all R·NH (row, head) pairs at once, (R, NH, L, (k+1)L).
            // This benchmark's dense side needs per thread two TQ × S·L tiles (P and dP) plus four
            // gathered S·L × HD blocks. qstar needs no mask and per thread two QB × L tiles and QB·(k+1).
            const double MB = 1.0 / (1 << 20), f4 = 4.0;
            double mask = f4 * c.R * c.L * (double)c.L * c.S;
            double scores_all = f4 * c.R * c.NH * c.L * (double)c.L * c.S;
            double dense_ws = f4 * (2.0 * dense.TQ * c.L * c.S + 4.0 * c.L * c.S * c.HD);
            int qb = c.L < QB ? c.L : QB;
            double struct_ws = f4 * (2.0 * qb * c.L + (double)qb * c.S);
            snprintf(mem_lines[n_mem++], sizeof mem_lines[0], "%5d %7d %5d %12.1f %16.1f %18.2f %18.3f", c.L, Av[b],
                     c.S, mask * MB, scores_all * MB, dense_ws * MB, struct_ws * MB);

            dense_free(&dense);
            bufs_free(&s);
            bufs_free(&d);
            free(s.qkv);
            free(s.dout);
        }
    }
    printf("\nmemory at the last step, MiB (fp32): dense mask (R,1,L,S*L); dense scores (R,NH,L,S*L) as one batched\n"
           "dense attention holds them; per-thread workspace of the dense side here; of qstar's kernel (no mask)\n");
    printf("%5s %7s %5s %12s %16s %18s %18s\n", "L", "n_ahead", "steps", "dense mask", "dense scores",
           "dense ws/thread", "struct ws/thread");
    for (int i = 0; i < n_mem; i++) printf("%s\n", mem_lines[i]);
    return 0;
}
