"""The evidence a model's first threshold is chosen on (`stream.alert_budget.rescore_window`).

The alert budget chooses a model's threshold among the scores that model gave the window's legitimate
transactions (jobs/stream/alert_budget.py). A model new to the window (a retraining promoted, a first start)
has none, and its first hours of scores make poor evidence: their frauds are not confirmed yet, and until the
fraud team reviews them (in its working hours) the alerts among them count as legitimate, so the threshold
rises and misses frauds for most of a day. So before its first threshold, the model scores again what the
window holds: the transactions of `scores` the window holds, on the executors with the broadcast model as
the stream scores, from the features `scores` keeps of each. A window with nothing in it (the stream's first
start) takes the `window_hours` of `features_transactions` before its first transaction (the history the
model was trained on) as evidence alone: they choose thresholds and spend no budget.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from features.definitions import FEATURE_NAMES
from jobs.batch.build_features import read_features
from jobs.core.config import Config
from jobs.core.lake import table_exists
from jobs.stream.alert_budget import AlertBudget, kept_column

SCORED = "transaction_id long, customer_id long, tx_datetime timestamp, score double"


def model_scores(rows: DataFrame, broadcast: Any) -> pd.DataFrame:
    """`rows` (`transaction_id`, `customer_id`, `tx_datetime` and every model input) scored by the broadcast
    model, on the executors: SCORED, as pandas."""

    def score(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        booster = broadcast.value
        for frame in frames:
            inputs = frame[FEATURE_NAMES].astype("float64")
            yield pd.DataFrame(
                {
                    "transaction_id": frame["transaction_id"].astype("int64"),
                    "customer_id": frame["customer_id"].astype("int64"),
                    "tx_datetime": frame["tx_datetime"],
                    "score": booster.predict_proba(inputs)[:, 1] if len(frame) else np.zeros(0),
                }
            )

    columns = ["transaction_id", "customer_id", "tx_datetime", *FEATURE_NAMES]
    return rows.select(*columns).mapInPandas(score, SCORED).toPandas()


def gather(
    spark: SparkSession,
    cfg: Config,
    budget: AlertBudget,
    model: str,
    broadcast: Any,
    label_delay_hours: int,
    first: pd.Timestamp,
) -> str | None:
    """Give `budget` `model`'s scores of the window when it lacks evidence of that model: its transactions
    scored by another model, scored again from `scores`; or, the window empty, the transactions of
    `features_transactions` (of the model's label delay) in the `window_hours` before `first`, the micro-batch's
    first transaction, as evidence alone. Return what was done, for the log (None: nothing to do, or nothing to
    score)."""
    if not budget.lacks_evidence(model):
        return None
    others = budget.others_than(model)
    scores_path = cfg.table_path("scores")
    if len(others) and table_exists(spark, scores_path):
        oldest = pd.Timestamp(budget.times.min())
        window = (
            spark.read.format("delta")
            .load(scores_path)
            .where(F.col("tx_date") >= F.lit(oldest.date()))
            .where(F.col("tx_datetime") >= F.lit(oldest.to_pydatetime()))
            .where(F.col("model_version") != F.lit(model))
            .where(kept_column(F.col("transaction_id"), budget.one_in))
        )
        scored = model_scores(window, broadcast)
        taken = budget.rescore(scored["transaction_id"].to_numpy(dtype=np.int64), scored["score"].to_numpy(), model)
        return f"model {model} scored the window's {taken:,} transaction(s) of earlier models again, from {scores_path}"
    features = read_features(spark, cfg, label_delay_hours) if len(budget.ids) == 0 else None
    if features is None:
        return None
    since = first - budget.window
    before = (
        features.where(F.col("tx_date") >= F.lit(since.date()))
        .where(F.col("tx_datetime") > F.lit(since.to_pydatetime()))
        .where(F.col("tx_datetime") < F.lit(first.to_pydatetime()))
    )
    if budget.max_transactions is not None:  # a day at hundreds a second: the sample the window keeps
        budget.one_in = budget.sample_for(before.count())
        before = before.where(kept_column(F.col("transaction_id"), budget.one_in))
    added = budget.add_evidence(model_scores(before, broadcast), model)
    if not added:
        return None
    return (
        f"model {model} scored the {budget.window.total_seconds() / 3600:g} h of "
        f"{cfg.table_path('features_transactions')} before the stream's first transaction ({added:,} transaction(s)"
        + (f", one in {budget.one_in} of them" if budget.one_in > 1 else "")
        + ") as evidence"
    )
