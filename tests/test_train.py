"""`fraud train` and `fraud evaluate` with a real MLflow store (PostgreSQL, as in production, or SQLite, the
local default; local artifacts): the run's parameters, metrics and plots, the registered model and its
signature, and the promotion rule."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest

from features.definitions import FEATURE_NAMES
from jobs.batch import build_features, clean, evaluate, train
from jobs.core.config import Config, load_config
from jobs.simulation.simulate import simulate_to_folder
from jobs.simulation.simulator import make_spec
from models.split import Split

pytestmark = pytest.mark.integration
SPLIT = Split(dt.date(2018, 5, 6), train_days=7, delay_days=7, test_days=7, val_days=2)


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    out = tmp_path_factory.mktemp("raw")
    simulate_to_folder(make_spec("handbook", days=60, customers=400, terminals=800), out)
    return out


@pytest.fixture(scope="module")
def lakes(spark, raw, tmp_path_factory) -> dict[str, Path]:
    """The raw files cleaned as a daily schedule leaves them, once for the module; a test copies one:
    "stale", features built when only the first 30-day file was cleaned, then the next file cleaned; and
    "built", the same with the features of the new days built too."""
    stale, built = (tmp_path_factory.mktemp("lakes") / name for name in ("stale", "built"))
    cfg = load_config("local", {"paths.lake": str(stale)})
    clean.run(spark, cfg, str(sorted(raw.glob("*.txt"))[0]))
    build_features.run(spark, cfg, 168)
    clean.run(spark, cfg, str(raw))
    shutil.copytree(stale, built)
    build_features.run(spark, load_config("local", {"paths.lake": str(built)}), 168)
    return {"stale": stale, "built": built}


def copy_lake(source: Path, cfg: Config) -> None:
    shutil.copytree(source, cfg.path("paths.lake"))


@pytest.fixture
def cfg(make_cfg, tmp_path):
    return make_cfg(
        mlflow__tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", mlflow__artifact_location=str(tmp_path / "artifacts")
    )


@pytest.fixture
def pg_cfg(make_cfg, tmp_path, pg_database):
    return make_cfg(mlflow__tracking_uri=pg_database, mlflow__artifact_location=str(tmp_path / "artifacts"))


def test_train_logs_registers_and_promotes(spark, pg_cfg, lakes):
    cfg = pg_cfg
    import mlflow
    from mlflow import MlflowClient

    # a deliberately weak first model: one shallow tree
    copy_lake(lakes["built"], cfg)
    rows, frauds = train.load_window(spark, cfg, SPLIT, 168)
    weak = train.train(rows, frauds, SPLIT, 168, 0.98, None, params={"iterations": 1, "depth": 1})
    first = train.log_and_register(cfg, weak, SPLIT, 168, {})
    assert (first["version"], first["alias"], first["reason"]) == ("1", "champion", "there was no champion yet")

    summary = train.run(spark, cfg, SPLIT, 168)
    second = summary["registry"]
    assert (second["version"], second["alias"]) == ("2", "champion"), second
    assert second["reason"].startswith("average precision ") and "beats the champion's (version 1)" in second["reason"]
    assert summary["test"]["roc_auc"] > 0.75 and summary["test"]["frauds"] > 0
    # the threshold keeps the bank's FPR budget on validation, whether or not it reaches 98% recall there
    assert "FPR <= 0.05" in summary["threshold_rule"] and summary["validation"]["fpr"] <= 0.05

    third = train.log_and_register(cfg, weak, SPLIT, 168, {})  # a weaker model leaves the champion in place
    assert (third["version"], third["alias"]) == ("3", "challenger")
    assert "does not beat the champion's (version 2)" in third["reason"]

    client = MlflowClient()
    assert str(client.get_model_version_by_alias("fraud-detector", "champion").version) == "2"
    run = client.get_run(second["run_id"])
    assert run.data.params["test_start"] == "2018-05-20" and run.data.params["label_delay_hours"] == "168"
    assert {
        "test_roc_auc",
        "test_average_precision",
        "test_card_precision_at_100",
        "test_recall",
        "test_fpr",
        "test_recall_at_fpr_1pct",
        "test_recall_at_fpr_5pct",
        "validation_recall",
    } <= set(run.data.metrics)
    artifacts = {a.path for a in client.list_artifacts(second["run_id"], "plots")}
    assert artifacts == {
        f"plots/{p}"
        for p in (
            "roc.png",
            "precision_recall.png",
            "score_distribution.png",
            "confusion_matrix.png",
            "feature_importance.png",
        )
    }
    tags = client.get_model_version("fraud-detector", "2").tags
    assert tags["features"].split(",") == FEATURE_NAMES and float(tags["threshold"]) == summary["threshold"]
    model = mlflow.pyfunc.load_model("models:/fraud-detector@champion")
    assert [c.name for c in model.metadata.get_input_schema().inputs] == FEATURE_NAMES


def test_a_refused_login_to_the_tracking_database_is_a_clear_error(pg_cfg, monkeypatch):
    from jobs.core import registry
    from jobs.core.errors import FraudError

    monkeypatch.setenv("PGPASSWORD", "not-the-password")
    with pytest.raises(FraudError) as error:
        registry.connect(pg_cfg)
    message = str(error.value)
    assert message.startswith("mlflow.tracking_uri: could not log in to postgresql+psycopg://t_")
    assert "password authentication failed" in message and "PGPASSWORD" in message
    assert "not-the-password" not in message


def test_evaluate_reproduces_the_test_metrics_and_writes_scores(spark, cfg, raw, lakes, tmp_path):
    # features built when only the first 30-day file was cleaned; then the next file arrived
    copy_lake(lakes["stale"], cfg)
    # --latest: the test week ends with the data's last day, 2018-05-30 (60 days from 2018-04-01), and the
    # features, which ended on 2018-04-30, get the days from 2018-05-01 first (fraud features, incremental)
    summary = train.run(spark, cfg, SPLIT, 168, latest=True)
    assert summary["split"] | {"delay_days": "7"} == {
        "train_start": "2018-05-10",
        "val_start": "2018-05-15",
        "train_end": "2018-05-17",
        "test_start": "2018-05-24",
        "test_end": "2018-05-31",
        "delay_days": "7",
    }
    out = evaluate.run(spark, cfg, str(raw), "champion", dt.date(2018, 5, 24), 7, str(tmp_path / "scores"))
    for key in ("roc_auc", "average_precision", "card_precision_at_100", "recall", "fpr", "recall_at_fpr_5pct"):
        assert out[key] == pytest.approx(summary["test"][key]), key
    scores = spark.read.format("delta").load(str(tmp_path / "scores"))
    assert scores.columns == ["transaction_id", "score"] and scores.count() == out["scored"]
    assert out["scored"] > out["evaluated"] > 0


def test_cli_errors_are_clear(spark, cfg, raw, lakes, capsys, tmp_path):
    from jobs.cli import main

    common = ["--lake", cfg.path("paths.lake"), "--mlflow-uri", cfg.path("mlflow.tracking_uri")]
    assert (
        main(
            [
                "evaluate",
                "--input",
                str(raw),
                "--model",
                "champion",
                "--test-start",
                "2018-05-20",
                "--scores-out",
                str(tmp_path / "s"),
                *common,
            ]
        )
        == 2
    )
    assert "--model champion: no such version or alias of registered model 'fraud-detector'" in capsys.readouterr().err
    copy_lake(lakes["built"], cfg)  # a window before the data's first day holds nothing to train on
    assert main(["train", "--train-start", "2017-01-01", "--no-register", *common]) == 2
    assert "the training window of" in capsys.readouterr().err
    empty = ["--lake", str(tmp_path / "empty-lake"), "--mlflow-uri", cfg.path("mlflow.tracking_uri")]
    assert main(["train", "--latest", "--no-register", *empty]) == 2
    assert "--latest: expected transactions in clean_transactions (" in capsys.readouterr().err
    assert main(["train", "--label-delay", "soon", *common]) == 2
    assert "label delay must look like 7d, 1d or 1h, found 'soon'" in capsys.readouterr().err
    assert main(["train", "--max-fpr", "5", *common]) == 2
    assert "--max-fpr: expected a rate above 0 and at most 1, found 5" in capsys.readouterr().err
