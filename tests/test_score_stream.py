"""The streaming job end to end on the real broker: valid, malformed, rule-breaking and duplicate
transactions in; `scores` holds every valid transaction exactly once with the batch job's features (parity,
row by row); `dead_letters` holds the malformed, rule-breaking and duplicate ones, each with its reason;
`alerts` and the alerts topic hold the flagged ones."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import functions as F

from features.definitions import FEATURE_NAMES
from jobs.batch import build_features, train
from jobs.core.errors import FraudError
from jobs.dev import kafka_topics
from jobs.kafka_tools.alerts_cmd import read_topic
from jobs.kafka_tools.produce import produce as produce_lines
from jobs.kafka_tools.produce import raw_lines
from jobs.simulation.simulate import simulate_to_folder
from jobs.simulation.simulator import make_spec
from jobs.stream import alerts_topic, score_stream, supervision
from jobs.stream.alert_budget import AlertBudget
from models.split import Split
from models.threshold import budget_threshold
from tests.conftest import free_port
from tests.frames import assert_features_match
from tests.monitoring import dashboard_queries, prometheus
from tests.test_ingest_stream import produce

pytestmark = pytest.mark.integration
DELAY = 24
MALFORMED = [
    b"not json",
    b'{"transaction_id": 1}',
    json.dumps(
        {
            "transaction_id": 5,
            "tx_datetime": "2018-04-02 10:00:00",
            "customer_id": 1,
            "terminal_id": "Err",
            "tx_amount": 3.0,
            "tx_time_seconds": 1,
            "tx_time_days": 0,
        }
    ).encode(),
    # well formed, but from the future: it would make its state bucket forget everything older
    json.dumps(
        {
            "transaction_id": 6,
            "tx_datetime": "2080-01-01 00:00:00",
            "customer_id": 1,
            "terminal_id": 2,
            "tx_amount": 3.0,
            "tx_time_seconds": 1,
            "tx_time_days": 0,
        }
    ).encode(),
]


def rule_breaking(transaction_id: int, **changes) -> bytes:
    """A well-formed transaction that breaks a rule of the cleaning suite (jobs/expectations)."""
    good = {
        "transaction_id": transaction_id,
        "tx_datetime": "2018-04-02 10:00:00",
        "customer_id": 1,
        "terminal_id": 2,
        "tx_amount": 3.0,
        "tx_time_seconds": 122_400,
        "tx_time_days": 1,
    }
    return json.dumps({**good, **changes}).encode()


# each breaks one rule, named in its dead letter
RULE_BREAKING = {
    "customer_id_range": rule_breaking(10**9, customer_id=-999999),
    "tx_amount_positive": rule_breaking(10**9 + 1, tx_amount=0.0),
    "terminal_id_range": rule_breaking(10**9 + 2, terminal_id=2_000_000),
    "tx_time_days_consistent": rule_breaking(10**9 + 3, tx_time_days=5),
    "tx_fraud_in_set": rule_breaking(10**9 + 4, tx_fraud=2, tx_fraud_scenario=0),
}


def consume_all(bootstrap: str, topic: str) -> list[dict]:
    return [message for message, _ in read_topic(bootstrap, topic)]


def test_stream_end_to_end(spark, broker, make_cfg, topic_names, tmp_path):
    raw = tmp_path / "raw"
    simulate_to_folder(make_spec("handbook", days=20, customers=300, terminals=400), raw)
    kafka_topics.create_topics(broker.bootstrap_servers, topic_names.values(), partitions=2)
    cfg = make_cfg(
        kafka__bootstrap_servers=broker.bootstrap_servers,
        kafka__topics__transactions=topic_names["transactions"],
        kafka__topics__alerts=topic_names["alerts"],
        kafka__topics__labels=topic_names["labels"],
        kafka__max_offsets_per_trigger=4000,
        stream__metrics_port=0,
        mlflow__tracking_uri=f"sqlite:///{tmp_path}/mlflow.db",
        mlflow__artifact_location=str(tmp_path / "artifacts"),
        # the stream replays the history the model was trained on: no state from it
        stream__seed_from_history=False,
        # exploration: a terminal without a review for 48 h gets one (8 h by default: these terminals
        # make a few payments a day)
        stream__terminal_checks__explore_hours=48,
    )
    summary = train.run(
        spark,
        cfg,
        Split(dt.date(2018, 4, 8), train_days=4, delay_days=1, test_days=3, val_days=1),
        DELAY,
        input_path=str(raw),
    )
    assert summary["registry"]["alias"] == "champion"

    lines = list(raw_lines(raw))
    sent = produce_lines(cfg, iter(lines))  # keyed by card, as the job expects
    assert sent["sent"] == len(lines)
    produce(broker.bootstrap_servers, topic_names["transactions"], MALFORMED + list(RULE_BREAKING.values()))
    produce_lines(cfg, iter(lines[:3]))  # a producer's retry: three transactions sent twice
    metrics = score_stream.run(spark, cfg, available_now=True)

    scores = spark.read.format("delta").load(cfg.table_path("scores"))
    ids = [r.transaction_id for r in scores.select("transaction_id").collect()]
    assert sorted(ids) == list(range(len(lines)))  # every valid transaction, exactly once
    for table in ("scores", "alerts", "explanations", "dead_letters", "labels"):  # stream.delta_checkpoint_interval
        detail = spark.sql(f"DESCRIBE DETAIL delta.`{cfg.table_path(table)}`").collect()[0]
        assert detail["properties"] == {"delta.checkpointInterval": "100"}, table
    assert {r.model_version for r in scores.select("model_version").distinct().collect()} == {"1"}

    batch = build_features.read_features(spark, cfg, DELAY)
    # stream features == batch features, row by row, a null counting as a value
    assert_features_match(
        scores.select("transaction_id", *FEATURE_NAMES).toPandas(),
        batch.join(scores.select("transaction_id"), "transaction_id", "left_semi")
        .select("transaction_id", *FEATURE_NAMES)
        .toPandas(),
        "transaction_id",
        FEATURE_NAMES,
    )

    dead = spark.read.format("delta").load(cfg.table_path("dead_letters")).collect()
    duplicates = [r for r in dead if r.errors[0].startswith("transaction_id: expected a transaction not seen before")]
    assert sorted(json.loads(r.payload)["transaction_id"] for r in duplicates) == [0, 1, 2]
    first = next(r for r in duplicates if json.loads(r.payload)["transaction_id"] == 0)
    assert first.errors == [
        f"transaction_id: expected a transaction not seen before, found 0 already counted for card "
        f"{lines[0].split(',')[2]}: a duplicate (a producer's retry?), not scored again"
    ]
    others = [r for r in dead if r not in duplicates]
    assert sorted(r.payload for r in others) == sorted(m.decode() for m in MALFORMED + list(RULE_BREAKING.values()))
    for rule, payload in RULE_BREAKING.items():
        errors = next(r.errors for r in dead if r.payload == payload.decode())
        assert len(errors) == 1 and errors[0].startswith(f"rule {rule}: "), (rule, errors)
    # the reason of each, a code (jobs/core/dead_letters.py): what counts dead letters reads it, not the words
    assert {r.reason for r in duplicates} == {"duplicate"}
    assert {r.payload: r.reason for r in others} == {
        **{m.decode(): "malformed" for m in MALFORMED if b"2080" not in m},
        **{m.decode(): "future" for m in MALFORMED if b"2080" in m},
        **{payload.decode(): f"rule:{rule}" for rule, payload in RULE_BREAKING.items()},
    }
    future = [r.errors for r in dead if "2080" in (r.payload or "")][0]
    assert future[0].startswith("tx_datetime: expected at most 24 hours after the message's Kafka timestamp ")
    assert future[0].endswith(", found '2080-01-01 00:00:00'")

    alerts = spark.read.format("delta").load(cfg.table_path("alerts"))
    flagged = {r.transaction_id for r in scores.where("decision").collect()}
    assert {r.transaction_id for r in alerts.collect()} == flagged and flagged
    # flagged by its score at the threshold, or sent for review by a check of its terminal (exploration here:
    # no label confirms a fraud, so no probe or case)
    assert scores.where("decision and score < threshold and alert_reason = 'score'").count() == 0
    assert scores.where("decision <> (alert_reason IS NOT NULL)").count() == 0
    reasons = {r.alert_reason: r["count"] for r in scores.groupBy("alert_reason").count().collect()}
    assert set(reasons) == {None, "score", "terminal_explore"}, reasons
    # exploration within its share of the budget's window (stream.terminal_checks.explore_share: 1%)
    assert reasons["terminal_explore"] <= 0.01 * len(ids)
    topic = consume_all(broker.bootstrap_servers, topic_names["alerts"])
    assert {m["transaction_id"] for m in topic} == flagged
    # each alert twice, in this order: at once, then with its explanation, otherwise the same message; the
    # second is the `alerts` table's row joined with its `explanations` row, as Spark writes it in JSON
    by_alert: dict[str, list[dict]] = {}
    for message in topic:
        by_alert.setdefault(message["alert_id"], []).append(message)
    explanations = spark.read.format("delta").load(cfg.table_path("explanations"))
    assert explanations.count() == explanations.select("alert_id").distinct().count() == len(flagged)
    joined = alerts.join(explanations.select("alert_id", "top_features"), "alert_id", "left")
    in_table = {
        r.alert_id: json.loads(r.row)
        for r in joined.select(
            "alert_id", F.to_json(F.struct(*[c for c in joined.columns if c != "tx_date"])).alias("row")
        ).collect()
    }
    assert set(by_alert) == set(in_table)
    for alert_id, (first, explained) in by_alert.items():
        assert first["top_features"] == [] and len(explained["top_features"]) == 3, alert_id
        assert {**first, "top_features": explained["top_features"]} == explained
        assert explained == in_table[alert_id], alert_id
    assert all(len(m) == 2 for m in by_alert.values())

    # each micro-batch is flagged at the threshold that flags at most stream.alert_budget.fpr of the transactions
    # scored before it within a day of event time (no label says any was a fraud; one not flagged counts at 1 -
    # its score), with its own while those are fewer than evidence_transactions, less the share sent for review
    # by terminal checks: from the first on
    budget = AlertBudget.from_config(cfg)
    versions = sorted(
        r.version
        for r in spark.sql(f"DESCRIBE HISTORY delta.`{cfg.table_path('scores')}`")
        .where("operation = 'WRITE'")
        .collect()
    )
    seen = pd.DataFrame(columns=["transaction_id", "tx_datetime", "score", "threshold", "decision", "alert_reason"])
    thresholds = []
    for version in versions:
        rows = (
            spark.read.format("delta")
            .option("versionAsOf", version)
            .load(cfg.table_path("scores"))
            .select("transaction_id", "tx_datetime", "score", "threshold", "decision", "alert_reason")
            .toPandas()
        )
        batch_rows = rows[~rows["transaction_id"].isin(seen["transaction_id"])]
        assert batch_rows["threshold"].nunique() == 1
        window = seen[seen["tx_datetime"] > seen["tx_datetime"].max() - budget.window] if len(seen) else seen
        # the micro-batch's own scores count while the window holds fewer than evidence_transactions (the first ones)
        own = batch_rows["score"].to_numpy(dtype=float) if len(window) < budget.evidence_transactions else np.zeros(0)
        evidence = np.concatenate([window["score"].to_numpy(dtype=float), own])
        weight = np.concatenate([counted_as_legitimate(window), np.ones(len(own))])
        expected = budget_threshold(
            evidence, np.ones(len(evidence), dtype=bool), share_for_the_score(window, budget.fpr), weight
        )
        assert batch_rows["threshold"].iloc[0] == pytest.approx(expected), version
        thresholds.append(batch_rows["threshold"].iloc[0])
        seen = rows
    assert len(set(thresholds)) >= 2 and summary["threshold"] not in thresholds, thresholds

    import urllib.request

    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics.port}/metrics", timeout=10).read().decode()
    values = {
        line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines() if line and not line.startswith("#")
    }
    assert values["fraud_transactions_scored_total"] == len(lines)
    assert values["fraud_alerts_total"] == len(flagged)
    assert values["fraud_dead_letters_total"] == len(MALFORMED) + len(RULE_BREAKING) + 3
    assert values["fraud_duplicates_total"] == 3
    assert values["fraud_end_to_end_latency_seconds_count"] == len(lines)
    assert values["fraud_score_count"] == len(lines)
    assert 'fraud_model_info{alias="champion",threshold=' in text and 'version="1"' in text
    assert any(k.startswith("fraud_state_rows{") for k in values)
    window = seen[seen["tx_datetime"] > seen["tx_datetime"].max() - budget.window]
    assert values["fraud_alert_threshold"] == pytest.approx(thresholds[-1])  # the last micro-batch's
    assert values['fraud_reviews_requested_total{reason="terminal_explore"}'] == reasons["terminal_explore"]
    assert values['fraud_reviews_requested_total{reason="score"}'] == reasons["score"]
    assert values["fraud_alert_budget_window_transactions"] == len(window)
    assert values["fraud_alert_budget_target"] == budget.fpr
    flagged_in_window = scores.where(
        F.col("transaction_id").isin([int(t) for t in window["transaction_id"]]) & F.col("decision")
    )
    weight = counted_as_legitimate(window)
    assert flagged_in_window.count() == int(window["decision"].sum())
    assert values["fraud_alert_budget_spent"] == pytest.approx(
        weight[window["decision"].to_numpy(dtype=bool)].sum() / weight.sum()
    )

    # a real Prometheus scrapes the endpoint with the project's rules and answers every dashboard query
    with prometheus(tmp_path / "prometheus", free_port(), [f"127.0.0.1:{metrics.port}"]) as server:
        scraped = server.wait_for("fraud_transactions_scored_total")
        assert [float(s["value"][1]) for s in scraped] == [len(lines)]
        assert server.wait_for("count_over_time(fraud_alerts_total[1m]) >= 2")  # two scrapes: rates have data
        assert [float(s["value"][1]) for s in server.query("fraud_dead_letters_total")] == [
            len(MALFORMED) + len(RULE_BREAKING) + 3
        ]
        assert [s["metric"]["version"] for s in server.query('fraud_model_info{job="fraud-stream"}')] == ["1"]
        for title, expr in dashboard_queries():
            assert server.query(expr), f"dashboard panel {title!r}: no data for {expr}"
        groups = server.get("/api/v1/rules")["groups"]
        assert sorted(g["name"] for g in groups) == ["fraud-stream-alerts", "fraud-stream-recording"]
        assert [r["name"] for g in groups for r in g["rules"] if r["health"] == "err"] == []


def counted_as_legitimate(window: pd.DataFrame) -> np.ndarray:
    """How much each transaction of the alert budget's window counts as legitimate when no label came: a flagged
    one in full, one not flagged at 1 - its score (stream.alert_budget.unflagged_at_score)."""
    return np.where(window["decision"].to_numpy(dtype=bool), 1.0, 1.0 - window["score"].to_numpy(dtype=float))


def share_for_the_score(window: pd.DataFrame, fpr: float) -> float:
    """The alert budget's share left to the score: `fpr` less the share flagged by terminal checks, at least half."""
    others = (
        float((window["decision"].astype(bool) & (window["alert_reason"] != "score")).mean()) if len(window) else 0.0
    )
    return max(fpr - others, fpr / 2)


