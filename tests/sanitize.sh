#!/usr/bin/env bash
# make test SANITIZE=1: the whole suite with AddressSanitizer and UndefinedBehaviorSanitizer.
#
# The scripts call bin/qstar and build/tests/* by those paths, so the sanitized build runs in a copy
# of the working tree (build-san/tree: the tracked and untracked files, not the build outputs, with
# .venv and runs/models linked) whose own bin/ and build/ hold the sanitized binaries; the main tree's
# build is untouched. C code: -fsanitize=address,undefined -fno-sanitize-recover=undefined (any UB is
# an error). The emulator's C++ (emu/) is instrumented too (EMU_EXTRA_CXXFLAGS).
#
# LeakSanitizer is on. fatal() exits while the program still holds its buffers (an error exit is not
# a leak): common/util.c turns the leak check off for exits through fatal() only (__lsan_is_turned_off),
# so a test program or command that ends normally is still checked.
#
# Usage: tests/sanitize.sh [FILTER]  (FILTER as for tests/run_all.sh)
set -u
cd "$(dirname "$0")/.."
src=$PWD
tree=build-san/tree
mkdir -p "$tree"
echo "sanitize: copying the working tree to $tree"
# a file is copied only when its content differs, with the time of the copy (not the original's
# mtime, which can be older than an object built from the previous copy: make would keep the object)
git ls-files -z -co --exclude-standard | python3 -c '
import os, shutil, sys
tree = sys.argv[1]
for p in sys.stdin.buffer.read().decode().split("\0"):
    if not p or not os.path.isfile(p): continue
    d = os.path.join(tree, p)
    try:
        if open(p, "rb").read() == open(d, "rb").read(): continue
    except OSError: pass
    os.makedirs(os.path.dirname(d) or ".", exist_ok=True)
    shutil.copyfile(p, d)
    shutil.copymode(p, d)
' "$tree"
[ -d .venv ] && ln -sfn "$src/.venv" "$tree/.venv"
if [ -d runs/models ]; then mkdir -p "$tree/runs"; ln -sfn "$src/runs/models" "$tree/runs/models"; fi
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g"
# exported: suites that run make themselves (test_cuda_bench: make emu-bench) build and link the same way
# -Wno-error: -O1 and the instrumentation change what GCC warns about (format-truncation ranges);
# the ordinary build holds the code to -Werror
export EXTRA_CFLAGS="$SAN -Wno-error" EMU_EXTRA_CXXFLAGS="$SAN -Wno-error" OPT=-O1
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:detect_stack_use_after_return=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
cd "$tree"
echo "sanitize: building (log build-san/tree/build/sanitize-build.log)"
mkdir -p build
if ! make -j2 --no-print-directory all tests > build/sanitize-build.log 2>&1; then
  tail -30 build/sanitize-build.log
  echo "0 passed, 1 failed"
  exit 1
fi
bash tests/run_all.sh "${1:-}"
