/*
 * The validate-then-benchmark harness shared by bench/cuda/bench_*.cu, in the manner of llm.c's
 * dev/cuda/common.h: every op runs through the backend table on the backend under test and on the C
 * reference (backend_get("cpu")) from the same random inputs; each output is compared element by
 * element with |got - ref| <= atol + rtol * |ref| (per-op tolerances, the worst error and the share of
 * the tolerance it used are printed, so the headroom is visible); only an op whose outputs all pass
 * is timed.
 *
 * Timing: cudaEvents on the backend's stream (qstar_stream), `warmup` untimed calls, then `repeats`
 * timed calls, each preceded by a write of a buffer of at least 64 MB and twice the L2 size outside
 * the events, so every repeat starts with a cold L2 (inputs come from HBM, as they do in a training
 * step). The mean is reported with GB/s or TFLOP/s and the share of the GPU's peak (kernels/gpu_peaks.h); a GPU
 * not in the table prints "peak unknown".
 *
 * Which backend: the nvcc build tests backend_get("cuda") and times it when cudaGetDeviceCount finds
 * a device (without one it says so and exits 0: timing needs a GPU, and validation without a GPU is
 * the emulator build's job). The emulator build (g++ -include emu/cuemu.h, CUEMU defined) tests
 * backend_get("emu") — the same kernel sources run on the CPU — at small sizes, prints "timing needs
 * a GPU" and exits 0 when every check passed, 1 otherwise; with --time it also runs the timing and
 * report code (events, flush, lines) on the emulator, so that code is tested without a GPU.
 */
#pragma once

// The benchmarks run the fp32 tables and treat their buffers as float arrays (kernels/ops.h: floatX).
#define QSTAR_FLOATX float
#include <cuda_runtime.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vector>

extern "C" {
#include "common/util.h"
#include "kernels/ops.h"
}
#include "kernels/gpu_peaks.h"

// The stream every op of the CUDA backend runs on (kernels/cuda/backend_cuda.cu); created by the
// backend's first allocation, so it is read at each event record, never cached before.
extern cudaStream_t qstar_stream;