def test_a_new_stream_starts_from_the_history_in_clean_transactions(spark, stream_cfg, tmp_path):
    """Cold start: the lake holds 30 cleaned days, the stream starts without a checkpoint on the 5 days after.
    Its first transactions get the batch job's features over the whole 35 days, not those of empty state."""
    from jobs.batch import clean
    from tests.test_stream_restart import register_model

    raw = tmp_path / "raw"
    simulate_to_folder(make_spec("handbook", days=35, customers=200, terminals=300), raw)
    history, live = sorted(raw.glob("*.txt"))  # the bank's 30-day files: 30 days, then 5
    cfg = stream_cfg(kafka__max_offsets_per_trigger=4000)
    register_model(cfg.get("mlflow.tracking_uri"), tmp_path / "artifacts", label_delay_hours=DELAY)
    clean.run(spark, cfg, str(history))
    produce_lines(cfg, raw_lines(live))
    score_stream.run(spark, cfg, available_now=True)

    # the batch jobs on the same lake: the 5 days cleaned after the 30, then the features of all 35 days
    clean.run(spark, cfg, str(live))
    build_features.run(spark, cfg, DELAY)
    batch = build_features.read_features(spark, cfg, DELAY)
    assert batch is not None
    scores = spark.read.format("delta").load(cfg.table_path("scores"))
    # a simulated amount can round to 0.00, which the cleaning rules refuse: a dead letter, in the stream too
    dead = (
        [r.errors for r in spark.read.format("delta").load(cfg.table_path("dead_letters")).collect()]
        if (tmp_path / "lake/dead_letters").is_dir()
        else []
    )
    assert all(e[0].startswith("rule tx_amount_positive: ") for e in dead), dead
    assert scores.count() + len(dead) == sum(1 for _ in raw_lines(live))
    assert_features_match(
        scores.select("transaction_id", *FEATURE_NAMES).toPandas(),
        batch.join(scores.select("transaction_id"), "transaction_id", "left_semi")
        .select("transaction_id", *FEATURE_NAMES)
        .toPandas(),
        "transaction_id",
        FEATURE_NAMES,
    )
    first_day = scores.where(F.col("tx_datetime") < F.lit(dt.datetime(2018, 5, 2)))
    assert first_day.count() > 0 and first_day.where("card_tx_count_30d <= 1").count() < first_day.count() / 10


