/*
 * Reading and writing safetensors files and sharded safetensors directories (format in
 * safetensors.h). st_open checks every header completely before returning, because a checkpoint
 * that turns out to be broken halfway through loading wastes the minutes spent loading it and gives
 * a worse error. Tensor data is read with pread at each tensor's offset, so memory use is one
 * tensor plus a small conversion buffer however large the checkpoint is. Files are kept open from
 * st_open to st_close so that a checkpoint atomically replaced meanwhile is still read consistently.
 */
#define _GNU_SOURCE
#include "io/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/bf16.h"
#include "common/util.h"

// The data block is stored little-endian; reading it straight into host integers and floats is
// only right on a little-endian host.
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors I/O assumes a little-endian host");

// The reference implementation refuses headers over 100 MB; a larger length is a corrupt file, and
// trusting it would mean a huge allocation before the error.
#define ST_MAX_HEADER_BYTES (100u * 1000u * 1000u)
// JSON numbers are doubles in cJSON: integers above 2^53 cannot be represented exactly.
#define ST_MAX_JSON_INT 9007199254740992.0
#define ST_INDEX_NAME "model.safetensors.index.json"
#define ST_SINGLE_NAME "model.safetensors"
// Elements converted per pread for F16/BF16: large enough to amortise the syscall, small enough to
// stay in cache.
#define ST_CHUNK_ELEMS 32768

typedef struct {
    char* path;
    int fd;
    uint64_t size;
    uint64_t data_start;  // 8 + header length
} StFile;

struct StIndex {
    StTensor* tensors;
    int* tensor_file;  // index into files, parallel to tensors
    int n, cap;
    StFile* files;
    int nfiles;
    char** meta;       // key, value, key, value, ...
    int nmeta;
    int* table;        // open addressing by name: tensor index + 1, 0 = empty
    int table_cap;     // power of two
};

static const struct {
    const char* name;
    int size;
    StDtype dtype;
} st_dtypes[] = {
    {"F32", 4, ST_F32},     {"F16", 2, ST_F16},     {"BF16", 2, ST_BF16},   {"I32", 4, ST_I32},
    {"I64", 8, ST_I64},     {"F64", 8, ST_OTHER},   {"I16", 2, ST_OTHER},   {"I8", 1, ST_OTHER},
    {"U8", 1, ST_OTHER},    {"U16", 2, ST_OTHER},   {"U32", 4, ST_OTHER},   {"U64", 8, ST_OTHER},
    {"BOOL", 1, ST_OTHER},  {"F8_E4M3", 1, ST_OTHER}, {"F8_E5M2", 1, ST_OTHER},
};

int st_dtype_size(const char* dtype_name) {
    for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
        if (strcmp(st_dtypes[i].name, dtype_name) == 0) return st_dtypes[i].size;
    return 0;
}

static StDtype dtype_enum(const char* dtype_name) {
    for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
        if (strcmp(st_dtypes[i].name, dtype_name) == 0) return st_dtypes[i].dtype;
    return ST_OTHER;
}

static void format_shape(char* buf, size_t cap, const int64_t* shape, int ndim) {
    size_t k = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (k < cap) snprintf(buf + k, cap - k, "]");
}

// ---- name lookup ----

