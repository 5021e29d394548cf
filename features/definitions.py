"""The one definition of every model input.

Two layers:
- `AGGREGATES`: windowed counts and sums per card or per terminal. Windows are made of whole hours of
  event time (`hour = floor(epoch seconds / 3600)`), so that a streaming state of hourly buckets computes
  exactly what the batch job computes:
  * a card window of w days (`include_current`) covers the transaction's own hour up to and including the
    transaction, plus the 24*w - 1 hours before it;
  * a label window (`delayed`) covers 24*w whole hours ending `label_delay_hours` hours before the
    transaction's hour starts: only transactions whose labels are known by then (7 days in the handbook).
- `FEATURES`: the model's inputs, derived from one transaction and its aggregates by `derive_features`
  (pandas), used by the batch feature job (through mapInPandas) and by the streaming job alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

HOUR = 3_600
WINDOWS_DAYS = (1, 7, 30)
# a terminal also has 14- and 21-day label windows: a compromised terminal stays compromised 28 days, and
# whether the weeks before the label delay were all fraud tells whether that is over (mean validation
# average precision 0.652 -> 0.661 on the prequential folds of benchmarks/model_selection.py)
TERMINAL_WINDOWS_DAYS = (1, 7, 14, 21, 30)
DEFAULT_LABEL_DELAY_HOURS = 7 * 24
ENTITY_KEYS = {"card": "customer_id", "terminal": "terminal_id"}
# what an aggregate sums, per transaction: 1, its amount, its fraud label, its amount squared (for the
# card's amount variance); features/batch.py says how each is computed, for the batch job and the stream
MEASURES = ("count", "amount", "fraud", "amount_sq")
# the measures a late label changes: a label increment (+1 when a transaction is confirmed fraud, -1 when
# a label is withdrawn) adds to these at the labelled transaction's hour, and to no other measure
LABEL_MEASURES = ("fraud",)


@dataclass(frozen=True)
class Aggregate:
    """A windowed sum per entity: `measure` summed over the entity's transactions in the window."""

    name: str
    entity: str  # "card" or "terminal"
    measure: str  # "count", "amount" or "fraud"
    window_days: int
    delayed: bool  # window ends label_delay_hours before the transaction's hour (needs labels)
    description: str

    @property
    def key(self) -> str:
        return ENTITY_KEYS[self.entity]

    def hour_range(self, label_delay_hours: int) -> tuple[int, int]:
        """(first, last) hour offsets relative to the transaction's hour; 0 means the current hour, where
        only transactions up to and including this one count."""
        if self.delayed:
            return -(label_delay_hours + 24 * self.window_days), -(label_delay_hours + 1)
        return -(24 * self.window_days - 1), 0


def _aggregates() -> tuple[Aggregate, ...]:
    out: list[Aggregate] = []
    for w in WINDOWS_DAYS:
        out.append(
            Aggregate(
                f"card_tx_count_{w}d",
                "card",
                "count",
                w,
                False,
                f"transactions of the card in the last {w} day(s), this one included",
            )
        )
        out.append(
            Aggregate(
                f"card_amount_sum_{w}d",
                "card",
                "amount",
                w,
                False,
                f"amount spent by the card in the last {w} day(s), this one included",
            )
        )
        out.append(
            Aggregate(
                f"card_amount_sq_sum_{w}d",
                "card",
                "amount_sq",
                w,
                False,
                f"sum of squared amounts of the card in the last {w} day(s), this one included",
            )
        )
    for w in TERMINAL_WINDOWS_DAYS:
        out.append(
            Aggregate(
                f"terminal_tx_count_{w}d",
                "terminal",
                "count",
                w,
                True,
                f"transactions at the terminal in the {w} day(s) ending at the label delay",
            )
        )
        out.append(
            Aggregate(
                f"terminal_fraud_count_{w}d",
                "terminal",
                "fraud",
                w,
                True,
                f"known frauds at the terminal in the {w} day(s) ending at the label delay",
            )
        )
    out.append(
        Aggregate(
            "card_fraud_count_30d",
            "card",
            "fraud",
            30,
            True,
            "known frauds of the card in the 30 days ending at the label delay",
        )
    )
    return tuple(out)


AGGREGATES: tuple[Aggregate, ...] = _aggregates()


def lookback_hours(entity: str, label_delay_hours: int) -> int:
    """How many hours before a transaction's hour the entity's aggregates reach: what its state keeps."""
    return max(-a.hour_range(label_delay_hours)[0] for a in AGGREGATES if a.entity == entity)


@dataclass(frozen=True)
class Feature:
    """One model input."""

    name: str
    dtype: str  # "double" for every input: one float matrix for the model
    entity: str  # "transaction", "card" or "terminal"
    window_days: int | None
    uses_labels: bool  # depends on fraud labels, hence on the label delay
    description: str


