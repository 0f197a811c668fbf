/*
 * libFuzzer harness: `qstar tokenize`'s input reader (process_file in cli/cmd_tokenize.c,
 * included here for its static functions) with the bundled tokenizer. The first input byte picks the
 * kind (even: JSON Lines with the text in "text", odd: a .txt document); the rest is the file. The
 * reader maps its file: a mapping left by a failed call is unmapped here.
 */
#include "text/tokenizer.c"

#include <sys/mman.h>
static void* fz_map;
static size_t fz_map_len;
static void* fz_mmap(void* a, size_t n, int prot, int flags, int fd, off_t off) {
    void* p = mmap(a, n, prot, flags, fd, off);
    if (p != MAP_FAILED) fz_map = p, fz_map_len = n;
    return p;
}
static int fz_munmap(void* p, size_t n) {
    if (p == fz_map) fz_map = NULL;
    return munmap(p, n);
}
#define mmap fz_mmap
#define munmap fz_munmap
#include "cli/cmd_tokenize.c"
#undef mmap
#undef munmap

#include "tests/fuzz/common.h"
#include "tests/fuzz/tok_harness.h"

static const char* g_path;
static Run g_run;

static void parse(void* arg) {
    (void)arg;
    g_run.n_buf = 0;
    process_file(&g_run, g_path, "text", 1);
    fz_tok_drop_cache(0);
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    fz_init();
    if (!fz_tok) {
        fz_tok_load();
        g_run.tok = fz_tok;
        g_run.out_dir = fz_dir();
        g_run.eos = (uint32_t)tok_eos_id(fz_tok);
        g_run.token_bytes = 2;
        g_run.shard_tokens = 1u << 22;  // never reached: nothing is written
        g_run.buf = malloc(sizeof(uint32_t) * g_run.shard_tokens);
        // the OpenMP runtime allocates its thread state at the first parallel region and keeps it:
        // that region runs here, untracked, so fz_run never frees (or reports) the runtime's blocks
        static const uint8_t warm[] = "{\"text\": \"warm up\"}\n";
        g_path = fz_write("docs.jsonl", warm, sizeof warm - 1);
        parse(NULL);
    }
    if (size == 0) return 0;
    const char* name = data[0] & 1 ? "doc.txt" : "docs.jsonl";
    g_path = fz_write(name, data + 1, size - 1);
    if (fz_run(parse, NULL)) {
        fz_tok_drop_cache(1);
        if (fz_map) munmap(fz_map, fz_map_len), fz_map = NULL;
    }
    return 0;
}
