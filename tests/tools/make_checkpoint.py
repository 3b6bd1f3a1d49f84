#!/usr/bin/python3
"""Writes a Hugging Face Llama-family model directory with random (seeded) weights.

config.json plus model.safetensors (or N shards + model.safetensors.index.json). The
safetensors files are written by hand (8-byte LE header length, JSON header padded with
spaces to a multiple of 8, raw LE data) and streamed tensor by tensor, so a 1.1B-parameter
geometry does not need the whole model in memory.

Weights are scaled so the logits are far from trivial (std 1/sqrt(fan_in) projections,
norms 1 +- 0.1, unit-variance embeddings): an engine error shows in the output.
Each tensor has its own RNG stream (seed, tensor index), so the values do not depend on
sharding or on the storage dtype before rounding.

Needs only numpy (Debian's /usr/bin/python3 with python3-numpy).
"""
import argparse
import json
import os
import sys

import numpy as np

DTYPES = {"f32": ("F32", 4, "float32"), "f16": ("F16", 2, "float16"), "bf16": ("BF16", 2, "bfloat16")}
ARCHS = {
    "llama": ("LlamaForCausalLM", "llama"),
    "mistral": ("MistralForCausalLM", "mistral"),
    "qwen2": ("Qwen2ForCausalLM", "qwen2"),
}
# Elements generated at once for big tensors (keeps peak memory ~ 100 MB).
CHUNK_ELEMENTS = 1 << 24


