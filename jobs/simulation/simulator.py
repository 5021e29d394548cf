"""The transaction simulator of the "Reproducible Machine Learning for Credit Card Fraud Detection" handbook
(Le Borgne et al.), vectorised with numpy and streamed day by day (see ../shared/SIMULATOR.md).

Memory is bounded whatever the number of days: profiles, the customers' terminal lists, and a 14-day
look-ahead of transaction counts and times (needed because a compromised card has exactly int(n/3) of the
n transactions of its 14-day window made fraudulent, and n is known only once the window is drawn).
Each day draws from its own generators, keyed by (seed, stage, day), so the output is deterministic for a
seed and independent of how the days are chunked.
"""

from __future__ import annotations

import datetime as dt
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

SECONDS_PER_DAY = 86_400
TERMINAL_FRAUD_DAYS = 28  # scenario 2: the day of compromise and the next 27
CARD_FRAUD_DAYS = 14  # scenario 3: the day of compromise and the next 13
AMOUNT_FRAUD_THRESHOLD = 220.0
CARD_FRAUD_MULTIPLIER = 5.0


@dataclass(frozen=True)
class SimulationSpec:
    """Sizes of one simulation. Presets: `PRESETS["handbook"]`, `PRESETS["otus"]`."""

    customers: int = 5_000
    terminals: int = 10_000
    days: int = 183
    start_date: dt.date = dt.date(2018, 4, 1)
    radius: float = 5.0
    seed: int = 0
    # 2 in the handbook and the bank's data (of 1,000 terminals there); a fraction keeps the bank's share of
    # terminals compromised a day with fewer terminals: 0.25 of 125 is a compromise every fourth day on average
    terminals_compromised_per_day: float = 2
    cards_compromised_per_day: int = 3
    # how long a compromised terminal's payments are fraud: the day of its compromise and the days after
    terminal_fraud_days: int = TERMINAL_FRAUD_DAYS

    def __post_init__(self) -> None:
        for name in ("customers", "terminals", "days"):
            if getattr(self, name) <= 0:
                raise ValueError(f"simulation: {name} must be a positive whole number, found {getattr(self, name)}")
        if self.radius <= 0:
            raise ValueError(f"simulation: radius must be positive, found {self.radius}")
        if self.terminal_fraud_days <= 0:
            raise ValueError(
                f"simulation: a compromise lasts a positive whole number of days, found {self.terminal_fraud_days}"
            )
        if not 0 <= self.terminals_compromised_per_day <= self.terminals:
            raise ValueError(
                f"simulation: terminals compromised a day must be between 0 and the terminals "
                f"({self.terminals}), found {self.terminals_compromised_per_day}"
            )


PRESETS: dict[str, SimulationSpec] = {
    # The handbook's reference sizes: 1,754,155 transactions, 0.84% fraud.
    "handbook": SimulationSpec(),
    # The bank's course data: ~1.57 million transactions a day on ~1,000 terminals, from 2019-08-22, 1,200 days.
    # 810,000 cards give that volume (each card makes 1.94 transactions a day on average).
    "otus": SimulationSpec(customers=810_000, terminals=1_000, days=1_200, start_date=dt.date(2019, 8, 22)),
}


def make_spec(preset: str = "handbook", **changes: object) -> SimulationSpec:
    """Return a preset with some sizes changed (None values are ignored)."""
    if preset not in PRESETS:
        raise ValueError(f"simulation: unknown preset {preset!r}; expected one of {sorted(PRESETS)}")
    return replace(PRESETS[preset], **{k: v for k, v in changes.items() if v is not None})  # type: ignore[arg-type]


@dataclass
class Profiles:
    """Customer and terminal profiles, and each customer's reachable terminals (CSR: offsets, indices)."""

    customer_xy: np.ndarray
    mean_amount: np.ndarray
    std_amount: np.ndarray
    mean_nb_tx_per_day: np.ndarray
    terminal_xy: np.ndarray
    terminal_offsets: np.ndarray
    terminal_ids: np.ndarray

    @property
    def n_terminals_available(self) -> np.ndarray:
        return np.diff(self.terminal_offsets)


