"""Batch computation of the features of features/definitions.py with Spark: pure DataFrame -> DataFrame.

Aggregates are window sums over (entity, hour) totals (one shuffle per entity, no Python per row), plus,
for windows that include the transaction's own hour, a running sum within that hour in event order
(event time, then transaction id). The model inputs are then derived by `derive_features` in a pandas
function (mapInPandas): the same function the streaming job applies.
"""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, StructField, StructType

from features.definitions import AGGREGATES, FEATURE_NAMES, HOUR, MEASURES, derive_features

KEEP = [
    "transaction_id",
    "tx_datetime",
    "customer_id",
    "terminal_id",
    "tx_fraud",  # tx_amount is a feature
    "tx_fraud_scenario",
]


def event_hour(ts: Column) -> Column:
    """The hour bucket of a timestamp: whole hours since the epoch (UTC)."""
    return F.floor(F.unix_timestamp(ts) / HOUR).cast("long")


def measure_value(name: str) -> Column:
    """The value a transaction adds to an aggregate of MEASURES `name` (the stream's operators sum the same)."""
    amount = F.col("tx_amount").cast("double")
    values = {
        "count": F.lit(1.0),
        "amount": amount,
        "fraud": F.col("tx_fraud").cast("double"),
        "amount_sq": amount * amount,
    }
    return values[name]


def compute_aggregates(tx: DataFrame, label_delay_hours: int) -> DataFrame:
    """Add every AGGREGATES column to the transactions.

    Args:
        tx: transactions with at least transaction_id, tx_datetime, customer_id, terminal_id, tx_amount and
            tx_fraud (labels are read only by delayed aggregates, for transactions older than the delay).
        label_delay_hours: how long before a transaction's hour the label windows end.

    Returns:
        The transactions with an `hour` column and one double column per aggregate.
    """
    out = tx.withColumn("hour", event_hour(F.col("tx_datetime")))
    for entity in ("card", "terminal"):
        aggs = [a for a in AGGREGATES if a.entity == entity]
        key = aggs[0].key
        hourly = out.groupBy(key, "hour").agg(*[F.sum(measure_value(m)).alias(f"_h_{m}") for m in MEASURES])
        by_hour = Window.partitionBy(key).orderBy("hour")
        sums = []
        for a in aggs:
            first, last = a.hour_range(label_delay_hours)
            last = -1 if last == 0 else last  # the current hour is added below, up to the transaction
            sums.append(
                F.coalesce(F.sum(f"_h_{a.measure}").over(by_hour.rangeBetween(first, last)), F.lit(0.0)).alias(a.name)
            )
        out = out.join(hourly.select(key, "hour", *sums), [key, "hour"], "left")
        in_hour = (
            Window.partitionBy(key, "hour")
            .orderBy(F.unix_timestamp("tx_datetime"), "transaction_id")
            .rowsBetween(Window.unboundedPreceding, Window.currentRow)
        )
        for a in aggs:
            if a.hour_range(label_delay_hours)[1] == 0:
                out = out.withColumn(a.name, F.col(a.name) + F.sum(measure_value(a.measure)).over(in_hour))
    return out


def _derive(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    for frame in batches:
        features = derive_features(frame)
        yield pd.concat([frame[KEEP + ["tx_date"]].reset_index(drop=True), features.reset_index(drop=True)], axis=1)


def build_features(tx: DataFrame, label_delay_hours: int) -> DataFrame:
    """Transactions -> one row per transaction with the identifying columns, the labels and FEATURES.

    Example:
        >>> build_features(spark.read.format("delta").load(".state/lake/clean_transactions"), 7 * 24)
    """
    with_aggs = compute_aggregates(tx, label_delay_hours).withColumn("tx_date", F.to_date("tx_datetime"))
    schema = StructType(
        [
            *[with_aggs.schema[c] for c in KEEP + ["tx_date"]],
            *[StructField(n, DoubleType(), True) for n in FEATURE_NAMES],
        ]
    )
    return with_aggs.mapInPandas(_derive, schema)
