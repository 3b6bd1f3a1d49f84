# Shared by the serve_*_test.sh scripts (sourced; not a test itself).
# start_server ACCULLM [flags...]: starts `accullm serve --port 0 ...` in the background,
# sets SERVER_PID, PORT, SERVER_LOG, and waits until /readyz answers 200.
start_server() {
  local bin="$1"; shift
  SERVER_LOG="$(mktemp)"
  "$bin" serve --host 127.0.0.1 --port 0 "$@" >"$SERVER_LOG" 2>&1 &
  SERVER_PID=$!
  PORT=""
  for _ in $(seq 1 600); do  # up to 30 s: CI machines can be busy
    PORT="$(grep -o 'accullm serve: listening on 127.0.0.1:[0-9]*' "$SERVER_LOG" | head -1 | sed 's/.*://' || true)"
    if [ -n "$PORT" ] && curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1; then return 0; fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then cat "$SERVER_LOG" >&2; echo "server died" >&2; return 1; fi
    sleep 0.05
  done
  cat "$SERVER_LOG" >&2
  echo "server not ready" >&2
  kill "$SERVER_PID" 2>/dev/null || true
  return 1
}

# stop_server: SIGTERM and wait; returns the server's exit status.
stop_server() {
  kill -TERM "$SERVER_PID" 2>/dev/null || true
  local rc=0
  wait "$SERVER_PID" || rc=$?
  return $rc
}

oracle_node_modules() { echo "$(pwd)/tests/oracles/node_modules"; }
