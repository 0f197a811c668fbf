/*
 * Tests text/tokenizer.c against reference ids from the Hugging Face `tokenizers` library, stored in
 * data/tokenizers/expected_<name>.jsonl by data/tokenizers/build_tokenizers.py, so this test needs no
 * Python. For every test tokenizer (SentencePiece family: mistral, llama2meta, metasplit; byte-level:
 * llama3, qwen2regex, gpt2, gpt2prefix) and every corpus text it checks: ids with and without special
 * tokens, the library's decode of both, that <|startthought|>/<|endthought|> added with
 * tok_add_special_token, saved and reloaded give the library's ids, and that merges written as [a, b]
 * pairs load to the same tokenizer.
 *
 * With arguments it is also the driver for tests/test_tokenizer.sh (live comparisons with a fuzz
 * corpus, error messages): `test_tokenizer --encode TOKENIZER TEXTS.jsonl [--special]` prints one
 * JSON id list per input line; `--decode TOKENIZER IDS.jsonl` prints one JSON string per line.
 */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "text/tokenizer.h"
#include "common/util.h"
#include "tests/check.h"

static const char* NAMES[] = {"mistral", "llama2meta", "metasplit", "llama3", "qwen2regex", "gpt2", "gpt2prefix", "normadded"};

static int ids_equal(const TokIds* got, const cJSON* want) {
    if (!cJSON_IsArray(want) || (size_t)cJSON_GetArraySize(want) != got->n) return 0;
    size_t i = 0;
    const cJSON* c;
    cJSON_ArrayForEach(c, want) if ((uint32_t)c->valuedouble != got->ids[i++]) return 0;
    return 1;
}

static void print_ids(const char* what, const TokIds* got, const cJSON* want) {
    char* w = cJSON_PrintUnformatted(want);
    printf("    %s want %s\n    got  [", what, w);
    for (size_t i = 0; i < got->n; i++) printf("%s%u", i ? "," : "", got->ids[i]);
    printf("]\n");
    free(w);
}

// Calls fn(line, arg) for each line of a JSONL file.
static void each_line(const char* path, void (*fn)(const cJSON*, void*), void* arg) {
    size_t len;
    char* text = read_file_or_die(path, &len);
    for (char *p = text, *nl; p < text + len; p = nl + 1) {
        nl = memchr(p, '\n', text + len - p);
        if (!nl) nl = text + len;
        *nl = 0;
        cJSON* j = cJSON_Parse(p);
        if (!j) fatal("%s: bad JSON line", path);
        fn(j, arg);
        cJSON_Delete(j);
    }
    free(text);
}

typedef struct {
    const char* name;
    Tokenizer *tok, *thought, *pairs;
    int rows, roundtrips;
} Ctx;

static void check_row(const cJSON* row, void* arg) {
    Ctx* c = arg;
    const cJSON* jt = cJSON_GetObjectItem(row, "text");
    const char* text = jt->valuestring;
    size_t len = strlen(text);
    TokIds a = {0}, b = {0}, th = {0}, pr = {0};
    tok_encode(c->tok, text, len, 1, &a);
    tok_encode(c->tok, text, len, 0, &b);
    tok_encode(c->thought, text, len, 0, &th);
    tok_encode(c->pairs, text, len, 1, &pr);
    int ok1 = ids_equal(&a, cJSON_GetObjectItem(row, "ids"));
    int ok2 = ids_equal(&b, cJSON_GetObjectItem(row, "ids_plain"));
    int ok3 = ids_equal(&th, cJSON_GetObjectItem(row, "ids_thought"));
    int ok4 = ids_equal(&pr, cJSON_GetObjectItem(row, "ids"));
    char* shown = cJSON_PrintUnformatted(jt);
    CHECK(ok1, "%s: encode(add_special) of %.80s", c->name, shown);
    if (!ok1) print_ids("ids", &a, cJSON_GetObjectItem(row, "ids"));
    CHECK(ok2, "%s: encode of %.80s", c->name, shown);
    if (!ok2) print_ids("ids_plain", &b, cJSON_GetObjectItem(row, "ids_plain"));
    CHECK(ok3, "%s: encode with thought tokens of %.80s", c->name, shown);
    if (!ok3) print_ids("ids_thought", &th, cJSON_GetObjectItem(row, "ids_thought"));
    CHECK(ok4, "%s: [a, b] merges give different ids for %.80s", c->name, shown);

    const char* want_plain = cJSON_GetObjectItem(row, "decoded_plain")->valuestring;
    const char* want_sp = cJSON_GetObjectItem(row, "decoded")->valuestring;
    size_t dl;
    char* d1 = tok_decode(c->tok, b.ids, b.n, 0, &dl);
    char* d2 = tok_decode(c->tok, a.ids, a.n, 0, NULL);
    CHECK(dl == strlen(want_plain) && !strcmp(d1, want_plain), "%s: decode of %.80s gave \"%.80s\" want \"%.80s\"",
          c->name, shown, d1, want_plain);
    CHECK(!strcmp(d2, want_sp), "%s: decode with specials of %.80s gave \"%.80s\" want \"%.80s\"", c->name, shown, d2,
          want_sp);
    if (!strcmp(want_plain, text)) {
        c->roundtrips++;
        CHECK(!strcmp(d1, text), "%s: decode(encode(x)) != x for %.80s", c->name, shown);
    }
    c->rows++;
    free(d1), free(d2), free(shown);
    free(a.ids), free(b.ids), free(th.ids), free(pr.ids);
}

