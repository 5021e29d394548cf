"""Checks of the terminals where a fraud is confirmed (jobs/stream/terminal_checks.py): a probe, then a case."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from jobs.core.config import load_config
from jobs.core.errors import ConfigError
from jobs.stream.alert_budget import AlertBudget, newest_scored
from jobs.stream.blocked_cards import BlockedCards
from jobs.stream.terminal_checks import CASE, EXPLORE, PROBE, TerminalChecks, flagged_history

NOON = dt.datetime(2026, 12, 1, 12)


def scored(rows: list[tuple[int, int, int, str | None]]) -> pd.DataFrame:
    """(transaction id, terminal, minutes after noon, alert_reason) -> a micro-batch's scored transactions."""
    return pd.DataFrame(
        [
            {
                "transaction_id": t,
                "terminal_id": terminal,
                "tx_datetime": NOON + dt.timedelta(minutes=m),
                "alert_reason": reason,
            }
            for t, terminal, m, reason in rows
        ]
    )


def labels(rows: list[tuple[int, int, int, int]]) -> pd.DataFrame:
    """(transaction id, label, card, terminal) -> labels with their place."""
    return pd.DataFrame(rows, columns=["transaction_id", "tx_fraud", "customer_id", "terminal_id"])


def test_a_confirmed_fraud_probes_its_terminal_and_a_fraudulent_probe_opens_a_case():
    checks = TerminalChecks(enabled=True, probe_payments=2, case_hours=24, cooldown_hours=12)
    checks.observe(scored([(1, 7, 0, "score")]))
    checks.label(labels([(1, 1, 100, 7)]))  # card 100's first confirmed fraud, at terminal 7
    assert checks.reviews() == {7: PROBE}
    checks.observe(scored([(2, 7, 10, PROBE), (3, 8, 11, None)]))
    assert checks.reviews() == {7: PROBE}, "one of the two probe payments sent"
    checks.observe(scored([(4, 7, 20, PROBE)]))
    assert checks.reviews() == {}, "both sent: the probe waits for their reviews"
    checks.label(labels([(2, 0, 101, 7), (4, 1, 102, 7)]))  # the second probe was a fraud: a case
    assert checks.reviews() == {7: CASE} and checks.opened == {PROBE: 1, CASE: 1}
    checks.observe(scored([(5, 7, 60 * 24, CASE)]))
    assert checks.reviews() == {7: CASE}, "the case runs 24 h from its opening (at 12:20)"
    checks.observe(scored([(6, 9, 60 * 24 + 30, None)]))
    assert checks.reviews() == {}, "the case is over"


def test_a_card_s_later_frauds_and_a_terminal_in_its_cool_down_probe_nothing():
    checks = TerminalChecks(enabled=True, probe_payments=1, case_hours=24, cooldown_hours=12)
    checks.observe(scored([(1, 7, 0, "score")]))
    checks.label(labels([(1, 1, 100, 7)]))
    checks.observe(scored([(2, 7, 5, PROBE)]))
    checks.label(labels([(2, 0, 101, 7)]))  # the probe found nothing
    checks.label(labels([(3, 1, 100, 8), (4, 1, 102, 7)]))  # card 100 again; terminal 7 within its cool-down
    assert checks.reviews() == {} and checks.opened == {PROBE: 1, CASE: 0}
    checks.observe(scored([(5, 9, 13 * 60, None)]))  # 13 h later: terminal 7 may be probed again
    checks.label(labels([(6, 1, 103, 7)]))
    assert checks.reviews() == {7: PROBE}


def test_a_card_s_fraud_probes_its_terminal_again_once_the_card_is_forgotten():
    checks = TerminalChecks(
        enabled=True, probe_payments=1, case_hours=24, cooldown_hours=12, fraud_cards=BlockedCards(days=2)
    )
    checks.remember([100])  # a restart's card with a confirmed fraud: its next fraud is the card's
    checks.label(labels([(1, 1, 100, 7)]))
    assert checks.reviews() == {}
    checks.observe(scored([(2, 8, 0, None)]))
    checks.observe(scored([(3, 8, 2 * 24 * 60 + 1, None)]))  # two days after the clock started: forgotten
    assert 100 not in checks.fraud_cards
    checks.label(labels([(4, 1, 100, 7)]))
    assert checks.reviews() == {7: PROBE}


