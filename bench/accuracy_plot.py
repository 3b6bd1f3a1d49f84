#!/usr/bin/env python3
"""Renders docs/accuracy.md's size/accuracy figure (SVG, no plotting library needed).

Usage: accuracy_plot.py OUT.svg NAME=RESULT.json ... [--llamacpp]
Each RESULT.json is `accullm eval --json` output (weight_bytes, kl_mean). With --llamacpp the
llama.cpp reference points measured on the same model, text and protocol are drawn too.
"""
import json
import math
import sys

LLAMACPP = [("Q8_0", 7866848, 0.000103), ("Q5_K_M", 5305824, 0.00119),
            ("Q4_K_M", 4568544, 0.00357), ("Q4_0", 4332000, 0.00615)]


def main(argv):
    out = argv[0]
    points = []
    for arg in argv[1:]:
        if arg == "--llamacpp":
            continue
        name, path = arg.split("=", 1)
        d = json.load(open(path))
        points.append((name, d["weight_bytes"], d["kl_mean"], "#1f77b4"))
    if "--llamacpp" in argv:
        points += [(n, b, k, "#d62728") for n, b, k in LLAMACPP]
    w, h, m = 760, 480, 70
    xs = [p[1] / 1e6 for p in points]
    ys = [math.log10(p[2]) for p in points]
    x0, x1 = min(xs) - 0.3, max(xs) + 0.3
    y0, y1 = math.floor(min(ys) * 2) / 2, math.ceil(max(ys) * 2) / 2
    sx = lambda x: m + (x - x0) / (x1 - x0) * (w - 2 * m)
    sy = lambda y: h - m - (y - y0) / (y1 - y0) * (h - 2 * m)
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<line x1="{m}" y1="{h-m}" x2="{w-m}" y2="{h-m}" stroke="black"/>',
           f'<line x1="{m}" y1="{m}" x2="{m}" y2="{h-m}" stroke="black"/>',
           f'<text x="{w/2}" y="{h-20}" text-anchor="middle">weight bytes (MB)</text>',
           f'<text x="18" y="{h/2}" transform="rotate(-90 18 {h/2})" text-anchor="middle">mean KL divergence (log scale)</text>',
           f'<text x="{w-m}" y="{m-20}" text-anchor="end" fill="#1f77b4">AccuLLM</text>',
           f'<text x="{w-m}" y="{m-6}" text-anchor="end" fill="#d62728">llama.cpp</text>']
    t = math.ceil(x0)
    while t <= x1:
        svg.append(f'<line x1="{sx(t)}" y1="{h-m}" x2="{sx(t)}" y2="{h-m+5}" stroke="black"/><text x="{sx(t)}" y="{h-m+18}" text-anchor="middle">{t}</text>')
        t += 1
    e = y0
    while e <= y1 + 1e-9:
        svg.append(f'<line x1="{m-5}" y1="{sy(e)}" x2="{m}" y2="{sy(e)}" stroke="black"/><text x="{m-8}" y="{sy(e)+4}" text-anchor="end">{10**e:.0e}</text>')
        e += 0.5
    for (name, b, k, color), x, y in zip(points, xs, ys):
        svg.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="4" fill="{color}"/>')
        svg.append(f'<text x="{sx(x)+6:.1f}" y="{sy(y)-5:.1f}" fill="{color}">{name}</text>')
    svg.append("</svg>")
    open(out, "w").write("\n".join(svg))


if __name__ == "__main__":
    main(sys.argv[1:])
