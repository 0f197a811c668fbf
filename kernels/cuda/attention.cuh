/*
 * Causal grouped-query attention, Quiet-STaR thought attention and generation-time cached attention
 * on CUDA (contracts in kernels/ops.h; the C reference in kernels/cpu is the oracle).
 *
 * Why this shape: thought attention is ordinary causal attention over the L step-0 keys plus, per
 * query, k extra keys of its own slot at steps 1..k (docs/quietstar.md §4). A dense (k+1)L-wide mask
 * would waste O(L²k) work and memory, so every kernel walks exactly the keys a query may see with a
 * flash-style online softmax (running max m, normalizer l, rescaled accumulator): nothing of size
 * L×L ever exists in memory, and the backward pass recomputes probabilities from the saved
 * log-sum-exp. Plain attention is the k = 0 case of the same kernels.
 *
 * Work split. One warp per (row r, slot i, kv head g), looping over the query heads of that group;
 * lane owns head dimensions d = lane, lane+32, ... (NT = HD/32 rounded up to 1, 2, 4 or 8 values, a
 * compile-time count so they live in registers; d ≥ HD is masked, so any HD ≤ 256 works). A dot
 * product is a per-lane partial sum and one warp_sum, which every lane of the warp executes: warps
 * leave early only as a whole, so no shuffle is ever divergent.
 *
 * Determinism without atomics: every gradient element has exactly one owner warp per call, and each
 * owner sums in a fixed order.
 *  - dq of (r, i, h) and the own-slot dk/dv of (r, i, g) at steps 1..k belong to the warp of
 *    (r, i, g): no other query sees those keys (they are private to slot i of row r).
 *  - the step-0 dk/dv of (r, j, g) belong to a second kernel's warp of (r, j, g), which loops over
 *    the queries i = j..L-1 of step k that see key j and keeps the sums in registers.
 * The row statistics D = Σ_d dO·O that both need are computed by the first backward kernel and kept
 * in a grow-only scratch buffer for the second (stream order makes that safe).
 *
 * Performance is secondary here: keys are read straight from global memory (L1/L2 catch the reuse by
 * neighbouring warps, which walk the same key rows). A shared-memory tiled version can replace the
 * inner loops later without changing the ownership scheme.
 */
#pragma once

#include "kernels/cuda/common.cuh"

#define ATTN_WARPS 4  // warps per block of the per-(row, slot, kv head) kernels

// Loads the HD-wide vector v into the lane's NT registers (dims lane + 32t); dims ≥ HD read as 0.
template <int NT>
__device__ __forceinline__ void attn_load(float (&x)[NT], const floatX* v, int HD, int lane) {
#pragma unroll
    for (int t = 0; t < NT; t++) {
        const int d = lane + 32 * t;
        x[t] = d < HD ? (float)v[d] : 0.0f;
    }
}

// Σ_d a_d · b[d] over the whole warp (every lane gets it); a in registers, b in memory.
template <int NT>
__device__ __forceinline__ float attn_dot(const float (&a)[NT], const floatX* b, int HD, int lane) {
    float s = 0.0f;
#pragma unroll
    for (int t = 0; t < NT; t++) {
        const int d = lane + 32 * t;
        if (d < HD) s += a[t] * (float)b[d];
    }
    return warp_sum(s);
}

// Decomposes a global warp index into (r, i, g): slot fastest, so the warps of a block walk
// neighbouring query rows against the same key rows (cache reuse).
__device__ __forceinline__ void attn_warp_coords(long w, int L, int NKV, int& r, int& i, int& g) {
    i = (int)(w % L);
    g = (int)((w / L) % NKV);
    r = (int)(w / ((long)L * NKV));
}

