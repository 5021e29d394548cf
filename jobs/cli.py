"""`fraud`: the command line of the project. Each subcommand is a job module with `add_arguments(parser)`
and `execute(args)`; the same module runs under spark-submit through its own `main(argv)`."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from jobs.core.common import run_main

# subcommand -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("jobs.replay.demo", "run the system end to end on local defaults (what `make demo` runs)"),
    "backtest": (
        "jobs.replay.backtest",
        "replay simulated history through the stream with the fraud team's and the "
        "cardholders' labels; recall and FPR per day against the bank's requirement",
    ),
    "kafka": ("jobs.dev.kafka_cmd", "start, stop or inspect the local Kafka broker"),
    "simulate": (
        "jobs.simulation.simulate",
        "generate transactions in the bank's raw format (optionally with its defects)",
    ),
    "clean": ("jobs.batch.clean", "clean raw files into clean_transactions, bad rows into quarantine_transactions"),
    "features": ("jobs.batch.build_features", "build features_transactions from clean_transactions"),
    "train": ("jobs.batch.train", "train the CatBoost model, log it to MLflow, register it"),
    "evaluate": ("jobs.batch.evaluate", "score raw files with a registered model and print its metrics"),
    "stream": ("jobs.stream.score_stream", "the main job: Kafka -> stateful features -> CatBoost -> scores, alerts"),
    "alerts": ("jobs.kafka_tools.alerts_cmd", "print the alerts topic readably as alerts arrive"),
    "label": ("jobs.kafka_tools.label_cmd", "send the fraud team's confirmed labels to the labels topic"),
    "desk": ("jobs.desk.desk_cmd", "the fraud team's web page: the queue of alerts, decisions, the requirement by day"),
    "produce": ("jobs.kafka_tools.produce", "replay raw files into the transactions topic"),
    "ingest": ("jobs.stream.ingest_stream", "land the transactions topic in Delta (raw_transactions, dead_letters)"),
    "maintain": (
        "jobs.batch.maintain",
        "compact the lake's small files and vacuum old ones (OPTIMIZE, VACUUM), on a schedule",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fraud", description="Real-time card-fraud detection on Spark.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(
            name, help=help_text, description=module.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        module.add_arguments(p)
        p.set_defaults(_execute=module.execute)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    return run_main(parser, lambda args: args._execute(args), argv)


if __name__ == "__main__":
    sys.exit(main())
