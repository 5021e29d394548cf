"""The alert budget (jobs/stream/alert_budget.py, models/threshold.py's budget_threshold): the threshold that flags
at most a share of the recent legitimate transactions."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from jobs.core.config import load_config
from jobs.core.errors import ConfigError
from jobs.stream.alert_budget import AlertBudget, newest_scored
from jobs.stream.blocked_cards import BlockedCards, confirmed_cards
from models.metrics import MAX_FPR
from models.threshold import budget_threshold

NO_CARDS = pd.Series(dtype="datetime64[ns]")  # no card blocked (confirmed_cards)


def test_the_budget_threshold_flags_at_most_the_share_of_legitimate_transactions():
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95])
    legit = np.array([True] * 9 + [False])  # 0.95 is a confirmed fraud: it spends nothing
    threshold = budget_threshold(scores, legit, 0.25)  # 9 legitimate: 2 may be flagged
    assert threshold == 0.8
    assert int((scores[legit] >= threshold).sum()) == 2
    # a tie at the boundary is left unflagged rather than spending more than the budget
    tied = budget_threshold(np.array([0.1, 0.5, 0.5, 0.9]), np.ones(4, dtype=bool), 0.5)
    assert tied is not None and tied > 0.5 and int((np.array([0.1, 0.5, 0.5, 0.9]) >= tied).sum()) == 1
    # a budget smaller than one transaction flags none of them
    assert budget_threshold(np.array([0.2, 0.4]), np.ones(2, dtype=bool), 0.01) > 0.4
    assert budget_threshold(np.array([0.9]), np.array([False]), 0.05) is None


def batch(first_id: int, hour: dt.datetime, scores: list[float], threshold: float) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "transaction_id": np.arange(first_id, first_id + len(scores), dtype=np.int64),
            "tx_datetime": [hour + dt.timedelta(minutes=i) for i in range(len(scores))],
            "score": scores,
            "decision": [s >= threshold for s in scores],
        }
    )


def test_a_micro_batch_is_flagged_at_the_threshold_the_window_and_its_own_scores_give():
    # every transaction counts in full here (their scores are not the model's chances)
    budget = AlertBudget(
        enabled=True, fpr=0.2, window=dt.timedelta(hours=24), evidence_transactions=10, unflagged_at_score=False
    )
    noon = dt.datetime(2026, 12, 1, 12)
    first = batch(1, noon, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95], threshold=1)
    assert budget.threshold(0.5) == 0.5, "nothing scored yet: the model's threshold, for the metrics"
    # the first micro-batch is its own evidence: 10 legitimate, 2 may be flagged (0.9 and 0.95), not the 6 of
    # the model's threshold
    assert budget.threshold(0.5, first) == 0.9
    budget.observe(first.assign(decision=first["score"] >= 0.9))
    assert budget.threshold(0.5) == 0.9, "without a micro-batch: the last one's threshold"
    second = batch(11, noon + dt.timedelta(hours=1), [0.15, 0.25, 0.35, 0.6, 0.97], threshold=1)
    # the window now holds evidence_transactions (10) legitimate transactions: it decides alone, 2 of 10, however
    # large the micro-batch (its frauds, not confirmed yet, would sit among its highest scores)
    assert budget.threshold(0.5, second) == 0.9
    assert budget.threshold(0.5, batch(11, noon + dt.timedelta(hours=1), [0.9] * 15, threshold=1)) == 0.9
    # a window thinner than evidence_transactions takes the micro-batch's scores: 2 of the 10 + 15 (0.95, and the
    # sixteen tied at 0.9 not: the budget is never exceeded)
    budget.evidence_transactions = 20
    assert budget.threshold(0.5, batch(11, noon + dt.timedelta(hours=1), [0.9] * 15, threshold=1)) > 0.9
    budget.evidence_transactions = 10
    budget.observe(second.assign(decision=second["score"] >= 0.9))
    assert budget.spent() == pytest.approx(3 / 15)
    # 0.95 confirmed as fraud: no longer legitimate; 14 legitimate in the window, 2 may be flagged: 0.97, 0.9
    budget.label(pd.DataFrame({"transaction_id": [10], "tx_fraud": [1]}))
    assert budget.spent() == pytest.approx(2 / 14)
    assert budget.threshold(0.5, batch(16, noon + dt.timedelta(hours=2), [0.5], threshold=1)) == 0.9
    # a correction back to genuine counts it again; a label of a transaction outside the window changes nothing
    budget.label(pd.DataFrame({"transaction_id": [10, 999], "tx_fraud": [0, 1]}))
    assert budget.frauds == set() and budget.spent() == pytest.approx(3 / 15)
    # a day later the first hours have left the window: the second micro-batch's 5 and these 5 remain
    late = batch(16, noon + dt.timedelta(hours=24, minutes=30), [0.05, 0.05, 0.05, 0.05, 0.05], threshold=1)
    budget.observe(late.assign(decision=False))
    assert list(budget.ids) == [11, 12, 13, 14, 15, 16, 17, 18, 19, 20]
    assert (
        budget.threshold(0.5, batch(21, noon + dt.timedelta(hours=25), [0.05], threshold=1)) == 0.6
    )  # 2 of 10: 0.97 and 0.6


def test_a_few_payments_flag_at_most_the_whole_part_of_the_budget_never_more():
    budget = AlertBudget(enabled=True, fpr=0.045, window=dt.timedelta(hours=24))
    few = batch(1, dt.datetime(2026, 12, 1), [0.2, 0.5, 0.99], threshold=1)
    assert budget.threshold(0.1, few) > 0.99  # 4.5% of 3 is less than one payment: none is flagged


def stream_through(budget: AlertBudget, scores: np.ndarray, per_batch: int, seconds_apart: float) -> pd.DataFrame:
    """Score `scores` as a stream would, `per_batch` payments a micro-batch, `seconds_apart` of event time between
    payments: each micro-batch flagged at the budget's threshold, then observed. Returns every payment's time,
    score and decision."""
    start = dt.datetime(2026, 12, 1)
    times = pd.to_datetime(start) + pd.to_timedelta(np.arange(len(scores)) * seconds_apart, unit="s")
    out = pd.DataFrame(
        {
            "transaction_id": np.arange(len(scores), dtype=np.int64),
            "tx_datetime": times,
            "score": scores,
            "model_version": "1",
        }
    )
    decisions = []
    for first in range(0, len(out), per_batch):
        rows = out.iloc[first : first + per_batch]
        threshold = budget.threshold(0.5, rows)
        decided = rows.assign(decision=rows["score"] >= threshold)
        budget.observe(decided)
        decisions.append(decided["decision"])
    return out.assign(decision=pd.concat(decisions))


@pytest.mark.parametrize(
    "per_day, per_batch, hours",
    [(3_800, 1, 48), (400 * 86_400, 800, 0.25)],
    ids=["3800-a-day-one-payment-a-micro-batch", "400-a-second-800-a-micro-batch"],
)
def test_the_budget_holds_from_the_first_hour_at_any_traffic(per_day, per_batch, hours):
    """Legitimate payments whose scores the model's own threshold (0.5) flags at 8.7%, as on the demo's live
    days: the budget of 4.5% holds from the first hour, at a branch's traffic as at the bank's."""
    rng = np.random.default_rng(7)
    n = int(per_day * hours / 24)
    scores = rng.beta(1, 9, n)
    model_threshold = 0.5
    assert (scores >= np.quantile(scores, 1 - 0.087)).mean() == pytest.approx(0.087, abs=0.001)
    scores = scores * model_threshold / np.quantile(scores, 1 - 0.087)  # the model's threshold flags 8.7%
    budget = AlertBudget(enabled=True, fpr=0.045, window=dt.timedelta(hours=24))
    decided = stream_through(budget, scores, per_batch, 86_400 / per_day)
    # every hour from the first (a quarter of an hour at 400 a second: 360,000 payments), and so overall
    step = "1h" if hours > 1 else "5min"
    shares = decided.set_index("tx_datetime")["decision"].resample(step).mean()
    assert decided["decision"].sum() > 0, "the budget flags, it does not only stay silent"
    assert shares.max() <= 0.045 + 3 * np.sqrt(
        0.045 * 0.955 / decided.set_index("tx_datetime")["decision"].resample(step).count().min()
    ), shares.to_dict()
    # overall within sampling noise of the budget (the threshold moves between micro-batches), and the bank's 5%
    assert decided["decision"].mean() <= min(0.045 + 3 * np.sqrt(0.045 * 0.955 / n), MAX_FPR)


def test_a_budget_that_is_off_keeps_the_model_threshold():
    budget = AlertBudget(enabled=False, fpr=0.2, window=dt.timedelta(hours=1))
    budget.observe(batch(1, dt.datetime(2026, 12, 1), [0.1, 0.2, 0.3], threshold=0.5))
    assert budget.threshold(0.5) == 0.5 and budget.current is None


@pytest.mark.parametrize(
    "key, value, message",
    [
        (
            "stream.alert_budget.fpr",
            0.2,
            r"stream.alert_budget.fpr: expected a share above 0 and at most the bank's 0.05, found 0.2",
        ),
        ("stream.alert_budget.fpr", 0, r"stream.alert_budget.fpr: .* found 0"),
        (
            "stream.alert_budget.window_hours",
            0,
            r"stream.alert_budget.window_hours: expected a whole number of hours of 1 or more, found 0",
        ),
        ("stream.alert_budget.enabled", "yes", r"stream.alert_budget.enabled: expected true or false, found 'yes'"),
        (
            "stream.alert_budget.pending_at_precision",
            1,
            r"stream.alert_budget.pending_at_precision: expected true or false, found 1",
        ),
        (
            "stream.blocked_card_days",
            0,
            r"stream.blocked_card_days: expected a whole number of days of 1 or more, found 0",
        ),
    ],
)
def test_budget_options_are_checked_when_the_configuration_is_loaded(key, value, message):
    with pytest.raises(ConfigError, match=message):
        load_config("local", {key: value})


def test_the_default_budget_is_on_within_the_bank_s_five_percent():
    budget = AlertBudget.from_config(load_config("local"))
    assert budget.enabled and 0 < budget.fpr <= 0.05 and budget.window == dt.timedelta(hours=24)


def test_a_card_s_payments_after_a_confirmed_fraud_leave_the_budget():
    budget = AlertBudget(enabled=True, fpr=0.25, window=dt.timedelta(hours=24))
    noon = dt.datetime(2026, 12, 1, 12)
    first = batch(1, noon, [0.1, 0.2, 0.3, 0.4], threshold=0.9).assign(customer_id=[7, 8, 9, 10])
    budget.observe(first)
    budget.label(pd.DataFrame({"transaction_id": [4], "tx_fraud": [1], "customer_id": [10]}))  # card 10 blocked
    assert budget.blocked.since == {10: np.datetime64(noon + dt.timedelta(minutes=3), "us")}
    # card 10 goes on paying (without reissue, as a replay may send it): high scores, flagged, but not the
    # legitimate traffic of the budget; card 7's payment is
    later = batch(5, noon + dt.timedelta(hours=1), [0.95, 0.97, 0.5], threshold=0.9).assign(customer_id=[10, 10, 7])
    budget.observe(later)
    assert list(budget.legitimate()) == [True, True, True, False, False, False, True]
    assert budget.spent() == pytest.approx(0.0)  # of 4 legitimate, none flagged
    # the next micro-batch: card 10's payment is no evidence either; 1 of the 4 (0.1, 0.2, 0.3, 0.5) may be flagged
    following = batch(8, noon + dt.timedelta(hours=2), [0.99], threshold=1).assign(customer_id=[10])
    assert budget.threshold(0.9, following) == 0.5


def test_a_blocked_card_is_forgotten_blocked_card_days_after_its_block():
    cards = BlockedCards(days=2)
    start = np.datetime64("2026-12-01T12:00", "us")
    cards.block(7, None)  # before the clock started: blocked from its first tick
    cards.block(8, start)
    assert 7 in cards and 8 in cards and len(cards) == 2
    cards.tick(start + np.timedelta64(1, "h"))
    assert cards.since == {7: start + np.timedelta64(1, "h"), 8: start}
    cards.block(8, start + np.timedelta64(10, "h"))  # blocked already: its block stays where it was
    cards.tick(start + np.timedelta64(48, "h") + np.timedelta64(30, "m"))
    assert 8 not in cards and 7 in cards
    cards.tick(start + np.timedelta64(50, "h"))
    assert len(cards) == 0

    # in the budget: the card's payments after that time count as legitimate again
    budget = AlertBudget(enabled=True, fpr=0.25, window=dt.timedelta(hours=24), blocked=BlockedCards(days=1))
    noon = dt.datetime(2026, 12, 1, 12)
    budget.observe(batch(1, noon, [0.1, 0.2], threshold=0.9).assign(customer_id=[10, 11]))
    budget.label(pd.DataFrame({"transaction_id": [1], "tx_fraud": [1], "customer_id": [10]}))
    budget.observe(batch(3, noon + dt.timedelta(hours=2), [0.3], threshold=0.9).assign(customer_id=[10]))
    assert list(budget.legitimate()) == [False, True, False]
    budget.observe(batch(4, noon + dt.timedelta(hours=25), [0.4], threshold=0.9).assign(customer_id=[10]))
    assert 10 not in budget.blocked and list(budget.legitimate()) == [True, True]  # payments 3 and 4


def test_a_restart_takes_the_cards_of_the_frauds_confirmed_in_blocked_card_days_from_labels(spark, make_cfg):
    cfg = make_cfg()
    t = dt.datetime(2018, 5, 30, 10)
    h = dt.timedelta(hours=1)
    labels = pd.DataFrame(
        [  # id, card, label, its transaction's time, the stream's clock when it came, batch, offset
            (1, 7, 1, t, t + h, 1, 0),
            (2, 8, 1, t - dt.timedelta(days=3), t - dt.timedelta(days=3) + h, 1, 1),  # older than 2 days
            (3, 9, 1, t, t + 2 * h, 1, 2),
            (3, 9, 0, t, t + 3 * h, 2, 3),  # corrected to genuine: card 9 stays blocked (the bank blocked it)
            (4, 10, 0, t, t + h, 2, 4),
            (5, 7, 1, t + h, t + 4 * h, 2, 5),  # card 7's second fraud: blocked since its first
        ],
        columns=["transaction_id", "customer_id", "tx_fraud", "tx_datetime", "event_clock", "batch_id", "offset"],
    )
    labels["labelled_at"] = t
    spark.createDataFrame(labels).write.format("delta").save(cfg.table_path("labels"))
    assert confirmed_cards(spark, cfg.table_path("labels"), days=2).to_dict() == {7: t + h, 9: t + 2 * h}
    assert sorted(confirmed_cards(spark, cfg.table_path("labels"), days=4).index) == [7, 8, 9]
    assert confirmed_cards(spark, cfg.table_path("scores"), days=2).empty  # no table there yet


@pytest.mark.parametrize("enabled", [True, False])
def test_a_restart_fills_the_window_from_scores_and_labels_whether_the_budget_moves_the_threshold_or_not(
    spark, make_cfg, enabled
):
    cfg = make_cfg()
    noon = dt.datetime(2026, 12, 1, 12)
    scores = batch(1, noon - dt.timedelta(hours=30), [0.1], threshold=0.5)  # older than the 24 h window
    scores = pd.concat([scores, batch(2, noon, [0.1 * i for i in range(1, 10)], threshold=0.75)], ignore_index=True)
    scores = scores.assign(
        customer_id=scores["transaction_id"] + 100,
        model_version="1",
        alert_reason=np.where(scores["decision"], "score", None),
        tx_date=scores["tx_datetime"].dt.date,
    )
    spark.createDataFrame(scores).write.format("delta").partitionBy("tx_date").save(cfg.table_path("scores"))
    labels = pd.DataFrame(
        {
            "transaction_id": [10, 9],
            "tx_fraud": [1, 0],
            "customer_id": [109, 108],
            "batch_id": [1, 1],
            "offset": [0, 1],
            "labelled_at": noon,
        }
    )
    spark.createDataFrame(labels).write.format("delta").save(cfg.table_path("labels"))
    budget = AlertBudget(enabled=enabled, fpr=0.25, window=dt.timedelta(hours=24), unflagged_at_score=False)
    newest = newest_scored(spark, cfg.table_path("scores"))
    assert budget.fill(spark, cfg.table_path("scores"), cfg.table_path("labels"), NO_CARDS, newest) == 9
    # 8 legitimate (10 is a confirmed fraud), 1 of them flagged (0.8): 1/8 spent; a quarter of them, 2, for a part
    # of the budget none of whose reviews were spent yet
    assert budget.spent() == pytest.approx(1 / 8) and budget.room("terminal_explore", 0.25) == 2
    # the next micro-batch, one payment at 0.05: 2 of the 9 legitimate at 0.25
    following = batch(11, noon + dt.timedelta(minutes=30), [0.05], threshold=1).assign(model_version="1")
    assert budget.threshold(0.75, following) == pytest.approx(0.7 if enabled else 0.75)
    assert (
        AlertBudget(enabled=enabled, fpr=0.25, window=dt.timedelta(hours=24)).fill(
            spark, cfg.table_path("scores"), cfg.table_path("labels"), NO_CARDS, None
        )
        == 0
    )  # nothing scored yet


def test_a_new_model_gets_a_threshold_from_its_own_scores():
    budget = AlertBudget(
        enabled=True, fpr=0.2, window=dt.timedelta(hours=24), evidence_transactions=5, unflagged_at_score=False
    )
    noon = dt.datetime(2026, 12, 1, 12)
    first = batch(1, noon, [0.1, 0.2, 0.3, 0.4, 0.5], threshold=0.5).assign(model_version="1")
    assert budget.threshold(0.5, first) == 0.5  # 5 legitimate of model 1: one may be flagged
    budget.observe(first)
    # the retrained model scores on another scale: its threshold comes from its own scores alone, not from
    # model 1's (which would flag none of these)
    second = batch(6, noon + dt.timedelta(hours=1), [0.01, 0.02, 0.03, 0.04, 0.05], threshold=1).assign(
        model_version="2"
    )
    assert budget.threshold(0.04, second) == 0.05
    budget.observe(second.assign(decision=second["score"] >= 0.05))
    assert budget.spent() == pytest.approx(2 / 10)  # the share spent counts every decision of the window
    third = batch(11, noon + dt.timedelta(hours=2), [0.045] * 5, threshold=1).assign(model_version="2")
    # model 2's five scores in the window, evidence_transactions: they decide alone, one may be flagged
    assert budget.threshold(0.04, third) == 0.05
    # with a thinner window than evidence_transactions the micro-batch counts with them: two of ten; 0.05, and
    # not one of the five tied at 0.045 (the budget is never exceeded)
    budget.evidence_transactions = 6
    assert budget.threshold(0.04, third) == np.nextafter(0.045, 1)


def test_the_weighted_budget_threshold_counts_each_transaction_at_its_weight():
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95])
    legit = np.ones(10, dtype=bool)
    assert budget_threshold(scores, legit, 0.25, weight=np.ones(10)) == budget_threshold(scores, legit, 0.25) == 0.9
    # the two highest weigh half each (alerts awaiting review, half of the reviewed ones genuine): the budget of
    # 0.25 x 9 = 2.25 flags them (1) and the next one (2)
    weight = np.array([1.0] * 8 + [0.5, 0.5])
    assert budget_threshold(scores, legit, 0.25, weight=weight) == 0.8
    assert budget_threshold(scores, legit, 0.01, weight=weight) > 0.95  # less than the lightest: none flagged


def test_alerts_awaiting_review_count_at_the_share_of_reviewed_alerts_found_genuine():
    noon = dt.datetime(2026, 12, 1, 12)
    scores = [0.01 * i for i in range(1, 17)] + [0.9, 0.91, 0.92, 0.93]  # 20 transactions, the top 4 flagged

    def budget(pending_at_precision: bool) -> AlertBudget:
        made = AlertBudget(
            enabled=True,
            fpr=0.15,
            window=dt.timedelta(hours=24),
            pending_at_precision=pending_at_precision,
            unflagged_at_score=False,
        )
        made.observe(batch(1, noon, scores, threshold=0.9))
        # the first two alerts are reviewed: one fraud, one genuine (precision 1/2); the last two wait
        made.label(pd.DataFrame({"transaction_id": [17, 18], "tx_fraud": [1, 0]}))
        return made

    full, weighted = budget(False), budget(True)
    # in full: 19 legitimate, 3 of them flagged (the genuine one and the two waiting)
    assert full.spent() == pytest.approx(3 / 19) and full.weights(full.legitimate()) is None
    # at the precision: each waiting alert is half legitimate: (1 + 0.5 + 0.5) / (17 + 0.5 + 0.5)
    assert weighted.spent() == pytest.approx(2 / 18)
    # with the next micro-batch (one payment at 0.0) and a budget of 12%: in full 2.4 of 20 may be flagged: 0.93
    # and 0.92; weighted 2.28 of 19, and the waiting ones weigh half: 0.93, 0.92 and 0.91 (2 in weight) fit, one
    # more would make 3
    for made in (full, weighted):
        made.fpr = 0.12
    following = batch(21, noon + dt.timedelta(hours=1), [0.0], threshold=1)
    assert full.threshold(0.5, following) == 0.92
    assert weighted.threshold(0.5, following) == 0.91
    # a budget that is told every review counts in full again
    weighted.label(pd.DataFrame({"transaction_id": [19, 20], "tx_fraud": [0, 0]}))
    assert weighted.spent() == pytest.approx(3 / 19)


def test_frauds_the_stream_did_not_flag_take_little_of_the_budget_s_room():
    """At a start the first micro-batch's threshold is chosen among frauds nobody has confirmed yet (6% of
    payments, above the 4.5% budget). At the next one, half of its alerts are reviewed (confirmed frauds), half
    wait. The frauds left unflagged count as legitimate at 1 - their score, so the threshold comes down into
    the legitimate traffic; counted in full they would join the alerts waiting for review among the budget's
    room and hold it above nearly all the legitimate payments until their disputes, days later."""
    rng = np.random.default_rng(3)
    noon = dt.datetime(2026, 12, 1, 12)
    legit = rng.uniform(0.0005, 0.02, 940)
    frauds = rng.uniform(0.97, 0.999, 60)
    first = pd.DataFrame(
        {
            "transaction_id": np.arange(1000, dtype=np.int64),
            "tx_datetime": [noon + dt.timedelta(seconds=3 * i) for i in range(1000)],
            "score": np.concatenate([legit, frauds]),
            "model_version": "1",
        }
    )
    following = batch(5000, noon + dt.timedelta(hours=1), [0.01], threshold=1).assign(model_version="1")
    flagged_share = {}
    for at_score in (True, False):
        budget = AlertBudget(enabled=True, fpr=0.045, window=dt.timedelta(hours=24), unflagged_at_score=at_score)
        threshold = budget.threshold(0.5, first)  # a thin window: the micro-batch's own scores, frauds among them
        assert threshold > 0.97, "the first micro-batch's 45 allowed of 1000 fall among its 60 frauds"
        decided = first.assign(decision=first["score"] >= threshold)
        budget.observe(decided)
        flagged = decided.loc[decided["decision"], "transaction_id"].sort_values()
        reviewed = flagged.iloc[: len(flagged) // 2]
        budget.label(pd.DataFrame({"transaction_id": reviewed, "tx_fraud": 1}))  # the fraud team confirms half
        flagged_share[at_score] = float((legit >= budget.threshold(0.5, following)).mean())
    # at the score: the room the 22 alerts waiting for review leave, about 21 of the 940 legitimate payments
    assert 0.015 < flagged_share[True] <= 0.045
    # in full: the 15 frauds not flagged take most of that room too
    assert flagged_share[False] < 0.01


def test_a_new_model_scores_the_window_again_and_its_threshold_comes_from_the_whole_window():
    """After a retraining the new model's first micro-batch would choose its threshold among its own scores,
    frauds nobody has confirmed yet among them. Scored again by it, the window's reviewed transactions choose
    it instead; what was flagged, and the budget spent, stay as they were."""
    noon = dt.datetime(2026, 12, 1, 12)
    budget = AlertBudget(
        enabled=True,
        fpr=0.1,
        window=dt.timedelta(hours=24),
        evidence_transactions=5,
        unflagged_at_score=False,
        rescore_window=True,
    )
    day = batch(1, noon, [0.01 * i for i in range(1, 21)], threshold=0.19).assign(model_version="1")
    budget.observe(day)
    spent = budget.spent()
    assert budget.lacks_evidence("2") and not budget.lacks_evidence("1")
    assert list(budget.others_than("2")) == list(range(1, 21)) and len(budget.others_than("1")) == 0
    # model 2's micro-batch: four frauds at the top of six payments; alone they would set its threshold
    first = batch(100, noon + dt.timedelta(hours=1), [0.2, 0.3, 0.9, 0.91, 0.92, 0.93], threshold=1)
    first = first.assign(model_version="2")
    alone = budget.threshold(0.5, first)
    assert alone > 0.9, "six payments of its own: the threshold among the frauds"
    # model 2 scores the window's 20 transactions on its own scale (ten times model 1's), one not in the window
    taken = budget.rescore(
        np.array([*range(1, 21), 999], dtype=np.int64), np.array([0.1 * i for i in range(1, 22)]), "2"
    )
    assert taken == 20 and not budget.lacks_evidence("2")
    # 20 legitimate transactions of model 2 in the window: 10% may be flagged, its two highest (1.9, 2.0)
    assert budget.threshold(0.5, first) == pytest.approx(1.9)
    assert budget.spent() == spent, "what was flagged stays as it was"
    assert list(budget.models) == ["2"] * 20


def test_evidence_before_the_first_start_chooses_thresholds_and_spends_nothing():
    noon = dt.datetime(2026, 12, 1, 12)
    budget = AlertBudget(
        enabled=True, fpr=0.1, window=dt.timedelta(hours=24), evidence_transactions=5, unflagged_at_score=False
    )
    history = pd.DataFrame(
        {
            "transaction_id": np.arange(1, 21, dtype=np.int64),
            "tx_datetime": [noon - dt.timedelta(hours=12, minutes=i) for i in range(20)],
            "customer_id": np.arange(20, dtype=np.int64),
            "score": [0.01 * i for i in range(1, 21)],
        }
    )
    assert budget.add_evidence(history, "1") == 20
    assert budget.spent() is None, "the stream has flagged nothing yet: no budget spent"
    assert budget.describe()["transactions"] == 0 and budget.describe()["evidence"] == 20
    # the first micro-batch: its frauds at the top would set a threshold of their own; the evidence decides
    first = batch(100, noon, [0.05, 0.9, 0.91, 0.92], threshold=1).assign(model_version="1")
    assert budget.threshold(0.5, first) == pytest.approx(0.19)
    budget.observe(first.assign(decision=first["score"] >= 0.19))
    assert budget.spent() == pytest.approx(3 / 4), "the stream's own four, three flagged: evidence counts for none"
    assert budget.add_evidence(history, "1") == 0, "only an empty window takes evidence"
    # the evidence leaves the window with the clock, like the stream's own transactions
    budget.observe(batch(200, noon + dt.timedelta(hours=12, minutes=30), [0.05], threshold=1).assign(model_version="1"))
    assert budget.describe()["evidence"] == 0


def test_the_evidence_is_scored_on_the_executors_from_scores_or_before_a_first_start_from_the_features(spark, make_cfg):
    from catboost import CatBoostClassifier

    from features.definitions import FEATURE_NAMES
    from jobs.stream.budget_evidence import gather

    cfg = make_cfg()
    rng = np.random.default_rng(5)
    noon = dt.datetime(2026, 12, 1, 12)

    def rows(first_id: int, end: dt.datetime, count: int) -> pd.DataFrame:
        frame = pd.DataFrame(rng.random((count, len(FEATURE_NAMES))), columns=FEATURE_NAMES)
        frame["transaction_id"] = np.arange(first_id, first_id + count, dtype=np.int64)
        frame["customer_id"] = frame["transaction_id"] % 7
        frame["tx_datetime"] = [end - dt.timedelta(hours=i) for i in range(count)]
        frame["tx_date"] = frame["tx_datetime"].dt.date
        return frame

    model = CatBoostClassifier(iterations=5, verbose=False, allow_writing_files=False, random_seed=0)
    train = rows(0, noon, 300)
    model.fit(train[FEATURE_NAMES], train["tx_amount"] > 0.5)
    broadcast = spark.sparkContext.broadcast(model)

    # a window of model 1's scores, as the stream appended them, with a row of model 2 and one past the window
    scored = rows(1000, noon, 30).assign(model_version="1", score=0.5)
    scored.loc[0, "model_version"] = "2"
    spark.createDataFrame(scored).write.format("delta").partitionBy("tx_date").save(cfg.table_path("scores"))
    budget = AlertBudget(
        enabled=True, fpr=0.1, window=dt.timedelta(hours=24), evidence_transactions=20, rescore_window=True
    )
    budget.observe(scored.iloc[:24].assign(decision=False))
    later = pd.Timestamp(noon + dt.timedelta(hours=1))
    assert gather(spark, cfg, budget, "1", broadcast, 24, later) is None, "model 1 has its evidence"
    done = gather(spark, cfg, budget, "2", broadcast, 24, later)
    assert done is not None and "23 transaction(s)" in done
    expected = model.predict_proba(scored.iloc[1:24][FEATURE_NAMES])[:, 1]
    assert np.allclose(budget.scores[1:], expected) and budget.scores[0] == 0.5
    assert set(budget.models) == {"2"} and not budget.lacks_evidence("2")

    # a first start: the window empty, the features of the model's label delay in the 24 hours before the
    # micro-batch's first transaction, as evidence alone (not those after it: a stream that replays its history)
    features = pd.concat(
        [rows(5000, noon, 40).assign(label_delay_hours=24), rows(6000, noon, 5).assign(label_delay_hours=168)]
    )
    spark.createDataFrame(features).write.format("delta").save(cfg.table_path("features_transactions"))
    empty = AlertBudget(enabled=True, fpr=0.1, window=dt.timedelta(hours=24), rescore_window=True)
    first = pd.Timestamp(noon - dt.timedelta(hours=3, minutes=30))
    done = gather(spark, cfg, empty, "1", broadcast, 24, first)
    assert done is not None and "(24 transaction(s))" in done
    within = features.iloc[4:28]  # from 3 h to 27 h before noon: after first - 24 h, before first
    assert gather(spark, cfg, empty, "1", broadcast, 24, first) is None, "a window with evidence takes no more"
    assert sorted(empty.ids) == sorted(within["transaction_id"]) and not empty.counted.any()
    by_id = dict(zip(empty.ids, empty.scores))
    assert np.allclose([by_id[i] for i in within["transaction_id"]], model.predict_proba(within[FEATURE_NAMES])[:, 1])


def test_past_its_limit_the_window_keeps_one_in_two_four_of_the_transactions_and_counts_each_for_as_many():
    """At 400 a second a day is 35 million transactions: a micro-batch's work on the window would grow with the
    traffic. Past `max_transactions` the window keeps a sample, by a hash of the transaction id, nested (those kept
    at one in 4 are among those kept at one in 2), and its thresholds and counts are estimates from it."""
    from jobs.stream.alert_budget import kept

    ids = np.arange(200_000, dtype=np.int64)
    for one_in in (2, 4, 8):
        assert kept(ids, one_in).mean() == pytest.approx(1 / one_in, rel=0.02)
        assert not (kept(ids, 2 * one_in) & ~kept(ids, one_in)).any(), "nested"
    rng = np.random.default_rng(11)
    noon = dt.datetime(2026, 12, 1, 12)
    scores = rng.uniform(0.0, 1.0, 20_000)
    day = pd.DataFrame(
        {
            "transaction_id": np.arange(20_000, dtype=np.int64),
            "tx_datetime": [noon + dt.timedelta(seconds=2 * i) for i in range(20_000)],
            "score": scores,
            "decision": scores >= 0.95,
            "model_version": "1",
        }
    )
    exact = AlertBudget(enabled=True, fpr=0.045, window=dt.timedelta(hours=24), unflagged_at_score=False)
    sampled = AlertBudget(
        enabled=True, fpr=0.045, window=dt.timedelta(hours=24), unflagged_at_score=False, max_transactions=6_000
    )
    for budget in (exact, sampled):
        for start in range(0, len(day), 2_000):  # ten micro-batches
            budget.observe(day.iloc[start : start + 2_000])
    assert sampled.one_in == 4 and len(sampled.ids) <= 6_000 and set(sampled.ids) <= set(exact.ids)
    assert sampled.describe()["transactions"] == pytest.approx(20_000, rel=0.03)
    following = batch(50_000, noon + dt.timedelta(hours=12), [0.5], threshold=1).assign(model_version="1")
    # the 95.5th percentile of the day's scores, from a quarter of them
    assert sampled.threshold(0.5, following) == pytest.approx(exact.threshold(0.5, following), abs=0.01)
    assert sampled.spent() == pytest.approx(exact.spent(), abs=0.005)
    # a part of the budget in transactions, not in the sample's rows: 1% of about 20,000
    assert sampled.room("terminal_explore", 0.01) == pytest.approx(exact.room("terminal_explore", 0.01), rel=0.05)


def test_a_restart_keeps_the_sample_the_window_kept_chosen_in_spark_sql(spark, make_cfg):
    from jobs.stream.alert_budget import kept

    cfg = make_cfg()
    noon = dt.datetime(2026, 12, 1, 12)
    rows = batch(1, noon, list(np.linspace(0.0, 0.99, 3_000)), threshold=0.96).assign(
        customer_id=lambda f: f["transaction_id"] % 50, model_version="1", alert_reason=None
    )
    rows["tx_datetime"] = [noon + dt.timedelta(seconds=10 * i) for i in range(3_000)]  # 8 hours and a third
    rows["tx_date"] = rows["tx_datetime"].dt.date
    spark.createDataFrame(rows).write.format("delta").partitionBy("tx_date").save(cfg.table_path("scores"))
    budget = AlertBudget(enabled=True, fpr=0.045, window=dt.timedelta(hours=24), max_transactions=1_000)
    newest = newest_scored(spark, cfg.table_path("scores"))
    assert budget.fill(spark, cfg.table_path("scores"), cfg.table_path("labels"), NO_CARDS, newest) <= 1_000
    assert budget.one_in == 4
    ids = rows["transaction_id"].to_numpy()
    assert sorted(budget.ids) == sorted(ids[kept(ids, 4)]), "Spark SQL keeps what numpy keeps"
    # what the stream goes on to score is kept the same way
    budget.observe(batch(5_000, noon + dt.timedelta(hours=9), [0.1] * 40, threshold=1).assign(model_version="1"))
    assert set(budget.ids) - set(ids) == set(np.arange(5_000, 5_040)[kept(np.arange(5_000, 5_040), 4)])


def test_evidence_from_before_the_stream_is_not_scored_again_by_a_new_model():
    noon = dt.datetime(2026, 12, 1, 12)
    budget = AlertBudget(enabled=True, fpr=0.1, window=dt.timedelta(hours=24), rescore_window=True)
    history = pd.DataFrame(
        {
            "transaction_id": np.arange(1, 6, dtype=np.int64),
            "tx_datetime": [noon - dt.timedelta(hours=i + 1) for i in range(5)],
            "customer_id": np.arange(5, dtype=np.int64),
            "score": 0.1,
        }
    )
    budget.add_evidence(history, "1")
    budget.observe(batch(10, noon, [0.2, 0.3], threshold=1).assign(model_version="1"))
    # only the stream's own two are in `scores` to be scored again by model 2
    assert sorted(budget.others_than("2")) == [10, 11]
