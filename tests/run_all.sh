#!/usr/bin/env bash
# Runs every test suite and prints the closing line "N passed, N failed".
# A suite is a built C test (build/tests/test_*) or a script (tests/test_*.sh). Each suite prints
# its own "N passed, N failed" line and exits non-zero on any failure; this runner adds them up.
# A suite that crashes or prints no closing line counts as one failure.
set -u
cd "$(dirname "$0")/.."
export QSTAR_ROOT="$PWD"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
filter="${1:-}"
total_pass=0; total_fail=0; failed_suites=()
log_dir=build/test-logs; mkdir -p "$log_dir"

suites=()
for t in build/tests/test_*; do [ -x "$t" ] && [ -f "$t" ] && suites+=("$t"); done
for t in tests/test_*.sh; do [ -f "$t" ] && suites+=("$t"); done

for s in "${suites[@]}"; do
  name=$(basename "$s"); name=${name%.sh}
  [ -n "$filter" ] && [[ "$name" != *"$filter"* ]] && continue
  start=$(date +%s)
  log="$log_dir/$name.log"
  if [[ "$s" == *.sh ]]; then bash "$s" >"$log" 2>&1; rc=$?; else "$s" >"$log" 2>&1; rc=$?; fi
  line=$(grep -E '^([A-Za-z_-]+: )?[0-9]+ passed, [0-9]+ failed' "$log" | tail -1)
  p=0; f=0
  if [ -n "$line" ]; then
    p=$(echo "$line" | sed -E 's/^([A-Za-z_-]+: )?([0-9]+) passed, ([0-9]+) failed.*/\2/')
    f=$(echo "$line" | sed -E 's/^([A-Za-z_-]+: )?([0-9]+) passed, ([0-9]+) failed.*/\3/')
  fi
  if [ "$rc" != 0 ] && [ "$f" = 0 ]; then f=1; fi
  [ -z "$line" ] && [ "$f" = 0 ] && f=1
  total_pass=$((total_pass + p)); total_fail=$((total_fail + f))
  secs=$(( $(date +%s) - start ))
  if [ "$f" = 0 ]; then
    printf '  ok    %-28s %4d passed  (%ds)\n' "$name" "$p" "$secs"
  else
    printf '  FAIL  %-28s %4d passed, %d failed  (%ds, log: %s)\n' "$name" "$p" "$f" "$secs" "$log"
    grep -E 'FAIL|error' "$log" | head -20 | sed 's/^/        /'
    failed_suites+=("$name")
  fi
done
echo "${total_pass} passed, ${total_fail} failed"
[ "$total_fail" = 0 ]
