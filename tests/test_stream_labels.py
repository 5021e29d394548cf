"""Labels on the real broker: the fraud team's confirmations reach the card and terminal fraud state, exactly
as if the batch job had known them; repeated labels count once, corrections undo, bad labels are dead
letters."""
from __future__ import annotations

import json
import urllib.request

import pandas as pd
import pytest

from features.batch import build_features
from features.definitions import FEATURE_NAMES
from features.schema import TRANSACTION_SCHEMA
from jobs import score_stream
from jobs.label_cmd import read_label_file, send_labels
from jobs.produce import line_to_message, produce, raw_lines, without_labels
from jobs.simulate import simulate_to_folder
from jobs.simulator import make_spec
from tests.test_ingest_stream import produce as produce_values
from tests.test_stream_restart import register_model

pytestmark = pytest.mark.integration
DELAY = 24
BAD_LABELS = [b"nope", b'{"transaction_id": "x", "tx_fraud": 1}', b'{"transaction_id": 5, "tx_fraud": 2}',
              b'{"tx_fraud": 1}']
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

    # 2. the fraud team confirms every fraud of those days; one twice; a genuine one is labelled fraud, then
    #    corrected; one is confirmed genuine; plus four malformed labels and one of a transaction never seen
    frauds = first.loc[first["tx_fraud"] == 1, "transaction_id"].tolist()
    genuine = first.loc[first["tx_fraud"] == 0, "transaction_id"].tolist()
    assert len(frauds) > 20
    csv = tmp_path / "confirmed.csv"
    csv.write_text("transaction_id,tx_fraud\n" + "".join(f"{t},1\n" for t in frauds))
    sent = [*read_label_file(csv), (frauds[0], 1), (genuine[0], 1), (genuine[1], 0), (genuine[0], 0), (UNKNOWN_ID, 1)]
    send_labels(cfg, sent)
    produce_values(broker.bootstrap_servers, topic_names["labels"], BAD_LABELS)
    score_stream.run(spark, cfg, available_now=True, metrics=metrics)

    labels = spark.read.format("delta").load(cfg.table_path("labels")).toPandas().sort_values(["batch_id", "offset"])
    increments = labels.groupby("transaction_id")["fraud_increment"].apply(list).to_dict()
    assert increments[frauds[0]] == [1, 0]  # the repeated label adds nothing
    assert increments[genuine[0]] == [1, -1]  # a correction undoes
    assert increments[genuine[1]] == [0]
    assert all(increments[t] == [1] for t in frauds[1:])
    assert len(labels) == len(sent) - 1 and UNKNOWN_ID not in increments
    row = labels[labels["transaction_id"] == frauds[1]].iloc[0]
    expected = first[first["transaction_id"] == frauds[1]].iloc[0]
    assert (row["customer_id"], row["terminal_id"], row["tx_datetime"]) == (
        expected["customer_id"], expected["terminal_id"], expected["tx_datetime"])
    dead = spark.read.format("delta").load(cfg.table_path("dead_letters")).toPandas()
    assert sorted(dead["payload"]) == sorted([m.decode() for m in BAD_LABELS]
                                             + [json.dumps({"transaction_id": UNKNOWN_ID, "tx_fraud": 1})])
    unknown = dead[dead["payload"].str.contains(str(UNKNOWN_ID))].iloc[0]
    assert f"found {UNKNOWN_ID} in no row of `scores`" in unknown["errors"][0]
    assert "tx_fraud: expected 0 or 1, found '2'" in [e for errs in dead["errors"] for e in errs]

    # 3. the next six days: their features count the confirmed frauds, as the batch job does with those labels
    produce(cfg, iter(lines[len(first):]))
    score_stream.run(spark, cfg, available_now=True, metrics=metrics)
    known = tx.assign(tx_fraud=tx["transaction_id"].isin(frauds).astype("int32"), tx_fraud_scenario=0)
    batch = build_features(spark.createDataFrame(known[TRANSACTION_SCHEMA.fieldNames()], TRANSACTION_SCHEMA), DELAY)
    scores = spark.read.format("delta").load(cfg.table_path("scores"))
    assert scores.count() == len(tx)
    stream = scores.where(scores.tx_time_days >= 6).select("transaction_id", *FEATURE_NAMES).toPandas()
    expected_features = batch.select("transaction_id", *FEATURE_NAMES).toPandas()
    merged = stream.merge(expected_features, on="transaction_id", suffixes=("", "_batch"))
    assert len(merged) == len(later)
    for name in FEATURE_NAMES:
        diff = (merged[name] - merged[f"{name}_batch"]).abs().fillna(0)
        assert diff.max() < 1e-6, (name, merged.loc[diff.idxmax(), ["transaction_id", name, f"{name}_batch"]].tolist())
    assert (merged["terminal_risk_7d"] > 0).sum() > 10 and (merged["card_fraud_count_30d"] > 0).sum() > 5
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics.port}/metrics", timeout=10).read().decode()
    assert f"fraud_labels_total {float(len(sent) - 1)}" in text
