#!/usr/bin/env bash
# Compares the engine's logits (every position, prefill and one-token-at-a-time decode)
# with an independent numpy forward pass (tests/tools/reference_forward.py) on random-weight
# checkpoints of many geometries (tests/tools/make_checkpoint.py), and with the PyTorch
# reference logits of the real fixture models/tinystories-llama (the headline check).
# Pass: max |engine - reference| / max |reference| <= 1e-4 at every position, both modes.
#
# Usage (ctest, cwd = repo root): bash tests/integration/forward_reference_test.sh /path/to/accullm
set -uo pipefail

engine="${1:?usage: forward_reference_test.sh /path/to/accullm}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
tools="$root/tests/tools"
py=/usr/bin/python3
tol=1e-4

if ! "$py" -c 'import numpy' 2>/dev/null; then
  echo "FAIL: $py cannot import numpy (Debian's python3-numpy): run scripts/setup.sh" >&2
  exit 1
fi
if [[ ! -x "$engine" ]]; then
  echo "FAIL: engine binary '$engine' not found or not executable" >&2
  exit 1
fi

tmp="$(mktemp -d "${TMPDIR:-/tmp}/accullm-fwdref.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

# compare.py MODEL_DIR IDS PREFILL.bin DECODE.bin LABEL [REFERENCE_JSON_CASE]
# Prints one line with the worst per-position error of each mode; exit 1 above tolerance.
cat > "$tmp/compare.py" <<'PYEOF'
import json, os, sys
import numpy as np
sys.path.insert(0, os.environ["TOOLS"])
import reference_forward

tol = float(os.environ["TOL"])
model, ids, label = sys.argv[1], [int(s) for s in sys.argv[2].split(",")], sys.argv[5]
case = json.loads(sys.argv[6]) if len(sys.argv) > 6 else None
ref = reference_forward.forward(model, ids)  # float64 [T, vocab]
T, vocab = ref.shape
denom = np.max(np.abs(ref), axis=1)
ok, parts = True, []
for mode, path in (("prefill", sys.argv[3]), ("decode", sys.argv[4])):
    raw = np.fromfile(path, dtype="<f4")
    if raw.size != T * vocab:
        parts.append(f"{mode}: wrong size ({raw.size} floats, want {T}x{vocab})")
        ok = False
        continue
    eng = raw.reshape(T, vocab).astype(np.float64)
    if not np.all(np.isfinite(eng)):
        parts.append(f"{mode}: non-finite logits")
        ok = False
        continue
    per_pos = np.max(np.abs(eng - ref), axis=1) / denom
    worst = int(np.argmax(per_pos))
    parts.append(f"{mode} {per_pos[worst]:.2e} (pos {worst})")
    ok &= bool(per_pos[worst] <= tol)
    if case is not None:
        last = np.asarray(case["last_logits"], dtype=np.float64)
        err = np.max(np.abs(eng[-1] - last)) / np.max(np.abs(last))
        parts.append(f"{mode} vs PyTorch last_logits {err:.2e}")
        ok &= bool(err <= tol)
print(f"{'ok  ' if ok else 'FAIL'} {label:<22} T={T} vocab={vocab}: " + ", ".join(parts), flush=True)
sys.exit(0 if ok else 1)
PYEOF
export TOOLS="$tools" TOL="$tol"

failures=0

# run_engine MODEL IDS OUT MODE: the engine's logits of every position.
run_engine() {
  if ! "$engine" logits --model "$1" --prompt-ids "$2" --out "$3" --mode "$4" >"$tmp/engine.log" 2>&1; then
    echo "FAIL engine 'logits --mode $4' on $1 exited non-zero:" >&2
    tail -n 20 "$tmp/engine.log" >&2
    return 1
  fi
}

