/*
 * bench_crossentropy — the fused softmax cross-entropy of the CUDA backend
 * (kernels/cuda/crossentropy.cuh), forward (per-row loss) and backward (dlogits, in place over the
 * logits as the model runs it), validated against the C reference, then timed in GB/s: the op reads
 * the (N, V) logits once forward and reads and writes them once backward, and nothing else matters.
 * V = 32000 (the Mistral vocabulary) on both the GPU (N = 4096 rows) and the emulator (a few rows);
 * some targets are QSTAR_IGNORE_INDEX, whose loss and gradient rows must be 0.
 *   bench_crossentropy [--rows N] [--repeats N] [--warmup N] [--full]
 */
#include "bench/cuda/bench_common.h"

static int opt_rows = 0;
static int parse_extra(Bench* b, int argc, char** argv) {
    (void)b;
    if (argc >= 2 && !strcmp(argv[0], "--rows")) return opt_rows = atoi(argv[1]), 2;
    return 0;
}

static void bench_ce(Bench* b, int N, int V) {
    std::vector<float> h = rnd((size_t)N * V, 4.0f);
    std::vector<int32_t> t(N);
    for (int n = 0; n < N; n++) t[n] = n % 7 == 3 ? QSTAR_IGNORE_INDEX : irand(V);
    std::vector<float> dl = rnd(N, 0.5f, 1.0f);
    auto logits = dual(b, h);
    auto targets = dual(b, t);
    auto dlosses = dual(b, dl);
    auto losses = dual_zero<float>(b, N);
    char what[128];
    bench_case(what, sizeof what, "crossentropy_forward N=%d V=%d", N, V);
    auto fwd = [&](const Backend* be, int s) { be->crossentropy_forward(losses[s], logits[s], targets[s], N, V); };
    run_both(b, fwd);
    int ok = check_f(b, "losses", losses, 1e-5, 1e-5);
    bench_time_op(b, ok, what, fwd, 4.0 * N * V + 8.0 * N, 0);

    bench_case(what, sizeof what, "crossentropy_backward N=%d V=%d (in place)", N, V);
    auto bwd = [&](const Backend* be, int s) {
        be->crossentropy_backward(logits[s], logits[s], targets[s], dlosses[s], N, V);
    };
    run_both(b, bwd);
    ok = check_f(b, "dlogits (aliasing logits)", logits, 1e-7, 1e-4);
    bench_time_op(b, ok, what, bwd, 8.0 * N * V + 12.0 * N, 0);
    logits.release();
    targets.release();
    dlosses.release();
    losses.release();
}

int main(int argc, char** argv) {
    Bench b;
    if (!bench_setup(&b, argc, argv, parse_extra, " [--rows N]")) return 0;
    bench_ce(&b, opt_rows ? opt_rows : b.full ? 4096 : 9, 32000);
    if (!b.full) bench_ce(&b, 5, 1000);
    return bench_finish(&b);
}
