#!/usr/bin/env bash
# Serving a pack: at startup the pack's full-precision canaries are run through the served
# model and exported on /metrics (accullm_canary_kl_divergence, accullm_canary_top1_match); a
# pack whose canary does not match what is served shows a large KL and a top-1 mismatch.
# Broken packs: NaN/Inf weights are refused at load (serve, generate, eval); finite weights
# whose logits overflow to NaN fail the canary (+Inf KL, not 0) and logprobs read null.
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

# Scheduled drift checks (--canary-interval): the good pack keeps passing round after round; a
# copy with one layer's F16 steps scaled by 1.5 (finite weights, a silent drift) fails.
checks_until() {  # N: waits until at least N rounds of checks ran (10 s at most)
  for _ in $(seq 1 100); do
    [ "$(curl -sf "http://127.0.0.1:$PORT/metrics" | grep '^accullm_canary_checks_total{' | awk '{print int($2)}')" -ge "$1" ] 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}
passing() { curl -sf "http://127.0.0.1:$PORT/metrics" | grep '^accullm_canary_passing{' | awk '{print $2}'; }
start_server "$ACCULLM" --model "$TMP/pack" --canary-interval 0.3 --canary-kl-threshold 0.01 || exit 1
checks_until 3 && [ "$(passing)" = 1 ] && pass "the good pack passes 3 scheduled rounds (KL threshold 0.01)" ||
  fail "good pack: passing '$(passing)', $(curl -sf "http://127.0.0.1:$PORT/metrics" | grep canary_checks)"
stop_server || true
cp -r "$TMP/pack" "$TMP/drift_steps"
$PY tests/tools/edit_tensor.py "$TMP/drift_steps/model.safetensors" model.layers.0.mlp.down_proj.scales --scale 1.5 \
  --keep-dtype || fail "edit_tensor.py --scale --keep-dtype"
start_server "$ACCULLM" --model "$TMP/drift_steps" --canary-interval 0.3 --canary-kl-threshold 0.01 || exit 1
checks_until 2 && [ "$(passing)" = 0 ] && grep -q " error canary .*FAILED: KL .* is over --canary-kl-threshold 0.01" "$SERVER_LOG" &&
  pass "steps of layer 0's down projection ×1.5: the scheduled canaries fail (KL $(metric accullm_canary_kl_divergence 0) on canary 0)" ||
  fail "drifted pack: passing '$(passing)'; $(grep canary "$SERVER_LOG" | head -3)"
stop_server || true

# Sampled layer error against the full-precision checkpoint (--reference): the drifted layer's
# error rises, the others stay where the intact pack has them.
layer_error() {  # LAYER LINEAR
  curl -sf "http://127.0.0.1:$PORT/metrics" | grep '^accullm_layer_relative_error{' | grep "layer=\"$1\"" |
    grep "linear=\"$2\"" | awk '{print $2}'
}
one_request() {
  curl -sf -H 'Content-Type: application/json' -d "{\"model\":\"$1\",\"prompt\":\"Once upon a time\",\"max_tokens\":6}" \
    "http://127.0.0.1:$PORT/v1/completions" >/dev/null
}
start_server "$ACCULLM" --model "$TMP/pack" --reference "$MODEL" --drift-sample-rate 1 || exit 1
one_request pack
good_down=$(layer_error 0 down); good_up=$(layer_error 0 up)
stop_server || true
start_server "$ACCULLM" --model "$TMP/drift_steps" --reference "$MODEL" --drift-sample-rate 1 || exit 1
one_request drift_steps
bad_down=$(layer_error 0 down); bad_up=$(layer_error 0 up)
stop_server || true
$PY -c "import sys; g,b,gu,bu=map(float,sys.argv[1:]); sys.exit(0 if g < 0.15 and b > 0.3 and abs(gu-bu) < 0.02 else 1)" \
  "$good_down" "$bad_down" "$good_up" "$bad_up" 2>/dev/null &&
  pass "layer 0 down's sampled error: $good_down intact, $bad_down with its steps x1.5 (layer 0 up: $good_up vs $bad_up)" ||
  fail "sampled layer error: down '$good_down' -> '$bad_down', up '$good_up' -> '$bad_up'"
"$ACCULLM" serve --model "$TMP/pack" --port 0 --reference "$TMP" >/dev/null 2>"$TMP/ref.err" &&
  fail "a --reference that is not a checkpoint was accepted" ||
  { grep -q "^error: .*--reference" "$TMP/ref.err" && pass "a --reference without the model's tensors is refused: $(head -c 200 "$TMP/ref.err")" ||
    fail "bad --reference: $(head -c 300 "$TMP/ref.err")"; }

# A pack whose canary 0 points at canary 1's logits (another prompt): drift is visible.
cp -r "$TMP/pack" "$TMP/drift"
sed -i 's/"accullm.canary.0.logits"/"accullm.canary.1.logits"/' "$TMP/drift/accullm.json"
start_server "$ACCULLM" --model "$TMP/drift" || exit 1
kl=$(metric accullm_canary_kl_divergence 0)
stop_server || true
[ -n "$kl" ] && $PY -c "import sys; sys.exit(0 if $kl > 0.5 else 1)" \
  && pass "mismatched canary shows drift: KL $kl" || fail "mismatched canary KL '$kl'"

# A pack whose LM head is all NaN (a corrupt file): refused at load by every command, with one
# line naming the tensor. So are Inf in an INT4 linear's F16 steps and NaN in a plain checkpoint.
edit() { $PY tests/tools/edit_tensor.py "$@" || fail "edit_tensor.py $*"; }
refused() {  # WHAT NEEDLE COMMAND...: non-zero exit, exactly one stderr line "error: ...NEEDLE..."
  local what="$1" needle="$2"; shift 2
  timeout 120 "$@" >/dev/null 2>"$TMP/err"; local rc=$?
  if [ $rc -ne 0 ] && [ $rc -ne 124 ] && [ "$(wc -l <"$TMP/err")" -eq 1 ] && grep -q "^error: " "$TMP/err" \
      && grep -qF -- "$needle" "$TMP/err"; then pass "$what refused: $(cat "$TMP/err")"
  else fail "$what: exit $rc, stderr: $(head -c 600 "$TMP/err")"; fi
}
cp -r "$TMP/pack" "$TMP/nan"
edit "$TMP/nan/model.safetensors" lm_head.weight --fill nan
need='tensor "lm_head.weight" (F16 [2048, 256]) holds NaN at [0, 0]'
refused "NaN pack: serve" "$need" "$ACCULLM" serve --model "$TMP/nan" --host 127.0.0.1 --port 0
refused "NaN pack: generate" "$need" "$ACCULLM" generate --model "$TMP/nan" --prompt "Once upon a time" --max-tokens 4
refused "NaN pack: eval" "$need" "$ACCULLM" eval --model "$TMP/nan" --reference $MODEL --data $MODEL/valid.txt --max-chunks 1
cp -r "$TMP/pack" "$TMP/infsteps"
edit "$TMP/infsteps/model.safetensors" model.layers.2.mlp.down_proj.scales --fill inf --at 100
refused "pack with an Inf step" 'tensor "model.layers.2.mlp.down_proj.scales" (F16 [256, 24]) holds Inf at [4, 4]' \
  "$ACCULLM" generate --model "$TMP/infsteps" --prompt-ids 1,420 --output-ids --max-tokens 2
mkdir "$TMP/nanckpt" && cp $MODEL/config.json $MODEL/model.safetensors $MODEL/tokenizer*.json "$TMP/nanckpt/"
edit "$TMP/nanckpt/model.safetensors" model.embed_tokens.weight --fill=-inf --at 1000
refused "plain checkpoint with -Inf" 'tensor "model.embed_tokens.weight" (F32 [2048, 256]) holds -Inf at [3, 232]' \
  "$ACCULLM" generate --model "$TMP/nanckpt" --prompt "Once upon a time" --max-tokens 4

# Finite weights, non-finite logits: the LM head scaled by 1e38 (F32) overflows FP32. The
# canary must fail loudly (error logged, KL +Inf, top-1 0), never read "KL 0"; logprobs are
# JSON null, never a bare NaN; eval reports Inf/null and counts the positions.
cp -r "$TMP/pack" "$TMP/overflow"
edit "$TMP/overflow/model.safetensors" lm_head.weight --scale 1e38
start_server "$ACCULLM" --model "$TMP/overflow" || exit 1
kl=$(metric accullm_canary_kl_divergence 0); top1=$(metric accullm_canary_top1_match 0)
body=$(curl -sf -H 'Content-Type: application/json' \
  -d '{"model":"overflow","prompt":"Once upon a time","max_tokens":2,"temperature":0,"logprobs":2}' \
  "http://127.0.0.1:$PORT/v1/completions")
stop_server || true
grep "canary 0" "$SERVER_LOG"
[ "$kl" = "+Inf" ] && [ "$top1" = 0 ] && pass "overflowing pack: canary KL $kl, top-1 $top1" \
  || fail "overflowing pack: canary KL '$kl', top-1 '$top1' (want +Inf and 0)"
grep -q " error canary 0 .*FAILED: the logits are not finite" "$SERVER_LOG" && pass "the failed canary is logged as an error" \
  || fail "no error line for the failed canary"
# json.loads accepts bare NaN unless told otherwise: any NaN/Infinity token fails here.
lps=$(echo "$body" | $PY -c '
import json, sys
def bare(c): sys.exit("bare " + c + " in the body")
print(json.dumps(json.loads(sys.stdin.read(), parse_constant=bare)["choices"][0]["logprobs"]["token_logprobs"]))')
[ "$lps" = "[null, null]" ] && pass "non-finite logprobs are JSON null: $lps" || fail "logprobs '$lps' in: $(head -c 400 <<<"$body")"
"$ACCULLM" eval --model "$TMP/overflow" --reference $MODEL --data $MODEL/valid.txt --ctx 64 --max-chunks 1 --json \
  >"$TMP/eval.json" 2>"$TMP/eval.err" || fail "eval of the overflowing pack: $(cat "$TMP/eval.err")"
$PY -c '
import json, sys
def bare(c): sys.exit("bare " + c)
r = json.load(open(sys.argv[1]), parse_constant=bare)
sys.exit(0 if r["kl_mean"] is None and r["top1_agreement"] == 0 and r["nonfinite_positions"] == r["positions"] > 0 else 1)' \
  "$TMP/eval.json" && grep -q "^warning: the model's logits were NaN or Inf at 31 of 31" "$TMP/eval.err" \
  && pass "eval reports non-finite logits: $(cat "$TMP/eval.json" | head -c 200)" \
  || fail "eval of the overflowing pack: $(cat "$TMP/eval.json") $(cat "$TMP/eval.err")"

echo "$failures failure(s)"
[ "$failures" -eq 0 ]