# check LABEL MODEL_DIR IDS [REFERENCE_JSON_CASE]
check() {
  local label="$1" model="$2" ids="$3" case_json="${4:-}"
  local out="$tmp/$label"
  if ! run_engine "$model" "$ids" "$out.prefill.bin" prefill || \
     ! run_engine "$model" "$ids" "$out.decode.bin" decode; then
    echo "FAIL $label: engine error"
    failures=$((failures + 1))
    return
  fi
  if [[ -n "$case_json" ]]; then
    "$py" "$tmp/compare.py" "$model" "$ids" "$out.prefill.bin" "$out.decode.bin" "$label" "$case_json" \
      || failures=$((failures + 1))
  else
    "$py" "$tmp/compare.py" "$model" "$ids" "$out.prefill.bin" "$out.decode.bin" "$label" \
      || failures=$((failures + 1))
  fi
}

# random_ids N VOCAB SEED: BOS (1) then N-1 ids drawn below VOCAB, deterministic.
random_ids() {
  local n="$1" vocab="$2" ids="1" i
  RANDOM="$3"
  for ((i = 1; i < n; i++)); do ids+=",$(( (RANDOM * 32768 + RANDOM) % vocab ))"; done
  echo "$ids"
}

# synthetic LABEL make_checkpoint.py-ARGS...: generate, then check with a 40-token prompt.
synthetic() {
  local label="$1"; shift
  local dir="$tmp/$label.model" vocab
  if ! "$py" "$tools/make_checkpoint.py" --out "$dir" --seed 7 "$@" 2>"$tmp/make.log"; then
    echo "FAIL $label: make_checkpoint.py $*"; cat "$tmp/make.log" >&2
    failures=$((failures + 1))
    return
  fi
  vocab="$("$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["vocab_size"])' "$dir/config.json")"
  check "$label" "$dir" "$(random_ids 40 "$vocab" 4242)"
  rm -rf "$dir"
}

start=$SECONDS

# The real model: PyTorch's last-position logits from reference.json (and every position vs numpy).
fixture="$root/models/tinystories-llama"
n_cases="$("$py" -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["cases"]))' "$fixture/reference.json")"
for ((c = 0; c < n_cases; c++)); do
  case_json="$("$py" -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))["cases"][int(sys.argv[2])]))' \
    "$fixture/reference.json" "$c")"
  ids="$("$py" -c 'import json,sys; print(",".join(map(str, json.loads(sys.argv[1])["prompt_ids"])))' "$case_json")"
  check "tinystories-case$c" "$fixture" "$ids" "$case_json"
done

small=(--hidden 128 --intermediate 352 --layers 2 --vocab 512)
synthetic gqa1-llama        "${small[@]}" --heads 4 --kv-heads 4
synthetic gqa2-llama        "${small[@]}" --heads 4 --kv-heads 2
synthetic gqa8-llama        --hidden 256 --intermediate 512 --layers 2 --vocab 640 --heads 8 --kv-heads 1
synthetic qwen2-bias        "${small[@]}" --arch qwen2 --heads 4 --kv-heads 2 --rope-theta 1000000
synthetic tied-embeddings   "${small[@]}" --heads 4 --kv-heads 2 --tied
synthetic odd-hidden        --hidden 200 --intermediate 328 --layers 3 --vocab 301 --heads 5 --kv-heads 5 --head-dim 40
synthetic head-dim-64-of-128 "${small[@]}" --heads 4 --kv-heads 2 --head-dim 64
synthetic bf16-weights      "${small[@]}" --heads 4 --kv-heads 2 --dtype bf16
synthetic f16-weights       "${small[@]}" --heads 4 --kv-heads 2 --dtype f16
synthetic sharded-3         "${small[@]}" --heads 4 --kv-heads 2 --shards 3
synthetic mistral           "${small[@]}" --arch mistral --heads 4 --kv-heads 2
synthetic llama3-rope       "${small[@]}" --heads 4 --kv-heads 2 --rope-scaling-llama3 --rope-theta 500000

echo "forward_reference_test: $failures failure(s), $((SECONDS - start)) s (tolerance $tol relative to max |logit|)"
[[ $failures -eq 0 ]]
