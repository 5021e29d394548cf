"""Reading and writing the Delta tables and Kafka topics of the lake; the one place that knows the options."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import StructType

from jobs.core.config import Config
from jobs.core.kafka_clients import KafkaConnection

# The pages of history `last_written` reads, newest first, until it finds the writer's last commit. A replay
# repeats the writer's last batch, whose commit is nearly always among the newest few; the last page (None)
# is the whole history, so the answer is exact either way.
HISTORY_PAGES = (20, 1000, None)
# How often an append refused for a concurrent change of its table (another writer's ALTER TABLE, or the
# table created by two writers at once) is tried again from the new snapshot. A refused commit writes nothing.
CONFLICT_RETRIES = 3
# (table, app id) -> the last version this process appended. A streaming query is the only writer of its app id,
# so once it has read a table's history it need not read it again at every micro-batch (a Spark job and a log
# read per table and micro-batch). A new process starts empty and reads the history once.
_LAST_APPENDED: dict[tuple[str, str], int] = {}
# table path -> the thread computing its newest snapshot's transaction ids (see `warm_transaction_ids`)
_WARMING: dict[str, threading.Thread] = {}


def last_written(spark: SparkSession, path: str, app_id: str) -> int | None:
    """The highest `version` that `append_idempotent` appended for `app_id` to the Delta table at `path`
    (None if it never did), read from the commits' `userMetadata`, newest first."""
    from delta.tables import DeltaTable

    if not table_exists(spark, path):
        return None
    table = DeltaTable.forPath(spark, path)
    for limit in HISTORY_PAGES:
        notes = [
            r.userMetadata or ""
            for r in (table.history(limit) if limit else table.history()).select("userMetadata").collect()
        ]
        prefix = f"{app_id}/"
        versions = [int(n[len(prefix) :]) for n in notes if n.startswith(prefix) and n[len(prefix) :].isdigit()]
        if versions:
            return max(versions)
        if limit is None or len(notes) < limit:  # the whole history was read
            return None
    return None


def warm_transaction_ids(spark: SparkSession, path: str) -> None:
    """Have Delta compute, on a thread of its own, the transaction ids of the table's newest snapshot.

    Delta checks an append's transaction id (`txnAppId`) against the ids of the snapshot it commits on, and
    computes them with a reconstruction of the table's state (three Spark jobs; their cost:
    docs/benchmarks.md, `make bench-delta-append`) at every append, since each commit makes a new snapshot. Computed right
    after a commit, while the stream runs its next micro-batch, they are ready when the next append needs
    them (Delta keeps them with the snapshot); the append then costs what one without the id does. If
    another writer commits meanwhile, the next append computes them itself, as without this. Best effort:
    the computation only fills Delta's own cache, so a failure of it (Spark stopping) changes nothing."""
    running = _WARMING.get(path)
    if running is not None and running.is_alive():
        return

    def compute() -> None:
        try:
            jvm = spark.sparkContext._jvm
            assert jvm is not None
            log = jvm.org.apache.spark.sql.delta.DeltaLog.forTable(spark._jsparkSession, path)
            log.unsafeVolatileSnapshot().setTransactions()
        except Exception:  # noqa: BLE001 - a cache left cold is computed by the next append itself
            pass

    _WARMING[path] = threading.Thread(target=compute, name=f"warm {path}", daemon=True)
    _WARMING[path].start()


