/*
 * Declarations shared by the CPU reference backend's files: one function per op of kernels/ops.h,
 * named cpu_<op>. Plain, readable C with OpenMP over rows and OpenBLAS for GEMMs; this is the oracle
 * every other backend is compared with, so clarity wins over cleverness where the two conflict.
 */
#ifndef QSTAR_CPU_H
#define QSTAR_CPU_H
#include "kernels/ops.h"

void cpu_embedding_forward(floatX* out, const int32_t* tokens, const float* table, int N, int H);
void cpu_embedding_backward(float* dtable, const floatX* dout, const int32_t* tokens, int N, int V, int H);
void cpu_rmsnorm_forward(floatX* out, float* rstd, const floatX* inp, const float* weight, int N, int H, float eps);
void cpu_rmsnorm_backward(floatX* dinp, float* dweight, const floatX* dout, const floatX* inp, const float* weight,
                          const float* rstd, int N, int H);
void cpu_matmul_forward(floatX* out, const floatX* inp, const float* weight, int N, int IN, int OUT);
void cpu_matmul_backward(floatX* dinp, float* dweight, const floatX* dout, const floatX* inp, const float* weight,
                         int N, int IN, int OUT, int accumulate_dinp);
void cpu_rope_forward(floatX* qkv, const int32_t* pos, int N, int NH, int NKV, int HD, float theta);
void cpu_rope_backward(floatX* dqkv, const int32_t* pos, int N, int NH, int NKV, int HD, float theta);
void cpu_attention_forward(floatX* out, float* lse, const floatX* qkv, int B, int T, int NH, int NKV, int HD);
void cpu_attention_backward(floatX* dqkv, const floatX* dout, const floatX* out, const float* lse,
                            const floatX* qkv, int B, int T, int NH, int NKV, int HD);
void cpu_swiglu_forward(floatX* out, const floatX* gate_up, int N, int IM);
void cpu_swiglu_backward(floatX* dgate_up, const floatX* dout, const floatX* gate_up, int N, int IM);
void cpu_add(floatX* out, const floatX* a, const floatX* b, size_t n);
void cpu_scale(float* x, float s, size_t n);
void cpu_crossentropy_forward(float* losses, const floatX* logits, const int32_t* targets, int N, int V);
void cpu_crossentropy_backward(floatX* dlogits, const floatX* logits, const int32_t* targets, const float* dlosses,
                               int N, int V);
void cpu_adamw_update(float* param, const float* grad, float* m, float* v, size_t n, float lr, float beta1,
                      float beta2, float eps, float weight_decay, float grad_scale, int t);
void cpu_sum_squares(float* out, const float* x, size_t n);

#endif
