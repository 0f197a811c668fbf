/*
 * bench_step — whole training steps (forward, backward, gradient norm, AdamW) on the CUDA backend
 * through the model API (model/model.h, model/quietstar.h): tokens/s and MFU for a plain language-
 * model step (lm) and a Quiet-STaR step (quietstar: n_ahead 12, talk 4, passes 2, the reference's
 * settings) on the tiny, 100m and mistral-7b presets.
 *
 * FLOPs are counted exactly as bench/bench_train_step.c counts them — for the work a step must do,
 * not for what this implementation happens to do: every linear layer 2·N·IN·OUT forward and twice
 * that backward (lm_head included, embedding lookups and elementwise ops excluded); attention 4·HD
 * per visible (query, key) pair and query head forward, 8·HD backward. A Quiet-STaR step over
 * R = B·P rows of L tokens (N = R·L) runs S = n_ahead + talk - 1 forwards and backwards of the
 * decoder over all N rows; forward k's queries see L(L+1)/2 + k·L pairs per row (causal text plus
 * k keys of their own thought); every forward but the silent one (k = n_ahead - 2, which feeds the
 * end token and predicts nothing) runs the lm_head; the T talk forwards also run the mixing head
 * (Linear 2H->H, Linear H->H, Linear H->1). MFU is against the GPU's dense tensor-core peak for the
 * GEMMs' compute type (kernels/gpu_peaks.h): TF32 with --precision fp32, bf16 with --precision bf16.
 * tokens/s counts text tokens: B·T for lm, B·L for quietstar (the thoughts are overhead).
 *
 * mistral-7b does not fit one GPU for training in fp32 (params, grads and two moments: 16 bytes per
 * parameter), so it runs with 1 and with 2 layers: the difference is the per-layer time, and the
 * full 32-layer step is estimated as (1-layer step) + 31 x (per-layer time), labelled "est.". The
 * measured 1-layer row is printed too.
 *
 * Without a GPU (the emulator build, or no device): one tiny lm step and one tiny quietstar step on
 * the emu backend and on the C reference from the same weights and data; their losses (and for
 * quietstar the base and talk NLLs) and gradient norms must agree; then "timing needs a GPU".
 *   bench_step [--presets tiny,100m,mistral-7b] [--modes lm,quietstar] [--steps N]
 */
#include "bench/cuda/bench_common.h"

extern "C" {
#include "model/model.h"
#include "model/quietstar.h"
}

static const char* opt_presets = NULL;
static const char* opt_modes = "lm,quietstar";
static int opt_steps = 5;
static const char* opt_precision = "fp32";
static int parse_extra(Bench* b, int argc, char** argv) {
    (void)b;
    if (argc < 2) return 0;
    if (!strcmp(argv[0], "--precision")) return opt_precision = argv[1], 2;
    if (!strcmp(argv[0], "--presets")) return opt_presets = argv[1], 2;
    if (!strcmp(argv[0], "--modes")) return opt_modes = argv[1], 2;
    if (!strcmp(argv[0], "--steps")) return opt_steps = atoi(argv[1]), 2;
    return 0;
}

// ---- FLOPs ----------------------------------------------------------------------------------------
// Linear-layer weights used once per row by the decoder (layers) and by the lm_head.
static void linear_params(const Model* m, double* decoder, double* head) {
    const ModelConfig* c = &m->cfg;
    *decoder = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        const ParamTensor* t = &m->tensors[i];
        if (t->ndim == 2 && strstr(t->name, "model.layers.")) *decoder += (double)t->numel;
    }
    *head = (double)c->vocab_size * c->hidden_size;  // lm_head, tied or not
}
static double attention_flops(const ModelConfig* c, int rows, int L, int k) {  // forward + backward
    double pairs = (double)L * (L + 1) / 2.0 + (double)k * L;
    return 12.0 * c->num_hidden_layers * rows * c->num_attention_heads * c->head_dim * pairs;
}
static double lm_flops(const Model* m, int B, int T) {
    double dec, head;
    linear_params(m, &dec, &head);
    return 6.0 * B * T * (dec + head) + attention_flops(&m->cfg, B, T, 0);
}
static double quietstar_flops(const Model* m, const QuietStarConfig* qc, int B, int L) {
    double dec, head;
    linear_params(m, &dec, &head);
    const int R = B * qc->n_passes, S = qc->n_ahead + qc->n_ahead_talk - 1;
    const double N = (double)R * L, H = m->cfg.hidden_size;
    double f = 0;
    for (int k = 0; k < S; k++) {
        f += 6.0 * N * dec + attention_flops(&m->cfg, R, L, k);
        if (k != qc->n_ahead - 2) f += 6.0 * N * head;  // the silent step has no head
    }
    return f + qc->n_ahead_talk * 6.0 * N * (2 * H * H + H * H + H);
}

