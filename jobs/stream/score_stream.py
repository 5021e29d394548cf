"""`fraud stream`: the main job. Kafka `transactions` and `labels` -> per-card and per-terminal features in
Spark's stateful operators -> CatBoost -> Delta `scores` and `alerts`, and the `alerts` topic.

    fraud stream [--available-now] [--model champion]
    spark-submit/submit.sh --master yarn --deploy-mode cluster jobs/stream/score_stream.py --env cluster

One query, `score_transactions`, reads both topics (one Kafka source, read once per micro-batch):
  messages: parsed in one projection (features/schema.py) and checked against the cleaning suite's
    one-transaction rules (jobs/batch/quality.py) -> the card operator (card aggregates; a transaction id the
    card counted before is flagged a duplicate) -> the terminal operator (terminal aggregates); both are
    Java `transformWithState` operators keeping one state value per card (terminal), fed their aggregates
    by features/operators.py, and seeded from `clean_transactions` when the query has no checkpoint
    (build_input)
  a label that gives its transaction's card, terminal and time goes through the same two operators in the
    micro-batch that reads it: it adds its +1 or -1 to the fraud count of its card and terminal at its hour
  malformed and rule-breaking transactions, duplicates and other label messages travel through the
    operators without touching the state
  -> BatchWriter, once per micro-batch:
     - derive_features + CatBoost (broadcast, reloaded when the registry alias moves), flagged at the alert
       budget's threshold (jobs/stream/alert_budget.py) or sent for review by a terminal check
       (jobs/stream/terminal_checks.py) -> the alerts topic first, then `scores` and `alerts` (and `dead_letters`)
       committed together;
     - labels: recorded in `labels`; one given by transaction id alone is looked up in `scores` and sent
       again with its place (it counts in the next micro-batch); they tell the budget and the checks;
     - malformed, rule-breaking and duplicate messages, and labels of transactions never scored ->
       `dead_letters`.
  Every Delta append is idempotent (by batch id, jobs/core/lake.py): exactly once across restarts. The alerts
  topic is at least once: deduplicate by `alert_id`.
The state keeps each entity's hourly buckets for the longest window plus the label delay; a card (terminal)
idle for `stream.state_ttl_days` expires: bounded.
Messages must be keyed by card (as `fraud produce` does): a card's transactions then stay in order in one
partition, which the card windows need; terminal windows end at the label delay, so a terminal's
transactions may arrive out of order by up to that delay.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from py4j.protocol import Py4JError
from pyspark.errors import StreamingQueryException
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery, StreamingQueryListener
from pyspark.sql.types import (
    ArrayType,
    BooleanType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from features.definitions import AGGREGATES, FEATURE_NAMES, derive_features, lookback_hours
from features.operators import DAY_HOURS, LABEL_INCREMENT, LABEL_PREVIOUS, card_and_terminal_aggregates, seed_state
from features.schema import (
    LABEL_PLACE,
    TRANSACTION_COLUMNS,
    TRANSACTION_SCHEMA,
    parse_json_labels,
    parse_json_transactions,
)
from jobs.batch.quality import (
    DERIVED_COLUMNS,
    Rule,
    derived_columns,
    load_rules,
    message_rules,
    rule_errors,
    rule_fails,
)
from jobs.core import registry
from jobs.core.common import add_common_options, config_from_args, job_main
from jobs.core.config import Config
from jobs.core.dead_letters import DEAD_LETTER_COLUMNS, DUPLICATE, MALFORMED, rule_reason
from jobs.core.errors import FraudError, QueryFailed
from jobs.core.kafka_clients import logged_in
from jobs.core.lake import (
    add_columns,
    append_idempotent,
    list_files,
    path_exists,
    read_text,
    read_topic_stream,
    set_properties,
    table_exists,
)
from jobs.core.metrics import StreamMetrics
from jobs.core.session import get_spark
from jobs.stream.alert_budget import AlertBudget, newest_scored
from jobs.stream.alerts_topic import Publisher, alert_id, alert_messages
from jobs.stream.blocked_cards import confirmed_cards
from jobs.stream.explanations import Explainer, explain_missing, explanations_table_seconds
from jobs.stream.ingest_stream import DEAD_LETTER_REASON, kafka_columns, reject_future
from jobs.stream.label_records import LABELS_ADDED, LABELS_SCHEMA, resolve_labels, with_decisions
from jobs.stream.options import check_stream_config
from jobs.stream.terminal_checks import EXPLORE, TerminalChecks, flagged_history

QUERY = "score_transactions"


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
    booster: Any = None  # the driver's copy, for the alerts' explanations

    def refresh(self) -> None:
        """Load the alias's version if it moved; refuse a version the running state cannot serve."""
        version, tags = registry.resolve(self.cfg, self.alias)
        if version == self.version:
            return
        if tags.get("features", "").split(",") != FEATURE_NAMES:
            raise FraudError(
                f"model {self.alias} (version {version}) was trained on other features: {tags.get('features')}"
            )
        delay = int(tags["label_delay_hours"])
        if self.version and delay != self.label_delay_hours:
            print(
                f"stream: model version {version} has label delay {delay} h, the running state {self.label_delay_hours} h:"
                f" keeping version {self.version}; restart the stream to switch"
            )
            return
        booster, tags, version = registry.load(self.cfg, version)
        self.version, self.threshold, self.label_delay_hours = version, float(tags["threshold"]), delay
        self.booster, self.broadcast = booster, self.spark.sparkContext.broadcast(booster)
        print(f"stream: scoring with {self.alias} = version {version} (threshold {self.threshold:.5f})")

    def booster_of(self, version: str) -> Any:
        """The booster of model `version`: the one in use, or loaded from the registry."""
        return self.booster if version == self.version else registry.load(self.cfg, version)[0]


def _schema_with(base: StructType, extra: list[str]) -> StructType:
    return StructType([*base.fields, *[StructField(n, DoubleType(), True) for n in extra]])


