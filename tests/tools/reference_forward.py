#!/usr/bin/python3
"""Independent numpy reference of the Llama-family forward pass (llama, mistral, qwen2).

Reads a Hugging Face model directory itself (safetensors parsed by hand: F32/F16/BF16,
single file or sharded index; tied embeddings; q/k/v biases; GQA; head_dim from config or
hidden/heads; RoPE in HF's rotate_half convention with rope_theta and llama3 rope_scaling as
transformers' _compute_llama3_parameters) and computes the logits of every position in
float64, attending causally over the whole prompt at once.

  reference_forward.py --model DIR --ids 1,2,3 --out logits.npy   # [n_tokens, vocab] float32
  reference_forward.py --self-test [--model models/tinystories-llama]

--self-test compares against the fixture's reference.json (an independent PyTorch run).
Shares no code with the C++ engine; needs only numpy (Debian's /usr/bin/python3).
"""
import argparse
import json
import math
import os
import sys

import numpy as np

_NP_DTYPES = {"F32": "<f4", "F16": "<f2", "BF16": "<u2"}


def read_safetensors(path):
    """Returns {name: float32 ndarray} for one safetensors file."""
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise ValueError(f"{path}: truncated (no header length)")
        n = int.from_bytes(raw, "little")
        size = os.fstat(f.fileno()).st_size
        if n > size - 8:
            raise ValueError(f"{path}: header length {n} beyond file size {size}")
        header = json.loads(f.read(n).decode("utf-8"))
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + n)
    out = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        dt = entry["dtype"]
        if dt not in _NP_DTYPES:
            raise ValueError(f"{path}: tensor {name}: unsupported dtype {dt}")
        begin, end = entry["data_offsets"]
        shape = tuple(entry["shape"])
        count = int(np.prod(shape, dtype=np.int64))
        if end > data.size or (end - begin) != count * np.dtype(_NP_DTYPES[dt]).itemsize:
            raise ValueError(f"{path}: tensor {name}: bad data_offsets")
        arr = np.frombuffer(data[begin:end], dtype=_NP_DTYPES[dt])
        if dt == "BF16":
            arr = (arr.astype(np.uint32) << np.uint32(16)).view(np.float32)
        out[name] = arr.astype(np.float32).reshape(shape)
    return out


def load_tensors(model_dir):
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            weight_map = json.load(f)["weight_map"]
        tensors = {}
        for shard in sorted(set(weight_map.values())):
            tensors.update(read_safetensors(os.path.join(model_dir, shard)))
        missing = [k for k in weight_map if k not in tensors]
        if missing:
            raise ValueError(f"{model_dir}: index names tensors no shard holds: {missing[:3]}")
        return tensors
    return read_safetensors(os.path.join(model_dir, "model.safetensors"))


def llama3_inv_freq(inv_freq, rs):
    """transformers' _compute_llama3_parameters (attention factor stays 1)."""
    factor = rs["factor"]
    low_freq_factor = rs["low_freq_factor"]
    high_freq_factor = rs["high_freq_factor"]
    old_context_len = rs["original_max_position_embeddings"]
    low_freq_wavelen = old_context_len / low_freq_factor
    high_freq_wavelen = old_context_len / high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    inv_freq_llama = np.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    smooth_factor = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    smoothed = (1 - smooth_factor) * inv_freq_llama / factor + smooth_factor * inv_freq_llama
    is_medium = ~(wavelen < high_freq_wavelen) & ~(wavelen > low_freq_wavelen)
    return np.where(is_medium, smoothed, inv_freq_llama)


def rope_cos_sin(cfg, head_dim, n_tokens):
    theta = float(cfg.get("rope_theta", 10000.0))
    inv_freq = 1.0 / theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    rs = cfg.get("rope_scaling")
    if rs:
        kind = rs.get("rope_type", rs.get("type"))
        if kind == "llama3":
            inv_freq = llama3_inv_freq(inv_freq, rs)
        elif kind != "default":
            raise ValueError(f"unsupported rope_scaling type {kind}")
    freqs = np.outer(np.arange(n_tokens, dtype=np.float64), inv_freq)  # [T, D/2]
    emb = np.concatenate([freqs, freqs], axis=-1)  # [T, D]
    return np.cos(emb), np.sin(emb)


def rotate_half(x):
    d = x.shape[-1] // 2
    return np.concatenate([-x[..., d:], x[..., :d]], axis=-1)


def rms_norm(x, w, eps):
    # HF: the normalisation in float32, then weight * result. Here float64 throughout.
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def silu(x):
    return x / (1.0 + np.exp(-x))


