"""The stateful step of the streaming job: one transformWithStateInPandas processor per entity, keyed by a
hash bucket of the entity's key, whose state is that bucket's EntityState (features/state.py) stored as
one binary value. Each micro-batch calls Python once per bucket, with every transaction of the bucket:
the update is vectorised across all the bucket's cards (or terminals)."""
from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql.streaming.stateful_processor import StatefulProcessor, StatefulProcessorHandle
from pyspark.sql.types import BinaryType, StructField, StructType

from features.state import EntityState, update

STATE_SCHEMA = StructType([StructField("buckets", BinaryType(), True)])


def pack(state: EntityState) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, key=state.key, hour=state.hour, sums=state.sums)  # compressing cost more CPU than it saved
    return buf.getvalue()


def unpack(entity: str, blob: bytes | None) -> EntityState:
    if not blob:
        return EntityState.empty(entity)
    with np.load(io.BytesIO(blob)) as z:
        return EntityState(entity, z["key"], z["hour"], z["sums"])


class EntityStateProcessor(StatefulProcessor):
    """Adds the entity's aggregates to every transaction, in event order, and keeps the bucket's state."""

    def __init__(self, entity: str, label_delay_hours: int, drop: tuple[str, ...] = ()) -> None:
        self.entity = entity
        self.label_delay_hours = label_delay_hours
        self.drop = drop

    def init(self, handle: StatefulProcessorHandle) -> None:
        self.state = handle.getValueState("buckets", STATE_SCHEMA)

    def handleInputRows(self, key: Any, rows: Iterator[pd.DataFrame], timerValues: Any) -> Iterator[pd.DataFrame]:
        frames = [f for f in rows if len(f)]
        if not frames:
            return
        batch = pd.concat(frames, ignore_index=True)
        current = self.state.get() if self.state.exists() else None
        before = unpack(self.entity, current[0] if current else None)
        aggregates, after = update(before, batch, self.label_delay_hours)
        self.state.update((pack(after),))
        yield pd.concat([batch.drop(columns=[c for c in self.drop if c in batch.columns]), aggregates], axis=1)

    def close(self) -> None:
        pass
