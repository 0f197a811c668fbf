/*
 * Causal grouped-query attention forward and backward on tensor cores, FlashAttention-2 style (the
 * backward is described at its kernels below), and the Quiet-STaR thought attention forward and
 * backward by decomposition (the causal part on tensor cores, the own-slot keys in fp32, merged by
 * log-sum-exp; see flash_thought_attention_forward/backward). In the bf16 backend table: with bf16
 * storage, backend_cuda.cu routes the four attention ops here (Tin = floatX = bf16) for head dims 64,
 * 80, 96, 128 and 16-byte aligned rows; the fp32 table keeps attention.cuh's kernels (its products are
 * bf16, fp32 accumulate, so it does not meet the fp32 contract's tolerances), and compiles the Tin = float
 * instances only for bench_attention's v3 and the checks. tests/test_emu_checks.sh checks it on the
 * emulator against the CPU oracle with tolerances derived from bf16's unit roundoff. Same contract as attention_forward/backward in
 * kernels/ops.h: qkv rows hold NH query heads, then NKV key heads, then NKV value heads, each HD
 * wide; query head h reads kv head h / (NH/NKV); scale 1/sqrt(HD); out (B*T, NH*HD), lse (B, NH, T)
 * natural-log log-sum-exp of the scaled scores.
 *
 * Work split. One block of 4 warps per (64-row tile, head block, batch); warp w owns tile rows
 * 16w..16w+15. GQA packing: when the group size NH/NKV is a power of two (1, 2, 4, 8, ...), a tile
 * row is a (query position, head) pair, position-major: 64/group positions x the group's heads, so
 * the heads of a group share every K/V tile load (K/V traffic per query / group). Other group sizes
 * run one head per block. Tiles are launched last-first, so the long causal rows start early.
 * Per 64-key tile: S = Q·Kᵀ (16x64 per warp) by mma m16n8k16 with Q and K fragments from shared
 * memory by ldmatrix (K row-major [key][d] is exactly the col-major B operand, so no transpose);
 * causal mask only on tiles with keys past the tile's first position; online softmax in registers
 * (base-2 exponentials, the row max and sum kept per lane and reduced over the 4 lanes of a row by
 * two shuffles; the forward keeps the raw scores and makes each probability one FFMA,
 * s·scale·log2e − m·scale·log2e, into exp2_approx = ex2.approx.ftz, relative error <= 2^-21,
 * tensorcore.cuh); P is re-packed from the S accumulators into A fragments without touching memory
 * (the C layout of two adjacent n-blocks is the A layout of one k-chunk); O += P·V with V [key][d]
 * loaded by ldmatrix.trans. O is normalised into shared memory (the K buffers, free after the loop)
 * and written out in 16-byte chunks, so out must be 16-byte aligned (the launcher checks).
 *
 * Staging and precision. Shared memory holds bf16: Q (64 rows) and a double buffer of K and V tiles,
 * rows padded by 8 elements (16 bytes) so the 8 row addresses of an ldmatrix fall in distinct banks
 * (the emulator's counters confirm 0 ldmatrix bank conflicts). The 16-byte staging stores (cp.async
 * destinations, zero fills) are conflict-free at HD 64 and 128; at HD 80 and 96 an 8-lane phase can
 * span two rows and collide: 48 and 32 extra wavefronts per 64-row tile (of 80 and 96 phases).
 *   Tin = __nv_bfloat16: cp.async 16-byte copies, tile j+1 in flight while tile j is computed
 *     (requires 16-byte aligned rows: HD and the row width are multiples of 8 elements, and qkv
 *     itself 16-byte aligned — checked by the launcher).
 *   Tin = float (today's floatX): 128-bit loads of 8 floats, rounded to bf16 by registers and stored
 *     to shared memory; synchronous (the next tile is staged before the current one is computed, so
 *     loads do not overlap the math). No training step runs it (the fp32 table uses attention.cuh);
 *     bench_attention times it as v3, apart from the bf16 path (v2).
 * Rows past T are zero-filled (a NaN there would survive P = 0 as 0·NaN). Products are exact in fp32;
 * the error is bf16 rounding of Q, K, V (and of P before P·V), unit roundoff 2^-8.
 * Shared memory: forward 5 · 64 · (HD+8) · 2 bytes = 45 KiB (HD 64) ... 85 KiB (HD 128); backward
 * 6 tiles + 1 KiB = 55 ... 103 KiB; set per kernel through cudaFuncSetAttribute above 48 KiB.
 * Registers (ptxas, sm_80/sm_90, no spills): forward 100-141; backward dQ 154-202, dK/dV 188-254 — at
 * HD 128 dK/dV sits at the 255 limit (dK and dV accumulators are 128 of them), so a compiler change
 * could make it spill; make cuda would then fail and say so.
 * Emulator, measured: removing the trailing __syncthreads of a double-buffered loop (forward, or the
 * backward dK/dV kernel) makes checks fail under CUEMU_SCHEDULE=reverse and random (warp-ahead
 * rounds: one warp runs through its ldmatrix/mma chain and refills the buffer the others still read);
 * the default forward schedule keeps the warps within one collective of each other and misses it.
 */
#pragma once

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/tensorcore.cuh"

#define FLASH_BLOCK_Q 64   // query rows per block (4 warps x 16)
#define FLASH_BLOCK_K 64   // keys per shared-memory tile
#define FLASH_WARPS 4

template <int HD>
struct FlashSmem {
    static constexpr int ROW = HD + 8;  // padded row, in bf16 elements (a multiple of 8: 16-byte rows)
    static constexpr int TILE = FLASH_BLOCK_K * ROW;
    static constexpr size_t BYTES = (size_t)(FLASH_BLOCK_Q * ROW + 4 * TILE) * sizeof(__nv_bfloat16);
};

// Copies `rows` tile rows (HD wide) into a padded bf16 tile. Tile row r is head (r % 2^gp) of
// sequence position (r / 2^gp): src + (r >> gp)·C3 + (r & (2^gp − 1))·HD, so gp = 0 is a plain run of
// positions (K, V, unpacked Q) and gp > 0 packs the query heads of a GQA group. Positions at or past
// `nvalid` are zero-filled. Each thread moves 8-element chunks.
#ifdef CUEMU
// The emulator's bank-conflict count of one flash_stage store: the lanes of this warp at the same loop
// step that take the same branch (cp.async for positions < nvalid, the zero store for the others; `copy`)
// issue one warp-wide 16-byte store together (the block is one-dimensional, lanes 32w..32w+31).
template <int HD>
inline void flash_stage_count(const void* to, int c, int rows, int nvalid, int gp, bool copy) {
    constexpr int CHUNKS = HD / 8;
    const int lane = threadIdx.x % 32;
    unsigned mask = 0;
    for (int l = 0; l < 32; l++) {
        const int cl = c - lane + l;
        if (cl < rows * CHUNKS && (((cl / CHUNKS) >> gp) < nvalid) == copy) mask |= 1u << l;
    }
    ::cuemu::smem_store(to, 16, mask);
}
#endif