// Writes a copy of path with its merges as [a, b] pairs (the newer tokenizers layout).
static char* pairs_copy(const char* path) {
    size_t len;
    char* text = read_file_or_die(path, &len);
    cJSON* root = cJSON_Parse(text);
    free(text);
    cJSON* model = cJSON_GetObjectItem(root, "model");
    cJSON* merges = cJSON_GetObjectItem(model, "merges");
    cJSON* pairs = cJSON_CreateArray();
    cJSON* m;
    cJSON_ArrayForEach(m, merges) {
        char* s = xstrdup(m->valuestring);
        char* sp = strchr(s, ' ');
        *sp = 0;
        cJSON* pair = cJSON_CreateArray();
        cJSON_AddItemToArray(pair, cJSON_CreateString(s));
        cJSON_AddItemToArray(pair, cJSON_CreateString(sp + 1));
        cJSON_AddItemToArray(pairs, pair);
        free(s);
    }
    cJSON_ReplaceItemInObject(model, "merges", pairs);
    // A token with "▁" after another character that no merge can produce: it changes no ids, but it
    // turns off the SentencePiece "cut before ▁" shortcut, so the full-text BPE path is compared too.
    cJSON_AddNumberToObject(cJSON_GetObjectItem(model, "vocab"), "a\xE2\x96\x81", 100000);
    char* out = xsprintf("/tmp/qstar_tok_pairs_%d.json", (int)getpid());
    char* s = cJSON_PrintUnformatted(root);
    write_file_atomic(out, s, strlen(s));
    free(s);
    cJSON_Delete(root);
    return out;
}

