/*
 * Correctness tests of every op of a backend (kernels/ops.h), the CPU backend by default:
 *   build/tests/test_ops [backend]      backend name as backend_get knows it ("cpu", "cuda", "emu")
 *
 * Every op is called only through the Backend table (alloc, upload, op, download), so the same
 * file checks any backend against references written here, independently of kernels/cpu:
 *  - forward against a plain-loop double-precision reference (scale-relative max error and
 *    relative norm error, both <= 1e-5; the errors are printed so the headroom is visible);
 *  - backward against central finite differences of L(x) = Σ G ∘ forward(x) for a random upstream
 *    gradient G (relative norm error <= 1e-2, float differences), and against a double analytic
 *    reference where one is easy (<= 1e-5);
 *  - the accumulate/overwrite rules of ops.h (parameter gradients +=, "+=" activations, dinp
 *    overwritten unless asked, NULL gradients allowed, in-place cross-entropy);
 *  - AdamW against PyTorch's formula, sum_squares against a double sum and across thread counts;
 *  - determinism: each op run twice gives bitwise identical results.
 * Attention is tested at T not a multiple of the CPU's 128-row query block and at T > 128, so the
 * block boundaries are crossed. Sizes are small so the whole file runs in seconds on two cores.
 */
// Backend buffers are read and written here as fp32 arrays: this file runs on fp32 tables (floatX =
// float, kernels/ops.h); the bf16 tables have their own tests (tests/test_bf16.c).
#define QSTAR_FLOATX float
#include <math.h>
#include <omp.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "kernels/ops.h"
#include "kernels/philox.h"
#include "tests/check.h"

#define TEST_RNG_SEED 0x9E3779B97F4A7C15ull
#include "tests/backend_test.h"

#define TOL_FWD 1e-5  // float op vs double reference
#define TOL_FD 1e-2   // analytic vs float central differences

// On the cuda backend the GEMMs run on TF32 tensor cores (CUBLAS_COMPUTE_32F_FAST_TF32: both operands
// rounded to 10-bit mantissas, unit roundoff 2^-11 each, fp32 accumulation), so a product element's
// error is bounded by (2^-10 + K 2^-24) Σ_k |a_k b_k|, not by 1e-5 of the result. gemm_tol turns that
// first-order bound into this file's scale-relative measures (max and norm); every other backend keeps
// TOL_FWD. Only the matmul checks use it: the other CUDA kernels compute in fp32 on the CUDA cores.
static int tf32_gemms;
static double gemm_tol(const double* absdot, const double* ref, size_t n, int K) {
    if (!tf32_gemms) return TOL_FWD;
    double ma = 0, mr = 0, na = 0, nr = 0;
    for (size_t i = 0; i < n; i++) {
        if (absdot[i] > ma) ma = absdot[i];
        if (fabs(ref[i]) > mr) mr = fabs(ref[i]);
        na += absdot[i] * absdot[i];
        nr += ref[i] * ref[i];
    }
    const double gamma = ldexp(1.0, -10) + K * ldexp(1.0, -24);
    double t = gamma * fmax(ma / (mr > 0 ? mr : 1), sqrt(na / (nr > 0 ? nr : 1)));
    return t > TOL_FWD ? t : TOL_FWD;
}
#define FD_STEP 1e-2f

// ---- small helpers ----------------------------------------------------------------------------

static double* dzeros(size_t n) { return calloc(n ? n : 1, sizeof(double)); }

static double dot_fd(const float* g, const float* y, size_t n) {  // Σ G ∘ y in double
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)g[i] * y[i];
    return s;
}

// got vs ref: max|got-ref| / max|ref| and ‖got-ref‖ / ‖ref‖, both must be <= tol. NaN fails.
static void check_close(const char* what, const float* got, const double* ref, size_t n, double tol) {
    double md = 0.0, mr = 0.0, sd = 0.0, sr = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - ref[i]);
        if (!(d <= md)) md = d;  // written so a NaN propagates
        if (fabs(ref[i]) > mr) mr = fabs(ref[i]);
        sd += d * d;
        sr += ref[i] * ref[i];
    }
    double emax = md / (mr > 0 ? mr : 1.0), enorm = sqrt(sd) / (sr > 0 ? sqrt(sr) : 1.0);
    printf("  %-46s max %.2e  norm %.2e\n", what, emax, enorm);
    CHECK(emax <= tol && enorm <= tol, "%s: max rel %.3e, norm rel %.3e > %.1e", what, emax, enorm, tol);
}
static void check_bitwise(const char* what, const void* a, const void* b, size_t bytes) {
    CHECK(memcmp(a, b, bytes) == 0, "%s: not bitwise identical", what);
}

// Central differences of loss() with respect to x[i] for i = 0, every, 2*every, ... (x is the host
// array the loss uploads), compared with the analytic gradient at the same indices.
typedef double (*LossFn)(void* ctx);
// The thousands of tiny forward calls run on one OpenMP thread: on a shared, loaded machine each
// parallel region's barrier otherwise costs more than the op (the analytic side keeps all threads).
// Finite differences check the gradient formulas; they run on the cpu backend. Other backends (the
// emulated CUDA kernels, thousands of times slower per call) are held to the same double-precision
// analytic references instead.
static int fd_enabled = 1;

static void check_fd(const char* what, LossFn loss, void* ctx, float* x, size_t n, size_t every, const float* ana) {
    if (!fd_enabled) return;
    double sd = 0.0, sr = 0.0;
    const int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    for (size_t i = 0; i < n; i += every) {
        const float x0 = x[i], xp = x0 + FD_STEP, xm = x0 - FD_STEP;
        x[i] = xp;
        double lp = loss(ctx);
        x[i] = xm;
        double lm = loss(ctx);
        x[i] = x0;
        double num = (lp - lm) / ((double)xp - (double)xm);
        double d = ana[i] - num;
        sd += d * d;
        sr += num * num;
    }
    omp_set_num_threads(threads);
    double err = sqrt(sd) / (sr > 0 ? sqrt(sr) : 1.0);
    printf("  %-46s fd   %.2e\n", what, err);
    CHECK(err <= TOL_FD, "%s: finite-difference rel error %.3e > %.1e", what, err, TOL_FD);
}

// ---- embedding -----------------------------------------------------------------------------------

typedef struct {
    const Backend* be;
    int N, H;
    float *table, *G, *out;
    size_t tbytes;
    int32_t* d_tok;
    float *d_table, *d_out;
} EmbCtx;
static double emb_loss(void* p) {
    EmbCtx* c = p;
    c->be->upload(c->d_table, c->table, c->tbytes);
    c->be->embedding_forward(c->d_out, c->d_tok, c->d_table, c->N, c->H);
    dget(c->be, c->out, c->d_out, sizeof(float) * c->N * c->H);
    return dot_fd(c->G, c->out, (size_t)c->N * c->H);
}

static void test_embedding(const Backend* be) {
    printf("embedding\n");
    const int N = 20, V = 11, H = 70;  // H > 64 crosses the CPU's column chunk
    int32_t tok[20];
    for (int n = 0; n < N; n++) tok[n] = (n * 7 + n / 3) % V;  // many repeats
    tok[N - 1] = tok[0] = 4;
    float* table = hnew((size_t)V * H, -1, 1);
    float* G = hnew((size_t)N * H, -1, 1);
    float* out = hnew((size_t)N * H, 0, 0);
    float* out2 = hnew((size_t)N * H, 0, 0);
    int32_t* d_tok = dnew(be, tok, sizeof tok);
    float* d_table = dnew(be, table, sizeof(float) * V * H);
    float* d_out = dnew(be, NULL, sizeof(float) * N * H);
    float* d_G = dnew(be, G, sizeof(float) * N * H);

    be->embedding_forward(d_out, d_tok, d_table, N, H);
    dget(be, out, d_out, sizeof(float) * N * H);
    int exact = 1;
    for (int n = 0; n < N; n++) exact &= !memcmp(out + (size_t)n * H, table + (size_t)tok[n] * H, sizeof(float) * H);
    CHECK(exact, "embedding_forward: rows are not exact copies of the table");
    be->embedding_forward(d_out, d_tok, d_table, N, H);
    dget(be, out2, d_out, sizeof(float) * N * H);
    check_bitwise("embedding_forward determinism", out, out2, sizeof(float) * N * H);

    // backward: dtable += scatter of G; starts from a random D0 to see the "+=".
    double* ref = dzeros((size_t)V * H);
    for (int n = 0; n < N; n++)
        for (int c = 0; c < H; c++) ref[(size_t)tok[n] * H + c] += G[(size_t)n * H + c];
    float* D0 = hnew((size_t)V * H, -1, 1);
    float* dt = hnew((size_t)V * H, 0, 0);
    float* dt2 = hnew((size_t)V * H, 0, 0);
    float* d_dt = dnew(be, NULL, sizeof(float) * V * H);
    be->embedding_backward(d_dt, d_G, d_tok, N, V, H);
    dget(be, dt, d_dt, sizeof(float) * V * H);
    check_close("embedding_backward dtable vs ref", dt, ref, (size_t)V * H, TOL_FWD);
    be->zero(d_dt, sizeof(float) * V * H);
    be->embedding_backward(d_dt, d_G, d_tok, N, V, H);
    dget(be, dt2, d_dt, sizeof(float) * V * H);
    check_bitwise("embedding_backward determinism", dt, dt2, sizeof(float) * V * H);
    EmbCtx c = {be, N, H, table, G, out, sizeof(float) * V * H, d_tok, d_table, d_out};
    check_fd("embedding_backward dtable", emb_loss, &c, table, (size_t)V * H, 1, dt);

    be->upload(d_dt, D0, sizeof(float) * V * H);
    be->embedding_backward(d_dt, d_G, d_tok, N, V, H);
    be->embedding_backward(d_dt, d_G, d_tok, N, V, H);
    dget(be, dt2, d_dt, sizeof(float) * V * H);
    double* ref2 = dzeros((size_t)V * H);
    for (size_t i = 0; i < (size_t)V * H; i++) ref2[i] = D0[i] + 2.0 * ref[i];
    check_close("embedding_backward twice from D0 (+=)", dt2, ref2, (size_t)V * H, TOL_FWD);

    free(table), free(G), free(out), free(out2), free(ref), free(ref2), free(D0), free(dt), free(dt2);
    be->free(d_tok), be->free(d_table), be->free(d_out), be->free(d_G), be->free(d_dt);
}

// ---- RMSNorm ------------------------------------------------------------------------------------

static void ref_rmsnorm(double* out, double* rstd, const float* x, const float* w, int N, int H, float eps) {
    for (int n = 0; n < N; n++) {
        double ss = 0.0;
        for (int i = 0; i < H; i++) ss += (double)x[(size_t)n * H + i] * x[(size_t)n * H + i];
        double r = 1.0 / sqrt(ss / H + eps);
        rstd[n] = r;
        for (int i = 0; i < H; i++) out[(size_t)n * H + i] = x[(size_t)n * H + i] * r * w[i];
    }
}
// y_i = w_i x_i r, r = (mean x² + eps)^-1/2:  dx_j = r (g_j w_j) - r³ x_j / H Σ_i g_i w_i x_i ; dw_i = Σ_n g_i x_i r
static void ref_rmsnorm_bwd(double* dx, double* dw, const float* g, const float* x, const float* w, int N, int H,
                            float eps) {
    for (int n = 0; n < N; n++) {
        const float* xn = x + (size_t)n * H;
        const float* gn = g + (size_t)n * H;
        double ss = 0.0, s = 0.0;
        for (int i = 0; i < H; i++) ss += (double)xn[i] * xn[i], s += (double)gn[i] * w[i] * xn[i];
        double r = 1.0 / sqrt(ss / H + eps);
        for (int j = 0; j < H; j++) {
            dx[(size_t)n * H + j] = r * gn[j] * w[j] - r * r * r * xn[j] * s / H;
            dw[j] += (double)gn[j] * xn[j] * r;
        }
    }
}

