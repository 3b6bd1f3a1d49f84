#!/usr/bin/env bash
# Writes a random-weight F16 checkpoint with TinyLlama-1.1B's geometry (hidden 2048,
# intermediate 5632, 22 layers, 32 heads, 4 KV heads, vocab 32000; ~2.2 GB) for benchmarks.
# Usage: bench/make_tinyllama.sh [DIR]   (default /tmp/accullm-tinyllama; skipped if present)
set -euo pipefail
out="${1:-/tmp/accullm-tinyllama}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [[ -f "$out/config.json" && -f "$out/model.safetensors" ]]; then
  echo "$out already holds a checkpoint; skipping" >&2
  exit 0
fi
if ! /usr/bin/python3 -c 'import numpy' 2>/dev/null; then
  echo "Debian's python3-numpy is missing: run scripts/setup.sh" >&2
  exit 1
fi
/usr/bin/python3 "$here/../tests/tools/make_checkpoint.py" --arch llama --dtype f16 \
  --hidden 2048 --intermediate 5632 --layers 22 --heads 32 --kv-heads 4 --vocab 32000 \
  --max-pos 2048 --rope-theta 10000 --seed 0 --out "$out"
