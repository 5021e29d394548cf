"""Where the streaming job's time goes: the same backlog drained by three variants of the job, in one run.

    .venv/bin/python benchmarks/stream_profile.py [--transactions 300000] [--max-offsets 100000]

A. the full job;
B. the same two transformWithStateInPandas steps, but each passes its rows through with zero aggregates and
   never touches its state: the cost of the operators themselves (Arrow transfer, grouping, state commit);
C. no stateful step at all (zero aggregates): Kafka read, parsing, scoring and the sinks.
A - B is our state work (numpy update, state get/put); B - C is the operators' own cost. Each variant gets
fresh tables and checkpoints; the stage seconds come from the job's own per-batch timings. The first
micro-batch of a variant also starts Python workers and plans the query: `warm` sums the other full ones,
which is what a running job pays. Prints one JSON object and keeps it in benchmarks/results/stream_profile.json.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402
from pyspark.sql import DataFrame  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402

from benchmarks.common import own_broker_overrides, report  # noqa: E402
from features.definitions import AGGREGATES  # noqa: E402
from features.stream_processor import EntityStateProcessor  # noqa: E402
from jobs import kafka_broker, score_stream  # noqa: E402
from jobs.config import load_config  # noqa: E402
from jobs.metrics import StreamMetrics  # noqa: E402
from jobs.produce import produce, simulated_lines  # noqa: E402
from jobs.session import get_spark  # noqa: E402
from jobs.simulator import make_spec  # noqa: E402
from tests.test_stream_restart import register_model  # noqa: E402


class PassThrough(EntityStateProcessor):
    """Variant B: the operator's rows go through with zero aggregates; the state is never read or written.
    Defined here (in __main__) so that Spark pickles it by value."""

    def handleInputRows(self, key: Any, rows: Iterator[pd.DataFrame], timerValues: Any) -> Iterator[pd.DataFrame]:
        names = [a.name for a in AGGREGATES if a.entity == self.entity]
        for frame in rows:
            out = frame.drop(columns=[c for c in self.drop if c in frame.columns])
            yield out.assign(**{n: 0.0 for n in names})


class RecordingStages(score_stream.Stages):
    """The job's per-micro-batch stage timer, keeping every micro-batch's seconds (in order)."""

    batches: list[dict[str, float]] = []

    def __init__(self) -> None:
        super().__init__()
        RecordingStages.batches.append(self.seconds)


def no_state(rows: DataFrame, label_delay_hours: int, layout: Any) -> DataFrame:
    """Variant C: the aggregates as zero columns, without any stateful step."""
    return rows.select(*score_stream.STATE_INPUT_COLUMNS).select(
        "*", *[F.lit(0.0).alias(a.name) for a in AGGREGATES if a.entity == "card"],
        *[F.lit(0.0).alias(a.name) for a in AGGREGATES if a.entity == "terminal"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transactions", type=int, default=300_000)
    parser.add_argument("--max-offsets", type=int, default=100_000, help="kafka.max_offsets_per_trigger")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-profile-"))
    base = {**own_broker_overrides(work), "kafka.max_offsets_per_trigger": args.max_offsets}
    cfg = load_config("local", {**base, "paths.lake": str(work / "lake")})
    spec = kafka_broker.spec_from_config(cfg)
    kafka_broker.start(spec)
    result: dict[str, Any] = {"benchmark": "stream_profile", "machine": "2 cores, local[2]",
                              "transactions": args.transactions, "max_offsets_per_trigger": args.max_offsets}
    original_processor, original_features = score_stream.EntityStateProcessor, score_stream.stateful_features
    original_stages = score_stream.Stages
    score_stream.Stages = RecordingStages  # type: ignore[misc]
    try:
        register_model(cfg.path("mlflow.tracking_uri"), work / "artifacts", label_delay_hours=168)
        lines = simulated_lines(make_spec("otus", customers=20_000, days=args.transactions // 39_000 + 2))
        produce(cfg, lines, limit=args.transactions)
        spark = get_spark(cfg, "bench-profile")
        variants = {"A_full_job": (original_processor, original_features),
                    "B_operators_pass_through": (PassThrough, original_features),
                    "C_no_stateful_step": (original_processor, no_state)}
        for name, (processor, features) in variants.items():
            score_stream.EntityStateProcessor, score_stream.stateful_features = processor, features  # type: ignore[misc]
            run_cfg = load_config("local", {**base, "paths.lake": str(work / name / "lake"),
                                            "paths.checkpoint": str(work / name / "chk")})
            metrics = StreamMetrics()
            RecordingStages.batches = []
            started = time.perf_counter()
            query = score_stream.start(spark, run_cfg, available_now=True, metrics=metrics, log_stages=True)
            query.awaitTermination()
            wall = time.perf_counter() - started
            progress = [p for p in query.recentProgress if p["numInputRows"]]
            busy = sum(p["durationMs"]["triggerExecution"] for p in progress) / 1000
            scored = int(metrics.scored._value.get())
            # warm: after the first micro-batch, and full ones only (the backlog's remainder may be a few rows)
            full = max(p["numInputRows"] for p in progress) // 2
            warm = [(p, seconds) for p, seconds in list(zip(progress, RecordingStages.batches))[1:]
                    if p["numInputRows"] >= full]
            warm_rows = sum(p["numInputRows"] for p, _ in warm)
            warm_seconds = sum(p["durationMs"]["triggerExecution"] for p, _ in warm) / 1000
            warm_stages: dict[str, float] = {}
            for _, seconds in warm:
                for stage, value in seconds.items():
                    warm_stages[stage] = warm_stages.get(stage, 0.0) + value
            result[name] = {
                "scored": scored, "batches": len(progress), "batch_seconds": round(busy, 1),
                "tx_per_second": round(scored / busy), "wall_seconds": round(wall, 1),
                "per_batch": [{"rows": p["numInputRows"], "seconds": round(p["durationMs"]["triggerExecution"] / 1000, 2),
                               "stages": {k: round(v, 2) for k, v in seconds.items()}}
                              for p, seconds in zip(progress, RecordingStages.batches)],
                "warm": {"batches": len(warm), "rows": warm_rows, "seconds": round(warm_seconds, 1),
                         "tx_per_second": round(warm_rows / warm_seconds) if warm_seconds else None,
                         "stage_seconds": {k: round(v, 2) for k, v in warm_stages.items()}}}
            print(json.dumps({name: result[name]}), flush=True)
    finally:
        score_stream.EntityStateProcessor, score_stream.stateful_features = original_processor, original_features  # type: ignore[misc]
        score_stream.Stages = original_stages  # type: ignore[misc]
        kafka_broker.stop(spec)
        shutil.rmtree(work, ignore_errors=True)
    report(result, "stream_profile", not args.no_save)


if __name__ == "__main__":
    main()
