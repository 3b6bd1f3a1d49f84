#!/usr/bin/env bash
# Kills one worker rank (SIGKILL) mid-generation: the client gets an error within a bounded
# time, the job exits non-zero, and no process is left behind. Usage: mpi_fault_test.sh ACCULLM
set -euo pipefail
BIN="$(realpath "$1")"
cd "$(dirname "$0")/../.."
source tests/integration/mpi_lib.sh
command -v mpirun >/dev/null || { echo "SKIP: mpirun not installed (openmpi-bin)"; exit 0; }

start_mpi_server 4 "$BIN" --heartbeat-ms 100 --stage-timeout-ms 1500
OUT="$(mktemp)"
START=$(date +%s.%N)
# A long streaming generation; the victim dies once tokens flow.
curl -sN -o "$OUT" -w '%{http_code}\n' --max-time 30 -H 'Content-Type: application/json' \
  -d '{"model":"tinystories-llama","prompt":"Once upon a time","max_tokens":400,"ignore_eos":true,"stream":true}' \
  "http://127.0.0.1:$PORT/v1/completions" >"$OUT.code" 2>/dev/null &
CURL=$!
for _ in $(seq 1 200); do grep -q '"text"' "$OUT" 2>/dev/null && break; sleep 0.02; done
VICTIM="$(rank_pid 2)" || { echo "FAIL: worker rank 2 was gone before the kill (the job ended on its own)"; cat "$MPI_LOG"; exit 1; }
echo "killing worker rank 2 (pid $VICTIM) mid-generation"
kill -KILL "$VICTIM"
KILLED=$(date +%s.%N)
wait "$CURL" || true
ERR_AT=$(date +%s.%N)
code="$(cat "$OUT.code" 2>/dev/null || echo none)"
wait_exit "$MPI_PID" 30; rc=$WAIT_RC
END=$(date +%s.%N)
echo "client: http $code, ended $(echo "$ERR_AT - $KILLED" | bc) s after the kill; mpirun exit $rc after $(echo "$END - $KILLED" | bc) s"
tail -c 400 "$OUT"; echo
grep -E "pipeline failed|exiting with status|noticed" "$MPI_LOG" | head -5 || true
FAIL=0
# The stream must not have completed normally: an error event, or a broken connection.
if grep -q '"finish_reason":"length"' "$OUT"; then echo "FAIL: generation completed despite the dead stage"; FAIL=1; fi
if ! grep -q '"error"' "$OUT" && [ "$code" = 200 ] && grep -q '\[DONE\]' "$OUT"; then echo "FAIL: no error seen by the client"; FAIL=1; fi
# When the error event arrives (the connection may also just break), it names the dead rank
# (alone, or among the ranks that went silent with it: a dead peer can stall MPI progress
# everywhere, so silence alone cannot always single it out).
if grep -q '"error"' "$OUT" && ! grep -Eq 'worker (rank 2 |ranks ([0-9]+, )*2[ ,])' "$OUT"; then echo "FAIL: the error does not name the failed rank"; FAIL=1; fi
if [ "$(echo "$ERR_AT - $KILLED < 10" | bc)" != 1 ]; then echo "FAIL: the client waited too long"; FAIL=1; fi
if [ "$rc" = 0 ] || [ "$rc" = 124 ]; then echo "FAIL: job exit status $rc (want non-zero, no timeout)"; cat "$MPI_LOG"; FAIL=1; fi
LEFT="$(processes_left)"
if [ -n "$LEFT" ]; then echo "FAIL: processes left behind: $LEFT"; kill -KILL $LEFT 2>/dev/null || true; FAIL=1; fi
[ "$FAIL" = 0 ] || { echo "--- mpirun log"; cat "$MPI_LOG"; }
rm -f "$OUT" "$OUT.code"
[ "$FAIL" = 0 ] && echo PASS
exit "$FAIL"
