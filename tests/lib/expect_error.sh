# Sourced by the bad-input suites (test_bad_input, test_bad_counts, test_bad_jsonl); the caller sets
# work (a scratch folder) and pass/fail counters.
# expect_error NAME NEEDLES CMD...: CMD must fail with exit status 1 and one stderr line
# "qstar: error: ..." holding every line of NEEDLES (a line "!TEXT": TEXT must not appear). selftrain's
# progress lines ("selftrain: ...", indented lines) are not errors and are left out of the count. CMD
# runs with no input, a program killed after 60 s (a hang is a failure, not a stuck suite), and under
# EXPECT_VM_LIMIT KiB of address space when the caller sets it (a count that would allocate without
# bound then fails fast instead of swapping).
expect_error() {
  local name=$1 needle=$2; shift 2
  # a shell function as CMD (a caller's wrapper with limits of its own) runs as it is: timeout runs programs
  (if [ -n "${EXPECT_VM_LIMIT:-}" ]; then ulimit -v "$EXPECT_VM_LIMIT"; fi
   if declare -F "$1" > /dev/null; then "$@"; else exec timeout -s KILL 60 "$@"; fi) \
    > "$work/out.txt" 2> "$work/err.txt" < /dev/null; local rc=$?
  grep -v '^selftrain: \|^  ' "$work/err.txt" > "$work/err1.txt"
  local lines; lines=$(wc -l < "$work/err1.txt")
  local found=1 n
  while IFS= read -r n; do
    if [ "${n:0:1}" = "!" ]; then grep -qF -- "${n:1}" "$work/err1.txt" && found=0
    else grep -qF -- "$n" "$work/err1.txt" || found=0; fi
  done <<< "$needle"
  if [ $rc -eq 1 ] && [ "$lines" = 1 ] && grep -q '^qstar: error: ' "$work/err1.txt" && [ $found = 1 ]; then
    pass=$((pass+1)); echo "ok   $name: $(cat "$work/err1.txt")"
  else
    fail=$((fail+1)); echo "FAIL $name (exit $rc, $lines stderr lines, want one naming '$needle'):"
    sed 's/^/       /' "$work/err.txt" | head -5
  fi
}
