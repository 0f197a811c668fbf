/*
 * The CUDA backend tables (kernels/ops.h). The op families live one per header beside their
 * launchers; this file includes them all and fills a table, once per precision: compiled by nvcc it
 * is `backend_cuda` (fp32) or `backend_cuda_bf16`; compiled by g++ against the CPU emulator (emu/)
 * it is `backend_emu` or `backend_emu_bf16`, which the tests compare op by op with the C reference.
 * Memory, copies and the stream are kernels/cuda/runtime.cu's, shared by both.
 */
#include <string.h>

// One compile per precision (QSTAR_CUDA_BF16 = 0 or 1): floatX is float or __nv_bfloat16 in this file,
// and every kernel, launcher and static of the op headers lives in a namespace of its own, so the two
// objects link into one binary. System headers the op headers include come first, outside it.
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdio.h>

#include <algorithm>
#include <vector>

#if QSTAR_CUDA_BF16
#define QSTAR_FLOATX __nv_bfloat16
#define QSTAR_NS qstar_bf16
#else
#define QSTAR_FLOATX float
#define QSTAR_NS qstar_fp32
#endif
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/runtime.cuh"

namespace QSTAR_NS {
#include "kernels/cuda/matmul.cuh"
#include "kernels/cuda/attention.cuh"
#include "kernels/cuda/embedding.cuh"
#include "kernels/cuda/rmsnorm.cuh"
#include "kernels/cuda/rope.cuh"
#include "kernels/cuda/swiglu.cuh"
#include "kernels/cuda/elementwise.cuh"
#include "kernels/cuda/crossentropy.cuh"
#include "kernels/cuda/adamw.cuh"
#include "kernels/cuda/quietstar.cuh"
#include "kernels/cuda/flash_attention.cuh"

#if !QSTAR_CUDA_BF16
// Not in the fp32 table (bf16 tensor-core products; the bf16 table below uses its Tin = bf16 instances):
// instantiated here for bench_attention (v3: Tin = float) and the emulator checks, so that `make cuda`
// compiles them for sm_80/sm_90 and their ptxas report is checked for spills.
template void flash_attention_forward<float>(floatX*, float*, const float*, int, int, int, int, int, cudaStream_t);
template void flash_attention_forward<__nv_bfloat16>(floatX*, float*, const __nv_bfloat16*, int, int, int, int, int,
                                                     cudaStream_t);
template void flash_attention_backward<float>(floatX*, const float*, const floatX*, const float*, const float*, int, int,
                                              int, int, int, cudaStream_t);
template void flash_attention_backward<__nv_bfloat16>(floatX*, const __nv_bfloat16*, const floatX*, const float*,
                                                      const __nv_bfloat16*, int, int, int, int, int, cudaStream_t);
template void flash_thought_attention_forward<float>(floatX*, float*, const float*, size_t, int, int, int, int, int, int,
                                                     cudaStream_t);
template void flash_thought_attention_forward<__nv_bfloat16>(floatX*, float*, const __nv_bfloat16*, size_t, int, int,
                                                             int, int, int, int, cudaStream_t);
template void flash_thought_attention_backward<float>(floatX*, const float*, const floatX*, const float*, const float*,
                                                      size_t, int, int, int, int, int, int, cudaStream_t);
template void flash_thought_attention_backward<__nv_bfloat16>(floatX*, const __nv_bfloat16*, const floatX*,
                                                              const float*, const __nv_bfloat16*, size_t, int, int,
                                                              int, int, int, int, cudaStream_t);

#endif
}  // namespace QSTAR_NS
using namespace QSTAR_NS;

static double cuda_peak_flops_x(void) { return cuda_peak_flops(QSTAR_CUDA_BF16); }

// Attention: with bf16 storage the tensor-core kernels (flash_attention.cuh) for the head dims they are
// built for and 16-byte aligned rows (the forward also needs out 16-byte aligned: 16-byte row stores);
// otherwise (fp32 storage, other head dims) the fp32 kernels of attention.cuh.
static bool use_flash(int HD, const void* qkv, size_t stride_elems) {
    const bool hd = HD == 64 || HD == 80 || HD == 96 || HD == 128;
    return QSTAR_CUDA_BF16 && hd && (uintptr_t)qkv % 16 == 0 && stride_elems * sizeof(floatX) % 16 == 0;
}
static void attention_forward_x(floatX* out, float* lse, const floatX* qkv, int B, int T, int NH, int NKV, int HD) {
    if (use_flash(HD, qkv, 0) && (uintptr_t)out % 16 == 0)
        flash_attention_forward<floatX>(out, lse, qkv, B, T, NH, NKV, HD, qstar_stream);
    else cuda_attention_forward(out, lse, qkv, B, T, NH, NKV, HD);
}
static void attention_backward_x(floatX* dqkv, const floatX* dout, const floatX* out, const float* lse,
                                 const floatX* qkv, int B, int T, int NH, int NKV, int HD) {
    if (use_flash(HD, qkv, 0) && (uintptr_t)dout % 16 == 0)
        flash_attention_backward<floatX>(dqkv, dout, out, lse, qkv, B, T, NH, NKV, HD, qstar_stream);
    else cuda_attention_backward(dqkv, dout, out, lse, qkv, B, T, NH, NKV, HD);
}
static void thought_attention_forward_x(floatX* out, float* lse, const floatX* qkv, size_t step_stride, int k, int R,
                                        int L, int NH, int NKV, int HD) {
    if (use_flash(HD, qkv, step_stride) && (uintptr_t)out % 16 == 0)
        flash_thought_attention_forward<floatX>(out, lse, qkv, step_stride, k, R, L, NH, NKV, HD, qstar_stream);
    else cuda_thought_attention_forward(out, lse, qkv, step_stride, k, R, L, NH, NKV, HD);
}
static void thought_attention_backward_x(floatX* dqkv, const floatX* dout, const floatX* out, const float* lse,
                                         const floatX* qkv, size_t step_stride, int k, int R, int L, int NH, int NKV,
                                         int HD) {
    if (use_flash(HD, qkv, step_stride) && (uintptr_t)dout % 16 == 0)
        flash_thought_attention_backward<floatX>(dqkv, dout, out, lse, qkv, step_stride, k, R, L, NH, NKV, HD,
                                                 qstar_stream);
    else cuda_thought_attention_backward(dqkv, dout, out, lse, qkv, step_stride, k, R, L, NH, NKV, HD);
}

