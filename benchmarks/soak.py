"""Soak run of `fraud stream` on a real broker (`make soak`): a benchmark, not a timed test.

    .venv/bin/python benchmarks/soak.py [--minutes 30] [--rate 400]

A broker of its own on free ports (this machine only), a registered model, and `fraud stream` as a process
of its own, restarted by this script whenever it exits (as a scheduler would). For `--minutes`, transactions
of the `otus` preset (20,000 cards) arrive at `--rate` a second, with:
- an idle gap of `--idle-seconds` every `--idle-every-minutes` minutes;
- every 10 s, 5 transactions sent again (a producer's retries) and 2 malformed messages;
- every 30 s, labels of 10 transactions sent at least 2 minutes before (with their card, terminal, time);
- at a third of the run, the broker stopped for 20 s; at two thirds, `kill -9` of the job's process group.
Every 5 s the script records whether the job's process is alive. At the end it waits until every transaction
is in a table (or `--drain-seconds` pass), stops the job, and checks the tables against what the broker
acknowledged (every send's result is kept):
- every transaction is in `scores` exactly once, or in `dead_letters` for a rule of the cleaning suite it
  breaks (the simulator makes a few), never both;
- every malformed message, every re-send of a scored transaction (as a duplicate) and every re-send of a
  rule-breaking one (for the rule again) is in `dead_letters` exactly once;
- every label message is in `labels` or (a label of a transaction not scored when it came) in
  `dead_letters`, exactly once.
Prints one JSON object and keeps it in benchmarks/results/soak.json.
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import delta_commits, own_broker_overrides, report  # noqa: E402
from jobs.core.config import Config, load_config  # noqa: E402
from jobs.dev import kafka_broker, kafka_topics  # noqa: E402
from jobs.kafka_tools.label_cmd import label_record  # noqa: E402
from jobs.kafka_tools.produce import simulated_lines, transaction_record, without_labels  # noqa: E402
from jobs.simulation.simulator import make_spec  # noqa: E402
from tests.test_stream_restart import register_model  # noqa: E402

MALFORMED = [b"not json", b'{"transaction_id": "x", "customer_id": 1}']


class Job:
    """`fraud stream` as a process of its own (its own process group, so that kill -9 takes its JVM too),
    started again whenever it is found dead."""

    def __init__(self, cfg: Config, work: Path) -> None:
        self.argv = [
            str(ROOT / ".venv/bin/fraud"),
            "stream",
            "--lake",
            cfg.path("paths.lake"),
            "--checkpoint",
            cfg.path("paths.checkpoint"),
            "--mlflow-uri",
            str(cfg.get("mlflow.tracking_uri")),
            "--bootstrap-servers",
            str(cfg.get("kafka.bootstrap_servers")),
            "--set",
            "stream.metrics_port=0",
        ]
        self.work, self.starts, self.exits = work, 0, []  # type: ignore[var-annotated]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self.work / f"stream-{self.starts}.log").open("wb")
        self.process = subprocess.Popen(
            self.argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.starts += 1

    def alive(self) -> bool:
        """True if running; if it exited, record its code and start it again (the scheduler's part)."""
        assert self.process is not None
        code = self.process.poll()
        if code is None:
            return True
        self.exits.append(code)
        self.start()
        return False

    def kill9(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.exits.append(-9)
        self.start()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--rate", type=int, default=400)
    parser.add_argument("--idle-every-minutes", type=float, default=5)
    parser.add_argument("--idle-seconds", type=int, default=60)
    parser.add_argument("--drain-seconds", type=int, default=600)
    parser.add_argument("--name", default="soak")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="soak-"))
    cfg = load_config(
        "local",
        {**own_broker_overrides(work), "paths.lake": str(work / "lake"), "paths.checkpoint": str(work / "checkpoints")},
    )
    spec = kafka_broker.spec_from_config(cfg)
    kafka_broker.start(spec)
    topics = {role: str(cfg.get(f"kafka.topics.{role}")) for role in ("transactions", "labels")}
    kafka_topics.create_topics(spec.bootstrap_servers, [*topics.values(), str(cfg.get("kafka.topics.alerts"))], 2)
    register_model(str(cfg.get("mlflow.tracking_uri")), work / "artifacts", label_delay_hours=168)
    seconds = int(args.minutes * 60)
    days = args.rate * seconds // 39_000 + 2
    lines = without_labels(simulated_lines(make_spec("otus", customers=20_000, days=days)))
    job = Job(cfg, work)
    job.start()
    counts = {"transactions": 0, "resent": 0, "malformed": 0, "labels": 0}
    futures: dict[str, list[tuple[Any, int | None]]] = {kind: [] for kind in counts}  # (send's future, id)
    samples: list[bool] = []
    sent_at: list[float] = []  # time each transaction id was sent (ids are 0..n-1, in order)
    sent_values: list[tuple[bytes, bytes]] = []  # and its message, for the re-sends
    result: dict[str, Any] = {
        "benchmark": "soak",
        "machine": "2 cores, local[2]",
        "command": " ".join(sys.argv[1:]),
        "minutes": args.minutes,
        "rate": args.rate,
    }
    events: list[dict[str, Any]] = []
    try:
        from kafka import KafkaProducer

        producer = KafkaProducer(bootstrap_servers=spec.bootstrap_servers, acks="all", linger_ms=5, retries=20)

        def send(kind: str, topic: str, key: bytes, value: bytes, transaction_id: int | None = None) -> None:
            futures[kind].append((producer.send(topic, key=key, value=value), transaction_id))
            counts[kind] += 1

        started = time.monotonic()
        next_sample = started
        broker_down_at, kill_at = started + seconds / 3, started + 2 * seconds / 3
        broker_up_at: float | None = None
        killed = False
        second = 0
        while second < seconds:
            tick = started + second
            now = time.monotonic()
            if now < tick:
                time.sleep(tick - now)
            if now >= next_sample:
                samples.append(job.alive())
                next_sample += 5
            if broker_up_at is None and time.monotonic() >= broker_down_at:
                producer.flush()
                kafka_broker.stop(spec)
                events.append({"at_s": round(time.monotonic() - started), "event": "broker stopped for 20 s"})
                broker_up_at = time.monotonic() + 20
            if broker_up_at is not None and broker_up_at > 0 and time.monotonic() >= broker_up_at:
                kafka_broker.start(spec)
                events.append({"at_s": round(time.monotonic() - started), "event": "broker started"})
                broker_up_at = 0.0
            if not killed and time.monotonic() >= kill_at:
                job.kill9()
                killed = True
                events.append({"at_s": round(time.monotonic() - started), "event": "kill -9 of fraud stream"})
            broker_is_down = broker_up_at is not None and broker_up_at > 0
            idle = (second % int(args.idle_every_minutes * 60)) >= int(args.idle_every_minutes * 60) - args.idle_seconds
            if not broker_is_down and not idle:
                for line in (next(lines) for _ in range(args.rate)):
                    key, value = transaction_record(line)
                    send("transactions", topics["transactions"], key, value, len(sent_values))
                    sent_at.append(time.monotonic())
                    sent_values.append((key, value))
                if second % 10 == 0:
                    for i in range(max(0, counts["transactions"] - 2000), max(0, counts["transactions"] - 2000) + 5):
                        # a producer's retry of an old transaction: its exact message again
                        key, value = sent_values[i]
                        send("resent", topics["transactions"], key, value, i)
                    for value in MALFORMED:
                        send("malformed", topics["transactions"], b"bad", value)
                if second % 30 == 0:
                    cut = bisect.bisect_left(sent_at, time.monotonic() - 120)  # sent 2 minutes ago
                    for transaction_id in range(max(0, cut - 10), cut):
                        # with its transaction's place, as the fraud team has it from the alert
                        tx = json.loads(sent_values[transaction_id][1])
                        key, value = label_record(
                            transaction_id, transaction_id % 2, tx["customer_id"], tx["terminal_id"], tx["tx_datetime"]
                        )
                        send("labels", topics["labels"], key, value, transaction_id)
            second += 1
        producer.flush()
        result["events"] = events
        result["sent"] = counts  # what the producer was handed
        acked = {kind: [i for future, i in sent if future.succeeded()] for kind, sent in futures.items()}
        result["acknowledged"] = {kind: len(ids) for kind, ids in acked.items()}  # what the broker took
        result["drain_seconds"] = drain(cfg, job, sum(len(ids) for ids in acked.values()), args.drain_seconds)
        samples.append(job.alive())
        job.stop()
        result["process"] = {
            "samples": len(samples),
            "alive_share": round(sum(samples) / len(samples), 4),
            "starts": job.starts,
            "exits": job.exits,
        }
        result["tables"] = check_tables(cfg, acked, topics)
    finally:
        job.stop()
        kafka_broker.stop(spec)
        logs = sorted(work.glob("stream-*.log"))
        result["logs_last_line"] = {p.name: (p.read_text(errors="replace").splitlines() or [""])[-1] for p in logs}
        shutil.rmtree(work, ignore_errors=True)
    report(result, args.name, not args.no_save)