static uint64_t hash_name(const char* s) {
    uint64_t h = 1469598103934665603ull;  // FNV-1a
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static int table_lookup(const StIndex* st, const char* name) {
    if (!st->table_cap) return -1;
    uint64_t mask = (uint64_t)st->table_cap - 1;
    for (uint64_t i = hash_name(name) & mask;; i = (i + 1) & mask) {
        int v = st->table[i];
        if (!v) return -1;
        if (strcmp(st->tensors[v - 1].name, name) == 0) return v - 1;
    }
}

static void table_put(StIndex* st, int idx) {
    uint64_t mask = (uint64_t)st->table_cap - 1;
    uint64_t i = hash_name(st->tensors[idx].name) & mask;
    while (st->table[i]) i = (i + 1) & mask;
    st->table[i] = idx + 1;
}

// Keeps the table at most half full so probes stay short.
static void table_grow(StIndex* st, int need) {
    if (st->table_cap >= 2 * need) return;
    int cap = st->table_cap ? st->table_cap : 64;
    while (cap < 2 * need) cap *= 2;
    free(st->table);
    st->table = xcalloc((size_t)cap, sizeof(int));
    st->table_cap = cap;
    for (int i = 0; i < st->n; i++) table_put(st, i);
}

// ---- validation ----

static int json_uint(const cJSON* j, uint64_t* out) {
    if (!cJSON_IsNumber(j)) return 0;
    double d = j->valuedouble;
    if (!(d >= 0) || d > ST_MAX_JSON_INT || (double)(uint64_t)d != d) return 0;
    *out = (uint64_t)d;
    return 1;
}

static void pread_full(int fd, void* dst, uint64_t n, uint64_t off, const char* path) {
    char* p = dst;
    while (n) {
        size_t want = n > (1u << 30) ? (1u << 30) : (size_t)n;
        ssize_t r = pread(fd, p, want, (off_t)off);
        if (r < 0) {
            if (errno == EINTR) continue;
            fatal("%s: read failed at offset %llu: %s", path, (unsigned long long)off, strerror(errno));
        }
        if (r == 0) fatal("%s: file ends at offset %llu, before the data it declares (truncated?)", path,
                          (unsigned long long)off);
        p += r;
        n -= (uint64_t)r;
        off += (uint64_t)r;
    }
}

static void read_metadata(StIndex* st, const cJSON* meta, const char* path, int keep) {
    if (!cJSON_IsObject(meta)) fatal("%s: __metadata__ is not a JSON object", path);
    for (const cJSON* kv = meta->child; kv; kv = kv->next) {
        if (!cJSON_IsString(kv)) fatal("%s: __metadata__ value for key \"%s\" is not a string", path, kv->string);
        if (!keep) continue;
        st->meta = realloc(st->meta, sizeof(char*) * (size_t)(st->nmeta + 2));
        if (!st->meta) fatal("out of memory reading metadata");
        st->meta[st->nmeta++] = xstrdup(kv->string);
        st->meta[st->nmeta++] = xstrdup(kv->valuestring);
    }
}

static void add_tensor(StIndex* st, const cJSON* e, int file_idx) {
    const StFile* f = &st->files[file_idx];
    const char* path = f->path;
    const char* name = e->string;
    if (!cJSON_IsObject(e)) fatal("%s: tensor %s: entry is not a JSON object", path, name);
    if (table_lookup(st, name) >= 0) {
        const StTensor* other = &st->tensors[table_lookup(st, name)];
        if (strcmp(other->file, path) == 0) fatal("%s: tensor %s appears twice in the header", path, name);
        fatal("%s: tensor %s is also in %s", path, name, other->file);
    }

    StTensor t;
    memset(&t, 0, sizeof t);
    const cJSON* dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    if (!cJSON_IsString(dt)) fatal("%s: tensor %s: missing or non-string \"dtype\"", path, name);
    int esize = st_dtype_size(dt->valuestring);
    if (!esize) fatal("%s: tensor %s has unknown dtype \"%s\"", path, name, dt->valuestring);
    snprintf(t.dtype_name, sizeof t.dtype_name, "%s", dt->valuestring);
    t.dtype = dtype_enum(dt->valuestring);

    const cJSON* sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    if (!cJSON_IsArray(sh)) fatal("%s: tensor %s: missing or non-array \"shape\"", path, name);
    int ndim = cJSON_GetArraySize(sh);
    if (ndim > 8) fatal("%s: tensor %s has %d dimensions, at most 8 are supported", path, name, ndim);
    // Sizes are kept below 2^62 bytes so that products cannot overflow; no real file comes close.
    uint64_t numel = 1;
    int d = 0;
    for (const cJSON* x = sh->child; x; x = x->next, d++) {
        uint64_t v;
        if (!json_uint(x, &v)) fatal("%s: tensor %s: shape entry %d is not a non-negative integer", path, name, d);
        if (v && numel > (1ull << 62) / v / (uint64_t)esize) fatal("%s: tensor %s: shape is impossibly large", path, name);
        numel *= v;
        t.shape[d] = (int64_t)v;
    }
    t.ndim = ndim;
    t.numel = (int64_t)numel;
    t.nbytes = numel * (uint64_t)esize;

    const cJSON* off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    uint64_t begin, end;
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2 || !json_uint(off->child, &begin) ||
        !json_uint(off->child->next, &end))
        fatal("%s: tensor %s: \"data_offsets\" is not a pair of non-negative integers", path, name);
    if (end < begin) fatal("%s: tensor %s: data_offsets [%llu, %llu] end before they begin", path, name,
                           (unsigned long long)begin, (unsigned long long)end);
    if (end - begin != t.nbytes) {
        char s[200];
        format_shape(s, sizeof s, t.shape, t.ndim);
        fatal("%s: tensor %s: data_offsets [%llu, %llu] hold %llu bytes, but shape %s of %s needs %llu", path, name,
              (unsigned long long)begin, (unsigned long long)end, (unsigned long long)(end - begin), s, t.dtype_name,
              (unsigned long long)t.nbytes);
    }
    uint64_t data_bytes = f->size - f->data_start;
    if (end > data_bytes)
        fatal("%s: tensor %s: data_offsets [%llu, %llu] extend past the end of the file (data block is %llu bytes)",
              path, name, (unsigned long long)begin, (unsigned long long)end, (unsigned long long)data_bytes);
    t.file_offset = f->data_start + begin;
    t.file = f->path;
    t.name = xstrdup(name);

    table_grow(st, st->n + 1);
    if (st->n == st->cap) {
        st->cap = st->cap ? 2 * st->cap : 64;
        st->tensors = realloc(st->tensors, sizeof(StTensor) * (size_t)st->cap);
        st->tensor_file = realloc(st->tensor_file, sizeof(int) * (size_t)st->cap);
        if (!st->tensors || !st->tensor_file) fatal("out of memory reading %s", path);
    }
    st->tensors[st->n] = t;
    st->tensor_file[st->n] = file_idx;
    st->n++;
    table_put(st, st->n - 1);
}

