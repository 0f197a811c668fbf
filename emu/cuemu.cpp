/*
 * cuemu.cpp — the CPU runtime behind cuemu.h: kernel launch, the fiber scheduler that gives CUDA
 * threads their barrier and warp semantics, and the CUDA runtime API as synchronous host calls.
 *
 * Execution model. A launch runs its blocks one after another on one worker thread (the calling
 * thread), so block order, float atomicAdd order and printf output are deterministic;
 * CUEMU_WORKERS=N spreads blocks over N threads. Inside a block every CUDA thread is a fiber with
 * its own mmap'd stack (CUEMU_STACK_KB, default 64, a PROT_NONE guard page below each so an
 * overflow is a SIGSEGV rather than silent corruption). A fiber runs until it reaches a sync point
 * (barrier, warp intrinsic, __nanosleep) and switches back to the scheduler, which
 *   1. runs every runnable fiber once;
 *   2. per warp, groups the lanes waiting at a warp intrinsic by their mask and releases a group
 *      once every non-exited lane of the mask has arrived with that same mask, computing each
 *      lane's result (shuffle source, ballot bits, reduction) into that lane's own slot — so no
 *      second barrier is needed and no fast lane can overwrite a value a slow lane still reads;
 *   3. releases __syncthreads once every non-exited thread waits there (Volta+: exited threads
 *      count as arrived), computing __syncthreads_count/and/or;
 *   4. if nothing ran and nothing could be released, the block can never finish: it prints which
 *      kernel, which block, and where every thread waits, and aborts — a deadlock never hangs.
 * The order of step 1 (and of the blocks) is CUEMU_SCHEDULE's: forward (index order, the default),
 * reverse (warps and lanes last to first, each warp run as far as it can go before the next), or
 * random:SEED (a block permutation per launch; per round either all threads shuffled, one step
 * each, or warps in random order each run as far as it can), so that a missing
 * barrier shows whichever direction the data flows, also when warp collectives would otherwise keep
 * the warps in step.
 * At block start shared memory is poisoned (0xFF) and the dynamic part gets guard zones, checked
 * at block end. Counters (barriers, warp collectives, and what helpers report via cuemu::count)
 * are tallied per worker without atomics and summed per launch.
 * Switching costs ~20 instructions with the x86-64 routine below (glibc swapcontext makes a
 * sigprocmask syscall per switch, ~30x slower); other architectures fall back to ucontext.
 *
 * Device memory is host memory. cudaMalloc returns 256-byte aligned blocks between two red zones
 * filled with a canary that is checked after every launch and at cudaFree (under ASan the red zones
 * are poisoned instead), and fills new blocks with 0xFF bytes (NaN as float) so that reading memory
 * nobody wrote shows up in results (CUEMU_MALLOC_FILL=0 turns that off); it keeps the current and
 * peak bytes allocated (cuemu::memory_peak, CUEMU_MEMREPORT=1).
 */
#include "cuemu.h"

#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#if !defined(__x86_64__) || defined(CUEMU_USE_UCONTEXT)
#define CUEMU_UCONTEXT 1
#include <ucontext.h>
#endif
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define CUEMU_VALGRIND 1
#endif
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define CUEMU_ASAN 1
#endif

/* ====================================================================== context switch */
#ifndef CUEMU_UCONTEXT
/* cuemu_switch(save, to): saves the callee-saved registers, MXCSR and the x87 control word on the
 * current stack, stores the stack pointer in *save, loads `to` and restores the same frame from
 * there. A fresh fiber's stack is pre-seeded with such a frame whose return address is the entry
 * function (see seed_fiber). */
extern "C" void cuemu_switch(void** save, void* to);
asm(R"(
    .text
    .p2align 4
    .globl cuemu_switch
    .hidden cuemu_switch
    .type cuemu_switch, @function
cuemu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size cuemu_switch, .-cuemu_switch
)");
#endif

