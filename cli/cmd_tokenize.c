/*
 * `qstar tokenize --tokenizer T --in FILES... --out DIR [--field text] [--shard-tokens N] [--threads K]`
 *
 * Data preparation: every document is encoded (no BOS) and followed by the tokenizer's EOS; the
 * token stream is cut into shards of exactly N tokens (the last one shorter), written as
 * DIR/shard_000000.bin, ... in the io/shard.h format, uint16 when the vocab fits, else uint32.
 *
 * Inputs: *.jsonl / *.json are JSON Lines (one object per line, the text in --field; blank lines are
 * skipped); *.txt is one document per file (the whole file, so paragraph breaks stay inside the
 * document). Any bad input (malformed or truncated JSON line, missing or non-string field, invalid
 * UTF-8, unknown extension) stops the run with "FILE:LINE: problem" and exit status 1.
 *
 * All-or-nothing: shards are written under temporary names and renamed to their final names only
 * after every input was read without error; on an error an exit handler deletes them, so DIR holds
 * either the complete previous contents or the complete new shards (stale higher-numbered shards of
 * an earlier run are removed at the end). Documents are tokenized in parallel (OpenMP over a batch of
 * documents) and appended in input order, so the output is identical for every thread count.
 */
#include "cli/cmd_tokenize.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <fcntl.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/shard.h"
#include "text/tokenizer.h"
#include "common/util.h"

typedef struct {
    const char* p;  // the JSON line, or the whole text file
    size_t n;
    long long line;
} DocRef;

typedef struct {
    TokIds ids;
    char* err;  // malloc'd message; the first one in input order is reported
} DocOut;

// Temporary shard files of this run, deleted by the exit handler unless the run committed.
static char** g_tmp;
static int g_ntmp, g_committed;
static void remove_tmp_shards(void) {
    if (g_committed) return;
    for (int i = 0; i < g_ntmp; i++) unlink(g_tmp[i]);
}

typedef struct {
    const Tokenizer* tok;
    const char* out_dir;
    uint32_t eos;
    int token_bytes;
    uint64_t shard_tokens;
    uint32_t* buf;  // the shard being filled
    uint64_t n_buf;
    uint64_t total_tokens, total_docs, bytes_done, bytes_total;
    double t0, last_progress;
    int tty;
} Run;

static void flush_shard(Run* r) {
    if (r->n_buf == 0) return;
    char* tmp = xsprintf("%s/.tmp-%d-shard_%06d.bin", r->out_dir, (int)getpid(), g_ntmp);
    g_tmp = xrealloc(g_tmp, (size_t)g_ntmp + 1, sizeof(char*));
    g_tmp[g_ntmp++] = tmp;
    shard_write(tmp, r->buf, r->n_buf, r->token_bytes);
    r->n_buf = 0;
}

static void append_tokens(Run* r, const uint32_t* ids, size_t n) {
    while (n) {
        uint64_t k = r->shard_tokens - r->n_buf;
        if (k > n) k = n;
        memcpy(r->buf + r->n_buf, ids, k * sizeof(uint32_t));
        r->n_buf += k, ids += k, n -= k;
        r->total_tokens += k;
        if (r->n_buf == r->shard_tokens) flush_shard(r);
    }
}

static void progress(Run* r, int final) {
    if (!r->tty) return;
    double now = now_seconds();
    if (!final && now - r->last_progress < 0.2) return;
    r->last_progress = now;
    double dt = now - r->t0 > 1e-9 ? now - r->t0 : 1e-9;
    double frac = r->bytes_total ? (double)r->bytes_done / r->bytes_total : 1.0;
    double eta = frac > 0 ? dt * (1 - frac) / frac : 0;
    printf("\r  %.1f / %.1f MB (%.0f%%)  %llu docs  %.0f docs/s  %.2f MB/s  %llu tokens  ETA %.0fs   ",
           r->bytes_done / 1e6, r->bytes_total / 1e6, 100 * frac, (unsigned long long)r->total_docs,
           r->total_docs / dt, r->bytes_done / 1e6 / dt, (unsigned long long)r->total_tokens, eta);
    if (final) printf("\n");
    fflush(stdout);
}

