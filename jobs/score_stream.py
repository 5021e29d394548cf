"""`fraud stream`: the main job. Kafka `transactions` -> per-card and per-terminal features in Spark's
stateful operators -> CatBoost -> Delta `scores` and `alerts`, and the `alerts` topic.

    fraud stream [--available-now] [--model champion]
    spark-submit/submit.sh --master yarn --deploy-mode cluster jobs/score_stream.py --env cluster

Two queries share the topic: `dead_letters` (malformed messages, with the error and topic/partition/offset)
and `score_transactions`:
  parse (features/schema.py) -> hash bucket of the card -> transformWithStateInPandas (card aggregates)
  -> hash bucket of the terminal -> transformWithStateInPandas (terminal aggregates)
  -> foreachBatch: derive_features + CatBoost (broadcast, reloaded when the registry alias moves)
  -> append to `scores` and `alerts` idempotently (batch id = Delta txnVersion: exactly once across
     restarts) -> alerts to Kafka (at least once; deduplicate by `alert_id`).
The state keeps each entity's hourly buckets for the longest window plus the label delay (bounded).
Messages must be keyed by card (as `fraud produce` does): a card's transactions then stay in order in one
partition, which the card windows need; terminal windows end at the label delay, so a terminal's
transactions may arrive out of order by up to that delay.
"""
from __future__ import annotations

import argparse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery
from pyspark.sql.types import (ArrayType, BooleanType, DoubleType, IntegerType, LongType, StringType, StructField,
                               StructType, TimestampType)

from features.definitions import AGGREGATES, FEATURE_NAMES, derive_features
from features.schema import TRANSACTION_COLUMNS, TRANSACTION_SCHEMA
from features.stream_processor import EntityStateProcessor
from jobs import registry
from jobs.common import add_common_options, config_from_args, job_main
from jobs.config import Config
from jobs.errors import FraudError
from jobs.ingest_stream import split_messages
from jobs.lake import append_idempotent, read_topic_stream
from jobs.metrics import StreamMetrics
from jobs.session import get_spark

QUERY = "score_transactions"
DEAD_LETTER_QUERY = "dead_letters"
ALERT_NAMESPACE = uuid.UUID("6f1c2a9e-3b7d-4c55-9a0e-2f4b8c1d7e60")
INPUT_COLUMNS = [*TRANSACTION_COLUMNS, "kafka_timestamp", "partition", "offset"]


@dataclass
class ModelHolder:
    """The model the stream scores with; between micro-batches it follows the registry alias."""

    cfg: Config
    spark: SparkSession
    alias: str
    version: str = ""
    threshold: float = 0.5
    label_delay_hours: int = 0
    broadcast: Any = None

    def refresh(self) -> None:
        """Load the alias's version if it moved; refuse a version the running state cannot serve."""
        version, tags = registry.resolve(self.cfg, self.alias)
        if version == self.version:
            return
        if tags.get("features", "").split(",") != FEATURE_NAMES:
            raise FraudError(f"model {self.alias} (version {version}) was trained on other features: {tags.get('features')}")
        delay = int(tags["label_delay_hours"])
        if self.version and delay != self.label_delay_hours:
            print(f"stream: model version {version} has label delay {delay} h, the running state {self.label_delay_hours} h:"
                  f" keeping version {self.version}; restart the stream to switch")
            return
        booster, tags, version = registry.load(self.cfg, version)
        self.version, self.threshold, self.label_delay_hours = version, float(tags["threshold"]), delay
        self.broadcast = self.spark.sparkContext.broadcast(booster)
        print(f"stream: scoring with {self.alias} = version {version} (threshold {self.threshold:.5f})")


def _schema_with(base: StructType, extra: list[str]) -> StructType:
    return StructType([*base.fields, *[StructField(n, DoubleType(), True) for n in extra]])


INPUT_SCHEMA = StructType([*TRANSACTION_SCHEMA.fields, StructField("kafka_timestamp", TimestampType(), True),
                           StructField("partition", IntegerType(), True), StructField("offset", LongType(), True)])
