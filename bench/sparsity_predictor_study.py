#!/usr/bin/python3
"""How well can any rule skip FFN neurons of a model? An independent numpy study (float32,
the full-precision checkpoint, not a pack) of three rules at target shares skipped:

  oracle   skip the neurons with the smallest true |SiLU(g)·u| (the bound no predictor beats)
  cats     skip by |SiLU(g)| alone (CATS; the runtime's "cats" predictor)
  lowrank  skip by |SiLU(ĝ)·û| with [ĝ; û] a rank-r reduced-rank regression of gate and up on
           the FFN input (the runtime's "lowrank" guesser, fitted the same way as
           quant/ffn_guesser_fit.cc, here in float64 on the unquantized weights)

Thresholds per layer are calibration quantiles at the target (calib.txt), the cost is KL and
top-1 agreement against the dense model on valid.txt. docs/accuracy.md quotes its output.

  bench/sparsity_predictor_study.py --accullm build/cli/accullm [--model models/tinystories-llama]
      [--calib-chunks 48] [--valid-chunks 24] [--targets 0.3,0.5] [--ranks 25,64]
Needs only numpy (Debian's /usr/bin/python3) and `accullm tokenize` for the token ids.
"""
import argparse
import json
import math
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "tools"))
import reference_forward as rf  # noqa: E402  (the independent forward pass's loader and RoPE)


def silu(x):
    return x / (1 + np.exp(-x))


