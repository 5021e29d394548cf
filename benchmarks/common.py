"""What the benchmark scripts share: the configuration of a broker and an MLflow store of their own, a Delta
table's commits read while a job writes it, and how a result is printed and kept."""

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


def delta_commits(table: Path) -> list[dict[str, Any]]:
    """A Delta table's commits in order, from its log (no Spark session needed while a job writes it): each
    one's `version`, time (`ms`), the rows it added (`rows`) and the files it removed (`removed`)."""
    found = []
    for path in sorted((table / "_delta_log").glob("*.json")):
        rows, removed, at = 0, 0, None
        for line in path.read_text().splitlines():
            action = json.loads(line)
            if "add" in action and action["add"].get("stats"):
                rows += json.loads(action["add"]["stats"])["numRecords"]
            removed += "remove" in action
            if "commitInfo" in action:
                at = action["commitInfo"]["timestamp"]
        found.append({"version": int(path.stem), "ms": at, "rows": rows, "removed": removed})
    return found
