/*
 * tokenizer.json BPE tokenizer (see tokenizer.h for the supported families). The pipeline mirrors
 * the `tokenizers` library step by step, because exactness against it is the point:
 *
 *   text -> split on non-normalized added tokens -> normalizer (per segment) -> split on normalized
 *   added tokens -> pre-tokenizer steps (Metaspace / Split(regex) / ByteLevel) -> BPE per word
 *   -> post-processor ids around the result.
 *
 * Design choices, all for speed without changing results:
 *   - Byte-level models work on raw bytes: the vocab is re-keyed from the GPT-2 byte->unicode
 *     spelling to the bytes it stands for, so pre-tokenized words never need that mapping.
 *   - The regexes are hand-written matchers over a generated Unicode class table; the pattern
 *     string from the file picks the matcher, and an unknown pattern is an error.
 *   - BPE is the usual lowest-rank-leftmost-first merge loop on a linked list with a binary heap,
 *     which is what tokenizers does; results are cached per thread in a direct-mapped word cache.
 *   - SentencePiece files have no pre-tokenizer, so a whole text is one BPE "word". When no vocab
 *     token contains "x▁" (x not ▁) no merge can cross the start of a "▁word", so we cut there and
 *     BPE (and cache) each piece separately; the result is provably identical.
 */
#include "text/tokenizer.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "text/unicode_tables.h"
#include "common/util.h"

// ---------------------------------------------------------------------------------------------
// Small containers

static inline uint64_t hash_bytes(const void* data, size_t n) {
    const uint8_t* p = data;
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xff51afd7ed558ccdull);
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        h = (h ^ v) * 0xbf58476d1ce4e5b9ull;
        h ^= h >> 31;
        p += 8;
        n -= 8;
    }
    uint64_t v = 0;
    memcpy(&v, p, n);
    h = (h ^ v) * 0x94d049bb133111ebull;
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ull;
    return h ^ (h >> 32);
}

// String -> id, open addressing. Keys are borrowed (they live as long as the tokenizer).
typedef struct {
    uint64_t h;
    const char* key;
    uint32_t len, id;
} StrEnt;
typedef struct {
    StrEnt* e;
    size_t mask, n;
} StrMap;

static void strmap_init(StrMap* m, size_t expect) {
    size_t cap = 16;
    while (cap < expect * 2 + 2) cap <<= 1;
    m->e = xcalloc(cap, sizeof(StrEnt));
    m->mask = cap - 1;
    m->n = 0;
}

static void strmap_put(StrMap* m, const char* key, size_t len, uint32_t id);

static void strmap_grow(StrMap* m) {
    StrMap old = *m;
    strmap_init(m, (old.mask + 1));
    for (size_t i = 0; i <= old.mask; i++)
        if (old.e[i].key) strmap_put(m, old.e[i].key, old.e[i].len, old.e[i].id);
    free(old.e);
}

static void strmap_put(StrMap* m, const char* key, size_t len, uint32_t id) {
    if ((m->n + 1) * 2 > m->mask + 1) strmap_grow(m);
    uint64_t h = hash_bytes(key, len);
    for (size_t i = h & m->mask;; i = (i + 1) & m->mask) {
        StrEnt* e = &m->e[i];
        if (!e->key) {
            *e = (StrEnt){h, key, (uint32_t)len, id};
            m->n++;
            return;
        }
        if (e->h == h && e->len == len && !memcmp(e->key, key, len)) {
            e->id = id;  // later entries win, as in a Rust HashMap built by collect()
            return;
        }
    }
}

static inline int64_t strmap_get(const StrMap* m, const char* key, size_t len) {
    uint64_t h = hash_bytes(key, len);
    for (size_t i = h & m->mask;; i = (i + 1) & m->mask) {
        const StrEnt* e = &m->e[i];
        if (!e->key) return -1;
        if (e->h == h && e->len == len && !memcmp(e->key, key, len)) return e->id;
    }
}

// (left id, right id) -> (rank, merged id).
typedef struct {
    uint64_t key;
    uint32_t rank, id;
} MergeEnt;
typedef struct {
    MergeEnt* e;
    size_t mask;
} MergeMap;
#define MERGE_EMPTY UINT64_MAX

static inline uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

static void mergemap_put(MergeMap* m, uint64_t key, uint32_t rank, uint32_t id) {
    for (size_t i = mix64(key) & m->mask;; i = (i + 1) & m->mask) {
        if (m->e[i].key == MERGE_EMPTY || m->e[i].key == key) {
            m->e[i] = (MergeEnt){key, rank, id};
            return;
        }
    }
}

static inline const MergeEnt* mergemap_get(const MergeMap* m, uint32_t a, uint32_t b) {
    uint64_t key = ((uint64_t)a << 32) | b;
    for (size_t i = mix64(key) & m->mask;; i = (i + 1) & m->mask) {
        const MergeEnt* e = &m->e[i];
        if (e->key == key) return e;
        if (e->key == MERGE_EMPTY) return NULL;
    }
}

// Growable byte buffer.
typedef struct {
    char* p;
    size_t n, cap;
} Buf;

static void buf_reserve(Buf* b, size_t need) {
    if (need <= b->cap) return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) cap *= 2;
    char* p = realloc(b->p, cap);
    if (!p) fatal("out of memory (%zu bytes)", cap);
    b->p = p;
    b->cap = cap;
}
static void buf_add(Buf* b, const void* data, size_t n) {
    buf_reserve(b, b->n + n + 1);
    memcpy(b->p + b->n, data, n);
    b->n += n;
}

static inline void ids_push(TokIds* o, uint32_t id) {
    if (o->n == o->cap) {
        o->cap = o->cap ? o->cap * 2 : 256;
        uint32_t* p = realloc(o->ids, o->cap * sizeof(uint32_t));
        if (!p) fatal("out of memory (%zu token ids)", o->cap);
        o->ids = p;
    }
    o->ids[o->n++] = id;
}

// ---------------------------------------------------------------------------------------------
// UTF-8 and character classes

static inline int utf8_len(uint8_t c) {
    if (c < 0x80) return 1;
    if (c >= 0xF0) return 4;
    if (c >= 0xE0) return 3;
    if (c >= 0xC0) return 2;
    return 1;  // stray continuation byte: a unit of its own
}

// Decodes the code point at s[i] (valid UTF-8 assumed; garbage stays in bounds); *l = its length.
static inline uint32_t utf8_at(const uint8_t* s, size_t n, size_t i, int* l) {
    uint8_t c = s[i];
    if (c < 0x80) {
        *l = 1;
        return c;
    }
    int k = utf8_len(c);
    if (k == 1 || i + k > n) {
        *l = 1;
        return 0xFFFD;
    }
    *l = k;
    uint32_t cp = c & (0x7F >> k);
    for (int j = 1; j < k; j++) cp = (cp << 6) | (s[i + j] & 0x3F);
    return cp;
}

static uint8_t ascii_flags[128];

static inline int cls_at(const uint8_t* s, size_t n, size_t i, int* l) {
    if (s[i] < 0x80) {
        *l = 1;
        return ascii_flags[s[i]];
    }
    return uc_flags(utf8_at(s, n, i, l));
}

// Length of the well-formed UTF-8 prefix of s[i..] per Unicode table 3-7: returns the sequence
// length when valid, or -k (k >= 1) when the first k bytes are a maximal invalid subpart.
static int utf8_seq(const uint8_t* s, size_t n, size_t i) {
    uint8_t c = s[i];
    if (c < 0x80) return 1;
    int len;
    uint8_t lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c == 0xE0) len = 3, lo = 0xA0;
    else if (c >= 0xE1 && c <= 0xEC) len = 3;
    else if (c == 0xED) len = 3, hi = 0x9F;
    else if (c >= 0xEE && c <= 0xEF) len = 3;
    else if (c == 0xF0) len = 4, lo = 0x90;
    else if (c >= 0xF1 && c <= 0xF3) len = 4;
    else if (c == 0xF4) len = 4, hi = 0x8F;
    else return -1;
    for (int k = 1; k < len; k++) {
        if (i + k >= n) return -k;
        uint8_t b = s[i + k];
        if (b < lo || b > hi) return -k;
        lo = 0x80, hi = 0xBF;
    }
    return len;
}

size_t tok_utf8_check(const char* s, size_t n) {
    const uint8_t* u = (const uint8_t*)s;
    for (size_t i = 0; i < n;) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        int k = utf8_seq(u, n, i);
        if (k < 0) return i;
        i += k;
    }
    return n;
}

// Appends s as UTF-8 with each maximal invalid subpart replaced by U+FFFD (Rust from_utf8_lossy).
static void utf8_lossy_append(Buf* out, const uint8_t* s, size_t n) {
    for (size_t i = 0; i < n;) {
        int k = utf8_seq(s, n, i);
        if (k > 0) {
            buf_add(out, s + i, k);
            i += k;
        } else {
            buf_add(out, "\xEF\xBF\xBD", 3);
            i += -k;
        }
    }
}

