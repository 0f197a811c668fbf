/*
 * Host synchronisations per training micro-step, counted by the backend (ops.h: sync_count): a
 * Quiet-STaR micro-step (quietstar_forward + quietstar_backward, thoughts sampled on the device) must
 * wait for the device at most 3 times, an lm micro-step (model_forward + model_backward) at most 2
 * (issue 10). Before the step moved to the device they were 78 (48 uploads, each followed by a stream
 * sync, and 30 downloads) at the reference settings and 5 (4 uploads, 1 download); each wait drains
 * the GPU's queue of launches.
 *   build/tests/test_host_syncs [backend...]   default: cpu, and emu when built in
 * Also checks that the step's numbers do not depend on where it runs: the same micro-steps on each
 * backend give the same losses (cpu vs emu within 1e-5) and the sampled thoughts fetched afterwards
 * (quietstar_step_tokens, one more sync) hold the start/end ids at their steps.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "model/quietstar.h"
#include "tests/check.h"
#include "tests/tiny_config.h"

#define QS_MAX_SYNCS 3
#define LM_MAX_SYNCS 2

// Runs the micro-steps on one backend; returns the last Quiet-STaR and lm losses in out[0], out[1].
static void run_backend(const Backend* be, double* out) {
    ModelConfig cfg = tiny_config(64, 48, 2, 1, 0);
    Model m;
    model_create(&m, &cfg, be);
    model_init_random(&m, 5);
    QuietStarConfig qc = quietstar_reference_config();  // n_ahead 12, n_ahead_talk 4, 2 passes
    qc.policy_weight = 2.0f;
    const int B = 1, L = 10;
    QuietStar qs;
    quietstar_create(&qs, &m, &qc, B, L);
    int32_t* ids = xmalloc(sizeof(int32_t) * B * L);
    printf("backend %s\n", be->name);
    for (int step = 0; step < 3; step++) {
        for (int i = 0; i < B * L; i++) ids[i] = (i * 29 + 7 * step + 3) % 60;
        const uint64_t s0 = be->sync_count();
        out[0] = quietstar_forward(&qs, ids, (uint32_t)step);
        const uint64_t s1 = be->sync_count();
        quietstar_backward(&qs, 0.5f);
        const uint64_t s2 = be->sync_count();
        printf("  quietstar micro-step %d: %llu host syncs (forward %llu, backward %llu), loss %.6f\n", step,
               (unsigned long long)(s2 - s0), (unsigned long long)(s1 - s0), (unsigned long long)(s2 - s1), out[0]);
        CHECK(s2 - s0 <= QS_MAX_SYNCS, "%s: quietstar micro-step %d made %llu host syncs (at most %d)", be->name,
              step, (unsigned long long)(s2 - s0), QS_MAX_SYNCS);
        CHECK(isfinite(out[0]), "%s: quietstar loss %f", be->name, out[0]);
    }
    const int32_t* tok = quietstar_step_tokens(&qs);
    int bad = 0, sampled_range = 0;
    for (int n = 0; n < qs.N; n++) {
        bad += tok[(size_t)1 * qs.N + n] != cfg.start_thought_id;
        bad += tok[(size_t)(qs.NA - 1) * qs.N + n] != cfg.end_thought_id;
        for (int k = 2; k <= qs.NA - 2; k++) {
            const int32_t t = tok[(size_t)k * qs.N + n];
            sampled_range += t < 0 || t >= cfg.vocab_size || t == cfg.start_thought_id || t == cfg.end_thought_id;
        }
    }
    CHECK(bad == 0, "%s: %d start/end ids missing from the step tokens", be->name, bad);
    CHECK(sampled_range == 0, "%s: %d sampled thought tokens out of range or a thought marker", be->name,
          sampled_range);
    quietstar_destroy(&qs);

    model_alloc_activations(&m, B, L);
    int32_t* tg = xmalloc(sizeof(int32_t) * B * L);
    for (int step = 0; step < 3; step++) {
        for (int i = 0; i < B * L; i++) ids[i] = (i * 31 + 5 * step + 1) % 64, tg[i] = (i * 17 + step) % 64;
        tg[3] = QSTAR_IGNORE_INDEX;
        const uint64_t s0 = be->sync_count();
        out[1] = model_forward(&m, ids, tg, NULL);
        model_backward(&m, 0.5f);
        const uint64_t s1 = be->sync_count();
        printf("  lm micro-step %d: %llu host syncs, loss %.6f\n", step, (unsigned long long)(s1 - s0), out[1]);
        CHECK(s1 - s0 <= LM_MAX_SYNCS, "%s: lm micro-step %d made %llu host syncs (at most %d)", be->name, step,
              (unsigned long long)(s1 - s0), LM_MAX_SYNCS);
    }
    free(tg);
    free(ids);
    model_destroy(&m);
}

int main(int argc, char** argv) {
    const char* names[8];
    int n = 0;
    if (argc > 1) {
        for (int i = 1; i < argc && n < 8; i++) names[n++] = argv[i];
    } else {
        names[n++] = "cpu";
        if (backend_get("emu")) names[n++] = "emu";
        else printf("emu backend not built in: counted on cpu only\n");
    }
    double first[2] = {0, 0};
    for (int i = 0; i < n; i++) {
        const Backend* be = backend_get(names[i]);
        if (!be) {
            fprintf(stderr, "unknown backend '%s' (built: %s)\n", names[i], backend_names());
            return 2;
        }
        double out[2];
        run_backend(be, out);
        if (i == 0) {
            first[0] = out[0], first[1] = out[1];
        } else {
            CHECK(fabs(out[0] - first[0]) <= 1e-5 * fabs(first[0]), "%s vs %s: quietstar loss %.9g vs %.9g",
                  names[i], names[0], out[0], first[0]);
            CHECK(fabs(out[1] - first[1]) <= 1e-5 * fabs(first[1]), "%s vs %s: lm loss %.9g vs %.9g", names[i],
                  names[0], out[1], first[1]);
        }
    }
    return test_summary();
}
