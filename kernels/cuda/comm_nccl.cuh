/*
 * The NCCL implementation of comm/comm.h's collectives, for buffers in backend memory (device
 * memory; host memory is accepted too and goes through a bounded device staging buffer). comm/comm.c
 * reaches these functions through weak symbols, so the CPU-only build links without them. Compiled
 * by nvcc against libnccl for bin/qstar-cuda, and by g++ against the emulator's NCCL shim
 * (emu/nccl_emu.cpp) for the `emu` backend, so the same code runs in the multi-rank tests.
 *
 * Bootstrap (qstar_nccl_init): one communicator per process, one GPU per rank. The device is the
 * local rank (OMPI_COMM_WORLD_LOCAL_RANK, SLURM_LOCALID or LOCAL_RANK; rank % device count when no
 * launcher says). Rank 0 makes the unique id; under MPI it reaches the others by MPI_Bcast, without
 * MPI (QSTAR_RANK / QSTAR_WORLD_SIZE launches) through the shared file QSTAR_NCCL_ID_FILE, which
 * rank 0 writes atomically (temporary file + rename, so a reader never sees half an id) and removes
 * once every rank has joined; the others poll for it for QSTAR_NCCL_ID_TIMEOUT_S seconds (default
 * 300) and then stop with a message naming the file. The file's path must be new for each launch
 * (e.g. contain the job id): a stale file from a killed run would point at a dead rank 0.
 *
 * Shards: common/partition.h's layout, an even split with the remainder going to the first ranks. NCCL's
 * ReduceScatter and AllGather need equal shards, so when world divides n they are used in place (one
 * collective, NCCL's best path), and otherwise each shard is an ncclReduce / ncclBroadcast rooted at
 * its owner, grouped (ncclGroupStart/End) so NCCL runs them as one launch. The alternative, padding
 * to ceil(n/world)*world, needs a temporary copy of the whole gradient (n floats more device memory,
 * as much as the gradients themselves) plus two extra copies per step; per-shard rooted collectives
 * need no memory and move the same bytes per rank ((world-1)/world of the buffer).
 *
 * Element types: fp32, or bf16 (ncclBfloat16) for a --precision bf16 run's gradients and weight copy:
 * half the bytes on the wire; NCCL adds bf16 in fp32 and rounds each partial sum to nearest even.
 *
 * Determinism: for a fixed world size, topology and NCCL version, NCCL picks the same algorithm and
 * channels for the same call and sums in the same order, so runs repeat bit for bit. Different world
 * sizes, machines or NCCL_ALGO/NCCL_PROTO settings change the order (and the last bits); the
 * all-reduce and the reduce-scatter paths may also round differently from each other.
 */
#pragma once

#ifdef QSTAR_NCCL
#include <nccl.h>

#include "common/partition.h"
#ifdef QSTAR_MPI
#define OMPI_SKIP_MPICXX 1  // the C API is all we use; OpenMPI's C++ bindings do not build with -Werror
#include <mpi.h>
#endif
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static ncclComm_t nccl_comm = nullptr;
static int nccl_rank = 0, nccl_world = 1;
static double* nccl_scalar = nullptr;  // device scratch for scalar all-reduces and barriers
static char* nccl_stage = nullptr;     // device staging buffer for host-memory arguments
static size_t nccl_stage_bytes = 0;

static inline void nccl_check_(ncclResult_t r, const char* what, const char* file, int line) {
    if (r == ncclSuccess) return;
    const char* detail = nccl_comm ? ncclGetLastError(nccl_comm) : ncclGetLastError(nullptr);
    fatal("NCCL error %s at %s:%d: %s%s%s", ncclGetErrorString(r), file, line, what, detail && *detail ? ": " : "",
          detail ? detail : "");
}
#define ncclCheck(call) nccl_check_((call), #call, __FILE__, __LINE__)

// the shard layout of common/partition.h, which comm/comm.c uses too
static inline size_t nccl_shard_count(size_t n, int r) { return shard_count(n, nccl_world, r); }
static inline size_t nccl_shard_offset(size_t n, int r) { return shard_offset(n, nccl_world, r); }