static const StTensor* sort_base;
static int cmp_by_offset(const void* a, const void* b) {
    uint64_t x = sort_base[*(const int*)a].file_offset, y = sort_base[*(const int*)b].file_offset;
    return x < y ? -1 : x > y;
}

// Two tensors sharing bytes would silently alias each other's data; the reference library rejects
// such files too.
static void check_no_overlap(const StIndex* st, int first, const char* path) {
    int n = st->n - first;
    if (n < 2) return;
    int* order = xmalloc(sizeof(int) * (size_t)n);
    for (int i = 0; i < n; i++) order[i] = first + i;
    sort_base = st->tensors;
    qsort(order, (size_t)n, sizeof(int), cmp_by_offset);
    const StTensor* prev = NULL;
    for (int i = 0; i < n; i++) {
        const StTensor* t = &st->tensors[order[i]];
        if (!t->nbytes) continue;
        if (prev && t->file_offset < prev->file_offset + prev->nbytes)
            fatal("%s: tensors %s and %s overlap in the data block", path, prev->name, t->name);
        prev = t;
    }
    free(order);
}

// Opens and validates one .safetensors file, appending its tensors. keep_metadata: this is the
// file whose __metadata__ st_metadata reports.
static void parse_file(StIndex* st, const char* path, int keep_metadata) {
    int fd = open_regular(path);  // a FIFO is refused, not waited on
    if (fd < 0) fatal("%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) fatal("%s: cannot stat: %s", path, strerror(errno));
    if (!S_ISREG(sb.st_mode)) fatal("%s: not a regular file", path);
    uint64_t size = (uint64_t)sb.st_size;
    if (size < 8) fatal("%s: file is %llu bytes, too short to hold the 8-byte header length", path, (unsigned long long)size);
    uint64_t hlen;
    pread_full(fd, &hlen, 8, 0, path);
    if (hlen > size - 8)
        fatal("%s: header length %llu is larger than the rest of the file (%llu bytes); not a safetensors file?", path,
              (unsigned long long)hlen, (unsigned long long)(size - 8));
    if (hlen > ST_MAX_HEADER_BYTES)
        fatal("%s: header length %llu exceeds the 100 MB limit", path, (unsigned long long)hlen);

    st->files = realloc(st->files, sizeof(StFile) * (size_t)(st->nfiles + 1));
    if (!st->files) fatal("out of memory reading %s", path);
    int file_idx = st->nfiles++;
    StFile* f = &st->files[file_idx];
    f->path = xstrdup(path);
    f->fd = fd;
    f->size = size;
    f->data_start = 8 + hlen;

    char* header = xmalloc(hlen + 1);
    pread_full(fd, header, hlen, 8, path);
    header[hlen] = 0;
    const char* end = NULL;
    cJSON* root = cJSON_ParseWithLengthOpts(header, hlen, &end, 0);
    if (!root) fatal("%s: header is not valid JSON (near byte %lld of the header)", path,
                     (long long)((cJSON_GetErrorPtr() ? cJSON_GetErrorPtr() : header) - header));
    // The writer pads with spaces; anything else after the object means a corrupt header.
    for (const char* p = end; p && p < header + hlen; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') fatal("%s: header has trailing bytes after the JSON object", path);
    if (!cJSON_IsObject(root)) fatal("%s: header is not a JSON object", path);

    int first = st->n;
    for (const cJSON* e = root->child; e; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0) read_metadata(st, e, path, keep_metadata);
        else add_tensor(st, e, file_idx);
    }
    check_no_overlap(st, first, path);
    cJSON_Delete(root);
    free(header);
}

static int cmp_str(const void* a, const void* b) { return strcmp(*(char* const*)a, *(char* const*)b); }

static void parse_index(StIndex* st, const char* dir, const char* index_path) {
    size_t len;
    char* text = read_file_or_die(index_path, &len);
    cJSON* root = cJSON_ParseWithLength(text, len);
    if (!root) fatal("%s: not valid JSON", index_path);
    if (!cJSON_IsObject(root)) fatal("%s: not a JSON object", index_path);
    const cJSON* wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(wm)) fatal("%s: missing or non-object \"weight_map\"", index_path);
    int n = cJSON_GetArraySize(wm);
    if (n == 0) fatal("%s: \"weight_map\" is empty", index_path);

    char** shards = xmalloc(sizeof(char*) * (size_t)n);
    int nshards = 0;
    for (const cJSON* e = wm->child; e; e = e->next) {
        if (!cJSON_IsString(e) || !e->valuestring[0])
            fatal("%s: weight_map entry for %s is not a file name", index_path, e->string);
        shards[nshards++] = e->valuestring;
    }
    qsort(shards, (size_t)nshards, sizeof(char*), cmp_str);
    int u = 0;
    for (int i = 0; i < nshards; i++)
        if (!u || strcmp(shards[u - 1], shards[i]) != 0) shards[u++] = shards[i];
    nshards = u;

    // Existence first, so a missing shard is reported before minutes of validating the others.
    for (int i = 0; i < nshards; i++) {
        char* p = xsprintf("%s/%s", dir, shards[i]);
        if (!file_exists(p)) fatal("%s: shard %s named by the index does not exist", index_path, p);
        free(p);
    }
    for (int i = 0; i < nshards; i++) {
        char* p = xsprintf("%s/%s", dir, shards[i]);
        parse_file(st, p, i == 0);
        free(p);
    }
    for (const cJSON* e = wm->child; e; e = e->next) {
        char* p = xsprintf("%s/%s", dir, e->valuestring);
        const StTensor* t = st_find(st, e->string);
        if (!t) fatal("%s: tensor %s is absent, though %s places it in this shard", p, e->string, index_path);
        if (strcmp(t->file, p) != 0)
            fatal("%s: tensor %s is absent: %s places it here, but it is in %s", p, e->string, index_path, t->file);
        free(p);
    }
    free(shards);
    cJSON_Delete(root);
    free(text);
}

