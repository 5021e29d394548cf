"""`fraud stream` as a long-running job on the real broker: it keeps scoring through idle triggers after a
burst, a query that dies ends `run` (so the CLI exits non-zero and its scheduler restarts it), and SIGTERM
stops it cleanly between micro-batches."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from jobs.core.errors import QueryFailed
from jobs.core.metrics import StreamMetrics
from jobs.core.waiting import wait_until
from jobs.kafka_tools.produce import produce, raw_lines, without_labels
from jobs.simulation.simulate import simulate_to_folder
from jobs.simulation.simulator import make_spec
from jobs.stream import score_stream, supervision
from tests import servers
from tests.test_ingest_stream import produce as produce_values
from tests.test_stream_restart import register_model

pytestmark = pytest.mark.integration
BAD = [b"not json", b'{"transaction_id": "x"}']


def scored_ids(spark, cfg) -> list[int]:
    path = Path(cfg.table_path("scores"))
    if not list((path / "_delta_log").glob("*.json")):
        return []
    return sorted(
        r.transaction_id for r in spark.read.format("delta").load(str(path)).select("transaction_id").collect()
    )


def dead_letters(spark, cfg) -> int:
    path = Path(cfg.table_path("dead_letters"))
    return spark.read.format("delta").load(str(path)).count() if list((path / "_delta_log").glob("*.json")) else 0


def test_the_stream_keeps_scoring_after_a_burst_and_idle_triggers(spark, broker, stream_cfg, topic_names, tmp_path):
    """A burst with malformed messages, then idle triggers (the query asks Kafka for new data every few
    milliseconds, finding none), then labels and more transactions: the query is still
    active, and every transaction is scored once."""
    raw = tmp_path / "raw"
    simulate_to_folder(make_spec("handbook", days=3, customers=200, terminals=300), raw)
    lines = list(without_labels(raw_lines(raw)))
    burst, later = lines[: len(lines) // 2], lines[len(lines) // 2 :]
    cfg = stream_cfg(stream__trigger_interval="0 seconds")
    register_model(cfg.get("mlflow.tracking_uri"), tmp_path / "artifacts")
    query = score_stream.start(spark, cfg, metrics=StreamMetrics())
    try:
        produce(cfg, iter(burst))
        produce_values(broker.bootstrap_servers, topic_names["transactions"], BAD)
        wait_until(
            lambda: len(scored_ids(spark, cfg)) == len(burst) and dead_letters(spark, cfg) == len(BAD),
            f"the burst's {len(burst)} transactions scored and {len(BAD)} dead letters",
            240,
            query=query,
        )
        idle_until = time.monotonic() + 20  # idle triggers: the condition here is time itself
        wait_until(lambda: time.monotonic() > idle_until, "20 s of idle triggers", 30, query=query)
        from jobs.kafka_tools.label_cmd import send_labels

        send_labels(cfg, [(0, 1), (1, 0)])  # two labels of the burst's transactions
        produce(cfg, iter(later))
        wait_until(
            lambda: len(scored_ids(spark, cfg)) == len(lines), f"all {len(lines)} transactions scored", 240, query=query
        )
        wait_until(
            lambda: (
                Path(cfg.table_path("labels")).joinpath("_delta_log").exists()
                and spark.read.format("delta").load(cfg.table_path("labels")).count() == 2
            ),
            "the 2 labels applied",
            120,
            query=query,
        )
        assert query.isActive
        assert scored_ids(spark, cfg) == list(range(len(lines)))
    finally:
        query.stop()


def run_in_background(spark, cfg) -> tuple[threading.Thread, dict[str, BaseException]]:
    """`fraud stream`'s `run` on a thread of its own, started; the dict gets the error it ends with, if any."""
    outcome: dict[str, BaseException] = {}

    def job() -> None:
        try:
            score_stream.run(spark, cfg, metrics=StreamMetrics())
        except BaseException as error:  # noqa: BLE001 - the test reads it
            outcome["error"] = error

    runner = threading.Thread(target=job, daemon=True)
    runner.start()
    return runner, outcome


def test_a_query_that_dies_ends_run_with_an_error_naming_the_checkpoint(
    spark, broker, stream_cfg, topic_names, tmp_path
):
    """The `dead_letters` table the query appends to inside its micro-batch is replaced by a file: the next
    micro-batch with a malformed message fails, the query terminates with an error, and `run` raises
    QueryFailed at once (the CLI prints it and exits 2) instead of waiting on a query that is gone. (A failed
    append of `scores`, off the micro-batch's path, stops it too: tests/test_staged_tables.py.)"""
    import shutil

    raw = tmp_path / "raw"
    simulate_to_folder(make_spec("handbook", days=1, customers=100, terminals=100), raw)
    cfg = stream_cfg(stream__trigger_interval="1 second")
    register_model(cfg.get("mlflow.tracking_uri"), tmp_path / "artifacts")
    runner, outcome = run_in_background(spark, cfg)
    produce(cfg, iter(list(without_labels(raw_lines(raw)))[:50]))
    wait_until(lambda: len(scored_ids(spark, cfg)) == 50, "the first 50 transactions scored", 240)
    shutil.rmtree(cfg.table_path("dead_letters"), ignore_errors=True)
    Path(cfg.table_path("dead_letters")).write_text("not a table")
    produce_values(broker.bootstrap_servers, topic_names["transactions"], [b"not json"])
    runner.join(120)
    assert not runner.is_alive(), "run() still waits on a query that died"
    error = outcome.get("error")
    assert isinstance(error, QueryFailed), repr(error)
    assert str(error).startswith(
        f"query score_transactions terminated with an error, so fraud stream stops; restart "
        f"it to resume from its checkpoint {cfg.checkpoint_path('score_transactions')}"
    )
    assert "DeltaIOException: [DELTA_CANNOT_CREATE_LOG_PATH]" in str(error) and "dead_letters/_delta_log" in str(error)
    assert not [q for q in spark.streams.active if q.name == "score_transactions"]


