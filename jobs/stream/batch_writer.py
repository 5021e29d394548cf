"""What `fraud stream` does with each micro-batch, its foreachBatch function (`BatchWriter`): score the
transactions with the broadcast model, flag them at the alert budget's threshold or for a terminal check,
publish the alerts, hand them to the explanations thread, append `scores` and `alerts` (or stage them for a
thread that does, jobs/stream/staged_tables.py), record the labels and dead-letter the rest; and the stage timer
(jobs/core/stopwatch.py) that says where a micro-batch's time goes."""

from __future__ import annotations

import datetime as dt
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery
from pyspark.sql.types import StructField, StructType, TimestampType

from features.definitions import derive_features
from features.operators import LABEL_INCREMENT, LABEL_PREVIOUS
from features.schema import (
    LABEL_PLACE,
    TRANSACTION_COLUMNS,
)
from jobs.core.config import Config
from jobs.core.dead_letters import DEAD_LETTER_COLUMNS, DUPLICATE
from jobs.core.kafka_clients import logged_in
from jobs.core.lake import (
    append_idempotent,
)
from jobs.core.metrics import StreamMetrics
from jobs.core.stopwatch import Stopwatch
from jobs.stream.alert_budget import AlertBudget, newest_scored
from jobs.stream.alerts_topic import Publisher, alert_id, alert_messages
from jobs.stream.blocked_cards import confirmed_cards
from jobs.stream.budget_evidence import gather
from jobs.stream.explanations import Explainer, explain_missing, explanations_table_seconds
from jobs.stream.label_records import LABELS_SCHEMA, resolve_labels, with_decisions
from jobs.stream.model_holder import ModelHolder
from jobs.stream.schemas import DERIVED, INPUT_SCHEMA, QUERY, SCORES_SCHEMA
from jobs.stream.staged_tables import StagedTables
from jobs.stream.terminal_checks import EXPLORE, TerminalChecks, flagged_history


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


def table_properties(cfg: Config) -> dict[str, str]:
    """The Delta table properties of the tables the stream writes (stream.delta_checkpoint_interval)."""
    return {"delta.checkpointInterval": str(cfg.get("stream.delta_checkpoint_interval"))}


# the staged rows of a micro-batch (jobs/stream/staged_tables.py): `scores`'s, and when its alert was published
STAGED_SCHEMA = StructType([*SCORES_SCHEMA.fields, StructField("alerted_at", TimestampType())])


def driver_frame(rows: pa.Table) -> pd.DataFrame:
    """The scored rows as the driver's pandas frame, as `toPandas` gives them (times naive, in UTC, the
    session's zone), with each row's `latency`: from Kafka to its score, in seconds."""
    frame = rows.to_pandas(coerce_temporal_nanoseconds=True)
    for name in ("tx_datetime", "kafka_timestamp", "scored_at"):
        frame[name] = frame[name].dt.tz_convert(None)
    frame["latency"] = (frame["scored_at"] - frame["kafka_timestamp"]).dt.total_seconds()
    return frame


def decided_rows(rows: pa.Table, observed: pd.DataFrame, alerted_at: dt.datetime) -> pa.Table:
    """The scored rows (STAGED_SCHEMA) with the driver's `decision`, `threshold` and `alert_reason`
    (`observed`, in the same order), and `alerted_at` where flagged."""
    decision = observed["decision"].to_numpy(dtype=bool)
    for name, values in (
        ("decision", pa.array(decision)),
        ("threshold", pa.array(observed["threshold"].to_numpy(dtype=float))),
        ("alert_reason", pa.array(observed["alert_reason"], type=pa.string(), from_pandas=True)),
    ):
        rows = rows.set_column(rows.schema.get_field_index(name), name, values)
    at = alerted_at.replace(tzinfo=dt.UTC)
    return rows.append_column(
        "alerted_at", pa.array([at if d else None for d in decision], type=pa.timestamp("us", tz="UTC"))
    )


