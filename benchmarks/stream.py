"""Benchmark of the streaming job (`fraud stream`) on this machine: throughput against a pass-through of its
stateful operators, and latency at the bank's rate, in one run.

    .venv/bin/python benchmarks/stream.py [--transactions 300000] [--latency-seconds 60] [--warmup-seconds 20]

The operating point, as `fraud backtest` sets it up: 35 days of simulated history at the bank-like replay's
traffic per terminal (`otus` preset: 20,000 cards on 125 terminals, radius 14.1, a terminal compromised every
fourth day), cleaned and trained on by `fraud train` (the shipped model: CatBoost, 200 trees of depth 8, a
1-hour label delay), the stream's state seeded from it, the shipped configuration (the alert budget flags
4.5% of the legitimate payments, the terminal checks act), a broker of its own (free ports), and the days
after the history sent without labels. No label comes back during the run. Each phase's results say the share of its payments flagged
(`flagged_share`) and the simulation's share of frauds (`fraud_share`).
1. Throughput: the backlog is produced first, then drained in micro-batches of up to
   kafka.max_offsets_per_trigger (100,000) by the full job (Kafka -> parse -> card and terminal operators ->
   CatBoost -> alerts topic, `scores`, `alerts`), then, on fresh tables and checkpoint, by the same job with
   the stateful operators replaced by a pass-through (zero aggregates, no state). The first micro-batch
   starts Python workers and plans the query: `warm` counts the others, which is what a running job pays.
2. Latency: the full job goes on from its checkpoint with stream.trigger_interval while transactions arrive
   at 400 tx/s; after a warm-up, for each transaction: Kafka timestamp -> the timestamp of its alert on the
   alerts topic (alert_*), -> the commit of the `scores` version that holds it (scores_*), and -> its
   explained message on the alerts topic (explanation_*, made off the micro-batch's path). The same load runs
   again with CatBoost's own SHAP call instead of the stream's table of leaves (`latency_with_shap_call`;
   --no-compare-shap-call skips it) and, with --compare-without-warming, without the thread that computes a
   table's transaction ids after each commit (`latency_without_warming`).
3. Floor: the same job goes on with --floor-rows (10) transactions at a time, each sent once the last is
   scored: what a micro-batch costs whatever its size (`floor_batch_seconds`, the median after the first),
   with the Spark jobs, tasks, state-store commits and Delta commits each one ran, and its tasks' run and
   CPU seconds (Spark's REST API: a task that runs much longer than it computes waits on something), and
   each job's seconds and its stages' (`jobs`): `job_seconds` is when at least one ran, the rest of the
   micro-batch the driver alone. Then
   the same again with Kafka's default fetch.max.wait.ms (500 ms) instead of kafka.fetch_max_wait_ms
   (`floor_kafka_default_fetch_wait`; --compare-fetch-wait 0 skips it).
   `--skip-throughput` runs phases 2 and 3 alone (the latency phase then starts without state).
Per micro-batch, the job's own stages (state, alerts_topic, tables, ...) and Spark's durationMs. With
--profile, each throughput run is recorded by Java Flight Recorder and its JVM CPU samples are counted by
what they were doing (`jvm_profile`, benchmarks/jfr.py).
Prints one JSON object and keeps it in benchmarks/results/stream.json.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from pyspark.sql import DataFrame, SparkSession  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402

from benchmarks import jfr  # noqa: E402
from benchmarks.common import own_broker_overrides, report  # noqa: E402
from features.definitions import AGGREGATES, FEATURE_NAMES  # noqa: E402
from features.operators import LABEL_INCREMENT, LABEL_PREVIOUS  # noqa: E402
from jobs.batch import clean, train  # noqa: E402
from jobs.core import lake  # noqa: E402
from jobs.core.config import Config, load_config, parse_override  # noqa: E402
from jobs.core.metrics import StreamMetrics  # noqa: E402
from jobs.core.session import get_spark  # noqa: E402
from jobs.core.waiting import wait_until  # noqa: E402
from jobs.dev import kafka_broker  # noqa: E402
from jobs.kafka_tools.alerts_cmd import read_topic  # noqa: E402
from jobs.kafka_tools.produce import produce, simulated_lines, without_labels  # noqa: E402
from jobs.replay.backtest import split_lines  # noqa: E402
from jobs.simulation.simulator import make_spec  # noqa: E402
from jobs.stream import batch_writer, score_stream, supervision  # noqa: E402
from models.catboost_model import LeafTable  # noqa: E402
from models.split import Split  # noqa: E402

HISTORY_DAYS = 35  # cleaned and trained on before the streamed days, as fraud backtest's history
FIRST = 200  # transactions of the latency phase sent and scored before its load


class RecordingStages(batch_writer.Stopwatch):
    """The job's per-micro-batch stage timer, keeping every micro-batch's seconds (in order)."""

    batches: list[dict[str, float]] = []

    def done(self, stage: str) -> None:
        super().done(stage)
        if len(RecordingStages.batches) == 0 or RecordingStages.batches[-1] is not self.seconds:
            RecordingStages.batches.append(self.seconds)


def passthrough(
    rows: DataFrame, label_delay_hours: int, ttl_days: int | None, seeds: dict[str, DataFrame] | None = None
) -> DataFrame:
    """The stateful step replaced: every aggregate 0, no duplicate, no label counted, no state."""
    return rows.select(
        "*",
        *[F.lit(0.0).alias(a.name) for a in AGGREGATES],
        F.lit(False).alias("duplicate"),
        *[F.lit(None).cast("int").alias(c) for c in (LABEL_INCREMENT, LABEL_PREVIOUS)],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transactions", type=int, default=300_000)
    parser.add_argument("--latency-seconds", type=int, default=60, help="measured seconds of the 400 tx/s load")
    parser.add_argument("--warmup-seconds", type=int, default=20, help="seconds of it before measuring")
    parser.add_argument("--rate", type=int, default=400, help="transactions a second in the latency phase")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a configuration key, as the jobs' --set (repeatable)",
    )
    parser.add_argument(
        "--floor-batches",
        type=int,
        default=15,
        help="micro-batches of --floor-rows transactions each, one at a time, after the latency phase",
    )
    parser.add_argument("--floor-rows", type=int, default=10)
    parser.add_argument(
        "--compare-fetch-wait",
        type=int,
        default=500,
        metavar="MS",
        help="run the floor again with this kafka.fetch_max_wait_ms (default 500, Kafka's own; 0: no)",
    )
    parser.add_argument(
        "--skip-throughput",
        action="store_true",
        help="only the latency and floor phases (the latency phase then starts without state)",
    )
    parser.add_argument(
        "--no-compare-shap-call",
        action="store_true",
        help="skip the second latency run, whose explanations take CatBoost's own SHAP call instead of the "
        "stream's table of leaves",
    )
    parser.add_argument(
        "--compare-without-warming",
        action="store_true",
        help="run the latency load once more without the thread that computes a table's transaction ids after "
        "each commit (jobs/core/lake.py, warm_transaction_ids): does it pay back under the stream's own load?",
    )
    parser.add_argument(
        "--compare-tables-on-thread",
        action="store_true",
        help="run the latency load once more with `stream.tables_on_thread`: `scores` and `alerts` appended on a "
        "thread while the next micro-batch runs, from rows staged under the checkpoint "
        "(jobs/stream/staged_tables.py), instead of inside each micro-batch",
    )
    parser.add_argument("--name", default="stream", help="the result's name under benchmarks/results/")
    parser.add_argument("--no-save", action="store_true")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="record each throughput run with Java Flight Recorder; add its JVM CPU samples by "
        "category (benchmarks/jfr.py)",
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-stream-"))
    overrides = dict(parse_override(o) for o in args.set)
    cfg = load_config("local", {**own_broker_overrides(work), "spark.ui_enabled": True, **overrides})
    spec = kafka_broker.spec_from_config(cfg)
    kafka_broker.start(spec)
    result: dict[str, Any] = {
        "benchmark": "stream",
        "machine": "2 cores, local[2]",
        "command": " ".join(sys.argv[1:]),
        "trigger_interval": str(cfg.get("stream.trigger_interval")),
        "max_offsets_per_trigger": cfg.get("kafka.max_offsets_per_trigger"),
    }
    try:
        live_count = args.rate * (args.warmup_seconds + args.latency_seconds)
        runs = (
            (1 if args.no_compare_shap_call else 2)
            + (1 if args.compare_without_warming else 0)
            + (1 if args.compare_tables_on_thread else 0)
        )
        floor_count = args.floor_batches * args.floor_rows * (2 if args.compare_fetch_wait else 1)
        days = (args.transactions + runs * live_count + floor_count) // 39_000 + 2
        sim = make_spec(
            "otus",
            customers=20_000,
            terminals=125,
            radius=14.1,
            terminals_compromised_per_day=0.25,
            days=HISTORY_DAYS + days,
        )
        replay_start = dt.datetime.combine(sim.start_date + dt.timedelta(days=HISTORY_DAYS), dt.time())
        streamed = split_lines(simulated_lines(sim), replay_start, work / "history.txt")
        result["fraud_share"] = round(fraud_share(streamed.replay), 4)
        lines = list(without_labels(iter(streamed.replay)))
        backlog, live = lines[: args.transactions], lines[args.transactions : args.transactions + live_count]
        after = args.transactions + live_count
        again = lines[after : after + (runs - 1) * live_count]
        live_again = [again[i * live_count : (i + 1) * live_count] for i in range(runs - 1)]
        after += (runs - 1) * live_count
        floor_lines = lines[after : after + floor_count]
        spark = get_spark(cfg, "bench-stream")
        full_cfg = with_paths(cfg, work / "full")
        clean.run(spark, full_cfg, str(streamed.history_file))  # the stream's state starts from it
        trained = train.run(
            spark,
            full_cfg,
            Split(streamed.history_start, train_days=7, delay_days=7, test_days=7, val_days=2),
            1,
            latest=True,
        )
        result["model"] = {"threshold": trained["threshold"], "test": trained["test"]}
        if not args.skip_throughput:
            sent = produce(cfg, iter(backlog))
            result["produce_tx_per_second"] = sent["rate"]
            full = profiled(spark, lambda: throughput(spark, full_cfg), work / "full.jfr", args.profile)
            original = score_stream.stateful_features
            score_stream.stateful_features = passthrough  # type: ignore[assignment]
            try:
                bare = profiled(
                    spark,
                    lambda: throughput(spark, with_paths(cfg, work / "passthrough")),
                    work / "passthrough.jfr",
                    args.profile,
                )
            finally:
                score_stream.stateful_features = original  # type: ignore[assignment]
            result["throughput"] = {
                "transactions": full["transactions"],
                "warm_tx_per_second": full["warm_tx_per_second"],
                "passthrough_warm_tx_per_second": bare["warm_tx_per_second"],
                "warm_over_passthrough": round(full["warm_tx_per_second"] / bare["warm_tx_per_second"], 3),
                "target_warm_tx_per_second": 20_000,
                "target_warm_over_passthrough": 0.6,
                "full": full,
                "passthrough": bare,
            }
            print(json.dumps(result["throughput"], indent=1)[:400], flush=True)
        result["latency_at_400_tx_per_second"] = latency(spark, full_cfg, live, args.rate, args.warmup_seconds)
        measured = result["latency_at_400_tx_per_second"]
        if args.compare_without_warming:
            # the same load again, each table's transaction ids left to the next append
            warming = lake.warm_transaction_ids
            lake.warm_transaction_ids = lambda spark, path: None  # type: ignore[assignment]
            try:
                unwarmed = latency(spark, full_cfg, live_again.pop(), args.rate, args.warmup_seconds)
            finally:
                lake.warm_transaction_ids = warming  # type: ignore[assignment]
            result["latency_without_warming"] = unwarmed
            result["shipped_over_without_warming"] = {
                key: round(measured[key] / unwarmed[key], 3)
                for key in ("alert_p99_seconds", "scores_p99_seconds", "mean_batch_seconds")
                if measured.get(key) and unwarmed.get(key)
            }
        if args.compare_tables_on_thread:
            # the same load again, each micro-batch's tables appended on a thread while the next one runs
            on_thread = dataclasses.replace(
                full_cfg, data={**full_cfg.data, "stream": {**full_cfg.data["stream"], "tables_on_thread": True}}
            )
            threaded = latency(spark, on_thread, live_again.pop(), args.rate, args.warmup_seconds)
            result["latency_tables_on_thread"] = threaded
            result["in_batch_over_on_thread"] = {
                key: round(measured[key] / threaded[key], 3)
                for key in ("alert_p99_seconds", "scores_p99_seconds", "mean_batch_seconds")
                if measured.get(key) and threaded.get(key)
            }
        if live_again:
            # the same load again, each micro-batch's alerts explained by CatBoost's call on both cores
            own_table = LeafTable.of
            LeafTable.of = classmethod(lambda cls, model: None)  # type: ignore[method-assign, assignment]
            try:
                called = latency(spark, full_cfg, live_again.pop(), args.rate, args.warmup_seconds)
            finally:
                LeafTable.of = own_table  # type: ignore[method-assign]
            result["latency_with_shap_call"] = called
            result["table_over_shap_call"] = {
                key: round(measured[key] / called[key], 3)
                for key in ("alert_p99_seconds", "scores_p99_seconds", "mean_batch_seconds")
                if measured.get(key) and called.get(key)
            }
        result["explanations"] = explanations(
            spark, full_cfg, max(1, round(measured["alerts"] / max(measured["batches"], 1)))
        )
        half = args.floor_batches * args.floor_rows
        result["floor"] = floor(spark, full_cfg, floor_lines[:half], args.floor_rows)
        result["floor_batch_seconds"] = result["floor"]["median_batch_seconds"]
        if args.compare_fetch_wait:
            waiting = dataclasses.replace(
                full_cfg,
                data={
                    **full_cfg.data,
                    "kafka": {**full_cfg.data["kafka"], "fetch_max_wait_ms": args.compare_fetch_wait},
                },
            )
            result["floor_kafka_default_fetch_wait"] = {
                "fetch_max_wait_ms": args.compare_fetch_wait,
                **floor(spark, waiting, floor_lines[half:], args.floor_rows),
            }
            result["floor_over_default_fetch_wait"] = round(
                result["floor"]["median_batch_seconds"]
                / result["floor_kafka_default_fetch_wait"]["median_batch_seconds"],
                3,
            )
    finally:
        kafka_broker.stop(spec)
        shutil.rmtree(work, ignore_errors=True)
    report(result, args.name, not args.no_save)


def profiled(spark: SparkSession, run: Callable[[], dict[str, Any]], recording: Path, profile: bool) -> dict[str, Any]:
    """`run()`'s result, with `jvm_profile` (benchmarks/jfr.py) when `profile`."""
    if not profile:
        return run()
    jfr.start(spark, recording.stem)
    try:
        result = run()
    finally:
        jfr.stop(spark, recording.stem, recording)
    return {**result, "jvm_profile": jfr.cpu_shares(recording)}


