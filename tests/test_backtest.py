"""`fraud backtest` end to end on a small simulation: its report agrees with the tables it was measured from,
and the feedback loop keeps its promises (every alert reviewed, missed frauds disputed, no label before
its transaction was scored)."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import pytest

from jobs.core.config import load_config
from jobs.core.errors import FraudError
from jobs.kafka_tools.produce import simulated_lines
from jobs.replay import backtest, bank, options
from jobs.simulation.simulator import make_spec

pytestmark = pytest.mark.integration


def test_a_small_backtest_reports_what_the_tables_hold(spark, tmp_path, capsys):
    work = tmp_path / "work"
    args = [
        "--cards",
        "200",
        "--terminals",
        "100",
        "--history-days",
        "22",
        "--replay-days",
        "1",
        "--step",
        "12h",
        "--reviews",
        "oracle",
        "--review-delay",
        "1h",
        "--dispute-delay",
        "6h",
        "--work",
        str(work),
        "--no-save",
        "--no-progress",
    ]
    assert backtest.main(args) == 0
    report = json.loads(capsys.readouterr().out)  # stdout holds the report only

    spec = make_spec("otus", customers=200, terminals=100, days=23)
    replay_start, replay_end = dt.datetime(2019, 9, 13), dt.datetime(2019, 9, 14)  # otus starts on 2019-08-22
    simulated = pd.DataFrame(
        [
            (int(f[0]), dt.datetime.strptime(f[1], "%Y-%m-%d %H:%M:%S"), int(f[2]), f[7] == "1", int(f[3]), int(f[8]))
            for f in (line.split(",") for line in simulated_lines(spec))
        ],
        columns=["transaction_id", "tx_datetime", "customer_id", "fraud", "terminal", "scenario"],
    )
    replayed = simulated[simulated["tx_datetime"] >= replay_start]
    scores = spark.read.format("delta").load(str(work / "lake/scores")).toPandas()
    assert sorted(scores["transaction_id"]) == sorted(replayed["transaction_id"])  # every transaction scored, once
    frame = replayed.merge(scores[["transaction_id", "decision", "scored_at"]], on="transaction_id")

    # a card is blocked once one of its frauds is confirmed: the history's 1 h after the transaction, the
    # replay's alerted ones 1 h after it (the review), the others 6 h after it (the dispute), within the replay
    history = simulated[(simulated["tx_datetime"] < replay_start) & simulated["fraud"]]
    frauds = frame[frame["fraud"]]
    confirmed = pd.concat(
        [
            pd.Series((history["tx_datetime"] + pd.Timedelta(hours=1)).to_numpy(), index=history["customer_id"]),
            pd.Series(
                (
                    frauds["tx_datetime"] + pd.to_timedelta(frauds["decision"].map({True: 1, False: 6}), unit="h")
                ).to_numpy(),
                index=frauds["customer_id"],
            ),
        ]
    )
    first = confirmed[confirmed < replay_end].groupby(level=0).min()
    blocked = frame["tx_datetime"] > frame["customer_id"].map(first)

    def recomputed(part: pd.DataFrame) -> tuple[int, int, int, float | None, float]:
        frauds, genuine = int(part["fraud"].sum()), int((~part["fraud"]).sum())
        caught, false_alerts = (
            int((part["decision"] & part["fraud"]).sum()),
            int((part["decision"] & ~part["fraud"]).sum()),
        )
        return (
            frauds,
            caught,
            false_alerts,
            round(caught / frauds, 4) if frauds else None,
            round(false_alerts / genuine, 4),
        )

    def reported(figures: dict) -> tuple[int, int, int, float, float]:
        return tuple(figures[k] for k in ("frauds", "frauds_alerted", "false_alerts", "recall", "fpr"))

    assert report["blocked_card_transactions"] == int(blocked.sum()) > 0
    assert reported(report["overall"]) == recomputed(frame[~blocked])
    assert reported(report["every_transaction"]) == recomputed(frame)
    assert list(report["days"]) == ["2019-09-13"] and report["days"]["2019-09-13"] == report["overall"]
    assert report["weeks"] == {"week_1": report["overall"]} and report["settled_weeks"] is None
    knew = report["what_the_loop_knew"]
    missed_at_terminals = report["frauds_by_scenario"].get("scenario_2", {}).get("missed", 0)
    assert (
        sum(sum(kinds.values()) for kinds in knew["missed_compromised_terminal_frauds_by_week"].values())
        == missed_at_terminals
    )
    at_terminals = simulated[simulated["fraud"] & (simulated["scenario"] == 2)]
    before = at_terminals[
        (at_terminals["tx_datetime"] < replay_start)
        & (at_terminals["tx_datetime"] >= replay_start - dt.timedelta(days=28))
    ]
    compromised_in_replay = set(at_terminals.loc[at_terminals["tx_datetime"] >= replay_start, "terminal"]) - set(
        before["terminal"]
    )
    assert knew["first_confirmation_hours"]["terminals"] == len(compromised_in_replay)
    assert knew["alerts_a_day"] == round(float(frame["decision"].sum()), 1)
    assert report["simulation"]["replayed_transactions"] == len(frame) and report["loop"]["steps"] == 2
    offline = report["offline_same_days"]
    assert offline["scored"] == len(frame) and offline["overall"]["transactions"] + offline[
        "blocked_card_transactions"
    ] == len(frame)

    # every alert reviewed, every missed fraud disputed
    loop = report["loop"]
    assert loop["alerts_reviewed"] == int(frame["decision"].sum())
    assert loop["frauds_missed_and_disputed"] == int((frame["fraud"] & ~frame["decision"]).sum())
    labels = spark.read.format("delta").load(str(work / "lake/labels")).toPandas()
    assert (
        len(labels) == loop["labels_sent"] > 0
        and loop["labels_sent"] + loop["labels_pending_at_the_end"]
        == loop["alerts_reviewed"] + loop["frauds_missed_and_disputed"]
    )
    truth = dict(zip(frame["transaction_id"], frame["fraud"].astype(int)))
    assert (labels["tx_fraud"] == labels["transaction_id"].map(truth)).all()
    # a label is sent after its transaction was scored
    scored_at = labels["transaction_id"].map(dict(zip(frame["transaction_id"], frame["scored_at"])))
    assert (pd.to_datetime(labels["labelled_at"]) >= pd.to_datetime(scored_at)).all()
    assert (
        report["model"]["threshold_rule"].startswith("highest recall")
        and "FPR <= 0.05" in report["model"]["threshold_rule"]
    )


def test_wrong_options_are_clear_errors():
    with pytest.raises(FraudError, match=r"--review-delay: expected a duration like 15m, 1h or 7d, found 'soon'"):
        options.parse_duration("soon", "--review-delay")
    parser = __import__("argparse").ArgumentParser()
    options.add_arguments(parser)
    with pytest.raises(FraudError, match=r"--step: expected a positive duration that divides a day, found '7h'"):
        options.loop_from_args(parser.parse_args(["--step", "7h"]))
    loop = options.loop_from_args(parser.parse_args(["--review-delay", "15m"]))
    assert loop.label_delay_hours == 1 and loop.review == dt.timedelta(minutes=15)
    assert options.loop_from_args(parser.parse_args(["--review-delay", "1d"])).label_delay_hours == 24
    with pytest.raises(FraudError, match=r"--compromise-days: the bank's raw files \(--input\) have their own"):
        options.loop_from_args(parser.parse_args(["--input", "raw", "--compromise-days", "7"]))
    # a compromise's length is in the command only when given: the seeds' commands stay as they were
    assert "--compromise-days 7 --history-days" in options.command(parser.parse_args(["--compromise-days", "7"]))
    assert "--compromise-days" not in options.command(parser.parse_args([]))


def test_a_stolen_card_is_declined_once_blocked_and_a_theft_of_the_new_card_pays_on_it():
    def line(tx: int, when: str, holder: int, fraud: int = 0, scenario: int = 0) -> str:
        return f"{tx},{when},{holder},5,10.00,0,0,{fraud},{scenario}"

    history = [line(1, "2019-09-01 10:00:00", 7, 1, 3)]  # card 7 stolen in the history, its fraud confirmed
    issuer = bank.CardIssuer(True, 1000, pd.Series({7: pd.Timestamp("2019-09-01 11:00:00")}), history)
    issuer.apply(dt.datetime(2019, 9, 2))  # card 7 blocked, its holder pays with card 1000
    assert issuer.payment(line(2, "2019-09-03 10:00:00", 7)) == line(2, "2019-09-03 10:00:00", 1000)
    assert issuer.payment(line(3, "2019-09-05 10:00:00", 7, 1, 3)) is None  # the same theft: card 7, blocked
    # 14 days after that theft's first fraud, a theft of the card the holder holds then: card 1000, sent
    assert issuer.payment(line(4, "2019-09-16 09:00:00", 7, 1, 3)) == line(4, "2019-09-16 09:00:00", 1000, 1, 3)
    assert issuer.payment(line(5, "2019-09-17 09:00:00", 7, 1, 3)) == line(5, "2019-09-17 09:00:00", 1000, 1, 3)
    issuer.block(1000, dt.datetime(2019, 9, 17, 10))
    issuer.apply(dt.datetime(2019, 9, 18))  # card 1000 blocked in turn: its thief's next fraud is declined
    assert issuer.payment(line(6, "2019-09-18 09:00:00", 7, 1, 3)) is None
    assert issuer.payment(line(7, "2019-09-18 10:00:00", 7)) == line(7, "2019-09-18 10:00:00", 1001)
    assert issuer.declined == [3, 6] and issuer.reissued == 2
    # a holder never reissued keeps the simulation's card, frauds of a theft included
    assert issuer.payment(line(8, "2019-09-18 11:00:00", 9, 1, 3)) == line(8, "2019-09-18 11:00:00", 9, 1, 3)


def test_reissued_cards_pay_with_new_ids_from_the_step_after_the_block(spark, tmp_path, capsys):
    """--reissue-cards: once a fraud of a card is confirmed (the history's 1 h after it, the replay's when its
    review or dispute is due), the cardholder pays with a new card id, with no history in the stream, from the
    next step on; the stolen card's frauds (scenario 3) are declined; the figures count what was sent."""
    work = tmp_path / "work"
    args = [
        "--cards",
        "200",
        "--terminals",
        "100",
        "--history-days",
        "22",
        "--replay-days",
        "1",
        "--step",
        "6h",
        "--reviews",
        "oracle",
        "--review-delay",
        "1h",
        "--dispute-delay",
        "6h",
        "--reissue-cards",
        "--work",
        str(work),
        "--no-save",
        "--no-progress",
    ]
    assert backtest.main(args) == 0
    report = json.loads(capsys.readouterr().out)
    loop = report["loop"]

    spec = make_spec("otus", customers=200, terminals=100, days=23)
    replay_start = dt.datetime(2019, 9, 13)
    simulated = pd.DataFrame(
        [
            (int(f[0]), dt.datetime.strptime(f[1], "%Y-%m-%d %H:%M:%S"), int(f[2]), f[7] == "1", int(f[8]))
            for f in (line.split(",") for line in simulated_lines(spec))
        ],
        columns=["transaction_id", "tx_datetime", "holder", "fraud", "scenario"],
    )
    replayed = simulated[simulated["tx_datetime"] >= replay_start]
    scores = spark.read.format("delta").load(str(work / "lake/scores")).toPandas()
    sent = replayed.merge(
        scores[["transaction_id", "customer_id", "decision", "card_tx_count_30d"]], on="transaction_id"
    )
    assert len(scores) + loop["declined_on_reissued_cards"] == len(replayed)  # every payment scored or declined
    new = sent[sent["customer_id"] != sent["holder"]]
    assert loop["cards_reissued"] > 0 and len(new) > 0 and (new["customer_id"] > 199).all()
    # a holder's new card is used only after one of their frauds was confirmed: the history's 1 h after it
    history = simulated[(simulated["tx_datetime"] < replay_start) & simulated["fraud"]]
    frauds = sent[sent["fraud"]]
    confirmed = (
        pd.concat(
            [
                pd.Series((history["tx_datetime"] + pd.Timedelta(hours=1)).to_numpy(), index=history["holder"]),
                pd.Series(
                    (
                        frauds["tx_datetime"] + pd.to_timedelta(frauds["decision"].map({True: 1, False: 6}), unit="h")
                    ).to_numpy(),
                    index=frauds["holder"],
                ),
            ]
        )
        .groupby(level=0)
        .min()
    )
    assert (new["tx_datetime"] >= new["holder"].map(confirmed)).all()
    # and from the first step after it on, every payment of theirs is with a new card (steps of 6 hours)
    step_after = (new["holder"].map(confirmed) - replay_start).dt.total_seconds().floordiv(6 * 3600).add(1) * 6
    old = sent[(sent["customer_id"] == sent["holder"]) & sent["holder"].isin(new["holder"])]
    old_after = (old["tx_datetime"] - replay_start).dt.total_seconds() / 3600 >= old["holder"].map(
        dict(zip(new["holder"], step_after))
    )
    assert not old_after.any()
    # a stolen card's frauds are declined once it is blocked; on a new card only a theft that began after the
    # reissue pays (a compromise: a holder's scenario-3 frauds within 14 days of its first)
    stolen = simulated[simulated["scenario"] == 3].sort_values("tx_datetime")
    began: dict[int, dt.datetime] = {}
    compromise: dict[int, dt.datetime] = {}
    for t, holder, when in zip(stolen["transaction_id"], stolen["holder"], stolen["tx_datetime"]):
        if holder not in compromise or when - compromise[holder] >= dt.timedelta(days=14):
            compromise[holder] = when
        began[t] = compromise[holder]
    reissued = {h: replay_start + dt.timedelta(hours=float(a)) for h, a in zip(new["holder"], step_after)}
    on_new = new[new["fraud"] & (new["scenario"] == 3)]
    assert all(began[t] >= reissued[h] for t, h in zip(on_new["transaction_id"], on_new["holder"]))
    declined = replayed[~replayed["transaction_id"].isin(sent["transaction_id"])]
    assert (declined["fraud"] & (declined["scenario"] == 3)).all(), "only a stolen card's frauds are declined"
    assert all(began[t] < reissued[h] for t, h in zip(declined["transaction_id"], declined["holder"]) if h in reissued)
    # a new card starts with no history: its first payment counts at most itself
    first = new.sort_values("tx_datetime").groupby("customer_id").head(1)
    assert (first["card_tx_count_30d"] <= 1).all()
    assert report["every_transaction"]["transactions"] == len(sent)


