/*
 * The CPU backend table: host memory and the plain-C ops of this folder. Its pointers are ordinary
 * host pointers, so upload/download are copies; allocations are 64-byte aligned for vector loads.
 */
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "kernels/cpu/cpu.h"

static void* cpu_alloc(size_t bytes) {
    size_t rounded = (bytes + 63) & ~(size_t)63;
    void* p = NULL;
    if (posix_memalign(&p, 64, rounded ? rounded : 64) != 0) fatal("out of memory allocating %zu bytes", bytes);
    memset(p, 0, rounded);
    return p;
}
static void cpu_free(void* p) { free(p); }
static void cpu_memcpy(void* dst, const void* src, size_t bytes) {
    if (bytes) memmove(dst, src, bytes);
}
// Nothing waits on the CPU, but downloads and syncs are counted as the CUDA backend counts them, so a
// test on this backend checks the same host-synchronisation budget a GPU run has.
static _Atomic uint64_t cpu_syncs;
static void cpu_download(void* dst, const void* src, size_t bytes) {
    cpu_syncs++;
    cpu_memcpy(dst, src, bytes);
}
static void cpu_zero(void* p, size_t bytes) { memset(p, 0, bytes); }
static void cpu_sync(void) { cpu_syncs++; }
static uint64_t cpu_sync_count(void) { return cpu_syncs; }
static void cpu_range_push(const char* name) { (void)name; }
static void cpu_range_pop(void) {}
static void cpu_profiler(int on) { (void)on; }
static double cpu_peak_flops(void) { return 0.0; }  // CPU MFU is the sgemm share bench_train_step reports

const Backend backend_cpu = {
    .name = "cpu",
    .precision = "fp32",
    .x_bytes = sizeof(float),
    .alloc = cpu_alloc,
    .free = cpu_free,
    .upload = cpu_memcpy,
    .download = cpu_download,
    .copy = cpu_memcpy,
    .zero = cpu_zero,
    .sync = cpu_sync,
    .sync_count = cpu_sync_count,
    .range_push = cpu_range_push,
    .range_pop = cpu_range_pop,
    .profiler = cpu_profiler,
    .peak_flops = cpu_peak_flops,
    .embedding_forward = cpu_embedding_forward,
    .embedding_backward = cpu_embedding_backward,
    .rmsnorm_forward = cpu_rmsnorm_forward,
    .rmsnorm_backward = cpu_rmsnorm_backward,
    .add_rmsnorm_forward = cpu_add_rmsnorm_forward,
    .matmul_forward = cpu_matmul_forward,
    .matmul_backward = cpu_matmul_backward,
    .rope_forward = cpu_rope_forward,
    .rope_backward = cpu_rope_backward,
    .attention_forward = cpu_attention_forward,
    .attention_backward = cpu_attention_backward,
    .swiglu_forward = cpu_swiglu_forward,
    .swiglu_backward = cpu_swiglu_backward,
    .add = cpu_add,
    .scale = cpu_scale,
    .crossentropy_forward = cpu_crossentropy_forward,
    .crossentropy_backward = cpu_crossentropy_backward,
    .crossentropy_fused = cpu_crossentropy_fused,
    .adamw_update = cpu_adamw_update,
    .round_bf16 = cpu_round_bf16,
    .to_floatX = cpu_to_floatX,
    .from_floatX = cpu_to_floatX,
    .sum_squares = cpu_sum_squares,
    .thought_attention_forward = cpu_thought_attention_forward,
    .thought_attention_backward = cpu_thought_attention_backward,
    .mask_columns = cpu_mask_columns,
    .gumbel_sample = cpu_gumbel_sample,
    .row_broadcast = cpu_row_broadcast,
    .column_sum = cpu_column_sum,
    .add_bias = cpu_add_bias,
    .relu_forward = cpu_relu_forward,
    .relu_backward = cpu_relu_backward,
    .concat_columns = cpu_concat_columns,
    .split_columns_backward = cpu_split_columns_backward,
    .roll_rows = cpu_roll_rows,
    .roll_rows_backward = cpu_roll_rows_backward,
    .mix_forward = cpu_mix_forward,
    .mix_backward = cpu_mix_backward,
    .quietstar_advantage = cpu_quietstar_advantage,
    .shift_tokens = cpu_shift_tokens,
    .row_weights = cpu_row_weights,
    .quietstar_stats = cpu_quietstar_stats,
    .copy_strided = cpu_copy_strided,
    .cached_attention_forward = cpu_cached_attention_forward,
    .cached_attention_batched = cpu_cached_attention_batched,
};