#define BENCH_CUDA(call)                                                                                    \
    do {                                                                                                    \
        cudaError_t e_ = (call);                                                                            \
        if (e_ != cudaSuccess) fatal("CUDA error %s at %s:%d: %s", cudaGetErrorString(e_), __FILE__, __LINE__, #call); \
    } while (0)

enum PeakKind { PEAK_HBM, PEAK_TF32, PEAK_FP32, PEAK_BF16 };

typedef struct {
    const char* prog;
    const Backend* be;   // under test: cuda (GPU build) or emu (emulator build)
    const Backend* ref;  // the C reference
    int gpu;             // 1: a real GPU, timing on
    int full;            // benchmark sizes (GPU, or --full on the emulator); else small validation sizes
    const GpuPeak* peak; // NULL: unknown GPU
    char device[400];
    int warmup, repeats;
    int version;         // kernel version to run (0: all), for benches with several
    void* flush;
    size_t flush_bytes;
    int passed, failed;
    int emu_timing;      // --time on the emulator: timing code runs, its numbers mean nothing
} Bench;

// ---- random inputs (a fixed LCG: the same inputs on every run and machine) ------------------------
static uint64_t bench_rng = 0x9E3779B97F4A7C15ull;
static inline float urand(void) {  // uniform in [-1, 1)
    bench_rng = bench_rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((bench_rng >> 40) & 0xFFFFFF) / 8388608.0f - 1.0f;
}
static inline int irand(int n) { return (int)(((urand() + 1.0f) * 0.5f) * n) % n; }
static inline std::vector<float> rnd(size_t n, float scale = 1.0f, float offset = 0.0f) {
    std::vector<float> v(n);
    for (auto& x : v) x = offset + scale * urand();
    return v;
}

// ---- one tensor on both backends: [0] the backend under test, [1] the reference -------------------
template <class T>
struct Dual {
    T* p[2];
    size_t n;
    const Backend* be[2];
    T* operator[](int side) const { return p[side]; }
    std::vector<T> get(int side) const {
        std::vector<T> h(n);
        if (n) be[side]->download(h.data(), p[side], n * sizeof(T));
        return h;
    }
    void set(const std::vector<T>& h) {
        for (int s = 0; s < 2; s++)
            if (n) be[s]->upload(p[s], h.data(), n * sizeof(T));
    }
    void release() {
        for (int s = 0; s < 2; s++) be[s]->free(p[s]);
        p[0] = p[1] = NULL;
    }
};
template <class T>
static Dual<T> dual_zero(Bench* b, size_t n) {
    Dual<T> d;
    d.n = n;
    d.be[0] = b->be;
    d.be[1] = b->ref;
    for (int s = 0; s < 2; s++) d.p[s] = (T*)d.be[s]->alloc(n * sizeof(T));
    return d;
}
template <class T>
static Dual<T> dual(Bench* b, const std::vector<T>& h) {
    Dual<T> d = dual_zero<T>(b, h.size());
    d.set(h);
    return d;
}

// ---- setup ------------------------------------------------------------------------------------------
static inline void bench_usage(const char* prog, const char* extra) {
    printf("usage: %s [--repeats N] [--warmup N] [--full]%s\n"
           "  validates every op against the C reference, then (on a GPU) times it\n"
           "  --full: the benchmark sizes even without a GPU (slow on the emulator)\n"
           "  --time: (emulator build) run the timing code too, to test it without a GPU\n",
           prog, extra ? extra : "");
}

// Parses the common options; returns 0 after printing the no-GPU message in a GPU build on a machine
// without one (the caller exits 0). `extra` takes the bench's own options: it is called for every
// option the harness does not know and returns how many arguments it consumed (0: unknown).
static inline int bench_setup(Bench* b, int argc, char** argv, int (*extra)(Bench*, int, char**), const char* extra_usage) {
    memset(b, 0, sizeof *b);
    b->prog = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
    b->warmup = 3;
    b->repeats = 20;
    for (int i = 1; i < argc;) {
        if (!strcmp(argv[i], "--repeats") && i + 1 < argc) b->repeats = atoi(argv[i + 1]), i += 2;
        else if (!strcmp(argv[i], "--warmup") && i + 1 < argc) b->warmup = atoi(argv[i + 1]), i += 2;
        else if (!strcmp(argv[i], "--full")) b->full = 1, i++;
        else if (!strcmp(argv[i], "--time")) b->gpu = 1, i++;  // emulator only: exercise the timing path
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) bench_usage(b->prog, extra_usage), exit(0);
        else {
            int used = extra ? extra(b, argc - i, argv + i) : 0;
            if (!used) bench_usage(b->prog, extra_usage), fatal("%s: unknown option %s", b->prog, argv[i]);
            i += used;
        }
    }
    if (b->repeats < 1) b->repeats = 1;
    b->ref = backend_get("cpu");
#ifdef CUEMU
    b->be = backend_get("emu");
    snprintf(b->device, sizeof b->device, "CPU emulator (emu/)");
    if (b->gpu) {  // --time: runs the timing code on the emulator so it is tested without a GPU
        b->flush_bytes = (size_t)1 << 20;
        b->flush = b->be->alloc(b->flush_bytes);
        b->emu_timing = 1;
    }
#else
    int n = 0;
    cudaError_t err = cudaGetDeviceCount(&n);
    if (err != cudaSuccess || n == 0) {
        printf("%s: no CUDA device (%s): timing needs a GPU; build/bench/emu/%s validates the kernels on the "
               "CPU emulator\n",
               b->prog, err != cudaSuccess ? cudaGetErrorString(err) : "none found", b->prog);
        return 0;
    }
    b->be = backend_get("cuda");
    b->gpu = 1;
    b->full = 1;
    cudaDeviceProp prop;
    BENCH_CUDA(cudaGetDeviceProperties(&prop, 0));
    snprintf(b->device, sizeof b->device, "%s (sm_%d%d, %d SMs, L2 %d MB)", prop.name, prop.major, prop.minor,
             prop.multiProcessorCount, prop.l2CacheSize >> 20);
    b->peak = gpu_peak_lookup(prop.name);
    b->flush_bytes = (size_t)64 << 20;
    if ((size_t)prop.l2CacheSize * 2 > b->flush_bytes) b->flush_bytes = (size_t)prop.l2CacheSize * 2;
    b->flush = b->be->alloc(b->flush_bytes);  // through the backend: also creates its stream
#endif
    if (!b->be) fatal("%s: backend not built in (have %s)", b->prog, backend_names());
    printf("%s: backend %s on %s, reference cpu\n", b->prog, b->be->name, b->device);
    if (b->emu_timing) printf("--time on the emulator: the timing code runs, its numbers mean nothing\n");
    if (b->gpu) {
        if (b->peak)
            printf("peaks (%s): HBM %.0f GB/s, TF32 %.1f, BF16 %.1f, FP32 %.1f TFLOP/s (dense)\n", b->peak->label,
                   b->peak->hbm_gbs, b->peak->tf32_tflops, b->peak->bf16_tflops, b->peak->fp32_tflops);
        else
            printf("peak unknown for this GPU (kernels/gpu_peaks.h): no %% of peak\n");
        printf("timing: %d warmup, mean of %d repeats, L2 flushed (%zu MB written) before each\n", b->warmup,
               b->repeats, b->flush_bytes >> 20);
    } else {
        printf("sizes: %s\n", b->full ? "benchmark (--full)" : "small (validation on the emulator)");
    }
    return 1;
}

