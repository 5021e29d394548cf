"""The Prometheus rules and the Grafana dashboard (conf/prometheus, conf/grafana), checked with the real
promtool. The end-to-end stream test (test_score_stream.py) has a real Prometheus scrape the job and
answer every query of the dashboard."""

from __future__ import annotations

import json
import subprocess

import yaml

from jobs.core.metrics import StreamMetrics
from tests.monitoring import DASHBOARD, ROOT, RULES, dashboard_queries, metric_names, tool


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("promtool"), *args], capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_the_rules_and_the_example_config_are_valid():
    checked = promtool("check", "config", str(ROOT / "conf" / "prometheus" / "prometheus.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 11 rules found" in checked.stdout  # the config loads the rules file beside it


def test_the_alerting_rules_pass_their_unit_tests():
    tested = promtool("test", "rules", "tests/prometheus/fraud-rules.test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_alert_is_unit_tested():
    rules = [r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if "alert" in r]
    tests = (ROOT / "tests" / "prometheus" / "fraud-rules.test.yml").read_text()
    assert [a for a in rules if f"alertname: {a}\n" not in tests] == []


def test_the_dashboard_shows_every_metric_of_the_job_and_no_other():
    metrics = StreamMetrics()
    metrics.stage_seconds.labels("score").inc(1)  # labelled families export samples once a label is used
    metrics.state_rows.labels("0:transformWithStateInPandasExec").set(1)
    metrics.model.info({"alias": "champion", "version": "1", "threshold": "0.5"})
    metrics.reviews.labels("score").inc(1)
    metrics.checks_open.labels("terminal_probe").set(1)
    metrics.checks_opened.labels("terminal_probe").inc(1)
    exported = {s.name for family in metrics.registry.collect() for s in family.samples}
    read = set().union(*(metric_names(expr) for _, expr in dashboard_queries()))
    assert read - exported == set()  # no query reads a name the job does not export
    families = {family.name for family in metrics.registry.collect()}
    shown = {f for f in families if any(name.startswith(f) for name in read)}
    assert families - shown == set()  # no metric of the job is left off the dashboard


def test_the_dashboard_is_importable():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "fraud-stream"
    assert [v["name"] for v in dashboard["templating"]["list"]] == ["datasource"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:  # every panel reads the chosen Prometheus data source
        assert panel["datasource"]["uid"] == "${datasource}" and panel["targets"], panel["title"]


def test_the_progress_metrics_are_those_of_the_micro_batch_that_just_ended():
    """ProgressMetrics takes Spark's progress event of its own query (sent after each micro-batch's commit)
    and ignores the other queries of the session."""
    from types import SimpleNamespace

    from jobs.stream.supervision import ProgressMetrics

    metrics = StreamMetrics()
    listener = ProgressMetrics(metrics, "ours")

    def event(query_id: str, rate: float, lag: int) -> SimpleNamespace:
        progress = {
            "id": query_id,
            "batchId": 7,
            "inputRowsPerSecond": rate,
            "processedRowsPerSecond": 2 * rate,
            "stateOperators": [{"operatorName": "transformWithStateExec", "numRowsTotal": 42}],
            "sources": [{"metrics": {"maxOffsetsBehindLatest": str(lag)}}],
        }
        return SimpleNamespace(progress=SimpleNamespace(id=query_id, json=json.dumps(progress)))

    listener.onQueryProgress(event("ours", 120.0, 5))
    listener.onQueryProgress(event("another query", 999.0, 99))
    value = metrics.registry.get_sample_value
    assert value("fraud_input_rows_per_second") == 120.0 and value("fraud_processed_rows_per_second") == 240.0
    assert value("fraud_consumer_lag") == 5
    assert value("fraud_state_rows", {"operator": "0:transformWithStateExec"}) == 42
