/*
 * bench_elementwise — the memory-bound per-element ops of the CUDA backend through the backend
 * table: SwiGLU forward/backward, RoPE forward/backward (in place), AdamW, token embedding
 * forward/backward. Each is validated against the C reference, then timed in GB/s of the minimum
 * traffic it must make (inputs read once, outputs written once; in-place and += buffers count a read
 * and a write), against the HBM peak.
 *
 * Shapes on a GPU: 8192 token rows at the 100M preset's widths (IM 2048, heads 12/4 x 64, H 768) and
 * 4096 rows at Mistral-7B's (IM 14336, heads 32/8 x 128, H 4096); AdamW over 100M floats (the 100M
 * preset's parameters) and 218M (one Mistral-7B layer). On the emulator: small awkward sizes.
 * Embedding backward draws tokens from a small range so rows repeat (the deterministic accumulation
 * of repeated tokens is the hard part); its bytes count each touched table row once.
 *   bench_elementwise [--repeats N] [--warmup N] [--full]
 */
#include "bench/cuda/bench_common.h"

static void bench_swiglu(Bench* b, int N, int IM) {
    char what[128];
    auto gu = dual(b, rnd((size_t)N * 2 * IM, 3.0f));
    auto out = dual_zero<float>(b, (size_t)N * IM);
    auto dout = dual(b, rnd((size_t)N * IM));
    auto dgu = dual_zero<float>(b, (size_t)N * 2 * IM);
    bench_case(what, sizeof what, "swiglu_forward N=%d IM=%d", N, IM);
    bench_bytes(4.0 * N * 3 * IM, (double)N * IM, "element");  // gate, up read; out written
    auto fwd = [&](const Backend* be, int s) { be->swiglu_forward(out[s], gu[s], N, IM); };
    run_both(b, fwd);
    bench_time_op(b, check_f(b, "out", out, 1e-6, 1e-5), what, fwd, 4.0 * N * 3 * IM, 0);
    bench_case(what, sizeof what, "swiglu_backward N=%d IM=%d", N, IM);
    bench_bytes(4.0 * N * 5 * IM, (double)N * IM, "element");  // gate, up, dout read; dgate, dup written
    auto bwd = [&](const Backend* be, int s) { be->swiglu_backward(dgu[s], dout[s], gu[s], N, IM); };
    run_both(b, bwd);
    bench_time_op(b, check_f(b, "dgate_up", dgu, 1e-6, 1e-5), what, bwd, 4.0 * N * 5 * IM, 0);
    for (auto* d : {&gu, &out, &dout, &dgu}) d->release();
}

static void bench_rope(Bench* b, int N, int NH, int NKV, int HD) {
    char what[128];
    const int C3 = (NH + 2 * NKV) * HD;
    std::vector<int32_t> pos(N);
    for (int n = 0; n < N; n++) pos[n] = irand(4096);
    auto p = dual(b, pos);
    auto qkv = dual(b, rnd((size_t)N * C3));
    const double bytes = 8.0 * N * (NH + NKV) * HD + 4.0 * N;  // q and k heads read and written, values untouched
    const float theta = 10000.0f;
    bench_case(what, sizeof what, "rope_forward N=%d heads %d/%d x %d (in place)", N, NH, NKV, HD);
    auto fwd = [&](const Backend* be, int s) { be->rope_forward(qkv[s], p[s], N, NH, NKV, HD, theta); };
    run_both(b, fwd);
    bench_time_op(b, check_f(b, "qkv", qkv, 1e-5, 1e-5), what, fwd, bytes, 0);
    qkv.set(rnd((size_t)N * C3));  // timing rotated the test side further: start both from one value again
    bench_case(what, sizeof what, "rope_backward N=%d heads %d/%d x %d (in place)", N, NH, NKV, HD);
    auto bwd = [&](const Backend* be, int s) { be->rope_backward(qkv[s], p[s], N, NH, NKV, HD, theta); };
    run_both(b, bwd);
    bench_time_op(b, check_f(b, "dqkv", qkv, 1e-5, 1e-5), what, bwd, bytes, 0);
    p.release();
    qkv.release();
}