INPUT_SCHEMA = StructType(
    [
        *TRANSACTION_SCHEMA.fields,
        StructField("kafka_timestamp", TimestampType(), True),
        StructField("partition", IntegerType(), True),
        StructField("offset", LongType(), True),
    ]
)
# what the stateful operators take: every row of a micro-batch. Transactions and label increments
# (`label_row` true) update the state; label messages and malformed messages go through unchanged
# (`bypass_state` true), so that the Kafka source is read once per micro-batch. Such a message carries its
# topic, key, payload and errors as one JSON string, `message` (MESSAGE_SCHEMA): one narrow column through
# the operators rather than four, null for every transaction. `unpack_messages` gives them back after.
# No name starts with "_": the operators' pandas frames would get such a column as "_13" (its position).
MESSAGE_SCHEMA = StructType(
    [
        StructField("topic", StringType()),
        StructField("key", StringType()),
        StructField("payload", StringType()),
        StructField("errors", ArrayType(StringType())),
        StructField("reason", StringType()),
    ]
)
MESSAGE_COLUMNS = MESSAGE_SCHEMA.fieldNames()
STATE_INPUT_SCHEMA = StructType(
    [  # every field nullable: a message's row has no card, terminal or time
        *[StructField(f.name, f.dataType, True) for f in INPUT_SCHEMA.fields],
        StructField("label_row", BooleanType(), True),
        StructField("bypass_state", BooleanType(), True),
        StructField("message", StringType(), True),
    ]
)
STATE_INPUT_COLUMNS = STATE_INPUT_SCHEMA.fieldNames()
CARD_AGGS = [a.name for a in AGGREGATES if a.entity == "card"]
TERMINAL_AGGS = [a.name for a in AGGREGATES if a.entity == "terminal"]
# model inputs that are not input columns already (tx_amount is both)
DERIVED = [n for n in FEATURE_NAMES if n not in INPUT_SCHEMA.fieldNames()]
SCORES_SCHEMA = StructType(
    [
        *INPUT_SCHEMA.fields,
        *[StructField(n, DoubleType(), True) for n in DERIVED],
        StructField("score", DoubleType()),
        StructField("decision", BooleanType()),
        StructField("threshold", DoubleType()),
        StructField("model_version", StringType()),
        StructField("scored_at", TimestampType()),
        # why a flagged transaction was: "score" (at or above the threshold), or a check of its terminal
        # (jobs/stream/terminal_checks.py: "terminal_probe", "terminal_case", "terminal_explore"); null when not flagged
        StructField("alert_reason", StringType()),
    ]
)
# the column of `alerts` added after its first version (`add_columns` gives it to an older table)
ALERT_REASON = StructType([StructField("alert_reason", StringType())])
# what the driver takes of each scored transaction: an alert's fields, in the order of its message (alert_messages)
ALERT_FIELDS = [
    "transaction_id",
    "customer_id",
    "terminal_id",
    "tx_datetime",
    "tx_amount",
    "score",
    "model_version",
    "alert_reason",
]


def state_ttl_days(cfg: Config, label_delay_hours: int) -> int | None:
    """`stream.state_ttl_days`, checked: longer than every window plus the label delay and the whole-day expiry."""
    ttl = cfg.get("stream.state_ttl_days")
    if ttl is None:
        return None
    needed = max(lookback_hours(e, label_delay_hours) for e in ("card", "terminal")) + 2 * DAY_HOURS
    if not isinstance(ttl, int) or isinstance(ttl, bool) or ttl * 24 <= needed:
        raise FraudError(
            f"stream.state_ttl_days: expected more than the longest window plus the label delay "
            f"plus 2 days ({needed / 24:g} days), found {ttl!r}"
        )
    return ttl


def parse_messages(messages: DataFrame, tx_topic: str, rules: list[Rule] | None = None) -> DataFrame:
    """Kafka messages of both topics -> STATE_INPUT_COLUMNS, in one projection: a message of `tx_topic` is
    parsed as a transaction (a malformed one, or one that fails any of `rules`, gets `message`), any other as
    a label (it always gets `message`). A well-formed label that gives its transaction's card, terminal and
    time is a `label_row`, for the state; any other label or malformed message bypasses it."""
    is_tx = F.col("topic") == tx_topic
    base = kafka_columns(messages)
    base = base.select(
        *[c for c in base.columns if c != "value"],
        F.when(is_tx, F.col("value")).alias("_tx_value"),
        F.when(~is_tx, F.col("value")).alias("_label_value"),
    )
    renamed = {
        "payload": "_tx_payload",
        "errors": "_tx_errors",
        "reason": "_tx_reason",
        "transaction_id": "_tx_id",
        "tx_fraud": "_tx_fraud",
        **{c: f"_tx_{c}" for c in LABEL_PLACE.fieldNames()},
    }
    transactions = reject_future(parse_json_transactions(base, "_tx_value"))
    if rules:  # the cleaning job's rules that judge one transaction (jobs/batch/quality.py), on well-formed ones
        broken = F.when(F.size("errors") == 0, rule_errors(rules)).otherwise(F.col("errors"))
        transactions = (
            transactions.select("*", *derived_columns())
            .withColumn("reason", F.coalesce("reason", first_broken_rule(rules)))
            .withColumn("errors", broken)
            .drop(*DERIVED_COLUMNS)
        )
    both = parse_json_labels(
        transactions.select(*[F.col(c).alias(renamed.get(c, c)) for c in transactions.columns]), "_label_value"
    )
    label_row = ~is_tx & (F.size("errors") == 0) & F.col("customer_id").isNotNull()
    bypass = (~is_tx & ~label_row) | (is_tx & (F.size("_tx_errors") > 0))
    message = F.to_json(
        F.struct(
            "topic",
            "key",
            F.when(is_tx, F.col("_tx_payload")).otherwise(F.col("payload")).alias("payload"),
            F.when(is_tx, F.col("_tx_errors")).otherwise(F.col("errors")).alias("errors"),
            F.when(is_tx, F.col("_tx_reason")).when(F.size("errors") > 0, F.lit(MALFORMED)).alias("reason"),
        )
    )
    return both.select(
        *[
            F.when(is_tx, F.col(renamed.get(c, c))).otherwise(F.col(c)).alias(c) if c in renamed else F.col(c)
            for c in TRANSACTION_COLUMNS
        ],
        "kafka_timestamp",
        "partition",
        "offset",
        label_row.alias("label_row"),
        bypass.alias("bypass_state"),
        F.when(bypass | label_row, message).alias("message"),
    ).select(*STATE_INPUT_COLUMNS)


