"""Labels on the real broker: the fraud team's confirmations reach the card and terminal fraud state, exactly
as if the batch job had known them: a label with its transaction's place in the micro-batch that reads it, one
by id alone a micro-batch later; repeated labels count once, corrections undo, bad labels are dead letters."""

from __future__ import annotations

import json
import urllib.request

import pandas as pd
import pytest

from features.batch import build_features
from features.definitions import FEATURE_NAMES
from features.schema import TRANSACTION_SCHEMA
from jobs.kafka_tools.label_cmd import read_label_file, send_labels
from jobs.kafka_tools.produce import line_to_message, produce, raw_lines, without_labels
from jobs.simulation.simulate import simulate_to_folder
from jobs.simulation.simulator import make_spec
from jobs.stream import score_stream
from tests.frames import assert_features_match
from tests.test_ingest_stream import produce as produce_values
from tests.test_stream_restart import register_model

pytestmark = pytest.mark.integration
DELAY = 24
BAD_LABELS = [
    b"nope",
    b'{"transaction_id": "x", "tx_fraud": 1}',
    b'{"transaction_id": 5, "tx_fraud": 2}',
    b'{"tx_fraud": 1}',
]
UNKNOWN_ID = 10**12


def test_labels_update_the_fraud_state(spark, broker, stream_cfg, topic_names, tmp_path):
    raw = tmp_path / "raw"
    simulate_to_folder(make_spec("handbook", days=12, customers=300, terminals=150), raw)
    cfg = stream_cfg(kafka__max_offsets_per_trigger=5000)
    register_model(cfg.get("mlflow.tracking_uri"), tmp_path / "artifacts", label_delay_hours=DELAY)
    tx = pd.DataFrame([line_to_message(line) for line in raw_lines(raw)])
    tx["tx_datetime"] = pd.to_datetime(tx["tx_datetime"])
    day = tx["tx_time_days"]
    first, later = tx[day < 6], tx[day >= 6]
    lines = list(without_labels(raw_lines(raw)))

    # 1. the first six days, without labels (as in production)
    produce(cfg, iter(lines[: len(first)]))
    metrics = score_stream.run(spark, cfg, available_now=True)

    # 2. the fraud team confirms every fraud of those days, with the place its alert gives (a file), the last
    #    three by id alone; one twice; a genuine one is labelled fraud, then corrected; one is confirmed
    #    genuine; plus four malformed labels, one of a transaction never seen and one naming a wrong terminal
    frauds = first.loc[first["tx_fraud"] == 1, "transaction_id"].tolist()
    genuine = first.loc[first["tx_fraud"] == 0, "transaction_id"].tolist()
    assert len(frauds) > 20
    place = first.set_index("transaction_id")

    def placed(t: int, label: int, terminal_shift: int = 0) -> tuple[int, int, int, int, str]:
        return (
            t,
            label,
            int(place.at[t, "customer_id"]),
            int(place.at[t, "terminal_id"]) + terminal_shift,
            place.at[t, "tx_datetime"].strftime("%Y-%m-%d %H:%M:%S"),
        )

    csv = tmp_path / "confirmed.csv"
    csv.write_text(
        "transaction_id,tx_fraud,customer_id,terminal_id,tx_datetime\n"
        + "".join(",".join(map(str, placed(t, 1))) + "\n" for t in frauds[:-3])
        + "".join(f"{t},1\n" for t in frauds[-3:])
    )
    wrong_terminal = placed(genuine[2], 1, terminal_shift=1)
    sent = [
        *read_label_file(csv),
        placed(frauds[0], 1),
        placed(genuine[0], 1),
        placed(genuine[1], 0),
        placed(genuine[0], 0),
        (UNKNOWN_ID, 1, 1, 1, "2018-04-02 00:00:00"),
        wrong_terminal,
    ]
    send_labels(cfg, sent)
    produce_values(broker.bootstrap_servers, topic_names["labels"], BAD_LABELS)
    score_stream.run(spark, cfg, available_now=True, metrics=metrics)

    def recorded() -> dict[int, list[int]]:
        labels = (
            spark.read.format("delta").load(cfg.table_path("labels")).toPandas().sort_values(["batch_id", "offset"])
        )
        return labels.groupby("transaction_id")["fraud_increment"].apply(list).to_dict()

    increments = recorded()  # the labels with their place: counted in the micro-batch that read them
    assert increments[frauds[0]] == [1, 0]  # the repeated label adds nothing
    assert increments[genuine[0]] == [1, -1]  # a correction undoes
    assert increments[genuine[1]] == [0]
    assert all(increments[t] == [1] for t in frauds[1:-3])
    assert not set(frauds[-3:]) & set(increments)  # by id alone: sent again with their place
    assert len(increments) == len(frauds) - 3 + 2
    # 2b. the micro-batch after: the labels by id alone, with the place `scores` gave them
    score_stream.run(spark, cfg, available_now=True, metrics=metrics)
    increments = recorded()
    assert all(increments[t] == [1] for t in frauds[-3:])
    assert UNKNOWN_ID not in increments and genuine[2] not in increments
    labels = spark.read.format("delta").load(cfg.table_path("labels")).toPandas()
    assert len(labels) == len(sent) - 2
    for t in (frauds[1], frauds[-1]):
        row = labels[labels["transaction_id"] == t].iloc[0]
        expected = first[first["transaction_id"] == t].iloc[0]
        assert (row["customer_id"], row["terminal_id"], row["tx_datetime"]) == (
            expected["customer_id"],
            expected["terminal_id"],
            expected["tx_datetime"],
        )
    dead = spark.read.format("delta").load(cfg.table_path("dead_letters")).toPandas()
    unknown_payload = json.dumps(
        {
            "transaction_id": UNKNOWN_ID,
            "tx_fraud": 1,
            "customer_id": 1,
            "terminal_id": 1,
            "tx_datetime": "2018-04-02 00:00:00",
        }
    )
    wrong_payload = json.dumps(
        dict(zip(["transaction_id", "tx_fraud", "customer_id", "terminal_id", "tx_datetime"], wrong_terminal))
    )
    assert sorted(dead["payload"]) == sorted([m.decode() for m in BAD_LABELS] + [unknown_payload, wrong_payload])
    unknown = dead[dead["payload"] == unknown_payload].iloc[0]
    assert f"found {UNKNOWN_ID} in no row of `scores`" in unknown["errors"][0]
    wrong = dead[dead["payload"] == wrong_payload].iloc[0]
    assert list(wrong["errors"]) == [
        f"terminal_id: expected {wrong_terminal[3] - 1} (transaction {genuine[2]}'s in "
        f"`scores`), found {wrong_terminal[3]}"
    ]
    assert "tx_fraud: expected 0 or 1, found '2'" in [e for errs in dead["errors"] for e in errs]
    # the reason of each, a code (jobs/core/dead_letters.py): what counts dead letters reads it, not the words
    assert (unknown["reason"], wrong["reason"]) == ("label_unknown_transaction", "label_wrong_place")
    assert set(dead.loc[dead["payload"].isin([m.decode() for m in BAD_LABELS]), "reason"]) == {"malformed"}

    # 3. the next six days: their features count the confirmed frauds, as the batch job does with those labels
    produce(cfg, iter(lines[len(first) :]))
    score_stream.run(spark, cfg, available_now=True, metrics=metrics)
    known = tx.assign(tx_fraud=tx["transaction_id"].isin(frauds).astype("int32"), tx_fraud_scenario=0)
    batch = build_features(spark.createDataFrame(known[TRANSACTION_SCHEMA.fieldNames()], TRANSACTION_SCHEMA), DELAY)
    scores = spark.read.format("delta").load(cfg.table_path("scores"))
    assert scores.count() == len(tx)
    stream = scores.where(scores.tx_time_days >= 6).select("transaction_id", *FEATURE_NAMES).toPandas()
    expected_features = batch.select("transaction_id", *FEATURE_NAMES).toPandas()
    assert len(stream) == len(later)
    assert_features_match(
        stream,
        expected_features[expected_features["transaction_id"].isin(stream["transaction_id"])],
        "transaction_id",
        FEATURE_NAMES,
    )  # a null counts as a value
    assert (stream["terminal_risk_7d"] > 0).sum() > 10 and (stream["card_fraud_count_30d"] > 0).sum() > 5
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics.port}/metrics", timeout=10).read().decode()
    assert f"fraud_labels_total {float(len(sent) - 2)}" in text
