#!/usr/bin/env bash
# selftrain with hostile names (issue 28): --out and --model paths holding quotes, spaces, `;`, `$()`,
# backticks, a newline or a leading '-' are only paths. Each tiny 2-iteration run (1-digit addition, a
# 2-step model, seconds) must finish, end with iter_002/ and no iter_001/ (removed as before, without
# --keep-all), and leave the sentinels beside it alone: the old `rm -rf '<out>/...'` through a shell
# deleted ./and for "bob's and alice's runs" and ran `touch PWNED` for "x'; touch PWNED; echo '".
# Also: a run from before the marker (.qstar-run-dir) resumes and removes its old checkpoint; a
# directory of the user's where a checkpoint is to go is refused with one line and kept.
set -u
cd "$(dirname "$0")/.."
pass=0; fail=0
ok()  { pass=$((pass+1)); echo "ok   $*"; }
bad() { fail=$((fail+1)); echo "FAIL $*"; }
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
root=$PWD
Q=$root/bin/qstar
work=build/test-work/selftrain_hostile; rm -rf "$work"; mkdir -p "$work/cwd"
work=$root/$work
tok=$root/data/corpus/tokenizer.json

$Q selftrain --make-arith "$work/t.jsonl" --make-n 6 --digits 1-1 --seed 4 2>/dev/null
python3 tests/lib/make_shard.py "$work/d.bin" --random 1000 --tokens 20000 --seed 5
$Q train --config configs/tiny.json --tokenizer "$tok" --data "$work/d.bin" --out "$work/base" --steps 2 --batch 2 \
   --seq 32 > "$work/base.log" 2>&1 || bad "base model training failed: $(tail -1 "$work/base.log")"
# the starting model under a hostile name too
model="$work/cwd/model's; \$(touch PWNED) \`touch PWNED\` dir"
mkdir -p "$model" && cp "$work/base/step_000002/"*.json "$work/base/step_000002/model.safetensors" "$model/"
[ -f "$model/tokenizer.json" ] || cp "$tok" "$model/tokenizer.json"
tiny=(--method star --model "$model" --task arith --train "$work/t.jsonl" --test "$work/t.jsonl" --start-steps 2
      --grow 1 --batch 6 --seq 72 --max-tokens 8 --shots 0 --lr 1e-3 --warmup 0)

# the sentinels: what the old shell command deleted or created, relative to the working directory
cd "$work/cwd"
mkdir -p and alice && echo keep > and/data.txt && echo keep > alice/data.txt
sentinels_ok() { [ -f and/data.txt ] && [ -f alice/data.txt ] && [ -z "$(find "$work" -name 'PWNED*' -print -quit)" ]; }

nl=$'\n'
names=("bob's and alice's runs" "x'; touch PWNED; echo '" "\$(touch PWNED)" "\`touch PWNED\`" "new${nl}line" "-rf" \
       "a;b & c | d > e")
for i in "${!names[@]}"; do
  out=${names[$i]}
  log="$work/run$i.log"
  method=star; [ "$i" = 1 ] && method=stepdpo  # per-step DPO removes its previous iteration by its own code
  $Q selftrain "${tiny[@]}" --method $method --samples 2 --rollouts 2 --iterations 2 --out "$out" > "$log" 2>&1; rc=$?
  show=$(printf '%q' "$out")
  if [ $rc = 0 ] && [ -f "$out/iter_002/model.safetensors" ] && [ ! -e "$out/iter_001" ] && \
     [ -z "$(find "./$out" -maxdepth 1 -name '.tmp.*' -print -quit)" ] && ! grep -q warning "$log"; then
    ok "$method --out $show: finished, iter_001 removed, iter_002 kept"
  else bad "$method --out $show: rc $rc; $(ls -A -- "$out" 2>&1 | tr '\n' ' '); $(tail -2 "$log")"; fi
  if sentinels_ok; then ok "--out $show: ./and, ./alice untouched, no PWNED"
  else bad "--out $show: a sentinel changed: $(ls -A | tr '\n' ' ')"; fi
done

# a run made before the marker existed: resumed, it removes its unmarked iter_001 as before
$Q selftrain "${tiny[@]}" --iterations 1 --out "old run's" > "$work/old1.log" 2>&1 || bad "old run: $(tail -1 "$work/old1.log")"
rm -f "old run's/iter_001/.qstar-run-dir"
$Q selftrain --resume "old run's" --iterations 2 > "$work/old2.log" 2>&1; rc=$?
if [ $rc = 0 ] && [ -f "old run's/iter_002/model.safetensors" ] && [ ! -e "old run's/iter_001" ] && ! grep -q warning "$work/old2.log"
then ok "a run from before the marker resumes and removes its old iter_001"
else bad "old run resumed: rc $rc; $(ls -A -- "old run's" | tr '\n' ' '); $(tail -2 "$work/old2.log")"; fi

# a directory of the user's where iter_001 is to be written is refused, not deleted
mkdir -p "mine/iter_001" && echo "years of work" > "mine/iter_001/thesis.tex"
err=$($Q selftrain "${tiny[@]}" --iterations 1 --out mine 2>&1 >/dev/null); rc=$?
last=$(echo "$err" | grep 'qstar: error' )
if [ $rc = 1 ] && [ -f mine/iter_001/thesis.tex ] && [ "$(echo "$last" | wc -l)" = 1 ] && echo "$last" | grep -q 'mine/iter_001'
then ok "a user's directory in a checkpoint's place: refused with one line, kept"
else bad "user's directory: rc $rc, [$last], $(ls -A mine/iter_001)"; fi
sentinels_ok && ok "sentinels intact at the end" || bad "sentinels changed at the end"

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
