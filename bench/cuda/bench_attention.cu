/*
 * bench_attention — causal attention and Quiet-STaR thought attention, forward and backward, of the
 * CUDA backend, validated against the C reference and then timed in TFLOP/s against the peak of the
 * units each version runs on: v1 (kernels/cuda/attention.cuh, the fp32 table's kernels: FFMA code)
 * against the FP32 CUDA-core peak; v2 and v3 (kernels/cuda/flash_attention.cuh: FlashAttention-2-style
 * bf16 mma.sync with fp32 accumulation, GQA packing, thought attention by decomposition) against the
 * dense BF16 tensor-core peak. v2 is the headline: the bf16 table's attention ops (backend_cuda.cu
 * routes them to the flash kernels' Tin = bf16 instances: cp.async, K/V double-buffered, bf16 out and
 * dqkv), i.e. exactly what a bf16 training step runs. v3 is the fp32 table's flash instance (Tin =
 * float: each K/V tile loaded as fp32, rounded to bf16 in registers and stored synchronously; fp32 out),
 * which no training step runs; rows labelled [v2] before this split were that fp32-input path.
 * FA2-class numbers to compare with: FlashAttention-2 reaches about 35% of an H100's BF16 peak forward
 * (the FA3 paper), so ~350 TFLOP/s; FA3 up to 740 TFLOP/s in FP16.
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
 * Bytes per call: the minimum traffic, each tensor read or written once in fp32 (forward: step k's
 * queries, the step-0 keys and values, the k own-slot key/value rows, out and lse; backward: those
 * plus out, dout and lse read and dq/dk/dv read-modify-written), printed per case.
 * Inputs are bf16-exact (rounded to bf16 on the host) for every version, so v3's only rounding is of
 * P (and dS) to bf16: forward out within 2u·max|v| + 1e-5 and lse within 1e-4 (u = 2^-8, the bound
 * tests/emu_flash_check.cu derives); backward within 3u·max|dqkv_ref| per element (scale-relative: three
 * bf16 roundings per product; test_emu_checks.sh checks the per-element bound). v2 also rounds out and
 * dqkv to bf16 (u·|x| more; the thought backward's += starts from bf16-rounded dqkv), within the same
 * bounds: 2u·max|v| has room for out's u·max|v|, and dqkv's max|ref| scale dominates its rounding.
 * Also printed: each attention kernel's registers and static shared memory as ptxas reported them in
 * build/cuda/backend_cuda.ptxas.txt (sm_80 and sm_90; the flash kernels' dynamic shared memory from their tile
 * formula), and attention's theoretical share of a mistral-7b step (FLOPs, and time at the measured
 * rate against the GEMMs at 60% of the TF32 peak, an assumption stated with the line).
 *
 * Kernel versions, llm.c dev/cuda style: `--version V` runs one, default all; each is validated
 * before it is timed. Version 1 is the fp32 table's kernel (warp per (row, slot, kv head), online
 * softmax, ownership backward without atomics); version 2 the bf16 table (the flash kernels on bf16
 * buffers: the case's fp32 inputs are converted to bf16 once before the case, outside the timed calls,
 * and the results back to fp32 after each validation run); version 3 the flash kernels with fp32
 * inputs (staged to bf16 in registers). A new kernel joins as another entry of `versions`. Head dim 64 at every size
 * (the flash kernels take 64, 80, 96, 128).
 *   bench_attention [--version V] [--heads NH,NKV,HD] [--k 0,14] [--repeats N] [--warmup N] [--full]
 */
#include "bench/cuda/bench_common.h"

// The flash kernels' launchers (kernels/cuda/flash_attention.cuh), instantiated for float and bf16 inputs
// in the fp32 op table's object (backend_cuda.o / backend_emu.o), in its namespace.
namespace qstar_fp32 {
template <class Tin>
void flash_attention_forward(floatX*, float*, const Tin*, int, int, int, int, int, cudaStream_t);
template <class Tin>
void flash_attention_backward(floatX*, const Tin*, const floatX*, const float*, const Tin*, int, int, int, int, int,
                              cudaStream_t);
template <class Tin>
void flash_thought_attention_forward(floatX*, float*, const Tin*, size_t, int, int, int, int, int, int, cudaStream_t);
template <class Tin>
void flash_thought_attention_backward(floatX*, const Tin*, const floatX*, const float*, const Tin*, size_t, int, int,
                                      int, int, int, int, cudaStream_t);
}  // namespace qstar_fp32
using namespace qstar_fp32;

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
    int bf16;        // bf16 products: bf16 tolerances, timed against the BF16 tensor-core peak
    int x16;         // runs on x16's bf16 buffers (v2): converted around the case, outside the timing
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

