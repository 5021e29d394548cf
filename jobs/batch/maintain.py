"""`fraud maintain`: compact the lake's small files and delete the files no table version needs any more
(Delta's OPTIMIZE and VACUUM), as a scheduled job next to the stream.

    fraud maintain                                    # every table of `tables:` that exists
    fraud maintain --tables scores,alerts --settled-days 2 --vacuum-hours 336
    spark-submit/submit.sh jobs/batch/maintain.py --env cluster

Why: the stream appends a few files to `scores` (and `alerts`, `dead_letters`, `labels`) at every micro-batch,
tens of thousands of small files a day; analysts' queries slow down with the file count, and S3 bills every
request. OPTIMIZE rewrites them into files of about 1 GB. It commits with `dataChange = false`, so the
stream reading `labels` as a Delta source skips the commit, and it does not conflict with the stream's
appends (they only add files). A table partitioned by `tx_date` is compacted only in partitions more than
--settled-days days old, which the stream no longer writes (a transaction dated more than 24 hours before
its Kafka timestamp is possible but rare): the partitions being written are left for the next run.

VACUUM then deletes the data files that OPTIMIZE (or an overwrite) removed from the table more than
--vacuum-hours hours ago (default: the table's `delta.deletedFileRetentionDuration`, 7 days unless set).
Those hours are how far back time travel and a lagging Delta stream reader can still go; Delta refuses
a shorter retention than the table's own, and so does this job.

Prints one JSON object: per table, the files before and after, the partitions compacted, the files vacuumed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from typing import Any

from pyspark.sql import SparkSession

from jobs.core.common import add_common_options, config_from_args, job_main
from jobs.core.config import Config
from jobs.core.errors import FraudError
from jobs.core.lake import describe_detail, list_files, table_exists
from jobs.core.session import get_spark

PARTITION_DATE = "tx_date"


def _retention_hours(properties: dict[str, str]) -> float:
    """The table's `delta.deletedFileRetentionDuration` in hours (Delta's default: 7 days)."""
    text = properties.get("delta.deletedFileRetentionDuration", "interval 7 days").strip().lower()
    parts = text.removeprefix("interval").split()
    units = {"hour": 1.0, "day": 24.0, "week": 168.0, "minute": 1 / 60, "second": 1 / 3600}
    try:
        return sum(
            float(n) * next(v for k, v in units.items() if u.startswith(k)) for n, u in zip(parts[::2], parts[1::2])
        )
    except (ValueError, StopIteration):
        raise FraudError(
            f"delta.deletedFileRetentionDuration: expected e.g. 'interval 7 days', found {text!r}"
        ) from None


def maintain_table(
    spark: SparkSession, path: str, settled_before: dt.date | None, vacuum_hours: float | None, vacuum: bool = True
) -> dict[str, Any]:
    """OPTIMIZE then VACUUM one Delta table; return what was done.

    Args:
        settled_before: a table partitioned by `tx_date` is compacted only in partitions before this day
            (None: all of them).
        vacuum_hours: retention of VACUUM (None: the table's own retention); never less than the table's.
    """
    from delta.tables import DeltaTable

    detail = describe_detail(spark, path)
    table_retention = _retention_hours(dict(detail["properties"] or {}))
    if vacuum and vacuum_hours is not None and vacuum_hours < table_retention:
        raise FraudError(
            f"--vacuum-hours: expected at least {table_retention:g} hours, the "
            f"delta.deletedFileRetentionDuration of {path}, found {vacuum_hours:g}: a shorter retention "
            "deletes files a lagging reader or a time travel query may still need"
        )
    table = DeltaTable.forPath(spark, path)
    optimize = table.optimize()
    where = None
    if PARTITION_DATE in list(detail["partitionColumns"]) and settled_before is not None:
        where = f"{PARTITION_DATE} < DATE'{settled_before.isoformat()}'"
        optimize = optimize.where(where)
    compaction = optimize.executeCompaction().collect()[0]["metrics"]
    out: dict[str, Any] = {
        "files_before": int(detail["numFiles"]),
        "files_after": int(describe_detail(spark, path)["numFiles"]),
        "compacted": {
            "where": where,
            "files_removed": int(compaction["numFilesRemoved"]),
            "files_added": int(compaction["numFilesAdded"]),
            "partitions": int(compaction["partitionsOptimized"]),
        },
    }
    if vacuum:
        hours = table_retention if vacuum_hours is None else vacuum_hours
        on_disk = len(list_files(spark, path, ".parquet", recursive=True))  # referenced or not: what VACUUM may delete
        table.vacuum(hours)
        out["vacuumed"] = {
            "retention_hours": hours,
            "files_deleted": on_disk - len(list_files(spark, path, ".parquet", recursive=True)),
        }
    return out


def check_options(cfg: Config, tables: list[str] | None, settled_days: int) -> list[str]:
    """The tables to maintain (all of `tables:` by default), or a FraudError naming the wrong option."""
    known = list(cfg.get("tables"))
    unknown = [t for t in tables or () if t not in known]
    if unknown:
        raise FraudError(
            f"--tables: expected names of the `tables:` configuration ({', '.join(known)}), found {unknown}"
        )
    if settled_days < 0:
        raise FraudError(f"--settled-days: expected 0 or more, found {settled_days}")
    return tables or known


def run(
    spark: SparkSession,
    cfg: Config,
    tables: list[str] | None = None,
    settled_days: int = 1,
    vacuum_hours: float | None = None,
    vacuum: bool = True,
    today: dt.date | None = None,
) -> dict[str, Any]:
    """Maintain the named tables of `tables:` (all by default); tables that do not exist yet are listed as such.
    A table that fails (e.g. a `--vacuum-hours` below its retention) gets `failed` with the reason in the
    report, and the others are still maintained; `failed` lists those tables."""
    names = check_options(cfg, tables, settled_days)
    today = today or dt.datetime.now(dt.UTC).date()
    settled_before = today - dt.timedelta(days=settled_days)
    report: dict[str, Any] = {"settled_before": settled_before.isoformat(), "tables": {}, "failed": []}
    for name in names:
        path = cfg.table_path(name)
        try:
            if not table_exists(spark, path):
                report["tables"][name] = {"skipped": "no table yet"}
                continue
            report["tables"][name] = maintain_table(spark, path, settled_before, vacuum_hours, vacuum)
        except Exception as error:  # noqa: BLE001 - recorded and reported: one table's trouble must not stop the rest
            report["tables"][name] = {"failed": (str(error).strip() or repr(error)).splitlines()[0]}
            report["failed"].append(name)
        print(f"maintain: {name}: {json.dumps(report['tables'][name])}", flush=True)
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tables", help="comma-separated names from `tables:` (default: every table that exists)")
    parser.add_argument(
        "--settled-days",
        type=int,
        default=1,
        help="compact only tx_date partitions more than this many days old (default 1: not today's or "
        "yesterday's, which the stream may still write)",
    )
    parser.add_argument(
        "--vacuum-hours",
        type=float,
        help="delete files removed more than this many hours ago (default: the table's "
        "delta.deletedFileRetentionDuration, 7 days unless set; never less)",
    )
    parser.add_argument("--no-vacuum", action="store_true", help="compact only")
    add_common_options(parser)


def execute(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    tables = [t.strip() for t in args.tables.split(",") if t.strip()] if args.tables else None
    check_options(cfg, tables, args.settled_days)  # before Spark starts
    report = run(get_spark(cfg, "maintain"), cfg, tables, args.settled_days, args.vacuum_hours, not args.no_vacuum)
    print(json.dumps(report, indent=2))
    if report["failed"]:
        raise FraudError(
            "maintenance failed for " + "; for ".join(f"{t}: {report['tables'][t]['failed']}" for t in report["failed"])
        )
    return 0


main = job_main("fraud maintain", __doc__, add_arguments, execute)

if __name__ == "__main__":
    import sys

    sys.exit(main())