StIndex* st_open(const char* path) {
    StIndex* st = xcalloc(1, sizeof(StIndex));
    struct stat sb;
    if (stat(path, &sb) != 0) fatal("%s: cannot open: %s", path, strerror(errno));
    if (S_ISDIR(sb.st_mode)) {
        char* dir = xstrdup(path);
        for (size_t k = strlen(dir); k > 1 && dir[k - 1] == '/';) dir[--k] = 0;
        char* index = xsprintf("%s/%s", dir, ST_INDEX_NAME);
        char* single = xsprintf("%s/%s", dir, ST_SINGLE_NAME);
        if (file_exists(index)) parse_index(st, dir, index);
        else if (file_exists(single)) parse_file(st, single, 1);
        else fatal("%s: directory has neither %s nor %s", path, ST_INDEX_NAME, ST_SINGLE_NAME);
        free(dir);
        free(index);
        free(single);
    } else {
        parse_file(st, path, 1);
    }
    return st;
}

int st_count(const StIndex* st) { return st->n; }

const StTensor* st_tensor(const StIndex* st, int i) {
    QSTAR_ASSERT(i >= 0 && i < st->n);
    return &st->tensors[i];
}

const StTensor* st_find(const StIndex* st, const char* name) {
    int i = table_lookup(st, name);
    return i < 0 ? NULL : &st->tensors[i];
}

const char* st_metadata(const StIndex* st, const char* key) {
    for (int i = 0; i < st->nmeta; i += 2)
        if (strcmp(st->meta[i], key) == 0) return st->meta[i + 1];
    return NULL;
}

static const StFile* file_of(const StIndex* st, const StTensor* t) {
    QSTAR_ASSERT(t >= st->tensors && t < st->tensors + st->n);
    return &st->files[st->tensor_file[t - st->tensors]];
}

