#!/usr/bin/env bash
# Crash safety under SIGKILL. A training run of the tiny preset (a checkpoint after every step) is
# killed with kill -9 at 20 random moments and resumed each time (from scratch while no checkpoint
# exists). After every kill:
#   - every step_* directory is complete: model.safetensors and optimizer.safetensors whose headers
#     parse and whose sizes are exactly what the headers declare, config.json and state.json that
#     parse, state.json's step = the directory's, and the weights and moments bitwise those that an
#     uninterrupted run saved at that step (sha256 against a reference run);
#   - the next resume announces the newest step_* directory.
# At the end the resumed run's final checkpoint is bitwise the uninterrupted run's. Kills land at
# random: each is classified by what the run was doing (inside a checkpoint write: a .tmp.step_N
# directory was left; before its first step; between steps) and the counts are printed.
# KILL9_SEED fixes the delays (the moments still depend on the machine's timing); one thread, so
# the step is quick and the runs deterministic. Verified checkpoints other than the newest are
# deleted as the test goes, to keep the disk use to a few checkpoints.
set -u
cd "$(dirname "$0")/.."
pass=0; fail=0
ok()  { pass=$((pass+1)); echo "ok   $*"; }
bad() { fail=$((fail+1)); echo "FAIL $*"; }
work=build/test-work/kill9; rm -rf "$work"; mkdir -p "$work"
Q=bin/qstar
export OMP_NUM_THREADS=1
KILLS=${KILL9_KILLS:-20}
STEPS=${KILL9_STEPS:-40}
seed=${KILL9_SEED:-$(( $(date +%s) % 100000 ))}
echo "kill9: seed $seed (KILL9_SEED=$seed reproduces the delays), $KILLS kills, $STEPS steps"
RANDOM=$seed

python3 tests/lib/make_shard.py "$work/d.bin" --random 1024 --tokens 20000 --seed 5
common=(--config configs/tiny.json --data "$work/d.bin" --steps "$STEPS" --batch 2 --seq 32 --lr 1e-3 --warmup 3
        --save-every 1 --log-every 1)

# the uninterrupted reference: a sha256 per step of its weights and moments
t0=$(date +%s.%N)
if ! $Q train "${common[@]}" --out "$work/ref" > "$work/ref.log" 2>&1; then
  bad "uninterrupted run failed: $(tail -1 "$work/ref.log")"; echo "$pass passed, $fail failed"; exit 1
fi
t_ref=$(python3 -c "import sys; print('%.2f' % ($(date +%s.%N) - $t0))")
(cd "$work/ref" && for d in step_*; do
   echo "$d $(sha256sum "$d/model.safetensors" | cut -c1-64) $(sha256sum "$d/optimizer.safetensors" | cut -c1-64)"; done) > "$work/ref.sha"
cp -r "$work/ref/step_$(printf %06d "$STEPS")" "$work/ref_final"
rm -rf "$work/ref"
max_delay=$(python3 -c "print(max(60, int(1600 * $t_ref / $KILLS)))")
echo "kill9: uninterrupted run of $STEPS steps: $t_ref s; kills 20..$((20 + max_delay)) ms after each start"

# check_dirs RUN: every step_* directory complete and equal to the reference's; prints the newest step
check_dirs() {
  python3 - "$1" "$work/ref.sha" <<'PY'
import hashlib, json, os, re, struct, sys
run, ref = sys.argv[1], dict((l.split()[0], l.split()[1:]) for l in open(sys.argv[2]))
def st_ok(path, names):
    b = open(path, "rb").read()
    (n,) = struct.unpack("<Q", b[:8])
    h = json.loads(b[8:8 + n])
    end = max([v["data_offsets"][1] for k, v in h.items() if k != "__metadata__"] + [0])
    assert len(b) == 8 + n + end, "%s: %d bytes, header declares %d" % (path, len(b), 8 + n + end)
    assert all(x in h for x in names), "%s: missing tensors" % path
    return hashlib.sha256(b).hexdigest()
newest, problems = -1, []
for d in sorted(os.listdir(run)):
    m = re.fullmatch(r"step_(\d+)", d)
    if not m: continue
    p = os.path.join(run, d)
    try:
        st = json.load(open(os.path.join(p, "state.json")))
        assert st["step"] == int(m.group(1)), "state.json step %s" % st["step"]
        json.load(open(os.path.join(p, "config.json")))
        hm = st_ok(os.path.join(p, "model.safetensors"), ["model.embed_tokens.weight"])
        ho = st_ok(os.path.join(p, "optimizer.safetensors"), ["adam_m", "adam_v"])
        assert [hm, ho] == ref[d], "weights or moments differ from the uninterrupted run's"
        newest = max(newest, int(m.group(1)))
    except Exception as e:
        problems.append("%s: %s" % (d, e))
for p in problems: print("PROBLEM", p)
print(newest)
PY
}

