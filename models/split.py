"""Time splits of the handbook's protocol: train, then a label delay, then test; a validation window at the
end of the training window; and the rule that a card with a known fraud leaves the test days."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandas as pd

from models.blocking import after_block, blocked_since
from models.errors import ModelError


@dataclass(frozen=True)
class Split:
    """Day windows: fit [train_start, val_start), validate [val_start, train_end), delay, test.

    The model is fitted on the training window minus its last `val_days`, which choose the number of trees
    and the threshold; it is then refitted on the whole training window. Nothing after `train_end` is used
    for training: the `delay_days` after it are the days whose labels are not known yet when the model
    goes live at `test_start`.
    """

    train_start: dt.date
    train_days: int = 7
    delay_days: int = 7
    test_days: int = 7
    val_days: int = 2

    def __post_init__(self) -> None:
        if self.train_days < 2 or self.test_days < 1 or self.delay_days < 0:
            raise ModelError(f"split: expected train_days >= 2, test_days >= 1, delay_days >= 0, found {self}")
        if not 1 <= self.val_days < self.train_days:
            raise ModelError(
                f"split: val_days must be between 1 and train_days - 1 ({self.train_days - 1}), found {self.val_days}"
            )

    @property
    def val_start(self) -> dt.date:
        return self.train_start + dt.timedelta(days=self.train_days - self.val_days)

    @property
    def train_end(self) -> dt.date:
        return self.train_start + dt.timedelta(days=self.train_days)

    @property
    def test_start(self) -> dt.date:
        return self.train_end + dt.timedelta(days=self.delay_days)

    @property
    def test_end(self) -> dt.date:
        return self.test_start + dt.timedelta(days=self.test_days)

    def as_params(self) -> dict[str, str]:
        return {
            "train_start": str(self.train_start),
            "train_end": str(self.train_end),
            "val_start": str(self.val_start),
            "test_start": str(self.test_start),
            "test_end": str(self.test_end),
            "delay_days": str(self.delay_days),
        }


def in_days(frame: pd.DataFrame, start: dt.date, end: dt.date) -> pd.DataFrame:
    """Rows whose `tx_date` is in [start, end)."""
    days = pd.to_datetime(frame["tx_date"]).dt.date
    return frame[(days >= start) & (days < end)]


def drop_known_fraud_cards(history: pd.DataFrame, days: pd.DataFrame, label_delay_hours: int) -> pd.DataFrame:
    """The handbook's rule: on each evaluation day, leave out the cards with a fraud already known before the
    start of that day (a fraud is known `label_delay_hours` after it happened), as the bank would have
    blocked them (models/blocking.py, with the day's start as each payment's time).

    Args:
        history: transactions with `customer_id`, `tx_datetime`, `tx_fraud`: as in the handbook, those from
            the start of the training window on.
        days: the evaluation rows (`tx_date`, `customer_id`, ...).
    """
    frauds = history[history["tx_fraud"] == 1]
    since = blocked_since(
        frauds["customer_id"], pd.to_datetime(frauds["tx_datetime"]) + pd.Timedelta(hours=label_delay_hours)
    )
    # the day's payments as if made at its start: a card blocked before the day begins is left out all day
    return days[~after_block(days["customer_id"], pd.to_datetime(days["tx_date"]), since)]
