/*
 * kernels/cuda/attention.cuh run on the CPU emulator against the C reference (kernels/cpu):
 * thought attention forward/backward (k = 0, 1, 3; GQA and plain heads; head sizes that are and are
 * not multiples of 32; a step stride with gaps between the step blocks; dqkv pre-filled to check
 * that gradients accumulate), plain attention (dqkv pre-filled with garbage to check that it is
 * overwritten) and cached attention (empty and non-empty second piece, no keys at all).
 * Gradients are compared as increments over the pre-fill, relative to the increment's largest
 * magnitude, so the pre-fill cannot hide an error.
 *
 * Build (from the repository root, after `make` for build/libqstar.a and the emulator objects):
 *   g++ -std=c++20 -O1 -I. -I/usr/local/cuda/include -x c++ -include emu/cuemu.h \
 *       tests/emu_attention_check.cu -x none build/emu/cuemu.o build/emu/cublas_emu.o build/libqstar.a \
 *       -o build/emu_attention_check -pthread -fopenmp -lopenblas -lm
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include <vector>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/attention.cuh"
#include "tests/check.h"

extern "C" {
#include "kernels/cpu/cpu.h"
}

cudaStream_t qstar_stream = 0;

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static float frand(void) {  // uniform in [-1, 1)
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng_state >> 40) & 0xffffff) / 8388608.0f - 1.0f;
}
static std::vector<float> randv(size_t n, float amp) {
    std::vector<float> v(n);
    for (auto& x : v) x = amp * frand();
    return v;
}
static float* dev(const std::vector<float>& h) {
    float* d = nullptr;
    cudaMalloc((void**)&d, (h.size() ? h.size() : 1) * sizeof(float));
    if (h.size()) cudaMemcpy(d, h.data(), h.size() * sizeof(float), cudaMemcpyHostToDevice);
    return d;
}
static std::vector<float> host(const float* d, size_t n) {
    std::vector<float> h(n);
    if (n) cudaMemcpy(h.data(), d, n * sizeof(float), cudaMemcpyDeviceToHost);
    return h;
}

// max |got − want| / max |want|, both taken relative to `base` (the pre-fill) when given
static double rel_err(const std::vector<float>& got, const std::vector<float>& want, const std::vector<float>* base) {
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < want.size(); i++) {
        const double b = base ? (*base)[i] : 0.0;
        const double w = want[i] - b, g = got[i] - b;
        num = fmax(num, fabs(g - w));
        den = fmax(den, fabs(w));
    }
    return den > 0.0 ? num / den : num;
}

static double worst = 0.0;
static void report(const char* what, double err, const char* cfg) {
    worst = fmax(worst, err);
    CHECK(err <= 1e-5, "%s %s: relative error %.3g", what, cfg, err);
    if (getenv("VERBOSE")) printf("%-12s %-48s %.3g\n", what, cfg, err);
}

static void check_thought(int k, int R, int L, int NH, int NKV, int HD, size_t gap) {
    const int C3 = (NH + 2 * NKV) * HD, CO = NH * HD;
    const size_t stride = (size_t)R * L * C3 + gap, total = (size_t)(k + 1) * stride;
    char cfg[128];
    snprintf(cfg, sizeof cfg, "k=%d R=%d L=%d NH=%d NKV=%d HD=%d gap=%zu", k, R, L, NH, NKV, HD, gap);
    std::vector<float> qkv = randv(total, 1.5f), dout = randv((size_t)R * L * CO, 1.0f);
    std::vector<float> pre = randv(total, 1.0f);  // dqkv's previous contents (later steps' gradients)

    std::vector<float> out_c((size_t)R * L * CO), lse_c((size_t)R * NH * L), dqkv_c = pre;
    cpu_thought_attention_forward(out_c.data(), lse_c.data(), qkv.data(), stride, k, R, L, NH, NKV, HD);
    cpu_thought_attention_backward(dqkv_c.data(), dout.data(), out_c.data(), lse_c.data(), qkv.data(), stride, k, R,
                                   L, NH, NKV, HD);

    float *d_qkv = dev(qkv), *d_out = dev(std::vector<float>(out_c.size(), NAN)),
          *d_lse = dev(std::vector<float>(lse_c.size(), NAN));
    cuda_thought_attention_forward(d_out, d_lse, d_qkv, stride, k, R, L, NH, NKV, HD);
    report("fwd out", rel_err(host(d_out, out_c.size()), out_c, nullptr), cfg);
    report("fwd lse", rel_err(host(d_lse, lse_c.size()), lse_c, nullptr), cfg);

    // backward from the reference's forward results, so its comparison stands on its own
    float *d_dout = dev(dout), *d_outc = dev(out_c), *d_lsec = dev(lse_c), *d_dqkv = dev(pre);
    cuda_thought_attention_backward(d_dqkv, d_dout, d_outc, d_lsec, d_qkv, stride, k, R, L, NH, NKV, HD);
    report("bwd dqkv", rel_err(host(d_dqkv, total), dqkv_c, &pre), cfg);
    for (float* p : {d_qkv, d_out, d_lse, d_dout, d_outc, d_lsec, d_dqkv}) cudaFree(p);
}

static void check_plain(int B, int T, int NH, int NKV, int HD) {
    const int C3 = (NH + 2 * NKV) * HD, CO = NH * HD;
    const size_t n = (size_t)B * T * C3;
    char cfg[128];
    snprintf(cfg, sizeof cfg, "B=%d T=%d NH=%d NKV=%d HD=%d", B, T, NH, NKV, HD);
    std::vector<float> qkv = randv(n, 1.5f), dout = randv((size_t)B * T * CO, 1.0f);
    std::vector<float> out_c((size_t)B * T * CO), lse_c((size_t)B * NH * T), dqkv_c(n);
    cpu_attention_forward(out_c.data(), lse_c.data(), qkv.data(), B, T, NH, NKV, HD);
    cpu_attention_backward(dqkv_c.data(), dout.data(), out_c.data(), lse_c.data(), qkv.data(), B, T, NH, NKV, HD);
    float *d_qkv = dev(qkv), *d_out = dev(std::vector<float>(out_c.size(), NAN)),
          *d_lse = dev(std::vector<float>(lse_c.size(), NAN));
    cuda_attention_forward(d_out, d_lse, d_qkv, B, T, NH, NKV, HD);
    report("attn out", rel_err(host(d_out, out_c.size()), out_c, nullptr), cfg);
    report("attn lse", rel_err(host(d_lse, lse_c.size()), lse_c, nullptr), cfg);
    float *d_dout = dev(dout), *d_outc = dev(out_c), *d_lsec = dev(lse_c), *d_dqkv = dev(randv(n, 100.0f));
    cuda_attention_backward(d_dqkv, d_dout, d_outc, d_lsec, d_qkv, B, T, NH, NKV, HD);
    report("attn dqkv", rel_err(host(d_dqkv, n), dqkv_c, nullptr), cfg);
    for (float* p : {d_qkv, d_out, d_lse, d_dout, d_outc, d_lsec, d_dqkv}) cudaFree(p);
}

static void check_cached(int n1, int n2, int NH, int NKV, int HD) {
    const int KW = NKV * HD;
    char cfg[128];
    snprintf(cfg, sizeof cfg, "n1=%d n2=%d NH=%d NKV=%d HD=%d", n1, n2, NH, NKV, HD);
    std::vector<float> q = randv((size_t)NH * HD, 2.0f), k1 = randv((size_t)n1 * KW, 1.5f),
                       v1 = randv((size_t)n1 * KW, 1.0f), k2 = randv((size_t)n2 * KW, 1.5f),
                       v2 = randv((size_t)n2 * KW, 1.0f), out_c((size_t)NH * HD);
    cpu_cached_attention_forward(out_c.data(), q.data(), k1.data(), v1.data(), n1, k2.data(), v2.data(), n2, NH, NKV,
                                 HD);
    float *d_q = dev(q), *d_k1 = dev(k1), *d_v1 = dev(v1), *d_k2 = dev(k2), *d_v2 = dev(v2),
          *d_out = dev(std::vector<float>(out_c.size(), NAN));
    cuda_cached_attention_forward(d_out, d_q, d_k1, d_v1, n1, d_k2, d_v2, n2, NH, NKV, HD);
    report("cached out", rel_err(host(d_out, out_c.size()), out_c, nullptr), cfg);
    for (float* p : {d_q, d_k1, d_v1, d_k2, d_v2, d_out}) cudaFree(p);
}

int main(void) {
    const int heads[][2] = {{4, 2}, {2, 2}};
    for (int k : {0, 1, 3})
        for (auto& hk : heads)
            for (int HD : {8, 32, 64})
                for (int L : {5, 37}) {
                    const size_t gap = L == 5 ? 0 : (size_t)(3 * HD + 5);  // with and without gaps
                    check_thought(k, 2, L, hk[0], hk[1], HD, gap);
                }
    // head sizes off the 32 grid and the largest instantiations
    check_thought(2, 2, 6, 4, 2, 40, 11);
    check_thought(1, 1, 4, 2, 1, 96, 0);
    check_thought(1, 1, 4, 2, 1, 128, 3);
    check_thought(2, 1, 3, 2, 2, 256, 1);
    check_thought(1, 2, 1, 3, 1, 20, 2);  // L = 1, group of 3

    for (auto& hk : heads)
        for (int HD : {8, 64})
            for (int T : {5, 37}) check_plain(2, T, hk[0], hk[1], HD);

    for (auto& hk : heads)
        for (int HD : {8, 40, 64})
            for (int n1 : {1, 13, 40})
                for (int n2 : {0, 3}) check_cached(n1, n2, hk[0], hk[1], HD);
    check_cached(0, 4, 4, 2, 32);
    check_cached(0, 0, 4, 2, 32);
    check_cached(300, 5, 4, 1, 128);

    printf("worst relative error %.3g\n", worst);
    return test_summary();
}
