"""`fraud demo` (what `make demo` runs): the whole story on local defaults, in a few minutes.

Starts the local Kafka broker; simulates 35 days of 2,000 cards in the bank's raw format with its defects;
cleans them (great-expectations, quarantine); trains CatBoost and registers it as champion in MLflow
(1-day label delay); starts the streaming job; replays the raw lines into the `transactions` topic at a
rate; waits until every valid one is scored; prints the alerts; confirms some of them as the fraud team
would (`labels` topic); prints the tables and the metrics URL; stops.
Everything lives under .state/ (see conf/base/catalog.yaml); `make clean-state` starts afresh.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import time
import urllib.request
from pathlib import Path

from jobs import clean, kafka_broker, score_stream, train
from jobs.alerts_cmd import format_alert, read_alerts
from jobs.common import add_common_options, config_from_args
from jobs.errors import FraudError
from jobs.lake import table_exists
from jobs.label_cmd import send_labels
from jobs.metrics import StreamMetrics
from jobs.produce import produce, raw_lines
from jobs.rawfiles import DefectRates
from jobs.session import get_spark
from jobs.simulate import simulate_to_folder
from jobs.simulator import make_spec
from models.split import Split


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--customers", type=int, default=2_000, help="cards to simulate (default 2,000)")
    parser.add_argument("--rate", type=float, default=5_000, help="transactions a second into Kafka (default 5,000)")
    parser.add_argument("--keep-broker", action="store_true", help="leave the broker running afterwards")
    add_common_options(parser)


def execute(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    spec = kafka_broker.spec_from_config(cfg)
    print(f"demo: 1/8 starting the Kafka broker on {spec.bootstrap_servers}")
    kafka_broker.start(spec)
    query = None
    try:
        kafka_broker.reset_topics(spec.bootstrap_servers, [str(cfg.get("kafka.topics.transactions")),
                                                           str(cfg.get("kafka.topics.alerts")), str(cfg.get("kafka.topics.labels"))],
                                   spec.partitions)
        # a fresh story each time: earlier demos' tables, checkpoints and models would mix in
        for location in (cfg.path("paths.lake"), cfg.path("paths.checkpoint"), cfg.path("mlflow.artifact_location")):
            if "://" not in location:
                shutil.rmtree(location, ignore_errors=True)
        uri = cfg.path("mlflow.tracking_uri")
        if uri.startswith("sqlite:///"):
            Path(uri[len("sqlite:///"):]).unlink(missing_ok=True)
        raw = Path(cfg.path("paths.lake")).parent / "demo-raw"
        shutil.rmtree(raw, ignore_errors=True)
        sim = make_spec("handbook", days=35, customers=args.customers, terminals=3_000)
        print(f"demo: 2/8 simulating 35 days of {args.customers} cards with the bank's defects into {raw}")
        manifest = simulate_to_folder(sim, raw, DefectRates())
        spark = get_spark(cfg, "demo")
        print("demo: 3/8 cleaning the raw files (great-expectations, quarantine)")
        report = clean.run(spark, cfg, str(raw))
        expected = manifest["expected_cleaning"]
        print(f"      read {report['rows_read']}, clean {report['clean']}, quarantined {report['quarantined']}, "
              f"duplicates removed {report['duplicates_removed']} (injected: {expected['quarantined']} bad rows, "
              f"{expected['duplicates_removed']} duplicates); validation report in {report['validation']}")
        print("demo: 4/8 training CatBoost (1-day label delay, threshold within the bank's 5% FPR) and registering it")
        split = Split(sim.start_date + dt.timedelta(days=14), train_days=7, delay_days=3, test_days=7, val_days=2)
        summary = train.run(spark, cfg, split, 24, target_recall=None, max_fpr=0.05)
        t = summary["test"]
        print(f"      test ROC AUC {t['roc_auc']:.3f}, AP {t['average_precision']:.3f}, recall at FPR 5% "
              f"{t['recall_at_fpr_5pct']:.3f}; {summary['registry']['model']} v{summary['registry']['version']} "
              f"is {summary['registry']['alias']}")
        print("demo: 5/8 starting the streaming job")
        metrics = StreamMetrics()
        port = metrics.serve(int(cfg.get("stream.metrics_port")))
        query = score_stream.start(spark, cfg, available_now=False, metrics=metrics)
        print(f"demo: 6/8 producing {expected['rows_read']} raw lines to Kafka at {args.rate:.0f}/s")
        sent = produce(cfg, raw_lines(raw), rate=args.rate)
        print("      " + json.dumps(sent))
        scores_path, dead_path = cfg.table_path("scores"), cfg.table_path("dead_letters")
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:  # until every message is scored or dead-lettered
            if not query.isActive:
                raise FraudError(f"demo: the streaming query stopped before scoring everything: {query.exception()}")
            done = sum(spark.read.format("delta").load(p).count() for p in (scores_path, dead_path) if table_exists(spark, p))
            if done >= sent["sent"]:
                break
            time.sleep(2)
        print("demo: 7/8 results")
        scores = spark.read.format("delta").load(scores_path)
        dead = spark.read.format("delta").load(cfg.table_path("dead_letters"))
        print(f"      scores: {scores.count()} transactions scored, {scores.where('decision').count()} flagged; "
              f"dead_letters: {dead.count()} malformed messages")
        print("      the last alerts on the alerts topic:")
        for alert in list(read_alerts(cfg, from_beginning=True, max_alerts=None, idle_ms=3000))[-5:]:
            print("      " + format_alert(alert))
        flagged = scores.where("decision").orderBy("transaction_id").select("transaction_id", "tx_fraud").limit(20).collect()
        print(f"demo: 8/8 the fraud team confirms {len(flagged)} alerts (fraud label): 1 for a true fraud, 0 for a false alarm")
        send_labels(cfg, [(r.transaction_id, int(r.tx_fraud or 0)) for r in flagged])
        labels_path = cfg.table_path("labels")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and spark.read.format("delta").load(labels_path).count() < len(flagged):
            time.sleep(2)
        labels = spark.read.format("delta").load(labels_path)
        print(f"      labels: {labels.count()} applied to the card and terminal state, by increment: "
              + ", ".join(f"{r.fraud_increment:+d}: {r['count']}" for r in labels.groupBy("fraud_increment").count().collect())
              + " (the simulated transactions carry their labels, which the state counted already: a label that"
              " repeats one adds 0; in production, transactions carry none)")
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        print(f"      metrics: http://127.0.0.1:{port}/metrics, e.g.")
        for line in text.splitlines():
            if line.startswith(("fraud_transactions_scored_total", "fraud_alerts_total", "fraud_dead_letters_total",
                                "fraud_labels_total", "fraud_processed_rows_per_second")):
                print("        " + line)
    finally:
        if query is not None:
            query.stop()
        if not args.keep_broker:
            kafka_broker.stop(spec)
    return 0
