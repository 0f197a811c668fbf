/*
 * nccl_emu.cpp — the NCCL entry points qstar uses, for the CPU emulator build (the `emu` backend and
 * bin/qstar-emu), the way cublas_emu.cpp stands in for cuBLAS: the real <nccl.h> supplies the types
 * and exact signatures, the real libnccl is never linked. Device memory is host memory in the
 * emulator, so the collectives move plain host buffers between processes.
 *
 * Transport: TCP sockets on the loopback interface, a star around rank 0, not MPI. The processes of
 * one job may have been started without mpirun (the QSTAR_RANK / QSTAR_WORLD_SIZE launch), and
 * MPI singletons cannot reach each other; sockets serve both launches with one code path, and they
 * mirror real NCCL, whose unique id is the address of a bootstrap socket in the process that made
 * it. The id holds a magic, the listening port and a random nonce, so a stale or foreign id is
 * refused at ncclCommInitRank instead of joining the wrong job. ncclGetUniqueId must be called in
 * the process that becomes rank 0 (its listening socket lives there), which is how qstar uses it.
 *
 * Every collective runs when it is called (the emulator's CUDA calls are synchronous too; the stream
 * is ignored): each rank sends rank 0 a header and its input, rank 0 checks that all ranks called the
 * same collective with the same count, type, operator and root (real NCCL would hang or corrupt
 * memory; here it is an ncclInvalidUsage with the reason on stderr and from ncclGetLastError),
 * reduces in rank order ((x0 + x1) + x2) + ... (deterministic), and sends every rank its output.
 * Half types (ncclBfloat16, ncclFloat16) are added as NCCL adds them: each addition in fp32, its result
 * rounded to the element type to nearest even (__float2bfloat16's cvt.rn), one rounding per hop as a
 * ring passes partial sums on in the element type; with 2 ranks that is the exact sum rounded once. Inputs are read completely before outputs are written, so in-place calls are
 * right. ncclGroupStart/End only count their nesting: operations inside a group run at once, in
 * call order, which is the same order on every rank.
 *
 * QSTAR_NCCL_EMU_LOG=1: each rank prints, when its communicator is destroyed, one line per (collective,
 * type) it ran: calls and elements (tests check with it which type a buffer travelled in).
 *
 * A rank that exits closes its sockets: the others get an ncclRemoteError instead of waiting
 * forever. Connecting waits QSTAR_NCCL_EMU_TIMEOUT_S seconds (default 60) for the other ranks.
 */
#include "cuemu.h"

#if __has_include(<nccl.h>)
#include <nccl.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

struct ncclComm {
    int rank, nranks;
    std::vector<int> fd;  // rank 0: fd[r] is the socket to rank r (fd[0] unused); others: fd[0] to rank 0
    uint64_t seq;         // collectives so far: a mismatch names the first diverging call
    char error[512];
    uint64_t calls[6][ncclNumTypes], elements[6][ncclNumTypes];  // by kind and type (QSTAR_NCCL_EMU_LOG)
};

namespace {

const char kMagic[16] = "qstar-nccl-emu1";

struct IdLayout {  // inside ncclUniqueId::internal (128 bytes)
    char magic[16];
    uint16_t port;
    uint64_t nonce;
};
static_assert(sizeof(IdLayout) <= NCCL_UNIQUE_ID_BYTES, "id layout");

// the listening socket of the id this process made (rank 0), until ncclCommInitRank takes it
int g_listen_fd = -1;
uint64_t g_listen_nonce = 0;
thread_local int g_group_depth = 0;
char g_last_error[512];

ncclResult_t fail(ncclComm* comm, ncclResult_t r, const char* fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "nccl_emu (rank %d): %s\n", comm ? comm->rank : -1, msg);
    snprintf(comm ? comm->error : g_last_error, sizeof g_last_error, "%s", msg);
    return r;
}

