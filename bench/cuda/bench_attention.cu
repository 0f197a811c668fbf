/*
 * bench_attention — causal attention and Quiet-STaR thought attention, forward and backward, of the
 * CUDA backend (kernels/cuda/attention.cuh), validated against the C reference and then timed in
 * TFLOP/s against the GPU's FP32 CUDA-core peak (the kernels are FFMA code, not tensor-core code).
 *
 * Cases: plain causal attention over (B, T); thought attention at k = 0 (ordinary causal attention
 * through the thought kernels) and at k = 14, the last of the S = n_ahead + talk - 1 = 15 forwards
 * of a reference Quiet-STaR step (n_ahead 12, talk 4), whose queries see the most keys. On a GPU:
 * the 100M preset's heads (12 query, 4 kv, 64 wide), L = 256 with 16 rows and L = 1024 with 4 rows
 * (4096 query rows either way). On the emulator: tiny heads, L = 24 and 33, k = 0 and 3.
 *
 * FLOPs, as bench/bench_train_step.c counts them: 4·HD per visible (query, key) pair and query head
 * forward (QKᵀ and PV), 8·HD backward; a query of slot i at step k sees i+1 step-0 keys and k keys of
 * its own thought, so R·(L(L+1)/2 + k·L) pairs. Recomputation in the backward is not counted.
 *
 * Kernel versions, llm.c dev/cuda style: `--version V` runs one, default all; each is validated
 * before it is timed. Version 1 is the backend table's kernel (warp per (row, slot, kv head), online
 * softmax, ownership backward without atomics). A new kernel joins as another entry of `versions`.
 *   bench_attention [--version V] [--heads NH,NKV,HD] [--k 0,14] [--repeats N] [--warmup N] [--full]
 */
#include "bench/cuda/bench_common.h"

// ---- kernel versions: each runs on the backend under test; the reference is always b->ref -----
typedef struct {
    const char* name;
    void (*attention_forward)(const Backend* be, floatX* out, float* lse, const floatX* qkv, int B, int T, int NH,
                              int NKV, int HD);
    void (*attention_backward)(const Backend* be, floatX* dqkv, const floatX* dout, const floatX* out,
                               const float* lse, const floatX* qkv, int B, int T, int NH, int NKV, int HD);
    void (*thought_forward)(const Backend* be, floatX* out, float* lse, const floatX* qkv, size_t stride, int k,
                            int R, int L, int NH, int NKV, int HD);
    void (*thought_backward)(const Backend* be, floatX* dqkv, const floatX* dout, const floatX* out,
                             const float* lse, const floatX* qkv, size_t stride, int k, int R, int L, int NH,
                             int NKV, int HD);
} AttnVersion;

static void v1_fwd(const Backend* be, floatX* out, float* lse, const floatX* qkv, int B, int T, int NH, int NKV,
                   int HD) {
    be->attention_forward(out, lse, qkv, B, T, NH, NKV, HD);
}
static void v1_bwd(const Backend* be, floatX* dqkv, const floatX* dout, const floatX* out, const float* lse,
                   const floatX* qkv, int B, int T, int NH, int NKV, int HD) {
    be->attention_backward(dqkv, dout, out, lse, qkv, B, T, NH, NKV, HD);
}
static void v1_tfwd(const Backend* be, floatX* out, float* lse, const floatX* qkv, size_t stride, int k, int R,
                    int L, int NH, int NKV, int HD) {
    be->thought_attention_forward(out, lse, qkv, stride, k, R, L, NH, NKV, HD);
}
static void v1_tbwd(const Backend* be, floatX* dqkv, const floatX* dout, const floatX* out, const float* lse,
                    const floatX* qkv, size_t stride, int k, int R, int L, int NH, int NKV, int HD) {
    be->thought_attention_backward(dqkv, dout, out, lse, qkv, stride, k, R, L, NH, NKV, HD);
}

