/*
 * cuemu.h — prelude that lets g++ compile CUDA sources for the CPU emulator (emu/).
 *
 * The project's CUDA kernels are compiled a second time as plain C++:
 *     g++ -std=c++17 -I$CUDA_HOME/include -x c++ -include emu/cuemu.h file.cu -x none
 *         build/emu/cuemu.o build/emu/cublas_emu.o -pthread -lopenblas
 * and run on the CPU, each CUDA thread a fiber (see cuemu.cpp for the scheduler). This header must
 * come before any CUDA header: the CUDA host headers keep pre-existing definitions of __global__,
 * __device__, __shared__, ... when __CUDACC__ is not defined, so we define them first (empty, and
 * __shared__ as thread_local: a block runs entirely on one worker thread, and blocks on a worker run
 * one after another, so one copy per worker thread is exactly per-block storage). Then the real
 * <cuda_runtime.h>, <cuda_fp16.h>, <cuda_bf16.h> give exact types (dim3, float4, __half,
 * __nv_bfloat16 with their real host-side conversions), and this header adds what the host headers
 * leave out: threadIdx & co., warp intrinsics, barriers, atomics, device-only math.
 *
 * Every synchronising intrinsic records its call site (__builtin_FILE/LINE as default arguments)
 * so that a deadlock report can say where each thread waits.
 *
 * __CUDA_ARCH__ stays undefined on purpose: defining it would switch the fp16/bf16 headers to their
 * inline-PTX paths. Kernels must not hide required logic behind it, nor behind __CUDACC__ (also
 * undefined here); CUEMU is defined, for the rare emulator-only line.
 *
 * Kernel-source conventions (see kernels/cuda/portable.h): DYN_SMEM(T, name) instead of
 * `extern __shared__ T name[]`, LAUNCH(kernel, grid, block, smem, stream, args...) instead of <<<>>>,
 * always the *_sync warp intrinsics with explicit masks, __syncwarp() where lanes communicate
 * through shared memory, no inline PTX, no cooperative_groups/CUB.
 *
 * Environment: CUEMU_WORKERS=N (blocks on N threads; default 1 = deterministic order),
 * CUEMU_SCHEDULE=forward|reverse|random:SEED (order of blocks and of a block's threads between
 * sync points; default forward), CUEMU_STACK_KB (fiber stack, default 64), CUEMU_MALLOC_FILL=0
 * (do not fill new cudaMalloc blocks with 0xFF), CUEMU_SMEM_POISON=0 (do not fill shared memory
 * with 0xFF at block start), CUEMU_INITCHECK=1 (under valgrind: shared and new device memory start
 * undefined), CUEMU_COUNTERS=1 (a line of counters per launch), CUEMU_MEMREPORT=1 (cudaMalloc peak
 * at exit), CUEMU_SPIN_TIMEOUT_S (livelock report, default 10), CUEMU_VERBOSE (say why a launch was
 * rejected). emu/README.md says what each check catches and what the emulator cannot see.
 */
#ifndef CUEMU_H
#define CUEMU_H

#ifdef __CUDACC__
#error "cuemu.h is the CPU-emulator prelude; nvcc builds must not include it"
#endif
#ifndef __cplusplus
#error "cuemu.h needs C++ (compile the .cu file with g++ -x c++)"
#endif

#define CUEMU 1
#define __global__
#define __device__
#define __host__
#define __shared__ thread_local
#define __constant__
#define __managed__
#define __grid_constant__
#define __launch_bounds__(...)

#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <cstddef>
#include <tuple>
#include <type_traits>
#include <utility>

