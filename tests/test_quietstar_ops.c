/*
 * The small Quiet-STaR ops of kernels/ops.h ("thought sampling, mixing head, rewards") against
 * naive references written here, independently of kernels/cpu:
 *   build/tests/test_quietstar_ops [backend]     "cpu" (default), "cuda", "emu"
 *
 *  - mask_columns: exactly the columns [lo, hi) are set, everything else untouched;
 *  - gumbel_sample: (a) deterministic for the same (seed, step, k) and different when the seed (either
 *    32-bit word), the step, k, the slot or the row changes; (b) a categorical sample of
 *    softmax(logits): frequencies over 20000 rows within 4 standard errors per category, plus a
 *    chi-square bound; (c) over 2^20 draws a column masked to -1e10 (as the start/end thought tokens
 *    are) is never drawn and the open columns follow softmax over them; (d) the Philox counter layout
 *    stated in ops.h, by recomputing the noise here with kernels/philox.h (full argmax per row, and a
 *    logit placed on the exact decision threshold of one (n, v) so that ±1e-3 flips the sample);
 *    (e) philox_uniform is strictly inside (0, 1) for every input, and a masked column whose noise word
 *    is the largest possible (found by searching seeds) is still never drawn;
 *  - row_broadcast, column_sum (+= and scale), add_bias, relu forward/backward (backward overwrites);
 *  - concat_columns and split_columns_backward (+=);
 *  - roll_rows and roll_rows_backward for s = 0, 1, 3, L-1, L+2: forward row mapping, backward is the
 *    adjoint (<roll(x), y> == <x, rollᵀ(y)>) and accumulates;
 *  - mix_forward/mix_backward: finite differences for dw, dbase, dthought; dbase and dthought +=,
 *    dw overwritten;
 *  - quietstar_advantage against a naive loop of research notes §1.7 for B = 2, P = 1, 2, 3, L = 10,
 *    T = 4: reward only for slots i < L-1-T, mean over the P passes subtracted (not for P = 1),
 *    advantage clamped at 0.
 *  - shift_tokens (shift, limit, fill; a random text, every shift a talk step uses), row_weights (with and
 *    without per-row factors: bitwise the float product), quietstar_stats (every statistic against a
 *    naive double loop, rel. 1e-12; positive count exact) for T = 1, 4 and K = 1, 9 on odd L.
 * Float results are compared with double references as max abs error / max |ref| <= 1e-5.
 */
// Backend buffers are read and written here as fp32 arrays: this file runs on fp32 tables (floatX =
// float, kernels/ops.h); the bf16 tables have their own tests (tests/test_bf16.c).
#define QSTAR_FLOATX float
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/ops.h"
#include "kernels/philox.h"
#include "tests/check.h"

#define TEST_RNG_SEED 0x853C49E6748FEA9Bull
#include "tests/backend_test.h"

#define TOL 1e-5
#define QS_TEST_MAX_T 4
#define TOL_FD 1e-2
#define FD_STEP 1e-2f

static double* dnewd(size_t n) { return calloc(n ? n : 1, sizeof(double)); }
static void check_close(const char* what, const float* got, const double* ref, size_t n, double tol) {
    double md = 0.0, mr = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - ref[i]);
        if (!(d <= md)) md = d;  // NaN propagates
        if (fabs(ref[i]) > mr) mr = fabs(ref[i]);
    }
    double e = md / (mr > 0 ? mr : 1.0);
    printf("  %-52s max err %.2e\n", what, e);
    CHECK(e <= tol, "%s: max rel error %.3e > %.1e", what, e, tol);
}

// ---- mask_columns ----------------------------------------------------------------------------------

static void test_mask_columns(const Backend* be) {
    printf("mask_columns\n");
    const int N = 9, V = 13;
    const int ranges[][2] = {{3, 6}, {11, 13}, {0, 1}, {4, 4}, {0, 13}};
    float* x = hnew(N * V, -2, 2);
    float* y = malloc(sizeof(float) * N * V);
    float* d_x = dnew(be, NULL, sizeof(float) * N * V);
    for (int t = 0; t < 5; t++) {
        const int lo = ranges[t][0], hi = ranges[t][1];
        be->upload(d_x, x, sizeof(float) * N * V);
        be->mask_columns(d_x, N, V, lo, hi, -1e10f);
        dget(be, y, d_x, sizeof(float) * N * V);
        int ok = 1;
        for (int i = 0; i < N * V; i++) ok &= (i % V >= lo && i % V < hi) ? y[i] == -1e10f : y[i] == x[i];
        CHECK(ok, "mask_columns [%d, %d): wrong elements", lo, hi);
    }
    free(x), free(y), be->free(d_x);
}

// ---- gumbel_sample -----------------------------------------------------------------------------------

static void sample(const Backend* be, int32_t* tok, const float* logits, int N, int V, int L, uint64_t seed,
                   uint32_t step, int k) {
    float* d_x = dnew(be, logits, sizeof(float) * N * V);
    int32_t* d_t = dnew(be, NULL, sizeof(int32_t) * N);
    be->gumbel_sample(d_t, d_x, N, V, L, seed, step, k);
    dget(be, tok, d_t, sizeof(int32_t) * N);
    be->free(d_x), be->free(d_t);
}
static int count_equal(const int32_t* a, const int32_t* b, int n) {
    int c = 0;
    for (int i = 0; i < n; i++) c += a[i] == b[i];
    return c;
}
// The noise of ops.h's layout for (n, v), recomputed here: key = seed, counter = (v/4, slot, row<<8|k, step).
static double ref_noise(int n, int v, int L, uint64_t seed, uint32_t step, int k) {
    Philox4 r = philox4x32((uint32_t)(v / 4), (uint32_t)(n % L), ((uint32_t)(n / L) << 8) | (uint32_t)k, step,
                           (uint32_t)seed, (uint32_t)(seed >> 32));
    return -log(-log((double)philox_uniform(r.v[v % 4])));
}