def with_paths(cfg: Config, folder: Path) -> Config:
    """The configuration with tables and checkpoints under `folder`."""
    data = dict(cfg.data)
    data["paths"] = {**data["paths"], "lake": str(folder / "lake"), "checkpoint": str(folder / "chk")}
    return dataclasses.replace(cfg, data=data)


@contextlib.contextmanager
def recording_stages() -> Iterator[None]:
    """The job's stage timer replaced by RecordingStages (emptied) meanwhile."""
    RecordingStages.batches = []
    original = batch_writer.Stopwatch
    batch_writer.Stopwatch = RecordingStages  # type: ignore[misc]
    try:
        yield
    finally:
        batch_writer.Stopwatch = original  # type: ignore[misc]


def throughput(spark: SparkSession, cfg: Config) -> dict[str, Any]:
    """Drain what the topic holds with availableNow; warm = every micro-batch but the first."""
    with recording_stages():
        metrics = StreamMetrics()
        started = time.perf_counter()
        query = score_stream.start(spark, cfg, available_now=True, metrics=metrics)
        query.awaitTermination()
        wall = time.perf_counter() - started
    progress = [p for p in query.recentProgress if p["numInputRows"]]
    rows = [p["numInputRows"] for p in progress]
    seconds = [p["durationMs"]["triggerExecution"] / 1000 for p in progress]
    warm_rows, warm_seconds = sum(rows[1:]), sum(seconds[1:])
    scored = int(metrics.scored._value.get())
    return {
        "transactions": scored,
        "batches": len(progress),
        "flagged_share": round(metrics.alerts._value.get() / scored, 4) if scored else None,
        "warm_tx_per_second": round(warm_rows / warm_seconds) if warm_seconds else None,
        "all_tx_per_second": round(sum(rows) / sum(seconds)),
        "wall_seconds_incl_start": round(wall, 1),
        "batch_rows": rows,
        "batch_seconds": [round(s, 2) for s in seconds],
        "batch_stage_seconds": [{k: round(v, 2) for k, v in b.items()} for b in RecordingStages.batches],
        "batch_duration_ms": [p["durationMs"] for p in progress],
    }