CARD_AGGS = [a.name for a in AGGREGATES if a.entity == "card"]
TERMINAL_AGGS = [a.name for a in AGGREGATES if a.entity == "terminal"]
# model inputs that are not input columns already (tx_amount is both)
DERIVED = [n for n in FEATURE_NAMES if n not in INPUT_SCHEMA.fieldNames()]
SCORES_SCHEMA = StructType([
    *INPUT_SCHEMA.fields, *[StructField(n, DoubleType(), True) for n in DERIVED],
    StructField("score", DoubleType()), StructField("decision", BooleanType()), StructField("threshold", DoubleType()),
    StructField("model_version", StringType()), StructField("top_features", ArrayType(StringType())),
    StructField("scored_at", TimestampType()),
])


def stateful_features(parsed: DataFrame, label_delay_hours: int, buckets: int, watermark: str) -> DataFrame:
    """Well-formed transactions -> the same rows with every AGGREGATES column, from Spark's state."""
    card_schema = _schema_with(INPUT_SCHEMA, CARD_AGGS)
    cards = (parsed.select(*INPUT_COLUMNS).withWatermark("tx_datetime", watermark)
             .withColumn("_bucket", F.pmod(F.xxhash64("customer_id"), F.lit(buckets)))
             .groupBy("_bucket")
             .transformWithStateInPandas(EntityStateProcessor("card", label_delay_hours, drop=("_bucket",)),
                                         card_schema, "Append", "None", eventTimeColumnName="tx_datetime"))
    return (cards.withColumn("_bucket", F.pmod(F.xxhash64("terminal_id"), F.lit(buckets)))
            .groupBy("_bucket")
            .transformWithStateInPandas(EntityStateProcessor("terminal", label_delay_hours, drop=("_bucket",)),
                                        _schema_with(card_schema, TERMINAL_AGGS), "Append", "None"))


