/*
 * Elementwise helpers: the residual add and in-place scaling.
 */
#include "kernels/cpu/cpu.h"

void cpu_add(floatX* out, const floatX* a, const floatX* b, size_t n) {
#pragma omp parallel for schedule(static) if (n >= CPU_PARALLEL_MIN)
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

void cpu_scale(float* x, float s, size_t n) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) x[i] *= s;
}