// ---- one model and its step -------------------------------------------------------------------------
typedef struct {
    Model m;
    QuietStar qs;
    int quietstar, B, T;
    std::vector<int32_t> tok, tgt;
    double loss, base_nll, talk_nll;
    float norm;
} Run;

static void run_create(Run* r, ModelConfig cfg, const Backend* be, int quietstar, int B, int T) {
    r->quietstar = quietstar;
    r->B = B;
    r->T = T;
    if (quietstar) {  // the last two ids of the vocabulary serve as the thought tokens
        cfg.start_thought_id = cfg.vocab_size - 2;
        cfg.end_thought_id = cfg.vocab_size - 1;
    }
    model_create(&r->m, &cfg, be);
    model_init_random(&r->m, 1);
    const int N = B * T;
    r->tok.resize(N);
    r->tgt.resize(N);
    for (int i = 0; i < N; i++) r->tok[i] = r->tgt[(i + N - 1) % N] = (int32_t)((i * 2654435761u) % (cfg.vocab_size - 2));
    if (quietstar) {
        quietstar_init_thought_embeddings(&r->m, 5, 100.0f);
        QuietStarConfig qc = quietstar_reference_config();
        quietstar_create(&r->qs, &r->m, &qc, B, T);
    } else {
        model_alloc_activations(&r->m, B, T);
    }
}
static void run_destroy(Run* r) {
    if (r->quietstar) quietstar_destroy(&r->qs);
    model_destroy(&r->m);
}
static void run_step(Run* r, int t) {
    static const AdamWConfig opt = {0.9f, 0.95f, 1e-8f, 0.1f, 0, 0, 0};
    model_zero_grad(&r->m);
    if (r->quietstar) {
        r->loss = quietstar_forward(&r->qs, r->tok.data(), (uint32_t)t);
        r->base_nll = r->qs.stats.base_nll;
        r->talk_nll = r->qs.stats.talk_nll[0];
        quietstar_backward(&r->qs, 1.0f);
    } else {
        r->loss = r->base_nll = model_forward(&r->m, r->tok.data(), r->tgt.data(), NULL);
        r->talk_nll = 0;
        model_backward(&r->m, 1.0f);
    }
    r->norm = model_grad_norm(&r->m);
    model_adamw_step(&r->m, &opt, 1e-4f, r->norm > 1 ? 1 / r->norm : 1, t);
    r->m.be->sync();
}
// Mean seconds of `steps` steps after one warmup step.
static double run_time(Run* r, int steps) {
    run_step(r, 1);
    double t0 = now_seconds();
    for (int s = 0; s < steps; s++) run_step(r, s + 2);
    return (now_seconds() - t0) / steps;
}

// ---- without a GPU: the steps execute on the emulator and agree with the reference ------------------
static void check_close(Bench* b, const char* what, double got, double want, double rtol) {
    double err = fabs(got - want) / fmax(fabs(want), 1e-3);
    int ok = isfinite(got) && isfinite(want) && err <= rtol;
    printf("  %-4s %-54s emu %.7g  cpu %.7g  rel err %.2e (tol %.0e)\n", ok ? "ok" : "FAIL", what, got, want, err, rtol);
    ok ? b->passed++ : b->failed++;
}
static void validate_steps(Bench* b) {
    ModelConfig cfg;
    config_load(&cfg, "configs/tiny.json");
    for (int qs = 0; qs <= 1; qs++) {
        const int B = qs ? 1 : 2, T = qs ? 8 : 16;
        char what[128];
        bench_case(what, sizeof what, "%s step, tiny preset, B=%d T=%d%s", qs ? "quietstar" : "lm", B, T,
                   qs ? " (n_ahead 12, talk 4, passes 2)" : "");
        Run e, c;
        run_create(&e, cfg, b->be, qs, B, T);
        run_create(&c, cfg, b->ref, qs, B, T);
        double t0 = now_seconds();
        run_step(&e, 1);
        double te = now_seconds() - t0;
        run_step(&c, 1);
        // bf16: bounds in units of its roundoff u = 2^-8, as tests/test_bf16.c states them (the sampled thoughts
        // may differ, so the Quiet-STaR loss and norm get the policy term's looser bound either way)
        const double u = b->be->x_bytes == 2 ? 1.0 / 256 : 0;
        check_close(b, "loss", e.loss, c.loss, qs ? fmax(1e-2, 4 * u) : fmax(1e-5, 2 * u));
        if (qs) {
            check_close(b, "base NLL", e.base_nll, c.base_nll, fmax(1e-5, 4 * u));
            check_close(b, "talk NLL (first talk step)", e.talk_nll, c.talk_nll, fmax(1e-4, 4 * u));
        }
        check_close(b, "gradient norm", e.norm, c.norm, qs ? fmax(1e-2, 16 * u) : fmax(1e-4, 16 * u));
        printf("       (one step on the emulator took %.2f s)\n", te);
        run_destroy(&e);
        run_destroy(&c);
    }
}

