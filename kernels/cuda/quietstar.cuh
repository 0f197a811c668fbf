/*
 * The small ops of the Quiet-STaR step on the GPU: masking thought tokens out of the sampler,
 * Gumbel-max sampling, broadcasting the start/end embeddings, the mixing head's pieces (bias, ReLU,
 * concatenation, the weighted mix), rolling base hidden states to line up with each talk step, and
 * the REINFORCE advantage. Almost all are memory-bound elementwise maps, written as coalesced
 * grid-stride loops. The reductions are deterministic without float atomics:
 *  - gumbel_sample: one block per row; each thread draws one Philox block of 4 uniforms per group of 4
 *    columns (counter layout exactly as kernels/cpu/quietstar_ops.c), keeps its first best column,
 *    and the block combines (score, index) pairs by shuffles and shared memory, ties going to the
 *    smaller index: the CPU's first argmax, independent of the block shape.
 *  - column_sum: blocks of 32 columns x 8 row phases summing in double, partials added in a fixed
 *    order (as the RMSNorm weight gradient).
 *  - mix_backward: one warp per row, dw accumulated in double by a fixed shuffle tree.
 *  - quietstar_advantage: one thread per position, sums over talk steps and passes in the CPU's order,
 *    so rewards and advantages are bitwise the CPU's.
 *  - quietstar_stats: one 256-thread block per statistic, each thread a strided partial sum in double,
 *    the block's partials added by a fixed shuffle tree: deterministic, not the CPU's sequential order.
 * shift_tokens and row_weights build the step's inputs, targets and loss weights on the device, so the
 * step never sends ids or weights through the host.
 */
#pragma once

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/elementwise.cuh"

#define GUMBEL_BLOCK 256
#define QS_COLSUM_WARPS 8
#define MIX_BLOCK 256  // 8 warps = 8 rows per block

// Grid-stride loop over the elements [0, total) of a kernel launched with elementwise_grid(total).
#define QS_FOR(i, total)                                                                  \
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x,                        \
                i##_stride_ = (size_t)gridDim.x * blockDim.x;                             \
         i < (total); i += i##_stride_)

__global__ void mask_columns_kernel(floatX* x,  // (N, V), columns [lo, hi) set
                                    int N, int V, int lo, int hi, float value) {
    const int W = hi - lo;
    QS_FOR(i, (size_t)N * W) x[(i / W) * V + lo + i % W] = to_x(value);
}

// (score, index) of the better of two candidates: the larger score, ties to the smaller index.
__device__ __forceinline__ void argmax_combine(float& best, int& arg, float other_best, int other_arg) {
    if (other_best > best || (other_best == best && other_arg < arg)) {
        best = other_best;
        arg = other_arg;
    }
}

__device__ __forceinline__ void warp_argmax(float& best, int& arg) {
    for (int o = 16; o > 0; o >>= 1) {
        const float ob = __shfl_xor_sync(0xffffffffu, best, o);
        const int oa = __shfl_xor_sync(0xffffffffu, arg, o);
        argmax_combine(best, arg, ob, oa);
    }
}

__global__ void gumbel_sample_kernel(int32_t* tokens,       // (N)
                                     const floatX* logits,  // (N, V)
                                     int V, int L, uint32_t seed_lo, uint32_t seed_hi, uint32_t step, int k) {
    __shared__ float s_best[32];
    __shared__ int s_arg[32];
    const int n = blockIdx.x;
    const floatX* z = logits + (size_t)n * V;
    const uint32_t slot = (uint32_t)(n % L), rowk = ((uint32_t)(n / L) << 8) | (uint32_t)k;
    // No candidate yet: -inf with an index past every column (a row of -inf scores picks 0, as the CPU).
    float best = -INFINITY;
    int arg = INT32_MAX;
    for (int v0 = 4 * threadIdx.x; v0 < V; v0 += 4 * blockDim.x) {
        const Philox4 r = philox4x32((uint32_t)(v0 >> 2), slot, rowk, step, seed_lo, seed_hi);
#pragma unroll
        for (int u = 0; u < 4; u++) {
            if (v0 + u < V) {
                const float g = -logf(-logf(philox_uniform(r.v[u])));
                const float score = to_float(z[v0 + u]) + g;
                if (score > best) {  // strict: the first best column of this thread (columns ascend)
                    best = score;
                    arg = v0 + u;
                }
            }
        }
    }
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nwarps = blockDim.x / 32;
    warp_argmax(best, arg);
    if (lane == 0) {
        s_best[warp] = best;
        s_arg[warp] = arg;
    }
    __syncthreads();
    if (warp == 0) {
        best = lane < nwarps ? s_best[lane] : -INFINITY;
        arg = lane < nwarps ? s_arg[lane] : INT32_MAX;
        warp_argmax(best, arg);
        if (lane == 0) tokens[n] = arg == INT32_MAX ? 0 : arg;
    }
}

