"""The labels `fraud stream` records: the Delta table `labels` (one row a well-formed label of a scored
transaction, with what it changed in the fraud state and who decided it), and the labels its card's state
could not count, resolved against `scores` (`resolve_labels`): recorded, sent again with their place, or
dead letters."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.types import IntegerType, LongType, StringType, StructField, StructType, TimestampType

from features.schema import LABEL_PLACE
from jobs.core.dead_letters import DEAD_LETTER_COLUMNS, LABEL_UNKNOWN, LABEL_WRONG_PLACE
from jobs.core.lake import table_exists

# the Delta table `labels`: every well-formed label of a scored transaction, with its effect on the state
LABELS_SCHEMA = StructType(
    [
        StructField("transaction_id", LongType()),
        StructField("tx_fraud", IntegerType()),
        StructField("previous_tx_fraud", IntegerType()),
        StructField("fraud_increment", IntegerType()),
        StructField("customer_id", IntegerType()),
        StructField("terminal_id", IntegerType()),
        StructField("tx_datetime", TimestampType()),
        StructField("labelled_at", TimestampType()),
        StructField("topic", StringType()),
        StructField("partition", IntegerType()),
        StructField("offset", LongType()),
        StructField("batch_id", LongType()),
        # who decided and when, as the label message gives them (`fraud desk` and `fraud label --by` do); null otherwise
        StructField("decided_by", StringType()),
        StructField("decided_at", TimestampType()),
        # the stream's event clock when the label came (the newest transaction time it had scored): a card is
        # blocked from then on (models/blocking.py); null if it had scored nothing yet
        StructField("event_clock", TimestampType()),
    ]
)
# the columns of `labels` added after its first version
LABELS_ADDED = StructType(LABELS_SCHEMA.fields[-3:])


def label_increments(
    labels: pd.DataFrame, scored: pd.DataFrame, previous: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """What each label changes in the fraud state, deduplicated by transaction id.

    Args:
        labels: label messages in arrival order (`transaction_id`, `tx_fraud`, any other columns).
        scored: the labelled transactions found in `scores`: `transaction_id`, `customer_id`, `terminal_id`,
            `tx_datetime`, and `carried_tx_fraud` (the label the transaction message carried, null if none).
        previous: the last label already applied per transaction id (`transaction_id`, `tx_fraud`).

    Returns:
        (the labels of scored transactions with `previous_tx_fraud` and `fraud_increment` = label minus what
        the state counts already: a repeated label adds 0, a correction 1 -> 0 adds -1;
        the labels of transactions never scored, unchanged).
    """
    known = labels["transaction_id"].isin(scored["transaction_id"])
    applied = labels[known].merge(scored, on="transaction_id", how="left")
    current = dict(zip(scored["transaction_id"], scored["carried_tx_fraud"].fillna(0).astype(int)))
    current.update(zip(previous["transaction_id"], previous["tx_fraud"].astype(int)))
    before, increment = [], []
    for tx, label in zip(applied["transaction_id"], applied["tx_fraud"]):
        before.append(current[tx])
        increment.append(int(label) - current[tx])
        current[tx] = int(label)
    applied["previous_tx_fraud"] = pd.Series(before, index=applied.index, dtype="int32")
    applied["fraud_increment"] = pd.Series(increment, index=applied.index, dtype="int32")
    return applied, labels[~known]


@dataclass
class ResolvedLabels:
    """What becomes of the labels the state did not count (`resolve_labels`)."""

    past: pd.DataFrame  # labels of transactions past the state's look-back: recorded, changing no window
    forward: list[tuple[str, str]]  # labels given by id alone, as (key, value) messages with their place
    dead: pd.DataFrame  # dead letters (DEAD_LETTER_COLUMNS)


def resolve_labels(spark: SparkSession, labels: pd.DataFrame, scores_path: str, labels_path: str) -> ResolvedLabels:
    """The labels of a micro-batch that its card's state did not count (`label_increment` null), looked up
    in `scores`: a label of no scored transaction, or whose card, terminal or time is not its transaction's,
    is a dead letter; one given by id alone is sent again with its transaction's place; one of a transaction
    the state no longer holds (past its look-back, or its card expired) is recorded, with its change from the
    transaction's last label in `labels` (or the one it carried)."""
    none = pd.DataFrame(columns=DEAD_LETTER_COLUMNS)
    if labels.empty:
        return ResolvedLabels(labels.iloc[0:0], [], none)
    ids = spark.createDataFrame(labels[["transaction_id"]].drop_duplicates())
    place = LABEL_PLACE.fieldNames()
    scored: pd.DataFrame = (
        spark.read.format("delta")
        .load(scores_path)
        .join(F.broadcast(ids), "transaction_id")
        .select("transaction_id", *place, F.col("tx_fraud").alias("carried_tx_fraud"))
        .toPandas()
        if table_exists(spark, scores_path)
        else pd.DataFrame(columns=["transaction_id", *place, "carried_tx_fraud"])
    )
    scored = scored.drop_duplicates("transaction_id")
    found = labels.merge(scored, on="transaction_id", how="left", suffixes=("", "_scored"), indicator=True)
    found.index = labels.index
    errors: dict[int, list[str]] = {}
    reasons: dict[int, str] = {}
    for i, row in found.iterrows():
        if row["_merge"] != "both":
            errors[i] = [
                f"transaction_id: expected a scored transaction, found {row['transaction_id']} in no row "
                "of `scores` (is the label early, or the id wrong?)"
            ]
            reasons[i] = LABEL_UNKNOWN
        elif row["row_kind"] == "label":
            wrong = [
                f"{c}: expected {_shown(row[c + '_scored'])} (transaction {row['transaction_id']}'s in `scores`), "
                f"found {_shown(row[c])}"
                for c in place
                if row[c] != row[c + "_scored"]
            ]
            if wrong:
                errors[i], reasons[i] = wrong, LABEL_WRONG_PLACE
    dead = (
        found.loc[list(errors)].assign(errors=list(errors.values()), reason=list(reasons.values()))[DEAD_LETTER_COLUMNS]
        if errors
        else none
    )
    ok = found.drop(index=list(errors))
    by_id = ok[ok["row_kind"] == "label_by_id"]
    forward = [
        (
            str(int(r["customer_id_scored"])),
            json.dumps(
                {
                    "transaction_id": int(r["transaction_id"]),
                    "tx_fraud": int(r["tx_fraud"]),
                    "customer_id": int(r["customer_id_scored"]),
                    "terminal_id": int(r["terminal_id_scored"]),
                    "tx_datetime": pd.Timestamp(r["tx_datetime_scored"]).strftime("%Y-%m-%d %H:%M:%S"),
                    **decision_fields(r["payload"]),
                }
            ),
        )
        for _, r in by_id.iterrows()
    ]
    past = labels.loc[ok.index[ok["row_kind"] == "label"]].drop(columns=place)
    if not past.empty:
        previous = (
            last_labels(spark.read.format("delta").load(labels_path).join(F.broadcast(ids), "transaction_id"))
            .select("transaction_id", "tx_fraud")
            .toPandas()
            if table_exists(spark, labels_path)
            else pd.DataFrame(columns=["transaction_id", "tx_fraud"])
        )
        past, _ = label_increments(past, scored, previous)
    return ResolvedLabels(past, forward, dead)