// ---- with a GPU ---------------------------------------------------------------------------------------
static void report(Bench* b, const char* label, const char* mode, int B, int T, double params, double sec,
                   double flops, double tokens) {
    printf("%-28s %-9s %5d %5d %10.1fM %10.2f %12.0f %10.1f", label, mode, B, T, params / 1e6, sec * 1e3,
           tokens / sec, flops / sec / 1e12);
    const double peak = b->be->x_bytes == 2 ? b->peak ? b->peak->bf16_tflops : 0 : b->peak ? b->peak->tf32_tflops : 0;
    if (b->peak) printf(" %6.1f%%\n", 100 * flops / sec / (peak * 1e12));
    else printf("   peak unknown\n");
    fflush(stdout);
}

static void time_preset(Bench* b, const char* preset, int qs) {
    char* path = xsprintf("configs/%s.json", preset);
    ModelConfig cfg;
    config_load(&cfg, path);
    free(path);
    // lm: 4 x 1024 tokens; quietstar: 2 sequences x 256 tokens, 2 passes each (emulator --time: tiny sizes)
    const int B = !b->full ? 1 : qs ? 2 : 4, T = !b->full ? (qs ? 8 : 16) : qs ? 256 : 1024;
    const char* mode = qs ? "quietstar" : "lm";
    QuietStarConfig qc = quietstar_reference_config();
    const double tokens = (double)B * T;
    const int layers = cfg.num_hidden_layers;
    if (layers <= 12) {
        Run r;
        run_create(&r, cfg, b->be, qs, B, T);
        double sec = run_time(&r, opt_steps);
        report(b, preset, mode, B, T, (double)r.m.n_params, sec, qs ? quietstar_flops(&r.m, &qc, B, T) : lm_flops(&r.m, B, T),
               tokens);
        run_destroy(&r);
        return;
    }
    // Too large to train on one GPU: 1 and 2 layers, scaled to the full depth.
    double sec[3], flops[3], params[3];
    for (int l = 1; l <= 2; l++) {
        ModelConfig c1 = cfg;
        c1.num_hidden_layers = l;
        Run r;
        run_create(&r, c1, b->be, qs, B, T);
        sec[l] = run_time(&r, opt_steps);
        flops[l] = qs ? quietstar_flops(&r.m, &qc, B, T) : lm_flops(&r.m, B, T);
        params[l] = (double)r.m.n_params;
        run_destroy(&r);
    }
    char label[96];
    snprintf(label, sizeof label, "%s (1 layer)", preset);
    report(b, label, mode, B, T, params[1], sec[1], flops[1], tokens);
    const double layer_sec = sec[2] - sec[1], layer_flops = flops[2] - flops[1], layer_params = params[2] - params[1];
    printf("%-28s %-9s per layer: %.2f ms, %.1f TFLOP/s\n", "", "", layer_sec * 1e3, layer_flops / layer_sec / 1e12);
    snprintf(label, sizeof label, "%s (est. %d layers)", preset, layers);
    report(b, label, mode, B, T, params[1] + (layers - 1) * layer_params, sec[1] + (layers - 1) * layer_sec,
           flops[1] + (layers - 1) * layer_flops, tokens);
}

int main(int argc, char** argv) {
    Bench b;
    if (!bench_setup(&b, argc, argv, parse_extra, " [--presets tiny,100m,mistral-7b] [--modes lm,quietstar] [--steps N] [--precision fp32|bf16]"))
        return 0;
    // --precision bf16: the bf16 table of the same device (bf16 activations, weight copy and gradients)
    if (strcmp(opt_precision, "fp32")) b.be = backend_select(strcmp(b.be->name, "emu") ? "cuda" : "emu", opt_precision);
    printf("precision: %s (%s)\n", b.be->precision, b.be->name);
    if (!b.gpu) {
        validate_steps(&b);
        return bench_finish(&b);
    }
    printf("step time: mean of %d steps after one warmup (wall clock, synchronized); MFU vs dense %s\n", opt_steps,
           b.be->x_bytes == 2 ? "BF16" : "TF32");
    printf("%-28s %-9s %5s %5s %11s %10s %12s %10s %7s\n", "preset", "mode", "batch", "seq", "params", "ms/step",
           "tokens/s", "TFLOP/s", "MFU");
    char* presets = xstrdup(opt_presets ? opt_presets : b.full ? "tiny,100m,mistral-7b" : "tiny");
    for (char* s1 = NULL, *p = strtok_r(presets, ",", &s1); p; p = strtok_r(NULL, ",", &s1)) {
        char* modes = xstrdup(opt_modes);
        for (char* s2 = NULL, *mo = strtok_r(modes, ",", &s2); mo; mo = strtok_r(NULL, ",", &s2))
            time_preset(&b, p, !strcmp(mo, "quietstar"));
        free(modes);
    }
    free(presets);
    return bench_finish(&b);
}
