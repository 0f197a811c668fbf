/*
 * kernels/cuda/flash_attention.cuh (tensor-core causal GQA attention forward) run on the CPU
 * emulator against the C oracle cpu_attention_forward (kernels/cpu/attention.c). Built and run by
 * tests/test_flash_attention.sh.
 *
 * Cases: head dims 64, 80, 96, 128; GQA ratios 1 and 4 (one and two kv heads); odd T (1, 37, 67, 130: partial last tiles,
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
 * A wrong fragment layout, key mapping or mask moves out by O(max|V|/sqrt(keys)) and lse by
 * >= log(1 + 1/keys) ~ 1/130: far above both bounds.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

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

static void run_case(int B, int T, int NH, int NKV, int HD, bool bf16_input) {
    const size_t C3 = (size_t)(NH + 2 * NKV) * HD, N = (size_t)B * T;
    std::vector<float> qkv(N * C3);
    for (auto& x : qkv) x = __bfloat162float(__float2bfloat16(frand()));  // bf16-exact inputs, see top
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
    const long qtiles = (T + 63) / 64, tiles = qtiles * (qtiles + 1) / 2;
    const unsigned long long mma_want = (unsigned long long)B * NH * tiles * 4 * (HD / 16 * 8 + 4 * HD / 8);
    CHECK(cnt[::cuemu::C_MMA] == mma_want, "flash forward: %llu mma counted, %llu planned", cnt[::cuemu::C_MMA],
          mma_want);
    CHECK(cnt[::cuemu::C_BANK_CONFLICTS] == 0, "flash forward: %llu ldmatrix bank conflicts",
          cnt[::cuemu::C_BANK_CONFLICTS]);
    std::vector<float> out(out_c.size()), lse(lse_c.size());
    cudaMemcpy(out.data(), d_out, out.size() * sizeof(float), cudaMemcpyDeviceToHost);
    cudaMemcpy(lse.data(), d_lse, lse.size() * sizeof(float), cudaMemcpyDeviceToHost);

    float vmax = 0.0f;
    for (size_t n = 0; n < N; n++)
        for (size_t c = (size_t)(NH + NKV) * HD; c < C3; c++) vmax = fmaxf(vmax, fabsf(qkv[n * C3 + c]));
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
    printf("  %-5s B=%d T=%-4d NH=%d NKV=%d HD=%-4d  out err %.2e (tol %.2e)  lse err %.2e (tol %.0e)\n",
           bf16_input ? "bf16" : "fp32", B, T, NH, NKV, HD, err_out, tol_out, err_lse, tol_lse);
    CHECK(err_out <= tol_out, "flash forward out (%s, T=%d, NH=%d, NKV=%d, HD=%d): err %.3e > tol %.3e",
          bf16_input ? "bf16" : "fp32", T, NH, NKV, HD, err_out, tol_out);
    CHECK(err_lse <= tol_lse, "flash forward lse (%s, T=%d, NH=%d, NKV=%d, HD=%d): err %.3e > tol %.3e",
          bf16_input ? "bf16" : "fp32", T, NH, NKV, HD, err_lse, tol_lse);
    cudaFree(d_in), cudaFree(d_out), cudaFree(d_lse);
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
    run_case(1, 67, 4, 1, 80, false);
    run_case(1, 67, 4, 1, 96, true);
    return test_summary();
}
