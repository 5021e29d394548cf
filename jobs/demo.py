"""`fraud demo` (what `make demo` runs): the system end to end on local defaults.

Starts the local Kafka broker, simulates a few days of transactions in the bank's raw format with its
defects, cleans them (clean_transactions, quarantine_transactions), replays the raw lines into the
`transactions` topic, runs the streaming ingestion from Kafka into Delta until the topic is drained, and
prints what landed in each table.
Everything lives under .state/ (see conf/base/catalog.yaml); run `make clean-state` to start afresh.
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from jobs import clean, ingest_stream, kafka_broker
from jobs.common import add_common_options, config_from_args
from jobs.produce import produce, raw_lines
from jobs.rawfiles import DefectRates
from jobs.session import get_spark
from jobs.simulate import simulate_to_folder
from jobs.simulator import make_spec


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--days", type=int, default=3, help="days to simulate (default 3)")
    parser.add_argument("--customers", type=int, default=2_000, help="cards to simulate (default 2,000)")
    parser.add_argument("--keep-broker", action="store_true", help="leave the broker running afterwards")
    add_common_options(parser)


def execute(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    spec = kafka_broker.spec_from_config(cfg)
    print(f"demo: 1/5 starting the Kafka broker on {spec.bootstrap_servers}")
    kafka_broker.start(spec)
    try:
        kafka_broker.reset_topics(spec.bootstrap_servers, [str(cfg.get("kafka.topics.transactions"))], spec.partitions)
        raw = Path(cfg.path("paths.lake")).parent / "demo-raw"
        shutil.rmtree(raw, ignore_errors=True)
        # a fresh story each time: the lake and checkpoints of earlier demos would hold the same transactions
        for location in (cfg.path("paths.lake"), cfg.path("paths.checkpoint")):
            if "://" not in location:
                shutil.rmtree(location, ignore_errors=True)
        print(f"demo: 2/5 simulating {args.days} days of {args.customers} cards with the bank's defects into {raw}")
        manifest = simulate_to_folder(make_spec("handbook", days=args.days, customers=args.customers), raw,
                                      DefectRates())
        spark = get_spark(cfg, "demo")
        print("demo: 3/5 cleaning the raw files (great-expectations, quarantine)")
        report = clean.run(spark, cfg, str(raw))
        expected = manifest["expected_cleaning"]
        print(f"      read {report['rows_read']}, clean {report['clean']}, quarantined {report['quarantined']}, "
              f"duplicates removed {report['duplicates_removed']} (the simulator injected: {expected['quarantined']} "
              f"bad rows, {expected['duplicates_removed']} duplicates); validation report in {report.get('validation')}")
        print(f"demo: 4/5 producing {expected['rows_read']} raw lines to Kafka")
        print("      " + json.dumps(produce(cfg, raw_lines(raw))))
        print("demo: 5/5 streaming Kafka -> Delta (until the topic is drained)")
        ingest_stream.run(spark, cfg, available_now=True)
        landed = spark.read.format("delta").load(cfg.table_path("raw_transactions"))
        dead = spark.read.format("delta").load(cfg.table_path("dead_letters"))
        print(f"\nraw_transactions ({cfg.table_path('raw_transactions')}): {landed.count()} rows")
        landed.orderBy("transaction_id").show(5, truncate=False)
        print(f"dead_letters ({cfg.table_path('dead_letters')}): {dead.count()} rows")
        dead.select("partition", "offset", "payload", "errors").orderBy("partition", "offset").show(5, truncate=60)
    finally:
        if not args.keep_broker:
            kafka_broker.stop(spec)
    return 0
