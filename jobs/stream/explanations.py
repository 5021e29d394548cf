"""The alerts' explanations, off the micro-batch's path: `fraud stream` publishes an alert as soon as its score
is flagged and commits its micro-batch; the three features that pushed each alert's score up most (CatBoost's
exact SHAP values) are computed meanwhile on a thread of the driver, sent on the alerts topic as the same alert
again with its `top_features` (the fraud desk and `fraud alerts` show it as it arrives), and appended to the
Delta table `explanations` (one row an alert: `alert_id`, `transaction_id`, `model_version`, `top_features`,
`explained_at`, `tx_date`), which joins `alerts` on `alert_id`. The table takes them together, at most every
`stream.explanations_table_seconds` (one Delta commit for many micro-batches: each commit is work for both
cores while the next micro-batch runs), and all that is left when the stream stops.

One micro-batch's alerts are explained at a time, while the next micro-batch runs; a micro-batch waits for
the previous one's explanations only if they are not done by the time its own are ready (the wait is the
stage `explanations` of the micro-batch). A failure to explain, to publish or to append fails the next
micro-batch, as a failure on its own path would. A stream that dies between an alert and the append of its
explanation leaves that alert out of the table: the next start explains the alerts of `scores` that
`explanations` lacks (`explain_missing`), from the model inputs `scores` keeps, with the model version that
scored them. An append is keyed by the newest micro-batch it holds; the alerts of a micro-batch Spark does
again after a crash are left out if an append before the crash held them.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, DateType, LongType, StringType, StructField, StructType, TimestampType

from features.definitions import FEATURE_NAMES
from jobs.core.config import Config
from jobs.core.lake import append_idempotent, last_written, table_exists
from jobs.stream.alerts_topic import ALERT_NAMESPACE
from models.catboost_model import LeafTable, shap_values

EXPLANATIONS_SCHEMA = StructType(
    [
        StructField("alert_id", StringType()),
        StructField("transaction_id", LongType()),
        StructField("model_version", StringType()),
        StructField("top_features", ArrayType(StringType())),
        StructField("explained_at", TimestampType()),
        StructField("tx_date", DateType()),
    ]
)


def explain(booster: Any, features: pd.DataFrame, top: int = 3) -> list[list[str]]:
    """The `top` features that raised each row's score most, by CatBoost's exact SHAP values, as
    "name=value (+contribution)": the explanation of an alert (models.catboost_model.shap_values: the first
    call of a model builds its table of leaves, a few seconds; later calls cost milliseconds)."""
    if features.empty:
        return []
    shap = shap_values(booster, features[FEATURE_NAMES])
    values = features[FEATURE_NAMES].to_numpy()
    return [
        [f"{FEATURE_NAMES[i]}={row[i]:.4g} (+{contribution[i]:.3f})" for i in np.argsort(-contribution)[:top]]
        for row, contribution in zip(values, shap)
    ]


class Explainer:
    """Explains each micro-batch's alerts on a thread of its own (see the module's doc). `publish(flagged)`
    sends the alerts with their explanations on the topic; `app_id` keys the appends to `explanations` (by
    batch id: exactly once across restarts, as the other tables); `every_seconds`: the appends' spacing (0:
    one a micro-batch)."""

    def __init__(
        self,
        spark: SparkSession,
        path: str,
        publish: Callable[[pd.DataFrame, dt.datetime], None],
        app_id: str,
        properties: dict[str, str],
        every_seconds: float = 0.0,
    ) -> None:
        self.spark, self.path, self.publish, self.app_id, self.properties = spark, path, publish, app_id, properties
        self.every_seconds = every_seconds
        self.pool: ThreadPoolExecutor | None = None
        self.pending: Future[Any] | None = None
        # the alerts a start explained (`explain_missing`): a micro-batch done again after a crash does not
        # append them twice
        self.explained_at_start: set[int] = set()
        self.held: list[pd.DataFrame] = []  # explained rows not appended yet
        self.held_batch: int | None = None  # the newest micro-batch among them
        self.appended_at = time.monotonic()
        self.written: int | None = None  # the newest micro-batch appended before this start (read once)
        self.read_written = False

    def submit(self, booster: Any, flagged: pd.DataFrame, alerted_at: dt.datetime, batch_id: int) -> None:
        """Explain `flagged` (an alert's fields and the model inputs) in the background, after the previous
        micro-batch's (whose failure is raised here)."""
        self.wait()
        if self.pool is None:
            self.pool = ThreadPoolExecutor(1, thread_name_prefix="explanations")
        self.pending = self.pool.submit(self._explain, booster, flagged, alerted_at, batch_id)

    def prepare(self, booster: Any) -> None:
        """Build `booster`'s table of leaves in the background (models.catboost_model.LeafTable: a few
        seconds, once per model version), so that its first alerts do not wait for it."""
        self.wait()
        if self.pool is None:
            self.pool = ThreadPoolExecutor(1, thread_name_prefix="explanations")
        self.pending = self.pool.submit(LeafTable.of, booster)

    def wait(self) -> None:
        """Until the micro-batch in the background is explained (its error, if any, raised)."""
        if self.pending is not None:
            pending, self.pending = self.pending, None
            pending.result()

    def close(self) -> None:
        """Explain what is in the background and append what is held, then end the thread (a later `submit`
        starts another)."""
        try:
            self.wait()
            self.append()
        finally:
            if self.pool is not None:
                pool, self.pool = self.pool, None
                pool.shutdown(wait=True)

    def _explain(self, booster: Any, flagged: pd.DataFrame, alerted_at: dt.datetime, batch_id: int) -> None:
        explained = flagged.assign(top_features=explain(booster, flagged))
        self.publish(explained, alerted_at)
        if not self.read_written:
            self.written, self.read_written = last_written(self.spark, self.path, self.app_id), True
        if self.written is not None and batch_id <= self.written:
            return  # done again after a crash: an append before it held these alerts
        rows = explained_rows(explained, dt.datetime.now(dt.UTC).replace(tzinfo=None))
        self.held.append(rows[~rows["transaction_id"].isin(self.explained_at_start)])
        self.held_batch = batch_id
        if time.monotonic() - self.appended_at >= self.every_seconds:
            self.append()

    def append(self) -> None:
        """The held explanations into the table, in one append keyed by their newest micro-batch."""
        if self.held_batch is None:
            return
        rows = pd.concat(self.held, ignore_index=True)
        append_idempotent(
            self.spark.createDataFrame(rows, EXPLANATIONS_SCHEMA),
            self.path,
            self.app_id,
            self.held_batch,
            ["tx_date"],
            self.properties,
            keep_warm=True,
        )
        self.held, self.held_batch, self.appended_at = [], None, time.monotonic()


def explanations_table_seconds(cfg: Config) -> float:
    """`stream.explanations_table_seconds`, in seconds."""
    return float(cfg.get("stream.explanations_table_seconds"))


def explained_rows(explained: pd.DataFrame, at: dt.datetime) -> pd.DataFrame:
    """`explanations` rows of alerts with their `top_features`."""
    return pd.DataFrame(
        {
            "alert_id": [str(uuid.uuid5(ALERT_NAMESPACE, str(int(t)))) for t in explained["transaction_id"]],
            "transaction_id": explained["transaction_id"].astype("int64"),
            "model_version": explained["model_version"].astype(str),
            "top_features": list(explained["top_features"]),
            "explained_at": at,
            "tx_date": pd.to_datetime(explained["tx_datetime"]).dt.date,
        }
    )


def explain_missing(
    spark: SparkSession,
    scores_path: str,
    path: str,
    load: Callable[[str], Any],
    since: dt.datetime | None,
    properties: dict[str, str],
) -> list[int]:
    """Explain the alerts of `scores` since `since` (event time) that `explanations` lacks, each with the model
    version that scored it (`load(version)` -> its booster), and append them; return their transaction ids.
    Run at a start, before the first micro-batch."""
    if since is None or not table_exists(spark, scores_path):
        return []
    alerts = (
        spark.read.format("delta")
        .load(scores_path)
        .where(F.col("tx_date") >= F.lit(since.date()))
        .where(F.col("decision"))
    )
    if table_exists(spark, path):
        done = (
            spark.read.format("delta")
            .load(path)
            .where(F.col("tx_date") >= F.lit(since.date()))
            .select("transaction_id")
        )
        alerts = alerts.join(done, "transaction_id", "left_anti")
    missing: pd.DataFrame = alerts.select("transaction_id", "tx_datetime", "model_version", *FEATURE_NAMES).toPandas()
    if missing.empty:
        return []
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    parts = [
        part.assign(top_features=explain(load(str(version)), part))
        for version, part in missing.groupby("model_version")
    ]
    rows = explained_rows(pd.concat(parts, ignore_index=True), now)
    (
        spark.createDataFrame(rows, EXPLANATIONS_SCHEMA)
        .write.format("delta")
        .mode("append")
        .options(**properties)
        .partitionBy("tx_date")
        .save(path)
    )
    return sorted(int(t) for t in rows["transaction_id"])
