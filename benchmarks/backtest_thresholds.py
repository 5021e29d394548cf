"""What another threshold would have done for a `fraud backtest` run: from the run's kept --work folder, the
recall of the stream's own scores at the thresholds that give a false-positive rate of 3%, 4% and 5% on the
same transactions (blocked cards left out, as in the report). The thresholds are chosen after the fact: the
best any fixed threshold could have done on those scores, before its other alerts would have changed the
loop's labels.

    .venv/bin/python benchmarks/backtest_thresholds.py --work WORK --review-delay 1h --name NAME

Prints one JSON object and keeps it in benchmarks/results/NAME.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import report  # noqa: E402
from jobs.core.config import load_config  # noqa: E402
from jobs.core.session import get_spark  # noqa: E402
from jobs.replay.bank import blocked_before  # noqa: E402
from jobs.replay.figures import blocked, replay_frame  # noqa: E402
from jobs.replay.options import parse_duration  # noqa: E402


def raw_lines(folder: Path) -> list[str]:
    return [line for path in sorted(folder.glob("*.txt")) for line in path.open() if not line.startswith("#")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", required=True, help="the backtest's --work folder (kept)")
    parser.add_argument("--review-delay", required=True, help="the backtest's --review-delay")
    parser.add_argument("--name", required=True)
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args()
    work = Path(args.work)
    review = parse_duration(args.review_delay, "--review-delay")
    frame = replay_frame(raw_lines(work / "raw" / "replay"))
    prior = blocked_before(raw_lines(work / "raw" / "history"), review)
    confirmed = {
        int(t): dt.datetime.fromisoformat(w) for t, w in json.loads((work / "confirmed.json").read_text()).items()
    }

    cfg = load_config("local", {"paths.lake": str(work / "lake"), "spark.ui_enabled": False})
    spark = get_spark(cfg, "backtest-thresholds")
    scores = (
        spark.read.format("delta")
        .load(cfg.table_path("scores"))
        .select("transaction_id", "score", "decision", "threshold")
        .toPandas()
    )
    spark.stop()
    merged = frame.merge(scores, on="transaction_id")
    kept = merged[~blocked(merged, confirmed, prior).to_numpy()]
    genuine, frauds = kept[~kept["fraud"]], kept[kept["fraud"]]
    rows = [
        {
            "threshold": float(scores["threshold"].iloc[0]),
            "what": "the stream's (operating)",
            "fpr": round(float(genuine["decision"].mean()), 4),
            "recall": round(float(frauds["decision"].mean()), 4),
        }
    ]
    for fpr in (0.03, 0.04, 0.05):
        threshold = float(np.quantile(genuine["score"], 1 - fpr))
        rows.append(
            {
                "threshold": threshold,
                "what": f"FPR {fpr:.0%} on these transactions",
                "fpr": round(float((genuine["score"] >= threshold).mean()), 4),
                "recall": round(float((frauds["score"] >= threshold).mean()), 4),
            }
        )
    missed = frauds[~frauds["decision"]]
    result = {
        "benchmark": "backtest_thresholds",
        "work": str(work),
        "review_delay": args.review_delay,
        "transactions": len(kept),
        "frauds": len(frauds),
        "thresholds": rows,
        "missed_frauds_score_quantiles": {f"p{q}": float(np.percentile(missed["score"], q)) for q in (50, 90, 99)}
        if len(missed)
        else {},
    }
    report(result, args.name, not args.no_save)


if __name__ == "__main__":
    main()
