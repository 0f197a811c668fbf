/*
 * tensorcore.cuh — the warp-level tensor-core building blocks of the tiled kernels (flash attention,
 * bf16 GEMM-like loops), behind small device functions so that one source runs two ways:
 *   nvcc (sm_80+): each function is the one PTX instruction (mma.sync, ldmatrix, cp.async);
 *   the CPU emulator (emu/, CUEMU): C++ that implements the PTX ISA's per-lane fragment layouts
 *   exactly, as a warp-collective step: every lane deposits its operands in a per-warp scratch, the
 *   warp meets at a full-mask ballot (all 32 lanes must be there, as on hardware; fewer is a trap),
 *   each lane computes its own result, and a trailing __syncwarp keeps a fast lane from overwriting
 *   the scratch before the slow ones read it.
 *
 *   mma_bf16_16816(acc, a, b)   acc(16x8 f32) += A(16x16 bf16, row) * B(16x8 bf16, col)
 *   mma_f16_16816(acc, a, b)    the same with fp16 operands
 *   ldmatrix_x1/x2/x4[_trans]   8x8 b16 matrices from shared memory, one 16-byte row address per lane
 *   cp_async_16(dst, src)       16 bytes global -> shared, .cg (L2 only); cp_async_commit();
 *                               cp_async_wait_group<N>(); cp_async_wait_all()
 *   exp2_approx(x)              2^x by the SFU: ex2.approx.ftz.f32 (below)
 *
 * Fragment layouts (PTX ISA, "Matrix Fragments for mma.m16n8k16 with floating point type"), with
 * g = lane / 4 (groupID) and t = lane % 4 (threadID_in_group); each 32-bit register holds two 16-bit
 * elements, the lower-indexed one in the low half:
 *   A (16x16, row-major):  a[0] = A[g  ][2t, 2t+1]    a[1] = A[g+8][2t, 2t+1]
 *                          a[2] = A[g  ][2t+8, 2t+9]  a[3] = A[g+8][2t+8, 2t+9]
 *   B (16x8, k x n):       b[0] = B[2t, 2t+1][g]      b[1] = B[2t+8, 2t+9][g]
 *   C/D (16x8, f32):       c[0] = C[g][2t]  c[1] = C[g][2t+1]  c[2] = C[g+8][2t]  c[3] = C[g+8][2t+1]
 * ldmatrix (.m8n8.b16): lanes 8j..8j+7 give the addresses of rows 0..7 of matrix j (x1 uses lanes
 * 0-7, x2 0-15, x4 all; the other lanes' addresses are ignored); register j of lane l receives
 *   plain:   M_j[l/4][2(l%4)], M_j[l/4][2(l%4)+1]          (exactly an A/B fragment piece)
 *   .trans:  M_j[2(l%4)][l/4], M_j[2(l%4)+1][l/4]           (the same of the transposed matrix)
 * Row addresses must be 16-byte aligned shared-memory addresses; cp.async's source and destination
 * too. The emulator traps on a misaligned one, naming the operation (it cannot tell shared from
 * global memory, so the state space is not checked).
 *
 * Emulated cp.async does not land at issue: the 16 source bytes are read at issue (the source must
 * not change before the wait, which the kernels here never do), the destination is filled with 0xFF
 * (NaN as fp32 and bf16), and the bytes land when the issuing thread waits for the copy's group
 * (cp_async_wait_group<N> lands every committed group but the N newest; wait_all commits and lands
 * everything). So a missing wait, or a wait for the wrong group, reads NaN instead of passing by
 * luck. Pending copies are kept per thread of the block running on this worker; the queues are
 * reset when a different block (blockIdx/gridDim/blockDim) first uses them.
 *
 * Emulator counters (cuemu::count, CUEMU_COUNTERS=1): each mma counts one C_MMA and 4096 C_FLOPS per
 * warp; ldmatrix counts the bytes it delivers and its shared-memory bank conflicts (extra wavefronts,
 * from all 32 row addresses; in C_BANK_CONFLICTS and C_BANK_CONFLICTS_LD); cp.async counts 16 bytes
 * read and 16 written per lane. cp.async cannot count its destination's bank conflicts itself (it
 * does not know which lanes issue it together): the caller describes the warp's copy with
 * cuemu::smem_store(dst, 16, mask), as flash_stage does.
 */
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>
#include <string.h>