static void test_gumbel_determinism(const Backend* be) {
    printf("gumbel_sample (a): determinism and independence\n");
    // flat logits over many tokens: two unrelated samples coincide with probability 1/V
    const int R = 4, L = 16, N = R * L, V = 1000;
    const uint64_t seed = 0x0123456789ABCDEFull;
    const uint32_t step = 42;
    const int k = 3;
    float* x = calloc((size_t)N * V, sizeof(float));
    int32_t t0[64], t1[64];
    sample(be, t0, x, N, V, L, seed, step, k);
    sample(be, t1, x, N, V, L, seed, step, k);
    CHECK(memcmp(t0, t1, sizeof t0) == 0, "gumbel_sample: not deterministic for the same (seed, step, k)");
    int ok = 1;
    for (int n = 0; n < N; n++) ok &= t0[n] >= 0 && t0[n] < V;
    CHECK(ok, "gumbel_sample: token out of range");
    const int limit = N / 10;  // expected ~N/V = 0.06 coincidences; any shared noise gives ~N
    struct { const char* what; uint64_t seed; uint32_t step; int k; } var[] = {
        {"seed low word", seed ^ 1, step, k},
        {"seed high word", seed ^ (1ull << 40), step, k},
        {"step", seed, step + 1, k},
        {"k", seed, step, k + 1},
    };
    for (int i = 0; i < 4; i++) {
        sample(be, t1, x, N, V, L, var[i].seed, var[i].step, var[i].k);
        const int eq = count_equal(t0, t1, N);
        printf("  %-52s %d/%d equal\n", var[i].what, eq, N);
        CHECK(eq <= limit, "gumbel_sample: changing the %s leaves %d of %d samples equal", var[i].what, eq, N);
    }
    // different slots of a row, and the same slot of different rows, draw different noise
    int slot_eq = 0, slot_pairs = 0, row_eq = 0, row_pairs = 0;
    for (int r = 0; r < R; r++)
        for (int i = 0; i < L; i++)
            for (int j = i + 1; j < L; j++) slot_eq += t0[r * L + i] == t0[r * L + j], slot_pairs++;
    for (int i = 0; i < L; i++)
        for (int r = 0; r < R; r++)
            for (int q = r + 1; q < R; q++) row_eq += t0[r * L + i] == t0[q * L + i], row_pairs++;
    printf("  %-52s slots %d/%d, rows %d/%d equal pairs\n", "slot/row", slot_eq, slot_pairs, row_eq, row_pairs);
    CHECK(slot_eq <= slot_pairs / 50, "gumbel_sample: slots of a row share noise (%d/%d equal)", slot_eq, slot_pairs);
    CHECK(row_eq <= row_pairs / 50, "gumbel_sample: rows share noise (%d/%d equal)", row_eq, row_pairs);
    free(x);
}

// Frequencies of N samples of fixed logits replicated over the rows against softmax(logits).
static void test_gumbel_distribution_case(const Backend* be, const float* logit, int V, uint64_t seed, uint32_t step,
                                          int k) {
    const int N = 20000, L = 100;  // 200 rows of 100 slots: the noise varies with both
    float* x = malloc(sizeof(float) * N * V);
    for (int n = 0; n < N; n++) memcpy(x + (size_t)n * V, logit, sizeof(float) * V);
    int32_t* tok = malloc(sizeof(int32_t) * N);
    sample(be, tok, x, N, V, L, seed, step, k);
    double* cnt = dnewd(V);
    int ok = 1;
    for (int n = 0; n < N; n++) {
        ok &= tok[n] >= 0 && tok[n] < V;
        if (tok[n] >= 0 && tok[n] < V) cnt[tok[n]] += 1;
    }
    CHECK(ok, "gumbel_sample: token out of range");
    double mx = -INFINITY, z = 0.0, chi2 = 0.0, worst = 0.0;
    for (int v = 0; v < V; v++) mx = logit[v] > mx ? logit[v] : mx;
    for (int v = 0; v < V; v++) z += exp((double)logit[v] - mx);
    for (int v = 0; v < V; v++) {
        const double p = exp((double)logit[v] - mx) / z, f = cnt[v] / N;
        const double zs = fabs(f - p) / sqrt(p * (1 - p) / N);
        worst = zs > worst ? zs : worst;
        chi2 += (cnt[v] - N * p) * (cnt[v] - N * p) / (N * p);
        CHECK(zs <= 4.0, "gumbel_sample V=%d: token %d frequency %.4f vs softmax %.4f (%.1f standard errors)", V, v, f,
              p, zs);
    }
    // chi-square 0.9999 quantiles: 23.5 (4 dof), 76.4 (36 dof)
    const double chi2_max = V == 5 ? 23.5 : 76.4;
    printf("  %-52s worst %.2f SE, chi2 %.1f (%d dof, bound %.1f)\n", V == 5 ? "V=5 frequencies vs softmax"
                                                                            : "V=37 frequencies vs softmax",
           worst, chi2, V - 1, chi2_max);
    CHECK(chi2 <= chi2_max, "gumbel_sample V=%d: chi-square %.1f > %.1f", V, chi2, chi2_max);
    free(x), free(tok), free(cnt);
}

