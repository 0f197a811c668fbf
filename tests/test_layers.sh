#!/usr/bin/env bash
# The tree's floors only look down. The production code lives in rooms, each on one floor:
#
#   common <- kernels <- model <- comm <- text <- io <- tasks <- eval <- selftrain <- cli
#
# A file may include (#include "...") only its own room and the rooms below it, and nothing from
# tests/, bench/, tools/ or emu/ (the emulator is put in front of a build with -include on its command
# line; nothing includes it). The order is the one the code has: text/ includes only common/; io/
# includes text/ (a checkpoint carries its tokenizer) and model/ (weights); tasks/ reads its files
# through io/; comm/ includes only common/ and sits below the rooms that may all-reduce.
# Every production folder must be a room of that order (a new folder gets its floor on purpose;
# emu/ stands beside them), and no folder holds more than 25 % of the production lines: .c, .h, .cu
# and .cuh files outside tests/, bench/ and tools/, a folder counting its own files (kernels/cpu and
# kernels/cuda apart from kernels/). A violation is listed with its file and line.
set -u
cd "$(dirname "$0")/.."
floors=(common kernels model comm text io tasks eval selftrain cli)
beside=(emu)        # production folders outside the floor order
max_share=25        # per cent of the production lines one folder may hold

declare -A rank
for i in "${!floors[@]}"; do rank[${floors[$i]}]=$i; done
is_beside() { local b; for b in "${beside[@]}"; do [ "$1" = "$b" ] && return 0; done; return 1; }

# the production files: tracked and untracked-but-not-ignored in a checkout; a copy of the tree without
# its own git (tests/sanitize.sh's build-san/tree) is listed with find
if [ "$(git rev-parse --show-toplevel 2>/dev/null)" = "$PWD" ]; then
  list_files() { git ls-files -co --exclude-standard -- '*.c' '*.h' '*.cu' '*.cuh'; }
else
  list_files() {
    find . \( -path ./build -o -path './build-*' -o -path ./bin -o -path ./.venv -o -path ./runs -o -path ./.git \) -prune \
      -o -type f \( -name '*.c' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' \) -print | sed 's#^\./##'
  }
fi
files=()
while IFS= read -r f; do
  [ -f "$f" ] || continue
  case "$f" in tests/*|bench/*|tools/*) continue ;; esac
  files+=("$f")
done < <(list_files | sort)

pass=0; fail=0
ok() { pass=$((pass+1)); echo "ok   $*"; }
bad() { fail=$((fail+1)); echo "FAIL $*"; }

if [ "${#files[@]}" = 0 ]; then bad "no production files found"; echo "$pass passed, $fail failed"; exit 1; fi

# 1. every production folder is a floor of the order (or stands beside it)
stray=""
for f in "${files[@]}"; do
  top=${f%%/*}
  [ "$top" = "$f" ] && { stray+="  $f: a source file at the top level"$'\n'; continue; }
  [ -n "${rank[$top]+x}" ] || is_beside "$top" || stray+="  $f: $top/ is not a floor of the order"$'\n'
done
if [ -z "$stray" ]; then ok "every production folder is a room of the floor order (${floors[*]}) or ${beside[*]}"
else bad "production files outside the rooms:"; printf '%s' "$stray"; fi

# 2. each room includes only itself and the rooms below it. An include resolves as the compiler's
# search does here: beside the including file first, then from the root (-I.); one that names no file
# of the tree (a system or toolkit header in quotes) is not the project's.
declare -A violations
for f in "${files[@]}"; do
  room=${f%%/*}
  [ -n "${rank[$room]+x}" ] || continue
  dir=$(dirname "$f")
  while IFS=: read -r line text; do
    inc=$(sed -E 's/^[[:space:]]*#[[:space:]]*include[[:space:]]+"([^"]+)".*/\1/' <<<"$text")
    if [ -e "$dir/$inc" ]; then target=$(realpath -m --relative-to=. "$dir/$inc")
    elif [ -e "$inc" ]; then target=$(realpath -m --relative-to=. "$inc")
    else continue; fi
    to=${target%%/*}
    if [ -n "${rank[$to]+x}" ]; then
      [ "${rank[$to]}" -le "${rank[$room]}" ] && continue
      why="$to/ is above $room/"
    else
      why="$to/ is not a floor below $room/"
    fi
    violations[$room]+="  $f:$line: #include \"$inc\" ($why)"$'\n'
  done < <(grep -n -E '^[[:space:]]*#[[:space:]]*include[[:space:]]+"' "$f")
done
for i in "${!floors[@]}"; do
  room=${floors[$i]}
  below=$(IFS=,; echo "${floors[*]:0:$i}" | sed 's/,/, /g')
  if [ -z "${violations[$room]+x}" ]; then ok "$room/ includes only itself${below:+ and the floors below it ($below)}"
  else bad "$room/ looks up:"; printf '%s' "${violations[$room]}"; fi
done

# 3. no folder over max_share % of the production lines
declare -A lines
total=0
for f in "${files[@]}"; do
  n=$(wc -l < "$f"); d=$(dirname "$f")
  lines[$d]=$(( ${lines[$d]:-0} + n )); total=$((total + n))
done
over=""; largest=""; largest_n=0
for d in "${!lines[@]}"; do
  n=${lines[$d]}
  [ "$n" -gt "$largest_n" ] && { largest=$d; largest_n=$n; }
  [ $((n * 100)) -gt $((total * max_share)) ] && over+="  $d/: $n of $total lines ($(( (n * 1000 / total + 5) / 10 )) %)"$'\n'
done
share=$(awk -v n="$largest_n" -v t="$total" 'BEGIN { printf "%.1f", 100 * n / t }')
if [ -z "$over" ]; then ok "no folder over $max_share % of the $total production lines (largest: $largest/, $largest_n lines, $share %)"
else bad "folders over $max_share % of the production lines:"; printf '%s' "$over"; fi

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
