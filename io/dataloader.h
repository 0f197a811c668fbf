/*
 * The training data loader: windows of T+1 tokens cut from any number of token shards (shard.h),
 * visited in a seeded shuffled order that is a pure function of (seed, epoch), so the loader's whole
 * state is three integers that a checkpoint stores and restores exactly.
 *
 * Order: each epoch permutes the shards, and within each shard permutes its windows (window w
 * covers tokens [w*T, w*T + T], inputs are the first T, targets the last T). A step consumes
 * world*B consecutive windows of that order; rank r takes windows [r*B, (r+1)*B) of them, so any
 * number of ranks sees the same global sequence of windows as one rank with world*B rows.
 */
#ifndef QSTAR_DATALOADER_H
#define QSTAR_DATALOADER_H

#include <stdint.h>

#include "io/shard.h"

typedef struct {
    uint64_t epoch;        // completed passes over the data
    uint64_t shard_cursor; // index into this epoch's shard order
    uint64_t window_cursor;// index into the current shard's window order
} DataPosition;

typedef struct {
    int n_shards;
    char** paths;
    uint64_t* n_windows;   // per shard
    uint64_t total_windows;
    int B, T, rank, world, shuffle;
    uint64_t seed;
    int vocab_size;        // tokens must be < vocab_size (checked as windows are read)
    DataPosition pos;
    // current shard (mapped lazily) and the two permutations for the current position
    int open_shard;        // shard id mapped in `cur`, or -1
    Shard cur;
    uint32_t* shard_order; // (n_shards)
    uint64_t order_epoch;  // epoch shard_order was built for
    uint64_t* window_order;// (n_windows of the current shard)
    int window_order_shard;
    uint64_t window_order_epoch;
} DataLoader;

// pattern: a glob such as "DIR/*.bin" (several patterns may be separated by commas).
void dataloader_init(DataLoader* dl, const char* pattern, int B, int T, int vocab_size, uint64_t seed, int rank,
                     int world, int shuffle);
// Fills this rank's B rows: inputs (B*T) and targets (B*T).
void dataloader_next(DataLoader* dl, int32_t* inputs, int32_t* targets);
DataPosition dataloader_tell(const DataLoader* dl);
void dataloader_seek(DataLoader* dl, DataPosition p);
void dataloader_free(DataLoader* dl);

#endif
