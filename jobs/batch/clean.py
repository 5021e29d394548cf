"""`fraud clean`: raw files (the bank's format) -> Delta `clean_transactions`, with every bad row in
`quarantine_transactions` (raw line, every rule it failed, source file and line number) and nothing lost.

    fraud clean --input data/raw [--lake .state/lake]
    spark-submit/submit.sh jobs/batch/clean.py --env cluster --input s3a://bank/raw

One run:
 1. takes the raw files of --input not taken by an earlier run (incremental; a run that died is resumed
    with its own files, so a rerun never adds a row twice);
 2. reads every line with its file and line number; removes exact duplicate lines (counted);
 3. validates the rest with great-expectations and the suite `jobs/batch/expectations/raw_transactions.json`,
    and flags each row with every rule it fails, from the same suite (the two counts must agree);
 4. appends clean rows (typed, partitioned by tx_date) and quarantined rows, idempotently;
 5. checks rows read = clean + quarantined + duplicates removed, writes the report, the validation
    result and the data docs under <lake>/_validation/run=N/, and prints the report.
Large amounts are never outliers: they are scenario-1 fraud, so no rule bounds tx_amount from above.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from features.schema import TRANSACTION_COLUMNS
from jobs.batch.quality import VALIDATED_COLUMNS, flag_rules, load_rules, prepare_lines
from jobs.batch.validation import validate
from jobs.core.checks import check_input
from jobs.core.common import add_common_options, config_from_args, job_main
from jobs.core.config import Config, join_location
from jobs.core.errors import FraudError
from jobs.core.lake import append_idempotent, list_files, publish_folder, table_exists
from jobs.core.session import get_spark

APP_ID = "clean"
ALREADY_LOADED = "transaction_id_already_loaded"


def read_lines(spark: SparkSession, files: list[str]) -> DataFrame:
    """Every line of the files with `source_file` and its 1-based `line_number`, header lines excluded.

    Line numbers: within one partition, monotonically_increasing_id counts rows one by one, and a file split
    (`_metadata.file_block_start`) is read in order inside one partition; so a line's number is the lines of
    the file's earlier splits plus its position in its own split. The result is persisted: the ids must not
    be recomputed.
    """
    raw = (
        spark.read.text(files)
        .select(
            F.col("value").alias("raw_line"),
            F.col("_metadata.file_path").alias("source_file"),
            F.col("_metadata.file_block_start").alias("block"),
            F.monotonically_increasing_id().alias("mid"),
        )
        .persist(StorageLevel.MEMORY_AND_DISK)
    )
    blocks = raw.groupBy("source_file", "block").agg(F.min("mid").alias("first"), F.count("*").alias("n"))
    before = Window.partitionBy("source_file").orderBy("block").rowsBetween(Window.unboundedPreceding, -1)
    blocks = blocks.withColumn("base", F.coalesce(F.sum("n").over(before), F.lit(0)))
    lines = raw.join(F.broadcast(blocks), ["source_file", "block"]).select(
        "source_file", (F.col("base") + F.col("mid") - F.col("first") + 1).alias("line_number"), "raw_line"
    )
    return lines.where(~F.col("raw_line").startswith("#"))


def plan_run(spark: SparkSession, cfg: Config, input_path: str) -> tuple[int, list[str], bool]:
    """Return (run id, files, resumed): the unfinished run if one died, else the next run with new files."""
    files_path, runs_path = cfg.table_path("clean_ingested_files"), cfg.table_path("clean_runs")
    logged = spark.read.format("delta").load(files_path) if table_exists(spark, files_path) else None
    done = (
        {r.run for r in spark.read.format("delta").load(runs_path).select("run").collect()}
        if table_exists(spark, runs_path)
        else set()
    )
    last = int(logged.agg(F.max("run")).collect()[0][0] or 0) if logged is not None else 0
    if last and last not in done:
        files = sorted(r.file for r in logged.where(F.col("run") == last).collect())  # type: ignore[union-attr]
        return last, files, True
    listed = list_files(spark, input_path)
    if not listed:
        raise FraudError(f"--input {input_path}: no raw files (*.txt) found")
    taken = {r.file for r in logged.select("file").collect()} if logged is not None else set()
    new = [f for f in listed if f not in taken]
    if new:
        entries = spark.createDataFrame([(last + 1, f) for f in new], "run long, file string")
        append_idempotent(entries.withColumn("planned_at", F.current_timestamp()), files_path, "clean_files", last + 1)
    return last + 1, new, False


def clean_files(spark: SparkSession, cfg: Config, run: int, files: list[str]) -> dict[str, Any]:
    """Clean one run's files into the tables; return its report."""
    suite_name, rules = load_rules()
    lines = read_lines(spark, files)
    first = Window.partitionBy("raw_line").orderBy("source_file", "line_number")
    ranked = lines.withColumn("copy", F.row_number().over(first)).persist(StorageLevel.MEMORY_AND_DISK)
    rows_read = ranked.count()
    duplicates = ranked.where(F.col("copy") > 1).count()
    prepared = prepare_lines(ranked.where(F.col("copy") == 1).drop("copy"))
    clean_path = cfg.table_path("clean_transactions")
    flagged = flag_rules(prepared, rules)
    if table_exists(spark, clean_path):  # a transaction id loaded by an earlier run is not loaded again
        seen = (
            spark.read.format("delta")
            .load(clean_path)
            .where(F.col("run") < run)
            .select("transaction_id", F.lit(True).alias("_seen"))
        )
        flagged = (
            flagged.join(seen, "transaction_id", "left")
            .withColumn(
                "failed_rules",
                F.when(F.col("_seen"), F.array_union("failed_rules", F.array(F.lit(ALREADY_LOADED)))).otherwise(
                    F.col("failed_rules")
                ),
            )
            .drop("_seen")
        )
    flagged = flagged.persist(StorageLevel.MEMORY_AND_DISK)
    by_rule = {
        r["rule"]: r["count"]
        for r in flagged.select(F.explode("failed_rules").alias("rule")).groupBy("rule").count().collect()
    }
    clean = flagged.where(F.size("failed_rules") == 0)
    quarantine = flagged.where(F.size("failed_rules") > 0)
    n_clean, n_quarantined = clean.count(), quarantine.count()

    staging = Path(tempfile.mkdtemp(prefix="fraud-clean-"))
    validation = validate(prepared.select(*VALIDATED_COLUMNS), suite_name, rules, staging)
    disagree = {
        r.name: (validation["unexpected"].get(r.name, 0), by_rule.get(r.name, 0))
        for r in rules
        if validation["unexpected"].get(r.name, 0) != by_rule.get(r.name, 0)
    }
    if disagree:
        raise FraudError(
            f"great-expectations and the row-level rules disagree (ge, rows) per rule: {disagree}; "
            "jobs/batch/quality.py does not follow an expectation of the suite"
        )

    append_idempotent(
        clean.select(
            *TRANSACTION_COLUMNS,
            F.to_date("tx_datetime").alias("tx_date"),
            "source_file",
            "line_number",
            F.lit(run).cast("long").alias("run"),
        ),
        clean_path,
        APP_ID,
        run,
        partition_by=["tx_date"],
    )
    append_idempotent(
        quarantine.select(
            "source_file",
            "line_number",
            "raw_line",
            "failed_rules",
            "errors",
            F.lit(run).cast("long").alias("run"),
            F.current_timestamp().alias("quarantined_at"),
        ),
        cfg.table_path("quarantine_transactions"),
        APP_ID,
        run,
    )
    report = {
        "run": run,
        "files": files,
        "rows_read": rows_read,
        "clean": n_clean,
        "quarantined": n_quarantined,
        "duplicates_removed": duplicates,
        "quarantined_by_rule": dict(sorted(by_rule.items())),
        "validation_success": validation["success"],
        "validation": join_location(cfg.path("paths.lake"), f"_validation/run={run}"),
    }
    if rows_read != n_clean + n_quarantined + duplicates:
        raise FraudError(
            f"cleaning run {run} lost rows: read {rows_read} != clean {n_clean} + quarantined "
            f"{n_quarantined} + duplicates {duplicates}; nothing was recorded as done, rerun to retry"
        )
    (staging / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    publish_folder(spark, staging, report["validation"])
    runs = spark.createDataFrame(
        [(run, len(files), rows_read, n_clean, n_quarantined, duplicates, json.dumps(report["quarantined_by_rule"]))],
        "run long, files int, rows_read long, clean long, quarantined long, duplicates_removed long, by_rule string",
    )
    append_idempotent(runs.withColumn("finished_at", F.current_timestamp()), cfg.table_path("clean_runs"), APP_ID, run)
    for df in (ranked, flagged):
        df.unpersist()
    return report


def run(spark: SparkSession, cfg: Config, input_path: str) -> dict[str, Any]:
    """Clean the new raw files of `input_path` (or finish a run that died); return the report."""
    run_id, files, resumed = plan_run(spark, cfg, input_path)
    if not files:
        return {
            "run": None,
            "files": [],
            "rows_read": 0,
            "clean": 0,
            "quarantined": 0,
            "duplicates_removed": 0,
            "quarantined_by_rule": {},
            "note": f"no new raw files in {input_path}: nothing to do",
        }
    report = clean_files(spark, cfg, run_id, files)
    report["resumed"] = resumed
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--input", required=True, help="a raw file or a folder of them: local, file://, s3a://, hdfs://"
    )
    add_common_options(parser)


def execute(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    check_input(args.input)  # before the JVM starts
    report = run(get_spark(cfg, "clean"), cfg, args.input)
    print(json.dumps(report, indent=2))
    return 0


main = job_main("fraud clean", __doc__, add_arguments, execute)


if __name__ == "__main__":
    sys.exit(main())
