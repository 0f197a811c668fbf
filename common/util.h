/*
 * Small host utilities shared by every part of qstar: the one way we report a user error
 * (one line naming the file and the problem, then a non-zero exit), checked allocation and file
 * I/O, atomic file writes (temp file, fsync, rename) so that nothing is ever half-written, and a
 * monotonic clock. Every "xxx_or_die" function exits with a message instead of returning an error.
 */
#ifndef QSTAR_UTIL_H
#define QSTAR_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

// Prints "qstar: error: <message>" and exits with status 1. Used for every error a user can cause.
void fatal(const char* fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

// Called by fatal() before it exits (MPI runs abort the whole job from it).
void fatal_set_hook(void (*hook)(void));
// Undo work that an error would leave half-done (a checkpoint directory being assembled): fatal()
// calls fn(arg) once, before the hook. One at a time; fn NULL clears it.
void fatal_set_cleanup(void (*fn)(void* arg), void* arg);

// Internal invariant violated (a bug, not bad input): prints file:line and aborts.
#define QSTAR_ASSERT(cond)                                                                          \
    do {                                                                                            \
        if (!(cond)) {                                                                              \
            fprintf(stderr, "qstar: internal error at %s:%d: %s\n", __FILE__, __LINE__, #cond);     \
            abort();                                                                                \
        }                                                                                           \
    } while (0)

void* xmalloc(size_t bytes);            // exits on failure
void* xcalloc(size_t count, size_t size);
void* xrealloc(void* p, size_t count, size_t size);  // count * size checked for overflow; exits on failure
char* xstrdup(const char* s);
// a * b for counts the user chose (--samples x problems): exits with "<what>: A x B is more than this
// run can hold (at most LIMIT)" when the product overflows or exceeds limit. what names the options.
size_t checked_count(size_t a, size_t b, size_t limit, const char* what);
// xmalloc of count * size bytes whose error names what the memory is for (the option that sized it).
void* xmalloc_for(const char* what, size_t count, size_t size);
char* xsprintf(const char* fmt, ...) __attribute__((format(printf, 1, 2)));  // malloc'd

// Whole-file read: returns malloc'd bytes with a terminating NUL (not counted in *len). A path that
// is not a regular file (a directory, a FIFO, a device) is an error, at once: a FIFO is never waited on.
char* read_file_or_die(const char* path, size_t* len);
// open(path, O_RDONLY) of a regular file: -1 (errno says why) when it cannot be opened; anything else
// (a directory, a FIFO, a device) is an error at once, "PATH: not a regular file (...)", never waited on.
int open_regular(const char* path);
// Like read_file_or_die but returns NULL (and sets errno) when the file cannot be opened.
char* read_file_maybe(const char* path, size_t* len);

// Atomic write: data goes to "<path>.tmp.<pid>", is fsync'd, then renamed over path.
void write_file_atomic(const char* path, const void* data, size_t len);
// Streamed atomic write: open returns a FILE* on the temp file; commit fsyncs, closes, renames.
typedef struct {
    FILE* f;
    char* path;
    char* tmp_path;
} AtomicFile;
AtomicFile atomic_open(const char* path);
void atomic_write(AtomicFile* af, const void* data, size_t len);
void atomic_commit(AtomicFile* af);
void fsync_dir(const char* dir);

int file_exists(const char* path);
int dir_exists(const char* path);
void mkdir_p(const char* path);        // exits on failure
int64_t file_size_or_die(const char* path);

double now_seconds(void);              // monotonic clock

// Fault injection for tests of crash safety: QSTAR_FAULT="RANK:STEP:WHERE" makes rank RANK abort
// at fault_point(WHERE) once training step STEP is current (fault_set_context keeps rank and step).
void fault_set_context(int rank, int step);
void fault_point(const char* where);

// Returns 1 when stdout is a terminal (progress lines, colours).
int stdout_is_tty(void);

#endif
