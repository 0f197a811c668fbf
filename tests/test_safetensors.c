/*
 * Tests for io/safetensors: F32 write/read round trips, hand-built F16/BF16/integer files with
 * known bit patterns (fp16 subnormals, infinities, signed zeros), sharded directories, atomic
 * writes, and the fatal messages for shape and dtype mismatches.
 *
 * The binary also has modes used by the shell tests, so that bad files and files from the Python
 * safetensors library are exercised through the real reader without a separate CLI:
 *   --open PATH                      st_open and read every tensor; exit 0 when all is well
 *   --dump PATH NAME OUT             write tensor NAME, read as float32, raw to OUT
 *   --write OUT [NAME DIMS BIN]...   st_write_f32 tensors from raw float32 files; DIMS is "2x3",
 *                                    "" for a scalar; metadata {"source": "qstar-test"}
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "io/safetensors.h"
#include "common/fs.h"
#include "common/util.h"
#include "tests/check.h"

static char tmpdir[] = "/tmp/qstar_st_XXXXXX";

static uint32_t bits_of(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float float_of(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

// ---- modes for the shell tests ----

static int mode_open(const char* path) {
    StIndex* st = st_open(path);
    for (int i = 0; i < st_count(st); i++) {
        const StTensor* t = st_tensor(st, i);
        int is_float = t->dtype == ST_F32 || t->dtype == ST_F16 || t->dtype == ST_BF16;
        void* buf = xmalloc(is_float ? (size_t)t->numel * 4 : (size_t)t->nbytes);
        if (is_float) st_read_f32(st, t, buf, t->shape, t->ndim);
        else st_read_raw(st, t, buf);
        free(buf);
    }
    printf("%d tensors\n", st_count(st));
    st_close(st);
    return 0;
}

static int mode_dump(const char* path, const char* name, const char* out) {
    StIndex* st = st_open(path);
    const StTensor* t = st_find(st, name);
    if (!t) fatal("%s: no tensor %s", path, name);
    float* buf = xmalloc((size_t)t->numel * 4);
    st_read_f32(st, t, buf, t->shape, t->ndim);
    write_file_atomic(out, buf, (size_t)t->numel * 4);
    free(buf);
    st_close(st);
    return 0;
}

static int mode_write(const char* out, int nargs, char** args) {
    if (nargs % 3) fatal("--write wants NAME DIMS BIN triples");
    int n = nargs / 3;
    StWriteTensor* ts = xcalloc((size_t)(n ? n : 1), sizeof(StWriteTensor));
    for (int i = 0; i < n; i++) {
        ts[i].name = args[3 * i];
        const char* p = args[3 * i + 1];
        int64_t numel = 1;
        while (*p) {
            char* end;
            long long v = strtoll(p, &end, 10);
            if (end == p || v < 0 || (*end && *end != 'x') || ts[i].ndim == 8) fatal("bad DIMS %s", args[3 * i + 1]);
            ts[i].shape[ts[i].ndim++] = v;
            numel *= v;
            p = *end ? end + 1 : end;
        }
        size_t len;
        ts[i].data = (const float*)read_file_or_die(args[3 * i + 2], &len);
        if ((int64_t)len != numel * 4) fatal("%s: %zu bytes, expected %lld", args[3 * i + 2], len, (long long)numel * 4);
    }
    const char* meta[] = {"source", "qstar-test", NULL};
    st_write_f32(out, ts, n, meta);
    for (int i = 0; i < n; i++) free((void*)ts[i].data);
    free(ts);
    return 0;
}

// ---- helpers for the unit tests ----

// Runs fn(arg) in a child and returns its exit status, with its stderr captured into err.
static int run_child(void (*fn)(void*), void* arg, char* err, size_t errcap) {
    int fds[2];
    if (pipe(fds) != 0) return -1;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        dup2(fds[1], 2);
        fn(arg);
        _exit(0);
    }
    close(fds[1]);
    size_t k = 0;
    ssize_t r;
    while (k + 1 < errcap && (r = read(fds[0], err + k, errcap - 1 - k)) > 0) k += (size_t)r;
    err[k] = 0;
    close(fds[0]);
    int status;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static char* tmp_path(const char* name) { return xsprintf("%s/%s", tmpdir, name); }

static void write_raw_file(const char* path, const char* header, const void* data, size_t data_len) {
    FILE* f = fopen(path, "wb");
    uint64_t n = strlen(header);
    fwrite(&n, 8, 1, f);
    fwrite(header, 1, n, f);
    fwrite(data, 1, data_len, f);
    fclose(f);
}

static int count_dir_entries(const char* dir) {
    DIR* d = opendir(dir);
    int n = 0;
    for (struct dirent* e; (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

// ---- unit tests ----

static void test_roundtrip(void) {
    char* path = tmp_path("rt.safetensors");
    float special[6] = {1.5f, -0.0f, INFINITY, -INFINITY, NAN, 1e-45f};
    float scalar = 3.25f;
    float mat[12];
    for (int i = 0; i < 12; i++) mat[i] = (float)i * 0.1f - 0.5f;
    StWriteTensor ts[4] = {
        {.name = "model.layers.0.w\"q\\", .ndim = 2, .shape = {3, 4}, .data = mat},
        {.name = "scalar", .ndim = 0, .data = &scalar},
        {.name = "special", .ndim = 1, .shape = {6}, .data = special},
        {.name = "empty", .ndim = 2, .shape = {0, 3}, .data = NULL},
    };
    const char* meta[] = {"step", "1200", "note", "line\nbreak \"quoted\"", NULL};
    st_write_f32(path, ts, 4, meta);

    // The data block must start 8-byte aligned.
    FILE* f = fopen(path, "rb");
    uint64_t hlen = 0;
    CHECK(fread(&hlen, 8, 1, f) == 1, "read header length");
    fclose(f);
    CHECK((8 + hlen) % 8 == 0, "header length %llu leaves data unaligned", (unsigned long long)hlen);

    StIndex* st = st_open(path);
    CHECK(st_count(st) == 4, "count %d", st_count(st));
    for (int i = 0; i < 4 && i < st_count(st); i++) {
        const StTensor* t = st_tensor(st, i);
        CHECK(strcmp(t->name, ts[i].name) == 0, "order: tensor %d is %s", i, t->name);
        CHECK(t->dtype == ST_F32 && strcmp(t->dtype_name, "F32") == 0, "dtype of %s", t->name);
        CHECK(t->ndim == ts[i].ndim, "ndim of %s", t->name);
        int64_t numel = 1;
        for (int d = 0; d < t->ndim; d++) {
            CHECK(t->shape[d] == ts[i].shape[d], "shape of %s", t->name);
            numel *= ts[i].shape[d];
        }
        CHECK(t->numel == numel && t->nbytes == (uint64_t)numel * 4, "numel/nbytes of %s", t->name);
        CHECK(t->file_offset % 8 == 0 || i > 0, "first tensor aligned");
        CHECK(strcmp(t->file, path) == 0, "file of %s", t->name);
        float buf[16];
        memset(buf, 0xAB, sizeof buf);
        st_read_f32(st, t, buf, ts[i].shape, ts[i].ndim);
        CHECK(numel == 0 || memcmp(buf, ts[i].data, (size_t)numel * 4) == 0, "%s differs after round trip", t->name);
    }
    CHECK(st_find(st, "special") == st_tensor(st, 2), "st_find special");
    CHECK(st_find(st, "model.layers.0.w\"q\\") == st_tensor(st, 0), "st_find escaped name");
    CHECK(st_find(st, "nope") == NULL, "st_find absent");
    CHECK(st_metadata(st, "format") && strcmp(st_metadata(st, "format"), "pt") == 0, "format metadata");
    CHECK(st_metadata(st, "step") && strcmp(st_metadata(st, "step"), "1200") == 0, "step metadata");
    CHECK(st_metadata(st, "note") && strcmp(st_metadata(st, "note"), "line\nbreak \"quoted\"") == 0, "note metadata");
    CHECK(st_metadata(st, "absent") == NULL, "absent metadata");
    st_close(st);

    // No metadata at all still gets "format": "pt"; the single-file directory layout works.
    char* dir = tmp_path("single");
    mkdir_p(dir);
    char* p2 = xsprintf("%s/model.safetensors", dir);
    st_write_f32(p2, ts + 1, 1, NULL);
    st = st_open(dir);
    CHECK(st_count(st) == 1 && st_metadata(st, "format") && !strcmp(st_metadata(st, "format"), "pt"), "dir with model.safetensors");
    float v = 0;
    st_read_f32(st, st_find(st, "scalar"), &v, NULL, 0);
    CHECK(v == 3.25f, "scalar read %g", v);
    st_close(st);
    CHECK(count_dir_entries(dir) == 1, "leftover files next to model.safetensors");
    free(p2);
    free(dir);
    free(path);
}

// Known fp16/bf16 bit patterns and the exact float32 they stand for.
static const uint16_t f16_in[] = {0x3C00, 0xC000, 0x0001, 0x03FF, 0x0400, 0x7BFF, 0x7C00, 0xFC00, 0x8000, 0x3555, 0x8001, 0x0000};
static const uint32_t f16_out[] = {0x3F800000, 0xC0000000, 0x33800000, 0x387FC000, 0x38800000, 0x477FE000,
                                   0x7F800000, 0xFF800000, 0x80000000, 0x3EAAA000, 0xB3800000, 0x00000000};
static const uint16_t bf16_in[] = {0x3F80, 0xC040, 0x8000, 0x7F80, 0xFF80, 0x0001, 0x4049, 0x7F7F};
#define NF16 (int)(sizeof f16_in / sizeof f16_in[0])
#define NBF16 (int)(sizeof bf16_in / sizeof bf16_in[0])

static void expect_shape_mismatch(void* arg) {
    const char* path = arg;
    StIndex* st = st_open(path);
    int64_t shape[2] = {4, 3};
    float buf[12];
    st_read_f32(st, st_find(st, "h"), buf, shape, 2);
}

static void expect_bad_dtype(void* arg) {
    StIndex* st = st_open(arg);
    int64_t shape[1] = {3};
    float buf[3];
    st_read_f32(st, st_find(st, "ints"), buf, shape, 1);
}

static void test_handmade(void) {
    char* path = tmp_path("hand.safetensors");
    // Data layout: 3 bytes of leading pad (so reads are unaligned), f16 [3,4] at 3..27, bf16 [8]
    // at 27..43, i32 [3] at 43..55, i64 [2] at 55..71, u8 [2] at 71..73. Header keys are not in
    // offset order, as other writers may produce.
    unsigned char data[73];
    memset(data, 0xEE, sizeof data);
    memcpy(data + 3, f16_in, sizeof f16_in);
    memcpy(data + 27, bf16_in, sizeof bf16_in);
    int32_t i32[3] = {-7, 0, 2147483647};
    int64_t i64[2] = {-1, 1ll << 40};
    memcpy(data + 43, i32, 12);
    memcpy(data + 55, i64, 16);
    data[71] = 1;
    data[72] = 2;
    const char* header =
        "{\"b\":{\"dtype\":\"BF16\",\"shape\":[8],\"data_offsets\":[27,43]},"
        "\"__metadata__\":{\"who\":\"hand\"},"
        "\"h\":{\"dtype\":\"F16\",\"shape\":[3,4],\"data_offsets\":[3,27]},"
        "\"ints\":{\"dtype\":\"I32\",\"shape\":[3],\"data_offsets\":[43,55]},"
        "\"longs\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[55,71]},"
        "\"bytes\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[71,73]}}";
    write_raw_file(path, header, data, sizeof data);

    StIndex* st = st_open(path);
    CHECK(st_count(st) == 5, "count %d", st_count(st));
    CHECK(st_metadata(st, "who") && !strcmp(st_metadata(st, "who"), "hand"), "metadata who");
    CHECK(st_metadata(st, "format") == NULL, "no format metadata in handmade file");
    const StTensor* h = st_find(st, "h");
    CHECK(h && h->dtype == ST_F16 && !strcmp(h->dtype_name, "F16") && h->ndim == 2 && h->numel == 12, "f16 entry");
    CHECK(h && h->file_offset == 8 + strlen(header) + 3 && h->nbytes == 24, "f16 offset");
    float out[12];
    int64_t hs[2] = {3, 4};
    st_read_f32(st, h, out, hs, 2);
    for (int i = 0; i < NF16; i++)
        CHECK(bits_of(out[i]) == f16_out[i], "f16 0x%04x -> 0x%08x, expected 0x%08x", f16_in[i], bits_of(out[i]), f16_out[i]);
    CHECK(out[2] == 0x1p-24f && out[3] == 1023 * 0x1p-24f && out[5] == 65504.0f && out[9] == 0.333251953125f, "f16 values");
    CHECK(signbit(out[8]) && out[8] == 0, "f16 negative zero");

    const StTensor* b = st_find(st, "b");
    CHECK(b && b->dtype == ST_BF16 && !strcmp(b->dtype_name, "BF16"), "bf16 entry");
    int64_t bs[1] = {8};
    st_read_f32(st, b, out, bs, 1);
    for (int i = 0; i < NBF16; i++)
        CHECK(bits_of(out[i]) == (uint32_t)bf16_in[i] << 16, "bf16 0x%04x -> 0x%08x", bf16_in[i], bits_of(out[i]));
    CHECK(out[0] == 1.0f && out[1] == -3.0f && out[6] == 3.140625f && isinf(out[3]) && out[5] == float_of(0x00010000), "bf16 values");

    const StTensor* it = st_find(st, "ints");
    CHECK(it && it->dtype == ST_I32 && it->nbytes == 12, "i32 entry");
    int32_t ri[3] = {0};
    st_read_raw(st, it, ri);
    CHECK(memcmp(ri, i32, 12) == 0, "i32 raw read");
    const StTensor* lt = st_find(st, "longs");
    CHECK(lt && lt->dtype == ST_I64, "i64 entry");
    int64_t rl[2] = {0};
    st_read_raw(st, lt, rl);
    CHECK(rl[0] == -1 && rl[1] == 1ll << 40, "i64 raw read");
    const StTensor* ut = st_find(st, "bytes");
    CHECK(ut && ut->dtype == ST_OTHER && !strcmp(ut->dtype_name, "U8") && ut->nbytes == 2, "u8 entry is ST_OTHER");
    CHECK(st_tensor(st, 0) == b && st_tensor(st, 1) == h, "header order kept");
    st_close(st);

    char err[4096];
    int rc = run_child(expect_shape_mismatch, path, err, sizeof err);
    char* want = xsprintf("qstar: error: %s: tensor h has shape [3, 4], expected [4, 3]\n", path);
    CHECK(rc == 1 && strcmp(err, want) == 0, "shape mismatch: rc %d, stderr %s", rc, err);
    free(want);
    rc = run_child(expect_bad_dtype, path, err, sizeof err);
    CHECK(rc == 1 && strncmp(err, "qstar: error: ", 14) == 0 && strstr(err, path) && strstr(err, "I32") &&
              strchr(err, '\n') == err + strlen(err) - 1,
          "read I32 as float: rc %d, stderr %s", rc, err);
    free(path);
}

// More elements than one conversion chunk, so chunk boundaries are exercised.
static void test_large_f16(void) {
    char* path = tmp_path("large.safetensors");
    int n = 100003;
    uint16_t* d = xmalloc((size_t)n * 2);
    for (int i = 0; i < n; i++) d[i] = (uint16_t)(i * 2654435761u >> 16);
    char* header = xsprintf("{\"x\":{\"dtype\":\"F16\",\"shape\":[%d],\"data_offsets\":[0,%d]},"
                            "\"y\":{\"dtype\":\"BF16\",\"shape\":[%d],\"data_offsets\":[%d,%d]}}",
                            n, 2 * n, n, 2 * n, 4 * n);
    FILE* f = fopen(path, "wb");
    uint64_t hl = strlen(header);
    fwrite(&hl, 8, 1, f);
    fwrite(header, 1, hl, f);
    fwrite(d, 2, (size_t)n, f);
    fwrite(d, 2, (size_t)n, f);
    fclose(f);
    StIndex* st = st_open(path);
    float* out = xmalloc((size_t)n * 4);
    int64_t shape[1] = {n};
    st_read_f32(st, st_find(st, "x"), out, shape, 1);
    int bad = 0;
    for (int i = 0; i < n; i++) {
        uint16_t v = d[i];
        uint32_t e = (v >> 10) & 0x1f;
        if (e != 0 && e != 31) {  // normal halves: the reference is the closed-form value
            float ref = ldexpf((float)(1024 + (v & 0x3ff)), (int)e - 25) * ((v & 0x8000) ? -1.f : 1.f);
            bad += bits_of(out[i]) != bits_of(ref);
        } else if (e == 0) {
            float ref = (float)(v & 0x3ff) * 0x1p-24f * ((v & 0x8000) ? -1.f : 1.f);
            bad += bits_of(out[i]) != bits_of(ref);
        } else {
            bad += (v & 0x3ff) ? !isnan(out[i]) : !isinf(out[i]);
        }
    }
    CHECK(bad == 0, "%d of %d f16 values wrong across chunks", bad, n);
    st_read_f32(st, st_find(st, "y"), out, shape, 1);
    bad = 0;
    for (int i = 0; i < n; i++) bad += bits_of(out[i]) != (uint32_t)d[i] << 16;
    CHECK(bad == 0, "%d of %d bf16 values wrong across chunks", bad, n);
    st_close(st);
    free(out);
    free(d);
    free(header);
    free(path);
}

static void test_sharded(void) {
    char* dir = tmp_path("sharded");
    mkdir_p(dir);
    float a[6] = {1, 2, 3, 4, 5, 6}, b[2] = {-1, -2}, c[3] = {7, 8, 9};
    StWriteTensor s1[2] = {{.name = "a", .ndim = 2, .shape = {2, 3}, .data = a}, {.name = "b", .ndim = 1, .shape = {2}, .data = b}};
    StWriteTensor s2[1] = {{.name = "c", .ndim = 1, .shape = {3}, .data = c}};
    const char* m1[] = {"shard", "one", NULL};
    const char* m2[] = {"shard", "two", NULL};
    char* p1 = xsprintf("%s/model-00001-of-00002.safetensors", dir);
    char* p2 = xsprintf("%s/model-00002-of-00002.safetensors", dir);
    st_write_f32(p2, s2, 1, m2);
    st_write_f32(p1, s1, 2, m1);
    // A stray model.safetensors next to the index must be ignored: the index wins.
    char* ps = xsprintf("%s/model.safetensors", dir);
    st_write_f32(ps, s2, 1, NULL);
    const char* index =
        "{\"metadata\": {\"total_size\": 44}, \"weight_map\": {\"c\": \"model-00002-of-00002.safetensors\","
        " \"a\": \"model-00001-of-00002.safetensors\", \"b\": \"model-00001-of-00002.safetensors\"}}";
    char* pi = xsprintf("%s/model.safetensors.index.json", dir);
    write_file_atomic(pi, index, strlen(index));

    char* dir_slash = xsprintf("%s/", dir);
    StIndex* st = st_open(dir_slash);
    CHECK(st_count(st) == 3, "sharded count %d", st_count(st));
    CHECK(st_count(st) == 3 && !strcmp(st_tensor(st, 0)->name, "a") && !strcmp(st_tensor(st, 2)->name, "c"), "shard order");
    const StTensor* ta = st_find(st, "a");
    const StTensor* tc = st_find(st, "c");
    CHECK(ta && strcmp(ta->file, p1) == 0, "a in shard 1: %s", ta ? ta->file : "-");
    CHECK(tc && strcmp(tc->file, p2) == 0, "c in shard 2: %s", tc ? tc->file : "-");
    CHECK(st_metadata(st, "shard") && !strcmp(st_metadata(st, "shard"), "one"), "metadata from first shard");
    float out[6];
    int64_t sa[2] = {2, 3}, sc[1] = {3};
    st_read_f32(st, ta, out, sa, 2);
    CHECK(memcmp(out, a, sizeof a) == 0, "a values");
    st_read_f32(st, tc, out, sc, 1);
    CHECK(memcmp(out, c, sizeof c) == 0, "c values");
    st_close(st);
    free(dir_slash);
    free(p1);
    free(p2);
    free(ps);
    free(pi);
    free(dir);
}

static char* atomic_path;
static void write_too_big(void* arg) {
    // With a 4 KiB file size limit the write fails partway, like a full disk or a crash would.
    struct rlimit rl = {4096, 4096};
    setrlimit(RLIMIT_FSIZE, &rl);
    signal(SIGXFSZ, SIG_IGN);
    static float big[4096];
    StWriteTensor t = {.name = "big", .ndim = 1, .shape = {4096}, .data = big};
    st_write_f32(atomic_path, &t, 1, NULL);
}

static void test_atomic(void) {
    char* dir = tmp_path("atomic");
    mkdir_p(dir);
    atomic_path = xsprintf("%s/ckpt.safetensors", dir);
    float x[2] = {1, 2};
    StWriteTensor t = {.name = "x", .ndim = 1, .shape = {2}, .data = x};
    st_write_f32(atomic_path, &t, 1, NULL);
    CHECK(count_dir_entries(dir) == 1, "leftover temp file after a successful write (%d entries)", count_dir_entries(dir));
    size_t len0;
    char* before = read_file_or_die(atomic_path, &len0);

    // A write that fails before commit leaves the previous file untouched and nothing at a new path.
    char err[4096];
    int rc = run_child(write_too_big, NULL, err, sizeof err);
    CHECK(rc == 1 && strstr(err, "qstar: error: "), "oversized write must fail: rc %d, %s", rc, err);
    size_t len1;
    char* after = read_file_or_die(atomic_path, &len1);
    CHECK(len0 == len1 && memcmp(before, after, len0) == 0, "failed write changed the existing file");
    free(atomic_path);
    atomic_path = xsprintf("%s/new.safetensors", dir);
    rc = run_child(write_too_big, NULL, err, sizeof err);
    CHECK(rc == 1 && !file_exists(atomic_path), "failed write left a file at the final path");
    free(before);
    free(after);
    free(atomic_path);
    free(dir);
}

int main(int argc, char** argv) {
    if (argc == 3 && !strcmp(argv[1], "--open")) return mode_open(argv[2]);
    if (argc == 5 && !strcmp(argv[1], "--dump")) return mode_dump(argv[2], argv[3], argv[4]);
    if (argc >= 3 && !strcmp(argv[1], "--write")) return mode_write(argv[2], argc - 3, argv + 3);
    if (argc > 1) fatal("usage: %s [--open PATH | --dump PATH NAME OUT | --write OUT [NAME DIMS BIN]...]", argv[0]);
    if (!mkdtemp(tmpdir)) fatal("%s: cannot create temp directory", tmpdir);
    test_roundtrip();
    test_handmade();
    test_large_f16();
    test_sharded();
    test_atomic();
    free(tree_remove(tmpdir));
    return test_summary();
}
