/*
 * Data loader implementation (see dataloader.h for the order it defines). Shuffling uses
 * SplitMix64 keyed by (seed, epoch, shard) in a Fisher-Yates pass: recomputing a permutation from
 * the position is cheap, which is what makes resuming exact.
 */
#define _GNU_SOURCE
#include "io/dataloader.h"

#include <glob.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

static uint64_t splitmix64(uint64_t* s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void permute_u64(uint64_t* a, uint64_t n, uint64_t key) {
    for (uint64_t i = 0; i < n; i++) a[i] = i;
    uint64_t s = key;
    for (uint64_t i = n; i > 1; i--) {
        uint64_t j = splitmix64(&s) % i;
        uint64_t t = a[i - 1];
        a[i - 1] = a[j];
        a[j] = t;
    }
}

static int cmp_str(const void* a, const void* b) { return strcmp(*(char* const*)a, *(char* const*)b); }

void dataloader_init(DataLoader* dl, const char* pattern, int B, int T, int vocab_size, uint64_t seed, int rank,
                     int world, int shuffle) {
    memset(dl, 0, sizeof *dl);
    dl->B = B;
    dl->T = T;
    dl->vocab_size = vocab_size;
    dl->seed = seed;
    dl->rank = rank;
    dl->world = world;
    dl->shuffle = shuffle;
    dl->open_shard = -1;
    dl->window_order_shard = -1;

    // Expand each comma-separated glob; a pattern matching nothing is an error naming it.
    char* pats = xstrdup(pattern);
    int cap = 0;
    for (char* save = NULL, *p = strtok_r(pats, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
        glob_t g;
        int rc = glob(p, 0, NULL, &g);
        if (rc == GLOB_NOMATCH || g.gl_pathc == 0) fatal("%s: no data shard matches this path or pattern", p);
        if (rc != 0) fatal("%s: cannot expand data pattern", p);
        for (size_t i = 0; i < g.gl_pathc; i++) {
            if (dl->n_shards == cap) {
                cap = cap ? 2 * cap : 16;
                char** grown = xcalloc((size_t)cap, sizeof(char*));
                if (dl->paths) memcpy(grown, dl->paths, sizeof(char*) * dl->n_shards);
                free(dl->paths);
                dl->paths = grown;
            }
            dl->paths[dl->n_shards++] = xstrdup(g.gl_pathv[i]);
        }
        globfree(&g);
    }
    free(pats);
    qsort(dl->paths, (size_t)dl->n_shards, sizeof(char*), cmp_str);

    dl->n_windows = xcalloc((size_t)dl->n_shards, sizeof(uint64_t));
    for (int i = 0; i < dl->n_shards; i++) {
        uint64_t n = shard_count_tokens(dl->paths[i], NULL);
        dl->n_windows[i] = n > (uint64_t)T ? (n - 1) / (uint64_t)T : 0;
        dl->total_windows += dl->n_windows[i];
    }
    if (dl->total_windows < (uint64_t)B * world)
        fatal("%s: the data has %llu windows of %d+1 tokens, fewer than one step needs (%d)", dl->paths[0],
              (unsigned long long)dl->total_windows, T, B * world);
    dl->shard_order = xcalloc((size_t)dl->n_shards, sizeof(uint32_t));
    dl->order_epoch = UINT64_MAX;
}

static void ensure_shard_order(DataLoader* dl) {
    if (dl->order_epoch == dl->pos.epoch) return;
    uint64_t* tmp = xcalloc((size_t)dl->n_shards, sizeof(uint64_t));
    if (dl->shuffle) permute_u64(tmp, (uint64_t)dl->n_shards, dl->seed * 0x100000001B3ull ^ (dl->pos.epoch + 1));
    else for (int i = 0; i < dl->n_shards; i++) tmp[i] = (uint64_t)i;
    for (int i = 0; i < dl->n_shards; i++) dl->shard_order[i] = (uint32_t)tmp[i];
    free(tmp);
    dl->order_epoch = dl->pos.epoch;
}

// Returns the shard and window index of the window at the current position, then advances.
static void next_window(DataLoader* dl, int* shard_out, uint64_t* window_out) {
    for (;;) {
        ensure_shard_order(dl);
        if (dl->pos.shard_cursor >= (uint64_t)dl->n_shards) {
            dl->pos.epoch++;
            dl->pos.shard_cursor = 0;
            dl->pos.window_cursor = 0;
            continue;
        }
        int s = (int)dl->shard_order[dl->pos.shard_cursor];
        if (dl->pos.window_cursor >= dl->n_windows[s]) {
            dl->pos.shard_cursor++;
            dl->pos.window_cursor = 0;
            continue;
        }
        if (dl->window_order_shard != s || dl->window_order_epoch != dl->pos.epoch) {
            free(dl->window_order);
            dl->window_order = xcalloc((size_t)dl->n_windows[s], sizeof(uint64_t));
            if (dl->shuffle)
                permute_u64(dl->window_order, dl->n_windows[s],
                            (dl->seed ^ 0xD1B54A32D192ED03ull) + 0x9E3779B97F4A7C15ull * (dl->pos.epoch * 1000003ull + s + 1));
            else for (uint64_t i = 0; i < dl->n_windows[s]; i++) dl->window_order[i] = i;
            dl->window_order_shard = s;
            dl->window_order_epoch = dl->pos.epoch;
        }
        *shard_out = s;
        *window_out = dl->window_order[dl->pos.window_cursor];
        dl->pos.window_cursor++;
        return;
    }
}

void dataloader_next(DataLoader* dl, int32_t* inputs, int32_t* targets) {
    const int T = dl->T;
    for (int w = 0; w < dl->B * dl->world; w++) {
        int s;
        uint64_t win;
        next_window(dl, &s, &win);
        int row = w - dl->rank * dl->B;
        if (row < 0 || row >= dl->B) continue;
        if (dl->open_shard != s) {
            if (dl->open_shard >= 0) shard_close(&dl->cur);
            shard_open(&dl->cur, dl->paths[s]);
            dl->open_shard = s;
        }
        uint64_t start = win * (uint64_t)T;
        for (int t = 0; t <= T; t++) {
            uint32_t tok = shard_token(&dl->cur, start + t);
            if (tok >= (uint32_t)dl->vocab_size)
                fatal("%s: token %u at position %llu is outside the model's vocabulary (%d)", dl->paths[s], tok,
                      (unsigned long long)(start + t), dl->vocab_size);
            if (t < T) inputs[row * T + t] = (int32_t)tok;
            if (t > 0) targets[row * T + t - 1] = (int32_t)tok;
        }
    }
}

DataPosition dataloader_tell(const DataLoader* dl) { return dl->pos; }

void dataloader_seek(DataLoader* dl, DataPosition p) { dl->pos = p; }

void dataloader_free(DataLoader* dl) {
    if (dl->open_shard >= 0) shard_close(&dl->cur);
    for (int i = 0; i < dl->n_shards; i++) free(dl->paths[i]);
    free(dl->paths);
    free(dl->n_windows);
    free(dl->shard_order);
    free(dl->window_order);
    memset(dl, 0, sizeof *dl);
}