def f32_to_bf16_bits(x):
    """Round-to-nearest-even float32 -> bfloat16, as uint16 bit patterns (NaN kept quiet)."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = (bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)
    out = rounded.astype(np.uint16)
    nan = np.isnan(x)
    if nan.any():
        out[nan] = ((bits[nan] >> np.uint32(16)) | np.uint32(0x40)).astype(np.uint16)
    return out


def encode(x, dtype):
    if dtype == "f32":
        return np.ascontiguousarray(x, dtype="<f4").tobytes()
    if dtype == "f16":
        return x.astype("<f2").tobytes()
    return f32_to_bf16_bits(x).astype("<u2").tobytes()


class TensorSpec:
    """One tensor: name, shape and how to draw its values (kind, scale)."""

    def __init__(self, name, shape, kind, scale):
        self.name, self.shape, self.kind, self.scale = name, tuple(int(d) for d in shape), kind, scale

    @property
    def numel(self):
        n = 1
        for d in self.shape:
            n *= d
        return n


def tensor_specs(a):
    h, inter, hd = a.hidden, a.intermediate, a.head_dim
    q_out, kv_out = a.heads * hd, a.kv_heads * hd
    specs = [TensorSpec("model.embed_tokens.weight", (a.vocab, h), "normal", 1.0)]
    for i in range(a.layers):
        p = f"model.layers.{i}."
        specs.append(TensorSpec(p + "input_layernorm.weight", (h,), "norm", 0.1))
        specs.append(TensorSpec(p + "self_attn.q_proj.weight", (q_out, h), "normal", h ** -0.5))
        specs.append(TensorSpec(p + "self_attn.k_proj.weight", (kv_out, h), "normal", h ** -0.5))
        specs.append(TensorSpec(p + "self_attn.v_proj.weight", (kv_out, h), "normal", h ** -0.5))
        if a.arch == "qwen2":
            specs.append(TensorSpec(p + "self_attn.q_proj.bias", (q_out,), "normal", 0.5))
            specs.append(TensorSpec(p + "self_attn.k_proj.bias", (kv_out,), "normal", 0.5))
            specs.append(TensorSpec(p + "self_attn.v_proj.bias", (kv_out,), "normal", 0.5))
        specs.append(TensorSpec(p + "self_attn.o_proj.weight", (h, q_out), "normal", q_out ** -0.5))
        specs.append(TensorSpec(p + "post_attention_layernorm.weight", (h,), "norm", 0.1))
        specs.append(TensorSpec(p + "mlp.gate_proj.weight", (inter, h), "normal", h ** -0.5))
        specs.append(TensorSpec(p + "mlp.up_proj.weight", (inter, h), "normal", h ** -0.5))
        specs.append(TensorSpec(p + "mlp.down_proj.weight", (h, inter), "normal", inter ** -0.5))
    specs.append(TensorSpec("model.norm.weight", (h,), "norm", 0.1))
    if not a.tied:
        # Logits with std ~2: softmax far from uniform, errors visible.
        specs.append(TensorSpec("lm_head.weight", (a.vocab, h), "normal", 2.0 * h ** -0.5))
    return specs


def generate_chunks(spec, seed, index):
    """Yields float32 arrays whose concatenation is the tensor (row-major)."""
    rng = np.random.default_rng([seed, index])
    remaining = spec.numel
    while remaining > 0:
        n = min(remaining, CHUNK_ELEMENTS)
        if spec.kind == "norm":
            x = 1.0 + spec.scale * rng.uniform(-1.0, 1.0, n).astype(np.float32)
        else:
            x = rng.standard_normal(n, dtype=np.float32)
            x *= np.float32(spec.scale)
        yield x.astype(np.float32, copy=False)
        remaining -= n


def write_safetensors(path, specs, indices, dtype, seed):
    st_name, elem, _ = DTYPES[dtype]
    header = {"__metadata__": {"format": "pt"}}
    offset = 0
    for spec in specs:
        nbytes = spec.numel * elem
        header[spec.name] = {"dtype": st_name, "shape": list(spec.shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((-len(text)) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for spec, index in zip(specs, indices):
            for chunk in generate_chunks(spec, seed, index):
                f.write(encode(chunk, dtype))
    os.replace(tmp, path)
    return offset


def split_into_shards(specs, n):
    """Contiguous groups of roughly equal bytes, each non-empty."""
    n = max(1, min(n, len(specs)))
    total = sum(s.numel for s in specs)
    groups, current, acc = [], [], 0
    for i, spec in enumerate(specs):
        current.append(i)
        acc += spec.numel
        left_specs = len(specs) - i - 1
        left_groups = n - len(groups) - 1
        if left_groups > 0 and (acc >= total * (len(groups) + 1) / n or left_specs == left_groups):
            groups.append(current)
            current = []
    groups.append(current)
    return [g for g in groups if g]


def make_config(a):
    arch_name, model_type = ARCHS[a.arch]
    cfg = {
        "architectures": [arch_name],
        "model_type": model_type,
        "vocab_size": a.vocab,
        "hidden_size": a.hidden,
        "intermediate_size": a.intermediate,
        "num_hidden_layers": a.layers,
        "num_attention_heads": a.heads,
        "num_key_value_heads": a.kv_heads,
        "hidden_act": "silu",
        "max_position_embeddings": a.max_pos,
        "rms_norm_eps": 1e-6 if a.arch == "qwen2" else 1e-5,
        "rope_theta": a.rope_theta,
        "rope_scaling": None,
        "tie_word_embeddings": bool(a.tied),
        "bos_token_id": 1,
        "eos_token_id": 2,
        "initializer_range": 0.02,
        "use_cache": True,
        "torch_dtype": DTYPES[a.dtype][2],
    }
    # head_dim is written when it differs from hidden/heads, and always for llama (as HF does).
    if a.arch == "llama" or a.head_dim * a.heads != a.hidden:
        cfg["head_dim"] = a.head_dim
    if a.arch == "llama":
        cfg.update({"attention_bias": False, "mlp_bias": False, "attention_dropout": 0.0, "pretraining_tp": 1})
    elif a.arch == "mistral":
        cfg.update({"sliding_window": None, "attention_dropout": 0.0})
    else:
        cfg.update({"use_sliding_window": False, "sliding_window": None, "max_window_layers": a.layers,
                    "attention_dropout": 0.0})
    if a.rope_scaling_llama3:
        cfg["rope_scaling"] = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                               "high_freq_factor": 4.0, "original_max_position_embeddings": 64}
    return cfg


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arch", choices=sorted(ARCHS), default="llama")
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--intermediate", type=int, default=352)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kv-heads", type=int, default=None, help="default: --heads")
    p.add_argument("--head-dim", type=int, default=None, help="default: hidden/heads")
    p.add_argument("--vocab", type=int, default=512)
    p.add_argument("--dtype", choices=sorted(DTYPES), default="f32")
    p.add_argument("--tied", action="store_true", help="tie_word_embeddings (no lm_head.weight)")
    p.add_argument("--rope-theta", type=float, default=10000.0)
    p.add_argument("--rope-scaling-llama3", action="store_true")
    p.add_argument("--max-pos", type=int, default=2048)
    p.add_argument("--shards", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    if a.kv_heads is None:
        a.kv_heads = a.heads
    if a.head_dim is None:
        if a.hidden % a.heads:
            p.error("hidden must be divisible by heads unless --head-dim is given")
        a.head_dim = a.hidden // a.heads
    if a.heads % a.kv_heads:
        p.error("heads must be a multiple of kv-heads")
    if a.head_dim % 2:
        p.error("head-dim must be even (RoPE rotates pairs)")
    for name in ("hidden", "intermediate", "layers", "heads", "kv_heads", "vocab", "shards"):
        if getattr(a, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be positive")
    return a


def main(argv):
    a = parse_args(argv)
    os.makedirs(a.out, exist_ok=True)
    specs = tensor_specs(a)
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(make_config(a), f, indent=2)
        f.write("\n")
    if a.shards <= 1:
        write_safetensors(os.path.join(a.out, "model.safetensors"), specs, range(len(specs)), a.dtype, a.seed)
    else:
        groups = split_into_shards(specs, a.shards)
        n = len(groups)
        weight_map, total = {}, 0
        for k, group in enumerate(groups):
            fname = f"model-{k + 1:05d}-of-{n:05d}.safetensors"
            total += write_safetensors(os.path.join(a.out, fname), [specs[i] for i in group], group, a.dtype, a.seed)
            for i in group:
                weight_map[specs[i].name] = fname
        with open(os.path.join(a.out, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
            f.write("\n")
    n_params = sum(s.numel for s in specs)
    print(f"wrote {a.out}: {a.arch} {a.dtype} {n_params} parameters", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
