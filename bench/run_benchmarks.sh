#!/usr/bin/env bash
# Runs the engine benchmarks whose figures docs/benchmarks.md records:
#   - accullm bench on the embedded model (F32) and on a random-weight TinyLlama-1.1B geometry
#     checkpoint in F16 (written by bench/make_tinyllama.sh on first use, ~2.2 GB in /tmp);
#   - the linear-kernel (dense and per quantized code width) and tokenizer microbenchmarks
#     (Google Benchmark).
# Usage: bench/run_benchmarks.sh [BUILD_DIR]   (default: build)
set -euo pipefail
cd "$(dirname "$0")/.."
build="${1:-build}"
echo "== machine"; nproc; grep -m1 "model name" /proc/cpuinfo || true; free -g | head -2
echo "== embedded model (F32)"
"$build/cli/accullm" bench --prompt-tokens 128 --gen-tokens 128 --repeat 3
echo "== TinyLlama-1.1B geometry, F16, random weights"
bash bench/make_tinyllama.sh /tmp/accullm-tinyllama
"$build/cli/accullm" bench --model /tmp/accullm-tinyllama --prompt-tokens 128 --gen-tokens 32 --repeat 2
echo "== linear kernels (single thread)"
"$build/bench/linear_kernels_bench" --benchmark_min_time=0.5
echo "== quantized linear kernels per code width (single thread)"
"$build/bench/quantized_linear_bench" --benchmark_min_time=0.5
echo "== tokenizer encode"
"$build/bench/tokenizer_bench" --benchmark_min_time=0.5
