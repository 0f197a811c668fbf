/*
 * test_deadlock.cu — what the emulator does with kernels that are wrong: each bad kernel runs in a
 * forked child (with an alarm, so a hang fails instead of stalling the suite) and must die with a
 * clear message on stderr instead of hanging or finishing silently:
 *   a divergent barrier (half a warp at __syncthreads, half at a shuffle), also with 2 workers;
 *   a lane whose own bit is not in the mask; one mask used by two different intrinsics;
 *   an invalid shuffle width; a store past the end of a cudaMalloc block (red-zone canary);
 *   a fiber stack overflow (guard page -> SIGSEGV); an endless __nanosleep spin-wait (livelock
 *   report after CUEMU_SPIN_TIMEOUT_S); __trap(); a warp intrinsic called on the host.
 * The kernels are valid CUDA (nvcc compiles this file) but are only run under the emulator.
 */
#include "test_helpers.h"

#ifdef CUEMU
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#endif

__global__ void k_divergent(float* out) {
    float v = (float)threadIdx.x;
    if (threadIdx.x % 32 < 16) {
        __syncthreads();
    } else {
        v = __shfl_sync(FULL_MASK, v, 0);
    }
    out[threadIdx.x] = v;
}

__global__ void k_own_lane(int* out) {
    out[threadIdx.x] = __shfl_down_sync(0x0000ffffu, (int)threadIdx.x, 1);
}

__global__ void k_mixed(int* out) {
    int v = threadIdx.x;
    if (threadIdx.x < 8) v = __shfl_xor_sync(FULL_MASK, v, 1);
    else v = (int)__ballot_sync(FULL_MASK, v & 1);
    out[threadIdx.x] = v;
}

__global__ void k_bad_width(int* out) {
    out[threadIdx.x] = __shfl_xor_sync(FULL_MASK, (int)threadIdx.x, 1, 12);
}

__global__ void k_overflow(int* out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i <= n) out[i] = i; /* off by one */
}

__device__ int deep(int d) {
    volatile char frame[512];
    frame[0] = (char)d;
    return d == 0 ? frame[0] : deep(d - 1) + frame[0];
}
__global__ void k_stack(int* out, int depth) { out[threadIdx.x] = deep(depth); }

/* waits for a flag nobody sets */
__global__ void k_spin_forever(volatile int* flag) {
    if (threadIdx.x == 0)
        while (*flag == 0) __nanosleep(1000);
}

__global__ void k_trap(int* out) {
    if (threadIdx.x == 3) __trap();
    out[threadIdx.x] = 1;
}

#ifdef CUEMU
static int* g_buf;

/* true if a CHECK failed since the previous call: then the child's stderr is worth showing */
static int g_seen_failures = 0;
static bool failed_last(void) {
    bool f = test_failures > g_seen_failures;
    g_seen_failures = test_failures;
    return f;
}

static bool has(const Outcome& o, const char* s) { return o.err.find(s) != std::string::npos; }

static void show(const char* what, const Outcome& o) {
    printf("--- %s: signal %d, exit %d, stderr:\n%s", what, o.signal, o.code, o.err.c_str());
}

static void run_divergent(void) { LAUNCH(k_divergent, 2, 64, 0, 0, (float*)g_buf); }
static void run_divergent_workers(void) {
    setenv("CUEMU_WORKERS", "2", 1);
    LAUNCH(k_divergent, 4, 64, 0, 0, (float*)g_buf);
}
static void run_own_lane(void) { LAUNCH(k_own_lane, 1, 32, 0, 0, g_buf); }
static void run_mixed(void) { LAUNCH(k_mixed, 1, 32, 0, 0, g_buf); }
static void run_bad_width(void) { LAUNCH(k_bad_width, 1, 32, 0, 0, g_buf); }
static void run_overflow(void) {
    int* d = NULL;
    cudaMalloc((void**)&d, 1000 * sizeof(int));
    LAUNCH(k_overflow, 4, 256, 0, 0, d, 1000);
}
static void run_stack(void) {
    setenv("CUEMU_STACK_KB", "32", 1);
    LAUNCH(k_stack, 1, 4, 0, 0, g_buf, 1000); /* ~512 KiB of frames */
}
static void run_stack_ok(void) {
    setenv("CUEMU_STACK_KB", "1024", 1);
    LAUNCH(k_stack, 1, 4, 0, 0, g_buf, 1000);
    if (cudaGetLastError() != cudaSuccess) _exit(3);
}
static void run_spin(void) {
    setenv("CUEMU_SPIN_TIMEOUT_S", "1", 1);
    LAUNCH(k_spin_forever, 1, 64, 0, 0, g_buf);
}
static void run_trap(void) { LAUNCH(k_trap, 1, 32, 0, 0, g_buf); }
static void run_host_shuffle(void) { (void)__shfl_sync(FULL_MASK, 1, 0); }
#endif