namespace cuemu {
namespace {

enum FiberState : uint8_t { RUNNABLE, WAIT_WARP, WAIT_BAR, DONE };

struct Fiber {
    void* sp;
#ifdef CUEMU_UCONTEXT
    ucontext_t uc;
#endif
    uint8_t state;
    uint3 tid;
    unsigned lane, warp, linear;
    /* the pending sync point */
    int op;
    unsigned mask;
    int arg, width;
    unsigned size;
    alignas(16) unsigned char in[16];
    void* out;
    uint64_t ret;
    int pred;
    const char* name;
    const char* file;
    int line;
    unsigned long long smem_calls; /* this lane's smem_access calls in this block */
};

/* one warp-wide shared-memory access being assembled from its lanes' smem_access calls */
struct SmemAccess {
    unsigned warp;
    unsigned long long seq; /* the how-manieth call of each lane */
    unsigned mask, arrived, bytes;
    bool store; /* counted in C_BANK_CONFLICTS_ST, else _LD */
    uintptr_t addr[32];
};

/* CUEMU_SCHEDULE: the order of blocks, and of the threads of a block between sync points */
enum SchedKind : int { S_FORWARD, S_REVERSE, S_RANDOM };

/* a static __shared__ variable: its offset in the executable's TLS block and its size */
struct SmemVar {
    size_t off, size;
};

struct Launch {
    const char* name;
    dim3 grid, block;
    size_t smem;
    void (*body)(void*);
    void* closure;
    unsigned long long nblocks;
    unsigned nthreads;
    unsigned workers = 1; /* worker k runs the blocks at positions k, k + workers, ... of the order */
    int sched = S_FORWARD;
    uint64_t seed = 0;                         /* random: mixed with the launch's index */
    unsigned long long perm_a = 1, perm_c = 0; /* random block order: position p runs block (a*p + c) mod n */
    bool poison = true;                        /* fill shared memory with 0xFF at block start */
    std::shared_ptr<const std::vector<SmemVar>> smem_vars; /* static __shared__ to poison (may be null) */
    std::atomic<unsigned long long> counts[C_NUM];   /* summed over workers at the end of run_blocks */
};

struct Worker {
    std::vector<Fiber> fibers;
    char* stacks = nullptr;
    size_t stack_size = 0, stack_stride = 0, nstacks = 0;
    void* sched_sp = nullptr;
#ifdef CUEMU_UCONTEXT
    ucontext_t sched_uc;
#endif
    Fiber* cur = nullptr;
    unsigned char* dynsmem = nullptr; /* kSmemGuard bytes of guard zone on either side */
    size_t dynsmem_cap = 0;
    char* tls_base = nullptr;          /* this thread's block of the executable's TLS (static __shared__) */
    std::vector<unsigned> order;       /* warp order of a round (reverse / random schedules) */
    std::vector<unsigned> torder;      /* thread order of an interleaved round (random) */
    unsigned long long counts[C_NUM] = {};
    const Launch* L = nullptr;
    uint3 block{0, 0, 0};
    unsigned nthreads = 0, nwarps = 0, n_done = 0, n_bar = 0, n_warp = 0;
    unsigned present[32], exited[32], nwait[32];
    std::vector<SmemAccess> smem_pending; /* warp-wide accesses some lanes have not reached yet */
};

thread_local Worker* tl_worker = nullptr;
thread_local cudaError_t tl_last_error = cudaSuccess;

size_t page_size() {
    static size_t p = (size_t)sysconf(_SC_PAGESIZE);
    return p;
}

long env_long(const char* name, long dflt) {
    const char* s = getenv(name);
    if (!s || !*s) return dflt;
    char* end;
    long v = strtol(s, &end, 10);
    return *end ? dflt : v;
}

[[noreturn]] void fatal(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fflush(stdout);
    fprintf(stderr, "cuemu: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    fflush(stderr);
    abort();
}

/* ---------------------------------------------------------------- random schedule */
inline uint64_t splitmix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}
inline uint64_t next_random(uint64_t& state) { return splitmix64(state += 0x9E3779B97F4A7C15ull); }

/* ---------------------------------------------------------------- static __shared__ variables
 * `__shared__` is `thread_local`, so a block-scope `__shared__ T x[N]` of a kernel (or of a device
 * function it calls) is a function-local static in the executable's TLS block, with a local symbol
 * `_ZZ<enclosing function>E<name>` whose value is its offset in that block. The executable's own
 * symbol table (read once from /proc/self/exe) lists them; each worker thread finds its copy of the
 * TLS block with dlinfo(RTLD_DI_TLS_DATA). A kernel's list holds its own variables and those of
 * functions that are not kernels launched so far (helpers; poisoning a variable nobody uses right
 * now is harmless, so a superset is fine). Without a symbol table (a stripped binary) or when the
 * layout check fails, static shared memory is simply not poisoned (CUEMU_VERBOSE says so). */
struct SmemIndex {
    bool ok = false;
    std::vector<std::pair<std::string, SmemVar>> vars;
    std::map<uintptr_t, std::string> funcs; /* link-time address -> mangled name */
    uintptr_t load_bias = 0;
    std::mutex m;
    /* per kernel: its list, and how many kernels had been launched when it was made (a list made
     * before another kernel's first launch still holds that kernel's variables: remade then) */
    std::map<const void*, std::pair<size_t, std::shared_ptr<const std::vector<SmemVar>>>> per_kernel;
    std::vector<std::string> kernel_prefixes; /* "_ZZ<mangled kernel without _Z>E" of launched kernels */
};

int find_main_program(struct dl_phdr_info* info, size_t, void* data) {
    *(uintptr_t*)data = info->dlpi_addr;
    return 1; /* the first entry is the main program */
}

char* thread_tls_base() {
    static void* self = dlopen(nullptr, RTLD_LAZY);
    void* base = nullptr;
    if (!self || dlinfo(self, RTLD_DI_TLS_DATA, &base) != 0) return nullptr;
    return (char*)base;
}

SmemIndex& smem_index() {
    static SmemIndex* ix = [] {
        auto* x = new SmemIndex();
        int fd = open("/proc/self/exe", O_RDONLY);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) != 0 || (size_t)st.st_size < sizeof(Elf64_Ehdr)) {
            if (fd >= 0) close(fd);
            return x;
        }
        void* map = mmap(nullptr, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        close(fd);
        if (map == MAP_FAILED) return x;
        const char* base = (const char*)map;
        const Elf64_Ehdr* eh = (const Elf64_Ehdr*)base;
        size_t size = (size_t)st.st_size;
        if (memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_ident[EI_CLASS] != ELFCLASS64 ||
            eh->e_shoff + (size_t)eh->e_shnum * sizeof(Elf64_Shdr) > size) {
            munmap(map, size);
            return x;
        }
        const Elf64_Shdr* sh = (const Elf64_Shdr*)(base + eh->e_shoff);
        size_t dynsmem_off = (size_t)-1;
        for (unsigned i = 0; i < eh->e_shnum; i++) {
            if (sh[i].sh_type != SHT_SYMTAB || sh[i].sh_link >= eh->e_shnum) continue;
            const Elf64_Sym* sym = (const Elf64_Sym*)(base + sh[i].sh_offset);
            size_t nsym = sh[i].sh_size / sizeof(Elf64_Sym);
            const char* str = base + sh[sh[i].sh_link].sh_offset;
            for (size_t k = 0; k < nsym; k++) {
                const char* name = str + sym[k].st_name;
                int type = ELF64_ST_TYPE(sym[k].st_info);
                if (type == STT_FUNC && sym[k].st_value && name[0] == '_' && name[1] == 'Z')
                    x->funcs[(uintptr_t)sym[k].st_value] = name;
                else if (type == STT_TLS && !strncmp(name, "_ZZ", 3) && sym[k].st_size)
                    x->vars.push_back({name, SmemVar{(size_t)sym[k].st_value, (size_t)sym[k].st_size}});
                else if (type == STT_TLS && !strcmp(name, "_ZN5cuemu9t_dynsmemE"))
                    dynsmem_off = (size_t)sym[k].st_value;
            }
        }
        dl_iterate_phdr(find_main_program, &x->load_bias);
        /* the layout check: our own t_dynsmem must sit where the symbol table says */
        char* tls = thread_tls_base();
        x->ok = tls && dynsmem_off != (size_t)-1 && tls + dynsmem_off == (char*)&t_dynsmem;
        if (!x->ok && getenv("CUEMU_VERBOSE"))
            fprintf(stderr, "cuemu: static __shared__ variables cannot be located (no symbol table?); they are "
                            "not poisoned\n");
        return x;
    }();
    return *ix;
}

/* the static __shared__ variables to poison for kernel `fn` (null: none known) */
std::shared_ptr<const std::vector<SmemVar>> smem_vars_for(const void* fn) {
    SmemIndex& ix = smem_index();
    if (!ix.ok || ix.vars.empty()) return nullptr;
    std::lock_guard<std::mutex> lk(ix.m);
    auto it = ix.per_kernel.find(fn);
    if (it != ix.per_kernel.end() && it->second.first == ix.kernel_prefixes.size()) return it->second.second;
    std::string own;
    auto f = ix.funcs.find((uintptr_t)fn - ix.load_bias);
    if (f != ix.funcs.end()) own = "_ZZ" + f->second.substr(2) + "E";
    if (it == ix.per_kernel.end() && !own.empty()) ix.kernel_prefixes.push_back(own);
    auto list = std::make_shared<std::vector<SmemVar>>();
    for (auto& v : ix.vars) {
        bool other_kernel = false;
        if (own.empty() || v.first.compare(0, own.size(), own) != 0)
            for (auto& pre : ix.kernel_prefixes)
                if (v.first.compare(0, pre.size(), pre) == 0) other_kernel = true;
        if (!other_kernel) list->push_back(v.second);
    }
    ix.per_kernel[fn] = {ix.kernel_prefixes.size(), list};
    return list;
}

Worker& this_worker() {
    if (!tl_worker) { /* lives as long as its thread; never freed */
        tl_worker = new Worker();
        tl_worker->tls_base = thread_tls_base();
    }
    return *tl_worker;
}

/* ---------------------------------------------------------------- shared memory at block start */
constexpr size_t kSmemGuard = 256;
constexpr unsigned char kSmemCanary = 0xA5;

#ifdef CUEMU_VALGRIND
inline bool initcheck() {
    static bool on = RUNNING_ON_VALGRIND && env_long("CUEMU_INITCHECK", 0) != 0;
    return on;
}
#endif

/* Poisons the block's shared memory (0xFF: NaN as float/double, -1 as an integer) and arms the
 * guard zones on both sides of the dynamic shared memory. */
void start_block_memory(Worker& w) {
    const Launch& L = *w.L;
    unsigned char* d = w.dynsmem;
    memset(d - kSmemGuard, kSmemCanary, kSmemGuard);
    memset(d + L.smem, kSmemCanary, kSmemGuard);
    if (L.poison) {
        memset(d, 0xFF, L.smem);
        if (L.smem_vars && w.tls_base)
            for (const SmemVar& v : *L.smem_vars) memset(w.tls_base + v.off, 0xFF, v.size);
    }
#ifdef CUEMU_VALGRIND
    if (initcheck()) {
        (void)VALGRIND_MAKE_MEM_UNDEFINED(d, L.smem);
        if (L.smem_vars && w.tls_base)
            for (const SmemVar& v : *L.smem_vars) (void)VALGRIND_MAKE_MEM_UNDEFINED(w.tls_base + v.off, v.size);
    }
#endif
}

void check_dynsmem_guard(Worker& w) {
    const Launch& L = *w.L;
    const unsigned char* d = w.dynsmem;
    for (size_t i = 0; i < kSmemGuard; i++) {
        if (d[L.smem + i] != kSmemCanary)
            fatal("kernel '%s' block (%u,%u,%u) wrote past the end of its %zu bytes of dynamic shared memory "
                  "(first bad byte at +%zu past the end)",
                  L.name, w.block.x, w.block.y, w.block.z, L.smem, i);
        if (d[-(long)kSmemGuard + (long)i] != kSmemCanary)
            fatal("kernel '%s' block (%u,%u,%u) wrote before the start of its %zu bytes of dynamic shared memory "
                  "(at -%zu)",
                  L.name, w.block.x, w.block.y, w.block.z, L.smem, kSmemGuard - i);
    }
}

/* ---------------------------------------------------------------- fibers */
[[noreturn]] void fiber_entry();

inline void run_fiber(Worker& w, Fiber* f) {
    w.cur = f;
    t_threadIdx = f->tid;
#ifdef CUEMU_UCONTEXT
    swapcontext(&w.sched_uc, &f->uc);
#else
    cuemu_switch(&w.sched_sp, f->sp);
#endif
    w.cur = nullptr;
}

inline void to_scheduler(Worker& w, Fiber* f) {
#ifdef CUEMU_UCONTEXT
    swapcontext(&f->uc, &w.sched_uc);
#else
    cuemu_switch(&f->sp, w.sched_sp);
#endif
}

[[noreturn]] void fiber_entry() {
    Worker* w = tl_worker;
    w->L->body(w->L->closure);
    Fiber* f = w->cur;
    f->state = DONE;
    w->n_done++;
    w->exited[f->warp] |= 1u << f->lane;
    to_scheduler(*w, f);
    fatal("internal error: a finished fiber was resumed");
}

void ensure_fibers(Worker& w, unsigned n) {
    size_t want_stack = (size_t)std::max(16L, env_long("CUEMU_STACK_KB", 64)) * 1024;
    want_stack = (want_stack + page_size() - 1) / page_size() * page_size();
    if (w.fibers.size() < n) w.fibers.resize(n);
    if (w.nstacks >= n && w.stack_size == want_stack) return;
    if (w.stacks) munmap(w.stacks, w.nstacks * w.stack_stride);
    size_t count = std::max<size_t>(n, w.nstacks);
    w.stack_size = want_stack;
    w.stack_stride = want_stack + page_size(); /* guard page below each stack */
    void* p = mmap(nullptr, count * w.stack_stride, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (p == MAP_FAILED) fatal("cannot map %zu fiber stacks of %zu KiB", count, want_stack / 1024);
    w.stacks = (char*)p;
    w.nstacks = count;
    for (size_t i = 0; i < count; i++)
        if (mprotect(w.stacks + i * w.stack_stride, page_size(), PROT_NONE) != 0) fatal("mprotect failed");
}

void seed_fiber(Worker& w, Fiber* f, size_t i) {
    char* lo = w.stacks + i * w.stack_stride + page_size();
#ifdef CUEMU_UCONTEXT
    getcontext(&f->uc);
    f->uc.uc_stack.ss_sp = lo;
    f->uc.uc_stack.ss_size = w.stack_size;
    f->uc.uc_link = nullptr;
    makecontext(&f->uc, (void (*)())fiber_entry, 0);
#else
    /* frame popped by cuemu_switch: [mxcsr|fpcw][r15 r14 r13 r12 rbx rbp][ret=fiber_entry][0];
     * after its `ret`, rsp = top-8, i.e. 8 mod 16 as at any function entry */
    uintptr_t top = ((uintptr_t)(lo + w.stack_size)) & ~(uintptr_t)15;
    uint64_t* sp = (uint64_t*)(top - 72);
    uint32_t mxcsr_fpcw[2] = {0x1F80u, 0x037Fu};
    memcpy(&sp[0], mxcsr_fpcw, 8);
    for (int r = 1; r <= 6; r++) sp[r] = 0; /* rbp = 0 ends debugger backtraces */
    sp[7] = (uint64_t)(uintptr_t)&fiber_entry;
    sp[8] = 0;
    f->sp = sp;
#endif
}

/* ---------------------------------------------------------------- diagnostics */
std::string describe(const Fiber& f) {
    char buf[256];
    switch (f.state) {
    case DONE: return "exited";
    case RUNNABLE:
        if (f.op == -1) {
            snprintf(buf, sizeof buf, "spinning in %s at %s:%d", f.name, f.file, f.line);
            return buf;
        }
        return "runnable";
    case WAIT_BAR: snprintf(buf, sizeof buf, "%s at %s:%d", f.name, f.file, f.line); return buf;
    default:
        if (f.op == W_ACTIVEMASK) snprintf(buf, sizeof buf, "%s at %s:%d", f.name, f.file, f.line);
        else snprintf(buf, sizeof buf, "%s(mask=0x%08x) at %s:%d", f.name, f.mask, f.file, f.line);
        return buf;
    }
}

std::string where(const Worker& w, const Fiber& f) {
    char buf[256];
    snprintf(buf, sizeof buf, "kernel '%s' block (%u,%u,%u) thread (%u,%u,%u) [warp %u lane %u]",
             w.L ? w.L->name : "?", w.block.x, w.block.y, w.block.z, f.tid.x, f.tid.y, f.tid.z, f.warp, f.lane);
    return buf;
}

void list_threads(Worker& w) {
    unsigned lines = 0;
    for (unsigned i = 0; i < w.nthreads;) {
        std::string d = describe(w.fibers[i]);
        unsigned j = i + 1;
        while (j < w.nthreads && describe(w.fibers[j]) == d) j++;
        if (lines++ < 24) {
            const Fiber &a = w.fibers[i], &b = w.fibers[j - 1];
            if (a.warp == b.warp)
                fprintf(stderr, "cuemu:   threads %u-%u (warp %u lanes %u-%u): %s\n", i, j - 1, a.warp, a.lane,
                        b.lane, d.c_str());
            else
                fprintf(stderr, "cuemu:   threads %u-%u (warps %u-%u): %s\n", i, j - 1, a.warp, b.warp, d.c_str());
        }
        i = j;
    }
    if (lines > 24) fprintf(stderr, "cuemu:   ... (%u more groups)\n", lines - 24);
}

[[noreturn]] void livelock(Worker& w, double seconds) {
    fflush(stdout);
    fprintf(stderr,
            "cuemu: livelock in kernel '%s' block (%u,%u,%u): for %.0f s the only activity was threads spinning in "
            "__nanosleep (waiting for something no thread of this block will do? blocks run one after another, so a "
            "block cannot wait for a later one). Where each thread is:\n",
            w.L->name, w.block.x, w.block.y, w.block.z, seconds);
    list_threads(w);
    fflush(stderr);
    abort();
}

[[noreturn]] void deadlock(Worker& w) {
    unsigned nb = 0, nw = 0, nd = 0;
    for (unsigned i = 0; i < w.nthreads; i++) {
        nb += w.fibers[i].state == WAIT_BAR;
        nw += w.fibers[i].state == WAIT_WARP;
        nd += w.fibers[i].state == DONE;
    }
    fflush(stdout);
    fprintf(stderr,
            "cuemu: deadlock in kernel '%s' block (%u,%u,%u) of grid (%u,%u,%u), block (%u,%u,%u): "
            "%u thread(s) wait at a block barrier, %u at warp intrinsics, %u exited.\n"
            "cuemu: a block barrier needs every non-exited thread of the block; a warp intrinsic needs every "
            "non-exited lane of its mask, calling with that same mask (divergent __syncthreads, a wrong mask, "
            "or lanes that skip the intrinsic). Where each thread waits:\n",
            w.L->name, w.block.x, w.block.y, w.block.z, w.L->grid.x, w.L->grid.y, w.L->grid.z, w.L->block.x,
            w.L->block.y, w.L->block.z, nb, nw, nd);
    list_threads(w);
    fflush(stderr);
    abort();
}

/* ---------------------------------------------------------------- warp groups */
/* CUDA's source-lane rules for a segment of `width` lanes; -1 = "return the caller's own value" */
int shuffle_source(int op, unsigned lane, int arg, int width) {
    int base = (int)lane & ~(width - 1);
    int src;
    switch (op) {
    case W_SHFL_IDX: return base + (arg & (width - 1));
    case W_SHFL_UP: src = (int)lane - arg; return (arg < 0 || src < base) ? -1 : src;
    case W_SHFL_DOWN: src = (int)lane + arg; return (arg < 0 || src >= base + width) ? -1 : src;
    default: /* xor: lanes may reach earlier segments, not later ones */
        src = (int)(lane ^ (unsigned)arg);
        return (src >= base + width || src > 31) ? -1 : src;
    }
}

uint64_t load_u(const Fiber& f) {
    uint64_t v = 0;
    memcpy(&v, f.in, f.size);
    return v;
}

void complete_group(Worker& w, unsigned wi, unsigned group) {
    Fiber* lanes = &w.fibers[wi * 32];
    unsigned first = (unsigned)__builtin_ctz(group);
    const Fiber& f0 = lanes[first];
    for (unsigned g = group; g; g &= g - 1) {
        const Fiber& f = lanes[__builtin_ctz(g)];
        if (f.op != f0.op || f.size != f0.size)
            fatal("%s: lanes %u and %u of warp %u use different warp intrinsics with the same mask 0x%08x: "
                  "%s at %s:%d and %s at %s:%d",
                  w.L->name, first, f.lane, wi, f0.mask, f0.name, f0.file, f0.line, f.name, f.file, f.line);
    }
    int op = f0.op;
    if (op >= W_SHFL_IDX && op <= W_SHFL_XOR) {
        for (unsigned g = group; g; g &= g - 1) {
            Fiber& f = lanes[__builtin_ctz(g)];
            int src = shuffle_source(op, f.lane, f.arg, f.width);
            const Fiber& s = (src >= 0 && (group >> src & 1)) ? lanes[src] : f;
            memcpy(f.out, s.in, f.size);
        }
    } else if (op == W_BALLOT || op == W_ALL || op == W_ANY) {
        unsigned bits = 0;
        for (unsigned g = group; g; g &= g - 1) {
            const Fiber& f = lanes[__builtin_ctz(g)];
            int p;
            memcpy(&p, f.in, sizeof p);
            if (p) bits |= 1u << f.lane;
        }
        uint64_t r = op == W_BALLOT ? bits : op == W_ALL ? (bits == group) : (bits != 0);
        for (unsigned g = group; g; g &= g - 1) lanes[__builtin_ctz(g)].ret = r;
    } else if (op >= W_RED_ADD && op <= W_RED_XOR) {
        uint32_t acc = (uint32_t)load_u(f0);
        for (unsigned g = group & (group - 1); g; g &= g - 1) {
            uint32_t v = (uint32_t)load_u(lanes[__builtin_ctz(g)]);
            switch (op) {
            case W_RED_ADD: acc += v; break;
            case W_RED_MIN_S: acc = (int32_t)v < (int32_t)acc ? v : acc; break;
            case W_RED_MAX_S: acc = (int32_t)v > (int32_t)acc ? v : acc; break;
            case W_RED_MIN_U: acc = std::min(acc, v); break;
            case W_RED_MAX_U: acc = std::max(acc, v); break;
            case W_RED_AND: acc &= v; break;
            case W_RED_OR: acc |= v; break;
            default: acc ^= v; break;
            }
        }
        for (unsigned g = group; g; g &= g - 1) memcpy(lanes[__builtin_ctz(g)].out, &acc, 4);
    } else if (op == W_MATCH_ANY || op == W_MATCH_ALL) {
        bool all = true;
        for (unsigned g = group; g; g &= g - 1) all = all && load_u(lanes[__builtin_ctz(g)]) == load_u(f0);
        for (unsigned g = group; g; g &= g - 1) {
            Fiber& f = lanes[__builtin_ctz(g)];
            unsigned m = 0;
            if (op == W_MATCH_ANY) {
                for (unsigned h = group; h; h &= h - 1)
                    if (load_u(lanes[__builtin_ctz(h)]) == load_u(f)) m |= 1u << __builtin_ctz(h);
            } else {
                m = all ? group : 0;
                f.ret = all;
            }
            memcpy(f.out, &m, 4);
        }
    } /* W_SYNCWARP: nothing to compute */
    w.counts[C_WARP_COLLECTIVES]++;
    unsigned n = (unsigned)__builtin_popcount(group);
    for (unsigned g = group; g; g &= g - 1) lanes[__builtin_ctz(g)].state = RUNNABLE;
    w.nwait[wi] -= n;
    w.n_warp -= n;
}

bool release_warp(Worker& w, unsigned wi);

bool release_warps(Worker& w) {
    bool released = false;
    for (unsigned wi = 0; wi < w.nwarps; wi++)
        if (w.nwait[wi]) released |= release_warp(w, wi);
    return released;
}

/* completes every group of warp wi that can complete; true if one did */
bool release_warp(Worker& w, unsigned wi) {
    bool released = false;
    {
        Fiber* lanes = &w.fibers[wi * 32];
        unsigned waiting = 0;
        for (unsigned m = w.present[wi]; m; m &= m - 1) {
            unsigned l = (unsigned)__builtin_ctz(m);
            if (lanes[l].state == WAIT_WARP) waiting |= 1u << l;
        }
        unsigned live = w.present[wi] & ~w.exited[wi];
        unsigned seen = 0, active_q = 0, runnable = 0;
        for (unsigned m = waiting; m; m &= m - 1)
            if (lanes[__builtin_ctz(m)].op == W_ACTIVEMASK) active_q |= 1u << __builtin_ctz(m);
        waiting &= ~active_q;
        for (unsigned m = live; m; m &= m - 1) runnable |= (lanes[__builtin_ctz(m)].state == RUNNABLE) << __builtin_ctz(m);
        /* __activemask: once no lane of the warp can run, lanes at the same call site form the mask */
        if (active_q && !runnable) {
            while (active_q) {
                const Fiber& f0 = lanes[__builtin_ctz(active_q)];
                unsigned group = 0;
                for (unsigned m = active_q; m; m &= m - 1) {
                    const Fiber& f = lanes[__builtin_ctz(m)];
                    if (f.line == f0.line && (f.file == f0.file || !strcmp(f.file, f0.file))) group |= 1u << __builtin_ctz(m);
                }
                for (unsigned m = group; m; m &= m - 1) {
                    lanes[__builtin_ctz(m)].ret = group;
                    lanes[__builtin_ctz(m)].state = RUNNABLE;
                }
                unsigned n = (unsigned)__builtin_popcount(group);
                w.nwait[wi] -= n;
                w.n_warp -= n;
                active_q &= ~group;
                released = true;
            }
        }
        while (waiting & ~seen) {
            unsigned l = (unsigned)__builtin_ctz(waiting & ~seen);
            unsigned mask = lanes[l].mask, group = 0;
            for (unsigned m = waiting & ~seen; m; m &= m - 1) {
                unsigned k = (unsigned)__builtin_ctz(m);
                if (lanes[k].mask == mask) group |= 1u << k;
            }
            seen |= group;
            if (group == (mask & live)) {
                complete_group(w, wi, group);
                released = true;
            }
        }
    }
    return released;
}

void release_barrier(Worker& w) {
    unsigned count = 0;
    for (unsigned i = 0; i < w.nthreads; i++)
        if (w.fibers[i].state == WAIT_BAR && w.fibers[i].pred) count++;
    for (unsigned i = 0; i < w.nthreads; i++) {
        Fiber& f = w.fibers[i];
        if (f.state != WAIT_BAR) continue;
        f.ret = f.op == B_COUNT ? count : f.op == B_AND ? (count == w.n_bar) : f.op == B_OR ? (count > 0) : 0;
        f.state = RUNNABLE;
    }
    w.n_bar = 0;
    w.counts[C_BARRIERS]++;
}

/* Shared memory has 32 banks of 4 bytes. A warp's access is split into phases of 128 bytes' worth of
 * lanes (32 lanes of <= 4 bytes, 16 of 8, 8 of 16); in a phase, lanes that touch the same 4-byte word
 * share it (broadcast), and each bank serves one word per wavefront. Returns the wavefronts beyond
 * one per phase. Source: CUDA C++ Programming Guide, "Compute Capability 5.x > Shared Memory" (the
 * rule sm_80/sm_90 keep, sections "Compute Capability 8.x/9.x > Shared Memory": 32 banks, successive
 * 32-bit words in successive banks, a word read by several threads is broadcast, each bank serves one
 * word per request) and "Device Memory Accesses > Shared Memory" (an n-way conflict splits a request into
 * n conflict-free ones). The phases for 64- and 128-bit accesses (half- and quarter-warps, each
 * 128 bytes) are what the hardware does per Nsight Compute's "shared memory wavefronts" (a 128-bit
 * warp-wide access takes 4 wavefronts without conflicts); the guide does not state them for 8.x/9.x.
 * Stores apply the same rule; several lanes storing one word are one word (one of them wins). */
unsigned long long extra_wavefronts(const SmemAccess& a) {
    unsigned per_phase = a.bytes <= 4 ? 32 : a.bytes >= 16 ? 8 : 128 / a.bytes;
    unsigned words_per_lane = a.bytes <= 4 ? 1 : a.bytes / 4;
    unsigned long long extra = 0;
    for (unsigned p0 = 0; p0 < 32; p0 += per_phase) {
        uintptr_t words[32 * 4];
        unsigned nw = 0;
        for (unsigned l = p0; l < p0 + per_phase; l++) {
            if (!(a.arrived >> l & 1)) continue;
            for (unsigned k = 0; k < words_per_lane; k++) {
                uintptr_t wd = a.addr[l] / 4 + k;
                bool seen = false;
                for (unsigned j = 0; j < nw && !seen; j++) seen = words[j] == wd;
                if (!seen) words[nw++] = wd;
            }
        }
        unsigned per_bank[32] = {}, most = 0;
        for (unsigned j = 0; j < nw; j++) most = std::max(most, ++per_bank[words[j] % 32]);
        if (most > 1) extra += most - 1;
    }
    return extra;
}

void count_smem(Worker& w, const SmemAccess& a) {
    const unsigned long long extra = extra_wavefronts(a);
    w.counts[C_BANK_CONFLICTS] += extra;
    w.counts[a.store ? C_BANK_CONFLICTS_ST : C_BANK_CONFLICTS_LD] += extra;
}

void run_block(Worker& w, unsigned long long b) {
    const Launch& L = *w.L;
    w.block = uint3{(unsigned)(b % L.grid.x), (unsigned)(b / L.grid.x % L.grid.y),
                    (unsigned)(b / ((unsigned long long)L.grid.x * L.grid.y))};
    t_blockIdx = w.block;
    unsigned n = L.nthreads;
    w.nthreads = n;
    w.nwarps = (n + 31) / 32;
    for (unsigned wi = 0; wi < w.nwarps; wi++) {
        unsigned lanes = std::min(32u, n - wi * 32);
        w.present[wi] = lanes == 32 ? ~0u : (1u << lanes) - 1;
        w.exited[wi] = 0;
        w.nwait[wi] = 0;
    }
    w.n_done = w.n_bar = w.n_warp = 0;
    for (unsigned i = 0; i < n; i++) {
        Fiber& f = w.fibers[i];
        f.state = RUNNABLE;
        f.op = 0;
        f.smem_calls = 0;
        f.linear = i;
        f.lane = i & 31;
        f.warp = i >> 5;
        f.tid = uint3{i % L.block.x, i / L.block.x % L.block.y, i / (L.block.x * L.block.y)};
        seed_fiber(w, &f, i);
    }
    start_block_memory(w);
    w.smem_pending.clear();
    w.counts[C_BLOCKS]++;
    w.counts[C_THREADS] += n;
    uint64_t rng = L.sched == S_RANDOM ? splitmix64(L.seed ^ (b * 0x9E3779B97F4A7C15ull)) : 0;
    if (L.sched != S_FORWARD) {
        w.order.resize(w.nwarps);
        for (unsigned i = 0; i < w.nwarps; i++) w.order[i] = L.sched == S_REVERSE ? w.nwarps - 1 - i : i;
    }
    /* rounds in which every fiber that ran only yielded: a spin-wait that nothing will end */
    unsigned long long idle_rounds = 0;
    std::chrono::steady_clock::time_point idle_start;
    for (;;) {
        bool ran = false, advanced = false;
        if (L.sched == S_FORWARD) {
            for (unsigned i = 0; i < n; i++) {
                Fiber* f = &w.fibers[i];
                if (f->state != RUNNABLE) continue;
                ran = true;
                run_fiber(w, f);
                advanced |= f->state != RUNNABLE;
            }
        } else if (L.sched == S_RANDOM && (next_random(rng) & 1)) {
            /* random, an interleaved round: every thread one step, all threads of the block shuffled
             * (each pair of threads of different warps gets its own order) */
            w.torder.resize(n);
            for (unsigned i = 0; i < n; i++) w.torder[i] = i;
            for (unsigned i = n - 1; i > 0; i--) std::swap(w.torder[i], w.torder[next_random(rng) % (i + 1)]);
            for (unsigned i = 0; i < n; i++) {
                Fiber* f = &w.fibers[w.torder[i]];
                if (f->state != RUNNABLE) continue;
                ran = true;
                run_fiber(w, f);
                advanced |= f->state != RUNNABLE;
            }
        } else {
            /* Warp by warp, each warp "greedy": it runs as far as it can — through its own warp
             * collectives — before the next warp gets a turn, so warps drift apart up to the next
             * block barrier (round-robin keeps them within one collective of each other, which hides a
             * buffer refilled by a warp that is ahead while a slower one still reads it). reverse:
             * warps and lanes last to first; random (the other half of its rounds): a fresh warp
             * order, lanes shuffled on every pass. */
            bool random = L.sched == S_RANDOM;
            if (random)
                for (unsigned i = w.nwarps - 1; i > 0; i--) std::swap(w.order[i], w.order[next_random(rng) % (i + 1)]);
            for (unsigned k = 0; k < w.nwarps; k++) {
                unsigned wi = w.order[k], lo = wi * 32, cnt = std::min(32u, n - lo);
                for (;;) {
                    unsigned lanes[32];
                    for (unsigned j = 0; j < cnt; j++) lanes[j] = random ? j : cnt - 1 - j;
                    if (random)
                        for (unsigned j = cnt - 1; j > 0; j--) std::swap(lanes[j], lanes[next_random(rng) % (j + 1)]);
                    for (unsigned j = 0; j < cnt; j++) {
                        Fiber* f = &w.fibers[lo + lanes[j]];
                        if (f->state != RUNNABLE) continue;
                        ran = true;
                        run_fiber(w, f);
                        advanced |= f->state != RUNNABLE;
                    }
                    if (!w.nwait[wi] || !release_warp(w, wi)) break;
                    advanced = true;
                }
            }
        }
        if (w.n_done == n) break;
        bool released = w.n_warp && release_warps(w);
        if (w.n_bar && w.n_bar + w.n_done == n) {
            release_barrier(w);
            released = true;
        }
        if (!ran && !released) deadlock(w);
        if (advanced || released) {
            idle_rounds = 0;
        } else if ((++idle_rounds & 0xffff) == 0) {
            auto now = std::chrono::steady_clock::now();
            if (idle_rounds == 0x10000) idle_start = now;
            double s = std::chrono::duration<double>(now - idle_start).count();
            if (s > (double)env_long("CUEMU_SPIN_TIMEOUT_S", 10)) livelock(w, s);
        }
    }
    check_dynsmem_guard(w);
    /* accesses that some lanes of their mask never made (they exited, or diverged): count what came */
    for (SmemAccess& a : w.smem_pending) count_smem(w, a);
    w.smem_pending.clear();
}

/* the block that runs at position p of the launch's block order */
inline unsigned long long block_at(const Launch& L, unsigned long long p) {
    switch (L.sched) {
    case S_FORWARD: return p;
    case S_REVERSE: return L.nblocks - 1 - p;
    default: return (unsigned long long)(((unsigned __int128)L.perm_a * p + L.perm_c) % L.nblocks);
    }
}

void run_blocks(Launch& L, unsigned k) {
    Worker& w = this_worker();
    ensure_fibers(w, L.nthreads);
    if (w.dynsmem_cap < L.smem || !w.dynsmem) {
        if (w.dynsmem) free(w.dynsmem - kSmemGuard);
        w.dynsmem_cap = std::max<size_t>((L.smem + 63) / 64 * 64, 1024);
        unsigned char* p = (unsigned char*)aligned_alloc(64, w.dynsmem_cap + 2 * kSmemGuard);
        if (!p) fatal("cannot allocate %zu bytes of dynamic shared memory", L.smem);
        w.dynsmem = p + kSmemGuard;
    }
    if (!L.poison) memset(w.dynsmem, 0xA5, L.smem); /* garbage once per launch, as before */
    w.L = &L;
    t_blockDim = L.block;
    t_gridDim = L.grid;
    t_dynsmem = w.dynsmem;
    memset(w.counts, 0, sizeof w.counts);
    t_counts = w.counts;
    /* a fixed assignment rather than a shared counter: which thread runs which block does not
     * depend on timing, and every worker really gets blocks */
    for (unsigned long long p = k; p < L.nblocks; p += L.workers) run_block(w, block_at(L, p));
    t_counts = nullptr;
    for (int c = 0; c < C_NUM; c++)
        if (w.counts[c]) L.counts[c].fetch_add(w.counts[c], std::memory_order_relaxed);
    w.L = nullptr;
    t_threadIdx = uint3{0, 0, 0};
    t_blockIdx = uint3{0, 0, 0};
}

/* ---------------------------------------------------------------- worker pool (CUEMU_WORKERS>1) */
struct Pool {
    std::mutex m;
    std::condition_variable cv, done_cv;
    Launch* job = nullptr;
    unsigned long long gen = 0;
    unsigned want = 0, running = 0, nthreads = 0;
};
Pool& pool() {
    static Pool* p = new Pool(); /* never destroyed: its threads are detached and outlive main */
    return *p;
}

void pool_thread(unsigned index, unsigned long long seen) {
    Pool& p = pool();
    std::unique_lock<std::mutex> lk(p.m);
    for (;;) {
        p.cv.wait(lk, [&] { return p.gen != seen; });
        seen = p.gen;
        if (index >= p.want) continue;
        Launch* L = p.job;
        lk.unlock();
        run_blocks(*L, index + 1);
        lk.lock();
        if (--p.running == 0) p.done_cv.notify_all();
    }
}

void run_parallel(Launch& L, unsigned workers) {
    Pool& p = pool();
    {
        std::lock_guard<std::mutex> lk(p.m);
        while (p.nthreads < workers - 1) std::thread(pool_thread, p.nthreads++, p.gen).detach();
        p.job = &L;
        p.want = workers - 1;
        p.running = workers - 1;
        p.gen++;
    }
    p.cv.notify_all();
    run_blocks(L, 0);
    std::unique_lock<std::mutex> lk(p.m);
    p.done_cv.wait(lk, [&] { return p.running == 0; });
}

/* ---------------------------------------------------------------- memory bookkeeping */
constexpr size_t kAlign = 256, kRedZone = 256;
constexpr unsigned char kCanary = 0xA5;
/* A block is [kRedZone bytes of canary][size bytes, rounded up to kAlign][kRedZone bytes of canary]:
 * ptr = the start of the middle part; span = bytes from ptr to the end of the trailing red zone. */
struct Alloc {
    size_t size, span; /* requested bytes; bytes after ptr that belong to the block */
};
std::mutex g_mem_mutex;
std::map<uintptr_t, Alloc>& allocs() {
    static auto* m = new std::map<uintptr_t, Alloc>();
    return *m;
}
size_t g_mem_current = 0, g_mem_peak = 0, g_mem_count = 0, g_mem_peak_count = 0; /* under g_mem_mutex */

void memory_report_at_exit() {
    std::lock_guard<std::mutex> lk(g_mem_mutex);
    fprintf(stderr, "cuemu: device memory peak %zu bytes (%.1f MiB) in %zu allocation(s); %zu bytes in %zu "
                    "allocation(s) still allocated at exit\n",
            g_mem_peak, g_mem_peak / 1048576.0, g_mem_peak_count, g_mem_current, g_mem_count);
}
std::mutex g_attr_mutex;
std::map<const void*, int>& max_dyn_smem() {
    static auto* m = new std::map<const void*, int>();
    return *m;
}

/* returns 0 if both red zones are intact; else 1 with *off = first overwritten byte past the end,
 * or -1 with *off = the overwritten byte nearest before the start (as a positive distance) */
int check_canary(uintptr_t p, const Alloc& a, long* off) {
#ifdef CUEMU_ASAN
    (void)p;
    (void)a;
    (void)off;
    return 0;
#else
    const unsigned char* c = (const unsigned char*)p;
    for (size_t i = a.size; i < a.span; i++)
        if (c[i] != kCanary) {
            *off = (long)(i - a.size);
            return 1;
        }
    for (size_t i = kRedZone; i >= 1; i--) /* the farthest bad byte: where a store began */
        if (c[-(long)i] != kCanary) {
            *off = (long)i;
            return -1;
        }
    return 0;
#endif
}

void report_canary(const char* who, int r, long off, uintptr_t p, const Alloc& a, const char* when) {
    if (r > 0)
        fatal("%s wrote past the end of a %zu-byte cudaMalloc block at %p (first bad byte at +%ld past its end)%s",
              who, a.size, (void*)p, off, when);
    fatal("%s wrote before the start of a %zu-byte cudaMalloc block at %p (first bad byte at %ld bytes before its "
          "start)%s",
          who, a.size, (void*)p, off, when);
}

void check_all_canaries(const char* after) {
#ifndef CUEMU_ASAN
    std::lock_guard<std::mutex> lk(g_mem_mutex);
    for (auto& kv : allocs()) {
        long off = 0;
        int r = check_canary(kv.first, kv.second, &off);
        if (r) report_canary(after, r, off, kv.first, kv.second, "");
    }
#else
    (void)after;
#endif
}

/* counters of the last launch and of all launches (under g_count_mutex) */
std::mutex g_count_mutex;
Counters g_last_counts{}, g_total_counts{};
std::atomic<unsigned long long> g_launch_index{0};

cudaError_t set_error(cudaError_t e) {
    if (e != cudaSuccess) tl_last_error = e;
    return e;
}

constexpr int kSmemDefault = 48 * 1024, kSmemOptin = 232448;

} /* namespace */

/* ====================================================================== fiber-side entry points */
static Fiber* current_fiber(const char* what, const char* file, int line) {
    Worker* w = tl_worker;
    if (!w || !w->cur) fatal("%s called outside a kernel (at %s:%d)", what, file, line);
    return w->cur;
}

uint64_t warp_collective(int op, const char* name, unsigned mask, const void* in, unsigned size, int arg,
                         int width, void* out, const char* file, int line) {
    Fiber* f = current_fiber(name, file, line);
    Worker& w = *tl_worker;
    if (!(mask >> f->lane & 1))
        fatal("%s calls %s with mask 0x%08x, which does not include its own lane (undefined behaviour on the "
              "GPU) at %s:%d",
              where(w, *f).c_str(), name, mask, file, line);
    if (width < 1 || width > 32 || (width & (width - 1)))
        fatal("%s calls %s with width %d (must be a power of two from 1 to 32) at %s:%d", where(w, *f).c_str(),
              name, width, file, line);
    f->op = op;
    f->name = name;
    f->mask = mask;
    f->size = size;
    if (size) memcpy(f->in, in, size);
    f->arg = arg;
    f->width = width;
    f->out = out;
    f->ret = 0;
    f->file = file;
    f->line = line;
    f->state = WAIT_WARP;
    w.nwait[f->warp]++;
    w.n_warp++;
    to_scheduler(w, f);
    return f->ret;
}

int block_barrier(int op, const char* name, int pred, const char* file, int line) {
    Fiber* f = current_fiber(name, file, line);
    Worker& w = *tl_worker;
    f->op = op;
    f->name = name;
    f->pred = pred != 0;
    f->file = file;
    f->line = line;
    f->state = WAIT_BAR;
    w.n_bar++;
    to_scheduler(w, f);
    return (int)f->ret;
}

unsigned active_mask(const char* file, int line) {
    Worker* w = tl_worker;
    if (!w || !w->cur) return 0;
    /* The emulator cannot see branch divergence, and lanes run one after another, so "lanes that
     * have not exited" would miss lanes that already ran past this point. Instead the call waits
     * until no lane of the warp can run, and returns the lanes waiting at this same call site. */
    Fiber* f = w->cur;
    f->op = W_ACTIVEMASK;
    f->name = "__activemask";
    f->mask = 0;
    f->file = file;
    f->line = line;
    f->ret = 0;
    f->state = WAIT_WARP;
    w->nwait[f->warp]++;
    w->n_warp++;
    to_scheduler(*w, f);
    return (unsigned)f->ret;
}

void fiber_yield(const char* file, int line) {
    Worker* w = tl_worker;
    if (!w || !w->cur) return;
    Fiber* f = w->cur;
    f->name = "__nanosleep";
    f->file = file;
    f->line = line;
    f->op = -1; /* marks "last stopped in a yield" for the livelock report */
    to_scheduler(*w, f);
}

static void smem_access_at(const void* addr, unsigned bytes, unsigned mask, bool store, const char* file, int line) {
    Worker* w = tl_worker;
    if (!w || !w->cur) return;
    Fiber* f = w->cur;
    if (!(mask >> f->lane & 1))
        fatal("%s calls cuemu::%s with mask 0x%08x, which does not include its own lane, at %s:%d",
              where(*w, *f).c_str(), store ? "smem_store" : "smem_access", mask, file, line);
    unsigned long long seq = f->smem_calls++;
    SmemAccess* a = nullptr;
    for (SmemAccess& x : w->smem_pending)
        if (x.warp == f->warp && x.seq == seq && x.mask == mask && x.store == store) a = &x;
    if (!a) {
        w->smem_pending.push_back(SmemAccess{f->warp, seq, mask, 0, bytes, store, {}});
        a = &w->smem_pending.back();
    }
    a->addr[f->lane] = (uintptr_t)addr;
    a->arrived |= 1u << f->lane;
    if (a->arrived == (a->mask & w->present[f->warp] & ~w->exited[f->warp])) {
        count_smem(*w, *a);
        *a = w->smem_pending.back();
        w->smem_pending.pop_back();
    }
}
void smem_access(const void* addr, unsigned bytes, unsigned mask, const char* file, int line) {
    smem_access_at(addr, bytes, mask, false, file, line);
}
void smem_store(const void* addr, unsigned bytes, unsigned mask, const char* file, int line) {
    smem_access_at(addr, bytes, mask, true, file, line);
}

void misaligned(const void* p, unsigned align, const char* what, const char* file, int line) {
    Worker* w = tl_worker;
    if (w && w->cur)
        fatal("misaligned address: %s at %p is not %u-byte aligned in %s at %s:%d", what, p, align,
              where(*w, *w->cur).c_str(), file, line);
    fatal("misaligned address: %s at %p is not %u-byte aligned at %s:%d", what, p, align, file, line);
}

void trap(const char* what, const char* file, int line) {
    Worker* w = tl_worker;
    if (w && w->cur) fatal("%s in %s at %s:%d", what, where(*w, *w->cur).c_str(), file, line);
    fatal("%s at %s:%d", what, file, line);
}

/* CUEMU_SCHEDULE=forward (default) | reverse | random[:SEED] */
void add_kernel_totals(const char* name, const Counters& c);

static void parse_schedule(Launch& L) {
    const char* s = getenv("CUEMU_SCHEDULE");
    if (!s || !*s || !strcmp(s, "forward")) return;
    if (!strcmp(s, "reverse")) {
        L.sched = S_REVERSE;
        return;
    }
    uint64_t seed = 1;
    if (!strncmp(s, "random", 6) && (s[6] == 0 || s[6] == ':')) {
        if (s[6] == ':') {
            char* end;
            seed = strtoull(s + 7, &end, 10);
            if (end == s + 7 || *end) fatal("CUEMU_SCHEDULE=%s: the seed must be a decimal number", s);
        }
    } else {
        fatal("CUEMU_SCHEDULE=%s: expected forward, reverse, random or random:SEED", s);
    }
    L.sched = S_RANDOM;
    /* a different shuffle for every launch of the program, the same for every run with this seed */
    L.seed = splitmix64(seed ^ splitmix64(g_launch_index.fetch_add(1, std::memory_order_relaxed)));
    if (L.nblocks > 1) {
        uint64_t r = L.seed;
        unsigned long long a;
        do a = 1 + next_random(r) % (L.nblocks - 1);
        while (std::gcd(a, L.nblocks) != 1);
        L.perm_a = a;
        L.perm_c = next_random(r) % L.nblocks;
    }
}

void launch_raw(const char* name, const void* fn, dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                void (*body)(void*), void* closure) {
    (void)stream; /* every stream is synchronous */
    unsigned long long nthreads = (unsigned long long)block.x * block.y * block.z;
    int smem_limit = kSmemDefault;
    {
        std::lock_guard<std::mutex> lk(g_attr_mutex);
        auto it = max_dyn_smem().find(fn);
        if (it != max_dyn_smem().end()) smem_limit = std::max(smem_limit, it->second);
    }
    bool bad = block.x == 0 || block.y == 0 || block.z == 0 || block.x > 1024 || block.y > 1024 || block.z > 64 ||
               nthreads > 1024 || grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.x > 2147483647u ||
               grid.y > 65535 || grid.z > 65535 || smem > (size_t)smem_limit;
    if (bad) {
        if (getenv("CUEMU_VERBOSE"))
            fprintf(stderr, "cuemu: launch of '%s' rejected: grid (%u,%u,%u) block (%u,%u,%u) smem %zu\n", name,
                    grid.x, grid.y, grid.z, block.x, block.y, block.z, smem);
        set_error(cudaErrorInvalidConfiguration);
        return;
    }
    Worker& me = this_worker();
    if (me.L) fatal("kernel '%s' launched from inside kernel '%s' (dynamic parallelism is not emulated)", name,
                    me.L->name);
    Launch L;
    L.name = name;
    L.grid = grid;
    L.block = block;
    L.smem = smem;
    L.body = body;
    L.closure = closure;
    L.nblocks = (unsigned long long)grid.x * grid.y * grid.z;
    L.nthreads = (unsigned)nthreads;
    long workers = std::max(1L, std::min(env_long("CUEMU_WORKERS", 1), 64L));
    if ((unsigned long long)workers > L.nblocks) workers = (long)L.nblocks;
    L.workers = (unsigned)workers;
    parse_schedule(L);
    L.poison = env_long("CUEMU_SMEM_POISON", 1) != 0;
    L.smem_vars = L.poison ? smem_vars_for(fn) : nullptr;
    for (auto& c : L.counts) c.store(0, std::memory_order_relaxed);
    if (workers <= 1)
        run_blocks(L, 0);
    else
        run_parallel(L, (unsigned)workers);
    char what[300];
    snprintf(what, sizeof what, "kernel '%s'", name);
    check_all_canaries(what);

    Counters c{};
    for (int i = 0; i < C_NUM; i++) c.v[i] = L.counts[i].load(std::memory_order_relaxed);
    c.v[C_LAUNCHES] = 1;
    {
        std::lock_guard<std::mutex> lk(g_count_mutex);
        g_last_counts = c;
        for (int i = 0; i < C_NUM; i++) g_total_counts.v[i] += c.v[i];
    }
    if (env_long("CUEMU_COUNTERS", 0)) {
        std::string line;
        char buf[96];
        for (int i = C_BLOCKS; i < C_NUM; i++) {
            if (!c.v[i]) continue;
            snprintf(buf, sizeof buf, " %s=%llu", counter_name(i), c.v[i]);
            line += buf;
        }
        fprintf(stderr, "cuemu: counters '%s' grid (%u,%u,%u) block (%u,%u,%u) smem %zu:%s\n", name, grid.x, grid.y,
                grid.z, block.x, block.y, block.z, smem, line.c_str());
        add_kernel_totals(name, c);
    }
}

/* CUEMU_COUNTERS=1: totals per kernel name, printed at exit in first-launch order */
std::mutex g_kernel_totals_mutex;
std::vector<std::pair<std::string, Counters>>* g_kernel_totals;
void print_kernel_totals() {
    std::lock_guard<std::mutex> lk(g_kernel_totals_mutex);
    if (!g_kernel_totals) return;
    for (const auto& kt : *g_kernel_totals) {
        std::string line;
        char buf[96];
        for (int i = C_LAUNCHES; i < C_NUM; i++) {
            if (!kt.second.v[i]) continue;
            snprintf(buf, sizeof buf, " %s=%llu", counter_name(i), kt.second.v[i]);
            line += buf;
        }
        fprintf(stderr, "cuemu: kernel totals '%s':%s\n", kt.first.c_str(), line.c_str());
    }
}
void add_kernel_totals(const char* name, const Counters& c) {
    std::lock_guard<std::mutex> lk(g_kernel_totals_mutex);
    if (!g_kernel_totals) {
        g_kernel_totals = new std::vector<std::pair<std::string, Counters>>();
        atexit(print_kernel_totals);
    }
    for (auto& kt : *g_kernel_totals)
        if (kt.first == name) {
            for (int i = 0; i < C_NUM; i++) kt.second.v[i] += c.v[i];
            return;
        }
    g_kernel_totals->emplace_back(name, c);
}

const char* counter_name(int c) {
    static const char* names[C_NUM] = {"launches",         "blocks",           "threads",  "barriers",
                                       "warp_collectives", "bytes_read",       "bytes_written", "mma",
                                       "flops",            "bank_conflicts",   "bank_conflicts_ld",
                                       "bank_conflicts_st"};
    return c >= 0 && c < C_NUM ? names[c] : "?";
}
Counters last_launch_counters() {
    std::lock_guard<std::mutex> lk(g_count_mutex);
    return g_last_counts;
}
Counters total_counters() {
    std::lock_guard<std::mutex> lk(g_count_mutex);
    return g_total_counts;
}
void reset_counters() {
    std::lock_guard<std::mutex> lk(g_count_mutex);
    g_total_counts = Counters{};
    g_last_counts = Counters{};
}

size_t memory_current() {
    std::lock_guard<std::mutex> lk(g_mem_mutex);
    return g_mem_current;
}
size_t memory_peak() {
    std::lock_guard<std::mutex> lk(g_mem_mutex);
    return g_mem_peak;
}
void memory_reset_peak() {
    std::lock_guard<std::mutex> lk(g_mem_mutex);
    g_mem_peak = g_mem_current;
    g_mem_peak_count = g_mem_count;
}

} /* namespace cuemu */

