#!/usr/bin/env python3
"""Checks the Grafana dashboards (monitoring/dashboards/*.json) and the alert rules.

- valid JSON with uid/title/panels, unique panel ids, a `datasource` variable of type
  datasource (Prometheus) that every panel and target uses;
- every PromQL expression parses (promtool check rules on a generated rule file, Grafana's
  variables replaced by values);
- every accullm_* metric that a dashboard query or an alert rule uses is documented
  (docs/metrics.md, else docs/serving.md's table), or listed in monitoring/pending_metrics.txt
  (reported), histogram suffixes _bucket/_sum/_count allowed on documented histograms.
Usage: check_dashboard.py REPO_ROOT
"""
import glob
import json
import os
import re
import subprocess
import sys
import tempfile

import yaml

root = sys.argv[1]
errors = []
METRIC = re.compile(r"\baccullm_[a-z0-9_]+")


def documented():
    doc = os.path.join(root, "docs/metrics.md")
    if not os.path.exists(doc):
        doc = os.path.join(root, "docs/serving.md")
    names, hist = set(), set()
    for line in open(doc, encoding="utf-8"):
        if not line.startswith("|"):
            continue
        for name in re.findall(r"`(accullm_[a-z0-9_]+)", line):
            names.add(name)
            if "histogram" in line:
                hist.add(name)
    pending = set()
    pf = os.path.join(root, "monitoring/pending_metrics.txt")
    if os.path.exists(pf):
        pending = {l.strip() for l in open(pf) if l.strip() and not l.startswith("#")}
    return doc, names, hist, pending


doc, names, hist, pending = documented()
if not names:
    errors.append(f"{doc}: no accullm_ metric found in its tables")
used_pending, exprs = set(), []


def check_names(where, expr):
    for m in set(METRIC.findall(expr)):
        base = re.sub(r"_(bucket|sum|count)$", "", m)
        if m in names or (base != m and base in hist):
            continue
        if m in pending:
            used_pending.add(m)
            continue
        errors.append(f"{where}: {m} is not documented in {os.path.relpath(doc, root)}")


dashboards = sorted(glob.glob(os.path.join(root, "monitoring/dashboards/*.json")))
if not dashboards:
    errors.append("no dashboard in monitoring/dashboards")
for path in dashboards:
    name = os.path.relpath(path, root)
    try:
        d = json.load(open(path, encoding="utf-8"))
    except ValueError as e:
        errors.append(f"{name}: not JSON: {e}")
        continue
    for key in ("uid", "title", "panels", "templating", "schemaVersion"):
        if key not in d:
            errors.append(f"{name}: no {key}")
    variables = {v["name"]: v for v in d.get("templating", {}).get("list", [])}
    ds = variables.get("datasource")
    if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        errors.append(f"{name}: needs a `datasource` variable of type datasource, query prometheus")
    ids = [p.get("id") for p in d.get("panels", [])]
    if len(ids) != len(set(ids)):
        errors.append(f"{name}: duplicate panel ids")
    queries = 0
    for p in d.get("panels", []):
        if p.get("type") == "row":
            continue
        where = f"{name}: panel {p.get('title')!r}"
        if p.get("datasource", {}).get("uid") != "${datasource}":
            errors.append(f"{where}: datasource is not ${{datasource}}")
        if not p.get("targets"):
            errors.append(f"{where}: no query")
        for t in p.get("targets", []):
            if t.get("datasource", {}).get("uid") != "${datasource}":
                errors.append(f"{where}: a target's datasource is not ${{datasource}}")
            expr = t.get("expr", "")
            check_names(where, expr)
            exprs.append((where, expr))
            queries += 1
    print(f"{name}: {queries} queries in {len(ids)} panels")

for path in sorted(glob.glob(os.path.join(root, "monitoring/alerts/*.yml"))):
    if path.endswith("_test.yml"):
        continue
    for g in yaml.safe_load(open(path)).get("groups", []):
        for r in g.get("rules", []):
            check_names(f"{os.path.relpath(path, root)}: {r.get('alert') or r.get('record')}", r["expr"])

# Parse every dashboard expression with promtool: a rule file of recording rules.
subst = {"$__rate_interval": "5m", "$__interval": "1m", "$model": ".*", "$instance": ".*"}
rules = []
for i, (where, expr) in enumerate(exprs):
    for k, v in subst.items():
        expr = expr.replace(k, v)
    if "$" in expr:
        errors.append(f"{where}: unknown variable in {expr}")
    rules.append({"record": f"dashboard:query{i}", "expr": expr})
with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
    yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, f)
try:
    r = subprocess.run(["promtool", "check", "rules", f.name], capture_output=True, text=True)
    if r.returncode != 0:
        errors.append("promtool cannot parse the dashboard queries:\n" + r.stdout + r.stderr)
    else:
        print(f"promtool parsed {len(rules)} dashboard queries")
finally:
    os.unlink(f.name)

for m in sorted(used_pending):
    print(f"note: {m} is used but only listed in monitoring/pending_metrics.txt (not in {os.path.relpath(doc, root)})")
for m in sorted(pending - used_pending):
    print(f"note: monitoring/pending_metrics.txt lists {m}, which nothing uses")
for m in sorted(pending & names):
    errors.append(f"monitoring/pending_metrics.txt: {m} is documented now: delete its line")
for e in errors:
    print("FAIL:", e)
sys.exit(1 if errors else 0)
