"""The stream's stateful step: AGGREGATES per card and per terminal, kept in Spark's state by a JVM operator.

The operator (features/jvm, `io.frauddetect.features.WindowedSums`) holds only the arithmetic of hourly
buckets; what it computes is handed to it here, as data, from features/definitions.py: the entity's key,
the measures (features/batch.py's `measure_value`, the batch job's own), each aggregate's name, measure
and hour range, and the look-back that bounds the state. It is Java because each state read or write of a
Python operator is a round trip between its Python worker and the JVM's state server.

Per key and micro-batch, the operator sorts the key's rows in event order (time, then transaction id),
reads the key's buckets (one state value), computes each row's windows exactly as features/batch.py does,
folds the rows into the buckets, drops the hours past the look-back (a day at a time) and writes the value
back. A key not updated for `ttl_days` of processing time expires (a processing-time timer per key checks it).

Labels: the card operator keeps, for each transaction it counted, its terminal and the label it counts for it
(the one the transaction carried, or the last label since). A label row (`label_column` true: a transaction
id, its card, terminal and time, and `tx_fraud` the label) replaces that label and adds the difference (+1,
-1 or 0) to the LABEL_MEASURES at the transaction's hour; it goes out with that difference in
`label_increment` and the label before in `label_previous`, both null when the card counted no such
transaction (same id, hour and terminal). The terminal operator then adds the same difference to the
terminal's hour: label rows reach it with `label_increment`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, DoubleType, IntegerType, LongType, StructField, StructType

from features.batch import event_hour, measure_value
from features.definitions import AGGREGATES, ENTITY_KEYS, LABEL_MEASURES, MEASURES, lookback_hours

OPERATOR_CLASS = "io.frauddetect.features.WindowedSums"
SECONDS = "event_seconds"
LABEL_ORDER = "label_order"
LABEL_INCREMENT, LABEL_PREVIOUS = "label_increment", "label_previous"  # the card operator's output for a label
LABEL_TAG = {"card": ENTITY_KEYS["terminal"]}  # what a label must name besides the key, per operator that takes labels
# the initial state of an operator: one row per key, its hours ascending and their sums (hours x the entity's
# measures), and the transactions it counted (with their hours, terminals and labels), so that one sent again
# is a duplicate and a label of one is counted
SEED_SCHEMA = StructType(
    [
        StructField("key", LongType(), False),
        StructField("hours", ArrayType(IntegerType(), False), False),
        StructField("sums", ArrayType(DoubleType(), False), False),
        StructField("ids", ArrayType(LongType(), False), False),
        StructField("id_hours", ArrayType(IntegerType(), False), False),
        StructField("id_tags", ArrayType(IntegerType(), True), False),
        StructField("id_labels", ArrayType(IntegerType(), True), False),
    ]
)
DAY_HOURS = 24


class OperatorMissingError(RuntimeError):
    """The operator's class is not on Spark's classpath."""


def _measure_column(measure: str) -> str:
    return f"measure_{measure}"


def entity_measures(entity: str) -> list[str]:
    """The MEASURES the entity's aggregates sum: all that its state keeps per hour (a terminal sums no
    amount, so its buckets are half a card's)."""
    used = {a.measure for a in AGGREGATES if a.entity == entity}
    return [m for m in MEASURES if m in used]


