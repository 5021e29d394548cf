"""The stateful step of the streaming job: one transformWithStateInPandas processor per entity.

Spark groups the rows by a hash bucket of the entity's key (`stream.state_buckets`), so Python is called
once per bucket per micro-batch, with every transaction of the bucket: the numpy update of
features/state.py then covers all the bucket's cards (or terminals) at once.

Within a bucket the state is a MapState keyed by the entity's key (a card, or a terminal): each key's
hourly buckets are one value. A micro-batch reads and writes only the keys it touches, so its cost
follows the batch, not the number of cards in state (benchmarks/state_layout.py: with a million cards, a
micro-batch of 20,000 transactions took 1.7 times longer with one value per hash bucket). The price is two
state calls (Python to the JVM's state server) per touched key. `stream.state_groups` > 0 packs keys into
that many groups per value instead (`key % groups`): fewer state calls, more bytes, which pays when nearly
every key is in every micro-batch. A value not updated for `stream.state_ttl_days` (processing time)
expires: a card that stops paying is forgotten.

With `settle` (terminals), each key's buckets are two values: `buckets` holds those from the start of
yesterday (UTC) on, `settled` the older ones. A value is written only when its bytes change. A terminal
is in nearly every micro-batch and carries every hour of its look-back (37 days: ~42 KB), of which a
micro-batch changes only the newest hour: the settled value is rewritten about once a day (when the
day turns, or a late label changes an old hour), and each micro-batch writes the ~2 KB of the recent one.
The price is one more state call per key, which is why cards (small values, many keys) do without.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql.streaming.stateful_processor import StatefulProcessor, StatefulProcessorHandle
from pyspark.sql.types import BinaryType, LongType, StructField, StructType

from features.definitions import AGGREGATES, ENTITY_KEYS, MEASURES
from features.state import DAY_HOURS, EntityState, update

GROUP_SCHEMA = StructType([StructField("group", LongType(), False)])
VALUE_SCHEMA = StructType([StructField("buckets", BinaryType(), True)])
_WIDTH = 2 + len(MEASURES)  # key, hour, then the measures


def pack(state: EntityState) -> bytes:
    """One value: a float64 matrix (key, hour, measures...) as raw bytes. Keys and hours are integers far
    below 2**53, exact in float64; raw bytes cost ~1 µs where np.savez cost ~50 µs a value."""
    return np.column_stack([state.key.astype(np.float64), state.hour.astype(np.float64), state.sums]).tobytes()


def unpack(entity: str, blobs: list[bytes]) -> EntityState:
    """The EntityState of several values (of distinct keys) together."""
    if not blobs:
        return EntityState.empty(entity)
    matrix = np.frombuffer(b"".join(blobs), np.float64).reshape(-1, _WIDTH)
    return EntityState(entity, matrix[:, 0].astype(np.int64), matrix[:, 1].astype(np.int64), matrix[:, 2:].copy())


def settle_hour(newest: int) -> int:
    """Buckets before this hour are settled: the start of the day (UTC) before the day of hour `newest`."""
    return (newest // DAY_HOURS - 1) * DAY_HOURS


def group_of(keys: np.ndarray, groups: int) -> np.ndarray:
    """The MapState key of each entity key: the key itself, or `key % groups` when groups > 0."""
    return keys % groups if groups > 0 else keys


class EntityStateProcessor(StatefulProcessor):
    """Adds the entity's aggregates to every transaction, in event order, and keeps the touched keys' state."""

    def __init__(self, entity: str, label_delay_hours: int, drop: tuple[str, ...] = (), groups: int = 0,
                 ttl_ms: int | None = None, bypass: str | None = None, settle: bool = False) -> None:
        """`bypass`: a boolean column; its true rows go out unchanged, with null aggregates, and never touch
        the state (the stream's malformed and label messages travel with the transactions this way).
        `settle`: keep each key's buckets older than `settle_hour` in a value of their own (see above)."""
        self.entity = entity
        self.label_delay_hours = label_delay_hours
        self.drop = drop
        self.groups = groups
        self.ttl_ms = ttl_ms
        self.bypass = bypass
        self.settle = settle

    def init(self, handle: StatefulProcessorHandle) -> None:
        self.state = handle.getMapState("buckets", GROUP_SCHEMA, VALUE_SCHEMA, self.ttl_ms)
        if self.settle:
            self.settled = handle.getMapState("settled", GROUP_SCHEMA, VALUE_SCHEMA, self.ttl_ms)

    def handleInputRows(self, key: Any, rows: Iterator[pd.DataFrame], timerValues: Any) -> Iterator[pd.DataFrame]:
        frames = [f for f in rows if len(f)]
        if not frames:
            return
        batch = pd.concat(frames, ignore_index=True)
        if self.bypass is not None:
            passing = batch[self.bypass].to_numpy(bool)
            if passing.any():
                names = [a.name for a in AGGREGATES if a.entity == self.entity]
                yield batch[passing].drop(columns=[c for c in self.drop if c in batch.columns]).assign(
                    **{n: np.nan for n in names})
                batch = batch[~passing].reset_index(drop=True)
                if batch.empty:
                    return
        touched = np.unique(group_of(batch[ENTITY_KEYS[self.entity]].to_numpy(np.int64), self.groups)).tolist()
        parts = [self.state, self.settled] if self.settle else [self.state]
        before: list[dict[int, bytes]] = [{} for _ in parts]  # the stored bytes of each part, by group
        for group in touched:
            for part, stored in zip(parts, before):
                value = part.getValue((group,))
                if value is not None and value[0]:
                    stored[group] = value[0]
        blobs = [blob for stored in before for blob in stored.values()]
        aggregates, after = update(unpack(self.entity, blobs), batch, self.label_delay_hours)
        self._write(after, touched, parts, before)
        yield pd.concat([batch.drop(columns=[c for c in self.drop if c in batch.columns]), aggregates], axis=1)

    def _write(self, after: EntityState, touched: list[int], parts: list[Any], before: list[dict[int, bytes]]) -> None:
        """Store each touched group's new buckets: with `settle`, those before `settle_hour` in `settled` and
        the rest in `buckets`; without, all in `buckets`. A part is written only if its bytes changed, and
        removed if it became empty. An untouched group waits for its next transaction, or expires (TTL)."""
        part_of = np.zeros(len(after), np.int64)  # the index in `parts`: 0 recent (buckets), 1 settled
        if self.settle and len(after):
            part_of = (after.hour < settle_hour(int(after.hour.max()))).astype(np.int64)
        groups = group_of(after.key, self.groups)
        for p, (part, stored) in enumerate(zip(parts, before)):
            mine = np.flatnonzero(part_of == p)
            order = mine[np.argsort(groups[mine], kind="stable")]
            present, starts = np.unique(groups[order], return_index=True)
            ends = np.append(starts[1:], len(order))
            new = {g: pack(EntityState(self.entity, after.key[rows], after.hour[rows], after.sums[rows]))
                   for g, rows in zip(present.tolist(), (order[a:b] for a, b in zip(starts.tolist(), ends.tolist())))}
            for group in touched:
                value = new.get(group, b"")
                if value != stored.get(group, b""):
                    if value:
                        part.updateValue((group,), (value,))
                    else:
                        part.removeKey((group,))

    def close(self) -> None:
        pass