// GPT-2's byte <-> unicode map: printable Latin-1 bytes stand for themselves, the rest are
// shifted to U+0100.. in byte order.
static uint32_t byte_to_cp[256];
static int16_t cp_to_byte[324];

static pthread_once_t tables_once = PTHREAD_ONCE_INIT;
static void init_tables(void) {
    for (int c = 0; c < 128; c++) ascii_flags[c] = (uint8_t)uc_flags(c);
    int extra = 0;
    for (int b = 0; b < 256; b++) {
        int keep = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
        byte_to_cp[b] = keep ? (uint32_t)b : (uint32_t)(256 + extra++);
    }
    for (int c = 0; c < 324; c++) cp_to_byte[c] = -1;
    for (int b = 0; b < 256; b++) cp_to_byte[byte_to_cp[b]] = (int16_t)b;
}

// ---------------------------------------------------------------------------------------------
// The tokenizer

enum { NORM_PREPEND, NORM_REPLACE };
typedef struct {
    int kind;
    char *a, *b;  // PREPEND: a; REPLACE: a -> b
    size_t alen, blen;
} NormOp;

enum { PT_METASPACE, PT_SPLIT, PT_BYTELEVEL, PT_DIGITS };
enum { SCHEME_ALWAYS, SCHEME_FIRST, SCHEME_NEVER };
enum { RE_NONE, RE_GPT2, RE_LLAMA3, RE_QWEN2 };
typedef struct {
    int kind;
    char repl[8];
    int repl_len, scheme, split;  // Metaspace
    int regex;                    // Split, or ByteLevel with use_regex
    int add_prefix_space;         // ByteLevel
    int individual_digits;        // Digits
} PreTok;
#define MAX_PRETOK 8

enum { DEC_REPLACE, DEC_BYTEFALLBACK, DEC_FUSE, DEC_STRIP, DEC_METASPACE, DEC_BYTELEVEL };
typedef struct {
    int kind;
    char *a, *b;
    size_t alen, blen;
    int start, stop, scheme;
} DecStep;

typedef struct {
    uint32_t id;
    char* content;
    size_t len;
    char* norm;  // content after the normalizer (normalized tokens only)
    size_t norm_len;
    int special, lstrip, rstrip, single_word, normalized;
} AddedTok;

// Added tokens of one kind (raw or normalized) indexed by first byte, longest first.
typedef struct {
    int* idx;   // indices into added[], grouped by first byte
    int start[257];
} AddedIndex;

struct Tokenizer {
    char* path;
    cJSON* root;  // kept for tok_save
    uint32_t n_ids;
    uint32_t id_limit; // ids the file may use: below this (see id_limit_for)
    char** id_str;     // token string per id (NULL where no token), NUL-terminated
    uint32_t* id_len;
    uint8_t* id_special;
    StrMap tokmap;     // token string -> id (model vocab, then added tokens)
    StrMap modelmap;   // model-domain string -> id (raw bytes for byte-level models)
    char* domain_arena;
    MergeMap merges;
    int64_t unk_id;
    int byte_fallback, fuse_unk, ignore_merges, byte_level;
    int64_t byte_ids[256];  // <0xNN> tokens for byte fallback
    int meta_cut;           // cut words before "▁" (see the file comment)
    uint32_t model_vocab_size;

    NormOp* norm;
    int n_norm;
    PreTok pre[MAX_PRETOK];
    int n_pre;
    DecStep* dec;
    int n_dec, has_decoder;
    uint32_t prefix_ids[8], suffix_ids[8];
    int n_prefix, n_suffix;
    int64_t bos, eos;

    AddedTok* added;
    int n_added, cap_added;
    AddedIndex raw_index, norm_index;
    int n_raw, n_normed;

    pthread_key_t cache_key;
    char** retired;  // replaced token strings, still referenced by the maps
    int n_retired;
};