def test_a_replay_of_the_bank_s_raw_files_with_a_retraining_inside(spark, tmp_path, capsys):
    """--input: the bank's raw files (here simulated, with the bank's defects) instead of a simulation; their
    last day is replayed, the 22 before are the history. --retrain-every 12h: halfway through the replayed
    day, `fraud train --latest` on the loop's labels, and the stream scores with the champion from then on."""
    from jobs.simulation.rawfiles import DefectRates
    from jobs.simulation.simulate import simulate_to_folder

    raw = tmp_path / "raw"
    simulate_to_folder(make_spec("otus", customers=200, terminals=100, days=23, seed=3), raw, DefectRates())
    work = tmp_path / "work"
    args = [
        "--input",
        str(raw),
        "--replay-days",
        "1",
        "--step",
        "6h",
        "--retrain-every",
        "12h",
        "--reviews",
        "oracle",
        "--review-delay",
        "1h",
        "--dispute-delay",
        "6h",
        "--work",
        str(work),
        "--no-save",
        "--no-progress",
    ]
    assert backtest.main(args) == 0
    report = json.loads(capsys.readouterr().out)

    # the replayed day as the files hold it: lines the backtest reads (9 fields, integer ids, a time, labels
    # 0/1 and 0..3), the first copy of each transaction id
    replay_start = dt.datetime(2019, 9, 13)
    lines = [line.rstrip("\n").split(",") for line in (raw / "2019-08-22.txt").read_text().splitlines()[1:]]
    when = pd.to_datetime([f[1] if len(f) > 1 else "" for f in lines], format="%Y-%m-%d %H:%M:%S", errors="coerce")
    frame = pd.DataFrame({"fields": lines, "tx_datetime": when})
    frame["tx_datetime"] = frame["tx_datetime"].ffill()  # an unreadable line stays with the one before it
    day = frame[frame["tx_datetime"] >= replay_start]

    def readable(f: list[str]) -> bool:
        return (
            len(f) == 9
            and f[7] in ("0", "1")
            and f[8] in "0123"
            and len(f[8]) == 1
            and all(f[i].lstrip("-").isdigit() for i in (0, 2, 3))
            and not pd.isna(pd.to_datetime(f[1], format="%Y-%m-%d %H:%M:%S", errors="coerce"))
        )

    ok = day[day["fields"].map(readable)]
    truth = pd.DataFrame(
        {
            "transaction_id": [int(f[0]) for f in ok["fields"]],
            "fraud": [f[7] == "1" for f in ok["fields"]],
            "tx_datetime": ok["tx_datetime"].to_numpy(),
        }
    ).drop_duplicates("transaction_id")
    assert len(day) > len(ok) > 0, "the day holds some of the bank's defects"
    assert report["input"]["replayed_transactions"] == len(truth)
    assert report["loop"]["transactions_sent"] == len(day)  # the unreadable lines and the duplicates too
    assert report["input"]["unreadable_replayed_lines"] == len(day) - len(ok)
    assert (
        report["input"]["history"] == ["2019-08-22", "2019-09-12"] and report["input"]["replay"] == ["2019-09-13"] * 2
    )

    # every readable transaction scored or a dead letter, once; the figures are the scores' against the files' labels
    scores = spark.read.format("delta").load(str(work / "lake/scores")).toPandas()
    judged = truth.merge(scores[["transaction_id", "decision", "model_version"]], on="transaction_id")
    dead = report["dead_letters"]
    assert len(judged) + dead["refused_by_rules"] == len(truth)
    assert dead["duplicates"] == len(ok) - len(truth)
    assert len(scores) == len(judged) + report["unreadable_lines_scored"]
    caught = int((judged["decision"] & judged["fraud"]).sum())
    assert report["every_transaction"]["frauds"] == int(judged["fraud"].sum()) > 0
    assert report["every_transaction"]["frauds_alerted"] == caught
    assert report["every_transaction"]["false_alerts"] == int((judged["decision"] & ~judged["fraud"]).sum())

    # one retraining, at noon, on the labels the loop had by then: a fraud alerted before 11:00 (its review is
    # due an hour later) or missed before 06:00 (its dispute is due six hours later)
    (retrained,) = report["loop"]["retrainings"]
    noon = replay_start + dt.timedelta(hours=12)
    assert retrained["at"] == str(noon) and retrained["split"]["test_end"] == "2019-09-14"
    frauds = judged[judged["fraud"]]
    due = frauds["tx_datetime"] + pd.to_timedelta(frauds["decision"].map({True: 1, False: 6}), unit="h")
    assert retrained["replayed_frauds_known"] == int((due <= noon).sum())
    assert retrained["replayed_frauds"] == int((frauds["tx_datetime"] < noon).sum())
    lake = spark.read.format("delta").load(
        str(next((work / "retraining").glob("2019-09-13T1200")) / "lake/clean_transactions")
    )
    known = lake.where("tx_date = '2019-09-13' AND tx_fraud = 1").select("transaction_id").toPandas()
    assert set(known["transaction_id"]) == set(frauds.loc[(due <= noon).to_numpy(), "transaction_id"])
    # the stream scored with version 1 before noon and with the champion after it
    after = "2" if retrained["alias"] == "champion" else "1"
    assert retrained["version"] == "2"
    assert set(judged.loc[judged["tx_datetime"] < noon, "model_version"]) == {"1"}
    assert set(judged.loc[judged["tx_datetime"] >= noon, "model_version"]) == {after}
    assert (
        report["model_versions_by_day"]["2019-09-13"] == judged["model_version"].value_counts().sort_index().to_dict()
    )