static void encode_doc(const Run* r, const DocRef* d, int jsonl, const char* field, DocOut* o) {
    const char* text = d->p;
    size_t len = d->n;
    cJSON* j = NULL;
    if (jsonl) {
        const char* end = NULL;
        j = cJSON_ParseWithLengthOpts(d->p, d->n, &end, 0);
        if (!j) {
            o->err = xsprintf("malformed or truncated JSON line");
            return;
        }
        for (; end && end < d->p + d->n; end++)
            if (*end != ' ' && *end != '\t' && *end != '\r') {
                o->err = xsprintf("malformed JSON line (data after the object)");
                cJSON_Delete(j);
                return;
            }
        const cJSON* v = cJSON_IsObject(j) ? cJSON_GetObjectItemCaseSensitive(j, field) : NULL;
        if (!cJSON_IsObject(j)) o->err = xsprintf("line is not a JSON object");
        else if (!v) o->err = xsprintf("missing field \"%s\"", field);
        else if (!cJSON_IsString(v)) o->err = xsprintf("field \"%s\" is not a string", field);
        if (o->err) {
            cJSON_Delete(j);
            return;
        }
        text = v->valuestring;
        len = strlen(text);
    }
    size_t bad = tok_utf8_check(text, len);
    if (bad < len) {
        if (jsonl) o->err = xsprintf("invalid UTF-8 in field \"%s\" (byte %zu of the text)", field, bad);
        else {
            long long line = 1;
            for (size_t i = 0; i < bad; i++) line += text[i] == '\n';
            o->err = xsprintf("invalid UTF-8 (line %lld, byte offset %zu)", line, bad);
        }
    } else {
        tok_encode(r->tok, text, len, 0, &o->ids);
        if (o->ids.n == o->ids.cap) {  // room for the EOS
            o->ids.cap = o->ids.cap * 2 + 1;
            o->ids.ids = realloc(o->ids.ids, o->ids.cap * sizeof(uint32_t));
            if (!o->ids.ids) fatal("out of memory");
        }
        o->ids.ids[o->ids.n++] = r->eos;
    }
    cJSON_Delete(j);
}

// Tokenizes a batch in parallel, then appends it in order (or reports the first error).
static void run_batch(Run* r, const char* path, DocRef* docs, int n, int jsonl, const char* field, int threads) {
    DocOut* outs = xcalloc(n, sizeof(DocOut));
#pragma omp parallel for schedule(dynamic, 4) num_threads(threads)
    for (int i = 0; i < n; i++) encode_doc(r, &docs[i], jsonl, field, &outs[i]);
    for (int i = 0; i < n; i++)
        if (outs[i].err) fatal("%s:%lld: %s", path, docs[i].line, outs[i].err);
    for (int i = 0; i < n; i++) {
        append_tokens(r, outs[i].ids.ids, outs[i].ids.n);
        r->bytes_done += docs[i].n;
        free(outs[i].ids.ids);
    }
    r->total_docs += n;
    free(outs);
    progress(r, 0);
}

static int ends_with(const char* s, const char* suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

static void process_file(Run* r, const char* path, const char* field, int threads) {
    int jsonl = ends_with(path, ".jsonl") || ends_with(path, ".json");
    if (!jsonl && !ends_with(path, ".txt"))
        fatal("%s: unknown input type (expected .jsonl/.json: JSON Lines, or .txt: one document per file)", path);
    int fd = open_regular(path);
    if (fd < 0) fatal("%s: cannot open input file", path);
    struct stat st;
    if (fstat(fd, &st)) fatal("%s: cannot stat input file", path);
    size_t size = (size_t)st.st_size;
    const char* data = "";
    void* map = NULL;
    if (size) {
        map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) fatal("%s: cannot map input file", path);
        madvise(map, size, MADV_SEQUENTIAL);
        data = map;
    }
    close(fd);
    if (!jsonl) {
        DocRef d = {data, size, 1};
        run_batch(r, path, &d, 1, 0, field, threads);
    } else {
        // Batches of up to 8 MB of text or 16k lines, so memory stays bounded on huge files.
        int cap = 16384, n = 0;
        DocRef* docs = xmalloc(cap * sizeof(DocRef));
        size_t batch_bytes = 0;
        long long line = 0;
        for (size_t pos = 0; pos < size;) {
            const char* nl = memchr(data + pos, '\n', size - pos);
            size_t end = nl ? (size_t)(nl - data) : size;
            line++;
            size_t k = pos;
            while (k < end && (data[k] == ' ' || data[k] == '\t' || data[k] == '\r')) k++;
            if (k < end) {  // blank lines are skipped
                docs[n++] = (DocRef){data + pos, end - pos, line};
                batch_bytes += end - pos;
            } else {
                r->bytes_done += end - pos;
            }
            r->bytes_done += nl ? 1 : 0;
            pos = end + 1;
            if (n == cap || batch_bytes >= (8u << 20)) {
                run_batch(r, path, docs, n, 1, field, threads);
                n = 0, batch_bytes = 0;
            }
        }
        if (n) run_batch(r, path, docs, n, 1, field, threads);
        free(docs);
    }
    if (map) munmap(map, size);
}