static char* dupn(const char* s, size_t n) {
    char* p = xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

// --------------------------------------------------------------------------------------------
// Loading

// Ids index per-id tables (13 bytes an id), so a file must not make us allocate what it does not
// describe: a 100-byte file naming id 3e8 would cost 3.9 GB. Real files number their tokens densely
// from 0, so ids are bounded by twice the tokens the file lists, plus 2^18 so that a trimmed file may
// keep a real model's special-token ids (Llama 3's start at 128000; a 3.4 MB table at most), and by
// a hard cap far above every real vocabulary (the largest are about 256k).
#define TOK_ID_SLACK (1u << 18)
#define TOK_ID_HARD_CAP (1u << 24)
static uint32_t id_limit_for(size_t n_listed) {
    return n_listed < (TOK_ID_HARD_CAP - TOK_ID_SLACK) / 2 ? (uint32_t)(2 * n_listed + TOK_ID_SLACK) : TOK_ID_HARD_CAP;
}

// A token id from the file: an integer in [0, id_limit), checked before any conversion (a double
// beyond uint32 converts with undefined behaviour).
static uint32_t file_id(const Tokenizer* t, const cJSON* v, const char* what) {
    if (!cJSON_IsNumber(v)) fatal("%s: %s has no numeric id", t->path, what);
    double d = v->valuedouble;
    if (!(d >= 0 && d < (double)t->id_limit && d == floor(d)))
        fatal("%s: %s has id %.17g; ids are integers in 0..%u here (below twice the number of tokens the file "
              "lists plus 2^18, and below 2^24)", t->path, what, d, t->id_limit - 1);
    return (uint32_t)d;
}

static const cJSON* get(const cJSON* o, const char* key) {
    return cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
}
static const char* get_str(const cJSON* o, const char* key) {
    const cJSON* v = get(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}
static int get_bool(const cJSON* o, const char* key, int dflt) {
    const cJSON* v = get(o, key);
    if (cJSON_IsBool(v)) return cJSON_IsTrue(v);
    return dflt;
}
static const char* type_of(const char* path, const cJSON* o, const char* what) {
    const char* t = get_str(o, "type");
    if (!t) fatal("%s: %s has no \"type\"", path, what);
    return t;
}

// Applies the normalizer ops to s[0..n) into out (replaced contents).
static void normalize(const Tokenizer* t, const char* s, size_t n, Buf* out, Buf* tmp) {
    out->n = 0;
    buf_add(out, s, n);
    for (int k = 0; k < t->n_norm; k++) {
        const NormOp* op = &t->norm[k];
        if (op->kind == NORM_PREPEND) {
            if (out->n == 0) continue;  // tokenizers prepends to non-empty strings only
            tmp->n = 0;
            buf_add(tmp, op->a, op->alen);
            buf_add(tmp, out->p, out->n);
        } else {
            if (op->alen == 0) continue;
            tmp->n = 0;
            size_t i = 0;
            while (i < out->n) {
                if (i + op->alen <= out->n && !memcmp(out->p + i, op->a, op->alen)) {
                    buf_add(tmp, op->b, op->blen);
                    i += op->alen;
                } else {
                    buf_add(tmp, out->p + i, 1);
                    i++;
                }
            }
        }
        Buf sw = *out;
        *out = *tmp;
        *tmp = sw;
    }
}

static void parse_normalizer(Tokenizer* t, const cJSON* n) {
    if (!n || cJSON_IsNull(n)) return;
    const char* type = type_of(t->path, n, "normalizer");
    if (!strcmp(type, "Sequence")) {
        const cJSON* list = get(n, "normalizers");
        if (!cJSON_IsArray(list)) fatal("%s: normalizer Sequence without a \"normalizers\" list", t->path);
        const cJSON* c;
        cJSON_ArrayForEach(c, list) parse_normalizer(t, c);
        return;
    }
    t->norm = xrealloc(t->norm, (size_t)t->n_norm + 1, sizeof(NormOp));
    NormOp* op = &t->norm[t->n_norm];
    memset(op, 0, sizeof *op);
    if (!strcmp(type, "Prepend")) {
        const char* p = get_str(n, "prepend");
        if (!p) fatal("%s: Prepend normalizer without \"prepend\"", t->path);
        op->kind = NORM_PREPEND;
        op->a = xstrdup(p);
        op->alen = strlen(p);
    } else if (!strcmp(type, "Replace")) {
        const char* pat = get_str(get(n, "pattern"), "String");
        const char* content = get_str(n, "content");
        if (!pat || !content)
            fatal("%s: unsupported Replace normalizer (only {\"String\": ...} patterns are implemented)", t->path);
        op->kind = NORM_REPLACE;
        op->a = xstrdup(pat);
        op->alen = strlen(pat);
        op->b = xstrdup(content);
        op->blen = strlen(content);
    } else {
        fatal("%s: unsupported normalizer \"%s\" (implemented: Sequence, Prepend, Replace)", t->path, type);
    }
    t->n_norm++;
}

static const char* GPT2_RE = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char* LLAMA3_RE =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char* QWEN2_RE =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

static int scheme_of(const Tokenizer* t, const cJSON* o) {
    const char* s = get_str(o, "prepend_scheme");
    if (!s) return get_bool(o, "add_prefix_space", 1) ? SCHEME_ALWAYS : SCHEME_NEVER;
    if (!strcmp(s, "always")) return SCHEME_ALWAYS;
    if (!strcmp(s, "first")) return SCHEME_FIRST;
    if (!strcmp(s, "never")) return SCHEME_NEVER;
    fatal("%s: unknown Metaspace prepend_scheme \"%s\"", t->path, s);
}

static void parse_pretokenizer(Tokenizer* t, const cJSON* p) {
    if (!p || cJSON_IsNull(p)) return;
    const char* type = type_of(t->path, p, "pre_tokenizer");
    if (!strcmp(type, "Sequence")) {
        const cJSON* list = get(p, "pretokenizers");
        if (!cJSON_IsArray(list)) fatal("%s: pre_tokenizer Sequence without \"pretokenizers\"", t->path);
        const cJSON* c;
        cJSON_ArrayForEach(c, list) parse_pretokenizer(t, c);
        return;
    }
    if (t->n_pre == MAX_PRETOK) fatal("%s: too many pre-tokenizers", t->path);
    PreTok* s = &t->pre[t->n_pre];
    memset(s, 0, sizeof *s);
    if (!strcmp(type, "Metaspace")) {
        const char* r = get_str(p, "replacement");
        if (!r) r = "\xE2\x96\x81";
        if (strlen(r) == 0 || strlen(r) > 4) fatal("%s: Metaspace replacement must be one character", t->path);
        s->kind = PT_METASPACE;
        strcpy(s->repl, r);
        s->repl_len = (int)strlen(r);
        s->scheme = scheme_of(t, p);
        s->split = get_bool(p, "split", 1);
    } else if (!strcmp(type, "ByteLevel")) {
        s->kind = PT_BYTELEVEL;
        s->add_prefix_space = get_bool(p, "add_prefix_space", 1);
        s->regex = get_bool(p, "use_regex", 1) ? RE_GPT2 : RE_NONE;
        t->byte_level = 1;
    } else if (!strcmp(type, "Digits")) {
        s->kind = PT_DIGITS;
        s->individual_digits = get_bool(p, "individual_digits", 0);
    } else if (!strcmp(type, "Split")) {
        const char* re = get_str(get(p, "pattern"), "Regex");
        const char* behavior = get_str(p, "behavior");
        if (!re) fatal("%s: unsupported Split pre-tokenizer (only Regex patterns are implemented)", t->path);
        if (!behavior || strcmp(behavior, "Isolated") || get_bool(p, "invert", 0))
            fatal("%s: unsupported Split pre-tokenizer behavior (only Isolated, not inverted)", t->path);
        s->kind = PT_SPLIT;
        if (!strcmp(re, GPT2_RE)) s->regex = RE_GPT2;
        else if (!strcmp(re, LLAMA3_RE)) s->regex = RE_LLAMA3;
        else if (!strcmp(re, QWEN2_RE)) s->regex = RE_QWEN2;
        else fatal("%s: unsupported Split regex %s (implemented: the GPT-2, Llama-3 and Qwen2 patterns)", t->path, re);
    } else {
        fatal("%s: unsupported pre_tokenizer \"%s\" (implemented: Sequence, Metaspace, ByteLevel, Split, Digits)", t->path, type);
    }
    t->n_pre++;
}

static void parse_decoder(Tokenizer* t, const cJSON* d) {
    if (!d || cJSON_IsNull(d)) return;
    t->has_decoder = 1;
    const char* type = type_of(t->path, d, "decoder");
    if (!strcmp(type, "Sequence")) {
        const cJSON* list = get(d, "decoders");
        if (!cJSON_IsArray(list)) fatal("%s: decoder Sequence without \"decoders\"", t->path);
        const cJSON* c;
        cJSON_ArrayForEach(c, list) parse_decoder(t, c);
        return;
    }
    t->dec = xrealloc(t->dec, (size_t)t->n_dec + 1, sizeof(DecStep));
    DecStep* s = &t->dec[t->n_dec];
    memset(s, 0, sizeof *s);
    if (!strcmp(type, "Replace")) {
        const char* pat = get_str(get(d, "pattern"), "String");
        const char* content = get_str(d, "content");
        if (!pat || !content) fatal("%s: unsupported Replace decoder (only String patterns)", t->path);
        s->kind = DEC_REPLACE;
        s->a = xstrdup(pat), s->alen = strlen(pat);
        s->b = xstrdup(content), s->blen = strlen(content);
    } else if (!strcmp(type, "ByteFallback")) {
        s->kind = DEC_BYTEFALLBACK;
    } else if (!strcmp(type, "Fuse")) {
        s->kind = DEC_FUSE;
    } else if (!strcmp(type, "Strip")) {
        const char* c = get_str(d, "content");
        const cJSON *st = get(d, "start"), *sp = get(d, "stop");
        if (!c || !cJSON_IsNumber(st) || !cJSON_IsNumber(sp)) fatal("%s: malformed Strip decoder", t->path);
        s->kind = DEC_STRIP;
        s->a = xstrdup(c), s->alen = strlen(c);
        s->start = st->valueint, s->stop = sp->valueint;
    } else if (!strcmp(type, "Metaspace")) {
        const char* r = get_str(d, "replacement");
        if (!r) r = "\xE2\x96\x81";
        s->kind = DEC_METASPACE;
        s->a = xstrdup(r), s->alen = strlen(r);
        s->scheme = scheme_of(t, d);
    } else if (!strcmp(type, "ByteLevel")) {
        s->kind = DEC_BYTELEVEL;
    } else {
        fatal("%s: unsupported decoder \"%s\" (implemented: Sequence, Replace, ByteFallback, Fuse, Strip, "
              "Metaspace, ByteLevel)", t->path, type);
    }
    t->n_dec++;
}

static int64_t lookup_token(const Tokenizer* t, const char* s) { return strmap_get(&t->tokmap, s, strlen(s)); }

static void template_ids(Tokenizer* t, const cJSON* pp, const char* name, uint32_t* out, int* n) {
    const cJSON* sp = get(get(get(pp, "special_tokens"), name), "ids");
    if (!cJSON_IsArray(sp)) fatal("%s: TemplateProcessing special token \"%s\" has no ids", t->path, name);
    const cJSON* c;
    cJSON_ArrayForEach(c, sp) {
        if (!cJSON_IsNumber(c) || *n >= 8) fatal("%s: bad TemplateProcessing ids for \"%s\"", t->path, name);
        out[(*n)++] = file_id(t, c, "a TemplateProcessing special token");
    }
}

static void parse_postprocessor(Tokenizer* t, const cJSON* p) {
    if (!p || cJSON_IsNull(p)) return;
    const char* type = type_of(t->path, p, "post_processor");
    if (!strcmp(type, "Sequence")) {
        const cJSON* list = get(p, "processors");
        if (!cJSON_IsArray(list)) fatal("%s: post_processor Sequence without \"processors\"", t->path);
        const cJSON* c;
        cJSON_ArrayForEach(c, list) parse_postprocessor(t, c);
    } else if (!strcmp(type, "ByteLevel")) {
        // Only adjusts offsets; the ids are unchanged.
    } else if (!strcmp(type, "TemplateProcessing")) {
        const cJSON* single = get(p, "single");
        if (!cJSON_IsArray(single)) fatal("%s: TemplateProcessing without \"single\"", t->path);
        int seen_seq = 0;
        const cJSON* c;
        t->n_prefix = t->n_suffix = 0;
        cJSON_ArrayForEach(c, single) {
            const cJSON* st = get(c, "SpecialToken");
            if (st) {
                const char* name = get_str(st, "id");
                if (!name) fatal("%s: TemplateProcessing SpecialToken without id", t->path);
                if (seen_seq) template_ids(t, p, name, t->suffix_ids, &t->n_suffix);
                else template_ids(t, p, name, t->prefix_ids, &t->n_prefix);
            } else if (get(c, "Sequence")) {
                seen_seq = 1;
            } else {
                fatal("%s: unsupported TemplateProcessing piece", t->path);
            }
        }
    } else if (!strcmp(type, "RobertaProcessing") || !strcmp(type, "BertProcessing")) {
        const cJSON *cls = get(p, "cls"), *sep = get(p, "sep");
        if (!cJSON_IsArray(cls) || !cJSON_IsArray(sep)) fatal("%s: malformed %s", t->path, type);
        t->prefix_ids[0] = file_id(t, cJSON_GetArrayItem(cls, 1), "the post-processor's cls token");
        t->suffix_ids[0] = file_id(t, cJSON_GetArrayItem(sep, 1), "the post-processor's sep token");
        t->n_prefix = t->n_suffix = 1;
    } else {
        fatal("%s: unsupported post_processor \"%s\"", t->path, type);
    }
}

static const AddedTok* sort_base;
static int sort_norm;
static int cmp_added(const void* a, const void* b) {
    const AddedTok *x = &sort_base[*(const int*)a], *y = &sort_base[*(const int*)b];
    const char* xs = sort_norm ? x->norm : x->content;
    const char* ys = sort_norm ? y->norm : y->content;
    size_t xl = sort_norm ? x->norm_len : x->len, yl = sort_norm ? y->norm_len : y->len;
    if ((uint8_t)xs[0] != (uint8_t)ys[0]) return (uint8_t)xs[0] - (uint8_t)ys[0];
    if (xl != yl) return xl > yl ? -1 : 1;
    return *(const int*)a - *(const int*)b;
}

// Rebuilds the first-byte indexes of the added tokens (after load or adding a token).
static void index_added(Tokenizer* t) {
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;  // qsort's comparator uses globals
    for (int norm = 0; norm < 2; norm++) {
        AddedIndex* ix = norm ? &t->norm_index : &t->raw_index;
        free(ix->idx);
        ix->idx = xmalloc((t->n_added + 1) * sizeof(int));
        int n = 0;
        for (int i = 0; i < t->n_added; i++) {
            const AddedTok* a = &t->added[i];
            int is_norm = a->normalized && t->n_norm > 0;
            if (is_norm != norm) continue;
            if ((norm ? a->norm_len : a->len) == 0) continue;
            ix->idx[n++] = i;
        }
        pthread_mutex_lock(&mu);
        sort_base = t->added, sort_norm = norm;
        qsort(ix->idx, n, sizeof(int), cmp_added);
        pthread_mutex_unlock(&mu);
        memset(ix->start, 0, sizeof ix->start);
        for (int k = 0; k < n; k++) {
            const AddedTok* a = &t->added[ix->idx[k]];
            ix->start[(uint8_t)(norm ? a->norm : a->content)[0] + 1]++;
        }
        for (int b = 0; b < 256; b++) ix->start[b + 1] += ix->start[b];
        if (norm) t->n_normed = n;
        else t->n_raw = n;
    }
}

static void set_token(Tokenizer* t, uint32_t id, const char* s, size_t len) {
    QSTAR_ASSERT(id < t->id_limit);  // every caller bounds the id first, so id + 1 cannot wrap
    if (id >= t->n_ids) {
        uint32_t n = id + 1;
        t->id_str = xrealloc(t->id_str, n, sizeof(char*));
        t->id_len = xrealloc(t->id_len, n, sizeof(uint32_t));
        t->id_special = xrealloc(t->id_special, n, 1);
        for (uint32_t i = t->n_ids; i < n; i++) t->id_str[i] = NULL, t->id_len[i] = 0, t->id_special[i] = 0;
        t->n_ids = n;
    }
    char* prev = t->id_str[id];
    if (prev && t->id_len[id] == len && !memcmp(prev, s, len)) return;
    if (prev) {  // an added token replacing a vocab string: the maps still point at the old one
        t->retired = xrealloc(t->retired, (size_t)t->n_retired + 1, sizeof(char*));
        t->retired[t->n_retired++] = prev;
    }
    t->id_str[id] = dupn(s, len);
    t->id_len[id] = (uint32_t)len;
}

static void add_added(Tokenizer* t, const cJSON* o) {
    const cJSON* id = get(o, "id");
    const char* content = get_str(o, "content");
    if (!cJSON_IsNumber(id) || !content) fatal("%s: malformed entry in \"added_tokens\"", t->path);
    char what[96];
    snprintf(what, sizeof what, "added token \"%.40s\"", content);
    uint32_t checked = file_id(t, id, what);
    if (t->n_added == t->cap_added) {
        t->cap_added = t->cap_added ? t->cap_added * 2 : 16;
        t->added = xrealloc(t->added, (size_t)t->cap_added, sizeof(AddedTok));
    }
    AddedTok* a = &t->added[t->n_added++];
    memset(a, 0, sizeof *a);
    a->id = checked;
    a->content = xstrdup(content);
    a->len = strlen(content);
    a->special = get_bool(o, "special", 0);
    a->lstrip = get_bool(o, "lstrip", 0);
    a->rstrip = get_bool(o, "rstrip", 0);
    a->single_word = get_bool(o, "single_word", 0);
    a->normalized = get_bool(o, "normalized", !a->special);
    if (a->normalized && t->n_norm > 0) {
        Buf out = {0}, tmp = {0};
        normalize(t, a->content, a->len, &out, &tmp);
        a->norm = dupn(out.p ? out.p : "", out.n);
        a->norm_len = out.n;
        free(out.p), free(tmp.p);
    }
    // The id may also be in the model vocab (<unk>, <s>, </s>): same string, same id.
    set_token(t, a->id, a->content, a->len);
    t->id_special[a->id] = (uint8_t)a->special;
    strmap_put(&t->tokmap, t->id_str[a->id], a->len, a->id);
}

// Reads the bos/eos from tokenizer_config.json beside the file, when there is one.
static int64_t config_token(const Tokenizer* t, const char* key) {
    const char* slash = strrchr(t->path, '/');
    char* cfg = slash ? xsprintf("%.*s/tokenizer_config.json", (int)(slash - t->path), t->path)
                      : xstrdup("tokenizer_config.json");
    size_t len;
    char* text = read_file_maybe(cfg, &len);
    free(cfg);
    if (!text) return -1;
    cJSON* root = cJSON_Parse(text);
    free(text);
    int64_t id = -1;
    const cJSON* v = get(root, key);
    const char* s = cJSON_IsString(v) ? v->valuestring : get_str(v, "content");
    if (s) id = lookup_token(t, s);
    cJSON_Delete(root);
    return id;
}

static void work_free(void* p);

Tokenizer* tok_load(const char* path) {
    pthread_once(&tables_once, init_tables);
    size_t len;
    char* text = read_file_maybe(path, &len);
    if (!text) fatal("%s: cannot read tokenizer file", path);
    const char* err_at = NULL;
    cJSON* root = cJSON_ParseWithLengthOpts(text, len, &err_at, 0);
    if (!root) {
        size_t off = err_at ? (size_t)(err_at - text) : 0;
        free(text);
        fatal("%s: malformed JSON near byte %zu", path, off);
    }
    free(text);
    Tokenizer* t = xcalloc(1, sizeof(Tokenizer));
    t->path = xstrdup(path);
    t->root = root;
    t->unk_id = -1;
    if (!cJSON_IsObject(root)) fatal("%s: not a tokenizer.json object", path);

    const cJSON* model = get(root, "model");
    if (!cJSON_IsObject(model)) fatal("%s: no \"model\" object", path);
    const char* mtype = get_str(model, "type");
    if (!mtype || strcmp(mtype, "BPE")) fatal("%s: unsupported model type \"%s\" (only BPE)", path, mtype ? mtype : "?");
    const cJSON* dropout = get(model, "dropout");
    if (dropout && !cJSON_IsNull(dropout) && !(cJSON_IsNumber(dropout) && dropout->valuedouble == 0))
        fatal("%s: BPE dropout is not supported", path);
    const char* csp = get_str(model, "continuing_subword_prefix");
    const char* eow = get_str(model, "end_of_word_suffix");
    if ((csp && *csp) || (eow && *eow))
        fatal("%s: BPE continuing_subword_prefix / end_of_word_suffix are not supported", path);
    t->byte_fallback = get_bool(model, "byte_fallback", 0);
    t->fuse_unk = get_bool(model, "fuse_unk", 0);
    t->ignore_merges = get_bool(model, "ignore_merges", 0);

    parse_normalizer(t, get(root, "normalizer"));
    parse_pretokenizer(t, get(root, "pre_tokenizer"));
    parse_decoder(t, get(root, "decoder"));

    // Model vocab.
    const cJSON* vocab = get(model, "vocab");
    if (!cJSON_IsObject(vocab)) fatal("%s: BPE model without a \"vocab\" object", path);
    int nv = cJSON_GetArraySize(vocab);
    const cJSON* added = get(root, "added_tokens");
    t->id_limit = id_limit_for((size_t)nv + (size_t)(cJSON_IsArray(added) ? cJSON_GetArraySize(added) : 0));
    strmap_init(&t->tokmap, nv + 300);
    const cJSON* c;
    cJSON_ArrayForEach(c, vocab) {
        char what[96];
        snprintf(what, sizeof what, "vocab entry \"%.40s\"", c->string);
        uint32_t id = file_id(t, c, what);
        set_token(t, id, c->string, strlen(c->string));
        if (id + 1 > t->model_vocab_size) t->model_vocab_size = id + 1;
    }
    // Model-domain map: for byte-level models the bytes each token stands for.
    strmap_init(&t->modelmap, nv);
    Buf arena = {0};
    size_t* offs = xmalloc((t->n_ids + 1) * sizeof(size_t));
    for (uint32_t id = 0; id < t->n_ids; id++) {
        offs[id] = SIZE_MAX;
        if (!t->id_str[id]) continue;
        const uint8_t* s = (const uint8_t*)t->id_str[id];
        size_t n = t->id_len[id];
        if (!t->byte_level) {
            strmap_put(&t->tokmap, (const char*)s, n, id);
            continue;
        }
        strmap_put(&t->tokmap, (const char*)s, n, id);
        size_t start = arena.n;
        int ok = 1;
        for (size_t i = 0; i < n && ok;) {
            int l;
            uint32_t cp = utf8_at(s, n, i, &l);
            if (cp >= 324 || cp_to_byte[cp] < 0) ok = 0;
            else {
                uint8_t b = (uint8_t)cp_to_byte[cp];
                buf_add(&arena, &b, 1);
            }
            i += l;
        }
        if (ok) offs[id] = start;
        else arena.n = start;
    }
    if (t->byte_level) {
        t->domain_arena = arena.p ? arena.p : xstrdup("");
        // Lengths: next recorded offset minus this one.
        size_t prev_id = SIZE_MAX;
        for (uint32_t id = 0; id <= t->n_ids; id++) {
            if (id < t->n_ids && offs[id] == SIZE_MAX) continue;
            if (prev_id != SIZE_MAX) {
                size_t end = id < t->n_ids ? offs[id] : arena.n;
                strmap_put(&t->modelmap, t->domain_arena + offs[prev_id], end - offs[prev_id], (uint32_t)prev_id);
            }
            prev_id = id;
        }
    } else {
        free(arena.p);
        for (uint32_t id = 0; id < t->n_ids; id++)
            if (t->id_str[id]) strmap_put(&t->modelmap, t->id_str[id], t->id_len[id], id);
    }
    free(offs);

    const char* unk = get_str(model, "unk_token");
    if (unk) t->unk_id = strmap_get(&t->modelmap, unk, strlen(unk));
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        t->byte_ids[b] = t->byte_level ? -1 : strmap_get(&t->modelmap, name, strlen(name));
    }

    // Merges: "a b" strings or [a, b] pairs; rank = position in the list.
    const cJSON* merges = get(model, "merges");
    if (!cJSON_IsArray(merges)) fatal("%s: BPE model without a \"merges\" list", path);
    int nm = cJSON_GetArraySize(merges);
    size_t cap = 16;
    while (cap < (size_t)nm * 2 + 2) cap <<= 1;
    t->merges.e = xmalloc(cap * sizeof(MergeEnt));
    for (size_t i = 0; i < cap; i++) t->merges.e[i].key = MERGE_EMPTY;
    t->merges.mask = cap - 1;
    Buf cat = {0};
    uint32_t rank = 0;
    cJSON_ArrayForEach(c, merges) {
        const char *a, *b;
        size_t alen, blen;
        if (cJSON_IsString(c)) {
            const char* sp = strchr(c->valuestring, ' ');
            if (!sp || strchr(sp + 1, ' ')) fatal("%s: merge %u \"%s\" is not two tokens", path, rank, c->valuestring);
            a = c->valuestring, alen = (size_t)(sp - a);
            b = sp + 1, blen = strlen(b);
        } else if (cJSON_IsArray(c) && cJSON_GetArraySize(c) == 2 && cJSON_IsString(cJSON_GetArrayItem(c, 0)) &&
                   cJSON_IsString(cJSON_GetArrayItem(c, 1))) {
            a = cJSON_GetArrayItem(c, 0)->valuestring, alen = strlen(a);
            b = cJSON_GetArrayItem(c, 1)->valuestring, blen = strlen(b);
        } else {
            fatal("%s: merge %u is neither \"a b\" nor [a, b]", path, rank);
        }
        int64_t ia = strmap_get(&t->tokmap, a, alen), ib = strmap_get(&t->tokmap, b, blen);
        cat.n = 0;
        buf_add(&cat, a, alen);
        buf_add(&cat, b, blen);
        int64_t ic = strmap_get(&t->tokmap, cat.p, cat.n);
        if (ia < 0 || ib < 0 || ic < 0)
            fatal("%s: merge %u (%.*s %.*s) uses a token that is not in the vocab", path, rank, (int)alen, a,
                  (int)blen, b);
        mergemap_put(&t->merges, ((uint64_t)ia << 32) | (uint64_t)ib, rank, (uint32_t)ic);
        rank++;
    }
    free(cat.p);

    // Added tokens.
    if (added && !cJSON_IsNull(added)) {
        if (!cJSON_IsArray(added)) fatal("%s: \"added_tokens\" is not a list", path);
        cJSON_ArrayForEach(c, added) add_added(t, c);
    }
    index_added(t);

    parse_postprocessor(t, get(root, "post_processor"));
    for (int i = 0; i < t->n_prefix; i++)
        if (t->prefix_ids[i] >= t->n_ids) fatal("%s: post-processor id %u is out of range", path, t->prefix_ids[i]);
    for (int i = 0; i < t->n_suffix; i++)
        if (t->suffix_ids[i] >= t->n_ids) fatal("%s: post-processor id %u is out of range", path, t->suffix_ids[i]);

    t->bos = config_token(t, "bos_token");
    if (t->bos < 0 && t->n_prefix > 0) t->bos = t->prefix_ids[0];
    t->eos = config_token(t, "eos_token");
    static const char* eos_names[] = {"</s>", "<|end_of_text|>", "<|endoftext|>", "<eos>", "<|im_end|>"};
    for (size_t i = 0; t->eos < 0 && i < sizeof eos_names / sizeof *eos_names; i++) t->eos = lookup_token(t, eos_names[i]);

    // The "▁"-cut shortcut (file comment): only for UTF-8-domain models without ignore_merges whose
    // replacement character is in the vocab and never follows another character inside a token.
    const char* meta = "\xE2\x96\x81";
    t->meta_cut = !t->byte_level && !t->ignore_merges && strmap_get(&t->modelmap, meta, 3) >= 0;
    for (uint32_t id = 0; t->meta_cut && id < t->n_ids; id++) {
        const char* s = t->id_str[id];
        if (!s) continue;
        for (const char* p = strstr(s, meta); p; p = strstr(p + 3, meta)) {
            if (p > s && !(p - s >= 3 && !memcmp(p - 3, meta, 3))) {
                t->meta_cut = 0;
                break;
            }
        }
    }
    if (pthread_key_create(&t->cache_key, work_free)) fatal("%s: pthread_key_create failed", path);
    return t;
}

void tok_free(Tokenizer* t) {
    if (!t) return;
    work_free(pthread_getspecific(t->cache_key));
    pthread_setspecific(t->cache_key, NULL);
    pthread_key_delete(t->cache_key);
    for (uint32_t i = 0; i < t->n_ids; i++) free(t->id_str[i]);
    for (int i = 0; i < t->n_retired; i++) free(t->retired[i]);
    free(t->retired);
    free(t->id_str), free(t->id_len), free(t->id_special);
    free(t->tokmap.e), free(t->modelmap.e), free(t->domain_arena), free(t->merges.e);
    for (int i = 0; i < t->n_norm; i++) free(t->norm[i].a), free(t->norm[i].b);
    free(t->norm);
    for (int i = 0; i < t->n_dec; i++) free(t->dec[i].a), free(t->dec[i].b);
    free(t->dec);
    for (int i = 0; i < t->n_added; i++) free(t->added[i].content), free(t->added[i].norm);
    free(t->added), free(t->raw_index.idx), free(t->norm_index.idx);
    cJSON_Delete(t->root);
    free(t->path);
    free(t);
}

// ---------------------------------------------------------------------------------------------
// Encoding: BPE on one word

#define CACHE_SLOTS 8192
#define CACHE_KEY 40
#define CACHE_IDS 14
typedef struct {
    uint64_t h;
    uint8_t klen, nids;
    char key[CACHE_KEY];
    uint32_t ids[CACHE_IDS];
} CacheEnt;

typedef struct {
    CacheEnt ent[CACHE_SLOTS];
    // BPE work arrays, grown as needed.
    uint32_t* sym;
    int32_t *prev, *next;
    uint64_t* heap;
    size_t cap;
    Buf scratch[MAX_PRETOK + 3];
} Work;

// Frees a thread's Work (also the pthread key destructor, run when a thread exits).
static void work_free(void* p) {
    Work* w = p;
    if (!w) return;
    free(w->sym), free(w->prev), free(w->next), free(w->heap);
    for (int i = 0; i < MAX_PRETOK + 3; i++) free(w->scratch[i].p);
    free(w);
}

static void work_reserve(Work* w, size_t n) {
    if (n <= w->cap) return;
    size_t cap = w->cap ? w->cap : 256;
    while (cap < n) cap *= 2;
    free(w->sym), free(w->prev), free(w->next), free(w->heap);
    w->sym = xmalloc(cap * sizeof(uint32_t));
    w->prev = xmalloc(cap * sizeof(int32_t));
    w->next = xmalloc(cap * sizeof(int32_t));
    w->heap = xmalloc(cap * 2 * sizeof(uint64_t));  // each merge pushes at most 2 entries
    w->cap = cap;
}

// Min-heap of (rank << 32 | position): lowest rank first, then leftmost, like tokenizers.
static inline void heap_push(uint64_t* h, size_t* n, uint64_t v) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (h[p] <= v) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = v;
}
static inline uint64_t heap_pop(uint64_t* h, size_t* n) {
    uint64_t top = h[0], v = h[--(*n)];
    size_t i = 0, m = *n;
    for (;;) {
        size_t l = 2 * i + 1;
        if (l >= m) break;
        size_t r = l + 1, c = (r < m && h[r] < h[l]) ? r : l;
        if (h[c] >= v) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = v;
    return top;
}

// Runs BPE on s[0..n) (model domain) and appends the ids.
static void bpe_word(const Tokenizer* t, Work* w, const char* s, size_t n, TokIds* out) {
    if (n == 0) return;
    uint64_t h = 0;
    CacheEnt* ce = NULL;
    if (n <= CACHE_KEY) {
        h = hash_bytes(s, n);
        ce = &w->ent[h & (CACHE_SLOTS - 1)];
        if (ce->h == h && ce->klen == n && ce->nids && !memcmp(ce->key, s, n)) {
            for (int i = 0; i < ce->nids; i++) ids_push(out, ce->ids[i]);
            return;
        }
    }
    size_t first = out->n;
    if (t->ignore_merges) {
        int64_t id = strmap_get(&t->modelmap, s, n);
        if (id >= 0) {
            ids_push(out, (uint32_t)id);
            goto store;
        }
    }
    work_reserve(w, n * 4 + 4);  // byte fallback can give 4 symbols per character
    {
        const uint8_t* u = (const uint8_t*)s;
        size_t ns = 0;
        int64_t pending_unk = -1;
        for (size_t i = 0; i < n;) {
            int l = t->byte_level ? 1 : utf8_len(u[i]);
            if (i + l > n) l = (int)(n - i);
            int64_t id = strmap_get(&t->modelmap, s + i, l);
            if (id >= 0) {
                if (pending_unk >= 0) w->sym[ns++] = (uint32_t)pending_unk, pending_unk = -1;
                w->sym[ns++] = (uint32_t)id;
            } else {
                int all = t->byte_fallback;
                for (int k = 0; all && k < l; k++) all = t->byte_ids[u[i + k]] >= 0;
                if (all) {
                    // tokenizers adds the byte tokens without flushing a pending unk first.
                    for (int k = 0; k < l; k++) w->sym[ns++] = (uint32_t)t->byte_ids[u[i + k]];
                } else if (t->unk_id >= 0) {
                    if (pending_unk >= 0 && !t->fuse_unk) w->sym[ns++] = (uint32_t)pending_unk;
                    pending_unk = t->unk_id;
                }
            }
            i += l;
        }
        if (pending_unk >= 0) w->sym[ns++] = (uint32_t)pending_unk;
        if (ns == 0) goto store;
        size_t nh = 0;
        for (size_t i = 0; i < ns; i++) {
            w->prev[i] = (int32_t)i - 1;
            w->next[i] = i + 1 < ns ? (int32_t)i + 1 : -1;
            if (i + 1 < ns) {
                const MergeEnt* m = mergemap_get(&t->merges, w->sym[i], w->sym[i + 1]);
                if (m) heap_push(w->heap, &nh, ((uint64_t)m->rank << 32) | i);
            }
        }
        const uint32_t DEAD = UINT32_MAX;
        while (nh) {
            uint64_t top = heap_pop(w->heap, &nh);
            uint32_t rank = (uint32_t)(top >> 32), pos = (uint32_t)top;
            if (w->sym[pos] == DEAD || w->next[pos] < 0) continue;
            int32_t q = w->next[pos];
            const MergeEnt* m = mergemap_get(&t->merges, w->sym[pos], w->sym[q]);
            if (!m || m->rank != rank) continue;  // stale entry
            w->sym[pos] = m->id;
            w->sym[q] = DEAD;
            w->next[pos] = w->next[q];
            if (w->next[q] >= 0) w->prev[w->next[q]] = (int32_t)pos;
            if (w->prev[pos] >= 0) {
                const MergeEnt* pm = mergemap_get(&t->merges, w->sym[w->prev[pos]], w->sym[pos]);
                if (pm) heap_push(w->heap, &nh, ((uint64_t)pm->rank << 32) | (uint32_t)w->prev[pos]);
            }
            if (w->next[pos] >= 0) {
                const MergeEnt* nm = mergemap_get(&t->merges, w->sym[pos], w->sym[w->next[pos]]);
                if (nm) heap_push(w->heap, &nh, ((uint64_t)nm->rank << 32) | pos);
            }
        }
        for (int32_t i = 0; i >= 0; i = w->next[i]) ids_push(out, w->sym[i]);
    }
store:
    if (ce && out->n - first <= CACHE_IDS && out->n > first) {
        ce->h = h;
        ce->klen = (uint8_t)n;
        ce->nids = (uint8_t)(out->n - first);
        memcpy(ce->key, s, n);
        memcpy(ce->ids, out->ids + first, ce->nids * sizeof(uint32_t));
    }
}

static void model_word(const Tokenizer* t, Work* w, const char* s, size_t n, TokIds* out) {
    if (!t->meta_cut) {
        bpe_word(t, w, s, n, out);
        return;
    }
    // Cut before each "▁" that follows a character other than "▁".
    size_t start = 0;
    for (size_t i = 1; i + 3 <= n; i++) {
        if ((uint8_t)s[i] == 0xE2 && (uint8_t)s[i + 1] == 0x96 && (uint8_t)s[i + 2] == 0x81 &&
            !(i >= 3 && (uint8_t)s[i - 3] == 0xE2 && (uint8_t)s[i - 2] == 0x96 && (uint8_t)s[i - 1] == 0x81)) {
            bpe_word(t, w, s + start, i - start, out);
            start = i;
            i += 2;
        }
    }
    bpe_word(t, w, s + start, n - start, out);
}

// ---------------------------------------------------------------------------------------------
// Pre-tokenizer regexes: each returns the end of the match that starts at i (these patterns match
// every character, so a text splits into consecutive matches).

static inline size_t run_class(const uint8_t* s, size_t n, size_t i, int want, int max_chars) {
    int count = 0;
    while (i < n && count < max_chars) {
        int l, f = cls_at(s, n, i, &l);
        if (!(f & want)) break;
        i += l;
        count++;
    }
    return i;
}
static inline int is_other(int f) { return !(f & (UC_L | UC_N | UC_WS)); }
static inline size_t run_other(const uint8_t* s, size_t n, size_t i) {
    while (i < n) {
        int l, f = cls_at(s, n, i, &l);
        if (!is_other(f)) break;
        i += l;
    }
    return i;
}

// \s+(?!\S)|\s+ at i (s[i] is whitespace); also returns through *last_nl the end of the last \r/\n.
static inline size_t ws_match(const uint8_t* s, size_t n, size_t i, size_t* last_nl) {
    size_t q = i, last_start = i;
    *last_nl = 0;
    while (q < n) {
        int l, f = cls_at(s, n, q, &l);
        if (!(f & UC_WS)) break;
        if (s[q] == '\r' || s[q] == '\n') *last_nl = q + 1;
        last_start = q;
        q += l;
    }
    if (q == n || last_start == i) return q;  // at end, or a single whitespace char (\s+)
    return last_start;                         // leave the last one to prefix the next word
}

// 's 't 're 've 'm 'll 'd at i (s[i] == '\''); case-insensitive for Llama-3. Returns 0 if none.
static inline size_t contraction(const uint8_t* s, size_t n, size_t i, int icase) {
    if (i + 1 >= n) return 0;
    uint8_t a = s[i + 1], b = i + 2 < n ? s[i + 2] : 0;
    if (icase) {
        if (a >= 'A' && a <= 'Z') a += 32;
        if (b >= 'A' && b <= 'Z') b += 32;
        // U+017F LATIN SMALL LETTER LONG S case-folds to 's'.
        if (a == 0xC5 && b == 0xBF) return i + 3;
    }
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return i + 3;
    return 0;
}

static size_t match_gpt2(const uint8_t* s, size_t n, size_t i) {
    if (s[i] == '\'') {
        size_t e = contraction(s, n, i, 0);
        if (e) return e;
    }
    size_t j = i;
    int l, f;
    if (s[i] == ' ' && i + 1 < n) j = i + 1;
    f = cls_at(s, n, j, &l);
    if (j > i && (f & UC_WS)) j = i, f = ascii_flags[' '];
    if (f & UC_L) return run_class(s, n, j, UC_L, 1 << 30);
    if (f & UC_N) return run_class(s, n, j, UC_N, 1 << 30);
    if (is_other(f)) return run_other(s, n, j);
    size_t nl;
    return ws_match(s, n, i, &nl);
}

static size_t match_llama3(const uint8_t* s, size_t n, size_t i, int max_digits) {
    if (s[i] == '\'') {
        size_t e = contraction(s, n, i, 1);
        if (e) return e;
    }
    int l0, f0 = cls_at(s, n, i, &l0);
    if (f0 & UC_L) return run_class(s, n, i, UC_L, 1 << 30);
    if (!(f0 & UC_N) && s[i] != '\r' && s[i] != '\n' && i + l0 < n) {
        int l1, f1 = cls_at(s, n, i + l0, &l1);
        if (f1 & UC_L) return run_class(s, n, i + l0, UC_L, 1 << 30);
    }
    if (f0 & UC_N) return run_class(s, n, i, UC_N, max_digits);
    size_t j = i;
    int fj = f0;
    if (s[i] == ' ' && i + 1 < n) {
        int l1;
        fj = cls_at(s, n, i + 1, &l1);
        j = i + 1;
    }
    if (is_other(fj)) {
        size_t e = run_other(s, n, j);
        while (e < n && (s[e] == '\r' || s[e] == '\n')) e++;
        return e;
    }
    size_t nl, e = ws_match(s, n, i, &nl);
    if (nl) return nl;  // \s*[\r\n]+ comes before the plain whitespace alternatives
    return e;
}

// ---------------------------------------------------------------------------------------------
// Pre-tokenizer pipeline

typedef struct {
    const Tokenizer* t;
    Work* w;
    TokIds* out;
} Enc;

static void pretok(Enc* e, int step, const char* s, size_t n, int at_origin);

static void split_regex(Enc* e, int step, int regex, const char* s, size_t n, int at_origin) {
    const uint8_t* u = (const uint8_t*)s;
    for (size_t i = 0; i < n;) {
        size_t end = regex == RE_GPT2 ? match_gpt2(u, n, i) : match_llama3(u, n, i, regex == RE_LLAMA3 ? 3 : 1);
        pretok(e, step + 1, s + i, end - i, at_origin && i == 0);
        i = end;
    }
}

static void pretok(Enc* e, int step, const char* s, size_t n, int at_origin) {
    if (n == 0) return;
    const Tokenizer* t = e->t;
    if (step == t->n_pre) {
        model_word(t, e->w, s, n, e->out);
        return;
    }
    const PreTok* p = &t->pre[step];
    Buf* b = &e->w->scratch[step];
    if (p->kind == PT_METASPACE) {
        b->n = 0;
        buf_reserve(b, n * 3 + 8);
        int starts = (n >= 1 && s[0] == ' ') ||
                     (n >= (size_t)p->repl_len && !memcmp(s, p->repl, p->repl_len));
        if (!starts && (p->scheme == SCHEME_ALWAYS || (p->scheme == SCHEME_FIRST && at_origin)))
            buf_add(b, p->repl, p->repl_len);
        for (size_t i = 0; i < n; i++) {
            if (s[i] == ' ') buf_add(b, p->repl, p->repl_len);
            else b->p[b->n++] = s[i];
        }
        if (!p->split) {
            pretok(e, step + 1, b->p, b->n, at_origin);
            return;
        }
        // Split with the replacement merged into the piece that follows it.
        size_t start = 0;
        for (size_t i = 0; i + p->repl_len <= b->n; i++) {
            if (i > start && !memcmp(b->p + i, p->repl, p->repl_len)) {
                pretok(e, step + 1, b->p + start, i - start, at_origin && start == 0);
                start = i;
            }
        }
        pretok(e, step + 1, b->p + start, b->n - start, at_origin && start == 0);
    } else if (p->kind == PT_SPLIT) {
        split_regex(e, step, p->regex, s, n, at_origin);
    } else if (p->kind == PT_DIGITS) {
        // tokenizers' Digits: numeric characters (\p{N}) split off, each alone (individual_digits)
        // or as runs; the text between them stays one piece
        const uint8_t* u = (const uint8_t*)s;
        size_t start = 0;
        for (size_t i = 0; i < n;) {
            int l, f = cls_at(u, n, i, &l);
            if (!(f & UC_N)) {
                i += (size_t)l;
                continue;
            }
            if (i > start) pretok(e, step + 1, s + start, i - start, at_origin && start == 0);
            size_t j = i + (size_t)l;
            while (!p->individual_digits && j < n && (cls_at(u, n, j, &l) & UC_N)) j += (size_t)l;
            pretok(e, step + 1, s + i, j - i, at_origin && i == 0);
            start = i = j;
        }
        if (n > start) pretok(e, step + 1, s + start, n - start, at_origin && start == 0);
    } else {  // ByteLevel: optional prefix space, optional GPT-2 split; bytes are the model domain
        if (p->add_prefix_space && s[0] != ' ') {
            b->n = 0;
            buf_add(b, " ", 1);
            buf_add(b, s, n);
            s = b->p, n = b->n;
        }
        if (p->regex) split_regex(e, step, p->regex, s, n, at_origin);
        else pretok(e, step + 1, s, n, at_origin);
    }
}

// Finds the leftmost-longest added token in s[from..n) (tokenizers' aho-corasick LeftmostLongest)
// honoring single_word; returns its index into t->added or -1, with its [*ms, *me) span.
static int find_added(const Tokenizer* t, const AddedIndex* ix, int norm, const char* s, size_t n, size_t from,
                      size_t* ms, size_t* me) {
    const uint8_t* u = (const uint8_t*)s;
    for (size_t i = from; i < n; i++) {
        int lo = ix->start[u[i]], hi = ix->start[u[i] + 1];
        for (int k = lo; k < hi; k++) {
            const AddedTok* a = &t->added[ix->idx[k]];
            const char* c = norm ? a->norm : a->content;
            size_t cl = norm ? a->norm_len : a->len;
            if (cl > n - i || memcmp(s + i, c, cl)) continue;
            if (a->single_word) {
                // Must not touch a word character on either side.
                int ok = 1;
                if (i > 0) {
                    size_t p = i - 1;
                    while (p > 0 && (u[p] & 0xC0) == 0x80) p--;
                    int l, f = cls_at(u, n, p, &l);
                    if (f & (UC_L | UC_N)) ok = 0;
                }
                if (i + cl < n) {
                    int l, f = cls_at(u, n, i + cl, &l);
                    if (f & (UC_L | UC_N)) ok = 0;
                }
                if (!ok) {
                    i += cl - 1;  // the automaton moves past a rejected match
                    goto next_pos;
                }
            }
            *ms = i, *me = i + cl;
            return ix->idx[k];
        }
    next_pos:;
    }
    return -1;
}

static inline int ws_before(const uint8_t* u, size_t i, size_t* start) {
    size_t p = i - 1;
    while (p > 0 && (u[p] & 0xC0) == 0x80) p--;
    int l;
    if (!(cls_at(u, i, p, &l) & UC_WS)) return 0;
    *start = p;
    return 1;
}

// Splits s on added tokens of one kind; calls seg() for the text between them.
typedef void (*SegFn)(Enc* e, const char* s, size_t n, int at_origin, void* arg);
static void split_added(Enc* e, const AddedIndex* ix, int count, int norm, const char* s, size_t n, int at_origin,
                        SegFn seg, void* arg) {
    const Tokenizer* t = e->t;
    if (count == 0) {
        seg(e, s, n, at_origin, arg);
        return;
    }
    const uint8_t* u = (const uint8_t*)s;
    size_t done = 0, from = 0, ms, me;
    int k;
    while ((k = find_added(t, ix, norm, s, n, from, &ms, &me)) >= 0) {
        const AddedTok* a = &t->added[k];
        size_t start = ms, stop = me, p;
        if (a->lstrip)
            while (start > done && ws_before(u, start, &p)) start = p;
        if (a->rstrip) {
            int l;
            while (stop < n && (cls_at(u, n, stop, &l) & UC_WS)) stop += l;
        }
        if (start > done) seg(e, s + done, start - done, at_origin && done == 0, arg);
        ids_push(e->out, a->id);
        done = from = stop;
    }
    if (done < n) seg(e, s + done, n - done, at_origin && done == 0, arg);
}

static void seg_pretok(Enc* e, const char* s, size_t n, int at_origin, void* arg) {
    (void)arg;
    pretok(e, 0, s, n, at_origin);
}

static void seg_normalize(Enc* e, const char* s, size_t n, int at_origin, void* arg) {
    (void)arg;
    const Tokenizer* t = e->t;
    if (t->n_norm == 0) {
        pretok(e, 0, s, n, at_origin);
        return;
    }
    Buf* out = &e->w->scratch[MAX_PRETOK];
    Buf* tmp = &e->w->scratch[MAX_PRETOK + 1];
    normalize(t, s, n, out, tmp);
    // Normalized added tokens are found in the normalized text; pretok never reuses these buffers.
    Buf* keep = &e->w->scratch[MAX_PRETOK + 2];
    keep->n = 0;
    buf_add(keep, out->p ? out->p : "", out->n);
    split_added(e, &t->norm_index, t->n_normed, 1, keep->p, keep->n, at_origin, seg_pretok, NULL);
}

static Work* get_work(const Tokenizer* t) {
    Work* w = pthread_getspecific(t->cache_key);
    if (!w) {
        w = xcalloc(1, sizeof(Work));
        pthread_setspecific(t->cache_key, w);
    }
    return w;
}

void tok_encode(const Tokenizer* t, const char* text, size_t len, int add_special_tokens, TokIds* out) {
    Enc e = {t, get_work(t), out};
    if (add_special_tokens)
        for (int i = 0; i < t->n_prefix; i++) ids_push(out, t->prefix_ids[i]);
    split_added(&e, &t->raw_index, t->n_raw, 0, text, len, 1, seg_normalize, NULL);
    if (add_special_tokens)
        for (int i = 0; i < t->n_suffix; i++) ids_push(out, t->suffix_ids[i]);
}

// ---------------------------------------------------------------------------------------------
// Decoding: a list of token strings run through the decoder steps

typedef struct {
    Buf* s;
    size_t n, cap;
} StrList;

static void sl_push(StrList* l, const char* s, size_t n) {
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        l->s = xrealloc(l->s, l->cap, sizeof(Buf));
    }
    Buf b = {0};
    buf_reserve(&b, n + 1);
    memcpy(b.p, s, n);
    b.n = n;
    l->s[l->n++] = b;
}

