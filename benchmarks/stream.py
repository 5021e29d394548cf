"""Benchmark of the streaming job (`fraud stream`): throughput and end-to-end latency on this machine.

    .venv/bin/python benchmarks/stream.py [--transactions 200000] [--latency-seconds 60] [--warmup-seconds 30]

A broker of its own (free ports), a registered model, and simulated transactions (the bank's 1,000
terminals). Phase 1, throughput: N transactions are produced first, then the full job (features in state,
CatBoost, both Delta sinks, alerts topic) drains them in micro-batches of up to kafka.max_offsets_per_trigger
(100,000 unless --set): processed tx/s =
rows / summed batch durations. Phase 2, latency: the job runs with a 1-second trigger while transactions
arrive at 400 tx/s; after a warm-up, latency = Kafka timestamp -> scored, p50 / p99 over the rows.
Prints one JSON object and keeps it in benchmarks/results/stream.json.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from pyspark.sql import SparkSession  # noqa: E402

from jobs import kafka_broker, score_stream  # noqa: E402
from jobs.config import Config, load_config, parse_override  # noqa: E402
from jobs.metrics import StreamMetrics  # noqa: E402
from benchmarks.common import own_broker_overrides, report  # noqa: E402
from jobs.produce import produce, simulated_lines  # noqa: E402
from jobs.session import get_spark  # noqa: E402
from jobs.simulator import make_spec  # noqa: E402
from tests.test_stream_restart import register_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transactions", type=int, default=200_000)
    parser.add_argument("--latency-seconds", type=int, default=60, help="measured seconds of the 400 tx/s load")
    parser.add_argument("--warmup-seconds", type=int, default=30, help="seconds of it before measuring")
    parser.add_argument("--state-groups", type=int, default=None, help="stream.state_groups (default: conf's)")
    parser.add_argument("--state-settle", default=None, help="stream.state_settle, comma-separated ('' for none)")
    parser.add_argument("--trigger", default="1 second", help="stream.trigger_interval of the latency phase")
    parser.add_argument("--latency-only", action="store_true", help="skip phase 1 (implies --no-save)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a configuration key, as the jobs' --set (repeatable)")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-stream-"))
    groups: dict[str, object] = {} if args.state_groups is None else {"stream.state_groups": args.state_groups}
    if args.state_settle is not None:
        groups["stream.state_settle"] = [e for e in args.state_settle.split(",") if e]
    groups.update(parse_override(o) for o in args.set)
    cfg = load_config("local", {**own_broker_overrides(work), "paths.lake": str(work / "lake"),
                                "paths.checkpoint": str(work / "chk"), "stream.trigger_interval": args.trigger, **groups})
    spec = kafka_broker.spec_from_config(cfg)
    kafka_broker.start(spec)
    result: dict[str, object] = {"benchmark": "stream", "machine": "2 cores, local[2]",
                                 "state_buckets": cfg.get("stream.state_buckets"), "state_groups": cfg.get("stream.state_groups"),
                                 "state_settle": cfg.get("stream.state_settle")}
    try:
        register_model(cfg.path("mlflow.tracking_uri"), work / "artifacts", label_delay_hours=168)
        days = max(1, args.transactions // 39_000 + 1)
        lines = list(simulated_lines(make_spec("otus", customers=20_000, days=days + 1)))
        backlog, live = lines[: args.transactions], lines[args.transactions:]
        spark = get_spark(cfg, "bench-stream")
        if not args.latency_only:
            result.update(throughput(spark, cfg, backlog))
        result["latency_at_400_tx_per_second"] = latency(spark, cfg, live[: 400 * (args.warmup_seconds + args.latency_seconds)],
                                                         args.warmup_seconds)
    finally:
        kafka_broker.stop(spec)
        shutil.rmtree(work, ignore_errors=True)
    name = "stream" if args.state_groups is None else f"stream_state_groups_{args.state_groups}"
    report(result, name, not (args.no_save or args.latency_only))


def stage_seconds(metrics: StreamMetrics) -> dict[str, float]:
    """The `fraud_batch_stage_seconds_total` counters, by stage."""
    return {s.labels["stage"]: s.value for m in metrics.stage_seconds.collect() for s in m.samples
            if s.name.endswith("_total")}


def throughput(spark: SparkSession, cfg: Config, backlog: list[str]) -> dict[str, object]:
    """Phase 1: produce the backlog, then drain it with availableNow."""
    sent = produce(cfg, iter(backlog))
    started = time.perf_counter()
    metrics = StreamMetrics()
    query = score_stream.start(spark, cfg, available_now=True, metrics=metrics, log_stages=True)
    query.awaitTermination()
    wall = time.perf_counter() - started
    progress = [p for p in query.recentProgress if p["numInputRows"]]
    rows = int(metrics.scored._value.get())  # numInputRows counts each message once per branch reading it
    busy = sum(p["durationMs"]["triggerExecution"] for p in progress) / 1000
    return {"produce_tx_per_second": sent["rate"],
            "throughput": {"transactions": rows, "batches": len(progress), "batch_seconds": round(busy, 1),
                           "processed_tx_per_second": round(rows / busy), "wall_seconds_incl_start": round(wall, 1),
                           "max_batch_source_rows": max(p["numInputRows"] for p in progress),
                           "batch_durations_ms": [p["durationMs"] for p in progress],
                           "batch_stage_seconds": {k: round(v, 2) for k, v in stage_seconds(metrics).items()},
                           "target_tx_per_second": 20_000}}


def latency(spark: SparkSession, cfg: Config, live: list[str], warmup: int) -> dict[str, object]:
    """Phase 2: the job runs with a 1-second trigger while `live` arrives at 400 tx/s. The first `warmup`
    seconds of it are not measured (the query's first micro-batches start Python workers and load the
    model). Latency per row, and where a micro-batch's time goes (mean per batch: Spark's durationMs, and
    the job's own stages)."""
    metrics = StreamMetrics()
    query = score_stream.start(spark, cfg, available_now=False, metrics=metrics, log_stages=True)
    feeder = threading.Thread(target=produce, args=(cfg, iter(live)), kwargs={"rate": 400})
    feeder.start()
    time.sleep(warmup)
    done, stages_before = len(query.recentProgress), stage_seconds(metrics)
    t0 = time.time()
    feeder.join()
    time.sleep(8)
    progress = [p for p in query.recentProgress[done:] if p["numInputRows"]]
    stages = {k: v - stages_before.get(k, 0.0) for k, v in stage_seconds(metrics).items()}
    query.stop()
    scores = spark.read.format("delta").load(cfg.table_path("scores"))
    lat = np.array([r.latency for r in scores.where(f"kafka_timestamp >= timestamp_seconds({int(t0) + 1})").selectExpr(
        "(unix_micros(scored_at) - unix_micros(kafka_timestamp)) / 1e6 AS latency").collect()])
    keys = sorted({k for p in progress for k in p["durationMs"]})
    return {"transactions": int(len(lat)), "p50_seconds": round(float(np.percentile(lat, 50)), 3),
            "p99_seconds": round(float(np.percentile(lat, 99)), 3), "max_seconds": round(float(lat.max()), 3),
            "trigger": str(cfg.get("stream.trigger_interval")), "target_p99_seconds": 2.0,
            "warmup_seconds_not_measured": warmup,
            "batches": len(progress), "mean_batch_rows": round(float(np.mean([p["numInputRows"] for p in progress])), 1),
            "mean_batch_duration_ms": {k: round(float(np.mean([p["durationMs"].get(k, 0) for p in progress])))
                                       for k in keys},
            "mean_batch_stage_seconds": {k: round(v / max(len(progress), 1), 3) for k, v in stages.items()},
            # per stateful operator (card, terminal): ms per batch spent updating and committing the state
            "mean_state_operator_ms": [{k: round(float(np.mean([p["stateOperators"][i][k] for p in progress])))
                                        for k in ("allUpdatesTimeMs", "commitTimeMs", "allRemovalsTimeMs")}
                                       for i in range(len(progress[0]["stateOperators"]) if progress else 0)]}


if __name__ == "__main__":
    main()
