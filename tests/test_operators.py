"""The stream's stateful operators (features/operators.py, Java in features/jvm) run as Spark runs them: a
streaming query over files, one file per micro-batch, cut at random sizes. Every aggregate equals the batch
job's (features/batch.py) row by row, with labels that arrive late (repeated, corrected, of no counted
transaction), duplicates and bypassing rows mixed in, and from a state seeded with history; the state stays
within the look-back."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import DataFrame

from features.batch import compute_aggregates
from features.definitions import AGGREGATES, ENTITY_KEYS, HOUR, lookback_hours
from features.operators import (
    DAY_HOURS,
    LABEL_INCREMENT,
    LABEL_PREVIOUS,
    add_aggregates,
    card_and_terminal_aggregates,
    entity_measures,
    seed_state,
    spec,
)
from jobs.simulation.simulator import Simulator, make_spec

DELAY = 48
COLUMNS = ["transaction_id", "tx_datetime", "customer_id", "terminal_id", "tx_amount", "tx_fraud"]
NAMES = [a.name for a in AGGREGATES]


def transactions(days: int, customers: int = 300, terminals: int = 400) -> pd.DataFrame:
    simulated = make_spec("handbook", days=days, customers=customers, terminals=terminals)
    frame = pd.concat([b.frame for b in Simulator(simulated).days()], ignore_index=True)
    frame["tx_datetime"] = pd.Timestamp(simulated.start_date) + pd.to_timedelta(frame["tx_time_seconds"], unit="s")
    return frame[COLUMNS].astype({"tx_fraud": "int32", "customer_id": "int32", "terminal_id": "int32"})


def as_rows(frame: pd.DataFrame, label_row: bool = False, bypass: bool = False, arrival: int = 0) -> pd.DataFrame:
    """Rows for the operators, of the same types in every file (a message has no card, a transaction no label);
    `arrival`: when a label came (seconds; labels of one transaction apply in this order)."""
    return frame.assign(
        label_row=label_row,
        bypass_state=bypass,
        arrival=pd.Timestamp("2030-01-01", tz="UTC") + pd.Timedelta(seconds=arrival),
    ).astype({"transaction_id": "int64", "customer_id": "Int32", "terminal_id": "Int32", "tx_fraud": "Int32"})


def stream(spark, parts: list[pd.DataFrame], tmp: Path, seeds: dict[str, DataFrame] | None = None) -> pd.DataFrame:
    """Run both operators (card, then terminal) over `parts`, one micro-batch each; return every output row."""
    source = tmp / "source"
    source.mkdir()
    for i, part in enumerate(parts):  # one file a micro-batch, in this order (the file source goes by mtime)
        path = source / f"{i:05d}.parquet"
        utc = part.reset_index(drop=True).assign(tx_datetime=lambda f: f["tx_datetime"].dt.tz_localize("UTC"))
        utc.to_parquet(path, coerce_timestamps="us")
        os.utime(path, (1_000_000 + i, 1_000_000 + i))
    schema = spark.read.parquet(str(source / "00000.parquet")).schema
    rows = spark.readStream.schema(schema).option("maxFilesPerTrigger", 1).parquet(str(source))
    both = card_and_terminal_aggregates(rows, DELAY, 45, seeds, bypass=["bypass_state"], label_order="arrival")
    name = f"out_{tmp.name.replace('-', '_')}"
    query = (
        both.writeStream.format("memory")
        .queryName(name)
        .option("checkpointLocation", str(tmp / "chk"))
        .trigger(availableNow=True)
        .start()
    )
    query.awaitTermination()
    assert query.exception() is None
    return spark.table(name).toPandas()


def batch_aggregates(spark, frame: pd.DataFrame) -> pd.DataFrame:
    return compute_aggregates(spark.createDataFrame(frame[COLUMNS]), DELAY).toPandas()[["transaction_id", *NAMES]]


def assert_equal_aggregates(streamed: pd.DataFrame, expected: pd.DataFrame) -> None:
    merged = expected.merge(streamed, on="transaction_id", suffixes=("_batch", "_stream"), validate="one_to_one")
    assert len(merged) == len(expected) == len(streamed)
    for name in NAMES:
        diff = np.abs(merged[f"{name}_batch"] - merged[f"{name}_stream"])
        worst = diff.idxmax()
        assert (diff <= 1e-9 * np.maximum(1, np.abs(merged[f"{name}_batch"]))).all(), (
            name,
            merged.loc[worst, ["transaction_id", f"{name}_batch", f"{name}_stream"]].to_dict(),
        )


@pytest.mark.integration
def test_operators_equal_the_batch_job_with_late_labels_duplicates_and_messages(spark, tmp_path):
    frame = transactions(days=20)
    rng = np.random.default_rng(3)
    parts, start, pending_labels, retries, unplaced = [], 0, None, 0, 0
    expected_increments: list[int] = []
    while start < len(frame):
        size = int(rng.integers(1, 1000))  # under 40 hours of transactions: labels come within the delay
        cut = frame.iloc[start : start + size]
        start += size
        # production: transactions carry no label; the frauds of the previous cut are confirmed now (+1), one
        # of them twice (+0); one genuine transaction is labelled fraud by mistake and corrected in the same
        # batch (+1, -1); a label names a wrong terminal, another a transaction no card counted (both: null)
        shown = as_rows(cut.assign(tx_fraud=None))
        extra = []
        if pending_labels is not None and len(pending_labels):
            extra += [
                as_rows(pending_labels, label_row=True, arrival=1),
                as_rows(pending_labels.head(1), label_row=True, arrival=2),
            ]
            expected_increments += [1] * len(pending_labels) + [0]
        if len(cut) > 3:
            mistake = cut[cut["tx_fraud"] == 0].head(1)
            extra += [
                as_rows(mistake.assign(tx_fraud=1), label_row=True, arrival=3),
                as_rows(mistake.assign(tx_fraud=0), label_row=True, arrival=4),
                as_rows(mistake.assign(terminal_id=mistake["terminal_id"] + 1), label_row=True, arrival=5),
                as_rows(mistake.assign(transaction_id=10**12 + start), label_row=True, arrival=6),
            ]
            expected_increments += [1, -1]
            unplaced += 2
            # a producer's retry of an earlier transaction, and a malformed message with no card
            extra += [
                as_rows(frame.iloc[[max(0, start - size - 5)]].assign(tx_fraud=None)),
                as_rows(cut.head(1).assign(customer_id=None, terminal_id=None, transaction_id=-start), bypass=True),
            ]
            retries += 1
        parts.append(pd.concat([shown, *extra], ignore_index=True).sample(frac=1, random_state=start))
        pending_labels = cut[cut["tx_fraud"] == 1]
    out = stream(spark, parts, tmp_path)

    transactions_out = out[~out["label_row"] & ~out["bypass_state"] & ~out["duplicate"]]
    assert sorted(transactions_out["transaction_id"]) == sorted(frame["transaction_id"])  # each once
    assert_equal_aggregates(transactions_out, batch_aggregates(spark, frame))
    assert transactions_out["terminal_fraud_count_7d"].sum() > 0 and transactions_out["card_fraud_count_30d"].sum() > 0

    duplicates = out[out["duplicate"].fillna(False).astype(bool)]
    assert len(duplicates) == retries > 0 and duplicates[NAMES].isna().all().all()
    assert set(duplicates["transaction_id"]) <= set(frame["transaction_id"])
    bypassed = out[out["bypass_state"]]
    assert len(bypassed) == len(duplicates) and bypassed[NAMES].isna().all().all()
    assert (bypassed["transaction_id"] <= 0).all()
    labels = out[out["label_row"]]
    assert labels[[a.name for a in AGGREGATES if a.entity == "card"]].isna().all().all()  # a label is no transaction
    assert sorted(labels[LABEL_INCREMENT].dropna().astype(int)) == sorted(expected_increments)
    assert labels[LABEL_INCREMENT].isna().sum() == unplaced > 0
    repeated = labels[labels[LABEL_INCREMENT] == 0]
    assert (repeated[LABEL_PREVIOUS] == 1).all()  # a repeated confirmation: the card counted the fraud already


@pytest.mark.integration
def test_a_seeded_state_gives_the_first_streamed_transactions_their_history(spark, tmp_path):
    frame = transactions(days=40, customers=200, terminals=300)
    history, later = frame[frame["tx_datetime"] < "2018-05-05"], frame[frame["tx_datetime"] >= "2018-05-05"]
    newest = int(history["tx_datetime"].max().value // 10**9 // HOUR)
    clean = spark.createDataFrame(history)
    seeds = {e: seed_state(clean, e, DELAY, newest, with_ids=e == "card") for e in ("card", "terminal")}
    parts = [as_rows(chunk) for chunk in np.array_split(later, 4)]
    parts[0] = pd.concat([parts[0], as_rows(history.tail(1))], ignore_index=True)  # a transaction of the history, again
    out = stream(spark, parts, tmp_path, seeds)
    flagged = out[out["duplicate"].fillna(False).astype(bool)]
    assert flagged["transaction_id"].tolist() == history.tail(1)["transaction_id"].tolist()
    streamed = out[~out["duplicate"].fillna(False).astype(bool)]
    expected = batch_aggregates(spark, frame)
    assert_equal_aggregates(streamed, expected[expected["transaction_id"].isin(later["transaction_id"])])
    assert streamed["card_tx_count_30d"].min() > 1  # the first streamed day knows its cards' month


def test_a_seed_holds_the_look_back_of_each_key(spark):
    history = transactions(days=45, customers=50, terminals=60)
    newest = int(history["tx_datetime"].max().value // 10**9 // HOUR)
    seeds = seed_state(spark.createDataFrame(history), "card", DELAY, newest, with_ids=True).toPandas()
    oldest = (newest - lookback_hours("card", DELAY)) // DAY_HOURS * DAY_HOURS
    kept = history[history["tx_datetime"] >= pd.Timestamp(oldest * HOUR, unit="s")]
    assert sorted(seeds["key"]) == sorted(kept["customer_id"].unique())
    one = seeds.iloc[0]
    mine = kept[kept["customer_id"] == one["key"]]
    hours = (mine["tx_datetime"].astype("int64") // 10**9 // HOUR).astype(int)
    assert list(one["hours"]) == sorted(hours.unique())
    measures = entity_measures("card")
    sums = np.array(one["sums"]).reshape(-1, len(measures))
    assert sums[:, measures.index("count")].sum() == len(mine)
    assert sums[:, measures.index("amount")].sum() == pytest.approx(mine["tx_amount"].sum())
    assert sorted(one["ids"]) == sorted(mine["transaction_id"])


def test_the_spec_comes_from_the_definitions():
    card = spec("card", DELAY, 45, bypass=["bypass_state"], label_column="label_row", duplicate_column="duplicate")
    assert [w["name"] for w in card["windows"]] == [a.name for a in AGGREGATES if a.entity == "card"]
    assert card["key"] == ENTITY_KEYS["card"] and card["lookback_hours"] == lookback_hours("card", DELAY)
    first_7d = next(w for w in card["windows"] if w["name"] == "card_tx_count_7d")
    assert (first_7d["first"], first_7d["last"]) == (-(7 * 24 - 1), 0)
    fraud = next(w for w in card["windows"] if w["name"] == "card_fraud_count_30d")
    assert (fraud["first"], fraud["last"]) == (-(DELAY + 30 * 24), -(DELAY + 1))
    assert entity_measures("terminal") == ["count", "fraud"]  # a terminal sums no amount
    terminal = spec("terminal", DELAY, None)
    assert terminal["duplicate_column"] is None and terminal["ttl_ms"] is None
    assert card["ttl_ms"] == 45 * 86_400_000


def test_a_wrong_spec_is_refused_with_its_reason(spark):
    from pyspark.errors import IllegalArgumentException

    rows = spark.createDataFrame(as_rows(transactions(days=3, customers=20, terminals=20)))
    jvm = spark.sparkContext._jvm
    bad = (
        '{"key": "customer_id", "seconds": "s", "id": "transaction_id", "measures": ["m"], "lookback_hours": 1,'
        '"windows": [{"name": "w", "measure": "nothing", "first": -1, "last": 0}], "bypass": [], "drop": []}'
    )
    with pytest.raises(IllegalArgumentException, match=r"window w: measure nothing is not among the measures \[m\]"):
        jvm.io.frauddetect.features.WindowedSums.apply(rows._jdf, bad, rows._jdf)


@pytest.mark.integration
def test_a_key_idle_for_the_ttl_is_removed(spark, tmp_path):
    """Card A pays, then nothing for longer than the TTL (2 s here; 45 days in the job): its state goes, and
    its next transaction counts alone. Card B, within the TTL, keeps its history."""
    frame = transactions(days=2, customers=20, terminals=20)
    a, b = frame["customer_id"].unique()[:2]
    source = tmp_path / "source"
    source.mkdir()
    out: list[pd.DataFrame] = []

    def write(i: int, part: pd.DataFrame) -> None:
        path = source / f"{i:05d}.parquet"
        as_rows(part).assign(tx_datetime=lambda f: f["tx_datetime"].dt.tz_localize("UTC")).to_parquet(
            path, coerce_timestamps="us"
        )
        os.utime(path, (1_000_000 + i, 1_000_000 + i))

    def run() -> None:
        schema = spark.read.parquet(str(source / "00000.parquet")).schema
        rows = spark.readStream.schema(schema).option("maxFilesPerTrigger", 1).parquet(str(source))
        counted = add_aggregates(rows, "card", DELAY, 2 / 86_400, bypass=["bypass_state"])
        query = (
            counted.writeStream.foreachBatch(lambda batch, _: out.append(batch.toPandas()))
            .option("checkpointLocation", str(tmp_path / "chk"))
            .trigger(availableNow=True)
            .start()
        )
        query.awaitTermination()
        assert query.exception() is None

    first_a, first_b = frame[frame["customer_id"] == a].head(2), frame[frame["customer_id"] == b].head(1)
    write(0, pd.concat([first_a, first_b]))
    run()
    time.sleep(3)  # longer than the TTL for both
    write(1, frame[frame["customer_id"] == b].iloc[1:2])  # B pays again: its timer is set again; A's fires
    write(2, pd.concat([frame[frame["customer_id"] == a].iloc[2:3], frame[frame["customer_id"] == b].iloc[2:3]]))
    run()
    last = out[-1].set_index("customer_id")["card_tx_count_30d"]
    assert last[a] == 1  # A's two earlier transactions are forgotten
    assert last[b] == 3  # B's are not: it was updated within the TTL before its timer fired