typedef struct {
    const Backend* be;
    int N, H;
    float eps;
    float *x, *w, *G, *out;
    float *d_x, *d_w, *d_out, *d_rstd;
} RmsCtx;
static double rms_loss(void* p) {
    RmsCtx* c = p;
    c->be->upload(c->d_x, c->x, sizeof(float) * c->N * c->H);
    c->be->upload(c->d_w, c->w, sizeof(float) * c->H);
    c->be->rmsnorm_forward(c->d_out, c->d_rstd, c->d_x, c->d_w, c->N, c->H, c->eps);
    dget(c->be, c->out, c->d_out, sizeof(float) * c->N * c->H);
    return dot_fd(c->G, c->out, (size_t)c->N * c->H);
}

static void test_rmsnorm_case(const Backend* be, int N, int H, int do_fd) {
    const float eps = 1e-5f;
    const size_t NH = (size_t)N * H;
    float* x = hnew(NH, -1, 1);
    x[0] = 3.0f;  // rows of different scale
    float* w = hnew(H, 0.5f, 1.5f);
    float* G = hnew(NH, -1, 1);
    float *out = hnew(NH, 0, 0), *out2 = hnew(NH, 0, 0), *rstd = hnew(N, 0, 0), *rstd2 = hnew(N, 0, 0);
    float *d_x = dnew(be, x, sizeof(float) * NH), *d_w = dnew(be, w, sizeof(float) * H);
    float *d_out = dnew(be, NULL, sizeof(float) * NH), *d_rstd = dnew(be, NULL, sizeof(float) * N);
    float* d_G = dnew(be, G, sizeof(float) * NH);
    char name[96];

    double *rout = dzeros(NH), *rr = dzeros(N);
    ref_rmsnorm(rout, rr, x, w, N, H, eps);
    be->rmsnorm_forward(d_out, d_rstd, d_x, d_w, N, H, eps);
    dget(be, out, d_out, sizeof(float) * NH);
    dget(be, rstd, d_rstd, sizeof(float) * N);
    snprintf(name, sizeof name, "rmsnorm_forward out (N=%d H=%d)", N, H);
    check_close(name, out, rout, NH, TOL_FWD);
    check_close("rmsnorm_forward rstd", rstd, rr, N, TOL_FWD);
    be->rmsnorm_forward(d_out, d_rstd, d_x, d_w, N, H, eps);
    dget(be, out2, d_out, sizeof(float) * NH);
    dget(be, rstd2, d_rstd, sizeof(float) * N);
    check_bitwise("rmsnorm_forward determinism", out, out2, sizeof(float) * NH);
    check_bitwise("rmsnorm_forward rstd determinism", rstd, rstd2, sizeof(float) * N);

    double *rdx = dzeros(NH), *rdw = dzeros(H);
    ref_rmsnorm_bwd(rdx, rdw, G, x, w, N, H, eps);
    float *dx = hnew(NH, 0, 0), *dw = hnew(H, 0, 0), *dx2 = hnew(NH, 0, 0), *dw2 = hnew(H, 0, 0);
    float *d_dx = dnew(be, NULL, sizeof(float) * NH), *d_dw = dnew(be, NULL, sizeof(float) * H);
    be->rmsnorm_backward(d_dx, d_dw, d_G, d_x, d_w, d_rstd, N, H);
    dget(be, dx, d_dx, sizeof(float) * NH);
    dget(be, dw, d_dw, sizeof(float) * H);
    check_close("rmsnorm_backward dinp vs ref", dx, rdx, NH, TOL_FWD);
    check_close("rmsnorm_backward dweight vs ref", dw, rdw, H, TOL_FWD);
    be->zero(d_dx, sizeof(float) * NH);
    be->zero(d_dw, sizeof(float) * H);
    be->rmsnorm_backward(d_dx, d_dw, d_G, d_x, d_w, d_rstd, N, H);
    dget(be, dx2, d_dx, sizeof(float) * NH);
    dget(be, dw2, d_dw, sizeof(float) * H);
    check_bitwise("rmsnorm_backward dinp determinism", dx, dx2, sizeof(float) * NH);
    check_bitwise("rmsnorm_backward dweight determinism", dw, dw2, sizeof(float) * H);

    if (do_fd) {
        RmsCtx c = {be, N, H, eps, x, w, G, out, d_x, d_w, d_out, d_rstd};
        check_fd("rmsnorm_backward dinp", rms_loss, &c, x, NH, 1, dx);
        check_fd("rmsnorm_backward dweight", rms_loss, &c, w, H, 1, dw);
        be->upload(d_x, x, sizeof(float) * NH);
        be->upload(d_w, w, sizeof(float) * H);
        be->rmsnorm_forward(d_out, d_rstd, d_x, d_w, N, H, eps);

        // dinp "+=" from a random D0; dweight accumulates: called twice it holds D0 + 2 dinp, 2 dweight.
        float* D0 = hnew(NH, -1, 1);
        be->upload(d_dx, D0, sizeof(float) * NH);
        be->zero(d_dw, sizeof(float) * H);
        be->rmsnorm_backward(d_dx, d_dw, d_G, d_x, d_w, d_rstd, N, H);
        be->rmsnorm_backward(d_dx, d_dw, d_G, d_x, d_w, d_rstd, N, H);
        dget(be, dx2, d_dx, sizeof(float) * NH);
        dget(be, dw2, d_dw, sizeof(float) * H);
        double *e1 = dzeros(NH), *e2 = dzeros(H);
        for (size_t i = 0; i < NH; i++) e1[i] = D0[i] + 2.0 * rdx[i];
        for (int i = 0; i < H; i++) e2[i] = 2.0 * rdw[i];
        check_close("rmsnorm_backward twice: dinp = D0 + 2 dx (+=)", dx2, e1, NH, TOL_FWD);
        check_close("rmsnorm_backward twice: dweight = 2 dw (+=)", dw2, e2, H, TOL_FWD);
        free(D0), free(e1), free(e2);
    }
    free(x), free(w), free(G), free(out), free(out2), free(rstd), free(rstd2), free(rout), free(rr);
    free(rdx), free(rdw), free(dx), free(dw), free(dx2), free(dw2);
    be->free(d_x), be->free(d_w), be->free(d_out), be->free(d_rstd), be->free(d_G), be->free(d_dx), be->free(d_dw);
}
// The fused residual add + norm must give exactly what the add followed by the norm gives on the
// same backend (the same arithmetic in the same order), and match the C reference of the pair.
static void test_add_rmsnorm(const Backend* be, int N, int H) {
    const size_t n = (size_t)N * H;
    float *a = hnew(n, -2, 2), *b = hnew(n, -2, 2), *w = hnew(H, 0.5f, 1.5f);
    float *sum = malloc(sizeof(float) * n), *out = malloc(sizeof(float) * n), *rstd = malloc(sizeof(float) * N);
    float *sum2 = malloc(sizeof(float) * n), *out2 = malloc(sizeof(float) * n), *rstd2 = malloc(sizeof(float) * N);
    float *d_a = dnew(be, a, sizeof(float) * n), *d_b = dnew(be, b, sizeof(float) * n), *d_w = dnew(be, w, sizeof(float) * H);
    float *d_s = dnew(be, NULL, sizeof(float) * n), *d_o = dnew(be, NULL, sizeof(float) * n);
    float* d_r = dnew(be, NULL, sizeof(float) * N);
    be->add_rmsnorm_forward(d_s, d_o, d_r, d_a, d_b, d_w, N, H, 1e-5f);
    dget(be, sum, d_s, sizeof(float) * n);
    dget(be, out, d_o, sizeof(float) * n);
    dget(be, rstd, d_r, sizeof(float) * N);
    be->add(d_s, d_a, d_b, n);  // the unfused pair
    be->rmsnorm_forward(d_o, d_r, d_s, d_w, N, H, 1e-5f);
    dget(be, sum2, d_s, sizeof(float) * n);
    dget(be, out2, d_o, sizeof(float) * n);
    dget(be, rstd2, d_r, sizeof(float) * N);
    CHECK(!memcmp(sum, sum2, sizeof(float) * n) && !memcmp(out, out2, sizeof(float) * n) &&
              !memcmp(rstd, rstd2, sizeof(float) * N),
          "add_rmsnorm_forward (N=%d H=%d) differs from add + rmsnorm_forward on %s", N, H, be->name);
    double *rs = dzeros(n), *ro = dzeros(n);  // double reference of the pair
    for (int r = 0; r < N; r++) {
        double ss = 0;
        for (int i = 0; i < H; i++) {
            const size_t k = (size_t)r * H + i;
            rs[k] = (double)a[k] + b[k];
            ss += rs[k] * rs[k];
        }
        double inv = 1.0 / sqrt(ss / H + 1e-5);
        for (int i = 0; i < H; i++) ro[(size_t)r * H + i] = w[i] * rs[(size_t)r * H + i] * inv;
    }
    char what[64];
    snprintf(what, sizeof what, "add_rmsnorm_forward out (N=%d H=%d)", N, H);
    check_close(what, out, ro, n, TOL_FWD);
    be->free(d_a), be->free(d_b), be->free(d_w), be->free(d_s), be->free(d_o), be->free(d_r);
    free(a), free(b), free(w), free(sum), free(out), free(rstd), free(sum2), free(out2), free(rstd2), free(rs), free(ro);
}

static void test_rmsnorm(const Backend* be) {
    printf("rmsnorm\n");
    test_rmsnorm_case(be, 5, 12, 1);
    test_rmsnorm_case(be, 3, 1000, 0);
    test_rmsnorm_case(be, 4, 37, 0);     // width not a multiple of a 16-byte pack: the scalar path
    test_rmsnorm_case(be, 300, 2100, 0);  // more rows than the CUDA backward's blocks: several rows per block
    test_add_rmsnorm(be, 7, 40);
    test_add_rmsnorm(be, 3, 1000);
}

// ---- matmul ------------------------------------------------------------------------------------

typedef struct {
    const Backend* be;
    int N, IN, OUT;
    float *x, *w, *G, *out;
    float *d_x, *d_w, *d_out;
} MmCtx;
static double mm_loss(void* p) {
    MmCtx* c = p;
    c->be->upload(c->d_x, c->x, sizeof(float) * c->N * c->IN);
    c->be->upload(c->d_w, c->w, sizeof(float) * c->OUT * c->IN);
    c->be->matmul_forward(c->d_out, c->d_x, c->d_w, c->N, c->IN, c->OUT);
    dget(c->be, c->out, c->d_out, sizeof(float) * c->N * c->OUT);
    return dot_fd(c->G, c->out, (size_t)c->N * c->OUT);
}

