"""Kill -9 the streaming job mid-stream, start it again: no transaction missing or duplicated in `scores`."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.definitions import FEATURE_NAMES
from jobs import kafka_broker
from jobs.produce import produce, raw_lines
from jobs.simulate import simulate_to_folder
from jobs.simulator import make_spec

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parent.parent


def register_model(tracking_uri: str, artifacts: Path, label_delay_hours: int = 24) -> str:
    """A small CatBoost model on random features that flags amounts above 220 (the simulator's scenario 1, a
    realistic share of alerts), registered as champion with the tags the stream reads."""
    import mlflow
    from catboost import CatBoostClassifier
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(tracking_uri)
    found = mlflow.get_experiment_by_name("restart")
    experiment = found.experiment_id if found else mlflow.create_experiment("restart", artifact_location=artifacts.as_uri())
    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.random((400, len(FEATURE_NAMES))), columns=FEATURE_NAMES)
    x["tx_amount"] *= 300
    model = CatBoostClassifier(iterations=5, verbose=False, allow_writing_files=False).fit(x, x["tx_amount"] > 220)
    with mlflow.start_run(experiment_id=experiment):
        info = mlflow.catboost.log_model(model, name="model", registered_model_name="fraud-detector")
    client = MlflowClient()
    for key, value in (("threshold", "0.5"), ("label_delay_hours", str(label_delay_hours)),
                       ("features", ",".join(FEATURE_NAMES))):
        client.set_model_version_tag("fraud-detector", info.registered_model_version, key, value)
    client.set_registered_model_alias("fraud-detector", "champion", info.registered_model_version)
    return str(info.registered_model_version)


def test_the_stream_follows_the_champion_alias_between_batches(spark, make_cfg, tmp_path):
    from jobs.score_stream import ModelHolder

    tracking = f"sqlite:///{tmp_path}/mlflow.db"
    cfg = make_cfg(mlflow__tracking_uri=tracking)
    assert register_model(tracking, tmp_path / "artifacts") == "1"
    holder = ModelHolder(cfg, spark, "champion")
    holder.refresh()
    first = holder.broadcast
    assert (holder.version, holder.label_delay_hours, holder.threshold) == ("1", 24, 0.5)
    holder.refresh()
    assert holder.broadcast is first  # the alias did not move: nothing reloaded
    assert register_model(tracking, tmp_path / "artifacts") == "2"
    holder.refresh()
    assert holder.version == "2" and holder.broadcast is not first
    assert register_model(tracking, tmp_path / "artifacts", label_delay_hours=168) == "3"
    holder.refresh()
    assert holder.version == "2"  # the running state serves a 24-hour label delay: version 3 waits for a restart


def commits(table: Path) -> int:
    return len(list((table / "_delta_log").glob("*.json")))


def test_kill_9_and_restart_loses_and_duplicates_nothing(spark, broker, make_cfg, topic_names, tmp_path):
    raw = tmp_path / "raw"
    simulate_to_folder(make_spec("handbook", days=10, customers=300, terminals=500), raw)
    kafka_broker.create_topics(broker.bootstrap_servers, topic_names.values(), partitions=2)
    tracking = f"sqlite:///{tmp_path}/mlflow.db"
    register_model(tracking, tmp_path / "artifacts")
    cfg = make_cfg(kafka__bootstrap_servers=broker.bootstrap_servers,
                   kafka__topics__transactions=topic_names["transactions"], kafka__topics__alerts=topic_names["alerts"],
                   kafka__topics__labels=topic_names["labels"])
    lines = list(raw_lines(raw))
    produce(cfg, iter(lines))

    command = [str(ROOT / ".venv/bin/fraud"), "stream", "--available-now", "--lake", cfg.path("paths.lake"),
               "--checkpoint", cfg.path("paths.checkpoint"), "--bootstrap-servers", broker.bootstrap_servers,
               "--mlflow-uri", tracking,
               "--set", f"kafka.topics.transactions={topic_names['transactions']}",
               "--set", f"kafka.topics.alerts={topic_names['alerts']}",
               "--set", f"kafka.topics.labels={topic_names['labels']}",
               "--set", "kafka.max_offsets_per_trigger=400", "--set", "stream.state_buckets=2",
               "--set", "stream.metrics_port=0", "--set", "spark.ui_enabled=false",
               "--set", "spark.extra.spark.driver.memory=1g"]
    scores = Path(cfg.table_path("scores"))
    log = (tmp_path / "first.log").open("w")
    first = subprocess.Popen(command, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 240
    while commits(scores) < 3 and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert first.poll() is None, f"the job ended before it could be killed:\n{(tmp_path / 'first.log').read_text()[-3000:]}"
    os.killpg(first.pid, signal.SIGKILL)  # the driver and its JVM, mid-stream
    first.wait()
    partial = spark.read.format("delta").load(str(scores)).count()
    assert 0 < partial < len(lines)

    second = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=420)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    ids = [r.transaction_id for r in spark.read.format("delta").load(str(scores)).select("transaction_id").collect()]
    assert len(ids) == len(lines) and sorted(ids) == list(range(len(lines)))
    alerts = spark.read.format("delta").load(cfg.table_path("alerts"))
    assert alerts.count() == alerts.select("alert_id").distinct().count()