// ---- forward ---------------------------------------------------------------------------------------
// Query (step k, row r, slot i, head h) over the step-0 keys j = 0..i, then its own slot's keys at
// steps 1..k; online softmax; out = Σ p·v, lse = m + log l.
template <int NT>
__global__ void __launch_bounds__(32 * ATTN_WARPS)
    thought_attention_forward_kernel(floatX* out,         // (R*L, NH*HD)
                                     float* lse,          // (R, NH, L)
                                     const floatX* qkv,   // steps 0..k, (R*L, C3) each, stride step_stride
                                     size_t step_stride, int k, int R, int L, int NH, int NKV, int HD) {
    const long w = (long)blockIdx.x * ATTN_WARPS + threadIdx.x / 32;
    if (w >= (long)R * L * NKV) return;  // whole warps only
    const int lane = threadIdx.x % 32;
    int r, i, g;
    attn_warp_coords(w, L, NKV, r, i, g);
    const int C3 = (NH + 2 * NKV) * HD, CO = NH * HD, group = NH / NKV;
    const float scale = 1.0f / sqrtf((float)HD);
    const size_t n = (size_t)r * L + i;            // this query's row within a step block
    const floatX* krow0 = qkv + (size_t)r * L * C3 + (NH + g) * HD;  // step-0 key of slot 0
    const int koff = (NH + g) * HD, voff = (NH + NKV + g) * HD;

    for (int h = g * group; h < (g + 1) * group; h++) {
        float q[NT], acc[NT];
        attn_load<NT>(q, qkv + k * step_stride + n * C3 + h * HD, HD, lane);
#pragma unroll
        for (int t = 0; t < NT; t++) acc[t] = 0.0f;
        float m = -INFINITY, l = 0.0f;
        // keys: j = 0..i at step 0, then j = i+1..i+k standing for steps 1..k of slot i
        for (int j = 0; j <= i + k; j++) {
            const floatX* kj = j <= i ? krow0 + (size_t)j * C3 : qkv + (j - i) * step_stride + n * C3 + koff;
            const floatX* vj = kj + (voff - koff);
            const float s = attn_dot<NT>(q, kj, HD, lane) * scale;
            const float mn = fmaxf(m, s);
            const float c = expf(m - mn);  // 0 on the first key (m = -inf)
            const float p = expf(s - mn);
            l = l * c + p;
#pragma unroll
            for (int t = 0; t < NT; t++) {
                const int d = lane + 32 * t;
                acc[t] = acc[t] * c + (d < HD ? p * (float)vj[d] : 0.0f);
            }
            m = mn;
        }
        const float inv = 1.0f / l;  // l ≥ 1: the maximal key contributes exp(0)
        floatX* o = out + n * CO + h * HD;
#pragma unroll
        for (int t = 0; t < NT; t++) {
            const int d = lane + 32 * t;
            if (d < HD) o[d] = (floatX)(acc[t] * inv);
        }
        if (lane == 0) lse[((size_t)r * NH + h) * L + i] = m + logf(l);
    }
}

// ---- backward, part 1: dq (+=), own-slot dk/dv (+=) and the row statistics D ----------------------
// With p = exp(s − lse), dp = dO·v, D = dO·O:  ds = p (dp − D),  dq = scale Σ ds k,
// dk = scale ds q,  dv = p dO.
template <int NT>
__global__ void __launch_bounds__(32 * ATTN_WARPS)
    thought_attention_backward_dq_kernel(floatX* dqkv,         // like qkv, +=
                                         float* Dbuf,          // (R, NH, L) out: D = Σ dO·O
                                         const floatX* dout,   // (R*L, NH*HD)
                                         const floatX* out,    // (R*L, NH*HD)
                                         const float* lse,     // (R, NH, L)
                                         const floatX* qkv,    // steps 0..k
                                         size_t step_stride, int k, int R, int L, int NH, int NKV, int HD) {
    const long w = (long)blockIdx.x * ATTN_WARPS + threadIdx.x / 32;
    if (w >= (long)R * L * NKV) return;
    const int lane = threadIdx.x % 32;
    int r, i, g;
    attn_warp_coords(w, L, NKV, r, i, g);
    const int C3 = (NH + 2 * NKV) * HD, CO = NH * HD, group = NH / NKV;
    const float scale = 1.0f / sqrtf((float)HD);
    const size_t n = (size_t)r * L + i;
    const floatX* krow0 = qkv + (size_t)r * L * C3 + (NH + g) * HD;
    const int koff = (NH + g) * HD, voff = (NH + NKV + g) * HD;

    for (int h = g * group; h < (g + 1) * group; h++) {
        float q[NT], dO[NT], dq[NT];
        attn_load<NT>(q, qkv + k * step_stride + n * C3 + h * HD, HD, lane);
        attn_load<NT>(dO, dout + n * CO + h * HD, HD, lane);
        const float D = attn_dot<NT>(dO, out + n * CO + h * HD, HD, lane);
        const size_t si = ((size_t)r * NH + h) * L + i;
        if (lane == 0) Dbuf[si] = D;
        const float Li = lse[si];
#pragma unroll
        for (int t = 0; t < NT; t++) dq[t] = 0.0f;
        // step-0 keys j = 0..i: only dq here (their dk/dv belong to the second kernel)
        for (int j = 0; j <= i; j++) {
            const floatX* kj = krow0 + (size_t)j * C3;
            const floatX* vj = kj + (voff - koff);
            const float p = expf(attn_dot<NT>(q, kj, HD, lane) * scale - Li);
            const float ds = p * (attn_dot<NT>(dO, vj, HD, lane) - D);
#pragma unroll
            for (int t = 0; t < NT; t++) {
                const int d = lane + 32 * t;
                if (d < HD) dq[t] += ds * (float)kj[d];
            }
        }
        // own-slot keys of steps 1..k: this warp also owns their dk/dv
        for (int j = 1; j <= k; j++) {
            const size_t off = j * step_stride + n * C3 + koff;
            const floatX* kj = qkv + off;
            const floatX* vj = kj + (voff - koff);
            const float p = expf(attn_dot<NT>(q, kj, HD, lane) * scale - Li);
            const float ds = p * (attn_dot<NT>(dO, vj, HD, lane) - D);
            floatX* dk = dqkv + off;
            floatX* dv = dk + (voff - koff);
#pragma unroll
            for (int t = 0; t < NT; t++) {
                const int d = lane + 32 * t;
                if (d < HD) {
                    dq[t] += ds * (float)kj[d];
                    dk[d] += scale * ds * q[t];
                    dv[d] += p * dO[t];
                }
            }
        }
        floatX* dqh = dqkv + k * step_stride + n * C3 + h * HD;
#pragma unroll
        for (int t = 0; t < NT; t++) {
            const int d = lane + 32 * t;
            if (d < HD) dqh[d] += scale * dq[t];
        }
    }
}

