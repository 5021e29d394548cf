"""`--env cluster` against real servers standing in for the bank's: the lake, the checkpoints and MLflow's
artifacts on S3 (S3Proxy, tests/s3.py), raw files on HDFS (tests/hdfs.py), Kafka over SASL_SSL with a SCRAM
login (the project's own broker, `kafka.security.*`), the registry on PostgreSQL. The stream first runs as a
user runs it, `fraud stream --env cluster` in a process of its own, with its secrets in environment variables
only; its restart, and the cleaning job, run in the tests' session with conf/cluster (a Spark JVM's start
costs a test about a minute). The tests then look for the secrets in every file the jobs wrote."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import secrets
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jobs.core.config import load_config
from jobs.core.kafka_clients import PASSWORD_ENV
from jobs.core.waiting import wait_until
from jobs.dev import kafka_broker, kafka_topics
from jobs.dev.kafka_broker import free_port
from jobs.kafka_tools.produce import produce, raw_lines
from jobs.simulation.simulate import simulate_to_folder
from jobs.simulation.simulator import make_spec
from tests import s3, servers
from tests.test_stream_restart import register_model

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parent.parent
FRAUD = str(ROOT / ".venv/bin/fraud")


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[s3.S3Server]:
    server = s3.start(tmp_path_factory.mktemp("s3"))
    yield server
    s3.stop(server)


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[kafka_broker.BrokerSpec]:
    """The project's broker as `fraud kafka up` runs it with conf/cluster's security settings (SASL_SSL,
    SCRAM-SHA-512, user fraud-detection) and $FRAUD_KAFKA_PASSWORD, on free ports."""
    port = free_port()
    cfg = load_config(
        "cluster",
        {
            "kafka.broker.state_dir": str(tmp_path_factory.mktemp("kafka-sasl")),
            "kafka.broker.port": port,
            "kafka.broker.controller_port": free_port(),
            "kafka.bootstrap_servers": f"127.0.0.1:{port}",
            "kafka.partitions": 2,
        },
    )
    before = os.environ.get(PASSWORD_ENV)
    os.environ[PASSWORD_ENV] = secrets.token_urlsafe(18)
    try:
        spec = dataclasses.replace(kafka_broker.spec_from_config(cfg), topics=(), log_level="WARN")
    finally:
        if before is None:
            os.environ.pop(PASSWORD_ENV)
        else:
            os.environ[PASSWORD_ENV] = before
    kafka_broker.start(spec)
    yield spec
    kafka_broker.stop(spec)


def cluster_settings(
    server: s3.S3Server, broker: kafka_broker.BrokerSpec, bucket: str, tracking: str = "sqlite:///unused.db"
) -> dict[str, Any]:
    """What a platform team sets for its own servers on top of conf/cluster (here: ours), and this machine's
    master. Topic names are the test's own."""
    suffix = uuid.uuid4().hex[:8]
    return {
        **server.overrides(),
        "paths.lake": f"s3a://{bucket}/delta",
        "paths.checkpoint": f"s3a://{bucket}/checkpoints",
        "mlflow.tracking_uri": tracking,
        "mlflow.artifact_location": f"s3://{bucket}/mlflow",
        "kafka.bootstrap_servers": broker.bootstrap_servers,
        "kafka.security.truststore": str(broker.ca_file),
        "kafka.partitions": 2,
        "kafka.starting_offsets": "earliest",
        **{f"kafka.topics.{role}": f"{role}-{suffix}" for role in ("transactions", "alerts", "labels")},
        "spark.master": "local[2]",
        "spark.shuffle_partitions": 2,
        "spark.ui_enabled": False,
        "spark.extra.spark.driver.memory": "1g",
        "stream.metrics_port": 0,
    }


def as_options(settings: dict[str, Any]) -> list[str]:
    return [arg for key, value in settings.items() for arg in ("--set", f"{key}={value}")]


def job_env(server: s3.S3Server, broker: kafka_broker.BrokerSpec, **more: str) -> dict[str, str]:
    """The jobs' environment: the S3 keys and the Kafka password, as a Kubernetes secret would pass them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "FRAUD_", "MLFLOW_S3"))}
    return servers.short_job_env({**env, **server.env, PASSWORD_ENV: str(broker.password), **more})


def use_bucket(spark: Any, server: s3.S3Server, bucket: str) -> None:
    """Give the tests' session S3A settings for this bucket only."""
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    for key, value in {
        "endpoint": server.endpoint,
        "path.style.access": "true",
        "endpoint.region": "us-east-1",
        "access.key": server.access_key,
        "secret.key": server.secret_key,
    }.items():
        conf.set(f"fs.s3a.bucket.{bucket}.{key}", value)


