/*
 * A Hugging Face tokenizer.json tokenizer (BPE models) that gives exactly the ids of the `tokenizers`
 * library for the two families qstar trains on:
 *   - SentencePiece-style (Mistral-7B, Llama-2): Prepend/Replace normalizer or Metaspace
 *     pre-tokenizer, byte_fallback + fuse_unk BPE, Replace/ByteFallback/Fuse/Strip or Metaspace decoder;
 *   - byte-level (GPT-2, Llama-3, Qwen2-style regex): ByteLevel pre-tokenizer or Split(regex) +
 *     ByteLevel, ByteLevel decoder.
 * Added tokens are matched before the model (leftmost-longest, with lstrip/rstrip/single_word), and
 * the post-processor (TemplateProcessing, ByteLevel, Roberta/Bert) adds BOS etc. when asked.
 * Anything in a file outside what is implemented is reported with fatal("<path>: ...") rather than
 * silently tokenized differently. Encoding is thread-safe (each thread keeps its own word cache);
 * loading, adding tokens and saving are not.
 */
#ifndef QSTAR_TOKENIZER_H
#define QSTAR_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

typedef struct Tokenizer Tokenizer;

// A growable id array that encode appends to. Zero-initialize; free ids with free().
typedef struct {
    uint32_t* ids;
    size_t n, cap;
} TokIds;

// Loads tokenizer.json; any problem (missing file, bad JSON, unsupported component) is fatal.
Tokenizer* tok_load(const char* path);
void tok_free(Tokenizer* t);

// Encodes len bytes of UTF-8 text, appending ids to out. add_special_tokens adds what the
// post-processor adds (BOS for Llama/Mistral). The text must be valid UTF-8 (see tok_utf8_check).
void tok_encode(const Tokenizer* t, const char* text, size_t len, int add_special_tokens, TokIds* out);

// Decodes ids to malloc'd, NUL-terminated UTF-8 (length in *out_len when not NULL), as the file's
// decoder does; skip_special drops special added tokens (tokenizers' skip_special_tokens).
char* tok_decode(const Tokenizer* t, const uint32_t* ids, size_t n, int skip_special, size_t* out_len);

int64_t tok_token_to_id(const Tokenizer* t, const char* token);  // -1 when absent
const char* tok_id_to_token(const Tokenizer* t, uint32_t id);    // NULL when absent
uint32_t tok_vocab_size(const Tokenizer* t);  // highest id + 1 (model vocab and added tokens)
int64_t tok_bos_id(const Tokenizer* t);       // -1 when the tokenizer has none
int64_t tok_eos_id(const Tokenizer* t);       // -1 when the tokenizer has none

// Appends content as a new special added token (special, not normalized, no strip) with the next
// free id, as tokenizers' add_special_tokens does; returns its id (the existing id if present).
uint32_t tok_add_special_token(Tokenizer* t, const char* content);
// Writes the tokenizer (with any added tokens) as tokenizer.json, atomically.
void tok_save(const Tokenizer* t, const char* path);

// Returns the byte offset of the first invalid UTF-8 sequence in s, or n when s is valid.
size_t tok_utf8_check(const char* s, size_t n);

#endif
