/*
 * Communication between training processes: rank, world size and the collectives data-parallel
 * training needs, on backend memory. One interface, two implementations: MPI (the CPU backend, and
 * process bootstrap for every backend) and, in CUDA builds, NCCL (kernels/cuda/comm_nccl.cuh),
 * chosen by comm_use_device once the backend is known. A process started without a launcher is
 * rank 0 of a world of 1 and every collective is a no-op.
 *
 * Two ways to start N ranks: an MPI launcher (mpirun, srun with PMI/PMIx), or, for launchers without
 * MPI (torchrun-style, srun when PMIx is broken), the environment QSTAR_RANK, QSTAR_WORLD_SIZE and
 * QSTAR_NCCL_ID_FILE (a path every rank sees, new for each launch: rank 0 leaves the NCCL id there);
 * that launch needs a GPU backend, and then every collective, host scalars and barriers included,
 * goes through NCCL.
 *
 * Collectives sum in a fixed order for a given world size (and, with NCCL, topology), so runs are
 * reproducible.
 *
 * Buffer collectives name their element type: fp32, or bf16 (a --precision bf16 run's gradients and
 * weight copy, reduced and gathered as NCCL's ncclBfloat16: each addition in fp32, rounded to nearest
 * even). bf16 goes through NCCL only: the MPI path serves the cpu backend, which is fp32, and a bf16
 * request there is an internal error.
 */
#ifndef QSTAR_COMM_H
#define QSTAR_COMM_H

#include <stddef.h>

#include "common/partition.h"

typedef enum { COMM_FP32 = 0, COMM_BF16 = 1 } CommType;  // the values are comm_nccl.cuh's `type` too
size_t comm_type_bytes(CommType t);                       // 4 or 2
const char* comm_type_name(CommType t);                   // "fp32" or "bf16"

typedef struct {
    int rank, world;
    int launched;  // started by mpirun/srun (MPI initialized)
    int nccl;      // the buffer collectives go through NCCL (comm_use_device on a GPU backend)
    void* pending; // MPI requests of comm_allreduce_sum_async not yet waited for
    int n_pending, cap_pending;
} Comm;

// Initializes MPI when the environment says a launcher started us (OMPI_COMM_WORLD_SIZE, PMI_SIZE,
// PMIX_RANK; a fatal() on any rank then aborts the whole job), else reads QSTAR_RANK and
// QSTAR_WORLD_SIZE, else a world of one.
void comm_init(Comm* c, int* argc, char*** argv);
// Call once the backend is chosen, before any collective: with more than one rank on a backend other
// than "cpu" the buffer collectives take device memory and go through NCCL (fatal in a build
// without it); the cpu backend stays on MPI (fatal for a QSTAR_WORLD_SIZE launch, which has no MPI).
void comm_use_device(Comm* c, const char* backend_name);
// "NCCL", "MPI" or "none" (a world of one): for the log.
const char* comm_transport(const Comm* c);
void comm_finalize(Comm* c);
void comm_barrier(const Comm* c);
// In place: x = Σ over ranks of x (n elements of type t).
void comm_allreduce_sum(const Comm* c, void* x, size_t n, CommType t);
// Starts x = Σ over ranks of x without waiting (MPI_Iallreduce; NCCL on its own stream after the
// work queued so far), so a layer's gradients travel while the next layer's backward runs.
// comm_wait completes every reduction started since the last wait. Same sums as comm_allreduce_sum.
void comm_allreduce_sum_async(Comm* c, void* x, size_t n, CommType t);
void comm_wait(Comm* c);
// A host scalar (MPI under an MPI launcher, else NCCL).
double comm_allreduce_sum_scalar(const Comm* c, double v);
// Shards: rank r owns [offset(r), offset(r) + count(r)) of an n-element buffer (contiguous, as even
// as possible).
size_t comm_shard_offset(const Comm* c, size_t n, int rank);
size_t comm_shard_count(const Comm* c, size_t n, int rank);
// x (n elements, full on every rank): afterwards this rank's shard of x holds the sum over ranks.
void comm_reduce_scatter_sum(const Comm* c, void* x, size_t n, CommType t);
// x (n elements): every rank's shard is gathered into every rank's full buffer.
void comm_allgather(const Comm* c, void* x, size_t n, CommType t);
void comm_broadcast(const Comm* c, void* x, size_t bytes, int root);

#endif