#if defined(__CUDACC__)

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
#error "tensorcore.cuh needs sm_80 or newer (mma.sync m16n8k16 bf16, ldmatrix, cp.async)"
#endif
#define TC_SITE

#elif defined(CUEMU)

#include <stdio.h>

#include <algorithm>
#include <vector>
#define TC_SITE , CUEMU_SITE

#else
#error "tensorcore.cuh: compile with nvcc, or with g++ -include emu/cuemu.h (the CPU emulator)"
#endif

/* exp2_approx(x) = ex2.approx.ftz.f32: 2^x from the special function unit (one MUFU.EX2, no range
 * fix-up as exp2f has without --use_fast_math). PTX ISA, "Floating Point Instructions: ex2": a fast
 * approximation whose maximum relative error over the full range is of the order of 2^-22 (2 ulp of
 * fp32; the exact figure was not re-checked while writing this, so the code relies only on
 * <= 2^-21 = EXP2_APPROX_REL_ERR, which emu/test_tensorcore.cu checks); .ftz: a subnormal input is
 * read as 0 and a subnormal result is flushed to +0, i.e. 2^x = 0 for x < -126; 2^+-0 = 1 exactly
 * (the PTX ISA's table of special values), 2^-inf = +0, 2^+inf = +inf, NaN -> NaN. Used where the result is rounded to bf16 next (u = 2^-8)
 * or summed in fp32: 2^-21 is far below both. The emulator cannot reproduce the SFU's bits; it
 * returns 2^x·(1 + 2^-22) rounded to fp32 (and the .ftz rules): a result near the edge of the
 * documented error, deterministic, so the kernels' tolerances are exercised against the bound
 * rather than against an exact exp2. */
#define EXP2_APPROX_REL_ERR 4.76837158203125e-07 /* 2^-21 */

/* two floats -> one register of two bf16 (round to nearest even), lo in the low half */
__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    uint32_t r;
    memcpy(&r, &v, sizeof r);
    return r;
}
__device__ __forceinline__ uint32_t pack_f16x2(float lo, float hi) {
    __half2 v = __floats2half2_rn(lo, hi);
    uint32_t r;
    memcpy(&r, &v, sizeof r);
    return r;
}

#if defined(__CUDACC__)
/* ================================================================== nvcc: one PTX instruction each */

__device__ __forceinline__ uint32_t tc_smem_addr(const void* p) {
    return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void mma_bf16_16816(float (&acc)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(acc[0]), "+f"(acc[1]), "+f"(acc[2]), "+f"(acc[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
__device__ __forceinline__ void mma_f16_16816(float (&acc)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(acc[0]), "+f"(acc[1]), "+f"(acc[2]), "+f"(acc[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

__device__ __forceinline__ void ldmatrix_x1(uint32_t (&r)[1], const void* row) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x1.shared.b16 {%0}, [%1];\n" : "=r"(r[0]) : "r"(tc_smem_addr(row)));
}
__device__ __forceinline__ void ldmatrix_x2(uint32_t (&r)[2], const void* row) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n"
                 : "=r"(r[0]), "=r"(r[1])
                 : "r"(tc_smem_addr(row)));
}
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* row) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(tc_smem_addr(row)));
}
__device__ __forceinline__ void ldmatrix_x1_trans(uint32_t (&r)[1], const void* row) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x1.trans.shared.b16 {%0}, [%1];\n"
                 : "=r"(r[0])
                 : "r"(tc_smem_addr(row)));
}
__device__ __forceinline__ void ldmatrix_x2_trans(uint32_t (&r)[2], const void* row) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];\n"
                 : "=r"(r[0]), "=r"(r[1])
                 : "r"(tc_smem_addr(row)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* row) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(tc_smem_addr(row)));
}

