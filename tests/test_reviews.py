"""The replay's reviews and disputes (jobs/replay/reviews.py): capacity, working hours, errors and unanswered
calls at their rates, disputes at their share and spread; at the defaults, the oracle the published runs used."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from jobs.core.errors import FraudError
from jobs.replay.reviews import Disputes, Feedback, Reviews, parse_hours

START = dt.datetime(2019, 9, 26)


def payments(n: int, every: dt.timedelta, fraud_every: int = 2) -> tuple[dict[int, int], dict[int, dt.datetime]]:
    truth = {t: int(t % fraud_every == 0) for t in range(n)}
    return truth, {t: START + t * every for t in range(n)}


def run(
    feedback: Feedback,
    times: dict[int, dt.datetime],
    alerted: set[int],
    days: int,
    step: dt.timedelta = dt.timedelta(hours=2),
) -> list[tuple[dt.datetime, int, int]]:
    """Step through `days` as the backtest does: labels due at each step's start, then the step's alerts."""
    labels = []
    for k in range(int(dt.timedelta(days=days) / step)):
        begin = START + k * step
        labels += feedback.due(begin)
        in_step = [t for t, when in times.items() if begin <= when < begin + step]
        feedback.read([(t, 0.5) for t in in_step if t in alerted], [f"{t},x" for t in in_step])
    return labels


def test_at_the_defaults_every_alert_gets_the_truth_its_review_delay_after_it():
    truth, times = payments(48, dt.timedelta(minutes=30))
    feedback = Feedback(Reviews(), Disputes(), truth, times, np.random.default_rng(0))
    labels = run(feedback, times, alerted={t for t in truth if t % 4 == 0}, days=10)
    reviews = [(when, t, label) for when, t, label in labels if t % 4 == 0]
    assert [(t, label) for _, t, label in reviews] == [(t, truth[t]) for t in sorted(truth) if t % 4 == 0]
    assert all(when == times[t] + dt.timedelta(hours=1) for when, t, _ in reviews)
    # the frauds without an alert are disputed 7 days after them; those a review confirmed are not
    disputes = [(when, t) for when, t, _ in labels if t % 4]
    assert [t for _, t in disputes] == [t for t in sorted(truth) if truth[t] and t % 4]
    assert all(when == times[t] + dt.timedelta(days=7) for when, t in disputes)
    assert feedback.close(START + dt.timedelta(days=10))["reviews"]["disputes_sent"] == len(disputes)


def test_the_team_reviews_at_most_its_capacity_a_day_in_its_hours_oldest_first():
    truth, times = payments(240, dt.timedelta(minutes=6))  # 240 alerts over the first day
    reviews = Reviews(capacity=100, hours=(8, 20))
    feedback = Feedback(reviews, Disputes(), truth, times, np.random.default_rng(0))
    labels = run(feedback, times, alerted=set(truth), days=3)
    done = [
        (when, t) for when, t, _ in labels if (when, t) not in {(times[u] + dt.timedelta(days=7), u) for u in truth}
    ]
    taken = [when - dt.timedelta(hours=1) for when, _ in done]
    assert all(8 <= w.hour < 20 for w in taken), "reviews are taken in working hours only"
    by_day = {d: sum(w.date() == d for w in taken) for d in {w.date() for w in taken}}
    assert max(by_day.values()) <= 100 and sum(by_day.values()) == 240  # the rest waited for the next day
    order = [t for _, t in sorted(done)]
    assert order == sorted(order), "oldest first"
    assert feedback.close(START + dt.timedelta(days=3))["reviews"]["waiting_at_the_end"] == 0


def test_the_riskiest_alert_is_taken_first():
    truth, times = payments(10, dt.timedelta(minutes=1))
    feedback = Feedback(Reviews(capacity=24, order="riskiest"), Disputes(), truth, times, np.random.default_rng(0))
    feedback.read([(t, t / 10) for t in range(10)], [])
    due = feedback.due(START + dt.timedelta(hours=3))  # one review an hour: the three riskiest waiting at each
    assert [t for _, t, _ in due] == [9, 8, 7]


def test_wrong_and_unanswered_reviews_come_at_their_rates():
    truth, times = payments(4000, dt.timedelta(seconds=30))
    reviews = Reviews(wrong=0.1, unanswered=0.2)
    feedback = Feedback(reviews, Disputes(share=0.5), truth, times, np.random.default_rng(1))
    labels = run(feedback, times, alerted=set(truth), days=9)
    counts = feedback.close(START + dt.timedelta(days=9))["reviews"]
    assert counts["unanswered"] == pytest.approx(800, abs=4 * np.sqrt(4000 * 0.2 * 0.8))
    assert counts["wrong"] == pytest.approx(320, abs=4 * np.sqrt(3200 * 0.1 * 0.9))
    reviewed = {t: label for when, t, label in labels if when == times[t] + dt.timedelta(hours=1)}
    assert sum(label != truth[t] for t, label in reviewed.items()) == counts["wrong"]
    # a fraud nobody confirmed (unanswered, or called genuine) is disputed by half of its cardholders
    disputed = [t for when, t, _ in labels if when == times[t] + dt.timedelta(days=7)]
    unconfirmed = [t for t in truth if truth[t] and reviewed.get(t) != 1]
    assert len(disputed) == pytest.approx(len(unconfirmed) / 2, abs=4 * np.sqrt(len(unconfirmed) / 4))
    assert set(disputed) <= set(unconfirmed)


def test_disputes_are_spread_over_their_days():
    truth, times = payments(2000, dt.timedelta(minutes=1), fraud_every=1)
    disputes = Disputes(delay=dt.timedelta(days=3), spread=dt.timedelta(days=4))
    feedback = Feedback(Reviews(), disputes, truth, times, np.random.default_rng(2))
    labels = run(feedback, times, alerted=set(), days=9)
    delays = np.array([(when - times[t]) / dt.timedelta(days=1) for when, t, _ in labels])
    assert len(delays) == 2000 and delays.min() >= 3 and delays.max() <= 7
    assert np.median(delays) == pytest.approx(5, abs=0.25)  # uniform over days 3 to 7


@pytest.mark.parametrize(
    "make, message",
    [
        (
            lambda: Reviews(capacity=0),
            r"--review-capacity: expected a whole number of reviews a day of 1 or more, found 0",
        ),
        (
            lambda: Reviews(hours=(20, 8)),
            r"--review-hours: expected FIRST-LAST with 0 <= FIRST < LAST <= 24, found \(20, 8\)",
        ),
        (lambda: Reviews(wrong=1.0), r"--review-wrong: expected a share of 0 or more, below 1, found 1.0"),
        (lambda: Disputes(share=0), r"--dispute-share: expected a share above 0, at most 1, found 0"),
        (
            lambda: parse_hours("9am-5pm"),
            r"--review-hours: expected FIRST-LAST hours \(e.g. 8-20\) or all, found '9am-5pm'",
        ),
    ],
)
def test_wrong_review_options_are_clear_errors(make, message):
    with pytest.raises(FraudError, match=message):
        make()