static void sl_free(StrList* l) {
    for (size_t i = 0; i < l->n; i++) free(l->s[i].p);
    free(l->s);
    l->s = NULL;
    l->n = l->cap = 0;
}

static void replace_all(Buf* b, const char* a, size_t alen, const char* r, size_t rlen) {
    if (alen == 0) return;
    Buf o = {0};
    buf_reserve(&o, b->n + 1);
    for (size_t i = 0; i < b->n;) {
        if (i + alen <= b->n && !memcmp(b->p + i, a, alen)) {
            buf_add(&o, r, rlen);
            i += alen;
        } else {
            buf_add(&o, b->p + i, 1);
            i++;
        }
    }
    free(b->p);
    *b = o;
}

static int byte_token(const Buf* b, uint8_t* v) {
    if (b->n != 6 || memcmp(b->p, "<0x", 3) || b->p[5] != '>') return 0;
    int x = 0;
    for (int i = 3; i < 5; i++) {
        char c = b->p[i];
        int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
        if (d < 0) return 0;
        x = x * 16 + d;
    }
    *v = (uint8_t)x;
    return 1;
}

static void dec_bytefallback(StrList* l) {
    StrList o = {0};
    Buf bytes = {0};
    for (size_t i = 0; i <= l->n; i++) {
        uint8_t v;
        if (i < l->n && byte_token(&l->s[i], &v)) {
            buf_add(&bytes, &v, 1);
            continue;
        }
        if (bytes.n) {
            if (tok_utf8_check(bytes.p, bytes.n) == bytes.n) sl_push(&o, bytes.p, bytes.n);
            else
                for (size_t k = 0; k < bytes.n; k++) sl_push(&o, "\xEF\xBF\xBD", 3);
            bytes.n = 0;
        }
        if (i < l->n) sl_push(&o, l->s[i].p, l->s[i].n);
    }
    free(bytes.p);
    sl_free(l);
    *l = o;
}