def spec(
    entity: str,
    label_delay_hours: int,
    ttl_days: float | None,
    bypass: Sequence[str] = (),
    label_column: str | None = None,
    duplicate_column: str | None = None,
) -> dict[str, object]:
    """The operator's spec for one entity, from AGGREGATES (see features/jvm's WindowSpec).

    Args:
        entity: "card" or "terminal".
        label_delay_hours: the label delay of the delayed aggregates.
        ttl_days: days of processing time after which an idle key's state expires (None: never); a timer per
            key removes it.
        bypass: boolean columns; a row with any of them true goes through untouched, with null aggregates.
        label_column: the boolean column of label rows: they change LABEL_MEASURES only, and are never
            duplicates. With `duplicate_column` (the card), the operator resolves each label against the
            transactions it counted (see the module's doc); without (the terminal), a label row adds its
            `label_increment`.
        duplicate_column: with a name, a transaction id the key counted before is flagged in this column
            and counted nowhere.
    """
    windows = []
    for a in AGGREGATES:
        if a.entity == entity:
            first, last = a.hour_range(label_delay_hours)
            windows.append({"name": a.name, "measure": _measure_column(a.measure), "first": first, "last": last})
    measures = [_measure_column(m) for m in entity_measures(entity)]
    return {
        "key": ENTITY_KEYS[entity],
        "seconds": SECONDS,
        "id": "transaction_id",
        "measures": measures,
        "windows": windows,
        "lookback_hours": lookback_hours(entity, label_delay_hours),
        "ttl_ms": None if ttl_days is None else round(ttl_days * 86_400_000),
        "bypass": list(bypass),
        "duplicate_column": duplicate_column,
        "labels": {
            "row": label_column,
            "value": "tx_fraud",
            "tag": LABEL_TAG[entity],
            "order": LABEL_ORDER,
            "measures": [_measure_column(m) for m in LABEL_MEASURES],
        }
        if label_column is not None and duplicate_column is not None
        else None,
        "drop": [SECONDS, LABEL_ORDER, *measures],
    }


def _measures(entity: str, label_column: str | None, resolves_labels: bool) -> list[Column]:
    """Each of the entity's measures of a row: a transaction's (features/batch.py), or a label's: nothing but
    its `label_increment` in the LABEL_MEASURES, or nothing at all for an operator that finds the increment
    itself (`resolves_labels`)."""
    columns = []
    for m in entity_measures(entity):
        value = measure_value(m)
        if label_column is not None:
            of_label = F.col(LABEL_INCREMENT) if m in LABEL_MEASURES and not resolves_labels else F.lit(0.0)
            value = F.when(F.col(label_column), of_label).otherwise(value)
        columns.append(F.coalesce(value.cast("double"), F.lit(0.0)).alias(_measure_column(m)))
    return columns


def add_aggregates(
    rows: DataFrame,
    entity: str,
    label_delay_hours: int,
    ttl_days: float | None,
    initial: DataFrame | None = None,
    bypass: Sequence[str] = (),
    label_column: str | None = None,
    duplicate_column: str | None = None,
    label_order: str | None = None,
) -> DataFrame:
    """A stream of transactions -> the same rows with the entity's AGGREGATES columns, from Spark's state.

    Args:
        rows: transactions with transaction_id, tx_datetime, tx_amount, tx_fraud (null: 0) and the entity's key.
        entity, label_delay_hours, ttl_days, bypass, label_column, duplicate_column: see `spec`.
        initial: the state to start a new query from (`seed_state`); None starts empty. Spark reads it in
            the query's first micro-batch only.
        label_order: a timestamp column: labels of one transaction in one micro-batch apply in its order
            (their arrival); None: in any order.

    Returns:
        The rows (any order), their columns then one double per aggregate (null for a bypassing, duplicate or
        label row), then `duplicate_column` if given, then LABEL_INCREMENT and LABEL_PREVIOUS if the operator
        resolves labels.

    Example:
        >>> add_aggregates(transactions, "card", 24, ttl_days=45, duplicate_column="duplicate")
    """
    spark = rows.sparkSession
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    operator = jvm
    for part in OPERATOR_CLASS.split("."):
        operator = getattr(operator, part)
    if "JavaPackage" in type(operator).__name__:  # py4j's answer for a class it cannot find
        raise OperatorMissingError(
            f"the stream's stateful operator {OPERATOR_CLASS} is not on Spark's classpath: "
            "run `make operators` (part of `make setup`) and start Spark with jobs/core/session.py"
        )
    resolves = label_column is not None and duplicate_column is not None
    order = F.unix_micros(F.col(label_order)) if label_order else F.lit(0).cast("long")
    prepared = rows.select(
        "*",
        F.unix_timestamp("tx_datetime").alias(SECONDS),
        order.alias(LABEL_ORDER),
        *_measures(entity, label_column, resolves),
    )
    seed = initial if initial is not None else spark.createDataFrame([], SEED_SCHEMA)
    text = json.dumps(spec(entity, label_delay_hours, ttl_days, bypass, label_column, duplicate_column))
    return DataFrame(operator.apply(prepared._jdf, text, seed._jdf), spark)


