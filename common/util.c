/*
 * Host utilities: error reporting, checked allocation, whole-file and atomic file I/O, clocks.
 * Atomic writes exist because a checkpoint or shard that a crash leaves half-written is worse than
 * none: readers only ever see a complete file or the previous one.
 */
#define _GNU_SOURCE
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void (*fatal_hook)(void);

// Under AddressSanitizer (make test SANITIZE=1) LeakSanitizer checks at exit what is still allocated.
// fatal() exits with whatever the program held when it met the error; that is not a leak, so the
// check is turned off for exits through fatal() only (the sanitizer asks this function at exit).
#if defined(__SANITIZE_ADDRESS__)
#define QSTAR_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define QSTAR_LSAN 1
#endif
#endif
#ifdef QSTAR_LSAN
static volatile int fatal_exiting;
int __lsan_is_turned_off(void);
int __lsan_is_turned_off(void) { return fatal_exiting; }
#endif

void fatal_set_hook(void (*hook)(void)) { fatal_hook = hook; }

static void (*fatal_cleanup)(void*);
static void* fatal_cleanup_arg;

void fatal_set_cleanup(void (*fn)(void* arg), void* arg) {
    fatal_cleanup = fn;
    fatal_cleanup_arg = arg;
}

// The message is one line whatever it quotes: a newline, carriage return or other control character
// of the user's text (a question, a path) is written as an escape, so that input can never print a
// second, forged "qstar: error:" line.
static void put_escaped(const char* m) {
    for (const unsigned char* c = (const unsigned char*)m; *c; c++) {
        if (*c == '\n') fputs("\\n", stderr);
        else if (*c == '\r') fputs("\\r", stderr);
        else if (*c == '\t') fputs("\\t", stderr);
        else if (*c < 0x20 || *c == 0x7f) fprintf(stderr, "\\x%02x", *c);
        else fputc(*c, stderr);
    }
}

void fatal(const char* fmt, ...) {
    fflush(stdout);
    va_list ap;
    va_start(ap, fmt);
    char* msg = NULL;
    const int ok = vasprintf(&msg, fmt, ap) >= 0;
    va_end(ap);
    fprintf(stderr, "qstar: error: ");
    if (ok) put_escaped(msg);
    else fputs("(out of memory formatting the message)", stderr);
    fprintf(stderr, "\n");
    free(msg);
    fflush(stderr);
    if (fatal_cleanup) {  // cleared first: an error inside the cleanup must not run it again
        void (*fn)(void*) = fatal_cleanup;
        fatal_cleanup = NULL;
        fn(fatal_cleanup_arg);
    }
    if (fatal_hook) fatal_hook();
#ifdef QSTAR_LSAN
    fatal_exiting = 1;
#endif
    exit(1);
}

void* xmalloc(size_t bytes) {
    void* p = malloc(bytes ? bytes : 1);
    if (!p) fatal("out of memory allocating %zu bytes", bytes);
    return p;
}

void* xcalloc(size_t count, size_t size) {
    void* p = calloc(count ? count : 1, size ? size : 1);
    if (!p) fatal("out of memory allocating %zu x %zu bytes", count, size);
    return p;
}

void* xrealloc(void* p, size_t count, size_t size) {
    // Sizes often come from a file: a product that wraps would shrink the block under the caller.
    if (size && count > SIZE_MAX / size) fatal("out of memory: %zu x %zu bytes overflows", count, size);
    size_t bytes = count * size;
    void* q = realloc(p, bytes ? bytes : 1);
    if (!q) fatal("out of memory allocating %zu x %zu bytes", count, size);
    return q;
}

size_t checked_count(size_t a, size_t b, size_t limit, const char* what) {
    if (a && (b > SIZE_MAX / a || a * b > limit))
        fatal("%s: %zu x %zu is more than this run can hold (at most %zu)", what, a, b, limit);
    return a * b;
}

void* xmalloc_for(const char* what, size_t count, size_t size) {
    if (size && count > SIZE_MAX / size) fatal("%s: %zu x %zu bytes is more than memory can hold", what, count, size);
    const size_t bytes = count * size;
    void* p = malloc(bytes ? bytes : 1);
    if (!p) fatal("%s: out of memory allocating %zu x %zu bytes", what, count, size);
    return p;
}

char* xstrdup(const char* s) {
    size_t n = strlen(s);
    char* d = xmalloc(n + 1);
    memcpy(d, s, n + 1);
    return d;
}

char* xsprintf(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char* out = NULL;
    if (vasprintf(&out, fmt, ap) < 0) fatal("out of memory formatting a string");
    va_end(ap);
    return out;
}

// Opens path for reading (util.h), refusing what is not a regular file: a directory would read as a file of
// LONG_MAX bytes, and open() of a FIFO blocks until a writer comes (O_NONBLOCK keeps it from waiting).
int open_regular(const char* path) {
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return -1;
    struct stat st = {0};
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        const int is_dir = S_ISDIR(st.st_mode);
        close(fd);
        fatal("%s: not a regular file (%s)", path, is_dir ? "a directory" : "a pipe, socket or device");
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    return fd;
}

