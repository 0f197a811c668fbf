/*
 * test_memory.cu — what the emulator checks about memory, and what it counts:
 *   shared memory (static __shared__ and dynamic) is poisoned with 0xFF bytes at every block start
 *     (-1 as int, NaN as float), so a read of shared memory nobody wrote in this block shows, while
 *     CUEMU_SMEM_POISON=0 shows the previous block's leftovers instead;
 *   a store past the end (or before the start) of the dynamic shared memory hits a guard zone and is
 *     reported with the kernel's name and block; a store before the start of a cudaMalloc block hits
 *     its leading red zone (the trailing one is tested in test_deadlock.cu);
 *   cudaMalloc accounting: current and peak bytes, memory_reset_peak(), CUEMU_MEMREPORT=1;
 *   cuemu::check_align, for helpers' vector loads: a misaligned 16-byte load names the kernel;
 *   cuemu::smem_access / smem_store: the bank conflicts of warp-wide shared loads and stores of 4, 8
 *     and 16 bytes (a planted stride-32 conflict counts 31, consecutive words 0), apart per kind, and
 *     the two sides of a branch (disjoint masks) as two accesses;
 *   per-launch counters: blocks, threads, barriers, warp collectives, and what a kernel reports
 *     through cuemu::count() (bytes, MMA, FLOPs), for the last launch and in total, the same with
 *     two workers, and CUEMU_COUNTERS=1 lines (per launch, and per kernel at exit);
 *   CUEMU_INITCHECK=1 under valgrind: a kernel whose output depends on never-written shared memory
 *     makes memcheck report uninitialised values (skipped, by name, without valgrind).
 * Fatal cases run in a forked child (with an alarm) that must die with the expected message.
 * The kernels are valid CUDA (nvcc compiles this file); the checks exist only in the emulator.
 */
#include "test_helpers.h"

#ifdef CUEMU
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#endif

/* first launch: writes 7s into static and dynamic shared memory; later: reads without writing */
__global__ void k_smem_leftover(int* out, int write) {
    __shared__ int st[32];
    DYN_SMEM(float, dyn);
    int t = threadIdx.x;
    if (write) {
        st[t] = 7;
        dyn[t] = 7.0f;
    }
    __syncthreads();
    out[t] = st[t];
    out[32 + t] = dyn[t] != dyn[t] ? -1 : (int)dyn[t]; /* NaN -> -1 */
}

/* a shared helper's static array: poisoned too (it belongs to no kernel) */
__device__ int helper_read(int t, int write) {
    __shared__ int hs[32];
    if (write) hs[t] = 5;
    __syncwarp();
    return hs[t];
}
__global__ void k_helper(int* out, int write) { out[threadIdx.x] = helper_read(threadIdx.x, write); }

__global__ void k_dyn_overflow(int n) {
    DYN_SMEM(int, sm);
    int t = threadIdx.x;
    sm[t] = t;
    if (t == 0) sm[n] = 1; /* one past the end */
}
__global__ void k_dyn_underflow(void) {
    DYN_SMEM(int, sm);
    if (threadIdx.x == 0) sm[-2] = 1;
}
__global__ void k_before_start(int* p) {
    if (threadIdx.x == 0) p[-1] = 3;
}

/* two barriers, three full-warp shuffles, and what a load/store helper would report */
__global__ void k_counted(const float* in, float* out) {
    int g = blockIdx.x * blockDim.x + threadIdx.x;
    float v = in[g];
#ifdef CUEMU
    ::cuemu::count(::cuemu::C_BYTES_READ, sizeof(float));
#endif
    __syncthreads();
    for (int o = 1; o < 8; o *= 2) v += __shfl_xor_sync(FULL_MASK, v, o);
    __syncthreads();
    out[g] = v;
#ifdef CUEMU
    ::cuemu::count(::cuemu::C_BYTES_WRITTEN, sizeof(float));
    if (threadIdx.x % 32 == 0) {
        ::cuemu::count(::cuemu::C_MMA);
        ::cuemu::count(::cuemu::C_FLOPS, 4096);
    }
#endif
}

/* a 16-byte vector load through a helper that checks its alignment, as the vector helpers do */
__device__ float4 load16(const float* p) {
#ifdef CUEMU
    ::cuemu::check_align(p, 16, "float4 load");
#endif
    return *reinterpret_cast<const float4*>(p);
}
__global__ void k_vector_load(const float* in, float* out, int offset) {
    float4 v = load16(in + offset + 4 * threadIdx.x);
    out[threadIdx.x] = v.x + v.y + v.z + v.w;
}