run="$work/run"
in_save=0; before_step=0; in_steps=0; finished_early=0; kills=0; bad_dirs=0
for ((k = 1; k <= KILLS; k++)); do
  latest=$(ls -d "$run"/step_* 2>/dev/null | sort | tail -1)
  if [ -n "$latest" ]; then args=(--resume "$run"); else args=("${common[@]}" --out "$run"); fi
  touch "$work/mark"
  $Q train "${args[@]}" > "$work/k$k.log" 2>&1 &
  pid=$!
  # 20 ms .. 1.6 x (uninterrupted time / kills): the start-up, steps and saves all get hit, and the
  # kills together cover less than the whole run on a fast or a slow machine (fixed delays let a fast
  # machine finish the run within a few kills, so the later ones hit nothing)
  delay=$(( 20 + RANDOM % max_delay ))
  sleep "$(printf '%d.%03d' $((delay / 1000)) $((delay % 1000)))"
  if kill -9 "$pid" 2>/dev/null; then kills=$((kills + 1)); else finished_early=$((finished_early + 1)); fi
  wait "$pid" 2>/dev/null
  if [ -n "$(find "$run" -maxdepth 1 -name '.tmp.step_*' -newer "$work/mark" 2>/dev/null)" ]; then in_save=$((in_save + 1))
  elif grep -q '^step ' "$work/k$k.log"; then in_steps=$((in_steps + 1))
  else before_step=$((before_step + 1)); fi
  out=$(check_dirs "$run" 2>&1)
  if echo "$out" | grep -q PROBLEM; then
    bad_dirs=$((bad_dirs + 1)); bad "after kill $k (${delay} ms): $(echo "$out" | grep PROBLEM | head -3 | tr '\n' ' ')"
  fi
  # the resume that follows must start from the newest directory (checked on its log below)
  newest=$(echo "$out" | tail -1)
  # (a run killed before it had loaded the checkpoint printed nothing about it)
  if [ -n "${expect_from:-}" ] && [ "$expect_from" -ge 0 ] && grep -q resuming "$work/k$k.log"; then
    grep -q "resuming from .*step_$(printf %06d "$expect_from") at step $expect_from" "$work/k$k.log" \
      || { bad_dirs=$((bad_dirs + 1)); bad "kill $k: the resume did not start from step $expect_from: $(grep -m1 resuming "$work/k$k.log")"; }
  fi
  expect_from=$newest
  # keep the newest verified checkpoint only
  for d in "$run"/step_*; do [ -d "$d" ] && [ "$d" != "$run/step_$(printf %06d "$newest")" ] && rm -rf "$d"; done
done
[ "$bad_dirs" = 0 ] && ok "after each of $KILLS kills every step_* directory was complete, bitwise the uninterrupted run's, and the next run resumed from the newest"
echo "kill9: $kills killed ($in_save inside a checkpoint write, $in_steps between steps, $before_step before the first step), $finished_early had already finished"
[ "$kills" -ge "$KILLS" ] && ok "$kills runs killed at random moments" || bad "only $kills of $KILLS runs were still running when killed (the run is too short)"
[ "$in_save" -ge 1 ] && ok "$in_save kills landed inside a checkpoint write" || bad "no kill landed inside a checkpoint write"
[ "$in_steps" -ge 1 ] && ok "$in_steps kills landed between checkpoint writes, in training" || bad "no kill landed in training"

# the last resume runs to the end
if [ -n "$(ls -d "$run"/step_* 2>/dev/null)" ]; then args=(--resume "$run"); else args=("${common[@]}" --out "$run"); fi
if $Q train "${args[@]}" > "$work/final.log" 2>&1; then
  grep -q "resuming from .*step_$(printf %06d "$expect_from") at step $expect_from" "$work/final.log" \
    && ok "the final run resumed from the newest checkpoint (step $expect_from)" || bad "final resume: $(grep -m1 resuming "$work/final.log")"
  final="$run/step_$(printf %06d "$STEPS")"
  for f in model.safetensors optimizer.safetensors; do
    cmp -s "$final/$f" "$work/ref_final/$f" && ok "final $f bitwise equal to the uninterrupted run's" || bad "final $f differs"
  done
else
  bad "final resume failed: $(tail -1 "$work/final.log")"
fi
ls -a "$run" | grep -q '^\.tmp' && bad "a temporary checkpoint directory was left after the final run" || ok "no temporary directory left"
rm -rf "$work"
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
