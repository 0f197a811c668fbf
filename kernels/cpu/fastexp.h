/*
 * exp for the CPU backend's hot loops (softmax, cross-entropy, SwiGLU). glibc's expf is a scalar
 * call that blocks vectorization; this one is inline arithmetic the compiler turns into AVX code
 * under `#pragma omp simd`. Range reduction x = n·ln2 + r with ln2 split in two, then a degree-6
 * polynomial for e^r on |r| <= ln2/2 (Cephes' coefficients) and 2^n by building the exponent bits:
 * relative error about 1e-7, like expf. Inputs below -87 return 0 (softmax of masked scores).
 */
#ifndef QSTAR_FASTEXP_H
#define QSTAR_FASTEXP_H

#include <stdint.h>
#include <string.h>

#pragma omp declare simd notinbranch
static inline float fast_expf(float x) {
    const float hi = 88.0f, lo = -87.0f;  // 2^127 is the largest power the exponent bits hold
    float xc = x > hi ? hi : x;
    xc = xc < lo ? lo : xc;
    float n = __builtin_floorf(xc * 1.44269504088896341f + 0.5f);
    float r = xc - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return x < lo ? 0.0f : p * scale;
}

#endif