static void test_gumbel_distribution(const Backend* be) {
    printf("gumbel_sample (b): categorical sample of softmax(logits)\n");
    const float l5[5] = {0.5f, -1.0f, 1.2f, 0.0f, -0.3f};
    test_gumbel_distribution_case(be, l5, 5, 0xC0FFEEull, 7, 2);
    float l37[37];  // not a multiple of 4: several Philox counters per row, the last one partly used
    for (int v = 0; v < 37; v++) l37[v] = (float)(2.0 * urand() - 1.0);
    test_gumbel_distribution_case(be, l37, 37, 0xFEEDFACECAFEBEEFull, 1000, 7);
}

// 2^20 rows with the same logits: masked columns (which would otherwise win almost always: +5 and +8
// against logits in [-1, 1]) are never drawn, and the open columns follow softmax over the open ones.
// The emulator runs 2^15 rows (2^20 take it minutes); (d) shows it draws the same noise as the CPU.
static void test_gumbel_masked(const Backend* be) {
    const int N = strcmp(be->name, "cpu") == 0 ? 1 << 20 : 1 << 15, L = 1024, V = 9;
    printf("gumbel_sample (c): masked columns are never drawn (%d draws)\n", N);
    const float logit[9] = {0.3f, -0.8f, 5.0f, 0.9f, -0.2f, 0.0f, -1.0f, 8.0f, 8.0f};
    float* x = malloc(sizeof(float) * N * V);
    for (int n = 0; n < N; n++) memcpy(x + (size_t)n * V, logit, sizeof logit);
    float* d_x = dnew(be, x, sizeof(float) * N * V);
    be->mask_columns(d_x, N, V, 2, 3, -1e10f);
    be->mask_columns(d_x, N, V, 7, 9, -1e10f);  // as the start/end thought tokens at the vocabulary's end
    int32_t* d_t = dnew(be, NULL, sizeof(int32_t) * N);
    int32_t* tok = malloc(sizeof(int32_t) * N);
    be->gumbel_sample(d_t, d_x, N, V, L, 99, 3, 1);
    dget(be, tok, d_t, sizeof(int32_t) * N);
    int hits = 0, bad = 0;
    double cnt[9] = {0};
    for (int n = 0; n < N; n++) {
        hits += tok[n] == 2 || tok[n] == 7 || tok[n] == 8;
        if (tok[n] >= 0 && tok[n] < V) cnt[tok[n]] += 1;
        else bad++;
    }
    printf("  %-52s %d of %d\n", "masked columns drawn", hits, N);
    CHECK(hits == 0 && bad == 0, "gumbel_sample: a column masked at -1e10 was drawn %d times (%d out of range)", hits,
          bad);
    const int open[6] = {0, 1, 3, 4, 5, 6};
    double z = 0.0, chi2 = 0.0;
    for (int i = 0; i < 6; i++) z += exp((double)logit[open[i]]);
    for (int i = 0; i < 6; i++) {
        const double e = N * exp((double)logit[open[i]]) / z;
        chi2 += (cnt[open[i]] - e) * (cnt[open[i]] - e) / e;
    }
    printf("  %-52s chi2 %.1f (5 dof, bound 25.7)\n", "open columns vs softmax over them", chi2);
    CHECK(chi2 <= 25.7, "gumbel_sample: open columns' frequencies off softmax (chi-square %.1f, 0.9999 bound 25.7)",
          chi2);
    free(x), free(tok), be->free(d_x), be->free(d_t);
}

// philox_uniform over every input it distinguishes: strictly inside (0, 1), increasing, so the Gumbel
// noise is finite for every draw.
static void test_uniform_open_interval(void) {
    printf("philox_uniform: every value strictly inside (0, 1)\n");
    int ok = 1;
    float prev = 0.0f, lo = 1.0f, hi = 0.0f;
    for (uint64_t x = 0; x <= 0xFFFFFFFFull; x += 1u << 9) {
        const float u = philox_uniform((uint32_t)x);
        ok &= u > prev && u < 1.0f && isfinite(-logf(-logf(u)));
        prev = u, lo = u < lo ? u : lo, hi = u > hi ? u : hi;
    }
    printf("  %-52s [%.9g, %.9g]\n", "range over all 2^23 levels", lo, hi);
    CHECK(ok, "philox_uniform: a value outside (0, 1), not increasing, or with infinite Gumbel noise");
}

// The draw that used to return u = 1 (+inf noise): a seed whose noise word for a masked column has its top
// 24 bits set, found by search, then sampled. Before the open-interval mapping this masked column won.
static void test_gumbel_masked_extreme(const Backend* be) {
    printf("gumbel_sample (e): a masked column whose uniform draw is the largest possible\n");
    const int L = 4, V = 8, N = L, n = 1, v = 6, k = 2;  // row 0, slot 1, column 6 (counter 1, word 2)
    const uint32_t step = 77;
    uint64_t seed = 0;
    for (uint64_t s = 1; s < (1ull << 30); s++) {
        Philox4 r = philox4x32((uint32_t)(v / 4), (uint32_t)(n % L), ((uint32_t)(n / L) << 8) | (uint32_t)k, step,
                               (uint32_t)s, 0);
        if ((r.v[v % 4] >> 8) == 0xFFFFFFu) { seed = s; break; }
    }
    CHECK(seed != 0, "no seed found with a maximal uniform draw");
    float x[4 * 8];
    for (int i = 0; i < N * V; i++) x[i] = 0.0f;
    float* d_x = dnew(be, x, sizeof x);
    be->mask_columns(d_x, N, V, v, v + 1, -1e10f);
    int32_t* d_t = dnew(be, NULL, sizeof(int32_t) * N);
    int32_t tok[4];
    be->gumbel_sample(d_t, d_x, N, V, L, seed, step, k);
    dget(be, tok, d_t, sizeof tok);
    printf("  %-52s seed %llu, drawn %d\n", "maximal draw on masked column 6", (unsigned long long)seed, tok[n]);
    CHECK(tok[n] != v && tok[n] >= 0 && tok[n] < V, "gumbel_sample: masked column drawn (token %d) on a maximal draw",
          tok[n]);
    be->free(d_x), be->free(d_t);
}

