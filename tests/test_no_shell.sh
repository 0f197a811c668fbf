#!/usr/bin/env bash
# qstar hands no path or user text to a shell (issue 28: `rm -rf '<--out>'` through system() deleted
# ./and and ran a command hidden in --out). No C, C++ or CUDA file of the tree calls system() or
# popen(); directories are removed with common/fs.h's run_dir_remove and programs run with
# common/proc.h's run_program (fork + execvp, an argument vector). A call is listed with file and line.
set -u
cd "$(dirname "$0")/.."
pass=0; fail=0
# a call: the name as a whole word, then "(" (__threadfence_system( is another function)
calls=$(git grep -n -E '(^|[^A-Za-z0-9_])(system|popen)[[:space:]]*\(' -- '*.c' '*.h' '*.cu' '*.cuh' '*.cpp' 2>&1)
if [ -z "$calls" ]; then pass=$((pass+1)); echo "ok   no system() or popen() in the tree"
else fail=$((fail+1)); echo "FAIL system()/popen() calls (use run_dir_remove or run_program):"; echo "$calls"; fi
# the check itself finds a call: a guard that matched nothing at all would pass forever
probe=$(printf 'int f(void) { return system ("rm -rf x") + !popen("ls", "r"); }\n__threadfence_system();\n' |
        grep -c -E '(^|[^A-Za-z0-9_])(system|popen)[[:space:]]*\(')
if [ "$probe" = 1 ]; then pass=$((pass+1)); echo "ok   the pattern finds a call and skips __threadfence_system()"
else fail=$((fail+1)); echo "FAIL the pattern matched $probe of the probe's lines (want 1)"; fi
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
