"""`fraud train`: fit the CatBoost fraud model on a time split, choose its threshold, log everything to MLflow
and register it as `fraud-detector` (alias `champion` only if it beats the champion on the same test days).

    fraud train --input data/raw                       # clean + features + train in one go
    fraud train [--lake PATH]                          # from the tables already under --lake
    fraud train --train-start 2018-07-25 --train-days 7 --delay-days 7 --test-days 7 --label-delay 7d
    fraud train --latest                               # the split whose test days end with the newest data
    spark-submit/submit.sh jobs/batch/train.py --env cluster --train-start 2019-09-01

Protocol (the handbook's, see ../shared/SIMULATOR.md): fit on the training window minus its last
--val-days, which choose the threshold; refit on the whole training window; skip --delay-days; test on
--test-days. The CatBoost parameters were selected by prequential validation (models/catboost_model.py).
On validation and test days, cards with a fraud known by the start of the day are left out.

The threshold (which the stream scores with: it is a tag of the registered version) never exceeds the
bank's false-positive budget, --max-fpr (default 0.05), on validation: it is the highest recall within
that budget. With --target-recall R: the lowest FPR that reaches R within the budget (fewer alerts),
or the highest recall within it when R is out of reach. The summary reports recall and FPR at that
threshold on test. `--max-fpr 1` drops the budget.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import sys
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from features.definitions import FEATURE_NAMES, FEATURES, parse_delay
from jobs.batch import build_features, clean
from jobs.core import registry
from jobs.core.checks import check_input
from jobs.core.common import add_common_options, config_from_args, job_main
from jobs.core.config import Config
from jobs.core.errors import FraudError
from jobs.core.lake import table_exists
from jobs.core.session import get_spark
from models import catboost_model, metrics
from models.errors import ModelError
from models.split import Split, drop_known_fraud_cards, in_days
from models.threshold import choose_threshold

HANDBOOK_TRAIN_START = dt.date(2018, 7, 25)


def latest_split(spark: SparkSession, cfg: Config, shape: Split) -> Split:
    """`shape` moved so that its test days end with the newest day of `clean_transactions`: what a scheduled
    retraining fits on (the newest training week whose test week is complete). `run` then builds the
    features of the days cleaned since the last build."""
    path = cfg.table_path("clean_transactions")
    newest = (
        spark.read.format("delta").load(path).agg(F.max("tx_date")).collect()[0][0]
        if table_exists(spark, path)
        else None
    )
    if newest is None:
        raise FraudError(
            f"--latest: expected transactions in clean_transactions ({path}), found none: "
            "run `fraud clean --input RAW` first, or pass --input"
        )
    span = shape.train_days + shape.delay_days + shape.test_days
    return dataclasses.replace(shape, train_start=newest + dt.timedelta(days=1 - span))


def load_window(
    spark: SparkSession, cfg: Config, split: Split, label_delay_hours: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rows of the split's days, frauds from the training start to the test end) as pandas: only the split's
    days, never the whole set."""
    features = build_features.read_features(spark, cfg, label_delay_hours)
    if features is None:
        build_features.run(spark, cfg, label_delay_hours)
        features = build_features.read_features(spark, cfg, label_delay_hours)
    assert features is not None
    window = features.where((F.col("tx_date") >= F.lit(split.train_start)) & (F.col("tx_date") < F.lit(split.test_end)))
    rows = window.toPandas()
    # the handbook's known frauds start with the training window (not the whole history)
    frauds = (
        features.where(
            (F.col("tx_fraud") == 1)
            & (F.col("tx_date") >= F.lit(split.train_start))
            & (F.col("tx_date") < F.lit(split.test_end))
        )
        .select("customer_id", "tx_datetime", "tx_fraud")
        .toPandas()
    )
    return rows, frauds


