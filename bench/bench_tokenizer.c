/*
 * Encode throughput of text/tokenizer.c against the Hugging Face `tokenizers` library, both
 * single-threaded, on the same text: a few MB of prose, code and mixed-script lines assembled from
 * the test corpus, the license texts in /usr/share/common-licenses and Python's standard library
 * sources. Each line is one document (the library encodes the same lines with encode_batch under
 * RAYON_NUM_THREADS=1 via bench/bench_tokenizer.py). For each test tokenizer (SentencePiece-style
 * mistral, byte-level llama3 and gpt2) it prints both MB/s, the ratio, and checks the token counts
 * agree. No arguments needed (`make bench` runs it bare); without .venv it reports only qstar's side
 * and says why. Usage: bench_tokenizer [MB of text, default 2]
 */
#include <glob.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/proc.h"
#include "text/tokenizer.h"
#include "common/util.h"

static void add_file(char** buf, size_t* n, size_t* cap, const char* path, size_t limit) {
    size_t len;
    char* s = read_file_maybe(path, &len);
    if (!s) return;
    if (tok_utf8_check(s, len) != len) {  // only valid UTF-8 (both sides must accept the text)
        free(s);
        return;
    }
    if (*n + len > limit) len = limit - *n;
    while (len && ((unsigned char)s[len] & 0xC0) == 0x80) len--;  // cut at a character boundary
    if (*n + len + 1 > *cap) {
        *cap = (*n + len + 1) * 2;
        *buf = realloc(*buf, *cap);
    }
    memcpy(*buf + *n, s, len);
    *n += len;
    free(s);
}

// Builds the benchmark text (about `limit` bytes) and returns it; also writes it to path.
static char* build_text(size_t limit, size_t* out_len, const char* path) {
    char* buf = NULL;
    size_t n = 0, cap = 0;
    glob_t g;
    const char* patterns[] = {"data/tokenizers/test_texts.jsonl", "/usr/share/common-licenses/*",
                              "/usr/lib/python3*/*.py", "/usr/lib/python3*/*/*.py"};
    while (n < limit) {
        size_t before = n;
        for (size_t p = 0; p < sizeof patterns / sizeof *patterns && n < limit; p++) {
            if (glob(patterns[p], 0, NULL, &g)) continue;
            for (size_t i = 0; i < g.gl_pathc && n < limit; i++) add_file(&buf, &n, &cap, g.gl_pathv[i], limit);
            globfree(&g);
        }
        if (n == before) break;  // nothing readable
    }
    if (!buf) fatal("bench_tokenizer: no text to benchmark with");
    write_file_atomic(path, buf, n);
    *out_len = n;
    return buf;
}

int main(int argc, char** argv) {
    double mb = argc > 1 ? atof(argv[1]) : 2.0;
    const char* root = getenv("QSTAR_ROOT");
    if (root && chdir(root)) fatal("%s: cannot chdir", root);
    char* text_path = xsprintf("/tmp/qstar_bench_tokenizer_%d.txt", (int)getpid());
    size_t len;
    char* text = build_text((size_t)(mb * 1e6), &len, text_path);
    // Lines as documents.
    size_t n_lines = 1;
    for (size_t i = 0; i < len; i++) n_lines += text[i] == '\n';
    size_t* starts = xmalloc((n_lines + 1) * sizeof(size_t));
    size_t k = 0;
    starts[k++] = 0;
    for (size_t i = 0; i < len; i++)
        if (text[i] == '\n') starts[k++] = i + 1;
    starts[k] = len + 1;
    size_t text_bytes = len - (n_lines - 1);
    printf("bench_tokenizer: %.2f MB, %zu lines, single thread, best of 3\n", len / 1e6, n_lines);

    int have_py = file_exists(".venv/bin/python") && file_exists("bench/bench_tokenizer.py");
    if (!have_py) printf("  (.venv/bin/python missing: only qstar's side is measured; run make deps)\n");
    const char* names[] = {"mistral", "llama3", "gpt2"};
    int mismatch = 0;
    for (int t = 0; t < 3; t++) {
        char* path = xsprintf("data/tokenizers/%s.json", names[t]);
        if (!file_exists(path)) {
            printf("  %-8s %s missing, skipped\n", names[t], path);
            free(path);
            continue;
        }
        Tokenizer* tok = tok_load(path);
        TokIds ids = {0};
        double best = 0;
        for (int rep = 0; rep < 3; rep++) {
            ids.n = 0;
            double t0 = now_seconds();
            for (size_t i = 0; i < n_lines; i++) tok_encode(tok, text + starts[i], starts[i + 1] - 1 - starts[i], 0, &ids);
            double dt = now_seconds() - t0;
            if (text_bytes / 1e6 / dt > best) best = text_bytes / 1e6 / dt;
        }
        printf("  %-8s qstar %8.2f MB/s  (%zu tokens)", names[t], best, ids.n);
        if (have_py) {
            // its output goes to an unnamed temp file, read back once it has exited
            char* const argv[] = {".venv/bin/python", "bench/bench_tokenizer.py", path, text_path, "3", NULL};
            char* const env[] = {"RAYON_NUM_THREADS=1", "TOKENIZERS_PARALLELISM=false", NULL};
            FILE* p = tmpfile();
            double py = 0;
            unsigned long long py_tokens = 0;
            int got = p && run_program(argv, env, fileno(p), 0) == 0;
            if (p) rewind(p);
            got = got && fscanf(p, "%lf %llu", &py, &py_tokens) == 2;
            if (p) fclose(p);
            if (got && py > 0) {
                printf("   tokenizers %8.2f MB/s   ratio %.2fx", py, best / py);
                if (py_tokens != ids.n) {
                    printf("   TOKEN COUNT MISMATCH (%llu)", py_tokens);
                    mismatch = 1;
                }
            } else {
                printf("   tokenizers: could not run .venv/bin/python bench/bench_tokenizer.py");
            }
        }
        printf("\n");
        free(ids.ids);
        tok_free(tok);
        free(path);
    }
    unlink(text_path);
    free(text_path), free(text), free(starts);
    return mismatch;
}
