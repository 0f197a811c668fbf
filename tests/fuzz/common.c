/*
 * fz_run and its scratch files (see common.h). The allocation tracker is an open-addressing set of
 * live block addresses filled by the sanitizer's malloc/free hooks while a call runs on the calling
 * thread; it holds no allocation of its own, since it runs inside malloc.
 */
#define _GNU_SOURCE
#include "tests/fuzz/common.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fs.h"
#include "common/util.h"

#if defined(__SANITIZE_ADDRESS__)
#define FZ_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FZ_ASAN 1
#endif
#endif

#ifdef FZ_ASAN
// sanitizer/allocator_interface.h, which GCC does not install
int __sanitizer_install_malloc_and_free_hooks(void (*malloc_hook)(const volatile void*, size_t),
                                              void (*free_hook)(const volatile void*));
#endif

static char fz_scratch[256];
static jmp_buf fz_jmp;
static volatile int fz_in_call;

// ---- allocation tracking (AddressSanitizer builds) ----

#define FZ_SLOTS (1u << 18)  // a parse of a fuzz input holds far fewer live blocks
#define FZ_LOG (FZ_SLOTS / 2)
static uintptr_t fz_live[FZ_SLOTS];
static size_t fz_nlive;
// every block allocated during the call, in order (freed ones too): the end of a call walks this
// instead of the whole table
static uintptr_t fz_log[FZ_LOG];
static size_t fz_nlog;
static int fz_overflow;
static volatile int fz_tracking_on;
static pthread_t fz_owner;

static size_t slot_of(uintptr_t p) { return (size_t)((p >> 4) * 0x9E3779B97F4A7C15ull >> 44) & (FZ_SLOTS - 1); }

static int live_has(uintptr_t p) {
    size_t i = slot_of(p);
    while (fz_live[i] && fz_live[i] != p) i = (i + 1) & (FZ_SLOTS - 1);
    return fz_live[i] != 0;
}

__attribute__((unused)) static void live_add(uintptr_t p) {
    if (fz_nlog >= FZ_LOG) {
        fz_overflow = 1;
        return;
    }
    fz_log[fz_nlog++] = p;
    size_t i = slot_of(p);
    while (fz_live[i]) i = (i + 1) & (FZ_SLOTS - 1);
    fz_live[i] = p;
    fz_nlive++;
}

// Linear probing with backward-shift deletion: no tombstones, so lookups stay short.
static void live_remove(uintptr_t p) {
    size_t i = slot_of(p);
    while (fz_live[i] && fz_live[i] != p) i = (i + 1) & (FZ_SLOTS - 1);
    if (!fz_live[i]) return;  // allocated before the call: not ours to track
    fz_live[i] = 0;
    fz_nlive--;
    for (size_t j = (i + 1) & (FZ_SLOTS - 1); fz_live[j]; j = (j + 1) & (FZ_SLOTS - 1)) {
        size_t home = slot_of(fz_live[j]);
        // move j back into the hole at i unless its home lies cyclically in (i, j]
        if ((j > i && (home <= i || home > j)) || (j < i && home <= i && home > j)) {
            fz_live[i] = fz_live[j];
            fz_live[j] = 0;
            i = j;
        }
    }
}

#ifdef FZ_ASAN
static void fz_malloc_hook(const volatile void* p, size_t size) {
    (void)size;
    if (fz_tracking_on && p && pthread_equal(pthread_self(), fz_owner)) live_add((uintptr_t)p);
}
static void fz_free_hook(const volatile void* p) {
    if (fz_tracking_on && p && pthread_equal(pthread_self(), fz_owner)) live_remove((uintptr_t)p);
}
#endif

static void tracking_begin(void) {
    fz_owner = pthread_self();
    fz_nlive = 0;
    fz_nlog = 0;
    fz_overflow = 0;
    fz_tracking_on = 1;
}