def read_delta(spark: Any, server: s3.S3Server, bucket: str, path: str) -> Any:
    """Read a Delta table of the bucket with the tests' session."""
    use_bucket(spark, server, bucket)
    return spark.read.format("delta").load(f"s3a://{bucket}/{path}")


def files_holding(folders: list[Path], secret_values: list[str]) -> list[str]:
    """Every file under the folders that holds one of the secrets, as `path: which`."""
    found = []
    for folder in folders:
        for path in folder.rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                found += [f"{path}: secret {i}" for i, value in enumerate(secret_values) if value.encode() in data]
    return found


def test_clean_reads_raw_files_from_hdfs_and_s3_and_writes_its_tables_on_s3(spark, s3_server, secure_broker, tmp_path):
    """Raw files land on a real HDFS (Hadoop's MiniDFSCluster), put there with Hadoop's client as a bank's
    landing job would: the cleaning job with conf/cluster reads them from `hdfs://` and writes its tables to S3.
    A later file lands on S3 itself, and the next run takes it from there. Both runs are in the tests' session
    (the stream's kill -9 test below runs a job in a process of its own, with its keys in the environment)."""
    from jobs.batch import clean
    from jobs.core.lake import copy_to_hadoop
    from tests import hdfs

    bucket = "lake-" + uuid.uuid4().hex[:8]
    s3_server.create_bucket(bucket)
    simulated = tmp_path / "simulated"
    simulate_to_folder(make_spec("handbook", days=3, customers=50, terminals=100), simulated)
    header, *rows = next(simulated.glob("*.txt")).read_text().splitlines(keepends=True)
    (tmp_path / "raw").mkdir()
    files = [tmp_path / "raw" / "2018-04-01.txt", tmp_path / "raw" / "2018-04-03.txt"]  # two days, then the third
    files[0].write_text(header + "".join(r for r in rows if ",2018-04-03 " not in r))
    files[1].write_text(header + "".join(r for r in rows if ",2018-04-03 " in r))
    cfg = load_config("cluster", cluster_settings(s3_server, secure_broker, bucket))
    use_bucket(spark, s3_server, bucket)
    (tmp_path / "hdfs").mkdir()
    cluster = hdfs.start(tmp_path / "hdfs")
    try:
        copy_to_hadoop(spark, files[0], f"{cluster.uri}/landing/raw/{files[0].name}")
        report = clean.run(spark, cfg, f"{cluster.uri}/landing/raw")
    finally:
        hdfs.stop(cluster)
    assert report["files"] == [f"{cluster.uri}/landing/raw/{files[0].name}"]
    assert report["rows_read"] == sum(1 for _ in raw_lines(files[0])) > 0
    assert report["clean"] + report["quarantined"] + report["duplicates_removed"] == report["rows_read"]
    keys = s3_server.keys(bucket, "delta/")
    assert any(k.startswith("delta/clean_transactions/_delta_log/") for k in keys)
    assert any(k.startswith("delta/clean_transactions/tx_date=") and k.endswith(".parquet") for k in keys)
    assert read_delta(spark, s3_server, bucket, "delta/clean_transactions").count() == report["clean"] > 0

    s3_server.client().upload_file(str(files[1]), bucket, f"landing/{files[1].name}")
    later = clean.run(spark, cfg, f"s3a://{bucket}/landing")
    assert later["files"] == [f"s3a://{bucket}/landing/{files[1].name}"]
    assert later["rows_read"] == sum(1 for _ in raw_lines(files[1])) > 0
    assert read_delta(spark, s3_server, bucket, "delta/clean_transactions").count() == report["clean"] + later["clean"]


