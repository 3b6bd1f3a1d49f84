#!/usr/bin/env python3
"""Writes the seed corpora under tests/fuzz/corpus/ (except wire/, which wire_seed_writer
writes from the C++ encoder): for each door a few valid inputs and the malformed cases the
unit tests already check. Run from anywhere; files are rewritten, findings (crash-*, named by
what they found) are left alone. Inputs with several parts join them with the split line of
fuzz_input.h."""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SPLIT = b"\n--8<--\n"


def out(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def safetensors(header, data=b"", pad=True):
    h = header.encode() if isinstance(header, str) else header
    if pad:
        h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + data


def tensors(entries):
    """entries: name -> (dtype, shape, bytes). Returns a safetensors image."""
    header, data = {}, b""
    for name, (dtype, shape, raw) in entries.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    return safetensors(json.dumps(header, separators=(",", ":")), data)


f16_ones = lambda n: struct.pack("<%de" % n, *([0.0625] * n))
f32 = lambda vals: struct.pack("<%df" % len(vals), *vals)

# --- safetensors -------------------------------------------------------------------------
data16 = f32([1, 2, 3, 4])
out("safetensors", "valid_two_tensors", tensors({"a": ("F32", [2, 2], data16), "b": ("F16", [3], f16_ones(3))}))
out("safetensors", "valid_metadata", safetensors('{"__metadata__":{"format":"pt"},"w":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}}', b"\0\0\0\0"))
out("safetensors", "empty_header", safetensors("{}"))
out("safetensors", "truncated", b"\x10\0\0")
out("safetensors", "header_too_long", struct.pack("<Q", 1 << 40) + b"{}")
malformed = [
    '{"shape": [2, 2], "data_offsets": [0, 16]}', '{"dtype": "F32", "data_offsets": [0, 16]}',
    '{"dtype": "F32", "shape": [2, 2]}', '{"dtype": 32, "shape": [2, 2], "data_offsets": [0, 16]}',
    '{"dtype": "F32", "shape": "2x2", "data_offsets": [0, 16]}', '{"dtype": "F32", "shape": [2, 2], "data_offsets": [0]}',
    '{"dtype": "F32", "shape": [2, 2], "data_offsets": [0.5, 16]}', '{"dtype": "F32", "shape": [2, 2], "data_offsets": [-16, 16]}',
    '{"dtype": "F32", "shape": [2, 2], "data_offsets": [16, 32]}', '{"dtype": "F32", "shape": [2, 2], "data_offsets": [18446744073709551608, 8]}',
    '{"dtype": "F32", "shape": [2, 2], "data_offsets": [16, 0]}', '{"dtype": "F16", "shape": [2, 2], "data_offsets": [0, 16]}',
    '{"dtype": "F32", "shape": [-1, 4], "data_offsets": [0, 16]}', '{"dtype": "F32", "shape": [4294967296, 4294967296, 16], "data_offsets": [0, 0]}',
    '["F32", [2, 2], [0, 16]]', '{"dtype": "Q4", "shape": [2, 2], "data_offsets": [0, 16]}',
]
for i, e in enumerate(malformed):
    out("safetensors", "malformed_%02d" % i, safetensors('{"w":' + e + "}", data16))
out("safetensors", "overlap", safetensors('{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,12]},"b":{"dtype":"F32","shape":[3],"data_offsets":[4,16]}}', data16))
out("safetensors", "nan", tensors({"w": ("F32", [2], f32([float("nan"), 1.0]))}))

# --- config.json -------------------------------------------------------------------------
with open(os.path.join(ROOT, "models/tinystories-llama/config.json")) as f:
    tiny = json.load(f)
out("model_config", "tinystories", json.dumps(tiny))
qwen = dict(tiny, model_type="qwen2", head_dim=64, eos_token_id=[2, 3], tie_word_embeddings=True,
            rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                          "original_max_position_embeddings": 8192})
