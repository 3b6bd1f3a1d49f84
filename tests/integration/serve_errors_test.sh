# Raw-HTTP error cases (400/401/404/405/413/429), client-disconnect cancellation, and
# SIGTERM draining (503 for new work, in-flight stream completes, exit 0).
set -euo pipefail
ACCULLM="$1"
source tests/integration/serve_lib.sh
start_server "$ACCULLM" --api-key k3y-for-tests --max-body-bytes 4096 --max-queue 4 --max-num-seqs 1 --max-model-len 128 --max-connections 32
trap 'kill $SERVER_PID 2>/dev/null || true' EXIT
node tests/integration/serve_errors.mjs "$PORT" k3y-for-tests
rc=0; stop_server || rc=$?
[ "$rc" -eq 0 ] || { echo "server exit status $rc"; exit 1; }
grep -q 'client_gone=true' "$SERVER_LOG" || { echo "no client_gone=true log line"; exit 1; }
# The embedded server runs the model through the pipeline's stage runner (one in-process
# stage), the same code as every mpirun rank: its start and shutdown lines are in the log.
grep -q 'stage 0 (rank 1) runs layers \[0, [0-9]*) +embed +head' "$SERVER_LOG" || { echo "no stage-runner start line"; exit 1; }
grep -Eq 'stage 0 \(rank 1\): shutdown after [1-9][0-9]* batches' "$SERVER_LOG" || { echo "no stage-runner shutdown line"; exit 1; }

# Draining: a long stream in flight, then SIGTERM; new requests get 503, /readyz 503,
# the stream still ends with [DONE], and the process exits 0.
start_server "$ACCULLM" --max-num-seqs 4 --drain-timeout 20
node tests/integration/serve_drain.mjs "$PORT" "$SERVER_PID"
rc=0; wait "$SERVER_PID" || rc=$?
trap - EXIT
[ "$rc" -eq 0 ] || { echo "drained server exit status $rc"; cat "$SERVER_LOG"; exit 1; }
grep -q 'drained: stopping' "$SERVER_LOG" || { echo "no drain log line"; exit 1; }
echo "serve_errors_test: OK"
