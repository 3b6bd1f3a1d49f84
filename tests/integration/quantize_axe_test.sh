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
# The 16-bit accumulation the guarantee allows (kernels/cpu/low_bit_axe16_kernels.h): at
# ACCULLM_ISA=avx2 the pack's logits, every position, prefill and decode, are the very bytes
# the 32-bit path gives (ACCULLM_AXE16=off); verify mode changes nothing either.
if grep -qw avx2 /proc/cpuinfo; then
  ids=1,420,435,261,394,17,1200,88,5,77,300,41
  same=1
  for mode in prefill decode; do
    for axe in off on verify; do
      ACCULLM_ISA=avx2 ACCULLM_AXE16=$axe "$ACCULLM" logits --model "$TMP/axe" --prompt-ids $ids --mode $mode \
        --out "$TMP/logits_${mode}_$axe.bin" 2>>"$TMP/logits.err" || { cat "$TMP/logits.err"; exit 1; }
    done
    cmp -s "$TMP/logits_${mode}_off.bin" "$TMP/logits_${mode}_on.bin" || same=0
    cmp -s "$TMP/logits_${mode}_off.bin" "$TMP/logits_${mode}_verify.bin" || same=0
  done
  grep -q "ACCULLM_AXE16=verify: [1-9][0-9]* lane sums checked, 0 outside int16" "$TMP/logits.err" \
    && pass "AXE 16-bit path ran at avx2; verify mode: no lane sum outside int16" \
    || { grep AXE16 "$TMP/logits.err"; fail "AXE verify mode: overflow or no 16-bit call"; }
  [ "$same" -eq 1 ] && pass "AXE 16-bit path: logits at avx2 identical to the 32-bit path" \
    || fail "AXE 16-bit path changed the logits at avx2"
fi
evaluate "$TMP/axe" $MODEL "$TMP/axe.json" || exit 1
check "$TMP/axe.json" ppl_ratio "<=" 1.02 "AXE 16-bit pack"

echo "$failures failure(s)"
[ "$failures" -eq 0 ]