out("model_config", "qwen2_rope_scaling", json.dumps(qwen))
for i, patch in enumerate([{"hidden_size": 0}, {"num_key_value_heads": 3}, {"hidden_act": "gelu"},
                           {"vocab_size": 1 << 30}, {"rope_theta": -1}, {"head_dim": 7}, {"rms_norm_eps": 0},
                           {"eos_token_id": "x"}, {"rope_scaling": 5}, {"num_hidden_layers": "4"}]):
    out("model_config", "malformed_%02d" % i, json.dumps(dict(tiny, **patch)))
out("model_config", "not_an_object", "[1, 2]")
out("model_config", "truncated", json.dumps(tiny)[:40])

# --- pack: accullm.json, split, model.safetensors ----------------------------------------
def manifest(**extra):
    m = {"format": "accullm-pack", "format_version": 1, "layer_precision": ["int4"], "method": "rtn",
         "group_size": 32, "symmetric": True}
    m.update(extra)
    return json.dumps(m).encode()

out_, in_ = 4, 64
codes4 = bytes(range(out_ * in_ // 2))
pack_tensors = {
    "model.layers.0.mlp.down_proj.qweight": ("U8", [out_, in_ // 2], codes4),
    "model.layers.0.mlp.down_proj.scales": ("F16", [out_, in_ // 32], f16_ones(out_ * in_ // 32)),
    "model.layers.0.self_attn.q_proj.weight": ("F16", [out_, out_], f16_ones(out_ * out_)),
    "model.layers.0.self_attn.q_proj.bias": ("F16", [out_], f16_ones(out_)),
    "lm_head.q8weight": ("U8", [out_, in_], bytes(range(out_ * in_))),
    "lm_head.q8scales": ("F16", [out_], f16_ones(out_)),
}
out("pack", "symmetric_int4", manifest(lm_head="int8") + SPLIT + tensors(pack_tensors))
asym = dict(pack_tensors)
asym["model.layers.0.mlp.down_proj.qzeros"] = ("U8", [out_, in_ // 32], bytes([8] * (out_ * in_ // 32)))
out("pack", "asymmetric_zero_fraction", manifest(symmetric=False, zero_fraction_bits=4) + SPLIT + tensors(asym))
u8 = dict(pack_tensors)
u8["model.layers.0.mlp.down_proj.scales"] = ("U8", [out_, in_ // 32], bytes([200] * (out_ * in_ // 32)))
u8["model.layers.0.mlp.down_proj.row_scales"] = ("F16", [out_], f16_ones(out_))
out("pack", "scale_bits_8", manifest(scale_bits=8) + SPLIT + tensors(u8))
outl = dict(pack_tensors)
outl["model.layers.0.mlp.down_proj.outlier_cols"] = ("I32", [2], struct.pack("<2i", 3, 60))
outl["model.layers.0.mlp.down_proj.outlier_weight"] = ("F16", [out_, 2], f16_ones(out_ * 2))
out("pack", "outliers", manifest() + SPLIT + tensors(outl))
b3 = {"model.layers.0.mlp.down_proj.qweight": ("U8", [out_, in_ * 3 // 8], bytes(out_ * in_ * 3 // 8)),
      "model.layers.0.mlp.down_proj.scales": ("F16", [out_, in_ // 32], f16_ones(out_ * in_ // 32))}
out("pack", "linear_bits_3", manifest(linear_bits={"model.layers.0.mlp.down_proj": 3}, accumulator_bits=24) + SPLIT + tensors(b3))
out("pack", "sparsity", manifest(sparsity={"predictor": "cats", "target": 0.5, "thresholds": [0.1],
                                           "active_thresholds": [0.05], "measured_on": "quantized",
                                           "calibration_tokens": 128}) + SPLIT + tensors(pack_tensors))
out("pack", "canary", manifest(canaries=[{"prompt": "Once", "ids": [1, 2], "logits_tensor": "accullm.canary.0.logits"}])
    + SPLIT + tensors({"accullm.canary.0.logits": ("F32", [4], f32([0, 1, 2, 3]))}))
for i, bad in enumerate([manifest(format_version=0), manifest(format_version=99), manifest(group_size=0),
                         manifest(layer_precision=["int9"]), manifest(source_model="/m"), manifest(lm_head="int2"),
                         manifest(scale_bits=4), manifest(linear_bits={"x": 9})]):
    out("pack", "malformed_manifest_%02d" % i, bad + SPLIT + tensors(pack_tensors))
wrong = dict(pack_tensors)
wrong["model.layers.0.mlp.down_proj.scales"] = ("F16", [out_, 1], f16_ones(out_))
out("pack", "malformed_scales_shape", manifest() + SPLIT + tensors(wrong))

# --- tokenizer.json (+ tokenizer_config.json, text) --------------------------------------
def mini(model, **extra):
    t = {"version": "1.0", "added_tokens": [], "normalizer": None, "pre_tokenizer": None, "post_processor": None,
         "decoder": None, "model": model}
    t.update(extra)
    return json.dumps(t).encode()

bpe = {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}
out("tokenizer_json", "mini_bpe", mini(bpe) + SPLIT + SPLIT + b"abba ab")
bytelevel = {"type": "BPE", "vocab": {c: i for i, c in enumerate(["h", "e", "l", "o", "\u0120", "he", "ll"])},
             "merges": ["h e", "l l"]}
out("tokenizer_json", "byte_level", mini(bytelevel, pre_tokenizer={"type": "ByteLevel", "add_prefix_space": False,
                                                              "trim_offsets": True, "use_regex": True},
                                         decoder={"type": "ByteLevel"},
                                         added_tokens=[{"id": 7, "content": "<|end|>", "special": True, "single_word": False,
                                                        "lstrip": False, "rstrip": False, "normalized": False}])
    + SPLIT + b'{"eos_token": "<|end|>"}' + SPLIT + "hello <|end|> \u00e9\xff".encode("utf-8", "surrogateescape"))
with open(os.path.join(ROOT, "models/tinystories-llama/tokenizer.json"), "rb") as f:
    tiny_tok = f.read()
with open(os.path.join(ROOT, "models/tinystories-llama/tokenizer_config.json"), "rb") as f:
    tiny_cfg = f.read()
out("tokenizer_json", "tinystories", tiny_tok + SPLIT + tiny_cfg + SPLIT + b"Once upon a time, \xf0\x9f\x98\x80 \xc3(")
for i, bad in enumerate([b'{"version":"1.0"}', mini({"type": "WordPiece", "vocab": {}}),
                         mini({"type": "BPE", "vocab": {"a": 0}, "merges": ["a b"]}),
                         mini({"type": "BPE", "vocab": {"a": "zero"}, "merges": []}),
                         mini({"type": "BPE", "vocab": [], "merges": []}),
                         mini(bpe, normalizer={"type": "Frobnicate"})]):
    out("tokenizer_json", "malformed_%02d" % i, bad + SPLIT + SPLIT + b"ab")

# --- text through the real tokenizer -----------------------------------------------------
with open(os.path.join(ROOT, "tests/fixtures/tokenizer_strings.json"), "rb") as f:
    strings = json.load(f)
strings = strings if isinstance(strings, list) else list(strings.values())
for i, s in enumerate(strings[::max(1, len(strings) // 24)][:24]):
    out("tokenizer_text", "fixture_%02d" % i, s if isinstance(s, str) else json.dumps(s))
out("tokenizer_text", "invalid_utf8", b"\xff\xfe\xc0\x80 \xed\xa0\x80 \xf4\x90\x80\x80 ok")

# --- chat templates (+ messages) ---------------------------------------------------------
messages = json.dumps([{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"},
                       {"role": "assistant", "content": "hello", "tool_calls": [{"function": {"name": "f", "arguments": {"x": 1}}}]},
                       {"role": "user", "content": [{"type": "text", "text": "more"}]}]).encode()
tdir = os.path.join(ROOT, "tests/fixtures/chat_templates")
for name in sorted(os.listdir(tdir)):
    with open(os.path.join(tdir, name), "rb") as f:
        out("chat_template", name.replace(".jinja", ""), f.read() + SPLIT + messages)
for i, bad in enumerate(["line one\n{% if x %}\n{{ x + }}\n{% endif %}", "{% if x %}never closed", "{% frobnicate %}",
                         "{{ 'unterminated }}", "{# no end", "{% endif %}", "{{ a[] }}",
                         "{% macro m(a=1, b) %}{% endmacro %}", "{{ " + "(" * 300 + "1" + ")" * 300 + " }}",
                         "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
                         "{% set ns = namespace(s='a') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s|length }}",
                         "{{ raise_exception('no system role') }}", "{% raw %}{{ x }}{% endraw %}{{ messages|tojson }}"]):
    out("chat_template", "case_%02d" % i, bad.encode() + SPLIT + messages)

# --- OpenAI request bodies (first byte: even = completions, odd = chat) -------------------
bodies = [
    (0, '{"model":"m","prompt":"hi","max_tokens":5,"temperature":0.5,"top_p":0.9,"top_k":10,"min_p":0.1,"seed":3,"stop":["\\n"],"n":2,"logprobs":2,"user":"u"}'),
    (0, '{"model":"m","prompt":[1,2,3],"stream":true,"stream_options":{"include_usage":true}}'),
    (0, '{"model":"m","prompt":[[4,5]],"ignore_eos":true,"repetition_penalty":1.1}'),
    (1, '{"model":"m","messages":[{"role":"system","content":"s"},{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}],"logprobs":true,"top_logprobs":2,"max_completion_tokens":8}'),
    (0, '{"model":"m","prompt":["x","y"]}'), (0, '{"model":"m","prompt":[-1]}'), (0, '{"model":"m","prompt":""}'),
    (1, '{"model":"m","messages":[]}'), (1, '{"model":"m","messages":[{"role":"user"}]}'),
    (1, '{"model":"m","messages":[{"role":"user","content":"x"}],"tools":[{}]}'),
    (0, '{"model":"m","prompt":"x","max_tokens":"5"}'), (0, '{"model":"m","prompt":"x","temperature":2.5}'),
    (0, '{"model":"m","prompt":"x","n":17}'), (0, '{"model":"m","prompt":"x","logit_bias":{"5":1}}'),
    (0, '{"model":"m","prompt":"x","echo":true}'), (0, '{"prompt":"x"}'), (0, '[1,2]'), (0, '{"model":"m","prompt":"x",'),
]
for i, (ep, body) in enumerate(bodies):
    out("openai_request", "body_%02d" % i, bytes([ep]) + body.encode())

# --- HTTP connections (first byte: limits and read sizes, see http_request_fuzzer.cc) ------
chat = b'{"model":"m","messages":[{"role":"user","content":"hi"}]}'
reqs = [
    b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 28\r\n\r\n{\"model\":\"m\",\"prompt\":\"hi\"}",
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\nTransfer-Encoding: chunked\r\n\r\n"
    + b"%x\r\n" % len(chat) + chat + b"\r\n0\r\n\r\n",
    b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2;ext=1\r\n{}\r\n0\r\nX-T: a\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"HEAD /v1/models HTTP/1.0\r\n\r\n",
    b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n{}",
    b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\nContent-Length: 2\r\n\r\n{}",
    b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n{}",
    b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2;" + b"e" * 2000 + b"\r\n{}\r\n0\r\n\r\n",
    b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\nX-T: " + b"a" * 65535 + b"\r\n\r\n",
    b"GET / HTTP/1.1\r\nX: " + b"h" * 1100 + b"\r\n\r\n",
    b"BREW /pot HTTP/1.1\r\n\r\n", b"POST /v1/completions HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
    b"POST /v1/completions HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}x",
]
for i, r in enumerate(reqs):
    out("http_request", "request_%02d" % i, bytes([0x04 | (0x08 if i % 2 else 0x10)]) + r)
out("http_request", "tiny_header_limit", bytes([0x00]) + reqs[0])