def test_the_command_names_the_reviews_preset_and_the_options_a_run_gave_and_makes_the_same_loop_again():
    parser = __import__("argparse").ArgumentParser()
    options.add_arguments(parser)
    bank = parser.parse_args([])
    assert " --reviews bank" in options.command(bank) and "--review-hours" not in options.command(bank)
    loop = options.loop_from_args(bank)
    assert loop.reviews.hours == (8, 20) and loop.reviews.order == "riskiest" and loop.reviews.capacity is None
    assert (loop.reviews.wrong, loop.reviews.unanswered, loop.disputes.share) == (0.01, 0.05, 0.9)
    assert (loop.dispute, loop.disputes.spread) == (dt.timedelta(days=1), dt.timedelta(days=29))
    oracle = options.loop_from_args(parser.parse_args(["--reviews", "oracle"]))
    assert oracle.reviews.oracle and oracle.dispute == dt.timedelta(days=7) and oracle.disputes.share == 1.0
    args = parser.parse_args(
        [
            "--reviews",
            "oracle",
            "--review-capacity",
            "500",
            "--review-hours",
            "8-20",
            "--review-wrong",
            "0.05",
            "--dispute-share",
            "0.8",
            "--dispute-spread",
            "14d",
        ]
    )
    command = options.command(args)
    for option in (
        "--reviews oracle",
        "--review-capacity 500",
        "--review-hours 8-20",
        "--review-wrong 0.05",
        "--dispute-share 0.8",
        "--dispute-spread 14d",
    ):
        assert option in command, command
    again = parser.parse_args(command.split()[2:])
    assert options.loop_from_args(again) == options.loop_from_args(args)
    assert (
        options.loop_from_args(args).reviews.hours == (8, 20) and options.loop_from_args(args).reviews.capacity == 500
    )
    assert not options.loop_from_args(args).reviews.oracle
    with pytest.raises(
        FraudError, match=r"--review-capacity: expected a whole number of reviews a day or none, found 'many'"
    ):
        options.loop_from_args(parser.parse_args(["--review-capacity", "many"]))


