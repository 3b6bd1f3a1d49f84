#!/usr/bin/env bash
# --activation-transport nccl on real GPUs: 1 coordinator + 2 stages under mpirun, the
# activations between the stages over NCCL (host -> device -> ncclSend / ncclRecv -> host);
# every answer must equal single-process `accullm serve` (f32) and the MPI pipeline's (f16),
# and SIGTERM to the coordinator shuts the job down with status 0.
# SKIPs (exit 77, which ctest reports as Skipped; "SKIP: ...") where it cannot run: no mpirun, a binary built without NCCL, or
# fewer than 2 GPUs (NCCL refuses two ranks on one device). Usage: mpi_nccl_test.sh ACCULLM
set -euo pipefail
BIN="$(realpath "$1")"
cd "$(dirname "$0")/../.."
source tests/integration/serve_lib.sh
source tests/integration/mpi_lib.sh
command -v mpirun >/dev/null || { echo "SKIP: mpirun not installed (openmpi-bin)"; exit 77; }
LIBS="$(ldd "$BIN" 2>/dev/null || true)"  # (not piped into grep -q: SIGPIPE under pipefail)
if ! grep -q libnccl <<<"$LIBS"; then
  echo "SKIP: $BIN was built without NCCL (CUDA and NCCL not found at configure time)"; exit 77
fi
GPUS="$( (nvidia-smi -L 2>/dev/null || true) | grep -c '^GPU ' || true)"
if [ "${GPUS:-0}" -lt 2 ]; then
  echo "SKIP: --activation-transport nccl needs 2 GPUs (one per stage); nvidia-smi -L lists ${GPUS:-0}"; exit 77
fi

start_server "$BIN" --threads 1
REF="$(answers "$PORT")"
stop_server
[ "$(echo "$REF" | wc -l)" = 3 ] || { echo "reference run failed"; exit 1; }

# pipeline_answers ACT TRANSPORT: answers of a 2-stage pipeline; checks a clean shutdown.
pipeline_answers() {
  start_mpi_server 3 "$BIN" --activations "$1" --activation-transport "$2" >&2
  local got; got="$(answers "$PORT")"
  if [ "$2" = nccl ] && ! grep -q "activations over NCCL on CUDA device" "$MPI_LOG"; then
    cat "$MPI_LOG" >&2; echo "FAIL: stages did not set up NCCL" >&2; kill -KILL -- -"$MPI_PID" 2>/dev/null || true; exit 1
  fi
  kill -TERM "$(rank_pid 0)"
  wait_exit "$MPI_PID" 30
  if [ "$WAIT_RC" != 0 ]; then cat "$MPI_LOG" >&2; echo "FAIL: mpirun exited $WAIT_RC after SIGTERM ($1 over $2)" >&2; exit 1; fi
  echo "$got"
}

GOT="$(pipeline_answers f32 nccl)"
if [ "$GOT" != "$REF" ]; then echo "FAIL: f32 over NCCL differs from single-process"; diff <(echo "$REF") <(echo "$GOT") || true; exit 1; fi
echo "ok: 2 stages, f32 activations over NCCL identical to single-process"
MPI16="$(pipeline_answers f16 mpi)"
NCCL16="$(pipeline_answers f16 nccl)"
if [ "$NCCL16" != "$MPI16" ]; then echo "FAIL: f16 over NCCL differs from f16 over MPI"; diff <(echo "$MPI16") <(echo "$NCCL16") || true; exit 1; fi
echo "ok: f16 activations over NCCL identical to f16 over MPI"
echo PASS
