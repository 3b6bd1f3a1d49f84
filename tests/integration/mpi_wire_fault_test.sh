#!/usr/bin/env bash
# A stage that sends a corrupted, truncated, oversized, semantically wrong or unexpected wire
# message mid-generation (real mpirun on loopback, MPMD: coordinator and one stage are
# `accullm serve`, the other stage is tests/mpi/pipeline_fault_stage.cc: the project's own
# stage code over a transport that damages its Nth batch or result). Each case: the client's
# stream ends with an error event that names the rank and what was wrong, within 2 s of the
# fault (the stage timeout is 5 s: a refusal, not silence, must end it), mpirun exits 3, no
# process is left. The undamaged fault stage (control) answers exactly as single-process serve
# and shuts down with status 0. Usage: mpi_wire_fault_test.sh ACCULLM
set -euo pipefail
BIN="$(realpath "$1")"
FAULT_BIN="$(dirname "$BIN")/../tests/pipeline_fault_stage"
cd "$(dirname "$0")/../.."
source tests/integration/serve_lib.sh
source tests/integration/mpi_lib.sh
command -v mpirun >/dev/null || { echo "SKIP: mpirun not installed (openmpi-bin)"; exit 0; }
[ -x "$FAULT_BIN" ] || { echo "FAIL: $FAULT_BIN not built (cmake --build build --target pipeline_fault_stage)"; exit 1; }
MODEL="$(pwd)/models/tinystories-llama"
SERVE=(serve --host 127.0.0.1 --port 0 --threads 1 --heartbeat-ms 100 --stage-timeout-ms 5000)
NTH=6  # the 6th batch / result: well into the decode of the stream below
OUT="$(mktemp -d)"
trap '[ -n "${MPI_PID:-}" ] && kill -KILL -- -"$MPI_PID" 2>/dev/null; rm -rf "$OUT"' EXIT
FAILURES=0

# start_job POSITION FAULT: coordinator + 2 stages, the fault stage as stage POSITION (0 or 1).
start_job() {
  local fault=(-np 1 "$FAULT_BIN" "$MODEL" "$2" "$NTH") real=(-np 1 "$BIN" "${SERVE[@]}")
  if [ "$1" = 0 ]; then
    start_mpi_job -np 1 "$BIN" "${SERVE[@]}" : "${fault[@]}" : "${real[@]}"
  else
    start_mpi_job -np 1 "$BIN" "${SERVE[@]}" : "${real[@]}" : "${fault[@]}"
  fi
}

