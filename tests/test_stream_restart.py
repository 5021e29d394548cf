"""The stream through a broker outage, and its model holder following the registry: no transaction missing or
duplicated in `scores`. The kill -9 restart test runs with everything on the cluster's servers
(tests/test_cluster.py)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.definitions import FEATURE_NAMES
from jobs.core.waiting import wait_until
from jobs.dev import kafka_broker, kafka_topics
from jobs.kafka_tools.produce import produce, raw_lines
from jobs.simulation.simulate import simulate_to_folder
from jobs.simulation.simulator import make_spec

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parent.parent
OUTAGE_SECONDS = 20  # how long the broker stays down


def register_model(tracking_uri: str, artifacts: Path | str, label_delay_hours: int = 24) -> str:
    """A small CatBoost model on random features that flags amounts above 220 (the simulator's scenario 1, a
    realistic share of alerts), registered as champion with the tags the stream reads. `artifacts`: a folder,
    or a URI (s3://...)."""
    import mlflow
    from catboost import CatBoostClassifier
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(tracking_uri)
    found = mlflow.get_experiment_by_name("restart")
    location = artifacts.as_uri() if isinstance(artifacts, Path) else artifacts
    experiment = found.experiment_id if found else mlflow.create_experiment("restart", artifact_location=location)
    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.random((400, len(FEATURE_NAMES))), columns=FEATURE_NAMES)
    x["tx_amount"] *= 300
    model = CatBoostClassifier(iterations=5, verbose=False, allow_writing_files=False).fit(x, x["tx_amount"] > 220)
    with mlflow.start_run(experiment_id=experiment):
        info = mlflow.catboost.log_model(model, name="model", registered_model_name="fraud-detector")
    client = MlflowClient()
    for key, value in (
        ("threshold", "0.5"),
        ("label_delay_hours", str(label_delay_hours)),
        ("features", ",".join(FEATURE_NAMES)),
    ):
        client.set_model_version_tag("fraud-detector", info.registered_model_version, key, value)
    client.set_registered_model_alias("fraud-detector", "champion", info.registered_model_version)
    return str(info.registered_model_version)


def test_the_stream_follows_the_champion_alias_between_batches(spark, make_cfg, tmp_path, pg_database):
    """On the production registry's database, PostgreSQL."""
    from jobs.stream.model_holder import ModelHolder

    tracking = pg_database
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


def test_a_broker_stopped_for_20_seconds_mid_stream_loses_and_duplicates_nothing(spark, make_cfg, tmp_path):
    """The job keeps running through a broker outage (its consumer and the alerts producer wait and retry),
    and every transaction sent before and after is scored exactly once."""
    from jobs.core.metrics import StreamMetrics
    from jobs.stream import score_stream
    from tests.conftest import free_port

    spec = kafka_broker.BrokerSpec(
        state_dir=tmp_path / "own-broker",
        jars_dir=ROOT / ".jars/kafka",
        port=free_port(),
        controller_port=free_port(),
        partitions=2,
        log_level="WARN",
    )
    kafka_broker.start(spec)
    try:
        kafka_topics.create_topics(spec.bootstrap_servers, ["transactions", "alerts", "labels"], partitions=2)
        tracking = f"sqlite:///{tmp_path}/mlflow.db"
        register_model(tracking, tmp_path / "artifacts")
        cfg = make_cfg(
            kafka__bootstrap_servers=spec.bootstrap_servers,
            mlflow__tracking_uri=tracking,
            stream__trigger_interval="1 second",
            stream__metrics_port=0,
            kafka__max_offsets_per_trigger=100,
        )
        raw = tmp_path / "raw"
        simulate_to_folder(make_spec("handbook", days=6, customers=200, terminals=300), raw)
        lines = list(raw_lines(raw))
        thirds = [lines[: len(lines) // 3], lines[len(lines) // 3 : 2 * len(lines) // 3], lines[2 * len(lines) // 3 :]]
        query = score_stream.start(spark, cfg, available_now=False, metrics=StreamMetrics())
        scores = Path(cfg.table_path("scores"))

        def scored() -> int:
            # the log folder exists before its first commit is written
            return spark.read.format("delta").load(str(scores)).count() if commits(scores) else 0

        def wait_for(count: int, seconds: float) -> None:
            wait_until(lambda: scored() >= count, f"{count} transactions in `scores`", seconds, query=query)

        produce(cfg, iter(thirds[0]))
        wait_for(len(thirds[0]), 180)
        produce(cfg, iter(thirds[1]))
        # the broker goes while the second third is in flight: some of it scored, not all (100 a micro-batch)
        wait_for(len(thirds[0]) + 1, 120)
        kafka_broker.stop(spec)
        in_flight = len(thirds[0]) + len(thirds[1]) - scored()
        assert in_flight > 0, "the second third was all scored before the broker went: nothing was in flight"
        time.sleep(OUTAGE_SECONDS)  # the outage itself: the Kafka source's consumers retry meanwhile
        assert query.isActive, f"the query died while the broker was down: {query.exception()}"
        kafka_broker.start(spec)
        produce(cfg, iter(thirds[2]))
        wait_for(len(lines), 240)
        assert query.isActive, f"the query died after the broker came back: {query.exception()}"
        query.stop()
        ids = [
            r.transaction_id for r in spark.read.format("delta").load(str(scores)).select("transaction_id").collect()
        ]
        assert len(ids) == len(lines) and sorted(ids) == list(range(len(lines)))
    finally:
        kafka_broker.stop(spec)