// Stops tracking; returns how many blocks of the call are still live and, if free_them, frees them.
static size_t tracking_end(int free_them) {
    fz_tracking_on = 0;
    size_t n = fz_nlive;
    for (size_t k = 0; k < fz_nlog && fz_nlive; k++) {
        uintptr_t p = fz_log[k];
        if (!live_has(p)) continue;  // freed during the call (its address may have been reused: logged again)
        live_remove(p);
        if (free_them) free((void*)p);
    }
    fz_nlive = 0;
    fz_nlog = 0;
    return n;
}

// ---- descriptors ----

#define FZ_MAX_FD 256
static unsigned char fz_fd_open_at_init[FZ_MAX_FD];
static int fz_fd_scan;  // descriptors 0..fz_fd_scan-1 are checked after each call

static int fd_is_open(int fd) { return fcntl(fd, F_GETFD) != -1 || errno != EBADF; }

// Descriptors opened by the call and still open: closed when close_them, counted.
static int fds_left(int close_them) {
    int n = 0;
    for (int fd = 0; fd < fz_fd_scan; fd++)
        if (!fz_fd_open_at_init[fd] && fd_is_open(fd)) {
            n++;
            if (close_them) close(fd);
        }
    return n;
}

static void fz_fatal_hook(void) {
    if (fz_in_call) longjmp(fz_jmp, 1);
}

// The scratch directory is marked as a run directory when made (fz_init), so run_dir_remove takes it.
static void remove_scratch(void) {
    if (fz_scratch[0] && strstr(fz_scratch, "qstar-fuzz-")) free(run_dir_remove(fz_scratch));
}

void fz_init(void) {
    static int done;
    if (done) return;
    done = 1;
    const char* base = getenv("FZ_TMPDIR");
    if (!base) {
        struct stat sb;
        base = stat("/dev/shm", &sb) == 0 && access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    }
    snprintf(fz_scratch, sizeof fz_scratch, "%s/qstar-fuzz-XXXXXX", base);
    if (!mkdtemp(fz_scratch)) {
        perror("fz_init: mkdtemp");
        abort();
    }
    run_dir_create(fz_scratch);
    atexit(remove_scratch);
    fatal_set_hook(fz_fatal_hook);
    // stdout's buffer is allocated by its first use: made unbuffered here, so that no parser's
    // message allocates it inside a tracked call (it would be freed under stdio's feet)
    setvbuf(stdout, NULL, _IONBF, 0);
#ifdef FZ_ASAN
    __sanitizer_install_malloc_and_free_hooks(fz_malloc_hook, fz_free_hook);
#endif
    int top = 0;
    for (int fd = 0; fd < FZ_MAX_FD; fd++)
        if ((fz_fd_open_at_init[fd] = (unsigned char)fd_is_open(fd))) top = fd + 1;
    fz_fd_scan = top + 32 < FZ_MAX_FD ? top + 32 : FZ_MAX_FD;
}

const char* fz_dir(void) { return fz_scratch; }

const char* fz_path(const char* name) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", fz_scratch, name);
    return path;
}

const char* fz_write(const char* name, const uint8_t* data, size_t size) {
    const char* path = fz_path(name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        perror(path);
        abort();
    }
    for (size_t off = 0; off < size;) {
        ssize_t w = write(fd, data + off, size - off);
        if (w <= 0) {
            perror(path);
            abort();
        }
        off += (size_t)w;
    }
    close(fd);
    return path;
}

int fz_run(void (*fn)(void* arg), void* arg) {
    tracking_begin();
    fz_in_call = 1;
    if (setjmp(fz_jmp) == 0) {
        fn(arg);
        fz_in_call = 0;
        int overflow = fz_overflow;
        size_t blocks = tracking_end(0);
        int fds = fds_left(0);
        if (blocks && !overflow) {
            fprintf(stderr, "fuzz: leak: %zu block(s) allocated by a call that returned are still live\n", blocks);
            abort();
        }
        if (fds) {
            fprintf(stderr, "fuzz: leak: %d file descriptor(s) opened by a call that returned are still open\n", fds);
            abort();
        }
        return 0;
    }
    fz_in_call = 0;
    fds_left(1);
    tracking_end(1);
    return 1;
}
