/*
 * bench_quietstar — the Quiet-STaR ops of the CUDA backend (kernels/cuda/quietstar.cuh) through the
 * backend table: thought sampling (mask_columns, gumbel_sample), the mixing head's pieces
 * (row_broadcast, concat_columns / split_columns_backward, add_bias, column_sum, relu forward /
 * backward, mix forward / backward), roll_rows forward / backward and quietstar_advantage. Each is
 * validated against the C reference (bitwise where the reference is exact: sampled tokens, copies,
 * rolls), then timed in GB/s of its minimum traffic against the HBM peak: all of them are memory
 * bound, and gumbel_sample is a pass over the (N, V) logits like the cross-entropy.
 *
 * Shapes on a GPU: a reference Quiet-STaR step of the 100M preset, B = 4 sequences x P = 2 passes of
 * L = 512 (R·L = 4096 rows), H = 768, V = 32000, talk T = 4. On the emulator: R = 2, L = 13, H = 48,
 * V = 1000.
 *   bench_quietstar [--repeats N] [--warmup N] [--full]
 */
#include "bench/cuda/bench_common.h"

typedef Dual<float> DF;

static void bench_sampling(Bench* b, int R, int L, int V) {
    const int N = R * L, lo = V - 2, hi = V;  // the thought tokens sit at the end of the vocabulary
    char what[128];
    auto logits = dual(b, rnd((size_t)N * V, 3.0f));
    auto tok = dual_zero<int32_t>(b, N);
    bench_case(what, sizeof what, "mask_columns N=%d V=%d [%d, %d)", N, V, lo, hi);
    auto mask = [&](const Backend* be, int s) { be->mask_columns(logits[s], N, V, lo, hi, -INFINITY); };
    run_both(b, mask);
    bench_time_op(b, check_f(b, "logits", logits, 0, 0), what, mask, 4.0 * N * (hi - lo), 0);
    bench_case(what, sizeof what, "gumbel_sample N=%d V=%d", N, V);
    auto sample = [&](const Backend* be, int s) { be->gumbel_sample(tok[s], logits[s], N, V, L, 42, 7, 3); };
    run_both(b, sample);
    bench_time_op(b, check_i(b, "tokens", tok), what, sample, 4.0 * N * V + 4.0 * N, 0);
    logits.release();
    tok.release();
}

static void bench_mixing(Bench* b, int N, int H) {
    char what[128];
    const size_t NH = (size_t)N * H;
    DF base = dual(b, rnd(NH)), thought = dual(b, rnd(NH)), w = dual(b, rnd(N, 0.5f, 0.2f));
    DF vec = dual(b, rnd(H)), bias = dual(b, rnd(H));
    DF out = dual_zero<float>(b, NH), cat = dual_zero<float>(b, 2 * NH), dcat = dual(b, rnd(2 * NH));
    DF da = dual(b, rnd(NH, 0.1f)), db = dual(b, rnd(NH, 0.1f)), dw = dual_zero<float>(b, N);
    DF colsum = dual(b, rnd(H, 0.1f)), relu = dual_zero<float>(b, NH), drelu = dual_zero<float>(b, NH);

    bench_case(what, sizeof what, "row_broadcast N=%d H=%d", N, H);
    auto bcast = [&](const Backend* be, int s) { be->row_broadcast(out[s], vec[s], 100.0f, N, H); };
    run_both(b, bcast);
    bench_time_op(b, check_f(b, "out", out, 0, 1e-7), what, bcast, 4.0 * NH, 0);

    bench_case(what, sizeof what, "concat_columns N=%d A=B=%d", N, H);
    auto concat = [&](const Backend* be, int s) { be->concat_columns(cat[s], base[s], thought[s], N, H, H); };
    run_both(b, concat);
    bench_time_op(b, check_f(b, "out", cat, 0, 0), what, concat, 16.0 * NH, 0);

    bench_case(what, sizeof what, "split_columns_backward N=%d A=B=%d", N, H);
    auto split = [&](const Backend* be, int s) { be->split_columns_backward(da[s], db[s], dcat[s], N, H, H); };
    run_both(b, split);
    int ok = check_f(b, "da (+=)", da, 0, 1e-7);
    ok &= check_f(b, "db (+=)", db, 0, 1e-7);
    bench_time_op(b, ok, what, split, 24.0 * NH, 0);

    bench_case(what, sizeof what, "add_bias N=%d H=%d (in place)", N, H);
    out.set(rnd(NH));
    auto addb = [&](const Backend* be, int s) { be->add_bias(out[s], bias[s], N, H); };
    run_both(b, addb);
    bench_time_op(b, check_f(b, "x", out, 0, 1e-7), what, addb, 8.0 * NH, 0);

    bench_case(what, sizeof what, "column_sum N=%d H=%d", N, H);
    auto csum = [&](const Backend* be, int s) { be->column_sum(colsum[s], base[s], 0.5f, N, H); };
    run_both(b, csum);
    bench_time_op(b, check_f(b, "out (+=)", colsum, 1e-6 * sqrt((double)N), 1e-5), what, csum, 4.0 * NH, 0);

    bench_case(what, sizeof what, "relu_forward n=%zu", NH);
    auto rf = [&](const Backend* be, int s) { be->relu_forward(relu[s], base[s], NH); };
    run_both(b, rf);
    bench_time_op(b, check_f(b, "out", relu, 0, 0), what, rf, 8.0 * NH, 0);
    bench_case(what, sizeof what, "relu_backward n=%zu", NH);
    auto rb = [&](const Backend* be, int s) { be->relu_backward(drelu[s], thought[s], relu[s], NH); };
    run_both(b, rb);
    bench_time_op(b, check_f(b, "dinp", drelu, 0, 0), what, rb, 12.0 * NH, 0);

    bench_case(what, sizeof what, "mix_forward N=%d H=%d", N, H);
    auto mf = [&](const Backend* be, int s) { be->mix_forward(out[s], base[s], thought[s], w[s], N, H); };
    run_both(b, mf);
    bench_time_op(b, check_f(b, "out", out, 1e-6, 1e-6), what, mf, 4.0 * (3.0 * NH + N), 0);
    bench_case(what, sizeof what, "mix_backward N=%d H=%d", N, H);
    da.set(rnd(NH, 0.1f));
    db.set(rnd(NH, 0.1f));
    auto mb = [&](const Backend* be, int s) {
        be->mix_backward(da[s], db[s], dw[s], dcat[s], base[s], thought[s], w[s], N, H);
    };
    run_both(b, mb);
    ok = check_f(b, "dbase (+=)", da, 1e-6, 1e-6);
    ok &= check_f(b, "dthought (+=)", db, 1e-6, 1e-6);
    ok &= check_f(b, "dw", dw, 1e-5 * sqrt((double)H), 1e-5);
    // dout, base, thought, w read; dbase, dthought read and written; dw written
    bench_time_op(b, ok, what, mb, 4.0 * (7.0 * NH + 2.0 * N), 0);
    for (DF* d : {&base, &thought, &w, &vec, &bias, &out, &cat, &dcat, &da, &db, &dw, &colsum, &relu, &drelu})
        d->release();
}

