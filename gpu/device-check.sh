#!/usr/bin/env bash
# GPU check, part one: runs the GPU parity tests (the fused kernel against the core on random
# batches: every network method, relaxation and top-1 mode, with and without m, f32 and f64) on
# the device machine, which has the NVIDIA driver and NVRTC but no Rust toolchain.
# Build here first:  cargo test --release -p difftopk-gpu --no-run
# then carry target/release/deps/gpu-* and run this script on the GPU machine. It writes
# gpu/RESULTS.md (device, driver, date, test output). Timings against PyTorch: not yet.
set -euo pipefail
cd "$(dirname "$0")/.."
test_binary=$(ls -t target/release/deps/gpu-* 2>/dev/null | grep -v '\.d$' | head -n 1 || true)
if [ -z "$test_binary" ]; then
  echo "no test binary: run 'cargo test --release -p difftopk-gpu --no-run' and carry target/release/deps" >&2
  exit 2
fi
device=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi")
output=$("$test_binary" --nocapture --test-threads 1 2>&1) && status=0 || status=$?
{
  echo "# GPU check"
  echo
  echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "- device, driver: $device"
  echo "- parity tests: $([ "$status" = 0 ] && echo passed || echo "FAILED (exit $status)")"
  echo
  echo '```'
  echo "$output"
  echo '```'
} > gpu/RESULTS.md
cat gpu/RESULTS.md
exit "$status"