static void dec_fuse(StrList* l) {
    Buf all = {0};
    buf_reserve(&all, 1);
    for (size_t i = 0; i < l->n; i++) buf_add(&all, l->s[i].p, l->s[i].n);
    sl_free(l);
    sl_push(l, all.p, all.n);
    free(all.p);
}

static void dec_strip(StrList* l, const DecStep* d) {
    for (size_t i = 0; i < l->n; i++) {
        Buf* b = &l->s[i];
        size_t lo = 0, hi = b->n;
        for (int k = 0; k < d->start && lo + d->alen <= hi && !memcmp(b->p + lo, d->a, d->alen); k++) lo += d->alen;
        for (int k = 0; k < d->stop && hi >= lo + d->alen && !memcmp(b->p + hi - d->alen, d->a, d->alen); k++) hi -= d->alen;
        memmove(b->p, b->p + lo, hi - lo);
        b->n = hi - lo;
    }
}

static void dec_metaspace(StrList* l, const DecStep* d) {
    for (size_t i = 0; i < l->n; i++)
        replace_all(&l->s[i], d->a, d->alen, (i == 0 && d->scheme != SCHEME_NEVER) ? "" : " ",
                    (i == 0 && d->scheme != SCHEME_NEVER) ? 0 : 1);
}

static void dec_bytelevel(StrList* l) {
    Buf raw = {0};
    buf_reserve(&raw, 1);
    for (size_t i = 0; i < l->n; i++) {
        const uint8_t* s = (const uint8_t*)l->s[i].p;
        size_t n = l->s[i].n, start = raw.n;
        int ok = 1;
        for (size_t j = 0; j < n && ok;) {
            int cl;
            uint32_t cp = utf8_at(s, n, j, &cl);
            if (cp < 324 && cp_to_byte[cp] >= 0) {
                uint8_t b = (uint8_t)cp_to_byte[cp];
                buf_add(&raw, &b, 1);
            } else {
                ok = 0;
            }
            j += cl;
        }
        if (!ok) {  // a token with characters outside the map is taken as its own bytes
            raw.n = start;
            buf_add(&raw, s, n);
        }
    }
    Buf o = {0};
    buf_reserve(&o, 1);
    utf8_lossy_append(&o, (const uint8_t*)raw.p, raw.n);
    sl_free(l);
    sl_push(l, o.p, o.n);
    free(raw.p), free(o.p);
}

