#!/usr/bin/env bash
# The whole GPU check in one run (under 10 minutes even if every step runs into its limit;
# about 5 in a normal run), on the device machine, which has the
# NVIDIA driver, Python with PyTorch, and no Rust toolchain and no network:
#   1. the GPU parity tests (the fused kernels against the core on random batches: every method,
#      relaxation and top-1 mode, with and without m, f32 and f64; the device-buffer API,
#      scratch reuse, bad input, plain cross-entropy, the top-k matrix operator);
#   2. `difftopk train --device cuda` against `--device cpu` on data/digits_smoke: batch 64, with
#      --val-fraction, and streamed (--max-memory-mib 0); last train losses within 2 %. Not
#      closer: AdamW's step g/(√v + ε) turns rounding-level differences in near-zero gradient
#      coordinates into steps of size lr, so two runs apart by rounding drift apart. On the CPU
#      alone, --lr 0.05 against 0.050000001 (2e-8 relative) moves the batch-64 run's third-epoch
#      loss from 0.19866 to 0.19660 (1 %); cuda gave 0.19657 on an H100;
#   3. `bench_gpu`: our kernel, our cross-entropy and a device copy (bandwidth floor), batch 128,
#      4096 and 65536, n = 100 and 1000 with m = 16, n = 1000 without m; it writes the inputs;
#   4. the PyTorch reference (difftopk 0.2.0 + diffsort 0.2.0, from wheels) on the same inputs;
#   5. the ImageNet-head setting: a generated 1 281 167 × 2048 → 1000 embedding set, one epoch of
#      `difftopk train --device cuda` against the same epoch in PyTorch with the reference loss
#      (gpu/bench/head_epoch.py; batch 4096, lr 0.05, constant schedule, data on the GPU there);
#   6. the tables, written to gpu/RESULTS.md (device, driver, date) and to $OUT if set.
# The exit status is that of steps 1 and 2 (correctness); timings are reported, not judged.
#
# Prepare on a build machine (x86-64, the repository's toolchain, network) with
# gpu/prepare-device-check.sh, then carry the four paths it prints.
set -uo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
python=${PYTHON:-python3}
test_binary=target/release/gpu-tests
bench_binary=target/release/examples/bench_gpu
cli_binary=target/release/difftopk
for binary in "$test_binary" "$bench_binary" "$cli_binary"; do
  if [ ! -x "$binary" ]; then
    echo "missing $binary: build it as the comment at the top says, and carry it" >&2
    exit 2
  fi
done
device=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi")
# NVRTC and cuBLAS of the installed toolkit for our binaries only (PyTorch keeps its own).
rust_libraries=${LD_LIBRARY_PATH:-}
for lib in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
  [ -d "$lib" ] && rust_libraries="$lib${rust_libraries:+:$rust_libraries}"
