"""Data-quality rules of raw transaction lines, defined once in `jobs/batch/expectations/raw_transactions.json`.

The same expectation suite is read twice: great-expectations validates a batch with it (the report and data
docs), and `flag_rules` turns each expectation into a row-level Spark predicate with great-expectations'
semantics (a null is "not evaluated" except by not-null rules; pair rules skip rows where either side is
missing) so that every quarantined row lists each rule it failed. The cleaning job checks that both give
the same count per rule. Pure DataFrame -> DataFrame; no I/O but reading the suite file.
"""

from __future__ import annotations

import importlib.resources
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from features.schema import TRANSACTION_COLUMNS, to_typed

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

# read as package data: under spark-submit, `jobs` is imported from a zip (--py-files), not from a folder
SUITE = importlib.resources.files("jobs.batch") / "expectations" / "raw_transactions.json"
N_FIELDS = len(TRANSACTION_COLUMNS)
SECONDS_PER_DAY = 86_400


@dataclass(frozen=True)
class Rule:
    """One expectation of the suite, with the rule name quarantine rows carry."""

    name: str
    type: str
    kwargs: dict[str, Any] = field(hash=False)
    description: str = ""


def load_rules(path: Path | Traversable = SUITE) -> tuple[str, list[Rule]]:
    """Read the suite: its name and its rules, in order. Each expectation needs a unique `meta.rule`."""
    suite = json.loads(path.read_text())
    rules = [
        Rule(e["meta"]["rule"], e["type"], dict(e["kwargs"]), e["meta"].get("description", ""))
        for e in suite["expectations"]
    ]
    names = [r.name for r in rules]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"{path}: rule names must be unique, {dupes} appear more than once")
    return suite["name"], rules


def prepare_lines(lines: DataFrame) -> DataFrame:
    """Split raw lines into typed columns plus the derived columns the suite's pair rules compare.

    Args:
        lines: a DataFrame with a string column `raw_line` (other columns are kept).

    Returns:
        `field_count`, every TRANSACTION_SCHEMA column typed, `errors` (conversion errors), and
        `tx_time_days_from_seconds`, `tx_seconds_of_day`, `tx_seconds_of_day_from_datetime`,
        `tx_fraud_from_scenario` (null when tx_fraud or tx_fraud_scenario is out of range).
    """
    parts = F.split(F.col("raw_line"), ",", -1)
    strings = lines.select(
        "*",
        F.size(parts).alias("field_count"),
        *[F.when(F.size(parts) > i, parts[i]).alias(c) for i, c in enumerate(TRANSACTION_COLUMNS)],
    )
    typed = to_typed(strings, required=tuple(TRANSACTION_COLUMNS))
    return typed.select("*", *derived_columns())


def derived_columns() -> list[Column]:
    """The columns the suite's pair rules compare, computed from a typed transaction's columns."""
    dt = F.col("tx_datetime")
    labels_in_range = F.col("tx_fraud").isin(0, 1) & F.col("tx_fraud_scenario").between(0, 3)
    return [
        F.floor(F.col("tx_time_seconds") / SECONDS_PER_DAY).cast("long").alias("tx_time_days_from_seconds"),
        F.pmod(F.col("tx_time_seconds"), F.lit(SECONDS_PER_DAY)).cast("long").alias("tx_seconds_of_day"),
        (F.hour(dt) * 3600 + F.minute(dt) * 60 + F.second(dt)).cast("long").alias("tx_seconds_of_day_from_datetime"),
        F.when(labels_in_range, (F.col("tx_fraud_scenario") > 0).cast("int")).alias("tx_fraud_from_scenario"),
    ]


DERIVED_COLUMNS = [
    "tx_time_days_from_seconds",
    "tx_seconds_of_day",
    "tx_seconds_of_day_from_datetime",
    "tx_fraud_from_scenario",
]
VALIDATED_COLUMNS = ["field_count", *TRANSACTION_COLUMNS, *DERIVED_COLUMNS]


def rule_fails(rule: Rule) -> Column:
    """A boolean column, true where a row fails `rule` (great-expectations' semantics)."""
    kw = rule.kwargs
    if rule.type == "expect_column_values_to_not_be_null":
        return F.col(kw["column"]).isNull()
    if rule.type == "expect_column_values_to_be_between":
        c = F.col(kw["column"])
        ok = F.lit(True)
        if kw.get("min_value") is not None:
            ok = ok & ((c > kw["min_value"]) if kw.get("strict_min") else (c >= kw["min_value"]))
        if kw.get("max_value") is not None:
            ok = ok & ((c < kw["max_value"]) if kw.get("strict_max") else (c <= kw["max_value"]))
        return c.isNotNull() & ~ok
    if rule.type == "expect_column_values_to_be_in_set":
        c = F.col(kw["column"])
        return c.isNotNull() & ~c.isin(*kw["value_set"])
    if rule.type == "expect_column_pair_values_to_be_equal":
        if kw.get("ignore_row_if", "both_values_are_missing") != "either_value_is_missing":
            raise ValueError(f"rule {rule.name}: only ignore_row_if='either_value_is_missing' is supported")
        a, b = F.col(kw["column_A"]), F.col(kw["column_B"])
        return a.isNotNull() & b.isNotNull() & (a != b)
    if rule.type == "expect_column_values_to_be_unique":
        c = F.col(kw["column"])
        return c.isNotNull() & (F.count(F.lit(1)).over(Window.partitionBy(c)) > 1)
    raise ValueError(f"rule {rule.name}: expectation type {rule.type!r} has no row-level form in jobs/batch/quality.py")


def _columns_of(rule: Rule) -> list[str]:
    return [v for k, v in rule.kwargs.items() if k in ("column", "column_A", "column_B")]


def message_rules(rules: list[Rule]) -> list[Rule]:
    """The rules that judge one transaction message on its own (the stream's): not uniqueness (a property of a
    whole file; the stream finds duplicates in its state), not presence (parsing already requires the fields
    and the labels are optional), not the raw line's field count."""
    own = set(TRANSACTION_COLUMNS) | set(DERIVED_COLUMNS)
    return [
        r
        for r in rules
        if r.type not in ("expect_column_values_to_be_unique", "expect_column_values_to_not_be_null")
        and all(c in own for c in _columns_of(r))
    ]


def rule_errors(rules: list[Rule]) -> Column:
    """An array column: for each rule a row fails, "rule NAME: DESCRIPTION" (empty for a clean row); the row
    needs the columns of `derived_columns`."""
    failed = F.array(*[F.when(rule_fails(r), F.lit(f"rule {r.name}: {r.description or r.type}")) for r in rules])
    return F.filter(failed, lambda x: x.isNotNull())


def flag_rules(prepared: DataFrame, rules: list[Rule]) -> DataFrame:
    """Add `failed_rules`: the names of every rule the row fails (empty for a clean row)."""
    flags = F.array(*[F.when(rule_fails(r), F.lit(r.name)) for r in rules])
    return prepared.withColumn("failed_rules", F.filter(flags, lambda x: x.isNotNull()))
