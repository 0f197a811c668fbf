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
    const char* config = NULL;
    int batch = 4, seq = 256;
    ArgSpec specs[] = {
        {"config", ARG_STR, &config, "model config.json (or a checkpoint directory)"},
        {"batch", ARG_INT, &batch, "sequences per micro-batch"},
        {"seq", ARG_INT, &seq, "tokens per sequence"},
    };
    args_parse(argc, argv, specs, 3, "usage: qstar info --config C [--batch B --seq L]\n\nParameter count and memory.");
    if (!config) fatal("info: --config is required");
    if (batch <= 0 || seq <= 0) fatal("info: --batch and --seq must be positive");
    ModelConfig c;
    config_load(&c, config);

    // Count from the parameter table without allocating anything.
    Model m;
    model_build_table(&m, &c);
    size_t embed = 0, head = 0, attn = 0, mlp = 0, norms = 0;
    for (int i = 0; i < m.n_tensors; i++) {
        const ParamTensor* t = &m.tensors[i];
        if (t->ndim == 1) norms += t->numel;
        else if (strstr(t->name, "embed_tokens")) embed += t->numel;
        else if (strstr(t->name, "lm_head")) head += t->numel;
        else if (strstr(t->name, "self_attn")) attn += t->numel;
        else mlp += t->numel;
    }
    size_t total = m.n_params;
    model_destroy(&m);
    size_t act = model_activation_bytes(&c, batch, seq, ACT_ALL);
    char b1[32], b2[32], b3[32], b4[32];
    printf("config: %s\n", config);
    printf("  layers %d, hidden %d, intermediate %d, heads %d (kv %d, head_dim %d), vocab %d, %s embeddings\n",
           c.num_hidden_layers, c.hidden_size, c.intermediate_size, c.num_attention_heads, c.num_key_value_heads,
           c.head_dim, c.vocab_size, c.tie_word_embeddings ? "tied" : "untied");
    printf("parameters: %zu (%.2f M)\n", total, total / 1e6);
    printf("  embedding %zu, lm_head %zu, attention %zu, mlp %zu, norms %zu\n", embed, head, attn, mlp, norms);
    printf("training step memory at batch %d x seq %d (fp32):\n", batch, seq);
    printf("  weights     %s\n", human(4.0 * total, b1, sizeof b1));
    printf("  gradients   %s\n", human(4.0 * total, b2, sizeof b2));
    printf("  AdamW m, v  %s\n", human(8.0 * total, b3, sizeof b3));
    printf("  activations %s\n", human((double)act, b4, sizeof b4));
    printf("  total       %s\n", human(16.0 * total + act, b1, sizeof b1));
    return 0;
}