def test_checks_that_are_off_ask_for_no_review():
    checks = TerminalChecks(enabled=False, probe_payments=2, case_hours=24, cooldown_hours=12)
    checks.label(labels([(1, 1, 100, 7)]))
    assert checks.reviews() == {}


def test_reviews_for_a_terminal_check_leave_the_score_the_rest_of_the_budget():
    # every transaction counts in full (these scores are not the model's chances)
    budget = AlertBudget(enabled=True, fpr=0.2, window=dt.timedelta(hours=24), unflagged_at_score=False)
    frame = scored([(i, 1, i, None) for i in range(10)]).assign(score=[i / 10 for i in range(10)])
    frame["decision"] = frame["score"] >= 0.8
    frame.loc[frame["score"] >= 0.8, "alert_reason"] = "score"
    frame.loc[0, ["decision", "alert_reason"]] = [True, PROBE]  # a probe of the lowest score
    budget.observe(frame)
    # 10 legitimate, 1 flagged by a probe (10%): the score gets the other 10%; with a micro-batch of one more,
    # 1 transaction of 11 (0.9)
    assert budget.threshold(0.5, scored([(10, 1, 10, None)]).assign(score=0.0)) == 0.9
    assert budget.spent() == pytest.approx(3 / 10)


def test_checks_without_probe_payments_probe_nothing_and_still_explore():
    checks = TerminalChecks(enabled=True, probe_payments=0, case_hours=24, cooldown_hours=12, explore_hours=6)
    checks.observe(scored([(1, 7, 0, "score"), (2, 8, 0, None)]))
    checks.label(labels([(1, 1, 100, 7)]))  # a card's first confirmed fraud: no probe
    assert checks.reviews() == {} and checks.opened == {PROBE: 0, CASE: 0}
    assert 100 in checks.fraud_cards, "the card's next frauds are still the card's"
    checks.observe(scored([(3, 9, 7 * 60, None)]))  # 19:00: 7 and 8 have had no review for 6 hours, 9 just came
    assert checks.reviews() == {7: EXPLORE, 8: EXPLORE}
    checks.resume(
        scored([(4, 7, 7 * 60, PROBE)]),
        labels([])[["transaction_id", "tx_fraud"]],
        np.datetime64(NOON + dt.timedelta(hours=7), "us"),
    )  # a probe of before the change goes no further
    assert PROBE not in checks.reviews().values() and CASE not in checks.reviews().values()


@pytest.mark.parametrize(
    "key, value",
    [
        ("stream.terminal_checks.probe_payments", -1),
        ("stream.terminal_checks.cooldown_hours", 0),
        ("stream.terminal_checks.case_hours", "2d"),
        ("stream.terminal_checks.enabled", 1),
        ("stream.terminal_checks.explore_share", 0.2),
    ],
)
def test_check_options_are_checked_when_the_configuration_is_loaded(key, value):
    with pytest.raises(ConfigError, match=rf"{key}: expected .*, found {value!r}"):
        load_config("local", {key: value})


def test_a_terminal_without_a_review_for_explore_hours_gets_its_next_payment_reviewed():
    checks = TerminalChecks(enabled=True, probe_payments=2, case_hours=24, cooldown_hours=12, explore_hours=6)
    checks.observe(scored([(1, 7, 0, None), (2, 8, 0, "score")]))
    # the clocks start spread over the last 6 hours: none is due yet
    assert checks.reviews() == {}
    assert all(
        NOON - dt.timedelta(hours=6) <= pd.Timestamp(t).to_pydatetime() <= NOON for t in checks.last_review.values()
    )
    checks.observe(scored([(3, 9, 7 * 60, "score"), (4, 8, 7 * 60 + 1, "score")]))  # 8 and 9 reviewed at 19:00
    checks.observe(scored([(5, 9, 12 * 60, None)]))  # at midnight 7 has had no review for over 6 hours
    assert checks.reviews() == {7: EXPLORE}
    checks.observe(scored([(6, 7, 12 * 60 + 5, EXPLORE)]))
    assert checks.reviews() == {}
    checks.observe(scored([(7, 7, 14 * 60, None)]))  # 02:00: 8 and 9 are 7 hours without a review
    assert checks.reviews() == {8: EXPLORE, 9: EXPLORE}