char* tok_decode(const Tokenizer* t, const uint32_t* ids, size_t n, int skip_special, size_t* out_len) {
    StrList l = {0};
    for (size_t i = 0; i < n; i++) {
        if (ids[i] >= t->n_ids || !t->id_str[ids[i]]) continue;  // tokenizers skips unknown ids
        if (skip_special && t->id_special[ids[i]]) continue;
        sl_push(&l, t->id_str[ids[i]], t->id_len[ids[i]]);
    }
    Buf out = {0};
    buf_reserve(&out, 1);
    if (!t->has_decoder) {
        for (size_t i = 0; i < l.n; i++) {
            if (i) buf_add(&out, " ", 1);
            buf_add(&out, l.s[i].p, l.s[i].n);
        }
    } else {
        for (int k = 0; k < t->n_dec; k++) {
            const DecStep* d = &t->dec[k];
            switch (d->kind) {
            case DEC_REPLACE:
                for (size_t i = 0; i < l.n; i++) replace_all(&l.s[i], d->a, d->alen, d->b, d->blen);
                break;
            case DEC_BYTEFALLBACK: dec_bytefallback(&l); break;
            case DEC_FUSE: dec_fuse(&l); break;
            case DEC_STRIP: dec_strip(&l, d); break;
            case DEC_METASPACE: dec_metaspace(&l, d); break;
            case DEC_BYTELEVEL: dec_bytelevel(&l); break;
            }
        }
        for (size_t i = 0; i < l.n; i++) buf_add(&out, l.s[i].p, l.s[i].n);
    }
    sl_free(&l);
    out.p[out.n] = 0;
    if (out_len) *out_len = out.n;
    return out.p;
}

