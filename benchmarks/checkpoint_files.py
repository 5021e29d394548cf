"""Benchmark of the files a streaming query writes to its checkpoint at every micro-batch on a local disk: the
offsets (`walCommit`), the commit (`commitOffsets`) and each state store's changelog (the stream has four:
two operators, two shuffle partitions), through each of Spark's two checkpoint file managers.

    .venv/bin/python benchmarks/checkpoint_files.py [--seconds 25] [--rounds 2]

Designs in one run, taking turns (`--rounds` each), on the local configuration's session (`local[2]`, RocksDB
with changelog checkpointing, as `fraud stream` has them):
- `file_context`: Spark's default, Hadoop's FileContext. On a local disk without Hadoop's native library
  (none is published to Maven Central), FileContext sets each new file's permissions by starting `chmod`
  and reads them back by starting `stat`: a process started from the driver's or executor's JVM per file;
- `file_system`: Hadoop's FileSystem, `spark.sql.streaming.checkpointFileManagerClass` =
  FileSystemBasedCheckpointFileManager, which conf/local/spark.yaml sets.
Each design runs a small stateful query (a rate source grouped by 100 keys, state in RocksDB, micro-batches
every second, a `noop` sink) for `--seconds`, and reports the medians over its micro-batches after the first
three: Spark's `walCommit`, `commitOffsets` and `triggerExecution` (ms), and the state operator's
`commitTimeMs` and `rocksdbCommitFileSyncLatencyMs` (the changelog's write); and the ratio of
`triggerExecution` medians, file_context over file_system. Prints JSON; keeps
benchmarks/results/checkpoint_files.json.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pyspark.sql import SparkSession  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402

from benchmarks.common import report  # noqa: E402
from jobs.core.config import load_config  # noqa: E402
from jobs.core.session import get_spark  # noqa: E402

MANAGERS = {
    "file_context": "org.apache.spark.sql.execution.streaming.checkpointing.FileContextBasedCheckpointFileManager",
    "file_system": "org.apache.spark.sql.execution.streaming.checkpointing.FileSystemBasedCheckpointFileManager",
}
KEY = "spark.sql.streaming.checkpointFileManagerClass"


def run_query(spark: SparkSession, manager: str, seconds: int, folder: Path) -> dict[str, float]:
    """One design's query for `seconds`: the medians of its micro-batches after the first three."""
    spark.conf.set(KEY, manager)
    query = (
        spark.readStream.format("rate")
        .option("rowsPerSecond", 50)
        .load()
        .groupBy((F.col("value") % 100).alias("key"))
        .count()
        .writeStream.outputMode("update")
        .format("noop")
        .option("checkpointLocation", str(folder))
        .trigger(processingTime="1 second")
        .start()
    )
    time.sleep(seconds)
    progress = query.recentProgress[3:]
    query.stop()
    if not progress:
        raise SystemExit(f"checkpoint_files: the query with {manager} ran no micro-batch after its first three")

    def median(values: list[float]) -> float:
        return round(float(statistics.median(values)), 1)

    state = [p["stateOperators"][0] for p in progress]
    return {
        "micro_batches": len(progress),
        "wal_commit_ms": median([p["durationMs"].get("walCommit", 0) for p in progress]),
        "commit_offsets_ms": median([p["durationMs"].get("commitOffsets", 0) for p in progress]),
        "state_commit_ms": median([s["commitTimeMs"] for s in state]),
        "changelog_write_ms": median([s["customMetrics"].get("rocksdbCommitFileSyncLatencyMs", 0) for s in state]),
        "trigger_execution_ms": median([p["durationMs"]["triggerExecution"] for p in progress]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=25, help="seconds each design's query runs a round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds, the designs taking turns in each")
    parser.add_argument("--beside", default="", help="what ran on the machine meanwhile, for the record")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args()
    spark = get_spark(load_config("local"), "bench-checkpoint-files")
    spark.conf.set("spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled", "true")
    work = Path(tempfile.mkdtemp(prefix="bench-checkpoint-"))
    rounds: dict[str, list[dict[str, float]]] = {name: [] for name in MANAGERS}
    try:
        for n in range(args.rounds):
            for name, manager in MANAGERS.items():
                rounds[name].append(run_query(spark, manager, args.seconds, work / f"{name}-{n}"))
    finally:
        spark.stop()
        shutil.rmtree(work, ignore_errors=True)
    designs: dict[str, Any] = {
        name: {key: round(statistics.median(r[key] for r in runs), 1) for key in runs[0]} | {"rounds": runs}
        for name, runs in rounds.items()
    }
    result = {
        "benchmark": "checkpoint_files",
        "machine": "2 cores, local[2]",
        "command": shlex.join(["python", "benchmarks/checkpoint_files.py", *sys.argv[1:]]),
        "beside": args.beside or "nothing else of this project's",
        "seconds_per_round": args.seconds,
        "designs": designs,
        "file_context_over_file_system": round(
            designs["file_context"]["trigger_execution_ms"] / designs["file_system"]["trigger_execution_ms"], 3
        ),
    }
    report(result, "checkpoint_files", not args.no_save)


if __name__ == "__main__":
    main()