static const AttnVersion versions[] = {
    {"v1 backend table (warp per row/slot/kv head, online softmax)", v1_fwd, v1_bwd, v1_tfwd, v1_tbwd},
};
static const int n_versions = (int)(sizeof versions / sizeof versions[0]);

// ---- options -------------------------------------------------------------------------------------
static int opt_NH = 0, opt_NKV = 0, opt_HD = 0;
static const char* opt_k = NULL;
static int parse_extra(Bench* b, int argc, char** argv) {
    if (argc < 2) return 0;
    if (!strcmp(argv[0], "--version")) return b->version = atoi(argv[1]), 2;
    if (!strcmp(argv[0], "--k")) return opt_k = argv[1], 2;
    if (!strcmp(argv[0], "--heads")) {
        if (sscanf(argv[1], "%d,%d,%d", &opt_NH, &opt_NKV, &opt_HD) != 3) fatal("--heads wants NH,NKV,HD");
        return 2;
    }
    return 0;
}

// Tolerances: fp32 on both sides, differing only in summation order and exp implementation.
static const double ATOL_OUT = 2e-5, RTOL_OUT = 1e-4, ATOL_LSE = 2e-5, RTOL_LSE = 1e-5, ATOL_D = 1e-4, RTOL_D = 1e-3;

static void bench_causal(Bench* b, const AttnVersion* v, int B, int T, int NH, int NKV, int HD) {
    const int C3 = (NH + 2 * NKV) * HD, N = B * T;
    auto qkv = dual(b, rnd((size_t)N * C3, 1.5f));
    auto out = dual_zero<float>(b, (size_t)N * NH * HD);
    auto lse = dual_zero<float>(b, (size_t)B * NH * T);
    auto dout = dual(b, rnd((size_t)N * NH * HD));
    auto dqkv = dual_zero<float>(b, (size_t)N * C3);
    const double pairs = (double)B * T * (T + 1) / 2.0, flops = 4.0 * HD * NH * pairs;
    char what[160];
    bench_case(what, sizeof what, "attention_forward B=%d T=%d heads %d/%d x %d [v%d]", B, T, NH, NKV, HD, (int)(v - versions) + 1);
    auto fwd = [&](const Backend* be, int s) {
        if (s == 0) v->attention_forward(be, out[s], lse[s], qkv[s], B, T, NH, NKV, HD);
        else be->attention_forward(out[s], lse[s], qkv[s], B, T, NH, NKV, HD);
    };
    run_both(b, fwd);
    int ok = check_f(b, "out", out, ATOL_OUT, RTOL_OUT);
    ok &= check_f(b, "lse", lse, ATOL_LSE, RTOL_LSE);
    bench_time_op(b, ok, what, fwd, 0, flops, PEAK_FP32);
    bench_case(what, sizeof what, "attention_backward B=%d T=%d heads %d/%d x %d [v%d]", B, T, NH, NKV, HD, (int)(v - versions) + 1);
    auto bwd = [&](const Backend* be, int s) {
        if (s == 0) v->attention_backward(be, dqkv[s], dout[s], out[s], lse[s], qkv[s], B, T, NH, NKV, HD);
        else be->attention_backward(dqkv[s], dout[s], out[s], lse[s], qkv[s], B, T, NH, NKV, HD);
    };
    run_both(b, bwd);
    ok = check_f(b, "dqkv", dqkv, ATOL_D, RTOL_D);
    bench_time_op(b, ok, what, bwd, 0, 2 * flops, PEAK_FP32);
    for (auto* d : {&qkv, &out, &lse, &dout, &dqkv}) d->release();
}