static void test_gumbel_philox(const Backend* be) {
    printf("gumbel_sample (d): the Philox counter layout of ops.h\n");
    const int R = 3, L = 7, N = R * L, V = 13, k = 5;
    const uint64_t seed = 0xDEADBEEF12345678ull;
    const uint32_t step = 123456;
    float* x = hnew((size_t)N * V, -1, 1);
    int32_t tok[21];
    sample(be, tok, x, N, V, L, seed, step, k);
    int ok = 1, checked = 0;
    for (int n = 0; n < N; n++) {  // argmax of logits + recomputed noise, where not a near-tie
        double best = -INFINITY, second = -INFINITY;
        int arg = -1;
        for (int v = 0; v < V; v++) {
            const double s = x[(size_t)n * V + v] + ref_noise(n, v, L, seed, step, k);
            if (s > best) second = best, best = s, arg = v;
            else if (s > second) second = s;
        }
        if (best - second < 1e-4) continue;
        checked++;
        ok &= tok[n] == arg;
    }
    printf("  %-52s %d of %d rows checked\n", "argmax of logits + recomputed noise", checked, N);
    CHECK(ok && checked >= N - 2, "gumbel_sample: tokens differ from the Philox reference (%d rows checked)", checked);

    // One (n, v) on its decision threshold: row n has only columns a and v open, with
    // z[v] = g(n,a) - g(n,v) ± δ, so the sample is v for +δ and a for −δ only if g(n,v) is the noise
    // the layout says (v = 6: second counter, word 2; n = row 2, slot 3).
    const int n = 2 * L + 3, v = 6, a = 1;
    const double gap = ref_noise(n, a, L, seed, step, k) - ref_noise(n, v, L, seed, step, k);
    for (int sgn = -1; sgn <= 1; sgn += 2) {
        for (int c = 0; c < V; c++) x[(size_t)n * V + c] = -1e10f;
        x[(size_t)n * V + a] = 0.0f;
        x[(size_t)n * V + v] = (float)(gap + sgn * 1e-3);
        sample(be, tok, x, N, V, L, seed, step, k);
        CHECK(tok[n] == (sgn > 0 ? v : a), "gumbel_sample: threshold at (n=%d, v=%d) %+d·δ gave %d, expected %d", n, v,
              sgn, tok[n], sgn > 0 ? v : a);
    }
    free(x);
}

// ---- row_broadcast, column_sum, add_bias, relu ----------------------------------------------------------

static void test_small_ops(const Backend* be) {
    printf("row_broadcast, column_sum, add_bias, relu\n");
    const int N = 300, H = 70;
    float *vec = hnew(H, -1, 1), *x = hnew((size_t)N * H, -1, 1), *acc0 = hnew(H, -5, 5);
    float *o = malloc(sizeof(float) * N * H), *oh = malloc(sizeof(float) * H);
    double* ref = dnewd((size_t)N * H);
    float *d_v = dnew(be, vec, sizeof(float) * H), *d_x = dnew(be, x, sizeof(float) * N * H);
    float *d_o = dnew(be, NULL, sizeof(float) * N * H), *d_h = dnew(be, acc0, sizeof(float) * H);

    be->row_broadcast(d_o, d_v, 100.0f, N, H);
    dget(be, o, d_o, sizeof(float) * N * H);
    for (int n = 0; n < N; n++)
        for (int c = 0; c < H; c++) ref[(size_t)n * H + c] = 100.0 * vec[c];
    check_close("row_broadcast (scale 100)", o, ref, (size_t)N * H, TOL);

    be->column_sum(d_h, d_x, 0.25f, N, H);  // onto acc0: accumulates
    dget(be, oh, d_h, sizeof(float) * H);
    for (int c = 0; c < H; c++) {
        double s = 0.0;
        for (int n = 0; n < N; n++) s += x[(size_t)n * H + c];
        ref[c] = acc0[c] + 0.25 * s;
    }
    check_close("column_sum (scale 0.25, +=)", oh, ref, H, TOL);

    be->add_bias(d_x, d_v, N, H);
    dget(be, o, d_x, sizeof(float) * N * H);
    for (int n = 0; n < N; n++)
        for (int c = 0; c < H; c++) ref[(size_t)n * H + c] = (double)x[(size_t)n * H + c] + vec[c];
    check_close("add_bias", o, ref, (size_t)N * H, TOL);

    // relu: some exact zeros in the input; backward overwrites dinp and uses the output's sign
    const size_t M = (size_t)N * H;
    for (size_t i = 0; i < M; i += 7) x[i] = 0.0f;
    float *g = hnew(M, -1, 1), *junk = hnew(M, 50, 60);
    float *d_g = dnew(be, g, sizeof(float) * M), *d_r = dnew(be, NULL, sizeof(float) * M);
    be->upload(d_x, x, sizeof(float) * M);
    be->relu_forward(d_r, d_x, M);
    dget(be, o, d_r, sizeof(float) * M);
    for (size_t i = 0; i < M; i++) ref[i] = x[i] > 0 ? x[i] : 0.0;
    check_close("relu_forward", o, ref, M, TOL);
    be->upload(d_o, junk, sizeof(float) * M);
    be->relu_backward(d_o, d_g, d_r, M);
    dget(be, o, d_o, sizeof(float) * M);
    for (size_t i = 0; i < M; i++) ref[i] = x[i] > 0 ? g[i] : 0.0;
    check_close("relu_backward (overwrites)", o, ref, M, TOL);

    free(vec), free(x), free(acc0), free(o), free(oh), free(ref), free(g), free(junk);
    be->free(d_v), be->free(d_x), be->free(d_o), be->free(d_h), be->free(d_g), be->free(d_r);
}

