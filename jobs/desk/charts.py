"""The stream's last hours as small charts on the desk's stream page: micro-batch duration, alert latency
(p99), the review budget spent, and the consumer lag.

From Prometheus when `desk.prometheus_url` names one (it keeps the history: `query_range` over the last
`desk.chart_hours`); otherwise the desk samples the stream's own endpoint every `desk.chart_sample_seconds`
and keeps what it sampled in memory, at most `desk.chart_hours` of it (a desk started a minute ago shows a
minute). Drawn as SVG on the server: no script, no library in the browser.
"""

from __future__ import annotations

import json
import math
import threading
import time
import urllib.parse
import urllib.request
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jobs.desk.health import quantile, read_families

Series = list[tuple[float, float]]  # (epoch seconds, value)


@dataclass(frozen=True)
class Chart:
    key: str
    title: str
    shown: str  # how a value is written: a format with one field
    promql: str  # the same figure as a Prometheus query (5-minute rates)
    target: str | None = None  # a horizontal line: the key of a value in the sample (the budget's target)


CHARTS = [
    Chart(
        "batch_seconds",
        "micro-batch duration, mean",
        "{:.2f} s",
        "rate(fraud_batch_duration_seconds_sum[5m]) / rate(fraud_batch_duration_seconds_count[5m])",
    ),
    Chart(
        "latency_p99",
        "alert latency, p99",
        "{:.1f} s",
        "histogram_quantile(0.99, sum by (le) (rate(fraud_end_to_end_latency_seconds_bucket[5m])))",
    ),
    Chart(
        "budget_spent",
        "review budget spent (dashed: its target)",
        "{:.2%}",
        "fraud_alert_budget_spent",
        target="budget_target",
    ),
    Chart("lag", "consumer lag (offsets behind)", "{:,.0f}", "fraud_consumer_lag"),
]
BATCH, LATENCY = "fraud_batch_duration_seconds", "fraud_end_to_end_latency_seconds"


def sample(text: str) -> dict[str, Any]:
    """What one read of the stream's endpoint gives: the gauges, and the counters the charts take differences of."""
    values, histograms = read_families(text)
    return {
        "batch_sum": values.get(f"{BATCH}_sum", 0.0),
        "batch_count": values.get(f"{BATCH}_count", 0.0),
        "latency_buckets": histograms.get(LATENCY, []),
        "budget_spent": values.get("fraud_alert_budget_spent"),
        "budget_target": values.get("fraud_alert_budget_target"),
        "lag": values.get("fraud_consumer_lag"),
    }


def between(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float | None]:
    """The charts' values over the time between two samples: the mean micro-batch and the latency p99 of the
    micro-batches and transactions in it (None when there were none), and the gauges as `after` gives them. A
    counter that went down is a restarted stream: `after` alone counts then."""
    restarted = after["batch_count"] < before["batch_count"]
    batches = after["batch_count"] - (0 if restarted else before["batch_count"])
    seconds = after["batch_sum"] - (0 if restarted else before["batch_sum"])
    earlier = {} if restarted else dict(before["latency_buckets"])
    buckets = [(bound, count - earlier.get(bound, 0.0)) for bound, count in after["latency_buckets"]]
    return {
        "batch_seconds": seconds / batches if batches > 0 else None,
        "latency_p99": quantile(buckets, 0.99),
        "budget_spent": after["budget_spent"],
        "budget_target": after["budget_target"],
        "lag": after["lag"],
    }


class Sampler:
    """Reads the stream's endpoint every `every` seconds in a thread of its own and keeps the charts' values
    of the last `hours`; a read that fails leaves a gap."""

    def __init__(self, url: str, hours: float, every: float, clock: Callable[[], float] = time.time) -> None:
        self.url, self.every, self.clock = url, every, clock
        self.points: deque[tuple[float, dict[str, float | None]]] = deque(maxlen=max(2, int(hours * 3600 / every)))
        self.last: dict[str, Any] | None = None
        self.finish = threading.Event()
        self.thread = threading.Thread(target=self._run, name="desk-charts", daemon=True)

    def start(self) -> Sampler:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.finish.set()
        self.thread.join(5)

    def take(self, text: str | None) -> None:
        """One read of the endpoint (None: it did not answer)."""
        now = self.clock()
        if text is None:
            self.last = None
            return
        current = sample(text)
        if self.last is not None:
            self.points.append((now, between(self.last, current)))
        self.last = current

    def series(self) -> dict[str, Series]:
        out: dict[str, Series] = {}
        for key in [c.key for c in CHARTS] + [c.target for c in CHARTS if c.target]:
            out[key] = [(at, float(v[key])) for at, v in self.points if v.get(key) is not None]  # type: ignore[arg-type]
        return out

    def _run(self) -> None:
        while not self.finish.is_set():
            try:
                with urllib.request.urlopen(self.url, timeout=3) as response:
                    self.take(response.read().decode("utf-8", "replace"))
            except OSError:
                self.take(None)
            self.finish.wait(self.every)