# fault_case NAME POSITION FAULT PATTERN: the client's error and the log must match PATTERN (ERE).
fault_case() {
  local name="$1" position="$2" fault="$3" pattern="$4" bad=0
  start_job "$position" "$fault"
  curl -sN -o "$OUT/$name" --max-time 60 -H 'Content-Type: application/json' \
    -d '{"model":"tinystories-llama","prompt":"Once upon a time","max_tokens":400,"ignore_eos":true,"stream":true}' \
    "http://127.0.0.1:$PORT/v1/completions" 2>/dev/null || true
  local ended fault_at
  ended=$(date +%s.%N)
  wait_exit "$MPI_PID" 20; local rc=$WAIT_RC exited
  exited=$(date +%s.%N)
  fault_at="$(grep -o 'pipeline_fault_stage rank [0-9]*: .* at [0-9.]*' "$MPI_LOG" | sed 's/.* at //' | head -1 || true)"
  local msg
  msg="$(grep -o '"error":{"message":"[^"]*' "$OUT/$name" | sed 's/.*"message":"//' | head -1 || true)"
  local after="never" exit_after="never"
  if [ -n "$fault_at" ]; then
    after="$(printf '%.3f' "$(echo "$ended - $fault_at" | bc -l)")"
    exit_after="$(printf '%.3f' "$(echo "$exited - $fault_at" | bc -l)")"
  fi
  echo "$name: client error ${after} s after the fault, mpirun exit $rc ${exit_after} s after it: $msg"
  [ -n "$fault_at" ] || { echo "  FAIL: the fault was never injected"; bad=1; }
  if grep -q '"finish_reason":"length"' "$OUT/$name"; then echo "  FAIL: the stream completed"; bad=1; fi
  if ! echo "$msg" | grep -Eq "$pattern"; then echo "  FAIL: the client's error does not match /$pattern/"; bad=1; fi
  if ! grep -E "pipeline failed: " "$MPI_LOG" | grep -Eq "$pattern"; then echo "  FAIL: no such failure logged"; bad=1; fi
  if [ -n "$fault_at" ] && [ "$(echo "$ended - $fault_at < 2" | bc -l)" != 1 ]; then
    echo "  FAIL: the client waited over 2 s for its error"; bad=1
  fi
  if [ "$rc" != 3 ]; then echo "  FAIL: mpirun exit status $rc (want 3: the pipeline failed)"; bad=1; fi
  if grep -Eq "Segmentation|Aborted|terminate called|AddressSanitizer" "$MPI_LOG"; then echo "  FAIL: a rank crashed"; bad=1; fi
  local left="$(processes_left)"
  if [ -n "$left" ]; then echo "  FAIL: processes left behind: $left"; kill -KILL $left 2>/dev/null || true; bad=1; fi
  if [ "$bad" = 1 ]; then echo "--- mpirun log"; tail -20 "$MPI_LOG"; FAILURES=$((FAILURES + 1)); fi
  MPI_PID=""
}

# Control: the fault stage with no fault is a faithful stage.
start_server "$BIN" --threads 1
REF="$(answers "$PORT")"
stop_server
[ "$(echo "$REF" | wc -l)" = 3 ] || { echo "reference run failed"; exit 1; }
start_job 1 none
GOT="$(answers "$PORT")"
kill -TERM "$(rank_pid 0)"
wait_exit "$MPI_PID" 30
if [ "$GOT" != "$REF" ] || [ "$WAIT_RC" != 0 ]; then
  echo "FAIL: the undamaged fault stage differs from single-process serve or did not stop cleanly (exit $WAIT_RC)"
  diff <(echo "$REF") <(echo "$GOT") || true; tail -20 "$MPI_LOG"; exit 1
fi
echo "ok: control (fault stage, no fault): answers equal single-process serve, exit 0"
MPI_PID=""

# The last stage's results to the coordinator.
fault_case result-garbage 1 garbage 'worker rank 2 \(stage 1\) sent a malformed message \([0-9]+ bytes\): wire: result.ok must be 0 or 1'
fault_case result-truncated 1 truncate 'worker rank 2 \(stage 1\) sent a malformed message \([0-9]+ bytes\): wire: header says [0-9]+ body bytes, received [0-9]+'
fault_case result-oversized 1 oversize 'worker rank 2 \(stage 1\) sent a malformed message \(671[0-9]{5} bytes\): wire: header says [0-9]+ body bytes, received 671[0-9]{5}'
fault_case result-bad-token 1 bad-token 'worker rank 2 \(stage 1\) returned an invalid result for batch [0-9]+: token 2048 .*vocabulary size 2048'
fault_case result-wrong-type 1 wrong-type 'worker rank 2 \(stage 1\) sent an unexpected hello-ack message'
# Stage 0's batch to stage 1: the receiving stage refuses it and tells the coordinator.
fault_case batch-truncated 0 truncate 'stage 1 \(rank 2\) refused a malformed message \([0-9]+ bytes\) from rank 1: wire: header says'
fault_case batch-oversized 0 oversize 'stage 1 \(rank 2\) refused a malformed message \(671[0-9]{5} bytes\) from rank 1: wire: header says'

[ "$FAILURES" = 0 ] || { echo "$FAILURES case(s) failed"; exit 1; }
echo PASS
