/*
 * Run directories: made with a marker, removed only when marked (fs.h). Removal (tree_remove) walks the tree with
 * nftw(FTW_DEPTH | FTW_PHYS | FTW_MOUNT): children before their directory, a symbolic link reported
 * as a link (and unlinked) rather than followed, and nothing on another filesystem entered. This
 * replaces selftrain's `rm -rf '<path>'` run by a shell (the C library's system), which a quote in
 * --out turned into a command of the user's text.
 */
#define _GNU_SOURCE
#include "common/fs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"

void run_dir_create(const char* path) {
    mkdir_p(path);
    char* m = xsprintf("%s/%s", path, RUN_DIR_MARKER);
    static const char text[] = "a directory qstar made; qstar may remove it\n";
    write_file_atomic(m, text, sizeof text - 1);
    free(m);
}

// The files a selftrain checkpoint holds (st_save_checkpoint), and the temp files their atomic writes
// leave when a save is interrupted ("NAME.tmp.PID", util.c's atomic_open).
static int checkpoint_file_name(const char* name) {
    static const char* const names[] = {"config.json", "model.safetensors", "tokenizer.json"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        size_t n = strlen(names[i]);
        if (strncmp(name, names[i], n)) continue;
        if (!name[n]) return 1;
        if (strncmp(name + n, ".tmp.", 5) || !name[n + 5]) continue;
        const char* d = name + n + 5;
        while (*d >= '0' && *d <= '9') d++;
        if (!*d) return 1;
    }
    return 0;
}

// A directory is ours when it holds the marker. Runs made before the marker existed still have to
// resume (their iter_NNN is removed after the next iteration, an interrupted save's .tmp.NAME is
// cleared), so a directory without the marker also counts when it holds nothing but regular files
// named as a checkpoint's (checkpoint_file_name; none is fine, as an interrupted save may have written
// none yet): removing that can only lose a qstar checkpoint, never a user's file or a subtree.
int run_dir_is_ours(const char* path) {
    struct stat st;
    if (lstat(path, &st) != 0 || !S_ISDIR(st.st_mode)) return 0;
    int dfd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0) return 0;
    if (fstatat(dfd, RUN_DIR_MARKER, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode)) {
        close(dfd);
        return 1;
    }
    DIR* d = fdopendir(dfd);
    if (!d) {
        close(dfd);
        return 0;
    }
    int ours = 1;
    struct dirent* e;
    while (ours && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        ours = checkpoint_file_name(e->d_name) && fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
               S_ISREG(st.st_mode);
    }
    closedir(d);  // closes dfd
    return ours;
}

// nftw's callback has no user argument: the first failure is kept here (one removal at a time).
static char* rm_failed_path;
static int rm_failed_errno;

static int rm_entry(const char* p, const struct stat* sb, int type, struct FTW* ftw) {
    (void)sb;
    // The top directory's marker goes last, just before the directory itself: a removal that fails
    // halfway (a file it may not delete) leaves a directory that is still marked, so that the next
    // attempt may remove the rest instead of refusing a tree that lost its marker.
    if (ftw->level == 1 && type == FTW_F && !strcmp(p + ftw->base, RUN_DIR_MARKER)) return 0;
    if (ftw->level == 0 && type == FTW_DP) {
        char* m = xsprintf("%s/%s", p, RUN_DIR_MARKER);
        int gone = unlink(m) == 0 || errno == ENOENT;
        free(m);
        if (!gone) {
            rm_failed_errno = errno;
            rm_failed_path = xsprintf("%s/%s", p, RUN_DIR_MARKER);
            return 1;
        }
    }
    // FTW_DP: a directory whose children are gone; FTW_DNR: one that could not be read (rmdir then
    // fails and says so); anything else, a symbolic link included, is unlinked
    int rc = type == FTW_DP || type == FTW_DNR ? rmdir(p) : unlink(p);
    if (rc != 0 && errno != ENOENT) {
        rm_failed_errno = errno;
        rm_failed_path = xstrdup(p);
        return 1;
    }
    return 0;
}

char* tree_remove(const char* path) {
    struct stat st;
    if (lstat(path, &st) != 0) return errno == ENOENT ? NULL : xsprintf("%s: cannot remove: %s", path, strerror(errno));
    rm_failed_path = NULL;
    int rc = nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
    if (rm_failed_path) {
        char* msg = xsprintf("%s: cannot remove %s: %s", path, rm_failed_path, strerror(rm_failed_errno));
        free(rm_failed_path);
        rm_failed_path = NULL;
        return msg;
    }
    if (rc != 0) return xsprintf("%s: cannot remove: %s", path, strerror(errno));
    // FTW_MOUNT leaves another filesystem's entries unvisited: their directory is then still here
    if (lstat(path, &st) == 0) return xsprintf("%s: cannot remove: something in it is on another filesystem", path);
    return NULL;
}

char* run_dir_remove(const char* path) {
    struct stat st;
    if (lstat(path, &st) != 0) {
        if (errno == ENOENT) return NULL;
        return xsprintf("%s: cannot remove: %s", path, strerror(errno));
    }
    if (!S_ISDIR(st.st_mode)) return xsprintf("%s: not removed: not a directory (a run directory was expected)", path);
    if (!run_dir_is_ours(path))
        return xsprintf("%s: not removed: not a directory qstar made (no %s marker, and files other than a "
                        "checkpoint's)",
                        path, RUN_DIR_MARKER);
    return tree_remove(path);
}
