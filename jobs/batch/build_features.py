"""`fraud features`: clean_transactions -> features_transactions, every model input of
features/definitions.py for one label delay (a partition per delay).

    fraud features [--label-delay 7d] [--full]
    spark-submit/submit.sh jobs/batch/build_features.py --env cluster --label-delay 1d

Incremental: the days whose clean transactions changed since the last build (new days, or a late file that
added rows to an older day) are rebuilt from the first such day on, reading only the look-back before it
(the longest window plus the label delay). A day "changed" if its fingerprint (row count, exact sums of the
ids, labels, times, cards, terminals and amounts in cents) differs between clean_transactions and the
features. `--full` rebuilds the delay whole.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import sys

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from features.batch import build_features
from features.definitions import FEATURE_NAMES, lookback_hours, parse_delay
from jobs.core.common import add_common_options, config_from_args, job_main
from jobs.core.config import Config
from jobs.core.errors import FraudError
from jobs.core.lake import table_exists
from jobs.core.session import get_spark


def read_features(spark: SparkSession, cfg: Config, label_delay_hours: int) -> DataFrame | None:
    """The features of one label delay, or None if they were never built, or built by a version of
    features/definitions.py with other inputs (the table lacks some of FEATURE_NAMES)."""
    path = cfg.table_path("features_transactions")
    if not table_exists(spark, path):
        return None
    df = spark.read.format("delta").load(path)
    if set(FEATURE_NAMES) - set(df.columns):
        return None
    df = df.where(F.col("label_delay_hours") == label_delay_hours)
    return df if df.limit(1).count() else None


def _fingerprints(df: DataFrame) -> DataFrame:
    """One row per tx_date: what identifies the day's transactions and labels. Every sum is of integers, as
    decimal(38,0): exact whatever the order of the rows (unlike a float sum), and never overflowing (a long
    sum could, which ANSI mode makes an error). Amounts count as whole cents."""

    def total(column: Column) -> Column:
        return F.sum(column.cast("decimal(38,0)"))

    return df.groupBy("tx_date").agg(
        F.count(F.lit(1)).alias("rows"),
        total(F.col("transaction_id")).alias("ids"),
        total(F.coalesce(F.col("tx_fraud"), F.lit(0))).alias("frauds"),
        total(F.unix_timestamp("tx_datetime")).alias("seconds"),
        total(F.col("customer_id")).alias("cards"),
        total(F.col("terminal_id")).alias("terminals"),
        total(F.round(F.col("tx_amount") * 100)).alias("cents"),
    )


def first_changed_day(clean: DataFrame, built: DataFrame) -> dt.date | None:
    """The first tx_date whose transactions differ between clean_transactions and the built features (a day
    on one side only counts), or None if none does."""
    a, b = _fingerprints(clean).alias("a"), _fingerprints(built).alias("b")
    differs = [~F.col(f"a.{c}").eqNullSafe(F.col(f"b.{c}")) for c in a.columns if c != "tx_date"]
    condition = differs[0]
    for d in differs[1:]:
        condition = condition | d
    day = (
        a.join(b, F.col("a.tx_date") == F.col("b.tx_date"), "full_outer")
        .where(condition)
        .agg(F.min(F.coalesce(F.col("a.tx_date"), F.col("b.tx_date"))))
        .collect()[0][0]
    )
    return day


def history_days(label_delay_hours: int) -> int:
    """Whole days of transactions before a day that its features read (longest window plus the delay)."""
    return math.ceil(max(lookback_hours(e, label_delay_hours) for e in ("card", "terminal")) / 24) + 1


def run(spark: SparkSession, cfg: Config, label_delay_hours: int, full: bool = False) -> dict[str, object]:
    """Build the features of one label delay from clean_transactions: the changed days only, or (`full`, a
    first build, or a table built by other feature definitions) every day."""
    clean_path = cfg.table_path("clean_transactions")
    if not table_exists(spark, clean_path):
        raise FraudError(f"no clean_transactions table at {clean_path}: run `fraud clean --input RAW` first")
    clean = spark.read.format("delta").load(clean_path)
    path = cfg.table_path("features_transactions")
    report: dict[str, object] = {"table": path, "label_delay_hours": label_delay_hours}
    columns = [*build_features(clean.limit(0), label_delay_hours).columns, "label_delay_hours"]
    start: dt.date | None = None  # the first day to build; None: every day
    replace = f"label_delay_hours = {label_delay_hours}"
    overwrite_schema = False
    if table_exists(spark, path):
        old = spark.read.format("delta").load(path)
        if set(old.columns) != set(columns):  # built by other feature definitions: every label delay's rows are stale
            overwrite_schema = True
            report["replaced_stale_table"] = (
                f"the table's columns differed from features/definitions.py (missing "
                f"{sorted(set(columns) - set(old.columns))}, extra "
                f"{sorted(set(old.columns) - set(columns))}): replaced whole; "
                "rebuild any other label delay you use"
            )
            print(f"fraud features: {report['replaced_stale_table']}", flush=True)
        elif not full and (mine := old.where(F.col("label_delay_hours") == label_delay_hours)).limit(1).count():
            start = first_changed_day(clean, mine)
            if start is None:
                report.update(mode="up to date", days_built=0, first_day_built=None, rows=mine.count())
                return report
    source = clean
    if start is not None:
        source = clean.where(F.col("tx_date") >= F.lit(start - dt.timedelta(days=history_days(label_delay_hours))))
        replace += f" AND tx_date >= DATE'{start.isoformat()}'"
    features = build_features(source, label_delay_hours).withColumn("label_delay_hours", F.lit(label_delay_hours))
    if start is not None:
        features = features.where(F.col("tx_date") >= F.lit(start))
    writer = features.write.format("delta").mode("overwrite").partitionBy("label_delay_hours", "tx_date")
    writer = writer.option("overwriteSchema", "true") if overwrite_schema else writer.option("replaceWhere", replace)
    writer.save(path)
    built_day = F.col("tx_date") if start is None else F.when(F.col("tx_date") >= F.lit(start), F.col("tx_date"))
    rows, days, first = (
        spark.read.format("delta")
        .load(path)
        .where(F.col("label_delay_hours") == label_delay_hours)
        .agg(F.count(F.lit(1)), F.countDistinct(built_day), F.min(built_day))
        .collect()[0]
    )
    report.update(
        mode="full" if start is None else "changed days",
        days_built=days,
        first_day_built=first.isoformat() if first else None,
        rows=rows,
    )
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--label-delay", default="7d", help="how late fraud labels are known: 7d, 1d, 1h (default 7d)")
    parser.add_argument(
        "--full",
        action="store_true",
        help="rebuild every day of this label delay (default: only the days whose clean transactions changed)",
    )
    add_common_options(parser)


def execute(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    try:
        delay = parse_delay(args.label_delay)
    except ValueError as exc:
        raise FraudError(f"--label-delay: {exc}") from exc
    print(json.dumps(run(get_spark(cfg, "features"), cfg, delay, args.full)))
    return 0


main = job_main("fraud features", __doc__, add_arguments, execute)


if __name__ == "__main__":
    sys.exit(main())
