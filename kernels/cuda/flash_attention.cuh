/*
 * Causal grouped-query attention forward on tensor cores, FlashAttention-2 style. NOT wired into the
 * backend table yet: its products are bf16 (fp32 accumulate), and the backend contract (ops.h) is
 * fp32 today, so it waits for the bf16 precision issue; tests/test_flash_attention.sh checks it on
 * the emulator against the CPU oracle with a bf16-derived tolerance. Same contract as
 * attention_forward in kernels/ops.h: qkv rows hold NH query heads, then NKV key heads, then NKV value
 * heads, each HD wide; query head h reads kv head h / (NH/NKV); scale 1/sqrt(HD); out (B*T, NH*HD),
 * lse (B, NH, T) natural-log log-sum-exp of the scaled scores.
 *
 * Work split. One block of 4 warps per (64-row tile, head block, batch); warp w owns tile rows
 * 16w..16w+15. GQA packing: when the group size NH/NKV is a power of two (1, 2, 4, 8, ...), a tile
 * row is a (query position, head) pair, position-major: 64/group positions x the group's heads, so
 * the heads of a group share every K/V tile load (K/V traffic per query / group). Other group sizes
 * run one head per block. Tiles are launched last-first, so the long causal rows start early.
 * Per 64-key tile: S = Q·Kᵀ (16x64 per warp) by mma m16n8k16 with Q and K fragments from shared
 * memory by ldmatrix (K row-major [key][d] is exactly the col-major B operand, so no transpose);
 * causal mask only on tiles with keys past the tile's first position; online softmax in registers (base-2 exponentials, the row
 * max and sum kept per lane and reduced over the 4 lanes of a row by two shuffles); P is re-packed
 * from the S accumulators into A fragments without touching memory (the C layout of two adjacent
 * n-blocks is the A layout of one k-chunk); O += P·V with V [key][d] loaded by ldmatrix.trans.
 *
 * Staging and precision. Shared memory holds bf16: Q (64 rows) and a double buffer of K and V tiles,
 * rows padded by 8 elements (16 bytes) so the 8 row addresses of an ldmatrix fall in distinct banks.
 *   Tin = __nv_bfloat16: cp.async 16-byte copies, tile j+1 in flight while tile j is computed
 *     (requires 16-byte aligned rows: HD and the row width are multiples of 8 elements, and qkv
 *     itself 16-byte aligned — checked by the launcher).
 *   Tin = float (today's floatX): 128-bit loads of 8 floats, rounded to bf16 by registers and stored
 *     to shared memory; synchronous (the next tile is staged before the current one is computed, so
 *     loads do not overlap the math). This is the contract/correctness path; speed comes with bf16
 *     activations.
 * Rows past T are zero-filled (a NaN there would survive P = 0 as 0·NaN). Products are exact in fp32;
 * the error is bf16 rounding of Q, K, V (and of P before P·V), unit roundoff 2^-8.
 * Shared memory: 5 · 64 · (HD+8) · 2 bytes = 46 KB (HD 64) ... 85 KB (HD 128), set per kernel
 * through cudaFuncSetAttribute when above 48 KB.
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
template <int HD>
__device__ __forceinline__ void flash_stage(__nv_bfloat16* dst, const __nv_bfloat16* src, size_t C3, int rows,
                                            int nvalid, int gp = 0) {
    constexpr int CHUNKS = HD / 8;
    for (int c = threadIdx.x; c < rows * CHUNKS; c += blockDim.x) {
        const int r = c / CHUNKS, d = (c % CHUNKS) * 8, pos = r >> gp;
        __nv_bfloat16* to = dst + r * FlashSmem<HD>::ROW + d;
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
        *reinterpret_cast<uint4*>(dst + r * FlashSmem<HD>::ROW + d) = v;
    }
}

template <int HD, class Tin>
__global__ void __launch_bounds__(32 * FLASH_WARPS)
    flash_attention_forward_kernel(floatX* out,      // (B*T, NH*HD)
                                   float* lse,       // (B, NH, T)
                                   const Tin* qkv,   // (B*T, (NH + 2*NKV) * HD)
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

    flash_stage<HD>(sQ, base + (size_t)q0 * C3 + (size_t)h0 * HD, C3, FLASH_BLOCK_Q, T - q0, gp);
    flash_stage<HD>(sK, kbase, C3, FLASH_BLOCK_K, T);
    flash_stage<HD>(sV, vbase, C3, FLASH_BLOCK_K, T);
    cp_async_commit();

    // scores in the log2 domain: exp(x·scale) = exp2(x·scale·log2 e)
    const float scale_log2 = 1.4426950408889634f / sqrtf((float)HD);
    float o[DB][4];
#pragma unroll
    for (int i = 0; i < DB; i++) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};  // rows lane/4 and lane/4 + 8 of the warp
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
                float x = s[nb][e] * scale_log2;
                if (diagonal) {
                    const int key = j * FLASH_BLOCK_K + nb * 8 + 2 * (lane % 4) + (e & 1);
                    if (key > pos[e >> 1]) x = -INFINITY;
                }
                s[nb][e] = x;
                mx[e >> 1] = fmaxf(mx[e >> 1], x);
            }
        float corr[2];
#pragma unroll
        for (int r = 0; r < 2; r++) {
            mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
            mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
            corr[r] = exp2f(m[r] - mx[r]);  // 0 on the first tile (m = -inf); key 0 keeps mx finite
            m[r] = mx[r];
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
            const float p0 = exp2f(s[nb][0] - m[0]), p1 = exp2f(s[nb][1] - m[0]);
            const float p2 = exp2f(s[nb][2] - m[1]), p3 = exp2f(s[nb][3] - m[1]);
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
    const size_t CO = (size_t)NH * HD;
#pragma unroll
    for (int r = 0; r < 2; r++) {
        const int row = pos[r], h = h0 + ((row_lo + 8 * r) & ((1 << gp) - 1));
        if (row >= T) continue;
        const float inv = 1.0f / l[r];  // l >= 1: the row max contributes exp2(0)
        floatX* orow = out + ((size_t)b * T + row) * CO + (size_t)h * HD + 2 * (lane % 4);
#pragma unroll
        for (int i = 0; i < DB; i++) {
            orow[i * 8] = (floatX)(o[i][2 * r] * inv);
            orow[i * 8 + 1] = (floatX)(o[i][2 * r + 1] * inv);
        }
        if (lane % 4 == 0) lse[((size_t)b * NH + h) * T + row] = (m[r] + log2f(l[r])) * 0.6931471805599453f;
    }
}

template <int HD, class Tin>
static void flash_attention_forward_hd(floatX* out, float* lse, const Tin* qkv, int B, int T, int NH, int NKV,
                                       cudaStream_t stream) {
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
    LAUNCH((flash_attention_forward_kernel<HD, Tin>), grid, 32 * FLASH_WARPS, smem, stream, out, lse, qkv, T, NH, NKV,
           gp);
    cudaCheckLaunch();
}

// Tin = float or __nv_bfloat16. HD must be 64, 80, 96 or 128; NH a multiple of NKV; qkv 16-byte aligned.
template <class Tin>
void flash_attention_forward(floatX* out, float* lse, const Tin* qkv, int B, int T, int NH, int NKV, int HD,
                             cudaStream_t stream) {
    if (T <= 0 || B <= 0) return;
    if (NKV <= 0 || NH % NKV != 0) fatal("flash_attention_forward: NH=%d is not a multiple of NKV=%d", NH, NKV);
    if ((uintptr_t)qkv % 16 != 0) fatal("flash_attention_forward: qkv is not 16-byte aligned");
    switch (HD) {
    case 64: flash_attention_forward_hd<64>(out, lse, qkv, B, T, NH, NKV, stream); break;
    case 80: flash_attention_forward_hd<80>(out, lse, qkv, B, T, NH, NKV, stream); break;
    case 96: flash_attention_forward_hd<96>(out, lse, qkv, B, T, NH, NKV, stream); break;
    case 128: flash_attention_forward_hd<128>(out, lse, qkv, B, T, NH, NKV, stream); break;
    default: fatal("flash_attention_forward: head dim %d not built (64, 80, 96, 128)", HD);
    }
}
