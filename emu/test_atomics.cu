/*
 * test_atomics.cu — atomics from many blocks and threads, run with one worker thread (the default)
 * and again with CUEMU_WORKERS=2 so that blocks really race on host atomics: add/sub for int,
 * unsigned, unsigned long long, float, double, __half, bf16; min/max; CAS loops; exch; inc/dec;
 * and/or/xor; a shared-memory histogram. Float sums use values whose every partial sum is exact,
 * so any interleaving must give the same result.
 */
#ifdef CUEMU
#include <pthread.h>
#endif
#include <set>

#include "test_helpers.h"

struct Counters {
    int i_add, i_sub, i_max, i_min, cas, exch;
    unsigned u_add, u_inc, u_dec, u_and, u_or, u_xor;
    unsigned long long ull;
    float f;
    double d;
    __half h;
    __nv_bfloat16 b;
};

__global__ void k_atomics(Counters* c, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    atomicAdd(&c->i_add, 1);
    atomicSub(&c->i_sub, 2);
    atomicMax(&c->i_max, (i * 7919) % 10007);
    atomicMin(&c->i_min, (i * 7919) % 10007 - 5000);
    int old = c->cas, assumed;
    do {
        assumed = old;
        old = atomicCAS(&c->cas, assumed, assumed + 3);
    } while (old != assumed);
    atomicExch(&c->exch, i);
    atomicAdd(&c->u_add, 2u);
    atomicInc(&c->u_inc, 99u);
    atomicDec(&c->u_dec, 49u);
    atomicAnd(&c->u_and, ~(1u << (i % 32)));
    atomicOr(&c->u_or, 1u << (i % 29));
    atomicXor(&c->u_xor, 1u << (i % 8));
    atomicAdd(&c->ull, 1ull << 33);
    atomicAdd(&c->f, 0.25f);
    atomicAdd(&c->d, 0.125);
    if (i < 64) atomicAdd(&c->h, __float2half(1.0f));
    if (i < 128) atomicAdd(&c->b, __float2bfloat16(1.0f));
}

__global__ void k_histogram(const int* in, int n, unsigned* bins, unsigned long long* worker) {
    __shared__ unsigned local[16];
    if (threadIdx.x < 16) local[threadIdx.x] = 0;
    __syncthreads();
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        atomicAdd(&local[in[i] & 15], 1u);
    __syncthreads();
    if (threadIdx.x < 16) atomicAdd(&bins[threadIdx.x], local[threadIdx.x]);
#ifdef CUEMU
    /* emulator only: which OS thread ran this block (CUEMU_WORKERS) */
    if (threadIdx.x == 0) worker[blockIdx.x] = (unsigned long long)pthread_self();
#else
    if (threadIdx.x == 0) worker[blockIdx.x] = 0;
#endif
}

static size_t run_all(const char* label) {
    const int n = 64 * 128;
    Counters init;
    memset(&init, 0, sizeof init);
    init.i_max = -1;
    init.i_min = 1 << 30;
    init.exch = -1;
    init.u_and = 0xffffffffu;
    init.h = __float2half(0.0f);
    init.b = __float2bfloat16(0.0f);
    Counters* dc = nullptr;
    cudaMalloc((void**)&dc, sizeof(Counters));
    cudaMemcpy(dc, &init, sizeof init, cudaMemcpyHostToDevice);
    LAUNCH(k_atomics, 64, 128, 0, 0, dc, n);
    CHECK(cudaGetLastError() == cudaSuccess, "%s: launch", label);
    Counters c;
    cudaMemcpy(&c, dc, sizeof c, cudaMemcpyDeviceToHost);
    int emax = -1, emin = 1 << 30;
    for (int i = 0; i < n; i++) {
        int k = (i * 7919) % 10007;
        emax = k > emax ? k : emax;
        emin = k - 5000 < emin ? k - 5000 : emin;
    }
    CHECK(c.i_add == n && c.i_sub == -2 * n, "%s: int add/sub %d %d", label, c.i_add, c.i_sub);
    CHECK(c.i_max == emax && c.i_min == emin, "%s: max/min %d %d", label, c.i_max, c.i_min);
    CHECK(c.cas == 3 * n, "%s: CAS loop %d", label, c.cas);
    CHECK(c.exch >= 0 && c.exch < n, "%s: exch %d", label, c.exch);
    CHECK(c.u_add == 2u * n, "%s: unsigned add", label);
    CHECK(c.u_inc == (unsigned)(n % 100), "%s: atomicInc wraps at 99: %u", label, c.u_inc);
    CHECK(c.u_dec == (unsigned)((50 - n % 50) % 50), "%s: atomicDec wraps at 49: %u", label, c.u_dec);
    CHECK(c.u_and == 0 && c.u_or == (1u << 29) - 1 && c.u_xor == 0, "%s: and/or/xor %08x %08x %08x", label, c.u_and,
          c.u_or, c.u_xor);
    CHECK(c.ull == (unsigned long long)n << 33, "%s: 64-bit add", label);
    CHECK(c.f == 0.25f * n && c.d == 0.125 * n, "%s: float/double add %g %g", label, c.f, c.d);
    CHECK(__half2float(c.h) == 64.0f && __bfloat162float(c.b) == 128.0f, "%s: half/bf16 add %g %g", label,
          __half2float(c.h), __bfloat162float(c.b));
    cudaFree(dc);

    const int m = 100000, blocks = 40;
    std::vector<int> x(m);
    std::vector<unsigned> ref(16, 0);
    for (int i = 0; i < m; i++) {
        x[i] = (i * 2654435761u) >> 7;
        ref[x[i] & 15]++;
    }
    int* dx = to_device(x);
    unsigned* bins = device_zeros<unsigned>(16);
    unsigned long long* worker = device_zeros<unsigned long long>(blocks);
    LAUNCH(k_histogram, blocks, 256, 0, 0, dx, m, bins, worker);
    std::vector<unsigned> got = to_host(bins, 16);
    CHECK(got == ref, "%s: shared-memory histogram", label);
    std::vector<unsigned long long> w = to_host(worker, blocks);
    std::set<unsigned long long> distinct(w.begin(), w.end());
    cudaFree(dx);
    cudaFree(bins);
    cudaFree(worker);
    return distinct.size();
}

int main(void) {
    if (!have_device()) return 0;
#ifdef CUEMU
    setenv("CUEMU_WORKERS", "1", 1); /* whatever the caller's environment says */
#endif
    size_t threads = run_all("1 worker");
#ifdef CUEMU
    CHECK(threads == 1, "1 worker: blocks ran on %zu OS threads", threads);
    setenv("CUEMU_WORKERS", "2", 1); /* read at every launch */
    threads = 0;
    for (int rep = 0; rep < 3; rep++) {
        threads = run_all("2 workers");
        CHECK(threads == 2, "2 workers: blocks ran on %zu OS threads", threads);
    }
    unsetenv("CUEMU_WORKERS");
#else
    (void)threads;
#endif
    return test_summary();
}