def train(
    rows: pd.DataFrame,
    frauds: pd.DataFrame,
    split: Split,
    label_delay_hours: int,
    target_recall: float | None,
    max_fpr: float | None,
    params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Fit, choose the threshold, refit, and score the test days (pure: pandas in, results out)."""
    fit_rows = in_days(rows, split.train_start, split.val_start)
    val_rows = in_days(rows, split.val_start, split.train_end)
    train_rows = in_days(rows, split.train_start, split.train_end)
    test_rows = drop_known_fraud_cards(frauds, in_days(rows, split.test_start, split.test_end), label_delay_hours)
    for name, part in (("training", fit_rows), ("validation", val_rows), ("test", test_rows)):
        if len(part) == 0 or part["tx_fraud"].sum() == 0:
            raise ModelError(
                f"the {name} window of {split.as_params()} holds {len(part)} rows and "
                f"{int(part['tx_fraud'].sum()) if len(part) else 0} frauds: it needs both classes; "
                "check --train-start against the data's dates"
            )
    first = catboost_model.fit(fit_rows[FEATURE_NAMES], fit_rows["tx_fraud"], params)
    val_eval = drop_known_fraud_cards(frauds, val_rows, label_delay_hours).copy()
    val_eval["score"] = catboost_model.score(first, val_eval[FEATURE_NAMES])
    threshold, how = choose_threshold(
        val_eval["tx_fraud"].to_numpy(), val_eval["score"].to_numpy(), target_recall, max_fpr
    )
    final = catboost_model.fit(train_rows[FEATURE_NAMES], train_rows["tx_fraud"], params)
    trees = int(final.tree_count_)
    test_eval = test_rows.copy()
    test_eval["score"] = catboost_model.score(final, test_eval[FEATURE_NAMES])
    return {
        "model": final,
        "trees": trees,
        "threshold": threshold,
        "threshold_rule": how,
        "validation": metrics.evaluate(val_eval, threshold),
        "test": metrics.evaluate(test_eval, threshold),
        "test_rows": test_eval,
        "train_rows": len(train_rows),
    }


def _plots(test: pd.DataFrame, threshold: float, model: Any) -> dict[str, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve, roc_curve

    y, s = test["tx_fraud"].to_numpy(), test["score"].to_numpy()
    figs: dict[str, Any] = {}
    fig, ax = plt.subplots(figsize=(5, 5))
    fpr, tpr, _ = roc_curve(y, s)
    ax.plot(fpr, tpr)
    ax.plot([0, 1], [0, 1], "--", color="grey")
    ax.set(xlabel="false-positive rate", ylabel="recall", title="ROC (test)")
    figs["roc.png"] = fig
    fig, ax = plt.subplots(figsize=(5, 5))
    p, r, _ = precision_recall_curve(y, s)
    ax.plot(r, p)
    ax.set(xlabel="recall", ylabel="precision", title="precision-recall (test)")
    figs["precision_recall.png"] = fig
    fig, ax = plt.subplots(figsize=(6, 4))
    bins = np.linspace(0, 1, 51).tolist()
    ax.hist(s[y == 0], bins=bins, alpha=0.6, density=True, label="genuine")
    ax.hist(s[y == 1], bins=bins, alpha=0.6, density=True, label="fraud")
    ax.axvline(threshold, color="black", linestyle="--", label="threshold")
    ax.set(yscale="log", xlabel="score", title="score distribution (test)")
    ax.legend()
    figs["score_distribution.png"] = fig
    m = metrics.at_threshold(y, s, threshold)
    fig, ax = plt.subplots(figsize=(4, 4))
    cells = np.array([[m["tn"], m["fp"]], [m["fn"], m["tp"]]])
    ax.imshow(cells, cmap="Blues")
    for (i, j), v in np.ndenumerate(cells):
        ax.text(j, i, str(v), ha="center", va="center")
    ax.set(
        xticks=[0, 1],
        yticks=[0, 1],
        xticklabels=["genuine", "flagged"],
        yticklabels=["genuine", "fraud"],
        title="confusion at threshold (test)",
    )
    figs["confusion_matrix.png"] = fig
    fig, ax = plt.subplots(figsize=(6, 6))
    importance = pd.Series(model.get_feature_importance(), index=FEATURE_NAMES).sort_values()
    ax.barh(importance.index, importance.to_numpy())
    ax.set(title="feature importance")
    fig.tight_layout()
    figs["feature_importance.png"] = fig
    return figs


def log_and_register(
    cfg: Config, result: dict[str, Any], split: Split, label_delay_hours: int, args: dict[str, Any]
) -> dict[str, Any]:
    """Log the run to MLflow, register the model, move `champion` if it wins; return what happened."""
    import matplotlib.pyplot as plt
    import mlflow
    from mlflow import MlflowClient
    from mlflow.models import infer_signature

    experiment = registry.connect(cfg)
    name = str(cfg.get("mlflow.registered_model"))
    test = result["test_rows"]
    with mlflow.start_run(experiment_id=experiment) as run:
        mlflow.log_params(
            {
                **split.as_params(),
                "label_delay_hours": label_delay_hours,
                "trees": result["trees"],
                "threshold": result["threshold"],
                "threshold_rule": result["threshold_rule"],
                "train_rows": result["train_rows"],
                **{k: v for k, v in args.items() if v is not None},
                **{f"catboost_{k}": v for k, v in catboost_model.DEFAULT_PARAMS.items()},
            }
        )
        mlflow.log_dict({"features": [f.__dict__ for f in FEATURES]}, "features.json")
        for part in ("validation", "test"):
            mlflow.log_metrics(
                {
                    f"{part}_{k}": float(v)
                    for k, v in result[part].items()
                    if isinstance(v, (int, float)) and np.isfinite(v)
                }
            )
        for file, fig in _plots(test, result["threshold"], result["model"]).items():
            mlflow.log_figure(fig, f"plots/{file}")
            plt.close(fig)
        example = test[FEATURE_NAMES].head(5)
        info = mlflow.catboost.log_model(
            result["model"],
            name="model",
            registered_model_name=name,
            input_example=example,
            signature=infer_signature(example, catboost_model.score(result["model"], example).to_numpy()),
        )
        version = str(info.registered_model_version)
    client = MlflowClient()
    for key, value in (
        ("threshold", result["threshold"]),
        ("label_delay_hours", label_delay_hours),
        ("features", ",".join(FEATURE_NAMES)),
        ("test_start", split.test_start),
        ("test_end", split.test_end),
        ("run_id", run.info.run_id),
    ):
        client.set_model_version_tag(name, version, key, str(value))
    alias, reason = _promote(cfg, client, name, version, test, result["test"]["average_precision"])
    return {"run_id": run.info.run_id, "model": name, "version": version, "alias": alias, "reason": reason}


def _promote(cfg: Config, client: Any, name: str, version: str, test: pd.DataFrame, ap: float) -> tuple[str, str]:
    """`champion` if there is none or the new version has a higher average precision on the same test rows."""
    from mlflow.exceptions import MlflowException

    try:
        current = client.get_model_version_by_alias(name, "champion")
    except MlflowException:
        client.set_registered_model_alias(name, "champion", version)
        return "champion", "there was no champion yet"
    champion, tags, _ = registry.load(cfg, current.version)
    expected = tags.get("features", "").split(",")
    if expected != FEATURE_NAMES:
        client.set_registered_model_alias(name, "champion", version)
        return "champion", f"the champion (version {current.version}) used other features: not comparable, replaced"
    champion_ap = metrics.evaluate(test.assign(score=catboost_model.score(champion, test[FEATURE_NAMES])))[
        "average_precision"
    ]
    if ap > champion_ap:
        client.set_registered_model_alias(name, "champion", version)
        return "champion", (
            f"average precision {ap:.4f} beats the champion's (version {current.version}) "
            f"{champion_ap:.4f} on the same test days"
        )
    client.set_registered_model_alias(name, "challenger", version)
    return "challenger", (
        f"average precision {ap:.4f} does not beat the champion's (version {current.version}) "
        f"{champion_ap:.4f} on the same test days: the champion stays"
    )


def run(
    spark: SparkSession,
    cfg: Config,
    split: Split,
    label_delay_hours: int,
    input_path: str | None = None,
    target_recall: float | None = None,
    max_fpr: float | None = 0.05,
    register: bool = True,
    latest: bool = False,
) -> dict[str, Any]:
    """Train on `split` (with `latest`, `split` moved to end with the newest data, see `latest_split`)."""
    if input_path:
        clean.run(spark, cfg, input_path)
    if latest:
        split = latest_split(spark, cfg, split)
    build_features.run(spark, cfg, label_delay_hours)  # the days clean_transactions added or changed, if any
    rows, frauds = load_window(spark, cfg, split, label_delay_hours)
    try:
        result = train(rows, frauds, split, label_delay_hours, target_recall, max_fpr)
    except ModelError as exc:
        raise FraudError(str(exc)) from exc
    summary = {
        "split": split.as_params(),
        "label_delay_hours": label_delay_hours,
        "trees": result["trees"],
        "threshold": result["threshold"],
        "threshold_rule": result["threshold_rule"],
        "validation": result["validation"],
        "test": result["test"],
    }
    if register:
        summary["registry"] = log_and_register(
            cfg, result, split, label_delay_hours, {"target_recall": target_recall, "max_fpr": max_fpr}
        )
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", help="raw files to clean first (else the tables under --lake are used)")
    start = parser.add_mutually_exclusive_group()
    start.add_argument(
        "--train-start",
        type=dt.date.fromisoformat,
        default=HANDBOOK_TRAIN_START,
        help="first training day (default 2018-07-25, the handbook's)",
    )
    start.add_argument(
        "--latest",
        action="store_true",
        help="instead: start training so that the test days end with the newest day of clean_transactions "
        "(for scheduled retraining)",
    )
    parser.add_argument("--train-days", type=int, default=7)
    parser.add_argument("--delay-days", type=int, default=7, help="days between training and test (default 7)")
    parser.add_argument("--test-days", type=int, default=7)
    parser.add_argument("--val-days", type=int, default=2, help="last training days used for validation (default 2)")
    parser.add_argument("--label-delay", default="7d", help="how late fraud labels are known: 7d, 1d, 1h (default 7d)")
    parser.add_argument(
        "--max-fpr",
        type=float,
        default=0.05,
        help="the false-positive budget the threshold never exceeds on validation (default 0.05, the "
        "bank's): the highest recall within it",
    )
    parser.add_argument(
        "--target-recall", type=float, help="instead: the lowest FPR reaching this recall within the budget (if it can)"
    )
    parser.add_argument("--no-register", action="store_true", help="train and report, without MLflow")
    add_common_options(parser)


def execute(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    try:
        split = Split(args.train_start, args.train_days, args.delay_days, args.test_days, args.val_days)
        delay = parse_delay(args.label_delay)
        for option, value in (("--max-fpr", args.max_fpr), ("--target-recall", args.target_recall)):
            if value is not None and not 0 < value <= 1:
                raise ValueError(f"{option}: expected a rate above 0 and at most 1, found {value:g}")
    except (ValueError, ModelError) as exc:
        raise FraudError(str(exc)) from exc
    if args.input:
        check_input(args.input)  # before the JVM starts
    summary = run(
        get_spark(cfg, "train"),
        cfg,
        split,
        delay,
        args.input,
        args.target_recall,
        args.max_fpr,
        register=not args.no_register,
        latest=args.latest,
    )
    print(json.dumps(summary, indent=2, default=str))
    return 0


main = job_main("fraud train", __doc__, add_arguments, execute)


if __name__ == "__main__":
    sys.exit(main())