static void usage_exit(int code) {
    FILE* f = code ? stderr : stdout;
    fprintf(f,
            "usage: qstar tokenize --tokenizer TOKENIZER.json --in FILES... --out DIR\n"
            "                      [--field text] [--shard-tokens N] [--threads K]\n\n"
            "  --tokenizer     a Hugging Face tokenizer.json (BPE)\n"
            "  --in            input files: .jsonl/.json (JSON Lines, text in --field) or .txt (one document)\n"
            "  --out           output directory for shard_000000.bin, ... (created if missing)\n"
            "  --field         JSON field holding the text (default text)\n"
            "  --shard-tokens  tokens per shard (default 100000000)\n"
            "  --threads       worker threads (default: all cores)\n");
    exit(code);
}

static long long parse_count(const char* opt, const char* v) {
    char* end;
    long long x = strtoll(v, &end, 10);
    if (!*v || *end || x <= 0) fatal("--%s: expected a positive integer, got \"%s\"", opt, v);
    return x;
}

int cmd_tokenize(int argc, char** argv) {
    const char *tok_path = NULL, *out_dir = NULL, *field = "text";
    long long shard_tokens = 100000000, threads = omp_get_num_procs();
    const char** inputs = xcalloc(argc, sizeof(char*));
    int n_in = 0;
    for (int i = 1; i < argc; i++) {
        const char* a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) usage_exit(0);
        if (strncmp(a, "--", 2)) fatal("tokenize: unexpected argument \"%s\" (see qstar tokenize --help)", a);
        if (!strcmp(a, "--in")) {
            while (i + 1 < argc && strncmp(argv[i + 1], "--", 2)) inputs[n_in++] = argv[++i];
            continue;
        }
        if (i + 1 >= argc) fatal("tokenize: option %s needs a value", a);
        const char* v = argv[++i];
        if (!strcmp(a, "--tokenizer")) tok_path = v;
        else if (!strcmp(a, "--out")) out_dir = v;
        else if (!strcmp(a, "--field")) field = v;
        else if (!strcmp(a, "--shard-tokens")) shard_tokens = parse_count("shard-tokens", v);
        else if (!strcmp(a, "--threads")) threads = parse_count("threads", v);
        else fatal("tokenize: unknown option %s (see qstar tokenize --help)", a);
    }
    if (!tok_path || !out_dir || n_in == 0) {
        fprintf(stderr, "qstar: error: tokenize needs --tokenizer, --in and --out\n");
        usage_exit(1);
    }
    if (threads > 1024) threads = 1024;
    for (int i = 0; i < n_in; i++)
        if (!file_exists(inputs[i])) fatal("%s: input file not found", inputs[i]);

    Tokenizer* tok = tok_load(tok_path);
    if (tok_eos_id(tok) < 0) fatal("%s: the tokenizer has no EOS token (documents are separated by EOS)", tok_path);
    mkdir_p(out_dir);

    Run r = {0};
    r.tok = tok;
    r.out_dir = out_dir;
    r.eos = (uint32_t)tok_eos_id(tok);
    r.token_bytes = tok_vocab_size(tok) <= 65536 ? 2 : 4;
    r.shard_tokens = (uint64_t)shard_tokens;
    r.buf = xmalloc(r.shard_tokens * sizeof(uint32_t));
    r.tty = stdout_is_tty();
    r.t0 = now_seconds();
    for (int i = 0; i < n_in; i++) r.bytes_total += (uint64_t)file_size_or_die(inputs[i]);
    atexit(remove_tmp_shards);

    for (int i = 0; i < n_in; i++) process_file(&r, inputs[i], field, (int)threads);
    flush_shard(&r);
    progress(&r, 1);

    // Commit: rename the temporaries into place, then drop stale shards of an earlier, longer run.
    for (int i = 0; i < g_ntmp; i++) {
        char* final = xsprintf("%s/shard_%06d.bin", out_dir, i);
        if (rename(g_tmp[i], final)) fatal("%s: cannot rename shard into place", final);
        free(final);
    }
    g_committed = 1;
    for (int i = g_ntmp;; i++) {
        char* stale = xsprintf("%s/shard_%06d.bin", out_dir, i);
        int gone = unlink(stale) != 0;
        free(stale);
        if (gone) break;
    }
    fsync_dir(out_dir);
    double dt = now_seconds() - r.t0;
    printf("tokenize: %llu documents, %llu tokens (%d-byte) in %d shard%s in %s, %.1f MB in %.2fs (%.1f MB/s, %lld threads)\n",
           (unsigned long long)r.total_docs, (unsigned long long)r.total_tokens, r.token_bytes, g_ntmp,
           g_ntmp == 1 ? "" : "s", out_dir, r.bytes_total / 1e6, dt, dt > 0 ? r.bytes_total / 1e6 / dt : 0.0,
           threads);
    for (int i = 0; i < g_ntmp; i++) free(g_tmp[i]);
    free(g_tmp);
    g_tmp = NULL, g_ntmp = 0;
    free(r.buf);
    free(inputs);
    tok_free(tok);
    return 0;
}
