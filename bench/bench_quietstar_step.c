/*
 * The CPU Quiet-STaR training step against the work it contains. A step runs S = n_ahead + talk − 1
 * forwards (and their backwards) of every layer over R = batch × passes rows, plus the thought
 * attention, the sampler and the mixing head; an ordinary lm step at batch R and the same seq does one
 * such forward and backward. So S lm steps, timed in the same run on the same model, are the floor a
 * Quiet-STaR step can approach: the ratio "quietstar step / S lm steps" measures everything a
 * Quiet-STaR step adds beyond its GEMMs and ordinary attention (target ≤ 1.1). The PyTorch reference's
 * time for the same shape (tests/ref/quietstar_reference.py --time, a dense-mask implementation run by
 * bench/run_quietstar_ref.sh) is printed beside it when given with --ref-seconds.
 *
 * Default shape (issue 13): hidden 256, 4 layers, 8 heads / 2 KV heads, ffn 688, vocab 2048, seq 256,
 * batch 1, 2 passes, n_ahead 12, talk 4. Best of --steps timed rounds after one warm-up round; the
 * two sides alternate within a round.
 *
 *   bench_quietstar_step [--hidden 256] [--layers 4] [--heads 8] [--kv-heads 2] [--ffn 688]
 *                        [--vocab 2048] [--seq 256] [--batch 1] [--passes 2] [--n-ahead 12]
 *                        [--talk 4] [--steps 2] [--ref-seconds S] [--clock wall|cpu]
 *                        [--only quietstar|lm]   (one side alone, for a profiler)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/util.h"
#include "model/model.h"
#include "model/quietstar.h"

// --clock cpu: this process's CPU time instead of wall time. With OMP_NUM_THREADS=1 it is the work
// itself, undisturbed by other processes on a shared machine (with more threads it would also count
// OpenMP's spin-waits).
static int cpu_clock = 0;
static double clock_seconds(void) {
    if (!cpu_clock) return now_seconds();
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int int_arg(const char* v, const char* name) {
    char* end;
    long x = strtol(v, &end, 10);
    if (*end || x <= 0 || x > 1 << 20) fatal("bench_quietstar_step: %s must be a positive integer, got '%s'", name, v);
    return (int)x;
}

int main(int argc, char** argv) {
    int H = 256, layers = 4, heads = 8, kv = 2, ffn = 688, vocab = 2048, L = 256, B = 1, P = 2, NA = 12, T = 4;
    int steps = 2;
    double ref_seconds = 0;
    int run_lm = 1, run_qs = 1;
    for (int i = 1; i < argc; i += 2) {
        if (i + 1 >= argc) fatal("bench_quietstar_step: %s needs a value", argv[i]);
        const char* a = argv[i];
        const char* v = argv[i + 1];
        if (!strcmp(a, "--hidden")) H = int_arg(v, a);
        else if (!strcmp(a, "--layers")) layers = int_arg(v, a);
        else if (!strcmp(a, "--heads")) heads = int_arg(v, a);
        else if (!strcmp(a, "--kv-heads")) kv = int_arg(v, a);
        else if (!strcmp(a, "--ffn")) ffn = int_arg(v, a);
        else if (!strcmp(a, "--vocab")) vocab = int_arg(v, a);
        else if (!strcmp(a, "--seq")) L = int_arg(v, a);
        else if (!strcmp(a, "--batch")) B = int_arg(v, a);
        else if (!strcmp(a, "--passes")) P = int_arg(v, a);
        else if (!strcmp(a, "--n-ahead")) NA = int_arg(v, a);
        else if (!strcmp(a, "--talk")) T = int_arg(v, a);
        else if (!strcmp(a, "--steps")) steps = int_arg(v, a);
        else if (!strcmp(a, "--ref-seconds")) ref_seconds = atof(v);
        else if (!strcmp(a, "--only") && (!strcmp(v, "quietstar") || !strcmp(v, "lm")))
            run_lm = !strcmp(v, "lm"), run_qs = !run_lm;
        else if (!strcmp(a, "--clock") && (!strcmp(v, "wall") || !strcmp(v, "cpu"))) cpu_clock = !strcmp(v, "cpu");
        else fatal("bench_quietstar_step: unknown option %s", a);
    }
    if (H % heads || heads % kv || NA < 4 || T > QS_MAX_TALK) fatal("bench_quietstar_step: impossible shape");
    const Backend* be = backend_get("cpu");
    ModelConfig cfg = {0};
    cfg.vocab_size = vocab;
    cfg.hidden_size = H;
    cfg.intermediate_size = ffn;
    cfg.num_hidden_layers = layers;
    cfg.num_attention_heads = heads;
    cfg.num_key_value_heads = kv;
    cfg.head_dim = H / heads;
    cfg.max_position_embeddings = 4 * (L + NA + T);
    cfg.rms_norm_eps = 1e-5f;
    cfg.rope_theta = 10000.0f;
    cfg.tie_word_embeddings = 0;
    cfg.bos_token_id = 1, cfg.eos_token_id = 2;
    cfg.start_thought_id = vocab - 2, cfg.end_thought_id = vocab - 1;

    Model m;
    model_create(&m, &cfg, be);
    model_init_random(&m, 7);
    QuietStarConfig qc = quietstar_reference_config();
    qc.n_ahead = NA, qc.n_ahead_talk = T, qc.n_passes = P;
    const int S = NA + T - 1, R = B * P;

    int32_t* ids = xmalloc(sizeof(int32_t) * (size_t)B * L);
    int32_t* rows = xmalloc(sizeof(int32_t) * (size_t)R * L);
    int32_t* targets = xmalloc(sizeof(int32_t) * (size_t)R * L);
    uint64_t x = 12345;
    for (int i = 0; i < B * L; i++) x = x * 6364136223846793005ull + 1442695040888963407ull, ids[i] = (int32_t)((x >> 33) % (uint64_t)(vocab - 2));
    for (int r = 0; r < R; r++)
        for (int i = 0; i < L; i++) {
            rows[r * L + i] = ids[(r / P) * L + i];
            targets[r * L + i] = i + 1 < L ? ids[(r / P) * L + i + 1] : QSTAR_IGNORE_INDEX;
        }

    // S lm steps at batch R: the same layer work a Quiet-STaR step does S times. The two sides alternate
    // (lm block, Quiet-STaR step, lm block, ...) so that a slow spell of a shared machine hits both; each
    // keeps its best time. The first round warms caches and threads and is not counted.
    model_alloc_activations(&m, R, L);
    QuietStar qs;
    quietstar_create(&qs, &m, &qc, B, L);
    double lm_best = 1e30, qs_best = 1e30;
    for (int rep = 0; rep <= steps; rep++) {
        if (run_lm) {
            double t0 = clock_seconds();
            for (int s = 0; s < S; s++) {
                model_forward(&m, rows, targets, NULL);
                model_backward(&m, 1.0f);
            }
            double dt = clock_seconds() - t0;
            if (rep > 0 && dt < lm_best) lm_best = dt;
        }
        if (run_qs) {
            double t0 = clock_seconds();
            quietstar_forward(&qs, ids, (uint32_t)rep);
            quietstar_backward(&qs, 1.0f);
            double dt = clock_seconds() - t0;
            if (rep > 0 && dt < qs_best) qs_best = dt;
        }
    }
    quietstar_destroy(&qs);
    activations_free(be, &m.acts);

    printf("shape: hidden %d, %d layers, heads %d/%d, ffn %d, vocab %d, seq %d, batch %d x %d passes, "
           "n_ahead %d, talk %d (%d forwards per step), %zu parameters\n",
           H, layers, heads, kv, ffn, vocab, L, B, P, NA, T, S, m.n_params);
    printf("clock: %s\n", cpu_clock ? "process CPU time" : "wall");
    if (run_qs) printf("quietstar step            %8.3f s\n", qs_best);
    if (run_lm) printf("%2d lm steps (batch %d)    %8.3f s\n", S, R, lm_best);
    if (run_qs && run_lm) printf("ratio quietstar / lm      %8.3f   (target <= 1.1)\n", qs_best / lm_best);
    if (run_qs && ref_seconds > 0) printf("PyTorch dense reference   %8.3f s   speed-up %.2fx (target >= 8)\n", ref_seconds, ref_seconds / qs_best);
    model_destroy(&m);
    free(ids), free(rows), free(targets);
    return 0;
}