/* ====================================================================== glibc-declared intrinsics
 * <math.h> declares these __-prefixed names (extern "C") without exporting them from libm. */
extern "C" {
float __expf(float x) noexcept { return expf(x); }
float __exp10f(float x) noexcept { return exp10f(x); }
float __logf(float x) noexcept { return logf(x); }
float __log2f(float x) noexcept { return log2f(x); }
float __log10f(float x) noexcept { return log10f(x); }
float __powf(float x, float y) noexcept { return powf(x, y); }
float __sinf(float x) noexcept { return sinf(x); }
float __cosf(float x) noexcept { return cosf(x); }
float __tanf(float x) noexcept { return tanf(x); }
float __tanhf(float x) noexcept { return tanhf(x); }
void __sincosf(float x, float* s, float* c) noexcept { sincosf(x, s, c); }
}

/* ====================================================================== CUDA runtime API */
using cuemu::set_error;

struct CUstream_st {
    unsigned flags;
};
struct CUevent_st {
    unsigned flags;
    bool recorded;
    double ms;
};

static double now_ms() {
    using namespace std::chrono;
    return duration<double, std::milli>(steady_clock::now().time_since_epoch()).count();
}

extern "C" {

cudaError_t cudaGetLastError(void) {
    cudaError_t e = cuemu::tl_last_error;
    cuemu::tl_last_error = cudaSuccess;
    return e;
}
cudaError_t cudaPeekAtLastError(void) { return cuemu::tl_last_error; }

const char* cudaGetErrorName(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorInvalidMemcpyDirection: return "cudaErrorInvalidMemcpyDirection";
    case cudaErrorInvalidDevicePointer: return "cudaErrorInvalidDevicePointer";
    case cudaErrorNotSupported: return "cudaErrorNotSupported";
    case cudaErrorNotReady: return "cudaErrorNotReady";
    case cudaErrorInsufficientDriver: return "cudaErrorInsufficientDriver";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    default: return "cudaErrorUnknown";
    }
}
const char* cudaGetErrorString(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
    case cudaErrorInvalidDevicePointer: return "invalid device pointer";
    case cudaErrorNotSupported: return "operation not supported (by the qstar CPU emulator)";
    case cudaErrorNotReady: return "device not ready";
    case cudaErrorInsufficientDriver: return "CUDA driver version is insufficient for CUDA runtime version";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    default: return "unknown error";
    }
}

