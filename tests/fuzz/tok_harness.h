/*
 * For the harnesses of the JSONL readers, which need a tokenizer: the bundled one
 * (data/corpus/tokenizer.json under $QSTAR_ROOT or the current directory), loaded once. The
 * tokenizer's per-thread word cache is dropped after every input, so that a call leaves nothing
 * behind (a cache block allocated inside a call that failed has been freed by fz_run).
 * Included after text/tokenizer.c, whose Tokenizer layout it needs.
 */
static Tokenizer* fz_tok;

static void fz_tok_load(void) {
    const char* root = getenv("QSTAR_ROOT");
    char path[1024];
    snprintf(path, sizeof path, "%s/data/corpus/tokenizer.json", root ? root : ".");
    fz_tok = tok_load(path);
}

// After a call that returned (the cache is freed) or failed (fz_run freed it already).
static void fz_tok_drop_cache(int freed) {
    if (!freed) work_free(pthread_getspecific(fz_tok->cache_key));
    pthread_setspecific(fz_tok->cache_key, NULL);
}