def latency(spark: SparkSession, cfg: Config, live: list[str], rate: int, warmup: int) -> dict[str, Any]:
    """The full job from its checkpoint while `live` arrives at `rate` tx/s; the first `warmup` seconds are
    not measured."""
    with recording_stages():
        query = score_stream.start(spark, cfg, available_now=False, metrics=StreamMetrics())
        # a few first, scored before the load starts: a start without a checkpoint seeds the state from the
        # history in its first micro-batch, which is not the running job's
        produce(cfg, iter(live[:FIRST]))
        wait_until(
            lambda: any(p["numInputRows"] for p in query.recentProgress), "the first micro-batch", 600, 1, query=query
        )
        live = live[FIRST:]
        feeder = threading.Thread(target=produce, args=(cfg, iter(live)), kwargs={"rate": rate})
        feeder.start()
        time.sleep(warmup)
        done, batches_before = len(query.recentProgress), len(RecordingStages.batches)
        jobs_before = spark_jobs(spark)
        t0 = time.time()
        feeder.join()
        time.sleep(5)
        jobs = spark_jobs(spark) - jobs_before
        progress = [p for p in query.recentProgress[done:] if p["numInputRows"]]
        stages = RecordingStages.batches[batches_before:]
        supervision.stop_query(spark, query)  # and the last explanations published
    scores = (
        spark.read.format("delta")
        .load(cfg.table_path("scores"))
        .where(F.col("kafka_timestamp") >= F.lit(pd.Timestamp(t0, unit="s").to_pydatetime()))
        .select(
            "transaction_id",
            (F.unix_micros("kafka_timestamp") / 1e6).alias("sent"),
            F.col("_metadata.file_path").alias("file"),
        )
        .toPandas()
    )
    committed = commit_times(Path(cfg.table_path("scores")))
    scores["committed"] = [committed[Path(f.removeprefix("file:")).name] for f in scores["file"]]
    alerts = alert_times(cfg, str(cfg.get("kafka.topics.alerts")))
    alerted = scores.merge(alerts, on="transaction_id")
    scores_latency = (scores["committed"] - scores["sent"]).to_numpy()
    alert_latency = (alerted["alerted"] - alerted["sent"]).to_numpy()
    explanation_latency = (alerted["explained"] - alerted["sent"]).dropna().to_numpy()
    keys = sorted({k for p in progress for k in p["durationMs"]})
    return {
        "transactions": len(scores),
        "alerts": len(alerted),
        "rate": rate,
        "trigger": str(cfg.get("stream.trigger_interval")),
        "warmup_seconds_not_measured": warmup,
        **percentiles("alert", alert_latency),
        **percentiles("scores", scores_latency),
        **percentiles("explanation", explanation_latency),
        "explained_share": round(len(explanation_latency) / len(alerted), 4) if len(alerted) else None,
        "flagged_share": round(len(alerted) / len(scores), 4) if len(scores) else None,
        "target_flagged_share_at_least": 0.04,
        "target_alert_p99_seconds": 5.0,
        "target_scores_p99_seconds": 8.0,
        "target_mean_batch_seconds": 2.5,
        "batches": len(progress),
        "mean_batch_rows": round(float(np.mean([p["numInputRows"] for p in progress])), 1),
        "mean_batch_seconds": round(float(np.mean([p["durationMs"]["triggerExecution"] for p in progress])) / 1000, 3),
        "spark_jobs_per_batch": round(len(jobs) / max(len(progress), 1), 1),
        "spark_tasks_per_batch": round(spark_tasks(spark, jobs) / max(len(progress), 1), 1),
        "mean_batch_duration_ms": {
            k: round(float(np.mean([p["durationMs"].get(k, 0) for p in progress]))) for k in keys
        },
        "mean_batch_stage_seconds": {
            k: round(float(np.mean([b.get(k, 0.0) for b in stages])), 3) for k in sorted({k for b in stages for k in b})
        },
        "mean_state_operator_ms": state_operator_ms(progress),
        "per_batch": [{"rows": p["numInputRows"], "duration_ms": p["durationMs"]} for p in progress],
    }