/* ---------------------------------------------------------------- device */
cudaError_t cudaGetDeviceCount(int* count) {
    if (!count) return set_error(cudaErrorInvalidValue);
    *count = 1;
    return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) { return device == 0 ? cudaSuccess : set_error(cudaErrorInvalidDevice); }
cudaError_t cudaGetDevice(int* device) {
    if (!device) return set_error(cudaErrorInvalidValue);
    *device = 0;
    return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize(void) { return cudaSuccess; }
cudaError_t cudaDeviceReset(void) { return cudaSuccess; }
cudaError_t cudaDeviceSetLimit(enum cudaLimit, size_t) { return cudaSuccess; }
cudaError_t cudaDeviceSetCacheConfig(enum cudaFuncCache) { return cudaSuccess; }
cudaError_t cudaDriverGetVersion(int* v) {
    if (!v) return set_error(cudaErrorInvalidValue);
    *v = CUDART_VERSION;
    return cudaSuccess;
}
cudaError_t cudaRuntimeGetVersion(int* v) {
    if (!v) return set_error(cudaErrorInvalidValue);
    *v = CUDART_VERSION;
    return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(struct cudaDeviceProp* p, int device) {
    if (!p) return set_error(cudaErrorInvalidValue);
    if (device != 0) return set_error(cudaErrorInvalidDevice);
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "qstar emulator");
    /* an H100-like sm_90 part, so that code sizing launches from the properties behaves as on one */
    p->totalGlobalMem = (size_t)80 << 30;
    p->sharedMemPerBlock = cuemu::kSmemDefault;
    p->sharedMemPerBlockOptin = cuemu::kSmemOptin;
    p->sharedMemPerMultiprocessor = 233472;
    p->reservedSharedMemPerBlock = 1024;
    p->regsPerBlock = 65536;
    p->regsPerMultiprocessor = 65536;
    p->warpSize = 32;
    p->memPitch = 2147483647;
    p->maxThreadsPerBlock = 1024;
    p->maxThreadsDim[0] = 1024;
    p->maxThreadsDim[1] = 1024;
    p->maxThreadsDim[2] = 64;
    p->maxGridSize[0] = 2147483647;
    p->maxGridSize[1] = 65535;
    p->maxGridSize[2] = 65535;
    p->totalConstMem = 65536;
    p->major = 9;
    p->minor = 0;
    p->textureAlignment = 512;
    p->multiProcessorCount = 132;
    p->maxThreadsPerMultiProcessor = 2048;
    p->maxBlocksPerMultiProcessor = 32;
    p->l2CacheSize = 50 * 1024 * 1024;
    p->memoryBusWidth = 5120;
    p->concurrentKernels = 1;
    p->asyncEngineCount = 2;
    p->unifiedAddressing = 1;
    p->canMapHostMemory = 1;
    p->managedMemory = 1;
    p->cooperativeLaunch = 1;
    p->streamPrioritiesSupported = 1;
    p->globalL1CacheSupported = 1;
    p->localL1CacheSupported = 1;
    p->memoryPoolsSupported = 1;
    return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int* value, enum cudaDeviceAttr attr, int device) {
    if (!value) return set_error(cudaErrorInvalidValue);
    if (device != 0) return set_error(cudaErrorInvalidDevice);
    cudaDeviceProp p;
    cudaGetDeviceProperties(&p, 0);
    switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock: *value = p.maxThreadsPerBlock; break;
    case cudaDevAttrMaxBlockDimX: *value = p.maxThreadsDim[0]; break;
    case cudaDevAttrMaxBlockDimY: *value = p.maxThreadsDim[1]; break;
    case cudaDevAttrMaxBlockDimZ: *value = p.maxThreadsDim[2]; break;
    case cudaDevAttrMaxGridDimX: *value = p.maxGridSize[0]; break;
    case cudaDevAttrMaxGridDimY: *value = p.maxGridSize[1]; break;
    case cudaDevAttrMaxGridDimZ: *value = p.maxGridSize[2]; break;
    case cudaDevAttrMaxSharedMemoryPerBlock: *value = (int)p.sharedMemPerBlock; break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = (int)p.sharedMemPerBlockOptin; break;
    case cudaDevAttrMaxSharedMemoryPerMultiprocessor: *value = (int)p.sharedMemPerMultiprocessor; break;
    case cudaDevAttrWarpSize: *value = 32; break;
    case cudaDevAttrMultiProcessorCount: *value = p.multiProcessorCount; break;
    case cudaDevAttrComputeCapabilityMajor: *value = p.major; break;
    case cudaDevAttrComputeCapabilityMinor: *value = p.minor; break;
    case cudaDevAttrMaxThreadsPerMultiProcessor: *value = p.maxThreadsPerMultiProcessor; break;
    case cudaDevAttrL2CacheSize: *value = p.l2CacheSize; break;
    case cudaDevAttrMaxRegistersPerBlock: *value = p.regsPerBlock; break;
    case cudaDevAttrTotalConstantMemory: *value = (int)p.totalConstMem; break;
    default: return set_error(cudaErrorInvalidValue);
    }
    return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t* free_b, size_t* total_b) {
    if (total_b) *total_b = (size_t)80 << 30;
    if (free_b) *free_b = (size_t)79 << 30;
    return cudaSuccess;
}

