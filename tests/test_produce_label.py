"""`fraud produce --simulate` and `fraud label`: what they send to the broker, and their errors."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import pytest

from jobs import cli
from jobs.core.errors import FraudError
from jobs.dev import kafka_topics
from jobs.kafka_tools.label_cmd import label_of_alert, label_record, read_label_file
from jobs.kafka_tools.produce import raw_lines, simulated_lines
from jobs.simulation.simulate import simulate_to_folder
from jobs.simulation.simulator import make_spec
from tests.test_score_stream import consume_all


def test_simulated_lines_are_the_raw_files_lines(tmp_path):
    spec = make_spec("handbook", days=3, customers=40, terminals=60)
    simulate_to_folder(spec, tmp_path / "raw")
    assert list(simulated_lines(spec)) == list(raw_lines(tmp_path / "raw"))


def test_label_file_errors_name_the_file_and_line(tmp_path):
    good = tmp_path / "good.csv"
    good.write_text("transaction_id,tx_fraud\n12,1\n\n13,0\n14,1,7,42,2018-04-01 10:00:05\n")
    assert list(read_label_file(good)) == [(12, 1), (13, 0), (14, 1, 7, 42, "2018-04-01 10:00:05")]
    bad = tmp_path / "bad.csv"
    bad.write_text("12,1\n13,yes\n")
    with pytest.raises(FraudError, match=r"bad.csv, line 2: expected 'transaction_id,tx_fraud'.*found '13,yes'"):
        list(read_label_file(bad))
    bad.write_text("12,1,7,42,yesterday\n")
    with pytest.raises(
        FraudError, match=r"bad.csv, line 1: .*a time 'YYYY-MM-DD HH:MM:SS', found '12,1,7,42,yesterday'"
    ):
        list(read_label_file(bad))
    with pytest.raises(FraudError, match="no such file"):
        list(read_label_file(tmp_path / "missing.csv"))


@pytest.mark.integration
def test_produce_simulate_and_label_commands(broker, topic_names, tmp_path, capsys):
    kafka_topics.create_topics(broker.bootstrap_servers, topic_names.values(), partitions=2)
    common = ["--bootstrap-servers", broker.bootstrap_servers, "--lake", str(tmp_path / "lake")]
    spec = make_spec("handbook", days=2, customers=30, terminals=40)
    assert (
        cli.main(
            [
                "produce",
                "--simulate",
                "--days",
                "2",
                "--customers",
                "30",
                "--terminals",
                "40",
                "--without-labels",
                "--no-progress",
                "--set",
                f"kafka.topics.transactions={topic_names['transactions']}",
                *common,
            ]
        )
        == 0
    )
    sent = consume_all(broker.bootstrap_servers, topic_names["transactions"])
    expected = list(simulated_lines(spec))
    assert len(sent) == len(expected) > 0
    assert sorted(m["transaction_id"] for m in sent) == list(range(len(expected)))
    assert all("tx_fraud" not in m and "tx_fraud_scenario" not in m for m in sent)
    assert cli.main(["label", "7", "8", "--set", f"kafka.topics.labels={topic_names['labels']}", *common]) == 0
    assert cli.main(["label", "--genuine", "8", "--set", f"kafka.topics.labels={topic_names['labels']}", *common]) == 0
    labels = consume_all(broker.bootstrap_servers, topic_names["labels"])
    assert sorted(json.dumps(m, sort_keys=True) for m in labels) == sorted(
        json.dumps(m, sort_keys=True)
        for m in [
            {"transaction_id": 7, "tx_fraud": 1},
            {"transaction_id": 8, "tx_fraud": 1},
            {"transaction_id": 8, "tx_fraud": 0},
        ]
    )
    assert cli.main(["label", *common]) == 2
    assert "give transaction ids, or --file" in capsys.readouterr().err


def test_a_label_of_an_alert_carries_its_transactions_place_as_the_raw_files_write_time():
    alert = {
        "alert_id": "x",
        "transaction_id": 14,
        "customer_id": 7,
        "terminal_id": 42,
        "tx_datetime": "2018-04-01T10:00:05.000Z",
        "score": 0.9,
    }
    assert label_of_alert(alert, 1) == (14, 1, 7, 42, "2018-04-01 10:00:05")
    key, value = label_record(*label_of_alert(alert, 0))
    assert key == b"7"
    assert json.loads(value) == {
        "transaction_id": 14,
        "tx_fraud": 0,
        "customer_id": 7,
        "terminal_id": 42,
        "tx_datetime": "2018-04-01 10:00:05",
    }


def test_a_label_says_who_decided_and_the_stream_reads_it_back():
    from jobs.stream.label_records import with_decisions

    _, value = label_record(14, 1, 7, 42, "2018-04-01 10:00:05", decided_by="alice")
    message = json.loads(value)
    assert message["decided_by"] == "alice"
    decided_at = dt.datetime.fromisoformat(message["decided_at"])
    assert abs((dt.datetime.now(dt.UTC) - decided_at).total_seconds()) < 60
    rows = with_decisions(
        pd.DataFrame(
            {
                "payload": [
                    value.decode(),
                    '{"transaction_id": 1, "tx_fraud": 0}',
                    '{"decided_by": "bob", "decided_at": "yesterday"}',
                    "not json",
                ]
            }
        )
    )
    assert rows["decided_by"].tolist()[:2] == ["alice", None] and rows["decided_by"][2] == "bob"
    assert rows["decided_at"][0] == pd.Timestamp(decided_at.replace(tzinfo=None))
    assert rows["decided_at"][1:].isna().all()  # none given, a time that is not ISO 8601, not JSON