namespace cuemu {

/* The per-thread built-in variables. `inline thread_local` with constant initialisers gives
 * direct %fs-relative access (an extern thread_local goes through a TLS wrapper call). The
 * scheduler writes t_threadIdx before it switches into a fiber; the block/grid values are per
 * worker thread. */
inline thread_local uint3 t_threadIdx{0, 0, 0};
inline thread_local uint3 t_blockIdx{0, 0, 0};
inline thread_local dim3 t_blockDim{1, 1, 1};
inline thread_local dim3 t_gridDim{1, 1, 1};
/* dynamic shared memory of the block running on this worker (DYN_SMEM points here) */
inline thread_local unsigned char* t_dynsmem = nullptr;

/* ---------------------------------------------------------------- counters
 * Per launch the emulator counts what it sees itself (launches, blocks, threads, block barriers,
 * warp collectives) and what kernels' helper headers report through cuemu::count(): bytes read
 * and written through the project's load/store/cp.async helpers, MMA instructions and their
 * FLOPs, shared-memory bank conflicts (extra wavefronts) where a helper sees all 32 lanes'
 * addresses. From device code, one call per lane (or per warp, for warp-wide instructions):
 *
 *     #ifdef CUEMU
 *     ::cuemu::count(::cuemu::C_BYTES_READ, 16);   // this lane loaded 16 bytes
 *     ::cuemu::count(::cuemu::C_MMA);              // once per warp per mma.sync (e.g. lane 0 only)
 *     ::cuemu::count(::cuemu::C_FLOPS, 2 * 16 * 8 * 16);
 *     #endif
 *
 * count() is an inline add to the running worker's private tally (no atomics, no locks; blocks
 * on other workers keep their own); outside a kernel it does nothing. The tallies of all workers
 * are summed when the launch ends. Host code reads them with last_launch_counters() (the most
 * recent launch on any thread) and total_counters() (since the start or reset_counters()); C host
 * code uses the extern "C" functions below. CUEMU_COUNTERS=1 prints one line per launch on
 * stderr: `cuemu: counters 'kernel' grid (..) block (..): barriers=.. warp_collectives=.. ...`
 * (only the non-zero counters), and at exit one line per kernel name with its totals over all its
 * launches: `cuemu: kernel totals 'kernel': launches=.. ... bank_conflicts=..`. */
enum Counter : int {
    C_LAUNCHES,         /* kernel launches (1 per launch) */
    C_BLOCKS,           /* blocks run */
    C_THREADS,          /* CUDA threads run */
    C_BARRIERS,         /* __syncthreads(_count/_and/_or) executed, counted once per block */
    C_WARP_COLLECTIVES, /* shuffles, votes, reductions, match, __syncwarp: once per warp-level group */
    C_BYTES_READ,       /* global/shared bytes read, as reported by helpers through count() */
    C_BYTES_WRITTEN,    /* bytes written, as reported by helpers */
    C_MMA,              /* tensor-core MMA instructions (warp-level), as reported by helpers */
    C_FLOPS,            /* floating-point operations, as reported by helpers (2 per multiply-add) */
    C_BANK_CONFLICTS,   /* extra shared-memory wavefronts, as reported by helpers (loads + stores) */
    C_BANK_CONFLICTS_LD, /* the part of C_BANK_CONFLICTS from loads (ldmatrix, smem_access) */
    C_BANK_CONFLICTS_ST, /* the part from stores (st.shared, cp.async destinations: smem_store) */
    C_NUM
};
inline thread_local unsigned long long* t_counts = nullptr; /* the running worker's tally, or null */
inline void count(Counter c, unsigned long long n = 1) {
    if (t_counts) t_counts[c] += n;
}
struct Counters {
    unsigned long long v[C_NUM];
    unsigned long long operator[](int c) const { return v[c]; }
};
Counters last_launch_counters(); /* the most recently finished launch */
Counters total_counters();       /* every launch since the start or the last reset_counters() */
void reset_counters();
const char* counter_name(int c); /* "launches", "blocks", ..., "bank_conflicts", "bank_conflicts_ld", ... */

/* ---------------------------------------------------------------- device memory accounting
 * Bytes requested through cudaMalloc (and its Async/Managed forms) and not yet freed: the current
 * sum and its high-water mark since the start or memory_reset_peak() (which sets the peak to the
 * current sum). Red zones and alignment padding are not counted. CUEMU_MEMREPORT=1 prints the
 * peak, the current sum and the number of allocations at exit. */
size_t memory_current();
size_t memory_peak();
void memory_reset_peak();

/* Warp-collective operations handled by the scheduler (cuemu.cpp). */
enum WarpOp : int {
    W_SYNCWARP, W_SHFL_IDX, W_SHFL_UP, W_SHFL_DOWN, W_SHFL_XOR,
    W_BALLOT, W_ALL, W_ANY,
    W_RED_ADD, W_RED_MIN_S, W_RED_MAX_S, W_RED_MIN_U, W_RED_MAX_U, W_RED_AND, W_RED_OR, W_RED_XOR,
    W_MATCH_ANY, W_MATCH_ALL, W_ACTIVEMASK
};
enum BlockOp : int { B_SYNC, B_COUNT, B_AND, B_OR };

/* Blocks the calling fiber until every non-exited lane in `mask` arrived, then returns this lane's
 * result: `out` receives `size` bytes (shuffle value / reduction / match mask), the return value is
 * the scalar result (ballot bits, all/any, match_all predicate). */
uint64_t warp_collective(int op, const char* name, unsigned mask, const void* in, unsigned size,
                         int arg, int width, void* out, const char* file, int line);
int block_barrier(int op, const char* name, int pred, const char* file, int line);
unsigned active_mask(const char* file, int line);
void fiber_yield(const char* file, int line);
[[noreturn]] void trap(const char* what, const char* file, int line);

/* Kernel launch (synchronous). `name` is for messages, `fn` identifies the kernel for
 * cudaFuncSetAttribute lookups, `body(closure)` runs one CUDA thread. */
void launch_raw(const char* name, const void* fn, dim3 grid, dim3 block, size_t smem,
                cudaStream_t stream, void (*body)(void*), void* closure);

template <class... P>
struct Closure {
    void (*kernel)(P...);
    std::tuple<std::decay_t<P>...> args;
    static void run(void* c) {
        auto* self = static_cast<Closure*>(c);
        std::apply(self->kernel, self->args); /* parameters are passed by value, as on the GPU */
    }
};

/* Arguments are converted to the kernel's parameter types once, as the CUDA launch does. */
template <class... P, class... A>
inline void launch(const char* name, void (*kernel)(P...), dim3 grid, dim3 block, size_t smem,
                   cudaStream_t stream, A&&... args) {
    static_assert(sizeof...(P) == sizeof...(A), "kernel launched with the wrong number of arguments");
    Closure<P...> c{kernel, std::tuple<std::decay_t<P>...>(std::forward<A>(args)...)};
    launch_raw(name, reinterpret_cast<const void*>(kernel), grid, block, smem, stream,
               &Closure<P...>::run, &c);
}

template <class T, class U>
inline T bitcast(const U& u) {
    static_assert(sizeof(T) == sizeof(U), "bitcast size");
    T t;
    std::memcpy(static_cast<void*>(&t), static_cast<const void*>(&u), sizeof t);
    return t;
}

} /* namespace cuemu */