double now_s() {
    timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

double timeout_s() {
    const char* s = getenv("QSTAR_NCCL_EMU_TIMEOUT_S");
    return s && atof(s) > 0 ? atof(s) : 60.0;
}

// whole-buffer send/recv; false with errno (0 for a closed connection)
bool send_all(int fd, const void* p, size_t n) {
    const char* c = static_cast<const char*>(p);
    while (n) {
        ssize_t k = send(fd, c, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return false;
        c += k;
        n -= (size_t)k;
    }
    return true;
}
bool recv_all(int fd, void* p, size_t n) {
    char* c = static_cast<char*>(p);
    while (n) {
        ssize_t k = recv(fd, c, n, 0);
        if (k < 0 && errno == EINTR) continue;
        if (k == 0) errno = 0;
        if (k <= 0) return false;
        c += k;
        n -= (size_t)k;
    }
    return true;
}

void tune(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

struct Hello {
    char magic[16];
    uint64_t nonce;
    int32_t rank, nranks;
};

size_t type_size(ncclDataType_t t) {
    switch (t) {
    case ncclInt8: case ncclUint8: case ncclFloat8e4m3: case ncclFloat8e5m2: return 1;
    case ncclFloat16: case ncclBfloat16: return 2;
    case ncclInt32: case ncclUint32: case ncclFloat32: return 4;
    case ncclInt64: case ncclUint64: case ncclFloat64: return 8;
    default: return 0;
    }
}

template <class T>
T combine(T a, T b, ncclRedOp_t op) {
    switch (op) {
    case ncclProd: return a * b;
    case ncclMax: return a > b ? a : b;
    case ncclMin: return a < b ? a : b;
    default: return a + b;  // ncclSum, ncclAvg (divided afterwards)
    }
}

template <class T>
void reduce_typed(T* acc, const T* x, size_t n, ncclRedOp_t op) {
    for (size_t i = 0; i < n; i++) acc[i] = combine(acc[i], x[i], op);
}
template <class T>
void avg_typed(T* acc, size_t n, int nranks) {
    for (size_t i = 0; i < n; i++) acc[i] = (T)(acc[i] / (T)nranks);
}
// half types: each step rounds to the element type, as a reduction in that type does
template <class H, float (*To)(H), H (*From)(float)>
void reduce_half(H* acc, const H* x, size_t n, ncclRedOp_t op, int nranks_for_avg) {
    for (size_t i = 0; i < n; i++)
        acc[i] = From(nranks_for_avg ? To(acc[i]) / (float)nranks_for_avg : combine(To(acc[i]), To(x[i]), op));
}
float h2f(__half h) { return __half2float(h); }
__half f2h(float f) { return __float2half(f); }
float b2f(__nv_bfloat16 h) { return __bfloat162float(h); }
__nv_bfloat16 f2b(float f) { return __float2bfloat16(f); }

// acc = acc (op) x, elementwise; false for a type/operator this shim does not reduce
bool reduce(void* acc, const void* x, size_t n, ncclDataType_t t, ncclRedOp_t op) {
    switch (t) {
    case ncclInt8: reduce_typed((int8_t*)acc, (const int8_t*)x, n, op); return true;
    case ncclUint8: reduce_typed((uint8_t*)acc, (const uint8_t*)x, n, op); return true;
    case ncclInt32: reduce_typed((int32_t*)acc, (const int32_t*)x, n, op); return true;
    case ncclUint32: reduce_typed((uint32_t*)acc, (const uint32_t*)x, n, op); return true;
    case ncclInt64: reduce_typed((int64_t*)acc, (const int64_t*)x, n, op); return true;
    case ncclUint64: reduce_typed((uint64_t*)acc, (const uint64_t*)x, n, op); return true;
    case ncclFloat32: reduce_typed((float*)acc, (const float*)x, n, op); return true;
    case ncclFloat64: reduce_typed((double*)acc, (const double*)x, n, op); return true;
    case ncclFloat16: reduce_half<__half, h2f, f2h>((__half*)acc, (const __half*)x, n, op, 0); return true;
    case ncclBfloat16: reduce_half<__nv_bfloat16, b2f, f2b>((__nv_bfloat16*)acc, (const __nv_bfloat16*)x, n, op, 0); return true;
    default: return false;
    }
}
void average(void* acc, size_t n, ncclDataType_t t, int nranks) {
    switch (t) {
    case ncclInt8: avg_typed((int8_t*)acc, n, nranks); break;
    case ncclUint8: avg_typed((uint8_t*)acc, n, nranks); break;
    case ncclInt32: avg_typed((int32_t*)acc, n, nranks); break;
    case ncclUint32: avg_typed((uint32_t*)acc, n, nranks); break;
    case ncclInt64: avg_typed((int64_t*)acc, n, nranks); break;
    case ncclUint64: avg_typed((uint64_t*)acc, n, nranks); break;
    case ncclFloat32: avg_typed((float*)acc, n, nranks); break;
    case ncclFloat64: avg_typed((double*)acc, n, nranks); break;
    case ncclFloat16: reduce_half<__half, h2f, f2h>((__half*)acc, nullptr, n, ncclSum, nranks); break;
    case ncclBfloat16: reduce_half<__nv_bfloat16, b2f, f2b>((__nv_bfloat16*)acc, nullptr, n, ncclSum, nranks); break;
    default: break;
    }
}

const char* type_name(int t) {
    switch (t) {
    case ncclInt8: return "int8";
    case ncclUint8: return "uint8";
    case ncclInt32: return "int32";
    case ncclUint32: return "uint32";
    case ncclInt64: return "int64";
    case ncclUint64: return "uint64";
    case ncclFloat16: return "float16";
    case ncclFloat32: return "float32";
    case ncclFloat64: return "float64";
    case ncclBfloat16: return "bfloat16";
    default: return "?";
    }
}

enum Kind : int32_t { K_ALLREDUCE = 1, K_REDUCE, K_REDUCESCATTER, K_ALLGATHER, K_BROADCAST };
const char* kind_name(int k) {
    static const char* names[] = {"?", "ncclAllReduce", "ncclReduce", "ncclReduceScatter", "ncclAllGather",
                                  "ncclBroadcast"};
    return k >= 1 && k <= 5 ? names[k] : "?";
}

struct Header {
    int32_t kind, type, op, root;
    uint64_t count, seq;
};

// bytes of input rank r contributes and of output it receives, for `h` on `nranks` ranks
void sizes(const Header& h, int r, int nranks, size_t* in, size_t* out) {
    size_t e = type_size((ncclDataType_t)h.type) * h.count;
    switch (h.kind) {
    case K_ALLREDUCE: *in = e; *out = e; break;
    case K_REDUCE: *in = e; *out = r == h.root ? e : 0; break;
    case K_REDUCESCATTER: *in = e * nranks; *out = e; break;
    case K_ALLGATHER: *in = e; *out = e * nranks; break;
    default: *in = r == h.root ? e : 0; *out = e; break;  // broadcast
    }
}

// Rank 0 computes every rank's output from all inputs (in[r], rank order) into out[r].
void compute(const Header& h, int nranks, std::vector<std::vector<char>>& in, std::vector<std::vector<char>>& out) {
    const ncclDataType_t t = (ncclDataType_t)h.type;
    const ncclRedOp_t op = (ncclRedOp_t)h.op;
    const size_t es = type_size(t), e = es * h.count;
    std::vector<char> sum;
    if (h.kind == K_ALLREDUCE || h.kind == K_REDUCE || h.kind == K_REDUCESCATTER) {
        sum = in[0];
        for (int r = 1; r < nranks; r++) reduce(sum.data(), in[r].data(), sum.size() / es, t, op);
        if (op == ncclAvg) average(sum.data(), sum.size() / es, t, nranks);
    }
    for (int r = 0; r < nranks; r++) {
        size_t ni, no;
        sizes(h, r, nranks, &ni, &no);
        out[r].resize(no);
        if (!no) continue;
        switch (h.kind) {
        case K_ALLREDUCE: case K_REDUCE: memcpy(out[r].data(), sum.data(), e); break;
        case K_REDUCESCATTER: memcpy(out[r].data(), sum.data() + (size_t)r * e, e); break;
        case K_ALLGATHER:
            for (int q = 0; q < nranks; q++) memcpy(out[r].data() + (size_t)q * e, in[q].data(), e);
            break;
        default: memcpy(out[r].data(), in[h.root].data(), e); break;
        }
    }
}

ncclResult_t collective(ncclComm* comm, int kind, const void* send, void* recv, size_t count, ncclDataType_t type,
                        ncclRedOp_t op, int root) {
    if (!comm) return fail(nullptr, ncclInvalidArgument, "%s: NULL communicator", kind_name(kind));
    if (!type_size(type)) return fail(comm, ncclInvalidArgument, "%s: unsupported data type %d", kind_name(kind), (int)type);
    const bool reduces = kind == K_ALLREDUCE || kind == K_REDUCE || kind == K_REDUCESCATTER;
    if (reduces && ((int)op < 0 || op >= ncclNumOps))
        return fail(comm, ncclInvalidArgument, "%s: unsupported reduction operator %d", kind_name(kind), (int)op);
    if (reduces && (type == ncclFloat8e4m3 || type == ncclFloat8e5m2))
        return fail(comm, ncclInvalidArgument, "%s: fp8 reductions are not emulated", kind_name(kind));
    if ((kind == K_REDUCE || kind == K_BROADCAST) && (root < 0 || root >= comm->nranks))
        return fail(comm, ncclInvalidArgument, "%s: root %d outside [0, %d)", kind_name(kind), root, comm->nranks);
    Header h = {kind, (int32_t)type, reduces ? (int32_t)op : 0, (kind == K_REDUCE || kind == K_BROADCAST) ? root : 0,
                (uint64_t)count, comm->seq++};
    comm->calls[kind][type]++;
    comm->elements[kind][type] += count;
    size_t nin, nout;
    sizes(h, comm->rank, comm->nranks, &nin, &nout);
    if ((nin && !send) || (nout && !recv))
        return fail(comm, ncclInvalidArgument, "%s: NULL buffer", kind_name(kind));
    if (comm->nranks == 1) {
        std::vector<std::vector<char>> in(1), out(1);
        in[0].assign((const char*)send, (const char*)send + nin);
        compute(h, 1, in, out);
        if (nout) memcpy(recv, out[0].data(), nout);
        return ncclSuccess;
    }
    if (comm->rank != 0) {
        int fd = comm->fd[0];
        if (!send_all(fd, &h, sizeof h) || (nin && !send_all(fd, send, nin)))
            return fail(comm, ncclRemoteError, "%s #%llu: sending to rank 0 failed (%s)", kind_name(kind),
                        (unsigned long long)h.seq, errno ? strerror(errno) : "connection closed");
        int32_t status;
        if (!recv_all(fd, &status, sizeof status))
            return fail(comm, ncclRemoteError, "%s #%llu: rank 0 closed the connection (did it exit?)",
                        kind_name(kind), (unsigned long long)h.seq);
        if (status != 0)
            return fail(comm, ncclInvalidUsage, "%s #%llu: the ranks called different collectives (see rank 0's message)",
                        kind_name(kind), (unsigned long long)h.seq);
        if (nout && !recv_all(fd, recv, nout))
            return fail(comm, ncclRemoteError, "%s #%llu: rank 0 closed the connection", kind_name(kind),
                        (unsigned long long)h.seq);
        return ncclSuccess;
    }
    // rank 0: gather, check, compute, answer
    std::vector<std::vector<char>> in(comm->nranks), out(comm->nranks);
    in[0].assign((const char*)send, (const char*)send + nin);
    int32_t status = 0;
    char why[256] = "";
    for (int r = 1; r < comm->nranks; r++) {
        Header o;
        if (!recv_all(comm->fd[r], &o, sizeof o))
            return fail(comm, ncclRemoteError, "%s #%llu: rank %d closed the connection (did it exit?)",
                        kind_name(kind), (unsigned long long)h.seq, r);
        if (!status && (o.kind != h.kind || o.type != h.type || o.op != h.op || o.root != h.root ||
                        o.count != h.count || o.seq != h.seq)) {
            status = 1;
            snprintf(why, sizeof why,
                     "collective #%llu: rank 0 called %s(count %llu, type %d, op %d, root %d) but rank %d "
                     "called %s(count %llu, type %d, op %d, root %d) as its #%llu",
                     (unsigned long long)h.seq, kind_name(h.kind), (unsigned long long)h.count, h.type, h.op, h.root,
                     r, kind_name(o.kind), (unsigned long long)o.count, o.type, o.op, o.root,
                     (unsigned long long)o.seq);
        }
        size_t ni, no;
        sizes(o, r, comm->nranks, &ni, &no);  // the sender's own idea of its input size
        in[r].resize(ni);
        if (ni && !recv_all(comm->fd[r], in[r].data(), ni))
            return fail(comm, ncclRemoteError, "%s #%llu: rank %d closed the connection", kind_name(kind),
                        (unsigned long long)h.seq, r);
    }
    if (!status) compute(h, comm->nranks, in, out);
    for (int r = 1; r < comm->nranks; r++) {
        if (!send_all(comm->fd[r], &status, sizeof status) ||
            (!status && !out[r].empty() && !send_all(comm->fd[r], out[r].data(), out[r].size())))
            return fail(comm, ncclRemoteError, "%s #%llu: sending to rank %d failed", kind_name(kind),
                        (unsigned long long)h.seq, r);
    }
    if (status) return fail(comm, ncclInvalidUsage, "%s", why);
    if (nout) memcpy(recv, out[0].data(), nout);
    return ncclSuccess;
}

}  // namespace

extern "C" {

ncclResult_t ncclGetVersion(int* version) {
    if (!version) return ncclInvalidArgument;
    *version = NCCL_VERSION_CODE;
    return ncclSuccess;
}

const char* ncclGetErrorString(ncclResult_t r) {
    switch (r) {
    case ncclSuccess: return "no error";
    case ncclUnhandledCudaError: return "unhandled cuda error (run with NCCL_DEBUG=INFO for details)";
    case ncclSystemError: return "unhandled system error (run with NCCL_DEBUG=INFO for details)";
    case ncclInternalError: return "internal error - please report this issue to the NCCL developers";
    case ncclInvalidArgument: return "invalid argument (run with NCCL_DEBUG=WARN for details)";
    case ncclInvalidUsage: return "invalid usage (run with NCCL_DEBUG=WARN for details)";
    case ncclRemoteError: return "remote process exited or there was a network error";
    case ncclInProgress: return "NCCL operation in progress";
    default: return "unknown result code";
    }
}

const char* ncclGetLastError(ncclComm_t comm) { return comm ? comm->error : g_last_error; }

ncclResult_t ncclGetUniqueId(ncclUniqueId* id) {
    if (!id) return fail(nullptr, ncclInvalidArgument, "ncclGetUniqueId: NULL id");
    if (g_listen_fd >= 0) close(g_listen_fd);
    g_listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (g_listen_fd < 0) return fail(nullptr, ncclSystemError, "ncclGetUniqueId: socket: %s", strerror(errno));
    sockaddr_in a = {};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;  // an ephemeral port: concurrent jobs on one machine do not collide
    socklen_t len = sizeof a;
    if (bind(g_listen_fd, (sockaddr*)&a, sizeof a) || listen(g_listen_fd, 128) || getsockname(g_listen_fd, (sockaddr*)&a, &len))
        return fail(nullptr, ncclSystemError, "ncclGetUniqueId: bind/listen on 127.0.0.1: %s", strerror(errno));
    timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    g_listen_nonce = ((uint64_t)t.tv_sec * 1000000007ull) ^ ((uint64_t)t.tv_nsec << 20) ^ ((uint64_t)getpid() << 40) ^
                     (uint64_t)ntohs(a.sin_port);
    memset(id, 0, sizeof *id);
    IdLayout l = {};
    memcpy(l.magic, kMagic, sizeof kMagic);
    l.port = ntohs(a.sin_port);
    l.nonce = g_listen_nonce;
    memcpy(id->internal, &l, sizeof l);
    return ncclSuccess;
}

ncclResult_t ncclCommInitRank(ncclComm_t* out, int nranks, ncclUniqueId commId, int rank) {
    if (!out) return fail(nullptr, ncclInvalidArgument, "ncclCommInitRank: NULL communicator");
    *out = nullptr;
    if (nranks < 1 || rank < 0 || rank >= nranks)
        return fail(nullptr, ncclInvalidArgument, "ncclCommInitRank: rank %d of %d", rank, nranks);
    IdLayout l;
    memcpy(&l, commId.internal, sizeof l);
    if (memcmp(l.magic, kMagic, sizeof kMagic))
        return fail(nullptr, ncclInvalidArgument, "ncclCommInitRank: not an id from this shim's ncclGetUniqueId");
    ncclComm* c = new ncclComm();
    c->rank = rank;
    c->nranks = nranks;
    c->fd.assign(nranks, -1);
    const double deadline = now_s() + timeout_s();
    if (nranks == 1) {
        *out = c;
        return ncclSuccess;
    }
    if (rank == 0) {
        if (g_listen_fd < 0 || g_listen_nonce != l.nonce) {
            delete c;
            return fail(nullptr, ncclInvalidUsage,
                        "ncclCommInitRank: rank 0 must be the process that called ncclGetUniqueId for this id");
        }
        for (int joined = 1; joined < nranks;) {
            pollfd p = {g_listen_fd, POLLIN, 0};
            int left_ms = (int)((deadline - now_s()) * 1000);
            if (left_ms <= 0 || poll(&p, 1, left_ms) == 0) {
                delete c;
                return fail(nullptr, ncclSystemError, "ncclCommInitRank: %d of %d ranks joined within %.0f s",
                            joined, nranks, timeout_s());
            }
            int fd = accept4(g_listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
            if (fd < 0) continue;
            tune(fd);
            Hello hi;
            if (!recv_all(fd, &hi, sizeof hi) || memcmp(hi.magic, kMagic, sizeof kMagic) || hi.nonce != l.nonce) {
                close(fd);  // a stray connection or another job's rank: not ours
                continue;
            }
            int32_t ok = hi.nranks == nranks && hi.rank > 0 && hi.rank < nranks && c->fd[hi.rank] < 0;
            send_all(fd, &ok, sizeof ok);
            if (!ok) {
                fprintf(stderr, "nccl_emu (rank 0): refused rank %d of %d (this job has %d ranks%s)\n", hi.rank,
                        hi.nranks, nranks, c->fd[hi.rank] >= 0 ? ", rank taken" : "");
                close(fd);
                continue;
            }
            c->fd[hi.rank] = fd;
            joined++;
        }
        close(g_listen_fd);
        g_listen_fd = -1;
    } else {
        int fd = -1;
        for (;;) {
            fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
            sockaddr_in a = {};
            a.sin_family = AF_INET;
            a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            a.sin_port = htons(l.port);
            if (fd >= 0 && connect(fd, (sockaddr*)&a, sizeof a) == 0) break;
            int e = errno;
            if (fd >= 0) close(fd);
            if (now_s() > deadline) {
                delete c;
                return fail(nullptr, ncclSystemError, "ncclCommInitRank: rank %d cannot reach rank 0 at 127.0.0.1:%u (%s)",
                            rank, (unsigned)l.port, strerror(e));
            }
            usleep(20000);
        }
        tune(fd);
        Hello hi = {};
        memcpy(hi.magic, kMagic, sizeof kMagic);
        hi.nonce = l.nonce;
        hi.rank = rank;
        hi.nranks = nranks;
        int32_t ok = 0;
        if (!send_all(fd, &hi, sizeof hi) || !recv_all(fd, &ok, sizeof ok) || !ok) {
            close(fd);
            delete c;
            return fail(nullptr, ncclInvalidUsage, "ncclCommInitRank: rank 0 refused rank %d of %d", rank, nranks);
        }
        c->fd[0] = fd;
    }
    *out = c;
    return ncclSuccess;
}

ncclResult_t ncclCommDestroy(ncclComm_t comm) {
    if (!comm) return ncclSuccess;
    if (getenv("QSTAR_NCCL_EMU_LOG") && *getenv("QSTAR_NCCL_EMU_LOG") && strcmp(getenv("QSTAR_NCCL_EMU_LOG"), "0"))
        for (int k = 1; k <= 5; k++)
            for (int t = 0; t < ncclNumTypes; t++)
                if (comm->calls[k][t])
                    fprintf(stderr, "nccl_emu (rank %d): %s %s: %llu calls, %llu elements\n", comm->rank, kind_name(k),
                            type_name(t), (unsigned long long)comm->calls[k][t], (unsigned long long)comm->elements[k][t]);
    for (int fd : comm->fd)
        if (fd >= 0) close(fd);
    delete comm;
    return ncclSuccess;
}
ncclResult_t ncclCommAbort(ncclComm_t comm) { return ncclCommDestroy(comm); }
ncclResult_t ncclCommFinalize(ncclComm_t comm) { return comm ? ncclSuccess : ncclInvalidArgument; }

ncclResult_t ncclCommCount(const ncclComm_t comm, int* count) {
    if (!comm || !count) return ncclInvalidArgument;
    *count = comm->nranks;
    return ncclSuccess;
}
ncclResult_t ncclCommUserRank(const ncclComm_t comm, int* rank) {
    if (!comm || !rank) return ncclInvalidArgument;
    *rank = comm->rank;
    return ncclSuccess;
}
ncclResult_t ncclCommCuDevice(const ncclComm_t comm, int* device) {
    if (!comm || !device) return ncclInvalidArgument;
    *device = 0;
    return ncclSuccess;
}
ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t* asyncError) {
    if (!comm || !asyncError) return ncclInvalidArgument;
    *asyncError = ncclSuccess;  // every call completed (or failed) synchronously
    return ncclSuccess;
}

ncclResult_t ncclGroupStart() {
    g_group_depth++;
    return ncclSuccess;
}
ncclResult_t ncclGroupEnd() {
    if (g_group_depth == 0) return fail(nullptr, ncclInvalidUsage, "ncclGroupEnd without ncclGroupStart");
    g_group_depth--;
    return ncclSuccess;
}

ncclResult_t ncclAllReduce(const void* sendbuff, void* recvbuff, size_t count, ncclDataType_t datatype, ncclRedOp_t op,
                           ncclComm_t comm, cudaStream_t) {
    return collective(comm, K_ALLREDUCE, sendbuff, recvbuff, count, datatype, op, 0);
}
ncclResult_t ncclReduce(const void* sendbuff, void* recvbuff, size_t count, ncclDataType_t datatype, ncclRedOp_t op,
                        int root, ncclComm_t comm, cudaStream_t) {
    return collective(comm, K_REDUCE, sendbuff, recvbuff, count, datatype, op, root);
}
ncclResult_t ncclReduceScatter(const void* sendbuff, void* recvbuff, size_t recvcount, ncclDataType_t datatype,
                               ncclRedOp_t op, ncclComm_t comm, cudaStream_t) {
    return collective(comm, K_REDUCESCATTER, sendbuff, recvbuff, recvcount, datatype, op, 0);
}
ncclResult_t ncclAllGather(const void* sendbuff, void* recvbuff, size_t sendcount, ncclDataType_t datatype,
                           ncclComm_t comm, cudaStream_t) {
    return collective(comm, K_ALLGATHER, sendbuff, recvbuff, sendcount, datatype, ncclSum, 0);
}
ncclResult_t ncclBroadcast(const void* sendbuff, void* recvbuff, size_t count, ncclDataType_t datatype, int root,
                           ncclComm_t comm, cudaStream_t) {
    return collective(comm, K_BROADCAST, sendbuff, recvbuff, count, datatype, ncclSum, root);
}
ncclResult_t ncclBcast(void* buff, size_t count, ncclDataType_t datatype, int root, ncclComm_t comm, cudaStream_t s) {
    return ncclBroadcast(buff, buff, count, datatype, root, comm, s);
}

}  // extern "C"

#endif  // <nccl.h>