// ---- backward, part 2: step-0 dk/dv (+=) -----------------------------------------------------------
// Warp of (r, key slot j, g): every query of step k at slots i = j..L-1 sees key j; sum their
// contributions over the group's heads in registers, then add once.
template <int NT>
__global__ void __launch_bounds__(32 * ATTN_WARPS)
    thought_attention_backward_dkv_kernel(floatX* dqkv,        // like qkv, += into step 0
                                          const float* Dbuf,   // (R, NH, L)
                                          const floatX* dout,  // (R*L, NH*HD)
                                          const float* lse,    // (R, NH, L)
                                          const floatX* qkv,   // steps 0..k
                                          size_t step_stride, int k, int R, int L, int NH, int NKV, int HD) {
    const long w = (long)blockIdx.x * ATTN_WARPS + threadIdx.x / 32;
    if (w >= (long)R * L * NKV) return;
    const int lane = threadIdx.x % 32;
    int r, j, g;
    attn_warp_coords(w, L, NKV, r, j, g);
    const int C3 = (NH + 2 * NKV) * HD, CO = NH * HD, group = NH / NKV;
    const float scale = 1.0f / sqrtf((float)HD);
    const size_t nj = (size_t)r * L + j;
    const int koff = (NH + g) * HD, voff = (NH + NKV + g) * HD;
    float kj[NT], vj[NT], dk[NT], dv[NT];
    attn_load<NT>(kj, qkv + nj * C3 + koff, HD, lane);
    attn_load<NT>(vj, qkv + nj * C3 + voff, HD, lane);
#pragma unroll
    for (int t = 0; t < NT; t++) dk[t] = dv[t] = 0.0f;
    const floatX* qk = qkv + k * step_stride;
    for (int h = g * group; h < (g + 1) * group; h++) {
        const float* Lh = lse + ((size_t)r * NH + h) * L;
        const float* Dh = Dbuf + ((size_t)r * NH + h) * L;
        for (int i = j; i < L; i++) {
            const size_t ni = (size_t)r * L + i;
            const floatX* qi = qk + ni * C3 + h * HD;
            const floatX* doi = dout + ni * CO + h * HD;
            const float s = attn_dot<NT>(kj, qi, HD, lane) * scale;
            const float p = expf(s - Lh[i]);
            const float dp = attn_dot<NT>(vj, doi, HD, lane);
            const float ds = p * (dp - Dh[i]);
#pragma unroll
            for (int t = 0; t < NT; t++) {
                const int d = lane + 32 * t;
                if (d < HD) {
                    dk[t] += ds * (float)qi[d];
                    dv[t] += p * (float)doi[d];
                }
            }
        }
    }
    floatX* dkp = dqkv + nj * C3 + koff;
    floatX* dvp = dqkv + nj * C3 + voff;
#pragma unroll
    for (int t = 0; t < NT; t++) {
        const int d = lane + 32 * t;
        if (d < HD) {
            dkp[d] += scale * dk[t];
            dvp[d] += dv[t];
        }
    }
}

