"""The card operator with a million cards in state, in three set-ups compared in one run.

    .venv/bin/python benchmarks/state_layout.py [--cards 1000000] [--hours-per-card 8] [--batch 20000]

The real card operator (features/operators.py: Java, transformWithState, RocksDB, duplicate detection),
without Kafka or scoring, in three set-ups: the job's (idle keys expire after 45 days by a timer per key,
RocksDB changelog checkpointing); without expiry; with RocksDB snapshot commits (Spark's default, which this
project turns off). For each, a fresh checkpoint:
1. fill: every card gets `--hours-per-card` transactions in distinct hours of the last 30 days (one
   micro-batch), so every card has state;
2. then `--batches` micro-batches of `--batch` transactions of random cards, an hour later each.
Reports the seconds of each measured batch, the state rows, the checkpoint's size on disk and the peak
resident memory of this process and its children (the JVM and the Python workers). The job's set-up is
reported again as `million_cards`. Prints one JSON object and keeps it in benchmarks/results/state_layout.json.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402

from benchmarks.common import report  # noqa: E402
from features.operators import add_aggregates  # noqa: E402
from jobs.core.config import load_config  # noqa: E402
from jobs.core.session import get_spark  # noqa: E402

DELAY_HOURS = 168
START = pd.Timestamp("2026-01-01")
CHANGELOG = "spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled"
# name: (RocksDB changelog checkpointing; idle expiry in days)
LAYOUTS = {"job": (True, 45), "no_ttl": (True, None), "snapshot_commits": (False, 45)}


def tree_rss_bytes() -> int:
    """Resident memory of this process and all its descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry))
            rss[int(entry)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    total, todo = 0, [os.getpid()]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo.extend(children.get(pid, []))
    return total


class PeakMemory(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak, self.running = 0, True

    def run(self) -> None:
        while self.running:
            self.peak = max(self.peak, tree_rss_bytes())
            time.sleep(0.5)


def write_batches(folder: Path, cards: int, hours_per_card: int, batch: int, batches: int) -> None:
    rng = np.random.default_rng(7)
    folder.mkdir(parents=True)
    customer = np.repeat(np.arange(cards, dtype=np.int64), hours_per_card)
    hours = np.concatenate([rng.choice(30 * 24, hours_per_card, replace=False) for _ in range(cards)])
    frames = [
        pd.DataFrame({"customer_id": customer, "tx_datetime": START + pd.to_timedelta(hours * 3600 + 60, unit="s")})
    ]
    for b in range(batches):
        frames.append(
            pd.DataFrame(
                {
                    "customer_id": rng.integers(0, cards, batch),
                    "tx_datetime": START + pd.Timedelta(hours=30 * 24 + b, minutes=5),
                }
            )
        )
    first = 0
    for i, frame in enumerate(frames):
        frame["transaction_id"] = np.arange(first, first + len(frame), dtype=np.int64)
        first += len(frame)
        frame["tx_amount"] = rng.gamma(2.0, 30.0, len(frame))
        frame["tx_fraud"] = 0
        frame["tx_datetime"] = frame["tx_datetime"].astype("datetime64[us]")
        path = folder / f"{i:03d}.parquet"
        frame.sort_values("tx_datetime").to_parquet(path, index=False)
        os.utime(path, (1_000_000 + i, 1_000_000 + i))  # the file source reads in this order (by mtime)


def run_layout(
    spark: Any, source: Path, checkpoint: Path, batch_rows: int, changelog: bool, ttl_days: int | None
) -> dict[str, Any]:
    spark.conf.set(CHANGELOG, str(changelog).lower())
    schema = spark.read.parquet(str(source)).schema
    rows = spark.readStream.schema(schema).option("maxFilesPerTrigger", 1).parquet(str(source))
    featured = add_aggregates(rows, "card", DELAY_HOURS, ttl_days, duplicate_column="duplicate")
    seconds: list[float] = []

    def sink(batch: Any, batch_id: int) -> None:
        started = time.perf_counter()
        batch.agg(F.sum("card_tx_count_30d")).collect()
        seconds.append(time.perf_counter() - started)

    memory = PeakMemory()
    memory.start()
    query = (
        featured.writeStream.foreachBatch(sink)
        .option("checkpointLocation", str(checkpoint))
        .trigger(availableNow=True)
        .start()
    )
    query.awaitTermination()
    memory.running = False
    state = [p["stateOperators"][0] for p in query.recentProgress if p.get("stateOperators")][-1]
    disk = sum(f.stat().st_size for f in checkpoint.rglob("*") if f.is_file())
    measured = seconds[1:]
    return {
        "fill_seconds": round(seconds[0], 1),
        "batch_seconds": [round(s, 2) for s in measured],
        "median_batch_seconds": round(statistics.median(measured), 2),
        "tx_per_second": round(len(measured) * batch_rows / sum(measured)),
        "state_rows": state.get("numRowsTotal"),
        "checkpoint_mb": round(disk / 2**20),
        "peak_rss_gb": round(memory.peak / 2**30, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cards", type=int, default=1_000_000)
    parser.add_argument("--hours-per-card", type=int, default=8)
    parser.add_argument("--batch", type=int, default=20_000)
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--layouts", default=",".join(LAYOUTS))
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-state-"))
    try:
        write_batches(work / "input", args.cards, args.hours_per_card, args.batch, args.batches)
        spark = get_spark(load_config("local", {"spark.ui_enabled": False}), "bench-state-layout")
        result: dict[str, Any] = {
            "benchmark": "state_layout",
            "machine": "2 cores, local[2]",
            "cards": args.cards,
            "hours_per_card": args.hours_per_card,
            "batch": args.batch,
        }
        for name in args.layouts.split(","):
            result[name] = run_layout(spark, work / "input", work / name, args.batch, *LAYOUTS[name])
            print({name: result[name]}, flush=True)
        for name in LAYOUTS:
            if name != "job" and name in result and "job" in result:
                result[f"{name}_over_job_batch_seconds"] = round(
                    result[name]["median_batch_seconds"] / result["job"]["median_batch_seconds"], 2
                )
        if "job" in result:
            result["million_cards"] = {
                "card_operator_tx_per_second": result["job"]["tx_per_second"],
                "peak_rss_gb": result["job"]["peak_rss_gb"],
                "target_tx_per_second": 15_000,
            }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(result, "state_layout", not args.no_save)


if __name__ == "__main__":
    main()
