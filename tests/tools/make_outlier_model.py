#!/usr/bin/env python3
"""Makes outlier features in a real model without changing its function (DESIGN.md, "Fixtures").

For each chosen (layer, norm, channel): the RMSNorm weight of channel c is multiplied by s and
the matching input column c of every linear that reads that norm's output is divided by s.
RMSNorm output channel c grows s-fold (an outlier activation), the linear's output is the same.
  input_layernorm          -> self_attn.{q,k,v}_proj
  post_attention_layernorm -> mlp.{gate,up}_proj

Usage: make_outlier_model.py --model DIR --out DIR [--scale 50] [--layers 1,5] [--channels 3,77,190]
Writes F32 weights (the rescaled copy of the source) plus the source's config/tokenizer files.
"""
import argparse
import json
import os
import shutil
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_forward import load_tensors  # noqa: E402


def write_safetensors(path, tensors):
    header = {}
    offset = 0
    blobs = []
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name], dtype=np.float32)
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
        blobs.append(a.tobytes())
    text = json.dumps(header).encode("utf-8")
    text += b" " * ((8 - (8 + len(text)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for b in blobs:
            f.write(b)


def main(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--scale", type=float, default=50.0)
    p.add_argument("--layers", default="1,5")
    p.add_argument("--channels", default="3,77,190")
    a = p.parse_args(argv)
    t = {k: v.copy() for k, v in load_tensors(a.model).items()}
    layers = [int(x) for x in a.layers.split(",")]
    channels = [int(x) for x in a.channels.split(",")]
    for l in layers:
        pre = f"model.layers.{l}."
        for norm, linears in (("input_layernorm", ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")),
                              ("post_attention_layernorm", ("mlp.gate_proj", "mlp.up_proj"))):
            for c in channels:
                t[pre + norm + ".weight"][c] *= a.scale
                for lin in linears:
                    t[pre + lin + ".weight"][:, c] /= a.scale
    os.makedirs(a.out, exist_ok=True)
    write_safetensors(os.path.join(a.out, "model.safetensors"), t)
    for f in ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "calib.txt"):
        src = os.path.join(a.model, f)
        if os.path.exists(src):
            shutil.copy(src, os.path.join(a.out, f))
    print(f"wrote {a.out}: scale {a.scale} on channels {channels} of layers {layers}")


if __name__ == "__main__":
    main(sys.argv[1:])
