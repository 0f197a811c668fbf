/*
 * Running another program (the Python reference scripts of the tests, the tokenizers benchmark) by
 * fork and execvp with an argument vector. There is no shell in between, so a path in an argument is
 * only ever a path: qstar never builds a command line for a shell (the C library's system, popen).
 */
#ifndef QSTAR_PROC_H
#define QSTAR_PROC_H

// Runs argv[0] (searched in PATH) with argv (NULL-terminated) and waits for it. env, when not NULL,
// is a NULL-terminated list of "NAME=VALUE" set in the child only. out_fd >= 0 becomes the child's
// stdout (and its stderr too when quiet); quiet alone sends both to /dev/null. Returns the exit
// status, 128 + the signal number when it was killed, or -1 when it could not be started.
int run_program(char* const argv[], char* const env[], int out_fd, int quiet);

#endif
