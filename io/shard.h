/*
 * Token shards: the on-disk format of tokenized training data. A shard is a 64-byte header followed
 * by the tokens, little-endian:
 *
 *   offset  size  field
 *   0       4     magic        0x4B545351 ("QSTK" as bytes 'Q','S','T','K')
 *   4       4     version      1
 *   8       4     token_bytes  2 (uint16 tokens, vocab <= 65536) or 4 (uint32)
 *   12      4     reserved     0
 *   16      8     n_tokens     number of tokens that follow
 *   24      40    reserved     zeros
 *   64      n_tokens * token_bytes   tokens
 *
 * Documents are concatenated, each followed by the tokenizer's EOS. The file size must be exactly
 * 64 + n_tokens * token_bytes; anything else is reported as truncated or corrupt.
 */
#ifndef QSTAR_SHARD_H
#define QSTAR_SHARD_H

#include <stdint.h>

#define SHARD_MAGIC 0x4B545351u
#define SHARD_VERSION 1u
#define SHARD_HEADER_BYTES 64

typedef struct {
    char* path;
    int token_bytes;
    uint64_t n_tokens;
    const uint8_t* tokens;  // mmap'd token data (after the header)
    void* map;              // whole-file mapping
    uint64_t map_bytes;
} Shard;

// Writes tokens atomically; token_bytes 2 or 4 (2 requires every token < 65536).
void shard_write(const char* path, const uint32_t* tokens, uint64_t n_tokens, int token_bytes);
// Opens and validates (magic, version, token width, exact size); exits with a message naming the file.
void shard_open(Shard* s, const char* path);
// Reads only the header (validating it and the size); cheap, for indexing many shards.
uint64_t shard_count_tokens(const char* path, int* token_bytes);
static inline uint32_t shard_token(const Shard* s, uint64_t i) {
    if (s->token_bytes == 2) return ((const uint16_t*)s->tokens)[i];
    return ((const uint32_t*)s->tokens)[i];
}
void shard_close(Shard* s);

#endif