def _scorer(booster_bc: Any, version: str, threshold: float, top: int = 3):
    def score(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        from catboost import Pool

        booster = booster_bc.value
        for frame in frames:
            features = derive_features(frame)
            scores = booster.predict_proba(features)[:, 1] if len(frame) else np.zeros(0)
            decision = scores >= threshold
            top_features: list[list[str]] = [[] for _ in range(len(frame))]
            if decision.any():
                shap = booster.get_feature_importance(Pool(features[decision]), type="ShapValues")[:, :-1]
                for row, values in zip(np.flatnonzero(decision), shap):
                    best = np.argsort(-values)[:top]
                    top_features[row] = [f"{FEATURE_NAMES[i]}={features.iloc[row, i]:.4g} (+{values[i]:.3f})" for i in best]
            out = frame[[f.name for f in INPUT_SCHEMA.fields]].reset_index(drop=True)
            out = pd.concat([out, features[DERIVED].reset_index(drop=True)], axis=1)
            out["score"], out["decision"], out["threshold"] = scores, decision, threshold
            out["model_version"], out["top_features"] = version, top_features
            out["scored_at"] = pd.Timestamp.now(tz="UTC").tz_localize(None)
            yield out
    return score


def start(spark: SparkSession, cfg: Config, available_now: bool = False, model: str | None = None,
          metrics: StreamMetrics | None = None) -> list[StreamingQuery]:
    """Start the dead-letter and the scoring queries."""
    import time

    metrics = metrics or StreamMetrics()
    holder = ModelHolder(cfg, spark, str(model or cfg.get("stream.model")))
    holder.refresh()
    metrics.model.info({"alias": holder.alias, "version": holder.version, "threshold": str(holder.threshold)})
    messages = read_topic_stream(spark, cfg, "transactions")
    scores_path, alerts_path = cfg.table_path("scores"), cfg.table_path("alerts")
    alerts_topic, bootstrap = str(cfg.get("kafka.topics.alerts")), str(cfg.get("kafka.bootstrap_servers"))

    def dead_letters(batch: DataFrame, batch_id: int) -> None:
        bad = split_messages(batch)[1].persist()
        try:
            append_idempotent(bad, cfg.table_path("dead_letters"), DEAD_LETTER_QUERY, batch_id)
            metrics.dead_letters.inc(bad.count())
        finally:
            bad.unpersist()

    def score_batch(batch: DataFrame, batch_id: int) -> None:
        started = time.perf_counter()
        holder.refresh()
        metrics.model.info({"alias": holder.alias, "version": holder.version, "threshold": str(holder.threshold)})
        scored = batch.select(*batch.columns).mapInPandas(
            _scorer(holder.broadcast, holder.version, holder.threshold), SCORES_SCHEMA)
        scored = scored.withColumn("tx_date", F.to_date("tx_datetime")).persist()
        try:
            append_idempotent(scored, scores_path, QUERY, batch_id, partition_by=["tx_date"])
            alert_id = F.udf(lambda t: str(uuid.uuid5(ALERT_NAMESPACE, str(t))), StringType())
            alerts = scored.where("decision").select(
                alert_id("transaction_id").alias("alert_id"), "transaction_id", "customer_id", "terminal_id",
                "tx_datetime", "tx_amount", "score", "threshold", "model_version", "top_features",
                F.current_timestamp().alias("alerted_at"), "tx_date")
            append_idempotent(alerts, alerts_path, QUERY, batch_id, partition_by=["tx_date"])
            (alerts.select(F.col("customer_id").cast("string").alias("key"),
                           F.to_json(F.struct(*[c for c in alerts.columns if c != "tx_date"])).alias("value"))
             .write.format("kafka").option("kafka.bootstrap.servers", bootstrap).option("topic", alerts_topic).save())
            latency = (F.unix_micros("scored_at") - F.unix_micros("kafka_timestamp")) / 1e6
            observed: pd.DataFrame = scored.select("score", "decision", latency.alias("latency")).toPandas()
            metrics.scored.inc(len(observed))
            metrics.alerts.inc(int(observed["decision"].sum()))
            for value in observed["score"]:
                metrics.score.observe(value)
            for value in observed["latency"]:
                metrics.latency.observe(max(value, 0.0))
            metrics.batch_seconds.observe(time.perf_counter() - started)
            metrics.observe_progress(scoring.lastProgress if scoring is not None else None)
        finally:
            scored.unpersist()

    trigger = {"availableNow": True} if available_now else {"processingTime": str(cfg.get("stream.trigger_interval"))}
    # the dead-letter query reads the raw messages and splits each batch itself
    dead = (messages.writeStream.queryName(DEAD_LETTER_QUERY).foreachBatch(dead_letters)
            .option("checkpointLocation", cfg.checkpoint_path(DEAD_LETTER_QUERY)).trigger(**trigger).start())
    scoring: StreamingQuery | None = None
    good, _ = split_messages(messages)
    featured = stateful_features(good, holder.label_delay_hours, int(cfg.get("stream.state_buckets")),
                                 str(cfg.get("stream.watermark")))
    scoring = (featured.writeStream.queryName(QUERY).foreachBatch(score_batch)
               .option("checkpointLocation", cfg.checkpoint_path(QUERY)).trigger(**trigger).start())
    return [dead, scoring]


def run(spark: SparkSession, cfg: Config, available_now: bool = False, model: str | None = None,
        metrics: StreamMetrics | None = None) -> StreamMetrics:
    """Run both queries until they stop (at once with `available_now`); serve metrics meanwhile."""
    metrics = metrics or StreamMetrics()
    if metrics.port is None:
        port = metrics.serve(int(cfg.get("stream.metrics_port")))
        print(f"stream: Prometheus metrics on http://127.0.0.1:{port}/metrics")
    queries = start(spark, cfg, available_now, model, metrics)
    for q in queries:
        q.awaitTermination()
    return metrics


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--available-now", action="store_true", help="process what the topic holds, then stop")
    parser.add_argument("--model", help="registry alias or version (default: stream.model, champion)")
    add_common_options(parser)


def execute(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    run(get_spark(cfg, "stream"), cfg, args.available_now, args.model)
    return 0


main = job_main("fraud stream", __doc__, add_arguments, execute)

if __name__ == "__main__":
    import sys

    sys.exit(main())