def test_a_check_picks_its_terminal_s_earliest_payments_among_the_candidates():
    checks = TerminalChecks(enabled=True, probe_payments=2, case_hours=24, cooldown_hours=12, explore_hours=6)
    checks.probes = {7: 1}  # one probe payment left at terminal 7
    candidates = scored(
        [(1, 7, 30, PROBE), (2, 7, 10, PROBE), (3, 8, 5, EXPLORE), (4, 8, 1, EXPLORE), (5, 9, 3, CASE), (6, 9, 4, CASE)]
    )
    assert checks.pick(candidates) == {2, 4, 5, 6}
    assert checks.pick(candidates.iloc[0:0]) == set()


def test_exploration_stays_within_its_share_of_the_budget_the_longest_unreviewed_terminals_first():
    checks = TerminalChecks(
        enabled=True, probe_payments=2, case_hours=24, cooldown_hours=12, explore_hours=6, explore_share=0.2
    )
    checks.last_review = {
        7: np.datetime64(NOON - dt.timedelta(hours=9), "us"),
        8: np.datetime64(NOON - dt.timedelta(hours=20), "us"),
        9: np.datetime64(NOON - dt.timedelta(hours=7), "us"),
    }
    candidates = scored(
        [(1, 7, 1, EXPLORE), (2, 8, 2, EXPLORE), (3, 9, 3, EXPLORE), (4, 9, 4, EXPLORE), (5, 10, 5, CASE)]
    )
    assert checks.pick(candidates) == {1, 2, 3, 5}  # no limit: each due terminal's first payment
    assert checks.pick(candidates, explorations=2) == {2, 1, 5}  # terminals 8 then 7: the longest without review
    assert checks.pick(candidates, explorations=0) == {5}  # a case is not exploration: never held back

    # the room the budget's window leaves: 20% of 10 legitimate transactions, one of which explored already
    budget = AlertBudget(enabled=True, fpr=0.045, window=dt.timedelta(hours=24))
    frame = scored([(i, 7, i, None) for i in range(1, 12)]).assign(score=0.1, decision=False)
    frame.loc[0, ["decision", "alert_reason"]] = [True, EXPLORE]
    frame.loc[1, ["decision", "alert_reason"]] = [True, "score"]
    frame.loc[2, ["decision", "alert_reason"]] = [True, EXPLORE]  # a fraud, confirmed below: it spends nothing
    budget.observe(frame)
    budget.label(pd.DataFrame({"transaction_id": [3], "tx_fraud": [1]}))
    assert budget.room(EXPLORE, 0.2) == 1 and budget.room(EXPLORE, 0.1) == 0 and budget.room(CASE, 0.2) == 2


def test_a_restart_takes_up_the_probes_cases_and_reviews_that_the_flagged_payments_show():
    def live() -> tuple[TerminalChecks, list[pd.DataFrame], list[pd.DataFrame]]:
        checks = TerminalChecks(enabled=True, probe_payments=2, case_hours=24, cooldown_hours=12, explore_hours=6)
        batches = [scored([(1, 7, 0, "score"), (2, 9, 0, "score"), (3, 10, 0, None)])]
        verdicts = [labels([(1, 1, 100, 7), (2, 1, 101, 9)])]  # first frauds of two cards: terminals 7 and 9 probed
        batches.append(scored([(4, 7, 10, PROBE), (5, 7, 20, PROBE), (6, 9, 30, PROBE), (7, 9, 40, PROBE)]))
        verdicts.append(labels([(5, 1, 102, 7), (6, 0, 103, 9), (7, 0, 104, 9)]))  # a case at 7; 9 was genuine
        batches.append(scored([(8, 7, 200, CASE), (9, 7, 300, CASE), (10, 11, 300, "score")]))
        verdicts.append(labels([(10, 1, 105, 11)]))  # terminal 11 probed: one of its two payments sent, no verdict
        batches.append(scored([(11, 11, 350, PROBE), (12, 10, 400, None)]))
        for batch, verdict in zip(batches, verdicts + [labels([])]):
            checks.observe(batch)
            checks.label(verdict)
        return checks, batches, verdicts

    before, batches, verdicts = live()
    flagged = pd.concat(batches, ignore_index=True).dropna(subset=["alert_reason"])
    last = pd.concat(verdicts, ignore_index=True)[["transaction_id", "tx_fraud"]]
    after = TerminalChecks(enabled=True, probe_payments=2, case_hours=24, cooldown_hours=12, explore_hours=6)
    after.resume(
        flagged,
        last[last["transaction_id"].isin(flagged["transaction_id"])],
        np.datetime64(NOON + dt.timedelta(minutes=400), "us"),
    )
    # 9 was last reviewed at 12:40, over 6 hours ago; 10 has no flagged payment in the tables: its clock starts
    # again when it next pays
    assert after.reviews() == {7: CASE, 11: PROBE, 9: EXPLORE} and before.reviews() == {**after.reviews(), 10: EXPLORE}
    assert after.cases == {7: np.datetime64(NOON + dt.timedelta(minutes=200, hours=24), "us")}  # from its first payment
    assert before.probes == after.probes == {11: 1} and before.probe_ids == after.probe_ids == {4: 7, 11: 11}
    assert set(after.probed_since) == set(before.probed_since) == {7, 9, 11}, "9 in its cool-down"
    assert after.last_review == {t: before.last_review[t] for t in (7, 9, 11)}

    for checks in (before, after):  # the same next micro-batch, the same answers
        checks.observe(scored([(13, 11, 410, PROBE), (14, 12, 420, None)]))
        checks.label(labels([(11, 1, 106, 11), (14, 1, 107, 9)]))  # 11's probe finds fraud; 9 still cools down
    assert after.reviews() == {7: CASE, 11: CASE, 9: EXPLORE} and before.reviews() == {**after.reviews(), 10: EXPLORE}


