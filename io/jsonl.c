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

int jsonl_next(Jsonl* r) {
    cJSON_Delete(r->value);
    r->value = NULL;
    r->nul = 0;
    while (r->p < r->end) {
        const char* nl = memchr(r->p, '\n', (size_t)(r->end - r->p));
        const char* end = nl ? nl : r->end;
        const char* q = r->p;
        r->p = nl ? nl + 1 : r->end;
        r->line++;
        while (q < end && (*q == ' ' || *q == '\t' || *q == '\r')) q++;
        if (q == end) continue;
        // cJSON would end a string at a NUL byte and keep the rest of the line quiet: not a value
        r->nul = memchr(q, 0, (size_t)(end - q)) != NULL;
        if (!r->nul) r->value = cJSON_ParseWithLength(q, (size_t)(end - q));
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