// ---- concat_columns / split_columns_backward -------------------------------------------------------------

static void test_concat(const Backend* be) {
    printf("concat_columns, split_columns_backward\n");
    const int N = 9, A = 5, B = 11, W = A + B;
    float *a = hnew(N * A, -1, 1), *b = hnew(N * B, -1, 1), *g = hnew(N * W, -1, 1);
    float *pa = hnew(N * A, -1, 1), *pb = hnew(N * B, -1, 1), *o = malloc(sizeof(float) * N * W);
    double* ref = dnewd(N * W);
    float *d_a = dnew(be, a, sizeof(float) * N * A), *d_b = dnew(be, b, sizeof(float) * N * B);
    float *d_o = dnew(be, NULL, sizeof(float) * N * W), *d_g = dnew(be, g, sizeof(float) * N * W);
    be->concat_columns(d_o, d_a, d_b, N, A, B);
    dget(be, o, d_o, sizeof(float) * N * W);
    for (int n = 0; n < N; n++)
        for (int c = 0; c < W; c++) ref[n * W + c] = c < A ? a[n * A + c] : b[n * B + c - A];
    check_close("concat_columns", o, ref, N * W, TOL);
    be->upload(d_a, pa, sizeof(float) * N * A);  // pre-filled: the halves are added
    be->upload(d_b, pb, sizeof(float) * N * B);
    be->split_columns_backward(d_a, d_b, d_g, N, A, B);
    dget(be, o, d_a, sizeof(float) * N * A);
    for (int n = 0; n < N; n++)
        for (int c = 0; c < A; c++) ref[n * A + c] = (double)pa[n * A + c] + g[n * W + c];
    check_close("split_columns_backward da (+=)", o, ref, N * A, TOL);
    dget(be, o, d_b, sizeof(float) * N * B);
    for (int n = 0; n < N; n++)
        for (int c = 0; c < B; c++) ref[n * B + c] = (double)pb[n * B + c] + g[n * W + A + c];
    check_close("split_columns_backward db (+=)", o, ref, N * B, TOL);
    free(a), free(b), free(g), free(pa), free(pb), free(o), free(ref);
    be->free(d_a), be->free(d_b), be->free(d_o), be->free(d_g);
}

// ---- roll_rows ---------------------------------------------------------------------------------------------

static void test_roll(const Backend* be) {
    printf("roll_rows, roll_rows_backward\n");
    const int R = 3, L = 10, H = 6, M = R * L * H;
    const int shifts[] = {0, 1, 3, L - 1, L + 2};
    float *x = hnew(M, -1, 1), *y = hnew(M, -1, 1), *pre = hnew(M, -1, 1);
    float *o = malloc(sizeof(float) * M), *bt = malloc(sizeof(float) * M);
    double* ref = dnewd(M);
    float *d_x = dnew(be, x, sizeof(float) * M), *d_y = dnew(be, y, sizeof(float) * M);
    float* d_o = dnew(be, NULL, sizeof(float) * M);
    char name[96];
    for (int t = 0; t < 5; t++) {
        const int s = shifts[t];
        be->roll_rows(d_o, d_x, R, L, H, s);
        dget(be, o, d_o, sizeof(float) * M);
        for (int r = 0; r < R; r++)
            for (int i = 0; i < L; i++)
                for (int c = 0; c < H; c++) ref[(r * L + i) * H + c] = x[(r * L + (i + s) % L) * H + c];
        snprintf(name, sizeof name, "roll_rows s=%d: out[r,i] = inp[r,(i+s) mod L]", s);
        check_close(name, o, ref, M, TOL);
        // adjoint: <roll(x), y> == <x, rollᵀ(y)>, rollᵀ from zero
        be->zero(d_o, sizeof(float) * M);
        be->roll_rows_backward(d_o, d_y, R, L, H, s);
        dget(be, bt, d_o, sizeof(float) * M);
        double lhs = 0.0, rhs = 0.0, mag = 0.0;
        for (int i = 0; i < M; i++) lhs += ref[i] * y[i], rhs += (double)x[i] * bt[i], mag += fabs(ref[i] * y[i]);
        const double adj = fabs(lhs - rhs) / mag;
        snprintf(name, sizeof name, "roll_rows_backward s=%d adjoint of roll_rows", s);
        printf("  %-52s max err %.2e\n", name, adj);
        CHECK(adj <= 1e-6, "roll_rows_backward s=%d is not the adjoint of roll_rows: %.3e", s, adj);
        // a permutation: every source row receives exactly one destination row
        for (int r = 0; r < R; r++)
            for (int i = 0; i < L; i++)
                for (int c = 0; c < H; c++) {
                    const int src = (r * L + (i + s) % L) * H + c;
                    ref[src] = (double)pre[src] + y[(r * L + i) * H + c];
                }
        be->upload(d_o, pre, sizeof(float) * M);
        be->roll_rows_backward(d_o, d_y, R, L, H, s);
        dget(be, o, d_o, sizeof(float) * M);
        snprintf(name, sizeof name, "roll_rows_backward s=%d onto pre-fill (+=)", s);
        check_close(name, o, ref, M, TOL);
    }
    free(x), free(y), free(pre), free(o), free(bt), free(ref);
    be->free(d_x), be->free(d_y), be->free(d_o);
}