/* ---------------------------------------------------------------- functions */
cudaError_t cudaFuncSetAttribute(const void* func, enum cudaFuncAttribute attr, int value) {
    if (!func) return set_error(cudaErrorInvalidDeviceFunction);
    if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize) {
        if (value < 0 || value > cuemu::kSmemOptin) return set_error(cudaErrorInvalidValue);
        std::lock_guard<std::mutex> lk(cuemu::g_attr_mutex);
        cuemu::max_dyn_smem()[func] = value;
    }
    return cudaSuccess; /* carve-out and scheduling hints mean nothing here */
}
cudaError_t cudaFuncGetAttributes(struct cudaFuncAttributes* a, const void* func) {
    if (!a || !func) return set_error(cudaErrorInvalidValue);
    memset(a, 0, sizeof *a);
    a->maxThreadsPerBlock = 1024;
    a->numRegs = 32;
    a->ptxVersion = a->binaryVersion = 90;
    std::lock_guard<std::mutex> lk(cuemu::g_attr_mutex);
    auto it = cuemu::max_dyn_smem().find(func);
    a->maxDynamicSharedSizeBytes = it != cuemu::max_dyn_smem().end() ? it->second : cuemu::kSmemDefault;
    return cudaSuccess;
}
cudaError_t cudaFuncSetCacheConfig(const void*, enum cudaFuncCache) { return cudaSuccess; }
cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* numBlocks, const void*, int blockSize,
                                                          size_t smem) {
    if (!numBlocks || blockSize <= 0 || blockSize > 1024) return set_error(cudaErrorInvalidValue);
    int warps = (blockSize + 31) / 32;
    int n = std::min(32, 64 / warps);
    if (smem) n = std::min<int>(n, (int)(233472 / (smem + 1024)));
    *numBlocks = n;
    return cudaSuccess;
}
cudaError_t cudaLaunchKernel(const void*, dim3, dim3, void**, size_t, cudaStream_t) {
    /* parameter types are unknown here: launch through LAUNCH() (kernels/cuda/portable.h) instead */
    return set_error(cudaErrorNotSupported);
}

