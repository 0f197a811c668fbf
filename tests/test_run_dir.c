/*
 * Tests for common/fs (run directories) and common/proc (running a program without a shell):
 *  - a marked tree with nested directories, files and symbolic links to a sentinel directory and file
 *    outside it is removed, and the sentinels and what they hold survive;
 *  - an unmarked directory of the user's, a symbolic link to a marked directory, and a plain file are
 *    refused with one message naming the path, and survive;
 *  - names with a newline, quotes, spaces, `;`, `$()`, backticks and a leading '-' are only names:
 *    removed when marked, and no file named after the "command" in them appears;
 *  - a checkpoint directory written before the marker existed (config.json, model.safetensors,
 *    tokenizer.json, an interrupted save's temp file) counts as ours; one with anything else does not;
 *  - tree_remove (a checkpoint's own .tmp/.old directories: no marker asked for) removes an unmarked
 *    tree holding a link to a directory outside, and leaves what the link points to;
 *  - run_program passes arguments as they are, sets the child's environment, reports exit statuses.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fs.h"
#include "common/proc.h"
#include "common/util.h"
#include "tests/check.h"

#define TOP "build/test-work/run_dir"

static void put(const char* dir, const char* name, const char* text) {
    char* p = xsprintf("%s/%s", dir, name);
    write_file_atomic(p, text, strlen(text));
    free(p);
}

static int exists(const char* dir, const char* name) {
    struct stat st;
    char* p = name ? xsprintf("%s/%s", dir, name) : xstrdup(dir);
    int r = lstat(p, &st) == 0;
    free(p);
    return r;
}

// A removed tree: nested directories, files, links out to the sentinels, names with a newline.
static void test_removes_marked_tree(void) {
    const char* sentinel = TOP "/sentinel";
    mkdir_p(sentinel);
    put(sentinel, "keep.txt", "keep");
    const char* v = TOP "/victim";
    run_dir_create(v);
    CHECK(run_dir_is_ours(v), "run_dir_create made a directory run_dir_is_ours does not accept");
    mkdir_p(TOP "/victim/a/b/c");
    put(TOP "/victim/a/b/c", "deep.bin", "x");
    put(TOP "/victim/a", "line\none", "x");
    mkdir_p(TOP "/victim/new\nline dir");
    put(TOP "/victim/new\nline dir", "f", "x");
    CHECK(symlink("../sentinel", TOP "/victim/to_sentinel") == 0, "symlink: %s", strerror(errno));
    CHECK(symlink("../../../sentinel/keep.txt", TOP "/victim/a/b/to_keep") == 0, "symlink: %s", strerror(errno));
    CHECK(symlink("/nonexistent/dangling", TOP "/victim/dangling") == 0, "symlink: %s", strerror(errno));
    char* err = run_dir_remove(v);
    CHECK(err == NULL, "a marked tree was not removed: %s", err ? err : "");
    free(err);
    CHECK(!exists(v, NULL), "%s is still there", v);
    CHECK(exists(sentinel, "keep.txt"), "a file in the directory a symlink inside pointed to was removed");
    char* keep = read_file_maybe(TOP "/sentinel/keep.txt", NULL);
    CHECK(keep && !strcmp(keep, "keep"), "the sentinel file changed");
    free(keep);
}

// Refusals: the directory and what it holds survive; the message is one line naming the path.
static void test_refuses(void) {
    const char* user = TOP "/user dir";
    mkdir_p(user);
    put(user, "thesis.tex", "years of work");
    CHECK(!run_dir_is_ours(user), "an unmarked directory with a user's file counts as ours");
    char* err = run_dir_remove(user);
    CHECK(err && strstr(err, user) && !strchr(err, '\n'), "unmarked directory: no one-line refusal naming it: [%s]",
          err ? err : "(removed)");
    free(err);
    CHECK(exists(user, "thesis.tex"), "an unmarked directory was removed");

    // a checkpoint-looking directory with a subdirectory or another file is not a checkpoint
    const char* odd = TOP "/odd";
    mkdir_p(TOP "/odd/sub");
    put(odd, "config.json", "{}");
    put(odd, "model.safetensors", "x");
    CHECK(!run_dir_is_ours(odd), "an unmarked checkpoint with a subdirectory counts as ours");
    free(run_dir_remove(odd));
    CHECK(exists(odd, "sub"), "an unmarked directory with a subdirectory was removed");
    const char* odd2 = TOP "/odd2";
    mkdir_p(odd2);
    put(odd2, "config.json", "{}");
    put(odd2, "notes.txt", "mine");
    free(run_dir_remove(odd2));
    CHECK(exists(odd2, "notes.txt"), "an unmarked directory with notes.txt was removed");
    // model.safetensors as a symbolic link (to the user's file) is not a checkpoint's file
    const char* odd3 = TOP "/odd3";
    mkdir_p(odd3);
    CHECK(symlink("../user dir/thesis.tex", TOP "/odd3/model.safetensors") == 0, "symlink: %s", strerror(errno));
    CHECK(!run_dir_is_ours(odd3), "an unmarked directory holding a symlink counts as ours");

    // a symbolic link to a marked directory: refused, its target kept
    run_dir_create(TOP "/marked");
    put(TOP "/marked", "f", "x");
    CHECK(symlink("marked", TOP "/link") == 0, "symlink: %s", strerror(errno));
    err = run_dir_remove(TOP "/link");
    CHECK(err != NULL, "a symbolic link to a marked directory was accepted");
    free(err);
    CHECK(exists(TOP "/marked", "f") && exists(TOP "/link", NULL), "a symbolic link's target or the link was removed");

    put(TOP, "plain", "x");
    err = run_dir_remove(TOP "/plain");
    CHECK(err && strstr(err, "plain"), "a plain file was not refused");
    free(err);
    CHECK(exists(TOP, "plain"), "a plain file was removed");

    err = run_dir_remove(TOP "/never-made");
    CHECK(err == NULL, "a path that does not exist is an error: %s", err ? err : "");
    free(err);
}

// Hostile names: the whole name is a path, nothing in it is run or split.
static void test_hostile_names(void) {
    const char* names[] = {"bob's and alice's runs", "x'; touch PWNED; echo '", "$(touch PWNED)", "`touch PWNED`",
                           "new\nline", "-rf", "a;b", "\"quoted\" name"};
    mkdir_p(TOP "/and");
    put(TOP "/and", "keep", "x");
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char* d = xsprintf("%s/%s", TOP, names[i]);
        run_dir_create(d);
        char* inner = xsprintf("%s/%s", d, names[i]);
        mkdir_p(inner);
        put(inner, "x", "x");
        char* err = run_dir_remove(d);
        CHECK(err == NULL && !exists(d, NULL), "[%s] not removed: %s", names[i], err ? err : "still there");
        free(err), free(inner), free(d);
    }
    CHECK(exists(TOP "/and", "keep"), "./and beside \"bob's and alice's runs\" was touched");
    CHECK(!exists(TOP, "PWNED") && !exists(".", "PWNED"), "a name's text was run as a command");
}

// Checkpoints written before the marker: resuming an old run removes them as before.
static void test_legacy_checkpoint(void) {
    const char* d = TOP "/iter_001";
    mkdir_p(d);
    put(d, "config.json", "{}");
    put(d, "model.safetensors", "x");
    put(d, "tokenizer.json", "{}");
    CHECK(run_dir_is_ours(d), "an unmarked checkpoint of the three files does not count as ours");
    char* err = run_dir_remove(d);
    CHECK(err == NULL && !exists(d, NULL), "an unmarked old checkpoint was not removed: %s", err ? err : "");
    free(err);
    const char* t = TOP "/.tmp.iter_002";  // an interrupted save: a temp file, nothing else yet
    mkdir_p(t);
    put(t, "model.safetensors.tmp.4242", "x");
    err = run_dir_remove(t);
    CHECK(err == NULL && !exists(t, NULL), "an interrupted old save was not removed: %s", err ? err : "");
    free(err);
    mkdir_p(t);
    put(t, "model.safetensors.tmp.42x", "x");
    CHECK(!run_dir_is_ours(t), "model.safetensors.tmp.42x counts as an atomic write's temp file");
}

static void test_run_program(void) {
    char* const ok[] = {"sh", "-c", "exit 3", NULL};  // sh as the program under test, not as a wrapper
    CHECK(run_program(ok, NULL, -1, 1) == 3, "exit status not reported");
    // an argument with shell syntax reaches the program as one argument, unexpanded
    char* const echo[] = {"printf", "%s|%s", "x'; touch PWNED; echo '", "$HOME `id`", NULL};
    FILE* f = tmpfile();
    CHECK(f && run_program(echo, NULL, fileno(f), 0) == 0, "printf did not run");
    char buf[128] = {0};
    if (f) {
        rewind(f);
        if (!fgets(buf, sizeof buf, f)) buf[0] = 0;
        fclose(f);
    }
    CHECK(!strcmp(buf, "x'; touch PWNED; echo '|$HOME `id`"), "arguments changed on the way: [%s]", buf);
    CHECK(!exists(".", "PWNED"), "an argument was run as a command");
    char* const env[] = {"QSTAR_RUN_PROGRAM_TEST=yes", NULL};
    char* const test[] = {"sh", "-c", "test \"$QSTAR_RUN_PROGRAM_TEST\" = yes", NULL};
    CHECK(run_program(test, env, -1, 1) == 0, "the child's environment was not set");
    CHECK(getenv("QSTAR_RUN_PROGRAM_TEST") == NULL, "the child's environment leaked into ours");
    char* const none[] = {"qstar-no-such-program", NULL};
    CHECK(run_program(none, NULL, -1, 1) == -1, "a missing program is not -1");
}

// tree_remove, as io/checkpoint.c uses it on its .tmp.step_N/.old.step_N: no marker needed, and a
// link to a directory outside is unlinked, not entered (its old remover followed such links).
static void test_tree_remove(void) {
    const char* outside = TOP "/outside";
    mkdir_p(outside);
    put(outside, "weights.bin", "precious");
    const char* t = TOP "/.old.step_000002";
    mkdir_p(TOP "/.old.step_000002/sub");
    put(TOP "/.old.step_000002/sub", "model.safetensors", "x");
    CHECK(symlink("../outside", TOP "/.old.step_000002/data") == 0, "symlink: %s", strerror(errno));
    char* err = tree_remove(t);
    CHECK(err == NULL && !exists(t, NULL), "an unmarked tree was not removed: %s", err ? err : "still there");
    free(err);
    CHECK(exists(outside, "weights.bin"), "tree_remove followed a link out of the tree and removed its files");
    err = tree_remove(t);
    CHECK(err == NULL, "tree_remove of a path that does not exist: %s", err ? err : "");
    free(err);
}

int main(void) {
    // the test's own work directory is a run directory: a failed earlier run's leftovers go with it
    char* err = run_dir_remove(TOP);
    if (err) fatal("%s", err);
    run_dir_create(TOP);
    test_removes_marked_tree();
    test_refuses();
    test_hostile_names();
    test_legacy_checkpoint();
    test_tree_remove();
    test_run_program();
    return test_summary();
}
