/*
 * How a buffer of n elements is split over `world` ranks: contiguous shards, as even as possible, the
 * remainder going to the first ranks. One definition for every implementation that must agree on it:
 * the MPI collectives (comm/comm.c), the NCCL ones (kernels/cuda/comm_nccl.cuh) and ZeRO-1's optimizer
 * shards.
 */
#ifndef QSTAR_PARTITION_H
#define QSTAR_PARTITION_H

#include <stddef.h>

static inline size_t shard_count(size_t n, int world, int rank) {
    return n / (size_t)world + ((size_t)rank < n % (size_t)world ? 1 : 0);
}
static inline size_t shard_offset(size_t n, int world, int rank) {
    size_t extra = n % (size_t)world;
    return (size_t)rank * (n / (size_t)world) + ((size_t)rank < extra ? (size_t)rank : extra);
}

#endif