// ---- mix -----------------------------------------------------------------------------------------------------

typedef struct {
    const Backend* be;
    int N, H;
    float *base, *th, *w, *G, *out;
    float *d_base, *d_th, *d_w, *d_out;
} MixCtx;
static double mix_loss(MixCtx* c) {  // Σ G ∘ mix(base, thought, w)
    const size_t M = (size_t)c->N * c->H;
    c->be->upload(c->d_base, c->base, sizeof(float) * M);
    c->be->upload(c->d_th, c->th, sizeof(float) * M);
    c->be->upload(c->d_w, c->w, sizeof(float) * c->N);
    c->be->mix_forward(c->d_out, c->d_base, c->d_th, c->d_w, c->N, c->H);
    dget(c->be, c->out, c->d_out, sizeof(float) * M);
    double l = 0.0;
    for (size_t i = 0; i < M; i++) l += (double)c->G[i] * c->out[i];
    return l;
}
// central differences w.r.t. x[i] for i = 0, every, ... against ana[i] (relative norm error)
static void fd_check(const char* what, MixCtx* c, float* x, size_t n, size_t every, const float* ana) {
    double sd = 0.0, sr = 0.0;
    for (size_t i = 0; i < n; i += every) {
        const float x0 = x[i], xp = x0 + FD_STEP, xm = x0 - FD_STEP;
        x[i] = xp;
        const double lp = mix_loss(c);
        x[i] = xm;
        const double lm = mix_loss(c);
        x[i] = x0;
        const double num = (lp - lm) / ((double)xp - (double)xm), d = ana[i] - num;
        sd += d * d, sr += num * num;
    }
    const double e = sqrt(sd) / (sr > 0 ? sqrt(sr) : 1.0);
    printf("  %-52s fd rel %.2e\n", what, e);
    CHECK(e <= TOL_FD && sr > 0, "%s: finite-difference rel error %.3e > %.1e", what, e, TOL_FD);
}

static void test_mix(const Backend* be) {
    printf("mix_forward, mix_backward\n");
    const int N = 13, H = 24, M = N * H;
    float *base = hnew(M, -1, 1), *th = hnew(M, -1, 1), *w = hnew(N, -0.5f, 1.5f), *G = hnew(M, -1, 1);
    float *pb = hnew(M, -1, 1), *pt = hnew(M, -1, 1), *junk = hnew(N, 50, 60);
    float *o = malloc(sizeof(float) * M), *db = malloc(sizeof(float) * M), *dt = malloc(sizeof(float) * M);
    float *dw = malloc(sizeof(float) * N), *db0 = malloc(sizeof(float) * M), *dt0 = malloc(sizeof(float) * M);
    double* ref = dnewd(M);
    float *d_base = dnew(be, base, sizeof(float) * M), *d_th = dnew(be, th, sizeof(float) * M);
    float *d_w = dnew(be, w, sizeof(float) * N), *d_G = dnew(be, G, sizeof(float) * M);
    float *d_o = dnew(be, NULL, sizeof(float) * M), *d_db = dnew(be, pb, sizeof(float) * M);
    float *d_dt = dnew(be, pt, sizeof(float) * M), *d_dw = dnew(be, junk, sizeof(float) * N);

    be->mix_forward(d_o, d_base, d_th, d_w, N, H);
    dget(be, o, d_o, sizeof(float) * M);
    for (int i = 0; i < M; i++) ref[i] = (1.0 - w[i / H]) * base[i] + (double)w[i / H] * th[i];
    check_close("mix_forward = (1-w)*base + w*thought", o, ref, M, TOL);

    // backward onto pre-filled dbase/dthought (+=) and a garbage dw (overwritten)
    be->mix_backward(d_db, d_dt, d_dw, d_G, d_base, d_th, d_w, N, H);
    dget(be, db, d_db, sizeof(float) * M);
    dget(be, dt, d_dt, sizeof(float) * M);
    dget(be, dw, d_dw, sizeof(float) * N);
    for (int i = 0; i < M; i++) ref[i] = pb[i] + (1.0 - w[i / H]) * G[i];
    check_close("mix_backward dbase (+=)", db, ref, M, TOL);
    for (int i = 0; i < M; i++) ref[i] = pt[i] + (double)w[i / H] * G[i];
    check_close("mix_backward dthought (+=)", dt, ref, M, TOL);
    for (int n = 0; n < N; n++) {
        ref[n] = 0.0;
        for (int c = 0; c < H; c++) ref[n] += (double)G[n * H + c] * ((double)th[n * H + c] - base[n * H + c]);
    }
    check_close("mix_backward dw (overwritten)", dw, ref, N, TOL);

    // finite differences against the gradients alone (from zero)
    be->zero(d_db, sizeof(float) * M);
    be->zero(d_dt, sizeof(float) * M);
    be->mix_backward(d_db, d_dt, d_dw, d_G, d_base, d_th, d_w, N, H);
    dget(be, db0, d_db, sizeof(float) * M);
    dget(be, dt0, d_dt, sizeof(float) * M);
    MixCtx c = {be, N, H, base, th, w, G, o, d_base, d_th, d_w, d_o};
    fd_check("mix_backward dw", &c, w, N, 1, dw);
    fd_check("mix_backward dbase", &c, base, M, 5, db0);
    fd_check("mix_backward dthought", &c, th, M, 5, dt0);

    free(base), free(th), free(w), free(G), free(pb), free(pt), free(junk), free(o), free(db), free(dt), free(dw);
    free(db0), free(dt0), free(ref);
    be->free(d_base), be->free(d_th), be->free(d_w), be->free(d_G), be->free(d_o), be->free(d_db), be->free(d_dt);
    be->free(d_dw);
}