__device__ __forceinline__ void cp_async_16(void* smem_dst, const void* gmem_src) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(tc_smem_addr(smem_dst)), "l"(gmem_src)
                 : "memory");
}
__device__ __forceinline__ float exp2_approx(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait_group() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_all;\n" ::: "memory"); }

#else
/* ================================================================== CPU emulator */

namespace tc_emu {

inline unsigned linear_tid() {
    return threadIdx.x + threadIdx.y * blockDim.x + threadIdx.z * blockDim.x * blockDim.y;
}

/* per-warp operand exchange; __shared__-like: one copy per worker thread, blocks run one after another */
struct WarpScratch {
    uint32_t reg[32][6]; /* mma: a[0..3], b[0..1] of each lane */
    const void* addr[32]; /* ldmatrix: each lane's row address */
};
inline thread_local WarpScratch scratch[32];

[[noreturn]] inline void fail(const char* op, const char* why, const void* p, const char* file, int line) {
    static thread_local char msg[256];
    snprintf(msg, sizeof msg, "%s: %s (%p)", op, why, p);
    ::cuemu::trap(msg, file, line);
}

/* every lane of the warp meets here; fewer than 32 (exited lanes, a partial warp) is UB on hardware */
inline void converge(const char* op, const char* file, int line) {
    unsigned m = __ballot_sync(0xffffffffu, 1, file, line);
    if (m != 0xffffffffu) {
        static thread_local char why[96];
        snprintf(why, sizeof why, "only lanes 0x%08x of the warp take part, all 32 must", m);
        fail(op, why, nullptr, file, line);
    }
}

inline float bf16_bits_to_float(uint32_t h) {
    uint32_t u = (h & 0xffffu) << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}
inline float f16_bits_to_float(uint32_t h) {
    __half_raw raw;
    raw.x = (unsigned short)(h & 0xffffu);
    return __half2float(__half(raw));
}

inline void mma_16816(float (&acc)[4], const uint32_t (&a)[4], const uint32_t (&b)[2], float (*cvt)(uint32_t),
                      const char* op, const char* file, int line) {
    const unsigned tid = linear_tid(), lane = tid & 31;
    WarpScratch& w = scratch[tid >> 5];
    for (int i = 0; i < 4; i++) w.reg[lane][i] = a[i];
    w.reg[lane][4] = b[0];
    w.reg[lane][5] = b[1];
    converge(op, file, line);
    if (lane == 0) { /* one instruction per warp: 16x8x16 multiply-adds */
        ::cuemu::count(::cuemu::C_MMA);
        ::cuemu::count(::cuemu::C_FLOPS, 2 * 16 * 8 * 16);
    }
    /* element (r, k) of A lives in lane (r%8)*4 + (k%8)/2, register (r/8) + 2*(k/8), half k%2;
     * element (k, n) of B in lane n*4 + (k%8)/2, register 4 + k/8, half k%2 */
    auto A = [&](unsigned r, unsigned k) {
        uint32_t v = w.reg[(r & 7) * 4 + ((k & 7) >> 1)][(r >> 3) + 2 * (k >> 3)];
        return cvt((k & 1) ? v >> 16 : v);
    };
    auto B = [&](unsigned k, unsigned n) {
        uint32_t v = w.reg[n * 4 + ((k & 7) >> 1)][4 + (k >> 3)];
        return cvt((k & 1) ? v >> 16 : v);
    };
    const unsigned g = lane >> 2, t = lane & 3;
    float d[4];
    for (unsigned i = 0; i < 4; i++) {
        const unsigned r = g + 8 * (i >> 1), n = 2 * t + (i & 1);
        float s = 0.0f;
        for (unsigned k = 0; k < 16; k++) s += A(r, k) * B(k, n); /* bf16*bf16 and f16*f16 are exact in fp32 */
        d[i] = acc[i] + s;
    }
    __syncwarp(0xffffffffu, file, line);
    for (int i = 0; i < 4; i++) acc[i] = d[i];
}

/* Extra shared-memory wavefronts of an ldmatrix: each 8x8 matrix is one 128-byte request whose 8
 * rows of 16 bytes occupy banks 4q..4q+3 with q = (address / 16) % 8; rows sharing a q (at different
 * addresses) serialise. */
inline unsigned bank_conflicts(const WarpScratch& w, unsigned nmat) {
    unsigned extra = 0;
    for (unsigned j = 0; j < nmat; j++) {
        unsigned per_quad[8] = {0, 0, 0, 0, 0, 0, 0, 0}, worst = 0;
        for (unsigned r = 0; r < 8; r++) {
            const uintptr_t a = (uintptr_t)w.addr[8 * j + r];
            bool dup = false; /* the same row twice is one broadcast, not a conflict */
            for (unsigned s = 0; s < r; s++) dup |= (uintptr_t)w.addr[8 * j + s] == a;
            if (!dup) worst = std::max(worst, ++per_quad[(a >> 4) & 7]);
        }
        extra += worst - 1;
    }
    return extra;
}

inline void ldmatrix(uint32_t* r, unsigned nmat, bool trans, const void* row, const char* op, const char* file,
                     int line) {
    const unsigned tid = linear_tid(), lane = tid & 31;
    if (lane < 8 * nmat && ((uintptr_t)row & 15)) fail(op, "row address not 16-byte aligned", row, file, line);
    WarpScratch& w = scratch[tid >> 5];
    w.addr[lane] = row;
    converge(op, file, line);
    ::cuemu::count(::cuemu::C_BYTES_READ, 4 * nmat); /* nmat 32-bit registers per lane */
    if (lane == 0) {
        const unsigned extra = bank_conflicts(w, nmat);
        ::cuemu::count(::cuemu::C_BANK_CONFLICTS, extra);
        ::cuemu::count(::cuemu::C_BANK_CONFLICTS_LD, extra);
    }
    for (unsigned j = 0; j < nmat; j++) {
        uint16_t lo, hi;
        if (!trans) {
            const unsigned char* p = (const unsigned char*)w.addr[8 * j + lane / 4] + 4 * (lane % 4);
            memcpy(&lo, p, 2);
            memcpy(&hi, p + 2, 2);
        } else {
            memcpy(&lo, (const unsigned char*)w.addr[8 * j + 2 * (lane % 4)] + 2 * (lane / 4), 2);
            memcpy(&hi, (const unsigned char*)w.addr[8 * j + 2 * (lane % 4) + 1] + 2 * (lane / 4), 2);
        }
        r[j] = (uint32_t)lo | ((uint32_t)hi << 16);
    }
    __syncwarp(0xffffffffu, file, line);
}

/* ---- cp.async: per-thread queues of copies that have not landed */
struct PendingCopy {
    void* dst;
    unsigned group; /* index of the group it belongs to; == committed while the group is still open */
    unsigned char bytes[16];
};
struct CopyQueue {
    std::vector<PendingCopy> pending;
    unsigned committed = 0; /* groups committed so far */
};
struct BlockQueues {
    uint3 block{~0u, ~0u, ~0u};
    dim3 grid{0, 0, 0}, dims{0, 0, 0};
    std::vector<CopyQueue> threads;
};
inline thread_local BlockQueues queues;

inline CopyQueue& my_queue() {
    BlockQueues& q = queues;
    const uint3 b = blockIdx;
    const dim3 g = gridDim, d = blockDim;
    if (b.x != q.block.x || b.y != q.block.y || b.z != q.block.z || g.x != q.grid.x || g.y != q.grid.y ||
        g.z != q.grid.z || d.x != q.dims.x || d.y != q.dims.y || d.z != q.dims.z) {
        q.block = b, q.grid = g, q.dims = d; /* first use in this block: forget the previous block's copies */
        q.threads.assign((size_t)d.x * d.y * d.z, CopyQueue());
    }
    return q.threads[linear_tid()];
}

/* lands, in issue order, every pending copy of a group below `upto` */
inline void land(CopyQueue& q, unsigned upto) {
    size_t keep = 0;
    for (size_t i = 0; i < q.pending.size(); i++) {
        PendingCopy& c = q.pending[i];
        if (c.group < upto) memcpy(c.dst, c.bytes, 16);
        else q.pending[keep++] = c;
    }
    q.pending.resize(keep);
}

} /* namespace tc_emu */

__device__ inline void mma_bf16_16816(float (&acc)[4], const uint32_t (&a)[4], const uint32_t (&b)[2] TC_SITE) {
    tc_emu::mma_16816(acc, a, b, tc_emu::bf16_bits_to_float, "mma.sync.m16n8k16.bf16", CUEMU_AT);
}
__device__ inline void mma_f16_16816(float (&acc)[4], const uint32_t (&a)[4], const uint32_t (&b)[2] TC_SITE) {
    tc_emu::mma_16816(acc, a, b, tc_emu::f16_bits_to_float, "mma.sync.m16n8k16.f16", CUEMU_AT);
}
__device__ inline void ldmatrix_x1(uint32_t (&r)[1], const void* row TC_SITE) {
    tc_emu::ldmatrix(r, 1, false, row, "ldmatrix.x1", CUEMU_AT);
}
__device__ inline void ldmatrix_x2(uint32_t (&r)[2], const void* row TC_SITE) {
    tc_emu::ldmatrix(r, 2, false, row, "ldmatrix.x2", CUEMU_AT);
}
__device__ inline void ldmatrix_x4(uint32_t (&r)[4], const void* row TC_SITE) {
    tc_emu::ldmatrix(r, 4, false, row, "ldmatrix.x4", CUEMU_AT);
}
__device__ inline void ldmatrix_x1_trans(uint32_t (&r)[1], const void* row TC_SITE) {
    tc_emu::ldmatrix(r, 1, true, row, "ldmatrix.x1.trans", CUEMU_AT);
}
__device__ inline void ldmatrix_x2_trans(uint32_t (&r)[2], const void* row TC_SITE) {
    tc_emu::ldmatrix(r, 2, true, row, "ldmatrix.x2.trans", CUEMU_AT);
}
__device__ inline void ldmatrix_x4_trans(uint32_t (&r)[4], const void* row TC_SITE) {
    tc_emu::ldmatrix(r, 4, true, row, "ldmatrix.x4.trans", CUEMU_AT);
}

__device__ inline void cp_async_16(void* smem_dst, const void* gmem_src TC_SITE) {
    if ((uintptr_t)smem_dst & 15) tc_emu::fail("cp.async", "destination not 16-byte aligned", smem_dst, CUEMU_AT);
    if ((uintptr_t)gmem_src & 15) tc_emu::fail("cp.async", "source not 16-byte aligned", gmem_src, CUEMU_AT);
    tc_emu::CopyQueue& q = tc_emu::my_queue();
    tc_emu::PendingCopy c;
    c.dst = smem_dst;
    c.group = q.committed;
    memcpy(c.bytes, gmem_src, 16);
    memset(smem_dst, 0xFF, 16); /* in flight: reading it before the wait sees NaN */
    ::cuemu::count(::cuemu::C_BYTES_READ, 16);
    ::cuemu::count(::cuemu::C_BYTES_WRITTEN, 16);
    q.pending.push_back(c);
}
__device__ inline float exp2_approx(float x) {
    if (x != x) return x;                                       /* NaN */
    if (fabsf(x) < 1.17549435e-38f) return 1.0f;                /* +-0, and subnormals (.ftz): exactly 1 */
    const float r = (float)(exp2((double)x) * (1.0 + 0x1p-22)); /* at the edge of the error bound */
    return r < 1.17549435e-38f ? 0.0f : r;                      /* .ftz: subnormal result -> +0 */
}
__device__ inline void cp_async_commit() { tc_emu::my_queue().committed++; }
template <int N>
__device__ inline void cp_async_wait_group() {
    static_assert(N >= 0, "cp.async.wait_group N needs N >= 0");
    tc_emu::CopyQueue& q = tc_emu::my_queue();
    if (q.committed > (unsigned)N) tc_emu::land(q, q.committed - (unsigned)N);
}
__device__ inline void cp_async_wait_all() {
    tc_emu::CopyQueue& q = tc_emu::my_queue();
    q.committed++;
    tc_emu::land(q, q.committed);
}

#endif