__global__ void row_broadcast_kernel(floatX* out,       // (N, H)
                                     const floatX* vec, // (H)
                                     float scale, int N, int H) {
    QS_FOR(i, (size_t)N * H) out[i] = to_x(scale * to_float(vec[i % H]));
}

// out[c] += scale * Σ_n x[n][c]; blocks of 32 columns x QS_COLSUM_WARPS row phases, fixed order.
__global__ void column_sum_kernel(floatX* out,       // (H) +=
                                  const floatX* x,   // (N, H)
                                  float scale, int N, int H) {
    __shared__ double partial[QS_COLSUM_WARPS][32];
    const int lane = threadIdx.x % 32, phase = threadIdx.x / 32;
    const int c = blockIdx.x * 32 + lane;
    double acc = 0.0;
    if (c < H)
        for (int n = phase; n < N; n += QS_COLSUM_WARPS) acc += to_float(x[(size_t)n * H + c]);
    partial[phase][lane] = acc;
    __syncthreads();
    if (phase == 0 && c < H) {
        double total = 0.0;
        for (int p = 0; p < QS_COLSUM_WARPS; p++) total += partial[p][lane];
        out[c] = to_x(to_float(out[c]) + scale * (float)total);
    }
}

__global__ void add_bias_kernel(floatX* x,          // (N, H) +=
                                const floatX* bias, // (H)
                                int N, int H) {
    QS_FOR(i, (size_t)N * H) x[i] = to_x(to_float(x[i]) + to_float(bias[i % H]));
}

__global__ void relu_forward_kernel(floatX* out,        // (n)
                                    const floatX* inp,  // (n)
                                    size_t n) {
    QS_FOR(i, n) out[i] = to_float(inp[i]) > 0.0f ? inp[i] : to_x(0.0f);
}

__global__ void relu_backward_kernel(floatX* dinp,        // (n)
                                     const floatX* dout,  // (n)
                                     const floatX* out,   // (n) the forward's output
                                     size_t n) {
    QS_FOR(i, n) dinp[i] = to_float(out[i]) > 0.0f ? dout[i] : to_x(0.0f);
}

__global__ void concat_columns_kernel(floatX* out,      // (N, A+B)
                                      const floatX* a,  // (N, A)
                                      const floatX* b,  // (N, B)
                                      int N, int A, int B) {
    const int W = A + B;
    QS_FOR(i, (size_t)N * W) {
        const size_t n = i / W;
        const int c = (int)(i % W);
        out[i] = c < A ? a[n * A + c] : b[n * B + (c - A)];
    }
}

__global__ void split_columns_backward_kernel(floatX* da,          // (N, A) +=
                                              floatX* db,          // (N, B) +=
                                              const floatX* dout,  // (N, A+B)
                                              int N, int A, int B) {
    const int W = A + B;
    QS_FOR(i, (size_t)N * W) {
        const size_t n = i / W;
        const int c = (int)(i % W);
        floatX* d = c < A ? &da[n * A + c] : &db[n * B + (c - A)];
        *d = to_x(to_float(*d) + to_float(dout[i]));
    }
}

// out[r, i] = inp[r, (i + s) mod L]
__global__ void roll_rows_kernel(floatX* out,        // (R*L, H)
                                 const floatX* inp,  // (R*L, H)
                                 int R, int L, int H, int s) {
    QS_FOR(idx, (size_t)R * L * H) {
        const size_t n = idx / H, c = idx % H;
        const size_t r = n / L, i = n % L;
        out[idx] = inp[(r * L + (i + s) % L) * H + c];
    }
}

// dinp[r, i] += dout[r, (i - s) mod L]: each destination row has exactly one source row, no races.
__global__ void roll_rows_backward_kernel(floatX* dinp,        // (R*L, H) +=
                                          const floatX* dout,  // (R*L, H)
                                          int R, int L, int H, int s) {
    QS_FOR(idx, (size_t)R * L * H) {
        const size_t n = idx / H, c = idx % H;
        const int r = (int)(n / L), i = (int)(n % L);
        dinp[idx] = to_x(to_float(dinp[idx]) + to_float(dout[((size_t)r * L + (i - s % L + L) % L) * H + c]));
    }
}