static int nccl_local_rank(void) {
    const char* vars[] = {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "LOCAL_RANK"};
    for (const char* v : vars)
        if (getenv(v) && *getenv(v)) return atoi(getenv(v));
    return -1;
}

static double nccl_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

// The id file: a magic line, the world size (a file from a launch of another size is refused) and
// the id's bytes.
static const char nccl_id_magic[16] = "qstar-nccl-id1\n";
struct NcclIdFile {
    char magic[16];
    int32_t world;
    ncclUniqueId id;
};

static void nccl_write_id_file(const char* path, const ncclUniqueId* id) {
    NcclIdFile f;
    memset(&f, 0, sizeof f);
    memcpy(f.magic, nccl_id_magic, sizeof f.magic);
    f.world = nccl_world;
    f.id = *id;
    char* tmp = xsprintf("%s.tmp.%d", path, (int)getpid());
    FILE* fp = fopen(tmp, "wb");
    if (!fp) fatal("QSTAR_NCCL_ID_FILE: cannot create %s: %s", tmp, strerror(errno));
    if (fwrite(&f, sizeof f, 1, fp) != 1 || fflush(fp) || fsync(fileno(fp)) || fclose(fp))
        fatal("QSTAR_NCCL_ID_FILE: cannot write %s: %s", tmp, strerror(errno));
    if (rename(tmp, path)) fatal("QSTAR_NCCL_ID_FILE: cannot rename %s to %s: %s", tmp, path, strerror(errno));
    free(tmp);
}

static void nccl_read_id_file(const char* path, ncclUniqueId* id) {
    const char* t = getenv("QSTAR_NCCL_ID_TIMEOUT_S");
    const double timeout = t && atof(t) > 0 ? atof(t) : 300.0, deadline = nccl_now() + timeout;
    for (;;) {
        FILE* fp = fopen(path, "rb");
        if (fp) {
            NcclIdFile f;
            size_t got = fread(&f, 1, sizeof f, fp);
            fclose(fp);
            if (got != sizeof f || memcmp(f.magic, nccl_id_magic, sizeof f.magic))
                fatal("QSTAR_NCCL_ID_FILE %s: not an id file written by qstar's rank 0", path);
            if (f.world != nccl_world)
                fatal("QSTAR_NCCL_ID_FILE %s: written by a rank 0 of %d ranks, but QSTAR_WORLD_SIZE is %d (a stale "
                      "file from another launch? use a new path per launch)",
                      path, f.world, nccl_world);
            *id = f.id;
            return;
        }
        if (nccl_now() > deadline)
            fatal("rank %d: rank 0 did not write the NCCL id file %s within %.0f s (is rank 0 running, and does "
                  "QSTAR_NCCL_ID_FILE name the same path on a filesystem every rank sees? QSTAR_NCCL_ID_TIMEOUT_S "
                  "sets the wait)",
                  nccl_rank, path, timeout);
        usleep(50000);
    }
}

extern "C" int qstar_nccl_init(int rank, int world, const char* id_file) {
    nccl_rank = rank;
    nccl_world = world;
    // a machine without a GPU stops here, before any rank waits for another
    int count = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess || count == 0)
        fatal("no CUDA device (%s)", err != cudaSuccess ? cudaGetErrorString(err) : "none found");
    const int local = nccl_local_rank();
    int device = (local >= 0 ? local : rank) % count;
#ifndef CUEMU  // the emulator's one device is shared by all its processes
    if (local >= count)
        fatal("local rank %d but this node has %d CUDA devices: start one rank per GPU", local, count);
#endif
    cudaCheck(cudaSetDevice(device));

    int mpi = 0;
#ifdef QSTAR_MPI
    MPI_Initialized(&mpi);
#endif
    if (!mpi && !id_file)
        fatal("%d ranks without MPI need QSTAR_NCCL_ID_FILE: a path on a filesystem every rank sees, new for each "
              "launch, where rank 0 leaves the NCCL id for the others",
              world);
    ncclUniqueId id;
    memset(&id, 0, sizeof id);
    if (rank == 0) ncclCheck(ncclGetUniqueId(&id));
