#!/usr/bin/env bash
# End-to-end pipeline benchmark on loopback: single-process `accullm serve` and mpirun with
# 1, 2, 3 stages (+ the coordinator). Prints per-stage compute time, bytes sent per token
# per hop, and end-to-end tokens/s under CONCURRENCY parallel requests of TOKENS tokens.
# Usage: bench/pipeline_bench.sh [ACCULLM] (env: CONCURRENCY=8 TOKENS=64 ACTIVATIONS=f32)
set -euo pipefail
BIN="$(realpath "${1:-build/cli/accullm}")"
cd "$(dirname "$0")/.."
source tests/integration/serve_lib.sh
source tests/integration/mpi_lib.sh
CONCURRENCY="${CONCURRENCY:-8}"
TOKENS="${TOKENS:-64}"
ACTIVATIONS="${ACTIVATIONS:-f32}"

load() {  # prints tokens/s
  local port="$1" start end i pids=()
  start=$(date +%s.%N)
  for i in $(seq 1 "$CONCURRENCY"); do
    curl -sf -o /dev/null -H 'Content-Type: application/json' \
      -d "{\"model\":\"tinystories-llama\",\"prompt\":\"Once upon a time number $i\",\"max_tokens\":$TOKENS,\"ignore_eos\":true}" \
      "http://127.0.0.1:$port/v1/completions" &
    pids+=($!)
  done
  wait "${pids[@]}"  # not the server
  end=$(date +%s.%N)
  echo "scale=1; $CONCURRENCY * $TOKENS / ($end - $start)" | bc
}

echo "concurrency=$CONCURRENCY tokens/request=$TOKENS activations=$ACTIVATIONS host_cores=$(nproc)"
start_server "$BIN" --threads 1
load "$PORT" >/dev/null  # warm-up
echo "single-process: $(load "$PORT") tokens/s"
stop_server || true

for stages in 1 2 3; do
  start_mpi_server $((stages + 1)) "$BIN" --activations "$ACTIVATIONS"
  load "$PORT" >/dev/null
  tps="$(load "$PORT")"
  kill -TERM "$(rank_pid 0)"
  wait_exit "$MPI_PID" 30
  echo "$stages stage(s): $tps tokens/s (end to end, both runs' stage totals below)"
  grep -o 'stage [0-9]* (rank [0-9]*): shutdown.*' "$MPI_LOG" | sort |
    sed -E 's/shutdown after ([0-9]+) batches; stats /batches=\1 /; s/^/    /'
done