class Model:
    def __init__(self, model_dir, ctx):
        self.cfg = json.load(open(os.path.join(model_dir, "config.json")))
        self.w = {k: v.astype(np.float32) for k, v in rf.load_tensors(model_dir).items()}
        c = self.cfg
        self.h, self.nh = c["hidden_size"], c["num_attention_heads"]
        self.nkv = c.get("num_key_value_heads") or self.nh
        self.hd = c.get("head_dim") or self.h // self.nh
        self.layers, self.inter, self.eps = c["num_hidden_layers"], c["intermediate_size"], c.get("rms_norm_eps", 1e-6)
        cos, sin = rf.rope_cos_sin(c, self.hd, ctx)
        self.cos, self.sin = cos.astype(np.float32), sin.astype(np.float32)
        self.mask = np.triu(np.full((ctx, ctx), -np.inf, dtype=np.float32), k=1)

    def rms(self, x, w):
        return x / np.sqrt(np.mean(x * x, -1, keepdims=True) + self.eps) * w

    def forward(self, ids, ffn_hook=None):
        """Logits of every position; ffn_hook(layer, x, g, u, h) may return a masked h."""
        W, n = self.w, len(ids)
        x = W["model.embed_tokens.weight"][ids]
        for i in range(self.layers):
            p = f"model.layers.{i}."
            a_in = self.rms(x, W[p + "input_layernorm.weight"])
            q = (a_in @ W[p + "self_attn.q_proj.weight"].T).reshape(n, self.nh, self.hd).transpose(1, 0, 2)
            k = (a_in @ W[p + "self_attn.k_proj.weight"].T).reshape(n, self.nkv, self.hd).transpose(1, 0, 2)
            v = (a_in @ W[p + "self_attn.v_proj.weight"].T).reshape(n, self.nkv, self.hd).transpose(1, 0, 2)
            q = q * self.cos[:n] + rf.rotate_half(q) * self.sin[:n]
            k = k * self.cos[:n] + rf.rotate_half(k) * self.sin[:n]
            k, v = np.repeat(k, self.nh // self.nkv, 0), np.repeat(v, self.nh // self.nkv, 0)
            s = q @ k.transpose(0, 2, 1) / math.sqrt(self.hd) + self.mask[:n, :n]
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            x = x + (s @ v).transpose(1, 0, 2).reshape(n, self.nh * self.hd) @ W[p + "self_attn.o_proj.weight"].T
            xn = self.rms(x, W[p + "post_attention_layernorm.weight"])
            g, u = xn @ W[p + "mlp.gate_proj.weight"].T, xn @ W[p + "mlp.up_proj.weight"].T
            h = silu(g) * u
            if ffn_hook:
                h = ffn_hook(i, xn, g, u, h)
            x = x + h @ W[p + "mlp.down_proj.weight"].T
        return self.rms(x, W["model.norm.weight"]) @ W["lm_head.weight"].T


def log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def tokenize(accullm, model_dir, path):
    out = subprocess.run([accullm, "tokenize", "--model", model_dir, "--file", path, "--no-special"],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def study_arguments(description, calib_chunks, valid_chunks, targets):
    """The options every study of a checkpoint shares."""
    p = argparse.ArgumentParser(description=description)
    here = os.path.dirname(os.path.abspath(__file__))
    p.add_argument("--accullm", required=True, help="the accullm binary (for tokenize)")
    p.add_argument("--model", default=os.path.join(here, "..", "models", "tinystories-llama"))
    p.add_argument("--ctx", type=int, default=256)
    p.add_argument("--calib-chunks", type=int, default=calib_chunks)
    p.add_argument("--valid-chunks", type=int, default=valid_chunks)
    p.add_argument("--targets", default=targets)
    return p


def calib_and_valid_chunks(a):
    """calib.txt's and valid.txt's token ids in chunks of --ctx (at most --calib/valid-chunks)."""
    T = a.ctx
    chunks = lambda ids, k: [np.array(ids[j * T:(j + 1) * T]) for j in range(min(k, len(ids) // T))]
    calib = tokenize(a.accullm, a.model, os.path.join(a.model, "calib.txt"))
    valid = tokenize(a.accullm, a.model, os.path.join(a.model, "valid.txt"))
    return chunks(calib, a.calib_chunks), chunks(valid, a.valid_chunks)


def main(argv):
    p = study_arguments(__doc__.split("\n")[0], 48, 24, "0.3,0.5")
    p.add_argument("--ranks", default="25,64")
    a = p.parse_args(argv)
    m = Model(a.model, a.ctx)
    calib_chunks, vchunks = calib_and_valid_chunks(a)
    X = [[] for _ in range(m.layers)]
    H = [[] for _ in range(m.layers)]

    def collect(i, xn, g, u, h):
        X[i].append(xn)
        H[i].append(h)
        return h
    for c in calib_chunks:
        m.forward(c, collect)
    X = [np.concatenate(v) for v in X]
    H = [np.concatenate(v) for v in H]
    gates = [X[i] @ m.w[f"model.layers.{i}.mlp.gate_proj.weight"].T for i in range(m.layers)]
    dense = [log_softmax(m.forward(c)) for c in vchunks]
    print(f"calibration tokens {X[0].shape[0]}, held-out tokens {sum(len(c) for c in vchunks)}")

    def evaluate(score, taus):
        """KL, top-1 and share skipped with neurons kept where score(i, x, g, h) > taus[i]."""
        st = {"skip": 0, "all": 0}

        def hook(i, xn, g, u, h):
            keep = score(i, xn, g, h) > taus[i]
            st["skip"] += int((~keep).sum())
            st["all"] += keep.size
            return np.where(keep, h, 0)
        kls, top = [], []
        for c, d in zip(vchunks, dense):
            lp = log_softmax(m.forward(c, hook))
            kls.append((np.exp(d) * (d - lp)).sum(-1))
            top.append(d.argmax(-1) == lp.argmax(-1))
        return np.concatenate(kls).mean(), np.concatenate(top).mean(), st["skip"] / st["all"]

    def fit(i, r):
        """Reduced-rank regression of [gate; up] on x (quant/ffn_guesser_fit.cc's algebra)."""
        p = f"model.layers.{i}."
        B = np.concatenate([m.w[p + "mlp.gate_proj.weight"], m.w[p + "mlp.up_proj.weight"]]).T.astype(np.float64)
        C = X[i].T.astype(np.float64) @ X[i] / len(X[i])
        C += 1e-6 * np.trace(C) / len(C) * np.eye(len(C))
        Z = np.linalg.cholesky(C).T @ B
        ev, U = np.linalg.eigh(Z @ Z.T)
        top = np.argsort(ev)[::-1][:r]
        V = Z.T @ U[:, top] / np.sqrt(np.maximum(ev[top], 1e-300))
        return (B @ V).astype(np.float32), V.T.astype(np.float32)

    print(f"{'rule':<12} {'target':>6} {'KL mean':>10} {'top-1 %':>8} {'skipped':>8}")
    for target in [float(t) for t in a.targets.split(",")]:
        rules = {
            "oracle": (lambda i, x, g, h: np.abs(h), [np.quantile(np.abs(H[i]), target) for i in range(m.layers)]),
            "cats": (lambda i, x, g, h: np.abs(silu(g)),
                     [np.quantile(np.abs(silu(gates[i])), target) for i in range(m.layers)]),
        }
        for r in [int(v) for v in a.ranks.split(",")]:
            maps = [fit(i, r) for i in range(m.layers)]

            def lowrank(i, x, g, h, maps=maps):
                y = (x @ maps[i][0]) @ maps[i][1]
                return np.abs(silu(y[:, :m.inter]) * y[:, m.inter:])
            rules[f"lowrank r={r}"] = (lowrank, [np.quantile(lowrank(i, X[i], None, None), target)
                                                 for i in range(m.layers)])
        for name, (score, taus) in rules.items():
            kl, t1, skipped = evaluate(score, taus)
            print(f"{name:<12} {target:>6.2f} {kl:>10.6f} {100 * t1:>8.2f} {skipped:>8.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
