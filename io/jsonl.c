/*
 * JSON Lines reading and writing (io/jsonl.h). The reader parses each line within its bounds
 * (cJSON_ParseWithLength), so the text is never modified and may be a caller's constant buffer.
 */
#include "io/jsonl.h"

#include <stdlib.h>
#include <string.h>

void jsonl_from_text(Jsonl* r, const char* text, size_t len) {
    *r = (Jsonl){.p = text, .end = text + len};
}

int jsonl_open(Jsonl* r, const char* path) {
    size_t len;
    char* text = read_file_maybe(path, &len);
    if (!text) return 0;
    jsonl_from_text(r, text, len);
    r->text = text;
    return 1;
}

// Length of the valid UTF-8 prefix of s[0, n) (no overlongs, surrogates or code points past U+10FFFF).
static size_t utf8_valid(const unsigned char* s, size_t n) {
    size_t i = 0;
    while (i < n) {
        const unsigned c = s[i];
        size_t k = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
        if (!k || i + k > n) return i;
        unsigned cp = k == 1 ? c : k == 2 ? c & 0x1F : k == 3 ? c & 0x0F : c & 0x07;
        for (size_t j = 1; j < k; j++) {
            if ((s[i + j] & 0xC0) != 0x80) return i;
            cp = cp << 6 | (s[i + j] & 0x3F);
        }
        if ((k == 2 && cp < 0x80) || (k == 3 && cp < 0x800) || (k == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return i;
        i += k;
    }
    return n;
}

// 1 when a string of the JSON text q[0, n) holds the escape \u0000 (a backslash escapes one character,
// so "\\u0000" is a backslash and "u0000", not a NUL).
static int has_nul_escape(const char* q, size_t n) {
    int in_str = 0;
    for (size_t i = 0; i < n; i++) {
        if (!in_str) {
            in_str = q[i] == '"';
        } else if (q[i] == '"') {
            in_str = 0;
        } else if (q[i] == '\\' && i + 1 < n) {
            if (q[i + 1] == 'u' && i + 5 < n && !memcmp(q + i + 2, "0000", 4)) return 1;
            i++;
        }
    }
    return 0;
}

const char* jsonl_not_object(const Jsonl* r) { return r->value ? "not a JSON object" : r->error; }

int jsonl_next(Jsonl* r) {
    cJSON_Delete(r->value);
    r->value = NULL;
    r->error = NULL;
    r->nul = 0;
    while (r->p < r->end) {
        const char* nl = memchr(r->p, '\n', (size_t)(r->end - r->p));
        const char* end = nl ? nl : r->end;
        const char* q = r->p;
        r->p = nl ? nl + 1 : r->end;
        r->line++;
        while (q < end && (*q == ' ' || *q == '\t' || *q == '\r')) q++;
        if (q == end) continue;
        const size_t n = (size_t)(end - q);
        // cJSON would end a string at a NUL byte and keep the rest of the line quiet: not a value
        r->nul = memchr(q, 0, n) != NULL;
        if (r->nul) {
            r->error = "a NUL byte in the line";
        } else if (utf8_valid((const unsigned char*)q, n) != n) {
            r->error = "not valid UTF-8";
        } else if (has_nul_escape(q, n)) {
            r->error = "a string holds \\u0000 (NUL), which is not allowed";
        } else {
            const char* after = NULL;
            r->value = cJSON_ParseWithLengthOpts(q, n, &after, 0);
            if (!r->value) {
                r->error = "not a JSON object";
            } else {
                while (after < end && (*after == ' ' || *after == '\t' || *after == '\r')) after++;
                if (after < end) {
                    cJSON_Delete(r->value);
                    r->value = NULL;
                    r->error = "text after the JSON value (one value per line)";
                }
            }
        }
        return 1;
    }
    return 0;
}

void jsonl_close(Jsonl* r) {
    cJSON_Delete(r->value);
    free(r->text);
    r->value = NULL;
    r->text = NULL;
    r->p = r->end;
}

void jsonl_write(AtomicFile* f, cJSON* value) {
    char* l = cJSON_PrintUnformatted(value);
    atomic_write(f, l, strlen(l));
    atomic_write(f, "\n", 1);
    free(l);
    cJSON_Delete(value);
}
