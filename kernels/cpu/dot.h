/*
 * The CPU backend's dot product over one head, shared by thought attention and cached attention (C
 * only: cpu.h is also read by C++ tests, which have no `restrict`).
 */
#ifndef QSTAR_CPU_DOT_H
#define QSTAR_CPU_DOT_H

// Dot product of n floats in a fixed order: 16 lanes, then halved in a fixed tree. A plain float sum is
// a serial chain the compiler may not reorder (and an `omp simd` reduction leaves the lanes to a scalar
// loop), so this is what vectorizes; the result does not depend on the thread count.
static inline float cpu_dot(const float* restrict a, const float* restrict b, int n) {
    float acc[16] = {0};
    int c = 0;
    for (; c + 16 <= n; c += 16)
        for (int l = 0; l < 16; l++) acc[l] += a[c + l] * b[c + l];
    for (; c < n; c++) acc[0] += a[c] * b[c];
    for (int l = 0; l < 8; l++) acc[l] += acc[l + 8];
    for (int l = 0; l < 4; l++) acc[l] += acc[l + 4];
    for (int l = 0; l < 2; l++) acc[l] += acc[l + 2];
    return acc[0] + acc[1];
}

#endif
