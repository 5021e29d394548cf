"""`fraud backtest` end to end on a small simulation: its report agrees with the tables it was measured from,
and the feedback loop keeps its promises (every alert reviewed, missed frauds disputed, no label before
its transaction was scored)."""
from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import pytest

from jobs import backtest
from jobs.errors import FraudError
from jobs.produce import simulated_lines
from jobs.simulator import make_spec

pytestmark = pytest.mark.integration


def test_a_small_backtest_reports_what_the_tables_hold(spark, tmp_path, capsys):
    work = tmp_path / "work"
    args = ["--cards", "400", "--terminals", "200", "--history-days", "22", "--replay-days", "1", "--step", "12h",
            "--review-delay", "1h", "--dispute-delay", "6h", "--work", str(work), "--no-save", "--no-progress"]
    assert backtest.main(args) == 0
    out = capsys.readouterr().out
    report = json.loads(out[out.index("{\n"):])  # after the stream's own lines

    spec = make_spec("otus", customers=400, terminals=200, days=23)
    replay_start = dt.datetime(2019, 9, 13)  # the otus preset starts on 2019-08-22; 22 days of history
    truth = {int(f[0]): int(f[7]) for f in (line.split(",") for line in simulated_lines(spec))
             if dt.datetime.strptime(f[1], "%Y-%m-%d %H:%M:%S") >= replay_start}
    scores = spark.read.format("delta").load(str(work / "lake/scores")).toPandas()
    assert sorted(scores["transaction_id"]) == sorted(truth)  # every replayed transaction scored, once
    fraud = scores["transaction_id"].map(truth).astype(bool)
    caught, false_alerts = int((scores["decision"] & fraud).sum()), int((scores["decision"] & ~fraud).sum())
    overall = report["overall"]
    assert (overall["frauds"], overall["frauds_alerted"], overall["false_alerts"]) == (int(fraud.sum()), caught, false_alerts)
    assert overall["recall"] == round(caught / fraud.sum(), 4)
    assert overall["fpr"] == round(false_alerts / (~fraud).sum(), 4)
    assert list(report["days"]) == ["2019-09-13"] and report["days"]["2019-09-13"]["recall"] == overall["recall"]
    assert report["simulation"]["replayed_transactions"] == len(truth) and report["loop"]["steps"] == 2

    # every alert reviewed, every missed fraud disputed (6 h later: the second step's are due after the replay)
    loop = report["loop"]
    assert loop["alerts_reviewed"] == int(scores["decision"].sum())
    assert loop["frauds_missed_and_disputed"] == int(fraud.sum()) - caught
    labels = spark.read.format("delta").load(str(work / "lake/labels")).toPandas()
    assert len(labels) == loop["labels_sent"] and loop["labels_sent"] + loop["labels_due_after_the_replay"] == \
        loop["alerts_reviewed"] + loop["frauds_missed_and_disputed"]
    assert (labels["tx_fraud"] == labels["transaction_id"].map(truth)).all()
    # a label is sent after its transaction was scored, and records no earlier than its due time would allow
    scored_at = labels["transaction_id"].map(dict(zip(scores["transaction_id"], scores["scored_at"])))
    assert (pd.to_datetime(labels["labelled_at"]) >= pd.to_datetime(scored_at)).all()
    assert report["model"]["threshold_rule"].startswith("highest recall") and "FPR <= 0.05" in report["model"]["threshold_rule"]


def test_wrong_options_are_clear_errors():
    with pytest.raises(FraudError, match=r"--review-delay: expected a duration like 15m, 1h or 7d, found 'soon'"):
        backtest.parse_duration("soon", "--review-delay")
    parser = __import__("argparse").ArgumentParser()
    backtest.add_arguments(parser)
    with pytest.raises(FraudError, match=r"--step: expected a positive duration that divides a day, found '7h'"):
        backtest.loop_from_args(parser.parse_args(["--step", "7h"]))
    loop = backtest.loop_from_args(parser.parse_args(["--review-delay", "15m"]))
    assert loop.label_delay_hours == 1 and loop.review == dt.timedelta(minutes=15)
    assert backtest.loop_from_args(parser.parse_args(["--review-delay", "1d"])).label_delay_hours == 24