// v2: the bf16 table (backend "cuda-bf16" / "emu-bf16"), whose attention ops run the flash kernels'
// Tin = bf16 instances on bf16 buffers. The version functions ignore the case's fp32 buffers and use
// x16's bf16 copies: x16_begin converts the inputs once per case, x16_result converts an output back
// for validation; neither runs inside the timed calls.
static struct {
    const Backend* be;            // the bf16 table
    floatX *qkv, *out, *dout, *dqkv;  // bf16 storage (be->x_bytes per element), typed as the table's floatX
} x16;
static void x16_begin(Bench* b, const float* qkv, size_t n_qkv, const float* dout, size_t n_out, const float* dqkv) {
    char name[64];
    snprintf(name, sizeof name, "%s-bf16", b->be->name);
    x16.be = backend_get(name);
    if (!x16.be) fatal("bench_attention: backend %s not built", name);
    const size_t xb = x16.be->x_bytes;
    x16.qkv = (floatX*)x16.be->alloc(n_qkv * xb);
    x16.dqkv = (floatX*)x16.be->alloc(n_qkv * xb);
    x16.out = (floatX*)x16.be->alloc(n_out * xb);
    x16.dout = (floatX*)x16.be->alloc(n_out * xb);
    x16.be->to_floatX(x16.qkv, qkv, n_qkv);  // bf16-exact inputs: lossless
    x16.be->to_floatX(x16.dout, dout, n_out);
    x16.be->to_floatX(x16.dqkv, dqkv, n_qkv);  // the thought backward accumulates into it
    x16.be->sync();
}
static void x16_result(float* dst, const floatX* src, size_t n) {
    x16.be->from_floatX(dst, src, n);
    x16.be->sync();
}
static void x16_end(void) {
    for (floatX* p : {x16.qkv, x16.out, x16.dout, x16.dqkv}) x16.be->free(p);
    x16.qkv = x16.out = x16.dout = x16.dqkv = NULL;
}
static void v2_fwd(const Backend*, floatX*, float* lse, const floatX*, int B, int T, int NH, int NKV, int HD) {
    x16.be->attention_forward(x16.out, lse, x16.qkv, B, T, NH, NKV, HD);
}
static void v2_bwd(const Backend*, floatX*, const floatX*, const floatX*, const float* lse, const floatX*, int B,
                   int T, int NH, int NKV, int HD) {
    x16.be->attention_backward(x16.dqkv, x16.dout, x16.out, lse, x16.qkv, B, T, NH, NKV, HD);
}
static void v2_tfwd(const Backend*, floatX*, float* lse, const floatX*, size_t stride, int k, int R, int L, int NH,
                    int NKV, int HD) {
    x16.be->thought_attention_forward(x16.out, lse, x16.qkv, stride, k, R, L, NH, NKV, HD);
}
static void v2_tbwd(const Backend*, floatX*, const floatX*, const floatX*, const float* lse, const floatX*,
                    size_t stride, int k, int R, int L, int NH, int NKV, int HD) {
    x16.be->thought_attention_backward(x16.dqkv, x16.dout, x16.out, lse, x16.qkv, stride, k, R, L, NH, NKV, HD);
}

