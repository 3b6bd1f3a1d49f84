#!/usr/bin/env bash
# Serving a pack: at startup the pack's full-precision canaries are run through the served
# model and exported on /metrics (accullm_canary_kl_divergence, accullm_canary_top1_match); a
# pack whose canary does not match what is served shows a large KL and a top-1 mismatch.
# Usage: serve_pack_canary_test.sh ACCULLM   (cwd: repository root)
set -uo pipefail
source tests/integration/test_prelude.sh "$@"
source tests/integration/serve_lib.sh
# A quick pack: round to nearest, every block INT4 (no sensitivity run, a small calibration).
"$ACCULLM" quantize --out "$TMP/pack" --method rtn --fp16-layers none --calib-samples 2 --calib-seq-len 64 \
  >/dev/null 2>"$TMP/q.err" || { cat "$TMP/q.err"; exit 1; }

metric() {  # NAME CANARY: the value exported for that canary
  curl -sf "http://127.0.0.1:$PORT/metrics" | grep "^$1{" | grep "canary=\"$2\"" | awk '{print $2}'
}

start_server "$ACCULLM" --model "$TMP/pack" || exit 1
kl=$(metric accullm_canary_kl_divergence 0); top1=$(metric accullm_canary_top1_match 0)
text=$(curl -sf -H 'Content-Type: application/json' \
  -d '{"model":"pack","prompt":"Once upon a time","max_tokens":8,"temperature":0}' \
  "http://127.0.0.1:$PORT/v1/completions" | $PY -c 'import json,sys; print(json.load(sys.stdin)["choices"][0]["text"])')
stop_server || true
grep -m3 "canary" "$SERVER_LOG"
[ -n "$kl" ] && $PY -c "import sys; sys.exit(0 if 0 < $kl < 0.2 else 1)" \
  && pass "canary 0 exported: KL $kl (RTN INT4 vs full precision), top-1 match $top1" || fail "canary KL '$kl'"
[ "$top1" = 1 ] && pass "canary 0 keeps its top-1 token" || fail "canary top-1 '$top1'"
[ -n "$text" ] && pass "the pack serves completions: $text" || fail "no completion from the pack"

# A pack whose canary 0 points at canary 1's logits (another prompt): drift is visible.
cp -r "$TMP/pack" "$TMP/drift"
sed -i 's/"accullm.canary.0.logits"/"accullm.canary.1.logits"/' "$TMP/drift/accullm.json"
start_server "$ACCULLM" --model "$TMP/drift" || exit 1
kl=$(metric accullm_canary_kl_divergence 0)
stop_server || true
[ -n "$kl" ] && $PY -c "import sys; sys.exit(0 if $kl > 0.5 else 1)" \
  && pass "mismatched canary shows drift: KL $kl" || fail "mismatched canary KL '$kl'"

echo "$failures failure(s)"
[ "$failures" -eq 0 ]