// ---- quietstar_advantage ---------------------------------------------------------------------------------------

static void test_advantage_case(const Backend* be, int B, int P, int L, int T) {
    const int RL = B * P * L;
    // losses in [0, 3]: the talk loss is below or above the base loss, so rewards take both signs
    float *bl = hnew(RL, 0, 3), *tl = hnew((size_t)T * RL, 0, 3);
    float *rw = malloc(sizeof(float) * RL), *ad = malloc(sizeof(float) * RL), *junk = hnew(RL, 900, 999);
    double *rr = dnewd(RL), *ra = dnewd(RL);
    float *d_bl = dnew(be, bl, sizeof(float) * RL), *d_tl = dnew(be, tl, sizeof(float) * T * RL);
    float *d_rw = dnew(be, junk, sizeof(float) * RL), *d_ad = dnew(be, junk, sizeof(float) * RL);
    // the naive loop of §1.7
    for (int b = 0; b < B; b++)
        for (int p = 0; p < P; p++)
            for (int i = 0; i < L; i++) {
                const int n = (b * P + p) * L + i;
                double r = 0.0;
                if (i < L - 1 - T)
                    for (int s = 0; s < T; s++) r += (double)bl[n + s] - tl[(size_t)s * RL + n];
                rr[n] = r;
            }
    for (int b = 0; b < B; b++)
        for (int p = 0; p < P; p++)
            for (int i = 0; i < L; i++) {
                double mean = 0.0;
                if (P > 1) {
                    for (int q = 0; q < P; q++) mean += rr[(b * P + q) * L + i];
                    mean /= P;
                }
                const double a = rr[(b * P + p) * L + i] - mean;
                ra[(b * P + p) * L + i] = a > 0 ? a : 0.0;
            }
    be->quietstar_advantage(d_rw, d_ad, d_bl, d_tl, B, P, L, T);
    dget(be, rw, d_rw, sizeof(float) * RL);
    dget(be, ad, d_ad, sizeof(float) * RL);
    char name[96];
    snprintf(name, sizeof name, "quietstar_advantage reward (B=%d P=%d L=%d T=%d)", B, P, L, T);
    check_close(name, rw, rr, RL, TOL);
    snprintf(name, sizeof name, "quietstar_advantage advantage (P=%d)", P);
    check_close(name, ad, ra, RL, TOL);
    int tail_zero = 1, nonneg = 1, npos = 0, nclamped = 0;
    for (int n = 0; n < RL; n++) {
        if (n % L >= L - 1 - T) tail_zero &= rw[n] == 0.0f && ad[n] == 0.0f;
        nonneg &= ad[n] >= 0.0f;
        if (n % L < L - 1 - T) npos += ra[n] > 0, nclamped += ra[n] == 0;
    }
    CHECK(tail_zero, "quietstar_advantage P=%d: reward/advantage not 0 for slots i >= L-1-T", P);
    CHECK(nonneg, "quietstar_advantage P=%d: negative advantage", P);
    if (P == 2) {  // the better of the two thoughts at each slot is reinforced, never both
        int one = 1;
        for (int b = 0; b < B; b++)
            for (int i = 0; i < L; i++) one &= ad[(b * 2) * L + i] == 0.0f || ad[(b * 2 + 1) * L + i] == 0.0f;
        CHECK(one, "quietstar_advantage P=2: both passes reinforced at one slot");
    }
    CHECK(npos > 0 && nclamped > 0, "quietstar_advantage P=%d: test data exercises no clamp (%d pos, %d clamped)", P,
          npos, nclamped);
    free(bl), free(tl), free(rw), free(ad), free(junk), free(rr), free(ra);
    be->free(d_bl), be->free(d_tl), be->free(d_rw), be->free(d_ad);
}

// ---- the device-resident step's ops: shift_tokens, row_weights, quietstar_stats ------------------------------

