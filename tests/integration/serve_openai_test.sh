# The REST service driven by the official `openai` npm client: completions, chat, streaming,
# stop sequences, n > 1, seeds, logprobs, auth, and same-seed identity alone vs batched.
set -euo pipefail
ACCULLM="$1"
source tests/integration/serve_lib.sh
if [ ! -d tests/oracles/node_modules/openai ]; then echo "openai npm package missing (run scripts/setup.sh)"; exit 1; fi
# The greedy reference from the single-sequence CLI path (model/generation.cc).
GREEDY="$("$ACCULLM" generate --prompt "Once upon a time" --max-tokens 24 --temperature 0 2>/dev/null)"
start_server "$ACCULLM" --api-key test-key-123 --max-num-seqs 32
trap 'kill $SERVER_PID 2>/dev/null || true' EXIT
GREEDY_TEXT="$GREEDY" node tests/integration/serve_openai_client.mjs "$PORT" test-key-123
stop_server
trap - EXIT
grep -q 'request id=cmpl-' "$SERVER_LOG" || { echo "no request log lines"; exit 1; }
echo "serve_openai_test: OK"
