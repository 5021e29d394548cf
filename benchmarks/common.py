"""What the benchmark scripts share: the configuration of a broker and an MLflow store of their own, and
how a result is printed and kept."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jobs.core.provenance import run_stamp
from jobs.dev.kafka_broker import free_port

ROOT = Path(__file__).resolve().parent.parent


def own_broker_overrides(work: Path) -> dict[str, Any]:
    """Config overrides for a KRaft broker on free ports and an MLflow SQLite store, all under `work`."""
    port = free_port()
    return {
        "spark.ui_enabled": False,
        "kafka.broker.state_dir": str(work / "kafka"),
        "kafka.broker.port": port,
        "kafka.broker.controller_port": free_port(),
        "kafka.bootstrap_servers": f"127.0.0.1:{port}",
        "kafka.max_offsets_per_trigger": 100_000,
        "stream.metrics_port": 0,
        "mlflow.tracking_uri": f"sqlite:///{work}/mlflow.db",
        "mlflow.artifact_location": str(work / "artifacts"),
    }


def report(result: dict[str, Any], name: str, save: bool, shown: dict[str, Any] | None = None) -> None:
    """Print the result as JSON (or `shown`, a shorter form of it) and keep it in benchmarks/results/NAME.json,
    with the commit it ran on and the day (`run`, unless the result has it already)."""
    result.setdefault("run", run_stamp())
    print(json.dumps(result if shown is None else shown, indent=2))
    if save:
        (ROOT / "benchmarks/results" / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
