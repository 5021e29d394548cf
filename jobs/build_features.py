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
from features.definitions import parse_delay
from jobs.common import add_common_options, config_from_args, job_main
from jobs.config import Config
from jobs.errors import FraudError
from jobs.lake import table_exists
from jobs.session import get_spark


def read_features(spark: SparkSession, cfg: Config, label_delay_hours: int) -> DataFrame | None:
    """The features of one label delay, or None if they were never built."""
    path = cfg.table_path("features_transactions")
    if not table_exists(spark, path):
        return None
    df = spark.read.format("delta").load(path).where(F.col("label_delay_hours") == label_delay_hours)
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
    if table_exists(spark, path):
        writer = writer.option("replaceWhere", f"label_delay_hours = {label_delay_hours}")
    writer.save(path)
    rows = spark.read.format("delta").load(path).where(F.col("label_delay_hours") == label_delay_hours).count()
    return {"table": path, "label_delay_hours": label_delay_hours, "rows": rows}


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
