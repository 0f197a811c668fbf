/*
 * bfloat16 on the host: the upper half of an IEEE fp32, rounded to nearest even (NaN kept a NaN).
 * The backends convert on the device; these are for host transfers (x_upload/x_download), the
 * reference mode's rounding of fp32 weights, and tests that build bf16 inputs.
 */
#ifndef QSTAR_COMMON_BF16_H
#define QSTAR_COMMON_BF16_H

#include <stdint.h>
#include <string.h>

static inline uint16_t bf16_from_float(float f) {
    uint32_t b;
    memcpy(&b, &f, 4);
    if ((b & 0x7F800000u) == 0x7F800000u) return (uint16_t)((b >> 16) | ((b & 0xFFFFu) ? 0x40u : 0u));  // inf, nan
    b += 0x7FFFu + ((b >> 16) & 1u);  // ties to even
    return (uint16_t)(b >> 16);
}

static inline float bf16_to_float(uint16_t h) {
    uint32_t b = (uint32_t)h << 16;
    float f;
    memcpy(&f, &b, 4);
    return f;
}

// The value of f after a round trip through bf16.
static inline float bf16_round(float f) { return bf16_to_float(bf16_from_float(f)); }

#endif
