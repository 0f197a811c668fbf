#!/usr/bin/env bash
# Help that tells the truth: `qstar --help` names every command main.c dispatches and every method
# `qstar selftrain --method` accepts (both read from the sources, so a new one must be added to the
# help); every command's --help exits 0 with a usage line; `qstar eval --help` points at --task.
set -u
cd "$(dirname "$0")/.."
pass=0; fail=0
ok()  { pass=$((pass+1)); echo "ok   $*"; }
bad() { fail=$((fail+1)); echo "FAIL $*"; }
Q=bin/qstar
help=$($Q --help) || bad "qstar --help exited non-zero"
cmds=$(sed -n 's/.*!strcmp(cmd, "\([a-z]*\)")) return cmd_.*/\1/p' cli/main.c)
[ -n "$cmds" ] || bad "no commands found in cli/main.c"
for c in $cmds; do
  if grep -qE "^  $c " <<< "$help"; then ok "qstar --help lists $c"; else bad "qstar --help does not list $c"; fi
  if out=$($Q "$c" --help 2>&1) && grep -q "usage: qstar $c" <<< "$out"; then ok "qstar $c --help: usage, exit 0"
  else bad "qstar $c --help: $(head -1 <<< "$out")"; fi
done
methods=$(sed -n 's/.*if (!strcmp(s, "\([a-z]*\)")) return METHOD_.*/\1/p' cli/cmd_selftrain.c)
[ -n "$methods" ] || bad "no selftrain methods found in cli/cmd_selftrain.c"
line=$(grep -E "^  selftrain " <<< "$help")
for m in $methods; do
  if grep -qw "$m" <<< "$line"; then ok "qstar --help's selftrain line names --method $m"
  else bad "qstar --help's selftrain line does not name $m: $line"; fi
done
if $Q eval --help 2>&1 | grep -q -- "--task gsm8k|csqa"; then ok "qstar eval --help points at --task"
else bad "qstar eval --help does not mention --task"; fi
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
