#!/usr/bin/env bash
# AXE: with 16-bit accumulators no output channel can provably overflow, at a small accuracy
# cost. Usage: quantize_axe_test.sh /path/to/accullm   (cwd: repository root)
set -uo pipefail
source tests/integration/test_prelude.sh "$@"
source tests/integration/quantize_lib.sh

"$ACCULLM" quantize --out "$TMP/axe" --accumulator-bits 16 --group 128 --tile 32 --fp16-layers none --calib-samples 16 \
  >"$TMP/axe.out" 2>"$TMP/axe.err" || { cat "$TMP/axe.err"; exit 1; }
grep "accumulator check" "$TMP/axe.out"
grep -q "accumulator check: 0 of [0-9]* output channels can overflow a signed 16-bit" "$TMP/axe.out" \
  && pass "AXE: no channel can overflow 16 bits" || fail "AXE overflow check"
evaluate "$TMP/axe" $MODEL "$TMP/axe.json" || exit 1
check "$TMP/axe.json" ppl_ratio "<=" 1.02 "AXE 16-bit pack"

echo "$failures failure(s)"
[ "$failures" -eq 0 ]