// ---- validation -------------------------------------------------------------------------------------
// Element-wise |got - ref| <= atol + rtol·|ref|; NaN/inf must match. Prints the worst error, its share
// of the tolerance, and counts the check. Returns 1 on pass.
static inline int check_f(Bench* b, const char* what, const Dual<float>& d, double atol, double rtol) {
    std::vector<float> got = d.get(0), want = d.get(1);
    double max_abs = 0, max_rel = 0, worst = 0;
    size_t bad = 0, first_bad = 0;
    for (size_t i = 0; i < d.n; i++) {
        double g = got[i], w = want[i];
        if (!isfinite(g) || !isfinite(w)) {
            if (!(isnan(g) && isnan(w)) && g != w) {
                if (!bad++) first_bad = i;
                worst = INFINITY;
            }
            continue;
        }
        double e = fabs(g - w), tol = atol + rtol * fabs(w);
        if (e > max_abs) max_abs = e;
        if (e / fmax(fabs(w), 1e-30) > max_rel && fabs(w) > atol) max_rel = e / fabs(w);
        if (e / tol > worst) worst = e / tol;
        if (e > tol && !bad++) first_bad = i;
    }
    printf("  %-4s %-54s max abs err %.2e  max rel %.2e  %5.1f%% of tol (atol %.0e, rtol %.0e)\n",
           bad ? "FAIL" : "ok", what, max_abs, max_rel, 100 * worst, atol, rtol);
    if (bad)
        printf("       %zu of %zu elements off; first at %zu: got %.8g, want %.8g\n", bad, d.n, first_bad,
               (double)got[first_bad], (double)want[first_bad]);
    bad ? b->failed++ : b->passed++;
    return !bad;
}
static inline int check_i(Bench* b, const char* what, const Dual<int32_t>& d) {
    std::vector<int32_t> got = d.get(0), want = d.get(1);
    size_t bad = 0, first_bad = 0;
    for (size_t i = 0; i < d.n; i++)
        if (got[i] != want[i] && !bad++) first_bad = i;
    printf("  %-4s %-54s exact: %zu of %zu differ\n", bad ? "FAIL" : "ok", what, bad, d.n);
    if (bad) printf("       first at %zu: got %d, want %d\n", first_bad, got[first_bad], want[first_bad]);
    bad ? b->failed++ : b->passed++;
    return !bad;
}

// Runs op(backend, side) on the backend under test (side 0) and the reference (side 1).
template <class F>
static void run_both(Bench* b, F&& op) {
    op(b->be, 0);
    b->be->sync();
    op(b->ref, 1);
}