static void test_shift_and_weights(const Backend* be) {
    printf("shift_tokens, row_weights\n");
    const int R = 3, L = 11, N = R * L;
    int32_t x[3 * 11], out[3 * 11], junk[3 * 11];
    for (int n = 0; n < N; n++) x[n] = (int32_t)(urand() * 1000), junk[n] = -7;
    int32_t* d_x = dnew(be, x, sizeof x);
    int32_t* d_out = dnew(be, junk, sizeof junk);
    const int cases[][3] = {{1, L - 1, QSTAR_IGNORE_INDEX}, {0, L, 5}, {3, L - 3, 2}, {4, L - 4, -100}, {L - 1, 1, 9}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const int shift = cases[c][0], limit = cases[c][1], fill = cases[c][2];
        be->shift_tokens(d_out, d_x, N, L, shift, limit, fill);
        dget(be, out, d_out, sizeof out);
        int bad = 0;
        for (int n = 0; n < N; n++) bad += out[n] != (n % L < limit ? x[n + shift] : fill);
        CHECK(bad == 0, "shift_tokens shift %d limit %d: %d wrong", shift, limit, bad);
    }
    float per_row[3 * 11], w[3 * 11];
    fill(per_row, N, -2, 3);
    float* d_pr = dnew(be, per_row, sizeof per_row);
    float* d_w = dnew(be, per_row, sizeof per_row);  // garbage: overwritten
    for (int with = 0; with < 2; with++)
        for (int limit = 0; limit <= L; limit += 4) {
            const float value = 0.37f + with;
            be->row_weights(d_w, with ? d_pr : NULL, value, N, L, limit);
            dget(be, w, d_w, sizeof w);
            int bad = 0;
            for (int n = 0; n < N; n++) {
                float ref = n % L < limit ? value * (with ? per_row[n] : 1.0f) : 0.0f;
                bad += memcmp(&ref, &w[n], sizeof ref) != 0;
            }
            CHECK(bad == 0, "row_weights per_row %d limit %d: %d not bitwise", with, limit, bad);
        }
    // the lm step's use: every row of one long "row"
    be->row_weights(d_w, NULL, 0.25f, N, N, N);
    dget(be, w, d_w, sizeof w);
    int bad = 0;
    for (int n = 0; n < N; n++) bad += w[n] != 0.25f;
    CHECK(bad == 0, "row_weights over all rows: %d wrong", bad);
    be->free(d_x);
    be->free(d_out);
    be->free(d_pr);
    be->free(d_w);
}

static void test_stats_case(const Backend* be, int R, int L, int T, int K) {
    const int N = R * L, NS = 2 * T + 5;
    float *bl = hnew(N, 0, 4), *tl = hnew((size_t)T * N, 0, 4), *w = hnew((size_t)T * N, -1, 1);
    float *pl = hnew((size_t)K * N, 0, 6), *rw = hnew(N, -2, 2), *ad = hnew(N, -1, 1);
    for (int n = 0; n < N; n += 3) ad[n] = 0.0f;  // zeros and negatives: not positive
    double ref[2 * QS_TEST_MAX_T + 5] = {0}, got[2 * QS_TEST_MAX_T + 5];
    for (int n = 0; n < N; n++) {
        const int i = n % L;
        ref[0] += bl[n];
        for (int s = 0; s < T; s++) {
            ref[1 + s] += tl[(size_t)s * N + n];
            if (i < L - 1 - s) ref[1 + T + s] += w[(size_t)s * N + n];
        }
        if (i >= L - 1 - T) continue;
        float nll = 0.0f;  // ops.h: a float sum over k in order, its product with the advantage in float
        for (int k = 0; k < K; k++) nll += pl[(size_t)k * N + n];
        ref[1 + 2 * T] += rw[n];
        ref[2 + 2 * T] += ad[n];
        ref[3 + 2 * T] += ad[n] > 0;
        ref[4 + 2 * T] += ad[n] * nll;
    }
    float *d_bl = dnew(be, bl, sizeof(float) * N), *d_tl = dnew(be, tl, sizeof(float) * T * N);
    float *d_w = dnew(be, w, sizeof(float) * T * N), *d_pl = dnew(be, pl, sizeof(float) * K * N);
    float *d_rw = dnew(be, rw, sizeof(float) * N), *d_ad = dnew(be, ad, sizeof(float) * N);
    double* d_st = dnew(be, NULL, sizeof(double) * NS);
    be->quietstar_stats(d_st, d_bl, d_tl, d_w, d_pl, d_rw, d_ad, N, L, T, K);
    dget(be, got, d_st, sizeof(double) * NS);
    double worst = 0;
    for (int j = 0; j < NS; j++) {
        const double tol = 1e-12;  // double sums of float terms in another order
        const double e = fabs(got[j] - ref[j]) / (fabs(ref[j]) > 1 ? fabs(ref[j]) : 1);
        if (e / tol > worst) worst = e / tol;
        CHECK(e <= tol, "quietstar_stats R %d L %d T %d K %d: stat %d = %.17g, ref %.17g", R, L, T, K, j, got[j], ref[j]);
    }
    CHECK(got[3 + 2 * T] == ref[3 + 2 * T], "quietstar_stats: positive count %g, ref %g", got[3 + 2 * T],
          ref[3 + 2 * T]);
    printf("  quietstar_stats R %d L %2d T %d K %d: worst error / tolerance %.2f\n", R, L, T, K, worst);
    be->free(d_bl);
    be->free(d_tl);
    be->free(d_w);
    be->free(d_pl);
    be->free(d_rw);
    be->free(d_ad);
    be->free(d_st);
    free(bl);
    free(tl);
    free(w);
    free(pl);
    free(rw);
    free(ad);
}

int main(int argc, char** argv) {
    const Backend* be = backend_get(argc > 1 ? argv[1] : "cpu");
    if (!be) {
        fprintf(stderr, "unknown backend '%s' (built: %s)\n", argv[1], backend_names());
        return 2;
    }
    printf("backend %s\n", be->name);
    test_mask_columns(be);
    test_gumbel_determinism(be);
    test_gumbel_distribution(be);
    test_gumbel_masked(be);
    test_uniform_open_interval();
    test_gumbel_masked_extreme(be);
    test_gumbel_philox(be);
    test_small_ops(be);
    test_concat(be);
    test_roll(be);
    test_mix(be);
    printf("quietstar_advantage\n");
    for (int P = 1; P <= 3; P++) test_advantage_case(be, 2, P, 10, 4);
    test_shift_and_weights(be);
    printf("quietstar_stats\n");
    test_stats_case(be, 2, 13, 1, 1);
    test_stats_case(be, 4, 37, 4, 9);
    test_stats_case(be, 3, 301, 4, 9);  // more rows than the CUDA block's threads
    return test_summary();
}