static void test_matmul_case(const Backend* be, int N, int IN, int OUT, int do_fd) {
    const size_t nx = (size_t)N * IN, nw = (size_t)OUT * IN, no = (size_t)N * OUT;
    float *x = hnew(nx, -1, 1), *w = hnew(nw, -1, 1), *G = hnew(no, -1, 1);
    float *out = hnew(no, 0, 0), *out2 = hnew(no, 0, 0);
    float *d_x = dnew(be, x, sizeof(float) * nx), *d_w = dnew(be, w, sizeof(float) * nw);
    float *d_out = dnew(be, NULL, sizeof(float) * no), *d_G = dnew(be, G, sizeof(float) * no);
    char name[96];

    double *rout = dzeros(no), *rdx = dzeros(nx), *rdw = dzeros(nw);
    double *aout = dzeros(no), *adx = dzeros(nx), *adw = dzeros(nw);  // Σ|a b| of each element (gemm_tol)
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OUT; o++) {
            double s = 0.0, sa = 0.0;
            for (int i = 0; i < IN; i++) {
                const double t = (double)x[(size_t)n * IN + i] * w[(size_t)o * IN + i];
                s += t;
                sa += fabs(t);
            }
            rout[(size_t)n * OUT + o] = s;
            aout[(size_t)n * OUT + o] = sa;
            for (int i = 0; i < IN; i++) {
                rdx[(size_t)n * IN + i] += (double)G[(size_t)n * OUT + o] * w[(size_t)o * IN + i];
                rdw[(size_t)o * IN + i] += (double)G[(size_t)n * OUT + o] * x[(size_t)n * IN + i];
                adx[(size_t)n * IN + i] += fabs((double)G[(size_t)n * OUT + o] * w[(size_t)o * IN + i]);
                adw[(size_t)o * IN + i] += fabs((double)G[(size_t)n * OUT + o] * x[(size_t)n * IN + i]);
            }
        }
    const double tol_out = gemm_tol(aout, rout, no, IN), tol_dx = gemm_tol(adx, rdx, nx, OUT);
    const double tol_dw = gemm_tol(adw, rdw, nw, N);
    be->matmul_forward(d_out, d_x, d_w, N, IN, OUT);
    dget(be, out, d_out, sizeof(float) * no);
    snprintf(name, sizeof name, "matmul_forward (N=%d IN=%d OUT=%d)", N, IN, OUT);
    check_close(name, out, rout, no, tol_out);
    be->matmul_forward(d_out, d_x, d_w, N, IN, OUT);
    dget(be, out2, d_out, sizeof(float) * no);
    check_bitwise("matmul_forward determinism", out, out2, sizeof(float) * no);

    // dinp is overwritten (start from garbage), dweight accumulates (start from zero).
    float *dx = hnew(nx, -5, 5), *dw = hnew(nw, 0, 0), *dx2 = hnew(nx, 0, 0), *dw2 = hnew(nw, 0, 0);
    float *d_dx = dnew(be, dx, sizeof(float) * nx), *d_dw = dnew(be, NULL, sizeof(float) * nw);
    be->matmul_backward(d_dx, d_dw, d_G, d_x, d_w, N, IN, OUT, 0);
    dget(be, dx, d_dx, sizeof(float) * nx);
    dget(be, dw, d_dw, sizeof(float) * nw);
    check_close("matmul_backward dinp (overwrites) vs ref", dx, rdx, nx, tol_dx);
    check_close("matmul_backward dweight vs ref", dw, rdw, nw, tol_dw);
    be->zero(d_dw, sizeof(float) * nw);
    be->matmul_backward(d_dx, d_dw, d_G, d_x, d_w, N, IN, OUT, 0);
    dget(be, dx2, d_dx, sizeof(float) * nx);
    dget(be, dw2, d_dw, sizeof(float) * nw);
    check_bitwise("matmul_backward dinp determinism", dx, dx2, sizeof(float) * nx);
    check_bitwise("matmul_backward dweight determinism", dw, dw2, sizeof(float) * nw);

    if (!do_fd) goto done;
    MmCtx c = {be, N, IN, OUT, x, w, G, out, d_x, d_w, d_out};
    check_fd("matmul_backward dinp", mm_loss, &c, x, nx, 1, dx);
    check_fd("matmul_backward dweight", mm_loss, &c, w, nw, 1, dw);
    be->upload(d_x, x, sizeof(float) * nx);
    be->upload(d_w, w, sizeof(float) * nw);

    // accumulate_dinp = 1 adds to D0; dweight called twice doubles.
    float* D0 = hnew(nx, -1, 1);
    double *e1 = dzeros(nx), *e2 = dzeros(nw);
    for (size_t i = 0; i < nx; i++) e1[i] = D0[i] + rdx[i];
    for (size_t i = 0; i < nw; i++) e2[i] = 2.0 * rdw[i];
    for (size_t i = 0; i < nw; i++) adw[i] *= 2.0;  // two products added
    be->upload(d_dx, D0, sizeof(float) * nx);
    be->zero(d_dw, sizeof(float) * nw);
    be->matmul_backward(d_dx, d_dw, d_G, d_x, d_w, N, IN, OUT, 1);
    be->matmul_backward(NULL, d_dw, d_G, d_x, d_w, N, IN, OUT, 0);  // dinp NULL: dweight only
    dget(be, dx2, d_dx, sizeof(float) * nx);
    dget(be, dw2, d_dw, sizeof(float) * nw);
    check_close("matmul_backward accumulate_dinp=1: D0 + dx", dx2, e1, nx, gemm_tol(adx, e1, nx, OUT));
    check_close("matmul_backward dinp=NULL, twice: dweight = 2 dw", dw2, e2, nw, gemm_tol(adw, e2, nw, 2 * N));
    be->upload(d_dx, D0, sizeof(float) * nx);
    be->matmul_backward(d_dx, NULL, d_G, d_x, d_w, N, IN, OUT, 0);  // frozen weight
    dget(be, dx2, d_dx, sizeof(float) * nx);
    dget(be, dw, d_dw, sizeof(float) * nw);
    check_close("matmul_backward dweight=NULL: dinp", dx2, rdx, nx, tol_dx);
    check_bitwise("matmul_backward dweight=NULL leaves dweight", dw, dw2, sizeof(float) * nw);
    free(D0), free(e1), free(e2);
done:
    free(x), free(w), free(G), free(out), free(out2), free(rout), free(rdx), free(rdw);
    free(aout), free(adx), free(adw);
    free(dx), free(dw), free(dx2), free(dw2);
    be->free(d_x), be->free(d_w), be->free(d_out), be->free(d_G), be->free(d_dx), be->free(d_dw);
}
// The CPU kernel's promise for up to 32 rows (kernels/cpu/matmul.c): a row's output is bitwise the
// same whatever batch it is computed in, which makes batched generation equal to one request at a time.
static void test_matmul_rows_alone(const Backend* be) {
    const int shapes[][2] = {{64, 24}, {40, 13}, {576, 44}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int IN = shapes[s][0], OUT = shapes[s][1], NMAX = 32;
        float *x = hnew((size_t)NMAX * IN, -1, 1), *w = hnew((size_t)OUT * IN, -1, 1);
        float *all = hnew((size_t)NMAX * OUT, 0, 0), *one = hnew(OUT, 0, 0);
        float *d_x = dnew(be, x, sizeof(float) * NMAX * IN), *d_w = dnew(be, w, sizeof(float) * OUT * IN);
        float* d_out = dnew(be, NULL, sizeof(float) * NMAX * OUT);
        int differ = 0, worst_n = 0;
        for (int N = 1; N <= NMAX; N++) {
            be->matmul_forward(d_out, d_x, d_w, N, IN, OUT);
            dget(be, all, d_out, sizeof(float) * N * OUT);
            for (int r = 0; r < N; r++) {
                be->matmul_forward(d_out, d_x + (size_t)r * IN, d_w, 1, IN, OUT);
                dget(be, one, d_out, sizeof(float) * OUT);
                if (memcmp(one, all + (size_t)r * OUT, sizeof(float) * OUT)) differ++, worst_n = N;
            }
        }
        CHECK(!differ, "matmul_forward IN=%d OUT=%d: %d rows of batches up to 32 differ from the row alone (N=%d)", IN,
              OUT, differ, worst_n);
        free(x), free(w), free(all), free(one);
        be->free(d_x), be->free(d_w), be->free(d_out);
    }
}

static jmp_buf refused_jump;
static void refused_hook(void) { longjmp(refused_jump, 1); }

static void test_matmul(const Backend* be) {
    printf("matmul\n");
    // IN and OUT multiples of 8: every cuBLASLt operand 16-byte aligned, as the model's shapes are
    test_matmul_case(be, 5, 16, 8, 1);
    test_matmul_case(be, 33, 72, 64, 0);
    test_matmul_case(be, 7, 16, 1, 1);  // OUT = 1 (the mixing head's Linear(H -> 1)): vector operands
    if (!strcmp(be->name, "cpu")) {  // the C reference takes any shape
        test_matmul_case(be, 5, 12, 7, 1);
        test_matmul_case(be, 33, 70, 65, 0);
        // the few-rows kernel (N <= 32): passes of 1..6 rows past blocks of 4 weight rows, column counts
        // with and without a ragged tail of 16 (lane 0) and of 4 (few_rows_one)
        test_matmul_case(be, 1, 48, 9, 0);
        test_matmul_case(be, 16, 64, 24, 0);
        test_matmul_case(be, 13, 40, 13, 0);
        test_matmul_case(be, 32, 1536 + 8, 20, 0);
        test_matmul_rows_alone(be);
    } else {  // lt_gemm refuses an operand that is not 16-byte aligned, with an error naming the product
        float* d = dnew(be, NULL, sizeof(float) * 5 * 12 * 7);
        printf("  (an error about a misaligned operand is expected next)\n");
        fatal_set_hook(refused_hook);
        int refused = setjmp(refused_jump);
        if (!refused) be->matmul_forward(d, d, d, 5, 12, 7);
        fatal_set_hook(NULL);
        CHECK(refused, "matmul_forward (N=5 IN=12 OUT=7): a leading dimension of 12 or 7 floats was accepted");
        be->free(d);
    }
}

// ---- RoPE ------------------------------------------------------------------------------------------

// Rotate-half, angle = pos * theta^(-2j/HD) formed in fp32 as ops.h specifies (so large positions
// round the same way); the rotation itself in double. sign -1 is the transpose (inverse) rotation.
static void ref_rope(double* y, const float* x, const int32_t* pos, int N, int NH, int NKV, int HD, float theta,
                     int sign) {
    const int C3 = (NH + 2 * NKV) * HD, half = HD / 2;
    for (size_t i = 0; i < (size_t)N * C3; i++) y[i] = x[i];
    for (int n = 0; n < N; n++)
        for (int h = 0; h < NH + NKV; h++)
            for (int j = 0; j < half; j++) {
                float inv_freq = 1.0f / powf(theta, (float)(2 * j) / (float)HD);
                float angle = (float)pos[n] * inv_freq;
                double c = cos((double)angle), s = sign * sin((double)angle);
                size_t a = (size_t)n * C3 + h * HD + j, b = a + half;
                y[a] = x[a] * c - x[b] * s;
                y[b] = x[b] * c + x[a] * s;
            }
}

typedef struct {
    const Backend* be;
    int N, NH, NKV, HD;
    float theta;
    float *x, *G, *out;
    float* d_x;
    int32_t* d_pos;
} RopeCtx;
static double rope_loss(void* p) {
    RopeCtx* c = p;
    size_t n = (size_t)c->N * (c->NH + 2 * c->NKV) * c->HD;
    c->be->upload(c->d_x, c->x, sizeof(float) * n);
    c->be->rope_forward(c->d_x, c->d_pos, c->N, c->NH, c->NKV, c->HD, c->theta);
    dget(c->be, c->out, c->d_x, sizeof(float) * n);
    return dot_fd(c->G, c->out, n);
}

