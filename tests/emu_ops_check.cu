/*
 * emu_ops_check.cu — the CUDA backend's memory-bound and small ops (embedding, rmsnorm, rope, swiglu,
 * elementwise, cross-entropy, AdamW/round_bf16/sum_squares, the Quiet-STaR ops) run on the CPU
 * emulator (emu/) and compared with the C reference of the same op (kernels/cpu): bitwise where
 * the reference is exact (copies, masks, Gumbel argmax, rolls, advantage, bf16 rounding, in-order
 * sums), within 1e-5 relative otherwise. Random inputs at small, deliberately awkward sizes (rows and
 * columns not multiples of the block sizes), ignored targets, repeated tokens, accumulate (+=)
 * outputs that start non-zero, in-place cross-entropy, rows that are not 16-byte aligned (the scalar
 * head/tail of the 128-bit paths), embedding backward over more tokens than one sort chunk. The
 * memory-bound kernels are templates on the activation type; their bf16 variants run here too, on
 * inputs rounded to bf16 that the fp32 reference gets as the same values, so the only differences are
 * the bf16 rounding of bf16 outputs: at most half an ulp (2^-8 relative), or one ulp (2^-7) where fp32
 * noise straddles a rounding boundary, hence TOL_BF16 = 2^-7; fp32 outputs (losses, dweight, dtable)
 * keep 1e-5, and the embedding table gradient stays bitwise. The full cross-backend suite is tests/test_ops;
 * this is the kernel author's check. Build and run (after `make` has built build/libqstar.a and the
 * emulator objects, see emu/emu.mk):
 *   g++ -std=c++20 -O1 -I. -I/usr/local/cuda/include -x c++ -include emu/cuemu.h tests/emu_ops_check.cu \
 *       -x none build/emu/cuemu.o build/emu/cublas_emu.o build/libqstar.a -fopenmp -pthread -lopenblas -lcjson -lm \
 *       -o build/emu_ops_check && build/emu_ops_check
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vector>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/adamw.cuh"
#include "kernels/cuda/crossentropy.cuh"
#include "kernels/cuda/elementwise.cuh"
#include "kernels/cuda/embedding.cuh"
#include "kernels/cuda/quietstar.cuh"
#include "kernels/cuda/rmsnorm.cuh"
#include "kernels/cuda/rope.cuh"
#include "kernels/cuda/swiglu.cuh"
#include "tests/check.h"

extern "C" {
#include "kernels/cpu/cpu.h"
}

cudaStream_t qstar_stream = 0;

typedef std::vector<float> vf;
typedef std::vector<int32_t> vi;

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static float urand(void) {  // uniform in [-1, 1)
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng_state >> 40) & 0xFFFFFF) / 8388608.0f - 1.0f;
}
static vf rnd(size_t n, float scale = 1.0f) {
    vf v(n);
    for (auto& x : v) x = scale * urand();
    return v;
}
static int irand(int n) { return (int)((urand() + 1.0f) * 0.5f * n) % n; }

template <class T>
static T* dev(const std::vector<T>& h) {
    T* d = nullptr;
    cudaCheck(cudaMalloc((void**)&d, (h.size() ? h.size() : 1) * sizeof(T)));
    if (h.size()) cudaCheck(cudaMemcpy(d, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
    return d;
}
template <class T>
static std::vector<T> host(const T* d, size_t n) {
    std::vector<T> h(n);
    if (n) cudaCheck(cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost));
    return h;
}

// Compares and reports the worst element. tol < 0: bitwise.
static void compare(const char* what, const vf& got, const vf& want, float tol) {
    CHECK(got.size() == want.size(), "%s: size %zu vs %zu", what, got.size(), want.size());
    double worst = 0.0;
    size_t bad = 0, worst_i = 0;
    for (size_t i = 0; i < want.size(); i++) {
        double err;
        if (tol < 0)
            err = memcmp(&got[i], &want[i], 4) != 0;
        else if (isnan(want[i]) || isnan(got[i]))
            err = isnan(want[i]) != isnan(got[i]) ? INFINITY : 0.0;
        else
            err = fabs((double)got[i] - want[i]) / fmax(fabs((double)want[i]), 1.0);  // relative, abs near 0
        if (err > worst) worst = err, worst_i = i;
        if (tol < 0 ? err != 0 : err > tol) bad++;
    }
    CHECK(bad == 0, "%s: %zu of %zu differ, worst at %zu: got %.9g want %.9g", what, bad, want.size(), worst_i,
          got.empty() ? 0.0 : got[worst_i], want.empty() ? 0.0 : want[worst_i]);
    printf("  %-40s n=%-7zu %s worst %.3g\n", what, want.size(), tol < 0 ? "bitwise" : "rel", worst);
}
static void compare_i(const char* what, const vi& got, const vi& want) {
    size_t bad = 0;
    for (size_t i = 0; i < want.size(); i++) bad += got[i] != want[i];
    CHECK(got.size() == want.size() && bad == 0, "%s: %zu of %zu differ", what, bad, want.size());
    printf("  %-40s n=%-7zu exact, %zu differ\n", what, want.size(), bad);
}

static const float TOL = 1e-5f;
static const float TOL_BF16 = 1.0f / 128;  // one bf16 ulp, relative (see the top of the file)

typedef __nv_bfloat16 bf16;
typedef std::vector<bf16> vb;
static vb to_bf16(const vf& x) {
    vb y(x.size());
    for (size_t i = 0; i < x.size(); i++) y[i] = __float2bfloat16_rn(x[i]);
    return y;
}
static vf to_f32(const vb& x) {
    vf y(x.size());
    for (size_t i = 0; i < x.size(); i++) y[i] = __bfloat162float(x[i]);
    return y;
}
static vf round_bf16(const vf& x) { return to_f32(to_bf16(x)); }

// Backward only, bitwise against the reference: fp32 dout, and dout rounded to bf16 (the table
// gradient stays fp32 and gets the same additions in the same order).
static void test_embedding_backward_case(int N, int V, int H) {
    vi tok(N);
    for (auto& t : tok) t = irand(V);
    tok[0] = tok[N - 1] = V - 1;
    vf dout = rnd((size_t)N * H), dtable0 = rnd((size_t)V * H), dtable_c = dtable0;
    cpu_embedding_backward(dtable_c.data(), dout.data(), tok.data(), N, V, H);
    float *d_dout = dev(dout), *d_dtable = dev(dtable0);
    int32_t* d_tok = dev(tok);
    cuda_embedding_backward(d_dtable, d_dout, d_tok, N, V, H);
    char name[96];
    snprintf(name, sizeof name, "embedding_backward N=%d V=%d H=%d", N, V, H);
    compare(name, host(d_dtable, (size_t)V * H), dtable_c, -1);
    // bf16 storage of the gradient too (the bf16 table's): each row's share of a chunk of EMB_CHUNK tokens
    // summed in fp32 and stored once, so the reference rounds the table after each chunk as the kernel does
    vf doutb = round_bf16(dout), dtable_b = round_bf16(dtable0);
    for (int n0 = 0; n0 < N; n0 += EMB_CHUNK) {
        const int len = N - n0 < EMB_CHUNK ? N - n0 : EMB_CHUNK;
        cpu_embedding_backward(dtable_b.data(), doutb.data() + (size_t)n0 * H, tok.data() + n0, len, V, H);
        dtable_b = round_bf16(dtable_b);
    }
    bf16 *d_doutb = dev(to_bf16(dout)), *d_dtableb = dev(to_bf16(dtable0));
    embedding_backward_launch<bf16>(d_dtableb, d_doutb, d_tok, N, H);
    snprintf(name, sizeof name, "embedding_backward bf16 N=%d H=%d", N, H);
    compare(name, to_f32(host(d_dtableb, (size_t)V * H)), dtable_b, TOL_BF16);
    cudaFree(d_dout), cudaFree(d_dtable), cudaFree(d_tok), cudaFree(d_doutb), cudaFree(d_dtableb);
}

static void test_embedding(void) {
    test_embedding_backward_case(37, 11, 64);       // 16-byte packs
    test_embedding_backward_case(5000, 40, 12);     // two sort chunks, long segments
    test_embedding_backward_case(9, 1000, 150);     // mostly distinct tokens
    const int N = 37, V = 11, H = 150;  // few tokens, so most repeat
    vi tok(N);
    for (auto& t : tok) t = irand(V);
    tok[3] = tok[4] = tok[30] = 5;
    vf table = rnd((size_t)V * H), dout = rnd((size_t)N * H), dtable0 = rnd((size_t)V * H);
    vf out_c((size_t)N * H), dtable_c = dtable0;
    cpu_embedding_forward(out_c.data(), tok.data(), table.data(), N, H);
    cpu_embedding_backward(dtable_c.data(), dout.data(), tok.data(), N, V, H);
    float *d_out = dev(vf((size_t)N * H)), *d_table = dev(table), *d_dout = dev(dout), *d_dtable = dev(dtable0);
    int32_t* d_tok = dev(tok);
    cuda_embedding_forward(d_out, d_tok, d_table, N, H);
    cuda_embedding_backward(d_dtable, d_dout, d_tok, N, V, H);
    compare("embedding_forward", host(d_out, (size_t)N * H), out_c, -1);
    compare("embedding_backward (+=, repeats)", host(d_dtable, (size_t)V * H), dtable_c, -1);
}

static void test_rmsnorm_backward_bf16(int N, int H) {
    vf inp = round_bf16(rnd((size_t)N * H, 2.0f)), w = round_bf16(rnd(H)), dout = round_bf16(rnd((size_t)N * H)),
       dinp0 = round_bf16(rnd((size_t)N * H)), dw0 = rnd(H), out_c((size_t)N * H), rstd_c(N);
    cpu_rmsnorm_forward(out_c.data(), rstd_c.data(), inp.data(), w.data(), N, H, 1e-5f);
    vf dinp_c = dinp0, dw_c = round_bf16(dw0);
    cpu_rmsnorm_backward(dinp_c.data(), dw_c.data(), dout.data(), inp.data(), w.data(), rstd_c.data(), N, H);
    bf16 *d_inp = dev(to_bf16(inp)), *d_dout = dev(to_bf16(dout)), *d_dinp = dev(to_bf16(dinp0));
    bf16 *d_w = dev(to_bf16(w)), *d_dw = dev(to_bf16(dw0));
    float* d_rstd = dev(rstd_c);
    rmsnorm_backward_launch<bf16>(d_dinp, d_dw, d_dout, d_inp, d_w, d_rstd, N, H);
    char name[96];
    snprintf(name, sizeof name, "rmsnorm_backward bf16 dinp N=%d H=%d", N, H);
    compare(name, to_f32(host(d_dinp, (size_t)N * H)), dinp_c, TOL_BF16);
    snprintf(name, sizeof name, "rmsnorm_backward bf16 dweight N=%d H=%d", N, H);
    compare(name, to_f32(host(d_dw, H)), dw_c, TOL_BF16);
    cudaFree(d_inp), cudaFree(d_dout), cudaFree(d_dinp), cudaFree(d_w), cudaFree(d_dw), cudaFree(d_rstd);
}

static void test_rmsnorm(void) {
    test_rmsnorm_backward_bf16(13, 304);
    test_rmsnorm_backward_bf16(700, 200);  // several rows per block
    test_rmsnorm_backward_bf16(3, 301);    // scalar path
    const int N = 13, H = 300;  // N not a multiple of 8 rows/block, H not of 32
    vf inp = rnd((size_t)N * H, 2.0f), w = rnd(H), dout = rnd((size_t)N * H), dinp0 = rnd((size_t)N * H),
       dw0 = rnd(H);
    vf out_c((size_t)N * H), rstd_c(N), dinp_c = dinp0, dw_c = dw0;
    cpu_rmsnorm_forward(out_c.data(), rstd_c.data(), inp.data(), w.data(), N, H, 1e-5f);
    cpu_rmsnorm_backward(dinp_c.data(), dw_c.data(), dout.data(), inp.data(), w.data(), rstd_c.data(), N, H);
    float *d_out = dev(vf((size_t)N * H)), *d_rstd = dev(vf(N)), *d_inp = dev(inp), *d_w = dev(w), *d_dout = dev(dout),
          *d_dinp = dev(dinp0), *d_dw = dev(dw0);
    cuda_rmsnorm_forward(d_out, d_rstd, d_inp, d_w, N, H, 1e-5f);
    cuda_rmsnorm_backward(d_dinp, d_dw, d_dout, d_inp, d_w, d_rstd, N, H);
    compare("rmsnorm_forward out", host(d_out, (size_t)N * H), out_c, TOL);
    compare("rmsnorm_forward rstd", host(d_rstd, N), rstd_c, TOL);
    compare("rmsnorm_backward dinp (+=)", host(d_dinp, (size_t)N * H), dinp_c, TOL);
    compare("rmsnorm_backward dweight (+=)", host(d_dw, H), dw_c, TOL);
}

static void test_rope(void) {
    const int N = 9, NH = 4, NKV = 2, HD = 16;
    const size_t W = (size_t)(NH + 2 * NKV) * HD;
    vi pos(N);
    for (int n = 0; n < N; n++) pos[n] = n * 997 + (n % 3);  // far positions round differently
    vf qkv = rnd(N * W);
    vf f_c = qkv, b_c = qkv;
    cpu_rope_forward(f_c.data(), pos.data(), N, NH, NKV, HD, 10000.0f);
    cpu_rope_backward(b_c.data(), pos.data(), N, NH, NKV, HD, 10000.0f);
    float *d_f = dev(qkv), *d_b = dev(qkv);
    int32_t* d_pos = dev(pos);
    cuda_rope_forward(d_f, d_pos, N, NH, NKV, HD, 10000.0f);
    cuda_rope_backward(d_b, d_pos, N, NH, NKV, HD, 10000.0f);
    compare("rope_forward", host(d_f, N * W), f_c, TOL);
    compare("rope_backward", host(d_b, N * W), b_c, TOL);
    vf vals_g = host(d_f, N * W);
    bool untouched = true;  // value heads bitwise unchanged
    for (int n = 0; n < N; n++)
        for (size_t c = (size_t)(NH + NKV) * HD; c < W; c++) untouched &= vals_g[n * W + c] == qkv[n * W + c];
    CHECK(untouched, "rope touched the value heads");
}

static void test_swiglu(void) {
    const int N = 7, IM = 301;
    vf gu = rnd((size_t)N * 2 * IM, 6.0f), dout = rnd((size_t)N * IM);
    vf out_c((size_t)N * IM), dgu_c((size_t)N * 2 * IM);
    cpu_swiglu_forward(out_c.data(), gu.data(), N, IM);
    cpu_swiglu_backward(dgu_c.data(), dout.data(), gu.data(), N, IM);
    float *d_out = dev(vf((size_t)N * IM)), *d_gu = dev(gu), *d_dout = dev(dout), *d_dgu = dev(vf((size_t)N * 2 * IM));
    cuda_swiglu_forward(d_out, d_gu, N, IM);
    cuda_swiglu_backward(d_dgu, d_dout, d_gu, N, IM);
    compare("swiglu_forward", host(d_out, (size_t)N * IM), out_c, TOL);
    compare("swiglu_backward", host(d_dgu, (size_t)N * 2 * IM), dgu_c, TOL);
    for (int im : {304, 301}) {  // bf16: 16-byte packs of 8, and the scalar path
        vf gub = round_bf16(rnd((size_t)N * 2 * im, 6.0f)), doutb = round_bf16(rnd((size_t)N * im));
        vf o_c((size_t)N * im), dg_c((size_t)N * 2 * im);
        cpu_swiglu_forward(o_c.data(), gub.data(), N, im);
        cpu_swiglu_backward(dg_c.data(), doutb.data(), gub.data(), N, im);
        bf16 *b_gu = dev(to_bf16(gub)), *b_dout = dev(to_bf16(doutb)), *b_out = dev(vb((size_t)N * im)),
             *b_dg = dev(vb((size_t)N * 2 * im));
        swiglu_forward_launch<bf16>(b_out, b_gu, N, im);
        swiglu_backward_launch<bf16>(b_dg, b_dout, b_gu, N, im);
        char name[64];
        snprintf(name, sizeof name, "swiglu_forward bf16 IM=%d", im);
        compare(name, to_f32(host(b_out, (size_t)N * im)), o_c, TOL_BF16);
        snprintf(name, sizeof name, "swiglu_backward bf16 IM=%d", im);
        compare(name, to_f32(host(b_dg, (size_t)N * 2 * im)), dg_c, TOL_BF16);
        cudaFree(b_gu), cudaFree(b_dout), cudaFree(b_out), cudaFree(b_dg);
    }
}

static void test_elementwise(void) {
    const size_t n = 1000;
    vf a = rnd(n), b = rnd(n);
    vf add_c(n), sc_c = a;
    cpu_add(add_c.data(), a.data(), b.data(), n);
    cpu_scale(sc_c.data(), 0.37f, n);
    float *d_a = dev(a), *d_b = dev(b), *d_o = dev(vf(n));
    cuda_add(d_o, d_a, d_b, n);
    compare("add", host(d_o, n), add_c, -1);
    cuda_add(d_a, d_a, d_b, n);  // out aliases a
    compare("add (out == a)", host(d_a, n), add_c, -1);
    float* d_s = dev(a);
    cuda_scale(d_s, 0.37f, n);
    compare("scale", host(d_s, n), sc_c, -1);
    {  // more elements than the capped grid covers: the grid-stride loop must wrap
        const size_t big = (size_t)8192 * ELEMENTWISE_BLOCK + 12345;
        vf x = rnd(big), x_c = x;
        cpu_scale(x_c.data(), -1.5f, big);
        float* d_x = dev(x);
        cuda_scale(d_x, -1.5f, big);
        compare("scale (grid-stride wrap)", host(d_x, big), x_c, -1);
        cudaFree(d_x);
    }
    const int rows = 5, cols = 19;
    const size_t ds = 40, ss = 23;
    vf src = rnd(rows * ss), dst0 = rnd(rows * ds), dst_c = dst0;
    cpu_copy_strided(dst_c.data(), ds, src.data(), ss, rows, cols);
    float *d_src = dev(src), *d_dst = dev(dst0);
    cuda_copy_strided(d_dst, ds, d_src, ss, rows, cols);
    compare("copy_strided", host(d_dst, rows * ds), dst_c, -1);
}

static void test_crossentropy(void) {
    const int N = 10, V = 1500;  // V not a multiple of the 512-thread block
    vf logits = rnd((size_t)N * V, 8.0f), dl = rnd(N);
    vi tgt(N);
    for (auto& t : tgt) t = irand(V);
    tgt[2] = QSTAR_IGNORE_INDEX;
    tgt[7] = -1;
    tgt[5] = V - 1;
    tgt[6] = 0;
    vf loss_c(N), dlog_c((size_t)N * V);
    cpu_crossentropy_forward(loss_c.data(), logits.data(), tgt.data(), N, V);
    cpu_crossentropy_backward(dlog_c.data(), logits.data(), tgt.data(), dl.data(), N, V);
    float *d_log = dev(logits), *d_loss = dev(rnd(N)), *d_dl = dev(dl), *d_dlog = dev(rnd((size_t)N * V));
    int32_t* d_tgt = dev(tgt);
    cuda_crossentropy_forward(d_loss, d_log, d_tgt, N, V);
    cuda_crossentropy_backward(d_dlog, d_log, d_tgt, d_dl, N, V);
    compare("crossentropy_forward (ignored rows)", host(d_loss, N), loss_c, TOL);
    vf g = host(d_dlog, (size_t)N * V);
    compare("crossentropy_backward", g, dlog_c, TOL);
    bool zero = true;
    for (int v = 0; v < V; v++) zero &= g[2 * V + v] == 0.0f && g[7 * V + v] == 0.0f;
    CHECK(zero, "ignored rows must have a zero gradient");
    cuda_crossentropy_backward(d_log, d_log, d_tgt, d_dl, N, V);  // in place
    compare("crossentropy_backward (in place)", host(d_log, (size_t)N * V), dlog_c, TOL);

    // fused: the same losses and gradient in one pass; in place and out of place
    vf fl_c(N), fd_c((size_t)N * V);
    cpu_crossentropy_fused(fl_c.data(), fd_c.data(), logits.data(), tgt.data(), dl.data(), N, V);
    compare("crossentropy_fused losses = forward's", fl_c, loss_c, -1);
    compare("crossentropy_fused dlogits = backward's", fd_c, dlog_c, -1);
    cudaCheck(cudaMemcpy(d_log, logits.data(), logits.size() * sizeof(float), cudaMemcpyHostToDevice));
    cuda_crossentropy_fused(d_loss, d_dlog, d_log, d_tgt, d_dl, N, V);
    compare("crossentropy_fused losses", host(d_loss, N), loss_c, TOL);
    compare("crossentropy_fused dlogits", host(d_dlog, (size_t)N * V), dlog_c, TOL);
    cuda_crossentropy_fused(d_loss, d_log, d_log, d_tgt, d_dl, N, V);
    compare("crossentropy_fused dlogits (in place)", host(d_log, (size_t)N * V), host(d_dlog, (size_t)N * V), -1);

    // bf16 logits and gradient (fp32 losses), V odd: every row at another offset from a 16-byte boundary
    for (int v2 : {1501, 1504}) {
        vf lb = round_bf16(rnd((size_t)N * v2, 8.0f));
        vi tb(N);
        for (auto& t : tb) t = irand(v2);
        tb[2] = QSTAR_IGNORE_INDEX;
        vf lb_c(N), db_c((size_t)N * v2);
        cpu_crossentropy_fused(lb_c.data(), db_c.data(), lb.data(), tb.data(), dl.data(), N, v2);
        bf16* b_log = dev(to_bf16(lb));
        int32_t* b_tgt = dev(tb);
        crossentropy_launch<bf16>(d_loss, b_log, b_log, b_tgt, d_dl, N, v2);  // in place, as the model runs it
        char name[64];
        snprintf(name, sizeof name, "crossentropy_fused bf16 losses V=%d", v2);
        compare(name, host(d_loss, N), lb_c, TOL);
        snprintf(name, sizeof name, "crossentropy_fused bf16 dlogits V=%d", v2);
        compare(name, to_f32(host(b_log, (size_t)N * v2)), db_c, TOL_BF16);
        cudaFree(b_log), cudaFree(b_tgt);
    }
}

static void test_adamw(void) {
    const size_t n = 777;
    vf p = rnd(n), g = rnd(n), m = rnd(n, 0.1f), v = rnd(n, 0.1f);
    for (auto& x : v) x = fabsf(x);
    vf p_c = p, m_c = m, v_c = v;
    cpu_adamw_update(p_c.data(), NULL, g.data(), m_c.data(), v_c.data(), n, 3e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.5f, 7, 0, 0, 0);
    float *d_p = dev(p), *d_g = dev(g), *d_m = dev(m), *d_v = dev(v);
    cuda_adamw_update(d_p, NULL, d_g, d_m, d_v, n, 3e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.5f, 7, 0, 0, 0);
    compare("adamw param", host(d_p, n), p_c, TOL);
    compare("adamw m", host(d_m, n), m_c, TOL);
    compare("adamw v", host(d_v, n), v_c, TOL);

    vf x = rnd(n, 100.0f);
    const uint32_t special[] = {0x7F800000u, 0xFF800000u, 0x7FC00001u, 0x7F7FFFFFu, 0x3F808000u, 0x3F818000u,
                                0x3F808001u, 0x00008000u, 0x80018000u, 0x7F7F8000u};
    for (size_t i = 0; i < sizeof special / 4; i++) memcpy(&x[i], &special[i], 4);
    vf x_c = x;
    cpu_round_bf16(x_c.data(), n);
    float* d_x = dev(x);
    cuda_round_bf16(d_x, n);
    compare("round_bf16 (ties, inf, nan)", host(d_x, n), x_c, -1);

    const size_t sizes[] = {0, 1, 1000, 300001};
    for (size_t s : sizes) {
        vf y = rnd(s, 3.0f);
        float want;
        cpu_sum_squares(&want, y.data(), s);
        float *d_y = dev(y), *d_out = dev(vf(1, 123.0f));
        cuda_sum_squares(d_out, d_y, s);
        float got = host(d_out, 1)[0];
        float got2;
        cuda_sum_squares(d_out, d_y, s);
        got2 = host(d_out, 1)[0];
        char name[64];
        snprintf(name, sizeof name, "sum_squares n=%zu", s);
        compare(name, vf{got}, vf{want}, 1e-6f);
        CHECK(memcmp(&got, &got2, 4) == 0, "sum_squares not deterministic");
        cudaFree(d_y);
        cudaFree(d_out);
    }
}

static void test_quietstar(void) {
    {  // mask_columns
        const int N = 6, V = 100;
        vf x = rnd((size_t)N * V), x_c = x;
        cpu_mask_columns(x_c.data(), N, V, 37, 61, -INFINITY);
        float* d = dev(x);
        cuda_mask_columns(d, N, V, 37, 61, -INFINITY);
        compare("mask_columns", host(d, (size_t)N * V), x_c, -1);
    }
    {  // gumbel_sample: several seeds/steps/k, V not a multiple of 4 nor of 4*256, a masked range, ties
        const int L = 5, N = 3 * L;
        const int Vs[] = {1, 3, 1001, 2050};
        for (int V : Vs) {
            vf z = rnd((size_t)N * V, 3.0f);
            if (V > 100) cpu_mask_columns(z.data(), N, V, 10, 90, -INFINITY);
            for (int v = 0; v < V; v++) z[(size_t)(N - 1) * V + v] = -INFINITY;  // all masked: token 0
            float* d_z = dev(z);
            const uint64_t seeds[] = {1ull, 0xDEADBEEF12345678ull};
            for (uint64_t seed : seeds)
                for (uint32_t step = 0; step < 3; step++)
                    for (int k = 0; k < 2; k++) {
                        vi t_c(N), t_g;
                        cpu_gumbel_sample(t_c.data(), z.data(), N, V, L, seed, step, k);
                        int32_t* d_t = dev(vi(N, -7));
                        cuda_gumbel_sample(d_t, d_z, N, V, L, seed, step, k);
                        t_g = host(d_t, N);
                        size_t bad = 0;
                        for (int n = 0; n < N; n++) bad += t_g[n] != t_c[n];
                        CHECK(bad == 0, "gumbel_sample V=%d seed=%llx step=%u k=%d: %zu differ", V,
                              (unsigned long long)seed, step, k, bad);
                        cudaFree(d_t);
                    }
            printf("  %-40s V=%d: 12 (seed, step, k) combos compared\n", "gumbel_sample", V);
            cudaFree(d_z);
        }
        // ties: +inf logits give +inf scores whatever the noise; the first such column must win, within
        // one thread's group of 4, across groups of one thread (4 * 256 apart) and across threads and warps.
        const int V = 3000;
        const int ties[][2] = {{4, 6}, {8, 8 + 4 * GUMBEL_BLOCK}, {5, 900}, {2999, 1500}, {130, 2}};
        const int NT = (int)(sizeof ties / sizeof ties[0]);
        vf z = rnd((size_t)NT * V, 3.0f);
        for (int r = 0; r < NT; r++) z[(size_t)r * V + ties[r][0]] = z[(size_t)r * V + ties[r][1]] = INFINITY;
        vi t_c(NT);
        cpu_gumbel_sample(t_c.data(), z.data(), NT, V, 2, 42, 1, 0);
        float* d_z = dev(z);
        int32_t* d_t = dev(vi(NT));
        cuda_gumbel_sample(d_t, d_z, NT, V, 2, 42, 1, 0);
        compare_i("gumbel_sample ties (first index)", host(d_t, NT), t_c);
        for (int r = 0; r < NT; r++) CHECK(t_c[r] == (ties[r][0] < ties[r][1] ? ties[r][0] : ties[r][1]), "cpu tie");
    }
    {  // row_broadcast, column_sum (+=), add_bias
        const int N = 21, H = 70;
        vf vec = rnd(H), x = rnd((size_t)N * H), cs0 = rnd(H);
        vf rb_c((size_t)N * H), cs_c = cs0, ab_c = x;
        cpu_row_broadcast(rb_c.data(), vec.data(), 0.5f, N, H);
        cpu_column_sum(cs_c.data(), x.data(), 0.25f, N, H);
        cpu_add_bias(ab_c.data(), vec.data(), N, H);
        float *d_vec = dev(vec), *d_x = dev(x), *d_rb = dev(vf((size_t)N * H)), *d_cs = dev(cs0), *d_ab = dev(x);
        cuda_row_broadcast(d_rb, d_vec, 0.5f, N, H);
        cuda_column_sum(d_cs, d_x, 0.25f, N, H);
        cuda_add_bias(d_ab, d_vec, N, H);
        compare("row_broadcast", host(d_rb, (size_t)N * H), rb_c, -1);
        compare("column_sum (+=)", host(d_cs, H), cs_c, TOL);
        compare("add_bias", host(d_ab, (size_t)N * H), ab_c, -1);
    }
    {  // relu
        const size_t n = 999;
        vf inp = rnd(n), dout = rnd(n);
        inp[0] = 0.0f;
        inp[1] = -0.0f;
        vf out_c(n), din_c(n);
        cpu_relu_forward(out_c.data(), inp.data(), n);
        cpu_relu_backward(din_c.data(), dout.data(), out_c.data(), n);
        float *d_inp = dev(inp), *d_dout = dev(dout), *d_out = dev(vf(n)), *d_din = dev(rnd(n));
        cuda_relu_forward(d_out, d_inp, n);
        cuda_relu_backward(d_din, d_dout, d_out, n);
        compare("relu_forward", host(d_out, n), out_c, -1);
        compare("relu_backward", host(d_din, n), din_c, -1);
    }
    {  // concat / split backward (+=)
        const int N = 9, A = 33, B = 14;
        vf a = rnd((size_t)N * A), b = rnd((size_t)N * B), dout = rnd((size_t)N * (A + B));
        vf out_c((size_t)N * (A + B)), da_c = a, db_c = b;
        cpu_concat_columns(out_c.data(), a.data(), b.data(), N, A, B);
        cpu_split_columns_backward(da_c.data(), db_c.data(), dout.data(), N, A, B);
        float *d_a = dev(a), *d_b = dev(b), *d_out = dev(vf((size_t)N * (A + B))), *d_dout = dev(dout);
        cuda_concat_columns(d_out, d_a, d_b, N, A, B);
        compare("concat_columns", host(d_out, (size_t)N * (A + B)), out_c, -1);
        cuda_split_columns_backward(d_a, d_b, d_dout, N, A, B);
        compare("split_columns_backward da (+=)", host(d_a, (size_t)N * A), da_c, -1);
        compare("split_columns_backward db (+=)", host(d_b, (size_t)N * B), db_c, -1);
    }
    {  // roll rows
        const int R = 3, L = 7, H = 10;
        const int shifts[] = {0, 1, 3, 6, 9};
        for (int s : shifts) {
            vf inp = rnd((size_t)R * L * H), dout = rnd((size_t)R * L * H), din0 = rnd((size_t)R * L * H);
            vf out_c((size_t)R * L * H), din_c = din0;
            cpu_roll_rows(out_c.data(), inp.data(), R, L, H, s);
            cpu_roll_rows_backward(din_c.data(), dout.data(), R, L, H, s);
            float *d_inp = dev(inp), *d_out = dev(vf((size_t)R * L * H)), *d_dout = dev(dout), *d_din = dev(din0);
            cuda_roll_rows(d_out, d_inp, R, L, H, s);
            cuda_roll_rows_backward(d_din, d_dout, R, L, H, s);
            char name[64];
            snprintf(name, sizeof name, "roll_rows s=%d", s);
            compare(name, host(d_out, (size_t)R * L * H), out_c, -1);
            snprintf(name, sizeof name, "roll_rows_backward s=%d (+=)", s);
            compare(name, host(d_din, (size_t)R * L * H), din_c, -1);
        }
    }
    {  // mix
        const int N = 19, H = 77;
        vf base = rnd((size_t)N * H), th = rnd((size_t)N * H), w = rnd(N, 2.0f), dout = rnd((size_t)N * H);
        vf db0 = rnd((size_t)N * H), dt0 = rnd((size_t)N * H);
        vf out_c((size_t)N * H), db_c = db0, dt_c = dt0, dw_c(N);
        cpu_mix_forward(out_c.data(), base.data(), th.data(), w.data(), N, H);
        cpu_mix_backward(db_c.data(), dt_c.data(), dw_c.data(), dout.data(), base.data(), th.data(), w.data(), N, H);
        float *d_base = dev(base), *d_th = dev(th), *d_w = dev(w), *d_dout = dev(dout), *d_out = dev(vf((size_t)N * H)),
              *d_db = dev(db0), *d_dt = dev(dt0), *d_dw = dev(rnd(N));
        cuda_mix_forward(d_out, d_base, d_th, d_w, N, H);
        cuda_mix_backward(d_db, d_dt, d_dw, d_dout, d_base, d_th, d_w, N, H);
        compare("mix_forward", host(d_out, (size_t)N * H), out_c, TOL);
        compare("mix_backward dbase (+=)", host(d_db, (size_t)N * H), db_c, TOL);
        compare("mix_backward dthought (+=)", host(d_dt, (size_t)N * H), dt_c, TOL);
        compare("mix_backward dw", host(d_dw, N), dw_c, TOL);
    }
    {  // advantage, P = 1 and P > 1
        const int cfg[][4] = {{2, 1, 12, 3}, {2, 3, 10, 2}, {1, 4, 6, 4}};
        for (auto& c : cfg) {
            const int B = c[0], P = c[1], L = c[2], T = c[3];
            const size_t RL = (size_t)B * P * L;
            vf bl = rnd(RL, 4.0f), tl = rnd(T * RL, 4.0f);
            vf r_c(RL), a_c(RL);
            cpu_quietstar_advantage(r_c.data(), a_c.data(), bl.data(), tl.data(), B, P, L, T);
            float *d_bl = dev(bl), *d_tl = dev(tl), *d_r = dev(rnd(RL)), *d_a = dev(rnd(RL));
            cuda_quietstar_advantage(d_r, d_a, d_bl, d_tl, B, P, L, T);
            char name[64];
            snprintf(name, sizeof name, "advantage reward B%d P%d L%d T%d", B, P, L, T);
            compare(name, host(d_r, RL), r_c, -1);
            snprintf(name, sizeof name, "advantage B%d P%d L%d T%d", B, P, L, T);
            compare(name, host(d_a, RL), a_c, -1);
        }
    }
}

int main(void) {
    test_embedding();
    test_rmsnorm();
    test_rope();
    test_swiglu();
    test_elementwise();
    test_crossentropy();
    test_adamw();
    test_quietstar();
    return test_summary();
}
