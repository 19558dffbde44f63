#!/usr/bin/env bash
# The whole GPU check in one run (about 8 minutes at most), on the device machine, which has the
# NVIDIA driver, Python with PyTorch, and no Rust toolchain and no network:
#   1. the GPU parity tests (the fused kernels against the core on random batches: every network
#      method, relaxation and top-1 mode, with and without m, f32 and f64; the device-buffer API,
#      scratch reuse, bad input, plain cross-entropy);
#   2. `bench_gpu`: our kernel, our cross-entropy and a device copy (bandwidth floor), batch 128,
#      4096 and 65536, n = 100 and 1000 with m = 16, n = 1000 without m; it writes the inputs;
#   3. the PyTorch reference (difftopk 0.2.0 + diffsort 0.2.0, from wheels) on the same inputs;
#   4. the table of both, written to gpu/RESULTS.md (device, driver, date) and to $OUT if set.
#
# Prepare on a build machine (x86-64, the repository's toolchain), then carry the three paths:
#   cargo test --release -p difftopk-gpu --no-run          # target/release/deps/gpu-<hash>
#   cargo build --release -p difftopk-gpu --example bench_gpu   # target/release/examples/bench_gpu
#   pip download difftopk==0.2.0 diffsort==0.2.0 --no-deps -d gpu/wheels
#   pip wheel --no-deps gpu/wheels/difftopk-0.2.0.tar.gz -w gpu/wheels   # the sdist as a wheel
# Not yet part of the check: `difftopk train --device cuda` (not implemented yet).
set -uo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
python=${PYTHON:-python3}
test_binary=$(ls -t target/release/deps/gpu-* 2>/dev/null | grep -v '\.d$' | head -n 1 || true)
bench_binary=target/release/examples/bench_gpu
if [ -z "$test_binary" ] || [ ! -x "$bench_binary" ]; then
  echo "missing binaries: build them and carry target/release/deps/gpu-* and $bench_binary" >&2
  exit 2
fi
device=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi")

echo "== 1. parity tests"
tests_output=$(timeout 150 "$test_binary" --nocapture --test-threads 1 2>&1) && tests_status=0 || tests_status=$?
echo "$tests_output" | tail -n 15

echo "== 2. our kernels"
timeout 150 "$bench_binary" "$work/inputs" 20 > "$work/ours.jsonl" 2> "$work/ours.err" && bench_status=0 || bench_status=$?
cat "$work/ours.jsonl"; tail -n 5 "$work/ours.err"

echo "== 3. the PyTorch reference"
mkdir -p "$work/python"
for wheel in gpu/wheels/*.whl; do
  [ -e "$wheel" ] && "$python" -m zipfile -e "$wheel" "$work/python"
done
PYTHONPATH="$work/python" timeout 240 "$python" gpu/bench/reference_gpu.py "$work/inputs" --reps 20 \
  > "$work/reference.jsonl" 2> "$work/reference.err" && reference_status=0 || reference_status=$?
grep '^{' "$work/reference.jsonl"; tail -n 5 "$work/reference.err"

table=$("$python" gpu/bench/report.py "$work/ours.jsonl" "$work/reference.jsonl" 2>&1)
{
  echo "# GPU check"
  echo
  echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "- device, driver: $device"
  echo "- parity tests: $([ "$tests_status" = 0 ] && echo passed || echo "FAILED (exit $tests_status)")"
  echo "- bench exit status: $bench_status; reference exit status: $reference_status"
  echo
  echo "Float32, P_K = [.5,0,0,0,.5], logistic_phi λ = .5, β = 1, \`sm\`; medians of device-synchronised"
  echo "calls on the same inputs; \"ours / copy\": our time over a device-to-device copy of the logits."
  echo
  echo "$table"
  echo
  echo '<details><summary>test output</summary>'
  echo
  echo '```'
  echo "$tests_output"
  echo '```'
  echo '</details>'
} > gpu/RESULTS.md
cat gpu/RESULTS.md | head -n 40
if [ -n "${OUT:-}" ]; then cp gpu/RESULTS.md "$work/ours.jsonl" "$work/reference.jsonl" "$OUT"/ 2>/dev/null; fi
rm -rf "$work"
[ "$tests_status" = 0 ]