void st_read_raw(const StIndex* st, const StTensor* t, void* dst) {
    const StFile* f = file_of(st, t);
    pread_full(f->fd, dst, t->nbytes, t->file_offset, f->path);
}

// Exact: every half value is a float value. Subnormal halves are mant * 2^-24, which the float
// multiply represents exactly, so no normalisation loop is needed.
static inline float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    uint32_t bits;
    if (exp == 0) {
        float v = (float)mant * 0x1p-24f;
        memcpy(&bits, &v, 4);
        bits |= sign;
    } else if (exp == 31) {
        // Keep the payload; set the quiet bit as the hardware conversion (F16C) does.
        bits = sign | 0x7f800000u | (mant << 13) | (mant ? 0x00400000u : 0);
    } else {
        bits = sign | ((exp + 112) << 23) | (mant << 13);
    }
    float out;
    memcpy(&out, &bits, 4);
    return out;
}

static inline float bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float out;
    memcpy(&out, &bits, 4);
    return out;
}

void st_read_f32(const StIndex* st, const StTensor* t, float* dst, const int64_t* expected_shape, int expected_ndim) {
    const StFile* f = file_of(st, t);
    int same = expected_ndim == t->ndim;
    for (int i = 0; same && i < t->ndim; i++) same = expected_shape[i] == t->shape[i];
    if (!same) {
        char a[200], b[200];
        format_shape(a, sizeof a, t->shape, t->ndim);
        format_shape(b, sizeof b, expected_shape, expected_ndim > 8 ? 8 : expected_ndim < 0 ? 0 : expected_ndim);
        fatal("%s: tensor %s has shape %s, expected %s", f->path, t->name, a, b);
    }
    if (t->dtype == ST_F32) {
        pread_full(f->fd, dst, t->nbytes, t->file_offset, f->path);
        return;
    }
    if (t->dtype != ST_F16 && t->dtype != ST_BF16)
        fatal("%s: tensor %s has dtype %s, which cannot be read as float (F32, F16 and BF16 can)", f->path, t->name,
              t->dtype_name);
    uint16_t* buf = xmalloc(sizeof(uint16_t) * ST_CHUNK_ELEMS);
    for (int64_t i = 0; i < t->numel; i += ST_CHUNK_ELEMS) {
        int64_t k = t->numel - i < ST_CHUNK_ELEMS ? t->numel - i : ST_CHUNK_ELEMS;
        pread_full(f->fd, buf, (uint64_t)k * 2, t->file_offset + (uint64_t)i * 2, f->path);
        if (t->dtype == ST_F16)
            for (int64_t j = 0; j < k; j++) dst[i + j] = f16_to_f32(buf[j]);
        else
            for (int64_t j = 0; j < k; j++) dst[i + j] = bf16_to_f32(buf[j]);
    }
    free(buf);
}

void st_close(StIndex* st) {
    if (!st) return;
    for (int i = 0; i < st->n; i++) free(st->tensors[i].name);
    for (int i = 0; i < st->nfiles; i++) {
        close(st->files[i].fd);
        free(st->files[i].path);
    }
    for (int i = 0; i < st->nmeta; i++) free(st->meta[i]);
    free(st->meta);
    free(st->files);
    free(st->tensors);
    free(st->tensor_file);
    free(st->table);
    free(st);
}

// ---- writing ----

typedef struct {
    char* p;
    size_t len, cap;
} Buf;

static void buf_put(Buf* b, const char* s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        while (b->len + n + 1 > b->cap) b->cap = b->cap ? 2 * b->cap : 4096;
        b->p = realloc(b->p, b->cap);
        if (!b->p) fatal("out of memory building a safetensors header");
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void buf_str(Buf* b, const char* s) { buf_put(b, s, strlen(s)); }

static void buf_json_string(Buf* b, const char* s) {
    buf_put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            buf_put(b, esc, 2);
        } else if (c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            buf_put(b, esc, 6);
        } else {
            buf_put(b, (const char*)&c, 1);
        }
    }
    buf_put(b, "\"", 1);
}

static void buf_u64(Buf* b, uint64_t v) {
    char s[32];
    snprintf(s, sizeof s, "%llu", (unsigned long long)v);
    buf_str(b, s);
}

void st_write_f32(const char* path, const StWriteTensor* tensors, int n, const char* const* metadata) {
    st_write(path, tensors, n, metadata);
}

