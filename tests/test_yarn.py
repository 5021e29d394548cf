"""The jobs on a real YARN in cluster deploy mode, submitted the way a platform team submits them
(`spark-submit/submit.sh --master yarn --deploy-mode cluster`): Hadoop's MiniYARNCluster on this machine
(tests/yarn.py), the driver inside YARN's ApplicationMaster container, two executors of one core.

- `fraud stream`: payments arrive in four parts; after the first, an executor's container is killed with
  `kill -9` (YARN gives a new one); after the second, the driver's (YARN starts the application's second
  attempt, which resumes from the checkpoint); with the fourth, the query dies (`scores` cannot be written),
  the driver ends with its error and YARN's third attempt resumes once the table is back. Every payment is
  then in `scores` or `dead_letters` exactly once, read from the tables.
- the daily schedule: `fraud clean`, `fraud features` and `fraud train` submitted by the very commands the
  Airflow DAG renders (spark-submit/schedules/dags), one after the other, with the lake on HDFS (Hadoop's
  MiniDFSCluster, tests/hdfs.py); the tables are read back from HDFS and the model is in the registry."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobs.core.config import Config
from jobs.core.waiting import wait_until
from jobs.kafka_tools.produce import produce, raw_lines
from jobs.simulation.simulate import simulate_to_folder
from jobs.simulation.simulator import make_spec
from tests import hdfs, servers, yarn
from tests.test_standalone import ROOT, SPARK_HOME, payments_in_tables, processes, submit_stream
from tests.test_stream_restart import register_model

pytestmark = pytest.mark.integration


@pytest.fixture
def yarn_cluster(tmp_path: Path) -> Iterator[yarn.YarnCluster]:
    """A YARN of the test's own: stopping it ends the applications it runs (the stream's, too)."""
    cluster = yarn.start(tmp_path / "yarn")
    try:
        yield cluster
    finally:
        yarn.stop(cluster)


def yarn_env(cluster: yarn.YarnCluster) -> dict[str, str]:
    """spark-submit's environment for this YARN: its configuration, Python from this checkout's venv on the
    nodes (one machine here), two executors of one core."""
    python = str(ROOT / ".venv/bin/python")
    return {
        **os.environ,
        "SPARK_HOME": str(SPARK_HOME),
        "HADOOP_CONF_DIR": str(cluster.conf_dir),
        "PYSPARK_PYTHON": python,
        "SPARK_SUBMIT_OPTS_EXTRA": "--num-executors 2 --executor-cores 1 --executor-memory 1g --driver-memory 1g "
        f"--conf spark.yarn.maxAppAttempts=3 --conf spark.yarn.appMasterEnv.PYSPARK_PYTHON={python} "
        f"--conf spark.executorEnv.PYSPARK_PYTHON={python} --conf spark.sql.shuffle.partitions=2",
    }


def test_the_stream_in_yarn_cluster_mode_loses_and_duplicates_nothing_through_an_executor_its_driver_and_its_query_lost(
    spark, yarn_cluster, stream_cfg, tmp_path
):
    cfg: Config = stream_cfg()
    register_model(str(cfg.get("mlflow.tracking_uri")), tmp_path / "artifacts")
    raw = tmp_path / "raw"
    simulate_to_folder(make_spec("handbook", days=3, customers=200, terminals=400), raw)
    lines = list(raw_lines(raw))
    quarter = len(lines) // 4
    parts = [lines[:quarter], lines[quarter : 2 * quarter], lines[2 * quarter : 3 * quarter], lines[3 * quarter :]]
    env = servers.short_cluster_job_env(yarn_env(yarn_cluster))
    log = tmp_path / "submit.log"
    submit = submit_stream(["--master", "yarn", "--deploy-mode", "cluster"], cfg, env, log)
    scores = Path(cfg.table_path("scores"))
    aside = scores.with_name("scores.aside")

    def arrived() -> int:
        return payments_in_tables(spark, cfg, submit, log)

    def drivers() -> list[int]:
        return processes("org.apache.spark.deploy.yarn.ApplicationMaster")

    try:
        wait_until(lambda: len(processes("CoarseGrainedExecutorBackend")) == 2, "two executors on YARN", 300, 1)
        produce(cfg, iter(parts[0]))
        wait_until(lambda: arrived() >= len(parts[0]), "the first part scored on YARN", 300, 1)

        killed = processes("CoarseGrainedExecutorBackend")[0]
        os.kill(killed, signal.SIGKILL)
        produce(cfg, iter(parts[1]), rate=400)
        wait_until(lambda: arrived() >= len(parts[0]) + len(parts[1]), "the second part in the tables", 600, 2)
        # YARN gives the application a new container in place of the killed one
        wait_until(
            lambda: killed not in (running := processes("CoarseGrainedExecutorBackend")) and len(running) == 2,
            "a new executor's container",
            300,
            1,
        )

        first_driver = drivers()
        assert len(first_driver) == 1
        os.kill(first_driver[0], signal.SIGKILL)
        wait_until(lambda: drivers() not in ([], first_driver), "YARN's second attempt of the application", 300, 1)
        produce(cfg, iter(parts[2]), rate=400)
        wait_until(lambda: arrived() >= sum(map(len, parts[:3])), "the third part in the tables", 600, 2)

        # the query dies: `scores` cannot be written (a file where its folder was). The driver ends with an error
        # and YARN counts a failed attempt, as for a crash; once the file goes, the third attempt resumes
        second_driver = drivers()
        scores.rename(aside)
        scores.write_text("not a table")
        produce(cfg, iter(parts[3]), rate=400)
        wait_until(lambda: second_driver[0] not in drivers(), "the second attempt ending on its dead query", 300, 0.5)
        scores.unlink()
        aside.rename(scores)
        wait_until(lambda: drivers() not in ([], second_driver), "YARN's third attempt of the application", 300, 1)
        wait_until(lambda: arrived() >= len(lines), f"all {len(lines)} payments in the tables", 600, 2)
        assert arrived() == len(lines)
        # the second attempt's driver (its ApplicationMaster's container, _02_000001) ended with the stream's code
        (second_log,) = yarn_cluster.folder.glob("**/container_*_02_000001/stderr")
        assert "User application exited with status 2" in second_log.read_text()
    finally:  # the application ends with the cluster (the fixture); a bank's would with `yarn application -kill`
        if aside.exists() and not scores.is_dir():
            scores.unlink(missing_ok=True)
            aside.rename(scores)
        if submit.poll() is None:
            os.killpg(submit.pid, signal.SIGKILL)
            submit.wait()
    ids = [r.transaction_id for r in spark.read.format("delta").load(cfg.table_path("scores")).collect()]
    assert len(ids) == len(set(ids))


def test_the_daily_schedule_s_commands_clean_build_features_and_train_on_yarn_with_the_lake_on_hdfs(
    spark, yarn_cluster, tmp_path
):
    from mlflow import MlflowClient

    raw, registry = tmp_path / "raw", f"sqlite:///{tmp_path}/mlflow.db"
    # `fraud train --latest`'s split: 7 training days, 7 of label delay, 7 of test
    simulate_to_folder(make_spec("handbook", days=23, customers=300, terminals=400), raw)
    (tmp_path / "hdfs").mkdir()
    hdfs_cluster = hdfs.start(tmp_path / "hdfs")
    try:
        lake = f"{hdfs_cluster.uri}/bank/lake"
        options = " ".join(
            f"--set {key}={value}"
            for key, value in {
                "spark.master": "null",  # spark-submit's
                "spark.ui_enabled": "false",
                "mlflow.tracking_uri": registry,  # a path every node sees (one machine here)
                "mlflow.artifact_location": tmp_path / "artifacts",
            }.items()
        )
        commands = dag_commands(
            tmp_path / "airflow",
            fraud_home=str(ROOT),
            fraud_master="yarn",
            fraud_deploy_mode="cluster",
            fraud_env="local",
            fraud_raw=str(raw),
            fraud_job_options=f"--lake {lake} {options}",
        )
        for task in ("clean", "features", "train"):  # the daily DAG's chain, on its retraining day
            done = subprocess.run(
                ["bash", "-c", commands[task]],
                env=servers.short_cluster_job_env(yarn_env(yarn_cluster)),
                capture_output=True,
                text=True,
                timeout=900,
            )
            # in cluster mode spark-submit waits for the application and fails if it did
            assert done.returncode == 0, f"{task}: {commands[task]}\n{done.stdout[-3000:]}{done.stderr[-5000:]}"
        expected = json.loads((raw / "_manifest.json").read_text())["expected_cleaning"]["clean"]
        assert spark.read.format("delta").load(f"{lake}/clean_transactions").count() == expected
        assert spark.read.format("delta").load(f"{lake}/features_transactions").count() == expected
    finally:
        hdfs.stop(hdfs_cluster)
    versions = MlflowClient(registry).search_model_versions("name = 'fraud-detector'")
    assert [str(v.version) for v in versions] == ["1"]
    assert str(MlflowClient(registry).get_model_version_by_alias("fraud-detector", "champion").version) == "1"


def dag_commands(home: Path, **variables: str) -> dict[str, str]:
    """The bash command of each task of the daily DAG, as Airflow renders it with these Variables."""
    from tests.test_airflow import probe

    tasks = probe(home, variables)["dags"]["fraud_daily"]["tasks"]
    return {task: v["command_with_variables"] for task, v in tasks.items() if v["command_with_variables"]}
