/*
 * exp (and log) for the CPU backend's hot loops (softmax, cross-entropy, SwiGLU; the sampler's screen). glibc's expf is a scalar
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

// log for x > 0 normal, as inline arithmetic that vectorizes: x = 2^e·m with m in [√½, √2), then
// Cephes' degree-9 polynomial for log(1 + f), f = m − 1 (exact: m and 1 are within a factor of 2),
// and e·ln2 added in two parts. About 1e-7 relative error; no special cases (0, inf, NaN, subnormals
// are the caller's to exclude). Used where a bound on the error is enough (cpu_gumbel_sample's screen).
#pragma omp declare simd notinbranch
static inline float fast_logf(float x) {
    int32_t bits;
    memcpy(&bits, &x, sizeof bits);
    int32_t e = (bits >> 23) - 127;
    bits = (bits & 0x007fffff) | 0x3f800000;  // m in [1, 2)
    float m;
    memcpy(&m, &bits, sizeof m);
    const int big = m > 1.41421356f;
    m = big ? 0.5f * m : m;
    e += big;
    const float f = m - 1.0f, z = f * f, fe = (float)e;
    float y = 7.0376836292e-2f;
    y = y * f - 1.1514610310e-1f;
    y = y * f + 1.1676998740e-1f;
    y = y * f - 1.2420140846e-1f;
    y = y * f + 1.4249322787e-1f;
    y = y * f - 1.6668057665e-1f;
    y = y * f + 2.0000714765e-1f;
    y = y * f - 2.4999993993e-1f;
    y = y * f + 3.3333331174e-1f;
    y = y * f * z - 2.12194440e-4f * fe - 0.5f * z;
    return f + y + 0.693359375f * fe;
}

#endif