static void v3_fwd(const Backend*, floatX* out, float* lse, const floatX* qkv, int B, int T, int NH, int NKV, int HD) {
    flash_attention_forward<float>(out, lse, qkv, B, T, NH, NKV, HD, qstar_stream);
}
static void v3_bwd(const Backend*, floatX* dqkv, const floatX* dout, const floatX* out, const float* lse,
                   const floatX* qkv, int B, int T, int NH, int NKV, int HD) {
    flash_attention_backward<float>(dqkv, dout, out, lse, qkv, B, T, NH, NKV, HD, qstar_stream);
}
static void v3_tfwd(const Backend*, floatX* out, float* lse, const floatX* qkv, size_t stride, int k, int R, int L,
                    int NH, int NKV, int HD) {
    flash_thought_attention_forward<float>(out, lse, qkv, stride, k, R, L, NH, NKV, HD, qstar_stream);
}
static void v3_tbwd(const Backend*, floatX* dqkv, const floatX* dout, const floatX* out, const float* lse,
                    const floatX* qkv, size_t stride, int k, int R, int L, int NH, int NKV, int HD) {
    flash_thought_attention_backward<float>(dqkv, dout, out, lse, qkv, stride, k, R, L, NH, NKV, HD, qstar_stream);
}

static const AttnVersion versions[] = {
    {"v1 fp32 table (warp per row/slot/kv head, online softmax)", v1_fwd, v1_bwd, v1_tfwd, v1_tbwd, 0, 0},
    {"v2 flash, bf16 table: the bf16 training step's path (Tin = bf16: cp.async double-buffered K/V; bf16 out and "
     "dqkv; bf16 mma.sync, fp32 accumulate, GQA packing; thought attention by decomposition)",
     v2_fwd, v2_bwd, v2_tfwd, v2_tbwd, 1, 1},
    {"v3 flash, fp32 inputs: the fp32 table's instance, which no training step runs (Tin = float: tiles loaded as "
     "fp32 and rounded to bf16 synchronously; fp32 out)",
     v3_fwd, v3_bwd, v3_tfwd, v3_tbwd, 1, 0},
};
static const int n_versions = (int)(sizeof versions / sizeof versions[0]);

static double last_rate[4];  // TFLOP/s of the last timed causal forward at T >= 1024, by version number

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

// Tolerances. v1: fp32 on both sides, differing only in summation order and exp implementation.
// v2, v3: bf16-exact inputs, P and dS rounded to bf16 (u = 2^-8): see the top comment.
static const double ATOL_OUT = 2e-5, RTOL_OUT = 1e-4, ATOL_LSE = 2e-5, RTOL_LSE = 1e-5, ATOL_D = 1e-4, RTOL_D = 1e-3;
static const double BF16_U = 1.0 / 256.0, INPUT_SCALE = 1.5;

static float bf16_round(float x) {  // round to nearest even, as __float2bfloat16
    uint32_t u;
    memcpy(&u, &x, 4);
    u += 0x7FFFu + ((u >> 16) & 1u);
    u &= 0xFFFF0000u;
    memcpy(&x, &u, 4);
    return x;
}
static std::vector<float> rnd_bf16(size_t n, float scale) {
    std::vector<float> v = rnd(n, scale);
    for (auto& x : v) x = bf16_round(x);
    return v;
}
static int check_out(Bench* b, const AttnVersion* v, Dual<float>& out, Dual<float>& lse) {
    if (!v->bf16) return check_f(b, "out", out, ATOL_OUT, RTOL_OUT) & check_f(b, "lse", lse, ATOL_LSE, RTOL_LSE);
    return check_f(b, "out (bf16 P: 2u max|v|)", out, 2 * BF16_U * INPUT_SCALE + 1e-5, 0) &
           check_f(b, "lse", lse, 1e-4, 0);
}
static int check_grad(Bench* b, const AttnVersion* v, const char* what, Dual<float>& d) {
    if (!v->bf16) return check_f(b, what, d, ATOL_D, RTOL_D);
    double mr = 0;
    for (float x : d.get(1)) mr = fmax(mr, fabs(x));
    char name[120];
    snprintf(name, sizeof name, "%s (3u max|ref|)", what);
    return check_f(b, name, d, 3 * BF16_U * mr, 0);
}

// Minimum bytes of one call (fp32 tensors, each read or written once): see the top comment.
static double attention_bytes(int backward, int k, int R, int L, int NH, int NKV, int HD) {
    const double N = (double)R * L, q = N * NH * HD, kv = 2.0 * N * NKV * HD, own = 2.0 * k * N * NKV * HD;
    const double out = N * NH * HD, lse = (double)R * NH * L;
    const double fwd = 4.0 * (q + kv + own + out + lse);
    return backward ? fwd + 4.0 * (out + 2 * (q + kv + own)) : fwd;  // + dout read, dqkv read-modify-write
}