# the state operators' times of Spark's progress event worth reading, beside the RocksDB commit's phases
OPERATOR_TIMES = ("allUpdatesTimeMs", "allRemovalsTimeMs", "commitTimeMs")


def state_operator_ms(progress: list[dict[str, Any]]) -> list[dict[str, float]]:
    """Per stateful operator (in the plan's order: card, then terminal), the mean of its times over `progress`:
    updating and committing its state, and the commit's phases in RocksDB (its custom metrics *LatencyMs)."""
    operators: list[list[dict[str, Any]]] = []
    for p in progress:
        for i, op in enumerate(p.get("stateOperators", [])):
            times = {k: op.get(k, 0) for k in OPERATOR_TIMES}
            times |= {k: v for k, v in (op.get("customMetrics") or {}).items() if k.endswith("LatencyMs")}
            times["numRowsUpdated"] = op.get("numRowsUpdated", 0)
            while len(operators) <= i:
                operators.append([])
            operators[i].append(times)
    return [
        {k: round(float(np.mean([t.get(k, 0) for t in seen])), 1) for k in sorted({k for t in seen for k in t})}
        for seen in operators
    ]


def explanations(spark: SparkSession, cfg: Config, per_batch: int) -> dict[str, Any]:
    """The alerts' explanation: CatBoost's exact SHAP call (what the stream computed per micro-batch before
    the leaf table) against the stream's leaf table (models.catboost_model.LeafTable), on every alert of the
    run and on one micro-batch's alerts (`per_batch` of them): the seconds of each, the table's build, and
    how far the two are apart (the table is exact: its top three features are CatBoost's)."""
    from catboost import Pool

    from jobs.core import registry

    booster, _, version = registry.load(cfg, registry.resolve(cfg, "champion")[0])
    features = (
        spark.read.format("delta").load(cfg.table_path("scores")).where("decision").select(*FEATURE_NAMES).toPandas()
    )

    def timed(call: Callable[[], Any]) -> tuple[Any, float]:
        started = time.perf_counter()
        value = call()
        return value, round(time.perf_counter() - started, 4)

    one_batch = features.head(per_batch)
    exact, exact_seconds = timed(
        lambda: booster.get_feature_importance(Pool(features), type="ShapValues", thread_count=-1)[:, :-1]
    )
    _, exact_batch_seconds = timed(
        lambda: booster.get_feature_importance(Pool(one_batch), type="ShapValues", thread_count=-1)
    )
    table, build_seconds = timed(lambda: LeafTable.build(booster))
    looked_up, table_seconds = timed(lambda: table.values(booster, features))
    _, table_batch_seconds = timed(lambda: table.values(booster, one_batch))
    return {
        "alerts": len(features),
        "model_version": version,
        "exact_seconds": exact_seconds,
        "table_build_seconds": build_seconds,
        "table_seconds": table_seconds,
        "alerts_per_batch": len(one_batch),
        "exact_batch_seconds": exact_batch_seconds,
        "table_batch_seconds": table_batch_seconds,
        "max_abs_difference": float(np.abs(looked_up - exact).max()) if len(features) else 0.0,
        "top3_same_set_share": round(
            float(np.mean([set(np.argsort(-a)[:3]) == set(np.argsort(-b)[:3]) for a, b in zip(exact, looked_up)])),
            4,
        )
        if len(features)
        else None,
    }


