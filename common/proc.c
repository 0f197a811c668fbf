/*
 * run_program (proc.h): fork, then execvp in the child with the caller's argument vector. Only the
 * tests and benchmarks run other programs; no argument ever passes through a shell.
 */
#define _GNU_SOURCE
#include "common/proc.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/util.h"

int run_program(char* const argv[], char* const env[], int out_fd, int quiet) {
    // The child's environment is built here, before fork: between fork and exec the child may only make
    // async-signal-safe calls, and setenv/putenv may allocate.
    extern char** environ;
    size_t n = 0, k = 0;
    while (environ[n]) n++;
    while (env && env[k]) k++;
    char** envp = xmalloc(sizeof(char*) * (n + k + 1));
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        int replaced = 0;
        for (size_t j = 0; j < k && !replaced; j++) {
            const char* eq = strchr(env[j], '=');
            size_t len = eq ? (size_t)(eq - env[j]) : strlen(env[j]);
            replaced = !strncmp(environ[i], env[j], len) && environ[i][len] == '=';
        }
        if (!replaced) envp[m++] = environ[i];
    }
    for (size_t j = 0; j < k; j++) envp[m++] = env[j];
    envp[m] = NULL;
    fflush(stdout), fflush(stderr);  // the child would otherwise write our buffered output again
    pid_t pid = fork();
    if (pid < 0) {
        free(envp);
        return -1;
    }
    if (pid == 0) {
        int fd = out_fd >= 0 ? out_fd : quiet ? open("/dev/null", O_WRONLY) : -1;
        if (fd >= 0) {
            dup2(fd, STDOUT_FILENO);
            if (quiet) dup2(fd, STDERR_FILENO);
        }
        execvpe(argv[0], argv, envp);
        _exit(127);  // as a shell says "command not found"
    }
    free(envp);
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) return -1;
    if (WIFEXITED(st)) return WEXITSTATUS(st) == 127 ? -1 : WEXITSTATUS(st);
    return WIFSIGNALED(st) ? 128 + WTERMSIG(st) : -1;
}