def append_idempotent(
    df: DataFrame,
    path: str,
    app_id: str,
    version: int,
    partition_by: Sequence[str] = (),
    properties: Mapping[str, str] | None = None,
    keep_warm: bool = False,
) -> bool:
    """Append `df` to the Delta table at `path` once per (app_id, version); return False if skipped.

    Versions of an app_id increase (a streaming batch id, a run number): an append whose version is not
    above the last one written for its app_id is a replay (after a restart) and is skipped, so nothing is
    duplicated. Two checks, for two cases:
    - a replay by the same process or a later one: found before writing, from the commit's `userMetadata`
      "app_id/version" (DESCRIBE HISTORY shows it), read once per process and table, then remembered;
    - two writers of one version at once (a driver thought dead and restarted while the old one still runs
      on the same checkpoint): the commit also carries Delta's transaction id (txnAppId = app_id,
      txnVersion = version), which Delta checks inside the commit. The second writer's commit is refused
      as a conflict (then found by the first check when tried again) or skipped by Delta: never appended.
    `properties` (delta.* table properties) are set when the append creates the table; see
    `set_properties` for an existing one. A commit refused because another writer changed the table
    meanwhile (e.g. `fraud stream` setting properties at start while `fraud ingest` appends dead letters)
    is tried again, up to CONFLICT_RETRIES times. `keep_warm` (for a writer that appends again soon, as
    the stream does at every micro-batch): `warm_transaction_ids` after the commit.
    """
    from delta.exceptions import (
        ConcurrentAppendException,
        ConcurrentTransactionException,
        ConcurrentWriteException,
        DeltaConcurrentModificationException,
        MetadataChangedException,
        ProtocolChangedException,
    )

    conflicts = (
        ConcurrentAppendException,
        ConcurrentTransactionException,
        ConcurrentWriteException,
        DeltaConcurrentModificationException,
        MetadataChangedException,
        ProtocolChangedException,
    )
    for attempt in range(CONFLICT_RETRIES + 1):
        last = _LAST_APPENDED.get((path, app_id)) if attempt == 0 else None
        if last is None:
            last = last_written(df.sparkSession, path, app_id)
        if last is not None and version <= last:
            return False
        writer = (
            df.write.format("delta")
            .mode("append")
            .option("userMetadata", f"{app_id}/{version}")
            .option("txnAppId", app_id)
            .option("txnVersion", str(version))
            .option("mergeSchema", "false")
            .options(**dict(properties or {}))  # Delta keeps delta.* options as table properties on creation only
        )
        if partition_by:
            writer = writer.partitionBy(*partition_by)
        try:
            writer.save(path)
            _LAST_APPENDED[(path, app_id)] = version
            if keep_warm:
                warm_transaction_ids(df.sparkSession, path)
            return True
        except conflicts as error:
            if attempt == CONFLICT_RETRIES:
                raise
            print(
                f"lake: the append {app_id}/{version} to {path} met a concurrent change of the table "
                f"({type(error).__name__}); trying again ({attempt + 1} of {CONFLICT_RETRIES})",
                file=sys.stderr,
            )
            time.sleep(0.5 * (attempt + 1))
    return False  # not reached: the last attempt returns or raises


def set_properties(spark: SparkSession, path: str, properties: Mapping[str, str]) -> dict[str, str]:
    """Give the Delta table at `path`, if it exists, these table properties (ALTER TABLE, one commit, only
    for those that differ); return the ones changed."""
    if not table_exists(spark, path) or not properties:
        return {}
    current = describe_detail(spark, path)["properties"] or {}
    changed = {k: str(v) for k, v in properties.items() if current.get(k) != str(v)}
    if changed:
        assignments = ", ".join(f"'{k}' = '{v}'" for k, v in changed.items())
        spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ({assignments})")
    return changed


def add_columns(spark: SparkSession, path: str, schema: StructType) -> list[str]:
    """Give the Delta table at `path`, if it exists, the columns of `schema` it lacks (nullable, at the end,
    one ALTER TABLE); return their names. Appends resolve columns by name, so they then fit; rows written
    before hold null there."""
    if not table_exists(spark, path):
        return []
    have = set(spark.read.format("delta").load(path).columns)
    missing = [f for f in schema.fields if f.name not in have]
    if missing:
        columns = ", ".join(f"`{f.name}` {f.dataType.simpleString()}" for f in missing)
        spark.sql(f"ALTER TABLE delta.`{path}` ADD COLUMNS ({columns})")
    return [f.name for f in missing]


def read_topic_stream(spark: SparkSession, cfg: Config, *roles: str) -> DataFrame:
    """Subscribe to the topics of `kafka.topics.<role>` (one or more) with the configured Kafka options.

    The read tasks' consumers fetch with `kafka.fetch_max_wait_ms`, the longest the broker may hold a fetch
    that finds nothing new: with Kafka's default (500 ms) every micro-batch's read tasks wait about that long
    whatever their size (docs/benchmarks.md)."""
    return (
        spark.readStream.format("kafka")
        .options(**KafkaConnection.from_config(cfg).spark())
        .option("subscribe", ",".join(str(cfg.get(f"kafka.topics.{role}")) for role in roles))
        .option("startingOffsets", str(cfg.get("kafka.starting_offsets")))
        .option("maxOffsetsPerTrigger", str(cfg.get("kafka.max_offsets_per_trigger")))
        .option("kafka.fetch.max.wait.ms", str(cfg.get("kafka.fetch_max_wait_ms")))
        .load()
    )