static void test_rope_case(const Backend* be, int N, int NH, int NKV, int HD, const int32_t* pos, int do_fd) {
    const float theta = 10000.0f;
    const int C3 = (NH + 2 * NKV) * HD, vcol = (NH + NKV) * HD;
    const size_t n = (size_t)N * C3;
    float *x = hnew(n, -1, 1), *G = hnew(n, -1, 1), *out = hnew(n, 0, 0), *out2 = hnew(n, 0, 0);
    float *d_x = dnew(be, x, sizeof(float) * n), *d_G = dnew(be, G, sizeof(float) * n);
    int32_t* d_pos = dnew(be, pos, sizeof(int32_t) * N);
    double* ref = dzeros(n);
    char name[96];

    be->rope_forward(d_x, d_pos, N, NH, NKV, HD, theta);
    dget(be, out, d_x, sizeof(float) * n);
    ref_rope(ref, x, pos, N, NH, NKV, HD, theta, 1);
    snprintf(name, sizeof name, "rope_forward (HD=%d, pos up to %d)", HD, pos[N - 1]);
    check_close(name, out, ref, n, TOL_FWD);
    int vsame = 1;
    for (int r = 0; r < N; r++)
        vsame &= !memcmp(out + (size_t)r * C3 + vcol, x + (size_t)r * C3 + vcol, sizeof(float) * NKV * HD);
    CHECK(vsame, "rope_forward changed the value heads");
    be->upload(d_x, x, sizeof(float) * n);
    be->rope_forward(d_x, d_pos, N, NH, NKV, HD, theta);
    dget(be, out2, d_x, sizeof(float) * n);
    check_bitwise("rope_forward determinism", out, out2, sizeof(float) * n);

    // backward = transpose rotation of G, values pass through
    be->rope_backward(d_G, d_pos, N, NH, NKV, HD, theta);
    float* dx = hnew(n, 0, 0);
    dget(be, dx, d_G, sizeof(float) * n);
    ref_rope(ref, G, pos, N, NH, NKV, HD, theta, -1);
    check_close("rope_backward vs transpose ref", dx, ref, n, TOL_FWD);
    vsame = 1;
    for (int r = 0; r < N; r++)
        vsame &= !memcmp(dx + (size_t)r * C3 + vcol, G + (size_t)r * C3 + vcol, sizeof(float) * NKV * HD);
    CHECK(vsame, "rope_backward changed the value-head gradients");
    be->upload(d_G, G, sizeof(float) * n);
    be->rope_backward(d_G, d_pos, N, NH, NKV, HD, theta);
    dget(be, out2, d_G, sizeof(float) * n);
    check_bitwise("rope_backward determinism", dx, out2, sizeof(float) * n);
    if (do_fd) {
        RopeCtx c = {be, N, NH, NKV, HD, theta, x, G, out, d_x, d_pos};
        check_fd("rope_backward", rope_loss, &c, x, n, 1, dx);
    }
    free(x), free(G), free(out), free(out2), free(ref), free(dx);
    be->free(d_x), be->free(d_G), be->free(d_pos);
}
static void test_rope(const Backend* be) {
    printf("rope\n");
    const int32_t pos1[6] = {0, 1, 7, 3, 130, 4095};  // per-row positions need not increase
    test_rope_case(be, 6, 4, 2, 8, pos1, 1);
    const int32_t pos2[4] = {2, 511, 2047, 32000};
    test_rope_case(be, 4, 2, 1, 64, pos2, 0);
}

// ---- attention (causal GQA, thought attention, cached attention) -----------------------------------

// One query against n key/value rows, in double: out (HD) and the log-sum-exp of the scaled scores.
// With dout given, also the backward: dq +=, dks[j] +=, dvs[j] += (dS = P ∘ (dP − Σ P dP)).
static double ref_attend(double* out, const float* q, const float* const* ks, const float* const* vs, int n, int HD,
                         const float* dout, double* dq, double* const* dks, double* const* dvs) {
    const double scale = 1.0 / sqrt((double)HD);
    double* p = malloc(sizeof(double) * n);
    double mx = -INFINITY, sum = 0.0;
    for (int j = 0; j < n; j++) {
        double s = 0.0;
        for (int d = 0; d < HD; d++) s += (double)q[d] * ks[j][d];
        p[j] = s * scale;
        if (p[j] > mx) mx = p[j];
    }
    for (int j = 0; j < n; j++) sum += (p[j] = exp(p[j] - mx));
    for (int d = 0; d < HD; d++) out[d] = 0.0;
    for (int j = 0; j < n; j++) {
        p[j] /= sum;
        for (int d = 0; d < HD; d++) out[d] += p[j] * vs[j][d];
    }
    if (dout) {
        double* dp = malloc(sizeof(double) * n);
        double pdp = 0.0;
        for (int j = 0; j < n; j++) {
            dp[j] = 0.0;
            for (int d = 0; d < HD; d++) dp[j] += (double)dout[d] * vs[j][d];
            pdp += p[j] * dp[j];
        }
        for (int j = 0; j < n; j++) {
            double ds = p[j] * (dp[j] - pdp) * scale;
            for (int d = 0; d < HD; d++) {
                dq[d] += ds * ks[j][d];
                dks[j][d] += ds * q[d];
                dvs[j][d] += p[j] * dout[d];
            }
        }
        free(dp);
    }
    free(p);
    return mx + log(sum);
}

// Causal attention of each (b, h, i) over rows 0..i of its batch, kv head h / (NH/NKV).
static void ref_attention(double* out, double* lse, const float* qkv, int B, int T, int NH, int NKV, int HD,
                          const float* dout, double* dqkv) {
    const int C3 = (NH + 2 * NKV) * HD, CO = NH * HD;
    const float** ks = malloc(sizeof(float*) * T);
    const float** vs = malloc(sizeof(float*) * T);
    double** dks = malloc(sizeof(double*) * T);
    double** dvs = malloc(sizeof(double*) * T);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            const int g = h / (NH / NKV);
            for (int j = 0; j < T; j++) {
                size_t row = ((size_t)b * T + j) * C3;
                ks[j] = qkv + row + (NH + g) * HD;
                vs[j] = qkv + row + (NH + NKV + g) * HD;
                if (dqkv) dks[j] = dqkv + row + (NH + g) * HD, dvs[j] = dqkv + row + (NH + NKV + g) * HD;
            }
            for (int i = 0; i < T; i++) {
                size_t row = (size_t)b * T + i;
                lse[((size_t)b * NH + h) * T + i] =
                    ref_attend(out + row * CO + h * HD, qkv + row * C3 + h * HD, ks, vs, i + 1, HD,
                               dout ? dout + row * CO + h * HD : NULL, dqkv ? dqkv + row * C3 + h * HD : NULL, dks, dvs);
            }
        }
    free(ks), free(vs), free(dks), free(dvs);
}

typedef struct {
    const Backend* be;
    int B, T, NH, NKV, HD;
    float *qkv, *G, *out;
    float *d_qkv, *d_out, *d_lse;
} AttnCtx;
static double attn_loss(void* p) {
    AttnCtx* c = p;
    size_t n = (size_t)c->B * c->T * (c->NH + 2 * c->NKV) * c->HD, no = (size_t)c->B * c->T * c->NH * c->HD;
    c->be->upload(c->d_qkv, c->qkv, sizeof(float) * n);
    c->be->attention_forward(c->d_out, c->d_lse, c->d_qkv, c->B, c->T, c->NH, c->NKV, c->HD);
    dget(c->be, c->out, c->d_out, sizeof(float) * no);
    return dot_fd(c->G, c->out, no);
}

// fd_every: 0 skips finite differences, else the stride of the sampled inputs.
static void test_attention_case(const Backend* be, int B, int T, int NH, int NKV, int HD, size_t fd_every) {
    const int C3 = (NH + 2 * NKV) * HD;
    const size_t n = (size_t)B * T * C3, no = (size_t)B * T * NH * HD, nl = (size_t)B * NH * T;
    float *qkv = hnew(n, -1.5f, 1.5f), *G = hnew(no, -1, 1);
    float *out = hnew(no, 0, 0), *out2 = hnew(no, 0, 0), *lse = hnew(nl, 0, 0), *lse2 = hnew(nl, 0, 0);
    float *dqkv = hnew(n, 0, 0), *dqkv2 = hnew(n, 0, 0);
    float *d_qkv = dnew(be, qkv, sizeof(float) * n), *d_G = dnew(be, G, sizeof(float) * no);
    float *d_out = dnew(be, NULL, sizeof(float) * no), *d_lse = dnew(be, NULL, sizeof(float) * nl);
    float* d_dqkv = dnew(be, NULL, sizeof(float) * n);
    double *rout = dzeros(no), *rlse = dzeros(nl), *rdqkv = dzeros(n);
    char name[128];

    ref_attention(rout, rlse, qkv, B, T, NH, NKV, HD, G, rdqkv);
    be->attention_forward(d_out, d_lse, d_qkv, B, T, NH, NKV, HD);
    dget(be, out, d_out, sizeof(float) * no);
    dget(be, lse, d_lse, sizeof(float) * nl);
    snprintf(name, sizeof name, "attention_forward out (B=%d T=%d NH=%d NKV=%d HD=%d)", B, T, NH, NKV, HD);
    check_close(name, out, rout, no, TOL_FWD);
    check_close("attention_forward lse", lse, rlse, nl, TOL_FWD);
    be->attention_forward(d_out, d_lse, d_qkv, B, T, NH, NKV, HD);
    dget(be, out2, d_out, sizeof(float) * no);
    dget(be, lse2, d_lse, sizeof(float) * nl);
    check_bitwise("attention_forward determinism", out, out2, sizeof(float) * no);
    check_bitwise("attention_forward lse determinism", lse, lse2, sizeof(float) * nl);

    float* junk = hnew(n, -9, 9);  // dqkv is overwritten: start from garbage
    be->upload(d_dqkv, junk, sizeof(float) * n);
    be->attention_backward(d_dqkv, d_G, d_out, d_lse, d_qkv, B, T, NH, NKV, HD);
    dget(be, dqkv, d_dqkv, sizeof(float) * n);
    check_close("attention_backward dqkv vs ref", dqkv, rdqkv, n, TOL_FWD);
    be->upload(d_dqkv, junk, sizeof(float) * n);
    be->attention_backward(d_dqkv, d_G, d_out, d_lse, d_qkv, B, T, NH, NKV, HD);
    dget(be, dqkv2, d_dqkv, sizeof(float) * n);
    check_bitwise("attention_backward determinism", dqkv, dqkv2, sizeof(float) * n);
    if (fd_every) {
        AttnCtx c = {be, B, T, NH, NKV, HD, qkv, G, out, d_qkv, d_out, d_lse};
        check_fd("attention_backward dqkv", attn_loss, &c, qkv, n, fd_every, dqkv);
    }
    free(qkv), free(G), free(out), free(out2), free(lse), free(lse2), free(dqkv), free(dqkv2), free(junk);
    free(rout), free(rlse), free(rdqkv);
    be->free(d_qkv), be->free(d_G), be->free(d_out), be->free(d_lse), be->free(d_dqkv);
}
static void test_attention(const Backend* be) {
    printf("attention\n");
    test_attention_case(be, 2, 7, 4, 2, 8, 1);    // GQA, T not a multiple of the block
    test_attention_case(be, 1, 5, 3, 3, 4, 1);    // plain multi-head
    test_attention_case(be, 1, 130, 2, 1, 4, 7);  // crosses the 128-row query block
    test_attention_case(be, 2, 200, 4, 1, 8, 53);
}

// Thought attention reference: the step-k query at (r, i) sees step-0 keys of slots 0..i, then the
// keys of its own slot i at steps 1..k. Blocks of step j start at qkv + j*stride.
static void ref_thought_attention(double* out, double* lse, const float* qkv, size_t stride, int k, int R, int L,
                                  int NH, int NKV, int HD, const float* dout, double* dqkv) {
    const int C3 = (NH + 2 * NKV) * HD, CO = NH * HD, n = L + k;
    const float** ks = malloc(sizeof(float*) * n);
    const float** vs = malloc(sizeof(float*) * n);
    double** dks = malloc(sizeof(double*) * n);
    double** dvs = malloc(sizeof(double*) * n);
    for (int r = 0; r < R; r++)
        for (int h = 0; h < NH; h++)
            for (int i = 0; i < L; i++) {
                const int g = h / (NH / NKV);
                int m = 0;
                for (int j = 0; j <= i + k; j++, m++) {
                    size_t off = j <= i ? ((size_t)r * L + j) * C3 : (j - i) * stride + ((size_t)r * L + i) * C3;
                    ks[m] = qkv + off + (NH + g) * HD;
                    vs[m] = qkv + off + (NH + NKV + g) * HD;
                    if (dqkv) dks[m] = dqkv + off + (NH + g) * HD, dvs[m] = dqkv + off + (NH + NKV + g) * HD;
                }
                size_t row = (size_t)r * L + i;
                size_t qoff = k * stride + row * C3 + h * HD;
                lse[((size_t)r * NH + h) * L + i] =
                    ref_attend(out + row * CO + h * HD, qkv + qoff, ks, vs, m, HD, dout ? dout + row * CO + h * HD : NULL,
                               dqkv ? dqkv + qoff : NULL, dks, dvs);
            }
    free(ks), free(vs), free(dks), free(dvs);
}