// ---- cached attention (generation): split-KV with GQA packing ---------------------------------------
// One query row against n = n1 + n2 cached keys. The keys are cut into S splits (S from n and NKV only,
// so a row's result does not depend on what else runs); block (split s, kv head g) takes the G = NH/NKV
// query heads of group g over its split: each tile of CACHED_TILE key and value rows is read once from
// global memory into shared memory by the whole block and used by every head of the group (GQA
// packing: K/V traffic once per group, not once per head), one warp per head (heads in passes of the
// block's warps when G exceeds them) with its own online softmax. Each (split, head) leaves its
// unnormalized accumulator and (max, sum) in a scratch buffer; a combine kernel merges the S partials
// per head by log-sum-exp in split order (fixed: deterministic) and normalizes, as FlashAttention's
// split-KV decoding does. The grid has S·NKV blocks (S up to 2·132/NKV), so every SM of an H100 has
// work even for one row, where the former kernel ran NH blocks and re-read K/V for every head.
// Batched decoding (cached_attention_batched) runs the same kernels over a third grid dimension of rows,
// each row reading its own lengths and cache slot from device memory and using its own split count, so
// a row's result is bitwise the single-row op's.
#define CACHED_TILE 16         // key rows per shared-memory tile
#define CACHED_MAX_WARPS 8     // warps per block (one query head each per pass)
#define CACHED_MIN_SPLIT 64    // keys per split at least
#define CACHED_TARGET_BLOCKS 264

// Split count S and keys per split for n keys and NKV kv heads: at least CACHED_MIN_SPLIT keys per
// split, about CACHED_TARGET_BLOCKS blocks per row (two waves' worth on a 132-SM H100).
__host__ __device__ inline void cached_attention_splits(int n, int NKV, int* S, int* chunk) {
    int s = (n + CACHED_MIN_SPLIT - 1) / CACHED_MIN_SPLIT;
    const int cap = CACHED_TARGET_BLOCKS / NKV > 1 ? CACHED_TARGET_BLOCKS / NKV : 1;
    if (s > cap) s = cap;
    if (s < 1) s = 1;
    *chunk = n > 0 ? (n + s - 1) / s : 1;
    *S = n > 0 ? (n + *chunk - 1) / *chunk : 1;
}

// One row's view: its lengths and cache pointers (batched: from device arrays; single: the arguments).
struct CachedRow {
    const floatX *q, *k1, *v1, *k2, *v2;
    int n1, n2;
};
__device__ __forceinline__ CachedRow cached_row(int r, const floatX* q, size_t q_stride, const floatX* k1,
                                                const floatX* v1, size_t stride1, const floatX* k2, const floatX* v2,
                                                size_t stride2, const int32_t* slot, const int32_t* n1a,
                                                const int32_t* n2a, int n1, int n2) {
    const size_t sl = slot ? (size_t)slot[r] : 0;
    CachedRow c = {q + (size_t)r * q_stride, k1 + sl * stride1, v1 + sl * stride1, k2 + sl * stride2,
                   v2 + sl * stride2, n1a ? n1a[r] : n1, n2a ? n2a[r] : n2};
    return c;
}
#define CACHED_ROW_ARGS                                                                                       \
    const floatX *q, size_t q_stride, const floatX *k1, const floatX *v1, size_t stride1, const floatX *k2, \
        const floatX *v2, size_t stride2, const int32_t *slot, const int32_t *n1a, const int32_t *n2a, int n1s, int n2s
#define CACHED_ROW_PASS q, q_stride, k1, v1, stride1, k2, v2, stride2, slot, n1a, n2a, n1s, n2s