def first_broken_rule(rules: list[Rule]) -> Column:
    """The dead letter's reason of a transaction that breaks one of `rules`: the first one's (null if none)."""
    return F.coalesce(*[F.when(rule_fails(r), F.lit(rule_reason(r.name))) for r in rules], F.lit(None).cast("string"))


def unpack_messages(featured: DataFrame) -> DataFrame:
    """The operators' output with `message` unpacked into MESSAGE_COLUMNS, and `row_kind`: "tx" (a
    transaction), "duplicate" (a transaction id counted before), "label" (a label that went through the
    state: counted if its `label_increment` is not null), "label_by_id" (a well-formed label without its
    transaction's place) or "dead" (a malformed message of either topic)."""
    message = F.from_json("message", MESSAGE_SCHEMA)
    kind = (
        F.when(F.col("label_row"), "label")
        .when(F.col("duplicate"), "duplicate")
        .when(~F.col("bypass_state"), "tx")
        .when(F.size(message["errors"]) > 0, "dead")
        .otherwise("label_by_id")
    )
    return featured.select(
        *[c for c in featured.columns if c != "message"],
        kind.alias("row_kind"),
        *[message[c].alias(c) for c in MESSAGE_COLUMNS],
    )


def stateful_features(
    rows: DataFrame, label_delay_hours: int, ttl_days: int | None, seeds: dict[str, DataFrame] | None = None
) -> DataFrame:
    """The rows of a micro-batch (STATE_INPUT_COLUMNS) -> the same rows with every AGGREGATES column, from
    Spark's state for transactions, null for the rest; `duplicate`: true for a transaction whose id its card
    counted before, which then counts nowhere; and, for a label row, `label_increment` and `label_previous`
    (features/operators.py): what it changed in the card's and the terminal's fraud counts, null if its card
    counted no such transaction. `seeds`: the initial state per entity (features/operators.py's
    seed_state), for a query without a checkpoint."""
    return card_and_terminal_aggregates(
        rows.select(*STATE_INPUT_COLUMNS),
        label_delay_hours,
        ttl_days,
        seeds,
        bypass=["bypass_state"],
        label_order="kafka_timestamp",
    )