def _features() -> tuple[Feature, ...]:
    f = [
        Feature("tx_amount", "double", "transaction", None, False, "amount of the transaction"),
        Feature("tx_is_weekend", "double", "transaction", None, False, "1 on Saturday and Sunday (UTC)"),
        Feature("tx_is_night", "double", "transaction", None, False, "1 when the hour is 0 to 6 (UTC)"),
    ]
    for w in WINDOWS_DAYS:
        f.append(
            Feature(
                f"card_tx_count_{w}d",
                "double",
                "card",
                w,
                False,
                f"transactions of the card in the last {w} day(s), this one included",
            )
        )
        f.append(
            Feature(
                f"card_amount_mean_{w}d",
                "double",
                "card",
                w,
                False,
                f"mean amount of the card in the last {w} day(s), this one included",
            )
        )
    for w in WINDOWS_DAYS:
        f.append(
            Feature(
                f"card_amount_zscore_{w}d",
                "double",
                "card",
                w,
                False,
                f"(amount - the card's mean amount) / sqrt(variance + 1) over the last {w} day(s), this one "
                "included: how unusual the amount is for this card",
            )
        )
    f.append(
        Feature(
            "card_amount_ratio_30d",
            "double",
            "card",
            30,
            False,
            "amount / mean amount of the card's other transactions in the last 30 days "
            "(null/NaN without any): compromised cards spend five times their usual amounts",
        )
    )
    for w in (1, 7):
        f.append(
            Feature(
                f"card_mean_ratio_{w}d_30d",
                "double",
                "card",
                30,
                False,
                f"mean amount of the card in the last {w} day(s) / its mean amount in the last 30 days, this "
                "transaction included (null/NaN if that is not positive): a compromised card's recent spending "
                "rises against its month",
            )
        )
    f.append(
        Feature(
            "card_fraud_count_30d",
            "double",
            "card",
            30,
            True,
            "known frauds of the card in the 30 days ending at the label delay",
        )
    )
    for w in TERMINAL_WINDOWS_DAYS:
        f.append(
            Feature(
                f"terminal_tx_count_{w}d",
                "double",
                "terminal",
                w,
                True,
                f"transactions at the terminal in the {w} day(s) ending at the label delay",
            )
        )
        f.append(
            Feature(
                f"terminal_risk_{w}d",
                "double",
                "terminal",
                w,
                True,
                f"share of known frauds at the terminal in the {w} day(s) ending at the label delay "
                "(0 when it had no transaction)",
            )
        )
    return tuple(f)


FEATURES: tuple[Feature, ...] = _features()
FEATURE_NAMES: list[str] = [f.name for f in FEATURES]
AGGREGATE_NAMES: list[str] = [a.name for a in AGGREGATES]


def parse_delay(text: str | int) -> int:
    """A label delay as whole hours: ``"7d"``, ``"1d"``, ``"1h"``, ``"36h"`` or a number of hours."""
    if isinstance(text, int):
        hours = text
    else:
        t = str(text).strip().lower()
        try:
            hours = int(t[:-1]) * 24 if t.endswith("d") else int(t[:-1]) if t.endswith("h") else int(t)
        except ValueError:
            raise ValueError(f"label delay must look like 7d, 1d or 1h, found {text!r}") from None
    if hours < 0:
        raise ValueError(f"label delay must be 0 hours or more, found {text!r}")
    return hours


def derive_features(frame: pd.DataFrame) -> pd.DataFrame:
    """Compute FEATURES from transactions and their AGGREGATES (pandas in, pandas out).

    Args:
        frame: columns `tx_datetime` (UTC timestamps), `tx_amount` and every name in AGGREGATE_NAMES.

    Returns:
        One float64 column per FEATURES name, in that order, same index.
    """
    missing = [c for c in ("tx_datetime", "tx_amount", *AGGREGATE_NAMES) if c not in frame.columns]
    if missing:
        raise ValueError(
            f"derive_features: the input must contain columns {AGGREGATE_NAMES}, "
            f"tx_datetime and tx_amount, but {missing} were missing"
        )
    ts = pd.to_datetime(frame["tx_datetime"])
    amount = frame["tx_amount"].astype("float64")
    out = pd.DataFrame(index=frame.index)
    out["tx_amount"] = amount
    out["tx_is_weekend"] = (ts.dt.weekday >= 5).astype("float64")
    out["tx_is_night"] = (ts.dt.hour <= 6).astype("float64")
    for w in WINDOWS_DAYS:
        count = frame[f"card_tx_count_{w}d"].astype("float64")
        out[f"card_tx_count_{w}d"] = count
        out[f"card_amount_mean_{w}d"] = np.where(
            count > 0, frame[f"card_amount_sum_{w}d"] / count.where(count > 0, 1), 0.0
        )
    for w in WINDOWS_DAYS:
        count = frame[f"card_tx_count_{w}d"].astype("float64").where(lambda c: c > 0, 1.0)
        mean = frame[f"card_amount_sum_{w}d"] / count
        variance = (frame[f"card_amount_sq_sum_{w}d"] / count - mean**2).clip(lower=0.0)
        out[f"card_amount_zscore_{w}d"] = (amount - mean) / np.sqrt(variance + 1.0)
    others = frame["card_tx_count_30d"].astype("float64") - 1
    other_mean = (frame["card_amount_sum_30d"] - amount) / others.where(others > 0, np.nan)
    out["card_amount_ratio_30d"] = amount / other_mean.where(other_mean > 0, np.nan)
    mean_30d = out["card_amount_mean_30d"].where(out["card_amount_mean_30d"] > 0, np.nan)
    for w in (1, 7):
        out[f"card_mean_ratio_{w}d_30d"] = out[f"card_amount_mean_{w}d"] / mean_30d
    out["card_fraud_count_30d"] = frame["card_fraud_count_30d"].astype("float64")
    for w in TERMINAL_WINDOWS_DAYS:
        count = frame[f"terminal_tx_count_{w}d"].astype("float64")
        out[f"terminal_tx_count_{w}d"] = count
        out[f"terminal_risk_{w}d"] = np.where(
            count > 0, frame[f"terminal_fraud_count_{w}d"] / count.where(count > 0, 1), 0.0
        )
    return out[FEATURE_NAMES]