done
# Where the toolkit lacks them, the NVRTC and cuBLAS of the Python packages (nvidia/cu13/lib).
python_libraries=$("$python" -c 'import glob, site
print(":".join(sorted(set(d for p in site.getsitepackages() for d in glob.glob(p + "/nvidia/*/lib")))))' 2>/dev/null)
[ -n "$python_libraries" ] && rust_libraries="${rust_libraries:+$rust_libraries:}$python_libraries"
echo "device: $device"
echo "libraries for our binaries: $rust_libraries"
rust() { LD_LIBRARY_PATH="$rust_libraries" DIFFTOPK_REQUIRE_CUDA=1 DIFFTOPK_REQUIRE_NVRTC=1 "$@"; }

# Logs go where they come back even if the run is cut off ($OUT on the device machine).
logs=${OUT:-$work}
echo "== 1. parity tests"
tests_output=$(rust timeout -k 5 80 "$test_binary" --nocapture --test-threads 1 2>&1) && tests_status=0 || tests_status=$?
echo "$tests_output" > "$logs/tests.log"
echo "$tests_output" | tail -n 15

echo "== 2. difftopk train, cuda against cpu"
cli_lines=""
cli_parity=0
smoke="--train-x data/digits_smoke/X_train.npy --train-y data/digits_smoke/y_train.npy --epochs 3 --threads 1 --quiet"
for variant in "--batch-size 64" "--val-fraction 0.2" "--max-memory-mib 0"; do
  extra=$variant
  losses=()
  for run_device in cpu cuda; do
    # shellcheck disable=SC2086
    rust timeout -k 5 15 "$cli_binary" train $smoke $extra --device "$run_device" \
      --out "$work/smoke-$run_device.safetensors" --metrics "$work/smoke-$run_device.json" \
      2> "$work/smoke-$run_device.err" || cli_parity=1
    losses+=("$("$python" -c 'import json,sys; print(json.load(open(sys.argv[1]))["epochs"][-1]["train_loss"])' "$work/smoke-$run_device.json" 2>/dev/null || echo missing)")
  done
  verdict=$("$python" -c 'import sys
a, b = sys.argv[1], sys.argv[2]
try:
    a, b = float(a), float(b)
    print("ok" if abs(a - b) <= 2e-2 * max(abs(a), 1.0) else "DIFFERS")
except ValueError:
    print("FAILED")' "${losses[0]}" "${losses[1]}")
  [ "$verdict" = ok ] || cli_parity=1
  cli_lines+="| $variant | ${losses[0]} | ${losses[1]} | $verdict |"$'\n'
  tail -n 2 "$work/smoke-cuda.err"
  { echo "== $variant"; cat "$work/smoke-cpu.err" "$work/smoke-cuda.err"; } >> "$logs/errors.log"
done
echo "$cli_lines"

echo "== 3. our kernels"
rust timeout -k 5 80 "$bench_binary" "$work/inputs" 20 > "$work/ours.jsonl" 2> "$work/ours.err" && bench_status=0 || bench_status=$?
cat "$work/ours.jsonl"; tail -n 5 "$work/ours.err"
cp "$work/ours.jsonl" "$logs/" 2>/dev/null; { echo "== bench_gpu"; cat "$work/ours.err"; } >> "$logs/errors.log"

echo "== 4. the PyTorch reference"
mkdir -p "$work/python"
for wheel in gpu/wheels/*.whl; do
  [ -e "$wheel" ] && "$python" -m zipfile -e "$wheel" "$work/python"
done
PYTHONPATH="$work/python" timeout -k 5 100 "$python" gpu/bench/reference_gpu.py "$work/inputs" \
  --reps 20 --deadline 90 > "$work/reference.jsonl" 2> "$work/reference.err" \
  && reference_status=0 || reference_status=$?
grep '^{' "$work/reference.jsonl"; tail -n 5 "$work/reference.err"
cp "$work/reference.jsonl" "$logs/" 2>/dev/null; { echo "== reference"; tail -n 40 "$work/reference.err"; } >> "$logs/errors.log"

echo "== 5. the ImageNet-head epoch"
PYTHONPATH="$work/python" timeout -k 5 110 "$python" gpu/bench/head_epoch.py "$work/head" \
  > "$work/head.jsonl" 2> "$work/head.err" && head_status=0 || head_status=$?
grep '^{' "$work/head.jsonl"; tail -n 3 "$work/head.err"
cp "$work/head.jsonl" "$logs/" 2>/dev/null; { echo "== head epoch"; tail -n 40 "$work/head.err"; } >> "$logs/errors.log"
cli_status=skipped
if [ -f "$work/head/X_train.npy" ] && [ -f "$work/head/y_train.npy" ]; then
  rust timeout -k 5 80 "$cli_binary" train --device cuda --train-x "$work/head/X_train.npy" \
    --train-y "$work/head/y_train.npy" --epochs 1 --batch-size 4096 --lr 0.05 \
    --schedule constant --max-memory-mib 16384 --metrics "$work/cli.json" \
    --out "$work/head.safetensors" 2> "$work/cli.err" && cli_status=0 || cli_status=$?
  tail -n 3 "$work/cli.err"
  cp "$work/cli.json" "$logs/" 2>/dev/null; { echo "== difftopk train, head"; cat "$work/cli.err"; } >> "$logs/errors.log"
fi
head_table=$("$python" - "$work/head.jsonl" "$work/cli.json" <<'PY' 2>&1
import json, sys
torch_run = None
for line in open(sys.argv[1]):
    if line.startswith('{'):
        torch_run = json.loads(line)
try:
    ours = json.load(open(sys.argv[2]))['epochs'][0]
except Exception:
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
  echo "- difftopk train cuda against cpu: $([ "$cli_parity" = 0 ] && echo passed || echo FAILED)"
  echo "- exit statuses: bench $bench_status, reference $reference_status, head epoch (PyTorch) $head_status, difftopk train $cli_status"
  echo
  echo "## difftopk train on digits_smoke, last epoch's train loss"
  echo
  echo "| variant | cpu | cuda | |"
  echo "| --- | --- | --- | --- |"
  echo -n "$cli_lines"
  echo
  echo "## The loss kernel against the PyTorch reference"
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
head -n 60 gpu/RESULTS.md
[ -n "${OUT:-}" ] && cp gpu/RESULTS.md "$OUT"/
rm -rf "$work"
[ "$tests_status" = 0 ] && [ "$cli_parity" = 0 ]
