#!/usr/bin/env bash
# Loss study: softmax CE against top-k settings on one data set, same budget, several seeds.
# Usage: bench/study.sh DATA_DIR [extra difftopk train flags...]
# GRID_FILE=file replaces the built-in grid (lines: LABEL FLAGS...); SEEDS="0 1 2" sets the seeds.
# Prints one line per setting: mean test top-1..top-5 over the seeds (percent).
set -euo pipefail
data=${1:?data directory with X_train.npy y_train.npy X_test.npy y_test.npy}; shift
bin=${DIFFTOPK:-target/release/difftopk}
seeds=${SEEDS:-"0 1 2"}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
run() {
  local label=$1; shift
  local sums=(0 0 0 0 0)
  for seed in $seeds; do
    "$bin" train --train-x "$data/X_train.npy" --train-y "$data/y_train.npy" \
      --test-x "$data/X_test.npy" --test-y "$data/y_test.npy" --seed "$seed" \
      --out "$tmp/head.safetensors" --metrics "$tmp/m.json" -q "$@" "${EXTRA[@]}"
    python3 - "$tmp/m.json" >> "$tmp/lines" <<'PY'
import json, sys
f = json.load(open(sys.argv[1]))["final"]["test"]
print(" ".join(str(f["top%d" % k]) for k in range(1, 6)))
PY
  done
  python3 - "$label" "$tmp/lines" <<'PY'
import sys
rows = [list(map(float, l.split())) for l in open(sys.argv[2])]
means = [100 * sum(c) / len(rows) for c in zip(*rows)]
print("%-55s %s" % (sys.argv[1], "  ".join("%.2f" % m for m in means)))
PY
  rm -f "$tmp/lines"
}
EXTRA=("$@")
echo "setting                                                 top1   top2   top3   top4   top5"
default_grid=$(cat <<'GRID'
softmax-ce                 --loss softmax-ce
topk-default               --loss topk
topk-pk.5,0,0,0,.5-m-all   --loss topk --m all
topk-pk.2,.2,.2,.2,.2      --loss topk --p-k .2,.2,.2,.2,.2
topk-pk.5,.1,.1,.1,.2      --loss topk --p-k .5,.1,.1,.1,.2
topk-pk.75,0,0,0,.25       --loss topk --p-k .75,0,0,0,.25
topk-pk.25,0,0,0,.75       --loss topk --p-k .25,0,0,0,.75
topk-pk0,0,0,0,1           --loss topk --p-k 0,0,0,0,1
topk-beta0.5               --loss topk --inverse-temperature 0.5
topk-beta2                 --loss topk --inverse-temperature 2
topk-cauchy                --loss topk --distribution cauchy
topk-logistic              --loss topk --distribution logistic
topk-smce                  --loss topk --top1-mode smce
topk-softsort              --loss topk --method softsort
GRID
)
if [ -n "${GRID_FILE:-}" ]; then grid=$(cat "$GRID_FILE"); else grid=$default_grid; fi
while read -r label flags; do
  [ -z "$label" ] && continue
  # shellcheck disable=SC2086
  run "$label" $flags
done <<< "$grid"
