"""The streaming form of AGGREGATES: per-entity hourly buckets, updated micro-batch by micro-batch with numpy.

One `EntityState` per entity ("card", "terminal") holds columnar buckets (key, hour, count, amount, fraud)
sorted by (key, hour), kept for the longest look-back of its aggregates (rounded to whole days). `update`
takes a micro-batch of transactions, computes every aggregate of that entity for each of them, exactly as
features/batch.py defines them (windows of whole hours; within the current hour, earlier transactions in
event order, then transaction id), and returns the new state. Transactions must arrive in event-time order
across batches (within a batch, any order): a transaction older than the state's buckets of its hour is not
placed between the transactions it preceded.

Vectorised: one sort and a few searchsorted calls per batch, whatever the number of keys. This is the
state the streaming job keeps in Spark's state store, one value per card or terminal
(features/stream_processor.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.definitions import AGGREGATES, ENTITY_KEYS, HOUR, MEASURES, Aggregate

DAY_HOURS = 24
_HOUR_BITS = 20  # hours since 1970 stay below 2**20 until the year 2089
_MEASURE_COLUMNS = list(MEASURES)  # count, amount, fraud, amount_sq


def _composite(key: np.ndarray, hour: np.ndarray) -> np.ndarray:
    return (key.astype(np.int64) << _HOUR_BITS) | hour.astype(np.int64)


@dataclass
class EntityState:
    """Hourly buckets of one entity type, sorted by (key, hour)."""

    entity: str
    key: np.ndarray
    hour: np.ndarray
    sums: np.ndarray  # shape (buckets, len(MEASURES)): count, amount, fraud, amount_sq

    @staticmethod
    def empty(entity: str) -> EntityState:
        return EntityState(entity, np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, len(MEASURES))))

    def __len__(self) -> int:
        return len(self.key)

    def to_frame(self) -> pd.DataFrame:
        """The buckets as a DataFrame."""
        return pd.DataFrame({"key": self.key, "hour": self.hour,
                             **{m: self.sums[:, i] for i, m in enumerate(_MEASURE_COLUMNS)}})

    @staticmethod
    def from_frame(entity: str, frame: pd.DataFrame) -> EntityState:
        frame = frame.sort_values(["key", "hour"], kind="mergesort")
        return EntityState(entity, frame["key"].to_numpy(np.int64), frame["hour"].to_numpy(np.int64),
                           frame[_MEASURE_COLUMNS].to_numpy(np.float64))


def lookback_hours(entity: str, label_delay_hours: int) -> int:
    """How many hours of buckets an entity's aggregates need before the newest hour."""
    return max(-a.hour_range(label_delay_hours)[0] for a in AGGREGATES if a.entity == entity)


def expiry_hour(newest: int, lookback: int) -> int:
    """Buckets before this hour are past every window. Rounded down to a whole day (UTC): the oldest buckets
    leave a day at a time, so that a settled value (features/stream_processor.py) changes once a day."""
    return (newest - lookback) // DAY_HOURS * DAY_HOURS


def update(state: EntityState, batch: pd.DataFrame, label_delay_hours: int) -> tuple[pd.DataFrame, EntityState]:
    """Compute the entity's aggregates for a micro-batch and fold the batch into the state.

    Args:
        state: the entity's buckets before this batch.
        batch: transactions with transaction_id, tx_datetime, tx_amount, tx_fraud (0 when unknown) and the
            entity's key column; optionally `label_row`, true for a label increment (it adds `tx_fraud` to
            the labelled transaction's hour and counts as no transaction), whose
            aggregates in the output mean nothing.
        label_delay_hours: the label delay of the delayed windows.

    Returns:
        (one column per aggregate of the entity, indexed like `batch`; the new state).
    """
    aggs: list[Aggregate] = [a for a in AGGREGATES if a.entity == state.entity]
    key_col = ENTITY_KEYS[state.entity]
    n = len(batch)
    seconds = pd.to_datetime(batch["tx_datetime"]).to_numpy("datetime64[s]").astype(np.int64)
    tx_key = batch[key_col].to_numpy(np.int64)
    tx_hour = seconds // HOUR
    # a label row (`label_row` true) is a fraud label arriving late: it adds its `tx_fraud` (+1, or -1 for a
    # correction) to the labelled transaction's hour, and neither a transaction nor an amount
    counted = ~batch["label_row"].to_numpy(bool) if "label_row" in batch.columns else np.ones(n, bool)
    amount = np.where(counted, batch["tx_amount"].to_numpy(np.float64), 0.0)
    tx_sums = np.column_stack([counted.astype(np.float64), amount, batch["tx_fraud"].fillna(0).to_numpy(np.float64),
                               amount * amount])  # in the order of MEASURES
    # all events: the state's buckets first within their hour, then the batch's transactions in event order
    key = np.concatenate([state.key, tx_key])
    hour = np.concatenate([state.hour, tx_hour])
    sums = np.vstack([state.sums, tx_sums])
    within = np.concatenate([np.full(len(state), -1, np.int64), seconds])
    tie = np.concatenate([np.full(len(state), -1, np.int64), batch["transaction_id"].to_numpy(np.int64)])
    order = np.lexsort((tie, within, hour, key))
    composite = _composite(key, hour)[order]
    cumulative = np.vstack([np.zeros((1, len(MEASURES))), np.cumsum(sums[order], axis=0)])  # cumulative[i] = sum of first i
    position = np.empty(len(order), np.int64)
    position[order] = np.arange(len(order))
    tx_position = position[len(state):]

    def before(hours: np.ndarray) -> np.ndarray:
        """Sums of the key's events in hours before `hours`."""
        return cumulative[np.searchsorted(composite, _composite(tx_key, hours), side="left")]

    out = pd.DataFrame(index=batch.index)
    for a in aggs:
        m = _MEASURE_COLUMNS.index(a.measure)
        first, last = a.hour_range(label_delay_hours)
        start = before(tx_hour + first)[:, m]
        end = cumulative[tx_position + 1][:, m] if last == 0 else before(tx_hour + last + 1)[:, m]
        out[a.name] = end - start
    # fold into buckets and forget what no window can reach any more
    composite_all = _composite(key, hour)
    unique, inverse = np.unique(composite_all, return_inverse=True)
    bucket_sums = np.zeros((len(unique), len(MEASURES)))
    np.add.at(bucket_sums, inverse, sums)
    bucket_key, bucket_hour = unique >> _HOUR_BITS, unique & ((1 << _HOUR_BITS) - 1)
    newest = int(hour.max()) if len(hour) else 0
    keep = bucket_hour >= expiry_hour(newest, lookback_hours(state.entity, label_delay_hours))
    return out, EntityState(state.entity, bucket_key[keep], bucket_hour[keep], bucket_sums[keep])
