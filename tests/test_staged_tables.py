"""`scores` and `alerts` off the micro-batch's path (jobs/stream/staged_tables.py, `stream.tables_on_thread`):
staged micro-batches are appended in order and leave the stage; a failed append keeps its rows staged, says so
at the next micro-batch, and the next start appends them; through the stream, a failure between staging and
appending loses and duplicates nothing."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from jobs.core.errors import QueryFailed
from jobs.core.lake import list_files
from jobs.core.metrics import StreamMetrics
from jobs.kafka_tools.produce import produce, raw_lines, without_labels
from jobs.simulation.simulate import simulate_to_folder
from jobs.simulation.simulator import make_spec
from jobs.stream import score_stream
from jobs.stream.batch_writer import BatchWriter
from jobs.stream.staged_tables import STAGE_FOLDER, StagedTables
from tests.test_stream_restart import register_model
from tests.test_stream_uptime import run_in_background


def rows_of(batch_id: int) -> pa.Table:
    return pa.table({"transaction_id": pa.array([10 * batch_id, 10 * batch_id + 1], pa.int64()), "score": [0.1, 0.9]})


def staged(spark, checkpoint: Path) -> list[str]:
    return [name.rsplit("/", 1)[-1] for name in list_files(spark, str(checkpoint / STAGE_FOLDER), suffix=".arrow")]


def test_staged_micro_batches_are_appended_in_order_and_leave_the_stage(spark, tmp_path):
    appended: list[tuple[int, dict]] = []
    tables = StagedTables(spark, str(tmp_path), lambda rows, batch_id: appended.append((batch_id, rows.to_pydict())))
    for batch_id in (3, 4):
        tables.stage(rows_of(batch_id), batch_id)
    tables.close()
    assert appended == [(3, rows_of(3).to_pydict()), (4, rows_of(4).to_pydict())]
    assert staged(spark, tmp_path) == []


def test_a_failed_append_keeps_its_rows_staged_says_so_and_the_next_start_appends_them(spark, tmp_path):
    def refuse(rows: pa.Table, batch_id: int) -> None:
        raise OSError(f"the table refused micro-batch {batch_id}")

    failing = StagedTables(spark, str(tmp_path), refuse)
    failing.stage(rows_of(5), 5)
    failing.pending.exception()  # type: ignore[union-attr]  # the thread has tried
    assert isinstance(failing.failure(), OSError)
    with pytest.raises(OSError, match="the table refused micro-batch 5"):
        failing.stage(rows_of(6), 6)  # staged, then the previous micro-batch's error
    assert staged(spark, tmp_path) == ["000000000005.arrow", "000000000006.arrow"]

    appended: list[tuple[int, dict]] = []
    again = StagedTables(spark, str(tmp_path), lambda rows, batch_id: appended.append((batch_id, rows.to_pydict())))
    assert again.recover() == [5, 6]
    assert appended == [(5, rows_of(5).to_pydict()), (6, rows_of(6).to_pydict())]
    assert staged(spark, tmp_path) == []


@pytest.mark.integration
def test_a_stream_whose_append_fails_stops_with_an_error_and_its_restart_loses_and_duplicates_nothing(
    spark, stream_cfg, tmp_path, monkeypatch
):
    """The second micro-batch's append fails on the stage's thread: `run` stops the query and raises
    QueryFailed, with micro-batches staged but not in `scores`; the restart appends them (and the micro-batch
    Spark runs again is not appended twice): every transaction in `scores` once, every alert in `alerts` once."""
    raw = tmp_path / "raw"
    simulate_to_folder(make_spec("handbook", days=1, customers=100, terminals=100), raw)
    lines = list(without_labels(raw_lines(raw)))[:90]
    cfg = stream_cfg(
        kafka__max_offsets_per_trigger=30, stream__trigger_interval="1 second", stream__tables_on_thread=True
    )
    register_model(cfg.get("mlflow.tracking_uri"), tmp_path / "artifacts")
    append = BatchWriter.append_tables
    calls: list[int] = []

    def second_fails(writer: BatchWriter, rows: pa.Table, batch_id: int) -> None:
        calls.append(batch_id)
        if len(calls) == 2:
            raise OSError("the object store refused the write")
        append(writer, rows, batch_id)

    monkeypatch.setattr(BatchWriter, "append_tables", second_fails)
    produce(cfg, iter(lines))
    runner, outcome = run_in_background(spark, cfg)
    runner.join(300)
    assert not runner.is_alive(), "run() did not stop on the failed append"
    error = outcome.get("error")
    assert isinstance(error, QueryFailed), repr(error)
    assert "the start appends what is staged under its checkpoint" in str(error)
    assert "OSError: the object store refused the write" in str(error)
    checkpoint = Path(cfg.checkpoint_path("score_transactions"))
    assert staged(spark, checkpoint), "the failed micro-batch is no longer staged"

    monkeypatch.setattr(BatchWriter, "append_tables", append)
    score_stream.run(spark, cfg, available_now=True, metrics=StreamMetrics())
    scores = spark.read.format("delta").load(cfg.table_path("scores")).toPandas()
    dead = (
        spark.read.format("delta").load(cfg.table_path("dead_letters")).count()
        if Path(cfg.table_path("dead_letters")).is_dir()
        else 0
    )  # a simulated amount can round to 0.00, which the cleaning rules refuse
    sent = {int(line.split(",", 1)[0]) for line in lines}
    assert scores["transaction_id"].is_unique and set(scores["transaction_id"]) <= sent
    assert len(scores) + dead == len(sent)
    alerts = spark.read.format("delta").load(cfg.table_path("alerts")).toPandas()
    flagged = sorted(scores.loc[scores["decision"], "transaction_id"])
    assert flagged and sorted(alerts["transaction_id"]) == flagged
    assert staged(spark, checkpoint) == []
