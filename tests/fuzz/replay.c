/*
 * Replays a harness's corpus through the ordinary build: every file of the corpus directory (default
 * tests/fuzz/corpus/<harness>, or the directories/files given) is run through the harness's
 * LLVMFuzzerTestOneInput in a child process, so a crash, a sanitizer report, an abort or a hang (60 s) counts as
 * that file's failure. Prints one line per failure and the closing "N passed, N failed".
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/util.h"
#include "tests/fuzz/common.h"

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

#ifndef FUZZ_NAME
#error "FUZZ_NAME: the harness name"
#endif
#define STR2(x) #x
#define STR(x) STR2(x)

static int passed, failed;

static void run_one(const char* path) {
    size_t len;
    char* data = read_file_or_die(path, &len);
    FILE* log = tmpfile();  // the child's stderr: the expected error messages are noise, a report is not
    if (!log) {
        perror("tmpfile");
        exit(2);
    }
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        exit(2);
    }
    if (pid == 0) {
        if (!getenv("FZ_VERBOSE")) {
            dup2(fileno(log), 1);
            dup2(fileno(log), 2);
        }
        fclose(log);  // descriptors the call did not open are checked for leaks
        alarm(60);  // a hang is a failure too
        LLVMFuzzerTestOneInput((const uint8_t*)data, len);
        _exit(0);  // not exit(): the scratch directory's atexit handler belongs to the parent
    }
    int status;
    waitpid(pid, &status, 0);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        passed++;
    } else {
        failed++;
        if (WIFSIGNALED(status)) printf("FAIL %s: signal %d\n", path, WTERMSIG(status));
        else printf("FAIL %s: exit status %d\n", path, WEXITSTATUS(status));
        fseek(log, 0, SEEK_END);
        long end = ftell(log);
        fseek(log, end > 3000 ? end - 3000 : 0, SEEK_SET);
        char buf[3001];
        size_t n = fread(buf, 1, sizeof buf - 1, log);
        buf[n] = 0;
        printf("%s\n", buf);
    }
    fclose(log);
    free(data);
}

static int cmp(const void* a, const void* b) { return strcmp(*(char* const*)a, *(char* const*)b); }

static void run_path(const char* path) {
    struct stat sb;
    if (stat(path, &sb) != 0) {
        printf("FAIL %s: no such corpus\n", path);
        failed++;
        return;
    }
    if (!S_ISDIR(sb.st_mode)) {
        run_one(path);
        return;
    }
    DIR* d = opendir(path);
    char** names = NULL;
    size_t n = 0;
    for (struct dirent* e; d && (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        names = xrealloc(names, n + 1, sizeof(char*));
        names[n++] = xsprintf("%s/%s", path, e->d_name);
    }
    if (d) closedir(d);
    qsort(names, n, sizeof(char*), cmp);
    for (size_t i = 0; i < n; i++) {
        run_one(names[i]);
        free(names[i]);
    }
    free(names);
    if (n == 0) {
        printf("FAIL %s: empty corpus\n", path);
        failed++;
    }
}

int main(int argc, char** argv) {
    fz_init();  // one scratch directory, removed when this process exits
    if (argc > 1)
        for (int i = 1; i < argc; i++) run_path(argv[i]);
    else
        run_path("tests/fuzz/corpus/" STR(FUZZ_NAME));
    printf("fuzz replay %s: corpus inputs without a crash, hang or leak\n", STR(FUZZ_NAME));
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
