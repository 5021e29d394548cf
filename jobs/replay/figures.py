"""The figures of `fraud backtest`: the stream's `scores` against the simulation's truth, blocked cards left
out (models/blocking.py), per day, week and scenario; what the loop knew of each missed fraud's terminal;
the spread of several seeds; the offline comparison; and the chart."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import functions as F

from features.definitions import FEATURE_NAMES
from jobs.batch import build_features, clean
from jobs.core import registry
from jobs.core.config import Config
from jobs.core.dead_letters import DUPLICATE
from jobs.core.errors import FraudError
from jobs.core.lake import table_exists
from jobs.replay.bank import readable
from jobs.replay.options import Loop
from models import catboost_model
from models.blocking import after_block, blocked_since
from models.metrics import MAX_FPR, REQUIRED_RECALL, requirement


def spread(reports: dict[int, dict[str, Any]], name: str) -> dict[str, Any]:
    """The figures of several seeds' reports: each seed's overall, settled and weekly recall and FPR; per
    week the median and the worst recall, the highest FPR and how many seeds met the requirement; and how
    many seeds met it in every week."""

    def brief(figures: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if figures is None else {k: figures[k] for k in ("recall", "fpr", "meets_requirement")}

    seeds = {
        str(seed): {
            "overall": brief(r["overall"]),
            "settled_weeks": brief(r["settled_weeks"]),
            "weeks": {w: brief(f) for w, f in r["weeks"].items()},
            "new_compromises": r["what_the_loop_knew"]["first_confirmation_hours"].get("terminals"),
            "file": f"{name}_seed{seed}.json",
            "run": r.get("run"),
        }
        for seed, r in reports.items()
    }
    weeks = sorted({w for r in reports.values() for w in r["weeks"]}, key=lambda w: int(w.split("_")[1]))
    by_week = {}
    for week in weeks:
        found = [r["weeks"][week] for r in reports.values() if week in r["weeks"]]
        recalls = [f["recall"] for f in found if f["recall"] is not None]
        by_week[week] = {
            "seeds": len(found),
            "median_recall": round(float(np.median(recalls)), 4) if recalls else None,
            "worst_recall": min(recalls) if recalls else None,
            "highest_fpr": max(f["fpr"] for f in found if f["fpr"] is not None),
            "seeds_meeting": sum(bool(f["meets_requirement"]) for f in found),
        }
    every_week = sum(all(f["meets_requirement"] for f in r["weeks"].values()) for r in reports.values())
    return {"seeds": seeds, "weeks": by_week, "seeds_meeting_it_every_week": every_week, "of_seeds": len(reports)}


def rates(frame: pd.DataFrame) -> dict[str, Any]:
    """The requirement's figures (models/metrics.requirement) of the `decision` column against `fraud`, the
    ratios to 4 decimals."""
    counted = requirement(frame["fraud"], frame["decision"])
    return {k: round(v, 4) if k in ("recall", "fpr", "precision") and v is not None else v for k, v in counted.items()}


def replay_frame(replay: Sequence[str]) -> pd.DataFrame:
    """The replayed transactions: transaction_id, customer_id, terminal_id, tx_datetime and the truth, fraud and
    scenario; the lines the backtest cannot read and the second copy of a transaction id are left out."""
    first: dict[str, list[str]] = {}
    for line in filter(readable, replay):
        split = line.rstrip("\n").split(",")
        first.setdefault(split[0], split)
    fields = list(first.values())
    return pd.DataFrame(
        {
            "transaction_id": np.array([int(f[0]) for f in fields], dtype="int64"),
            "customer_id": np.array([int(f[2]) for f in fields], dtype="int64"),
            "terminal_id": np.array([int(f[3]) for f in fields], dtype="int64"),
            "tx_datetime": pd.to_datetime([f[1] for f in fields]),
            "fraud": np.array([f[7] == "1" for f in fields]),
            "scenario": np.array([int(f[8]) for f in fields], dtype="int64"),
        }
    )


def blocked(frame: pd.DataFrame, known: dict[int, dt.datetime], prior: pd.Series) -> pd.Series:
    """Whether each transaction's card was blocked before it (models/blocking.py): the bank has blocked that
    card, so the transaction would not happen. `known`: a replayed fraud -> its confirmation, in event time;
    `prior`: a card -> the confirmation of its first fraud before the replay."""
    confirmed = frame[["transaction_id", "customer_id"]].merge(
        pd.DataFrame({"transaction_id": list(known), "known_at": pd.to_datetime(list(known.values()))}),
        on="transaction_id",
    )
    since = blocked_since(
        np.concatenate([confirmed["customer_id"].to_numpy(), prior.index.to_numpy()]),
        np.concatenate([confirmed["known_at"].to_numpy(), pd.to_datetime(prior).to_numpy()]),
    )
    return pd.Series(after_block(frame["customer_id"], frame["tx_datetime"], since), index=frame.index)


def by_scenario(frame: pd.DataFrame) -> dict[str, dict[str, int]]:
    """The frauds of `frame` and those missed, by the simulation's scenario: 1 a large amount, 2 a compromised
    terminal, 3 a compromised card."""
    frauds = frame[frame["fraud"]]
    missed = frauds[~frauds["decision"]]
    return {
        f"scenario_{k}": {"frauds": int(n), "missed": int((missed["scenario"] == k).sum())}
        for k, n in frauds["scenario"].value_counts().sort_index().items()
    }


def judged(frame: pd.DataFrame, known: dict[int, dt.datetime], prior: pd.Series) -> dict[str, Any]:
    """Overall, per-day and per-week rates of `frame` (`decision`, `fraud`, `tx_datetime`), leaving out the
    transactions of blocked cards; the rates of every transaction too. Weeks count from the first day of
    `frame`; `settled_weeks` is the second week on (None before there is one), after the loop has had a week
    to learn."""
    first = frame["tx_datetime"].min().normalize()
    out = frame.assign(
        blocked=blocked(frame, known, prior).to_numpy(),
        day=frame["tx_datetime"].dt.date.astype(str),
        week=(frame["tx_datetime"] - first).dt.days // 7 + 1,
    )
    kept = out[~out["blocked"]]
    return {
        "overall": rates(kept),
        "days": {day: rates(part) for day, part in kept.groupby("day")},
        "weeks": {f"week_{int(w)}": rates(part) for w, part in kept.groupby("week")},
        "settled_weeks": rates(kept[kept["week"] >= 2]) if (kept["week"] >= 2).any() else None,
        # the simulation's fraud scenarios: 1 large amount, 2 compromised terminal, 3 compromised card
        "frauds_by_scenario": by_scenario(kept),
        "frauds_by_scenario_by_week": {f"week_{int(w)}": by_scenario(part) for w, part in kept.groupby("week")},
        "blocked_card_transactions": int(out["blocked"].sum()),
        "every_transaction": rates(out),
    }


def measure(
    spark: Any,
    cfg: Config,
    frame: pd.DataFrame,
    unreadable: set[int],
    confirmed: dict[int, dt.datetime],
    prior: pd.Series,
    known_compromises: pd.DataFrame,
) -> dict[str, Any]:
    """The stream's figures: its `scores` against the truth (a card is blocked once a fraud of it was
    confirmed in the loop), and the alert latency (Kafka timestamp -> `alerted_at`). `frame`: the replayed
    transactions the backtest can judge; `unreadable`: the ids of the other lines sent (the stream may score
    one whose labels alone are broken; it is left out of the figures)."""
    scores = (
        spark.read.format("delta")
        .load(cfg.table_path("scores"))
        .select(
            "transaction_id",
            "decision",
            "kafka_timestamp",
            "terminal_risk_1d",
            "threshold",
            "alert_reason",
            "model_version",
        )
        .toPandas()
    )
    dead_path = cfg.table_path("dead_letters")
    letters = (
        spark.read.format("delta")
        .load(dead_path)
        .where(F.col("topic") == str(cfg.get("kafka.topics.transactions")))
        .select("payload", "reason")
        .collect()
        if table_exists(spark, dead_path)
        else []
    )
    duplicates = sum(r.reason == DUPLICATE for r in letters)
    dead = {_id_of(r.payload) for r in letters if r.reason != DUPLICATE}
    scored = set(scores["transaction_id"])
    replayed = set(frame["transaction_id"])
    if (
        len(scores) != len(scored)
        or not replayed <= scored | dead
        or scored & dead
        or not scored <= replayed | unreadable
    ):
        raise FraudError(
            f"backtest: {cfg.table_path('scores')} holds {len(scores)} rows of {len(scored)} transactions "
            f"and {dead_path} {len(dead)} more; {len(frame)} were replayed, each expected once in one of them"
        )
    merged = frame.merge(scores, on="transaction_id")
    alerts = (
        spark.read.format("delta").load(cfg.table_path("alerts")).select("transaction_id", "alerted_at").toPandas()
        if table_exists(spark, cfg.table_path("alerts"))
        else pd.DataFrame(columns=["transaction_id", "alerted_at"])
    )
    timed = alerts.merge(merged[["transaction_id", "kafka_timestamp"]], on="transaction_id")
    seconds = (pd.to_datetime(timed["alerted_at"]) - pd.to_datetime(timed["kafka_timestamp"])).dt.total_seconds()
    latency = (
        {f"p{q}_seconds": round(float(np.percentile(seconds, q)), 2) for q in (50, 90, 99)} if len(seconds) else {}
    )
    figures = judged(merged, confirmed, prior)
    # a transaction breaking a cleaning rule (a zero amount) is a dead letter, not scored; `fraud clean`
    # quarantines it the same way
    # the threshold each day's transactions were scored with: the alert budget's (stream.alert_budget), or the
    # model's until the budget's window held enough transactions
    thresholds = merged.groupby(merged["tx_datetime"].dt.date)["threshold"]
    by_day = {
        str(day): {
            "min": round(float(t.min()), 4),
            "median": round(float(t.median()), 4),
            "max": round(float(t.max()), 4),
        }
        for day, t in thresholds
    }
    # the reviews the stream asked for, by reason (its score, or a check of its terminal), blocked cards left
    # out as in the figures; and the frauds each reason caught
    kept = merged[~blocked(merged, confirmed, prior).to_numpy()]
    by_reason = reviews_by_reason(kept)
    first = kept["tx_datetime"].min().normalize()
    by_reason_by_week = {
        f"week_{int(w)}": reviews_by_reason(part)
        for w, part in kept.groupby((kept["tx_datetime"] - first).dt.days // 7 + 1)
    }
    # the model versions that scored each day (a retraining inside the replay moves the champion)
    versions = {
        str(day): {str(v): int(n) for v, n in part.value_counts().sort_index().items()}
        for day, part in merged.groupby(merged["tx_datetime"].dt.date)["model_version"]
    }
    return {
        "overall": figures.pop("overall"),
        "alert_latency": latency,
        "dead_letters": {
            "refused_by_rules": len(dead & replayed),
            "unreadable": len(letters) - duplicates - len(dead & replayed),
            "duplicates": duplicates,
        },
        "unreadable_lines_scored": len(scored & unreadable - replayed),
        **figures,
        "alert_threshold_by_day": by_day,
        "model_versions_by_day": versions,
        "reviews_by_reason": by_reason,
        "reviews_by_reason_by_week": by_reason_by_week,
        "what_the_loop_knew": loop_knowledge(merged, confirmed, prior, known_compromises),
    }


def reviews_by_reason(frame: pd.DataFrame) -> dict[str, dict[str, float]]:
    """The reviews the stream asked for a day, by reason (its score, or a check of its terminal), and the frauds
    each reason caught."""
    days = max(1, frame["tx_datetime"].dt.date.nunique())
    return {
        str(r): {"reviews_a_day": round(len(part) / days, 1), "frauds": int(part["fraud"].sum())}
        for r, part in frame[frame["decision"]].groupby("alert_reason")
    }


def _id_of(payload: str) -> int | None:
    """The transaction id of a dead letter's message, if it has one."""
    try:
        return int(json.loads(payload)["transaction_id"])
    except (ValueError, KeyError, TypeError):
        return None


