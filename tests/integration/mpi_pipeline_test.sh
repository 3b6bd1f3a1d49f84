#!/usr/bin/env bash
# Real mpirun on loopback: 1 coordinator + 2 and + 3 pipeline stages serve the embedded model
# over HTTP; every answer (greedy and seeded sampling, logprobs) must equal single-process
# `accullm serve`; SIGTERM to the coordinator shuts the whole job down with status 0; a plan
# that does not match the ranks is refused at startup. Usage: mpi_pipeline_test.sh ACCULLM
set -euo pipefail
BIN="$(realpath "$1")"
cd "$(dirname "$0")/../.."
source tests/integration/serve_lib.sh
source tests/integration/mpi_lib.sh
command -v mpirun >/dev/null || { echo "SKIP: mpirun not installed (openmpi-bin)"; exit 0; }

start_server "$BIN" --threads 1
REF="$(answers "$PORT")"
stop_server
[ "$(echo "$REF" | wc -l)" = 3 ] || { echo "reference run failed"; exit 1; }
echo "single-process: $REF" | head -c 600; echo

for workers in 2 3; do
  start_mpi_server $((workers + 1)) "$BIN"
  GOT="$(answers "$PORT")"
  if [ "$GOT" != "$REF" ]; then
    echo "FAIL: $workers stages differ from single-process"; diff <(echo "$REF") <(echo "$GOT") || true
    kill -KILL -- -"$MPI_PID" 2>/dev/null || true; exit 1
  fi
  grep -q "pipeline: $workers stages" "$MPI_LOG" || { cat "$MPI_LOG"; exit 1; }
  # Graceful stop: SIGTERM to the coordinator (rank 0) drains and stops every stage.
  kill -TERM "$(rank_pid 0)"
  wait_exit "$MPI_PID" 30; rc=$WAIT_RC
  if [ "$rc" != 0 ]; then cat "$MPI_LOG"; echo "FAIL: mpirun exited $rc after SIGTERM"; exit 1; fi
  grep -q "shutdown after" "$MPI_LOG" || { cat "$MPI_LOG"; echo "FAIL: stages did not shut down cleanly"; exit 1; }
  echo "ok: $workers stages identical to single-process, clean shutdown"
done

# A plan for 2 stages under 3 worker ranks: refused with a clear message, non-zero exit.
PLAN="$(mktemp)"
"$BIN" plan --workers 2 --out "$PLAN" >/dev/null
LOG="$(mktemp)"
set +e
timeout 60 mpirun "${MPIRUN_FLAGS[@]}" -np 4 "$BIN" serve --port 0 --threads 1 --plan "$PLAN" >"$LOG" 2>&1
rc=$?
set -e
if [ "$rc" = 0 ] || ! grep -q "mpirun -np 3" "$LOG"; then cat "$LOG"; echo "FAIL: mismatched plan not refused (rc=$rc)"; exit 1; fi
echo "ok: mismatched plan refused (rc=$rc)"
rm -f "$PLAN" "$LOG"
echo PASS
