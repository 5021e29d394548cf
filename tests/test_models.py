"""Split rules, the handbook's card rule, metrics and threshold choice, on small hand-computed cases."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from models.errors import ModelError
from models.metrics import at_threshold, card_precision_at_k, recall_at_fpr, requirement
from models.split import Split, drop_known_fraud_cards, in_days
from models.threshold import choose_threshold

D = dt.date


def test_handbook_split_windows():
    s = Split(D(2018, 7, 25))
    assert s.as_params() == {
        "train_start": "2018-07-25",
        "train_end": "2018-08-01",
        "val_start": "2018-07-30",
        "test_start": "2018-08-08",
        "test_end": "2018-08-15",
        "delay_days": "7",
    }


def test_split_errors_name_the_option():
    with pytest.raises(ModelError, match=r"val_days must be between 1 and train_days - 1 \(6\), found 7"):
        Split(D(2018, 7, 25), val_days=7)
    with pytest.raises(ModelError, match=r"expected train_days >= 2, test_days >= 1, delay_days >= 0"):
        Split(D(2018, 7, 25), test_days=0)


def test_in_days_is_half_open():
    frame = pd.DataFrame({"tx_date": [D(2018, 8, 7), D(2018, 8, 8), D(2018, 8, 14), D(2018, 8, 15)], "n": [0, 1, 2, 3]})
    assert in_days(frame, D(2018, 8, 8), D(2018, 8, 15))["n"].tolist() == [1, 2]


def test_cards_with_a_known_fraud_leave_the_later_days():
    history = pd.DataFrame(
        {
            "customer_id": [1, 2],
            "tx_fraud": [1, 1],
            "tx_datetime": pd.to_datetime(["2018-08-01 10:00", "2018-08-05 10:00"]),
        }
    )
    days = pd.DataFrame(
        {
            "customer_id": [1, 1, 2, 2, 3],
            "tx_date": [D(2018, 8, 8), D(2018, 8, 9), D(2018, 8, 12), D(2018, 8, 13), D(2018, 8, 8)],
        }
    )
    # 7-day delay: card 1's fraud is known from 08-08 10:00 -> still in on 08-08, out from 08-09;
    # card 2's is known from 08-12 10:00 -> in on 08-12, out on 08-13
    kept = drop_known_fraud_cards(history, days, label_delay_hours=168)
    assert list(zip(kept.customer_id, kept.tx_date)) == [(1, D(2018, 8, 8)), (2, D(2018, 8, 12)), (3, D(2018, 8, 8))]


def test_card_precision_at_k_removes_cards_caught_on_earlier_days():
    frame = pd.DataFrame(
        {
            "tx_date": [D(2018, 8, 8)] * 3 + [D(2018, 8, 9)] * 3,
            "customer_id": [1, 2, 3, 1, 2, 4],
            "score": [0.9, 0.8, 0.1, 0.95, 0.7, 0.2],
            "tx_fraud": [1, 0, 0, 1, 1, 0],
        }
    )
    # day 1, top 2: cards 1 (fraud) and 2 -> 1/2; day 2: card 1 was caught, top 2 = cards 2 (fraud), 4 -> 1/2
    assert card_precision_at_k(frame, k=2) == 0.5
    assert card_precision_at_k(frame, k=1) == pytest.approx((1 + 1) / 2)  # day 2's top card is 2 (fraud)


def test_threshold_lowest_fpr_reaching_the_recall_target():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.6, 0.25, 0.5, 0.7, 0.9])
    threshold, how = choose_threshold(y, s, target_recall=0.75)
    assert threshold == 0.5 and at_threshold(y, s, threshold)["recall"] == 0.75
    assert at_threshold(y, s, threshold)["fpr"] == 0.25
    assert how.startswith("lowest FPR (0.2500) reaching recall >= 0.75")
    threshold, _ = choose_threshold(y, s, target_recall=1.0)
    assert threshold == 0.25 and at_threshold(y, s, threshold)["fpr"] == 0.5


def test_threshold_highest_recall_within_an_fpr_budget():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.6, 0.25, 0.5, 0.7, 0.9])
    threshold, how = choose_threshold(y, s, max_fpr=0.0)
    assert threshold == 0.7 and at_threshold(y, s, threshold) | {} == {
        "precision": 1.0,
        "recall": 0.5,
        "f1": pytest.approx(2 / 3),
        "fpr": 0.0,
        "tp": 2,
        "fp": 0,
        "fn": 2,
        "tn": 4,
    }
    assert "highest recall (0.5000) with FPR <= 0.0" in how


def test_threshold_within_an_fpr_budget_reaches_the_recall_target_if_it_can_and_never_exceeds_the_budget():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.6, 0.25, 0.5, 0.7, 0.9])
    # recall 0.75 is reachable at FPR 0.25: the lowest FPR that reaches it, though a higher recall fits the budget
    threshold, how = choose_threshold(y, s, target_recall=0.75, max_fpr=0.5)
    assert threshold == 0.5 and at_threshold(y, s, threshold)["fpr"] == 0.25
    assert how.startswith("lowest FPR (0.2500) reaching recall >= 0.75 within FPR <= 0.5")
    # recall 1.0 would need FPR 0.5: out of budget, so the highest recall within it
    threshold, how = choose_threshold(y, s, target_recall=1.0, max_fpr=0.3)
    assert threshold == 0.5 and at_threshold(y, s, threshold)["recall"] == 0.75
    assert how.endswith("(recall 1.0 is out of reach within that FPR)")
    # without a budget, the same target flags half the genuine transactions
    assert at_threshold(y, s, choose_threshold(y, s, target_recall=1.0)[0])["fpr"] == 0.5


def test_threshold_needs_both_classes():
    with pytest.raises(ModelError, match=r"validation data needs both classes, found 0 frauds in 3 rows"):
        choose_threshold(np.array([0, 0, 0]), np.array([0.1, 0.2, 0.3]))


def test_recall_at_fpr():
    y = np.array([0, 0, 0, 0, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.8, 0.4, 0.9])
    assert recall_at_fpr(y, s, 0.0) == 0.5 and recall_at_fpr(y, s, 0.25) == 1.0


def test_the_requirement_is_counted_one_way_for_train_backtest_and_demo():
    fraud = np.array([True] * 50 + [False] * 1000)
    flagged = np.array([True] * 49 + [False] + [True] * 50 + [False] * 950)
    counted = requirement(fraud, flagged)
    assert (counted["frauds"], counted["frauds_alerted"], counted["false_alerts"], counted["alerts"]) == (
        50,
        49,
        50,
        99,
    )
    assert (counted["recall"], counted["fpr"], counted["precision"]) == (0.98, 0.05, 49 / 99)
    assert not counted["meets_requirement"]  # recall must be above 98%
    flagged[49] = True
    assert requirement(fraud, flagged)["meets_requirement"]
    empty = requirement(np.zeros(3, dtype=bool), np.zeros(3, dtype=bool))
    assert (empty["recall"], empty["fpr"], empty["precision"]) == (None, 0.0, None)
    assert at_threshold(fraud.astype(int), flagged.astype(float), 0.5)["recall"] == 1.0


def test_shap_values_from_the_leaf_table_are_catboost_s_exact_values():
    from catboost import CatBoostClassifier, Pool

    from models.catboost_model import LeafTable, shap_values

    rng = np.random.default_rng(0)
    columns = [f"f{i}" for i in range(6)]
    x = pd.DataFrame(rng.normal(size=(3000, 6)), columns=columns)
    x.loc[:50, "f2"] = np.nan  # missing values take CatBoost's own side
    x["f3"] = x["f3"].round()  # a feature with few values: rows that sit on a border
    y = (x["f0"] + x["f1"] * x["f3"] + rng.normal(size=len(x)) > 1.5).astype(int)
    model = CatBoostClassifier(iterations=30, depth=6, verbose=False, random_seed=0, thread_count=1).fit(x, y)
    rows = pd.concat([x.head(300), x.sample(200, random_state=1)])
    exact = model.get_feature_importance(Pool(rows), type="ShapValues")[:, :-1]
    table = LeafTable.of(model)
    assert table is not None and table.leaves.shape == (30, 64, 6)
    assert np.allclose(shap_values(model, rows), exact, rtol=0, atol=1e-12)
    assert LeafTable.of(model) is table, "built once per model"
    assert shap_values(model, rows.head(0)).shape == (0, 6)


def test_shap_values_of_a_model_with_categorical_features_are_catboost_s_own():
    from catboost import CatBoostClassifier, Pool

    from models.catboost_model import LeafTable, shap_values

    rng = np.random.default_rng(1)
    x = pd.DataFrame({"amount": rng.normal(size=500), "kind": rng.choice(["a", "b", "c"], 500)})
    y = ((x["amount"] > 0) & (x["kind"] == "a")).astype(int)
    model = CatBoostClassifier(iterations=10, depth=3, verbose=False, cat_features=["kind"]).fit(x, y)
    assert LeafTable.of(model) is None
    exact = model.get_feature_importance(Pool(x.head(20), cat_features=["kind"]), type="ShapValues")[:, :-1]
    assert np.allclose(shap_values(model, x.head(20)), exact)


def test_a_card_is_blocked_from_its_first_confirmation_and_only_its_later_payments_are_left_out():
    from models.blocking import after_block, blocked_since, confirmations

    t = pd.Timestamp("2026-12-01 10:00")
    since = blocked_since([7, 7, 8], [t + pd.Timedelta(hours=2), t, pd.NaT])
    assert since.to_dict() == {7: t}, "the earliest confirmation; none without a time"
    left = after_block([7, 7, 7, 9], [t - pd.Timedelta(seconds=1), t, t + pd.Timedelta(seconds=1), t], since)
    assert left.tolist() == [False, False, True, False], "strictly after the block; other cards never"
    assert not after_block([7], [t], {}).any()
    labels = pd.DataFrame(
        {
            "customer_id": [7, 8, 9, 9],
            "tx_fraud": [1, 1, 0, 1],
            "tx_datetime": [t, t, t, t],
            "event_clock": [t + pd.Timedelta(hours=1), pd.NaT, t, t + pd.Timedelta(hours=3)],
        }
    )
    # a row written before `event_clock` was takes its transaction's time; a genuine label blocks nothing
    assert confirmations(labels).to_dict() == {7: t + pd.Timedelta(hours=1), 8: t, 9: t + pd.Timedelta(hours=3)}
