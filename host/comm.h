/*
 * Communication between training processes: rank, world size and the collectives data-parallel
 * training needs, on backend memory. One interface, two implementations: MPI (the CPU backend, and
 * process bootstrap for every backend) and, in CUDA builds, NCCL. A process started without a
 * launcher is rank 0 of a world of 1 and every collective is a no-op.
 *
 * Collectives sum in a fixed order for a given world size, so runs are reproducible.
 */
#ifndef QSTAR_COMM_H
#define QSTAR_COMM_H

#include <stddef.h>

typedef struct {
    int rank, world;
    int launched;  // started by mpirun/srun (MPI initialized)
} Comm;

// Initializes MPI when the environment says a launcher started us (OMPI_COMM_WORLD_SIZE, PMI_SIZE,
// PMIX_RANK), else a world of one. A fatal() on any rank then aborts the whole job.
void comm_init(Comm* c, int* argc, char*** argv);
void comm_finalize(Comm* c);
void comm_barrier(const Comm* c);
// In place: x = Σ over ranks of x (n floats).
void comm_allreduce_sum(const Comm* c, float* x, size_t n);
double comm_allreduce_sum_scalar(const Comm* c, double v);
// Shards: rank r owns [offset(r), offset(r) + count(r)) of an n-element buffer (contiguous, as even
// as possible).
size_t comm_shard_offset(const Comm* c, size_t n, int rank);
size_t comm_shard_count(const Comm* c, size_t n, int rank);
// x (n floats, full on every rank): afterwards this rank's shard of x holds the sum over ranks.
void comm_reduce_scatter_sum(const Comm* c, float* x, size_t n);
// x (n floats): every rank's shard is gathered into every rank's full buffer.
void comm_allgather(const Comm* c, float* x, size_t n);
void comm_broadcast(const Comm* c, void* x, size_t bytes, int root);

#endif
