/*
 * kernels/cuda/flash_attention.cuh (tensor-core causal GQA attention forward and backward) run on the
 * CPU emulator against the C oracles cpu_attention_forward / cpu_attention_backward
 * (kernels/cpu/attention.c), and the thought attention forward by decomposition against
 * cpu_thought_attention_forward (k = 0, 1, 3, 14) and backward (k = 0, 3, 14). Built and run by tests/test_emu_checks.sh. The
 * backward's and the thought attention's cases and bounds are stated at run_bwd_case and
 * run_thought_case.
 *
 * Cases: head dims 64, 80, 96, 128; GQA ratios 1, 2, 3, 4 (one and two kv heads) and 8; odd T (1, 37, 67, 130: partial last tiles,
 * one and several key tiles, the diagonal tile); batch 2; input staged from fp32 (today's floatX)
 * and from bf16 (the cp.async path).
 *
 * Tolerance, from bf16's unit roundoff u = 2^-8. The inputs are drawn in [-1, 1) and rounded to bf16
 * first, and the oracle gets the same rounded values, so Q, K and V are identical on both sides and
 * every product Q·K and P·V in the kernel is exact in fp32. What remains:
 *   out: P is rounded to bf16 before P·V (relative error <= u per weight), while the normaliser sums
 *        the unrounded weights; |Δout_d| <= u·Σ_j p_j|v_jd| + u·max|v| <= 2u·max|V| (+ fp32 and the
 *        oracle's fast exp, covered by 1e-5);
 *   lse: no bf16 rounding on its path (fp32 scores, fp32 sum): |Δlse| <= 1e-4 (fp32 roundoff over
 *        <= 130 keys and the oracle's exp approximation).
 * Also from the emulator's counters: the number of mma instructions is the planned one and ldmatrix
 * sees no shared-memory bank conflict.
 * Arbitrary fp32 inputs (the path that rounds while staging): Q and K rounded (relative u each) move
 * score j of a row by at most E = scale·(2u + u²)·max_j Σ_d |q_d k_jd| (computed per row here), so
 * each weight p_j is off by a factor within exp(±2E); with V rounded (u) and P rounded (2u as above):
 *   |Δout_d| <= (expm1(2E) + 3u)·max|V| + 1e-5,   |Δlse| <= E + 1e-4   (first order, per row).
 * A wrong fragment layout, key mapping or mask moves out by O(max|V|/sqrt(keys)) and lse by
 * >= log(1 + 1/keys) ~ 1/130: far above both bounds.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include <algorithm>
#include <vector>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/flash_attention.cuh"
#include "tests/check.h"

extern "C" {
#include "kernels/cpu/cpu.h"
}

cudaStream_t qstar_stream = 0;

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;
static float frand(void) {  // uniform in [-1, 1)
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng_state >> 40) & 0xffffff) / 8388608.0f - 1.0f;
}

template <class T>
static T* dev(const std::vector<T>& h) {
    T* d = nullptr;
    cudaMalloc((void**)&d, h.size() * sizeof(T));
    cudaMemcpy(d, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice);
    return d;
}

// Extra wavefronts of one warp's O copy-out reads in the forward (fp32 out here): 16 rows of HD floats at
// a row stride of HD + 8 floats, read as 16-byte chunks, lane l taking chunk l + 32i; a phase is 8
// consecutive chunks, each chunk covering 4 banks (bank quad = 16-byte unit % 8). Conflict-free when
// a phase stays in one row (HD 64, 128); at HD 80 and 96 some phases span two rows.
static unsigned long long o_read_conflicts(int HD) {
    const int RC = HD * 4 / 16, U = (HD + 8) * 4 / 16;
    unsigned long long extra = 0;
    for (int c0 = 0; c0 < 16 * RC; c0 += 8) {
        int per_quad[8] = {0}, worst = 0;
        for (int c = c0; c < c0 + 8; c++) worst = std::max(worst, ++per_quad[(U * (c / RC) + c % RC) % 8]);
        extra += worst - 1;
    }
    return extra;
}

// raw = false: bf16-exact inputs (the tight bounds at the top); raw = true: arbitrary fp32 inputs that
// the kernel rounds while staging, with the per-row first-order bound derived at the top.
static void run_case(int B, int T, int NH, int NKV, int HD, bool bf16_input, bool raw = false) {
    const size_t C3 = (size_t)(NH + 2 * NKV) * HD, N = (size_t)B * T;
    std::vector<float> qkv(N * C3);
    for (auto& x : qkv) x = raw ? frand() : __bfloat162float(__float2bfloat16(frand()));
    std::vector<float> out_c(N * NH * HD), lse_c((size_t)B * NH * T);
    cpu_attention_forward(out_c.data(), lse_c.data(), qkv.data(), B, T, NH, NKV, HD);

    float* d_out = nullptr;
    float* d_lse = nullptr;
    cudaMalloc((void**)&d_out, out_c.size() * sizeof(float));
    cudaMalloc((void**)&d_lse, lse_c.size() * sizeof(float));
    void* d_in = nullptr;
    if (bf16_input) {
        std::vector<__nv_bfloat16> h(qkv.size());
        for (size_t i = 0; i < h.size(); i++) h[i] = __float2bfloat16(qkv[i]);
        __nv_bfloat16* d = dev(h);
        flash_attention_forward(d_out, d_lse, (const __nv_bfloat16*)d, B, T, NH, NKV, HD, qstar_stream);
        d_in = d;
    } else {
        float* d = dev(qkv);
        flash_attention_forward(d_out, d_lse, (const float*)d, B, T, NH, NKV, HD, qstar_stream);
        d_in = d;
    }
    cudaDeviceSynchronize();
    // the emulator's counters: one mma per 16x8x16 product as planned, and no ldmatrix bank
    // conflict (rows padded by 16 bytes)
    const ::cuemu::Counters cnt = ::cuemu::last_launch_counters();
    // a block holds 64 / gp query positions of gp heads (gp = the GQA group when a power of two)
    const int group = NH / NKV, gp = (group & (group - 1)) == 0 ? group : 1, qpb = 64 / gp;
    long tiles = 0;  // key tiles walked by the blocks of one (batch, head block)
    for (int q0 = 0; q0 < T; q0 += qpb) tiles += ((q0 + qpb < T ? q0 + qpb : T) + 63) / 64;
    const unsigned long long mma_want = (unsigned long long)B * (NH / gp) * tiles * 4 * (HD / 16 * 8 + 4 * HD / 8);
    CHECK(cnt[::cuemu::C_MMA] == mma_want, "flash forward: %llu mma counted, %llu planned", cnt[::cuemu::C_MMA],
          mma_want);
    // loads: the ldmatrix of Q, K, V (none expected) and the O copy-out's 16-byte reads (o_read_conflicts)
    const unsigned long long blocks = (unsigned long long)B * (NH / gp) * ((T + qpb - 1) / qpb);
    const unsigned long long ld_want = blocks * 4 * o_read_conflicts(HD);
    CHECK(cnt[::cuemu::C_BANK_CONFLICTS_LD] == ld_want,
          "flash forward: %llu load bank conflicts, want %llu (0 from ldmatrix, %llu from the O copy-out)",
          cnt[::cuemu::C_BANK_CONFLICTS_LD], ld_want, ld_want);
    // staging stores (cp.async destinations, zero fills): 16-byte rows at a stride of HD + 8 elements are
    // conflict-free in every 8-lane phase at HD 64 and 128 (row stride 9 or 17 16-byte units, 8 chunks
    // per row); at HD 80 and 96 some phases span rows and collide (counted, not checked)
    if (HD == 64 || HD == 128)
        CHECK(cnt[::cuemu::C_BANK_CONFLICTS_ST] == 0, "flash forward HD %d: %llu staging store bank conflicts", HD,
              cnt[::cuemu::C_BANK_CONFLICTS_ST]);
    std::vector<float> out(out_c.size()), lse(lse_c.size());
    cudaMemcpy(out.data(), d_out, out.size() * sizeof(float), cudaMemcpyDeviceToHost);
    cudaMemcpy(lse.data(), d_lse, lse.size() * sizeof(float), cudaMemcpyDeviceToHost);

    float vmax = 0.0f;
    for (size_t n = 0; n < N; n++)
        for (size_t c = (size_t)(NH + NKV) * HD; c < C3; c++) vmax = fmaxf(vmax, fabsf(qkv[n * C3 + c]));
    const double u = 1.0 / 256.0;
    double tol_out = 2.0 * u * vmax + 1e-5, tol_lse = 1e-4;
    // worst row's score error bound E (0 for bf16-exact inputs)
    std::vector<double> E_row(raw ? (size_t)B * NH * T : 0, 0.0);
    if (raw) {
        const double scale = 1.0 / sqrt((double)HD);
        for (int b = 0; b < B; b++)
            for (int h = 0; h < NH; h++)
                for (int i = 0; i < T; i++) {
                    const float* q = &qkv[((size_t)b * T + i) * C3 + (size_t)h * HD];
                    double worst = 0.0;
                    for (int j = 0; j <= i; j++) {
                        const float* k = &qkv[((size_t)b * T + j) * C3 + (size_t)(NH + h / (NH / NKV)) * HD];
                        double a = 0.0;
                        for (int d = 0; d < HD; d++) a += fabs((double)q[d] * k[d]);
                        worst = fmax(worst, a);
                    }
                    E_row[((size_t)b * NH + h) * T + i] = scale * (2.0 * u + u * u) * worst;
                }
    }
    double err_out = 0.0, err_lse = 0.0, worst_tol_out = tol_out, worst_tol_lse = tol_lse;
    bool within = true;
    for (int b = 0; b < B; b++)
        for (int i = 0; i < T; i++)
            for (int h = 0; h < NH; h++) {
                const size_t r = ((size_t)b * NH + h) * T + i;
                const double E = raw ? E_row[r] : 0.0;
                // raw: p_j off by a factor within exp(±2E), Q/K/V rounded (u each on V), P rounded (2u)
                const double t_out = raw ? (expm1(2.0 * E) + 3.0 * u) * vmax + 1e-5 : tol_out;
                const double t_lse = raw ? E + 1e-4 : tol_lse;
                worst_tol_out = fmax(worst_tol_out, t_out), worst_tol_lse = fmax(worst_tol_lse, t_lse);
                for (int d = 0; d < HD; d++) {
                    const size_t o = ((size_t)b * T + i) * NH * HD + (size_t)h * HD + d;
                    const double e = fabs((double)out[o] - out_c[o]);
                    err_out = e == e ? fmax(err_out, e) : INFINITY;
                    within &= e <= t_out;
                }
                const double e = fabs((double)lse[r] - lse_c[r]);
                err_lse = e == e ? fmax(err_lse, e) : INFINITY;
                within &= e <= t_lse;
            }
    if (raw) tol_out = worst_tol_out, tol_lse = worst_tol_lse;
    if (!within) err_out = fmax(err_out, 2 * tol_out);  // some row broke its own bound: report a failure
    printf("  %-5s B=%d T=%-4d NH=%d NKV=%d HD=%-4d  out err %.2e (tol %.2e)  lse err %.2e (tol %.1e)\n",
           raw ? "fp32*" : bf16_input ? "bf16" : "fp32", B, T, NH, NKV, HD, err_out, tol_out, err_lse, tol_lse);
    CHECK(err_out <= tol_out, "flash forward out (%s, T=%d, NH=%d, NKV=%d, HD=%d): err %.3e > tol %.3e",
          bf16_input ? "bf16" : "fp32", T, NH, NKV, HD, err_out, tol_out);
    CHECK(err_lse <= tol_lse, "flash forward lse (%s, T=%d, NH=%d, NKV=%d, HD=%d): err %.3e > tol %.3e",
          bf16_input ? "bf16" : "fp32", T, NH, NKV, HD, err_lse, tol_lse);
    cudaFree(d_in), cudaFree(d_out), cudaFree(d_lse);
}

// Backward: dqkv from the oracle's out and lse (so the forward's rounding does not enter), dout
// bf16-exact. Per-element first-order bound, computed here in double from the exact P, dP, dS:
//   dV[j,d]: P is rounded to bf16 (u):            Σ_i P_ij |dO_id| · u
//   dQ[i,d], dK[j,d]: dS = P̃(dP − D) uses the bf16 P (u) and is rounded itself (u), dP and D are
//   fp32 sums of exact products:                   scale · Σ |dS_ij| |K_jd| (or |Q_id|) · 3u
// summed over the group's heads for dK and dV, plus 1e-4 · max|reference| of that tensor (fp32
// accumulation order, the oracle's fast exp).
static void run_bwd_case(int B, int T, int NH, int NKV, int HD, bool bf16_input) {
    const size_t C3 = (size_t)(NH + 2 * NKV) * HD, CO = (size_t)NH * HD, N = (size_t)B * T;
    const int group = NH / NKV;
    std::vector<float> qkv(N * C3), dout(N * CO);
    for (auto& x : qkv) x = __bfloat162float(__float2bfloat16(frand()));
    for (auto& x : dout) x = __bfloat162float(__float2bfloat16(frand()));
    std::vector<float> out_c(N * CO), lse_c((size_t)B * NH * T), dqkv_c(N * C3);
    cpu_attention_forward(out_c.data(), lse_c.data(), qkv.data(), B, T, NH, NKV, HD);
    cpu_attention_backward(dqkv_c.data(), dout.data(), out_c.data(), lse_c.data(), qkv.data(), B, T, NH, NKV, HD);

    float* d_out = dev(out_c);
    float* d_lse = dev(lse_c);
    float* d_dqkv = nullptr;
    cudaMalloc((void**)&d_dqkv, N * C3 * sizeof(float));  // 0xFF-filled by the emulator: all must be written
    void *d_in = nullptr, *d_dout = nullptr;
    if (bf16_input) {
        std::vector<__nv_bfloat16> h(qkv.size()), hd(dout.size());
        for (size_t i = 0; i < h.size(); i++) h[i] = __float2bfloat16(qkv[i]);
        for (size_t i = 0; i < hd.size(); i++) hd[i] = __float2bfloat16(dout[i]);
        __nv_bfloat16* a = dev(h);
        __nv_bfloat16* g = dev(hd);
        flash_attention_backward(d_dqkv, (const __nv_bfloat16*)g, d_out, d_lse, (const __nv_bfloat16*)a, B, T, NH, NKV,
                                 HD, qstar_stream);
        d_in = a, d_dout = g;
    } else {
        float* a = dev(qkv);
        float* g = dev(dout);
        flash_attention_backward(d_dqkv, (const float*)g, d_out, d_lse, (const float*)a, B, T, NH, NKV, HD,
                                 qstar_stream);
        d_in = a, d_dout = g;
    }
    cudaDeviceSynchronize();
    std::vector<float> dqkv(N * C3);
    cudaMemcpy(dqkv.data(), d_dqkv, dqkv.size() * sizeof(float), cudaMemcpyDeviceToHost);

    const double u = 1.0 / 256.0, scale = 1.0 / sqrt((double)HD);
    std::vector<double> bound(N * C3, 0.0);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            const int g = h / group;
            for (int i = 0; i < T; i++) {
                const size_t ri = (size_t)b * T + i;
                const float* q = &qkv[ri * C3 + (size_t)h * HD];
                const float* go = &dout[ri * CO + (size_t)h * HD];
                const float* o = &out_c[ri * CO + (size_t)h * HD];
                double Di = 0.0;
                for (int d = 0; d < HD; d++) Di += (double)go[d] * o[d];
                for (int j = 0; j <= i; j++) {
                    const size_t rj = (size_t)b * T + j;
                    const float* k = &qkv[rj * C3 + (size_t)(NH + g) * HD];
                    const float* v = &qkv[rj * C3 + (size_t)(NH + NKV + g) * HD];
                    double sdot = 0.0, dp = 0.0;
                    for (int d = 0; d < HD; d++) sdot += (double)q[d] * k[d], dp += (double)go[d] * v[d];
                    const double P = exp(sdot * scale - lse_c[((size_t)b * NH + h) * T + i]);
                    const double dS = fabs(P * (dp - Di));
                    for (int d = 0; d < HD; d++) {
                        bound[ri * C3 + (size_t)h * HD + d] += scale * dS * fabs(k[d]) * 3.0 * u;
                        bound[rj * C3 + (size_t)(NH + g) * HD + d] += scale * dS * fabs(q[d]) * 3.0 * u;
                        bound[rj * C3 + (size_t)(NH + NKV + g) * HD + d] += P * fabs(go[d]) * u;
                    }
                }
            }
        }
    const char* names[3] = {"dQ", "dK", "dV"};
    for (int part = 0; part < 3; part++) {
        const size_t c0 = part == 0 ? 0 : part == 1 ? (size_t)NH * HD : (size_t)(NH + NKV) * HD;
        const size_t c1 = part == 0 ? (size_t)NH * HD : part == 1 ? (size_t)(NH + NKV) * HD : C3;
        double ref_max = 0.0;
        for (size_t n = 0; n < N; n++)
            for (size_t c = c0; c < c1; c++) ref_max = fmax(ref_max, fabs((double)dqkv_c[n * C3 + c]));
        double worst = 0.0, err_max = 0.0;  // worst: largest error / its bound
        for (size_t n = 0; n < N; n++)
            for (size_t c = c0; c < c1; c++) {
                const double e = fabs((double)dqkv[n * C3 + c] - dqkv_c[n * C3 + c]);
                const double t = bound[n * C3 + c] + 1e-4 * ref_max;
                err_max = e == e ? fmax(err_max, e) : INFINITY;
                worst = e == e ? fmax(worst, e / t) : INFINITY;
            }
        printf("  %-5s B=%d T=%-4d NH=%d NKV=%d HD=%-4d  %s max err %.2e (max |ref| %.2e), worst err/bound %.3f\n",
               bf16_input ? "bf16" : "fp32", B, T, NH, NKV, HD, names[part], err_max, ref_max, worst);
        CHECK(worst <= 1.0, "flash backward %s (%s, T=%d, NH=%d, NKV=%d, HD=%d): an element exceeds its bound (x%.3g)",
              names[part], bf16_input ? "bf16" : "fp32", T, NH, NKV, HD, worst);
    }
    cudaFree(d_in), cudaFree(d_dout), cudaFree(d_out), cudaFree(d_lse), cudaFree(d_dqkv);
}

// Thought attention (flash_thought_attention_forward) against cpu_thought_attention_forward: step k's
// queries over the step-0 causal keys (tensor cores) and their own slot's keys at steps 1..k (fp32),
// merged by log-sum-exp. Steps are stride apart with a gap between the blocks; bf16-exact inputs, so
// the bounds of the plain forward apply (the own-slot part only adds fp32 rounding).
static void run_thought_case(int R, int L, int NH, int NKV, int HD, int k, bool bf16_input) {
    const size_t C3 = (size_t)(NH + 2 * NKV) * HD, N = (size_t)R * L, stride = N * C3 + 64;
    std::vector<float> qkv(stride * (k + 1));
    for (auto& x : qkv) x = __bfloat162float(__float2bfloat16(frand()));
    std::vector<float> out_c(N * NH * HD), lse_c((size_t)R * NH * L);
    cpu_thought_attention_forward(out_c.data(), lse_c.data(), qkv.data(), stride, k, R, L, NH, NKV, HD);
    float* d_out = nullptr;
    float* d_lse = nullptr;
    cudaMalloc((void**)&d_out, out_c.size() * sizeof(float));
    cudaMalloc((void**)&d_lse, lse_c.size() * sizeof(float));
    void* d_in = nullptr;
    if (bf16_input) {
        std::vector<__nv_bfloat16> h(qkv.size());
        for (size_t i = 0; i < h.size(); i++) h[i] = __float2bfloat16(qkv[i]);
        __nv_bfloat16* d = dev(h);
        flash_thought_attention_forward(d_out, d_lse, (const __nv_bfloat16*)d, stride, k, R, L, NH, NKV, HD,
                                        qstar_stream);
        d_in = d;
    } else {
        float* d = dev(qkv);
        flash_thought_attention_forward(d_out, d_lse, (const float*)d, stride, k, R, L, NH, NKV, HD, qstar_stream);
        d_in = d;
    }
    cudaDeviceSynchronize();
    std::vector<float> out(out_c.size()), lse(lse_c.size());
    cudaMemcpy(out.data(), d_out, out.size() * sizeof(float), cudaMemcpyDeviceToHost);
    cudaMemcpy(lse.data(), d_lse, lse.size() * sizeof(float), cudaMemcpyDeviceToHost);
    float vmax = 0.0f;
    for (int s = 0; s <= k; s++)
        for (size_t n = 0; n < N; n++)
            for (size_t c = (size_t)(NH + NKV) * HD; c < C3; c++) vmax = fmaxf(vmax, fabsf(qkv[s * stride + n * C3 + c]));
    const double u = 1.0 / 256.0, tol_out = 2.0 * u * vmax + 1e-5, tol_lse = 1e-4;
    double err_out = 0.0, err_lse = 0.0;
    for (size_t i = 0; i < out.size(); i++) {
        const double e = fabs((double)out[i] - out_c[i]);
        err_out = e == e ? fmax(err_out, e) : INFINITY;
    }
    for (size_t i = 0; i < lse.size(); i++) {
        const double e = fabs((double)lse[i] - lse_c[i]);
        err_lse = e == e ? fmax(err_lse, e) : INFINITY;
    }
    printf("  %-5s R=%d L=%-4d NH=%d NKV=%d HD=%-4d k=%-2d  out err %.2e (tol %.2e)  lse err %.2e (tol %.1e)\n",
           bf16_input ? "bf16" : "fp32", R, L, NH, NKV, HD, k, err_out, tol_out, err_lse, tol_lse);
    CHECK(err_out <= tol_out && err_lse <= tol_lse,
          "flash thought forward (%s, L=%d, NH=%d, NKV=%d, HD=%d, k=%d): out err %.3e (tol %.3e), lse err %.3e",
          bf16_input ? "bf16" : "fp32", L, NH, NKV, HD, k, err_out, tol_out, err_lse);
    cudaFree(d_in), cudaFree(d_out), cudaFree(d_lse);
}

// Thought attention backward (accumulating) against cpu_thought_attention_backward, from the oracle's
// merged out and lse, dqkv pre-filled (both sides) so that += is checked; increments compared. Bound:
// the causal step-0 part as in run_bwd_case (its P from the merged lse; dQ lands in step k, dK/dV in
// step 0), the own-slot part is fp32 (no bf16 term), plus 1e-4 · the largest increment.
static void run_thought_bwd_case(int R, int L, int NH, int NKV, int HD, int k, bool bf16_input) {
    const size_t C3 = (size_t)(NH + 2 * NKV) * HD, CO = (size_t)NH * HD, N = (size_t)R * L, stride = N * C3 + 64;
    const int group = NH / NKV;
    std::vector<float> qkv(stride * (k + 1)), dout(N * CO), pre(stride * (k + 1));
    for (auto& x : qkv) x = __bfloat162float(__float2bfloat16(frand()));
    for (auto& x : dout) x = __bfloat162float(__float2bfloat16(frand()));
    for (auto& x : pre) x = frand();
    std::vector<float> out_c(N * CO), lse_c((size_t)R * NH * L), dqkv_c = pre;
    cpu_thought_attention_forward(out_c.data(), lse_c.data(), qkv.data(), stride, k, R, L, NH, NKV, HD);
    cpu_thought_attention_backward(dqkv_c.data(), dout.data(), out_c.data(), lse_c.data(), qkv.data(), stride, k, R, L,
                                   NH, NKV, HD);
    float* d_out = dev(out_c);
    float* d_lse = dev(lse_c);
    float* d_dqkv = dev(pre);
    void *d_in = nullptr, *d_dout = nullptr;
    if (bf16_input) {
        std::vector<__nv_bfloat16> h(qkv.size()), hd(dout.size());
        for (size_t i = 0; i < h.size(); i++) h[i] = __float2bfloat16(qkv[i]);
        for (size_t i = 0; i < hd.size(); i++) hd[i] = __float2bfloat16(dout[i]);
        __nv_bfloat16* a = dev(h);
        __nv_bfloat16* g = dev(hd);
        flash_thought_attention_backward(d_dqkv, (const __nv_bfloat16*)g, d_out, d_lse, (const __nv_bfloat16*)a, stride,
                                         k, R, L, NH, NKV, HD, qstar_stream);
        d_in = a, d_dout = g;
    } else {
        float* a = dev(qkv);
        float* g = dev(dout);
        flash_thought_attention_backward(d_dqkv, (const float*)g, d_out, d_lse, (const float*)a, stride, k, R, L, NH,
                                         NKV, HD, qstar_stream);
        d_in = a, d_dout = g;
    }
    cudaDeviceSynchronize();
    std::vector<float> dqkv(pre.size());
    cudaMemcpy(dqkv.data(), d_dqkv, dqkv.size() * sizeof(float), cudaMemcpyDeviceToHost);

    const double u = 1.0 / 256.0, scale = 1.0 / sqrt((double)HD);
    std::vector<double> bound(pre.size(), 0.0);
    const size_t qs = (size_t)k * stride;  // step k's block: the queries and their dq
    for (int r = 0; r < R; r++)
        for (int h = 0; h < NH; h++) {
            const int g = h / group;
            for (int i = 0; i < L; i++) {
                const size_t ri = (size_t)r * L + i;
                const float* q = &qkv[qs + ri * C3 + (size_t)h * HD];
                const float* go = &dout[ri * CO + (size_t)h * HD];
                const float* o = &out_c[ri * CO + (size_t)h * HD];
                double Di = 0.0;
                for (int d = 0; d < HD; d++) Di += (double)go[d] * o[d];
                for (int j = 0; j <= i; j++) {
                    const size_t rj = (size_t)r * L + j;
                    const float* kk = &qkv[rj * C3 + (size_t)(NH + g) * HD];
                    const float* v = &qkv[rj * C3 + (size_t)(NH + NKV + g) * HD];
                    double sdot = 0.0, dp = 0.0;
                    for (int d = 0; d < HD; d++) sdot += (double)q[d] * kk[d], dp += (double)go[d] * v[d];
                    const double P = exp(sdot * scale - lse_c[((size_t)r * NH + h) * L + i]);
                    const double dS = fabs(P * (dp - Di));
                    for (int d = 0; d < HD; d++) {
                        bound[qs + ri * C3 + (size_t)h * HD + d] += scale * dS * fabs(kk[d]) * 3.0 * u;
                        bound[rj * C3 + (size_t)(NH + g) * HD + d] += scale * dS * fabs(q[d]) * 3.0 * u;
                        bound[rj * C3 + (size_t)(NH + NKV + g) * HD + d] += P * fabs(go[d]) * u;
                    }
                }
            }
        }
    double inc_max = 0.0;
    for (size_t i = 0; i < pre.size(); i++) inc_max = fmax(inc_max, fabs((double)dqkv_c[i] - pre[i]));
    double worst = 0.0, err_max = 0.0;
    for (size_t i = 0; i < pre.size(); i++) {
        const double e = fabs(((double)dqkv[i] - pre[i]) - ((double)dqkv_c[i] - pre[i]));
        err_max = e == e ? fmax(err_max, e) : INFINITY;
        worst = e == e ? fmax(worst, e / (bound[i] + 1e-4 * inc_max)) : INFINITY;
    }
    printf("  %-5s R=%d L=%-4d NH=%d NKV=%d HD=%-4d k=%-2d  dqkv increment max err %.2e (max %.2e), worst err/bound %.3f\n",
           bf16_input ? "bf16" : "fp32", R, L, NH, NKV, HD, k, err_max, inc_max, worst);
    CHECK(worst <= 1.0, "flash thought backward (%s, L=%d, NH=%d, NKV=%d, HD=%d, k=%d): an element exceeds its bound (x%.3g)",
          bf16_input ? "bf16" : "fp32", L, NH, NKV, HD, k, worst);
    cudaFree(d_in), cudaFree(d_dout), cudaFree(d_out), cudaFree(d_lse), cudaFree(d_dqkv);
}

int main(void) {
    printf("flash attention forward (emulator) vs cpu_attention_forward:\n");
    for (int bf16 = 0; bf16 < 2; bf16++) {
        run_case(2, 67, 4, 4, 64, bf16);    // GQA ratio 1
        run_case(2, 130, 4, 1, 64, bf16);   // ratio 4, three key tiles
        run_case(1, 67, 4, 1, 128, bf16);   // ratio 4
        run_case(2, 37, 2, 2, 128, bf16);   // ratio 1, one partial tile
    }
    run_case(1, 1, 4, 1, 64, false);    // a single query
    run_case(1, 130, 4, 4, 128, true);  // ratio 1, three tiles
    run_case(1, 67, 8, 2, 64, true);    // ratio 4 with two kv heads: h / 4, not h % 2
    run_case(1, 67, 8, 2, 64, false);
    run_case(2, 67, 6, 2, 64, true);    // ratio 3: not a power of two, one head per block
    run_case(1, 67, 8, 1, 64, false);   // ratio 8: 8 query positions x 8 heads per block
    run_case(1, 67, 4, 2, 128, true);   // ratio 2
    run_case(1, 67, 4, 1, 80, false);
    run_case(1, 67, 4, 1, 96, true);
    printf("fp32* = arbitrary fp32 inputs, rounded to bf16 by the kernel (per-row bound, worst shown):\n");
    run_case(2, 67, 4, 1, 64, false, true);
    run_case(1, 130, 4, 4, 128, false, true);
    printf("thought attention forward by decomposition vs cpu_thought_attention_forward:\n");
    run_thought_case(2, 67, 4, 1, 64, 0, true);
    run_thought_case(2, 67, 4, 1, 64, 1, false);
    run_thought_case(1, 37, 4, 4, 128, 3, true);
    run_thought_case(1, 67, 8, 2, 96, 14, false);
    run_thought_case(2, 130, 4, 1, 80, 14, true);
    printf("flash attention backward (emulator) vs cpu_attention_backward (per-element bound, see above):\n");
    run_bwd_case(2, 67, 4, 1, 64, true);    // ratio 4: dK/dV summed over 4 heads, 2 key tiles
    run_bwd_case(1, 130, 2, 2, 128, false); // ratio 1, 3 tiles
    run_bwd_case(1, 37, 6, 2, 96, true);    // ratio 3, one partial tile
    run_bwd_case(1, 67, 2, 1, 80, false);
    printf("thought attention backward by decomposition vs cpu_thought_attention_backward (increments):\n");
    run_thought_bwd_case(2, 67, 4, 1, 64, 0, true);
    run_thought_bwd_case(1, 67, 4, 2, 128, 3, false);
    run_thought_bwd_case(1, 37, 6, 2, 96, 14, true);
    return test_summary();
}
