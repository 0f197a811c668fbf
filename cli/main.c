/*
 * The qstar command-line tool: dispatches to a subcommand.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cmd_tokenize.h"
#include "cli/commands.h"
#include "kernels/ops.h"

static int usage(FILE* f) {
    fprintf(f,
            "qstar — Quiet-STaR research kernel suite\n\n"
            "usage: qstar <command> [options]   (qstar <command> --help for its options)\n\n"
            "commands:\n"
            "  train   train a language model on token shards\n"
            "  eval    held-out loss of a checkpoint, or benchmark accuracy (--task gsm8k|csqa)\n"
            "  sample  generate text from a checkpoint (with Quiet-STaR thoughts: --thoughts)\n"
            "  generate completions for a JSONL file of prompts, batched (K samples each)\n"
            "  info    parameter count and training memory of a config\n"
            "  tokenize JSONL/text documents -> token shards with a tokenizer.json\n"
            "  selftrain the STaR family on arith/gsm8k: --method star|rft|vstar|stepdpo\n\n"
            "backends in this build: %s\n",
            backend_names());
    return f == stdout ? 0 : 2;
}

int main(int argc, char** argv) {
    if (argc < 2) return usage(stderr);
    const char* cmd = argv[1];
    if (!strcmp(cmd, "train")) return cmd_train(argc - 1, argv + 1);
    if (!strcmp(cmd, "info")) return cmd_info(argc - 1, argv + 1);
    if (!strcmp(cmd, "eval")) return cmd_eval(argc - 1, argv + 1);
    if (!strcmp(cmd, "sample")) return cmd_sample(argc - 1, argv + 1);
    if (!strcmp(cmd, "generate")) return cmd_generate(argc - 1, argv + 1);
    if (!strcmp(cmd, "tokenize")) return cmd_tokenize(argc - 1, argv + 1);
    if (!strcmp(cmd, "selftrain")) return cmd_selftrain(argc - 1, argv + 1);
    if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) return usage(stdout);
    fprintf(stderr, "qstar: error: unknown command \"%s\" (see qstar --help)\n", cmd);
    return 1;  // as every other error (README: exit status 1)
}