def rows_in(cfg: Config, table: str) -> int:
    """Rows of a table from its Delta log's add actions (no Spark session needed while the job runs)."""
    commits = delta_commits(Path(cfg.table_path(table)))
    if any(c["removed"] for c in commits):
        raise RuntimeError(f"{table} was compacted during the soak: count with Spark instead")
    return sum(c["rows"] for c in commits)


def drain(cfg: Config, job: Job, expected: int, limit: int) -> float:
    """Wait until every acknowledged message is a row of `scores`, `dead_letters` or `labels`."""
    started = time.monotonic()
    while sum(rows_in(cfg, t) for t in ("scores", "dead_letters", "labels")) < expected:
        job.alive()
        if time.monotonic() - started > limit:
            break
        time.sleep(2)
    return round(time.monotonic() - started, 1)


def check_tables(cfg: Config, acked: dict[str, list[int | None]], topics: dict[str, str]) -> dict[str, Any]:
    """Every acknowledged message accounted for, once: each transaction scored, or dead-lettered for a rule it
    breaks (with the rule named); each re-send of a scored transaction a duplicate; each malformed message a
    dead letter; each label in `labels` or (a label of a transaction not scored) a dead letter."""
    from pyspark.sql import functions as F

    from jobs.core.session import get_spark

    spark = get_spark(cfg, "soak-check")
    scores = spark.read.format("delta").load(cfg.table_path("scores"))
    scored = {r["transaction_id"]: r["count"] for r in scores.groupBy("transaction_id").count().collect()}
    dead = spark.read.format("delta").load(cfg.table_path("dead_letters"))
    text = F.array_join("errors", " | ")
    kind = (
        F.when(F.col("topic") == topics["labels"], "label")
        .when(text.contains("already counted"), "duplicate")
        .when(F.col("payload").isin([m.decode() for m in MALFORMED]), "malformed")
        .otherwise("rule")
    )
    letters = dead.select(
        kind.alias("kind"),
        F.get_json_object("payload", "$.transaction_id").try_cast("long").alias("transaction_id"),
        text.alias("errors"),
        "topic",
        "partition",
        "offset",
    ).toPandas()
    by_kind = letters.groupby("kind").size().to_dict()
    rule = letters[letters["kind"] == "rule"]
    rule_ids = set(rule["transaction_id"].dropna().astype(int))
    # a re-send of a transaction dead-lettered for a rule breaks the rule again: a rule dead letter too
    resent = acked["resent"]
    resent_of_scored = [i for i in resent if i in scored]
    expected_rule_rows = sum(1 for i in acked["transactions"] if i in rule_ids) + sum(
        1 for i in resent if i in rule_ids
    )
    transactions = set(i for i in acked["transactions"] if i is not None)
    labels = spark.read.format("delta").load(cfg.table_path("labels"))
    labels_rows = labels.count()
    return {
        "scored_rows": int(sum(scored.values())),
        "scored_distinct": len(scored),
        "scored_twice": sum(1 for c in scored.values() if c > 1),
        "dead_letters_by_kind": {k: int(v) for k, v in by_kind.items()},
        "rule_dead_letters": {
            "transactions": len(rule_ids),
            "rows": len(rule),
            "reasons": sorted({e.split(":")[0] for e in rule["errors"]}),
        },
        "scored_and_rule_dead": len(rule_ids & set(scored)),
        "missing": len(transactions - set(scored) - rule_ids),
        "unexpected_scored": len(set(scored) - transactions),
        "dead_letters_repeated": int(dead.groupBy("topic", "partition", "offset").count().where("count > 1").count()),
        "labels_rows": labels_rows,
        "labels_repeated": labels.groupBy("topic", "partition", "offset").count().where("count > 1").count(),
        "every_transaction_once": transactions == set(scored) | rule_ids
        and not rule_ids & set(scored)
        and all(c == 1 for c in scored.values()),
        "every_bad_message_dead_lettered": by_kind.get("duplicate", 0) == len(resent_of_scored)
        and by_kind.get("malformed", 0) == len(acked["malformed"])
        and len(rule) == expected_rule_rows,
        "every_label_accounted": labels_rows + by_kind.get("label", 0) == len(acked["labels"]),
    }


if __name__ == "__main__":
    main()