/* ---------------------------------------------------------------- memory */
cudaError_t cudaMalloc(void** ptr, size_t size) {
    if (!ptr) return set_error(cudaErrorInvalidValue);
    *ptr = nullptr;
    if (size == 0) return cudaSuccess;
    size_t span = (size + cuemu::kAlign - 1) / cuemu::kAlign * cuemu::kAlign + cuemu::kRedZone;
    char* base = (char*)aligned_alloc(cuemu::kAlign, cuemu::kRedZone + span);
    if (!base) return set_error(cudaErrorMemoryAllocation);
    char* p = base + cuemu::kRedZone;
#ifdef CUEMU_VALGRIND
    static const bool initcheck = RUNNING_ON_VALGRIND && cuemu::env_long("CUEMU_INITCHECK", 0) != 0;
#else
    constexpr bool initcheck = false;
#endif
    const bool fill = cuemu::env_long("CUEMU_MALLOC_FILL", 1) != 0;
    if (fill && !initcheck) memset(p, 0xFF, size);
#ifdef CUEMU_ASAN
    ASAN_POISON_MEMORY_REGION(base, cuemu::kRedZone);
    ASAN_POISON_MEMORY_REGION(p + size, span - size);
#else
    memset(base, cuemu::kCanary, cuemu::kRedZone);
    memset(p + size, cuemu::kCanary, span - size);
#endif
    std::lock_guard<std::mutex> lk(cuemu::g_mem_mutex);
    cuemu::allocs()[(uintptr_t)p] = cuemu::Alloc{size, span};
    cuemu::g_mem_current += size;
    cuemu::g_mem_count++;
    if (cuemu::g_mem_current > cuemu::g_mem_peak) {
        cuemu::g_mem_peak = cuemu::g_mem_current;
        cuemu::g_mem_peak_count = cuemu::g_mem_count;
    }
    static bool report_registered = false; /* under g_mem_mutex */
    if (!report_registered && cuemu::env_long("CUEMU_MEMREPORT", 0)) {
        report_registered = true;
        atexit(cuemu::memory_report_at_exit);
    }
    *ptr = p;
    return cudaSuccess;
}
cudaError_t cudaFree(void* ptr) {
    if (!ptr) return cudaSuccess;
    std::lock_guard<std::mutex> lk(cuemu::g_mem_mutex);
    auto it = cuemu::allocs().find((uintptr_t)ptr);
    if (it == cuemu::allocs().end()) return set_error(cudaErrorInvalidValue);
    long off = 0;
    int r = cuemu::check_canary(it->first, it->second, &off);
    if (r) cuemu::report_canary("a kernel or a copy", r, off, it->first, it->second, "; found at cudaFree");
    char* base = (char*)ptr - cuemu::kRedZone;
#ifdef CUEMU_ASAN
    ASAN_UNPOISON_MEMORY_REGION(base, cuemu::kRedZone + it->second.span);
#endif
    cuemu::g_mem_current -= it->second.size;
    cuemu::g_mem_count--;
    cuemu::allocs().erase(it);
    free(base);
    return cudaSuccess;
}
cudaError_t cudaMallocAsync(void** ptr, size_t size, cudaStream_t) { return cudaMalloc(ptr, size); }
cudaError_t cudaFreeAsync(void* ptr, cudaStream_t) { return cudaFree(ptr); }
cudaError_t cudaMallocManaged(void** ptr, size_t size, unsigned) { return cudaMalloc(ptr, size); }
cudaError_t cudaMallocHost(void** ptr, size_t size) {
    if (!ptr) return set_error(cudaErrorInvalidValue);
    *ptr = aligned_alloc(cuemu::kAlign, (std::max<size_t>(size, 1) + cuemu::kAlign - 1) / cuemu::kAlign * cuemu::kAlign);
    return *ptr ? cudaSuccess : set_error(cudaErrorMemoryAllocation);
}
cudaError_t cudaHostAlloc(void** ptr, size_t size, unsigned) { return cudaMallocHost(ptr, size); }
cudaError_t cudaFreeHost(void* ptr) {
    free(ptr);
    return cudaSuccess;
}
cudaError_t cudaHostRegister(void*, size_t, unsigned) { return cudaSuccess; }
cudaError_t cudaHostUnregister(void*) { return cudaSuccess; }