// A BF16 tensor's bytes: converted in chunks, so a large tensor never needs a second whole copy.
static void write_bf16(AtomicFile* af, const float* x, uint64_t n) {
    enum { CHUNK = 1 << 16 };
    uint16_t* h = xmalloc(sizeof(uint16_t) * CHUNK);
    for (uint64_t i = 0; i < n; i += CHUNK) {
        const uint64_t k = n - i < CHUNK ? n - i : CHUNK;
        for (uint64_t j = 0; j < k; j++) h[j] = bf16_from_float(x[i + j]);
        atomic_write(af, h, k * sizeof(uint16_t));
    }
    free(h);
}

void st_write(const char* path, const StWriteTensor* tensors, int n, const char* const* metadata) {
    QSTAR_ASSERT(n >= 0);
    Buf h = {0};
    buf_str(&h, "{\"__metadata__\":{\"format\":\"pt\"");
    for (int i = 0; metadata && metadata[i]; i += 2) {
        if (!metadata[i + 1]) fatal("%s: metadata key \"%s\" has no value", path, metadata[i]);
        if (strcmp(metadata[i], "format") == 0) fatal("%s: metadata key \"format\" is reserved (always \"pt\")", path);
        for (int j = 0; j < i; j += 2)
            if (strcmp(metadata[i], metadata[j]) == 0) fatal("%s: metadata key \"%s\" given twice", path, metadata[i]);
        buf_str(&h, ",");
        buf_json_string(&h, metadata[i]);
        buf_str(&h, ":");
        buf_json_string(&h, metadata[i + 1]);
    }
    buf_str(&h, "}");

    // The checks below are on names and shapes our own code builds; failing them is a bug, but one
    // that must not produce a file transformers then mis-loads.
    uint64_t offset = 0;
    for (int i = 0; i < n; i++) {
        const StWriteTensor* t = &tensors[i];
        if (!t->name || !t->name[0]) fatal("%s: tensor %d has an empty name", path, i);
        if (strcmp(t->name, "__metadata__") == 0) fatal("%s: \"__metadata__\" cannot be a tensor name", path);
        for (int j = 0; j < i; j++)
            if (strcmp(tensors[j].name, t->name) == 0) fatal("%s: tensor name %s appears twice", path, t->name);
        if (t->ndim < 0 || t->ndim > 8) fatal("%s: tensor %s has %d dimensions (0 to 8 allowed)", path, t->name, t->ndim);
        uint64_t numel = 1;
        for (int d = 0; d < t->ndim; d++) {
            if (t->shape[d] < 0) fatal("%s: tensor %s has a negative dimension", path, t->name);
            numel *= (uint64_t)t->shape[d];
        }
        if (numel && !t->data) fatal("%s: tensor %s has no data", path, t->name);
        buf_str(&h, ",");
        buf_json_string(&h, t->name);
        buf_str(&h, t->bf16 ? ":{\"dtype\":\"BF16\",\"shape\":[" : ":{\"dtype\":\"F32\",\"shape\":[");
        for (int d = 0; d < t->ndim; d++) {
            if (d) buf_str(&h, ",");
            buf_u64(&h, (uint64_t)t->shape[d]);
        }
        buf_str(&h, "],\"data_offsets\":[");
        buf_u64(&h, offset);
        buf_str(&h, ",");
        offset += numel * (t->bf16 ? 2 : 4);
        buf_u64(&h, offset);
        buf_str(&h, "]}");
    }
    buf_str(&h, "}");
    // Spaces are JSON whitespace, so padding keeps the header valid while aligning the data for
    // readers that mmap it and cast to float*.
    while ((8 + h.len) % 8) buf_str(&h, " ");

    uint64_t hlen = h.len;
    AtomicFile af = atomic_open(path);
    atomic_write(&af, &hlen, 8);
    atomic_write(&af, h.p, h.len);
    for (int i = 0; i < n; i++) {
        uint64_t numel = 1;
        for (int d = 0; d < tensors[i].ndim; d++) numel *= (uint64_t)tensors[i].shape[d];
        if (numel && tensors[i].bf16) write_bf16(&af, tensors[i].data, numel);
        else if (numel) atomic_write(&af, tensors[i].data, numel * 4);
    }
    atomic_commit(&af);
    // The rename itself is only durable once the directory entry is on disk.
    char* dir = xstrdup(path);
    char* slash = strrchr(dir, '/');
    if (slash == dir) dir[1] = 0;
    else if (slash) *slash = 0;
    else strcpy(dir, ".");
    fsync_dir(dir);
    free(dir);
    free(h.p);
}