def forward(model_dir, ids):
    """Logits [len(ids), vocab] (float64) of every position."""
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    t = load_tensors(model_dir)
    W = lambda name: t[name].astype(np.float64)
    hidden = cfg["hidden_size"]
    n_heads = cfg["num_attention_heads"]
    n_kv = cfg.get("num_key_value_heads") or n_heads
    head_dim = cfg.get("head_dim") or hidden // n_heads
    eps = float(cfg.get("rms_norm_eps", 1e-6))
    vocab = cfg["vocab_size"]
    group = n_heads // n_kv
    ids = np.asarray(ids, dtype=np.int64)
    if ids.size == 0 or ids.min() < 0 or ids.max() >= vocab:
        raise ValueError("token ids must be non-empty and < vocab_size")
    T = ids.size
    cos, sin = rope_cos_sin(cfg, head_dim, T)
    mask = np.triu(np.full((T, T), -np.inf), k=1)
    scale = 1.0 / math.sqrt(head_dim)

    def linear(x, prefix):
        y = x @ W(prefix + ".weight").T
        if prefix + ".bias" in t:
            y = y + W(prefix + ".bias")
        return y

    x = W("model.embed_tokens.weight")[ids]  # [T, hidden]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = rms_norm(x, W(p + "input_layernorm.weight"), eps)
        q = linear(h, p + "self_attn.q_proj").reshape(T, n_heads, head_dim).transpose(1, 0, 2)
        k = linear(h, p + "self_attn.k_proj").reshape(T, n_kv, head_dim).transpose(1, 0, 2)
        v = linear(h, p + "self_attn.v_proj").reshape(T, n_kv, head_dim).transpose(1, 0, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = np.repeat(k, group, axis=0)  # head j uses kv head j // group, as HF repeat_kv
        v = np.repeat(v, group, axis=0)
        s = q @ k.transpose(0, 2, 1) * scale + mask  # [H, T, T]
        s = s - s.max(axis=-1, keepdims=True)
        pr = np.exp(s)
        pr /= pr.sum(axis=-1, keepdims=True)
        a = (pr @ v).transpose(1, 0, 2).reshape(T, n_heads * head_dim)
        x = x + linear(a, p + "self_attn.o_proj")
        h = rms_norm(x, W(p + "post_attention_layernorm.weight"), eps)
        x = x + linear(silu(linear(h, p + "mlp.gate_proj")) * linear(h, p + "mlp.up_proj"), p + "mlp.down_proj")
    x = rms_norm(x, W("model.norm.weight"), eps)
    head = "lm_head.weight" if "lm_head.weight" in t else "model.embed_tokens.weight"
    if head != "lm_head.weight" and cfg.get("tie_word_embeddings") is False:
        raise ValueError("lm_head.weight missing and tie_word_embeddings is false")
    return x @ W(head).T


def self_test(model_dir):
    with open(os.path.join(model_dir, "reference.json")) as f:
        ref = json.load(f)
    worst = 0.0
    for n, case in enumerate(ref["cases"]):
        logits = forward(model_dir, case["prompt_ids"])
        last = np.asarray(case["last_logits"], dtype=np.float64)
        err_last = np.max(np.abs(logits[-1] - last)) / np.max(np.abs(last))
        first = np.asarray(case["first_position_logits_first16"], dtype=np.float64)
        err_first = np.max(np.abs(logits[0, :16] - first)) / np.max(np.abs(last))
        argmax_ok = int(np.argmax(logits[-1])) == case["last_logits_argmax"]
        print(f"case {n}: {len(case['prompt_ids'])} tokens, last-position rel err {err_last:.3e}, "
              f"first-position rel err {err_first:.3e}, argmax {'ok' if argmax_ok else 'WRONG'}")
        worst = max(worst, err_last, err_first if argmax_ok else math.inf)
    ok = worst <= 1e-5
    print(f"self-test {'PASSED' if ok else 'FAILED'}: worst rel err {worst:.3e} (limit 1e-5)")
    return ok


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    p.add_argument("--model", default=None, help="HF model directory")
    p.add_argument("--ids", help="comma-separated prompt token ids")
    p.add_argument("--out", help="output .npy file: float32 [n_tokens, vocab]")
    p.add_argument("--self-test", action="store_true", help="check against the fixture's reference.json")
    a = p.parse_args(argv)
    if a.self_test:
        model = a.model or os.path.join(here, "..", "..", "models", "tinystories-llama")
        return 0 if self_test(model) else 1
    if not (a.model and a.ids and a.out):
        p.error("--model, --ids and --out are required (or --self-test)")
    ids = [int(s) for s in a.ids.split(",") if s.strip()]
    np.save(a.out, forward(a.model, ids).astype(np.float32))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
