"""Prometheus metrics of the streaming job, served by the driver (prometheus-client)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, start_http_server

LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20, 30, 60, 120, 300)
SCORE_BUCKETS = tuple(i / 20 for i in range(1, 20))


@dataclass
class StreamMetrics:
    """The job's metrics in a registry of their own; `serve` exposes them over HTTP."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    port: int | None = None

    def __post_init__(self) -> None:
        r = self.registry
        self.scored = Counter("fraud_transactions_scored", "transactions scored", registry=r)
        self.alerts = Counter("fraud_alerts", "transactions flagged as fraud", registry=r)
        self.labels = Counter("fraud_labels", "labels of scored transactions applied to the fraud state", registry=r)
        self.dead_letters = Counter(
            "fraud_dead_letters",
            "messages sent to dead_letters: malformed, breaking a "
            "cleaning rule, duplicate, or a label of no scored transaction",
            registry=r,
        )
        self.duplicates = Counter(
            "fraud_duplicates",
            "transactions whose id their card had counted already (not scored again; in dead_letters)",
            registry=r,
        )
        self.batch_seconds = Histogram(
            "fraud_batch_duration_seconds", "scoring micro-batch duration", buckets=LATENCY_BUCKETS, registry=r
        )
        self.stage_seconds = Counter(
            "fraud_batch_stage_seconds",
            "seconds spent per stage of the micro-batches: state "
            "(Kafka read, parse, stateful steps), alerts_topic (scoring and the alerts "
            "topic), tables (scores and alerts, committed concurrently), labels, "
            "dead_letters",
            ["stage"],
            registry=r,
        )
        self.explanation_seconds = Histogram(
            "fraud_explanation_seconds",
            "an alert published to its explanation published (the same alert again, with its top_features)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.latency = Histogram(
            "fraud_end_to_end_latency_seconds", "Kafka timestamp to scored", buckets=LATENCY_BUCKETS, registry=r
        )
        self.score = Histogram("fraud_score", "model scores", buckets=SCORE_BUCKETS, registry=r)
        self.input_rate = Gauge("fraud_input_rows_per_second", "input rows per second (last batch)", registry=r)
        self.processed_rate = Gauge(
            "fraud_processed_rows_per_second", "processed rows per second (last batch)", registry=r
        )
        self.state_rows = Gauge("fraud_state_rows", "rows in the stateful operators' state", ["operator"], registry=r)
        self.lag = Gauge("fraud_consumer_lag", "offsets behind the latest, max over partitions", registry=r)
        self.model = Info("fraud_model", "the model the stream scores with", registry=r)
        self.threshold = Gauge(
            "fraud_alert_threshold",
            "the score from which a transaction is flagged: the alert budget's (stream.alert_budget) or the model's",
            registry=r,
        )
        self.budget_spent = Gauge(
            "fraud_alert_budget_spent",
            "share of the alert budget's window of legitimate "
            "transactions (not confirmed as fraud) that were flagged: the live FPR",
            registry=r,
        )
        self.budget_target = Gauge(
            "fraud_alert_budget_target",
            "the share of legitimate transactions the alert budget flags at most (0: the budget is off)",
            registry=r,
        )
        self.reviews = Counter(
            "fraud_reviews_requested",
            "transactions sent to the fraud team for review, by "
            "reason: score (the alert threshold), terminal_probe, terminal_case, terminal_explore",
            ["reason"],
            registry=r,
        )
        self.checks_open = Gauge(
            "fraud_terminal_checks_open",
            "terminals under a probe or a case now (stream.terminal_checks)",
            ["kind"],
            registry=r,
        )
        self.checks_opened = Counter(
            "fraud_terminal_checks_opened",
            "probes and cases opened at terminals (stream.terminal_checks)",
            ["kind"],
            registry=r,
        )
        self._opened: dict[str, int] = {}
        self.budget_window = Gauge(
            "fraud_alert_budget_window_transactions",
            "the stream's own transactions in the alert budget's window",
            registry=r,
        )

    def serve(self, port: int) -> int:
        """Start the HTTP endpoint; return its port (a free one when `port` is 0)."""
        server, _ = start_http_server(port, registry=self.registry)
        self.port = int(server.server_port)
        return self.port

    def observe_budget(self, budget: Any, model_threshold: float) -> None:
        """The alert budget's gauges (jobs/stream/alert_budget.py's AlertBudget)."""
        self.threshold.set(budget.threshold(model_threshold))
        spent = budget.spent()
        self.budget_spent.set(spent if spent is not None else 0.0)
        self.budget_target.set(budget.fpr if budget.enabled else 0.0)
        self.budget_window.set(int(budget.counted.sum()) * budget.one_in)

    def observe_checks(self, checks: Any, scored: Any = None) -> None:
        """The terminal checks' metrics (jobs/stream/terminal_checks.py's TerminalChecks), and the reviews a
        micro-batch's scored transactions (`alert_reason`) requested."""
        if scored is not None and len(scored):
            for reason, count in scored["alert_reason"].value_counts().items():
                self.reviews.labels(str(reason)).inc(int(count))
        open_now = {
            "terminal_probe": sum(1 for left in checks.probes.values() if left > 0),
            "terminal_case": len(checks.cases),
        }
        for kind, count in open_now.items():
            self.checks_open.labels(kind).set(count)
            # the counter adds what was opened since the last call; a new start's checks count from 0 again
            last = self._opened.get(kind, 0) if checks.opened[kind] >= self._opened.get(kind, 0) else 0
            self.checks_opened.labels(kind).inc(checks.opened[kind] - last)
            self._opened[kind] = checks.opened[kind]

    def observe_progress(self, progress: dict[str, Any] | None) -> None:
        """Rates, state rows and lag from a micro-batch's progress (Spark's StreamingQueryProgress as JSON)."""
        if not progress:
            return
        self.input_rate.set(progress.get("inputRowsPerSecond") or 0)
        self.processed_rate.set(progress.get("processedRowsPerSecond") or 0)
        for i, op in enumerate(progress.get("stateOperators") or []):
            self.state_rows.labels(f"{i}:{op.get('operatorName', 'state')}").set(op.get("numRowsTotal") or 0)
        lags = [
            float((s.get("metrics") or {}).get("maxOffsetsBehindLatest") or 0) for s in progress.get("sources") or []
        ]
        self.lag.set(max(lags) if lags else 0)
