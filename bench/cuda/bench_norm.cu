/*
 * bench_norm — RMSNorm forward and backward of the CUDA backend (kernels/cuda/rmsnorm.cuh) through
 * the backend table: validated against the C reference, then timed (GB/s; the op is memory bound).
 * Shapes: the rows of a training micro-batch (8192 tokens) at the hidden sizes of the 100M preset
 * (768) and Mistral-7B (4096); small awkward shapes (rows and width not multiples of a block) on
 * the emulator. The backward's dinp and dweight accumulate (+=), so both start from the same
 * non-zero values on both backends. Harness: bench/cuda/bench_common.h.
 *   bench_norm [--shape N,H] [--repeats N] [--warmup N] [--full]
 * --shape runs that one shape only (e.g. a training shape on the emulator, for its counters).
 */
#include "bench/cuda/bench_common.h"

static int opt_n = 0, opt_h = 0;
static int parse_extra(Bench* b, int argc, char** argv) {
    (void)b;
    if (argc >= 2 && !strcmp(argv[0], "--shape")) {
        if (sscanf(argv[1], "%d,%d", &opt_n, &opt_h) != 2 || opt_n < 1 || opt_h < 1) fatal("--shape N,H: got %s", argv[1]);
        return 2;
    }
    return 0;
}

static void bench_rmsnorm(Bench* b, int N, int H) {
    const float eps = 1e-5f;
    char what[128];
    auto inp = dual(b, rnd((size_t)N * H, 2.0f));
    auto w = dual(b, rnd(H, 0.5f, 1.0f));
    auto out = dual_zero<float>(b, (size_t)N * H);
    auto rstd = dual_zero<float>(b, N);
    auto fwd = [&](const Backend* be, int s) { be->rmsnorm_forward(out[s], rstd[s], inp[s], w[s], N, H, eps); };
    bench_case(what, sizeof what, "rmsnorm_forward N=%d H=%d", N, H);
    bench_bytes(4.0 * (2.0 * N * H + H + N), (double)N * H, "element");
    bench_flops(4.0 * N * H);  // x*x and its sum; x*rstd, times the weight
    run_both(b, fwd);
    int ok = check_f(b, "out", out, 1e-5, 1e-5);
    ok &= check_f(b, "rstd", rstd, 1e-6, 1e-5);
    bench_time_op(b, ok, what, fwd, 4.0 * (2.0 * N * H + H + N), 0);

    auto dout = dual(b, rnd((size_t)N * H));
    auto dinp = dual(b, rnd((size_t)N * H, 0.1f));
    auto dw = dual(b, rnd(H, 0.1f));
    auto bwd = [&](const Backend* be, int s) {
        be->rmsnorm_backward(dinp[s], dw[s], dout[s], inp[s], w[s], rstd[s], N, H);
    };
    bench_case(what, sizeof what, "rmsnorm_backward N=%d H=%d (one kernel)", N, H);
    // dout, inp read; dinp read and written; dweight read and written; weight and rstd read: 16 B per
    // element (the former two kernels re-read dout and inp for the weight gradient: 24)
    const double bwd_bytes = 4.0 * (4.0 * N * H + 3.0 * H + N);
    bench_bytes(bwd_bytes, (double)N * H, "element");
    // per element: dout*weight*x summed (4); dinp += rstd*(dout*weight - x*c) (5); dweight += dout*x*rstd (3)
    bench_flops(12.0 * N * H);
    run_both(b, bwd);
    ok = check_f(b, "dinp (+=)", dinp, 1e-5, 1e-4);
    ok &= check_f(b, "dweight (+=, sum over rows)", dw, 1e-4 * sqrt((double)N), 1e-4);
    bench_time_op(b, ok, what, bwd, bwd_bytes, 0);
    for (auto* d : {&inp, &w, &out, &rstd, &dout, &dinp, &dw}) d->release();
}

int main(int argc, char** argv) {
    Bench b;
    if (!bench_setup(&b, argc, argv, parse_extra, " [--shape N,H]")) return 0;
    if (opt_n) {
        bench_rmsnorm(&b, opt_n, opt_h);
    } else if (b.full) {
        bench_rmsnorm(&b, 8192, 768);
        bench_rmsnorm(&b, 8192, 4096);
    } else {
        bench_rmsnorm(&b, 37, 200);
        bench_rmsnorm(&b, 16, 768);
        bench_rmsnorm(&b, 300, 301);  // several rows per backward block; width not a multiple of a pack
    }
    return bench_finish(&b);
}
