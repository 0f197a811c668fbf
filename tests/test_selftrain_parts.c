/*
 * The selftrain pieces that need no model (selftrain/selftrain_common.c, tasks/star_tasks.c as RFT uses it):
 * RFT's per-problem rejection and selection (right answer, right calculator annotations, one path per
 * equation list with the edit-distance replacement) on seeded GSM8K-style completions against the
 * independent tests/ref/rft_reference.py; the majority vote (ties, unextractable answers, normalised
 * numbers); where a completion ends, also after a rollout's prefix; metrics.jsonl rewinding on resume
 * (by the state's line count, and by iteration for states written before it).
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/proc.h"
#include "common/util.h"
#include "selftrain/selftrain.h"
#include "tests/check.h"

static uint64_t rng = 777;
static uint32_t rnd(uint32_t n) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng >> 33) % n;
}

// ---- RFT selection against Python ---------------------------------------------------------------------

enum { NCASE = 120, MAXC = 8 };
static char texts[NCASE][MAXC][512];
static int ncomp[NCASE], gold[NCASE];

// A completion: 0-3 annotated steps drawn from a small per-case pool (so equation lists repeat), some
// annotations wrong, filler words that vary (so edit distances differ), and a final answer that is the
// gold one written in several ways, or another number, or missing.
static void make_completion(char* out, int g, const int pool[4][3]) {
    static const char* fill[] = {"so ", "then we get ", "which makes ", "in total ", "hence ", ""};
    out[0] = 0;
    const int steps = (int)rnd(4);
    for (int s = 0; s < steps; s++) {
        const int* e = pool[rnd(4)];
        const int wrong = rnd(8) == 0;
        char buf[96];
        snprintf(buf, sizeof buf, "%s%d %s %d = <<%d%s%d=%d>>%d\n", fill[rnd(6)], e[0], e[2] ? "*" : "+", e[1], e[0],
                 e[2] ? "*" : "+", e[1], (e[2] ? e[0] * e[1] : e[0] + e[1]) + wrong, e[2] ? e[0] * e[1] : e[0] + e[1]);
        strcat(out, buf);
    }
    char ans[48];
    switch (rnd(7)) {
        case 0: snprintf(ans, sizeof ans, "#### %d", g + 1); break;
        case 1: snprintf(ans, sizeof ans, "#### $%d", g); break;
        case 2: snprintf(ans, sizeof ans, "#### %d.0", g); break;
        case 3: snprintf(ans, sizeof ans, "the answer is %d", g); break;  // no ####: not an answer
        default: snprintf(ans, sizeof ans, "#### %d", g);
    }
    strcat(out, ans);
}

static void test_rft_against_python(void) {
    cJSON* in = cJSON_CreateArray();
    for (int c = 0; c < NCASE; c++) {
        gold[c] = 1 + (int)rnd(3000);
        int pool[4][3];
        for (int k = 0; k < 4; k++) pool[k][0] = 1 + (int)rnd(40), pool[k][1] = 1 + (int)rnd(40), pool[k][2] = (int)rnd(2);
        ncomp[c] = 1 + (int)rnd(MAXC);
        cJSON* o = cJSON_CreateObject();
        char g[16];
        snprintf(g, sizeof g, "%d", gold[c]);
        cJSON_AddStringToObject(o, "gold", g);
        cJSON* a = cJSON_AddArrayToObject(o, "completions");
        for (int i = 0; i < ncomp[c]; i++) {
            make_completion(texts[c][i], gold[c], (const int(*)[3])pool);
            cJSON_AddItemToArray(a, cJSON_CreateString(texts[c][i]));
        }
        cJSON_AddItemToArray(in, o);
    }
    mkdir_p("build/test-work/selftrain_parts");
    char* t = cJSON_PrintUnformatted(in);
    write_file_atomic("build/test-work/selftrain_parts/rft_in.json", t, strlen(t));
    free(t);
    cJSON_Delete(in);
    const char* py = file_exists(".venv/bin/python") ? ".venv/bin/python" : "python3";
    char* const argv[] = {(char*)py, "tests/ref/rft_reference.py", "build/test-work/selftrain_parts/rft_in.json",
                          "build/test-work/selftrain_parts/rft_out.json", NULL};
    const int rc = run_program(argv, NULL, -1, 0);
    CHECK(rc == 0, "rft_reference.py failed (%d)", rc);
    if (rc) return;
    size_t len;
    char* ot = read_file_or_die("build/test-work/selftrain_parts/rft_out.json", &len);
    cJSON* out = cJSON_Parse(ot);
    free(ot);
    int bad = 0, kept_total = 0, correct_total = 0, dup_keys = 0, replaced = 0;
    for (int c = 0; c < NCASE; c++) {
        const char* ptr[MAXC];
        for (int i = 0; i < ncomp[c]; i++) ptr[i] = texts[c][i];
        char g[16];
        snprintf(g, sizeof g, "%d", gold[c]);
        int kept[MAXC], nc = -1;
        const int nk = star_rft_select(STAR_TASK_GSM8K, ptr, ncomp[c], g, kept, &nc);
        const cJSON* r = cJSON_GetArrayItem(out, c);
        const cJSON* rk = cJSON_GetObjectItem(r, "kept");
        int diff = nc != cJSON_GetObjectItem(r, "correct")->valueint || nk != cJSON_GetArraySize(rk);
        for (int i = 0; i < nk && !diff; i++) {
            diff |= kept[i] != cJSON_GetArrayItem(rk, i)->valueint;
            replaced += i > 0 && kept[i] < kept[i - 1];
        }
        if (diff) {
            bad++;
            printf("case %d (gold %d): qstar %d correct, kept", c, gold[c], nc);
            for (int i = 0; i < nk; i++) printf(" %d", kept[i]);
            printf("; python %s\n", cJSON_PrintUnformatted(r));
        }
        kept_total += nk, correct_total += nc, dup_keys += nc - nk;
    }
    cJSON_Delete(out);
    CHECK(bad == 0, "%d of %d RFT selections differ from rft_reference.py", bad, NCASE);
    // the cases exercise every branch: rejections, duplicate equation lists, replacements
    CHECK(correct_total > 50 && dup_keys > 20 && replaced > 0, "coverage: %d correct, %d duplicates dropped, %d replaced",
          correct_total, dup_keys, replaced);
    printf("rft selection: %d correct completions, %d distinct paths kept, %d duplicates dropped (%d replacements)\n",
           correct_total, kept_total, dup_keys, replaced);
}

// ---- majority vote ------------------------------------------------------------------------------------

static void test_majority(void) {
    const char* a[] = {"x\n#### 5", "#### 7", "y\n#### 7", "no answer", "#### 5.0"};
    CHECK(st_majority_correct(STAR_TASK_GSM8K, a, 5, "5"), "tie 5:2 vs 7:2 goes to the first answer (5)");
    CHECK(!st_majority_correct(STAR_TASK_GSM8K, a, 5, "7"), "7 is not the majority on a tie it reached second");
    const char* b[] = {"#### 7", "#### $1,000", "#### 1000", "nothing", "nothing", "nothing"};
    CHECK(st_majority_correct(STAR_TASK_GSM8K, b, 6, "1000"), "normalised numbers vote together; no-answers do not vote");
    const char* c[] = {"nothing", "at all"};
    CHECK(!st_majority_correct(STAR_TASK_GSM8K, c, 2, "5"), "no extractable answer is wrong");
    const char* d[] = {"\n<scratch>\n</scratch>\n8 8 3\n", "\n</scratch>\n8 8 4\n", "\n</scratch>\n8 8 3\n"};
    CHECK(st_majority_correct(STAR_TASK_ARITH, d, 3, "8 8 3") && !st_majority_correct(STAR_TASK_ARITH, d, 3, "8 8 4"),
          "arith majority");
    CHECK(!st_majority_correct(STAR_TASK_ARITH, d, 0, "8 8 3"), "no candidates");
}

// ---- where a completion ends --------------------------------------------------------------------------

static void check_end(int task, const char* text, int want) {
    const char* e = st_completion_end(task, text);
    const int got = e ? (int)(e - text) : -1;
    CHECK(got == want, "completion_end(%s) = %d, want %d", text, got, want);
}

static void test_completion_end(void) {
    check_end(STAR_TASK_GSM8K, " 2+3=5\n#### 5\nQ: next", 14);
    check_end(STAR_TASK_GSM8K, " 2+3=5\n#### 5", -1);  // the answer line is not finished yet
    check_end(STAR_TASK_GSM8K, " a\n\nQ: b\n#### 5\n", 3);  // a blank line first: the text ends after " a\n"
    check_end(STAR_TASK_ARITH, "\n<scratch>\n</scratch>\n8 8 3\nInput:", 28);
    check_end(STAR_TASK_ARITH, "\n<scratch>\n</scratch>\n8 8", -1);
    check_end(STAR_TASK_ARITH, "\n<scratch>\n1 + 2 , 3", -1);
    // a rollout continues a prefix: its end is judged on prefix ++ continuation (st_generate), so the
    // answer line after a prefix ending in "</scratch>\n" ends it
    const char* prefix = "\n<scratch>\n, 3 C: 0\n</scratch>\n";
    char* all = xsprintf("%s%s", prefix, "3\nmore");
    check_end(STAR_TASK_ARITH, all, (int)strlen(prefix) + 2);
    free(all);
}

// ---- metrics rewinding --------------------------------------------------------------------------------

static void test_metrics_rewind(void) {
    const char* dir = "build/test-work/selftrain_parts/run";
    mkdir_p(dir);
    char* mp = xsprintf("%s/metrics.jsonl", dir);
    const char* lines = "{\"iteration\":1}\n{\"iteration\":2}\n{\"iteration\":2,\"stage\":\"verifier\"}\n";
    write_file_atomic(mp, lines, strlen(lines));
    cJSON* st = cJSON_Parse("{\"iteration\": 2, \"metrics_lines\": 2}");
    st_metrics_rewind(dir, st, 3);
    size_t len;
    char* t = read_file_or_die(mp, &len);
    CHECK(!strcmp(t, "{\"iteration\":1}\n{\"iteration\":2}\n"), "rewound by line count: [%s]", t);
    free(t);
    cJSON_Delete(st);
    // a state written before metrics_lines: the records of iterations before the resumed one
    write_file_atomic(mp, lines, strlen(lines));
    st = cJSON_Parse("{\"iteration\": 1}");
    st_metrics_rewind(dir, st, 2);
    t = read_file_or_die(mp, &len);
    CHECK(!strcmp(t, "{\"iteration\":1}\n"), "rewound by iteration: [%s]", t);
    free(t);
    cJSON_Delete(st);
    // st_write_state counts the lines there are
    cJSON* settings = cJSON_CreateObject();
    st_write_state(dir, 1, NULL, settings);
    char* sp = xsprintf("%s/state.json", dir);
    t = read_file_or_die(sp, &len);
    cJSON* s = cJSON_Parse(t);
    const cJSON* n = cJSON_GetObjectItem(s, "metrics_lines");
    CHECK(cJSON_IsNumber(n) && n->valueint == 1, "state.json counts 1 metrics line");
    free(t), free(sp), free(mp);
    cJSON_Delete(s);
    cJSON_Delete(settings);
}

int main(void) {
    test_rft_against_python();
    test_majority();
    test_completion_end();
    test_metrics_rewind();
    return test_summary();
}