typedef struct {
    const Backend* be;
    size_t stride, ntot;
    int k, R, L, NH, NKV, HD;
    float *qkv, *G, *out;
    float *d_qkv, *d_out, *d_lse;
} TaCtx;
static double ta_loss(void* p) {
    TaCtx* c = p;
    size_t no = (size_t)c->R * c->L * c->NH * c->HD;
    c->be->upload(c->d_qkv, c->qkv, sizeof(float) * c->ntot);
    c->be->thought_attention_forward(c->d_out, c->d_lse, c->d_qkv, c->stride, c->k, c->R, c->L, c->NH, c->NKV, c->HD);
    dget(c->be, c->out, c->d_out, sizeof(float) * no);
    return dot_fd(c->G, c->out, no);
}

static void test_thought_attention_case(const Backend* be, int k, int R, int L, int NH, int NKV, int HD,
                                        size_t fd_every) {
    const int C3 = (NH + 2 * NKV) * HD;
    const size_t stride = (size_t)R * L * C3 + 24;  // padding between steps must stay untouched
    const size_t ntot = (k + 1) * stride, no = (size_t)R * L * NH * HD, nl = (size_t)R * NH * L;
    float *qkv = hnew(ntot, -1.5f, 1.5f), *G = hnew(no, -1, 1);
    float *out = hnew(no, 0, 0), *out2 = hnew(no, 0, 0), *lse = hnew(nl, 0, 0), *lse2 = hnew(nl, 0, 0);
    float *D0 = hnew(ntot, -1, 1), *dqkv = hnew(ntot, 0, 0), *dqkv2 = hnew(ntot, 0, 0);
    float *d_qkv = dnew(be, qkv, sizeof(float) * ntot), *d_G = dnew(be, G, sizeof(float) * no);
    float *d_out = dnew(be, NULL, sizeof(float) * no), *d_lse = dnew(be, NULL, sizeof(float) * nl);
    float* d_dqkv = dnew(be, NULL, sizeof(float) * ntot);
    double *rout = dzeros(no), *rlse = dzeros(nl), *rd = dzeros(ntot);
    char name[128];

    ref_thought_attention(rout, rlse, qkv, stride, k, R, L, NH, NKV, HD, G, rd);
    be->thought_attention_forward(d_out, d_lse, d_qkv, stride, k, R, L, NH, NKV, HD);
    dget(be, out, d_out, sizeof(float) * no);
    dget(be, lse, d_lse, sizeof(float) * nl);
    snprintf(name, sizeof name, "thought_attention_forward (k=%d R=%d L=%d NH=%d NKV=%d)", k, R, L, NH, NKV);
    check_close(name, out, rout, no, TOL_FWD);
    check_close("thought_attention_forward lse", lse, rlse, nl, TOL_FWD);
    be->thought_attention_forward(d_out, d_lse, d_qkv, stride, k, R, L, NH, NKV, HD);
    dget(be, out2, d_out, sizeof(float) * no);
    dget(be, lse2, d_lse, sizeof(float) * nl);
    check_bitwise("thought_attention_forward determinism", out, out2, sizeof(float) * no);
    check_bitwise("thought_attention_forward lse determinism", lse, lse2, sizeof(float) * nl);

    // backward accumulates into every step's block: from zero against the reference, from D0 as +=
    be->thought_attention_backward(d_dqkv, d_G, d_out, d_lse, d_qkv, stride, k, R, L, NH, NKV, HD);
    dget(be, dqkv, d_dqkv, sizeof(float) * ntot);
    check_close("thought_attention_backward dqkv vs ref", dqkv, rd, ntot, TOL_FWD);
    be->upload(d_dqkv, D0, sizeof(float) * ntot);
    be->thought_attention_backward(d_dqkv, d_G, d_out, d_lse, d_qkv, stride, k, R, L, NH, NKV, HD);
    dget(be, dqkv2, d_dqkv, sizeof(float) * ntot);
    for (size_t i = 0; i < ntot; i++) rd[i] += D0[i];
    check_close("thought_attention_backward from D0 (+=)", dqkv2, rd, ntot, TOL_FWD);
    be->zero(d_dqkv, sizeof(float) * ntot);
    be->thought_attention_backward(d_dqkv, d_G, d_out, d_lse, d_qkv, stride, k, R, L, NH, NKV, HD);
    dget(be, dqkv2, d_dqkv, sizeof(float) * ntot);
    check_bitwise("thought_attention_backward determinism", dqkv, dqkv2, sizeof(float) * ntot);
    if (fd_every) {
        TaCtx c = {be, stride, ntot, k, R, L, NH, NKV, HD, qkv, G, out, d_qkv, d_out, d_lse};
        check_fd("thought_attention_backward dqkv", ta_loss, &c, qkv, ntot, fd_every, dqkv);
    }
    free(qkv), free(G), free(out), free(out2), free(lse), free(lse2), free(D0), free(dqkv), free(dqkv2);
    free(rout), free(rlse), free(rd);
    be->free(d_qkv), be->free(d_G), be->free(d_out), be->free(d_lse), be->free(d_dqkv);
}
static void test_thought_attention(const Backend* be) {
    printf("thought_attention\n");
    test_thought_attention_case(be, 2, 2, 5, 4, 2, 4, 1);
    test_thought_attention_case(be, 0, 2, 6, 2, 1, 4, 1);  // k = 0: plain causal attention
    test_thought_attention_case(be, 1, 1, 131, 2, 1, 4, 29);
}

// One row against n1 text and n2 thought keys. The shapes cover the CUDA kernel's split-KV (one split
// up to 64 keys, several above, a last split shorter than the others) and its GQA packing (group sizes
// 1, 2, 3, 4, 8 and 12, beyond the 8 warps of a block, and MQA), head dims 8, 64, 100 and 128, and
// no keys at all (out = 0).
static void test_cached_case(const Backend* be, int NH, int NKV, int HD, int n1, int n2) {
    const int KW = NKV * HD, n = n1 + n2;
    float *q = hnew(NH * HD, -1.5f, 1.5f), *k1 = hnew((size_t)n1 * KW, -1.5f, 1.5f), *v1 = hnew((size_t)n1 * KW, -1, 1);
    float *k2 = hnew((size_t)n2 * KW, -1.5f, 1.5f), *v2 = hnew((size_t)n2 * KW, -1, 1), *out = hnew(NH * HD, 0, 0);
    float *out2 = hnew(NH * HD, 0, 0);
    float *d_q = dnew(be, q, sizeof(float) * NH * HD), *d_out = dnew(be, NULL, sizeof(float) * NH * HD);
    float *d_k1 = dnew(be, k1, sizeof(float) * n1 * KW), *d_v1 = dnew(be, v1, sizeof(float) * n1 * KW);
    float *d_k2 = dnew(be, k2, sizeof(float) * n2 * KW), *d_v2 = dnew(be, v2, sizeof(float) * n2 * KW);
    double* ref = dzeros(NH * HD);
    const float** ks = malloc(sizeof(float*) * (n ? n : 1));
    const float** vs = malloc(sizeof(float*) * (n ? n : 1));
    char name[96];
    for (int m2 = n2; m2 >= 0; m2 -= n2 ? n2 : 1) {  // with the thought part, then text only
        for (int h = 0; h < NH; h++) {
            const int g = h / (NH / NKV);
            for (int j = 0; j < n1 + m2; j++) {
                ks[j] = j < n1 ? k1 + (size_t)j * KW + g * HD : k2 + (size_t)(j - n1) * KW + g * HD;
                vs[j] = j < n1 ? v1 + (size_t)j * KW + g * HD : v2 + (size_t)(j - n1) * KW + g * HD;
            }
            if (n1 + m2 > 0) ref_attend(ref + h * HD, q + h * HD, ks, vs, n1 + m2, HD, NULL, NULL, NULL, NULL);
            else
                for (int d = 0; d < HD; d++) ref[h * HD + d] = 0.0;
        }
        be->cached_attention_forward(d_out, d_q, d_k1, d_v1, n1, d_k2, d_v2, m2, NH, NKV, HD);
        dget(be, out, d_out, sizeof(float) * NH * HD);
        snprintf(name, sizeof name, "cached_attention_forward (%d/%d x %d, n1=%d n2=%d)", NH, NKV, HD, n1, m2);
        check_close(name, out, ref, NH * HD, TOL_FWD);
        be->cached_attention_forward(d_out, d_q, d_k1, d_v1, n1, d_k2, d_v2, m2, NH, NKV, HD);
        dget(be, out2, d_out, sizeof(float) * NH * HD);
        check_bitwise("cached_attention_forward determinism", out, out2, sizeof(float) * NH * HD);
        if (n2 == 0) break;
    }
    free(ks), free(vs), free(q), free(k1), free(v1), free(k2), free(v2), free(out), free(out2), free(ref);
    be->free(d_q), be->free(d_out), be->free(d_k1), be->free(d_v1), be->free(d_k2), be->free(d_v2);
}

// Batched decoding: rows of different sequences (cache slots, one repeated, lengths 0 to 700, with
// and without thought keys) in one call; each row must be bitwise the single-row op's result (itself
// checked against the reference above) and out must not be written beyond the N rows.
static void test_cached_batched(const Backend* be, int NH, int NKV, int HD) {
    const int N = 6, slots = 4, max1 = 700, max2 = 14, KW = NKV * HD, C3 = (NH + 2 * NKV) * HD;
    const int32_t slot[6] = {2, 0, 3, 2, 1, 0}, n1[6] = {700, 1, 0, 129, 64, 300}, n2[6] = {3, 0, 0, 14, 1, 0};
    int max_n = 0;
    for (int r = 0; r < N; r++) max_n = n1[r] + n2[r] > max_n ? n1[r] + n2[r] : max_n;
    float *q = hnew((size_t)N * C3, -1.5f, 1.5f), *k1 = hnew((size_t)slots * max1 * KW, -1.5f, 1.5f);
    float *v1 = hnew((size_t)slots * max1 * KW, -1, 1), *k2 = hnew((size_t)slots * max2 * KW, -1.5f, 1.5f);
    float *v2 = hnew((size_t)slots * max2 * KW, -1, 1), *junk = hnew((size_t)(N + 1) * NH * HD, 900, 999);
    float *out = hnew((size_t)(N + 1) * NH * HD, 0, 0), *one = hnew((size_t)NH * HD, 0, 0);
    float *d_q = dnew(be, q, sizeof(float) * N * C3), *d_out = dnew(be, junk, sizeof(float) * (N + 1) * NH * HD);
    float *d_k1 = dnew(be, k1, sizeof(float) * slots * max1 * KW), *d_v1 = dnew(be, v1, sizeof(float) * slots * max1 * KW);
    float *d_k2 = dnew(be, k2, sizeof(float) * slots * max2 * KW), *d_v2 = dnew(be, v2, sizeof(float) * slots * max2 * KW);
    float* d_one = dnew(be, NULL, sizeof(float) * NH * HD);
    int32_t *d_slot = dnew(be, slot, sizeof slot), *d_n1 = dnew(be, n1, sizeof n1), *d_n2 = dnew(be, n2, sizeof n2);
    be->cached_attention_batched(d_out, d_q, C3, d_k1, d_v1, (size_t)max1 * KW, d_k2, d_v2, (size_t)max2 * KW, d_slot,
                                 d_n1, d_n2, N, max_n, NH, NKV, HD);
    dget(be, out, d_out, sizeof(float) * (N + 1) * NH * HD);
    int bad = 0;
    for (int r = 0; r < N; r++) {
        const size_t s1 = (size_t)slot[r] * max1 * KW, s2 = (size_t)slot[r] * max2 * KW;
        be->cached_attention_forward(d_one, d_q + (size_t)r * C3, d_k1 + s1, d_v1 + s1, n1[r], d_k2 + s2, d_v2 + s2,
                                     n2[r], NH, NKV, HD);
        dget(be, one, d_one, sizeof(float) * NH * HD);
        bad += memcmp(one, out + (size_t)r * NH * HD, sizeof(float) * NH * HD) != 0;
    }
    CHECK(bad == 0, "cached_attention_batched (%d/%d x %d): %d of %d rows differ from the single-row op", NH, NKV, HD,
          bad, N);
    CHECK(!memcmp(out + (size_t)N * NH * HD, junk + (size_t)N * NH * HD, sizeof(float) * NH * HD),
          "cached_attention_batched wrote past its rows");
    printf("  cached_attention_batched (%d/%d x %d, %d rows, 0-714 keys): rows bitwise the single-row op's\n", NH, NKV,
           HD, N);
    free(q), free(k1), free(v1), free(k2), free(v2), free(junk), free(out), free(one);
    be->free(d_q), be->free(d_out), be->free(d_k1), be->free(d_v1), be->free(d_k2), be->free(d_v2), be->free(d_one);
    be->free(d_slot), be->free(d_n1), be->free(d_n2);
}