template <int NT>
__global__ void __launch_bounds__(32 * CACHED_MAX_WARPS)
    cached_attention_split_kernel(float* part_o,      // (rows, S_max, NH, HD) unnormalized accumulators
                                  float* part_ml,     // (rows, S_max, NH, 2): running max, sum
                                  CACHED_ROW_ARGS, int S_max, int NH, int NKV, int HD) {
    __shared__ float s_k[CACHED_TILE][32 * NT], s_v[CACHED_TILE][32 * NT];
    const int s = blockIdx.x, g = blockIdx.y, row = blockIdx.z, G = NH / NKV, W = blockDim.x / 32;
    const CachedRow c = cached_row(row, CACHED_ROW_PASS);
    const floatX *q1 = c.q, *k1r = c.k1, *v1r = c.v1, *k2r = c.k2, *v2r = c.v2;
    const int n1 = c.n1, n2 = c.n2;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, KW = NKV * HD, n = n1 + n2;
    int S, chunk;
    cached_attention_splits(n, NKV, &S, &chunk);
    if (s >= S) return;  // the whole block: this row has fewer splits than the longest
    part_o += (size_t)row * S_max * NH * HD;
    part_ml += (size_t)row * S_max * NH * 2;
    const int j0 = s * chunk, j1 = min(n, j0 + chunk);
    const float scale = 1.0f / sqrtf((float)HD);
    for (int pass = 0; pass < G; pass += W) {  // the same trip count for every warp: barriers stay uniform
        const int hg = pass + warp, h = g * G + hg;
        const bool active = hg < G;
        float qr[NT], acc[NT];
        attn_load<NT>(qr, q1 + (size_t)(active ? h : 0) * HD, HD, lane);  // an idle warp's values are unused
#pragma unroll
        for (int t = 0; t < NT; t++) acc[t] = 0.0f;
        float m = -INFINITY, l = 0.0f;
        for (int t0 = j0; t0 < j1; t0 += CACHED_TILE) {
            const int nk = min(CACHED_TILE, j1 - t0);
            __syncthreads();  // the previous tile is no longer read
            for (int e = threadIdx.x; e < nk * HD; e += blockDim.x) {
                const int r = e / HD, d = e % HD, j = t0 + r;
                const size_t off = (size_t)g * HD + d;
                s_k[r][d] = (float)(j < n1 ? k1r[(size_t)j * KW + off] : k2r[(size_t)(j - n1) * KW + off]);
                s_v[r][d] = (float)(j < n1 ? v1r[(size_t)j * KW + off] : v2r[(size_t)(j - n1) * KW + off]);
            }
            __syncthreads();
            if (!active) continue;  // whole warps: no divergent shuffle
            for (int r = 0; r < nk; r++) {
                float dot = 0.0f;
#pragma unroll
                for (int t = 0; t < NT; t++) {
                    const int d = lane + 32 * t;
                    if (d < HD) dot += qr[t] * s_k[r][d];
                }
                const float sc = warp_sum(dot) * scale;
                const float mn = fmaxf(m, sc);
                const float c = expf(m - mn);
                const float p = expf(sc - mn);
                l = l * c + p;
#pragma unroll
                for (int t = 0; t < NT; t++) {
                    const int d = lane + 32 * t;
                    acc[t] = acc[t] * c + (d < HD ? p * s_v[r][d] : 0.0f);
                }
                m = mn;
            }
        }
        if (active) {
            float* po = part_o + ((size_t)s * NH + h) * HD;
#pragma unroll
            for (int t = 0; t < NT; t++) {
                const int d = lane + 32 * t;
                if (d < HD) po[d] = acc[t];
            }
            if (lane == 0) {
                part_ml[((size_t)s * NH + h) * 2] = m;
                part_ml[((size_t)s * NH + h) * 2 + 1] = l;
            }
        }
    }
}