def test_the_stream_on_s3_and_sasl_ssl_loses_and_duplicates_nothing_through_kill_9(
    spark, s3_server, secure_broker, pg_database, tmp_path, monkeypatch
):
    """The restart test of tests/test_stream_restart.py with everything where a bank has it: checkpoint and
    tables on S3, the model's artifacts on S3, the registry on PostgreSQL, Kafka over SASL_SSL. `fraud stream
    --env cluster` is killed mid-stream; the restart resumes its checkpoint."""
    bucket = "lake-" + uuid.uuid4().hex[:8]
    s3_server.create_bucket(bucket)
    settings = cluster_settings(s3_server, secure_broker, bucket, tracking=pg_database)
    cfg = load_config("cluster", settings)
    for key, value in {
        **s3_server.env,
        "MLFLOW_S3_ENDPOINT_URL": s3_server.endpoint,
        PASSWORD_ENV: str(secure_broker.password),
    }.items():
        monkeypatch.setenv(key, value)
    register_model(pg_database, f"s3://{bucket}/mlflow")
    assert any(k.startswith("mlflow/") and k.endswith("model.cb") for k in s3_server.keys(bucket, "mlflow/"))
    kafka_topics.create_topics(
        secure_broker.connection,
        [str(cfg.get(f"kafka.topics.{role}")) for role in ("transactions", "alerts", "labels")],
        partitions=2,
    )
    raw = tmp_path / "raw"
    simulate_to_folder(make_spec("handbook", days=3, customers=200, terminals=400), raw)
    lines = list(raw_lines(raw))
    produce(cfg, iter(lines))

    command = [
        FRAUD,
        "stream",
        "--env",
        "cluster",
        "--available-now",
        *as_options({**settings, "kafka.max_offsets_per_trigger": 400}),
    ]
    env = job_env(s3_server, secure_broker, PGPASSWORD=os.environ["PGPASSWORD"])
    log = (tmp_path / "first.log").open("w")
    first = subprocess.Popen(
        command, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
    )

    def commits() -> int:
        return sum(k.endswith(".json") for k in s3_server.keys(bucket, "delta/scores/_delta_log/"))

    # one micro-batch committed and more to come (or the job ended: said below)
    wait_until(lambda: commits() >= 1 or first.poll() is not None, "the first commit of scores on S3", 300, 0.5)
    assert first.poll() is None, (
        f"the job ended before it could be killed:\n{(tmp_path / 'first.log').read_text()[-3000:]}"
    )
    os.killpg(first.pid, signal.SIGKILL)  # the driver and its JVM, mid-stream
    first.wait()
    log.close()
    partial = read_delta(spark, s3_server, bucket, "delta/scores").count()
    assert 0 < partial < len(lines)

    # the restart, in the tests' session: another JVM than the killed one, on the same checkpoint, tables and
    # servers (a second `fraud stream` process would only add a JVM's start to the suite)
    from jobs.stream import score_stream

    use_bucket(spark, s3_server, bucket)
    with contextlib.redirect_stdout(io.StringIO()) as second:
        score_stream.run(spark, cfg, available_now=True)
    (tmp_path / "second.log").write_text(second.getvalue())
    ids = [
        r.transaction_id
        for r in read_delta(spark, s3_server, bucket, "delta/scores").select("transaction_id").collect()
    ]
    assert len(ids) == len(lines) and sorted(ids) == list(range(len(lines)))
    alerts = read_delta(spark, s3_server, bucket, "delta/alerts")
    assert alerts.count() == alerts.select("alert_id").distinct().count()
    assert any(k.startswith("checkpoints/") for k in s3_server.keys(bucket, "checkpoints/"))

    # no secret in any file the jobs wrote: the bucket (tables, checkpoints, artifacts), the jobs' logs and
    # working folder, the broker's state folder (its configuration refers to the password, never holds it)
    leaks = files_holding(
        [s3_server.folder / "data" / bucket, tmp_path, secure_broker.state_dir],
        [str(secure_broker.password), s3_server.secret_key, os.environ["PGPASSWORD"]],
    )
    assert leaks == []


def test_a_wrong_kafka_password_is_a_clear_error_that_names_the_setting(s3_server, secure_broker, tmp_path):
    settings = cluster_settings(s3_server, secure_broker, "unused-bucket")
    wrong = "not-" + str(secure_broker.password)
    for command in (["label", "1"], ["stream", "--available-now"]):
        started = time.monotonic()
        done = subprocess.run(
            [FRAUD, *command, "--env", "cluster", *as_options(settings)],
            cwd=tmp_path,
            env={**job_env(s3_server, secure_broker), PASSWORD_ENV: wrong},
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
        last = done.stderr.strip().splitlines()[-1]
        assert "refused the login" in last and "kafka.security.username" in last and PASSWORD_ENV in last, last
        assert wrong not in done.stdout + done.stderr
        assert time.monotonic() - started < 90


def test_an_untrusted_broker_certificate_is_a_clear_error(s3_server, secure_broker, tmp_path):
    """The system's CAs (public ones) did not sign the local broker's certificate."""
    settings = {
        **cluster_settings(s3_server, secure_broker, "unused-bucket"),
        "kafka.security.truststore": "/etc/ssl/certs/ca-certificates.crt",
    }
    done = subprocess.run(
        [FRAUD, "label", "1", "--env", "cluster", *as_options(settings)],
        cwd=tmp_path,
        env=job_env(s3_server, secure_broker),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert "certificate is not trusted" in last and "kafka.security.truststore" in last, last