#ifdef QSTAR_MPI
    if (mpi) {
        if (MPI_Bcast(&id, (int)sizeof id, MPI_BYTE, 0, MPI_COMM_WORLD) != MPI_SUCCESS)
            fatal("MPI_Bcast of the NCCL id failed");
    }
#endif
    if (!mpi) {
        if (rank == 0) nccl_write_id_file(id_file, &id);
        else nccl_read_id_file(id_file, &id);
    }
    ncclCheck(ncclCommInitRank(&nccl_comm, world, id, rank));
    // every rank has read the id (ncclCommInitRank returns once all have joined): no later launch can
    // pick up this one
    if (!mpi && rank == 0) unlink(id_file);
    cudaCheck(cudaMalloc((void**)&nccl_scalar, sizeof(double)));
    return 0;
}

extern "C" void qstar_nccl_finalize(void) {
    if (!nccl_comm) return;
    cudaCheck(cudaStreamSynchronize(qstar_stream));
    ncclCheck(ncclCommDestroy(nccl_comm));
    nccl_comm = nullptr;
    cudaCheck(cudaFree(nccl_scalar));
    nccl_scalar = nullptr;
    if (nccl_stage) cudaCheck(cudaFree(nccl_stage));
    nccl_stage = nullptr;
    nccl_stage_bytes = 0;
}

// NCCL reads and writes device memory only. cli/cmd_train.c gathers the checkpoint's AdamW moments in host
// arrays; those go through the staging buffer.
static bool nccl_on_device(const void* p) {
#ifdef CUEMU
    // device memory is host memory here; QSTAR_NCCL_EMU_HOST_BUFFERS=1 takes the staging path for
    // every buffer, so that the tests cover it
    (void)p;
    return !getenv("QSTAR_NCCL_EMU_HOST_BUFFERS");
#else
    cudaPointerAttributes a;
    if (cudaPointerGetAttributes(&a, p) != cudaSuccess) {
        (void)cudaGetLastError();  // an unknown host pointer: clear the sticky error
        return false;
    }
    return a.type == cudaMemoryTypeDevice || a.type == cudaMemoryTypeManaged;
#endif
}

// The staging buffer's size: QSTAR_NCCL_STAGE_BYTES (default 64 MiB), whole floats.
static size_t nccl_stage_size(void) {
    if (!nccl_stage) {
        const char* s = getenv("QSTAR_NCCL_STAGE_BYTES");
        size_t b = s && atoll(s) > 0 ? (size_t)atoll(s) : ((size_t)64 << 20);
        nccl_stage_bytes = b < sizeof(double) ? sizeof(double) : b / sizeof(double) * sizeof(double);
        cudaCheck(cudaMalloc((void**)&nccl_stage, nccl_stage_bytes));
    }
    return nccl_stage_bytes;
}
static void nccl_stage_in(const void* host, size_t bytes) {
    cudaCheck(cudaMemcpyAsync(nccl_stage, host, bytes, cudaMemcpyHostToDevice, qstar_stream));
}
static void nccl_stage_out(void* host, size_t bytes) {
    cudaCheck(cudaMemcpyAsync(host, nccl_stage, bytes, cudaMemcpyDeviceToHost, qstar_stream));
    cudaCheck(cudaStreamSynchronize(qstar_stream));
}

// NCCL aggregates a group into one launch; very large worlds go in groups of this many operations.
#define NCCL_GROUP_MAX 128

// The element types of comm/comm.h's CommType: 0 fp32, 1 bf16 (a --precision bf16 run's gradients and
// weight copy). NCCL reduces bf16 with fp32 arithmetic, each partial sum rounded to nearest even.
static ncclDataType_t nccl_type(int type) {
    if (type != 0 && type != 1) fatal("internal error: comm type %d is neither fp32 (0) nor bf16 (1)", type);
    return type ? ncclBfloat16 : ncclFloat;
}
static size_t nccl_type_bytes(int type) { return type ? 2 : sizeof(float); }
// element i of a buffer of `type`
static inline char* nccl_at(void* x, size_t i, int type) { return (char*)x + i * nccl_type_bytes(type); }

