"""Hyper-parameter selection by prequential validation, as the handbook selects its tuned models.

    .venv/bin/python benchmarks/model_selection.py

On the `handbook` preset (7-day label delay), each CatBoost setting of a small grid is fitted on four
validation folds (training weeks starting 2018-07-11, 07-04, 06-27, 06-20; each tested 14 days after its
training start) and on the four test folds of the prequential protocol (training weeks starting 07-25,
08-01, 08-08, 08-15). The setting with the best mean validation average precision is the selected one;
its test means are what the handbook's "prequential, tuned" figures compare with. Each fit uses the whole
training week and a fixed number of trees (scores at 100, 200, 400, 600 trees from one fit).
Prints one JSON object and keeps it in benchmarks/results/model_selection.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from benchmarks.common import report  # noqa: E402
from features.definitions import FEATURE_NAMES  # noqa: E402
from jobs.batch import build_features, clean  # noqa: E402
from jobs.core.config import load_config  # noqa: E402
from jobs.core.session import get_spark  # noqa: E402
from jobs.simulation.simulate import simulate_to_folder  # noqa: E402
from jobs.simulation.simulator import make_spec  # noqa: E402
from models import catboost_model, metrics  # noqa: E402
from models.split import drop_known_fraud_cards, in_days  # noqa: E402

DELAY = 168
DAY = dt.timedelta(days=1)
TEST_FOLDS = [dt.date(2018, 7, 25) + 7 * i * DAY for i in range(4)]
VALIDATION_FOLDS = [dt.date(2018, 7, 11) - 7 * i * DAY for i in range(4)]
TREES = (100, 200, 400, 600)
GRID = {"depth": (4, 6, 8), "learning_rate": (0.03, 0.1), "auto_class_weights": (None, "SqrtBalanced")}
KEYS = ("roc_auc", "average_precision", "card_precision_at_100")


def fold(features: pd.DataFrame, start: dt.date) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(training week, test week 14 days later without the cards already known as compromised)."""
    history = in_days(features, start, start + 21 * DAY)
    test = drop_known_fraud_cards(history, in_days(features, start + 14 * DAY, start + 21 * DAY), DELAY)
    return in_days(features, start, start + 7 * DAY), test


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-selection-"))
    started = time.perf_counter()
    try:
        cfg = load_config("local", {"paths.lake": str(work / "lake"), "spark.ui_enabled": False})
        spark = get_spark(cfg, "bench-selection")
        simulate_to_folder(make_spec("handbook"), work / "raw")
        clean.run(spark, cfg, str(work / "raw"))
        build_features.run(spark, cfg, DELAY)
        table = build_features.read_features(spark, cfg, DELAY)
        assert table is not None
        features = table.where("tx_date >= '2018-06-20' AND tx_date < '2018-09-05'").toPandas()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    folds = {start: fold(features, start) for start in VALIDATION_FOLDS + TEST_FOLDS}
    results = []
    for values in itertools.product(*GRID.values()):
        params = dict(zip(GRID, values))
        per_fold: dict[tuple[dt.date, int], tuple[float, ...]] = {}
        for start, (train, test) in folds.items():
            model = catboost_model.fit(
                train[FEATURE_NAMES], train["tx_fraud"], params={**params, "iterations": max(TREES)}
            )
            for i, proba in enumerate(model.staged_predict_proba(test[FEATURE_NAMES], eval_period=min(TREES))):
                trees = (i + 1) * min(TREES)
                if trees in TREES:
                    m = metrics.evaluate(test.assign(score=proba[:, 1]))
                    per_fold[(start, trees)] = tuple(m[k] for k in KEYS)
        for trees in TREES:
            mean = {
                part: dict(zip(KEYS, np.mean([per_fold[(s, trees)] for s in starts], axis=0).round(4).tolist()))
                for part, starts in (("validation", VALIDATION_FOLDS), ("test", TEST_FOLDS))
            }
            results.append({"params": {**params, "iterations": trees}, **mean})
            print(json.dumps(results[-1]), flush=True)
    best = max(results, key=lambda r: r["validation"]["average_precision"])
    out = {
        "benchmark": "model_selection",
        "features": FEATURE_NAMES,
        "selected_by": "mean validation average precision",
        "selected": best,
        "published_prequential_tuned": {"roc_auc": 0.879, "average_precision": 0.694, "card_precision_at_100": 0.305},
        "grid": results,
        "seconds": round(time.perf_counter() - started),
    }
    report(out, "model_selection", not args.no_save, shown={k: v for k, v in out.items() if k != "grid"})


if __name__ == "__main__":
    main()
