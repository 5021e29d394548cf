"""Benchmark of the streaming job (`fraud stream`): throughput and end-to-end latency on this machine.

    .venv/bin/python benchmarks/stream.py [--transactions 200000] [--latency-seconds 30]

A broker of its own (free ports), a registered model, and simulated transactions (the bank's 1,000
terminals). Phase 1, throughput: N transactions are produced first, then the full job (features in state,
CatBoost, both Delta sinks, alerts topic) drains them in micro-batches of up to 100,000: processed tx/s =
rows / summed batch durations. Phase 2, latency: the job runs with a 1-second trigger while transactions
arrive at 400 tx/s; latency = Kafka timestamp -> scored, p50 / p99 over the rows of that phase.
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

from jobs import kafka_broker, score_stream  # noqa: E402
from jobs.config import load_config  # noqa: E402
from jobs.metrics import StreamMetrics  # noqa: E402
from benchmarks.common import own_broker_overrides, report  # noqa: E402
from jobs.produce import produce, simulated_lines  # noqa: E402
from jobs.session import get_spark  # noqa: E402
from jobs.simulator import make_spec  # noqa: E402
from tests.test_stream_restart import register_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transactions", type=int, default=200_000)
    parser.add_argument("--latency-seconds", type=int, default=30)
    parser.add_argument("--state-groups", type=int, default=None, help="stream.state_groups (default: conf's)")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-stream-"))
    groups = {} if args.state_groups is None else {"stream.state_groups": args.state_groups}
    cfg = load_config("local", {**own_broker_overrides(work), "paths.lake": str(work / "lake"),
                                "paths.checkpoint": str(work / "chk"), "stream.trigger_interval": "1 second", **groups})
    spec = kafka_broker.spec_from_config(cfg)
    kafka_broker.start(spec)
    result: dict[str, object] = {"benchmark": "stream", "machine": "2 cores, local[2]",
                                 "state_buckets": cfg.get("stream.state_buckets"), "state_groups": cfg.get("stream.state_groups")}
    try:
        register_model(cfg.path("mlflow.tracking_uri"), work / "artifacts", label_delay_hours=168)
        days = max(1, args.transactions // 39_000 + 1)
        lines = list(simulated_lines(make_spec("otus", customers=20_000, days=days + 1)))
        backlog, live = lines[: args.transactions], lines[args.transactions:]
        sent = produce(cfg, iter(backlog))
        result["produce_tx_per_second"] = sent["rate"]
        spark = get_spark(cfg, "bench-stream")
        started = time.perf_counter()
        metrics = StreamMetrics()
        query = score_stream.start(spark, cfg, available_now=True, metrics=metrics, log_stages=True)
        query.awaitTermination()
        wall = time.perf_counter() - started
        progress = [p for p in query.recentProgress if p["numInputRows"]]
        rows = int(metrics.scored._value.get())  # numInputRows counts each message once per branch reading it
        busy = sum(p["durationMs"]["triggerExecution"] for p in progress) / 1000
        result["throughput"] = {"transactions": rows, "batches": len(progress), "batch_seconds": round(busy, 1),
                                "processed_tx_per_second": round(rows / busy), "wall_seconds_incl_start": round(wall, 1),
                                # Spark counts each message once per branch of the query that reads it (3)
                                "max_batch_source_rows": max(p["numInputRows"] for p in progress),
                                "batch_durations_ms": [p["durationMs"] for p in progress],
                                "batch_stage_seconds": {s.labels["stage"]: round(s.value, 2)
                                                        for m in metrics.stage_seconds.collect() for s in m.samples
                                                        if s.name.endswith("_total")},
                                "target_tx_per_second": 20_000}
        # phase 2: a live load of 400 tx/s
        query = score_stream.start(spark, cfg, available_now=False, metrics=metrics)
        time.sleep(5)
        t0 = time.time()
        feeder = threading.Thread(target=produce, args=(cfg, iter(live[: 400 * args.latency_seconds])),
                                  kwargs={"rate": 400})
        feeder.start()
        feeder.join()
        time.sleep(8)
        query.stop()
        scores = spark.read.format("delta").load(cfg.table_path("scores"))
        lat = np.array([r.latency for r in scores.where(f"kafka_timestamp >= timestamp_seconds({int(t0)})").selectExpr(
            "(unix_micros(scored_at) - unix_micros(kafka_timestamp)) / 1e6 AS latency").collect()])
        result["latency_at_400_tx_per_second"] = {
            "transactions": int(len(lat)), "p50_seconds": round(float(np.percentile(lat, 50)), 3),
            "p99_seconds": round(float(np.percentile(lat, 99)), 3), "max_seconds": round(float(lat.max()), 3),
            "trigger": "1 second", "target_p99_seconds": 2.0}
    finally:
        kafka_broker.stop(spec)
        shutil.rmtree(work, ignore_errors=True)
    name = "stream" if args.state_groups is None else f"stream_state_groups_{args.state_groups}"
    report(result, name, not args.no_save)


if __name__ == "__main__":
    main()