def spark_jobs(spark: SparkSession) -> set[int]:
    """The ids of every Spark job the session's status tracker still knows: the query's (its job group is
    its run id, for the jobs of its own thread) and those of no group (the sinks' threads)."""
    tracker = spark.sparkContext.statusTracker()
    ids = set(tracker.getJobIdsForGroup(None))
    for query in spark.streams.active:
        ids |= set(tracker.getJobIdsForGroup(str(query.runId)))
    return ids


def spark_tasks(spark: SparkSession, jobs: set[int]) -> int:
    """The tasks of `jobs`' stages (stages skipped as already computed count none)."""
    tracker = spark.sparkContext.statusTracker()
    tasks = 0
    for job in jobs:
        info = tracker.getJobInfo(job)
        for stage in info.stageIds if info else []:
            stage_info = tracker.getStageInfo(stage)
            tasks += stage_info.numCompletedTasks if stage_info else 0
    return tasks


def task_seconds(spark: SparkSession, jobs: set[int]) -> dict[str, float]:
    """The run and CPU seconds of the tasks of `jobs`, from Spark's REST API (the UI must be on)."""
    import urllib.request

    base = spark.sparkContext.uiWebUrl
    if not base or not jobs:
        return {}
    app = spark.sparkContext.applicationId
    run = cpu = 0.0
    for job in jobs:
        info = json.load(urllib.request.urlopen(f"{base}/api/v1/applications/{app}/jobs/{job}", timeout=10))
        for stage in info.get("stageIds", []):
            for attempt in ui_stage(base, app, stage):
                run += attempt.get("executorRunTime", 0) / 1000
                cpu += attempt.get("executorCpuTime", 0) / 1e9
    return {"task_run_seconds": round(run, 3), "task_cpu_seconds": round(cpu, 3)}


