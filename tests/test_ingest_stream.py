"""Round trip through the real broker: kafka-python produces JSON -> Spark streaming query -> Delta."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from kafka import KafkaProducer

from jobs.dev import kafka_topics
from jobs.stream import ingest_stream
from tests import servers
from tests.frames import assert_frame_equal

pytestmark = pytest.mark.integration

TX = [
    {
        "transaction_id": 0,
        "tx_datetime": "2019-08-22 06:51:03",
        "customer_id": 0,
        "terminal_id": 711,
        "tx_amount": 70.91,
        "tx_time_seconds": 24663,
        "tx_time_days": 0,
    },
    {
        "transaction_id": 1,
        "tx_datetime": "2019-08-22 07:02:11",
        "customer_id": 4,
        "terminal_id": 12,
        "tx_amount": 1290.5,
        "tx_time_seconds": 25331,
        "tx_time_days": 0,
        "tx_fraud": 1,
        "tx_fraud_scenario": 1,
    },
    {
        "transaction_id": 2,
        "tx_datetime": "2019-08-23 00:00:01",
        "customer_id": 4,
        "terminal_id": 12,
        "tx_amount": 0.5,
        "tx_time_seconds": 86401,
        "tx_time_days": 1,
    },
]
MALFORMED = [
    b'{"transaction_id": 3, "tx_datetime": ',  # truncated JSON
    json.dumps({**TX[0], "transaction_id": 4, "terminal_id": "Err"}).encode(),  # wrong type
    json.dumps({k: v for k, v in TX[0].items() if k != "tx_amount"}).encode(),  # missing field
    json.dumps({**TX[0], "transaction_id": 6, "tx_datetime": "9999-12-31 23:59:59"}).encode(),  # out of range
]


def produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for i, v in enumerate(values):
        producer.send(topic, key=str(i).encode(), value=v)
    producer.flush()
    producer.close()


def test_round_trip_kafka_to_delta(spark, broker, make_cfg, topic_names):
    kafka_topics.create_topics(broker.bootstrap_servers, topic_names.values(), partitions=2)
    cfg = make_cfg(
        kafka__bootstrap_servers=broker.bootstrap_servers, kafka__topics__transactions=topic_names["transactions"]
    )
    produce(broker.bootstrap_servers, topic_names["transactions"], [json.dumps(t).encode() for t in TX] + MALFORMED)

    ingest_stream.run(spark, cfg, available_now=True)

    landed = spark.read.format("delta").load(cfg.table_path("raw_transactions"))
    expected = [
        {
            **t,
            "tx_datetime": dt.datetime.strptime(t["tx_datetime"], "%Y-%m-%d %H:%M:%S"),
            "tx_fraud": t.get("tx_fraud"),
            "tx_fraud_scenario": t.get("tx_fraud_scenario"),
        }
        for t in TX
    ]
    assert_frame_equal(landed.drop("kafka_timestamp", "tx_date"), expected)

    dead = spark.read.format("delta").load(cfg.table_path("dead_letters"))
    assert_frame_equal(
        dead.select("payload", "errors", "reason"),
        [
            {
                "payload": MALFORMED[0].decode(),
                "errors": ["payload: expected a JSON object, found malformed JSON"],
                "reason": "malformed",
            },
            {
                "payload": MALFORMED[1].decode(),
                "errors": ["terminal_id: expected int, found 'Err'"],
                "reason": "malformed",
            },
            {"payload": MALFORMED[2].decode(), "errors": ["tx_amount: missing"], "reason": "malformed"},
            {
                "payload": MALFORMED[3].decode(),
                "errors": ["tx_datetime: expected timestamp, found '9999-12-31 23:59:59'"],
                "reason": "malformed",
            },
        ],
    )
    assert dead.select("topic").distinct().collect()[0][0] == topic_names["transactions"]

    # A second run over the same checkpoint finds nothing new: no duplicates.
    ingest_stream.run(spark, cfg, available_now=True)
    assert spark.read.format("delta").load(cfg.table_path("raw_transactions")).count() == len(TX)


def test_spark_submit_script_runs_the_job(spark, broker, tmp_path, topic_names):
    """spark-submit/submit.sh ships the jars, packages and conf, and the job lands what the topic holds."""
    import os
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    kafka_topics.create_topics(broker.bootstrap_servers, [topic_names["transactions"]], partitions=1)
    produce(broker.bootstrap_servers, topic_names["transactions"], [json.dumps(t).encode() for t in TX])
    lake = tmp_path / "lake"
    env = servers.short_job_env({**os.environ, "PATH": f"{root / '.venv/bin'}:{os.environ['PATH']}"})
    done = subprocess.run(
        [
            str(root / "spark-submit/submit.sh"),
            "jobs/stream/ingest_stream.py",
            "--env",
            "local",
            "--available-now",
            "--lake",
            str(lake),
            "--checkpoint",
            str(tmp_path / "chk"),
            "--bootstrap-servers",
            broker.bootstrap_servers,
            "--set",
            f"kafka.topics.transactions={topic_names['transactions']}",
            "--set",
            "spark.ui_enabled=false",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    ids = spark.read.format("delta").load(str(lake / "raw_transactions")).select("transaction_id")
    assert sorted(r.transaction_id for r in ids.collect()) == [t["transaction_id"] for t in TX]
    # what went to the executors: the three packages, without the local broker (development only)
    import zipfile

    shipped = zipfile.ZipFile(root / ".state/dist/fraud_pkgs.zip").namelist()
    assert (
        "jobs/stream/score_stream.py" in shipped
        and "features/definitions.py" in shipped
        and "models/metrics.py" in shipped
    )
    assert not [n for n in shipped if n.startswith("jobs/dev/") or "__pycache__" in n]