COMPROMISE_DAYS = 28  # how long the simulation keeps a terminal compromised (SIMULATOR.md)


def loop_knowledge(
    frame: pd.DataFrame, confirmed: dict[int, dt.datetime], prior: pd.Series, history: pd.DataFrame
) -> dict[str, Any]:
    """What the loop knew of a terminal when it missed a fraud there, per week (blocked cards left out).

    A missed compromised-terminal fraud (scenario 2) is `unknown` when no fraud of that compromise (the
    terminal's scenario-2 frauds of the COMPROMISE_DAYS before it: the history's, which the stream's state
    starts with, and the replay's whose label was due) was known yet, `confirmed_low_risk` when one was but
    the terminal's 1-day risk feature was still below 0.5 when it was scored, `confirmed_high_risk`
    otherwise. `first_confirmation_hours`: for each terminal compromised during the replay (no such fraud at
    it in the COMPROMISE_DAYS before the replay), the hours from its first fraud to the first label of its
    frauds (median, p90), and how many had none by the end. `history`: the history's scenario-2 frauds
    (`terminal_id`, `tx_datetime`)."""
    first = frame["tx_datetime"].min().normalize()
    kept = frame[~blocked(frame, confirmed, prior).to_numpy()].assign(
        week=(frame["tx_datetime"] - first).dt.days // 7 + 1
    )
    in_replay = frame[frame["fraud"] & (frame["scenario"] == 2)].assign(
        due=lambda f: pd.to_datetime(f["transaction_id"].map(confirmed))
    )
    at_terminals = pd.concat([history[["terminal_id", "tx_datetime"]].assign(due=first), in_replay], ignore_index=True)
    window = pd.Timedelta(days=COMPROMISE_DAYS)

    def knew(row: Any) -> str:
        same = at_terminals[
            (at_terminals["terminal_id"] == row.terminal_id)
            & (at_terminals["tx_datetime"] >= row.tx_datetime - window)
            & (at_terminals["tx_datetime"] <= row.tx_datetime)
        ]
        if not (same["due"] <= row.tx_datetime).any():
            return "unknown"
        return "confirmed_low_risk" if row.terminal_risk_1d < 0.5 else "confirmed_high_risk"

    missed = kept[kept["fraud"] & ~kept["decision"] & (kept["scenario"] == 2)]
    kinds = pd.Series([knew(r) for r in missed.itertuples()], index=missed.index, dtype="object")
    weeks = {
        f"week_{int(w)}": {
            k: int((kinds[part.index] == k).sum()) for k in ("unknown", "confirmed_low_risk", "confirmed_high_risk")
        }
        for w, part in missed.groupby("week")
    }
    per_terminal = in_replay.groupby("terminal_id").agg(first_fraud=("tx_datetime", "min"), first_due=("due", "min"))
    recent = history[history["tx_datetime"] >= first - window]
    per_terminal = per_terminal[~per_terminal.index.isin(recent["terminal_id"])]  # compromised before the replay
    days = max(1, (frame["tx_datetime"].max().normalize() - first).days + 1)
    compromised_in = (per_terminal["first_fraud"] - first).dt.days // 7 + 1
    week = (frame["tx_datetime"] - first).dt.days // 7 + 1
    days_by_week = frame["tx_datetime"].dt.date.groupby(week).nunique()
    return {
        "missed_compromised_terminal_frauds_by_week": weeks,
        "first_confirmation_hours": first_confirmation(per_terminal),
        # by the week of the compromise's first fraud
        "first_confirmation_hours_by_week": {
            f"week_{int(w)}": first_confirmation(part) for w, part in per_terminal.groupby(compromised_in)
        },
        "alerts_a_day": round(float(frame["decision"].sum()) / days, 1),
        "alerts_a_day_by_week": {
            f"week_{int(w)}": round(float(n) / days_by_week[w], 1)
            for w, n in frame["decision"].groupby(week).sum().items()
        },
    }