/* one warp-wide shared-memory access per launch, described to the bank-conflict counter:
 * lane l touches `bytes` bytes at byte offset l * stride (stride 0: all lanes the same word) */
__global__ void k_banks(char* out, int stride, int bytes) {
    __shared__ float4 s[32 * 33];
    const char* p = reinterpret_cast<const char*>(s) + threadIdx.x * stride;
#ifdef CUEMU
    ::cuemu::smem_access(p, (unsigned)bytes);
#endif
    if (bytes == 0) *out = *p; /* never: the test only counts */
}

/* the same as a store (st.shared, cp.async destinations) */
__global__ void k_banks_store(char* out, int stride, int bytes) {
    __shared__ float4 s[32 * 33];
    char* p = reinterpret_cast<char*>(s) + threadIdx.x * stride;
#ifdef CUEMU
    ::cuemu::smem_store(p, (unsigned)bytes);
#endif
    if (bytes == 0) *p = *out; /* never: the test only counts */
}

/* the two sides of a branch are two instructions: even lanes store word 2l, odd lanes word 2l too,
 * each side 2-way (lanes l and l + 16 share a bank): 1 extra wavefront each, 2 in all; counted as one
 * access of all 32 lanes it would be 1 */
__global__ void k_banks_branches(char* out) {
    __shared__ float s[64];
    const bool even = threadIdx.x % 2 == 0;
    float* p = s + 2 * threadIdx.x;
#ifdef CUEMU
    ::cuemu::smem_store(p, 4, even ? 0x55555555u : 0xaaaaaaaau);
#endif
    if (out) *p = even ? 0.0f : 1.0f;
}

/* reads shared memory that no thread wrote in this block */
__global__ void k_uninit(int* out, int write) {
    __shared__ int s[64];
    if (write) s[threadIdx.x] = (int)threadIdx.x;
    __syncthreads();
    out[threadIdx.x] = s[(threadIdx.x + 1) % 64];
}

#ifdef CUEMU
static bool has(const Outcome& o, const char* s) { return o.err.find(s) != std::string::npos; }
static int g_seen_failures = 0;
static void show_if_failed(const char* what, const Outcome& o) {
    if (test_failures > g_seen_failures)
        printf("--- %s: signal %d, exit %d, stderr:\n%s", what, o.signal, o.code, o.err.c_str());
    g_seen_failures = test_failures;
}

static void run_dyn_overflow(void) { LAUNCH(k_dyn_overflow, 2, 32, 32 * sizeof(int), 0, 32); }
static void run_dyn_underflow(void) { LAUNCH(k_dyn_underflow, 1, 32, 64, 0); }
static void run_before_start(void) {
    int* d = NULL;
    cudaMalloc((void**)&d, 100 * sizeof(int));
    LAUNCH(k_before_start, 1, 32, 0, 0, d);
}
static void run_misaligned(void) {
    float* d = device_zeros<float>(256);
    LAUNCH(k_vector_load, 1, 32, 0, 0, d, d, 0);
    if (cudaGetLastError() != cudaSuccess) _exit(3);
    LAUNCH(k_vector_load, 1, 32, 0, 0, d, d, 1);
}
static void run_memreport(void) {
    setenv("CUEMU_MEMREPORT", "1", 1);
    void *a = NULL, *b = NULL;
    cudaMalloc(&a, 3 << 20);
    cudaMalloc(&b, 1 << 20);
    cudaFree(a);
}
static void run_counters_print(void) {
    setenv("CUEMU_COUNTERS", "1", 1);
    float* d = device_zeros<float>(64);
    LAUNCH(k_counted, 2, 32, 0, 0, d, d);
}

/* Runs argv (fork + execvp, no shell: g_self is a path) with stdout and stderr sent to /dev/null;
   returns its exit status, or -1 when it could not run or was killed. */
static int run_quiet(const char* const* argv) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        int fd = open("/dev/null", O_WRONLY);
        if (fd >= 0) dup2(fd, 1), dup2(fd, 2);
        execvp(argv[0], (char* const*)argv);
        _exit(127);
    }
    int st;
    if (waitpid(pid, &st, 0) < 0) return -1;
    return WIFEXITED(st) && WEXITSTATUS(st) != 127 ? WEXITSTATUS(st) : -1;
}

