"""The bank's rule of the blocked card, written once: a card is blocked from the moment a fraud of it is
confirmed, and its payments made after that moment are not the traffic the bank's requirement, the
alert budget or the terminal checks are about (the bank has blocked the card; it would decline them). A later
label that calls the fraud genuine does not unblock the card: the bank has blocked it and reissued it.

All times are event time: the transactions' own `tx_datetime`, and for a confirmation the event clock of the
system that received it (`fraud stream` writes its clock into each row of `labels` as `event_clock`: the
newest transaction time it had scored when the label came). Used by the stream (jobs/stream/alert_budget.py),
`fraud backtest`, `fraud demo`, the fraud desk's requirement page and the training split."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd


def blocked_since(cards: Any, confirmed_at: Any) -> pd.Series:
    """When each card was blocked: the earliest of the confirmations of its frauds (`cards[i]` confirmed at
    `confirmed_at[i]`), as a Series card -> time."""
    times = pd.Series(pd.to_datetime(np.asarray(confirmed_at)), index=pd.Index(np.asarray(cards), name="card"))
    return times[times.notna()].groupby(level=0).min()


def after_block(cards: Any, at: Any, since: Mapping[Any, Any] | pd.Series) -> np.ndarray:
    """True for each payment (`cards[i]` at `at[i]`) made after its card was blocked (`since`: a card -> the
    time it was blocked, as `blocked_since` gives it). Strictly after: the event clock a block takes is the
    time of the newest payment scored before it, which was made before the block."""
    if len(since) == 0:
        return np.zeros(len(cards), dtype=bool)
    blocked = pd.Series(np.asarray(cards)).map(since).to_numpy(dtype="datetime64[us]")  # NaT: not blocked
    return np.asarray(pd.to_datetime(np.asarray(at)), dtype="datetime64[us]") > blocked


def confirmations(labels: pd.DataFrame) -> pd.Series:
    """When each card was blocked, from rows of `labels` (`customer_id`, `tx_fraud`, `event_clock`, and
    `tx_datetime` for the rows written before `event_clock` was, which take their transaction's time): the
    first label confirming a fraud of the card."""
    frauds = labels[(labels["tx_fraud"] == 1) & labels["customer_id"].notna()]
    clock = pd.to_datetime(frauds["event_clock"]) if "event_clock" in frauds else pd.Series(pd.NaT, frauds.index)
    at = clock.fillna(pd.to_datetime(frauds["tx_datetime"]))
    return blocked_since(frauds["customer_id"].astype("int64"), at)
