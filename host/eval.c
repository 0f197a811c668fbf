/*
 * `qstar eval`: mean next-token loss (and perplexity) of a checkpoint on held-out shards, reading
 * the windows in order without shuffling, so two evaluations of the same data are comparable.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "host/args.h"
#include "host/commands.h"
#include "host/dataloader.h"
#include "host/util.h"
#include "model/model.h"

int cmd_eval(int argc, char** argv) {
    const char *ckpt = NULL, *data = NULL, *device = "cpu";
    int batch = 4, seq = 256, max_batches = 0;
    ArgSpec specs[] = {
        {"ckpt", ARG_STR, &ckpt, "checkpoint directory (config.json + model.safetensors)"},
        {"data", ARG_STR, &data, "token shards to evaluate on (glob)"},
        {"batch", ARG_INT, &batch, "sequences per forward"},
        {"seq", ARG_INT, &seq, "tokens per sequence"},
        {"max-batches", ARG_INT, &max_batches, "stop after N batches (0: all windows)"},
        {"device", ARG_STR, &device, "backend"},
    };
    args_parse(argc, argv, specs, 6, "usage: qstar eval --ckpt DIR --data 'DIR/*.bin' [options]\n\nHeld-out loss.");
    if (!ckpt || !data) fatal("eval: --ckpt and --data are required");
    if (batch <= 0 || seq <= 0) fatal("eval: --batch and --seq must be positive");
    const Backend* be = backend_get(device);
    if (!be) fatal("eval: unknown device \"%s\" (this build has: %s)", device, backend_names());
    ModelConfig cfg;
    config_load(&cfg, ckpt);
    if (seq > cfg.max_position_embeddings) fatal("eval: --seq %d exceeds max_position_embeddings", seq);
    Model m;
    model_create(&m, &cfg, be);
    model_load_weights(&m, ckpt);
    model_alloc_activations(&m, batch, seq);
    DataLoader dl;
    dataloader_init(&dl, data, batch, seq, cfg.vocab_size, 0, 0, 1, 0);
    uint64_t n_batches = dl.total_windows / (uint64_t)batch;
    if (max_batches > 0 && (uint64_t)max_batches < n_batches) n_batches = (uint64_t)max_batches;
    int32_t* in = xmalloc(sizeof(int32_t) * batch * seq);
    int32_t* tg = xmalloc(sizeof(int32_t) * batch * seq);
    double total = 0;
    for (uint64_t b = 0; b < n_batches; b++) {
        dataloader_next(&dl, in, tg);
        total += model_forward(&m, in, tg, NULL);
    }
    double loss = total / (double)n_batches;
    printf("eval: %llu batches x %d x %d tokens | loss %.6f | perplexity %.3f\n", (unsigned long long)n_batches, batch,
           seq, loss, exp(loss));
    free(in);
    free(tg);
    dataloader_free(&dl);
    model_destroy(&m);
    return 0;
}
