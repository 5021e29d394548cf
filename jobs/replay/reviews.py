"""The labels `fraud backtest`'s loop produces: the fraud team's reviews of the stream's alerts, and the
cardholders' disputes of the frauds nobody confirmed (FRAUD-OPS: feedbacks are fast and biased, disputes late
and partial, the team's capacity is the budget).

A review takes an alert from the team's queue, oldest or riskiest first, within the team's working hours and
its capacity a day, and gives its label `delay` after it was taken: the truth, or the other label for a share
of reviews (a call that reached the wrong person, a cardholder mistaken), or no label at all for another share
(nobody answered: the alert leaves the queue without one). What the capacity leaves waits in the queue.
A fraud nobody has confirmed is disputed by its cardholder for a share of frauds, `delay` to `delay + spread`
after it (uniformly); a dispute of a fraud a review already confirmed adds nothing and is not sent.

With no capacity, no working hours, no errors, every fraud disputed and no spread (`Reviews()` and
`Disputes()` at their defaults) every alert's label is the truth, due its review delay after its transaction,
and every missed fraud's is due the dispute delay after it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from jobs.core.errors import FraudError

HOUR = dt.timedelta(hours=1)


@dataclasses.dataclass(frozen=True)
class Reviews:
    """How the fraud team reviews alerts."""

    delay: dt.timedelta = HOUR  # an alert taken up -> its label
    capacity: int | None = None  # reviews a day (None: every alert, at once)
    hours: tuple[int, int] | None = None  # [first, last) hour of the day reviews are done in (None: day and night)
    wrong: float = 0.0  # the share of reviews whose label is the other one
    unanswered: float = 0.0  # the share of reviews that give no label
    order: str = "oldest"  # which waiting alert is taken first: oldest (by its transaction) or riskiest (score)

    def __post_init__(self) -> None:
        if self.capacity is not None and self.capacity < 1:
            raise FraudError(
                f"--review-capacity: expected a whole number of reviews a day of 1 or more, found {self.capacity}"
            )
        if self.hours is not None and not 0 <= self.hours[0] < self.hours[1] <= 24:
            raise FraudError(f"--review-hours: expected FIRST-LAST with 0 <= FIRST < LAST <= 24, found {self.hours}")
        for name, share in (("--review-wrong", self.wrong), ("--review-unanswered", self.unanswered)):
            if not 0 <= share < 1:
                raise FraudError(f"{name}: expected a share of 0 or more, below 1, found {share}")
        if self.order not in ("oldest", "riskiest"):
            raise FraudError(f"--review-order: expected oldest or riskiest, found {self.order!r}")

    @property
    def oracle(self) -> bool:
        """Whether every alert gets its true label, its review delay after its transaction."""
        return self.capacity is None and self.hours is None and not self.wrong and not self.unanswered

    def per_hour(self, hour: int) -> float:
        """The reviews the team can take up in an hour of the day (capacity spread over its working hours)."""
        first, last = self.hours or (0, 24)
        if not first <= hour < last:
            return 0.0
        return float("inf") if self.capacity is None else self.capacity / (last - first)


@dataclasses.dataclass(frozen=True)
class Disputes:
    """How cardholders dispute the frauds nobody confirmed."""

    delay: dt.timedelta = dt.timedelta(days=7)  # a fraud -> its earliest dispute
    spread: dt.timedelta = dt.timedelta(0)  # disputes come uniformly within this after `delay`
    share: float = 1.0  # the share of frauds disputed

    def __post_init__(self) -> None:
        if not 0 < self.share <= 1:
            raise FraudError(f"--dispute-share: expected a share above 0, at most 1, found {self.share}")


def parse_hours(text: str | None) -> tuple[int, int] | None:
    """`--review-hours` FIRST-LAST (e.g. 8-20) -> (8, 20); None or "all" -> None."""
    if text is None or text.strip().lower() == "all":
        return None
    try:
        first, last = (int(part) for part in text.split("-"))
    except ValueError:
        raise FraudError(f"--review-hours: expected FIRST-LAST hours (e.g. 8-20) or all, found {text!r}") from None
    return first, last


class Feedback:
    """The labels of the loop (see the module's doc): `read` takes each step's alerts and payments, `due` the
    labels due by a time. `rng` draws the errors and the disputes (the replay's seed)."""

    def __init__(
        self,
        reviews: Reviews,
        disputes: Disputes,
        truth: dict[int, int],
        tx_time: dict[int, dt.datetime],
        rng: np.random.Generator,
    ) -> None:
        self.reviews, self.disputes, self.truth, self.tx_time, self.rng = reviews, disputes, truth, tx_time, rng
        self.alerted: set[int] = set()
        self.seen_frauds: set[int] = set()  # frauds whose dispute was drawn (a transaction sent twice, once)
        self.disputed: set[int] = set()  # frauds their cardholder disputes
        self.queue: dict[int, float] = {}  # alerts waiting for a review -> their score
        self.worked_until: dt.datetime | None = None  # the team's clock: reviews are taken up to it
        self.carry = 0.0  # the part of a review the last hour's capacity left
        self.pending: list[tuple[dt.datetime, int, int]] = []  # (due, transaction id, label)
        self.known_fraud: set[int] = set()  # labelled fraud by a review: its dispute adds nothing
        self.confirmed: dict[int, dt.datetime] = {}  # labelled fraud -> when (the bank blocks the card then)
        self.review_hours: list[float] = []  # alert -> its label, for the reviews delivered
        self.reviews_due: set[tuple[dt.datetime, int]] = set()  # the pending labels that are reviews'
        self.review_label: dict[int, int] = {}  # a reviewed alert -> the label its review gives
        self.counts = dict.fromkeys(("reviewed", "unanswered", "wrong", "disputes_sent"), 0)

    def read(self, alerts: Iterable[tuple[int, float]], lines: Sequence[str]) -> None:
        """A step's new alerts (transaction id, score) join the review queue (one of a line the backtest cannot
        read has no truth to give); its frauds draw their disputes. `lines`: the step's payments as sent."""
        for t, score in alerts:
            if t in self.alerted or t not in self.truth:
                continue
            self.alerted.add(t)
            if self.reviews.oracle:
                self._label(self.tx_time[t] + self.reviews.delay, t, self.truth[t], review=True)
            else:
                self.queue[t] = score
        for t in dict.fromkeys(int(line.split(",", 1)[0]) for line in lines if line.split(",", 1)[0].isdigit()):
            if self.truth.get(t) != 1 or t in self.seen_frauds:
                continue
            self.seen_frauds.add(t)
            if self.rng.random() < self.disputes.share:
                self.disputed.add(t)
                spread = self.rng.random() * self.disputes.spread if self.disputes.spread else dt.timedelta(0)
                self.pending.append((self.tx_time[t] + self.disputes.delay + spread, t, 1))

    def due(self, now: dt.datetime) -> list[tuple[dt.datetime, int, int]]:
        """The labels due by `now` (due, transaction id, label), taken from those pending, after the team has
        worked its queue up to `now`. A dispute of a fraud a review confirmed is dropped."""
        self._work(now)
        due = sorted(p for p in self.pending if p[0] <= now)
        self.pending = [p for p in self.pending if p[0] > now]
        sent = []
        for when, t, label in due:
            if (when, t) in self.reviews_due:
                self.reviews_due.discard((when, t))
                self.review_hours.append((now - self.tx_time[t]).total_seconds() / 3600)
                if label == 1:
                    self.known_fraud.add(t)
            elif t in self.known_fraud:
                continue  # a dispute of what a review confirmed
            else:
                self.counts["disputes_sent"] += 1
            if label == 1:
                self.confirmed.setdefault(t, when)
            sent.append((when, t, label))
        return sent

    def _label(self, when: dt.datetime, t: int, label: int, review: bool) -> None:
        self.pending.append((when, t, label))
        if review:
            self.reviews_due.add((when, t))
            self.review_label[t] = label

    def _work(self, now: dt.datetime) -> None:
        """The team takes alerts from its queue, hour by hour up to `now`, within its hours and capacity."""
        if self.reviews.oracle:
            return
        hour = self.worked_until or now.replace(minute=0, second=0, microsecond=0)
        if self.worked_until is None and self.queue:
            hour = min(self.tx_time[t] for t in self.queue).replace(minute=0, second=0, microsecond=0)
        while hour < now:
            end = min(hour + HOUR, now)
            allowed = self.reviews.per_hour(hour.hour) * ((end - hour) / HOUR) + self.carry
            waiting = [t for t in self.queue if self.tx_time[t] < end]
            if self.reviews.order == "riskiest":
                waiting.sort(key=lambda t: (-self.queue[t], self.tx_time[t], t))
            else:
                waiting.sort(key=lambda t: (self.tx_time[t], t))
            taken = waiting if allowed == float("inf") else waiting[: int(allowed)]
            self.carry = 0.0 if allowed == float("inf") or len(taken) < int(allowed) else allowed - int(allowed)
            for t in taken:
                del self.queue[t]
                self._review(t, max(hour, self.tx_time[t]))
            hour = end
        self.worked_until = now

    def _review(self, t: int, taken: dt.datetime) -> None:
        self.counts["reviewed"] += 1
        draw = self.rng.random()
        if draw < self.reviews.unanswered:
            self.counts["unanswered"] += 1
            return
        label = self.truth[t]
        if self.rng.random() < self.reviews.wrong:
            self.counts["wrong"] += 1
            label = 1 - label
        self._label(taken + self.reviews.delay, t, label, review=True)

    def close(self, end: dt.datetime) -> dict[str, Any]:
        """The frauds whose label falls due before `end` count as confirmed; the loop's figures."""
        self.confirmed.update(
            (t, when) for when, t, label in self.pending if label == 1 and when < end and t not in self.confirmed
        )
        hours = self.review_hours
        return {
            "alerts_reviewed": len(self.alerted) if self.reviews.oracle else self.counts["reviewed"],
            "frauds_missed_and_disputed": len(self.disputed - self.alerted),
            # the review delay the loop delivered: at least --review-delay, at most one --step more (and
            # the queue's wait, with a capacity or working hours)
            "review_label_hours": {f"p{q}": round(float(np.percentile(hours, q)), 2) for q in (50, 90, 100)}
            if hours
            else {},
            # a dispute of what a review says is fraud will not be sent
            "labels_pending_at_the_end": sum(
                (when, t) in self.reviews_due or self.review_label.get(t) != 1 for when, t, _ in self.pending
            ),
            "reviews": {
                "unanswered": self.counts["unanswered"],
                "wrong": self.counts["wrong"],
                "waiting_at_the_end": len(self.queue),
                "disputes_sent": self.counts["disputes_sent"],
            },
        }