// ---- timing -----------------------------------------------------------------------------------------
// Mean milliseconds of fn() over the repeats, L2 flushed before each; -1 without a GPU.
template <class F>
static double bench_time_ms(Bench* b, F&& fn) {
    if (!b->gpu) return -1;
    for (int i = 0; i < b->warmup; i++) fn();
    cudaEvent_t t0, t1;
    BENCH_CUDA(cudaEventCreate(&t0));
    BENCH_CUDA(cudaEventCreate(&t1));
    double total = 0;
    for (int r = 0; r < b->repeats; r++) {
        // the flush is outside the events: only the op is timed, but it finds a cold L2
        BENCH_CUDA(cudaMemsetAsync(b->flush, r & 0xff, b->flush_bytes, qstar_stream));
        BENCH_CUDA(cudaEventRecord(t0, qstar_stream));
        fn();
        BENCH_CUDA(cudaEventRecord(t1, qstar_stream));
        BENCH_CUDA(cudaEventSynchronize(t1));
        float ms = 0;
        BENCH_CUDA(cudaEventElapsedTime(&ms, t0, t1));
        total += ms;
    }
    BENCH_CUDA(cudaEventDestroy(t0));
    BENCH_CUDA(cudaEventDestroy(t1));
    return total / b->repeats;
}

// One result line: time, then GB/s against the HBM peak (bytes > 0) and/or TFLOP/s against the
// TF32 or FP32 peak (flops > 0). bytes are the minimum traffic the op must make (each input read
// once, each output written once), so GB/s is an effective bandwidth.
static inline void bench_report(Bench* b, const char* what, double ms, double bytes, double flops, PeakKind kind) {
    if (ms < 0) return;
    printf("  time %-54s %9.4f ms", what, ms);
    if (bytes > 0) {
        double gbs = bytes / (ms * 1e-3) / 1e9;
        printf("  %8.1f GB/s", gbs);
        if (b->peak) printf(" (%5.1f%% of HBM)", 100 * gbs / b->peak->hbm_gbs);
        else printf(" (peak unknown)");
    }
    if (flops > 0) {
        double tf = flops / (ms * 1e-3) / 1e12;
        const char* name = kind == PEAK_FP32 ? "FP32" : kind == PEAK_BF16 ? "BF16" : "TF32";
        double peak = !b->peak                ? 0
                      : kind == PEAK_FP32 ? b->peak->fp32_tflops
                      : kind == PEAK_BF16 ? b->peak->bf16_tflops
                                          : b->peak->tf32_tflops;
        printf("  %8.2f TFLOP/s", tf);
        if (b->peak) printf(" (%5.1f%% of %s)", 100 * tf / peak, name);
        else printf(" (peak unknown)");
    }
    printf("\n");
    fflush(stdout);
}

static double bench_min_bytes = 0;  // the last bench_bytes() of the current case (bench_case resets it)
static double bench_min_flops = 0;  // the last bench_flops() of the current case (bench_case resets it)
// The modelled FLOPs of one call of a memory-bound op (1 per add, multiply, compare or exp), for the
// arithmetic intensity and the roofline of the emulator's counted line only: bench_report prints no
// TFLOP/s for such an op.
static inline void bench_flops(double flops) { bench_min_flops = flops; }

// The analytic traffic of one call (each input read once from HBM, each output written once; what the
// GB/s of the time line is computed from), printed with every case, on the emulator too, so the bytes
// per element of each kernel are visible without a GPU. `elem` names the element they are counted per.
static inline void bench_bytes(double bytes, double elems, const char* elem) {
    bench_min_bytes = bytes;
    printf("  bytes/call %.4g MB = %.2f B per %s (%.4g %ss)\n", bytes / 1e6, bytes / elems, elem, elems, elem);
}

// Roofline time of one call on a GPU of the peak table: max(bytes / HBM bandwidth, flops / peak of
// `kind`), in microseconds.
static inline double bench_roofline_us(const GpuPeak* p, double bytes, double flops, PeakKind kind) {
    const double tf = kind == PEAK_FP32 || kind == PEAK_HBM ? p->fp32_tflops  // memory-bound ops: fp32 CUDA cores
                      : kind == PEAK_BF16                   ? p->bf16_tflops
                                                            : p->tf32_tflops;
    return fmax(bytes / (p->hbm_gbs * 1e9), flops > 0 ? flops / (tf * 1e12) : 0) * 1e6;
}

