/*
 * Directories that qstar makes and may later remove (selftrain's iteration checkpoints iter_NNN and
 * the .tmp.NAME directories they are assembled in). Removal is done here, in C, never by a shell:
 * a path is user text (--out) and a shell would read quotes, spaces and `;` in it as syntax. A
 * directory is removed only when it is a run directory qstar made (it carries RUN_DIR_MARKER), so
 * that a mistyped --out or a stray name can never delete a tree of the user's.
 */
#ifndef QSTAR_FS_H
#define QSTAR_FS_H

// The marker file written into a run directory as it is created. A dotfile, so that checkpoint
// readers (ours, and Python's that list *.safetensors) never see it; its content names what wrote it.
#define RUN_DIR_MARKER ".qstar-run-dir"

// Creates path (parents too, like mkdir_p) and writes the marker into it. Exits on failure.
void run_dir_create(const char* path);

// 1 when path is a directory qstar may remove (the rule is at its definition), else 0.
int run_dir_is_ours(const char* path);

// Removes path and everything in it, without following a symbolic link (one inside is unlinked, its
// target untouched) and without entering another filesystem mounted inside. A path that does not
// exist is not an error. Returns NULL when done, else a malloc'd one-line message naming the path and
// the entry that could not be removed. No ownership check: for a directory the caller made itself in
// this run (a checkpoint's .tmp.step_N); anything named by the user goes through run_dir_remove.
char* tree_remove(const char* path);

// tree_remove of the run directory path, refused (a message, nothing removed) when path is not a
// directory or not a qstar run directory (run_dir_is_ours).
char* run_dir_remove(const char* path);

#endif