int main(void) {
#ifndef CUEMU
    printf("skipped: deadlock and error detection are emulator-only (these kernels would hang a GPU)\n");
    printf("0 passed, 0 failed\n");
    return 0;
#else
    g_buf = device_zeros<int>(4096);
    Outcome o = in_child(run_divergent);
    CHECK(o.signal == SIGABRT && has(o, "deadlock in kernel 'k_divergent' block (0,0,0)") &&
              has(o, "__syncthreads at") && has(o, "__shfl_sync(mask=0xffffffff) at") && has(o, "test_deadlock.cu:"),
          "divergent barrier is reported");
    if (failed_last()) show("divergent", o);
    else printf("example report:\n%s", o.err.c_str());

    o = in_child(run_divergent_workers);
    CHECK(o.signal == SIGABRT && has(o, "deadlock in kernel 'k_divergent'"), "deadlock with 2 workers is reported");
    if (failed_last()) show("divergent, 2 workers", o);

    o = in_child(run_own_lane);
    CHECK(o.signal == SIGABRT && has(o, "does not include its own lane") && has(o, "kernel 'k_own_lane'") &&
              has(o, "lane 16"),
          "a lane outside its own mask is reported");
    if (failed_last()) show("own lane", o);

    o = in_child(run_mixed);
    CHECK(o.signal == SIGABRT && has(o, "different warp intrinsics with the same mask"), "mixed intrinsics reported");
    if (failed_last()) show("mixed", o);

    o = in_child(run_bad_width);
    CHECK(o.signal == SIGABRT && has(o, "width 12"), "a shuffle width that is not a power of two is reported");
    if (failed_last()) show("width", o);

    o = in_child(run_overflow);
#ifdef __SANITIZE_ADDRESS__
    CHECK(o.signal != 0 || o.code != 0, "out-of-bounds store is caught (ASan)");
#else
    CHECK(o.signal == SIGABRT && has(o, "kernel 'k_overflow' wrote past the end of a 4000-byte cudaMalloc block") &&
              has(o, "+0 past"),
          "an out-of-bounds store hits the red zone");
#endif
    if (failed_last()) show("overflow", o);

    o = in_child(run_stack);
    /* under ASan its own SEGV handler reports the overflow and exits */
    CHECK(o.signal == SIGSEGV || has(o, "AddressSanitizer: stack-overflow"),
          "fiber stack overflow hits the guard page (signal %d)", o.signal);
    if (failed_last()) show("stack", o);
    o = in_child(run_stack_ok);
    CHECK(o.signal == 0 && o.code == 0, "the same recursion fits with CUEMU_STACK_KB=1024 (signal %d, exit %d)",
          o.signal, o.code);
    if (failed_last()) show("stack ok", o);

    o = in_child(run_spin);
    CHECK(o.signal == SIGABRT && has(o, "livelock in kernel 'k_spin_forever'") && has(o, "spinning in __nanosleep at"),
          "an endless spin-wait is reported");
    if (failed_last()) show("spin", o);

    o = in_child(run_trap);
    CHECK(o.signal == SIGABRT && has(o, "__trap()") && has(o, "thread (3,0,0)"), "__trap names the thread");
    if (failed_last()) show("trap", o);

    o = in_child(run_host_shuffle);
    CHECK(o.signal == SIGABRT && has(o, "called outside a kernel"), "a shuffle on the host is reported");
    if (failed_last()) show("host shuffle", o);

    cudaFree(g_buf);
    return test_summary();
#endif
}