template <int HD>
__device__ __forceinline__ void flash_stage(__nv_bfloat16* dst, const __nv_bfloat16* src, size_t C3, int rows,
                                            int nvalid, int gp = 0) {
    constexpr int CHUNKS = HD / 8;
    for (int c = threadIdx.x; c < rows * CHUNKS; c += blockDim.x) {
        const int r = c / CHUNKS, d = (c % CHUNKS) * 8, pos = r >> gp;
        __nv_bfloat16* to = dst + r * FlashSmem<HD>::ROW + d;
#ifdef CUEMU
        flash_stage_count<HD>(to, c, rows, nvalid, gp, pos < nvalid);
#endif
        if (pos < nvalid) cp_async_16(to, src + (size_t)pos * C3 + (size_t)(r & ((1 << gp) - 1)) * HD + d);
        else *reinterpret_cast<uint4*>(to) = make_uint4(0, 0, 0, 0);
    }
}
template <int HD>
__device__ __forceinline__ void flash_stage(__nv_bfloat16* dst, const float* src, size_t C3, int rows, int nvalid,
                                            int gp = 0) {
    constexpr int CHUNKS = HD / 8;
    for (int c = threadIdx.x; c < rows * CHUNKS; c += blockDim.x) {
        const int r = c / CHUNKS, d = (c % CHUNKS) * 8, pos = r >> gp;
        uint4 v = make_uint4(0, 0, 0, 0);
        if (pos < nvalid) {
            const float4* p =
                reinterpret_cast<const float4*>(src + (size_t)pos * C3 + (size_t)(r & ((1 << gp) - 1)) * HD + d);
            const float4 a = p[0], b = p[1];
            v = make_uint4(pack_bf16x2(a.x, a.y), pack_bf16x2(a.z, a.w), pack_bf16x2(b.x, b.y), pack_bf16x2(b.z, b.w));
        }
#ifdef CUEMU
        // one st.shared.v4 for every lane of the step, in range or not
        flash_stage_count<HD>(dst + r * FlashSmem<HD>::ROW + d, c, rows, 1 << 30, 0, true);
#endif
        *reinterpret_cast<uint4*>(dst + r * FlashSmem<HD>::ROW + d) = v;
    }
}

// Two adjacent output elements to shared memory: one 32-bit store (bf16 pair) or one 64-bit (float2).
__device__ __forceinline__ void flash_store2(__nv_bfloat16* p, float a, float b) {
#ifdef CUEMU
    ::cuemu::smem_store(p, 4);
#endif
    *reinterpret_cast<uint32_t*>(p) = pack_bf16x2(a, b);
}
__device__ __forceinline__ void flash_store2(float* p, float a, float b) {
#ifdef CUEMU
    ::cuemu::smem_store(p, 8);
#endif
    *reinterpret_cast<float2*>(p) = make_float2(a, b);
}