// out[h] = Σ_s e^{m_s - M} o_s / Σ_s e^{m_s - M} l_s, splits in order; empty splits weigh nothing and no
// keys at all give out = 0, as on the CPU. One block per (head, row).
__global__ void cached_attention_combine_kernel(floatX* out,  // (rows, NH*HD)
                                                const float* part_o, const float* part_ml, const int32_t* n1a,
                                                const int32_t* n2a, int n1s, int n2s, int S_max, int NH, int NKV,
                                                int HD) {
    const int h = blockIdx.x, row = blockIdx.y;
    int S, chunk;
    cached_attention_splits((n1a ? n1a[row] : n1s) + (n2a ? n2a[row] : n2s), NKV, &S, &chunk);
    part_o += (size_t)row * S_max * NH * HD;
    part_ml += (size_t)row * S_max * NH * 2;
    out += (size_t)row * NH * HD;
    float M = -INFINITY;
    for (int s = 0; s < S; s++) M = fmaxf(M, part_ml[((size_t)s * NH + h) * 2]);
    float L = 0.0f;
    for (int s = 0; s < S; s++) {
        const float m = part_ml[((size_t)s * NH + h) * 2];
        L += m == -INFINITY ? 0.0f : expf(m - M) * part_ml[((size_t)s * NH + h) * 2 + 1];
    }
    const float inv = L > 0.0f ? 1.0f / L : 0.0f;
    for (int d = threadIdx.x; d < HD; d += blockDim.x) {
        float o = 0.0f;
        for (int s = 0; s < S; s++) {
            const float m = part_ml[((size_t)s * NH + h) * 2];
            if (m != -INFINITY) o += expf(m - M) * part_o[((size_t)s * NH + h) * HD + d];
        }
        out[(size_t)h * HD + d] = (floatX)(o * inv);
    }
}

// ---- launchers ---------------------------------------------------------------------------------------

// Values per lane for head dimension HD, rounded up to a power of two so four instantiations cover
// every HD ≤ 256.
static int attn_nt(int NH, int NKV, int HD, const char* who) {
    if (HD <= 0 || HD > 256) fatal("%s: head dimension %d not in 1..256", who, HD);
    if (NKV <= 0 || NH % NKV != 0) fatal("%s: %d query heads not a multiple of %d kv heads", who, NH, NKV);
    const int nt = CEIL_DIV(HD, 32);
    return nt <= 1 ? 1 : nt <= 2 ? 2 : nt <= 4 ? 4 : 8;
}

#define ATTN_DISPATCH(nt, kernel, grid, block, ...)                                \
    switch (nt) {                                                                  \
        case 1: LAUNCH(kernel<1>, grid, block, 0, qstar_stream, __VA_ARGS__); break; \
        case 2: LAUNCH(kernel<2>, grid, block, 0, qstar_stream, __VA_ARGS__); break; \
        case 4: LAUNCH(kernel<4>, grid, block, 0, qstar_stream, __VA_ARGS__); break; \
        default: LAUNCH(kernel<8>, grid, block, 0, qstar_stream, __VA_ARGS__); break; \
    }

// The D statistics of the backward pass, (R, NH, L) floats; grows stream-ordered and is never
// shrunk (the sizes repeat every step).
static float* attn_scratch;
static size_t attn_scratch_n;
static float* attn_scratch_get(size_t n) {
    if (n > attn_scratch_n) {
        if (attn_scratch) cudaCheck(cudaFreeAsync(attn_scratch, qstar_stream));
        cudaCheck(cudaMallocAsync((void**)&attn_scratch, n * sizeof(float), qstar_stream));
        attn_scratch_n = n;
    }
    return attn_scratch;
}

static void cuda_thought_attention_forward(floatX* out, float* lse, const floatX* qkv, size_t step_stride, int k,
                                           int R, int L, int NH, int NKV, int HD) {
    NVTX_RANGE_FN();
    const int nt = attn_nt(NH, NKV, HD, "thought_attention_forward");
    const long warps = (long)R * L * NKV;
    if (warps == 0) return;
    const unsigned grid = (unsigned)CEIL_DIV(warps, ATTN_WARPS);
    ATTN_DISPATCH(nt, thought_attention_forward_kernel, grid, 32 * ATTN_WARPS, out, lse, qkv, step_stride, k, R, L,
                  NH, NKV, HD);
    cudaCheckLaunch();
}

static void cuda_thought_attention_backward(floatX* dqkv, const floatX* dout, const floatX* out, const float* lse,
                                            const floatX* qkv, size_t step_stride, int k, int R, int L, int NH,
                                            int NKV, int HD) {
    NVTX_RANGE_FN();
    const int nt = attn_nt(NH, NKV, HD, "thought_attention_backward");
    const long warps = (long)R * L * NKV;
    if (warps == 0) return;
    const unsigned grid = (unsigned)CEIL_DIV(warps, ATTN_WARPS);
    float* D = attn_scratch_get((size_t)R * NH * L);
    ATTN_DISPATCH(nt, thought_attention_backward_dq_kernel, grid, 32 * ATTN_WARPS, dqkv, D, dout, out, lse, qkv,
                  step_stride, k, R, L, NH, NKV, HD);
    cudaCheckLaunch();
    ATTN_DISPATCH(nt, thought_attention_backward_dkv_kernel, grid, 32 * ATTN_WARPS, dqkv, (const float*)D, dout, lse,
                  qkv, step_stride, k, R, L, NH, NKV, HD);
    cudaCheckLaunch();
}

