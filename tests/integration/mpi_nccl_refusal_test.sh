#!/usr/bin/env bash
# --activation-transport nccl where it cannot work is refused at startup with a clear message
# and a non-zero exit, never a hang: stages that see no CUDA device (CUDA_VISIBLE_DEVICES is
# emptied, so this runs on GPU hosts too) or a binary without NCCL; nccl without mpirun; an
# unknown transport. Usage: mpi_nccl_refusal_test.sh ACCULLM
set -euo pipefail
BIN="$(realpath "$1")"
cd "$(dirname "$0")/../.."
source tests/integration/mpi_lib.sh
command -v mpirun >/dev/null || { echo "SKIP: mpirun not installed (openmpi-bin)"; exit 0; }
LOG="$(mktemp)"

# Without mpirun: refused before anything loads.
set +e
timeout 60 "$BIN" serve --port 0 --activation-transport nccl >"$LOG" 2>&1; rc=$?
set -e
if [ "$rc" = 0 ] || [ "$rc" = 124 ] || ! grep -q "activation-transport nccl needs mpirun" "$LOG"; then
  cat "$LOG"; echo "FAIL: nccl without mpirun not refused (rc=$rc)"; exit 1
fi
echo "ok: nccl without mpirun refused (rc=$rc)"

set +e
timeout 60 "$BIN" serve --port 0 --activation-transport gloo >"$LOG" 2>&1; rc=$?
set -e
if [ "$rc" = 0 ] || [ "$rc" = 124 ] || ! grep -q "activation-transport" "$LOG"; then
  cat "$LOG"; echo "FAIL: unknown transport not refused (rc=$rc)"; exit 1
fi
echo "ok: unknown transport refused (rc=$rc)"

# 1 coordinator + 2 stages with no visible CUDA device.
start=$(date +%s)
set +e
CUDA_VISIBLE_DEVICES= timeout 120 mpirun "${MPIRUN_FLAGS[@]}" -x CUDA_VISIBLE_DEVICES -np 3 "$BIN" serve --host 127.0.0.1 \
  --port 0 --threads 1 --activation-transport nccl >"$LOG" 2>&1
rc=$?
set -e
secs=$(( $(date +%s) - start ))
if [ "$rc" = 124 ]; then cat "$LOG"; echo "FAIL: hung (killed after 120 s)"; exit 1; fi
if [ "$rc" = 0 ]; then cat "$LOG"; echo "FAIL: nccl without a CUDA device started (rc=0)"; exit 1; fi
if ! grep -Eq -- "--activation-transport nccl: (rank [12] has no CUDA device|rank [12] was built without NCCL|this build has no NCCL)" "$LOG"; then
  cat "$LOG"; echo "FAIL: the refusal does not name the problem (rc=$rc)"; exit 1
fi
if grep -q "accullm serve: listening" "$LOG"; then cat "$LOG"; echo "FAIL: served although refused"; exit 1; fi
echo "ok: refused in ${secs} s (rc=$rc): $(grep -Eo -- "--activation-transport nccl: [^\"]*" "$LOG" | head -1)"
rm -f "$LOG"
echo PASS