static void bench_thought(Bench* b, const AttnVersion* v, int k, int R, int L, int NH, int NKV, int HD) {
    const int C3 = (NH + 2 * NKV) * HD, N = R * L;
    const size_t stride = (size_t)N * C3;  // one layer's qkv per step, steps back to back
    auto qkv = dual(b, rnd(stride * (k + 1), 1.5f));
    auto out = dual_zero<float>(b, (size_t)N * NH * HD);
    auto lse = dual_zero<float>(b, (size_t)R * NH * L);
    auto dout = dual(b, rnd((size_t)N * NH * HD));
    auto dqkv = dual(b, rnd(stride * (k + 1), 0.01f));  // accumulates (+=): start from the same values
    const double pairs = (double)R * ((double)L * (L + 1) / 2.0 + (double)k * L), flops = 4.0 * HD * NH * pairs;
    char what[160];
    bench_case(what, sizeof what, "thought_attention_forward k=%d R=%d L=%d heads %d/%d x %d [v%d]", k, R, L, NH, NKV,
               HD, (int)(v - versions) + 1);
    auto fwd = [&](const Backend* be, int s) {
        if (s == 0) v->thought_forward(be, out[s], lse[s], qkv[s], stride, k, R, L, NH, NKV, HD);
        else be->thought_attention_forward(out[s], lse[s], qkv[s], stride, k, R, L, NH, NKV, HD);
    };
    run_both(b, fwd);
    int ok = check_f(b, "out", out, ATOL_OUT, RTOL_OUT);
    ok &= check_f(b, "lse", lse, ATOL_LSE, RTOL_LSE);
    bench_time_op(b, ok, what, fwd, 0, flops, PEAK_FP32);
    bench_case(what, sizeof what, "thought_attention_backward k=%d R=%d L=%d heads %d/%d x %d [v%d]", k, R, L, NH, NKV,
               HD, (int)(v - versions) + 1);
    auto bwd = [&](const Backend* be, int s) {
        if (s == 0) v->thought_backward(be, dqkv[s], dout[s], out[s], lse[s], qkv[s], stride, k, R, L, NH, NKV, HD);
        else be->thought_attention_backward(dqkv[s], dout[s], out[s], lse[s], qkv[s], stride, k, R, L, NH, NKV, HD);
    };
    run_both(b, bwd);
    ok = check_f(b, "dqkv stack, steps 0..k (+=)", dqkv, ATOL_D, RTOL_D);
    bench_time_op(b, ok, what, bwd, 0, 2 * flops, PEAK_FP32);
    for (auto* d : {&qkv, &out, &lse, &dout, &dqkv}) d->release();
}

int main(int argc, char** argv) {
    Bench b;
    if (!bench_setup(&b, argc, argv, parse_extra, " [--version V] [--heads NH,NKV,HD] [--k 0,14]")) return 0;
    if (b.version < 0 || b.version > n_versions) fatal("bench_attention: --version %d: have 1..%d", b.version, n_versions);
    int NH = b.full ? 12 : 4, NKV = b.full ? 4 : 2, HD = b.full ? 64 : 32;
    if (opt_NH) NH = opt_NH, NKV = opt_NKV, HD = opt_HD;
    const char* ks = opt_k ? opt_k : b.full ? "0,14" : "0,3";
    struct {
        int L, rows;
    } shapes_full[] = {{256, 16}, {1024, 4}}, shapes_small[] = {{24, 2}, {33, 1}};
    auto* shapes = b.full ? shapes_full : shapes_small;
    for (int vi = 1; vi <= n_versions; vi++) {
        if (b.version && vi != b.version) continue;
        const AttnVersion* v = &versions[vi - 1];
        printf("== version %d: %s\n", vi, v->name);
        for (int si = 0; si < 2; si++) {
            bench_causal(&b, v, shapes[si].rows, shapes[si].L, NH, NKV, HD);
            char* list = xstrdup(ks);
            for (char* save = NULL, *p = strtok_r(list, ",", &save); p; p = strtok_r(NULL, ",", &save))
                bench_thought(&b, v, atoi(p), shapes[si].rows, shapes[si].L, NH, NKV, HD);
            free(list);
        }
    }
    return bench_finish(&b);
}