def first_confirmation(per_terminal: pd.DataFrame) -> dict[str, Any]:
    """Of terminals compromised during the replay (`first_fraud`, `first_due`: the first label of their frauds,
    NaT if none), how many, how many never confirmed, and the hours to the first label (median, p90)."""
    hours = ((per_terminal["first_due"] - per_terminal["first_fraud"]).dt.total_seconds() / 3600).dropna()
    return {
        "terminals": len(per_terminal),
        "never_confirmed": int(per_terminal["first_due"].isna().sum()),
        **({"p50": round(float(hours.median()), 1), "p90": round(float(hours.quantile(0.9)), 1)} if len(hours) else {}),
    }


def offline_comparison(
    spark: Any,
    cfg: Config,
    replay_file: str,
    trained: dict[str, Any],
    frame: pd.DataFrame,
    loop: Loop,
    review: str,
    prior: pd.Series,
) -> dict[str, Any]:
    """The same days scored the batch way, as `fraud train` tests: features from every label `label_delay_hours`
    after its transaction, each fraud confirmed `--review-delay` after it; the same model and threshold."""
    booster, _, version = registry.load(cfg, str(trained["registry"]["version"]))
    clean.run(spark, cfg, replay_file)
    build_features.run(spark, cfg, loop.label_delay_hours)
    features = build_features.read_features(spark, cfg, loop.label_delay_hours)
    assert features is not None
    first, last = frame["tx_datetime"].min().date(), frame["tx_datetime"].max().date()
    window: pd.DataFrame = (
        features.where((F.col("tx_date") >= F.lit(first)) & (F.col("tx_date") <= F.lit(last)))
        .select("transaction_id", *FEATURE_NAMES)
        .toPandas()
    )
    window["score"] = catboost_model.score(booster, window[FEATURE_NAMES])
    merged = frame.merge(window[["transaction_id", "score"]], on="transaction_id")
    merged["decision"] = merged["score"] >= float(trained["threshold"])
    known = {
        int(t): when + loop.review
        for t, when in zip(merged.loc[merged["fraud"], "transaction_id"], merged.loc[merged["fraud"], "tx_datetime"])
    }
    return {
        "what": f"every label known {loop.label_delay_hours} h after its transaction (the model's label delay), "
        f"every fraud confirmed {review} after it, model version {version}",
        "scored": len(merged),
        **judged(merged, known, prior),
    }