def test_a_new_stream_reads_its_history_in_its_first_micro_batch_only(spark, stream_cfg, tmp_path):
    """The seed from `clean_transactions` is computed at the start and read once: after the first micro-batch
    the running query neither plans nor reads that table again, so a history moved away (a vacuum, a rewrite
    by `fraud clean`) does not stop it, and no micro-batch pays a Delta scan of the history."""
    import shutil

    from jobs.batch import clean
    from jobs.core.lake import table_exists
    from jobs.core.metrics import StreamMetrics
    from jobs.core.waiting import wait_until
    from tests.test_stream_restart import register_model

    raw = tmp_path / "raw"
    simulate_to_folder(make_spec("handbook", days=35, customers=200, terminals=300), raw)
    history, live = sorted(raw.glob("*.txt"))
    cfg = stream_cfg()
    register_model(cfg.get("mlflow.tracking_uri"), tmp_path / "artifacts", label_delay_hours=DELAY)
    clean.run(spark, cfg, str(history))
    lines = list(raw_lines(live))
    first, then = lines[:200], lines[200:1200]

    def arrived() -> int:
        """Transactions in `scores` and messages in `dead_letters`, once those tables exist."""
        return sum(
            spark.read.format("delta").load(cfg.table_path(table)).count()
            for table in ("scores", "dead_letters")
            if table_exists(spark, cfg.table_path(table))
        )

    query = score_stream.start(spark, cfg, available_now=False, metrics=StreamMetrics())
    try:
        produce_lines(cfg, iter(first))
        wait_until(lambda: arrived() >= len(first), "the first transactions in `scores`", 300, query=query)
        shutil.move(cfg.table_path("clean_transactions"), tmp_path / "history_moved_away")
        produce_lines(cfg, iter(then))
        wait_until(lambda: arrived() >= len(first) + len(then), "the rest in `scores`", 300, query=query)
        assert query.exception() is None
        planned = (
            query._jsq.streamingQuery().lastExecution().toString()
        )  # the running query's plan of its last micro-batch
        assert "clean_transactions" not in planned
    finally:
        supervision.stop_query(spark, query)
    assert arrived() == len(first) + len(then)