/* The same for host code written in C (e.g. bench/ or tests/ .c files linked with the emulator):
 * declare these prototypes there. `out` receives min(n, C_NUM) counters in Counter order. */
extern "C" {
void cuemu_last_launch_counters(unsigned long long* out, int n);
void cuemu_total_counters(unsigned long long* out, int n);
void cuemu_reset_counters(void);
const char* cuemu_counter_name(int c);
size_t cuemu_memory_current(void);
size_t cuemu_memory_peak(void);
void cuemu_memory_reset_peak(void);
}

/* after the CUDA headers: they use these names in host mode neither as macros nor as variables */
#define threadIdx (static_cast<const uint3&>(::cuemu::t_threadIdx))
#define blockIdx (static_cast<const uint3&>(::cuemu::t_blockIdx))
#define blockDim (static_cast<const dim3&>(::cuemu::t_blockDim))
#define gridDim (static_cast<const dim3&>(::cuemu::t_gridDim))
/* a constant, not a macro, so that host code can still read cudaDeviceProp::warpSize */
constexpr int warpSize = 32;

#define CUEMU_SITE const char *cuemu_file = __builtin_FILE(), int cuemu_line = __builtin_LINE()
#define CUEMU_AT cuemu_file, cuemu_line

/* ---------------------------------------------------------------- alignment
 * x86 tolerates misaligned loads, the GPU does not: a 16-byte vector access, ldmatrix or cp.async at
 * an address that is not a multiple of its size faults there ("misaligned address"). Helper headers
 * call this in their CUEMU path; a misaligned address aborts with the kernel, block, thread and
 * call site:
 *     #ifdef CUEMU
 *     ::cuemu::check_align(p, 16, "float4 load");
 *     #endif */
namespace cuemu {
/* Bank conflicts of a warp-wide shared-memory access made through a helper (ldmatrix, a vector
 * load/store of shared memory): every lane of `mask` calls smem_access with the address it touches
 * and the bytes per lane (4, 8 or 16); when the last lane of the mask has called, the emulator adds
 * the access's extra wavefronts (32 banks of 4 bytes, phases of 32/16/8 lanes for 4/8/16-byte
 * accesses, same-word broadcast) to C_BANK_CONFLICTS. It is not a sync point (it does not change
 * the schedule); the lanes of a mask must make the same sequence of calls, as for a .sync.aligned
 * instruction. For ldmatrix .x4, call it once per lane with the lane's 16-byte row address.
 *     #ifdef CUEMU
 *     ::cuemu::smem_access(row_ptr, 16);
 *     #endif */
void smem_access(const void* addr, unsigned bytes, unsigned mask = 0xffffffffu, CUEMU_SITE);
/* The same for a warp-wide shared-memory store (st.shared, or the destinations of the lanes' cp.async
 * of one instruction): counted in C_BANK_CONFLICTS and C_BANK_CONFLICTS_ST (smem_access: _LD).
 * Lanes of one warp that make the same how-manieth call with disjoint masks (the two sides of a
 * branch, e.g. cp.async for rows in range and a zero store for the others) are separate accesses. */
void smem_store(const void* addr, unsigned bytes, unsigned mask = 0xffffffffu, CUEMU_SITE);
[[noreturn]] void misaligned(const void* p, unsigned align, const char* what, const char* file, int line);
inline void check_align(const void* p, unsigned align, const char* what, CUEMU_SITE) {
    if ((uintptr_t)p & (uintptr_t)(align - 1)) misaligned(p, align, what, CUEMU_AT);
}
} /* namespace cuemu */

