/*
 * The MPI implementation of host/comm.h (the NCCL one lives with the CUDA backend). Built without
 * MPI headers (QSTAR_MPI undefined) it still runs single-process and refuses a multi-process launch
 * with a clear message instead of training N independent copies.
 */
#include "host/comm.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "host/util.h"

#ifdef QSTAR_MPI
#include <mpi.h>

static void abort_job(void) { MPI_Abort(MPI_COMM_WORLD, 1); }

#define MPI_CHECK(call)                                                                        \
    do {                                                                                       \
        int rc_ = (call);                                                                      \
        if (rc_ != MPI_SUCCESS) fatal("MPI call failed at %s:%d: %s", __FILE__, __LINE__, #call); \
    } while (0)
#endif

static int launched_by_mpi(void) {
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE") || getenv("PMIX_RANK");
}

void comm_init(Comm* c, int* argc, char*** argv) {
    memset(c, 0, sizeof *c);
    c->world = 1;
    if (!launched_by_mpi()) return;
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

void comm_finalize(Comm* c) {
#ifdef QSTAR_MPI
    if (c->launched) MPI_Finalize();
#endif
    c->launched = 0;
}

void comm_barrier(const Comm* c) {
#ifdef QSTAR_MPI
    if (c->world > 1) MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));
#endif
}

// MPI counts are ints: large buffers go in chunks.
#define CHUNK ((size_t)1 << 28)

void comm_allreduce_sum(const Comm* c, float* x, size_t n) {
#ifdef QSTAR_MPI
    if (c->world == 1) return;
    for (size_t off = 0; off < n; off += CHUNK) {
        size_t k = n - off < CHUNK ? n - off : CHUNK;
        MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, x + off, (int)k, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD));
    }
#endif
}

double comm_allreduce_sum_scalar(const Comm* c, double v) {
#ifdef QSTAR_MPI
    if (c->world > 1) MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD));
#endif
    return v;
}

size_t comm_shard_count(const Comm* c, size_t n, int rank) {
    size_t base = n / (size_t)c->world, extra = n % (size_t)c->world;
    return base + ((size_t)rank < extra ? 1 : 0);
}

size_t comm_shard_offset(const Comm* c, size_t n, int rank) {
    size_t base = n / (size_t)c->world, extra = n % (size_t)c->world;
    return (size_t)rank * base + ((size_t)rank < extra ? (size_t)rank : extra);
}

void comm_reduce_scatter_sum(const Comm* c, float* x, size_t n) {
#ifdef QSTAR_MPI
    if (c->world == 1) return;
    if (n > (size_t)INT32_MAX) fatal("reduce-scatter of %zu floats exceeds MPI's count limit", n);
    int* counts = xcalloc((size_t)c->world, sizeof(int));
    for (int r = 0; r < c->world; r++) counts[r] = (int)comm_shard_count(c, n, r);
    float* mine = xmalloc(sizeof(float) * (counts[c->rank] ? counts[c->rank] : 1));
    MPI_CHECK(MPI_Reduce_scatter(x, mine, counts, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD));
    memcpy(x + comm_shard_offset(c, n, c->rank), mine, sizeof(float) * counts[c->rank]);
    free(mine);
    free(counts);
#endif
}

void comm_allgather(const Comm* c, float* x, size_t n) {
#ifdef QSTAR_MPI
    if (c->world == 1) return;
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
#ifdef QSTAR_MPI
    if (c->world == 1) return;
    for (size_t off = 0; off < bytes; off += CHUNK) {
        size_t k = bytes - off < CHUNK ? bytes - off : CHUNK;
        MPI_CHECK(MPI_Bcast((char*)x + off, (int)k, MPI_BYTE, root, MPI_COMM_WORLD));
    }
#endif
}