cudaError_t cudaMemcpy(void* dst, const void* src, size_t count, enum cudaMemcpyKind kind) {
    if ((int)kind < (int)cudaMemcpyHostToHost || (int)kind > (int)cudaMemcpyDefault)
        return set_error(cudaErrorInvalidMemcpyDirection);
    if (count == 0) return cudaSuccess;
    if (!dst || !src) return set_error(cudaErrorInvalidValue);
    memmove(dst, src, count);
    return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t count, enum cudaMemcpyKind kind, cudaStream_t) {
    return cudaMemcpy(dst, src, count, kind);
}
cudaError_t cudaMemcpy2D(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t height,
                         enum cudaMemcpyKind kind) {
    if (width > dpitch || width > spitch) return set_error(cudaErrorInvalidValue);
    for (size_t r = 0; r < height; r++) {
        cudaError_t e = cudaMemcpy((char*)dst + r * dpitch, (const char*)src + r * spitch, width, kind);
        if (e) return e;
    }
    return cudaSuccess;
}
cudaError_t cudaMemcpy2DAsync(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t height,
                              enum cudaMemcpyKind kind, cudaStream_t) {
    return cudaMemcpy2D(dst, dpitch, src, spitch, width, height, kind);
}
cudaError_t cudaMemset(void* dst, int value, size_t count) {
    if (count == 0) return cudaSuccess;
    if (!dst) return set_error(cudaErrorInvalidValue);
    memset(dst, value, count);
    return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* dst, int value, size_t count, cudaStream_t) { return cudaMemset(dst, value, count); }

