#!/usr/bin/python3
"""Would ordering FFN neurons by co-activity (PowerInfer's hot/cold clustering) give the sparse
kernels longer kept runs and whole skipped groups? An independent numpy study (float32, the
full-precision checkpoint) of the truly active neurons (|SiLU(g)·u| over the layer's threshold
at a target share skipped, thresholds from calib.txt) on held-out valid.txt tokens, under three
neuron orders fixed from calibration statistics:

  natural  the checkpoint's order
  sorted   by activity frequency, most active first (hot/cold clustering)
  chain    greedy: each next neuron the one most correlated with the last (co-activation)

For each order: the share of groups of --group consecutive neurons touched by a token (a group
with no kept neuron is one the down kernel skips whole) and the mean length of a run of kept
neurons (a run of kept gate/up rows is one contiguous read). docs/benchmarks.md quotes its output.

  bench/neuron_clustering_study.py --accullm build/cli/accullm [--targets 0.3,0.5,0.7]
Needs only numpy (Debian's /usr/bin/python3) and `accullm tokenize` for the token ids.
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sparsity_predictor_study as study  # noqa: E402  (the numpy forward pass and tokenizer call)


def active_magnitudes(m, chunks):
    """|SiLU(g)·u| of every token and neuron, per layer."""
    out = [[] for _ in range(m.layers)]

    def hook(i, xn, g, u, h):
        out[i].append(np.abs(h))
        return h
    for c in chunks:
        m.forward(c, hook)
    return [np.concatenate(v) for v in out]


def chain_order(kept):
    """Greedy chain through the neurons by the correlation of their kept indicators."""
    c = np.corrcoef(kept.T.astype(np.float32))
    np.fill_diagonal(c, -np.inf)
    order, left = [0], np.ones(len(c), bool)
    left[0] = False
    while left.any():
        nxt = int(np.argmax(np.where(left, c[order[-1]], -np.inf)))
        order.append(nxt)
        left[nxt] = False
    return np.array(order)


def layout_figures(kept, group):
    """Share of (token, group) pairs with a kept neuron; mean kept run length."""
    n, neurons = kept.shape
    touched = kept[:, :neurons // group * group].reshape(n, -1, group).any(-1).mean()
    edges = np.diff(np.pad(kept, ((0, 0), (1, 1))).astype(np.int8), axis=1)
    runs = (edges == 1).sum(1)
    return touched, (kept.sum(1) / np.maximum(runs, 1)).mean()


def main(argv):
    p = study.study_arguments(__doc__.split("\n")[0], 32, 16, "0.3,0.5,0.7")
    p.add_argument("--group", type=int, default=32, help="neurons per down weight group")
    a = p.parse_args(argv)
    m = study.Model(a.model, a.ctx)
    calib_chunks, valid_chunks = study.calib_and_valid_chunks(a)
    hc = active_magnitudes(m, calib_chunks)
    hv = active_magnitudes(m, valid_chunks)
    print(f"calibration tokens {hc[0].shape[0]}, held-out tokens {hv[0].shape[0]}, groups of {a.group}")
    print(f"{'target':>6} {'layer':>5} {'freq p10/p50/p90':>17} {'|corr| p99':>10}"
          f" {'touched nat/sort/chain':>23} {'run nat/sort/chain':>19}")
    for target in [float(t) for t in a.targets.split(",")]:
        for i in range(m.layers):
            tau = np.quantile(hc[i], target)
            kc, kv = hc[i] > tau, hv[i] > tau
            freq = kc.mean(0)
            c = np.corrcoef(kc.T.astype(np.float32))
            corr99 = np.quantile(np.abs(c[~np.eye(len(c), dtype=bool)]), 0.99)
            orders = [np.arange(kv.shape[1]), np.argsort(-freq, kind="stable"), chain_order(kc)]
            figs = [layout_figures(kv[:, o], a.group) for o in orders]
            q = np.quantile(freq, [0.1, 0.5, 0.9])
            print(f"{target:>6.2f} {i:>5} {q[0]:>5.2f}/{q[1]:.2f}/{q[2]:.2f} {corr99:>10.3f}"
                  f" {'/'.join(f'{t:.3f}' for t, _ in figs):>23} {'/'.join(f'{r:.2f}' for _, r in figs):>19}",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
