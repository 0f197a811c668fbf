/*
 * Thought attention (kernels/ops.h, "Quiet-STaR: thought attention") against the computation the
 * Quiet-STaR reference actually performs (research notes §1.3): the keys and values of steps 0..k
 * concatenated as [block0 | block1 | ... | blockk], a dense additive mask in which query (step k,
 * slot i) sees block-0 keys j <= i and, in blocks 1..k, only the key at slot i, then
 * softmax(QKᵀ/√HD + mask)·V per head with GQA. The op computes the same thing as two partial
 * softmaxes merged by log-sum-exp; this file checks that the shortcut equals the dense definition.
 *   build/tests/test_thought_attention [backend]     "cpu" (default), "cuda", "emu"
 *
 * Checked per case, all through the Backend table:
 *  - out and lse against the dense double reference (max abs error / max |ref| <= 1e-5);
 *  - dqkv of every step (q of step k, k/v of steps 0..k) against the analytic double gradient of the
 *    dense reference, from zero and from a random pre-fill (the op must ADD: later steps have already
 *    put their key/value gradients there when an earlier step's backward runs);
 *  - nothing outside the blocks is read or written: the gaps between steps (the model interleaves the
 *    steps of one layer with the other layers) and the unused query parts of steps < k hold NaN in
 *    qkv, and the gaps of dqkv must come back bitwise unchanged;
 *  - k = 0 equals the plain attention_forward/attention_backward ops (attention_backward overwrites,
 *    so it is run on a garbage-filled buffer and compared with thought backward from zero);
 *  - central finite differences of Σ dout∘out (float) w.r.t. a few qkv entries of every step block.
 * Sizes: k = 0, 1, 3, 11; L = 5, 37, 130 (130 crosses the CPU's 128-row query block); R = 2, 3;
 * NH/NKV = 4/2 (GQA) and 2/2; HD = 8, 16. The whole file runs in a few seconds on two cores.
 */
// Backend buffers are read and written here as fp32 arrays: this file runs on fp32 tables (floatX =
// float, kernels/ops.h); the bf16 tables have their own tests (tests/test_bf16.c).
#define QSTAR_FLOATX float
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/ops.h"
#include "tests/check.h"

#define TEST_RNG_SEED 0x2545F4914F6CDD1Dull
#include "tests/backend_test.h"

#define TOL 1e-5     // float op vs double reference, relative to the largest reference magnitude
#define TOL_FD 1e-2  // analytic vs float central differences
#define FD_STEP 1e-2f

static int irand(int n) { return (int)(urand() * n); }

// max |got - ref| / scale (scale = the magnitude the error is measured against); NaN fails.
static void check_max(const char* what, const float* got, const double* ref, size_t n, double scale) {
    double md = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - ref[i]);
        if (!(d <= md)) md = d;  // written so a NaN propagates
    }
    double e = md / (scale > 0 ? scale : 1.0);
    printf("  %-58s max err %.2e\n", what, e);
    CHECK(e <= TOL, "%s: max rel error %.3e > %.1e", what, e, TOL);
}
static double maxabs(const double* x, size_t n) {
    double m = 0.0;
    for (size_t i = 0; i < n; i++) m = fabs(x[i]) > m ? fabs(x[i]) : m;
    return m;
}

// ---- the dense masked reference ------------------------------------------------------------------

