#!/usr/bin/env bash
# An idle, oversubscribed pipeline (8 ranks: coordinator + 7 stages, on however few cores
# there are, beside busy CPU hogs) must keep serving through CPU starvation: while idle for
# several heartbeat timeouts, after the whole job got no CPU at all for longer than the timeout
# (every rank SIGSTOPped, as under a frozen cgroup or a paused VM), and after the coordinator
# alone was starved for longer than the timeout. Nobody died, so nobody may be declared dead.
# (mpi_fault_test.sh checks that a killed stage still is.) Usage: mpi_starvation_test.sh ACCULLM
set -euo pipefail
BIN="$(realpath "$1")"
cd "$(dirname "$0")/../.."
source tests/integration/mpi_lib.sh
command -v mpirun >/dev/null || { echo "SKIP: mpirun not installed (openmpi-bin)"; exit 0; }

# Short windows keep the test short (the defaults scale the same way); 2.5 s rather than 1 s:
# 8 ranks starting on 2 cores beside another test (ctest -j2) were silent for up to 1,008 ms
# before their first heartbeat in a clean-machine run, and a 1 s timeout declared two dead.
HB=100 TIMEOUT=2500
HOGS=()
cleanup() {
  [ ${#HOGS[@]} -gt 0 ] && kill "${HOGS[@]}" 2>/dev/null || true
  [ -n "${MPI_PID:-}" ] && kill -KILL -- -"$MPI_PID" 2>/dev/null || true
}
trap cleanup EXIT

start_mpi_server 8 "$BIN" --heartbeat-ms "$HB" --stage-timeout-ms "$TIMEOUT"
RANKS=()
for r in $(seq 0 7); do RANKS+=("$(rank_pid "$r")"); done
# Two busy loops per core compete with the ranks for the rest of the test.
for _ in $(seq 1 $((2 * $(nproc)))); do
  (while :; do :; done) &
  HOGS+=($!)
done

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
declare -A T0
for p in "${RANKS[@]}"; do T0[$p]=$(cpu_ticks "$p"); done
sleep $((4 * TIMEOUT / 1000))  # idle for four timeouts
CPU=""
for p in "${RANKS[@]}"; do CPU+="$(( ($(cpu_ticks "$p") - T0[$p]) * 100 / $(getconf CLK_TCK) / (4 * TIMEOUT / 1000) ))% "; done
echo "idle CPU per rank (0..7) beside $((2 * $(nproc))) hogs: $CPU"

freeze() {  # freeze MS PID...: no CPU at all for MS milliseconds
  local ms="$1"; shift
  kill -STOP "$@" 2>/dev/null || true  # (a rank that already exited fails the checks below)
  sleep "$(echo "$ms / 1000" | bc -l)"
  kill -CONT "$@" 2>/dev/null || true
}
echo "whole job frozen for $((TIMEOUT * 5 / 2)) ms, twice"
freeze $((TIMEOUT * 5 / 2)) "${RANKS[@]}"
sleep 2
freeze $((TIMEOUT * 5 / 2)) "${RANKS[@]}"
sleep 2
echo "coordinator alone frozen for $((TIMEOUT * 3 / 2)) ms"
freeze $((TIMEOUT * 3 / 2)) "${RANKS[0]}"
sleep 2

FAIL=0
if ! kill -0 "$MPI_PID" 2>/dev/null; then echo "FAIL: the job exited"; FAIL=1; fi
if [ "$FAIL" = 0 ]; then
  curl -sf -m 10 "http://127.0.0.1:$PORT/readyz" >/dev/null || { echo "FAIL: /readyz"; FAIL=1; }
  ANSWER="$(curl -sf -m 60 -H 'Content-Type: application/json' \
    -d '{"model":"tinystories-llama","prompt":"Once upon a time","max_tokens":8,"temperature":0}' \
    "http://127.0.0.1:$PORT/v1/completions" || true)"
  echo "$ANSWER" | grep -q '"finish_reason":"length"' || { echo "FAIL: no completion: $ANSWER"; FAIL=1; }
fi
# "late, but alive" is the near-miss warning a starved rank earns (it is not declared dead):
# 8 ranks starting on 2 cores beside the hogs can be that late before the first freeze.
DEATHS="$(grep -E "pipeline failed|silent for|exiting" "$MPI_LOG" | grep -v "late, but alive" || true)"
if [ -n "$DEATHS" ]; then echo "FAIL: a live rank was declared dead: $DEATHS"; FAIL=1; fi
grep -E "late|not running|pipeline failed|silent for" "$MPI_LOG" | head -12 || true

kill "${HOGS[@]}" 2>/dev/null || true
HOGS=()
if [ "$FAIL" = 0 ]; then
  kill -TERM "${RANKS[0]}"
  wait_exit "$MPI_PID" 30
  if [ "$WAIT_RC" != 0 ]; then echo "FAIL: mpirun exited $WAIT_RC after SIGTERM"; FAIL=1; fi
fi
[ "$FAIL" = 0 ] || { echo "--- mpirun log"; tail -40 "$MPI_LOG"; exit 1; }
echo PASS