static void test_cached_attention(const Backend* be) {
    printf("cached_attention / copy_strided\n");
    test_cached_batched(be, 12, 4, 64);
    test_cached_batched(be, 8, 1, 96);
    test_cached_case(be, 4, 2, 8, 6, 3);
    test_cached_case(be, 12, 4, 64, 300, 5);
    test_cached_case(be, 32, 8, 128, 700, 14);
    test_cached_case(be, 24, 2, 100, 1000, 0);
    test_cached_case(be, 8, 1, 64, 129, 1);
    test_cached_case(be, 3, 3, 16, 0, 0);
    test_cached_case(be, 9, 3, 64, 65, 2);

    // copy_strided: a 3x5 block between buffers of different row strides; the rest untouched
    float *src = hnew(4 * 9, -1, 1), *dst0 = hnew(3 * 7, -1, 1), *dst = hnew(3 * 7, 0, 0);
    float *d_src = dnew(be, src, sizeof(float) * 36), *d_dst = dnew(be, dst0, sizeof(float) * 21);
    be->copy_strided(d_dst, 7, d_src, 9, 3, 5);
    dget(be, dst, d_dst, sizeof(float) * 21);
    int ok = 1;
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 7; c++) ok &= dst[r * 7 + c] == (c < 5 ? src[r * 9 + c] : dst0[r * 7 + c]);
    CHECK(ok, "copy_strided: wrong elements");
    free(src), free(dst0), free(dst);
    be->free(d_src), be->free(d_dst);
}

// ---- SwiGLU ------------------------------------------------------------------------------------

typedef struct {
    const Backend* be;
    int N, IM;
    float *gu, *G, *out;
    float *d_gu, *d_out;
} SwCtx;
static double sw_loss(void* p) {
    SwCtx* c = p;
    c->be->upload(c->d_gu, c->gu, sizeof(float) * c->N * 2 * c->IM);
    c->be->swiglu_forward(c->d_out, c->d_gu, c->N, c->IM);
    dget(c->be, c->out, c->d_out, sizeof(float) * c->N * c->IM);
    return dot_fd(c->G, c->out, (size_t)c->N * c->IM);
}

static void test_swiglu_case(const Backend* be, int N, int IM, int do_fd) {
    const size_t ng = (size_t)N * 2 * IM, no = (size_t)N * IM;
    float* gu = hnew(ng, -1, 1);
    for (int n = 0; n < N; n++) fill(gu + (size_t)n * 2 * IM, IM, -6, 6);  // gates over silu's interesting range
    gu[0] = -30.0f, gu[1] = 25.0f;
    float *G = hnew(no, -1, 1), *out = hnew(no, 0, 0), *out2 = hnew(no, 0, 0);
    float *dg = hnew(ng, 0, 0), *dg2 = hnew(ng, 0, 0), *junk = hnew(ng, -9, 9);
    float *d_gu = dnew(be, gu, sizeof(float) * ng), *d_out = dnew(be, NULL, sizeof(float) * no);
    float *d_G = dnew(be, G, sizeof(float) * no), *d_dg = dnew(be, junk, sizeof(float) * ng);
    double *rout = dzeros(no), *rdg = dzeros(ng);
    for (int n = 0; n < N; n++)
        for (int i = 0; i < IM; i++) {
            double g = gu[(size_t)n * 2 * IM + i], u = gu[(size_t)n * 2 * IM + IM + i], dy = G[(size_t)n * IM + i];
            double sig = 1.0 / (1.0 + exp(-g));
            rout[(size_t)n * IM + i] = g * sig * u;
            rdg[(size_t)n * 2 * IM + i] = dy * u * sig * (1.0 + g * (1.0 - sig));
            rdg[(size_t)n * 2 * IM + IM + i] = dy * g * sig;
        }
    be->swiglu_forward(d_out, d_gu, N, IM);
    dget(be, out, d_out, sizeof(float) * no);
    char name[64];
    snprintf(name, sizeof name, "swiglu_forward (N=%d IM=%d)", N, IM);
    check_close(name, out, rout, no, TOL_FWD);
    be->swiglu_forward(d_out, d_gu, N, IM);
    dget(be, out2, d_out, sizeof(float) * no);
    check_bitwise("swiglu_forward determinism", out, out2, sizeof(float) * no);
    be->swiglu_backward(d_dg, d_G, d_gu, N, IM);  // overwrites the garbage in d_dg
    dget(be, dg, d_dg, sizeof(float) * ng);
    check_close("swiglu_backward dgate_up vs ref", dg, rdg, ng, TOL_FWD);
    be->swiglu_backward(d_dg, d_G, d_gu, N, IM);
    dget(be, dg2, d_dg, sizeof(float) * ng);
    check_bitwise("swiglu_backward determinism", dg, dg2, sizeof(float) * ng);
    if (do_fd) {
        SwCtx c = {be, N, IM, gu, G, out, d_gu, d_out};
        check_fd("swiglu_backward dgate_up", sw_loss, &c, gu, ng, 1, dg);
    }
    free(gu), free(G), free(out), free(out2), free(dg), free(dg2), free(junk), free(rout), free(rdg);
    be->free(d_gu), be->free(d_out), be->free(d_G), be->free(d_dg);
}
static void test_swiglu(const Backend* be) {
    printf("swiglu\n");
    test_swiglu_case(be, 5, 12, 1);
    test_swiglu_case(be, 3, 37, 0);  // IM not a multiple of a 16-byte pack: the scalar path
}

// ---- cross-entropy -------------------------------------------------------------------------------

typedef struct {
    const Backend* be;
    int N, V;
    float *x, *dl, *loss;
    float *d_x, *d_loss;
    int32_t* d_t;
} CeCtx;
static double ce_loss(void* p) {
    CeCtx* c = p;
    c->be->upload(c->d_x, c->x, sizeof(float) * c->N * c->V);
    c->be->crossentropy_forward(c->d_loss, c->d_x, c->d_t, c->N, c->V);
    dget(c->be, c->loss, c->d_loss, sizeof(float) * c->N);
    return dot_fd(c->dl, c->loss, c->N);
}

static void test_crossentropy_case(const Backend* be, int N, int V, const int32_t* t, int do_fd) {
    const size_t nx = (size_t)N * V;
    float* x = hnew(nx, -3, 3);
    for (int v = 0; v < V; v++) x[(size_t)(N - 1) * V + v] += 60.0f;  // large logits: needs max-subtraction
    float *dl = hnew(N, 0.5f, 1.5f), *loss = hnew(N, 0, 0), *loss2 = hnew(N, 0, 0);
    float *dx = hnew(nx, 0, 0), *dx2 = hnew(nx, 0, 0), *junk = hnew(nx, -9, 9);
    float *d_x = dnew(be, x, sizeof(float) * nx), *d_dl = dnew(be, dl, sizeof(float) * N);
    float *d_loss = dnew(be, NULL, sizeof(float) * N), *d_dx = dnew(be, junk, sizeof(float) * nx);
    int32_t* d_t = dnew(be, t, sizeof(int32_t) * N);
    double *rl = dzeros(N), *rdx = dzeros(nx);
    char name[96];
    for (int n = 0; n < N; n++) {
        if (t[n] < 0) continue;  // ignored: loss 0, zero gradient row
        const float* xn = x + (size_t)n * V;
        double mx = -INFINITY, s = 0.0;
        for (int v = 0; v < V; v++) mx = xn[v] > mx ? xn[v] : mx;
        for (int v = 0; v < V; v++) s += exp(xn[v] - mx);
        rl[n] = mx + log(s) - xn[t[n]];
        for (int v = 0; v < V; v++) rdx[(size_t)n * V + v] = dl[n] * (exp(xn[v] - mx) / s - (v == t[n]));
    }
    be->crossentropy_forward(d_loss, d_x, d_t, N, V);
    dget(be, loss, d_loss, sizeof(float) * N);
    snprintf(name, sizeof name, "crossentropy_forward (N=%d V=%d)", N, V);
    check_close(name, loss, rl, N, TOL_FWD);
    for (int n = 0; n < N; n++)
        if (t[n] < 0) CHECK(loss[n] == 0.0f, "crossentropy_forward: ignored row %d has loss %g", n, loss[n]);
    be->crossentropy_forward(d_loss, d_x, d_t, N, V);
    dget(be, loss2, d_loss, sizeof(float) * N);
    check_bitwise("crossentropy_forward determinism", loss, loss2, sizeof(float) * N);

    be->crossentropy_backward(d_dx, d_x, d_t, d_dl, N, V);  // overwrites the garbage, zero ignored rows
    dget(be, dx, d_dx, sizeof(float) * nx);
    check_close("crossentropy_backward dlogits vs ref", dx, rdx, nx, TOL_FWD);
    int zero_rows = 1;
    for (int n = 0; n < N; n++)
        for (int v = 0; v < V && t[n] < 0; v++) zero_rows &= dx[(size_t)n * V + v] == 0.0f;
    CHECK(zero_rows, "crossentropy_backward: ignored rows not zero");
    be->crossentropy_backward(d_dx, d_x, d_t, d_dl, N, V);
    dget(be, dx2, d_dx, sizeof(float) * nx);
    check_bitwise("crossentropy_backward determinism", dx, dx2, sizeof(float) * nx);
    be->crossentropy_backward(d_x, d_x, d_t, d_dl, N, V);  // in place: the logits become the gradient
    dget(be, dx2, d_x, sizeof(float) * nx);
    check_bitwise("crossentropy_backward in place (dlogits == logits)", dx, dx2, sizeof(float) * nx);
    // fused forward + backward: the same losses and dlogits from one call, out of place and in place
    be->upload(d_x, x, sizeof(float) * nx);
    be->upload(d_dx, junk, sizeof(float) * nx);
    be->upload(d_loss, junk, sizeof(float) * N);
    be->crossentropy_fused(d_loss, d_dx, d_x, d_t, d_dl, N, V);
    dget(be, loss2, d_loss, sizeof(float) * N);
    dget(be, dx2, d_dx, sizeof(float) * nx);
    snprintf(name, sizeof name, "crossentropy_fused losses (N=%d V=%d)", N, V);
    check_close(name, loss2, rl, N, TOL_FWD);
    check_close("crossentropy_fused dlogits vs ref", dx2, rdx, nx, TOL_FWD);
    zero_rows = 1;
    for (int n = 0; n < N; n++) {
        if (t[n] < 0) zero_rows &= loss2[n] == 0.0f;
        for (int v = 0; v < V && t[n] < 0; v++) zero_rows &= dx2[(size_t)n * V + v] == 0.0f;
    }
    CHECK(zero_rows, "crossentropy_fused: ignored rows not zero (loss and gradient)");
    float *fl = hnew(N, 0, 0), *fdx = hnew(nx, 0, 0);
    be->crossentropy_fused(d_loss, d_x, d_x, d_t, d_dl, N, V);  // in place
    dget(be, fl, d_loss, sizeof(float) * N);
    dget(be, fdx, d_x, sizeof(float) * nx);
    check_bitwise("crossentropy_fused in place: losses", loss2, fl, sizeof(float) * N);
    check_bitwise("crossentropy_fused in place: dlogits", dx2, fdx, sizeof(float) * nx);
    be->upload(d_x, x, sizeof(float) * nx);
    be->crossentropy_fused(d_loss, d_x, d_x, d_t, d_dl, N, V);
    dget(be, fdx, d_x, sizeof(float) * nx);
    check_bitwise("crossentropy_fused determinism", dx2, fdx, sizeof(float) * nx);
    free(fl), free(fdx);
    be->upload(d_x, x, sizeof(float) * nx);
    if (do_fd) {
        CeCtx c = {be, N, V, x, dl, loss, d_x, d_loss, d_t};
        check_fd("crossentropy_backward dlogits", ce_loss, &c, x, nx, 1, dx);
    }
    free(x), free(dl), free(loss), free(loss2), free(dx), free(dx2), free(junk), free(rl), free(rdx);
    be->free(d_x), be->free(d_dl), be->free(d_loss), be->free(d_dx), be->free(d_t);
}
static void test_crossentropy(const Backend* be) {
    printf("crossentropy\n");
    const int32_t t1[6] = {3, QSTAR_IGNORE_INDEX, 0, 10, -1, 5};
    test_crossentropy_case(be, 6, 11, t1, 1);
    const int32_t t2[3] = {999, 0, 517};
    test_crossentropy_case(be, 3, 1000, t2, 0);
    // V = 1001: rows start at every 4-byte offset mod 16 (the vector path's scalar head and tail)
    const int32_t t3[5] = {1000, 3, QSTAR_IGNORE_INDEX, 0, 998};
    test_crossentropy_case(be, 5, 1001, t3, 0);
}

