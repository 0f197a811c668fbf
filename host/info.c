/*
 * `qstar info`: what a model costs before it is run: parameters by kind, and the memory a training
 * step needs at a batch and sequence length (weights, gradients, AdamW moments, activations),
 * computed from the same size tables the model allocates with.
 */
#include <stdio.h>
#include <string.h>

#include "host/args.h"
#include "host/commands.h"
#include "host/util.h"
#include "model/model.h"
#include "model/quietstar.h"

static const char* human(double bytes, char* buf, size_t n) {
    const char* unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (bytes >= 1024 && u < 4) {
        bytes /= 1024;
        u++;
    }
    snprintf(buf, n, "%.2f %s", bytes, unit[u]);
    return buf;
}

int cmd_info(int argc, char** argv) {
    const char *config = NULL, *mode = "lm";
    QuietStarConfig qc = quietstar_reference_config();
    int batch = 4, seq = 256;
    ArgSpec specs[] = {
        {"config", ARG_STR, &config, "model config.json (or a checkpoint directory)"},
        {"batch", ARG_INT, &batch, "sequences per micro-batch"},
        {"seq", ARG_INT, &seq, "tokens per sequence"},
        {"mode", ARG_STR, &mode, "lm or quietstar (activations of every thought step)"},
        {"n-ahead", ARG_INT, &qc.n_ahead, "quietstar: thought length incl. start and end"},
        {"n-ahead-talk", ARG_INT, &qc.n_ahead_talk, "quietstar: true tokens predicted after a thought"},
        {"n-passes", ARG_INT, &qc.n_passes, "quietstar: thoughts per sequence"},
    };
    args_parse(argc, argv, specs, 7,
               "usage: qstar info --config C [--batch B --seq L --mode lm|quietstar]\n\nParameter count and memory.");
    if (strcmp(mode, "lm") && strcmp(mode, "quietstar")) fatal("info: --mode must be lm or quietstar");
    const int quietstar = !strcmp(mode, "quietstar");
    if (!config) fatal("info: --config is required");
    if (batch <= 0 || seq <= 0) fatal("info: --batch and --seq must be positive");
    ModelConfig c;
    config_load(&c, config);
    if (quietstar && c.start_thought_id < 0) {  // training adds the two thought tokens and the mixing head
        c.start_thought_id = c.vocab_size;
        c.end_thought_id = c.vocab_size + 1;
        c.vocab_size += 2;
    }

    // Count from the parameter table without allocating anything.
    Model m;
    model_build_table(&m, &c);
    size_t embed = 0, head = 0, attn = 0, mlp = 0, norms = 0, thought = 0;
    for (int i = 0; i < m.n_tensors; i++) {
        const ParamTensor* t = &m.tensors[i];
        if (!strncmp(t->name, "quietstar.", 10)) thought += t->numel;
        else if (t->ndim == 1) norms += t->numel;
        else if (strstr(t->name, "embed_tokens")) embed += t->numel;
        else if (strstr(t->name, "lm_head")) head += t->numel;
        else if (strstr(t->name, "self_attn")) attn += t->numel;
        else mlp += t->numel;
    }
    size_t total = m.n_params;
    model_destroy(&m);
    size_t act = quietstar ? quietstar_activation_bytes(&c, &qc, batch, seq) : model_activation_bytes(&c, batch, seq, ACT_ALL);
    char b1[32], b2[32], b3[32], b4[32];
    printf("config: %s\n", config);
    printf("  layers %d, hidden %d, intermediate %d, heads %d (kv %d, head_dim %d), vocab %d, %s embeddings\n",
           c.num_hidden_layers, c.hidden_size, c.intermediate_size, c.num_attention_heads, c.num_key_value_heads,
           c.head_dim, c.vocab_size, c.tie_word_embeddings ? "tied" : "untied");
    printf("parameters: %zu (%.2f M)\n", total, total / 1e6);
    printf("  embedding %zu, lm_head %zu, attention %zu, mlp %zu, norms %zu\n", embed, head, attn, mlp, norms);
    if (thought) printf("  Quiet-STaR: start/end thought embeddings and mixing head %zu\n", thought);
    printf("training step memory at batch %d x seq %d (fp32)%s:\n", batch, seq,
           quietstar ? xsprintf(", Quiet-STaR: %d passes, %d forwards of every row kept for the backward", qc.n_passes,
                                qc.n_ahead + qc.n_ahead_talk - 1)
                     : "");
    printf("  weights     %s\n", human(4.0 * total, b1, sizeof b1));
    printf("  gradients   %s\n", human(4.0 * total, b2, sizeof b2));
    printf("  AdamW m, v  %s\n", human(8.0 * total, b3, sizeof b3));
    printf("  activations %s\n", human((double)act, b4, sizeof b4));
    printf("  total       %s\n", human(16.0 * total + act, b1, sizeof b1));
    return 0;
}