// ---------------------------------------------------------------------------------------------
// Queries, adding tokens, saving

int64_t tok_token_to_id(const Tokenizer* t, const char* token) { return lookup_token(t, token); }
const char* tok_id_to_token(const Tokenizer* t, uint32_t id) { return id < t->n_ids ? t->id_str[id] : NULL; }
uint32_t tok_vocab_size(const Tokenizer* t) { return t->n_ids; }
int64_t tok_bos_id(const Tokenizer* t) { return t->bos; }
int64_t tok_eos_id(const Tokenizer* t) { return t->eos; }

uint32_t tok_add_special_token(Tokenizer* t, const char* content) {
    // Already an added token: nothing to do. A model vocab token keeps its id but becomes an added
    // (special) token, so it is matched before BPE, as tokenizers does.
    for (int i = 0; i < t->n_added; i++)
        if (!strcmp(t->added[i].content, content)) return t->added[i].id;
    int64_t have = lookup_token(t, content);
    uint32_t id = have >= 0 ? (uint32_t)have : t->n_ids;
    if (id >= t->id_limit) t->id_limit = id + 1;  // our own token, next to the file's: not a file's claim
    cJSON* o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "id", id);
    cJSON_AddStringToObject(o, "content", content);
    cJSON_AddBoolToObject(o, "single_word", 0);
    cJSON_AddBoolToObject(o, "lstrip", 0);
    cJSON_AddBoolToObject(o, "rstrip", 0);
    cJSON_AddBoolToObject(o, "normalized", 0);
    cJSON_AddBoolToObject(o, "special", 1);
    cJSON* list = cJSON_GetObjectItemCaseSensitive(t->root, "added_tokens");
    if (!cJSON_IsArray(list)) {
        cJSON_DeleteItemFromObjectCaseSensitive(t->root, "added_tokens");
        list = cJSON_AddArrayToObject(t->root, "added_tokens");
    }
    cJSON_AddItemToArray(list, o);
    add_added(t, o);
    index_added(t);
    return id;
}

void tok_save(const Tokenizer* t, const char* path) {
    char* s = cJSON_Print(t->root);
    if (!s) fatal("%s: cannot serialize tokenizer", path);
    write_file_atomic(path, s, strlen(s));
    free(s);
}
