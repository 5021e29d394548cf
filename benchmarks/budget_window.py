"""The alert budget's work in the driver at every micro-batch, at the bank's traffic in real time.

`make bench-stream` replays simulated payments at 400 a second, but their event times are the simulation's
(about 39,000 a day), so the budget's 24-hour window holds about 39,000 of them. A bank at 400 a second fills
that window with 35 million. This measures what one micro-batch costs the driver there (the threshold, adding
the micro-batch to the window, a micro-batch's labels), for windows of 1 and 6 hours at `--rate` (24 ships;
kept whole they take about 15 GB), every transaction kept against the window kept within
`stream.alert_budget.max_window_transactions` as it ships,
in one run, and how far the sample's threshold is from the exact one (the share of the window's legitimate
transactions each flags).

    .venv/bin/python benchmarks/budget_window.py [--rate 400] [--hours 1,6] [--batches 10] [--beside TEXT]

Prints JSON and keeps it in benchmarks/results/budget_window.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import report  # noqa: E402
from jobs.core.config import load_config  # noqa: E402
from jobs.stream.alert_budget import AlertBudget  # noqa: E402

START = np.datetime64("2026-12-01T00:00:00", "us")


def payments(first_id: int, count: int, start: np.datetime64, rate: int, rng: np.random.Generator) -> pd.DataFrame:
    """`count` scored payments from `start` at `rate` a second: scores as a fraud model gives them (most near
    zero, 6% of frauds near one), the model's threshold deciding."""
    fraud = rng.random(count) < 0.06
    score = np.where(fraud, rng.beta(8, 1, count), rng.beta(1, 120, count))
    return pd.DataFrame(
        {
            "transaction_id": np.arange(first_id, first_id + count, dtype=np.int64),
            "tx_datetime": start + (np.arange(count) * (1_000_000 // rate)).astype("timedelta64[us]"),
            "customer_id": rng.integers(0, 5_000_000, count),
            "score": score,
            "decision": score >= 0.05,
            "alert_reason": np.where(score >= 0.05, "score", None),
            "model_version": "1",
        }
    )


def measure(budget: AlertBudget, window: pd.DataFrame, args: argparse.Namespace, rng: np.random.Generator) -> dict:
    """Fill `budget` with `window`, then time `args.batches` micro-batches of `args.rate` x `args.batch_seconds`
    payments each, with the alerts of the one before reviewed."""
    budget.observe(window)
    # the window's alerts were reviewed (those of the last micro-batch are reviewed during the first timed one)
    per_batch = int(args.rate * args.batch_seconds)
    reviewed = window.iloc[:-per_batch]
    reviewed = reviewed[reviewed["decision"]]
    budget.label(
        pd.DataFrame(
            {
                "transaction_id": reviewed["transaction_id"],
                "tx_fraud": (reviewed["score"] > 0.5).astype(int),
                "customer_id": reviewed["customer_id"],
            }
        )
    )
    budget.threshold(0.05, window.iloc[:1])
    first_id, start = int(window["transaction_id"].max()) + 1, window["tx_datetime"].max()
    seconds = {"threshold": 0.0, "observe": 0.0, "labels": 0.0}
    flagged_before = window.iloc[-per_batch:]
    for n in range(args.batches):
        batch = payments(
            first_id + n * per_batch, per_batch, start + np.timedelta64(n * per_batch * 2500, "us"), args.rate, rng
        )
        reviewed = flagged_before[flagged_before["decision"]]
        labels = pd.DataFrame(
            {
                "transaction_id": reviewed["transaction_id"],
                "tx_fraud": (reviewed["score"] > 0.5).astype(int),
                "customer_id": reviewed["customer_id"],
            }
        )
        began = time.perf_counter()
        budget.label(labels)
        seconds["labels"] += time.perf_counter() - began
        began = time.perf_counter()
        threshold = budget.threshold(0.05, batch)
        seconds["threshold"] += time.perf_counter() - began
        batch["decision"] = batch["score"] >= threshold
        batch["alert_reason"] = np.where(batch["decision"], "score", None)
        began = time.perf_counter()
        budget.observe(batch)
        seconds["observe"] += time.perf_counter() - began
        flagged_before = batch
    ms = {k: round(v / args.batches * 1000, 1) for k, v in seconds.items()}
    return {
        "kept_transactions": int(len(budget.ids)),
        "kept_one_in": budget.one_in,
        "ms_per_micro_batch": {**ms, "all": round(sum(ms.values()), 1)},
        "threshold": budget.current,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=400, help="payments a second (default 400, the bank's)")
    parser.add_argument(
        "--hours",
        default="1,6",
        help="the windows' lengths in hours (default 1,6; 24 ships, and kept whole takes about 15 GB)",
    )
    parser.add_argument("--batches", type=int, default=10, help="micro-batches timed per window (default 10)")
    parser.add_argument("--batch-seconds", type=float, default=3.0, help="event time a micro-batch holds (default 3)")
    parser.add_argument("--beside", metavar="TEXT", help="what else ran on the machine meanwhile (default: nothing)")
    parser.add_argument("--name", default="budget_window")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args()
    cfg = load_config("local")
    cap = cfg.get("stream.alert_budget.max_window_transactions")
    result: dict[str, Any] = {
        "benchmark": "budget_window",
        "machine": "2 cores, 24 GiB; the alert budget alone, in one Python process",
        "beside": args.beside,
        "command": "python benchmarks/budget_window.py " + " ".join(sys.argv[1:]),
        "rate": args.rate,
        "micro_batch_payments": int(args.rate * args.batch_seconds),
        "max_window_transactions": cap,
        "windows": {},
    }
    for hours in (int(h) for h in args.hours.split(",")):
        rng = np.random.default_rng(hours)
        window = payments(0, args.rate * 3600 * hours, START, args.rate, rng)
        runs = {}
        for name, limit in (("every_transaction", None), ("kept_within_the_limit", cap)):
            budget = AlertBudget(
                enabled=True,
                fpr=float(cfg.get("stream.alert_budget.fpr")),
                window=dt.timedelta(hours=hours),
                max_transactions=limit,
            )
            runs[name] = measure(budget, window, args, np.random.default_rng(hours + 100))
            # the share of the window's legitimate transactions each threshold flags
            legit = budget.legitimate() & budget.counted
            runs[name]["flagged_share_of_the_kept"] = round(float((budget.scores[legit] >= budget.current).mean()), 5)
            del budget
            gc.collect()
        exact, kept = runs["every_transaction"], runs["kept_within_the_limit"]
        runs["every_over_kept"] = round(exact["ms_per_micro_batch"]["all"] / kept["ms_per_micro_batch"]["all"], 2)
        runs["transactions"] = len(window)
        result["windows"][f"{hours}h"] = runs
        print(json.dumps({f"{hours}h": runs}), flush=True)
        del window
        gc.collect()
    report(result, args.name, not args.no_save)


if __name__ == "__main__":
    main()
