"""Benchmark of the idempotent Delta append every micro-batch makes (`jobs/lake.append_idempotent`).

    .venv/bin/python benchmarks/delta_append.py [--appends 40] [--rows 2000] [--intervals 100]

Designs in one run, each appending the same micro-batch (a persisted frame of the `scores` table's width,
partitioned by date) `--appends` times to a table of its own, with `delta.checkpointInterval` 100 as the
stream's tables have it (`stream.delta_checkpoint_interval`), and `idempotent` also at every other interval of
`--intervals` (`idempotent@N`):
- `idempotent`: what `append_idempotent` does: the batch id in the commit's `userMetadata` (checked against
  the history once, then remembered) and Delta's transaction id (txnAppId / txnVersion), which Delta
  checks inside the commit, so that two drivers writing one batch at once append it once;
- `history_only`: the `userMetadata` check without Delta's transaction id (no protection against two
  drivers at once);
- `txn_only`: Delta's transaction id alone;
- `plain`: a plain append (no idempotency), the floor.
Seconds per append (median, mean, p90, max) and the ratio idempotent / history_only of medians: what the
protection against two drivers costs. Delta looks a table's transaction ids up in its state, rebuilt at each
append from the last checkpoint and the commits after it (three Spark jobs): a shorter checkpoint interval
makes that replay shorter, at the price of a checkpoint every N commits, which the mean counts. Prints JSON; keeps benchmarks/results/delta_append.json.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from pyspark.sql import DataFrame  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402

from benchmarks.common import report  # noqa: E402
from jobs.core.config import load_config  # noqa: E402
from jobs.core.lake import append_idempotent  # noqa: E402
from jobs.core.session import get_spark  # noqa: E402

PROPERTIES = {"delta.checkpointInterval": "100"}


def at_interval(interval: int):  # type: ignore[no-untyped-def]
    properties = {"delta.checkpointInterval": str(interval)}
    return lambda df, path, v: append_idempotent(df, path, "bench", v, ["tx_date"], properties)


def txn_append(df: DataFrame, path: str, version: int) -> None:
    (
        df.write.format("delta")
        .mode("append")
        .option("txnAppId", "bench")
        .option("txnVersion", str(version))
        .options(**PROPERTIES)
        .partitionBy("tx_date")
        .save(path)
    )


def history_append(df: DataFrame, path: str, version: int) -> None:
    """The `userMetadata` check alone: in a running stream the last batch is remembered, so a commit is a
    plain append that records its batch id."""
    (
        df.write.format("delta")
        .mode("append")
        .option("userMetadata", f"bench/{version}")
        .options(**PROPERTIES)
        .partitionBy("tx_date")
        .save(path)
    )


def plain_append(df: DataFrame, path: str, version: int) -> None:
    df.write.format("delta").mode("append").options(**PROPERTIES).partitionBy("tx_date").save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--appends", type=int, default=40)
    parser.add_argument("--rows", type=int, default=2000, help="rows per micro-batch (400 tx/s, 5-s batches)")
    parser.add_argument(
        "--intervals",
        default="100",
        help="checkpoint intervals to run `idempotent` at, comma-separated (100 is the stream's)",
    )
    parser.add_argument("--name", default="delta_append")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-delta-"))
    spark = get_spark(load_config("local", {"spark.ui_enabled": False}), "bench-delta-append")
    batch = (
        spark.range(args.rows)
        .select(
            F.col("id").alias("transaction_id"),
            F.lit("2018-04-01").cast("date").alias("tx_date"),
            *[F.rand(i).alias(f"feature_{i}") for i in range(40)],
        )
        .persist()
    )
    batch.count()
    designs = {
        "idempotent": at_interval(100),
        "history_only": history_append,
        "txn_only": txn_append,
        "plain": plain_append,
        **{f"idempotent@{n}": at_interval(n) for n in map(int, args.intervals.split(",")) if n != 100},
    }
    seconds: dict[str, list[float]] = {name: [] for name in designs}
    try:
        for version in range(args.appends):  # interleaved, so that a noisy moment hits every design alike
            for name, append in designs.items():
                started = time.perf_counter()
                append(batch, str(work / name), version)
                seconds[name].append(time.perf_counter() - started)
        replay = time.perf_counter()
        skipped = not append_idempotent(batch, str(work / "idempotent"), "bench", args.appends - 1)
        replay_seconds = time.perf_counter() - replay
        rows = spark.read.format("delta").load(str(work / "idempotent")).count()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    warm = {name: np.array(values[3:]) for name, values in seconds.items()}  # the first appends warm the JVM up
    result = {
        "benchmark": "delta_append",
        "machine": "2 cores, local[2]",
        "appends": args.appends,
        "rows": args.rows,
        "seconds_per_append": {
            name: {
                "median": round(float(np.median(v)), 3),
                "mean": round(float(v.mean()), 3),
                "p90": round(float(np.percentile(v, 90)), 3),
                "max": round(float(v.max()), 3),
            }
            for name, v in warm.items()
        },
        "median_ratio_idempotent_to_history_only": round(
            float(np.median(warm["idempotent"]) / np.median(warm["history_only"])), 2
        ),
        "mean_ratio_to_history_only": {
            name: round(float(v.mean() / warm["history_only"].mean()), 2) for name, v in warm.items()
        },
        "replay_skipped": skipped,
        "replay_check_seconds": round(replay_seconds, 3),
        "rows_after_replay": rows,
        "rows_expected": args.rows * args.appends,
    }
    report(result, args.name, not args.no_save)


if __name__ == "__main__":
    main()