def ui_stage(base: str, app: str, stage: int) -> list[dict[str, Any]]:
    """The attempts of a stage from Spark's REST API; none for a stage the UI does not know (a job's stage
    that was skipped, its output computed already, is listed by the job but never ran)."""
    import urllib.error
    import urllib.request

    try:
        attempts: list[dict[str, Any]] = json.load(
            urllib.request.urlopen(f"{base}/api/v1/applications/{app}/stages/{stage}", timeout=10)
        )
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return []
        raise
    return attempts


def job_spans(spark: SparkSession, jobs: set[int]) -> dict[str, Any]:
    """Where a micro-batch's wall time went: each of `jobs` with its call site, seconds (submission to
    completion, Spark's REST API) and its stages' seconds and tasks; and `job_seconds`, the time when at least
    one of them ran. The rest of the micro-batch is the driver alone (planning, Delta's log, Python, waits)."""
    import urllib.request

    base = spark.sparkContext.uiWebUrl
    if not base or not jobs:
        return {}
    app = spark.sparkContext.applicationId

    def get(what: str) -> Any:
        return json.load(urllib.request.urlopen(f"{base}/api/v1/applications/{app}/{what}", timeout=10))

    def span(info: dict[str, Any]) -> tuple[float, float] | None:
        if "submissionTime" not in info or "completionTime" not in info:
            return None
        start, end = (
            pd.Timestamp(info[k].removesuffix("GMT")).timestamp() for k in ("submissionTime", "completionTime")
        )
        return start, end

    spans = []
    for job in sorted(jobs):
        info = get(f"jobs/{job}")
        times = span(info)
        if times is None:
            continue
        stages = [
            {"seconds": round(t[1] - t[0], 3), "tasks": a.get("numTasks", 0)}
            for stage in info.get("stageIds", [])
            for a in ui_stage(base, app, stage)
            if (t := span(a))
        ]
        spans.append((*times, str(info.get("name", "")).split(" at ")[0], stages))
    covered, reach = 0.0, float("-inf")
    for start, end, _, _ in sorted(spans):  # the union of the spans
        covered += max(0.0, end - max(start, reach))
        reach = max(reach, end)
    return {
        "job_seconds": round(covered, 3),
        "jobs": [
            {"call": name, "seconds": round(end - start, 3), "stages": stages}
            for start, end, name, stages in sorted(spans)
        ],
    }


