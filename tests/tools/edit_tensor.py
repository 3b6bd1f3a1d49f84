#!/usr/bin/env python3
"""Edits one tensor of a safetensors file, to make broken models for the loader's tests.

  edit_tensor.py FILE NAME --fill VALUE [--at INDEX]
      Overwrites every element (or the one at flat INDEX) with VALUE (nan, inf, -inf or a
      number), kept in the tensor's own dtype (F32, F16 or BF16).
  edit_tensor.py FILE NAME --scale FACTOR
      Replaces the tensor by FACTOR times its values, stored as F32 (the file is rewritten:
      finite weights that overflow FP32 arithmetic, e.g. an LM head scaled by 1e38).
  edit_tensor.py FILE NAME --scale FACTOR --keep-dtype
      The same, kept in the tensor's own dtype (a pack's F16 steps scaled: a finite drift).
  A negative VALUE needs the = form: --fill=-inf.
"""
import argparse
import json
import sys

import numpy as np

DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16}


def read(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def to_f32(entry, data):
    a = np.frombuffer(data, dtype=DTYPES[entry["dtype"]])
    if entry["dtype"] == "BF16":
        a = (a.astype(np.uint32) << 16).view(np.float32)
    return a.astype(np.float32)


def encode(dtype, values):
    v = np.asarray(values, dtype=np.float32)
    if dtype == "BF16":
        return (v.view(np.uint32) >> 16).astype(np.uint16).tobytes()  # truncation keeps NaN/Inf
    return v.astype(DTYPES[dtype]).tobytes()


def write(path, header, blobs):
    offset = 0
    for name in [k for k in header if k != "__metadata__"]:
        header[name]["data_offsets"] = [offset, offset + len(blobs[name])]
        offset += len(blobs[name])
    text = json.dumps(header).encode("utf-8")
    text += b" " * ((8 - (8 + len(text)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for name in [k for k in header if k != "__metadata__"]:
            f.write(blobs[name])


def main(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file")
    p.add_argument("name")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--fill", type=float)
    g.add_argument("--scale", type=float)
    p.add_argument("--at", type=int, help="with --fill: only this flat element index")
    p.add_argument("--keep-dtype", action="store_true", help="with --scale: store in the tensor's own dtype")
    a = p.parse_args(argv)
    header, data = read(a.file)
    if a.name not in header:
        sys.exit(f"{a.file}: no tensor {a.name}")
    e = header[a.name]
    if e["dtype"] not in DTYPES:
        sys.exit(f"{a.name} is {e['dtype']}, not a floating-point tensor")
    begin, end = e["data_offsets"]
    blobs = {k: data[v["data_offsets"][0]:v["data_offsets"][1]] for k, v in header.items() if k != "__metadata__"}
    values = to_f32(e, blobs[a.name])
    if a.fill is not None:
        if a.at is None:
            values[:] = a.fill
        else:
            values[a.at] = a.fill
        blobs[a.name] = encode(e["dtype"], values)
    else:
        dtype = e["dtype"] if a.keep_dtype else "F32"
        with np.errstate(over="raise"):
            blobs[a.name] = encode(dtype, values * np.float32(a.scale))
        e["dtype"] = dtype
    # Rewritten whole, in the original order of the data.
    order = sorted((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][0])
    header = {**({"__metadata__": header["__metadata__"]} if "__metadata__" in header else {}),
              **{k: header[k] for k in order}}
    write(a.file, header, blobs)


if __name__ == "__main__":
    main(sys.argv[1:])
