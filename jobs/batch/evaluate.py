"""`fraud evaluate`: score any data set in the bank's raw format with a registered model and print its metrics.

    fraud evaluate --input data/raw --model champion --test-start 2018-08-08 --test-days 7 --scores-out scores/
    fraud evaluate --input data/raw --model 3 --test-start 2018-08-08 --scores-out scores.parquet

The raw files are cleaned into the lake (--lake), the features of the model's label delay are computed
from the whole history before and during the test window, every transaction of the window is scored and
written (`transaction_id`, `score`) as a Delta table, or as parquet when --scores-out ends in .parquet.
Metrics follow the training protocol (cards with a fraud known by the start of a day, counting frauds
from --history-days before the test start, 14 = the handbook's 7 training + 7 delay days, are left out of
that day) and are printed as one JSON object: roc_auc, average_precision, card_precision_at_100, recall,
fpr (at the model's threshold), recall_at_fpr_5pct.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from typing import Any

import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from features.definitions import FEATURE_NAMES
from jobs.batch import build_features, clean
from jobs.core import registry
from jobs.core.checks import check_input
from jobs.core.common import add_common_options, config_from_args, job_main
from jobs.core.config import Config
from jobs.core.errors import FraudError
from jobs.core.session import get_spark
from models import catboost_model, metrics
from models.split import drop_known_fraud_cards


def run(
    spark: SparkSession,
    cfg: Config,
    input_path: str,
    model: str,
    test_start: dt.date,
    test_days: int,
    scores_out: str,
    history_days: int = 14,
) -> dict[str, Any]:
    booster, tags, version = registry.load(cfg, model)
    if tags.get("features", "").split(",") != FEATURE_NAMES:
        raise FraudError(
            f"--model {model} (version {version}) was trained on other features than this code "
            f"defines: {tags.get('features')}"
        )
    delay = int(tags["label_delay_hours"])
    threshold = float(tags["threshold"])
    clean.run(spark, cfg, input_path)
    build_features.run(spark, cfg, delay)  # the days the input added or changed, if any
    features = build_features.read_features(spark, cfg, delay)
    assert features is not None
    test_end = test_start + dt.timedelta(days=test_days)
    window: pd.DataFrame = features.where(
        (F.col("tx_date") >= F.lit(test_start)) & (F.col("tx_date") < F.lit(test_end))
    ).toPandas()
    if window.empty:
        raise FraudError(
            f"--test-start {test_start} --test-days {test_days}: the data has no transaction in those days"
        )
    window["score"] = catboost_model.score(booster, window[FEATURE_NAMES])
    scores = spark.createDataFrame(window[["transaction_id", "score"]])
    if scores_out.endswith(".parquet"):
        scores.write.mode("overwrite").parquet(scores_out)
    else:
        scores.write.format("delta").mode("overwrite").save(scores_out)
    history_start = test_start - dt.timedelta(days=history_days)
    frauds = (
        features.where(
            (F.col("tx_fraud") == 1) & (F.col("tx_date") >= F.lit(history_start)) & (F.col("tx_date") < F.lit(test_end))
        )
        .select("customer_id", "tx_datetime", "tx_fraud")
        .toPandas()
    )
    judged = drop_known_fraud_cards(frauds, window, delay)
    m = metrics.evaluate(judged, threshold)
    return {
        "model": version,
        "label_delay_hours": delay,
        "threshold": threshold,
        "scored": len(window),
        "evaluated": len(judged),
        "scores_out": scores_out,
        **{
            k: m[k]
            for k in ("roc_auc", "average_precision", "card_precision_at_100", "recall", "fpr", "recall_at_fpr_5pct")
        },
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", required=True, help="raw files (bank format): a folder or a file, any Hadoop path")
    parser.add_argument("--model", default="champion", help="champion, challenger or a version number")
    parser.add_argument("--test-start", required=True, type=dt.date.fromisoformat, help="first day to score")
    parser.add_argument("--test-days", type=int, default=7)
    parser.add_argument(
        "--history-days",
        type=int,
        default=14,
        help="known frauds count from this many days before --test-start (default 14)",
    )
    parser.add_argument(
        "--scores-out", required=True, help="where to write the scores (Delta, or parquet if *.parquet)"
    )
    add_common_options(parser)


def execute(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    check_input(args.input)  # before the JVM starts
    result = run(
        get_spark(cfg, "evaluate"),
        cfg,
        args.input,
        args.model,
        args.test_start,
        args.test_days,
        args.scores_out,
        args.history_days,
    )
    print(json.dumps(result))
    return 0


main = job_main("fraud evaluate", __doc__, add_arguments, execute)


if __name__ == "__main__":
    sys.exit(main())