def chart(report: dict[str, Any], path: Path) -> None:
    """Daily recall and FPR against the requirement's lines, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    days = report["days"]
    x = [dt.date.fromisoformat(d) for d in days]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    offline = report.get("offline_same_days", {}).get("days", {})
    top.plot(x, [days[d]["recall"] for d in days], marker="o", label="recall, the stream in the loop")
    if offline:
        top.plot(
            x,
            [offline.get(d, {}).get("recall") for d in days],
            color="gray",
            linestyle=":",
            marker=".",
            label="recall, offline (every label after the model's label delay)",
        )
    top.axhline(REQUIRED_RECALL, color="red", linestyle="--", label=f"required: above {REQUIRED_RECALL:.0%}")
    top.set_ylabel("recall")
    recalls = [
        r for r in [days[d]["recall"] for d in days] + [o.get("recall") for o in offline.values()] if r is not None
    ]
    top.set_ylim(min([0.95] + recalls) - 0.01, 1.002)
    top.legend(loc="lower right")
    bottom.plot(
        x, [days[d]["fpr"] for d in days], marker="o", color="tab:orange", label="false-positive rate, the stream"
    )
    if offline:
        bottom.plot(
            x,
            [offline.get(d, {}).get("fpr") for d in days],
            color="gray",
            linestyle=":",
            marker=".",
            label="false-positive rate, offline",
        )
    bottom.axhline(MAX_FPR, color="red", linestyle="--", label=f"allowed: at most {MAX_FPR:.0%}")
    bottom.set_ylabel("FPR")
    fprs = [f for f in [days[d]["fpr"] for d in days] + [o.get("fpr") for o in offline.values()] if f is not None]
    bottom.set_ylim(0, max([MAX_FPR * 1.5] + fprs) * 1.1)
    bottom.legend(loc="upper right")
    loop = report["loop"]
    overall = report["overall"]
    fig.suptitle(
        f"fraud stream in the loop: review {loop['review_delay']}, dispute {loop['dispute_delay']}, "
        f"cards blocked once a fraud is confirmed\noverall recall {overall['recall']}, FPR {overall['fpr']}, "
        f"precision {overall['precision']}",
        fontsize=10,
    )
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