# how far back a start looks for alerts left unexplained by a stop (event time before the newest scored)
EXPLAIN_MISSING_HOURS = 24


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
        self.spark, self.cfg, self.holder, self.metrics, self.log_stages = spark, cfg, holder, metrics, log_stages
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
        self.tables = StagedTables(spark, cfg.checkpoint_path(QUERY), self.append_tables)
        self.tables_on_thread = bool(cfg.get("stream.tables_on_thread"))
        self.budget = AlertBudget.from_config(cfg)
        self.checks = TerminalChecks.from_config(cfg)
        self.query: StreamingQuery | None = None
        self.label_clock: np.datetime64 | None = None  # the event clock when the micro-batch's labels came
        self.explaining: str | None = None  # the model version whose table of leaves the explainer has

    def resume(self) -> None:
        """The alert budget's window, the terminal checks and the cards with a confirmed fraud from the tables,
        as a restart finds them, once what a stop left staged is in `scores` and `alerts`; and the model's table
        of leaves for the explanations, built meanwhile."""
        staged = self.tables.recover()
        if staged:
            print(
                f"stream: appended {len(staged)} micro-batch(es) a stop left staged ({self.tables.folder}) to "
                f"{self.scores_path} and {self.alerts_path}",
                flush=True,
            )
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
        started, stages = time.perf_counter(), Stopwatch()
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

    def write(self, batch: DataFrame, batch_id: int, kinds: dict[str, int], stages: Stopwatch) -> None:
        """The sinks of a micro-batch whose rows are counted by kind (`kinds`). The labels the state counted
        (as a review's label is) and the dead letters commit with the tables, each in its own append at once.
        A label the state could not count is looked up in `scores` once the micro-batch's rows are there;
        then the labels and the dead letters commit after the tables, since such a label of no scored
        transaction is a dead letter too."""
        dead = batch.where("row_kind = 'dead'").select(*DEAD_LETTER_COLUMNS)
        count = kinds.get("dead", 0)
        if kinds.get("duplicate"):
            dead, count = (
                dead.unionByName(duplicate_letters(batch, self.topics["transactions"])),
                count + kinds["duplicate"],
            )
            self.metrics.duplicates.inc(kinds["duplicate"])
        # the labels that came with the micro-batch are known before its threshold is chosen: the fraud team's
        # reviews and the cards they block count in the alert budget and the terminal checks from this micro-batch
        labels, uncounted = None, False
        if kinds.get("label", 0) + kinds.get("label_by_id", 0):
            labels = self.read_labels(batch)
            uncounted = bool(labels[LABEL_INCREMENT].isna().any())
            stages.done("labels")
        sinks: list[Callable[[], object]] = []
        if labels is not None and not uncounted:
            sinks.append(lambda: self.record_labels(labels, batch_id))
        if count and not uncounted:
            sinks.append(lambda: self.append_dead(dead, count, batch_id))
        if kinds.get("tx"):
            self.score(batch, batch_id, stages, sinks)
        elif sinks:
            run_together(sinks)
            stages.done("dead_letters" if labels is None else "labels")
        if labels is not None:
            self.budget.label(labels)  # a label of a transaction of this micro-batch: now in the window
            self.metrics.observe_budget(self.budget, self.holder.threshold)
        if uncounted:
            assert labels is not None
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
        self, batch: DataFrame, batch_id: int, stages: Stopwatch, more_sinks: Sequence[Callable[[], object]]
    ) -> None:
        """Score the batch's transactions; flag them at the alert budget's threshold, which their own scores
        inform, and pick the terminal checks' reviews; publish the alerts; explain them (SHAP) and publish the
        explanations, on a thread; append `scores` and `alerts` (or stage them for another thread,
        `stream.tables_on_thread`) and run `more_sinks`; then the metrics, the alert budget and the terminal
        checks take the scores."""
        holder = self.holder
        holder.refresh()
        if holder.version != self.explaining:  # a new model: its table of leaves, while this micro-batch scores
            self.explainer.prepare(holder.booster)
            self.explaining = holder.version
        self.metrics.model.info({"alias": holder.alias, "version": holder.version, "threshold": str(holder.threshold)})
        scored = (
            batch.where("row_kind = 'tx'")
            .select(*self.featured_columns)
            .mapInPandas(_scorer(holder.broadcast, holder.version, self.checks.reviews()), SCORES_SCHEMA)
        )
        # one Spark job brings the driver every scored row: the budget, the alerts and the metrics read them,
        # and the tables are appended from them
        rows = scored.toArrow()
        observed = driver_frame(rows)
        if self.budget.enabled and self.budget.rescore_window:  # a model new to the window: its evidence first
            first = pd.Timestamp(observed["tx_datetime"].min())
            done = gather(
                self.spark, self.cfg, self.budget, holder.version, holder.broadcast, holder.label_delay_hours, first
            )
            if done:
                print(f"stream: the alert budget's evidence: {done} (stream.alert_budget.rescore_window)", flush=True)
        stages.done("score")
        threshold = self.budget.threshold(holder.threshold, observed)
        by_score = observed["score"].to_numpy(dtype=float) >= threshold
        observed["threshold"], observed["decision"] = threshold, by_score
        observed.loc[by_score, "alert_reason"] = "score"
        # the checks' candidates: the driver picks the payments each check sends for review, exploration
        # within its share of the budget (stream.terminal_checks.explore_share)
        candidates = observed[~observed["decision"] & observed["alert_reason"].notna()]
        explorations = (
            self.budget.room(EXPLORE, self.checks.explore_share) if (candidates["alert_reason"] == EXPLORE).any() else 0
        )
        picked = self.checks.pick(candidates, explorations)
        observed["decision"] |= observed["transaction_id"].isin(picked)
        observed.loc[~observed["decision"], "alert_reason"] = None
        flagged = observed[observed["decision"]]
        alerted_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)  # one instant: the topic's and the table's
        # the fraud team's topic first: an alert waits neither for its explanation nor for the tables.
        # A replay after a crash between the two sends it again (at least once; `alert_id` tells the copies apart)
        self.publisher.send(self.topics["alerts"], alert_messages(flagged, alerted_at), "alerts")
        stages.done("alerts_topic")
        if len(flagged):
            # the explanations, off the path: on the explainer's thread while the tables commit and the next
            # micro-batch runs (jobs/stream/explanations.py); this waits only for the previous micro-batch's
            self.explainer.submit(holder.booster, flagged, alerted_at, batch_id)
        stages.done("explanations")
        decided = decided_rows(rows, observed, alerted_at)
        if self.tables_on_thread:  # durable once staged, appended while the next micro-batch runs
            self.tables.stage(decided, batch_id)
            if more_sinks:
                run_together(more_sinks)
        else:
            self.append_tables(decided, batch_id, more_sinks)
        stages.done("tables")
        self.observe(observed)

    def append_tables(self, rows: pa.Table, batch_id: int, more_sinks: Sequence[Callable[[], object]] = ()) -> None:
        """Append a micro-batch's scored rows (`decided_rows`) to `scores`, its flagged ones to `alerts`, and
        `more_sinks`, all at once: each commit is mostly the driver waiting on Delta's log."""
        spark = self.spark
        tx_date = F.to_date("tx_datetime").alias("tx_date")
        scored = spark.createDataFrame(rows.drop_columns(["alerted_at"]), SCORES_SCHEMA).select("*", tx_date)
        sinks: list[Callable[[], object]] = [
            lambda: append_idempotent(
                scored, self.scores_path, QUERY, batch_id, ["tx_date"], self.properties, keep_warm=True
            )
        ]
        flagged = rows.filter(pc.field("decision"))
        if flagged.num_rows:
            alerts = spark.createDataFrame(flagged, STAGED_SCHEMA).select(
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
                "alerted_at",
                tx_date,
            )
            sinks.append(
                lambda: append_idempotent(
                    alerts, self.alerts_path, QUERY, batch_id, ["tx_date"], self.properties, keep_warm=True
                )
            )
        run_together([*sinks, *more_sinks])

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
        """Append what is staged and explain the alerts in the background, then close the producer."""
        try:
            try:
                self.tables.close()
            except Exception as error:  # noqa: BLE001 - a stop goes on; the next start appends what is staged
                print(
                    f"stream: the last staged micro-batch was not appended ({type(error).__name__}: {error}); the "
                    f"next start appends what {self.tables.folder} holds",
                    file=sys.stderr,
                    flush=True,
                )
            self.explainer.close()
        finally:
            self.publisher.close()

    def apply_labels(self, labels: pd.DataFrame, batch: DataFrame, batch_id: int) -> DataFrame | None:
        """Record the batch's labels (`read_labels`) in `labels` when some are not counted by the state: those
        the state counted, and those of transactions past its look-back; send the labels given by id alone
        again with their transaction's place (they count in the next micro-batch); return the rest as dead
        letters (None if there are none)."""
        uncounted = labels[labels[LABEL_INCREMENT].isna()]
        self.tables.wait()  # looked up in `scores`: anything staged before is appended first
        resolved = resolve_labels(self.spark, uncounted, self.scores_path, self.labels_path)
        if resolved.forward:
            self.publisher.send(self.topics["labels"], resolved.forward, "labels")
        self.record_labels(labels, batch_id, resolved.past)
        if resolved.dead.empty:
            return None
        return self.spark.createDataFrame(resolved.dead[DEAD_LETTER_COLUMNS], batch.select(*DEAD_LETTER_COLUMNS).schema)

    def record_labels(self, labels: pd.DataFrame, batch_id: int, past: pd.DataFrame | None = None) -> None:
        """Append to `labels`, in one append keyed by the batch id, the batch's labels the state counted (those
        of `labels` with their increment) and those of transactions past its look-back (`past`, from
        `resolve_labels`)."""
        counted = labels[labels[LABEL_INCREMENT].notna()].rename(
            columns={LABEL_INCREMENT: "fraud_increment", LABEL_PREVIOUS: "previous_tx_fraud"}
        )
        recorded = counted if past is None or past.empty else pd.concat([counted, past], ignore_index=True)
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


def run_together(sinks: Sequence[Callable[[], object]]) -> None:
    """Run the appends of a micro-batch at once, one thread each: each commit is mostly the driver waiting
    on Delta's log. The first error is raised once all are done."""
    with ThreadPoolExecutor(len(sinks)) as pool:
        for future in [pool.submit(sink) for sink in sinks]:
            future.result()
