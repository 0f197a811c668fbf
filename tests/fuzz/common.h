/*
 * Support for the libFuzzer harnesses in tests/fuzz (and for their replay through the ordinary gcc
 * build, tests/fuzz/replay.c). The parsers report bad input with fatal(), which exits; a harness
 * runs the parser through fz_run, whose fatal hook longjmps back instead, so one process can try
 * millions of inputs. What the parser held when it gave up is then released, so that an error exit
 * is no leak under the fuzzer: under AddressSanitizer every allocation made during the call is
 * tracked through the sanitizer's malloc/free hooks and freed, and file descriptors opened during
 * the call are closed. A call that returns normally must have released everything itself: a block or
 * descriptor still held afterwards is reported as a leak (abort). Production builds never set the
 * hook, so fatal() there still prints its one line and exits with status 1.
 */
#ifndef QSTAR_FUZZ_COMMON_H
#define QSTAR_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>

// Sets up once per process: a scratch directory (tmpfs when there is one) and the fatal hook.
void fz_init(void);
// Path of a file NAME in the scratch directory, holding data[0..size).
const char* fz_write(const char* name, const uint8_t* data, size_t size);
// Path of NAME in the scratch directory (not written).
const char* fz_path(const char* name);
// The scratch directory itself.
const char* fz_dir(void);
// Runs fn(arg). Returns 0 when it returned, 1 when it called fatal() (its allocations and
// descriptors are released); aborts when a returning call leaked a block or a descriptor.
int fz_run(void (*fn)(void* arg), void* arg);

#endif