extern "C" void qstar_nccl_allreduce_sum(void* x, size_t n, int type) {
    if (!n) return;
    const ncclDataType_t t = nccl_type(type);
    const size_t es = nccl_type_bytes(type);
    if (nccl_on_device(x)) {
        ncclCheck(ncclAllReduce(x, x, n, t, ncclSum, nccl_comm, qstar_stream));
        return;
    }
    const size_t chunk = nccl_stage_size() / es;
    for (size_t off = 0; off < n; off += chunk) {
        size_t k = n - off < chunk ? n - off : chunk;
        nccl_stage_in(nccl_at(x, off, type), k * es);
        ncclCheck(ncclAllReduce(nccl_stage, nccl_stage, k, t, ncclSum, nccl_comm, qstar_stream));
        nccl_stage_out(nccl_at(x, off, type), k * es);
    }
}

// The overlapped path: reductions on a stream of their own, ordered after the compute queued so far
// (an event), so the next layer's backward runs while they travel; qstar_nccl_wait orders the
// compute stream after them. Device buffers only (gradients).
static cudaStream_t nccl_stream;

extern "C" void qstar_nccl_allreduce_sum_async(void* x, size_t n, int type) {
    if (!n) return;
    if (!nccl_on_device(x)) {  // host memory cannot overlap: take the synchronous staged path
        qstar_nccl_allreduce_sum(x, n, type);
        return;
    }
    const ncclDataType_t t = nccl_type(type);
    if (!nccl_stream) cudaCheck(cudaStreamCreateWithFlags(&nccl_stream, cudaStreamNonBlocking));
    cudaEvent_t ready;
    cudaCheck(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming));
    cudaCheck(cudaEventRecord(ready, qstar_stream));
    cudaCheck(cudaStreamWaitEvent(nccl_stream, ready, 0));
    cudaCheck(cudaEventDestroy(ready));
    ncclCheck(ncclAllReduce(x, x, n, t, ncclSum, nccl_comm, nccl_stream));
}