/* CUEMU_INITCHECK child: re-executes this binary under valgrind with an argument naming the case */
static const char* g_self = NULL;
static int under_valgrind(const char* which) {
    const char* argv[] = {"env",    "CUEMU_INITCHECK=1", "valgrind", "-q", "--error-exitcode=99", "--undef-value-errors=yes",
                          g_self, which,               NULL};
    return run_quiet(argv);
}
/* the body of the valgrind child: branch on the kernel's output, as a test comparing it would */
static int initcheck_case(int write) {
    int* d = device_zeros<int>(64);
    LAUNCH(k_uninit, 1, 64, 0, 0, d, write);
    std::vector<int> h = to_host(d, 64);
    int sum = 0;
    for (int v : h)
        if (v > 10) sum++;
    printf("%d\n", sum);
    cudaFree(d);
    return 0;
}
#endif

int main(int argc, char** argv) {
#ifndef CUEMU
    (void)argc;
    (void)argv;
    printf("skipped: shared-memory poisoning, guard zones and counters exist only in the emulator\n");
    printf("0 passed, 0 failed\n");
    return 0;
#else
    if (argc > 1 && !strcmp(argv[1], "--initcheck-bad")) return initcheck_case(0);
    if (argc > 1 && !strcmp(argv[1], "--initcheck-good")) return initcheck_case(1);
    g_self = argv[0];

    /* poisoning */
    int* d = device_zeros<int>(64);
    LAUNCH(k_smem_leftover, 1, 32, 32 * sizeof(float), 0, d, 1);
    std::vector<int> h = to_host(d, 64);
    CHECK(h[0] == 7 && h[31] == 7 && h[32] == 7 && h[63] == 7, "shared memory written in the block is read back");
    LAUNCH(k_smem_leftover, 1, 32, 32 * sizeof(float), 0, d, 0);
    h = to_host(d, 64);
    CHECK(h[0] == -1 && h[31] == -1, "static __shared__ is poisoned at block start (read %d)", h[0]);
    CHECK(h[32] == -1 && h[63] == -1, "dynamic shared memory is poisoned at block start (NaN; read %d)", h[32]);
    LAUNCH(k_helper, 1, 32, 0, 0, d, 1);
    LAUNCH(k_helper, 1, 32, 0, 0, d, 0);
    h = to_host(d, 32);
    CHECK(h[0] == -1 && h[31] == -1, "a device helper's static __shared__ is poisoned too (read %d)", h[0]);
    setenv("CUEMU_SMEM_POISON", "0", 1);
    LAUNCH(k_smem_leftover, 1, 32, 32 * sizeof(float), 0, d, 1);
    LAUNCH(k_smem_leftover, 1, 32, 32 * sizeof(float), 0, d, 0);
    h = to_host(d, 64);
    CHECK(h[0] == 7, "CUEMU_SMEM_POISON=0 leaves static shared memory as the last block left it (read %d)", h[0]);
    unsetenv("CUEMU_SMEM_POISON");
    cudaFree(d);

    /* guard zones */
    Outcome o = in_child(run_dyn_overflow);
    CHECK(o.signal == SIGABRT &&
              has(o, "kernel 'k_dyn_overflow' block (") &&
              has(o, ") wrote past the end of its 128 bytes of dynamic shared memory"),
          "a store past the dynamic shared memory is reported");
    show_if_failed("dyn overflow", o);
    o = in_child(run_dyn_underflow);
    CHECK(o.signal == SIGABRT && has(o, "kernel 'k_dyn_underflow' block (0,0,0) wrote before the start of its 64 bytes"),
          "a store before the dynamic shared memory is reported");
    show_if_failed("dyn underflow", o);
    o = in_child(run_before_start);
#ifdef __SANITIZE_ADDRESS__
    CHECK(o.signal != 0 || o.code != 0, "a store before a cudaMalloc block is caught (ASan)");
#else
    CHECK(o.signal == SIGABRT && has(o, "kernel 'k_before_start' wrote before the start of a 400-byte cudaMalloc block") &&
              has(o, "4 bytes before its start"),
          "a store before a cudaMalloc block hits the leading red zone");
#endif
    show_if_failed("before start", o);

    o = in_child(run_misaligned);
    CHECK(o.signal == SIGABRT && has(o, "misaligned address: float4 load at") && has(o, "is not 16-byte aligned") &&
              has(o, "kernel 'k_vector_load' block (0,0,0) thread ("),
          "a misaligned 16-byte load is reported (an aligned one is not)");
    show_if_failed("misaligned", o);

    /* cudaMalloc accounting */
    size_t base = cuemu::memory_current();
    cuemu::memory_reset_peak();
    CHECK(cuemu::memory_peak() == base, "reset sets the peak to the current bytes");
    void *a = NULL, *b = NULL, *c = NULL;
    cudaMalloc(&a, 1000);
    cudaMalloc(&b, 3000);
    CHECK(cuemu::memory_current() == base + 4000, "current counts requested bytes (%zu)", cuemu::memory_current() - base);
    cudaFree(a);
    cudaMalloc(&c, 500);
    CHECK(cuemu::memory_current() == base + 3500 && cuemu::memory_peak() == base + 4000,
          "peak is the high-water mark (current %zu, peak %zu)", cuemu::memory_current() - base,
          cuemu::memory_peak() - base);
    CHECK(cuemu_memory_peak() == cuemu::memory_peak() && cuemu_memory_current() == cuemu::memory_current(),
          "the C entry points agree");
    cudaFree(b);
    cudaFree(c);
    cuemu::memory_reset_peak();
    CHECK(cuemu::memory_peak() == base && cuemu::memory_current() == base, "everything freed");
    o = in_child(run_memreport);
    CHECK(o.code == 0 && has(o, "cuemu: device memory peak 4194304 bytes (4.0 MiB) in 2 allocation(s)") &&
              has(o, "1048576 bytes in 1 allocation(s) still allocated at exit"),
          "CUEMU_MEMREPORT=1 prints the peak at exit");
    show_if_failed("memreport", o);

    /* counters: 3 blocks of 64 threads (2 warps), 2 barriers, 3 shuffles per warp */
    float* f = device_zeros<float>(192);
    cuemu::reset_counters();
    for (int workers = 1; workers <= 2; workers++) {
        setenv("CUEMU_WORKERS", workers == 1 ? "1" : "2", 1);
        LAUNCH(k_counted, 3, 64, 0, 0, f, f);
        cuemu::Counters k = cuemu::last_launch_counters();
        CHECK(k[cuemu::C_LAUNCHES] == 1 && k[cuemu::C_BLOCKS] == 3 && k[cuemu::C_THREADS] == 192,
              "%d worker(s): launches/blocks/threads %llu %llu %llu", workers, k[cuemu::C_LAUNCHES],
              k[cuemu::C_BLOCKS], k[cuemu::C_THREADS]);
        CHECK(k[cuemu::C_BARRIERS] == 6 && k[cuemu::C_WARP_COLLECTIVES] == 18,
              "%d worker(s): barriers %llu (want 6), warp collectives %llu (want 18)", workers, k[cuemu::C_BARRIERS],
              k[cuemu::C_WARP_COLLECTIVES]);
        CHECK(k[cuemu::C_BYTES_READ] == 768 && k[cuemu::C_BYTES_WRITTEN] == 768 && k[cuemu::C_MMA] == 6 &&
                  k[cuemu::C_FLOPS] == 6 * 4096,
              "%d worker(s): reported bytes %llu/%llu, mma %llu, flops %llu", workers, k[cuemu::C_BYTES_READ],
              k[cuemu::C_BYTES_WRITTEN], k[cuemu::C_MMA], k[cuemu::C_FLOPS]);
    }
    unsetenv("CUEMU_WORKERS");
    cuemu::count(cuemu::C_MMA, 1000); /* outside a kernel: ignored */
    cuemu::Counters tot = cuemu::total_counters();
    CHECK(tot[cuemu::C_LAUNCHES] == 2 && tot[cuemu::C_BARRIERS] == 12 && tot[cuemu::C_MMA] == 12,
          "totals add launches up (launches %llu, barriers %llu, mma %llu)", tot[cuemu::C_LAUNCHES],
          tot[cuemu::C_BARRIERS], tot[cuemu::C_MMA]);
    unsigned long long cv[cuemu::C_NUM];
    cuemu_total_counters(cv, cuemu::C_NUM);
    CHECK(cv[cuemu::C_BARRIERS] == 12 && !strcmp(cuemu_counter_name(cuemu::C_BYTES_READ), "bytes_read"),
          "C entry points for counters");
    cuemu::reset_counters();
    CHECK(cuemu::total_counters()[cuemu::C_LAUNCHES] == 0, "reset_counters");

    /* bank conflicts: {stride, bytes per lane, extra wavefronts} */
    const int banks[][3] = {{4, 4, 0},    /* consecutive words */
                            {0, 4, 0},    /* broadcast */
                            {8, 4, 1},    /* stride 2 words: 2-way */
                            {128, 4, 31}, /* stride 32 words: 32-way */
                            {8, 8, 0},    /* 8-byte, consecutive: 2 conflict-free half-warp phases */
                            {16, 16, 0},  /* float4, consecutive: 4 conflict-free quarter-warp phases */
                            {32, 16, 4}}; /* float4 at stride 2: 2-way in each of 4 phases */
    for (const auto& bk : banks) {
        LAUNCH(k_banks, 1, 32, 0, 0, (char*)NULL, bk[0], bk[1]);
        cuemu::Counters k = cuemu::last_launch_counters();
        unsigned long long got = k[cuemu::C_BANK_CONFLICTS];
        CHECK(got == (unsigned long long)bk[2] && k[cuemu::C_BANK_CONFLICTS_LD] == got && k[cuemu::C_BANK_CONFLICTS_ST] == 0,
              "bank conflicts of %d-byte loads at stride %d: %llu, loads %llu, stores %llu (want %d, %d, 0)", bk[1],
              bk[0], got, k[cuemu::C_BANK_CONFLICTS_LD], k[cuemu::C_BANK_CONFLICTS_ST], bk[2], bk[2]);
        LAUNCH(k_banks_store, 1, 32, 0, 0, (char*)NULL, bk[0], bk[1]);
        k = cuemu::last_launch_counters();
        got = k[cuemu::C_BANK_CONFLICTS];
        CHECK(got == (unsigned long long)bk[2] && k[cuemu::C_BANK_CONFLICTS_ST] == got && k[cuemu::C_BANK_CONFLICTS_LD] == 0,
              "bank conflicts of %d-byte stores at stride %d: %llu, stores %llu, loads %llu (want %d, %d, 0)", bk[1],
              bk[0], got, k[cuemu::C_BANK_CONFLICTS_ST], k[cuemu::C_BANK_CONFLICTS_LD], bk[2], bk[2]);
    }
    LAUNCH(k_banks_branches, 1, 32, 0, 0, (char*)NULL);
    CHECK(cuemu::last_launch_counters()[cuemu::C_BANK_CONFLICTS_ST] == 2,
          "stores of the two sides of a branch (disjoint masks) are counted apart: %llu (want 2)",
          cuemu::last_launch_counters()[cuemu::C_BANK_CONFLICTS_ST]);
    cudaFree(f);
    o = in_child(run_counters_print);
    CHECK(o.code == 0 &&
              has(o, "cuemu: counters 'k_counted' grid (2,1,1) block (32,1,1) smem 0: blocks=2 threads=64 barriers=4 "
                     "warp_collectives=6 bytes_read=256 bytes_written=256 mma=2 flops=8192"),
          "CUEMU_COUNTERS=1 prints a line per launch");
    CHECK(has(o, "cuemu: kernel totals 'k_counted': launches=1 blocks=2 threads=64 barriers=4 warp_collectives=6 "
                 "bytes_read=256 bytes_written=256 mma=2 flops=8192\n"),
          "CUEMU_COUNTERS=1 prints each kernel's totals at exit");
    show_if_failed("counters", o);

    /* initcheck under valgrind */
    const char* version[] = {"valgrind", "--version", NULL};
    if (run_quiet(version) != 0) {
        printf("skipped: CUEMU_INITCHECK test (valgrind not found)\n");
    } else {
        int bad = under_valgrind("--initcheck-bad"), good = under_valgrind("--initcheck-good");
        CHECK(bad == 99, "CUEMU_INITCHECK: valgrind reports the use of never-written shared memory (exit %d)", bad);
        CHECK(good == 0, "CUEMU_INITCHECK: no report when every shared element was written (exit %d)", good);
    }
    return test_summary();
#endif
}
