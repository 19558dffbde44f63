#!/usr/bin/env bash
# The whole GPU check in one run (about 8 minutes at most), on the device machine, which has the
# NVIDIA driver, Python with PyTorch, and no Rust toolchain and no network:
#   1. the GPU parity tests (the fused kernels against the core on random batches: every network
#      method, relaxation and top-1 mode, with and without m, f32 and f64; the device-buffer API,
#      scratch reuse, bad input, plain cross-entropy);
#   2. `bench_gpu`: our kernel, our cross-entropy and a device copy (bandwidth floor), batch 128,
#      4096 and 65536, n = 100 and 1000 with m = 16, n = 1000 without m; it writes the inputs;
#   3. the PyTorch reference (difftopk 0.2.0 + diffsort 0.2.0, from wheels) on the same inputs;
#   4. the ImageNet-head setting: a generated 1 281 167 × 2048 → 1000 embedding set, one epoch of
#      `difftopk train --device cuda` against the same epoch in PyTorch with the reference loss
#      (gpu/bench/head_epoch.py; batch 4096, lr 0.05, constant schedule, data on the GPU there);
#   5. the tables, written to gpu/RESULTS.md (device, driver, date) and to $OUT if set.
#
# Prepare on a build machine (x86-64, the repository's toolchain), then carry the four paths:
#   cargo test --release -p difftopk-gpu --no-run          # target/release/deps/gpu-<hash>
#   cargo build --release -p difftopk-gpu --example bench_gpu   # target/release/examples/bench_gpu
#   cargo build --release -p difftopk-cli                        # target/release/difftopk
#   pip download difftopk==0.2.0 diffsort==0.2.0 --no-deps -d gpu/wheels
#   pip wheel --no-deps gpu/wheels/difftopk-0.2.0.tar.gz -w gpu/wheels   # the sdist as a wheel
set -uo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
python=${PYTHON:-python3}
test_binary=$(ls -t target/release/deps/gpu-* 2>/dev/null | grep -v '\.d$' | head -n 1 || true)
bench_binary=target/release/examples/bench_gpu
cli_binary=target/release/difftopk
if [ -z "$test_binary" ] || [ ! -x "$bench_binary" ] || [ ! -x "$cli_binary" ]; then
  echo "missing binaries: build them and carry target/release/deps/gpu-*, $bench_binary, $cli_binary" >&2
  exit 2
fi
# NVRTC and cuBLAS of the installed toolkit, where the loader does not already find them.
for lib in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
  [ -d "$lib" ] && export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
done
device=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi")

echo "== 1. parity tests"
# On the GPU machine a missing device or NVRTC is a failure, not a skip.
export DIFFTOPK_REQUIRE_CUDA=1 DIFFTOPK_REQUIRE_NVRTC=1
tests_output=$(timeout 90 "$test_binary" --nocapture --test-threads 1 2>&1) && tests_status=0 || tests_status=$?
echo "$tests_output" | tail -n 15

echo "== 2. our kernels"
timeout 90 "$bench_binary" "$work/inputs" 20 > "$work/ours.jsonl" 2> "$work/ours.err" && bench_status=0 || bench_status=$?
cat "$work/ours.jsonl"; tail -n 5 "$work/ours.err"

echo "== 3. the PyTorch reference"
mkdir -p "$work/python"
for wheel in gpu/wheels/*.whl; do
  [ -e "$wheel" ] && "$python" -m zipfile -e "$wheel" "$work/python"
done
PYTHONPATH="$work/python" timeout 120 "$python" gpu/bench/reference_gpu.py "$work/inputs" --reps 20 \
  > "$work/reference.jsonl" 2> "$work/reference.err" && reference_status=0 || reference_status=$?
grep '^{' "$work/reference.jsonl"; tail -n 5 "$work/reference.err"

echo "== 4. the ImageNet-head epoch"
PYTHONPATH="$work/python" timeout 120 "$python" gpu/bench/head_epoch.py "$work/head" \
  > "$work/head.jsonl" 2> "$work/head.err" && head_status=0 || head_status=$?
grep '^{' "$work/head.jsonl"; tail -n 3 "$work/head.err"
cli_status=skipped
if [ -f "$work/head/X_train.npy" ]; then
  timeout 90 "$cli_binary" train --device cuda --train-x "$work/head/X_train.npy" \
    --train-y "$work/head/y_train.npy" --epochs 1 --batch-size 4096 --lr 0.05 \
    --schedule constant --max-memory-mib 16384 --metrics "$work/cli.json" \
    --out "$work/head.safetensors" --quiet 2> "$work/cli.err" && cli_status=0 || cli_status=$?
  tail -n 3 "$work/cli.err"
fi
head_table=$("$python" - "$work/head.jsonl" "$work/cli.json" <<'PY' 2>&1
import json, sys
torch_run = next((json.loads(l) for l in open(sys.argv[1]) if l.startswith('{')), None)
try:
    ours = json.load(open(sys.argv[2]))['epochs'][0]
except Exception as error:
    ours = None
print('| | epoch s | train loss |')
print('| --- | --- | --- |')
if torch_run:
    print(f"| PyTorch, reference loss | {torch_run['pytorch_epoch_s']:.2f} | {torch_run['train_loss']:.4f} |")
if ours:
    print(f"| difftopk train --device cuda | {ours['train_seconds']:.2f} | {ours['train_loss']:.4f} |")
if torch_run and ours:
    print(f"\nspeed-up: {torch_run['pytorch_epoch_s'] / ours['train_seconds']:.1f}x "
          f"({torch_run['rows']} rows, batch {torch_run['batch_size']})")
PY
)
table=$("$python" gpu/bench/report.py "$work/ours.jsonl" "$work/reference.jsonl" 2>&1)
{
  echo "# GPU check"
  echo
  echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "- device, driver: $device"
  echo "- parity tests: $([ "$tests_status" = 0 ] && echo passed || echo "FAILED (exit $tests_status)")"
  echo "- exit statuses: bench $bench_status, reference $reference_status, head epoch (PyTorch) $head_status, difftopk train $cli_status"
  echo
  echo "Float32, P_K = [.5,0,0,0,.5], logistic_phi λ = .5, β = 1, \`sm\`; medians of device-synchronised"
  echo "calls on the same inputs; \"ours / copy\": our time over a device-to-device copy of the logits."
  echo
  echo "$table"
  echo
  echo "## The ImageNet-head epoch (1 281 167 × 2048 → 1000, batch 4096, lr 0.05, constant)"
  echo
  echo "$head_table"
  echo
  echo '<details><summary>test output</summary>'
  echo
  echo '```'
  echo "$tests_output"
  echo '```'
  echo '</details>'
} > gpu/RESULTS.md
cat gpu/RESULTS.md | head -n 40
if [ -n "${OUT:-}" ]; then
  cp gpu/RESULTS.md "$work/ours.jsonl" "$work/reference.jsonl" "$work/head.jsonl" "$OUT"/ 2>/dev/null
  cp "$work/cli.json" "$OUT"/ 2>/dev/null
fi
rm -rf "$work"
[ "$tests_status" = 0 ]