static void bench_roll(Bench* b, int R, int L, int H, int shift) {
    char what[128];
    const size_t NH = (size_t)R * L * H;
    DF inp = dual(b, rnd(NH)), out = dual_zero<float>(b, NH), dinp = dual(b, rnd(NH, 0.1f));
    bench_case(what, sizeof what, "roll_rows R=%d L=%d H=%d s=%d", R, L, H, shift);
    auto fwd = [&](const Backend* be, int s) { be->roll_rows(out[s], inp[s], R, L, H, shift); };
    run_both(b, fwd);
    bench_time_op(b, check_f(b, "out", out, 0, 0), what, fwd, 8.0 * NH, 0);
    bench_case(what, sizeof what, "roll_rows_backward R=%d L=%d H=%d s=%d", R, L, H, shift);
    auto bwd = [&](const Backend* be, int s) { be->roll_rows_backward(dinp[s], out[s], R, L, H, shift); };
    run_both(b, bwd);
    bench_time_op(b, check_f(b, "dinp (+=)", dinp, 0, 1e-7), what, bwd, 12.0 * NH, 0);
    for (DF* d : {&inp, &out, &dinp}) d->release();
}

static void bench_advantage(Bench* b, int B, int P, int L, int T) {
    char what[128];
    const size_t n = (size_t)B * P * L;
    DF base = dual(b, rnd(n, 2.0f, 5.0f)), talk = dual(b, rnd(n * T, 2.0f, 5.0f));
    DF reward = dual_zero<float>(b, n), adv = dual_zero<float>(b, n);
    bench_case(what, sizeof what, "quietstar_advantage B=%d P=%d L=%d T=%d", B, P, L, T);
    auto op = [&](const Backend* be, int s) { be->quietstar_advantage(reward[s], adv[s], base[s], talk[s], B, P, L, T); };
    run_both(b, op);
    int ok = check_f(b, "reward", reward, 1e-6, 1e-6);
    ok &= check_f(b, "advantage", adv, 1e-6, 1e-6);
    bench_time_op(b, ok, what, op, 4.0 * n * (T + 3), 0);
    for (DF* d : {&base, &talk, &reward, &adv}) d->release();
}

int main(int argc, char** argv) {
    Bench b;
    if (!bench_setup(&b, argc, argv, NULL, NULL)) return 0;
    const int B = b.full ? 4 : 1, P = 2, L = b.full ? 512 : 13, H = b.full ? 768 : 48, V = b.full ? 32000 : 1000, T = 4;
    bench_sampling(&b, B * P, L, V);
    bench_mixing(&b, B * P * L, H);
    bench_roll(&b, B * P, L, H, 3);
    bench_advantage(&b, B, P, L, T);
    return bench_finish(&b);
}