static FILE* fopen_regular(const char* path) {
    int fd = open_regular(path);
    if (fd < 0) return NULL;
    FILE* f = fdopen(fd, "rb");
    if (!f) {
        int err = errno;
        close(fd);
        errno = err;
    }
    return f;
}

char* read_file_maybe(const char* path, size_t* len) {
    FILE* f = fopen_regular(path);
    if (!f) return NULL;
    // the stream is closed before any error: a caller that survives fatal() (the fuzz harnesses,
    // tests/fuzz) must not be left with a FILE whose memory it then frees
    long size = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    if (size < 0) {
        int err = errno;
        fclose(f);
        fatal("%s: cannot read (seek/tell failed: %s)", path, strerror(err));
    }
    rewind(f);
    char* buf = malloc((size_t)size + 1);
    const int read_ok = buf && (size == 0 || fread(buf, 1, (size_t)size, f) == (size_t)size);
    fclose(f);
    if (!buf) fatal("%s: out of memory reading %ld bytes", path, size);
    if (!read_ok) {
        free(buf);
        fatal("%s: read failed", path);
    }
    buf[size] = 0;
    if (len) *len = (size_t)size;
    return buf;
}

char* read_file_or_die(const char* path, size_t* len) {
    char* buf = read_file_maybe(path, len);
    if (!buf) fatal("%s: cannot open: %s", path, strerror(errno));
    return buf;
}

AtomicFile atomic_open(const char* path) {
    AtomicFile af;
    af.path = xstrdup(path);
    af.tmp_path = xsprintf("%s.tmp.%d", path, (int)getpid());
    af.f = fopen(af.tmp_path, "wb");
    if (!af.f) fatal("%s: cannot create: %s", af.tmp_path, strerror(errno));
    return af;
}

// A failed write (a full disk) removes its temp file, so that it does not keep the space it took.
static void atomic_fail(AtomicFile* af, const char* what) __attribute__((noreturn));
static void atomic_fail(AtomicFile* af, const char* what) {
    int err = errno;
    if (af->f) fclose(af->f);
    af->f = NULL;
    unlink(af->tmp_path);
    fatal("%s: %s: %s", af->tmp_path, what, strerror(err));
}

void atomic_write(AtomicFile* af, const void* data, size_t len) {
    if (len && fwrite(data, 1, len, af->f) != len) atomic_fail(af, "write failed");
}

void atomic_commit(AtomicFile* af) {
    if (fflush(af->f) != 0) atomic_fail(af, "write failed");
    if (fsync(fileno(af->f)) != 0) atomic_fail(af, "fsync failed");
    int rc = fclose(af->f);
    af->f = NULL;
    if (rc != 0) atomic_fail(af, "close failed");
    if (rename(af->tmp_path, af->path) != 0) atomic_fail(af, "cannot rename into place");
    free(af->path);
    free(af->tmp_path);
    af->f = NULL;
}

void write_file_atomic(const char* path, const void* data, size_t len) {
    AtomicFile af = atomic_open(path);
    atomic_write(&af, data, len);
    atomic_commit(&af);
}

void fsync_dir(const char* dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return;  // best effort: some filesystems do not allow it
    fsync(fd);
    close(fd);
}

int file_exists(const char* path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int dir_exists(const char* path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

void mkdir_p(const char* path) {
    char* p = xstrdup(path);
    for (char* s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = 0;
        if (mkdir(p, 0755) != 0 && errno != EEXIST) fatal("%s: cannot create directory: %s", p, strerror(errno));
        *s = '/';
    }
    if (mkdir(p, 0755) != 0 && errno != EEXIST) fatal("%s: cannot create directory: %s", p, strerror(errno));
    if (!dir_exists(p)) fatal("%s: exists and is not a directory", p);
    free(p);
}

int64_t file_size_or_die(const char* path) {
    struct stat st;
    if (stat(path, &st) != 0) fatal("%s: cannot open: %s", path, strerror(errno));
    return (int64_t)st.st_size;
}

double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int stdout_is_tty(void) { return isatty(STDOUT_FILENO); }

static int fault_rank = -1, fault_step = -1;

void fault_set_context(int rank, int step) {
    fault_rank = rank;
    fault_step = step;
}

void fault_point(const char* where) {
    const char* spec = getenv("QSTAR_FAULT");
    if (!spec) return;
    int rank, step;
    char what[32];
    if (sscanf(spec, "%d:%d:%31s", &rank, &step, what) == 3 && rank == fault_rank && step == fault_step &&
        !strcmp(what, where)) {
        fprintf(stderr, "qstar: QSTAR_FAULT: rank %d aborting at %s of step %d\n", rank, where, step);
        abort();
    }
}