__global__ void mix_forward_kernel(floatX* out,            // (N, H)
                                   const floatX* base,     // (N, H)
                                   const floatX* thought,  // (N, H)
                                   const floatX* w,        // (N)
                                   int N, int H) {
    QS_FOR(i, (size_t)N * H) {
        const float wn = to_float(w[i / H]);
        out[i] = to_x((1.0f - wn) * to_float(base[i]) + wn * to_float(thought[i]));
    }
}

// One warp per row: dbase += (1-w) dout, dthought += w dout, dw = Σ_h dout (thought - base) in double.
__global__ void mix_backward_kernel(floatX* dbase,          // (N, H) +=
                                    floatX* dthought,       // (N, H) +=
                                    floatX* dw,             // (N) overwritten
                                    const floatX* dout,     // (N, H)
                                    const floatX* base,     // (N, H)
                                    const floatX* thought,  // (N, H)
                                    const floatX* w,        // (N)
                                    int N, int H) {
    const int lane = threadIdx.x % 32;
    const int n = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (n >= N) return;  // whole warp leaves together
    const float wn = to_float(w[n]);
    double acc = 0.0;
    for (int c = lane; c < H; c += 32) {
        const size_t i = (size_t)n * H + c;
        const float d = to_float(dout[i]);
        dbase[i] = to_x(to_float(dbase[i]) + (1.0f - wn) * d);
        dthought[i] = to_x(to_float(dthought[i]) + wn * d);
        acc += (double)d * (to_float(thought[i]) - to_float(base[i]));
    }
    acc = warp_sum_double(acc);
    if (lane == 0) dw[n] = to_x((float)acc);
}

// reward[n] = Σ_s (base_losses[n+s] - talk_losses[s][n]) for i = n % L < L-1-T, else 0.
__global__ void quietstar_reward_kernel(float* reward,             // (B*P*L)
                                        const float* base_losses,  // (B*P*L)
                                        const float* talk_losses,  // (T, B*P*L)
                                        size_t RL, int L, int T) {
    QS_FOR(n, RL) {
        const int i = (int)(n % L);
        float r = 0.0f;
        if (i < L - 1 - T)
            for (int s = 0; s < T; s++) r += base_losses[n + s] - talk_losses[(size_t)s * RL + n];
        reward[n] = r;
    }
}

// advantage = max(0, reward - mean over the P passes of the same sequence and position).
__global__ void quietstar_advantage_kernel(float* advantage,     // (B*P*L)
                                           const float* reward,  // (B*P*L)
                                           size_t RL, int P, int L) {
    QS_FOR(n, RL) {
        const size_t b = n / ((size_t)P * L), i = n % L;
        float mean = 0.0f;
        if (P > 1) {
            for (int p = 0; p < P; p++) mean += reward[(b * P + p) * L + i];
            mean /= (float)P;
        }
        const float a = reward[n] - mean;
        advantage[n] = a > 0.0f ? a : 0.0f;
    }
}

static void cuda_mask_columns(floatX* x, int N, int V, int lo, int hi, float value) {
    NVTX_RANGE_FN();
    if (N <= 0 || hi <= lo) return;
    LAUNCH(mask_columns_kernel, elementwise_grid((size_t)N * (hi - lo)), ELEMENTWISE_BLOCK, 0, qstar_stream, x, N, V,
           lo, hi, value);
    cudaCheckLaunch();
}

static void cuda_gumbel_sample(int32_t* tokens, const floatX* logits, int N, int V, int L, uint64_t seed,
                               uint32_t step, int k) {
    NVTX_RANGE_FN();
    if (N <= 0) return;
    LAUNCH(gumbel_sample_kernel, N, GUMBEL_BLOCK, 0, qstar_stream, tokens, logits, V, L, (uint32_t)seed,
           (uint32_t)(seed >> 32), step, k);
    cudaCheckLaunch();
}

static void cuda_row_broadcast(floatX* out, const floatX* vec, float scale, int N, int H) {
    NVTX_RANGE_FN();
    if (N <= 0 || H <= 0) return;
    LAUNCH(row_broadcast_kernel, elementwise_grid((size_t)N * H), ELEMENTWISE_BLOCK, 0, qstar_stream, out, vec, scale,
           N, H);
    cudaCheckLaunch();
}

