/*
 * bench_crossentropy — softmax cross-entropy of the CUDA backend (kernels/cuda/crossentropy.cuh):
 * forward (per-row loss), backward (dlogits, in place over the logits as the model runs it) and the
 * fused op (loss and dlogits in one pass, what a training step's loss runs), validated against the C
 * reference, then timed in GB/s of the analytic traffic, printed per call: forward reads the (N, V)
 * logits once (4 B/logit in fp32), backward and fused read them once and write them once (8 B/logit;
 * the second read of each row comes from L2). Rows whose target is QSTAR_IGNORE_INDEX are not read
 * (loss 0; backward writes their gradient row as zeros: 4 B/logit), so the minimum counts them apart.
 * Modelled FLOPs (emulator counted line): 4 per logit forward (max, subtract, exp, sum), 8 backward
 * and fused (the forward's 4, then subtract, exp, scale, write the target's -1). The kernel before the rewrite moved 8 + 16 = 24 B/logit
 * for forward + backward. V = 32000 (the Mistral vocabulary) and 32002 (with the two thought tokens:
 * rows not 16-byte aligned) on the GPU (N = 4096 rows); a few rows on the emulator. Some targets are
 * QSTAR_IGNORE_INDEX, whose loss and gradient rows must be 0.
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
    const double logit_count = (double)N * V;
    int ignored = 0;
    for (int n = 0; n < N; n++) ignored += t[n] == QSTAR_IGNORE_INDEX;
    const double live = (double)(N - ignored) * V, dead = (double)ignored * V;  // logits of scored / ignored rows
    char what[128];
    bench_case(what, sizeof what, "crossentropy_forward N=%d V=%d", N, V);
    const double fwd_bytes = 4.0 * live + 8.0 * N;  // logits of scored rows read; targets read, losses written
    bench_bytes(fwd_bytes, logit_count, "logit");
    bench_flops(4.0 * live);
    auto fwd = [&](const Backend* be, int s) { be->crossentropy_forward(losses[s], logits[s], targets[s], N, V); };
    run_both(b, fwd);
    int ok = check_f(b, "losses", losses, 1e-5, 1e-5);
    bench_time_op(b, ok, what, fwd, fwd_bytes, 0);

    bench_case(what, sizeof what, "crossentropy_backward N=%d V=%d (in place)", N, V);
    // logits read and dlogits written (zeros only, for ignored rows); targets, dlosses read
    const double bwd_bytes = 8.0 * live + 4.0 * dead + 12.0 * N;
    bench_bytes(bwd_bytes, logit_count, "logit");
    bench_flops(8.0 * live);
    auto bwd = [&](const Backend* be, int s) {
        be->crossentropy_backward(logits[s], logits[s], targets[s], dlosses[s], N, V);
    };
    run_both(b, bwd);
    ok = check_f(b, "dlogits (aliasing logits)", logits, 1e-7, 1e-4);
    bench_time_op(b, ok, what, bwd, bwd_bytes, 0);

    bench_case(what, sizeof what, "crossentropy_fused N=%d V=%d (loss and dlogits, in place)", N, V);
    const double fused_bytes = 8.0 * live + 4.0 * dead + 16.0 * N;  // as backward, plus the losses written
    bench_bytes(fused_bytes, logit_count, "logit");
    bench_flops(8.0 * live);
    logits.set(h);  // the backward (and its timing) turned the logits into gradients
    auto fused = [&](const Backend* be, int s) {
        be->crossentropy_fused(losses[s], logits[s], logits[s], targets[s], dlosses[s], N, V);
    };
    run_both(b, fused);
    ok = check_f(b, "losses (fused)", losses, 1e-5, 1e-5);
    ok &= check_f(b, "dlogits (fused, aliasing logits)", logits, 1e-7, 1e-4);
    bench_time_op(b, ok, what, fused, fused_bytes, 0);
    logits.release();
    targets.release();
    dlosses.release();
    losses.release();
}

int main(int argc, char** argv) {
    Bench b;
    if (!bench_setup(&b, argc, argv, parse_extra, " [--rows N]")) return 0;
    bench_ce(&b, opt_rows ? opt_rows : b.full ? 4096 : 9, 32000);
    bench_ce(&b, opt_rows ? opt_rows : b.full ? 4096 : 5, 32002);  // rows not 16-byte aligned
    if (!b.full) bench_ce(&b, 5, 1001);
    return bench_finish(&b);
}