// ---- elementwise and the small Quiet-STaR ops -------------------------------------------------------

static void test_elementwise(const Backend* be) {
    printf("add / scale\n");
    const size_t n = 1003;
    float *a = hnew(n, -1, 1), *b = hnew(n, -1, 1), *o = hnew(n, 0, 0);
    float *d_a = dnew(be, a, sizeof(float) * n), *d_b = dnew(be, b, sizeof(float) * n), *d_o = dnew(be, NULL, sizeof(float) * n);
    int ok = 1;
    be->add(d_o, d_a, d_b, n);
    dget(be, o, d_o, sizeof(float) * n);
    for (size_t i = 0; i < n; i++) ok &= o[i] == a[i] + b[i];
    CHECK(ok, "add: out != a + b");
    be->add(d_a, d_a, d_b, n);  // out aliases a (the residual stream)
    dget(be, o, d_a, sizeof(float) * n);
    for (size_t i = 0; i < n; i++) ok &= o[i] == a[i] + b[i];
    CHECK(ok, "add in place: out != a + b");
    be->scale(d_b, -0.37f, n);
    dget(be, o, d_b, sizeof(float) * n);
    for (size_t i = 0; i < n; i++) ok &= o[i] == b[i] * -0.37f;
    CHECK(ok, "scale: x != x * s");
    free(a), free(b), free(o);
    be->free(d_a), be->free(d_b), be->free(d_o);
}

static void test_quietstar_small(const Backend* be) {
    printf("quiet-star small ops\n");
    const int N = 10, H = 7, V = 11;
    float *x = hnew(N * V, -2, 2), *y = hnew(N * V, 0, 0);
    float* d_x = dnew(be, x, sizeof(float) * N * V);
    int ok = 1;

    // mask_columns: columns [3, 6) set, others untouched
    be->mask_columns(d_x, N, V, 3, 6, -INFINITY);
    dget(be, y, d_x, sizeof(float) * N * V);
    for (int i = 0; i < N * V; i++) ok &= (i % V >= 3 && i % V < 6) ? y[i] == -INFINITY : y[i] == x[i];
    CHECK(ok, "mask_columns: wrong elements");

    // gumbel_sample: argmax of logits + Gumbel noise from the Philox counter layout in ops.h
    const int L = 4, k = 2;
    const uint64_t seed = 0x123456789abcull;
    const uint32_t step = 17;
    int32_t tok[10], tok2[10];
    int32_t* d_tok = dnew(be, NULL, sizeof tok);
    be->upload(d_x, x, sizeof(float) * N * V);
    be->gumbel_sample(d_tok, d_x, N, V, L, seed, step, k);
    dget(be, tok, d_tok, sizeof tok);
    be->gumbel_sample(d_tok, d_x, N, V, L, seed, step, k);
    dget(be, tok2, d_tok, sizeof tok2);
    check_bitwise("gumbel_sample determinism", tok, tok2, sizeof tok);
    ok = 1;
    for (int n = 0; n < N; n++) {
        int arg = 0;
        float best = -INFINITY;
        for (int v = 0; v < V; v++) {
            Philox4 r = philox4x32((uint32_t)(v / 4), (uint32_t)(n % L), ((uint32_t)(n / L) << 8) | (uint32_t)k, step,
                                   (uint32_t)seed, (uint32_t)(seed >> 32));
            float s = x[n * V + v] + -logf(-logf(philox_uniform(r.v[v % 4])));
            if (s > best) best = s, arg = v;
        }
        ok &= tok[n] == arg;
    }
    CHECK(ok, "gumbel_sample: tokens differ from the Philox reference");

    // row_broadcast, column_sum (+=), add_bias
    float *vec = hnew(H, -1, 1), *m = hnew(N * H, -1, 1), *acc0 = hnew(H, -1, 1), *o = hnew(N * H, 0, 0);
    float *d_vec = dnew(be, vec, sizeof(float) * H), *d_m = dnew(be, m, sizeof(float) * N * H);
    float* d_o = dnew(be, NULL, sizeof(float) * N * H);
    be->row_broadcast(d_o, d_vec, 0.5f, N, H);
    dget(be, o, d_o, sizeof(float) * N * H);
    ok = 1;
    for (int i = 0; i < N * H; i++) ok &= o[i] == 0.5f * vec[i % H];
    CHECK(ok, "row_broadcast: wrong rows");
    double* ref = dzeros(N * H);
    be->upload(d_vec, acc0, sizeof(float) * H);
    be->column_sum(d_vec, d_m, -2.0f, N, H);
    dget(be, o, d_vec, sizeof(float) * H);
    for (int c = 0; c < H; c++) {
        ref[c] = acc0[c];
        for (int n = 0; n < N; n++) ref[c] += -2.0 * m[n * H + c];
    }
    check_close("column_sum (+=)", o, ref, H, TOL_FWD);
    be->upload(d_vec, vec, sizeof(float) * H);
    be->add_bias(d_m, d_vec, N, H);
    dget(be, o, d_m, sizeof(float) * N * H);
    ok = 1;
    for (int i = 0; i < N * H; i++) ok &= o[i] == m[i] + vec[i % H];
    CHECK(ok, "add_bias: wrong values");

    // relu forward / backward (backward reads the output, overwrites dinp)
    be->upload(d_m, m, sizeof(float) * N * H);
    be->relu_forward(d_o, d_m, N * H);
    float* r = hnew(N * H, 0, 0);
    dget(be, r, d_o, sizeof(float) * N * H);
    ok = 1;
    for (int i = 0; i < N * H; i++) ok &= r[i] == (m[i] > 0 ? m[i] : 0.0f);
    CHECK(ok, "relu_forward: wrong values");
    float* g = hnew(N * H, -1, 1);
    float *d_g = dnew(be, g, sizeof(float) * N * H), *d_dm = dnew(be, x, sizeof(float) * N * H);
    be->relu_backward(d_dm, d_g, d_o, N * H);
    dget(be, o, d_dm, sizeof(float) * N * H);
    ok = 1;
    for (int i = 0; i < N * H; i++) ok &= o[i] == (m[i] > 0 ? g[i] : 0.0f);
    CHECK(ok, "relu_backward: wrong values");

    // concat_columns, split_columns_backward (+=)
    const int A = 3, Bc = 4;
    float *a = hnew(N * A, -1, 1), *b = hnew(N * Bc, -1, 1), *cat = hnew(N * (A + Bc), 0, 0);
    float *d_a = dnew(be, a, sizeof(float) * N * A), *d_b = dnew(be, b, sizeof(float) * N * Bc);
    float* d_cat = dnew(be, NULL, sizeof(float) * N * (A + Bc));
    be->concat_columns(d_cat, d_a, d_b, N, A, Bc);
    dget(be, cat, d_cat, sizeof(float) * N * (A + Bc));
    ok = 1;
    for (int n = 0; n < N; n++)
        for (int c = 0; c < A + Bc; c++) ok &= cat[n * (A + Bc) + c] == (c < A ? a[n * A + c] : b[n * Bc + c - A]);
    CHECK(ok, "concat_columns: wrong values");
    float *da = hnew(N * A, 0, 0), *db = hnew(N * Bc, 0, 0);
    be->split_columns_backward(d_a, d_b, d_cat, N, A, Bc);  // a += a, b += b
    dget(be, da, d_a, sizeof(float) * N * A);
    dget(be, db, d_b, sizeof(float) * N * Bc);
    ok = 1;
    for (int i = 0; i < N * A; i++) ok &= da[i] == 2.0f * a[i];
    for (int i = 0; i < N * Bc; i++) ok &= db[i] == 2.0f * b[i];
    CHECK(ok, "split_columns_backward: not += of the halves");

    // roll_rows: out[r, i] = inp[r, (i + s) mod L]; backward is its transpose, +=
    const int R = 2, LL = 5;  // N = R * LL rows of width H
    const int shifts[4] = {0, 1, 3, 7};
    for (int si = 0; si < 4; si++) {
        const int s = shifts[si];
        be->upload(d_m, m, sizeof(float) * N * H);
        be->roll_rows(d_o, d_m, R, LL, H, s);
        dget(be, o, d_o, sizeof(float) * N * H);
        ok = 1;
        for (int rr = 0; rr < R; rr++)
            for (int i = 0; i < LL; i++)
                ok &= !memcmp(o + (rr * LL + i) * H, m + (rr * LL + (i + s) % LL) * H, sizeof(float) * H);
        CHECK(ok, "roll_rows s=%d: wrong rows", s);
        be->upload(d_dm, x, sizeof(float) * N * H);  // start from x: +=
        be->roll_rows_backward(d_dm, d_g, R, LL, H, s);
        dget(be, o, d_dm, sizeof(float) * N * H);
        for (int i = 0; i < N * H; i++) ref[i] = x[i];
        for (int rr = 0; rr < R; rr++)
            for (int i = 0; i < LL; i++)
                for (int c = 0; c < H; c++) ref[(rr * LL + (i + s) % LL) * H + c] += g[(rr * LL + i) * H + c];
        char name[64];
        snprintf(name, sizeof name, "roll_rows_backward s=%d (+=)", s);
        check_close(name, o, ref, N * H, TOL_FWD);
    }

    // mix: out = (1 - w) base + w thought; dbase +=, dthought +=, dw = Σ dout (thought - base)
    float *base = hnew(N * H, -1, 1), *th = hnew(N * H, -1, 1), *w = hnew(N, -1, 2), *dw = hnew(N, 0, 0);
    float *d_base = dnew(be, base, sizeof(float) * N * H), *d_th = dnew(be, th, sizeof(float) * N * H);
    float *d_w = dnew(be, w, sizeof(float) * N), *d_dw = dnew(be, x, sizeof(float) * N);
    be->mix_forward(d_o, d_base, d_th, d_w, N, H);
    dget(be, o, d_o, sizeof(float) * N * H);
    for (int i = 0; i < N * H; i++) ref[i] = (1.0 - w[i / H]) * base[i] + (double)w[i / H] * th[i];
    check_close("mix_forward", o, ref, N * H, TOL_FWD);
    float* d_db = dnew(be, m, sizeof(float) * N * H);
    float* d_dt = dnew(be, x, sizeof(float) * N * H);
    be->mix_backward(d_db, d_dt, d_dw, d_g, d_base, d_th, d_w, N, H);
    dget(be, o, d_db, sizeof(float) * N * H);
    for (int i = 0; i < N * H; i++) ref[i] = m[i] + (1.0 - w[i / H]) * g[i];
    check_close("mix_backward dbase (+=)", o, ref, N * H, TOL_FWD);
    dget(be, o, d_dt, sizeof(float) * N * H);
    for (int i = 0; i < N * H; i++) ref[i] = x[i] + (double)w[i / H] * g[i];
    check_close("mix_backward dthought (+=)", o, ref, N * H, TOL_FWD);
    dget(be, dw, d_dw, sizeof(float) * N);
    for (int n = 0; n < N; n++) {
        ref[n] = 0.0;
        for (int c = 0; c < H; c++) ref[n] += (double)g[n * H + c] * ((double)th[n * H + c] - base[n * H + c]);
    }
    check_close("mix_backward dw (overwritten)", dw, ref, N, TOL_FWD);

    free(x), free(y), free(vec), free(m), free(acc0), free(o), free(ref), free(r), free(g), free(a), free(b), free(cat);
    free(da), free(db), free(base), free(th), free(w), free(dw);
    be->free(d_x), be->free(d_tok), be->free(d_vec), be->free(d_m), be->free(d_o), be->free(d_g), be->free(d_dm);
    be->free(d_a), be->free(d_b), be->free(d_cat), be->free(d_base), be->free(d_th), be->free(d_w), be->free(d_dw);
    be->free(d_db), be->free(d_dt);
}