static void bench_adamw(Bench* b, size_t n) {
    char what[128];
    auto param = dual(b, rnd(n));
    auto grad = dual(b, rnd(n, 0.1f));
    auto m = dual(b, rnd(n, 0.01f));
    auto v = dual(b, rnd(n, 0.001f, 0.001f));  // second moments are non-negative
    bench_case(what, sizeof what, "adamw_update n=%zu", n);
    auto op = [&](const Backend* be, int s) {
        be->adamw_update(param[s], NULL, grad[s], m[s], v[s], n, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.5f, 3, 0, 0, 0);
    };
    run_both(b, op);
    int ok = check_f(b, "param", param, 1e-6, 1e-5);
    ok &= check_f(b, "m", m, 1e-7, 1e-5);
    ok &= check_f(b, "v", v, 1e-9, 1e-5);
    bench_time_op(b, ok, what, op, 4.0 * 7 * n, 0);  // param, grad, m, v read; param, m, v written
    for (auto* d : {&param, &grad, &m, &v}) d->release();
}

static void bench_embedding(Bench* b, int N, int V, int H, int distinct) {
    char what[128];
    std::vector<int32_t> tok(N);
    std::vector<char> seen(V, 0);
    int touched = 0;
    for (int n = 0; n < N; n++) {
        tok[n] = irand(distinct) * (V / distinct);
        if (!seen[tok[n]]) seen[tok[n]] = 1, touched++;
    }
    auto t = dual(b, tok);
    auto table = dual(b, rnd((size_t)V * H));
    auto out = dual_zero<float>(b, (size_t)N * H);
    auto dout = dual(b, rnd((size_t)N * H));
    auto dtable = dual(b, rnd((size_t)V * H, 0.1f));
    bench_case(what, sizeof what, "embedding_forward N=%d V=%d H=%d", N, V, H);
    auto fwd = [&](const Backend* be, int s) { be->embedding_forward(out[s], t[s], table[s], N, H); };
    run_both(b, fwd);
    bench_time_op(b, check_f(b, "out", out, 0, 0), what, fwd, 8.0 * N * H + 4.0 * N, 0);
    bench_case(what, sizeof what, "embedding_backward N=%d V=%d H=%d (%d distinct tokens)", N, V, H, touched);
    // dout read once; each touched table row read and written once; tokens read
    bench_bytes(4.0 * N * H + 8.0 * touched * H + 4.0 * N, (double)N * H, "dout element");
    auto bwd = [&](const Backend* be, int s) { be->embedding_backward(dtable[s], dout[s], t[s], N, V, H); };
    run_both(b, bwd);
    bench_time_op(b, check_f(b, "dtable (+=, repeated tokens)", dtable, 1e-6, 1e-5), what, bwd,
                  4.0 * N * H + 8.0 * touched * H + 4.0 * N, 0);
    for (auto* d : {&table, &out, &dout, &dtable}) d->release();
    t.release();
}

int main(int argc, char** argv) {
    Bench b;
    if (!bench_setup(&b, argc, argv, NULL, NULL)) return 0;
    if (b.full) {
        bench_swiglu(&b, 8192, 2048);
        bench_swiglu(&b, 4096, 14336);
        bench_rope(&b, 8192, 12, 4, 64);
        bench_rope(&b, 4096, 32, 8, 128);
        bench_adamw(&b, (size_t)100 << 20);
        bench_adamw(&b, (size_t)218 << 20);
        bench_embedding(&b, 8192, 32000, 768, 4000);
        bench_embedding(&b, 4096, 32000, 4096, 2000);
    } else {
        bench_swiglu(&b, 37, 100);
        bench_swiglu(&b, 5, 101);  // width not a multiple of a pack: the scalar path
        bench_rope(&b, 37, 4, 2, 32);
        bench_adamw(&b, 10007);
        bench_embedding(&b, 37, 100, 64, 10);
        bench_embedding(&b, 4200, 100, 12, 7);  // more tokens than one sort chunk, long runs of one token
    }
    return bench_finish(&b);
}
