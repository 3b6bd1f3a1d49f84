#!/usr/bin/env bash
# A bounded soak on loopback, against the embedded server and against a coordinator with two
# pipeline stages under mpirun: CLIENTS concurrent clients for SECONDS each, streaming and not,
# some hanging up mid-stream or before the reply, some sending malformed requests (bad JSON,
# invalid UTF-8, bodies over --max-body-bytes, wrong types, unknown fields, garbage). Every
# answer must equal the same request's answer alone (computed on the same server before the
# load), nothing lost, no 5xx, each malformed request gets its 4xx, /metrics counts what the
# clients saw, resident memory returns to the warmed-up baseline, and the server still answers
# /healthz and the references afterwards, then exits 0 on SIGTERM (tests/integration/serve_soak.mjs
# does the load and the checks; docs/soak.md has the figures of a long run).
# Usage: serve_soak_test.sh ACCULLM   (cwd: repository root)
# Environment: ACCULLM_SOAK_SECONDS (load per server kind, default 30), ACCULLM_SOAK_CLIENTS
# (default 64), ACCULLM_SOAK_KINDS ("embedded mpi", the default, or one of them),
# ACCULLM_SOAK_OUT (a directory to keep each kind's figures as KIND.json).
set -uo pipefail
source tests/integration/test_prelude.sh "$@"
source tests/integration/serve_lib.sh
source tests/integration/mpi_lib.sh
SERVER_PID=""; MPI_PID=""
trap '[ -n "$SERVER_PID" ] && kill $SERVER_PID 2>/dev/null; [ -n "$MPI_PID" ] && kill -KILL -- -$MPI_PID 2>/dev/null
      rm -rf "$TMP"' EXIT

SECONDS_PER_KIND=${ACCULLM_SOAK_SECONDS:-30}
CLIENTS=${ACCULLM_SOAK_CLIENTS:-64}
KINDS=${ACCULLM_SOAK_KINDS:-embedded mpi}
OUT_DIR=${ACCULLM_SOAK_OUT:-$TMP}
MAX_BODY=16384
# A queue that holds every client's request (n = 2 included): a 429 here would be a lost answer.
# An 8 MiB KV pool (128 blocks of 16 positions) for 64 running sequences of up to 128
# positions: sequences are preempted and recomputed all along (~25 a second in docs/soak.md).
COMMON=(--model "$MODEL" --served-model-name m --max-model-len 128 --max-num-seqs 64
        --max-queue $((CLIENTS * 4)) --max-body-bytes "$MAX_BODY" --kv-cache-mb 8)
mkdir -p "$OUT_DIR"

soak() {  # KIND PIDS
  echo "# $1: $CLIENTS clients for $SECONDS_PER_KIND s"
  if node tests/integration/serve_soak.mjs "$PORT" "$SECONDS_PER_KIND" "$CLIENTS" "$MAX_BODY" "$2" "$OUT_DIR/$1.json"; then
    pass "$1: soak"
  else
    fail "$1: soak"
  fi
}

for kind in $KINDS; do
  case $kind in
    embedded)
      if start_server "$ACCULLM" "${COMMON[@]}"; then
        soak embedded "$SERVER_PID"
        stop_server && pass "embedded: exit 0 on SIGTERM" || { fail "embedded: exit status on SIGTERM"; grep -v " info request " "$SERVER_LOG" | tail -40; }
        SERVER_PID=""
      else
        fail "embedded: the server did not start"
      fi
      ;;
    mpi)
      if start_mpi_server 3 "$ACCULLM" "${COMMON[@]}"; then
        pids="$(rank_pid 0),$(rank_pid 1),$(rank_pid 2)"
        soak mpi "$pids"
        kill -TERM "$(rank_pid 0)"  # the coordinator drains and stops every stage
        wait_exit "$MPI_PID" 60
        MPI_PID=""
        [ "$WAIT_RC" -eq 0 ] && pass "mpi: exit 0 on SIGTERM" || { fail "mpi: exit status $WAIT_RC on SIGTERM"; grep -v " info request " "$MPI_LOG" | tail -30; }
        left=$(processes_left)
        [ -z "$left" ] && pass "mpi: no rank left behind" || fail "mpi: processes left: $left"
      else
        fail "mpi: the pipeline did not start"
      fi
      ;;
    *) fail "unknown server kind '$kind' in ACCULLM_SOAK_KINDS" ;;
  esac
done

echo "$failures failure(s)"
[ "$failures" -eq 0 ]