def test_seeds_replay_once_each_and_their_spread_says_the_median_the_worst_and_how_many_met_it(monkeypatch, tmp_path):
    def week(recall: float, fpr: float) -> dict:
        return {"recall": recall, "fpr": fpr, "meets_requirement": recall > 0.98 and fpr <= 0.05, "frauds": 100}

    made = {
        1: [week(0.99, 0.03), week(0.995, 0.04)],
        2: [week(0.97, 0.03), week(0.999, 0.045)],
        3: [week(0.985, 0.02), week(0.99, 0.051)],
    }
    replayed: list[tuple[int, str]] = []

    def replay_once(args):
        replayed.append((args.seed, args.name))
        weeks = {f"week_{i + 1}": w for i, w in enumerate(made[args.seed])}
        return {
            "overall": week(0.99, 0.03),
            "settled_weeks": weeks["week_2"],
            "weeks": weeks,
            "what_the_loop_knew": {"first_confirmation_hours": {"terminals": args.seed}},
            "command": "c",
        }

    monkeypatch.setattr(backtest, "replay_once", replay_once)
    monkeypatch.setattr(backtest, "RESULTS", tmp_path)
    parser = __import__("argparse").ArgumentParser()
    options.add_arguments(parser)
    assert backtest.execute(parser.parse_args(["--seeds", "1-3", "--name", "spread"])) == 0
    assert replayed == [(1, "spread_seed1"), (2, "spread_seed2"), (3, "spread_seed3")]
    report = __import__("json").loads((tmp_path / "spread.json").read_text())
    assert report["command"].startswith("fraud backtest ") and "--seeds 1-3" in report["command"]
    assert report["weeks"]["week_1"] == {
        "seeds": 3,
        "median_recall": 0.985,
        "worst_recall": 0.97,
        "highest_fpr": 0.03,
        "seeds_meeting": 2,
    }
    assert report["weeks"]["week_2"]["seeds_meeting"] == 2 and report["weeks"]["week_2"]["highest_fpr"] == 0.051
    assert report["seeds_meeting_it_every_week"] == 1 and report["of_seeds"] == 3  # seed 1 alone
    assert report["seeds"]["2"]["file"] == "spread_seed2.json" and report["seeds"]["3"]["new_compromises"] == 3
    # --reuse-seeds reads a seed's kept replay of the same command and policy (seed 2 here) and replays the
    # others: seed 1's ran the same command when a default of the policy was another, seed 3's another command
    json = __import__("json")
    same = parser.parse_args(["--seed", "2", "--name", "spread_seed2"])
    current = backtest.policy(load_config("local"))
    kept = {
        **replay_once(same),
        "command": options.command(same),
        "policy": current,
        "run": {"commit": "abc", "date": "2026-12-06"},
    }
    replayed.clear()
    (tmp_path / "spread_seed2.json").write_text(json.dumps(kept))
    (tmp_path / "spread_seed3.json").write_text(json.dumps({**kept, "command": "another command"}))
    first = options.command(parser.parse_args(["--seed", "1", "--name", "spread_seed1"]))
    older = {**current, "terminal_checks": {**current["terminal_checks"], "renew_cases": False}}
    (tmp_path / "spread_seed1.json").write_text(json.dumps({**kept, "command": first, "policy": older}))
    assert backtest.execute(parser.parse_args(["--seeds", "1-3", "--name", "spread", "--reuse-seeds"])) == 0
    assert replayed == [(1, "spread_seed1"), (3, "spread_seed3")]
    assert json.loads((tmp_path / "spread.json").read_text())["seeds"]["2"]["run"]["commit"] == "abc"
    for wrong, message in (
        ("1-x", "expected FIRST-LAST or a comma-separated list"),
        ("2,2", "expected distinct seeds"),
    ):
        with pytest.raises(FraudError, match=f"--seeds: {message}"):
            options.parse_seeds(wrong)
