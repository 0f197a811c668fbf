/*
 * test_schedule.cu — CUEMU_SCHEDULE=forward|reverse|random:SEED, the order in which the emulator runs
 * the blocks of a grid and the threads of a block between two sync points. A kernel that lacks a
 * barrier is only wrong when some thread runs ahead of the thread whose data it reads; one fixed
 * order hides half of these bugs. Each planted bug below must give wrong results under the
 * schedule(s) named beside it, and its corrected twin must be right under every schedule:
 *
 *   missing __syncthreads, lower warp reads the higher warp's slot   caught by forward, random
 *   missing __syncthreads, higher warp reads the lower warp's slot   caught by reverse, random
 *   missing __syncwarp, each lane reads the lane below it            caught by reverse, random
 *   missing __syncwarp, each lane reads the lane above it            caught by forward, random
 *   double-buffered loop without its trailing barrier (the prefetch
 *   of tile k+2 overwrites the buffer other warps still read)       caught by forward, reverse, random
 *   the same with a compute phase that is a chain of warp
 *   collectives (as ldmatrix/mma loops are)                         caught by reverse, random
 *
 * ("random" = each of the seeds 1, 2, 3.) It also checks the orders themselves (block order and
 * thread order as tickets drawn from an atomic counter) and that a seed reproduces its order.
 * The kernels are valid CUDA (nvcc compiles this file); the schedules exist only in the emulator.
 */
#include "test_helpers.h"

#include <stdlib.h>

#include <string>

#define NT 64 /* two warps */

/* ---------------------------------------------------------------- planted bugs and their fixes */
/* lower warp reads the higher warp's slot (thread t < 32 reads slot t + 32) */
template <bool SYNC>
__global__ void k_read_up(const int* in, int* out) {
    __shared__ int s[NT];
    int t = threadIdx.x, g = blockIdx.x * NT + t;
    s[t] = in[g];
    if (SYNC) __syncthreads();
    out[g] = t < 32 ? s[t + 32] : s[t];
}

/* higher warp reads the lower warp's slot (thread t >= 32 reads slot t - 32) */
template <bool SYNC>
__global__ void k_read_down(const int* in, int* out) {
    __shared__ int s[NT];
    int t = threadIdx.x, g = blockIdx.x * NT + t;
    s[t] = in[g];
    if (SYNC) __syncthreads();
    out[g] = t >= 32 ? s[t - 32] : s[t];
}

/* lanes exchange through shared memory: lane l reads what lane l - 1 (DOWN) or lane l + 1 (up)
 * wrote; __syncwarp between the write and the read when SYNC */
template <bool SYNC, bool DOWN>
__global__ void k_lanes(const int* in, int* out) {
    __shared__ int s[NT];
    int t = threadIdx.x, lane = t % 32, g = blockIdx.x * NT + t;
    int v = in[g];
    s[t] = v;
    if (SYNC) __syncwarp();
    int nb = DOWN ? (lane > 0 ? s[t - 1] : 0) : (lane < 31 ? s[t + 1] : 0);
    out[g] = v + nb;
}

/* A double-buffered loop: at the top of iteration k every thread prefetches its element of tile k+1
 * into the other buffer, then (leading barrier) all read tile k, which another warp wrote. The
 * trailing barrier keeps iteration k+1's prefetch (into buffer k&1 again, two tiles later) from
 * overwriting tile k while a slower warp still reads it. */
template <bool TRAILING>
__global__ void k_pipeline(const int* in, int* out, int ntiles) {
    __shared__ int buf[2][NT];
    int t = threadIdx.x;
    const int* src = in + (size_t)blockIdx.x * ntiles * NT;
    buf[0][t] = src[t];
    unsigned acc = 0;  /* unsigned: the hash wraps, which int must not */
    for (int k = 0; k < ntiles; k++) {
        if (k + 1 < ntiles) buf[(k + 1) & 1][t] = src[(k + 1) * NT + t];
        __syncthreads();
        acc = acc * 3u + (unsigned)buf[k & 1][(t + 32) % NT];
        if (TRAILING) __syncthreads();
    }
    out[blockIdx.x * NT + t] = (int)acc;
}