/* ---------------------------------------------------------------- barriers */
inline void __syncthreads(CUEMU_SITE) { ::cuemu::block_barrier(::cuemu::B_SYNC, "__syncthreads", 1, CUEMU_AT); }
inline int __syncthreads_count(int pred, CUEMU_SITE) {
    return ::cuemu::block_barrier(::cuemu::B_COUNT, "__syncthreads_count", pred, CUEMU_AT);
}
inline int __syncthreads_and(int pred, CUEMU_SITE) {
    return ::cuemu::block_barrier(::cuemu::B_AND, "__syncthreads_and", pred, CUEMU_AT);
}
inline int __syncthreads_or(int pred, CUEMU_SITE) {
    return ::cuemu::block_barrier(::cuemu::B_OR, "__syncthreads_or", pred, CUEMU_AT);
}
inline void __syncwarp(unsigned mask = 0xffffffffu, CUEMU_SITE) {
    ::cuemu::warp_collective(::cuemu::W_SYNCWARP, "__syncwarp", mask, nullptr, 0, 0, 32, nullptr, CUEMU_AT);
}
/* the lanes of the warp that reach this same __activemask call together (see cuemu.cpp) */
inline unsigned __activemask(CUEMU_SITE) { return ::cuemu::active_mask(CUEMU_AT); }

/* ---------------------------------------------------------------- shuffles
 * One template covers int, unsigned, long long, float, double, __half, __nv_bfloat16, __half2,
 * __nv_bfloat162, float2, ... (anything trivially copyable up to 16 bytes). */
template <class T>
inline T cuemu_shfl(int op, const char* name, unsigned mask, T var, int arg, int width, const char* file,
                    int line) {
    static_assert(std::is_trivially_copyable<T>::value && sizeof(T) <= 16, "shuffle of an unsupported type");
    T out;
    ::cuemu::warp_collective(op, name, mask, &var, sizeof(T), arg, width, &out, file, line);
    return out;
}
template <class T>
inline T __shfl_sync(unsigned mask, T var, int srcLane, int width = warpSize, CUEMU_SITE) {
    return cuemu_shfl(::cuemu::W_SHFL_IDX, "__shfl_sync", mask, var, srcLane, width, CUEMU_AT);
}
template <class T>
inline T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = warpSize, CUEMU_SITE) {
    return cuemu_shfl(::cuemu::W_SHFL_UP, "__shfl_up_sync", mask, var, (int)delta, width, CUEMU_AT);
}
template <class T>
inline T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = warpSize, CUEMU_SITE) {
    return cuemu_shfl(::cuemu::W_SHFL_DOWN, "__shfl_down_sync", mask, var, (int)delta, width, CUEMU_AT);
}
template <class T>
inline T __shfl_xor_sync(unsigned mask, T var, int laneMask, int width = warpSize, CUEMU_SITE) {
    return cuemu_shfl(::cuemu::W_SHFL_XOR, "__shfl_xor_sync", mask, var, laneMask, width, CUEMU_AT);
}