def prometheus_series(url: str, hours: float, now: float | None = None, timeout: float = 5.0) -> dict[str, Series]:
    """Each chart's series from Prometheus at `url` (its base address), one point a minute over the last `hours`;
    OSError or ValueError when it does not answer as Prometheus does."""
    end = time.time() if now is None else now
    out: dict[str, Series] = {}
    step = max(15, int(hours * 3600 / 240))
    for chart in CHARTS:
        queries = {chart.key: chart.promql, **({chart.target: "fraud_alert_budget_target"} if chart.target else {})}
        for key, promql in queries.items():
            query = urllib.parse.urlencode({"query": promql, "start": end - hours * 3600, "end": end, "step": step})
            with urllib.request.urlopen(f"{url.rstrip('/')}/api/v1/query_range?{query}", timeout=timeout) as response:
                answer = json.loads(response.read())
            if answer.get("status") != "success":
                raise ValueError(f"Prometheus at {url}: {answer.get('error', answer)}")
            result = answer["data"]["result"]
            out[key] = (
                [(float(t), float(v)) for t, v in result[0]["values"] if math.isfinite(float(v))] if result else []
            )
    return out


def svg(
    series: Series, title: str, shown: str, target: Series | None = None, width: int = 300, height: int = 110
) -> str:
    """A small line chart of `series` (with `target` as a dashed line): its title, the last value written with
    `shown`, the y axis's top and the time it spans; "no data yet" when it is empty."""
    head = f'<svg class="chart" width="{width}" height="{height}" role="img"'
    if not series:
        return (
            f'{head} aria-label="{title}: no data yet"><text x="4" y="14" class="note">{title}</text>'
            f'<text x="4" y="40">no data yet</text></svg>'
        )
    times = [t for t, _ in series]
    values = [v for _, v in series] + [v for _, v in (target or [])]
    low, high = min(0.0, min(values)), max(values) or 1.0
    left, top, right, bottom = 4, 44, width - 4, height - 16
    span = (max(times) - min(times)) or 1.0

    def point(t: float, v: float) -> str:
        x = left + (t - min(times)) / span * (right - left)
        y = bottom - (v - low) / ((high - low) or 1.0) * (bottom - top)
        return f"{x:.1f},{y:.1f}"

    last = shown.format(series[-1][1])
    lines = [
        f'{head} aria-label="{title}: {last}">',
        f'<text x="4" y="14" class="note">{title}</text>',
        f'<text x="4" y="36" class="num">{last}</text>',
    ]
    if len(series) == 1:
        lines.append(
            f'<circle r="2.5" fill="currentColor" cx="{point(*series[0]).split(",")[0]}" '
            f'cy="{point(*series[0]).split(",")[1]}"/>'
        )
    else:
        lines.append(
            f'<polyline fill="none" stroke="currentColor" stroke-width="1.5" '
            f'points="{" ".join(point(t, v) for t, v in series)}"/>'
        )
    if target:
        ends = [(min(times), target[-1][1]), (max(times), target[-1][1])]
        lines.append(
            f'<polyline fill="none" stroke="#b00" stroke-dasharray="4 3" '
            f'points="{" ".join(point(t, v) for t, v in ends)}"/>'
        )
    spanned = f"{span / 60:.0f} min" if span >= 120 else f"{span:.0f} s"
    lines += [
        f'<text x="4" y="{height - 3}" class="note">at most {shown.format(high)}; the last {spanned}</text>',
        "</svg>",
    ]
    return "\n".join(lines)


def charts_html(series: dict[str, Series]) -> list[str]:
    """The SVG of every chart, from `series` (a Sampler's or Prometheus's)."""
    return [svg(series.get(c.key, []), c.title, c.shown, series.get(c.target) if c.target else None) for c in CHARTS]
