"""`fraud stream` on a Spark standalone cluster, submitted the way a platform team submits it
(`spark-submit/submit.sh --master spark://...`, client mode: Spark has no cluster mode for Python applications
on standalone). A Master and a Worker of the venv's pyspark run on this machine; the job gets two executors of
one core. One executor is killed with `kill -9` while payments arrive: the Master has the Worker start
another, the query goes on, and every payment is in `scores` or `dead_letters` exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jobs.core.config import Config
from jobs.core.waiting import wait_until
from jobs.dev.kafka_broker import free_port
from jobs.kafka_tools.produce import produce, raw_lines
from jobs.simulation.simulate import simulate_to_folder
from jobs.simulation.simulator import make_spec
from tests import servers
from tests.test_stream_restart import register_model

ROOT = Path(__file__).resolve().parents[1]
SPARK_HOME = Path(
    subprocess.run(
        [str(ROOT / ".venv/bin/python"), "-c", "import pyspark, os; print(os.path.dirname(pyspark.__file__))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
)

pytestmark = pytest.mark.integration


def processes(main_class: str) -> list[int]:
    """The pids of this machine's JVMs whose command line names `main_class` (an executor:
    CoarseGrainedExecutorBackend)."""
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                command = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            # the JVM itself, not a shell that started it (YARN's containers start theirs through bash)
            if main_class.encode() in command and command.split(b"\0")[0].endswith(b"/java"):
                found.append(int(pid))
    return found


def executors() -> list[int]:
    return processes("CoarseGrainedExecutorBackend")


@pytest.fixture
def standalone(tmp_path: Path) -> Iterator[str]:
    """A Master and one Worker (2 cores, 3 GiB) on free ports; yields the master's URL."""
    port, worker_dir = free_port(), tmp_path / "worker"
    worker_dir.mkdir()
    env = {**os.environ, "SPARK_HOME": str(SPARK_HOME), "SPARK_LOCAL_IP": "127.0.0.1"}
    spark_class = str(SPARK_HOME / "bin/spark-class")
    master = subprocess.Popen(
        [
            spark_class,
            "org.apache.spark.deploy.master.Master",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--webui-port",
            str(free_port()),
        ],
        cwd=tmp_path,
        stdout=(tmp_path / "master.log").open("wb"),
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    url = f"spark://127.0.0.1:{port}"
    worker = None
    try:
        servers.wait_ready(
            master,
            lambda: "I have been elected leader" in (tmp_path / "master.log").read_text(),
            "the standalone Master",
            tmp_path / "master.log",
            120,
        )
        worker = subprocess.Popen(
            [
                spark_class,
                "org.apache.spark.deploy.worker.Worker",
                "--cores",
                "2",
                "--memory",
                "3g",
                "--work-dir",
                str(worker_dir),
                "--webui-port",
                str(free_port()),
                url,
            ],
            cwd=tmp_path,
            stdout=(tmp_path / "worker.log").open("wb"),
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        servers.wait_ready(
            worker,
            lambda: "Successfully registered with master" in (tmp_path / "worker.log").read_text(),
            "the standalone Worker",
            tmp_path / "worker.log",
            120,
        )
        yield url
    finally:
        servers.stop(worker)
        servers.stop(master)


def job_settings(cfg: Config) -> list[str]:
    """The job's options: this test's broker, topics, lake, checkpoints and registry; the master comes from
    spark-submit (`spark.master=null`)."""
    keys = [
        "kafka.bootstrap_servers",
        "mlflow.tracking_uri",
        "paths.lake",
        "paths.checkpoint",
        *(f"kafka.topics.{role}" for role in ("transactions", "alerts", "labels")),
    ]
    values = {key: cfg.get(key) for key in keys}
    values |= {
        "spark.master": "null",
        "spark.ui_enabled": "false",
        "stream.metrics_port": 0,
        "stream.seed_from_history": "false",
        "kafka.starting_offsets": "earliest",
    }
    return [arg for key, value in values.items() for arg in ("--set", f"{key}={value}")]


def submit_stream(master: list[str], cfg: Config, env: dict[str, str], log: Path) -> subprocess.Popen:
    """`fraud stream` submitted by spark-submit/submit.sh with the `master` options, its output in `log`."""
    return subprocess.Popen(
        [
            str(ROOT / "spark-submit/submit.sh"),
            *master,
            "jobs/stream/score_stream.py",
            "--env",
            "local",
            *job_settings(cfg),
        ],
        cwd=ROOT,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )


def payments_in_tables(spark: Any, cfg: Config, job: subprocess.Popen, log: Path) -> int:
    """Payments in `scores` and `dead_letters`, which `job` writes; an error with its log if it ended. Their
    first commit is looked for on disk, as this session's Delta cache would keep saying there is no table."""
    assert job.poll() is None, f"the job ended ({job.returncode}):\n{log.read_text()[-3000:]}"
    return sum(
        spark.read.format("delta").load(cfg.table_path(table)).count()
        for table in ("scores", "dead_letters")
        if (Path(cfg.table_path(table)) / "_delta_log" / f"{0:020}.json").exists()
    )


def test_the_stream_on_a_standalone_cluster_scores_every_payment_once_through_an_executor_killed(
    spark, standalone, stream_cfg, tmp_path
):
    cfg = stream_cfg()
    register_model(str(cfg.get("mlflow.tracking_uri")), tmp_path / "artifacts")
    raw = tmp_path / "raw"
    simulate_to_folder(make_spec("handbook", days=3, customers=200, terminals=400), raw)
    lines = list(raw_lines(raw))
    first, rest = lines[: len(lines) // 3], lines[len(lines) // 3 :]
    env = servers.short_cluster_job_env(
        {
            **os.environ,
            "SPARK_HOME": str(SPARK_HOME),
            "SPARK_LOCAL_IP": "127.0.0.1",
            "PYSPARK_PYTHON": str(ROOT / ".venv/bin/python"),
            "SPARK_SUBMIT_OPTS_EXTRA": "--total-executor-cores 2 --executor-cores 1 --executor-memory 1g "
            "--driver-memory 1g --conf spark.sql.shuffle.partitions=2",
        }
    )
    log = tmp_path / "driver.log"
    driver = submit_stream(["--master", standalone], cfg, env, log)

    def arrived() -> int:
        return payments_in_tables(spark, cfg, driver, log)

    try:
        wait_until(lambda: len(executors()) == 2, "two executors", 240, 1)
        produce(cfg, iter(first))
        wait_until(lambda: arrived() >= 1, "the first payments scored on the cluster", 300, 1)
        killed = executors()[0]
        os.kill(killed, signal.SIGKILL)
        produce(cfg, iter(rest), rate=400)
        wait_until(lambda: arrived() >= len(lines), f"all {len(lines)} payments in the tables", 600, 2)
        # the Master has the Worker start another executor in place of the killed one
        wait_until(lambda: killed not in (running := executors()) and len(running) == 2, "a new executor", 300, 1)
        assert arrived() == len(lines)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGTERM)
            driver.wait(60)
    ids = [r.transaction_id for r in spark.read.format("delta").load(cfg.table_path("scores")).collect()]
    assert len(ids) == len(set(ids))
