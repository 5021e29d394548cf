"""The streaming state computes exactly the batch job's aggregates, row by row (parity), whatever the
micro-batch boundaries; and it stays bounded."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.batch import compute_aggregates
from features.definitions import AGGREGATES, derive_features
from features.state import EntityState, expiry_hour, lookback_hours, update
from jobs.simulator import Simulator, make_spec

DELAY = 24


def transactions(days: int = 40) -> pd.DataFrame:
    spec = make_spec("handbook", days=days, customers=300, terminals=400)
    frame = pd.concat([b.frame for b in Simulator(spec).days()], ignore_index=True)
    frame["tx_datetime"] = pd.Timestamp(spec.start_date) + pd.to_timedelta(frame["tx_time_seconds"], unit="s")
    return frame


def stream(frame: pd.DataFrame, sizes: np.ndarray) -> tuple[pd.DataFrame, dict[str, EntityState]]:
    states = {e: EntityState.empty(e) for e in ("card", "terminal")}
    parts, start = [], 0
    for size in sizes:
        batch = frame.iloc[start:start + size]
        start += size
        if batch.empty:
            continue
        outs = []
        for entity in states:
            out, states[entity] = update(states[entity], batch, DELAY)
            outs.append(out)
        parts.append(pd.concat([batch[["transaction_id"]], *outs], axis=1))
    return pd.concat(parts), states


@pytest.mark.integration
def test_stream_state_equals_the_batch_job_row_by_row(spark):
    frame = transactions()
    rng = np.random.default_rng(1)
    sizes = rng.integers(1, 3_000, size=len(frame))  # micro-batches of random sizes, cutting hours anywhere
    streamed, _ = stream(frame, sizes[: np.searchsorted(np.cumsum(sizes), len(frame)) + 1])
    columns = ["transaction_id", "tx_datetime", "customer_id", "terminal_id", "tx_amount", "tx_fraud"]
    batch = compute_aggregates(spark.createDataFrame(frame[columns]), DELAY).toPandas()
    names = [a.name for a in AGGREGATES]
    merged = batch.merge(streamed, on="transaction_id", suffixes=("_batch", "_stream"))
    assert len(merged) == len(frame) == len(batch) == len(streamed)
    assert merged["terminal_fraud_count_7d_batch"].sum() > 0 and merged["card_fraud_count_30d_batch"].sum() > 0
    assert merged["card_amount_sum_30d_batch"].min() > 0
    for name in names:
        diff = np.abs(merged[f"{name}_batch"] - merged[f"{name}_stream"])
        assert (diff <= 1e-6 * np.maximum(1, np.abs(merged[f"{name}_batch"]))).all(), \
            (name, merged.loc[diff.idxmax(), ["transaction_id", f"{name}_batch", f"{name}_stream"]].to_dict())
    # and so the model inputs are equal too: both go through the one derive_features
    merged = merged.sort_values("transaction_id").reset_index(drop=True)
    from_batch = derive_features(merged.rename(columns={f"{n}_batch": n for n in names}))
    from_stream = derive_features(merged.rename(columns={f"{n}_stream": n for n in names}))
    pd.testing.assert_frame_equal(from_batch, from_stream, check_exact=False, rtol=1e-9)


def test_state_is_bounded_by_the_longest_window():
    frame = transactions(days=60)
    _, states = stream(frame, np.full(len(frame) // 5_000 + 1, 5_000))
    newest = int(pd.to_datetime(frame["tx_datetime"]).max().value // 10**9 // 3600)
    for entity, state in states.items():
        oldest = expiry_hour(newest, lookback_hours(entity, DELAY))  # whole days: at most 23 hours more
        assert state.hour.min() >= oldest > newest - lookback_hours(entity, DELAY) - 24 and oldest % 24 == 0
        assert len(state) < len(frame)
    assert lookback_hours("card", DELAY) == 30 * 24 + DELAY and lookback_hours("terminal", DELAY) == 30 * 24 + DELAY


def test_state_round_trips_through_a_frame():
    frame = transactions(days=3)
    _, states = stream(frame, np.array([len(frame)]))
    card = states["card"]
    back = EntityState.from_frame("card", card.to_frame())
    assert np.array_equal(back.key, card.key) and np.array_equal(back.hour, card.hour)
    assert np.allclose(back.sums, card.sums)