template <int HD, class Tin>
__global__ void __launch_bounds__(32 * FLASH_WARPS)
    flash_attention_forward_kernel(floatX* out,      // (B*T, NH*HD)
                                   float* lse,       // (B, NH, T)
                                   const Tin* qkv,   // (B*T, (NH + 2*NKV) * HD): keys and values
                                   const Tin* qsrc,  // same layout: the queries (qkv itself, or a later
                                                     // thought step's block)
                                   int T, int NH, int NKV,
                                   int gp) {         // 2^gp query heads of one group per block (GQA packing)
    using S = FlashSmem<HD>;
    constexpr int KC = HD / 16;  // 16-wide k-chunks of Q·Kᵀ
    constexpr int DB = HD / 8;   // 8-wide output blocks of P·V
    DYN_SMEM(__nv_bfloat16, smem);
    __nv_bfloat16* sQ = smem;
    __nv_bfloat16* sK = sQ + FLASH_BLOCK_Q * S::ROW;  // [2][TILE]
    __nv_bfloat16* sV = sK + 2 * S::TILE;             // [2][TILE]

    // tile row r = query position q0 + (r >> gp), head h0 + (r % 2^gp)
    const int qt = gridDim.x - 1 - blockIdx.x, h0 = blockIdx.y << gp, b = blockIdx.z;
    const int g = h0 / (NH / NKV);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const size_t C3 = (size_t)(NH + 2 * NKV) * HD;
    const int q0 = qt * (FLASH_BLOCK_Q >> gp);  // first query position of the tile
    const Tin* base = qkv + (size_t)b * T * C3;
    const Tin* kbase = base + (size_t)(NH + g) * HD;
    const Tin* vbase = base + (size_t)(NH + NKV + g) * HD;
    const int kend = min(q0 + (FLASH_BLOCK_Q >> gp), T);          // causal: keys 0..kend-1
    const int ntiles = (kend + FLASH_BLOCK_K - 1) / FLASH_BLOCK_K;

    flash_stage<HD>(sQ, qsrc + (size_t)b * T * C3 + (size_t)q0 * C3 + (size_t)h0 * HD, C3, FLASH_BLOCK_Q, T - q0, gp);
    flash_stage<HD>(sK, kbase, C3, FLASH_BLOCK_K, T);
    flash_stage<HD>(sV, vbase, C3, FLASH_BLOCK_K, T);
    cp_async_commit();

    // scores stay unscaled (raw Q·K); exp(x·scale) = exp2(x·scale·log2 e), and each probability is one
    // FFMA, x·scale_log2 − m·scale_log2, into ex2.approx (as FA2 with --use_fast_math)
    const float scale_log2 = 1.4426950408889634f / sqrtf((float)HD);
    float o[DB][4];
#pragma unroll
    for (int i = 0; i < DB; i++) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};  // rows lane/4 and lane/4 + 8 of the warp
                                                               // (m: running max of the raw scores)
    const int row_lo = warp * 16 + lane / 4;               // this lane's first tile row (the other: +8)
    const int pos[2] = {q0 + (row_lo >> gp), q0 + ((row_lo + 8) >> gp)};  // their query positions

    for (int j = 0; j < ntiles; j++) {
        const int cur = j & 1;
        if (j + 1 < ntiles) {
            const int k1 = (j + 1) * FLASH_BLOCK_K;
            flash_stage<HD>(sK + (cur ^ 1) * S::TILE, kbase + (size_t)k1 * C3, C3, FLASH_BLOCK_K, T - k1);
            flash_stage<HD>(sV + (cur ^ 1) * S::TILE, vbase + (size_t)k1 * C3, C3, FLASH_BLOCK_K, T - k1);
        }
        cp_async_commit();  // possibly empty: "all but the newest group" is then always tile j
        cp_async_wait_group<1>();
        __syncthreads();
        const __nv_bfloat16* tK = sK + cur * S::TILE;
        const __nv_bfloat16* tV = sV + cur * S::TILE;

        // S = Q Kᵀ: 16 rows x 64 keys per warp, 8 n-blocks of 8 keys
        float s[8][4];
#pragma unroll
        for (int nb = 0; nb < 8; nb++) s[nb][0] = s[nb][1] = s[nb][2] = s[nb][3] = 0.0f;
#pragma unroll
        for (int kc = 0; kc < KC; kc++) {
            uint32_t a[4];
            ldmatrix_x4(a, sQ + (warp * 16 + lane % 16) * S::ROW + kc * 16 + (lane / 16) * 8);
#pragma unroll
            for (int np = 0; np < 4; np++) {  // pairs of n-blocks: keys 16np .. 16np+15
                uint32_t kb[4];
                ldmatrix_x4(kb, tK + (np * 16 + lane % 8 + (lane / 16) * 8) * S::ROW + kc * 16 + ((lane / 8) % 2) * 8);
                const uint32_t b0[2] = {kb[0], kb[1]}, b1[2] = {kb[2], kb[3]};
                mma_bf16_16816(s[2 * np], a, b0);
                mma_bf16_16816(s[2 * np + 1], a, b1);
            }
        }

        // online softmax; element (nb, e) is tile row row_lo + 8(e/2), key j*64 + 8nb + 2(lane%4) + e%2;
        // only a tile with keys past the first query position needs the causal mask
        const bool diagonal = (j + 1) * FLASH_BLOCK_K - 1 > q0;
        float mx[2] = {m[0], m[1]};
#pragma unroll
        for (int nb = 0; nb < 8; nb++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                if (diagonal) {
                    const int key = j * FLASH_BLOCK_K + nb * 8 + 2 * (lane % 4) + (e & 1);
                    if (key > pos[e >> 1]) s[nb][e] = -INFINITY;  // -inf·scale − m·scale = -inf: P = 0
                }
                mx[e >> 1] = fmaxf(mx[e >> 1], s[nb][e]);  // scale_log2 > 0: the max commutes with it
            }
        float corr[2], ms[2];
#pragma unroll
        for (int r = 0; r < 2; r++) {
            mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
            mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
            // 0 on the first tile (m = -inf); key 0 keeps mx finite
            corr[r] = exp2_approx((m[r] - mx[r]) * scale_log2);
            m[r] = mx[r];
            ms[r] = mx[r] * scale_log2;
            l[r] *= corr[r];
        }
#pragma unroll
        for (int i = 0; i < DB; i++) {
            o[i][0] *= corr[0], o[i][1] *= corr[0];
            o[i][2] *= corr[1], o[i][3] *= corr[1];
        }
        uint32_t p[4][4];  // P as A fragments, one per 16-key chunk
#pragma unroll
        for (int nb = 0; nb < 8; nb++) {
            const float p0 = exp2_approx(fmaf(s[nb][0], scale_log2, -ms[0]));
            const float p1 = exp2_approx(fmaf(s[nb][1], scale_log2, -ms[0]));
            const float p2 = exp2_approx(fmaf(s[nb][2], scale_log2, -ms[1]));
            const float p3 = exp2_approx(fmaf(s[nb][3], scale_log2, -ms[1]));
            l[0] += p0 + p1;
            l[1] += p2 + p3;
            p[nb / 2][(nb % 2) * 2 + 0] = pack_bf16x2(p0, p1);  // row lane/4: a[0] (even nb) or a[2]
            p[nb / 2][(nb % 2) * 2 + 1] = pack_bf16x2(p2, p3);  // row lane/4+8: a[1] or a[3]
        }

        // O += P V: V tile [key][d] is the k-major B operand -> ldmatrix.trans, 16 d per x4
#pragma unroll
        for (int kk = 0; kk < 4; kk++) {
#pragma unroll
            for (int dp = 0; dp < DB / 2; dp++) {
                uint32_t vb[4];
                ldmatrix_x4_trans(vb, tV + (kk * 16 + lane % 16) * S::ROW + dp * 16 + (lane / 16) * 8);
                const uint32_t b0[2] = {vb[0], vb[1]}, b1[2] = {vb[2], vb[3]};
                mma_bf16_16816(o[2 * dp], p[kk], b0);
                mma_bf16_16816(o[2 * dp + 1], p[kk], b1);
            }
        }
        __syncthreads();  // the next iteration refills the other buffer, the one after this one
    }

#pragma unroll
    for (int r = 0; r < 2; r++) {
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
    }
    // O leaves through shared memory: each warp writes its 16 normalised rows (floatX, row stride
    // HD + 8 elements: the 8 rows of one store fall in distinct banks) into the K buffers, free since
    // the loop's trailing barrier, then copies them out as 16-byte chunks (STG.128 instead of 2-byte
    // scalar stores). The region is the warp's own, so __syncwarp orders it.
    floatX* sO = reinterpret_cast<floatX*>(sK) + warp * 16 * S::ROW;  // [16][ROW] floatX: fits in sK's 2 tiles
    const size_t CO = (size_t)NH * HD;
#pragma unroll
    for (int r = 0; r < 2; r++) {
        const int row = pos[r], h = h0 + ((row_lo + 8 * r) & ((1 << gp) - 1));
        const float inv = 1.0f / l[r];  // l >= ~1: the row max contributes exp2(fma residual) = 1 ± 2^-21
        floatX* srow = sO + (lane / 4 + 8 * r) * S::ROW + 2 * (lane % 4);
#pragma unroll
        for (int i = 0; i < DB; i++) flash_store2(srow + i * 8, o[i][2 * r] * inv, o[i][2 * r + 1] * inv);
        if (row < T && lane % 4 == 0)
            lse[((size_t)b * NH + h) * T + row] = (m[r] * scale_log2 + log2f(l[r])) * 0.6931471805599453f;
    }
    __syncwarp();
    constexpr int RC = HD * (int)sizeof(floatX) / 16;  // 16-byte chunks per row
    constexpr int EC = 16 / (int)sizeof(floatX);       // elements per chunk
    static_assert(FLASH_BLOCK_Q * S::ROW * sizeof(floatX) <= 2 * S::TILE * sizeof(__nv_bfloat16),
                  "the O staging rows must fit in the K double buffer");
    static_assert(16 * RC % 32 == 0, "every lane makes the same number of 16-byte copies");
#pragma unroll
    for (int c = lane; c < 16 * RC; c += 32) {  // 16·RC is a multiple of 32 for every HD built
        const int rr = c / RC, k = c % RC, trow = warp * 16 + rr;
        const int row = q0 + (trow >> gp), h = h0 + (trow & ((1 << gp) - 1));
        const floatX* from = sO + rr * S::ROW + k * EC;
#ifdef CUEMU
        ::cuemu::smem_access(from, 16);
#endif
        const uint4 v = *reinterpret_cast<const uint4*>(from);
        if (row < T) *reinterpret_cast<uint4*>(out + ((size_t)b * T + row) * CO + (size_t)h * HD + k * EC) = v;
    }
}

