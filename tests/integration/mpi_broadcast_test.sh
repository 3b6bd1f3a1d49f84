#!/usr/bin/env bash
# MpiTransport::Broadcast (the NCCL bootstrap's collective) under real mpirun -np 3 on
# loopback: see tests/mpi/mpi_broadcast_check.cc. Usage: mpi_broadcast_test.sh ACCULLM
set -euo pipefail
BIN="$(realpath "$1")"
CHECK_BIN="$(dirname "$BIN")/../tests/mpi_broadcast_check"
cd "$(dirname "$0")/../.."
source tests/integration/mpi_lib.sh
command -v mpirun >/dev/null || { echo "SKIP: mpirun not installed (openmpi-bin)"; exit 0; }
[ -x "$CHECK_BIN" ] || { echo "FAIL: $CHECK_BIN not built"; exit 1; }
LOG="$(mktemp)"
set +e
timeout 60 mpirun "${MPIRUN_FLAGS[@]}" -np 3 "$CHECK_BIN" >"$LOG" 2>&1
rc=$?
set -e
cat "$LOG"
[ "$rc" = 0 ] || { echo "FAIL: mpirun exited $rc"; exit 1; }
[ "$(grep -c ': ok$' "$LOG")" = 3 ] || { echo "FAIL: not every rank passed"; exit 1; }
rm -f "$LOG"
echo PASS