def generate_profiles(spec: SimulationSpec) -> Profiles:
    """Draw the profiles as the reference does: per customer x, y, mean_amount, mean_nb_tx_per_day in that
    order from numpy seeded `seed` (0), terminals' x, y from numpy seeded `seed + 1` (1)."""
    u = np.random.RandomState(spec.seed).random_sample((spec.customers, 4))
    customer_xy = u[:, :2] * 100.0
    mean_amount = 5.0 + 95.0 * u[:, 2]
    mean_nb = 4.0 * u[:, 3]
    terminal_xy = np.random.RandomState(spec.seed + 1).random_sample((spec.terminals, 2)) * 100.0
    offsets, ids = _terminals_within_radius(customer_xy, terminal_xy, spec.radius)
    return Profiles(customer_xy, mean_amount, mean_amount / 2.0, mean_nb, terminal_xy, offsets, ids)


def _terminals_within_radius(
    customer_xy: np.ndarray, terminal_xy: np.ndarray, r: float
) -> tuple[np.ndarray, np.ndarray]:
    """CSR lists of the terminals strictly closer than r to each customer, by chunks of customers."""
    n_c, n_t = len(customer_xy), len(terminal_xy)
    chunk = max(1, 8_000_000 // max(n_t, 1))
    counts = np.zeros(n_c, dtype=np.int64)
    parts: list[np.ndarray] = []
    for start in range(0, n_c, chunk):
        block = customer_xy[start : start + chunk]
        d2 = ((block[:, None, :] - terminal_xy[None, :, :]) ** 2).sum(axis=2)
        rows, cols = np.nonzero(np.sqrt(d2) < r)
        counts[start : start + len(block)] = np.bincount(rows, minlength=len(block))
        parts.append(cols.astype(np.int32))
    offsets = np.concatenate([[0], np.cumsum(counts)])
    return offsets, (np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32))


def _rng(seed: int, stage: int, day: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, stage, day])))


@dataclass
class _DayDraw:
    """Stage A of one day: which customer transacts at what second (times already filtered, 0 < t < 86400)."""

    customer: np.ndarray
    time: np.ndarray
    per_customer: np.ndarray  # valid transactions per customer this day


@dataclass
class _CardCompromise:
    customer: int
    selected: np.ndarray  # ordinals (0..n-1) of the window's transactions that become fraud
    seen: int = 0


@dataclass
class DayBatch:
    """One day of transactions (a pandas DataFrame with TRANSACTION_SCHEMA's columns, ids already set)."""

    day: int
    frame: pd.DataFrame


