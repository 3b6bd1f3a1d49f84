#!/usr/bin/env python3
"""Writes accullm.json, the AccuLLM Grafana dashboard (run it after editing this file;
tests/ops/dashboard_test.sh checks the committed JSON equals its output).

Every query filters by the `model_name` and `instance` variables and uses only documented
metrics (docs/metrics.md); the data source is the `datasource` variable, so the dashboard
imports into any Grafana with a Prometheus data source.
"""
import json
import sys

DS = {"type": "prometheus", "uid": "${datasource}"}
SEL = 'model_name=~"$model", instance=~"$instance"'
# Stage ranks are other scrape targets than the coordinator: filtered by model only.
STAGE_SEL = 'model_name=~"$model"'


def quantiles(metric, sel=SEL):
    return [(f'histogram_quantile({q}, sum by (le) (rate({metric}_bucket{{{sel}}}[$__rate_interval])))', f"p{int(q * 100)}")
            for q in (0.5, 0.9, 0.99)]


# (row title, [(panel title, unit, [(expr, legend)], description)])
ROWS = [
    ("Traffic", [
        ("HTTP responses by code", "reqps",
         [(f"sum by (code) (rate(accullm_http_responses_total{{{SEL}}}[$__rate_interval]))", "{{code}}")],
         "Responses per second, by HTTP status."),
        ("Error ratio (5xx share)", "percentunit",
         [(f'sum(rate(accullm_http_responses_total{{{SEL}, code=~"5.."}}[$__rate_interval])) / '
           f"sum(rate(accullm_http_responses_total{{{SEL}}}[$__rate_interval]))", "5xx")],
         "Alert AccuLLMHighErrorRatio above 5%."),
        ("Rejected requests by reason", "reqps",
         [(f"sum by (reason) (rate(accullm_requests_rejected_total{{{SEL}}}[$__rate_interval]))", "{{reason}}")],
         "Refused before any work: invalid, unauthorized, too_large, queue_full, draining."),
        ("Finished sequences by reason", "reqps",
         [(f"sum by (finished_reason) (rate(accullm_request_success_total{{{SEL}}}[$__rate_interval]))",
           "{{finished_reason}}")], "stop, length, abort, error."),
        ("Queue: running and waiting", "short",
         [(f"sum(accullm_num_requests_running{{{SEL}}})", "running"),
          (f"sum(accullm_num_requests_waiting{{{SEL}}})", "waiting")],
         "Sequences in the running batch and waiting for admission."),
    ]),
    ("Latency", [
        ("Time to first token", "s", quantiles("accullm_time_to_first_token_seconds"), "Arrival to first token."),
        ("Inter-token latency", "s", quantiles("accullm_inter_token_latency_seconds"),
         "Between consecutive tokens of a sequence."),
        ("End-to-end request latency", "s", quantiles("accullm_e2e_request_latency_seconds"),
         "Arrival to last token."),
        ("Queue time", "s", quantiles("accullm_request_queue_time_seconds"), "Arrival to admission."),
    ]),
    ("Throughput", [
        ("Tokens per second", "short",
         [(f"sum(rate(accullm_prompt_tokens_total{{{SEL}}}[$__rate_interval]))", "prompt"),
          (f"sum(rate(accullm_generation_tokens_total{{{SEL}}}[$__rate_interval]))", "generated")],
         "Prefill and generated tokens per second."),
        ("Scheduler iterations per second", "short",
         [(f"sum(rate(accullm_iterations_total{{{SEL}}}[$__rate_interval]))", "iterations")],
         "Batched forward passes per second."),
    ]),
    ("Pipeline stages", [
        ("Stage up (coordinator's view)", "short",
         [(f"accullm_stage_up{{{SEL}}}", "stage {{stage}}")], "1 alive, 0 declared dead (alert AccuLLMStageDown)."),
        ("Stage heartbeat age", "s",
         [(f"accullm_stage_heartbeat_age_seconds{{{SEL}}}", "stage {{stage}}")],
         "Age of each stage's last heartbeat (alert AccuLLMStageSilent above 1 s)."),
        ("Stage compute busy fraction", "percentunit",
         [(f"rate(accullm_stage_compute_seconds_total{{{STAGE_SEL}}}[$__rate_interval])", "{{instance}} {{stage}}")],
         "Compute seconds per second on each stage rank (1 = always computing)."),
    ]),
    ("KV cache", [
        ("KV cache usage", "percentunit",
         [(f"accullm_kv_cache_usage_perc{{{SEL}}}", "{{instance}}")], "Fraction of KV blocks in use."),
        ("KV free blocks", "short",
         [(f"accullm_kv_cache_free_blocks{{{SEL}}}", "{{instance}}")], "Blocks on the free list."),
    ]),
    ("Accuracy drift", [
        ("Canary passing", "short",
         [(f"accullm_canary_passing{{{SEL}}}", "{{instance}}")], "1 passing, 0 failing (alert AccuLLMCanaryFailing)."),
        ("Canary KL divergence", "short",
         [(f"accullm_canary_kl_divergence{{{SEL}}}", "canary {{canary}}")],
         "KL(full precision || served) per canary, nats (alert AccuLLMDriftKLHigh above 0.05)."),
        ("Canary top-1 match", "short",
         [(f"accullm_canary_top1_match{{{SEL}}}", "canary {{canary}}")], "1 when the served top-1 token agrees."),
        ("Sampled layer error (worst linear per layer)", "percentunit",
         [(f"max by (layer) (accullm_layer_relative_error{{{STAGE_SEL}}})", "layer {{layer}}")],
         "||served - full precision|| / ||full precision|| of each layer's worst linear on sampled tokens "
         "(serve --reference); a drifting layer rises above the rest."),
        ("Accumulator overflows", "short",
         [(f"sum(accullm_accumulator_overflows_total{{{STAGE_SEL}}})", "overflows")],
         "Must stay 0 (alert AccuLLMAccumulatorOverflow)."),
    ]),
    ("Activation sparsity", [
        ("FFN neurons skipped per layer", "percentunit",
         [(f"sum by (layer) (rate(accullm_ffn_neurons_skipped_total{{{STAGE_SEL}}}[$__rate_interval])) / "
           f"sum by (layer) (rate(accullm_ffn_neurons_total{{{STAGE_SEL}}}[$__rate_interval]))", "layer {{layer}}")],
         "Share of FFN neurons each layer skipped (packs made with quantize --sparsity; near the pack's target)."),
        ("Sampled FFN recall per layer", "percentunit",
         [(f"sum by (layer) (rate(accullm_ffn_recall_kept_active_total{{{STAGE_SEL}}}[$__rate_interval])) / "
           f"sum by (layer) (rate(accullm_ffn_recall_active_total{{{STAGE_SEL}}}[$__rate_interval]))",
           "layer {{layer}}")],
         "Of the truly active neurons (dense recompute of a sampled share of decode tokens, serve "
         "--sparsity-recall-sample-rate), the share the sparse FFN kept; compare with accullm eval's "
         "guesser_recall for the pack. Empty while no token was sampled."),
    ]),
]


