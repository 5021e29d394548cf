"""Where the JVM's time goes: a Java Flight Recorder recording of the driver JVM (in local mode, the executors
too) started and stopped around one phase of a benchmark with `jcmd`, and its CPU samples counted by what
they were doing. Python workers (the pandas UDFs, CatBoost) are processes of their own: not in it."""

from __future__ import annotations

import collections
import re
import subprocess
from pathlib import Path
from typing import Any

# a sample belongs to the first category one of whose markers occurs in a frame, from the top of its stack
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("stateful operators (features/jvm)", ("io.frauddetect.",)),
    (
        "state store (RocksDB, transformWithState)",
        ("rocksdb", "RocksDB", "transformwithstate.", "StateStore", "statefulprocessor"),
    ),
    ("cache of the micro-batch (persist)", ("execution.columnar.",)),
    ("JSON parse and write", ("catalyst.json.", "Jackson", "jackson", "variant.", "JsonToStructs", "StructsToJson")),
    ("Parquet write and Delta statistics", ("parquet", "DeltaFileFormatWriter", "delta.stats")),
    ("Kafka read and write", ("kafka010", "apache.kafka")),
    ("Arrow exchange with the Python workers", ("api.python", "execution.python", "arrow.")),
    ("shuffle", ("shuffle.", "UnsafeExternalSorter", "UnsafeExternalRowSorter", "serializer.")),
    ("Delta log and other Delta", ("sql.delta.",)),
    ("class loading", ("ClassLoader",)),
    (
        "generated code and expressions (projections, row conversion)",
        ("GeneratedClass", "catalyst.expressions", "catalyst.encoders"),
    ),
]
FRAME = re.compile(r"^\s+([\w$.<>/]+)\(", re.M)


def jvm_pid(spark: Any) -> int:
    return int(spark._jvm.java.lang.ProcessHandle.current().pid())


def start(spark: Any, name: str) -> None:
    subprocess.run(
        ["jcmd", str(jvm_pid(spark)), "JFR.start", f"name={name}", "settings=profile"], check=True, capture_output=True
    )


def stop(spark: Any, name: str, path: Path) -> None:
    subprocess.run(
        ["jcmd", str(jvm_pid(spark)), "JFR.stop", f"name={name}", f"filename={path}"], check=True, capture_output=True
    )


def cpu_shares(recording: Path) -> dict[str, Any]:
    """The recording's execution samples per category (CATEGORIES, else "other"), as shares of all samples."""
    printed = subprocess.run(
        ["jfr", "print", "--events", "jdk.ExecutionSample", "--stack-depth", "96", str(recording)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    counts: collections.Counter[str] = collections.Counter()
    for event in printed.split("jdk.ExecutionSample {")[1:]:
        frames = FRAME.findall(event.split("stackTrace = [", 1)[-1])
        if not frames:
            continue
        counts[
            next(
                (name for frame in frames for name, markers in CATEGORIES if any(m in frame for m in markers)), "other"
            )
        ] += 1
    total = sum(counts.values())
    return {
        "jvm_cpu_samples": total,
        "share_of_jvm_samples": {k: round(v / total, 3) for k, v in counts.most_common()} if total else {},
    }