def test_a_restart_finds_no_check_in_empty_tables():
    checks = TerminalChecks(enabled=True, probe_payments=2, case_hours=24, cooldown_hours=12)
    checks.resume(
        scored([]).reindex(columns=["transaction_id", "terminal_id", "tx_datetime", "alert_reason"]),
        labels([])[["transaction_id", "tx_fraud"]],
        np.datetime64(NOON, "us"),
    )
    assert checks.reviews() == {} and checks.now == np.datetime64(NOON, "us")


def test_a_restart_reads_the_last_hours_flagged_payments_and_the_probes_last_verdicts(spark, make_cfg):
    cfg = make_cfg()
    frame = scored(
        [
            (1, 7, -30 * 60, PROBE),
            (2, 7, -60, PROBE),
            (3, 7, -50, CASE),
            (4, 8, -40, None),
            (5, 8, 0, "score"),
            (6, 9, 10, None),
        ]
    )  # 1 is older than the 24 hours read
    frame["tx_date"] = frame["tx_datetime"].dt.date
    spark.createDataFrame(frame).write.format("delta").partitionBy("tx_date").save(cfg.table_path("scores"))
    newest = newest_scored(spark, cfg.table_path("scores"))
    assert newest == NOON + dt.timedelta(minutes=10)
    since = newest - dt.timedelta(hours=24)
    assert flagged_history(spark, cfg.table_path("scores"), cfg.table_path("labels"), since)[1].empty  # no labels yet
    labels = pd.DataFrame(
        [(2, 0, 1, 0), (2, 1, 2, 1), (3, 1, 2, 2)],  # 2 first genuine, then corrected to fraud
        columns=["transaction_id", "tx_fraud", "batch_id", "offset"],
    ).assign(labelled_at=NOON)
    spark.createDataFrame(labels).write.format("delta").save(cfg.table_path("labels"))
    flagged, verdicts = flagged_history(spark, cfg.table_path("scores"), cfg.table_path("labels"), since)
    assert sorted(flagged["transaction_id"]) == [2, 3, 5]
    # the probe's and the case payment's last labels
    assert verdicts.sort_values("transaction_id").to_dict("records") == [
        {"transaction_id": 2, "tx_fraud": 1},
        {"transaction_id": 3, "tx_fraud": 1},
    ]
    assert newest_scored(spark, cfg.table_path("alerts")) is None  # no table
    assert flagged_history(spark, cfg.table_path("alerts"), cfg.table_path("labels"), since)[0].empty


def case_opened_at_12_20(renew: bool) -> TerminalChecks:
    """Terminal 7 under a case since 12:20 (its probe payment 4 confirmed as fraud then), 24-hour cases."""
    checks = TerminalChecks(enabled=True, probe_payments=1, case_hours=24, cooldown_hours=12, renew_cases=renew)
    checks.observe(scored([(1, 7, 0, "score")]))
    checks.label(labels([(1, 1, 100, 7)]))
    checks.observe(scored([(4, 7, 20, PROBE)]))
    checks.label(labels([(4, 1, 102, 7)]))
    assert checks.reviews() == {7: CASE}
    return checks


