"""`fraud simulate`: the bank's raw format, the manifest, Hadoop paths and clear errors."""

from __future__ import annotations

import json

import pytest

from features.schema import RAW_HEADER
from jobs.cli import main


def test_writes_30_day_files_in_the_banks_format(tmp_path, capsys):
    out = tmp_path / "raw"
    assert (
        main(
            [
                "simulate",
                "--days",
                "31",
                "--customers",
                "50",
                "--terminals",
                "100",
                "--start-date",
                "2019-08-22",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert sorted(p.name for p in out.iterdir()) == ["2019-08-22.txt", "2019-09-21.txt", "_manifest.json"]
    first = (out / "2019-08-22.txt").read_text().split("\n")
    assert first[0] == RAW_HEADER
    assert RAW_HEADER == (
        "# tranaction_id | tx_datetime | customer_id | terminal_id | tx_amount | tx_time_seconds "
        "| tx_time_days | tx_fraud | tx_fraud_scenario"
    )
    fields = first[1].split(",")
    assert len(fields) == 9 and fields[0] == "0" and fields[1].startswith("2019-08-22 ")
    second = (out / "2019-09-21.txt").read_text().split("\n")
    assert second[1].split(",")[6] == "30"  # day 30 opens the second file
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["transactions"] == summary["transactions"] == len(first) - 2 + len(second) - 2
    assert [f["file"] for f in manifest["files"]] == ["2019-08-22.txt", "2019-09-21.txt"]


def test_the_same_seed_writes_the_same_bytes(tmp_path):
    for name in ("a", "b"):
        assert (
            main(
                [
                    "simulate",
                    "--days",
                    "3",
                    "--customers",
                    "40",
                    "--defects",
                    "--out",
                    str(tmp_path / name),
                    "--no-progress",
                ]
            )
            == 0
        )
    assert (tmp_path / "a/2018-04-01.txt").read_bytes() == (tmp_path / "b/2018-04-01.txt").read_bytes()


@pytest.mark.integration
def test_any_hadoop_path_through_spark(spark, tmp_path, capsys):
    """A URI output is staged locally and copied with Spark's Hadoop file system (as for s3a:// or hdfs://)."""
    out = f"file://{tmp_path}/hadoop-out"
    assert main(["simulate", "--days", "2", "--customers", "30", "--out", out, "--no-progress"]) == 0
    assert sorted(p.name for p in (tmp_path / "hadoop-out").iterdir()) == ["2018-04-01.txt", "_manifest.json"]
    assert (tmp_path / "hadoop-out/2018-04-01.txt").read_text().startswith(RAW_HEADER)


def test_errors_name_the_option(tmp_path, capsys):
    assert main(["simulate", "--customers", "0", "--out", str(tmp_path), "--no-progress"]) == 2
    assert "simulation: customers must be a positive whole number, found 0" in capsys.readouterr().err
    (tmp_path / "2018-04-01.txt").write_text("old")
    assert main(["simulate", "--days", "1", "--customers", "5", "--out", str(tmp_path), "--no-progress"]) == 2
    assert (
        f"--out {tmp_path} already holds raw files (2018-04-01.txt...); choose an empty folder"
        in capsys.readouterr().err
    )
    with pytest.raises(SystemExit):
        main(["simulate", "--days", "x", "--out", str(tmp_path)])
