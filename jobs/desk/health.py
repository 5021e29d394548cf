"""The stream's health as its Prometheus endpoint gives it (jobs/core/metrics.py): micro-batch duration,
consumer lag, alert latency, the alert budget, the model. Read at each page load, nothing kept."""

from __future__ import annotations

import math
import urllib.request
from typing import Any

from jobs.core.config import Config


def metrics_url(cfg: Config) -> str:
    """`desk.stream_metrics_url`, or the stream's port on this machine."""
    url = cfg.get("desk.stream_metrics_url")
    return str(url) if url else f"http://127.0.0.1:{int(cfg.get('stream.metrics_port'))}/metrics"


def quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """The q-quantile of a Prometheus histogram from its cumulative (upper bound, count) buckets, linear
    within a bucket as PromQL's histogram_quantile is; None when it counted nothing."""
    buckets = sorted(buckets)
    total = buckets[-1][1] if buckets else 0
    if not total:
        return None
    rank, lower, below = q * total, 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower
            return lower + (bound - lower) * ((rank - below) / (count - below) if count > below else 1.0)
        lower, below = bound, count
    return lower


def read_families(text: str) -> tuple[dict[str, float], dict[str, list[tuple[float, float]]]]:
    """The unlabelled samples (name -> value) and the histograms (name -> cumulative (upper bound, count)
    buckets) of an exposition text."""
    values, histograms, _ = _families(text)
    return values, histograms


def _families(text: str) -> tuple[dict[str, float], dict[str, list[tuple[float, float]]], dict[str, str]]:
    from prometheus_client.parser import text_string_to_metric_families

    values: dict[str, float] = {}
    histograms: dict[str, list[tuple[float, float]]] = {}
    info: dict[str, str] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                histograms.setdefault(family.name, []).append((float(sample.labels["le"]), sample.value))
            elif sample.name == "fraud_model_info":
                info = dict(sample.labels)
            elif not sample.labels:
                values[sample.name] = sample.value
    return values, histograms, info


def parse(text: str) -> dict[str, Any]:
    """The figures the desk shows, from the exposition text of the stream's endpoint."""
    values, histograms, info = _families(text)

    def mean(name: str) -> float | None:
        count = values.get(f"{name}_count", 0)
        return values[f"{name}_sum"] / count if count else None

    batch, latency = "fraud_batch_duration_seconds", "fraud_end_to_end_latency_seconds"
    return {
        "batches": int(values.get(f"{batch}_count", 0)),
        "batch_seconds_mean": mean(batch),
        "batch_seconds_p95": quantile(histograms.get(batch, []), 0.95),
        "latency_p50": quantile(histograms.get(latency, []), 0.5),
        "latency_p99": quantile(histograms.get(latency, []), 0.99),
        "lag": values.get("fraud_consumer_lag"),
        "input_rate": values.get("fraud_input_rows_per_second"),
        "scored": values.get("fraud_transactions_scored_total"),
        "alerts": values.get("fraud_alerts_total"),
        "threshold": values.get("fraud_alert_threshold"),
        "budget_spent": values.get("fraud_alert_budget_spent"),
        "budget_target": values.get("fraud_alert_budget_target"),
        "model": info,
    }


def stream_health(url: str, timeout: float = 3.0) -> dict[str, Any]:
    """`parse` of the endpoint at `url`, with `reachable`; when it does not answer, `error` says why."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            text = response.read().decode("utf-8", "replace")
    except OSError as error:
        return {"reachable": False, "url": url, "error": f"{type(error).__name__}: {error}"}
    return {"reachable": True, "url": url, **parse(text)}