/* The same loop with a compute phase that is a chain of warp collectives (as ldmatrix/mma are):
 * four reads of the other warp's half, a shuffle after each. Round-robin keeps the two warps within
 * one collective of each other, so neither refills the buffer while the other still reads it; a
 * warp that runs ahead (reverse, random) does. */
template <bool TRAILING>
__global__ void k_pipeline_collective(const int* in, int* out, int ntiles) {
    __shared__ int buf[2][NT];
    int t = threadIdx.x;
    const int* src = in + (size_t)blockIdx.x * ntiles * NT;
    buf[0][t] = src[t];
    unsigned acc = 0;  /* unsigned: the hash wraps, which int must not */
    for (int k = 0; k < ntiles; k++) {
        if (k + 1 < ntiles) buf[(k + 1) & 1][t] = src[(k + 1) * NT + t];
        __syncthreads();
        for (int s = 0; s < 4; s++) {
            int v = buf[k & 1][(t + 32 + 8 * s) % NT];
            acc = acc * 3u + (unsigned)__shfl_xor_sync(FULL_MASK, v, 1);
        }
        if (TRAILING) __syncthreads();
    }
    out[blockIdx.x * NT + t] = (int)acc;
}

/* ---------------------------------------------------------------- the orders themselves */
__global__ void k_block_ticket(unsigned* counter, unsigned* ticket) {
    if (threadIdx.x == 0) ticket[blockIdx.x] = atomicAdd(counter, 1u);
}
__global__ void k_thread_ticket(unsigned* counter, unsigned* ticket) {
    ticket[threadIdx.x] = atomicAdd(counter, 1u);
}

#ifdef CUEMU
static const char* const kSchedules[] = {"forward", "reverse", "random:1", "random:2", "random:3"};

static void set_schedule(const char* s) { setenv("CUEMU_SCHEDULE", s, 1); }

enum { NBLOCKS = 4, NTILES = 6 };

/* runs a kernel of the (in -> out) family on NBLOCKS blocks, returns true if out == expected */
template <class F>
static bool matches(F launch, const std::vector<int>& in, const std::vector<int>& expected) {
    int* d_in = to_device(in);
    int* d_out = device_zeros<int>(expected.size());
    launch(d_in, d_out);
    CU_OK(cudaGetLastError());
    std::vector<int> out = to_host(d_out, expected.size());
    cudaFree(d_in);
    cudaFree(d_out);
    return out == expected;
}

static std::vector<int> inputs(size_t n) {
    std::vector<int> v(n);
    for (size_t i = 0; i < n; i++) v[i] = (int)(i * 7 + 3) % 1000;
    return v;
}

/* which schedules make the buggy kernel wrong, as "forward,reverse,..." */
template <class FB, class FG>
static std::string check_pair(const char* what, FB buggy, FG good, const std::vector<int>& in,
                              const std::vector<int>& expected) {
    std::string caught;
    for (const char* s : kSchedules) {
        set_schedule(s);
        CHECK(matches(good, in, expected), "%s: the corrected kernel is wrong under %s", what, s);
        if (!matches(buggy, in, expected)) caught += caught.empty() ? s : std::string(",") + s;
    }
    printf("  %-58s caught by: %s\n", what, caught.empty() ? "(none)" : caught.c_str());
    return caught;
}

static bool contains(const std::string& list, const char* s) {
    return ("," + list + ",").find("," + std::string(s) + ",") != std::string::npos;
}
#endif