def decision_fields(payload: Any) -> dict[str, str]:
    """`decided_by` and `decided_at` of a label message's JSON, those it gives as non-empty strings."""
    try:
        fields = json.loads(payload) if isinstance(payload, str) else {}
    except ValueError:
        return {}
    if not isinstance(fields, dict):
        return {}
    return {k: fields[k] for k in ("decided_by", "decided_at") if isinstance(fields.get(k), str) and fields[k].strip()}


def with_decisions(rows: pd.DataFrame) -> pd.DataFrame:
    """`rows` (labels with their `payload`) with `decided_by` and `decided_at` (UTC) from it; null where the
    message gives none, or a time that is not ISO 8601."""
    fields = [decision_fields(p) for p in rows["payload"]]
    at = pd.to_datetime(
        pd.Series([f.get("decided_at") for f in fields], index=rows.index, dtype="object"),
        errors="coerce",
        utc=True,
        format="ISO8601",
    )
    return rows.assign(decided_by=[f.get("decided_by") for f in fields], decided_at=at.dt.tz_localize(None))


def _shown(value: Any) -> str:
    """A card, terminal or time of a label's, as the label's JSON gives it."""
    if isinstance(value, (pd.Timestamp, dt.datetime)):
        return pd.Timestamp(value).strftime("%Y-%m-%d %H:%M:%S")
    return str(int(value)) if isinstance(value, (int, float, np.integer, np.floating)) else str(value)


def last_labels(labels: DataFrame) -> DataFrame:
    """The last label of each transaction among rows of `labels`: the newest micro-batch's, in it the newest message's."""
    last = Window.partitionBy("transaction_id").orderBy(F.desc("batch_id"), F.desc("labelled_at"), F.desc("offset"))
    return labels.withColumn("_n", F.row_number().over(last)).where("_n = 1").drop("_n")