static void test_quietstar_advantage_case(const Backend* be, int B, int P, int L, int T) {
    const size_t RL = (size_t)B * P * L;
    float *bl = hnew(RL, 0, 5), *tl = hnew(T * RL, 0, 5), *rw = hnew(RL, 0, 0), *ad = hnew(RL, 0, 0);
    float *d_bl = dnew(be, bl, sizeof(float) * RL), *d_tl = dnew(be, tl, sizeof(float) * T * RL);
    float *d_rw = dnew(be, NULL, sizeof(float) * RL), *d_ad = dnew(be, NULL, sizeof(float) * RL);
    double *rr = dzeros(RL), *ra = dzeros(RL);
    for (size_t n = 0; n < RL; n++) {
        int i = (int)(n % L);
        if (i < L - 1 - T)
            for (int s = 0; s < T; s++) rr[n] += (double)bl[n + s] - tl[s * RL + n];
    }
    for (size_t n = 0; n < RL; n++) {
        size_t b = n / ((size_t)P * L), i = n % L;
        double mean = 0.0;
        if (P > 1) {
            for (int p = 0; p < P; p++) mean += rr[(b * P + p) * L + i];
            mean /= P;
        }
        ra[n] = rr[n] - mean > 0 ? rr[n] - mean : 0.0;
    }
    be->quietstar_advantage(d_rw, d_ad, d_bl, d_tl, B, P, L, T);
    dget(be, rw, d_rw, sizeof(float) * RL);
    dget(be, ad, d_ad, sizeof(float) * RL);
    char name[96];
    snprintf(name, sizeof name, "quietstar_advantage reward (B=%d P=%d L=%d T=%d)", B, P, L, T);
    check_close(name, rw, rr, RL, TOL_FWD);
    check_close("quietstar_advantage advantage", ad, ra, RL, TOL_FWD);
    free(bl), free(tl), free(rw), free(ad), free(rr), free(ra);
    be->free(d_bl), be->free(d_tl), be->free(d_rw), be->free(d_ad);
}
static void test_quietstar_advantage(const Backend* be) {
    printf("quietstar_advantage\n");
    test_quietstar_advantage_case(be, 2, 3, 9, 2);
    test_quietstar_advantage_case(be, 3, 1, 7, 3);
}

// ---- optimizer -------------------------------------------------------------------------------------

static void test_adamw_case(const Backend* be, float grad_scale, float wd) {
    const size_t n = 1031;
    const float lr = 3e-3f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f;
    float *p = hnew(n, -1, 1), *m = hnew(n, 0, 0), *v = hnew(n, 0, 0), *gs = hnew(3 * n, -1, 1);
    float *p2 = hnew(n, 0, 0), *mm = hnew(n, 0, 0), *vv = hnew(n, 0, 0);
    double *rp = dzeros(n), *rm = dzeros(n), *rv = dzeros(n);
    for (size_t i = 0; i < n; i++) rp[i] = p[i];
    float *d_p = dnew(be, p, sizeof(float) * n), *d_g = dnew(be, NULL, sizeof(float) * n);
    float *d_m = dnew(be, NULL, sizeof(float) * n), *d_v = dnew(be, NULL, sizeof(float) * n);
    for (int t = 1; t <= 3; t++) {
        const float* g = gs + (t - 1) * n;
        be->upload(d_g, g, sizeof(float) * n);
        be->adamw_update(d_p, NULL, d_g, d_m, d_v, n, lr, b1, b2, eps, wd, grad_scale, t, 0, 0, 0);
        // torch.optim.AdamW (single tensor): p *= 1 - lr*wd; m, v; p -= lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps)
        double bc1 = 1.0 - pow(b1, t), bc2 = 1.0 - pow(b2, t);
        for (size_t i = 0; i < n; i++) {
            double gi = (double)g[i] * grad_scale;
            rp[i] *= 1.0 - (double)lr * wd;
            rm[i] = b1 * rm[i] + (1.0 - b1) * gi;
            rv[i] = b2 * rv[i] + (1.0 - b2) * gi * gi;
            rp[i] -= lr / bc1 * rm[i] / (sqrt(rv[i]) / sqrt(bc2) + eps);
        }
    }
    dget(be, p2, d_p, sizeof(float) * n);
    dget(be, mm, d_m, sizeof(float) * n);
    dget(be, vv, d_v, sizeof(float) * n);
    char name[96];
    snprintf(name, sizeof name, "adamw_update param, 3 steps (scale %.2f wd %.1f)", grad_scale, wd);
    check_close(name, p2, rp, n, TOL_FWD);
    check_close("adamw_update m", mm, rm, n, TOL_FWD);
    check_close("adamw_update v", vv, rv, n, TOL_FWD);
    // the update itself (p_after - p_before) relative to its own size, the stricter view
    double* du = dzeros(n);
    float* dd = hnew(n, 0, 0);
    for (size_t i = 0; i < n; i++) du[i] = rp[i] - p[i], dd[i] = (float)((double)p2[i] - p[i]);
    check_close("adamw_update total change of param", dd, du, n, 1e-4);  // float param rounding is ~1e-7/1e-3 of it

    // determinism: the same three steps again from the start
    be->upload(d_p, p, sizeof(float) * n);
    be->zero(d_m, sizeof(float) * n);
    be->zero(d_v, sizeof(float) * n);
    for (int t = 1; t <= 3; t++) {
        be->upload(d_g, gs + (t - 1) * n, sizeof(float) * n);
        be->adamw_update(d_p, NULL, d_g, d_m, d_v, n, lr, b1, b2, eps, wd, grad_scale, t, 0, 0, 0);
    }
    dget(be, dd, d_p, sizeof(float) * n);
    check_bitwise("adamw_update determinism", dd, p2, sizeof(float) * n);
    free(p), free(m), free(v), free(gs), free(p2), free(mm), free(vv), free(rp), free(rm), free(rv), free(du), free(dd);
    be->free(d_p), be->free(d_g), be->free(d_m), be->free(d_v);
}
static void test_adamw(const Backend* be) {
    printf("adamw\n");
    test_adamw_case(be, 1.0f, 0.1f);
    test_adamw_case(be, 0.37f, 0.1f);
    test_adamw_case(be, 2.5f, 0.0f);
}

static void test_sum_squares(const Backend* be) {
    printf("sum_squares\n");
    const size_t ns[3] = {200003, 65536, 7};
    for (int k = 0; k < 3; k++) {
        const size_t n = ns[k];
        float* x = hnew(n, -1, 1);
        float* d_x = dnew(be, x, sizeof(float) * n);
        float* d_s = dnew(be, NULL, sizeof(float));
        double ref = 0.0;
        for (size_t i = 0; i < n; i++) ref += (double)x[i] * x[i];
        const int threads = omp_get_max_threads();
        float s[3];
        for (int th = 1; th <= 3; th++) {  // the result must not depend on the thread count
            omp_set_num_threads(th);
            be->sum_squares(d_s, d_x, n);
            dget(be, &s[th - 1], d_s, sizeof(float));
        }
        omp_set_num_threads(threads);
        char name[64];
        snprintf(name, sizeof name, "sum_squares (n=%zu)", n);
        check_close(name, &s[0], &ref, 1, 1e-6);
        CHECK(!memcmp(&s[0], &s[1], sizeof(float)) && !memcmp(&s[0], &s[2], sizeof(float)),
              "sum_squares n=%zu: differs across thread counts (%.9g %.9g %.9g)", n, s[0], s[1], s[2]);
        free(x);
        be->free(d_x), be->free(d_s);
    }
}

int main(int argc, char** argv) {
    const char* name = argc > 1 ? argv[1] : "cpu";
    const Backend* be = backend_get(name);
    if (!be) {
        printf("unknown backend '%s' (built: %s)\n", name, backend_names());
        return 2;
    }
    if (be->x_bytes != sizeof(float)) {
        printf("FAIL backend %s stores %s: this file tests the fp32 tables (bf16: tests/test_bf16.c)\n", be->name,
               be->precision);
        return 1;
    }
    fd_enabled = !strcmp(be->name, "cpu");
    // the GPU, or the emulator told to round TF32 products' operands as a GPU does (CUEMU_TF32=1)
    tf32_gemms = !strcmp(be->name, "cuda") || (!strcmp(be->name, "emu") && getenv("CUEMU_TF32") && atoi(getenv("CUEMU_TF32")) > 0);
    if (tf32_gemms) printf("%s: matmul tolerances from the TF32 bound (2^-10 + K 2^-24) sum|a b|\n", be->name);
    printf("backend %s: errors are scale-relative (max |a-b| / max |ref|, ‖a-b‖/‖ref‖); fd = finite differences\n",
           be->name);
    test_embedding(be);
    test_rmsnorm(be);
    test_matmul(be);
    test_rope(be);
    test_attention(be);
    test_thought_attention(be);
    test_cached_attention(be);
    test_swiglu(be);
    test_crossentropy(be);
    test_elementwise(be);
    test_quietstar_small(be);
    test_quietstar_advantage(be);
    test_adamw(be);
    test_sum_squares(be);
    return test_summary();
}