def seed_state(
    transactions: DataFrame, entity: str, label_delay_hours: int, newest_hour: int, with_ids: bool = False
) -> DataFrame:
    """The initial state of an entity's operator from history: the hourly buckets of the look-back before
    `newest_hour` (whole days, as the operator keeps them), one SEED_SCHEMA row per key.

    Args:
        transactions: labelled history (clean_transactions): transaction_id, the entity's key, tx_datetime,
            tx_amount, tx_fraud (and the terminal, for the card).
        newest_hour: the hour (since the epoch) of the newest transaction in it.
        with_ids: keep the transaction ids too, with their terminals and labels (for an operator that detects
            duplicates and resolves labels).
    """
    oldest = (newest_hour - lookback_hours(entity, label_delay_hours)) // DAY_HOURS * DAY_HOURS
    key = ENTITY_KEYS[entity]
    recent = transactions.withColumn("hour", event_hour(F.col("tx_datetime")).cast("int")).where(
        F.col("hour") >= oldest
    )
    tag = F.col(LABEL_TAG[entity]).cast("int") if with_ids and entity in LABEL_TAG else F.lit(None).cast("int")
    ids = (
        F.collect_list(
            F.struct(
                "hour",
                F.col("transaction_id").cast("long").alias("id"),
                tag.alias("tag"),
                F.coalesce(F.col("tx_fraud").cast("int"), F.lit(0)).alias("label"),
            )
        )
        if with_ids
        else F.array().cast("array<struct<hour:int,id:bigint,tag:int,label:int>>")
    )
    measures = entity_measures(entity)
    hourly = recent.groupBy(key, "hour").agg(
        *[F.sum(measure_value(m)).cast("double").alias(m) for m in measures], ids.alias("ids")
    )
    buckets = F.array_sort(F.collect_list(F.struct("hour", *measures)))
    per_key = hourly.groupBy(F.col(key).cast("long").alias("key")).agg(
        buckets.alias("b"), F.flatten(F.collect_list("ids")).alias("i")
    )
    return per_key.select(
        "key",
        F.transform("b", lambda b: b["hour"]).alias("hours"),
        F.flatten(F.transform("b", lambda b: F.array(*[b[m] for m in measures]))).alias("sums"),
        F.transform("i", lambda i: i["id"]).alias("ids"),
        F.transform("i", lambda i: i["hour"]).alias("id_hours"),
        F.transform("i", lambda i: i["tag"]).alias("id_tags"),
        F.transform("i", lambda i: i["label"]).alias("id_labels"),
    )


def card_and_terminal_aggregates(
    rows: DataFrame,
    label_delay_hours: int,
    ttl_days: float | None,
    seeds: dict[str, DataFrame] | None = None,
    bypass: Sequence[str] = (),
    label_column: str = "label_row",
    label_order: str | None = None,
) -> DataFrame:
    """Both operators, the card's then the terminal's: every AGGREGATES column, `duplicate` (a transaction id
    its card counted before), and for each label row its LABEL_INCREMENT and LABEL_PREVIOUS (see the module's
    doc). A label that changes nothing (repeated, or of no counted transaction) does not reach the terminal's
    state. `seeds`: the initial state per entity (`seed_state`); the other arguments: see `add_aggregates`."""
    seeds = seeds or {}
    cards = add_aggregates(
        rows,
        "card",
        label_delay_hours,
        ttl_days,
        seeds.get("card"),
        bypass=bypass,
        label_column=label_column,
        duplicate_column="duplicate",
        label_order=label_order,
    )
    unchanged = F.col(label_column) & (F.coalesce(F.col(LABEL_INCREMENT), F.lit(0)) == 0)
    return add_aggregates(
        cards.withColumn("label_unchanged", unchanged),
        "terminal",
        label_delay_hours,
        ttl_days,
        seeds.get("terminal"),
        bypass=[*bypass, "duplicate", "label_unchanged"],
        label_column=label_column,
    ).drop("label_unchanged")