def delta_commits(cfg: Config) -> int:
    """Commits in the logs of the tables the stream writes."""
    return sum(
        len(list((Path(cfg.table_path(t)) / "_delta_log").glob("*.json")))
        for t in ("scores", "alerts", "dead_letters", "labels")
    )


def floor(spark: SparkSession, cfg: Config, lines: list[str], rows: int) -> dict[str, Any]:
    """The fixed cost of a micro-batch: `rows` transactions at a time, each sent once the last is scored, so
    that every micro-batch holds just them; per micro-batch its seconds and stages, and the Spark jobs,
    tasks, state-store commits and Delta commits it ran."""
    batches: list[dict[str, Any]] = []
    with recording_stages():
        query = score_stream.start(spark, cfg, available_now=False, metrics=StreamMetrics())
        try:
            for start in range(0, len(lines), rows):
                seen, jobs_before, commits_before = len(query.recentProgress), spark_jobs(spark), delta_commits(cfg)
                produce(cfg, iter(lines[start : start + rows]))
                deadline = time.monotonic() + 120
                while not [p for p in query.recentProgress[seen:] if p["numInputRows"]] and time.monotonic() < deadline:
                    time.sleep(0.05)
                time.sleep(0.5)  # the sinks' last jobs are listed by then
                progress = [p for p in query.recentProgress[seen:] if p["numInputRows"]]
                if not progress:
                    raise RuntimeError(f"floor: {rows} transactions not scored within 120 s")
                jobs = spark_jobs(spark) - jobs_before
                batches.append(
                    {
                        "rows": sum(p["numInputRows"] for p in progress),
                        "micro_batches": len(progress),
                        "seconds": sum(p["durationMs"]["triggerExecution"] for p in progress) / 1000,
                        "duration_ms": progress[-1]["durationMs"],
                        "stages": RecordingStages.batches[-1] if RecordingStages.batches else {},
                        "spark_jobs": len(jobs),
                        "spark_tasks": spark_tasks(spark, jobs),
                        **task_seconds(spark, jobs),
                        **job_spans(spark, jobs),
                        "state_store_commits": sum(
                            o.get("numStateStoreInstances", 0) for p in progress for o in p["stateOperators"]
                        ),
                        "delta_commits": delta_commits(cfg) - commits_before,
                        "progress": progress,
                    }
                )
        finally:
            query.stop()
    warm = batches[1:] or batches  # the first pays for the query's planning after a start
    operators = state_operator_ms([p for b in warm for p in b["progress"]])
    for b in batches:
        del b["progress"]
    keys = sorted({k for b in warm for k in b["stages"]})
    return {
        "rows_per_batch": rows,
        "batches": len(batches),
        "median_batch_seconds": round(float(np.median([b["seconds"] for b in warm])), 3),
        "target_batch_seconds": 0.5,
        "median_stage_seconds": {k: round(float(np.median([b["stages"].get(k, 0.0) for b in warm])), 3) for k in keys},
        "median_duration_ms": {
            k: float(np.median([b["duration_ms"].get(k, 0) for b in warm]))
            for k in sorted({k for b in warm for k in b["duration_ms"]})
        },
        "median_spark_jobs": float(np.median([b["spark_jobs"] for b in warm])),
        "median_spark_tasks": float(np.median([b["spark_tasks"] for b in warm])),
        "median_state_store_commits": float(np.median([b["state_store_commits"] for b in warm])),
        "median_delta_commits": float(np.median([b["delta_commits"] for b in warm])),
        "mean_state_operator_ms": operators,
        **{
            f"median_{k}": round(float(np.median([b.get(k, 0.0) for b in warm])), 3)
            for k in ("task_run_seconds", "task_cpu_seconds", "job_seconds")
        },
        "per_batch": batches,
    }


