/*
 * The MPI implementation of comm/comm.h, and the dispatch to the NCCL one, which lives with the CUDA
 * backend (kernels/cuda/comm_nccl.cuh). Built without MPI headers (QSTAR_MPI undefined) it still
 * runs single-process, or multi-process through NCCL when started with QSTAR_RANK/QSTAR_WORLD_SIZE,
 * and refuses an MPI launch with a clear message instead of training N independent copies.
 *
 * The NCCL functions are weak references: bin/qstar (CPU backend only) links without them and says
 * so when asked for multi-rank GPU training; bin/qstar-cuda and bin/qstar-emu define them (the emu
 * backend over emu/nccl_emu.cpp).
 */
#include "comm/comm.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

#ifdef QSTAR_MPI
#include <mpi.h>

static void abort_job(void) { MPI_Abort(MPI_COMM_WORLD, 1); }

#define MPI_CHECK(call)                                                                        \
    do {                                                                                       \
        int rc_ = (call);                                                                      \
        if (rc_ != MPI_SUCCESS) fatal("MPI call failed at %s:%d: %s", __FILE__, __LINE__, #call); \
    } while (0)
#endif

// kernels/cuda/comm_nccl.cuh; NULL in builds without a GPU backend
int qstar_nccl_init(int rank, int world, const char* id_file) __attribute__((weak));
void qstar_nccl_finalize(void) __attribute__((weak));
// `type` is a CommType (0 fp32, 1 bf16)
void qstar_nccl_allreduce_sum(void* x, size_t n, int type) __attribute__((weak));
void qstar_nccl_allreduce_sum_async(void* x, size_t n, int type) __attribute__((weak));
void qstar_nccl_wait(void) __attribute__((weak));
void qstar_nccl_reduce_scatter_sum(void* x, size_t n, int type) __attribute__((weak));
void qstar_nccl_allgather(void* x, size_t n, int type) __attribute__((weak));
void qstar_nccl_broadcast(void* x, size_t bytes, int root) __attribute__((weak));
double qstar_nccl_allreduce_sum_scalar(double v) __attribute__((weak));
void qstar_nccl_barrier(void) __attribute__((weak));

size_t comm_type_bytes(CommType t) { return t == COMM_BF16 ? 2 : sizeof(float); }
const char* comm_type_name(CommType t) { return t == COMM_BF16 ? "bf16" : "fp32"; }

// The MPI path carries fp32 only: its buffers are the cpu backend's, which has no bf16.
static void need_fp32(CommType t, const char* what) {
    if (t != COMM_FP32)
        fatal("internal error: %s of %s elements over MPI (the cpu backend is fp32; bf16 collectives need NCCL)", what,
              comm_type_name(t));
}

static int launched_by_mpi(void) {
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE") || getenv("PMIX_RANK");
}

// QSTAR_WORLD_SIZE / QSTAR_RANK: a launch without MPI; the GPU backend's NCCL carries it
static void init_from_env(Comm* c) {
    const char* ws = getenv("QSTAR_WORLD_SIZE");
    if (!ws || !*ws) return;
    char* end;
    long world = strtol(ws, &end, 10), rank = -1;
    if (*end || world < 1) fatal("QSTAR_WORLD_SIZE=\"%s\": not a positive number of ranks", ws);
    const char* rs = getenv("QSTAR_RANK");
    if (rs && *rs) rank = strtol(rs, &end, 10);
    if (!rs || !*rs || *end || rank < 0 || rank >= world)
        fatal("QSTAR_WORLD_SIZE=%ld needs QSTAR_RANK in [0, %ld) (got %s)", world, world, rs ? rs : "nothing");
    c->world = (int)world;
    c->rank = (int)rank;
}

void comm_init(Comm* c, int* argc, char*** argv) {
    memset(c, 0, sizeof *c);
    c->world = 1;
    if (!launched_by_mpi()) {
        init_from_env(c);
        return;
    }
#ifdef QSTAR_MPI
    MPI_CHECK(MPI_Init(argc, argv));
    MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &c->rank));
    MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &c->world));
    c->launched = 1;
    fatal_set_hook(abort_job);  // one rank's error ends the job instead of leaving the others waiting
