/*
 * The CUDA runtime functions of kernels/cuda/runtime.cu, shared by the op tables of every precision.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

void* cuda_alloc(size_t bytes);
void cuda_free(void* p);
void cuda_upload(void* dst, const void* src, size_t bytes);
void cuda_download(void* dst, const void* src, size_t bytes);
void cuda_copy(void* dst, const void* src, size_t bytes);
void cuda_zero(void* p, size_t bytes);
void cuda_sync(void);
uint64_t cuda_sync_count(void);
void cuda_range_push(const char* name);
void cuda_range_pop(void);
void cuda_profiler(int on);
double cuda_peak_flops(int bf16);  // the tensor-core peak for fp32 (TF32) or bf16 GEMMs