@dataclass
class Simulator:
    """Generate the transactions of `spec` day by day. Iterate over `days()`."""

    spec: SimulationSpec
    profiles: Profiles = field(init=False)
    # what `days()` drew, for checks and the manifest: (day, terminal) and (day, card, n in window, frauds)
    terminal_log: list[tuple[int, int]] = field(init=False, default_factory=list)
    card_log: list[tuple[int, int, int, int]] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.profiles = generate_profiles(self.spec)

    def _draw_stage_a(self, day: int) -> _DayDraw:
        p, rng = self.profiles, _rng(self.spec.seed, 1, day)
        counts = rng.poisson(p.mean_nb_tx_per_day)
        customer = np.repeat(np.arange(self.spec.customers, dtype=np.int64), counts)
        time = rng.normal(SECONDS_PER_DAY / 2, 20_000, len(customer)).astype(np.int64)  # int(): toward zero
        # a transaction out of the day, or of a customer without any terminal in reach, never happens
        keep = (time > 0) & (time < SECONDS_PER_DAY) & (p.n_terminals_available[customer] > 0)
        customer, time = customer[keep], time[keep]
        return _DayDraw(customer, time, np.bincount(customer, minlength=self.spec.customers))

    def _draw_stage_b(self, draw: _DayDraw, day: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Amounts and terminals of a day's draw; (customer, time, amount, terminal) sorted by time."""
        p, rng = self.profiles, _rng(self.spec.seed, 2, day)
        c = draw.customer
        amount = rng.normal(p.mean_amount[c], p.std_amount[c])
        negative = amount < 0
        amount[negative] = rng.uniform(0, 2 * p.mean_amount[c[negative]])
        amount = np.round(amount, 2)
        n_avail = p.n_terminals_available[c]
        pick = (rng.random(len(c)) * n_avail).astype(np.int64)
        terminal = p.terminal_ids[p.terminal_offsets[c] + pick].astype(np.int64)
        order = np.lexsort((c, draw.time))
        return c[order], draw.time[order], amount[order], terminal[order]

    def _compromise_terminals(
        self, day: int, frng: np.random.Generator, compromises: deque[tuple[int, np.ndarray]]
    ) -> np.ndarray:
        """Draw the day's compromised terminals (a fractional rate is a chance of one more) into `compromises`
        (start day, terminals), drop those past `terminal_fraud_days`; return the terminals compromised now."""
        rate = self.spec.terminals_compromised_per_day
        count = int(rate) + int(frng.random() < rate - int(rate)) if rate != int(rate) else int(rate)
        drawn = frng.choice(self.spec.terminals, size=count, replace=False)
        compromises.append((day, drawn))
        self.terminal_log.extend((day, int(t)) for t in drawn)
        while compromises and compromises[0][0] <= day - self.spec.terminal_fraud_days:
            compromises.popleft()
        return np.concatenate([t for _, t in compromises])

    def days(self) -> Iterator[DayBatch]:
        """Yield each day's transactions, sorted by time, numbered on from the previous day's."""
        spec = self.spec
        lookahead: deque[_DayDraw] = deque()
        next_drawn = 0
        terminal_compromises: deque[tuple[int, np.ndarray]] = deque()  # (start day, terminals)
        card_compromises: list[tuple[int, _CardCompromise]] = []  # (start day, compromise)
        next_id = 0
        for day in range(spec.days):
            while next_drawn < min(day + CARD_FRAUD_DAYS, spec.days):
                lookahead.append(self._draw_stage_a(next_drawn))
                next_drawn += 1
            draw = lookahead.popleft()
            c, time, amount, terminal = self._draw_stage_b(draw, day)
            n = len(c)
            fraud = np.zeros(n, dtype=np.int8)
            scenario = np.zeros(n, dtype=np.int8)
            # scenario 1: large amounts
            s1 = amount > AMOUNT_FRAUD_THRESHOLD
            fraud[s1], scenario[s1] = 1, 1
            # scenario 2: compromised terminals, terminal_fraud_days (28) from the day they are drawn
            frng = _rng(spec.seed, 3, day)
            s2 = np.isin(terminal, self._compromise_terminals(day, frng, terminal_compromises))
            fraud[s2], scenario[s2] = 1, 2
            # scenario 3: compromised cards, int(n/3) of the window's n transactions, amount x 5
            cards = frng.choice(spec.customers, size=min(spec.cards_compromised_per_day, spec.customers), replace=False)
            window = [draw, *list(lookahead)[: CARD_FRAUD_DAYS - 1]]
            for card in cards:
                n_window = int(sum(int(w.per_customer[card]) for w in window))
                selected = (
                    np.sort(frng.choice(n_window, size=n_window // 3, replace=False))
                    if n_window
                    else np.zeros(0, np.int64)
                )
                card_compromises.append((day, _CardCompromise(int(card), selected)))
                self.card_log.append((day, int(card), n_window, len(selected)))
            card_compromises = [(s, cc) for s, cc in card_compromises if s > day - CARD_FRAUD_DAYS]
            for _, cc in card_compromises:
                rows = np.flatnonzero(c == cc.customer)
                ordinals = np.arange(cc.seen, cc.seen + len(rows))
                cc.seen += len(rows)
                hit = rows[np.isin(ordinals, cc.selected)]
                amount[hit] = np.round(amount[hit] * CARD_FRAUD_MULTIPLIER, 2)
                fraud[hit], scenario[hit] = 1, 3
            frame = pd.DataFrame(
                {
                    "transaction_id": np.arange(next_id, next_id + n, dtype=np.int64),
                    "tx_time_seconds": time + day * SECONDS_PER_DAY,
                    "customer_id": c,
                    "terminal_id": terminal,
                    "tx_amount": amount,
                    "tx_time_days": np.full(n, day, dtype=np.int64),
                    "tx_fraud": fraud,
                    "tx_fraud_scenario": scenario,
                }
            )
            next_id += n
            yield DayBatch(day, frame)