def test_sigterm_stops_fraud_stream_cleanly_and_a_restart_scores_the_rest_once(
    spark, broker, stream_cfg, topic_names, tmp_path
):
    """SIGTERM (Kubernetes deleting the pod, YARN stopping the container) while `fraud stream` scores: the job
    stops its query between micro-batches and exits 0, with no `INTERNAL_ERROR` from a Spark stopped under the
    query; a restart from the checkpoint scores the rest, each transaction once."""
    raw = tmp_path / "raw"
    simulate_to_folder(make_spec("handbook", days=2, customers=200, terminals=300), raw)
    lines = list(without_labels(raw_lines(raw)))
    cfg = stream_cfg(stream__trigger_interval="0 seconds", kafka__max_offsets_per_trigger=200)
    register_model(cfg.get("mlflow.tracking_uri"), tmp_path / "artifacts")
    produce(cfg, iter(lines))
    settings = {
        "paths.lake": cfg.get("paths.lake"),
        "paths.checkpoint": cfg.get("paths.checkpoint"),
        "mlflow.tracking_uri": cfg.get("mlflow.tracking_uri"),
        "stream.metrics_port": 0,
        # micro-batches of 20: about fifty of them, so that the signal comes mid-stream on a loaded machine too
        "kafka.bootstrap_servers": broker.bootstrap_servers,
        "kafka.max_offsets_per_trigger": 20,
        **{f"kafka.topics.{role}": name for role, name in topic_names.items()},
    }
    command = [
        str(Path(__file__).resolve().parent.parent / ".venv/bin/fraud"),
        "stream",
        *[arg for key, value in settings.items() for arg in ("--set", f"{key}={value}")],
    ]
    log_path = tmp_path / "stream.log"
    with log_path.open("w") as log:
        job = subprocess.Popen(
            command,
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=servers.short_job_env(dict(os.environ)),
            start_new_session=True,
        )
        try:
            wait_until(
                lambda: 0 < len(scored_ids(spark, cfg)) or job.poll() is not None, "the job's first micro-batch", 240
            )
            assert job.poll() is None, log_path.read_text()[-3000:]
            job.send_signal(signal.SIGTERM)  # to the job's process, as a container's runtime sends it
            code = job.wait(60)
        finally:
            if job.poll() is None:
                os.killpg(job.pid, signal.SIGKILL)
    output = log_path.read_text()
    assert code == 0, output[-3000:]
    assert "stream: SIGTERM received: stopping the query" in output and "stream: stopped on SIGTERM" in output
    assert "INTERNAL_ERROR" not in output and "terminated with error" not in output, output[-3000:]
    # a clean stop is quiet: no stack trace of Spark's listener bus calling back into a Python that is leaving
    assert "Traceback" not in output and "threw an exception" not in output, output[-3000:]
    partial = len(scored_ids(spark, cfg))
    assert 0 < partial < len(lines), "the test needs the job stopped mid-stream"

    score_stream.run(spark, cfg, available_now=True, metrics=StreamMetrics())
    assert scored_ids(spark, cfg) == list(range(len(lines)))


class DiedInItsCleanUp:
    """A query that has died while its thread is still in its clean-up, so that `awaitTermination` never
    returns (what the report saw: the process alive with no query). No real query can be put in that state on
    demand; this one borrows the run id of a live query, whose JVM thread stands for the stuck one."""

    def __init__(self, live, error: BaseException) -> None:
        self.live, self.error = live, error

    @property
    def runId(self) -> str:
        return self.live.runId

    @property
    def id(self) -> str:
        return self.live.id

    def awaitTermination(self, timeout: float | None = None) -> bool:
        time.sleep(min(timeout or 0.0, 0.2))
        return False

    def exception(self) -> BaseException:
        return self.error


def test_a_query_that_died_ends_the_job_even_while_its_thread_hangs_in_its_clean_up(spark, monkeypatch, capsys):
    """`watch` sees the query's error though `awaitTermination` does not return: it prints the query thread's
    JVM stack (what a support engineer needs to find what it waits on) and raises QueryFailed, so that the job
    exits and its scheduler restarts it."""
    from pyspark.errors import StreamingQueryException

    monkeypatch.setattr(supervision, "CLEANUP_WAIT_SECONDS", 1)
    live = spark.readStream.format("rate").load().writeStream.format("noop").start()
    try:
        stuck = DiedInItsCleanUp(live, StreamingQueryException("[STREAM_FAILED] the query died"))
        started = time.monotonic()
        with pytest.raises(
            QueryFailed,
            match=r"^query score_transactions terminated with an error, so fraud stream "
            r"stops; restart it to resume from its checkpoint /cp: \[STREAM_FAILED\]",
        ):
            supervision.watch(spark, stuck, "/cp", [])
        assert time.monotonic() - started < 30
    finally:
        live.stop()
    output = capsys.readouterr().out
    assert "stream: query score_transactions died, and its thread is still in its clean-up after 1 s" in output
    stack = output.split("The thread's stack:\n", 1)[1]
    frames = stack.splitlines()
    assert frames and all(f.startswith("    at ") for f in frames), stack
    assert any("StreamExecution.runStream" in f or "StreamExecution$$runStream" in f for f in frames), stack
