"""Metrics of the handbook and the bank: ROC AUC, average precision, card precision@k, and the
operating point (recall, false-positive rate) at a threshold or an FPR budget."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve


def card_precision_at_k(frame: pd.DataFrame, k: int = 100) -> float:
    """Card precision@k as the handbook defines it: each day, rank the cards by their highest score; the
    share of truly compromised cards among the top k; a card caught on an earlier day is left out of the
    later days; averaged over the days.

    Args:
        frame: `tx_date`, `customer_id`, `score`, `tx_fraud`.
    """
    caught: set[int] = set()
    precisions = []
    for _, day in frame.sort_values("tx_date").groupby("tx_date", sort=True):
        day = day[~day["customer_id"].isin(caught)]
        cards = day.groupby("customer_id").agg(score=("score", "max"), fraud=("tx_fraud", "max"))
        top = cards.sort_values("score", ascending=False, kind="mergesort").head(k)
        hits = top.index[top["fraud"] == 1]
        caught.update(int(c) for c in hits)
        precisions.append(len(hits) / k)
    return float(np.mean(precisions)) if precisions else float("nan")


def recall_at_fpr(y: np.ndarray, score: np.ndarray, max_fpr: float) -> float:
    """The highest recall with a false-positive rate at most `max_fpr`."""
    fpr, tpr, _ = roc_curve(y, score)
    ok = fpr <= max_fpr
    return float(tpr[ok].max()) if ok.any() else 0.0


# the bank's requirement: recall above 98% with at most 5% of legitimate transactions flagged
REQUIRED_RECALL, MAX_FPR = 0.98, 0.05


def requirement(fraud: Any, flagged: Any) -> dict[str, Any]:
    """The bank's requirement counted one way, for `fraud train`, `fraud backtest` and `fraud demo`: of
    transactions with their truth (`fraud`) and decision (`flagged`), both boolean sequences of one length.

    Returns:
        transactions, frauds, alerts, frauds_alerted, false_alerts; recall (of the frauds), fpr (of the
        legitimate) and precision (of the alerts), each None when nothing is there to count; and
        meets_requirement (recall above REQUIRED_RECALL with fpr at most MAX_FPR).

    Example:
        >>> requirement([True, False, False], [True, True, False])["fpr"]
        0.5
    """
    truth, decision = np.asarray(fraud, dtype=bool), np.asarray(flagged, dtype=bool)
    frauds, caught, false_alerts = int(truth.sum()), int((decision & truth).sum()), int((decision & ~truth).sum())
    return {
        "transactions": int(len(truth)),
        "frauds": frauds,
        "alerts": caught + false_alerts,
        "frauds_alerted": caught,
        "false_alerts": false_alerts,
        **rates(frauds, caught, int(len(truth)) - frauds, false_alerts),
    }


def rates(frauds: int, caught: int, legitimate: int, false_alerts: int) -> dict[str, Any]:
    """Recall (of the frauds), FPR (the flagged share of the legitimate payments) and precision (of the alerts)
    from counts, each None when nothing is there to count, and whether they meet the bank's requirement: the
    one place these are computed (`requirement`, the desk's days and verdict)."""
    recall = caught / frauds if frauds else None
    fpr = false_alerts / legitimate if legitimate else None
    return {
        "recall": recall,
        "fpr": fpr,
        "precision": caught / (caught + false_alerts) if caught + false_alerts else None,
        "meets_requirement": recall is not None and fpr is not None and recall > REQUIRED_RECALL and fpr <= MAX_FPR,
    }


def at_threshold(y: np.ndarray, score: np.ndarray, threshold: float) -> dict[str, float]:
    """Precision, recall, F1 and FPR when flagging score >= threshold (`requirement`'s counts; 0.0 where it
    has nothing to count, for MLflow's metrics)."""
    counted = requirement(np.asarray(y) == 1, np.asarray(score) >= threshold)
    precision, recall, fpr = (counted[k] or 0.0 for k in ("precision", "recall", "fpr"))
    tp, fp = counted["frauds_alerted"], counted["false_alerts"]
    fn, tn = counted["frauds"] - tp, counted["transactions"] - counted["frauds"] - fp
    return {
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "fpr": fpr,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
    }


def evaluate(frame: pd.DataFrame, threshold: float | None = None) -> dict[str, Any]:
    """Every metric on scored rows (`tx_date`, `customer_id`, `score`, `tx_fraud`)."""
    y = frame["tx_fraud"].to_numpy().astype(int)
    s = frame["score"].to_numpy().astype(float)
    both = len(np.unique(y)) == 2
    out: dict[str, Any] = {
        "rows": int(len(y)),
        "frauds": int(y.sum()),
        "roc_auc": float(roc_auc_score(y, s)) if both else float("nan"),
        "average_precision": float(average_precision_score(y, s)) if both else float("nan"),
        "card_precision_at_100": card_precision_at_k(frame, 100),
        "recall_at_fpr_1pct": recall_at_fpr(y, s, 0.01) if both else float("nan"),
        "recall_at_fpr_5pct": recall_at_fpr(y, s, 0.05) if both else float("nan"),
    }
    if threshold is not None:
        out.update({"threshold": threshold, **at_threshold(y, s, threshold)})
    return out