int main(void) {
#ifndef CUEMU
    printf("skipped: CUEMU_SCHEDULE exists only in the emulator\n");
    printf("0 passed, 0 failed\n");
    return 0;
#else
    const size_t n = NBLOCKS * NT;
    std::vector<int> in = inputs(n), expect_up(n), expect_down(n), expect_lanes_down(n), expect_lanes_up(n);
    for (size_t g = 0; g < n; g++) {
        int t = (int)(g % NT);
        expect_up[g] = t < 32 ? in[g + 32] : in[g];
        expect_down[g] = t >= 32 ? in[g - 32] : in[g];
    }
    for (int dir = 0; dir < 2; dir++) {
        std::vector<int> v(in), nv(n);
        for (int round = 0; round < 1; round++) {
            for (size_t g = 0; g < n; g++) {
                int lane = (int)(g % 32);
                int nb = dir == 0 ? (lane > 0 ? v[g - 1] : 0) : (lane < 31 ? v[g + 1] : 0);
                nv[g] = v[g] + nb;
            }
            v = nv;
        }
        (dir == 0 ? expect_lanes_down : expect_lanes_up) = v;
    }

    printf("planted bugs (forward = the default order):\n");
    std::string c;
    c = check_pair(
        "missing __syncthreads, lower warp reads higher warp",
        [](int* i, int* o) { LAUNCH(k_read_up<false>, NBLOCKS, NT, 0, 0, i, o); },
        [](int* i, int* o) { LAUNCH(k_read_up<true>, NBLOCKS, NT, 0, 0, i, o); }, in, expect_up);
    CHECK(contains(c, "forward") && contains(c, "random:1") && contains(c, "random:2") && contains(c, "random:3"),
          "lower-reads-higher caught by forward and every random seed (caught by: %s)", c.c_str());

    c = check_pair(
        "missing __syncthreads, higher warp reads lower warp",
        [](int* i, int* o) { LAUNCH(k_read_down<false>, NBLOCKS, NT, 0, 0, i, o); },
        [](int* i, int* o) { LAUNCH(k_read_down<true>, NBLOCKS, NT, 0, 0, i, o); }, in, expect_down);
    CHECK(!contains(c, "forward"), "the default order hides higher-reads-lower (why reverse exists)");
    CHECK(contains(c, "reverse") && contains(c, "random:1") && contains(c, "random:2") && contains(c, "random:3"),
          "higher-reads-lower caught by reverse and every random seed (caught by: %s)", c.c_str());

    c = check_pair(
        "missing __syncwarp, lane reads the lane below",
        [](int* i, int* o) { LAUNCH((k_lanes<false, true>), NBLOCKS, NT, 0, 0, i, o); },
        [](int* i, int* o) { LAUNCH((k_lanes<true, true>), NBLOCKS, NT, 0, 0, i, o); }, in, expect_lanes_down);
    CHECK(!contains(c, "forward"), "the default order hides lane-reads-lower");
    CHECK(contains(c, "reverse") && contains(c, "random:1") && contains(c, "random:2") && contains(c, "random:3"),
          "lane-reads-lower caught by reverse and every random seed (caught by: %s)", c.c_str());

    c = check_pair(
        "missing __syncwarp, lane reads the lane above",
        [](int* i, int* o) { LAUNCH((k_lanes<false, false>), NBLOCKS, NT, 0, 0, i, o); },
        [](int* i, int* o) { LAUNCH((k_lanes<true, false>), NBLOCKS, NT, 0, 0, i, o); }, in, expect_lanes_up);
    CHECK(contains(c, "forward") && contains(c, "random:1") && contains(c, "random:2") && contains(c, "random:3"),
          "lane-reads-higher caught by forward and every random seed (caught by: %s)", c.c_str());

    {
        std::vector<int> pin = inputs((size_t)NBLOCKS * NTILES * NT), pexp(n);
        for (int b = 0; b < NBLOCKS; b++)
            for (int t = 0; t < NT; t++) {
                unsigned acc = 0;  /* unsigned: the hash wraps, which int must not */
                for (int k = 0; k < NTILES; k++) acc = acc * 3u + (unsigned)pin[((size_t)b * NTILES + k) * NT + (t + 32) % NT];
                pexp[b * NT + t] = (int)acc;
            }
        c = check_pair(
            "double-buffered loop without its trailing __syncthreads",
            [](int* i, int* o) { LAUNCH(k_pipeline<false>, NBLOCKS, NT, 0, 0, i, o, (int)NTILES); },
            [](int* i, int* o) { LAUNCH(k_pipeline<true>, NBLOCKS, NT, 0, 0, i, o, (int)NTILES); }, pin, pexp);
        CHECK(contains(c, "forward") && contains(c, "reverse") && contains(c, "random:1") && contains(c, "random:2") &&
                  contains(c, "random:3"),
              "missing trailing barrier caught by every schedule (caught by: %s)", c.c_str());
    }

    {
        std::vector<int> pin = inputs((size_t)NBLOCKS * NTILES * NT), pexp(n);
        for (int b = 0; b < NBLOCKS; b++)
            for (int t = 0; t < NT; t++) {
                unsigned acc = 0;  /* unsigned: the hash wraps, which int must not */
                for (int k = 0; k < NTILES; k++)
                    for (int s = 0; s < 4; s++)
                        acc = acc * 3u + (unsigned)pin[((size_t)b * NTILES + k) * NT + ((t ^ 1) + 32 + 8 * s) % NT];
                pexp[b * NT + t] = (int)acc;
            }
        c = check_pair(
            "the same, compute phase a chain of warp collectives",
            [](int* i, int* o) { LAUNCH(k_pipeline_collective<false>, NBLOCKS, NT, 0, 0, i, o, (int)NTILES); },
            [](int* i, int* o) { LAUNCH(k_pipeline_collective<true>, NBLOCKS, NT, 0, 0, i, o, (int)NTILES); }, pin,
            pexp);
        CHECK(contains(c, "reverse") && contains(c, "random:1") && contains(c, "random:2") && contains(c, "random:3"),
              "missing trailing barrier behind warp collectives caught by reverse and every random seed (caught by: %s)",
              c.c_str());
    }

    /* the orders: 64 blocks, 128 threads, one worker (tickets show the order of one thread) */
    setenv("CUEMU_WORKERS", "1", 1);
    unsigned* counter = device_zeros<unsigned>(1);
    unsigned* ticket = device_zeros<unsigned>(128);
    auto block_order = [&](const char* s) {
        set_schedule(s);
        cudaMemset(counter, 0, sizeof(unsigned));
        LAUNCH(k_block_ticket, 64, 32, 0, 0, counter, ticket);
        return to_host(ticket, 64);
    };
    auto thread_order = [&](const char* s) {
        set_schedule(s);
        cudaMemset(counter, 0, sizeof(unsigned));
        LAUNCH(k_thread_ticket, 1, 128, 0, 0, counter, ticket);
        return to_host(ticket, 128);
    };
    auto is_perm = [](const std::vector<unsigned>& v) {
        std::vector<bool> seen(v.size());
        for (unsigned x : v) {
            if (x >= v.size() || seen[x]) return false;
            seen[x] = true;
        }
        return true;
    };
    std::vector<unsigned> fw = block_order("forward"), rv = block_order("reverse"), r1 = block_order("random:1"),
                          r1b = block_order("random:1"), r2 = block_order("random:2");
    bool fw_ok = true, rv_ok = true;
    for (unsigned b = 0; b < 64; b++) {
        fw_ok = fw_ok && fw[b] == b;
        rv_ok = rv_ok && rv[b] == 63 - b;
    }
    CHECK(fw_ok, "forward runs blocks in index order");
    CHECK(rv_ok, "reverse runs blocks last to first");
    CHECK(is_perm(r1) && r1 != fw && r1 != rv && r1 != r2, "random runs blocks in a seed-dependent shuffled order");
    CHECK(is_perm(r1b) && r1b != r1, "a random seed gives each launch its own block order");
    std::vector<unsigned> tf = thread_order("forward"), tr = thread_order("reverse"), t1 = thread_order("random:5");
    fw_ok = rv_ok = true;
    for (unsigned t = 0; t < 128; t++) {
        fw_ok = fw_ok && tf[t] == t;
        rv_ok = rv_ok && tr[t] == 127 - t;
    }
    CHECK(fw_ok && rv_ok, "forward / reverse run the threads of a block in / against index order");
    CHECK(is_perm(t1) && t1 != tf && t1 != tr, "random shuffles the threads of a block");
    cudaFree(counter);
    cudaFree(ticket);
    unsetenv("CUEMU_SCHEDULE");
    return test_summary();
#endif
}
