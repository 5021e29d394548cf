"""The cards the bank has blocked, as the stream remembers them (the rule itself: models/blocking.py): a card
is blocked once one of its frauds is confirmed, from the event time of that confirmation, and its later
payments are not the legitimate traffic the alert budget and the terminal checks are about. Remembered for
`stream.blocked_card_days` of event time; a restart finds the cards of the frauds confirmed in that time in
`labels`, with the event time of each block (`confirmed_cards`)."""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from jobs.core.lake import table_exists
from models.blocking import confirmations


@dataclasses.dataclass
class BlockedCards:
    """The cards with a confirmed fraud and the event time they were blocked at, forgotten `days` after it. A
    card blocked before the clock has started (no transaction seen yet) takes the time of the first tick."""

    days: int = 30
    since: dict[int, np.datetime64] = dataclasses.field(default_factory=dict)
    unstamped: set[int] = dataclasses.field(default_factory=set)
    # a month of a bank's confirmed frauds is many cards, read at every micro-batch: `since` as a Series, made
    # again only after a change, and its oldest time, so that a tick forgets in one pass only when one is due
    _series: pd.Series | None = dataclasses.field(default=None, compare=False, repr=False)
    _oldest: np.datetime64 | None = dataclasses.field(default=None, compare=False, repr=False)

    def block(self, card: int, now: np.datetime64 | None) -> None:
        """Block `card` at `now` (None: the clock has not started), unless it is blocked already."""
        if card in self.since or card in self.unstamped:
            return
        if now is None:
            self.unstamped.add(card)
        else:
            self._stamp(card, now)

    def _stamp(self, card: int, when: np.datetime64) -> None:
        self.since[card] = when
        self._series = None
        self._oldest = when if self._oldest is None else min(self._oldest, when)

    def restore(self, since: pd.Series) -> None:
        """Block each card of `since` (a card -> its block's event time, as a restart reads it from `labels`)
        from that time, unless it is blocked already."""
        for card, when in since.items():
            if int(card) not in self:
                self._stamp(int(card), np.datetime64(pd.Timestamp(when), "us"))

    def tick(self, now: np.datetime64) -> None:
        """Move the event clock to `now`: stamp the cards waiting for it, forget those blocked too long ago."""
        for card in self.unstamped:
            self._stamp(card, now)
        self.unstamped.clear()
        oldest = now - np.timedelta64(dt.timedelta(days=self.days))
        if self._oldest is not None and self._oldest < oldest:
            self.since = {card: when for card, when in self.since.items() if when >= oldest}
            self._series = None
            self._oldest = min(self.since.values()) if self.since else None

    def mapping(self) -> pd.Series:
        """`since` as a Series (card -> when), for models/blocking.after_block over many payments."""
        if self._series is None:
            cards = np.fromiter(self.since.keys(), dtype=np.int64, count=len(self.since))
            times = np.array(list(self.since.values()), dtype="datetime64[us]")
            self._series = pd.Series(times, index=cards)
        return self._series

    def __contains__(self, card: object) -> bool:
        return card in self.since or card in self.unstamped

    def __len__(self) -> int:
        return len(self.since) + len(self.unstamped)


def confirmed_cards(spark: SparkSession, labels_path: str, days: int) -> pd.Series:
    """The cards blocked by the frauds confirmed in `labels` among the transactions of the last `days` before
    the newest labelled one, and since when: the cards a restart takes as blocked."""
    if not table_exists(spark, labels_path):
        return blocks(spark, labels_path)
    newest = spark.read.format("delta").load(labels_path).select(F.max("tx_datetime")).collect()[0][0]
    return blocks(spark, labels_path, None if newest is None else newest - dt.timedelta(days=days))


def blocks(spark: SparkSession, labels_path: str, after: dt.datetime | None = None) -> pd.Series:
    """The cards blocked by the frauds confirmed in `labels` (of transactions after `after`, if given), each
    with its block's event time (models/blocking.confirmations); none if there is no table."""
    columns = ["customer_id", "tx_fraud", "tx_datetime", "event_clock"]
    if not table_exists(spark, labels_path):
        return confirmations(pd.DataFrame(columns=columns))
    labels = spark.read.format("delta").load(labels_path)
    if after is not None:
        labels = labels.where(F.col("tx_datetime") > F.lit(after))
    frauds: pd.DataFrame = (
        labels.where("tx_fraud = 1 AND customer_id IS NOT NULL")
        .select(*[c for c in columns if c in labels.columns])  # a table older than `event_clock`: without it
        .toPandas()
    )
    return confirmations(frauds)
