/*
 * `qstar tokenize`: turns JSONL or plain-text documents into token shards (io/shard.h) with a
 * tokenizer.json tokenizer (text/tokenizer.h). See cli/cmd_tokenize.c for the options.
 */
#ifndef QSTAR_CMD_TOKENIZE_H
#define QSTAR_CMD_TOKENIZE_H

// argv[0] is "tokenize"; returns the exit status (errors exit 1 through fatal()).
int cmd_tokenize(int argc, char** argv);

#endif