/* ---------------------------------------------------------------- votes, reductions, match */
inline unsigned __ballot_sync(unsigned mask, int pred, CUEMU_SITE) {
    return (unsigned)::cuemu::warp_collective(::cuemu::W_BALLOT, "__ballot_sync", mask, &pred, sizeof pred, 0,
                                              32, nullptr, CUEMU_AT);
}
inline int __all_sync(unsigned mask, int pred, CUEMU_SITE) {
    return (int)::cuemu::warp_collective(::cuemu::W_ALL, "__all_sync", mask, &pred, sizeof pred, 0, 32, nullptr,
                                         CUEMU_AT);
}
inline int __any_sync(unsigned mask, int pred, CUEMU_SITE) {
    return (int)::cuemu::warp_collective(::cuemu::W_ANY, "__any_sync", mask, &pred, sizeof pred, 0, 32, nullptr,
                                         CUEMU_AT);
}
#define CUEMU_REDUCE(fname, T, op)                                                                   \
    inline T fname(unsigned mask, T value, CUEMU_SITE) {                                             \
        T out;                                                                                       \
        ::cuemu::warp_collective(op, #fname, mask, &value, sizeof value, 0, 32, &out, CUEMU_AT);     \
        return out;                                                                                  \
    }
CUEMU_REDUCE(__reduce_add_sync, unsigned, ::cuemu::W_RED_ADD)
CUEMU_REDUCE(__reduce_add_sync, int, ::cuemu::W_RED_ADD)
CUEMU_REDUCE(__reduce_min_sync, unsigned, ::cuemu::W_RED_MIN_U)
CUEMU_REDUCE(__reduce_min_sync, int, ::cuemu::W_RED_MIN_S)
CUEMU_REDUCE(__reduce_max_sync, unsigned, ::cuemu::W_RED_MAX_U)
CUEMU_REDUCE(__reduce_max_sync, int, ::cuemu::W_RED_MAX_S)
CUEMU_REDUCE(__reduce_and_sync, unsigned, ::cuemu::W_RED_AND)
CUEMU_REDUCE(__reduce_or_sync, unsigned, ::cuemu::W_RED_OR)
CUEMU_REDUCE(__reduce_xor_sync, unsigned, ::cuemu::W_RED_XOR)
#undef CUEMU_REDUCE

template <class T>
inline unsigned __match_any_sync(unsigned mask, T value, CUEMU_SITE) {
    static_assert(sizeof(T) == 4 || sizeof(T) == 8, "__match_any_sync needs a 32- or 64-bit value");
    unsigned out;
    ::cuemu::warp_collective(::cuemu::W_MATCH_ANY, "__match_any_sync", mask, &value, sizeof(T), 0, 32, &out,
                             CUEMU_AT);
    return out;
}
template <class T>
inline unsigned __match_all_sync(unsigned mask, T value, int* pred, CUEMU_SITE) {
    static_assert(sizeof(T) == 4 || sizeof(T) == 8, "__match_all_sync needs a 32- or 64-bit value");
    unsigned out;
    *pred = (int)::cuemu::warp_collective(::cuemu::W_MATCH_ALL, "__match_all_sync", mask, &value, sizeof(T), 0,
                                          32, &out, CUEMU_AT);
    return out;
}

/* ---------------------------------------------------------------- misc control */
/* A spin-wait on a flag set by another thread of the block never yields by itself under fibers;
 * __nanosleep is the polite way to wait, so it gives the other fibers a turn. If only such
 * spinning goes on for CUEMU_SPIN_TIMEOUT_S seconds (default 10) the emulator aborts and says so
 * (e.g. a block waiting for a later block: blocks run one after another). */
inline void __nanosleep(unsigned, CUEMU_SITE) { ::cuemu::fiber_yield(CUEMU_AT); }
inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_block() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_system() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
#define __trap() ::cuemu::trap("__trap()", __FILE__, __LINE__)
#if defined(__x86_64__) || defined(__i386__)
inline long long clock64() { return (long long)__builtin_ia32_rdtsc(); }
#else
inline long long clock64() { return (long long)__builtin_readcyclecounter(); }
#endif

/* ---------------------------------------------------------------- atomics
 * Real host atomics: blocks may run on several worker threads (CUEMU_WORKERS). Floating-point
 * read-modify-writes go through a compare-and-swap loop on the bit pattern. */
template <class T, class F>
inline T cuemu_atomic_rmw_fp(T* addr, F f) {
    using B = std::conditional_t<sizeof(T) == 2, unsigned short, std::conditional_t<sizeof(T) == 4, unsigned, unsigned long long>>;
    B* p = reinterpret_cast<B*>(addr);
    B old = __atomic_load_n(p, __ATOMIC_RELAXED), nw;
    do {
        nw = ::cuemu::bitcast<B>(f(::cuemu::bitcast<T>(old)));
    } while (!__atomic_compare_exchange_n(p, &old, nw, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
    return ::cuemu::bitcast<T>(old);
}
#define CUEMU_ATOMIC_INT(T)                                                                                  \
    inline T atomicAdd(T* a, T v) { return __atomic_fetch_add(a, v, __ATOMIC_RELAXED); }                     \
    inline T atomicSub(T* a, T v) { return __atomic_fetch_sub(a, v, __ATOMIC_RELAXED); }                     \
    inline T atomicExch(T* a, T v) { return __atomic_exchange_n(a, v, __ATOMIC_RELAXED); }                   \
    inline T atomicAnd(T* a, T v) { return __atomic_fetch_and(a, v, __ATOMIC_RELAXED); }                     \
    inline T atomicOr(T* a, T v) { return __atomic_fetch_or(a, v, __ATOMIC_RELAXED); }                       \
    inline T atomicXor(T* a, T v) { return __atomic_fetch_xor(a, v, __ATOMIC_RELAXED); }                     \
    inline T atomicCAS(T* a, T cmp, T v) {                                                                   \
        __atomic_compare_exchange_n(a, &cmp, v, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);                  \
        return cmp;                                                                                          \
    }                                                                                                        \
    inline T atomicMin(T* a, T v) {                                                                          \
        T old = __atomic_load_n(a, __ATOMIC_RELAXED);                                                        \
        while (v < old && !__atomic_compare_exchange_n(a, &old, v, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) \
            ;                                                                                                \
        return old;                                                                                          \
    }                                                                                                        \
    inline T atomicMax(T* a, T v) {                                                                          \
        T old = __atomic_load_n(a, __ATOMIC_RELAXED);                                                        \
        while (v > old && !__atomic_compare_exchange_n(a, &old, v, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) \
            ;                                                                                                \
        return old;                                                                                          \
    }
CUEMU_ATOMIC_INT(int)
CUEMU_ATOMIC_INT(unsigned)
CUEMU_ATOMIC_INT(unsigned long long)
CUEMU_ATOMIC_INT(long long)
#undef CUEMU_ATOMIC_INT
inline unsigned short atomicCAS(unsigned short* a, unsigned short cmp, unsigned short v) {
    __atomic_compare_exchange_n(a, &cmp, v, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
    return cmp;
}
/* ((old >= val) ? 0 : old + 1) and (((old == 0) || (old > val)) ? val : old - 1), as documented */
inline unsigned atomicInc(unsigned* a, unsigned v) {
    unsigned old = __atomic_load_n(a, __ATOMIC_RELAXED), nw;
    do nw = old >= v ? 0 : old + 1;
    while (!__atomic_compare_exchange_n(a, &old, nw, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
    return old;
}
inline unsigned atomicDec(unsigned* a, unsigned v) {
    unsigned old = __atomic_load_n(a, __ATOMIC_RELAXED), nw;
    do nw = (old == 0 || old > v) ? v : old - 1;
    while (!__atomic_compare_exchange_n(a, &old, nw, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
    return old;
}
inline float atomicAdd(float* a, float v) { return cuemu_atomic_rmw_fp(a, [v](float x) { return x + v; }); }
inline double atomicAdd(double* a, double v) { return cuemu_atomic_rmw_fp(a, [v](double x) { return x + v; }); }
inline float atomicExch(float* a, float v) {
    return ::cuemu::bitcast<float>(__atomic_exchange_n(reinterpret_cast<unsigned*>(a), ::cuemu::bitcast<unsigned>(v),
                                                       __ATOMIC_RELAXED));
}
inline __half atomicAdd(__half* a, __half v) {
    return cuemu_atomic_rmw_fp(a, [v](__half x) { return __float2half(__half2float(x) + __half2float(v)); });
}
inline __nv_bfloat16 atomicAdd(__nv_bfloat16* a, __nv_bfloat16 v) {
    return cuemu_atomic_rmw_fp(
        a, [v](__nv_bfloat16 x) { return __float2bfloat16(__bfloat162float(x) + __bfloat162float(v)); });
}
/* scoped variants: one device, so block/system scope behave like device scope here */
#define atomicAdd_block atomicAdd
#define atomicAdd_system atomicAdd
#define atomicMax_block atomicMax
#define atomicMin_block atomicMin
#define atomicCAS_block atomicCAS
#define atomicExch_block atomicExch

/* ---------------------------------------------------------------- integer and bit intrinsics */
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz((unsigned)x); }
inline int __clzll(long long x) { return x == 0 ? 64 : __builtin_clzll((unsigned long long)x); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }
inline unsigned __brev(unsigned x) {
    x = ((x >> 1) & 0x55555555u) | ((x & 0x55555555u) << 1);
    x = ((x >> 2) & 0x33333333u) | ((x & 0x33333333u) << 2);
    x = ((x >> 4) & 0x0f0f0f0fu) | ((x & 0x0f0f0f0fu) << 4);
    return __builtin_bswap32(x);
}
inline unsigned long long __brevll(unsigned long long x) {
    return ((unsigned long long)__brev((unsigned)x) << 32) | __brev((unsigned)(x >> 32));
}
inline unsigned __umulhi(unsigned a, unsigned b) { return (unsigned)(((unsigned long long)a * b) >> 32); }
inline int __mulhi(int a, int b) { return (int)(((long long)a * b) >> 32); }
inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
    return (unsigned long long)(((unsigned __int128)a * b) >> 64);
}
inline int __mul24(int a, int b) { return ((a << 8) >> 8) * ((b << 8) >> 8); }
inline unsigned __umul24(unsigned a, unsigned b) { return (a & 0xffffffu) * (b & 0xffffffu); }
inline unsigned __funnelshift_l(unsigned lo, unsigned hi, unsigned s) {
    unsigned long long v = ((unsigned long long)hi << 32) | lo;
    return (unsigned)((v << (s & 31)) >> 32);
}
inline unsigned __funnelshift_r(unsigned lo, unsigned hi, unsigned s) {
    unsigned long long v = ((unsigned long long)hi << 32) | lo;
    return (unsigned)(v >> (s & 31));
}
inline int __float_as_int(float x) { return ::cuemu::bitcast<int>(x); }
inline unsigned __float_as_uint(float x) { return ::cuemu::bitcast<unsigned>(x); }
inline float __int_as_float(int x) { return ::cuemu::bitcast<float>(x); }
inline float __uint_as_float(unsigned x) { return ::cuemu::bitcast<float>(x); }
inline long long __double_as_longlong(double x) { return ::cuemu::bitcast<long long>(x); }
inline double __longlong_as_double(long long x) { return ::cuemu::bitcast<double>(x); }

/* min/max are global overloads on the device (math_functions.h), not declared in host mode */
#define CUEMU_MINMAX(T)                                  \
    inline T min(T a, T b) { return a < b ? a : b; }     \
    inline T max(T a, T b) { return a > b ? a : b; }
CUEMU_MINMAX(int)
CUEMU_MINMAX(unsigned)
CUEMU_MINMAX(long)
CUEMU_MINMAX(unsigned long)
CUEMU_MINMAX(long long)
CUEMU_MINMAX(unsigned long long)
#undef CUEMU_MINMAX
/* mixed signedness promotes to unsigned, as the device overloads do */
inline unsigned min(int a, unsigned b) { return min((unsigned)a, b); }
inline unsigned min(unsigned a, int b) { return min(a, (unsigned)b); }
inline unsigned max(int a, unsigned b) { return max((unsigned)a, b); }
inline unsigned max(unsigned a, int b) { return max(a, (unsigned)b); }
inline unsigned long long min(long long a, unsigned long long b) { return min((unsigned long long)a, b); }
inline unsigned long long min(unsigned long long a, long long b) { return min(a, (unsigned long long)b); }
inline unsigned long long max(long long a, unsigned long long b) { return max((unsigned long long)a, b); }
inline unsigned long long max(unsigned long long a, long long b) { return max(a, (unsigned long long)b); }
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
inline double min(double a, double b) { return fmin(a, b); }
inline double max(double a, double b) { return fmax(a, b); }
inline double min(float a, double b) { return fmin(a, b); }
inline double min(double a, float b) { return fmin(a, b); }
inline double max(float a, double b) { return fmax(a, b); }
inline double max(double a, float b) { return fmax(a, b); }
inline unsigned umin(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned umax(unsigned a, unsigned b) { return a > b ? a : b; }
inline long long llmin(long long a, long long b) { return a < b ? a : b; }
inline long long llmax(long long a, long long b) { return a > b ? a : b; }

/* ---------------------------------------------------------------- float math missing on the host
 * The fast intrinsics are exact here (the GPU's are approximate): compare with tolerances.
 * __expf, __logf, __powf, __sinf, __cosf, __tanf, __exp10f, __log2f, __log10f, __tanhf and
 * __sincosf are declared (extern "C") by glibc's <math.h> but not exported, so cuemu.cpp defines
 * them with that exact signature. */
inline float __fdividef(float a, float b) { return a / b; }
inline float __frcp_rn(float a) { return 1.0f / a; }
inline float __fsqrt_rn(float a) { return sqrtf(a); }
inline float __frsqrt_rn(float a) { return 1.0f / sqrtf(a); }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __fma_rn(double a, double b, double c) { return fma(a, b, c); }
inline float rsqrtf(float a) { return 1.0f / sqrtf(a); }
inline double rsqrt(double a) { return 1.0 / sqrt(a); }
inline float rcbrtf(float a) { return 1.0f / cbrtf(a); }
inline float __saturatef(float a) { return a != a ? 0.0f : (a < 0.0f ? 0.0f : (a > 1.0f ? 1.0f : a)); }
inline float normcdff(float a) { return 0.5f * erfcf(-a * 0.70710678118654752f); }
inline double normcdf(double a) { return 0.5 * erfc(-a * 0.70710678118654752); }
inline float norm3df(float a, float b, float c) { return sqrtf(a * a + b * b + c * c); }
inline float rnorm3df(float a, float b, float c) { return 1.0f / sqrtf(a * a + b * b + c * c); }
inline float rhypotf(float a, float b) { return 1.0f / hypotf(a, b); }
inline float sinpif(float a) { return sinf(a * 3.14159265358979323846f); }
inline float cospif(float a) { return cosf(a * 3.14159265358979323846f); }
inline int __float2int_rn(float a) { return (int)nearbyintf(a); }
inline int __float2int_rz(float a) { return (int)a; }
inline int __float2int_rd(float a) { return (int)floorf(a); }
inline int __float2int_ru(float a) { return (int)ceilf(a); }
inline unsigned __float2uint_rn(float a) { return (unsigned)nearbyintf(a); }
inline unsigned __float2uint_rz(float a) { return (unsigned)a; }
inline long long __float2ll_rn(float a) { return (long long)nearbyintf(a); }
inline float __int2float_rn(int a) { return (float)a; }
inline float __uint2float_rn(unsigned a) { return (float)a; }
inline float __ll2float_rn(long long a) { return (float)a; }
inline float __double2float_rn(double a) { return (float)a; }

/* ---------------------------------------------------------------- fp16 / bf16 device-only math */
#define CUEMU_H16(T, to, from)                                                                \
    inline T __hfma(T a, T b, T c) { return from(fmaf(to(a), to(b), to(c))); }                \
    inline T hsqrt(T a) { return from(sqrtf(to(a))); }                                         \
    inline T hrsqrt(T a) { return from(1.0f / sqrtf(to(a))); }                                 \
    inline T hrcp(T a) { return from(1.0f / to(a)); }                                          \
    inline T hexp(T a) { return from(expf(to(a))); }                                           \
    inline T hexp2(T a) { return from(exp2f(to(a))); }                                         \
    inline T hlog(T a) { return from(logf(to(a))); }                                           \
    inline T hlog2(T a) { return from(log2f(to(a))); }                                         \
    inline T hsin(T a) { return from(sinf(to(a))); }                                           \
    inline T hcos(T a) { return from(cosf(to(a))); }                                           \
    inline T htanh(T a) { return from(tanhf(to(a))); }                                         \
    inline T hfloor(T a) { return from(floorf(to(a))); }                                       \
    inline T hceil(T a) { return from(ceilf(to(a))); }                                         \
    inline T htrunc(T a) { return from(truncf(to(a))); }                                       \
    inline T hrint(T a) { return from(rintf(to(a))); }
CUEMU_H16(__half, __half2float, __float2half)
CUEMU_H16(__nv_bfloat16, __bfloat162float, __float2bfloat16)
#undef CUEMU_H16
inline __half2 __hfma2(__half2 a, __half2 b, __half2 c) {
    return __halves2half2(__hfma(a.x, b.x, c.x), __hfma(a.y, b.y, c.y));
}
inline __nv_bfloat162 __hfma2(__nv_bfloat162 a, __nv_bfloat162 b, __nv_bfloat162 c) {
    return __halves2bfloat162(__hfma(a.x, b.x, c.x), __hfma(a.y, b.y, c.y));
}

/* ---------------------------------------------------------------- cache-hinted loads/stores */
template <class T> inline T __ldg(const T* p) { return *p; }
template <class T> inline T __ldcg(const T* p) { return *p; }
template <class T> inline T __ldca(const T* p) { return *p; }
template <class T> inline T __ldcs(const T* p) { return *p; }
template <class T> inline T __ldlu(const T* p) { return *p; }
template <class T> inline T __ldcv(const T* p) { return *p; }
template <class T> inline void __stcg(T* p, T v) { *p = v; }
template <class T> inline void __stcs(T* p, T v) { *p = v; }
template <class T> inline void __stwb(T* p, T v) { *p = v; }
template <class T> inline void __stwt(T* p, T v) { *p = v; }

/* ---------------------------------------------------------------- C++ runtime templates
 * cuda_runtime.h declares these only for nvcc (__CUDACC__); a host variable is its own symbol. */
template <class T>
inline cudaError_t cudaMemcpyToSymbol(const T& symbol, const void* src, size_t count, size_t offset = 0,
                                      cudaMemcpyKind kind = cudaMemcpyHostToDevice) {
    return ::cudaMemcpyToSymbol((const void*)&symbol, src, count, offset, kind);
}
template <class T>
inline cudaError_t cudaMemcpyToSymbolAsync(const T& symbol, const void* src, size_t count, size_t offset = 0,
                                           cudaMemcpyKind kind = cudaMemcpyHostToDevice, cudaStream_t s = 0) {
    return ::cudaMemcpyToSymbolAsync((const void*)&symbol, src, count, offset, kind, s);
}
template <class T>
inline cudaError_t cudaMemcpyFromSymbol(void* dst, const T& symbol, size_t count, size_t offset = 0,
                                        cudaMemcpyKind kind = cudaMemcpyDeviceToHost) {
    return ::cudaMemcpyFromSymbol(dst, (const void*)&symbol, count, offset, kind);
}
template <class T>
inline cudaError_t cudaMemcpyFromSymbolAsync(void* dst, const T& symbol, size_t count, size_t offset = 0,
                                             cudaMemcpyKind kind = cudaMemcpyDeviceToHost, cudaStream_t s = 0) {
    return ::cudaMemcpyFromSymbolAsync(dst, (const void*)&symbol, count, offset, kind, s);
}
template <class T>
inline cudaError_t cudaGetSymbolAddress(void** devPtr, const T& symbol) {
    return ::cudaGetSymbolAddress(devPtr, (const void*)&symbol);
}
template <class T>
inline cudaError_t cudaFuncSetAttribute(T* entry, cudaFuncAttribute attr, int value) {
    return ::cudaFuncSetAttribute(reinterpret_cast<const void*>(entry), attr, value);
}
template <class T>
inline cudaError_t cudaFuncGetAttributes(cudaFuncAttributes* attr, T* entry) {
    return ::cudaFuncGetAttributes(attr, reinterpret_cast<const void*>(entry));
}
template <class T>
inline cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* numBlocks, T* func, int blockSize,
                                                                 size_t dynamicSMemSize) {
    return ::cudaOccupancyMaxActiveBlocksPerMultiprocessor(numBlocks, reinterpret_cast<const void*>(func),
                                                           blockSize, dynamicSMemSize);
}

#endif /* CUEMU_H */