def _scorer(booster_bc: Any, version: str, reviews: dict[int, str]):
    """The pandas function that scores a micro-batch's transactions. Nothing is flagged here: the driver
    chooses the threshold once it has every score of the micro-batch (the alert budget's evidence). A
    transaction at a terminal under a check (`reviews`: terminal -> reason, jobs/stream/terminal_checks.py)
    gets the check's reason as a candidate for review, which the driver picks from (TerminalChecks.pick)."""

    def score(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        booster = booster_bc.value
        for frame in frames:
            features = derive_features(frame)
            scores = booster.predict_proba(features)[:, 1] if len(frame) else np.zeros(0)
            checked = frame["terminal_id"].map(reviews).to_numpy(dtype=object) if reviews else np.full(len(frame), None)
            out = frame[[f.name for f in INPUT_SCHEMA.fields]].reset_index(drop=True)
            out = pd.concat([out, features[DERIVED].reset_index(drop=True)], axis=1)
            out["score"], out["decision"], out["threshold"] = scores, False, np.nan
            out["model_version"] = version
            out["scored_at"] = pd.Timestamp.now(tz="UTC").tz_localize(None)
            out["alert_reason"] = checked
            yield out

    return score


def duplicate_letters(batch: DataFrame, tx_topic: str) -> DataFrame:
    """The micro-batch's duplicate transactions as dead letters (DEAD_LETTER_COLUMNS): the transaction as JSON,
    and why it was not scored."""
    reason = F.concat(
        F.lit("transaction_id: expected a transaction not seen before, found "),
        F.col("transaction_id").cast("string"),
        F.lit(" already counted for card "),
        F.col("customer_id").cast("string"),
        F.lit(": a duplicate (a producer's retry?), not scored again"),
    )
    return batch.where("row_kind = 'duplicate'").select(
        F.lit(tx_topic).alias("topic"),
        "partition",
        "offset",
        "kafka_timestamp",
        F.col("customer_id").cast("string").alias("key"),
        F.to_json(F.struct(*[c for c in TRANSACTION_COLUMNS if c not in ("tx_fraud", "tx_fraud_scenario")])).alias(
            "payload"
        ),
        F.array(reason).alias("errors"),
        F.lit(DUPLICATE).alias("reason"),
    )


def check_checkpoint_sources(spark: SparkSession, checkpoint: str) -> None:
    """Refuse a checkpoint whose query read other sources than this one's (Kafka alone): Spark would stop at
    its first micro-batch with an assertion about the number of sources."""
    offsets = [f for f in list_files(spark, checkpoint + "/offsets", suffix="") if f.rsplit("/", 1)[-1].isdigit()]
    if not offsets:
        return
    newest = max(offsets, key=lambda f: int(f.rsplit("/", 1)[-1]))
    sources = [line for line in read_text(spark, newest).splitlines()[2:] if line.strip()]
    if len(sources) != 1:
        raise FraudError(
            f"stream: the checkpoint {checkpoint} holds the offsets of {len(sources)} sources ({newest}), "
            "expected 1 (the Kafka topics): it was written by a query that also read the `labels` table. "
            "Start from a new checkpoint (`--checkpoint`, or remove this one): the state then starts "
            "from `clean_transactions` (stream.seed_from_history) and Kafka from "
            "kafka.starting_offsets"
        )


class Stages:
    """Seconds per stage of one micro-batch, for the `fraud_batch_stage_seconds_total` counter and the log."""

    def __init__(self) -> None:
        self.last = time.perf_counter()
        self.seconds: dict[str, float] = {}

    def done(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + now - self.last
        self.last = now


def table_properties(cfg: Config) -> dict[str, str]:
    """The Delta table properties of the tables the stream writes (stream.delta_checkpoint_interval)."""
    interval = cfg.get("stream.delta_checkpoint_interval")
    if not isinstance(interval, int) or isinstance(interval, bool) or interval < 1:
        raise FraudError(
            f"stream.delta_checkpoint_interval: expected a whole number of commits of 1 or more, found {interval!r}"
        )
    return {"delta.checkpointInterval": str(interval)}


def seed_states(spark: SparkSession, cfg: Config, label_delay_hours: int) -> dict[str, DataFrame]:
    """The operators' initial state, for a query that has no checkpoint yet (`stream.seed_from_history`): the
    look-back of `clean_transactions` before its newest transaction, so that the stream's first transactions
    get the features the batch job gives them. The stream must then read the transactions after that history.
    Empty (no seed) when the checkpoint has a committed micro-batch, the option is off or the table is absent."""
    clean_path = cfg.table_path("clean_transactions")
    if (
        not cfg.get("stream.seed_from_history")
        or path_exists(spark, cfg.checkpoint_path(QUERY) + "/commits/0")
        or not table_exists(spark, clean_path)
    ):
        return {}
    clean = spark.read.format("delta").load(clean_path)
    newest = clean.select(F.max("tx_datetime")).collect()[0][0]
    if newest is None:
        return {}
    hour = int(newest.replace(tzinfo=dt.UTC).timestamp()) // 3600
    print(
        f"stream: no checkpoint yet: the state starts from {clean_path} up to {newest:%Y-%m-%d %H:%M:%S} "
        "(stream.seed_from_history)",
        flush=True,
    )
    # computed now and held by Spark (local checkpoint): the query reads a seed in its first micro-batch only,
    # but plans it in every one, and a plan over `clean_transactions` would cost each micro-batch a Delta
    # file listing and its data-skipping Spark job (docs/benchmarks.md). An executor lost before the first
    # micro-batch commits loses it: that micro-batch fails, and the restart computes the seed again
    return {
        entity: seed_state(clean, entity, label_delay_hours, hour, with_ids=entity == "card").localCheckpoint(
            eager=True
        )
        for entity in ("card", "terminal")
    }


def prepare_tables(spark: SparkSession, cfg: Config, properties: dict[str, str]) -> None:
    """Before the query starts: an empty `labels` table for analysts' queries, the tables' properties
    (`stream.delta_checkpoint_interval`), and the columns an older version's `scores` and `alerts` lack."""
    scores_path, alerts_path = cfg.table_path("scores"), cfg.table_path("alerts")
    labels_path, dead_path = cfg.table_path("labels"), cfg.table_path("dead_letters")
    if not table_exists(spark, labels_path):  # analysts' queries find it, empty, before the first label
        spark.createDataFrame([], LABELS_SCHEMA).write.format("delta").mode("append").options(**properties).save(
            labels_path
        )
    for path in (scores_path, alerts_path, labels_path, dead_path):  # tables made by an earlier run, or by hand
        set_properties(spark, path, properties)
    for path, schema in (
        (scores_path, SCORES_SCHEMA),
        (alerts_path, ALERT_REASON),
        (labels_path, LABELS_ADDED),
        (dead_path, DEAD_LETTER_REASON),
    ):
        added = add_columns(spark, path, schema)
        if added:
            print(f"stream: added the columns {added} to {path} (earlier rows hold null there)", flush=True)


def build_input(spark: SparkSession, cfg: Config, label_delay_hours: int) -> DataFrame:
    """The query's input: both topics' messages parsed and checked, through the two stateful operators,
    one row per message with its `row_kind` (`unpack_messages`)."""
    messages = read_topic_stream(spark, cfg, "transactions", "labels")
    rules = message_rules(load_rules()[1])
    seeds = seed_states(spark, cfg, label_delay_hours)
    parsed = parse_messages(messages, str(cfg.get("kafka.topics.transactions")), rules)
    return unpack_messages(stateful_features(parsed, label_delay_hours, state_ttl_days(cfg, label_delay_hours), seeds))


class BatchWriter:
    """What `fraud stream` does with each micro-batch (its foreachBatch function): score the transactions,
    publish the alerts, commit the tables, record the labels, dead-letter the rest; and keep the alert budget
    and the terminal checks between micro-batches."""

    def __init__(
        self,
        spark: SparkSession,
        cfg: Config,
        holder: ModelHolder,
        metrics: StreamMetrics,
        featured_columns: list[str],
        log_stages: bool = False,
    ) -> None:
        self.spark, self.holder, self.metrics, self.log_stages = spark, holder, metrics, log_stages
        self.featured_columns = featured_columns
        self.scores_path, self.alerts_path = cfg.table_path("scores"), cfg.table_path("alerts")
        self.labels_path, self.dead_path = cfg.table_path("labels"), cfg.table_path("dead_letters")
        self.topics = {role: str(cfg.get(f"kafka.topics.{role}")) for role in ("transactions", "labels", "alerts")}
        self.publisher = Publisher(logged_in(cfg))
        self.properties = table_properties(cfg)
        self.explanations_path = cfg.table_path("explanations")
        self.explainer = Explainer(
            spark,
            self.explanations_path,
            self.publish_explanations,
            QUERY,
            self.properties,
            explanations_table_seconds(cfg),
        )
        self.budget = AlertBudget.from_config(cfg)
        self.checks = TerminalChecks.from_config(cfg)
        self.query: StreamingQuery | None = None
        self.label_clock: np.datetime64 | None = None  # the event clock when the micro-batch's labels came
        self.explaining: str | None = None  # the model version whose table of leaves the explainer has

    def resume(self) -> None:
        """The alert budget's window, the terminal checks and the cards with a confirmed fraud from the tables,
        as a restart finds them; and the model's table of leaves for the explanations, built meanwhile."""
        self.explainer.prepare(self.holder.booster)
        self.explaining = self.holder.version
        cards = confirmed_cards(self.spark, self.labels_path, self.budget.blocked.days)
        newest = newest_scored(self.spark, self.scores_path)
        since = None if newest is None else newest - dt.timedelta(hours=EXPLAIN_MISSING_HOURS)
        explained = explain_missing(
            self.spark, self.scores_path, self.explanations_path, self.holder.booster_of, since, self.properties
        )
        self.explainer.explained_at_start = set(explained)
        if explained:
            print(
                f"stream: {len(explained)} alert(s) of the last {EXPLAIN_MISSING_HOURS} h had no explanation (the stream "
                f"stopped before it): explained into {self.explanations_path}",
                flush=True,
            )
        if self.checks.enabled and newest is not None:
            since = newest - dt.timedelta(hours=self.checks.history_hours())
            self.checks.resume(
                *flagged_history(self.spark, self.scores_path, self.labels_path, since), np.datetime64(newest, "us")
            )
            probing = set(self.checks.probes) | set(self.checks.probe_ids.values())
            print(
                f"stream: the terminal checks take up {len(probing)} probe(s) and {len(self.checks.cases)} "
                f"case(s) from the last {self.checks.history_hours()} h of `scores` (stream.terminal_checks)",
                flush=True,
            )
        self.checks.remember([int(card) for card in cards.index])
        self.budget.fill(self.spark, self.scores_path, self.labels_path, cards, newest)  # off, it still counts
        if self.budget.enabled:
            print(
                f"stream: the alert budget flags at most {self.budget.fpr:.2%} of the last "
                f"{self.budget.window.total_seconds() / 3600:g} h of legitimate transactions (stream.alert_budget): "
                f"{self.budget.describe()}",
                flush=True,
            )
        self.metrics.observe_budget(self.budget, self.holder.threshold)

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        started, stages = time.perf_counter(), Stages()
        batch.persist()
        try:
            kinds = {
                r["row_kind"]: r["count"] for r in batch.groupBy("row_kind").count().collect()
            }  # runs the state steps
            stages.done("state")
            self.write(batch, batch_id, kinds, stages)
        finally:
            batch.unpersist()
        self.metrics.batch_seconds.observe(time.perf_counter() - started)
        for stage, seconds in stages.seconds.items():
            self.metrics.stage_seconds.labels(stage).inc(seconds)
        if self.log_stages:
            print(
                f"stream: batch {batch_id}: {kinds} in {time.perf_counter() - started:.2f} s: "
                + ", ".join(f"{k} {v:.2f} s" for k, v in stages.seconds.items()),
                flush=True,
            )

    def write(self, batch: DataFrame, batch_id: int, kinds: dict[str, int], stages: Stages) -> None:
        """The sinks of a micro-batch whose rows are counted by kind (`kinds`). Without labels, the dead
        letters are known at once and commit with the tables; with labels, after them, since a label of no
        scored transaction is one too."""
        dead = batch.where("row_kind = 'dead'").select(*DEAD_LETTER_COLUMNS)
        count = kinds.get("dead", 0)
        if kinds.get("duplicate"):
            dead, count = (
                dead.unionByName(duplicate_letters(batch, self.topics["transactions"])),
                count + kinds["duplicate"],
            )
            self.metrics.duplicates.inc(kinds["duplicate"])
        labelled = kinds.get("label", 0) + kinds.get("label_by_id", 0)
        now = [lambda: self.append_dead(dead, count, batch_id)] if count and not labelled else []
        # the labels that came with the micro-batch are known before its threshold is chosen: the fraud team's
        # reviews and the cards they block count in the alert budget and the terminal checks from this micro-batch
        labels = None
        if labelled:
            labels = self.read_labels(batch)
            stages.done("labels")
        if kinds.get("tx"):
            self.score(batch, batch_id, stages, now)
        elif now:
            now[0]()
            stages.done("dead_letters")
        if labels is not None:
            unknown = self.apply_labels(labels, batch, batch_id)
            if unknown is not None:
                dead, count = dead.unionByName(unknown), count + unknown.count()
            stages.done("labels")
            if count:
                self.append_dead(dead, count, batch_id)
                stages.done("dead_letters")

    def append_dead(self, frame: DataFrame, count: int, batch_id: int) -> None:
        """The micro-batch's dead letters, in one append (the batch id is its key)."""
        append_idempotent(
            frame.withColumn("dead_at", F.current_timestamp()),
            self.dead_path,
            QUERY,
            batch_id,
            properties=self.properties,
            keep_warm=True,
        )
        self.metrics.dead_letters.inc(count)

    def score(
        self, batch: DataFrame, batch_id: int, stages: Stages, more_sinks: Sequence[Callable[[], object]]
    ) -> None:
        """Score the batch's transactions; flag them at the alert budget's threshold, which their own scores
        inform, and pick the terminal checks' reviews; publish the alerts; explain them (SHAP) and publish the
        explanations; then commit `scores`, `alerts` and `more_sinks` together; then the metrics, the alert
        budget and the terminal checks take the scores."""
        holder = self.holder
        holder.refresh()
        if holder.version != self.explaining:  # a new model: its table of leaves, while this micro-batch scores
            self.explainer.prepare(holder.booster)
            self.explaining = holder.version
        self.metrics.model.info({"alias": holder.alias, "version": holder.version, "threshold": str(holder.threshold)})
        cached = (
            batch.where("row_kind = 'tx'")
            .select(*self.featured_columns)
            .mapInPandas(_scorer(holder.broadcast, holder.version, self.checks.reviews()), SCORES_SCHEMA)
            .withColumn("tx_date", F.to_date("tx_datetime"))
            .persist()
        )
        try:
            # one Spark job brings the driver what the budget, the alerts and the metrics need of every transaction
            latency = (F.unix_micros("scored_at") - F.unix_micros("kafka_timestamp")) / 1e6
            # (with each transaction's model inputs: an alert's explanation needs them, and 15 numbers a row cost
            # less than a second Spark job for the flagged ones)
            observed: pd.DataFrame = cached.select(
                *ALERT_FIELDS,
                "decision",
                latency.alias("latency"),
                *[c for c in FEATURE_NAMES if c not in ALERT_FIELDS],
            ).toPandas()
            stages.done("score")
            threshold = self.budget.threshold(holder.threshold, observed)
            by_score = observed["score"].to_numpy(dtype=float) >= threshold
            observed["threshold"], observed["decision"] = threshold, by_score
            observed.loc[by_score, "alert_reason"] = "score"
            # the checks' candidates: the driver picks the payments each check sends for review, exploration
            # within its share of the budget (stream.terminal_checks.explore_share)
            candidates = observed[~observed["decision"] & observed["alert_reason"].notna()]
            explorations = (
                self.budget.room(EXPLORE, self.checks.explore_share)
                if (candidates["alert_reason"] == EXPLORE).any()
                else 0
            )
            picked = self.checks.pick(candidates, explorations)
            observed["decision"] |= observed["transaction_id"].isin(picked)
            observed.loc[~observed["decision"], "alert_reason"] = None
            flagged = observed[observed["decision"]]
            alerted_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)  # one instant: the topic's and the table's
            # the fraud team's topic first: an alert waits neither for its explanation nor for the tables' commits.
            # A replay after a crash between the two sends it again (at least once; `alert_id` tells the copies apart)
            self.publisher.send(self.topics["alerts"], alert_messages(flagged, alerted_at), "alerts")
            stages.done("alerts_topic")
            chosen = F.col("transaction_id").isin(sorted(picked)) if picked else F.lit(False)
            by_score_col = F.col("score") >= F.lit(threshold)
            decided = cached.select(
                *[c for c in cached.columns if c not in ("decision", "threshold", "alert_reason")],
                (by_score_col | chosen).alias("decision"),
                F.lit(threshold).alias("threshold"),
                F.when(by_score_col, F.lit("score")).when(chosen, F.col("alert_reason")).alias("alert_reason"),
            )
            decided = decided.select(*cached.columns)
            if len(flagged):
                # the explanations, off the path: on the explainer's thread while the tables commit and the next
                # micro-batch runs (jobs/stream/explanations.py); this waits only for the previous micro-batch's
                self.explainer.submit(holder.booster, flagged, alerted_at, batch_id)
            stages.done("explanations")
            alerts = decided.where("decision").select(
                alert_id(F.col("transaction_id")).alias("alert_id"),
                "transaction_id",
                "customer_id",
                "terminal_id",
                "tx_datetime",
                "tx_amount",
                "score",
                "threshold",
                "model_version",
                "alert_reason",
                F.lit(alerted_at).alias("alerted_at"),
                "tx_date",
            )
            self.commit(decided, alerts if len(flagged) else None, batch_id, more_sinks)
            stages.done("tables")
            self.observe(observed)
        finally:
            cached.unpersist()

    def commit(
        self, scored: DataFrame, alerts: DataFrame | None, batch_id: int, more_sinks: Sequence[Callable[[], object]]
    ) -> None:
        """Append `scores`, `alerts` (if any) and `more_sinks` at once: each commit is mostly the driver
        waiting on Delta's log, not the cores working."""
        sinks: list[Callable[[], object]] = [
            lambda: append_idempotent(
                scored, self.scores_path, QUERY, batch_id, ["tx_date"], self.properties, keep_warm=True
            )
        ]
        if alerts is not None:
            sinks.append(
                lambda: append_idempotent(
                    alerts, self.alerts_path, QUERY, batch_id, ["tx_date"], self.properties, keep_warm=True
                )
            )
        sinks += more_sinks
        with ThreadPoolExecutor(len(sinks)) as pool:
            for future in [pool.submit(sink) for sink in sinks]:
                future.result()

    def observe(self, observed: pd.DataFrame) -> None:
        """A micro-batch's committed scores into the metrics, the alert budget and the terminal checks."""
        metrics = self.metrics
        metrics.scored.inc(len(observed))
        metrics.alerts.inc(int(observed["decision"].sum()))
        for value in observed["score"]:
            metrics.score.observe(value)
        for value in observed["latency"]:
            metrics.latency.observe(max(value, 0.0))
        self.budget.observe(observed)
        self.checks.observe(observed)
        metrics.observe_budget(self.budget, self.holder.threshold)
        metrics.observe_checks(self.checks, observed)

    def read_labels(self, batch: DataFrame) -> pd.DataFrame:
        """The batch's labels, in arrival order, told to the alert budget and the terminal checks."""
        columns = [
            "row_kind",
            "transaction_id",
            "tx_fraud",
            *LABEL_PLACE.fieldNames(),
            LABEL_INCREMENT,
            LABEL_PREVIOUS,
            "kafka_timestamp",
            "topic",
            "partition",
            "offset",
            "key",
            "payload",
        ]
        labels: pd.DataFrame = batch.where("row_kind IN ('label', 'label_by_id')").select(*columns).toPandas()
        labels = labels.sort_values(["kafka_timestamp", "partition", "offset"], kind="mergesort")
        self.label_clock = self.budget.clock  # when they came, in event time: `labels.event_clock`
        if not labels.empty:
            self.budget.label(labels)
            self.checks.label(labels[labels["row_kind"] == "label"])  # those with their place
            self.metrics.observe_budget(self.budget, self.holder.threshold)
            self.metrics.observe_checks(self.checks)
        return labels

    def publish_explanations(self, explained: pd.DataFrame, alerted_at: dt.datetime) -> None:
        """The alerts again, with their `top_features` (on the explainer's thread)."""
        self.publisher.send(self.topics["alerts"], alert_messages(explained, alerted_at), "alert explanations")
        self.metrics.explanation_seconds.observe(
            (dt.datetime.now(dt.UTC).replace(tzinfo=None) - alerted_at).total_seconds()
        )

    def close(self) -> None:
        """Explain the alerts in the background, then close the producer."""
        try:
            self.explainer.close()
        finally:
            self.publisher.close()

    def apply_labels(self, labels: pd.DataFrame, batch: DataFrame, batch_id: int) -> DataFrame | None:
        """Record the batch's labels (`read_labels`) in `labels`: those the state counted, and those of
        transactions past its look-back; send the labels given by id alone again with their transaction's
        place (they count in the next micro-batch); tell the alert budget of those of the batch's own
        transactions, scored since; return the rest as dead letters (None if there are none)."""
        if labels.empty:
            return None
        self.budget.label(labels)  # a label of a transaction of this micro-batch: now in the window
        self.metrics.observe_budget(self.budget, self.holder.threshold)
        counted = labels[labels[LABEL_INCREMENT].notna()].rename(
            columns={LABEL_INCREMENT: "fraud_increment", LABEL_PREVIOUS: "previous_tx_fraud"}
        )
        resolved = resolve_labels(
            self.spark, labels[labels[LABEL_INCREMENT].isna()], self.scores_path, self.labels_path
        )
        if resolved.forward:
            self.publisher.send(self.topics["labels"], resolved.forward, "labels")
        recorded = pd.concat([counted, resolved.past], ignore_index=True)
        if not recorded.empty:
            rows = with_decisions(
                recorded.rename(columns={"kafka_timestamp": "labelled_at"}).assign(
                    batch_id=batch_id,
                    event_clock=pd.NaT if self.label_clock is None else pd.Timestamp(self.label_clock),
                )
            )
            for name in ("previous_tx_fraud", "fraud_increment", "customer_id", "terminal_id"):
                rows[name] = rows[name].astype("int32")
            append_idempotent(
                self.spark.createDataFrame(rows[LABELS_SCHEMA.fieldNames()], LABELS_SCHEMA),
                self.labels_path,
                QUERY,
                batch_id,
                properties=self.properties,
                keep_warm=True,
            )
        self.metrics.labels.inc(len(recorded))
        if resolved.dead.empty:
            return None
        return self.spark.createDataFrame(resolved.dead[DEAD_LETTER_COLUMNS], batch.select(*DEAD_LETTER_COLUMNS).schema)


def start(
    spark: SparkSession,
    cfg: Config,
    available_now: bool = False,
    model: str | None = None,
    metrics: StreamMetrics | None = None,
    log_stages: bool = False,
) -> StreamingQuery:
    """Start the scoring query (see the module's docstring): the model, the tables, the input, and a
    BatchWriter for each micro-batch."""
    metrics = metrics or StreamMetrics()
    holder = ModelHolder(cfg, spark, str(model or cfg.get("stream.model")))
    holder.refresh()
    metrics.model.info({"alias": holder.alias, "version": holder.version, "threshold": str(holder.threshold)})
    properties = table_properties(cfg)
    for options in (AlertBudget, TerminalChecks):  # their options checked before anything is written
        options.from_config(cfg)
    check_checkpoint_sources(spark, cfg.checkpoint_path(QUERY))
    prepare_tables(spark, cfg, properties)
    combined = build_input(spark, cfg, holder.label_delay_hours)
    featured_columns = [
        c
        for c in combined.columns
        if c not in ("row_kind", "bypass_state", "duplicate", LABEL_INCREMENT, LABEL_PREVIOUS, *MESSAGE_COLUMNS)
    ]
    writer = BatchWriter(spark, cfg, holder, metrics, featured_columns, log_stages)
    writer.resume()
    trigger = {"availableNow": True} if available_now else {"processingTime": str(cfg.get("stream.trigger_interval"))}
    writer.query = (
        combined.writeStream.queryName(QUERY)
        .foreachBatch(writer)
        .option("checkpointLocation", cfg.checkpoint_path(QUERY))
        .trigger(**trigger)
        .start()
    )
    listener = ProgressMetrics(metrics, str(writer.query.id))
    spark.streams.addListener(listener)
    RELEASED_AT_STOP[str(writer.query.id)] = (listener, writer)
    return writer.query


# what each query started here holds beside Spark: its progress listener, removed before the query stops so that
# Spark's listener bus has no Python callback left to call while the process ends (it would log a py4j stack
# trace), and the driver's Kafka producer (`release`)
RELEASED_AT_STOP: dict[str, tuple[StreamingQueryListener, BatchWriter]] = {}
# how far back a start looks for alerts left unexplained by a stop (event time before the newest scored)
EXPLAIN_MISSING_HOURS = 24
LISTENER_DRAIN_MS = 5000


def stop_query(spark: SparkSession, query: StreamingQuery) -> None:
    """Stop `query` after releasing its listener and producer."""
    release(spark, query)
    query.stop()


def release(spark: SparkSession, query: StreamingQuery) -> None:
    """Remove `query`'s progress listener and close its producer (once; nothing if it has none)."""
    held = RELEASED_AT_STOP.pop(str(query.id), None)
    if held is None:
        return
    listener, writer = held
    try:
        spark.streams.removeListener(listener)
        # an event the bus took before the removal is still delivered: let it reach Python while Python is there
        spark.sparkContext._jsc.sc().listenerBus().waitUntilEmpty(LISTENER_DRAIN_MS)
    except (Py4JError, ConnectionError):  # the JVM is going too, or the bus did not drain in time
        pass
    try:
        writer.close()
    except Exception as error:  # noqa: BLE001 - a stop goes on; what failed is said, and repaired at the next start
        print(
            f"stream: the last micro-batch's alert explanations were not all published ({type(error).__name__}: "
            f"{error}); the next start explains the alerts `explanations` lacks",
            file=sys.stderr,
            flush=True,
        )


class ProgressMetrics(StreamingQueryListener):
    """The rates, the state's rows and the consumer lag of the micro-batch that just ended, from Spark's
    progress event of one query (others in the session are not ours). Spark sends it after the micro-batch's
    commit, on its listener thread."""

    def __init__(self, metrics: StreamMetrics, query_id: str) -> None:
        self.metrics, self.query_id = metrics, query_id

    def onQueryStarted(self, event: Any) -> None:
        pass

    def onQueryProgress(self, event: Any) -> None:
        if str(event.progress.id) == self.query_id:
            self.metrics.observe_progress(json.loads(event.progress.json))

    def onQueryIdle(self, event: Any) -> None:
        pass

    def onQueryTerminated(self, event: Any) -> None:
        pass


STOP_SIGNALS = ("SIGTERM", "SIGINT", "SIGHUP")
STOP_GRACE_SECONDS = 20.0  # within Kubernetes' default 30 s between SIGTERM and SIGKILL
CLEANUP_WAIT_SECONDS = 10  # how long a query that died may take to end its thread before the job stops anyway


def _stop_between_batches(spark: SparkSession, query: StreamingQuery, grace_seconds: float) -> None:
    """Stop `query` once the micro-batch in flight has ended (its commits done), or after `grace_seconds`."""

    def in_flight() -> int | None:
        progress = query.lastProgress
        return progress["batchId"] + 1 if progress and query.status["isTriggerActive"] else None

    batch, deadline = in_flight(), time.monotonic() + grace_seconds
    while batch is not None and time.monotonic() < deadline:
        progress = query.lastProgress
        if (progress and progress["batchId"] >= batch) or not query.status["isTriggerActive"]:
            break
        time.sleep(0.05)
    stop_query(spark, query)


def _thread_stack(spark: SparkSession, query: StreamingQuery) -> str:
    """The JVM stack of the query's execution thread (named after its run id), one frame a line."""
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    try:
        for thread, frames in jvm.java.lang.Thread.getAllStackTraces().items():
            if str(query.runId) in thread.getName():
                return "\n".join(f"    at {frame.toString()}" for frame in frames) or "    (no frames)"
    except (Py4JError, ConnectionError) as error:
        return f"    (not available: {error})"
    return f"    (no JVM thread named after run {query.runId})"


def _driver_stopped(spark: SparkSession) -> bool:
    """Whether Spark's driver has stopped (or its JVM is gone)."""
    try:
        return bool(spark.sparkContext._jsc.sc().isStopped())
    except (Py4JError, ConnectionError):
        return True


def run(
    spark: SparkSession,
    cfg: Config,
    available_now: bool = False,
    model: str | None = None,
    metrics: StreamMetrics | None = None,
) -> StreamMetrics:
    """Run the query until it stops (at once with `available_now`); serve metrics meanwhile.

    SIGTERM (Kubernetes deleting the pod, YARN stopping the container, a scheduler killing the task), SIGINT
    and SIGHUP stop the query, and `run` returns: the checkpoint holds every committed micro-batch, and the
    one in flight is done again by the next start. Without this, the signal ends the process at once and the
    JVM's shutdown stops Spark under the query, which then dies with Spark's `INTERNAL_ERROR` "No active or
    default Spark session found". The handlers are set when `run` is called from the main thread."""
    metrics = metrics or StreamMetrics()
    if metrics.port is None:
        port = metrics.serve(int(cfg.get("stream.metrics_port")))
        print(f"stream: Prometheus metrics on http://127.0.0.1:{port}/metrics")
    query = start(spark, cfg, available_now, model, metrics)
    asked: list[str] = []  # the signal that asked the job to stop

    def ask_to_stop(number: int, frame: object) -> None:
        asked.append(signal.Signals(number).name)

    handled = threading.current_thread() is threading.main_thread()
    previous = {name: signal.signal(getattr(signal, name), ask_to_stop) for name in STOP_SIGNALS} if handled else {}
    try:
        watch(spark, query, cfg.checkpoint_path(QUERY), asked)
    finally:
        for name, handler in previous.items():
            signal.signal(getattr(signal, name), handler)
        release(spark, query)
    return metrics


def watch(spark: SparkSession, query: StreamingQuery, checkpoint: str, asked: Sequence[str]) -> None:
    """Wait on the running `query` until it ends; stop it between micro-batches once `asked` holds a signal's
    name (filled by a signal handler). Raises QueryFailed if the query died, or if Spark's driver shut down
    under it."""
    try:
        # a short wait at a time: the handler runs between two waits, in this thread, and a query that died
        # ends the job even if its thread hangs in its clean-up (then awaitTermination would never return)
        while not query.awaitTermination(1):
            if asked:
                print(
                    f"stream: {asked[0]} received: stopping the query after the micro-batch in flight; a "
                    f"restart resumes from {checkpoint}",
                    flush=True,
                )
                try:
                    _stop_between_batches(spark, query, STOP_GRACE_SECONDS)
                except (Py4JError, ConnectionError):  # the JVM is going too: the signal reached it as well
                    print(
                        f"stream: Spark's driver shut down meanwhile; a restart resumes from {checkpoint}", flush=True
                    )
                break
            died = query.exception()  # set when the query died, even while its thread is still cleaning up
            if died is not None:
                if not query.awaitTermination(CLEANUP_WAIT_SECONDS):  # raises `died` once the clean-up ends
                    print(
                        f"stream: query {QUERY} died, and its thread is still in its clean-up after "
                        f"{CLEANUP_WAIT_SECONDS:g} s; the job stops without it. The thread's stack:\n"
                        f"{_thread_stack(spark, query)}",
                        flush=True,
                    )
                raise died
    except (StreamingQueryException, Py4JError, ConnectionError) as error:
        if asked:  # the signal reached the JVM too (sent to the process group): Spark stopped under the query
            print(
                f"stream: {asked[0]} received, and Spark's driver shut down under the query; a restart resumes "
                f"from {checkpoint}",
                flush=True,
            )
            return
        if not isinstance(error, StreamingQueryException) or _driver_stopped(spark):
            # the JVM was told to stop (cluster mode, where it runs this process; or a signal sent to it alone)
            raise QueryFailed(
                f"Spark's driver shut down under query {QUERY} (was its JVM sent a signal?); a "
                f"restart resumes from its checkpoint {checkpoint}"
            ) from error
        # a dead query must end the process, so that its scheduler (Kubernetes, YARN, Airflow) restarts it
        # from the checkpoint; the CLI exits non-zero with this message
        raise QueryFailed(
            f"query {QUERY} terminated with an error, so fraud stream stops; restart it to resume "
            f"from its checkpoint {checkpoint}: {error_summary(str(error))}"
        ) from error
    if asked:
        print(f"stream: stopped on {asked[0]}", flush=True)


# exceptions that only carry another one: Spark's wrapper of a foreachBatch error, py4j's of a JVM call's
WRAPPERS = ("ForeachBatchUserFuncException", "Py4JJavaError", "StreamingQueryException")
EXCEPTION_LINE = re.compile(r"^(?:: )?(?:[\w$]+\.)*(\w*(?:Exception|Error)): (.+)$")


def error_summary(text: str) -> str:
    """A dead query's error in one line: its first, and the first exception it carries that is not a wrapper
    (a foreachBatch error's first line ends in "Traceback (most recent call last):")."""
    first = text.strip().splitlines()[0] if text.strip() else "(no message)"
    for line in text.splitlines()[1:]:
        found = EXCEPTION_LINE.match(line.strip())
        if found and found.group(1) not in WRAPPERS:
            return f"{first} ... {found.group(1)}: {found.group(2)}"
    return first


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--available-now", action="store_true", help="process what the topic holds, then stop")
    parser.add_argument("--model", help="registry alias or version (default: stream.model, champion)")
    add_common_options(parser)


def execute(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    check_stream_config(cfg)
    logged_in(cfg)  # before Spark starts: a wrong password or an untrusted certificate fails in seconds
    run(get_spark(cfg, "stream"), cfg, args.available_now, args.model)
    return 0


main = job_main("fraud stream", __doc__, add_arguments, execute)

if __name__ == "__main__":
    import sys

    sys.exit(main())
