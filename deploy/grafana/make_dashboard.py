#!/usr/bin/env python3
"""Writes deploy/grafana/otaro.json, the Grafana dashboard of otaro_server.

Panels per precision (the `precision` label, E5M2..E5M8): requests, tokens/s,
time to first token, inter-token latency, queue, KV cache, memory, tuning jobs,
loss by bit-width. Every series name is one otaro_server exports; deploy_test and
tests/integration/prometheus_test check that against a real scrape (the tuning
series of issue 8 are listed there as pending, DCGM_* come from NVIDIA's
dcgm-exporter).

usage: python3 deploy/grafana/make_dashboard.py [OUT]
"""
import json
import os
import sys

DS = {"type": "prometheus", "uid": "${datasource}"}
SEL = 'instance=~"$instance"'


def target(expr, legend, ref):
    return {"datasource": DS, "expr": expr, "legendFormat": legend, "refId": ref}


def panel(title, unit, targets, x, y, w=12, h=8, description=""):
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "table", "placement": "right",
                               "calcs": ["lastNotNull", "max"]}},
        "targets": [target(e, l, chr(ord("A") + i)) for i, (e, l) in enumerate(targets)],
    }


def row(title, y):
    return {"type": "row", "title": title, "collapsed": False,
            "gridPos": {"x": 0, "y": y, "w": 24, "h": 1}, "panels": []}


def quantiles(metric, by="precision"):
    return [(f'histogram_quantile({q}, sum by ({by}, le) '
             f'(rate({metric}_bucket{{{SEL}, precision=~"$precision"}}[$__rate_interval])))',
             f"p{int(q * 100)} {{{{{by}}}}}") for q in (0.5, 0.99)]


def dashboard():
    p = 'precision=~"$precision"'
    panels = [
        row("Serving, per precision", 0),
        panel("Requests / s by precision and status", "reqps", [
            (f"sum by (precision, code) (rate(otaro_requests_total{{{SEL}, {p}}}[$__rate_interval]))",
             "{{precision}} {{code}}")], 0, 1,
            description="Generate and GenerateStream calls; precision is the decode precision "
                        "(\"none\": refused before one was known)."),
        panel("Tokens / s by precision", "short", [
            (f"sum by (precision) (rate(otaro_generated_tokens_total{{{SEL}, {p}}}[$__rate_interval]))",
             "generated {{precision}}"),
            (f"sum by (precision) (rate(otaro_prompt_tokens_total{{{SEL}, {p}}}[$__rate_interval]))",
             "prompt {{precision}}")], 12, 1),
        panel("Time to first token", "s", quantiles("otaro_time_to_first_token_seconds"), 0, 9),
        panel("Inter-token latency", "s", quantiles("otaro_inter_token_latency_seconds"), 12, 9),
        panel("Queue", "short", [
            (f"sum by (state) (otaro_scheduler_requests{{{SEL}}})", "{{state}}")], 0, 17,
            description="Requests waiting for a batch slot and KV cache, and running. Past "
                        "generation.max_waiting_requests or max_queue_time_seconds: RESOURCE_EXHAUSTED."),
        panel("Queue time", "s", quantiles("otaro_queue_time_seconds"), 12, 17),
        panel("KV cache in use", "percentunit", [
            (f"otaro_kv_cache_usage_ratio{{{SEL}}}", "{{instance}}")], 0, 25,
            description="Fraction of KV blocks reserved (a request reserves prompt + max_tokens on admission)."),
        panel("Request duration", "s", quantiles("otaro_request_duration_seconds"), 12, 25),
        row("Memory", 33),
        panel("GPU memory", "bytes", [
            ('DCGM_FI_DEV_FB_USED * 1024 * 1024', "used GPU {{gpu}} {{Hostname}}"),
            (f'sum by (instance) (otaro_model_weight_bytes{{{SEL}}})', "model weights {{instance}}")],
            0, 34, description="Framebuffer used (NVIDIA dcgm-exporter, MiB scaled to bytes) and the "
                               "served model's weights."),
        panel("Process memory", "bytes", [
            (f"process_resident_memory_bytes{{{SEL}}}", "resident {{instance}}"),
            (f'otaro_model_weight_bytes_per_token{{{SEL}, {p}}}', "weights read per token {{precision}}")],
            12, 34),
        row("Tuning (OTARo jobs)", 42),
        panel("Tuning jobs by state", "short", [
            (f"sum by (state) (otaro_tuning_jobs{{{SEL}}})", "{{state}}")], 0, 43),
        panel("Tuning loss by bit-width", "short", [
            (f"otaro_tuning_loss{{{SEL}}}", "{{bits}}")], 12, 43),
        panel("Bit-width selections (BPS) / s", "short", [
            (f"sum by (bits) (rate(otaro_tuning_bit_width_selections_total{{{SEL}}}[$__rate_interval]))",
             "{{bits}}")], 0, 51),
        panel("Tuning step and throughput", "short", [
            (f"otaro_tuning_step{{{SEL}}}", "step {{instance}}"),
            (f"otaro_tuning_tokens_per_second{{{SEL}}}", "tokens/s {{instance}}"),
            (f"otaro_model_version{{{SEL}}}", "served model version {{instance}}")], 12, 51),
    ]
    for i, p_ in enumerate(panels):
        p_["id"] = i + 1
    return {
        "title": "otaro",
        "uid": "otaro-serving",
        "description": "otaro_server: serving per precision, memory, OTARo tuning jobs.",
        "tags": ["otaro"],
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "timezone": "",
        "annotations": {"list": []},
        "templating": {"list": [
            {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Data source"},
            {"name": "instance", "type": "query", "datasource": DS, "label": "Instance",
             "query": {"query": "label_values(otaro_build_info, instance)", "refId": "instance"},
             "includeAll": True, "multi": True, "refresh": 2,
             "current": {"text": "All", "value": "$__all"}},
            {"name": "precision", "type": "custom", "label": "Precision",
             "query": "E5M2,E5M3,E5M4,E5M5,E5M6,E5M7,E5M8",
             "includeAll": True, "multi": True, "current": {"text": "All", "value": "$__all"}},
        ]},
        "panels": panels,
    }


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "otaro.json")
    with open(out, "w") as f:
        json.dump(dashboard(), f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