static void cuda_column_sum(floatX* out, const floatX* x, float scale, int N, int H) {
    NVTX_RANGE_FN();
    if (H <= 0) return;
    LAUNCH(column_sum_kernel, CEIL_DIV(H, 32), 32 * QS_COLSUM_WARPS, 0, qstar_stream, out, x, scale, N, H);
    cudaCheckLaunch();
}

static void cuda_add_bias(floatX* x, const floatX* bias, int N, int H) {
    NVTX_RANGE_FN();
    if (N <= 0 || H <= 0) return;
    LAUNCH(add_bias_kernel, elementwise_grid((size_t)N * H), ELEMENTWISE_BLOCK, 0, qstar_stream, x, bias, N, H);
    cudaCheckLaunch();
}

static void cuda_relu_forward(floatX* out, const floatX* inp, size_t n) {
    NVTX_RANGE_FN();
    if (n == 0) return;
    LAUNCH(relu_forward_kernel, elementwise_grid(n), ELEMENTWISE_BLOCK, 0, qstar_stream, out, inp, n);
    cudaCheckLaunch();
}

static void cuda_relu_backward(floatX* dinp, const floatX* dout, const floatX* out, size_t n) {
    NVTX_RANGE_FN();
    if (n == 0) return;
    LAUNCH(relu_backward_kernel, elementwise_grid(n), ELEMENTWISE_BLOCK, 0, qstar_stream, dinp, dout, out, n);
    cudaCheckLaunch();
}

static void cuda_concat_columns(floatX* out, const floatX* a, const floatX* b, int N, int A, int B) {
    NVTX_RANGE_FN();
    if (N <= 0 || A + B <= 0) return;
    LAUNCH(concat_columns_kernel, elementwise_grid((size_t)N * (A + B)), ELEMENTWISE_BLOCK, 0, qstar_stream, out, a, b,
           N, A, B);
    cudaCheckLaunch();
}

static void cuda_split_columns_backward(floatX* da, floatX* db, const floatX* dout, int N, int A, int B) {
    NVTX_RANGE_FN();
    if (N <= 0 || A + B <= 0) return;
    LAUNCH(split_columns_backward_kernel, elementwise_grid((size_t)N * (A + B)), ELEMENTWISE_BLOCK, 0, qstar_stream,
           da, db, dout, N, A, B);
    cudaCheckLaunch();
}

static void cuda_roll_rows(floatX* out, const floatX* inp, int R, int L, int H, int s) {
    NVTX_RANGE_FN();
    if (R <= 0 || L <= 0 || H <= 0) return;
    LAUNCH(roll_rows_kernel, elementwise_grid((size_t)R * L * H), ELEMENTWISE_BLOCK, 0, qstar_stream, out, inp, R, L,
           H, s);
    cudaCheckLaunch();
}

static void cuda_roll_rows_backward(floatX* dinp, const floatX* dout, int R, int L, int H, int s) {
    NVTX_RANGE_FN();
    if (R <= 0 || L <= 0 || H <= 0) return;
    LAUNCH(roll_rows_backward_kernel, elementwise_grid((size_t)R * L * H), ELEMENTWISE_BLOCK, 0, qstar_stream, dinp,
           dout, R, L, H, s);
    cudaCheckLaunch();
}

static void cuda_mix_forward(floatX* out, const floatX* base, const floatX* thought, const floatX* w, int N, int H) {
    NVTX_RANGE_FN();
    if (N <= 0 || H <= 0) return;
    LAUNCH(mix_forward_kernel, elementwise_grid((size_t)N * H), ELEMENTWISE_BLOCK, 0, qstar_stream, out, base, thought,
           w, N, H);
    cudaCheckLaunch();
}

static void cuda_mix_backward(floatX* dbase, floatX* dthought, floatX* dw, const floatX* dout, const floatX* base,
                              const floatX* thought, const floatX* w, int N, int H) {
    NVTX_RANGE_FN();
    if (N <= 0) return;
    LAUNCH(mix_backward_kernel, CEIL_DIV(N, MIX_BLOCK / 32), MIX_BLOCK, 0, qstar_stream, dbase, dthought, dw, dout,
           base, thought, w, N, H);
    cudaCheckLaunch();
}