// qkv/dqkv point at step 0 of the stack (step b at + b*stride), exactly as the op receives them.
// dout == NULL: forward only. dqkv (double, same layout) receives += the analytic gradient.
static void dense_reference(double* out, double* lse, const float* qkv, size_t stride, int k, int R, int L, int NH,
                            int NKV, int HD, const float* dout, double* dqkv) {
    const int C3 = (NH + 2 * NKV) * HD, CO = NH * HD, M = (k + 1) * L, group = NH / NKV;
    const double scale = 1.0 / sqrt((double)HD);
    // the additive mask of §1.3: block 0 causal, blocks 1..k diagonal (the query's own slot)
    double* mask = malloc(sizeof(double) * L * M);
    for (int i = 0; i < L; i++)
        for (int b = 0; b <= k; b++)
            for (int j = 0; j < L; j++) mask[(size_t)i * M + b * L + j] = (b == 0 ? j <= i : j == i) ? 0.0 : -INFINITY;
    double *K = malloc(sizeof(double) * M * HD), *V = malloc(sizeof(double) * M * HD);
    double *dK = malloc(sizeof(double) * M * HD), *dV = malloc(sizeof(double) * M * HD);
    double *p = malloc(sizeof(double) * M), *dp = malloc(sizeof(double) * M);
    for (int r = 0; r < R; r++)
        for (int g = 0; g < NKV; g++) {
            // concatenate kv head g of row r over the steps: [block0 | block1 | ... | blockk]
            for (int b = 0; b <= k; b++)
                for (int j = 0; j < L; j++)
                    for (int c = 0; c < HD; c++) {
                        const size_t src = b * stride + ((size_t)r * L + j) * C3 + c;
                        K[((size_t)b * L + j) * HD + c] = qkv[src + (NH + g) * HD];
                        V[((size_t)b * L + j) * HD + c] = qkv[src + (NH + NKV + g) * HD];
                    }
            memset(dK, 0, sizeof(double) * M * HD);
            memset(dV, 0, sizeof(double) * M * HD);
            for (int h = g * group; h < (g + 1) * group; h++)
                for (int i = 0; i < L; i++) {
                    const size_t row = (size_t)r * L + i;
                    const float* q = qkv + k * stride + row * C3 + h * HD;
                    double mx = -INFINITY, sum = 0.0;
                    for (int m = 0; m < M; m++) {
                        double s = 0.0;
                        for (int c = 0; c < HD; c++) s += (double)q[c] * K[(size_t)m * HD + c];
                        p[m] = s * scale + mask[(size_t)i * M + m];
                        mx = p[m] > mx ? p[m] : mx;
                    }
                    for (int m = 0; m < M; m++) sum += (p[m] = exp(p[m] - mx));
                    for (int m = 0; m < M; m++) p[m] /= sum;
                    lse[((size_t)r * NH + h) * L + i] = mx + log(sum);
                    double* o = out + row * CO + h * HD;
                    for (int c = 0; c < HD; c++) {
                        double a = 0.0;
                        for (int m = 0; m < M; m++) a += p[m] * V[(size_t)m * HD + c];
                        o[c] = a;
                    }
                    if (!dout) continue;
                    // dS = P ∘ (dP − Σ P dP), dQ = scale·dS·K, dK = scale·dSᵀ·Q, dV = Pᵀ·dO
                    const float* d = dout + row * CO + h * HD;
                    double D = 0.0;
                    for (int m = 0; m < M; m++) {
                        double a = 0.0;
                        for (int c = 0; c < HD; c++) a += (double)d[c] * V[(size_t)m * HD + c];
                        dp[m] = a;
                        D += p[m] * a;
                    }
                    double* dq = dqkv + k * stride + row * C3 + h * HD;
                    for (int m = 0; m < M; m++) {
                        const double ds = p[m] * (dp[m] - D);
                        for (int c = 0; c < HD; c++) {
                            dq[c] += scale * ds * K[(size_t)m * HD + c];
                            dK[(size_t)m * HD + c] += scale * ds * q[c];
                            dV[(size_t)m * HD + c] += p[m] * d[c];
                        }
                    }
                }
            if (!dout) continue;
            for (int b = 0; b <= k; b++)  // scatter the concatenated gradients back to the steps
                for (int j = 0; j < L; j++)
                    for (int c = 0; c < HD; c++) {
                        const size_t dst = b * stride + ((size_t)r * L + j) * C3 + c;
                        dqkv[dst + (NH + g) * HD] += dK[((size_t)b * L + j) * HD + c];
                        dqkv[dst + (NH + NKV + g) * HD] += dV[((size_t)b * L + j) * HD + c];
                    }
        }
    free(mask), free(K), free(V), free(dK), free(dV), free(p), free(dp);
}