#if defined(CUEMU) && QSTAR_CUDA_BF16
#define QSTAR_BACKEND_SYMBOL backend_emu_bf16
#define QSTAR_BACKEND_NAME "emu-bf16"
#elif defined(CUEMU)
#define QSTAR_BACKEND_SYMBOL backend_emu
#define QSTAR_BACKEND_NAME "emu"
#elif QSTAR_CUDA_BF16
#define QSTAR_BACKEND_SYMBOL backend_cuda_bf16
#define QSTAR_BACKEND_NAME "cuda-bf16"
#else
#define QSTAR_BACKEND_SYMBOL backend_cuda
#define QSTAR_BACKEND_NAME "cuda"
#endif

// Designated initializers (C++20), in the declaration order of ops.h; backend_get() refuses a table
// with any op left NULL.
extern "C" const Backend QSTAR_BACKEND_SYMBOL = {
    .name = QSTAR_BACKEND_NAME,
    .precision = QSTAR_CUDA_BF16 ? "bf16" : "fp32",
    .x_bytes = sizeof(floatX),
    .alloc = cuda_alloc,
    .free = cuda_free,
    .upload = cuda_upload,
    .download = cuda_download,
    .copy = cuda_copy,
    .zero = cuda_zero,
    .sync = cuda_sync,
    .sync_count = cuda_sync_count,
    .range_push = cuda_range_push,
    .range_pop = cuda_range_pop,
    .profiler = cuda_profiler,
    .peak_flops = cuda_peak_flops_x,
    .embedding_forward = cuda_embedding_forward,
    .embedding_backward = cuda_embedding_backward,
    .rmsnorm_forward = cuda_rmsnorm_forward,
    .rmsnorm_backward = cuda_rmsnorm_backward,
    .add_rmsnorm_forward = cuda_add_rmsnorm_forward,
    .matmul_forward = cuda_matmul_forward,
    .matmul_backward = cuda_matmul_backward,
    .rope_forward = cuda_rope_forward,
    .rope_backward = cuda_rope_backward,
    .attention_forward = attention_forward_x,
    .attention_backward = attention_backward_x,
    .swiglu_forward = cuda_swiglu_forward,
    .swiglu_backward = cuda_swiglu_backward,
    .add = cuda_add,
    .scale = cuda_scale,
    .crossentropy_forward = cuda_crossentropy_forward,
    .crossentropy_backward = cuda_crossentropy_backward,
    .crossentropy_fused = cuda_crossentropy_fused,
    .thought_attention_forward = thought_attention_forward_x,
    .thought_attention_backward = thought_attention_backward_x,
    .mask_columns = cuda_mask_columns,
    .gumbel_sample = cuda_gumbel_sample,
    .row_broadcast = cuda_row_broadcast,
    .column_sum = cuda_column_sum,
    .add_bias = cuda_add_bias,
    .relu_forward = cuda_relu_forward,
    .relu_backward = cuda_relu_backward,
    .concat_columns = cuda_concat_columns,
    .split_columns_backward = cuda_split_columns_backward,
    .roll_rows = cuda_roll_rows,
    .roll_rows_backward = cuda_roll_rows_backward,
    .mix_forward = cuda_mix_forward,
    .mix_backward = cuda_mix_backward,
    .quietstar_advantage = cuda_quietstar_advantage,
    .shift_tokens = cuda_shift_tokens,
    .row_weights = cuda_row_weights,
    .quietstar_stats = cuda_quietstar_stats,
    .copy_strided = cuda_copy_strided,
    .cached_attention_forward = cuda_cached_attention_forward,
    .cached_attention_batched = cuda_cached_attention_batched,
    .adamw_update = cuda_adamw_update,
    .round_bf16 = cuda_round_bf16,
    .sum_squares = cuda_sum_squares,
    .to_floatX = cuda_to_floatX,
    .from_floatX = cuda_from_floatX,
};