static void cuda_quietstar_advantage(float* reward, float* advantage, const float* base_losses,
                                     const float* talk_losses, int B, int P, int L, int T) {
    NVTX_RANGE_FN();
    const size_t RL = (size_t)B * P * L;
    if (RL == 0) return;
    LAUNCH(quietstar_reward_kernel, elementwise_grid(RL), ELEMENTWISE_BLOCK, 0, qstar_stream, reward, base_losses,
           talk_losses, RL, L, T);
    cudaCheckLaunch();
    LAUNCH(quietstar_advantage_kernel, elementwise_grid(RL), ELEMENTWISE_BLOCK, 0, qstar_stream, advantage, reward, RL,
           P, L);
    cudaCheckLaunch();
}

__global__ void shift_tokens_kernel(int32_t* out, const int32_t* x, int N, int L, int shift, int limit, int32_t fill) {
    QS_FOR(n, (size_t)N) out[n] = (int)(n % L) < limit ? x[n + shift] : fill;
}

__global__ void row_weights_kernel(float* out, const float* per_row, float value, int N, int L, int limit) {
    QS_FOR(n, (size_t)N) out[n] = (int)(n % L) < limit ? value * (per_row ? per_row[n] : 1.0f) : 0.0f;
}

#define QS_STATS_BLOCK 256
// Block j computes statistic j of ops.h's list.
__global__ void __launch_bounds__(QS_STATS_BLOCK)
    quietstar_stats_kernel(double* stats, const float* base_losses, const float* talk_losses, const floatX* w,
                           const float* policy_losses, const float* reward, const float* advantage, int N, int L,
                           int T, int K) {
    __shared__ double partial[QS_STATS_BLOCK / 32];
    const int j = blockIdx.x;
    double acc = 0.0;
    for (int n = threadIdx.x; n < N; n += blockDim.x) {
        const int i = n % L;
        if (j == 0) {
            acc += base_losses[n];
        } else if (j <= T) {
            acc += talk_losses[(size_t)(j - 1) * N + n];
        } else if (j <= 2 * T) {
            const int s = j - 1 - T;
            if (i < L - 1 - s) acc += to_float(w[(size_t)s * N + n]);
        } else if (i < L - 1 - T) {
            const float a = advantage[n];
            if (j == 1 + 2 * T) {
                acc += reward[n];
            } else if (j == 2 + 2 * T) {
                acc += a;
            } else if (j == 3 + 2 * T) {
                acc += a > 0.0f;
            } else {
                float nll = 0.0f;
                for (int k = 0; k < K; k++) nll += policy_losses[(size_t)k * N + n];
                acc += __fmul_rn(a, nll);  // the product in float, as the CPU's (no contraction into the add)
            }
        }
    }
    acc = warp_sum_double(acc);
    if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = acc;
    __syncthreads();
    if (threadIdx.x == 0) {
        double total = 0.0;
        for (int wi = 0; wi < QS_STATS_BLOCK / 32; wi++) total += partial[wi];
        stats[j] = total;
    }
}

static void cuda_shift_tokens(int32_t* out, const int32_t* x, int N, int L, int shift, int limit, int32_t fill) {
    NVTX_RANGE_FN();
    if (N <= 0) return;
    LAUNCH(shift_tokens_kernel, elementwise_grid((size_t)N), ELEMENTWISE_BLOCK, 0, qstar_stream, out, x, N, L, shift,
           limit, fill);
    cudaCheckLaunch();
}

static void cuda_row_weights(float* out, const float* per_row, float value, int N, int L, int limit) {
    NVTX_RANGE_FN();
    if (N <= 0) return;
    LAUNCH(row_weights_kernel, elementwise_grid((size_t)N), ELEMENTWISE_BLOCK, 0, qstar_stream, out, per_row, value, N,
           L, limit);
    cudaCheckLaunch();
}

static void cuda_quietstar_stats(double* stats, const float* base_losses, const float* talk_losses, const floatX* w,
                                 const float* policy_losses, const float* reward, const float* advantage, int N,
                                 int L, int T, int K) {
    NVTX_RANGE_FN();
    LAUNCH(quietstar_stats_kernel, 2 * T + 5, QS_STATS_BLOCK, 0, qstar_stream, stats, base_losses, talk_losses, w,
           policy_losses, reward, advantage, N, L, T, K);
    cudaCheckLaunch();
}
