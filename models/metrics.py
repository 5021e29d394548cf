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


def at_threshold(y: np.ndarray, score: np.ndarray, threshold: float) -> dict[str, float]:
    """Precision, recall, F1 and FPR when flagging score >= threshold."""
    flagged = score >= threshold
    tp = int((flagged & (y == 1)).sum())
    fp = int((flagged & (y == 0)).sum())
    fn = int((~flagged & (y == 1)).sum())
    tn = int((~flagged & (y == 0)).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return {"precision": precision, "recall": recall,
            "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
            "fpr": fp / (fp + tn) if fp + tn else 0.0, "tp": tp, "fp": fp, "fn": fn, "tn": tn}


def evaluate(frame: pd.DataFrame, threshold: float | None = None) -> dict[str, Any]:
    """Every metric on scored rows (`tx_date`, `customer_id`, `score`, `tx_fraud`)."""
    y = frame["tx_fraud"].to_numpy().astype(int)
    s = frame["score"].to_numpy().astype(float)
    both = len(np.unique(y)) == 2
    out: dict[str, Any] = {
        "rows": int(len(y)), "frauds": int(y.sum()),
        "roc_auc": float(roc_auc_score(y, s)) if both else float("nan"),
        "average_precision": float(average_precision_score(y, s)) if both else float("nan"),
        "card_precision_at_100": card_precision_at_k(frame, 100),
        "recall_at_fpr_1pct": recall_at_fpr(y, s, 0.01) if both else float("nan"),
        "recall_at_fpr_5pct": recall_at_fpr(y, s, 0.05) if both else float("nan"),
    }
    if threshold is not None:
        out.update({"threshold": threshold, **at_threshold(y, s, threshold)})
    return out