#else
    const char* size = getenv("OMPI_COMM_WORLD_SIZE") ? getenv("OMPI_COMM_WORLD_SIZE") : getenv("PMI_SIZE");
    if (size && atoi(size) > 1) fatal("this qstar was built without MPI; rebuild with mpicc available to run %s ranks", size);
#endif
}

void comm_use_device(Comm* c, const char* backend_name) {
    if (c->world == 1 || c->nccl) return;
    if (!strcmp(backend_name, "cpu")) {
        if (!c->launched)
            fatal("QSTAR_WORLD_SIZE=%d on --device cpu: the cpu backend's collectives run over MPI; start the ranks "
                  "with mpirun or srun instead",
                  c->world);
        return;
    }
    if (!qstar_nccl_init) fatal("multi-rank training on a GPU needs the CUDA build (NCCL)");
    qstar_nccl_init(c->rank, c->world, getenv("QSTAR_NCCL_ID_FILE"));
    c->nccl = 1;
}

const char* comm_transport(const Comm* c) {
    if (c->world == 1) return "none";
    return c->nccl ? "NCCL" : "MPI";
}

// A rank count from QSTAR_WORLD_SIZE has no MPI: before comm_use_device there is no transport at all.
static void need_transport(const Comm* c, const char* what) {
    if (!c->nccl && !c->launched) fatal("%s on %d ranks before comm_use_device chose NCCL", what, c->world);
}

void comm_finalize(Comm* c) {
    free(c->pending);
    c->pending = NULL;
    if (c->nccl) qstar_nccl_finalize();
    c->nccl = 0;
#ifdef QSTAR_MPI
    if (c->launched) MPI_Finalize();
#endif
    c->launched = 0;
}

// Host scalars and barriers stay on MPI when there is MPI (no device round trip); a launch without
// MPI sends them through NCCL.
void comm_barrier(const Comm* c) {
    if (c->world == 1) return;
    need_transport(c, "comm_barrier");
    if (!c->launched) {
        qstar_nccl_barrier();
        return;
    }
#ifdef QSTAR_MPI
    MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));
#endif
}

// MPI counts are ints: large buffers go in chunks.
#define CHUNK ((size_t)1 << 28)

void comm_allreduce_sum(const Comm* c, void* x, size_t n, CommType t) {
    if (c->world == 1) return;
    need_transport(c, "comm_allreduce_sum");
    if (c->nccl) {
        qstar_nccl_allreduce_sum(x, n, (int)t);
        return;
    }
    need_fp32(t, "comm_allreduce_sum");
#ifdef QSTAR_MPI
    for (size_t off = 0; off < n; off += CHUNK) {
        size_t k = n - off < CHUNK ? n - off : CHUNK;
        MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, (float*)x + off, (int)k, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD));
    }
#endif
}

void comm_allreduce_sum_async(Comm* c, void* x, size_t n, CommType t) {
    if (c->world == 1 || n == 0) return;
    need_transport(c, "comm_allreduce_sum_async");
    if (c->nccl) {
        qstar_nccl_allreduce_sum_async(x, n, (int)t);
        return;
    }
    need_fp32(t, "comm_allreduce_sum_async");
#ifdef QSTAR_MPI
    for (size_t off = 0; off < n; off += CHUNK) {
        size_t k = n - off < CHUNK ? n - off : CHUNK;
        if (c->n_pending == c->cap_pending) {
            c->cap_pending = c->cap_pending ? 2 * c->cap_pending : 64;
            MPI_Request* grown = xcalloc((size_t)c->cap_pending, sizeof(MPI_Request));
            if (c->pending) memcpy(grown, c->pending, sizeof(MPI_Request) * c->n_pending);
            free(c->pending);
            c->pending = grown;
        }
        MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, (float*)x + off, (int)k, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD,
                                 (MPI_Request*)c->pending + c->n_pending++));
    }