template <int HD, class Tin>
static void flash_attention_forward_hd(floatX* out, float* lse, const Tin* qkv, const Tin* qsrc, int B, int T,
                                       int NH, int NKV, cudaStream_t stream) {
    const size_t smem = FlashSmem<HD>::BYTES;
    if (smem > 48 * 1024)
        cudaCheck(cudaFuncSetAttribute(flash_attention_forward_kernel<HD, Tin>,
                                       cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    // GQA packing: a group of 2^gp <= 64 query heads shares each K/V tile; other group sizes run
    // one head per block
    const int group = NH / NKV;
    int gp = 0;
    if ((group & (group - 1)) == 0 && group <= FLASH_BLOCK_Q)
        while ((1 << gp) < group) gp++;
    const dim3 grid(CEIL_DIV(T, FLASH_BLOCK_Q >> gp), NH >> gp, B);
    LAUNCH((flash_attention_forward_kernel<HD, Tin>), grid, 32 * FLASH_WARPS, smem, stream, out, lse, qkv, qsrc, T, NH,
           NKV, gp);
    cudaCheckLaunch();
}

template <class Tin>
static void flash_forward_dispatch(floatX* out, float* lse, const Tin* qkv, const Tin* qsrc, int B, int T, int NH,
                                   int NKV, int HD, cudaStream_t stream) {
    if (NKV <= 0 || NH % NKV != 0) fatal("flash attention: NH=%d is not a multiple of NKV=%d", NH, NKV);
    if ((uintptr_t)qkv % 16 != 0 || (uintptr_t)qsrc % 16 != 0) fatal("flash attention: qkv is not 16-byte aligned");
    if ((uintptr_t)out % 16 != 0) fatal("flash attention: out is not 16-byte aligned (16-byte row stores)");
    switch (HD) {
    case 64: flash_attention_forward_hd<64>(out, lse, qkv, qsrc, B, T, NH, NKV, stream); break;
    case 80: flash_attention_forward_hd<80>(out, lse, qkv, qsrc, B, T, NH, NKV, stream); break;
    case 96: flash_attention_forward_hd<96>(out, lse, qkv, qsrc, B, T, NH, NKV, stream); break;
    case 128: flash_attention_forward_hd<128>(out, lse, qkv, qsrc, B, T, NH, NKV, stream); break;
    default: fatal("flash attention: head dim %d not built (64, 80, 96, 128)", HD);
    }
}

// Tin = float or __nv_bfloat16. HD must be 64, 80, 96 or 128; NH a multiple of NKV; qkv 16-byte aligned.
template <class Tin>
void flash_attention_forward(floatX* out, float* lse, const Tin* qkv, int B, int T, int NH, int NKV, int HD,
                             cudaStream_t stream) {
    if (T <= 0 || B <= 0) return;
    flash_forward_dispatch(out, lse, qkv, qkv, B, T, NH, NKV, HD, stream);
}

// ---- Quiet-STaR thought attention forward by decomposition (contract: thought_attention_forward in
// ops.h). A query of step k at (row r, slot i) sees the step-0 keys 0..i and its own slot's keys at
// steps 1..k. Part 1 is the causal flash kernel with step k's queries against step 0's keys and values;
// part 2, below, walks the k own-slot keys of each query in fp32 (O(L·k·HD), one warp per (row, slot,
// head)) and merges its (o, lse) into part 1's by log-sum-exp. k = 0 is plain causal attention.
template <class Tin>
__global__ void __launch_bounds__(128)
    flash_own_slot_merge_kernel(floatX* out,        // (R*L, NH*HD): part 1's result in, merged out
                                float* lse,         // (R, NH, L): likewise
                                const Tin* qkv,     // steps 0..k, (R*L, C3) each, stride step_stride
                                size_t step_stride, int k, int R, int L, int NH, int NKV, int HD) {
    const long w = (long)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (w >= (long)R * L * NH) return;  // whole warps
    const int lane = threadIdx.x % 32, h = (int)(w % NH), g = h / (NH / NKV);
    const long n = w / NH;  // row r * L + slot i
    const size_t C3 = (size_t)(NH + 2 * NKV) * HD;
    const float scale = 1.0f / sqrtf((float)HD);
    float q[4], acc[4];  // dims lane + 32t (HD <= 128)
    const Tin* qrow = qkv + (size_t)k * step_stride + n * C3 + (size_t)h * HD;
#pragma unroll
    for (int t = 0; t < 4; t++) {
        const int d = lane + 32 * t;
        q[t] = d < HD ? (float)qrow[d] : 0.0f;
        acc[t] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    for (int s = 1; s <= k; s++) {
        const Tin* krow = qkv + (size_t)s * step_stride + n * C3 + (size_t)(NH + g) * HD;
        const Tin* vrow = krow + (size_t)NKV * HD;
        float dot = 0.0f;
#pragma unroll
        for (int t = 0; t < 4; t++) {
            const int d = lane + 32 * t;
            if (d < HD) dot += q[t] * (float)krow[d];
        }
        const float x = warp_sum(dot) * scale, mn = fmaxf(m, x), c = expf(m - mn), p = expf(x - mn);
        l = l * c + p;
#pragma unroll
        for (int t = 0; t < 4; t++) {
            const int d = lane + 32 * t;
            acc[t] = acc[t] * c + (d < HD ? p * (float)vrow[d] : 0.0f);
        }
        m = mn;
    }
    const size_t li = ((size_t)(n / L) * NH + h) * L + n % L;
    const float lse1 = lse[li], lse2 = m + logf(l), mx = fmaxf(lse1, lse2);
    const float w1 = expf(lse1 - mx), w2 = expf(lse2 - mx), inv = 1.0f / (w1 + w2);
    floatX* o = out + n * NH * HD + (size_t)h * HD;
#pragma unroll
    for (int t = 0; t < 4; t++) {
        const int d = lane + 32 * t;
        if (d < HD) o[d] = (floatX)(((float)o[d] * w1 + acc[t] / l * w2) * inv);
    }
    __syncwarp();  // every lane has read lse1 before lane 0 overwrites it
    if (lane == 0) lse[li] = mx + logf(w1 + w2);
}

template <class Tin>
void flash_thought_attention_forward(floatX* out, float* lse, const Tin* qkv, size_t step_stride, int k, int R,
                                     int L, int NH, int NKV, int HD, cudaStream_t stream) {
    if (R <= 0 || L <= 0) return;
    if (k > 0 && (step_stride * sizeof(Tin)) % 16 != 0)
        fatal("flash thought attention: the step stride is not a multiple of 16 bytes");
    flash_forward_dispatch(out, lse, qkv, qkv + (size_t)k * step_stride, R, L, NH, NKV, HD, stream);
    if (k == 0) return;
    const long warps = (long)R * L * NH;
    LAUNCH(flash_own_slot_merge_kernel<Tin>, (unsigned)CEIL_DIV(warps, 4), 128, 0, stream, out, lse, qkv, step_stride,
           k, R, L, NH, NKV, HD);
    cudaCheckLaunch();
}

// =====================================================================================================
// Backward, FlashAttention-2 style and deterministic (no atomics; every gradient element has one owner):
//   flash_bwd_dot_kernel:  D = Σ_d dO·O per (row, head), the softmax-backward row term;
//   flash_bwd_dkv_kernel:  one block per (64-key tile, kv head, batch) owns dK and dV of those keys; it
//                          walks every query tile at or after the diagonal of every head of the group
//                          (Q, dO, LSE, D double-buffered), recomputing Pᵀ = exp(Sᵀ - LSE) from K·Qᵀ:
//                          dV += Pᵀ·dO, dPᵀ = V·dOᵀ, dSᵀ = Pᵀ∘(dPᵀ - D), dK += dSᵀ·Q;
//   flash_bwd_dq_kernel:   one block per (64-query tile, head, batch) owns dQ: S = Q·Kᵀ, P, dP = dO·Vᵀ,
//                          dS, dQ += dS·K over the key tiles up to the diagonal.
// Fragment plumbing as in the forward: a row-major [row][d] tile is an A operand (ldmatrix), the
// n-major B operand of a product over d (ldmatrix), or the k-major B operand of a product over rows
// (ldmatrix.trans); P and dS are re-packed from accumulators to A fragments in registers. dqkv is
// overwritten (rows < T). Inputs staged as in the forward (Tin = float or bf16); D and LSE stay fp32.
// =====================================================================================================

// D[b, h, i] = Σ_d dO[i, h, d] · O[i, h, d]: one warp per (row, head)
template <class Tin>
__global__ void flash_bwd_dot_kernel(float* D,             // (B, NH, T)
                                     const Tin* dout,      // (B*T, NH*HD)
                                     const floatX* out,    // (B*T, NH*HD)
                                     int B, int T, int NH, int HD) {
    const long w = (long)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (w >= (long)B * T * NH) return;  // whole warps
    const int lane = threadIdx.x % 32, h = (int)(w % NH);
    const long n = w / NH;  // row b*T + i
    const floatX* o = out + n * NH * HD + (size_t)h * HD;
    const Tin* g = dout + n * NH * HD + (size_t)h * HD;
    float s = 0.0f;
    for (int d = lane; d < HD; d += 32) s += (float)o[d] * (float)g[d];
    s = warp_sum(s);
    if (lane == 0) D[((n / T) * NH + h) * T + n % T] = s;
}

// Repacks 16 rows x 64 columns of fp32 accumulators (8 n-blocks) into bf16 A fragments of 4 k-chunks.
__device__ __forceinline__ void flash_pack_a(uint32_t (&a)[4][4], const float (&x)[8][4]) {
#pragma unroll
    for (int nb = 0; nb < 8; nb++) {
        a[nb / 2][(nb % 2) * 2 + 0] = pack_bf16x2(x[nb][0], x[nb][1]);
        a[nb / 2][(nb % 2) * 2 + 1] = pack_bf16x2(x[nb][2], x[nb][3]);
    }
}

// dS = P̃∘(dP − D_row or D_col) in place in `dp`, with P̃ the bf16 P of the A fragments `pa` (as
// flash_pack_a laid it out): keeping P only as bf16 saves 16 registers per lane; dS is rounded to bf16
// for its own product anyway. d[e] is D of the element's row (dq) or column (dkv) for e = 0..3 of
// n-block nb: d(nb, e).
template <class DFn>
__device__ __forceinline__ void flash_ds(float (&dp)[8][4], const uint32_t (&pa)[4][4], DFn d) {
#pragma unroll
    for (int nb = 0; nb < 8; nb++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const uint32_t w = pa[nb / 2][(nb % 2) * 2 + (e >> 1)];
            const uint32_t bits = (e & 1) ? (w & 0xffff0000u) : (w << 16);
            float pv;
            memcpy(&pv, &bits, sizeof pv);
            dp[nb][e] = pv * (dp[nb][e] - d(nb, e));
        }
}

// acc(16 x 64) = A(16 rows of `a_tile`, rows a_row0..) · B(64 rows of `b_tile`)ᵀ, both [row][d] tiles of
// HD columns: the product over d. acc is overwritten.
template <int HD>
__device__ __forceinline__ void flash_rows_dot_rows(float (&acc)[8][4], const __nv_bfloat16* a_tile, int a_row0,
                                                    const __nv_bfloat16* b_tile, int lane) {
    constexpr int ROW = FlashSmem<HD>::ROW;
#pragma unroll
    for (int nb = 0; nb < 8; nb++) acc[nb][0] = acc[nb][1] = acc[nb][2] = acc[nb][3] = 0.0f;
#pragma unroll
    for (int kc = 0; kc < HD / 16; kc++) {
        uint32_t a[4];
        ldmatrix_x4(a, a_tile + (a_row0 + lane % 16) * ROW + kc * 16 + (lane / 16) * 8);
#pragma unroll
        for (int np = 0; np < 4; np++) {
            uint32_t kb[4];
            ldmatrix_x4(kb, b_tile + (np * 16 + lane % 8 + (lane / 16) * 8) * ROW + kc * 16 + ((lane / 8) % 2) * 8);
            const uint32_t b0[2] = {kb[0], kb[1]}, b1[2] = {kb[2], kb[3]};
            mma_bf16_16816(acc[2 * np], a, b0);
            mma_bf16_16816(acc[2 * np + 1], a, b1);
        }
    }
}

// acc(16 x HD) += A(16 x 64, fragments) · tile(64 rows x HD): the product over the tile's rows.
template <int HD>
__device__ __forceinline__ void flash_frag_times_rows(float (&acc)[HD / 8][4], const uint32_t (&a)[4][4],
                                                      const __nv_bfloat16* tile, int lane) {
    constexpr int ROW = FlashSmem<HD>::ROW;
#pragma unroll
    for (int kk = 0; kk < 4; kk++) {
#pragma unroll
        for (int dp = 0; dp < HD / 16; dp++) {
            uint32_t vb[4];
            ldmatrix_x4_trans(vb, tile + (kk * 16 + lane % 16) * ROW + dp * 16 + (lane / 16) * 8);
            const uint32_t b0[2] = {vb[0], vb[1]}, b1[2] = {vb[2], vb[3]};
            mma_bf16_16816(acc[2 * dp], a[kk], b0);
            mma_bf16_16816(acc[2 * dp + 1], a[kk], b1);
        }
    }
}

template <int HD>
struct FlashBwdSmem {
    static constexpr int TILE = FlashSmem<HD>::TILE;
    // 6 bf16 tiles (two fixed, two double-buffered pairs) + 2 x 2 x 64 floats of row statistics
    static constexpr size_t BYTES = (size_t)6 * TILE * sizeof(__nv_bfloat16) + 4 * 64 * sizeof(float);
};

// Stages fp32 row statistics (LSE in log2 units, D) of 64 query rows; rows past T get LSE = +inf so
// that their P is 0.
__device__ __forceinline__ void flash_stage_stats(float* s_lse2, float* s_d, const float* lse, const float* D,
                                                  int q0, int T) {
    for (int r = threadIdx.x; r < 64; r += blockDim.x) {
        const bool ok = q0 + r < T;
#ifdef CUEMU
        ::cuemu::smem_store(s_lse2 + r, 4, 0xffffffffu);  // two st.shared.f32 of whole warps (64 rows)
        ::cuemu::smem_store(s_d + r, 4, 0xffffffffu);
#endif
        s_lse2[r] = ok ? lse[q0 + r] * 1.4426950408889634f : INFINITY;
        s_d[r] = ok ? D[q0 + r] : 0.0f;
    }
}

template <int HD, class Tin>
__global__ void __launch_bounds__(32 * FLASH_WARPS, 1)  // 1: let ptxas use up to 255 registers, not spill
    flash_bwd_dkv_kernel(floatX* dqkv,       // (B*T, (NH + 2*NKV) * HD): K and V columns written (or +=)
                         const Tin* qkv,     // (B*T, (NH + 2*NKV) * HD): keys and values
                         const Tin* qsrc,    // same layout: the queries
                         const Tin* dout,    // (B*T, NH*HD)
                         const float* lse,   // (B, NH, T)
                         const float* D,     // (B, NH, T)
                         int T, int NH, int NKV, int accumulate) {
    using S = FlashSmem<HD>;
    constexpr int DB = HD / 8;
    DYN_SMEM(__nv_bfloat16, smem);
    __nv_bfloat16* sK = smem;
    __nv_bfloat16* sV = sK + S::TILE;
    __nv_bfloat16* sQ = sV + S::TILE;       // [2][TILE]
    __nv_bfloat16* sdO = sQ + 2 * S::TILE;  // [2][TILE]
    float* s_lse2 = reinterpret_cast<float*>(sdO + 2 * S::TILE);  // [2][64]
    float* s_d = s_lse2 + 2 * 64;                                  // [2][64]

    const int kt = gridDim.x - 1 - blockIdx.x, g = blockIdx.y, b = blockIdx.z;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int group = NH / NKV, k0 = kt * 64, nqt = (T + 63) / 64;
    const size_t C3 = (size_t)(NH + 2 * NKV) * HD, CO = (size_t)NH * HD;
    const Tin* base = qkv + (size_t)b * T * C3;
    const float scale = 1.0f / sqrtf((float)HD), scale_log2 = scale * 1.4426950408889634f;

    flash_stage<HD>(sK, base + (size_t)k0 * C3 + (size_t)(NH + g) * HD, C3, 64, T - k0);
    flash_stage<HD>(sV, base + (size_t)k0 * C3 + (size_t)(NH + NKV + g) * HD, C3, 64, T - k0);
    // the iterations: every head of the group x every query tile from the diagonal on
    const int per_head = nqt - kt, iters = group * per_head;
    auto stage = [&](int it, int buf) {
        const int h = g * group + it / per_head, q0 = (kt + it % per_head) * 64;
        flash_stage<HD>(sQ + buf * S::TILE, qsrc + (size_t)b * T * C3 + (size_t)q0 * C3 + (size_t)h * HD, C3, 64,
                        T - q0);
        flash_stage<HD>(sdO + buf * S::TILE, dout + ((size_t)b * T + q0) * CO + (size_t)h * HD, CO, 64, T - q0);
        flash_stage_stats(s_lse2 + buf * 64, s_d + buf * 64, lse + ((size_t)b * NH + h) * T,
                          D + ((size_t)b * NH + h) * T, q0, T);
    };
    stage(0, 0);
    cp_async_commit();

    float dk[DB][4], dv[DB][4];
#pragma unroll
    for (int i = 0; i < DB; i++)
#pragma unroll
        for (int e = 0; e < 4; e++) dk[i][e] = dv[i][e] = 0.0f;
    const int key_lo = k0 + warp * 16 + lane / 4;  // this lane's keys: key_lo and key_lo + 8

    for (int it = 0; it < iters; it++) {
        const int cur = it & 1;
        if (it + 1 < iters) stage(it + 1, cur ^ 1);
        cp_async_commit();
        cp_async_wait_group<1>();
        __syncthreads();
        const __nv_bfloat16* tQ = sQ + cur * S::TILE;
        const __nv_bfloat16* tdO = sdO + cur * S::TILE;
        const float* tl = s_lse2 + cur * 64;
        const float* td = s_d + cur * 64;
        const int q0 = (kt + it % per_head) * 64;

        // Pᵀ (16 keys x 64 queries): element (nb, e) is key key_lo + 8(e/2), query q0 + 8nb + 2(lane%4) + e%2
        float p[8][4];
        flash_rows_dot_rows<HD>(p, sK, warp * 16, tQ, lane);
#pragma unroll
        for (int nb = 0; nb < 8; nb++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int qi = nb * 8 + 2 * (lane % 4) + (e & 1);
                const bool masked = q0 == k0 && q0 + qi < key_lo + 8 * (e >> 1);  // causal: key > query
                p[nb][e] = masked ? 0.0f : exp2f(p[nb][e] * scale_log2 - tl[qi]);
            }
        uint32_t pa[4][4];
        flash_pack_a(pa, p);
        flash_frag_times_rows<HD>(dv, pa, tdO, lane);  // dV += Pᵀ·dO

        float dp[8][4];
        flash_rows_dot_rows<HD>(dp, sV, warp * 16, tdO, lane);  // dPᵀ = V·dOᵀ
        flash_ds(dp, pa, [&](int nb, int e) { return td[nb * 8 + 2 * (lane % 4) + (e & 1)]; });
        flash_pack_a(pa, dp);
        flash_frag_times_rows<HD>(dk, pa, tQ, lane);  // dK += dSᵀ·Q (scaled at the end)
        __syncthreads();  // the next iteration refills the other buffers, the one after this one
    }

#pragma unroll
    for (int r = 0; r < 2; r++) {
        const int key = key_lo + 8 * r;
        if (key >= T) continue;
        floatX* row = dqkv + ((size_t)b * T + key) * C3 + 2 * (lane % 4);
        floatX* dkr = row + (size_t)(NH + g) * HD;
        floatX* dvr = row + (size_t)(NH + NKV + g) * HD;
#pragma unroll
        for (int i = 0; i < DB; i++) {
            const float k0v = dk[i][2 * r] * scale, k1v = dk[i][2 * r + 1] * scale;
            dkr[i * 8] = (floatX)(accumulate ? (float)dkr[i * 8] + k0v : k0v);
            dkr[i * 8 + 1] = (floatX)(accumulate ? (float)dkr[i * 8 + 1] + k1v : k1v);
            dvr[i * 8] = (floatX)(accumulate ? (float)dvr[i * 8] + dv[i][2 * r] : dv[i][2 * r]);
            dvr[i * 8 + 1] = (floatX)(accumulate ? (float)dvr[i * 8 + 1] + dv[i][2 * r + 1] : dv[i][2 * r + 1]);
        }
    }
}

template <int HD, class Tin>
__global__ void __launch_bounds__(32 * FLASH_WARPS, 1)  // 1: let ptxas use up to 255 registers, not spill
    flash_bwd_dq_kernel(floatX* dqkv,       // (B*T, (NH + 2*NKV) * HD): Q columns written (or +=)
                        const Tin* qkv,     // (B*T, (NH + 2*NKV) * HD): keys and values
                        const Tin* qsrc,    // same layout: the queries
                        const Tin* dout,    // (B*T, NH*HD)
                        const float* lse,   // (B, NH, T)
                        const float* D,     // (B, NH, T)
                        int T, int NH, int NKV, int accumulate) {
    using S = FlashSmem<HD>;
    constexpr int DB = HD / 8;
    DYN_SMEM(__nv_bfloat16, smem);
    __nv_bfloat16* sQ = smem;
    __nv_bfloat16* sdO = sQ + S::TILE;
    __nv_bfloat16* sK = sdO + S::TILE;     // [2][TILE]
    __nv_bfloat16* sV = sK + 2 * S::TILE;  // [2][TILE]

    const int qt = gridDim.x - 1 - blockIdx.x, h = blockIdx.y, b = blockIdx.z;
    const int g = h / (NH / NKV), warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int q0 = qt * 64;
    const size_t C3 = (size_t)(NH + 2 * NKV) * HD, CO = (size_t)NH * HD;
    const Tin* base = qkv + (size_t)b * T * C3;
    const Tin* kbase = base + (size_t)(NH + g) * HD;
    const Tin* vbase = base + (size_t)(NH + NKV + g) * HD;
    const float scale = 1.0f / sqrtf((float)HD), scale_log2 = scale * 1.4426950408889634f;

    flash_stage<HD>(sQ, qsrc + (size_t)b * T * C3 + (size_t)q0 * C3 + (size_t)h * HD, C3, 64, T - q0);
    flash_stage<HD>(sdO, dout + ((size_t)b * T + q0) * CO + (size_t)h * HD, CO, 64, T - q0);
    flash_stage<HD>(sK, kbase, C3, 64, T);
    flash_stage<HD>(sV, vbase, C3, 64, T);
    cp_async_commit();

    const int row_lo = q0 + warp * 16 + lane / 4;  // this lane's queries: row_lo and row_lo + 8
    float lse2[2], drow[2];
#pragma unroll
    for (int r = 0; r < 2; r++) {
        const int row = row_lo + 8 * r;
        const size_t at = ((size_t)b * NH + h) * T + row;
        lse2[r] = row < T ? lse[at] * 1.4426950408889634f : INFINITY;
        drow[r] = row < T ? D[at] : 0.0f;
    }
    float dq[DB][4];
#pragma unroll
    for (int i = 0; i < DB; i++) dq[i][0] = dq[i][1] = dq[i][2] = dq[i][3] = 0.0f;

    for (int j = 0; j <= qt; j++) {
        const int cur = j & 1;
        if (j + 1 <= qt) {
            const int k1 = (j + 1) * 64;
            flash_stage<HD>(sK + (cur ^ 1) * S::TILE, kbase + (size_t)k1 * C3, C3, 64, T - k1);
            flash_stage<HD>(sV + (cur ^ 1) * S::TILE, vbase + (size_t)k1 * C3, C3, 64, T - k1);
        }
        cp_async_commit();
        cp_async_wait_group<1>();
        __syncthreads();
        const __nv_bfloat16* tK = sK + cur * S::TILE;
        const __nv_bfloat16* tV = sV + cur * S::TILE;

        // P (16 queries x 64 keys): element (nb, e) is query row_lo + 8(e/2), key j*64 + 8nb + 2(lane%4) + e%2
        float p[8][4];
        flash_rows_dot_rows<HD>(p, sQ, warp * 16, tK, lane);
#pragma unroll
        for (int nb = 0; nb < 8; nb++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int key = j * 64 + nb * 8 + 2 * (lane % 4) + (e & 1);
                const bool masked = j == qt && key > row_lo + 8 * (e >> 1);
                p[nb][e] = masked ? 0.0f : exp2f(p[nb][e] * scale_log2 - lse2[e >> 1]);
            }
        uint32_t da[4][4];
        flash_pack_a(da, p);
        float ds[8][4];
        flash_rows_dot_rows<HD>(ds, sdO, warp * 16, tV, lane);  // dP = dO·Vᵀ
        flash_ds(ds, da, [&](int, int e) { return drow[e >> 1]; });
        flash_pack_a(da, ds);
        flash_frag_times_rows<HD>(dq, da, tK, lane);  // dQ += dS·K (scaled at the end)
        __syncthreads();
    }

#pragma unroll
    for (int r = 0; r < 2; r++) {
        const int row = row_lo + 8 * r;
        if (row >= T) continue;
        floatX* dqr = dqkv + ((size_t)b * T + row) * C3 + (size_t)h * HD + 2 * (lane % 4);
#pragma unroll
        for (int i = 0; i < DB; i++) {
            const float a = dq[i][2 * r] * scale, c = dq[i][2 * r + 1] * scale;
            dqr[i * 8] = (floatX)(accumulate ? (float)dqr[i * 8] + a : a);
            dqr[i * 8 + 1] = (floatX)(accumulate ? (float)dqr[i * 8 + 1] + c : c);
        }
    }
}

static float* flash_scratch;
static size_t flash_scratch_n;
static float* flash_scratch_get(size_t n, cudaStream_t stream) {  // grow-only; stream order makes reuse safe
    if (n > flash_scratch_n) {
        if (flash_scratch) cudaCheck(cudaFreeAsync(flash_scratch, stream));
        cudaCheck(cudaMallocAsync((void**)&flash_scratch, n * sizeof(float), stream));
        flash_scratch_n = n;
    }
    return flash_scratch;
}

// dq_dst / qsrc: the queries' gradient and values (the Q columns used), dkv_dst / qkv: the keys' and
// values'; the same buffers for plain attention, step k's and step 0's blocks for thought attention.
template <int HD, class Tin>
static void flash_attention_backward_hd(floatX* dkv_dst, floatX* dq_dst, const Tin* dout, const floatX* out,
                                        const float* lse, const Tin* qkv, const Tin* qsrc, int B, int T, int NH,
                                        int NKV, int accumulate, cudaStream_t stream) {
    float* D = flash_scratch_get((size_t)B * NH * T, stream);
    const long warps = (long)B * T * NH;
    LAUNCH(flash_bwd_dot_kernel<Tin>, (unsigned)CEIL_DIV(warps, 8), 256, 0, stream, D, dout, out, B, T, NH, HD);
    cudaCheckLaunch();
    const size_t smem = FlashBwdSmem<HD>::BYTES;
    cudaCheck(cudaFuncSetAttribute(flash_bwd_dkv_kernel<HD, Tin>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                   (int)smem));
    cudaCheck(cudaFuncSetAttribute(flash_bwd_dq_kernel<HD, Tin>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                   (int)smem));
    LAUNCH((flash_bwd_dkv_kernel<HD, Tin>), dim3(CEIL_DIV(T, 64), NKV, B), 32 * FLASH_WARPS, smem, stream, dkv_dst,
           qkv, qsrc, dout, lse, D, T, NH, NKV, accumulate);
    cudaCheckLaunch();
    LAUNCH((flash_bwd_dq_kernel<HD, Tin>), dim3(CEIL_DIV(T, 64), NH, B), 32 * FLASH_WARPS, smem, stream, dq_dst, qkv,
           qsrc, dout, lse, D, T, NH, NKV, accumulate);
    cudaCheckLaunch();
}

// dqkv (overwritten) from dout (in the input type), out and lse of the forward. Same shapes and
// restrictions as flash_attention_forward.
template <class Tin>
static void flash_backward_dispatch(floatX* dkv_dst, floatX* dq_dst, const Tin* dout, const floatX* out,
                                    const float* lse, const Tin* qkv, const Tin* qsrc, int B, int T, int NH, int NKV,
                                    int HD, int accumulate, cudaStream_t stream) {
    if (NKV <= 0 || NH % NKV != 0) fatal("flash attention backward: NH=%d is not a multiple of NKV=%d", NH, NKV);
    if ((uintptr_t)qkv % 16 != 0 || (uintptr_t)qsrc % 16 != 0 || (uintptr_t)dout % 16 != 0)
        fatal("flash attention backward: qkv or dout is not 16-byte aligned");
#define FLASH_BWD_HD(hd) \
    flash_attention_backward_hd<hd>(dkv_dst, dq_dst, dout, out, lse, qkv, qsrc, B, T, NH, NKV, accumulate, stream)
    switch (HD) {
    case 64: FLASH_BWD_HD(64); break;
    case 80: FLASH_BWD_HD(80); break;
    case 96: FLASH_BWD_HD(96); break;
    case 128: FLASH_BWD_HD(128); break;
    default: fatal("flash attention backward: head dim %d not built (64, 80, 96, 128)", HD);
    }
#undef FLASH_BWD_HD
}

template <class Tin>
void flash_attention_backward(floatX* dqkv, const Tin* dout, const floatX* out, const float* lse, const Tin* qkv,
                              int B, int T, int NH, int NKV, int HD, cudaStream_t stream) {
    if (T <= 0 || B <= 0) return;
    flash_backward_dispatch(dqkv, dqkv, dout, out, lse, qkv, qkv, B, T, NH, NKV, HD, 0, stream);
}

// ---- thought attention backward by decomposition (contract: thought_attention_backward in ops.h,
// accumulating). With the merged out and lse of the forward, the probabilities of both parts are
// exact pieces of one softmax and D = dO·O is shared, so part 1 is the flash backward of step k's
// queries against step 0's keys (dq += into step k, dk/dv += into step 0) and part 2 adds the own-slot
// keys' terms: one warp per (row, slot, kv head) owns dk/dv of that slot's keys at steps 1..k (no other
// query sees them) and adds dq after part 1, in a fixed order.
template <class Tin>
__global__ void __launch_bounds__(128)
    flash_own_slot_backward_kernel(floatX* dqkv,         // steps 0..k like qkv: += dq (step k), dk/dv (1..k)
                                   const Tin* dout,      // (R*L, NH*HD)
                                   const floatX* out,    // (R*L, NH*HD), merged
                                   const float* lse,     // (R, NH, L), merged
                                   const Tin* qkv, size_t step_stride, int k, int R, int L, int NH, int NKV,
                                   int HD) {
    const long w = (long)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (w >= (long)R * L * NKV) return;  // whole warps
    const int lane = threadIdx.x % 32, g = (int)(w % NKV), group = NH / NKV;
    const long n = w / NKV;  // row r * L + slot i
    const size_t C3 = (size_t)(NH + 2 * NKV) * HD, CO = (size_t)NH * HD;
    const float scale = 1.0f / sqrtf((float)HD);
    for (int h = g * group; h < (g + 1) * group; h++) {
        float q[4], go[4], dq[4];
        const Tin* qrow = qkv + (size_t)k * step_stride + n * C3 + (size_t)h * HD;
        float dsum = 0.0f;
#pragma unroll
        for (int t = 0; t < 4; t++) {
            const int d = lane + 32 * t;
            q[t] = d < HD ? (float)qrow[d] : 0.0f;
            go[t] = d < HD ? (float)dout[n * CO + (size_t)h * HD + d] : 0.0f;
            dsum += d < HD ? go[t] * (float)out[n * CO + (size_t)h * HD + d] : 0.0f;
            dq[t] = 0.0f;
        }
        const float Di = warp_sum(dsum), li = lse[((size_t)(n / L) * NH + h) * L + n % L];
        for (int s = 1; s <= k; s++) {
            const size_t koff = (size_t)s * step_stride + n * C3 + (size_t)(NH + g) * HD;
            const size_t voff = koff + (size_t)NKV * HD;
            float xs = 0.0f, dps = 0.0f;
#pragma unroll
            for (int t = 0; t < 4; t++) {
                const int d = lane + 32 * t;
                if (d < HD) xs += q[t] * (float)qkv[koff + d], dps += go[t] * (float)qkv[voff + d];
            }
            const float p = expf(warp_sum(xs) * scale - li), ds = p * (warp_sum(dps) - Di);
#pragma unroll
            for (int t = 0; t < 4; t++) {
                const int d = lane + 32 * t;
                if (d >= HD) continue;
                dq[t] += ds * (float)qkv[koff + d];
                dqkv[koff + d] = (floatX)((float)dqkv[koff + d] + ds * q[t] * scale);
                dqkv[voff + d] = (floatX)((float)dqkv[voff + d] + p * go[t]);
            }
        }
        floatX* dqr = dqkv + (size_t)k * step_stride + n * C3 + (size_t)h * HD;
#pragma unroll
        for (int t = 0; t < 4; t++) {
            const int d = lane + 32 * t;
            if (d < HD) dqr[d] = (floatX)((float)dqr[d] + dq[t] * scale);
        }
    }
}

template <class Tin>
void flash_thought_attention_backward(floatX* dqkv, const Tin* dout, const floatX* out, const float* lse,
                                      const Tin* qkv, size_t step_stride, int k, int R, int L, int NH, int NKV, int HD,
                                      cudaStream_t stream) {
    if (R <= 0 || L <= 0) return;
    if (k > 0 && (step_stride * sizeof(Tin)) % 16 != 0)
        fatal("flash thought attention: the step stride is not a multiple of 16 bytes");
    flash_backward_dispatch(dqkv, dqkv + (size_t)k * step_stride, dout, out, lse, qkv, qkv + (size_t)k * step_stride,
                            R, L, NH, NKV, HD, 1, stream);
    if (k == 0) return;
    const long warps = (long)R * L * NKV;
    LAUNCH(flash_own_slot_backward_kernel<Tin>, (unsigned)CEIL_DIV(warps, 4), 128, 0, stream, dqkv, dout, out, lse, qkv,
           step_stride, k, R, L, NH, NKV, HD);
    cudaCheckLaunch();
}