def test_alert_ids_are_the_uuid5_of_the_transaction_id(spark):
    """Spark's functions make the same alert ids as Python's uuid5, which the fraud team's tools can recompute."""
    import uuid

    ids = [0, 1, 7, 99, 123_456, 9_876_543_210, -5] + list(range(1000, 3000))
    frame = spark.createDataFrame([(i,) for i in ids], "transaction_id long")
    made = {
        r.transaction_id: r.alert_id
        for r in frame.select(
            "transaction_id", alerts_topic.alert_id(F.col("transaction_id")).alias("alert_id")
        ).collect()
    }
    assert made == {i: str(uuid.uuid5(alerts_topic.ALERT_NAMESPACE, str(i))) for i in ids}


def test_a_checkpoint_of_a_query_with_other_sources_is_refused_with_what_to_do(spark, tmp_path):
    offsets = tmp_path / "chk" / "offsets"
    offsets.mkdir(parents=True)
    (offsets / "4").write_text('v1\n{"batchWatermarkMs":0}\n{"transactions":{"0":10}}\n{"reservoirVersion":3}\n')
    (offsets / "3").write_text('v1\n{"batchWatermarkMs":0}\n{"transactions":{"0":5}}\n')
    with pytest.raises(
        FraudError, match=r"holds the offsets of 2 sources .*/4\), expected 1 .*Start from a new checkpoint"
    ):
        score_stream.check_checkpoint_sources(spark, str(tmp_path / "chk"))
    (offsets / "5").write_text('v1\n{"batchWatermarkMs":0}\n{"transactions":{"0":12}}\n')
    score_stream.check_checkpoint_sources(spark, str(tmp_path / "chk"))  # the newest decides
    score_stream.check_checkpoint_sources(spark, str(tmp_path / "none"))  # no checkpoint yet
