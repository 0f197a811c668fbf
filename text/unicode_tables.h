/*
 * Unicode character classes for the tokenizer's pre-tokenizer regexes (\p{L}, \p{N}, \s): a generated
 * two-stage table (text/unicode_tables.c, made by data/tokenizers/gen_unicode_tables.py) so that a
 * class test on any code point is two array loads.
 */
#ifndef QSTAR_UNICODE_TABLES_H
#define QSTAR_UNICODE_TABLES_H

#include <stdint.h>

enum { UC_L = 1, UC_N = 2, UC_WS = 4 };

extern const uint8_t uc_stage1[0x1100];
extern const uint8_t uc_stage2[][256];

// Class flags of code point cp (0 for anything beyond U+10FFFF).
static inline int uc_flags(uint32_t cp) {
    if (cp >= 0x110000) return 0;
    return uc_stage2[uc_stage1[cp >> 8]][cp & 0xFF];
}

#endif