static void run_reference_tests(void) {
    for (size_t k = 0; k < sizeof NAMES / sizeof *NAMES; k++) {
        char* path = xsprintf("data/tokenizers/%s.json", NAMES[k]);
        char* exp = xsprintf("data/tokenizers/expected_%s.jsonl", NAMES[k]);
        Ctx c = {.name = NAMES[k]};
        c.tok = tok_load(path);
        c.thought = tok_load(path);
        uint32_t v = tok_vocab_size(c.thought);
        uint32_t s1 = tok_add_special_token(c.thought, "<|startthought|>");
        uint32_t s2 = tok_add_special_token(c.thought, "<|endthought|>");
        CHECK(s1 == v && s2 == v + 1, "%s: thought tokens got ids %u %u, want %u %u", NAMES[k], s1, s2, v, v + 1);
        CHECK(tok_add_special_token(c.thought, "<|endthought|>") == s2, "%s: re-adding a token changed its id", NAMES[k]);
        char* saved = xsprintf("/tmp/qstar_tok_saved_%d.json", (int)getpid());
        tok_save(c.thought, saved);
        tok_free(c.thought);
        c.thought = tok_load(saved);
        CHECK(tok_vocab_size(c.thought) == v + 2, "%s: saved tokenizer has vocab %u, want %u", NAMES[k],
              tok_vocab_size(c.thought), v + 2);
        CHECK(tok_token_to_id(c.thought, "<|endthought|>") == (int64_t)s2, "%s: saved thought token id", NAMES[k]);
        unlink(saved);
        free(saved);
        char* pp = pairs_copy(path);
        c.pairs = tok_load(pp);
        unlink(pp);
        free(pp);
        each_line(exp, check_row, &c);
        printf("%-11s %d texts, %d lossless round trips, vocab %u, bos %lld, eos %lld\n", NAMES[k], c.rows,
               c.roundtrips, tok_vocab_size(c.tok), (long long)tok_bos_id(c.tok), (long long)tok_eos_id(c.tok));
        CHECK(c.rows > 50, "%s: too few test rows (%d)", NAMES[k], c.rows);
        tok_free(c.tok), tok_free(c.thought), tok_free(c.pairs);
        free(path), free(exp);
    }
    // Token <-> id and special ids.
    Tokenizer* t = tok_load("data/tokenizers/mistral.json");
    CHECK(tok_bos_id(t) == 1 && tok_eos_id(t) == 2, "mistral bos/eos %lld %lld", (long long)tok_bos_id(t),
          (long long)tok_eos_id(t));
    CHECK(tok_token_to_id(t, "<0x0A>") == 3 + 10, "byte token id");
    CHECK(!strcmp(tok_id_to_token(t, 1), "<s>"), "id_to_token(1)");
    CHECK(tok_token_to_id(t, "no such token") == -1, "missing token");
    CHECK(tok_id_to_token(t, 1u << 30) == NULL, "id out of range");
    tok_free(t);
    t = tok_load("data/tokenizers/llama3.json");
    CHECK(tok_eos_id(t) == tok_token_to_id(t, "<|end_of_text|>"), "llama3 eos");
    CHECK(tok_bos_id(t) == tok_token_to_id(t, "<|begin_of_text|>"), "llama3 bos");
    // Making an existing vocab token special keeps its id and matches it before BPE.
    {
        char* w = xstrdup(tok_id_to_token(t, 1500));
        uint32_t v = tok_vocab_size(t);
        CHECK(tok_add_special_token(t, w) == 1500 && tok_vocab_size(t) == v, "vocab token made special");
        char* text = xsprintf("x%sy", w);
        TokIds ids = {0};
        tok_encode(t, text, strlen(text), 0, &ids);
        CHECK(ids.n == 3 && ids.ids[1] == 1500, "special vocab token not matched before BPE (%zu ids)", ids.n);
        free(ids.ids), free(text), free(w);
    }
    tok_free(t);
    // UTF-8 validation.
    CHECK(tok_utf8_check("ok \xE2\x96\x81", 6) == 6, "valid utf-8");
    CHECK(tok_utf8_check("ab\xC3", 3) == 2, "truncated utf-8");
    CHECK(tok_utf8_check("a\xED\xA0\x80", 4) == 1, "surrogate");
    CHECK(tok_utf8_check("\xC0\xAF", 2) == 0, "overlong");
}

typedef struct {
    Tokenizer* t;
    int special;
} Drv;

static void drv_encode(const cJSON* line, void* arg) {
    Drv* d = arg;
    const char* s = cJSON_IsString(line) ? line->valuestring : cJSON_GetObjectItem(line, "text")->valuestring;
    TokIds ids = {0};
    tok_encode(d->t, s, strlen(s), d->special, &ids);
    putchar('[');
    for (size_t i = 0; i < ids.n; i++) printf("%s%u", i ? ", " : "", ids.ids[i]);
    printf("]\n");
    free(ids.ids);
}

static void drv_decode(const cJSON* line, void* arg) {
    Drv* d = arg;
    size_t n = (size_t)cJSON_GetArraySize(line), i = 0, len;
    uint32_t* ids = xmalloc((n + 1) * sizeof(uint32_t));
    const cJSON* c;
    cJSON_ArrayForEach(c, line) ids[i++] = (uint32_t)c->valuedouble;
    char* s = tok_decode(d->t, ids, n, 0, &len);
    cJSON* js = cJSON_CreateString(s);
    char* out = cJSON_PrintUnformatted(js);
    printf("%s\n", out);
    free(out), cJSON_Delete(js), free(s), free(ids);
}

int main(int argc, char** argv) {
    if (argc >= 4 && (!strcmp(argv[1], "--encode") || !strcmp(argv[1], "--decode"))) {
        Drv d = {tok_load(argv[2]), argc >= 5 && !strcmp(argv[4], "--special")};
        each_line(argv[3], !strcmp(argv[1], "--encode") ? drv_encode : drv_decode, &d);
        tok_free(d.t);
        return 0;
    }
    const char* root = getenv("QSTAR_ROOT");
    if (root && chdir(root)) fatal("%s: cannot chdir", root);
    run_reference_tests();
    return test_summary();
}