cudaError_t cudaMemcpyToSymbol(const void* symbol, const void* src, size_t count, size_t offset,
                               enum cudaMemcpyKind kind) {
    if (!symbol) return set_error(cudaErrorInvalidSymbol);
    return cudaMemcpy((char*)symbol + offset, src, count, kind);
}
cudaError_t cudaMemcpyFromSymbol(void* dst, const void* symbol, size_t count, size_t offset,
                                 enum cudaMemcpyKind kind) {
    if (!symbol) return set_error(cudaErrorInvalidSymbol);
    return cudaMemcpy(dst, (const char*)symbol + offset, count, kind);
}
cudaError_t cudaMemcpyToSymbolAsync(const void* symbol, const void* src, size_t count, size_t offset,
                                    enum cudaMemcpyKind kind, cudaStream_t) {
    return cudaMemcpyToSymbol(symbol, src, count, offset, kind);
}
cudaError_t cudaMemcpyFromSymbolAsync(void* dst, const void* symbol, size_t count, size_t offset,
                                      enum cudaMemcpyKind kind, cudaStream_t) {
    return cudaMemcpyFromSymbol(dst, symbol, count, offset, kind);
}
cudaError_t cudaGetSymbolAddress(void** devPtr, const void* symbol) {
    if (!devPtr || !symbol) return set_error(cudaErrorInvalidSymbol);
    *devPtr = (void*)symbol;
    return cudaSuccess;
}

/* ---------------------------------------------------------------- streams and events
 * Everything already ran when a call returns, so synchronisation is a no-op and events only
 * record host time (ElapsedTime measures the emulator, not a GPU). */
cudaError_t cudaStreamCreate(cudaStream_t* s) {
    if (!s) return set_error(cudaErrorInvalidValue);
    *s = new CUstream_st{0};
    return cudaSuccess;
}
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned flags) {
    cudaError_t e = cudaStreamCreate(s);
    if (!e) (*s)->flags = flags;
    return e;
}
cudaError_t cudaStreamCreateWithPriority(cudaStream_t* s, unsigned flags, int) {
    return cudaStreamCreateWithFlags(s, flags);
}
cudaError_t cudaStreamDestroy(cudaStream_t s) {
    if (!s) return set_error(cudaErrorInvalidResourceHandle);
    if (s != cudaStreamLegacy && s != cudaStreamPerThread) delete s;
    return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaStreamQuery(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaStreamWaitEvent(cudaStream_t, cudaEvent_t, unsigned) { return cudaSuccess; }
cudaError_t cudaDeviceGetStreamPriorityRange(int* least, int* greatest) {
    if (least) *least = 0;
    if (greatest) *greatest = -5;
    return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t* e) {
    if (!e) return set_error(cudaErrorInvalidValue);
    *e = new CUevent_st{0, false, 0.0};
    return cudaSuccess;
}
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned flags) {
    cudaError_t r = cudaEventCreate(e);
    if (!r) (*e)->flags = flags;
    return r;
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
    if (!e) return set_error(cudaErrorInvalidResourceHandle);
    delete e;
    return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t) {
    if (!e) return set_error(cudaErrorInvalidResourceHandle);
    e->recorded = true;
    e->ms = now_ms();
    return cudaSuccess;
}
cudaError_t cudaEventRecordWithFlags(cudaEvent_t e, cudaStream_t s, unsigned) { return cudaEventRecord(e, s); }
cudaError_t cudaEventSynchronize(cudaEvent_t e) {
    return e ? cudaSuccess : set_error(cudaErrorInvalidResourceHandle);
}
cudaError_t cudaEventQuery(cudaEvent_t e) { return e ? cudaSuccess : set_error(cudaErrorInvalidResourceHandle); }
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
    if (!ms) return set_error(cudaErrorInvalidValue);
    if (!start || !end) return set_error(cudaErrorInvalidResourceHandle);
    if ((start->flags | end->flags) & cudaEventDisableTiming) return set_error(cudaErrorInvalidResourceHandle);
    if (!start->recorded || !end->recorded) return set_error(cudaErrorInvalidResourceHandle);
    *ms = (float)(end->ms - start->ms);
    return cudaSuccess;
}

} /* extern "C" */

/* ====================================================================== C entry points (cuemu.h) */
extern "C" {
static void copy_counters(const cuemu::Counters& c, unsigned long long* out, int n) {
    for (int i = 0; i < n && i < cuemu::C_NUM; i++) out[i] = c.v[i];
}
void cuemu_last_launch_counters(unsigned long long* out, int n) { copy_counters(cuemu::last_launch_counters(), out, n); }
void cuemu_total_counters(unsigned long long* out, int n) { copy_counters(cuemu::total_counters(), out, n); }
void cuemu_reset_counters(void) { cuemu::reset_counters(); }
const char* cuemu_counter_name(int c) { return cuemu::counter_name(c); }
size_t cuemu_memory_current(void) { return cuemu::memory_current(); }
size_t cuemu_memory_peak(void) { return cuemu::memory_peak(); }
void cuemu_memory_reset_peak(void) { cuemu::memory_reset_peak(); }
}
