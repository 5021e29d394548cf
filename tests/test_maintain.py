"""`fraud maintain`: OPTIMIZE compacts settled partitions only, VACUUM deletes what the table's retention allows,
and the data read back is the same."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from jobs import cli
from jobs.batch import maintain
from jobs.core.errors import FraudError
from jobs.core.lake import append_idempotent

TODAY = dt.date(2026, 11, 24)


def scores_like(spark, batch, days):
    rows = [(batch * 100 + i, d) for i, d in enumerate(days)]
    return spark.createDataFrame(rows, "transaction_id long, day string").selectExpr(
        "transaction_id", "to_date(day) AS tx_date"
    )


def files_per_day(spark, path):
    return {
        r["day"]: r["n"]
        for r in spark.sql(
            f"SELECT CAST(tx_date AS STRING) AS day, count(DISTINCT _metadata.file_path) AS n FROM delta.`{path}` GROUP BY tx_date"
        ).collect()
    }


def contents(spark, path):
    return sorted((r.transaction_id, str(r.tx_date)) for r in spark.read.format("delta").load(path).collect())


def test_settled_partitions_are_compacted_and_vacuumed_the_rest_untouched(spark, make_cfg):
    cfg = make_cfg()
    path = cfg.table_path("scores")
    days = ["2026-11-20", "2026-11-22", "2026-11-23", "2026-11-24"]
    for batch in range(6):  # six micro-batches, each adding a file to each day
        append_idempotent(scores_like(spark, batch, days).repartition(1, "tx_date"), path, "stream", batch, ["tx_date"])
    before = contents(spark, path)
    assert files_per_day(spark, path) == {d: 6 for d in days}
    # a retention of 0 hours is allowed only because the table itself says so
    spark.sql(
        f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ('delta.deletedFileRetentionDuration' = 'interval 0 hours')"
    )

    report = maintain.run(spark, cfg, ["scores", "alerts"], settled_days=1, vacuum_hours=0, today=TODAY)

    assert report["settled_before"] == "2026-11-23"
    done = report["tables"]["scores"]
    # today's and yesterday's partitions may still be written by the stream: left as they are
    assert files_per_day(spark, path) == {"2026-11-20": 1, "2026-11-22": 1, "2026-11-23": 6, "2026-11-24": 6}
    assert done["files_before"] == 24 and done["files_after"] == 14
    assert done["compacted"] == {
        "where": "tx_date < DATE'2026-11-23'",
        "files_removed": 12,
        "files_added": 2,
        "partitions": 2,
    }
    assert done["vacuumed"] == {"retention_hours": 0, "files_deleted": 12}
    assert contents(spark, path) == before
    assert report["tables"]["alerts"] == {"skipped": "no table yet"}
    # the compaction is not a data change: the stream's idempotent appends still find their last batch
    assert not append_idempotent(scores_like(spark, 5, days), path, "stream", 5, ["tx_date"])
    assert contents(spark, path) == before


def test_a_retention_shorter_than_the_tables_is_refused_before_anything_is_deleted(spark, make_cfg, capsys):
    cfg = make_cfg()
    path = cfg.table_path("labels")
    for batch in range(3):
        append_idempotent(scores_like(spark, batch, ["2026-11-01"]), path, "stream", batch)
    other = cfg.table_path("alerts")  # a table whose retention allows it: maintained all the same
    spark.createDataFrame([(1,)], "transaction_id long").write.format("delta").option(
        "delta.deletedFileRetentionDuration", "interval 0 hours"
    ).save(other)
    report = maintain.run(spark, cfg, ["labels", "alerts"], vacuum_hours=1, today=TODAY)
    assert report["failed"] == ["labels"]
    assert re.fullmatch(
        r"--vacuum-hours: expected at least 168 hours, the delta.deletedFileRetentionDuration of "
        r"\S+/labels, found 1: .*",
        report["tables"]["labels"]["failed"],
    )
    assert files_per_day(spark, path) == {"2026-11-01": 3}
    assert report["tables"]["alerts"]["vacuumed"]["retention_hours"] == 1
    # the command reports every table, then fails naming the ones that failed
    assert (
        cli.main(["maintain", "--tables", "labels,alerts", "--vacuum-hours", "1", "--lake", cfg.get("paths.lake")]) == 2
    )
    out, err = capsys.readouterr()
    assert '"failed": [\n    "labels"\n  ]' in out
    assert "error: maintenance failed for labels: --vacuum-hours: expected at least 168 hours" in err
    # within the retention: the unpartitioned table is compacted whole; the removed files are kept 7 days
    report = maintain.run(spark, cfg, ["labels"], vacuum_hours=200, today=TODAY)["tables"]["labels"]
    assert report["compacted"]["files_removed"] == 3 and report["files_after"] == 1
    assert report["compacted"]["where"] is None
    assert report["vacuumed"] == {"retention_hours": 200, "files_deleted": 0}


def test_wrong_options_name_the_option(make_cfg, capsys):
    with pytest.raises(
        FraudError, match=r"--tables: expected names of the `tables:` configuration .*found \['score'\]"
    ):
        maintain.check_options(make_cfg(), ["score"], 1)
    with pytest.raises(FraudError, match="--settled-days: expected 0 or more, found -1"):
        maintain.check_options(make_cfg(), None, -1)
    assert cli.main(["maintain", "--tables", "scores,nope", "--lake", "/nonexistent"]) == 2
    assert "error: --tables: expected names" in capsys.readouterr().err
