/*
 * A growing NUL-terminated string: the one text builder of the host code (HTML reports, prompts,
 * generated task text). Zero-initialise a StrBuf, append, then take the string (the caller frees it)
 * or use s/n directly. Allocation failures exit through xrealloc.
 */
#ifndef QSTAR_STRBUF_H
#define QSTAR_STRBUF_H

#include <stddef.h>
#include <string.h>

typedef struct {
    char* s;  // NULL until the first append
    size_t n, cap;
} StrBuf;

void sb_putn(StrBuf* b, const char* s, size_t n);
static inline void sb_puts(StrBuf* b, const char* s) { sb_putn(b, s, strlen(s)); }
static inline void sb_putc(StrBuf* b, char c) { sb_putn(b, &c, 1); }
void sb_printf(StrBuf* b, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
// The string built so far ("" if nothing was appended), now the caller's; b is empty again.
char* sb_take(StrBuf* b);

#endif
