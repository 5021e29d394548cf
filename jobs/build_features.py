"""`fraud features`: clean_transactions -> features_transactions, every model input of
features/definitions.py for one label delay (a partition per delay; rebuilding a delay replaces it).

    fraud features [--label-delay 7d]
    spark-submit/submit.sh jobs/build_features.py --env cluster --label-delay 1d
"""
from __future__ import annotations

import argparse
import json
import sys

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from features.batch import build_features
from features.definitions import FEATURE_NAMES, parse_delay
from jobs.common import add_common_options, config_from_args, job_main
from jobs.config import Config
from jobs.errors import FraudError
from jobs.lake import table_exists
from jobs.session import get_spark


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


def run(spark: SparkSession, cfg: Config, label_delay_hours: int) -> dict[str, object]:
    """Build (or rebuild) the features of one label delay from clean_transactions."""
    clean_path = cfg.table_path("clean_transactions")
    if not table_exists(spark, clean_path):
        raise FraudError(f"no clean_transactions table at {clean_path}: run `fraud clean --input RAW` first")
    features = build_features(spark.read.format("delta").load(clean_path), label_delay_hours) \
        .withColumn("label_delay_hours", F.lit(label_delay_hours))
    path = cfg.table_path("features_transactions")
    writer = features.write.format("delta").mode("overwrite").partitionBy("label_delay_hours", "tx_date")
    report: dict[str, object] = {"table": path, "label_delay_hours": label_delay_hours}
    if table_exists(spark, path):
        old = spark.read.format("delta").load(path).columns
        if set(old) == set(features.columns):
            writer = writer.option("replaceWhere", f"label_delay_hours = {label_delay_hours}")
        else:  # built by other feature definitions: every label delay's rows are stale
            writer = writer.option("overwriteSchema", "true")
            report["replaced_stale_table"] = (f"the table's columns differed from features/definitions.py (missing "
                                              f"{sorted(set(features.columns) - set(old))}, extra "
                                              f"{sorted(set(old) - set(features.columns))}): replaced whole; "
                                              "rebuild any other label delay you use")
            print(f"fraud features: {report['replaced_stale_table']}", flush=True)
    writer.save(path)
    report["rows"] = spark.read.format("delta").load(path).where(F.col("label_delay_hours") == label_delay_hours).count()
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--label-delay", default="7d", help="how late fraud labels are known: 7d, 1d, 1h (default 7d)")
    add_common_options(parser)


def execute(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    try:
        delay = parse_delay(args.label_delay)
    except ValueError as exc:
        raise FraudError(f"--label-delay: {exc}") from exc
    print(json.dumps(run(get_spark(cfg, "features"), cfg, delay)))
    return 0


main = job_main("fraud features", __doc__, add_arguments, execute)


if __name__ == "__main__":
    sys.exit(main())
