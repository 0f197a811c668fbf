/*
 * bench_matmul — the model's linear layers through the backend's matmul_forward / matmul_backward
 * (cuBLASLt, fp32 storage, TF32 tensor-core compute: kernels/cuda/matmul.cuh), validated against
 * the C reference, then timed in TFLOP/s against the GPU's dense TF32 peak.
 *
 * Shapes: every GEMM of one layer of a preset plus the lm_head, in the (N, IN) x (OUT, IN)^T layout
 * of kernels/ops.h, with the fused projections the model runs (q|k|v as one GEMM, gate|up as one):
 *   qkv (H -> (NH+2NKV)·HD), o (NH·HD -> H), gate_up (H -> 2·IM), down (IM -> H), lm_head (H -> V).
 * FLOPs: forward 2·N·IN·OUT, backward 4·N·IN·OUT (dinp and dweight). On a GPU the presets are 100m
 * and mistral-7b at N = 4096 tokens; validation there uses the same IN/OUT with the rows capped at
 * 512, because the C reference of a 7B-wide GEMM at 4096 rows would dominate the run. On the
 * emulator: the tiny preset and an awkward row count, validated in full.
 *
 * Tolerance: TF32 rounds both inputs to a 10-bit mantissa, so the error of a K-long dot product
 * grows like sqrt(K)·rms(a)·rms(b)·2^-10; atol = 8e-3·sqrt(K)·rms(a)·rms(b) leaves room for the
 * largest of millions of outputs (the emulator's cuBLASLt shim is plain fp32 and uses ~0% of it).
 *   bench_matmul [--presets 100m,mistral-7b] [--rows N] [--repeats N] [--warmup N] [--full]
 */
#include "bench/cuda/bench_common.h"

extern "C" {
#include "model/config.h"
}

static const char* opt_presets = NULL;
static int opt_rows = 0;

static int parse_extra(Bench* b, int argc, char** argv) {
    (void)b;
    if (argc < 2) return 0;
    if (!strcmp(argv[0], "--presets")) return opt_presets = argv[1], 2;
    if (!strcmp(argv[0], "--rows")) return opt_rows = atoi(argv[1]), 2;
    return 0;
}

static const double RMS_A = 0.57735, RMS_W = 0.057735;  // uniform [-1,1) activations, [-0.1,0.1) weights

static int validate_gemm(Bench* b, const char* name, int N, int IN, int OUT) {
    auto inp = dual(b, rnd((size_t)N * IN));
    auto w = dual(b, rnd((size_t)OUT * IN, 0.1f));
    auto out = dual_zero<float>(b, (size_t)N * OUT);
    auto dout = dual(b, rnd((size_t)N * OUT));
    auto dinp = dual_zero<float>(b, (size_t)N * IN);
    auto dw = dual(b, rnd((size_t)OUT * IN, 0.01f));
    char what[160];
    bench_case(what, sizeof what, "validate %s N=%d IN=%d OUT=%d", name, N, IN, OUT);
    run_both(b, [&](const Backend* be, int s) { be->matmul_forward(out[s], inp[s], w[s], N, IN, OUT); });
    int ok = check_f(b, "forward out = inp*w^T", out, 8e-3 * sqrt((double)IN) * RMS_A * RMS_W, 1e-3);
    run_both(b, [&](const Backend* be, int s) {
        be->matmul_backward(dinp[s], dw[s], dout[s], inp[s], w[s], N, IN, OUT, 0);
    });
    ok &= check_f(b, "backward dinp = dout*w", dinp, 8e-3 * sqrt((double)OUT) * RMS_A * RMS_W, 1e-3);
    ok &= check_f(b, "backward dweight += dout^T*inp", dw, 8e-3 * sqrt((double)N) * RMS_A * RMS_A, 1e-3);
    for (auto* d : {&inp, &w, &out, &dout, &dinp, &dw}) d->release();
    return ok;
}

// Timing at the full row count, on the backend under test only.
static void time_gemm(Bench* b, const char* name, int N, int IN, int OUT) {
    const Backend* be = b->be;
    float* inp = (float*)be->alloc(sizeof(float) * N * IN);
    float* w = (float*)be->alloc(sizeof(float) * OUT * IN);
    float* out = (float*)be->alloc(sizeof(float) * N * OUT);
    float* dinp = (float*)be->alloc(sizeof(float) * N * IN);
    float* dw = (float*)be->alloc(sizeof(float) * OUT * IN);
    std::vector<float> h = rnd((size_t)N * (IN > OUT ? IN : OUT));
    be->upload(inp, h.data(), sizeof(float) * N * IN);
    be->upload(out, h.data(), sizeof(float) * N * OUT);  // doubles as dout for the backward
    h = rnd((size_t)OUT * IN, 0.1f);
    be->upload(w, h.data(), sizeof(float) * OUT * IN);
    const double flops = 2.0 * N * IN * OUT;
    char what[160];
    snprintf(what, sizeof what, "%s forward N=%d IN=%d OUT=%d", name, N, IN, OUT);
    bench_report(b, what, bench_time_ms(b, [&] { be->matmul_forward(out, inp, w, N, IN, OUT); }), 0, flops, PEAK_TF32);
    snprintf(what, sizeof what, "%s backward N=%d IN=%d OUT=%d", name, N, IN, OUT);
    bench_report(b, what, bench_time_ms(b, [&] { be->matmul_backward(dinp, dw, out, inp, w, N, IN, OUT, 0); }), 0,
                 2 * flops, PEAK_TF32);
    for (float* p : {inp, w, out, dinp, dw}) be->free(p);
}

static void bench_preset(Bench* b, const char* preset, int N, int N_val) {
    char* path = xsprintf("configs/%s.json", preset);
    ModelConfig c;
    config_load(&c, path);
    free(path);
    const int H = c.hidden_size, HD = c.head_dim, NH = c.num_attention_heads, NKV = c.num_key_value_heads;
    struct {
        const char* name;
        int IN, OUT;
    } g[] = {{"qkv", H, (NH + 2 * NKV) * HD},
             {"o", NH * HD, H},
             {"gate_up", H, 2 * c.intermediate_size},
             {"down", c.intermediate_size, H},
             {"lm_head", H, vocab_padded(&c)}};
    printf("== %s (H %d, heads %d/%d x %d, IM %d, V %d)\n", preset, H, NH, NKV, HD, c.intermediate_size, c.vocab_size);
    for (auto& x : g) {
        char name[64];
        snprintf(name, sizeof name, "%s/%s", preset, x.name);
        if (validate_gemm(b, name, N_val, x.IN, x.OUT) && b->gpu) time_gemm(b, name, N, x.IN, x.OUT);
    }
}

int main(int argc, char** argv) {
    Bench b;
    if (!bench_setup(&b, argc, argv, parse_extra, " [--presets 100m,mistral-7b] [--rows N]")) return 0;
    const char* presets = opt_presets ? opt_presets : b.full ? "100m,mistral-7b" : "tiny";
    int N = opt_rows ? opt_rows : b.full ? 4096 : 37;
    int N_val = N < 512 ? N : 512;
    char* list = xstrdup(presets);
    for (char* save = NULL, *p = strtok_r(list, ",", &save); p; p = strtok_r(NULL, ",", &save)) bench_preset(&b, p, N, N_val);
    free(list);
    return bench_finish(&b);
}
