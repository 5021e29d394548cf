"""Choose the decision threshold on validation data."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_curve

from models.errors import ModelError


def choose_threshold(
    y: np.ndarray, score: np.ndarray, target_recall: float | None = 0.98, max_fpr: float | None = None
) -> tuple[float, str]:
    """Return (threshold, how it was chosen); a transaction is flagged when its score >= threshold.

    With `max_fpr` (a budget of false positives, never exceeded on validation): the threshold with the
    lowest false-positive rate that reaches `target_recall` within the budget; when no threshold does, or
    without a target, the one of the highest recall within the budget.
    Without `max_fpr`: the threshold with the lowest false-positive rate that reaches `target_recall`,
    whatever that rate.

    Example:
        >>> choose_threshold(np.array([0, 0, 1, 1]), np.array([.1, .6, .5, .9]), target_recall=1.0)
        (0.5, 'lowest FPR (0.5000) reaching recall >= 1.0 on validation: recall 1.0000')
    """
    y = np.asarray(y).astype(int)
    if y.sum() == 0 or y.sum() == len(y):
        raise ModelError(f"threshold: validation data needs both classes, found {int(y.sum())} frauds in {len(y)} rows")
    fpr, tpr, thr = roc_curve(y, score, drop_intermediate=False)
    thr = np.where(np.isinf(thr), np.nextafter(score.max(), np.inf), thr)
    if max_fpr is not None:
        within = np.flatnonzero(fpr <= max_fpr)  # never empty: flagging nothing has FPR 0
        if target_recall is not None:
            reaching = within[tpr[within] >= target_recall]
            if reaching.size:
                i = reaching[np.argmin(fpr[reaching])]
                return float(thr[i]), (
                    f"lowest FPR ({fpr[i]:.4f}) reaching recall >= {target_recall} within FPR <= "
                    f"{max_fpr} on validation: recall {tpr[i]:.4f}"
                )
        i = within[np.argmax(tpr[within])]
        out_of_reach = "" if target_recall is None else f" (recall {target_recall} is out of reach within that FPR)"
        return float(thr[i]), (
            f"highest recall ({tpr[i]:.4f}) with FPR <= {max_fpr} on validation: FPR {fpr[i]:.4f}{out_of_reach}"
        )
    target = 0.98 if target_recall is None else target_recall
    ok = np.flatnonzero(tpr >= target)
    i = ok[np.argmin(fpr[ok])]
    return float(thr[i]), f"lowest FPR ({fpr[i]:.4f}) reaching recall >= {target} on validation: recall {tpr[i]:.4f}"


def budget_threshold(
    score: np.ndarray, legitimate: np.ndarray, share: float, weight: np.ndarray | None = None
) -> float | None:
    """The lowest threshold that flags at most `share` of the legitimate transactions among `score` (None if
    there are none): the alert threshold that spends a budget of false positives on recent traffic.

    Args:
        score: the scores of the transactions of a recent window.
        legitimate: True for those counted as legitimate (not confirmed as fraud).
        share: the share of legitimate transactions the bank accepts to flag (0 < share < 1).
        weight: how much each transaction counts as legitimate, between 0 and 1 (None: 1 each), e.g. an alert
            not reviewed yet counts as the share of reviewed alerts found genuine (`_weighted_threshold`).

    Example:
        >>> budget_threshold(np.array([.1, .2, .3, .4, .9]), np.array([True, True, True, True, False]), 0.25)
        0.4
    """
    legit = np.asarray(score, dtype=float)[np.asarray(legitimate, dtype=bool)]
    n = legit.size
    if not n:
        return None
    if weight is not None:
        return _weighted_threshold(legit, np.asarray(weight, dtype=float)[np.asarray(legitimate, dtype=bool)], share)
    allowed = int(np.floor(share * n + 1e-9))  # how many legitimate transactions may be flagged
    if allowed >= n:
        return float(legit.min())
    if allowed == 0:
        return float(np.nextafter(legit.max(), np.inf))
    # the `allowed` highest are flagged: a partition, not a sort (a day of traffic is millions of scores);
    # a tie at the boundary is not flagged (the budget is never exceeded)
    part = np.partition(legit, n - allowed - 1)
    first_left_out, last_flagged = part[n - allowed - 1], part[n - allowed :].min()
    return float(last_flagged) if last_flagged > first_left_out else float(np.nextafter(first_left_out, np.inf))


def _weighted_threshold(legit: np.ndarray, weight: np.ndarray, share: float) -> float:
    """`budget_threshold` with weights: the lowest threshold whose flagged weight is at most `share` of the
    whole weight. Only the highest scores can be flagged, as many as it takes their weight to pass the allowed
    one: those alone are sorted."""
    allowed = share * float(weight.sum()) + 1e-9
    n = legit.size
    # the highest scores, more of them until their weight passes the allowed one (or all are taken)
    m = min(n, int(np.floor(allowed)) + 1)
    while True:
        top = np.argpartition(-legit, m - 1)[:m] if m < n else np.arange(n)
        order = top[np.argsort(-legit[top], kind="stable")]
        cumulative = np.cumsum(weight[order])
        if m == n or cumulative[-1] > allowed:
            break
        m = min(n, 2 * m)
    flagged = int(np.searchsorted(cumulative, allowed, side="right"))
    if flagged >= n:
        return float(legit.min())
    if not flagged:
        return float(np.nextafter(legit.max(), np.inf))
    first_left_out, last_flagged = legit[order[flagged]], legit[order[flagged - 1]]
    # a tie at the boundary is not flagged (the budget is never exceeded)
    return float(last_flagged) if last_flagged > first_left_out else float(np.nextafter(first_left_out, np.inf))
