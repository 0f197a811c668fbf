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

// Removes the run directory path and everything in it, without following a symbolic link (one inside
// is unlinked, its target untouched) and without entering another filesystem mounted inside. A path
// that does not exist is not an error. Returns NULL when done, else a malloc'd one-line message that
// names the path and says why it is (still) there: not a directory, not a qstar run directory, or an
// entry that could not be removed.
char* run_dir_remove(const char* path);

#endif