extern "C" void qstar_nccl_wait(void) {
    if (!nccl_stream) return;
    cudaEvent_t done;
    cudaCheck(cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
    cudaCheck(cudaEventRecord(done, nccl_stream));
    cudaCheck(cudaStreamWaitEvent(qstar_stream, done, 0));
    cudaCheck(cudaEventDestroy(done));
}

extern "C" void qstar_nccl_reduce_scatter_sum(void* x, size_t n, int type) {
    if (!n) return;
    const ncclDataType_t t = nccl_type(type);
    const size_t es = nccl_type_bytes(type);
    if (nccl_on_device(x)) {
        if (n % (size_t)nccl_world == 0) {
            // equal shards: comm/comm.c's layout is NCCL's; in place (recvbuff = sendbuff + rank·count)
            const size_t c = n / (size_t)nccl_world;
            ncclCheck(ncclReduceScatter(x, nccl_at(x, (size_t)nccl_rank * c, type), c, t, ncclSum, nccl_comm,
                                        qstar_stream));
            return;
        }
        for (int r0 = 0; r0 < nccl_world; r0 += NCCL_GROUP_MAX) {
            ncclCheck(ncclGroupStart());
            for (int r = r0; r < nccl_world && r < r0 + NCCL_GROUP_MAX; r++) {
                char* s = nccl_at(x, nccl_shard_offset(n, r), type);
                size_t c = nccl_shard_count(n, r);
                if (c) ncclCheck(ncclReduce(s, s, c, t, ncclSum, r, nccl_comm, qstar_stream));
            }
            ncclCheck(ncclGroupEnd());
        }
        return;
    }
    const size_t chunk = nccl_stage_size() / es;
    for (int r = 0; r < nccl_world; r++) {
        const size_t o = nccl_shard_offset(n, r), c = nccl_shard_count(n, r);
        for (size_t off = 0; off < c; off += chunk) {
            size_t k = c - off < chunk ? c - off : chunk;
            nccl_stage_in(nccl_at(x, o + off, type), k * es);
            ncclCheck(ncclReduce(nccl_stage, nccl_stage, k, t, ncclSum, r, nccl_comm, qstar_stream));
            // the next chunk's upload waits for this reduce: same stream
            if (r == nccl_rank) nccl_stage_out(nccl_at(x, o + off, type), k * es);
        }
    }
}

extern "C" void qstar_nccl_allgather(void* x, size_t n, int type) {
    if (!n) return;
    const ncclDataType_t t = nccl_type(type);
    const size_t es = nccl_type_bytes(type);
    if (nccl_on_device(x)) {
        if (n % (size_t)nccl_world == 0) {
            const size_t c = n / (size_t)nccl_world;  // in place: sendbuff = recvbuff + rank·count
            ncclCheck(ncclAllGather(nccl_at(x, (size_t)nccl_rank * c, type), x, c, t, nccl_comm, qstar_stream));
            return;
        }
        for (int r0 = 0; r0 < nccl_world; r0 += NCCL_GROUP_MAX) {
            ncclCheck(ncclGroupStart());
            for (int r = r0; r < nccl_world && r < r0 + NCCL_GROUP_MAX; r++) {
                char* s = nccl_at(x, nccl_shard_offset(n, r), type);
                size_t c = nccl_shard_count(n, r);
                if (c) ncclCheck(ncclBroadcast(s, s, c, t, r, nccl_comm, qstar_stream));
            }
            ncclCheck(ncclGroupEnd());
        }
        return;
    }
    const size_t chunk = nccl_stage_size() / es;
    for (int r = 0; r < nccl_world; r++) {
        const size_t o = nccl_shard_offset(n, r), c = nccl_shard_count(n, r);
        for (size_t off = 0; off < c; off += chunk) {
            size_t k = c - off < chunk ? c - off : chunk;
            if (r == nccl_rank) nccl_stage_in(nccl_at(x, o + off, type), k * es);
            ncclCheck(ncclBroadcast(nccl_stage, nccl_stage, k, t, r, nccl_comm, qstar_stream));
            nccl_stage_out(nccl_at(x, o + off, type), k * es);
        }
    }
}

extern "C" void qstar_nccl_broadcast(void* x, size_t bytes, int root) {
    if (!bytes) return;
    if (nccl_on_device(x)) {
        ncclCheck(ncclBroadcast(x, x, bytes, ncclUint8, root, nccl_comm, qstar_stream));
        return;
    }
    const size_t chunk = nccl_stage_size();
    for (size_t off = 0; off < bytes; off += chunk) {
        size_t k = bytes - off < chunk ? bytes - off : chunk;
        if (nccl_rank == root) nccl_stage_in((char*)x + off, k);
        ncclCheck(ncclBroadcast(nccl_stage, nccl_stage, k, ncclUint8, root, nccl_comm, qstar_stream));
        nccl_stage_out((char*)x + off, k);
    }
}

// For launches without MPI, host scalars and barriers go through NCCL too: a one-element all-reduce
// in device memory, waited for.
extern "C" double qstar_nccl_allreduce_sum_scalar(double v) {
    cudaCheck(cudaMemcpyAsync(nccl_scalar, &v, sizeof v, cudaMemcpyHostToDevice, qstar_stream));
    ncclCheck(ncclAllReduce(nccl_scalar, nccl_scalar, 1, ncclDouble, ncclSum, nccl_comm, qstar_stream));
    cudaCheck(cudaMemcpyAsync(&v, nccl_scalar, sizeof v, cudaMemcpyDeviceToHost, qstar_stream));
    cudaCheck(cudaStreamSynchronize(qstar_stream));
    return v;
}

extern "C" void qstar_nccl_barrier(void) { (void)qstar_nccl_allreduce_sum_scalar(0.0); }

#endif  // QSTAR_NCCL