def fraud_share(lines: list[str]) -> float:
    """The share of frauds among simulated raw lines (their eighth field)."""
    labels = [line.split(",")[7].strip() for line in lines if line.count(",") == 8]
    return sum(label == "1" for label in labels) / max(len(labels), 1)


def percentiles(name: str, values: np.ndarray) -> dict[str, float | None]:
    if not len(values):
        return {f"{name}_p50_seconds": None, f"{name}_p99_seconds": None, f"{name}_max_seconds": None}
    return {
        f"{name}_p50_seconds": round(float(np.percentile(values, 50)), 3),
        f"{name}_p99_seconds": round(float(np.percentile(values, 99)), 3),
        f"{name}_max_seconds": round(float(values.max()), 3),
    }


def commit_times(table: Path) -> dict[str, float]:
    """For each data file of a Delta table: the time (epoch seconds) of the commit that added it."""
    added: dict[str, float] = {}
    for log in sorted((table / "_delta_log").glob("*.json")):
        actions = [json.loads(line) for line in log.read_text().splitlines() if line]
        when = next(a["commitInfo"]["timestamp"] for a in actions if "commitInfo" in a) / 1000
        for action in actions:
            if "add" in action:
                added[Path(action["add"]["path"]).name] = when
    return added


def alert_times(cfg: Config, topic: str) -> pd.DataFrame:
    """Every alert on the topic: its transaction id, the timestamp of its first message and that of its
    explained one (epoch seconds; NaN if none came)."""
    rows = [
        (alert["transaction_id"], timestamp / 1000, bool(alert.get("top_features")))
        for alert, timestamp in read_topic(cfg, topic)
    ]
    messages = pd.DataFrame(rows, columns=["transaction_id", "at", "explained"])
    first = messages.groupby("transaction_id")["at"].min().rename("alerted")
    explained = messages[messages["explained"]].groupby("transaction_id")["at"].min().rename("explained")
    return pd.concat([first, explained], axis=1).reset_index()


if __name__ == "__main__":
    main()
