#!/usr/bin/env bash
# Under mpirun the coordinator loads without the NaN/Inf scan and each stage checks only the
# layers the hello assigns it: a NaN in layer 6 is refused by the stage that runs layer 6, and
# the job exits non-zero naming the tensor, never serving. Usage: mpi_nan_refusal_test.sh ACCULLM
set -euo pipefail
BIN="$(realpath "$1")"
cd "$(dirname "$0")/../.."
source tests/integration/mpi_lib.sh
command -v mpirun >/dev/null || { echo "SKIP: mpirun not installed (openmpi-bin)"; exit 0; }
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
MODEL=models/tinystories-llama
cp $MODEL/config.json $MODEL/model.safetensors $MODEL/tokenizer*.json "$TMP/"
/usr/bin/python3 tests/tools/edit_tensor.py "$TMP/model.safetensors" model.layers.6.mlp.up_proj.weight --fill nan --at 770
# Two stages: [0, 4) and [4, 8) by an explicit plan, so the refusing rank is known.
"$BIN" plan --model "$TMP" --workers 2 --out "$TMP/plan.json" >/dev/null
/usr/bin/python3 - "$TMP/plan.json" <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))
p["stages"] = [{"layer_begin": 0, "layer_end": 4}, {"layer_begin": 4, "layer_end": 8}]
json.dump(p, open(sys.argv[1], "w"))
PY
set +e
timeout 120 mpirun "${MPIRUN_FLAGS[@]}" -np 3 "$BIN" serve --host 127.0.0.1 --port 0 --threads 1 --model "$TMP" \
  --plan "$TMP/plan.json" >"$TMP/log" 2>&1
rc=$?
set -e
if [ "$rc" = 124 ]; then cat "$TMP/log"; echo "FAIL: hung (killed after 120 s)"; exit 1; fi
if [ "$rc" = 0 ]; then cat "$TMP/log"; echo "FAIL: a NaN model was served (rc=0)"; exit 1; fi
want='worker rank 2 refused: .*tensor "model.layers.6.mlp.up_proj.weight" \(F32 \[768, 256\]\) holds NaN at \[3, 2\]'
if ! grep -Eq "$want" "$TMP/log"; then cat "$TMP/log"; echo "FAIL: the refusal does not name rank 2 and the tensor (rc=$rc)"; exit 1; fi
if grep -q "accullm serve: listening" "$TMP/log"; then cat "$TMP/log"; echo "FAIL: served although refused"; exit 1; fi
echo "ok: refused (rc=$rc): $(grep -Eo 'worker rank 2 refused: .*' "$TMP/log" | head -1)"
echo PASS
