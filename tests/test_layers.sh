#!/usr/bin/env bash
# The tree's floors only look down: kernels/, model/ and common/ never include host/ or tests/ (the
# driver and the test tree sit above them). A violation is listed with its file and line.
set -u
cd "$(dirname "$0")/.."
pass=0; fail=0
up=$(git grep -n -E '#include +"(host|tests)/' -- kernels model common 2>/dev/null)
if [ -z "$up" ]; then pass=$((pass+1)); echo "ok   kernels/, model/, common/ include nothing from host/ or tests/"
else fail=$((fail+1)); echo "FAIL upward includes:"; echo "$up"; fi
# common/ is the ground floor: it includes nothing of the project's above it either
up=$(git grep -n -E '#include +"(kernels|model)/' -- common 2>/dev/null)
if [ -z "$up" ]; then pass=$((pass+1)); echo "ok   common/ includes nothing from kernels/ or model/"
else fail=$((fail+1)); echo "FAIL common/ looks up:"; echo "$up"; fi
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