// Plain causal attention: thought attention with k = 0 over B rows of T.
static void cuda_attention_forward(floatX* out, float* lse, const floatX* qkv, int B, int T, int NH, int NKV,
                                   int HD) {
    cuda_thought_attention_forward(out, lse, qkv, 0, 0, B, T, NH, NKV, HD);
}

// dqkv is overwritten here (ops.h), while the thought kernels accumulate: clear it first.
static void cuda_attention_backward(floatX* dqkv, const floatX* dout, const floatX* out, const float* lse,
                                    const floatX* qkv, int B, int T, int NH, int NKV, int HD) {
    const size_t bytes = sizeof(floatX) * (size_t)B * T * (NH + 2 * NKV) * HD;
    if (bytes) cudaCheck(cudaMemsetAsync(dqkv, 0, bytes, qstar_stream));
    cuda_thought_attention_backward(dqkv, dout, out, lse, qkv, 0, 0, B, T, NH, NKV, HD);
}

// The partial results of the splits, grow-only and stream-ordered like attn_scratch.
static float* cached_scratch;
static size_t cached_scratch_n;

static void cached_attention_launch(floatX* out, CACHED_ROW_ARGS, int N, int max_n, int NH, int NKV, int HD) {
    const int nt = attn_nt(NH, NKV, HD, "cached_attention_forward");
    if (NH == 0 || N <= 0) return;
    // every row's S <= min(ceil(n/64), cap) <= the same for max_n (monotone in n)
    const int cap = CACHED_TARGET_BLOCKS / NKV > 1 ? CACHED_TARGET_BLOCKS / NKV : 1;
    int S_max = CEIL_DIV(max_n, CACHED_MIN_SPLIT);
    S_max = S_max > cap ? cap : S_max < 1 ? 1 : S_max;
    const size_t need = (size_t)N * S_max * NH * (HD + 2);
    if (need > cached_scratch_n) {
        if (cached_scratch) cudaCheck(cudaFreeAsync(cached_scratch, qstar_stream));
        cudaCheck(cudaMallocAsync((void**)&cached_scratch, need * sizeof(float), qstar_stream));
        cached_scratch_n = need;
    }
    float *part_o = cached_scratch, *part_ml = cached_scratch + (size_t)N * S_max * NH * HD;
    const int G = NH / NKV, W = G < CACHED_MAX_WARPS ? G : CACHED_MAX_WARPS;
    const dim3 grid((unsigned)S_max, (unsigned)NKV, (unsigned)N);
    ATTN_DISPATCH(nt, cached_attention_split_kernel, grid, 32 * W, part_o, part_ml, CACHED_ROW_PASS, S_max, NH, NKV,
                  HD);
    cudaCheckLaunch();
    LAUNCH(cached_attention_combine_kernel, dim3((unsigned)NH, (unsigned)N), HD < 128 ? 64 : 128, 0, qstar_stream, out,
           part_o, part_ml, n1a, n2a, n1s, n2s, S_max, NH, NKV, HD);
    cudaCheckLaunch();
}

static void cuda_cached_attention_forward(floatX* out, const floatX* q, const floatX* k1, const floatX* v1, int n1,
                                          const floatX* k2, const floatX* v2, int n2, int NH, int NKV, int HD) {
    NVTX_RANGE_FN();
    cached_attention_launch(out, q, 0, k1, v1, 0, k2, v2, 0, NULL, NULL, NULL, n1, n2, 1, n1 + n2, NH, NKV, HD);
}

static void cuda_cached_attention_batched(floatX* out, const floatX* q, size_t q_stride, const floatX* k1,
                                          const floatX* v1, size_t stride1, const floatX* k2, const floatX* v2,
                                          size_t stride2, const int32_t* slot, const int32_t* n1, const int32_t* n2,
                                          int N, int max_n, int NH, int NKV, int HD) {
    NVTX_RANGE_FN();
    if (N > 65535) fatal("cached_attention_batched: %d rows (at most 65535 per call)", N);
    cached_attention_launch(out, q, q_stride, k1, v1, stride1, k2, v2, stride2, slot, n1, n2, 0, 0, N, max_n, NH, NKV,
                            HD);
}