// Emulator only (no-op on a GPU): runs op once more on the backend under test with the emulator's
// counters reset, and prints one "counted" line: the bytes its kernel launches moved through the
// counting helpers (kernels/cuda/vec.cuh's packed loads/stores, tensorcore.cuh's ldmatrix; plain
// scalar loads and stores in kernels are NOT counted), the analytic minimum (`bytes`, each input read
// once and each output written once), the ratio moved / minimum, the arithmetic intensity
// flops / minimum bytes, and the roofline time on an H100 SXM and an H200 SXM (kernels/gpu_peaks.h)
// from the minimum bytes and flops. A call whose launches counted no bytes prints "not counted"
// instead of a ratio (its kernels do not go through the helpers); flops 0 means not modelled (a
// memory-bound op). tests/test_cuda_bench.sh parses these lines.
template <class F>
static void bench_counted(Bench* b, const char* what, F&& op, double bytes, double flops, PeakKind kind) {
#ifdef CUEMU
    b->be->sync();
    cuemu::reset_counters();
    op(b->be, 0);
    b->be->sync();
    const cuemu::Counters c = cuemu::total_counters();
    const double rd = (double)c.v[cuemu::C_BYTES_READ], wr = (double)c.v[cuemu::C_BYTES_WRITTEN];
    const GpuPeak *h100 = gpu_peak_lookup("NVIDIA H100 80GB HBM3"), *h200 = gpu_peak_lookup("NVIDIA H200");
    printf("  counted %s: %llu launches; ", what, (unsigned long long)c.v[cuemu::C_LAUNCHES]);
    if (rd + wr > 0)
        printf("moved %.4g MB (read %.4g, written %.4g) / minimum %.4g MB = ratio %.3f", (rd + wr) / 1e6, rd / 1e6,
               wr / 1e6, bytes / 1e6, bytes > 0 ? (rd + wr) / bytes : 0.0);
    else
        printf("not counted (no access through the counting helpers) / minimum %.4g MB", bytes / 1e6);
    if (c.v[cuemu::C_FLOPS]) printf("; counted %.4g MFLOP in %llu mma", c.v[cuemu::C_FLOPS] / 1e6, (unsigned long long)c.v[cuemu::C_MMA]);
    if (flops > 0 && bytes > 0) printf("; intensity %.3g FLOP/B", flops / bytes);
    else printf("; intensity n/a (FLOPs not modelled)");
    if (bytes > 0 || flops > 0)
        printf("; roofline H100 %.3g us, H200 %.3g us\n", bench_roofline_us(h100, bytes, flops, kind),
               bench_roofline_us(h200, bytes, flops, kind));
    else
        printf("\n");
    fflush(stdout);
#else
    (void)b, (void)what, (void)op, (void)bytes, (void)flops, (void)kind;
#endif
}

// Validate-then-time for one op: `ok` is the result of its checks (already run); an op that failed
// validation is not timed. On the emulator a validated op is run once more to print its counters
// (bench_counted), against `bytes` and `flops` or, where 0, the case's bench_bytes() and bench_flops().
template <class F>
static void bench_time_op(Bench* b, int ok, const char* what, F&& op, double bytes, double flops,
                          PeakKind kind = PEAK_HBM) {
    if (ok) bench_counted(b, what, op, bytes > 0 ? bytes : bench_min_bytes, flops > 0 ? flops : bench_min_flops, kind);
    if (!ok || !b->gpu) return;
    bench_report(b, what, bench_time_ms(b, [&] { op(b->be, 0); }), bytes, flops, kind);
}

// The closing lines; the exit status of main.
static inline int bench_finish(Bench* b) {
    if (!b->gpu || b->emu_timing) printf("timing needs a GPU (validated on the %s backend only)\n", b->be->name);
    printf("%s: %d passed, %d failed\n", b->prog, b->passed, b->failed);
    if (b->flush) b->be->free(b->flush);
    return b->failed ? 1 : 0;
}

// Prints the heading of one case ("-- rmsnorm_forward N=8192 H=768") and leaves it in buf for the
// time line.
__attribute__((format(printf, 3, 4))) static inline const char* bench_case(char* buf, size_t size, const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, size, fmt, ap);
    va_end(ap);
    bench_min_bytes = bench_min_flops = 0;
    printf("-- %s\n", buf);
    return buf;
}
