#!/usr/bin/env bash
# Builds, on this machine (x86-64, the repository's toolchain, network), what gpu/device-check.sh
# needs on the GPU machine, and prints the paths to carry there:
#   target/release/gpu-tests (the GPU test binary under a fixed name), the bench example, the CLI,
#   and gpu/wheels (difftopk 0.2.0 and diffsort 0.2.0 for the PyTorch reference).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
cargo test --release -p difftopk-gpu --test gpu --no-run --message-format=json \
  | "$python" -c 'import json, sys
for message in map(json.loads, sys.stdin):
    if message.get("executable"):
        print(message["executable"])' \
  | tail -n 1 | xargs -I{} cp {} target/release/gpu-tests
cargo build --release -p difftopk-gpu --example bench_gpu
cargo build --release -p difftopk-cli
mkdir -p gpu/wheels
if ! ls gpu/wheels/difftopk-0.2.0-*.whl >/dev/null 2>&1; then
  "$python" -m pip download --quiet difftopk==0.2.0 diffsort==0.2.0 --no-deps -d gpu/wheels
  "$python" -m pip wheel --quiet --no-deps gpu/wheels/difftopk-0.2.0.tar.gz -w gpu/wheels
fi
echo "carry: target/release/gpu-tests target/release/examples/bench_gpu target/release/difftopk gpu/wheels"