// Registers and static shared memory of the attention kernels, from nvcc's ptxas reports: the fp32
// table's object (v1, and v3's Tin = float flash instances) and the bf16 table's (v2: its flash kernels).
static void print_ptxas_file(const char* path, int bf16_table) {
    FILE* f = fopen(path, "r");
    if (!f) {
        printf("ptxas: %s not found (make cuda writes it): no register counts\n", path);
        return;
    }
    printf("ptxas (%s): %s; <n> is the first template int (flash: head dim; v1: dims per lane)\n", path,
           bf16_table ? "the bf16 table's flash kernels (v2)" : "attention kernels, fp32-input (Tin = float) instances (v1, v3)");
    char line[1024], entry[512] = "", arch[16] = "";
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        char* e = strstr(line, "Compiling entry function '");
        if (e) {
            e += strlen("Compiling entry function '");
            char* q = strchr(e, '\'');
            if (!q) continue;
            snprintf(entry, sizeof entry, "%.*s", (int)(q - e), e);
            char* a = strstr(q, "for '");
            snprintf(arch, sizeof arch, "%.*s", a ? 5 : 0, a ? a + 5 : "");
            if (!strstr(entry, "attention") && !strstr(entry, "flash")) entry[0] = 0;
            if (bf16_table ? !strstr(entry, "flash") : strstr(entry, "nv_bfloat16") != NULL) entry[0] = 0;
            continue;
        }
        int regs = 0;
        char* u = strstr(line, "Used ");
        if (entry[0] && u && sscanf(u, "Used %d registers", &regs) == 1) {
            int smem = 0;
            char* sm = strstr(u, "bytes smem");
            if (sm) {
                char* p = sm;
                while (p > u && p[-1] == ' ') p--;
                while (p > u && p[-1] >= '0' && p[-1] <= '9') p--;
                smem = atoi(p);
            }
            // the mangled name's identifier: digits then the name, after the namespace's when nested
            // (_ZN10qstar_fp32<len><name>...)
            const char* id = entry + 2;
            if (*id == 'N') {
                id++;
                const int ns = atoi(id);
                while (*id >= '0' && *id <= '9') id++;
                id += ns;
            }
            int len = atoi(id);
            while (*id >= '0' && *id <= '9') id++;
            const char* hd = strstr(entry, "ILi");  // the first template int: the flash kernels' HD, v1's dims per lane
            char hds[16] = "";
            if (hd) snprintf(hds, sizeof hds, "<%d>", atoi(hd + 3));
            printf("  %-6s %-40.*s %-7s %3d registers, %6d B static smem\n", arch, len, id, hds, regs, smem);
            n++;
            entry[0] = 0;
        }
    }
    fclose(f);
    if (!n) printf("  (no attention kernels found in the report)\n");
}
static void print_ptxas(void) {
    print_ptxas_file("build/cuda/backend_cuda.ptxas.txt", 0);
    print_ptxas_file("build/cuda/backend_cuda_bf16.ptxas.txt", 1);
    printf("  flash dynamic shared memory (bf16 tiles, rows padded by 8): forward 5*64*(HD+8)*2 B = %d KiB at HD 64, "
           "%d KiB at HD 128; backward 6 tiles + 1 KiB = %d, %d KiB\n",
           5 * 64 * 72 * 2 / 1024, 5 * 64 * 136 * 2 / 1024, (6 * 64 * 72 * 2 + 1024) / 1024, (6 * 64 * 136 * 2 + 1024) / 1024);
}

