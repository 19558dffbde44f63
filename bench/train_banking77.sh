#!/usr/bin/env bash
# Times `difftopk train` against the same training in PyTorch, with plain cross-entropy and with the
# reference `difftopk` loss: Adam, batch 500, 20 epochs, lr 1e-2, one thread everywhere, same data.
# Not part of CI. Needs python3 with pip (creates .bench-venv with torch, numpy, difftopk 0.2.0,
# diffsort 0.2.0 on first use; the PyPI torch wheel is large) or PYTHON=/path/to/python with them.
# Usage: bench/train_banking77.sh [DATA_DIR]   (default: the bundled data/banking77)
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-data/banking77}
epochs=${EPOCHS:-20}; batch=${BATCH:-500}; lr=${LR:-0.01}
if [ -z "${PYTHON:-}" ]; then
  if [ ! -x .bench-venv/bin/python ]; then
    python3 -m venv .bench-venv
    .bench-venv/bin/pip install -q numpy torch difftopk==0.2.0 diffsort==0.2.0
  fi
  PYTHON=.bench-venv/bin/python
fi
cargo build --release -q -p difftopk-cli
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
ours() {
  local loss=$1
  local started ended
  started=$(date +%s.%N)
  target/release/difftopk train --train-x "$data/X_train.npy" --train-y "$data/y_train.npy" \
    --test-x "$data/X_test.npy" --test-y "$data/y_test.npy" --loss "$loss" --epochs "$epochs" \
    --batch-size "$batch" --lr "$lr" --schedule constant --threads 1 --quiet \
    --out "$tmp/head.safetensors" --metrics "$tmp/m.json"
  ended=$(date +%s.%N)
  python3 - "$tmp/m.json" "$loss" "$started" "$ended" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
train = sum(e["train_seconds"] for e in m["epochs"])
t = m["final"]["test"]
print(json.dumps({"loss": sys.argv[2], "seconds": train, "wall_seconds": float(sys.argv[4]) - float(sys.argv[3]),
                  **{f"top{k}": t[f"top{k}"] for k in range(1, 6)}}))
PY
}
echo "data $data, $epochs epochs, batch $batch, Adam lr $lr, 1 thread; seconds = training loop only"
{
  echo "pytorch-ce $($PYTHON bench/reference_head.py "$data" ce "$epochs" "$batch" "$lr" | tail -1)"
  echo "pytorch-difftopk $($PYTHON bench/reference_head.py "$data" topk "$epochs" "$batch" "$lr" | tail -1)"
  echo "difftopk-rs-ce $(ours softmax-ce)"
  echo "difftopk-rs-topk $(ours topk)"
} > "$tmp/results"
cat "$tmp/results" >&2
python3 - "$tmp/results" <<'PY'
import json, sys
rows = {}
for line in open(sys.argv[1]):
    name, text = line.split(" ", 1)
    rows[name] = json.loads(text)
print("| run | training s | test top-1 | test top-5 |")
print("| --- | --- | --- | --- |")
for name, r in rows.items():
    print(f"| {name} | {r['seconds']:.3f} | {100*r['top1']:.2f} | {100*r['top5']:.2f} |")
ref, ce, ours = rows["pytorch-difftopk"]["seconds"], rows["pytorch-ce"]["seconds"], rows["difftopk-rs-topk"]["seconds"]
print(f"\ndifftopk-rs top-k vs PyTorch + reference top-k: {ref / ours:.1f}x faster")
print(f"difftopk-rs top-k vs PyTorch cross-entropy: {ours / ce:.2f}x the time")
PY
