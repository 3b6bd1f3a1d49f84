# Shared by the quantize_*_test.sh scripts (sourced after test_prelude.sh; not a test itself):
# reading a field of a JSON result, threshold checks, and `accullm eval` on the first 40
# chunks of valid.txt (keeps CI short; docs/accuracy.md has the full-text figures).
json() { $PY -c "import json,sys; print(json.load(open('$1'))['$2'])"; }
# check FILE FIELD OP LIMIT DESCRIPTION
check() {
  local v; v=$(json "$1" "$2")
  if $PY -c "import sys; sys.exit(0 if $v $3 $4 else 1)"; then pass "$5: $2 = $v $3 $4"; else fail "$5: $2 = $v, want $3 $4"; fi
}
evaluate() {  # PACK REFERENCE OUT.json
  "$ACCULLM" eval --model "$1" --reference "$2" --data $MODEL/valid.txt --max-chunks 40 --json >"$3" 2>"$TMP/eval.err" \
    || { cat "$TMP/eval.err"; return 1; }
}