// Attention's theoretical share of a mistral-7b step (configs/mistral-7b.json: H 4096, IM 14336, 32 layers,
// 32/8 heads of 128, V 32002): FLOPs as bench_step counts them, and the time share when attention runs
// at `rate` TFLOP/s and the GEMMs at 60% of the TF32 peak (tf32 TFLOP/s; 0: FLOP share only).
static void print_7b_share(double rate, double tf32) {
    const double H = 4096, IM = 14336, NH = 32, NKV = 8, HD = 128, V = 32002, layers = 32;
    const double per_row = layers * (H * (NH + 2 * NKV) * HD + NH * HD * H + 3 * H * IM) + V * H;
    struct {
        const char* name;
        double rows_gemm, attn_pairs_heads;
    } cases[2];
    // lm: B 4 x T 1024
    const double T = 1024, Blm = 4;
    cases[0] = {"lm B 4 x T 1024", Blm * T, Blm * T * (T + 1) / 2};
    // quietstar: R = 1 x 2 passes, L 256, S 15 forwards, step k sees L(L+1)/2 + kL pairs per row
    double pairs = 0;
    for (int k = 0; k < 15; k++) pairs += 2 * (256.0 * 257 / 2 + k * 256.0);
    cases[1] = {"quietstar 2 x 256, 15 steps", 15 * 512.0, pairs};
    printf("attention's share of a mistral-7b step (forward + backward, FLOPs as bench_step counts them):\n");
    for (auto& c : cases) {
        const double gemm = 6.0 * c.rows_gemm * per_row, attn = 12.0 * layers * NH * HD * c.attn_pairs_heads;
        printf("  %-28s attention %.3g of %.3g TFLOP = %.1f%% of the FLOPs", c.name, attn / 1e12, (gemm + attn) / 1e12,
               100 * attn / (gemm + attn));
        if (rate > 0 && tf32 > 0) {
            const double ta = attn / (rate * 1e12), tg = gemm / (0.6 * tf32 * 1e12);
            printf("; at %.1f TFLOP/s vs GEMMs at 60%% of TF32: %.1f%% of the time", rate, 100 * ta / (ta + tg));
        }
        printf("\n");
    }
}

static void bench_causal(Bench* b, const AttnVersion* v, int B, int T, int NH, int NKV, int HD) {
    const int C3 = (NH + 2 * NKV) * HD, N = B * T;
    auto qkv = dual(b, rnd_bf16((size_t)N * C3, (float)INPUT_SCALE));
    auto out = dual_zero<float>(b, (size_t)N * NH * HD);
    auto lse = dual_zero<float>(b, (size_t)B * NH * T);
    auto dout = dual(b, rnd_bf16((size_t)N * NH * HD, 1.0f));
    auto dqkv = dual_zero<float>(b, (size_t)N * C3);
    if (v->x16) x16_begin(b, qkv[0], (size_t)N * C3, dout[0], (size_t)N * NH * HD, dqkv[0]);
    const PeakKind kind = v->bf16 ? PEAK_BF16 : PEAK_FP32;
    const double pairs = (double)B * T * (T + 1) / 2.0, flops = 4.0 * HD * NH * pairs;
    char what[160];
    bench_case(what, sizeof what, "attention_forward B=%d T=%d heads %d/%d x %d [v%d]", B, T, NH, NKV, HD, (int)(v - versions) + 1);
    auto fwd = [&](const Backend* be, int s) {
        if (s == 0) v->attention_forward(be, out[s], lse[s], qkv[s], B, T, NH, NKV, HD);
        else be->attention_forward(out[s], lse[s], qkv[s], B, T, NH, NKV, HD);
    };
    run_both(b, fwd);
    if (v->x16) x16_result(out[0], x16.out, out.n);
    int ok = check_out(b, v, out, lse);
    bench_bytes(attention_bytes(0, 0, B, T, NH, NKV, HD), (double)N, "query row");
    bench_time_op(b, ok, what, fwd, 0, flops, kind);
    if (ok && b->gpu && !b->emu_timing && T >= 1024)
        last_rate[v - versions + 1] = flops / 1e12 / (bench_time_ms(b, [&] { fwd(b->be, 0); }) * 1e-3);
    bench_case(what, sizeof what, "attention_backward B=%d T=%d heads %d/%d x %d [v%d]", B, T, NH, NKV, HD, (int)(v - versions) + 1);
    auto bwd = [&](const Backend* be, int s) {
        if (s == 0) v->attention_backward(be, dqkv[s], dout[s], out[s], lse[s], qkv[s], B, T, NH, NKV, HD);
        else be->attention_backward(dqkv[s], dout[s], out[s], lse[s], qkv[s], B, T, NH, NKV, HD);
    };
    run_both(b, bwd);
    if (v->x16) x16_result(dqkv[0], x16.dqkv, dqkv.n);
    ok = check_grad(b, v, "dqkv", dqkv);
    bench_bytes(attention_bytes(1, 0, B, T, NH, NKV, HD), (double)N, "query row");
    bench_time_op(b, ok, what, bwd, 0, 2 * flops, kind);
    if (v->x16) x16_end();
    for (auto* d : {&qkv, &out, &lse, &dout, &dqkv}) d->release();
}