// ---- one case --------------------------------------------------------------------------------------

typedef struct {
    int k, R, L, NH, NKV, HD;
    int layered;  // 1: steps interleaved with 2 other layers (as the model stores them); 0: a small odd gap
    int fd;       // finite-difference entries per step block (0: none)
} Case;

typedef struct {
    const Backend* be;
    const Case* cs;
    size_t stride, total, base;
    float *qkv, *dout, *out;
    float *d_buf, *d_out, *d_lse;
} FdCtx;
static double fd_loss(FdCtx* c) {  // Σ dout ∘ out in double, out from the backend's forward
    const Case* s = c->cs;
    const size_t no = (size_t)s->R * s->L * s->NH * s->HD;
    c->be->upload(c->d_buf, c->qkv, sizeof(float) * c->total);
    c->be->thought_attention_forward(c->d_out, c->d_lse, c->d_buf + c->base, c->stride, s->k, s->R, s->L, s->NH,
                                     s->NKV, s->HD);
    dget(c->be, c->out, c->d_out, sizeof(float) * no);
    double l = 0.0;
    for (size_t i = 0; i < no; i++) l += (double)c->dout[i] * c->out[i];
    return l;
}

static void run_case(const Backend* be, const Case* cs) {
    const int k = cs->k, R = cs->R, L = cs->L, NH = cs->NH, NKV = cs->NKV, HD = cs->HD;
    const int C3 = (NH + 2 * NKV) * HD;
    const size_t blk = (size_t)R * L * C3, no = (size_t)R * L * NH * HD, nl = (size_t)R * NH * L;
    // layered: stride = 3 layers, this layer is the middle one (the base pointer is not the buffer
    // start); otherwise a gap of 36 floats after each step and a base offset of 20
    const size_t stride = cs->layered ? 3 * blk : blk + 36, base = cs->layered ? blk : 20;
    const size_t total = base + (size_t)k * stride + blk + (cs->layered ? blk : 16);
    char name[160], tag[96];
    snprintf(tag, sizeof tag, "k=%d R=%d L=%d NH=%d NKV=%d HD=%d%s", k, R, L, NH, NKV, HD,
             cs->layered ? " layered" : " gap");
    printf("thought attention %s\n", tag);

    // in_block[i]: element i of the buffer belongs to one of the k+1 step blocks
    char* in_block = calloc(total, 1);
    for (int b = 0; b <= k; b++) memset(in_block + base + b * stride, 1, blk);
    float* buf = hnew(total, -2.0f, 2.0f);
    for (size_t i = 0; i < total; i++)
        if (!in_block[i]) buf[i] = NAN;  // the gaps must never be read
    for (int b = 0; b < k; b++)          // nor the queries of steps before k
        for (size_t n = 0; n < (size_t)R * L; n++)
            for (int c = 0; c < NH * HD; c++) buf[base + b * stride + n * C3 + c] = NAN;
    float* dout = hnew(no, -1.0f, 1.0f);
    float *out = malloc(sizeof(float) * no), *lse = malloc(sizeof(float) * nl);
    float *dq = malloc(sizeof(float) * total), *dq0 = malloc(sizeof(float) * total);
    double *rout = calloc(no, sizeof(double)), *rlse = calloc(nl, sizeof(double));
    double *rd = calloc(total, sizeof(double)), *rd0 = malloc(sizeof(double) * total);
    float *d_buf = dnew(be, buf, sizeof(float) * total), *d_dout = dnew(be, dout, sizeof(float) * no);
    float *d_out = dnew(be, NULL, sizeof(float) * no), *d_lse = dnew(be, NULL, sizeof(float) * nl);
    float* d_dq = dnew(be, NULL, sizeof(float) * total);

    dense_reference(rout, rlse, buf + base, stride, k, R, L, NH, NKV, HD, dout, rd + base);

    // forward
    be->thought_attention_forward(d_out, d_lse, d_buf + base, stride, k, R, L, NH, NKV, HD);
    dget(be, out, d_out, sizeof(float) * no);
    dget(be, lse, d_lse, sizeof(float) * nl);
    check_max("out vs dense masked reference", out, rout, no, maxabs(rout, no));
    check_max("lse vs dense masked reference", lse, rlse, nl, maxabs(rlse, nl));

    // backward from zero: the whole buffer against the reference gradient (0 in gaps, unused q)
    const double gscale = maxabs(rd, total);
    be->thought_attention_backward(d_dq + base, d_dout, d_out, d_lse, d_buf + base, stride, k, R, L, NH, NKV, HD);
    dget(be, dq0, d_dq, sizeof(float) * total);
    check_max("dqkv (all steps) from zero vs dense gradient", dq0, rd, total, gscale);
    for (int b = 0; b <= k; b++) {  // per step, so a failure says which block is wrong
        const size_t o = base + b * stride;
        snprintf(name, sizeof name, "  dqkv step %d block%s", b, b == k ? " (q, k, v)" : " (k, v)");
        if (k <= 3 || b == 0 || b == 1 || b == k) check_max(name, dq0 + o, rd + o, blk, gscale);
    }

    // backward onto a random pre-fill: the op must add to it, and leave the gaps bitwise alone
    float* pre = hnew(total, -1.0f, 1.0f);
    for (size_t i = 0; i < total; i++) {
        pre[i] *= (float)gscale;  // same magnitude as the gradient, so the sum's rounding stays small
        rd0[i] = (double)pre[i] + rd[i];
    }
    be->upload(d_dq, pre, sizeof(float) * total);
    be->thought_attention_backward(d_dq + base, d_dout, d_out, d_lse, d_buf + base, stride, k, R, L, NH, NKV, HD);
    dget(be, dq, d_dq, sizeof(float) * total);
    check_max("dqkv onto random pre-fill == pre-fill + gradient (+=)", dq, rd0, total, gscale);
    int gaps_ok = 1;
    for (size_t i = 0; i < total; i++)
        if (!in_block[i]) gaps_ok &= memcmp(&dq[i], &pre[i], sizeof(float)) == 0;
    CHECK(gaps_ok, "%s: dqkv written outside the step blocks", tag);

    // k = 0 is ordinary causal attention: the plain ops on a contiguous copy of step 0
    if (k == 0) {
        float *d_q0 = dnew(be, buf + base, sizeof(float) * blk), *d_o2 = dnew(be, NULL, sizeof(float) * no);
        float *d_l2 = dnew(be, NULL, sizeof(float) * nl), *d_dq2 = dnew(be, NULL, sizeof(float) * blk);
        float *o2 = malloc(sizeof(float) * no), *l2 = malloc(sizeof(float) * nl), *dq2 = hnew(blk, -9, 9);
        double *dout_d = malloc(sizeof(double) * no), *dl_d = malloc(sizeof(double) * nl);
        double* dq_d = malloc(sizeof(double) * blk);
        be->attention_forward(d_o2, d_l2, d_q0, R, L, NH, NKV, HD);
        dget(be, o2, d_o2, sizeof(float) * no);
        dget(be, l2, d_l2, sizeof(float) * nl);
        for (size_t i = 0; i < no; i++) dout_d[i] = out[i];
        for (size_t i = 0; i < nl; i++) dl_d[i] = lse[i];
        check_max("attention_forward out == thought_attention k=0", o2, dout_d, no, maxabs(dout_d, no));
        check_max("attention_forward lse == thought_attention k=0", l2, dl_d, nl, maxabs(dl_d, nl));
        be->upload(d_dq2, dq2, sizeof(float) * blk);  // garbage: attention_backward overwrites
        be->attention_backward(d_dq2, d_dout, d_o2, d_l2, d_q0, R, L, NH, NKV, HD);
        dget(be, dq2, d_dq2, sizeof(float) * blk);
        for (size_t i = 0; i < blk; i++) dq_d[i] = dq0[base + i];
        check_max("attention_backward dqkv == thought backward k=0", dq2, dq_d, blk, gscale);
        check_max("attention_backward dqkv vs dense gradient", dq2, rd + base, blk, gscale);
        be->free(d_q0), be->free(d_o2), be->free(d_l2), be->free(d_dq2);
        free(o2), free(l2), free(dq2), free(dout_d), free(dl_d), free(dq_d);
    }

    // finite differences of Σ dout∘out in float, a few entries of each step block: q (step k only),
    // k and v of a random row and kv head; in blocks 1..k the key at that row's slot is seen by its
    // own query only, so every picked entry has a non-zero gradient.
    // Finite differences check the formulas on the cpu backend; other backends (the emulated CUDA
    // kernels, far slower per call) are held to the same dense double-precision reference.
    if (cs->fd && !strcmp(be->name, "cpu")) {
        FdCtx c = {be, cs, stride, total, base, buf, dout, malloc(sizeof(float) * no), d_buf, d_out, d_lse};
        const int threads = omp_get_max_threads();
        omp_set_num_threads(1);  // thousands of tiny forwards: parallel-region barriers would dominate
        double worst = 0.0;
        for (int b = 0; b <= k; b++) {
            double sd = 0.0, sr = 0.0;
            for (int e = 0; e < cs->fd; e++) {
                const size_t n = (size_t)irand(R * L);
                int col;
                if (b == k && e % 3 == 0) col = irand(NH * HD);                 // query
                else if (e % 3 == 1) col = NH * HD + irand(NKV * HD);           // key
                else col = (NH + NKV) * HD + irand(NKV * HD);                   // value
                const size_t idx = base + b * stride + n * C3 + col;
                const float x0 = buf[idx], xp = x0 + FD_STEP, xm = x0 - FD_STEP;
                buf[idx] = xp;
                const double lp = fd_loss(&c);
                buf[idx] = xm;
                const double lm = fd_loss(&c);
                buf[idx] = x0;
                const double num = (lp - lm) / ((double)xp - (double)xm), d = dq0[idx] - num;
                sd += d * d;
                sr += num * num;
            }
            const double err = sqrt(sd) / (sr > 0 ? sqrt(sr) : 1.0);
            worst = err > worst ? err : worst;
            CHECK(err <= TOL_FD && sr > 0, "%s: finite differences, step block %d: rel error %.3e > %.1e", tag, b,
                  err, TOL_FD);
        }
        omp_set_num_threads(threads);
        be->upload(d_buf, buf, sizeof(float) * total);
        printf("  %-58s fd rel %.2e\n", "finite differences (worst step block)", worst);
        free(c.out);
    }

    free(in_block), free(buf), free(dout), free(out), free(lse), free(dq), free(dq0), free(pre);
    free(rout), free(rlse), free(rd), free(rd0);
    be->free(d_buf), be->free(d_dout), be->free(d_out), be->free(d_lse), be->free(d_dq);
}

int main(int argc, char** argv) {
    const Backend* be = backend_get(argc > 1 ? argv[1] : "cpu");
    if (!be) {
        fprintf(stderr, "unknown backend '%s' (built: %s)\n", argv[1], backend_names());
        return 2;
    }
    printf("backend %s\n", be->name);
    // every k with every L; R, the head layout, HD and the step layout vary across them
    const Case cases[] = {
        {0, 2, 5, 4, 2, 8, 1, 6},     {0, 3, 37, 2, 2, 16, 0, 6},   {0, 2, 130, 4, 2, 16, 1, 3},
        {1, 3, 5, 2, 2, 8, 0, 6},     {1, 2, 37, 4, 2, 16, 1, 6},   {1, 3, 130, 2, 2, 8, 0, 3},
        {3, 2, 5, 4, 2, 16, 0, 6},    {3, 3, 37, 2, 2, 8, 1, 6},    {3, 2, 130, 4, 2, 8, 1, 3},
        {11, 3, 5, 4, 2, 8, 1, 6},    {11, 2, 37, 2, 2, 16, 0, 3},  {11, 3, 130, 4, 2, 16, 0, 2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(be, &cases[i]);
    return test_summary();
}
