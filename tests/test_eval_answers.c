/*
 * The answer extraction and majority vote of `qstar eval --metric cot-maj` (eval/task_accuracy.h) on
 * constructed cases, against what the reference's zero-shotcot-eval.py does: the first integer of
 * the text with commas removed (re.search(r'\d+', s.replace(',', ''))), and Counter.most_common(1)
 * (ties to the answer seen first; "no number" is a candidate like any other).
 */
#include <string.h>

#include "eval/task_accuracy.h"
#include "tests/check.h"

static void first_int(const char* s, int want_found, const char* want) {
    char out[64];
    const int found = eval_first_integer(s, out, sizeof out);
    CHECK(found == want_found && (!found || !strcmp(out, want)), "first integer of \"%s\": got %d \"%s\", want %d \"%s\"",
          s, found, out, want_found, want);
}

static void majority(const char* const* a, int n, int want) {
    const int got = eval_majority(a, n);
    CHECK(got == want, "majority: got vote %d, want %d", got, want);
}

int main(void) {
    first_int(" 72.", 1, "72");
    first_int(" $1,250 in total", 1, "1250");
    first_int("1,000,000", 1, "1000000");
    first_int(" -5 degrees", 1, "5");           // the sign is not read (the reference's \d+)
    first_int(" 3.75 dollars", 1, "3");         // nor the decimal part
    first_int(" 007 agents", 1, "7");           // int("007") == 7
    first_int(" 0", 1, "0");
    first_int(" 000", 1, "0");
    first_int(" twelve, or 12 and 13", 1, "12");
    first_int(" none", 0, "");
    first_int("", 0, "");
    first_int(",5", 1, "5");
    first_int(" 12345678901234567890123 big", 1, "12345678901234567890123");  // no overflow

    const char* a1[] = {"5", "7", "7", "5", NULL};
    majority(a1, 5, 0);  // 5 and 7 tie at two: the one seen first
    const char* a2[] = {NULL, NULL, "3", "3", "3"};
    majority(a2, 5, 2);
    const char* a3[] = {NULL, NULL, "3", NULL};
    majority(a3, 4, 0);  // "no number" wins: the question counts as wrong
    const char* a4[] = {"9"};
    majority(a4, 1, 0);
    const char* a5[] = {"1", "2", "3", "2"};
    majority(a5, 4, 1);
    return test_summary();
}
