/*
 * Declarations shared by the CPU reference backend's files: one function per op of kernels/ops.h,
 * named cpu_<op>. Plain, readable C with OpenMP over rows and OpenBLAS for GEMMs; this is the oracle
 * every other backend is compared with, so clarity wins over cleverness where the two conflict.
 */
#ifndef QSTAR_CPU_H
#define QSTAR_CPU_H
// The CPU backend is the fp32 oracle: its floatX is float (kernels/ops.h).
#define QSTAR_FLOATX float
#include "kernels/ops.h"

// Elementwise and per-row work over fewer elements than this runs on one thread: waking the other
// threads costs more than the work itself (a decoding step's few rows), tens of microseconds per op
// when they wait passively (OMP_WAIT_POLICY=passive).
#define CPU_PARALLEL_MIN ((size_t)1 << 15)

void cpu_embedding_forward(floatX* out, const int32_t* tokens, const floatX* table, int N, int H);
void cpu_embedding_backward(floatX* dtable, const floatX* dout, const int32_t* tokens, int N, int V, int H);
void cpu_rmsnorm_forward(floatX* out, float* rstd, const floatX* inp, const floatX* weight, int N, int H, float eps);
void cpu_add_rmsnorm_forward(floatX* sum, floatX* out, float* rstd, const floatX* a, const floatX* b,
                             const floatX* weight, int N, int H, float eps);
void cpu_rmsnorm_backward(floatX* dinp, floatX* dweight, const floatX* dout, const floatX* inp, const floatX* weight,
                          const float* rstd, int N, int H);
void cpu_matmul_forward(floatX* out, const floatX* inp, const floatX* weight, int N, int IN, int OUT);
void cpu_matmul_backward(floatX* dinp, floatX* dweight, const floatX* dout, const floatX* inp, const floatX* weight,
                         int N, int IN, int OUT, int accumulate_dinp);
void cpu_rope_forward(floatX* qkv, const int32_t* pos, int N, int NH, int NKV, int HD, float theta);
void cpu_rope_backward(floatX* dqkv, const int32_t* pos, int N, int NH, int NKV, int HD, float theta);
void cpu_attention_forward(floatX* out, float* lse, const floatX* qkv, int B, int T, int NH, int NKV, int HD);
void cpu_attention_backward(floatX* dqkv, const floatX* dout, const floatX* out, const float* lse,
                            const floatX* qkv, int B, int T, int NH, int NKV, int HD);
void cpu_swiglu_forward(floatX* out, const floatX* gate_up, int N, int IM);
void cpu_swiglu_backward(floatX* dgate_up, const floatX* dout, const floatX* gate_up, int N, int IM);
void cpu_add(floatX* out, const floatX* a, const floatX* b, size_t n);
void cpu_scale(floatX* x, float s, size_t n);
void cpu_crossentropy_forward(float* losses, const floatX* logits, const int32_t* targets, int N, int V);
void cpu_crossentropy_backward(floatX* dlogits, const floatX* logits, const int32_t* targets, const float* dlosses,
                               int N, int V);
void cpu_crossentropy_fused(float* losses, floatX* dlogits, const floatX* logits, const int32_t* targets,
                            const float* dlosses, int N, int V);
void cpu_adamw_update(float* param, float* master, const float* grad, void* m, void* v, size_t n, float lr,
                      float beta1, float beta2, float eps, float weight_decay, float grad_scale, int t, uint64_t seed,
                      size_t index0, int bf16_state);
void cpu_to_floatX(float* out, const float* x, size_t n);
void cpu_round_bf16(float* x, size_t n);
void cpu_sum_squares(float* out, const float* x, size_t n);

void cpu_thought_attention_forward(floatX* out, float* lse, const floatX* qkv, size_t step_stride, int k, int R,
                                   int L, int NH, int NKV, int HD);
void cpu_thought_attention_backward(floatX* dqkv, const floatX* dout, const floatX* out, const float* lse,
                                    const floatX* qkv, size_t step_stride, int k, int R, int L, int NH, int NKV,
                                    int HD);
void cpu_mask_columns(floatX* x, int N, int V, int lo, int hi, float value);
void cpu_gumbel_sample(int32_t* tokens, const floatX* logits, int N, int V, int L, uint64_t seed, uint32_t step, int k);
void cpu_row_broadcast(floatX* out, const floatX* vec, float scale, int N, int H);
void cpu_column_sum(floatX* out, const floatX* x, float scale, int N, int H);
void cpu_add_bias(floatX* x, const floatX* bias, int N, int H);
void cpu_relu_forward(floatX* out, const floatX* inp, size_t n);
void cpu_relu_backward(floatX* dinp, const floatX* dout, const floatX* out, size_t n);
void cpu_concat_columns(floatX* out, const floatX* a, const floatX* b, int N, int A, int B);
void cpu_split_columns_backward(floatX* da, floatX* db, const floatX* dout, int N, int A, int B);
void cpu_roll_rows(floatX* out, const floatX* inp, int R, int L, int H, int s);
void cpu_roll_rows_backward(floatX* dinp, const floatX* dout, int R, int L, int H, int s);
void cpu_mix_forward(floatX* out, const floatX* base, const floatX* thought, const floatX* w, int N, int H);
void cpu_mix_backward(floatX* dbase, floatX* dthought, floatX* dw, const floatX* dout, const floatX* base,
                      const floatX* thought, const floatX* w, int N, int H);
void cpu_quietstar_advantage(float* reward, float* advantage, const float* base_losses, const float* talk_losses,
                             int B, int P, int L, int T);
void cpu_shift_tokens(int32_t* out, const int32_t* x, int N, int L, int shift, int limit, int32_t fill);
void cpu_row_weights(float* out, const float* per_row, float value, int N, int L, int limit);
void cpu_quietstar_stats(double* stats, const float* base_losses, const float* talk_losses, const floatX* w,
                         const float* policy_losses, const float* reward, const float* advantage, int N, int L,
                         int T, int K);

void cpu_copy_strided(floatX* dst, size_t dst_stride, const floatX* src, size_t src_stride, int rows, int cols);
void cpu_cached_attention_batched(floatX* out, const floatX* q, size_t q_stride, const floatX* k1, const floatX* v1,
                                  size_t stride1, const floatX* k2, const floatX* v2, size_t stride2,
                                  const int32_t* slot, const int32_t* n1, const int32_t* n2, int N, int max_n, int NH,
                                  int NKV, int HD);
void cpu_cached_attention_forward(floatX* out, const floatX* q, const floatX* k1, const floatX* v1, int n1,
                                  const floatX* k2, const floatX* v2, int n2, int NH, int NKV, int HD);

#endif
