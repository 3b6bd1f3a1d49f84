#!/usr/bin/env bash
# The default pack on the embedded model: >= 75% INT4, accuracy close to full precision under
# the evaluation protocol, and generate runs on it.
# Usage: quantize_default_test.sh /path/to/accullm   (cwd: repository root)
set -uo pipefail
source tests/integration/test_prelude.sh "$@"
source tests/integration/quantize_lib.sh

"$ACCULLM" quantize --out "$TMP/default" >"$TMP/q.out" 2>"$TMP/q.err" || { cat "$TMP/q.err"; exit 1; }
grep -q "^layer" "$TMP/q.out" && pass "quantize prints the measured plan" || fail "plan table"
grep -q "^quantize: " "$TMP/q.err" && pass "plain progress lines when not on a terminal" || fail "progress lines"
evaluate "$TMP/default" $MODEL "$TMP/default.json" || exit 1
cat "$TMP/default.json"; echo
check "$TMP/default.json" int4_weight_fraction ">=" 0.75 "default pack"
check "$TMP/default.json" ppl_ratio "<=" 1.005 "default pack"
check "$TMP/default.json" kl_mean "<=" 0.0015 "default pack"
check "$TMP/default.json" top1_agreement ">=" 0.98 "default pack"
got=$("$ACCULLM" generate --model "$TMP/default" --prompt "Once upon a time" --temperature 0 --max-tokens 16 2>/dev/null)
[ -n "$got" ] && pass "generate runs on the pack: $got" || fail "generate on the pack"

echo "$failures failure(s)"
[ "$failures" -eq 0 ]