def test_a_case_payment_confirmed_as_fraud_renews_the_case_for_case_hours_from_then():
    renewed, fixed = case_opened_at_12_20(True), case_opened_at_12_20(False)
    for checks in (renewed, fixed):
        checks.observe(scored([(5, 7, 60 * 20, CASE), (6, 7, 60 * 21, CASE)]))  # 08:00 and 09:00 the next day
        checks.label(labels([(5, 0, 103, 7), (6, 1, 104, 7)]))  # a genuine one renews nothing; a fraud does
    assert renewed.cases == {7: np.datetime64(NOON + dt.timedelta(hours=21 + 24), "us")}  # the event clock + 24 h
    assert fixed.cases == {7: np.datetime64(NOON + dt.timedelta(minutes=20, hours=24), "us")}
    for checks in (renewed, fixed):
        checks.observe(scored([(8, 9, 60 * 30, None)]))  # 18:00 the next day: past the case's first day
    assert renewed.reviews() == {7: CASE} and fixed.reviews() == {}
    renewed.observe(scored([(9, 9, 60 * 45 + 1, None)]))
    assert renewed.reviews() == {}, "24 h after the last fraud its reviews confirmed, the case is over"
    # a verdict that comes after the case ended opens nothing again
    renewed.case_ids[10] = (7, np.datetime64(NOON + dt.timedelta(hours=44), "us"))
    renewed.label(labels([(10, 1, 105, 7)]))
    assert renewed.cases == {} and renewed.case_verdicts == {}


def test_a_case_whose_verdicts_are_mostly_genuine_is_not_renewed_by_a_fraud():
    """An honest terminal's case finds a wrong review or a stolen card now and then: that renews nothing."""
    checks = case_opened_at_12_20(True)
    checks.observe(scored([(t, 7, 60 + t, CASE) for t in range(10, 15)]))
    checks.label(labels([(10, 0, 110, 7), (11, 0, 111, 7), (12, 1, 112, 7)]))  # 1 of 3: no renewal
    assert checks.cases == {7: np.datetime64(NOON + dt.timedelta(minutes=20, hours=24), "us")}
    checks.label(labels([(13, 1, 113, 7), (14, 1, 114, 7)]))  # 3 of 5 now: the case runs 24 h from the clock
    assert checks.case_verdicts == {7: [3, 2]}
    assert checks.cases == {7: np.datetime64(NOON + dt.timedelta(minutes=74) + dt.timedelta(hours=24), "us")}


def test_a_restart_takes_up_a_renewed_case_from_the_case_payments_verdicts():
    before = case_opened_at_12_20(True)
    before.observe(scored([(5, 7, 60 * 20, CASE), (6, 7, 60 * 21, CASE)]))
    before.observe(scored([(7, 9, 60 * 22, None)]))  # the event clock at 10:00 when the verdicts come
    before.label(labels([(5, 0, 103, 7), (6, 1, 104, 7)]))
    before.observe(scored([(8, 7, 60 * 23, CASE)]))  # sent, no verdict yet
    flagged = pd.concat(
        [scored([(4, 7, 20, PROBE), (5, 7, 60 * 20, CASE), (6, 7, 60 * 21, CASE), (8, 7, 60 * 23, CASE)])]
    )
    verdicts = pd.DataFrame(
        {
            "transaction_id": [4, 5, 6],
            "tx_fraud": [1, 0, 1],
            "event_clock": [
                NOON + dt.timedelta(minutes=20),
                NOON + dt.timedelta(hours=22),
                NOON + dt.timedelta(hours=22),
            ],
        }
    )
    after = TerminalChecks(enabled=True, probe_payments=1, case_hours=24, cooldown_hours=12, renew_cases=True)
    after.resume(flagged, verdicts, np.datetime64(NOON + dt.timedelta(hours=23), "us"))
    assert after.cases == before.cases == {7: np.datetime64(NOON + dt.timedelta(hours=22 + 24), "us")}
    assert set(after.case_ids) == set(before.case_ids) == {8}
    assert after.case_verdicts == before.case_verdicts == {7: [1, 1]}
    for checks in (before, after):  # payment 8 confirmed as fraud at 04:00 on the third day renews both alike
        checks.observe(scored([(11, 9, 60 * 40, None)]))
        checks.label(labels([(8, 1, 106, 7)]))
    assert after.cases == before.cases == {7: np.datetime64(NOON + dt.timedelta(hours=40 + 24), "us")}
    assert after.case_verdicts == before.case_verdicts == {7: [2, 1]}