#endif
}

void comm_wait(Comm* c) {
    if (c->world == 1) return;
    if (c->nccl) {
        qstar_nccl_wait();
        return;
    }
#ifdef QSTAR_MPI
    if (c->n_pending) MPI_CHECK(MPI_Waitall(c->n_pending, (MPI_Request*)c->pending, MPI_STATUSES_IGNORE));
#endif
    c->n_pending = 0;
}

double comm_allreduce_sum_scalar(const Comm* c, double v) {
    if (c->world == 1) return v;
    need_transport(c, "comm_allreduce_sum_scalar");
    if (!c->launched) return qstar_nccl_allreduce_sum_scalar(v);
#ifdef QSTAR_MPI
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD));
#endif
    return v;
}

size_t comm_shard_count(const Comm* c, size_t n, int rank) { return shard_count(n, c->world, rank); }

size_t comm_shard_offset(const Comm* c, size_t n, int rank) { return shard_offset(n, c->world, rank); }

void comm_reduce_scatter_sum(const Comm* c, void* x, size_t n, CommType t) {
    if (c->world == 1) return;
    need_transport(c, "comm_reduce_scatter_sum");
    if (c->nccl) {
        qstar_nccl_reduce_scatter_sum(x, n, (int)t);
        return;
    }
    need_fp32(t, "comm_reduce_scatter_sum");
#ifdef QSTAR_MPI
    if (n > (size_t)INT32_MAX) fatal("reduce-scatter of %zu floats exceeds MPI's count limit", n);
    int* counts = xcalloc((size_t)c->world, sizeof(int));
    for (int r = 0; r < c->world; r++) counts[r] = (int)comm_shard_count(c, n, r);
    float* mine = xmalloc(sizeof(float) * (counts[c->rank] ? counts[c->rank] : 1));
    MPI_CHECK(MPI_Reduce_scatter(x, mine, counts, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD));
    memcpy((float*)x + comm_shard_offset(c, n, c->rank), mine, sizeof(float) * counts[c->rank]);
    free(mine);
    free(counts);
#endif
}

// With NCCL, x may also be host memory (cli/cmd_train.c gathers the checkpoint's moments and, under ZeRO-1 in
// bf16, master weights in host arrays):
// comm_nccl.cuh stages it through device memory.
void comm_allgather(const Comm* c, void* x, size_t n, CommType t) {
    if (c->world == 1) return;
    need_transport(c, "comm_allgather");
    if (c->nccl) {
        qstar_nccl_allgather(x, n, (int)t);
        return;
    }
    need_fp32(t, "comm_allgather");
#ifdef QSTAR_MPI
    if (n > (size_t)INT32_MAX) fatal("all-gather of %zu floats exceeds MPI's count limit", n);
    int* counts = xcalloc((size_t)c->world, sizeof(int));
    int* displs = xcalloc((size_t)c->world, sizeof(int));
    for (int r = 0; r < c->world; r++) {
        counts[r] = (int)comm_shard_count(c, n, r);
        displs[r] = (int)comm_shard_offset(c, n, r);
    }
    MPI_CHECK(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, x, counts, displs, MPI_FLOAT, MPI_COMM_WORLD));
    free(counts);
    free(displs);
#endif
}

void comm_broadcast(const Comm* c, void* x, size_t bytes, int root) {
    if (c->world == 1) return;
    need_transport(c, "comm_broadcast");
    if (c->nccl) {
        qstar_nccl_broadcast(x, bytes, root);
        return;
    }
#ifdef QSTAR_MPI
    for (size_t off = 0; off < bytes; off += CHUNK) {
        size_t k = bytes - off < CHUNK ? bytes - off : CHUNK;
        MPI_CHECK(MPI_Bcast((char*)x + off, (int)k, MPI_BYTE, root, MPI_COMM_WORLD));
    }
#endif
}
