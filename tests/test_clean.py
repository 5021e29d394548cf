"""`fraud clean` on simulated raw files with every defect kind: exact counts against the simulator's manifest,
nothing lost, line numbers right, idempotent, incremental, and a run that died is resumed without duplicates."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from jobs.batch import clean
from jobs.core import lake
from jobs.core.config import Config, load_config
from jobs.simulation.rawfiles import DEFECT_KINDS, DefectRates
from jobs.simulation.simulate import simulate_to_folder
from jobs.simulation.simulator import make_spec

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> tuple[Path, dict]:
    """35 days of 600 cards: two raw files holding every defect kind."""
    out = tmp_path_factory.mktemp("raw")
    manifest = simulate_to_folder(
        make_spec("handbook", days=35, customers=600, terminals=1_000, seed=3), out, DefectRates()
    )
    assert all(manifest["defects"][k] > 0 for k in DEFECT_KINDS), manifest["defects"]
    return out, manifest


@pytest.fixture(scope="module")
def cleaned(spark, raw, tmp_path_factory) -> tuple[Config, dict]:
    """One run of `fraud clean` over the raw files, into a lake of its own: (its config, its report)."""
    cfg = load_config("local", {"paths.lake": str(tmp_path_factory.mktemp("cleaned") / "lake")})
    return cfg, clean.run(spark, cfg, str(raw[0]))


def test_counts_reproduce_the_manifest_exactly(spark, cleaned, raw):
    _, manifest = raw
    cfg, report = cleaned
    expected = manifest["expected_cleaning"]
    assert {
        k: report[k] for k in ("rows_read", "clean", "quarantined", "duplicates_removed", "quarantined_by_rule")
    } == {k: expected[k] for k in ("rows_read", "clean", "quarantined", "duplicates_removed", "quarantined_by_rule")}
    assert report["rows_read"] == report["clean"] + report["quarantined"] + report["duplicates_removed"]

    table = spark.read.format("delta").load(cfg.table_path("clean_transactions"))
    frauds = {
        f"scenario_{r.tx_fraud_scenario}": r["count"]
        for r in table.where("tx_fraud = 1").groupBy("tx_fraud_scenario").count().collect()
    }
    assert frauds == expected["clean_frauds"]  # no scenario-1 fraud lost as an "amount outlier"
    assert table.count() == expected["clean"]
    assert table.select("transaction_id").distinct().count() == expected["clean"]
    assert dict(table.dtypes)["tx_datetime"] == "timestamp" and "tx_date" in table.columns

    quarantine = spark.read.format("delta").load(cfg.table_path("quarantine_transactions"))
    assert quarantine.count() == expected["quarantined"]
    validation = Path(report["validation"])
    assert json.loads((validation / "report.json").read_text())["clean"] == expected["clean"]
    assert json.loads((validation / "validation.json").read_text())["success"] is False
    assert (validation / "data_docs" / "index.html").is_file()


def test_quarantine_rows_point_at_their_line(spark, cleaned, raw):
    folder, _ = raw
    cfg, _ = cleaned
    files = {f.name: f.read_text().split("\n") for f in folder.glob("*.txt")}
    rows = spark.read.format("delta").load(cfg.table_path("quarantine_transactions")).collect()
    assert rows
    for r in rows:
        assert files[Path(r.source_file).name][r.line_number - 1] == r.raw_line, r
        assert r.failed_rules and r.run == 1
    short = next(r for r in rows if "field_count" in r.failed_rules)
    assert short.errors  # the conversion messages come along, e.g. "tx_fraud_scenario: missing"


def test_second_run_adds_nothing_and_a_new_file_is_added(spark, make_cfg, raw, tmp_path):
    folder, manifest = raw
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    first, second = sorted(folder.glob("*.txt"))
    shutil.copy(first, inbox)
    cfg = make_cfg()
    one = clean.run(spark, cfg, str(inbox))
    again = clean.run(spark, cfg, str(inbox))
    assert again["files"] == [] and again["rows_read"] == 0 and "nothing to do" in again["note"]
    shutil.copy(second, inbox)
    two = clean.run(spark, cfg, str(inbox))
    assert (one["run"], two["run"]) == (1, 2) and [Path(f).name for f in two["files"]] == [second.name]
    total = spark.read.format("delta").load(cfg.table_path("clean_transactions")).count()
    assert total == one["clean"] + two["clean"] == manifest["expected_cleaning"]["clean"]
    runs = spark.read.format("delta").load(cfg.table_path("clean_runs"))
    assert sorted(r.run for r in runs.collect()) == [1, 2]


def test_a_run_that_died_is_resumed_without_duplicates(spark, make_cfg, raw, monkeypatch):
    folder, manifest = raw
    cfg = make_cfg()
    real_append = lake.append_idempotent

    def die_on_quarantine(df, path, app_id, version, partition_by=()):
        if path.endswith("quarantine_transactions"):
            raise RuntimeError("executor lost")
        real_append(df, path, app_id, version, partition_by)

    monkeypatch.setattr(clean, "append_idempotent", die_on_quarantine)
    with pytest.raises(RuntimeError, match="executor lost"):
        clean.run(spark, cfg, str(folder))  # clean rows were appended, the run was not recorded
    monkeypatch.setattr(clean, "append_idempotent", real_append)
    report = clean.run(spark, cfg, str(folder))
    assert report["resumed"] is True and report["run"] == 1
    assert (
        spark.read.format("delta").load(cfg.table_path("clean_transactions")).count()
        == manifest["expected_cleaning"]["clean"]
    )
    assert (
        spark.read.format("delta").load(cfg.table_path("quarantine_transactions")).count()
        == manifest["expected_cleaning"]["quarantined"]
    )


def test_a_transaction_loaded_before_is_quarantined_not_duplicated(spark, make_cfg, raw, tmp_path):
    folder, _ = raw
    first = sorted(folder.glob("*.txt"))[0]
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    shutil.copy(first, inbox / "a.txt")
    cfg = make_cfg()
    one = clean.run(spark, cfg, str(inbox))
    shutil.copy(first, inbox / "b.txt")  # the bank sends the same data again under another name
    two = clean.run(spark, cfg, str(inbox))
    assert two["clean"] == 0
    assert two["quarantined_by_rule"][clean.ALREADY_LOADED] == one["clean"]
    assert spark.read.format("delta").load(cfg.table_path("clean_transactions")).count() == one["clean"]


def test_missing_input_is_a_clear_error(spark, make_cfg, tmp_path):
    from jobs.core.errors import FraudError

    with pytest.raises(FraudError, match=r"--input .*nowhere: no raw files \(\*\.txt\) found"):
        clean.run(spark, make_cfg(), str(tmp_path / "nowhere"))
