/*
 * Reading and writing token shards (format in shard.h). Shards are mmap'd read-only so that a
 * data set larger than memory costs nothing until its windows are touched.
 */
#include "io/shard.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"

typedef struct {
    uint32_t magic, version, token_bytes, reserved0;
    uint64_t n_tokens;
    uint8_t reserved1[40];
} ShardHeader;
_Static_assert(sizeof(ShardHeader) == SHARD_HEADER_BYTES, "shard header must be 64 bytes");

void shard_write(const char* path, const uint32_t* tokens, uint64_t n_tokens, int token_bytes) {
    QSTAR_ASSERT(token_bytes == 2 || token_bytes == 4);
    ShardHeader h;
    memset(&h, 0, sizeof h);
    h.magic = SHARD_MAGIC;
    h.version = SHARD_VERSION;
    h.token_bytes = (uint32_t)token_bytes;
    h.n_tokens = n_tokens;
    AtomicFile af = atomic_open(path);
    atomic_write(&af, &h, sizeof h);
    if (token_bytes == 4) {
        atomic_write(&af, tokens, n_tokens * 4);
    } else {
        uint16_t buf[4096];
        for (uint64_t i = 0; i < n_tokens;) {
            size_t k = 0;
            for (; k < 4096 && i < n_tokens; k++, i++) {
                if (tokens[i] > 65535) fatal("%s: token %u does not fit a uint16 shard", path, tokens[i]);
                buf[k] = (uint16_t)tokens[i];
            }
            atomic_write(&af, buf, k * 2);
        }
    }
    atomic_commit(&af);
}

// Validates a header against the file size; returns the token count.
static uint64_t check_header(const char* path, const ShardHeader* h, int64_t file_size) {
    if (h->magic != SHARD_MAGIC)
        fatal("%s: not a qstar token shard (bad magic 0x%08x, expected 0x%08x)", path, h->magic, SHARD_MAGIC);
    if (h->version != SHARD_VERSION)
        fatal("%s: unsupported shard version %u (this build reads version %u)", path, h->version, SHARD_VERSION);
    if (h->token_bytes != 2 && h->token_bytes != 4)
        fatal("%s: corrupt shard header: token width %u bytes (must be 2 or 4)", path, h->token_bytes);
    // In a double: n_tokens is read from the file, and its product with the width wraps a uint64 from
    // 2^63 tokens on, which would print (and compare) a byte count far smaller than the header's.
    const double want = SHARD_HEADER_BYTES + (double)h->n_tokens * h->token_bytes;
    if (h->n_tokens > ((uint64_t)1 << 48) || (double)file_size != want)
        fatal("%s: truncated or corrupt shard: header says %llu tokens (%.17g bytes) but the file has %lld bytes",
              path, (unsigned long long)h->n_tokens, want, (long long)file_size);
    return h->n_tokens;
}

static void read_header(const char* path, ShardHeader* h, int64_t* size) {
    int fd = open_regular(path);
    if (fd < 0) fatal("%s: cannot open shard: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) fatal("%s: cannot stat: %s", path, strerror(errno));
    *size = st.st_size;
    if (st.st_size < SHARD_HEADER_BYTES)
        fatal("%s: truncated shard: %lld bytes, shorter than the %d-byte header", path, (long long)st.st_size,
              SHARD_HEADER_BYTES);
    if (pread(fd, h, sizeof *h, 0) != (ssize_t)sizeof *h) fatal("%s: cannot read shard header", path);
    close(fd);
}

uint64_t shard_count_tokens(const char* path, int* token_bytes) {
    ShardHeader h;
    int64_t size;
    read_header(path, &h, &size);
    uint64_t n = check_header(path, &h, size);
    if (token_bytes) *token_bytes = (int)h.token_bytes;
    return n;
}

void shard_open(Shard* s, const char* path) {
    memset(s, 0, sizeof *s);
    ShardHeader h;
    int64_t size;
    read_header(path, &h, &size);
    s->n_tokens = check_header(path, &h, size);
    s->token_bytes = (int)h.token_bytes;
    s->path = xstrdup(path);
    int fd = open_regular(path);
    if (fd < 0) fatal("%s: cannot open shard: %s", path, strerror(errno));
    s->map_bytes = (uint64_t)size;
    s->map = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (s->map == MAP_FAILED) fatal("%s: cannot map shard: %s", path, strerror(errno));
    s->tokens = (const uint8_t*)s->map + SHARD_HEADER_BYTES;
}

void shard_close(Shard* s) {
    if (s->map) munmap(s->map, (size_t)s->map_bytes);
    free(s->path);
    memset(s, 0, sizeof *s);
}