def build():
    panels, pid, y = [], 1, 0
    for title, row in ROWS:
        panels.append({"type": "row", "id": pid, "title": title, "collapsed": False,
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
        pid, y = pid + 1, y + 1
        for i, (ptitle, unit, targets, desc) in enumerate(row):
            panels.append({
                "type": "timeseries", "id": pid, "title": ptitle, "description": desc, "datasource": DS,
                "gridPos": {"h": 8, "w": 8, "x": (i % 3) * 8, "y": y + (i // 3) * 8},
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                "options": {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}},
                "targets": [{"datasource": DS, "refId": chr(ord("A") + k), "expr": e, "legendFormat": leg}
                            for k, (e, leg) in enumerate(targets)],
            })
            pid += 1
        y += ((len(row) + 2) // 3) * 8
    var = lambda name, label, query: {  # noqa: E731
        "name": name, "label": label, "type": "query", "datasource": DS, "query": query,
        "definition": query, "refresh": 2, "includeAll": True, "multi": True, "allValue": ".*",
        "current": {"selected": True, "text": "All", "value": "$__all"}, "sort": 1}
    return {
        "uid": "accullm-serving", "title": "AccuLLM serving", "tags": ["accullm", "llm"],
        "schemaVersion": 38, "version": 1, "editable": True, "timezone": "browser",
        "time": {"from": "now-1h", "to": "now"}, "refresh": "30s",
        "annotations": {"list": []},
        "templating": {"list": [
            {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
             "current": {}, "hide": 0},
            var("model", "Model", "label_values(accullm_num_requests_running, model_name)"),
            var("instance", "Instance", 'label_values(accullm_num_requests_running{model_name=~"$model"}, instance)'),
        ]},
        "panels": panels,
    }


if __name__ == "__main__":
    out = json.dumps(build(), indent=2) + "\n"
    if len(sys.argv) > 1:
        open(sys.argv[1], "w").write(out)
    else:
        sys.stdout.write(out)