def copy_to_hadoop(spark: SparkSession, local: Path, dest: str) -> None:
    """Copy one local file to any Hadoop path (s3a://, hdfs://) with the session's Hadoop configuration."""
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    target = jvm.org.apache.hadoop.fs.Path(dest)
    fs = target.getFileSystem(conf)
    fs.copyFromLocalFile(False, True, jvm.org.apache.hadoop.fs.Path(str(local)), target)


def list_files(spark: SparkSession, location: str, suffix: str = ".txt", recursive: bool = False) -> list[str]:
    """The files ending in `suffix` at a location (a file, or a folder's direct children; with `recursive`,
    everything under it), on any Hadoop file system, as fully qualified URIs sorted by name. Files and folders
    whose name starts with `_` or `.` (a Delta log, Spark's markers) are left out."""
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    path = jvm.org.apache.hadoop.fs.Path(location)
    fs = path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    if not fs.exists(path):
        return []
    status = fs.getFileStatus(path)
    if status.isFile():
        entries = [status.getPath()]
    elif recursive:
        found, entries = fs.listFiles(path, True), []
        while found.hasNext():
            entries.append(found.next().getPath())
    else:
        entries = [e.getPath() for e in fs.listStatus(path) if e.isFile()]
    root = str(path.toUri().getPath()).rstrip("/")
    return sorted(
        str(p)
        for p in entries
        if p.getName().endswith(suffix)
        and not any(part.startswith(("_", ".")) for part in str(p.toUri().getPath())[len(root) :].split("/") if part)
        and not p.getName().startswith(("_", "."))
    )


def read_text(spark: SparkSession, location: str) -> str:
    """The text of a small file, on any Hadoop file system."""
    return read_bytes(spark, location).decode()


def read_bytes(spark: SparkSession, location: str) -> bytes:
    """The bytes of a file of a few megabytes at most, on any Hadoop file system."""
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    path = jvm.org.apache.hadoop.fs.Path(location)
    stream = path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()).open(path)
    try:
        return bytes(jvm.org.apache.commons.io.IOUtils.toByteArray(stream))
    finally:
        stream.close()


def write_bytes(spark: SparkSession, location: str, data: bytes) -> None:
    """Write a file of a few megabytes at most, on any Hadoop file system, durably and whole: the bytes go to
    a hidden file beside it, synced, then renamed to `location` (replacing a file there), so that a reader
    finds the whole file or none."""
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    target = jvm.org.apache.hadoop.fs.Path(location)
    hidden = jvm.org.apache.hadoop.fs.Path(target.getParent(), f".{target.getName()}.writing")
    fs = target.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    stream = fs.create(hidden, True)
    try:
        stream.write(bytearray(data))
        if stream.hasCapability("hsync"):  # HDFS, a local disk; an object store's file is whole once closed
            stream.hsync()
    finally:
        stream.close()
    fs.delete(target, False)
    if not fs.rename(hidden, target):
        raise OSError(f"{hidden}: could not rename it to {target}")


def delete_file(spark: SparkSession, location: str) -> None:
    """Delete a file (nothing if there is none), on any Hadoop file system."""
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    path = jvm.org.apache.hadoop.fs.Path(location)
    path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()).delete(path, False)


def path_exists(spark: SparkSession, location: str) -> bool:
    """True if a file or folder exists at a location, on any Hadoop file system."""
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    path = jvm.org.apache.hadoop.fs.Path(location)
    return bool(path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()).exists(path))


def describe_detail(spark: SparkSession, path: str) -> Any:
    """DESCRIBE DETAIL of the Delta table at `path`: one row (numFiles, partitionColumns, properties, ...)."""
    return spark.sql(f"DESCRIBE DETAIL delta.`{path}`").collect()[0]


def table_exists(spark: SparkSession, path: str) -> bool:
    """True if a Delta table exists at `path`."""
    from delta.tables import DeltaTable

    return bool(DeltaTable.isDeltaTable(spark, path))


def publish_folder(spark: SparkSession, local: Path, dest: str) -> None:
    """Copy a local folder's files to a location: a local folder, or any Hadoop path."""
    import shutil

    if "://" not in dest or dest.startswith("file://"):
        shutil.copytree(local, dest.removeprefix("file://"), dirs_exist_ok=True)
        return
    for path in local.rglob("*"):
        if path.is_file():
            copy_to_hadoop(spark, path, dest.rstrip("/") + "/" + str(path.relative_to(local)))