static void bench_thought(Bench* b, const AttnVersion* v, int k, int R, int L, int NH, int NKV, int HD) {
    const int C3 = (NH + 2 * NKV) * HD, N = R * L;
    const size_t stride = (size_t)N * C3;  // one layer's qkv per step, steps back to back
    auto qkv = dual(b, rnd_bf16(stride * (k + 1), (float)INPUT_SCALE));
    auto out = dual_zero<float>(b, (size_t)N * NH * HD);
    auto lse = dual_zero<float>(b, (size_t)R * NH * L);
    auto dout = dual(b, rnd_bf16((size_t)N * NH * HD, 1.0f));
    auto dqkv = dual(b, rnd(stride * (k + 1), 0.01f));  // accumulates (+=): start from the same values
    if (v->x16) x16_begin(b, qkv[0], stride * (k + 1), dout[0], (size_t)N * NH * HD, dqkv[0]);
    const PeakKind kind = v->bf16 ? PEAK_BF16 : PEAK_FP32;
    const double pairs = (double)R * ((double)L * (L + 1) / 2.0 + (double)k * L), flops = 4.0 * HD * NH * pairs;
    char what[160];
    bench_case(what, sizeof what, "thought_attention_forward k=%d R=%d L=%d heads %d/%d x %d [v%d]", k, R, L, NH, NKV,
               HD, (int)(v - versions) + 1);
    auto fwd = [&](const Backend* be, int s) {
        if (s == 0) v->thought_forward(be, out[s], lse[s], qkv[s], stride, k, R, L, NH, NKV, HD);
        else be->thought_attention_forward(out[s], lse[s], qkv[s], stride, k, R, L, NH, NKV, HD);
    };
    run_both(b, fwd);
    if (v->x16) x16_result(out[0], x16.out, out.n);
    int ok = check_out(b, v, out, lse);
    bench_bytes(attention_bytes(0, k, R, L, NH, NKV, HD), (double)N, "query row");
    bench_time_op(b, ok, what, fwd, 0, flops, kind);
    bench_case(what, sizeof what, "thought_attention_backward k=%d R=%d L=%d heads %d/%d x %d [v%d]", k, R, L, NH, NKV,
               HD, (int)(v - versions) + 1);
    auto bwd = [&](const Backend* be, int s) {
        if (s == 0) v->thought_backward(be, dqkv[s], dout[s], out[s], lse[s], qkv[s], stride, k, R, L, NH, NKV, HD);
        else be->thought_attention_backward(dqkv[s], dout[s], out[s], lse[s], qkv[s], stride, k, R, L, NH, NKV, HD);
    };
    run_both(b, bwd);
    if (v->x16) x16_result(dqkv[0], x16.dqkv, dqkv.n);
    ok = check_grad(b, v, "dqkv stack, steps 0..k (+=)", dqkv);
    bench_bytes(attention_bytes(1, k, R, L, NH, NKV, HD), (double)N, "query row");
    bench_time_op(b, ok, what, bwd, 0, 2 * flops, kind);
    if (v->x16) x16_end();
    for (auto* d : {&qkv, &out, &lse, &dout, &dqkv}) d->release();
}

int main(int argc, char** argv) {
    Bench b;
    if (!bench_setup(&b, argc, argv, parse_extra, " [--version V] [--heads NH,NKV,HD] [--k 0,14]")) return 0;
    if (b.version < 0 || b.version > n_versions) fatal("bench_attention: --version %d: have 1..%d", b.version, n_versions);
    int NH = b.full ? 12 : 4, NKV = b.full ? 4 : 2, HD = 64;
    print_ptxas();
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
    // the share at the measured causal forward rate of the bf16 step's flash path (v2, T = 1024), else FLOPs only
    print_7b_share(b.gpu ? last_rate[2] : 0, b.peak ? b.peak->tf32_tflops : 0);
    return bench_finish(&b);
}
