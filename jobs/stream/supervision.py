"""How the stream's query is kept and ended: its progress listener and the driver's producer released before it
stops; SIGTERM, SIGINT and SIGHUP turned into a stop between micro-batches; a query that died turned into
QueryFailed (the CLI exits non-zero, and Kubernetes, YARN or Airflow restarts the job from its checkpoint),
with its error in one line and, when its thread hangs in its clean-up, that thread's stack."""

from __future__ import annotations

import contextlib
import json
import re
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from py4j.protocol import Py4JError
from pyspark.errors import StreamingQueryException
from pyspark.sql import SparkSession
from pyspark.sql.streaming import StreamingQuery, StreamingQueryListener

from jobs.core.errors import QueryFailed
from jobs.core.metrics import StreamMetrics
from jobs.stream.batch_writer import BatchWriter
from jobs.stream.schemas import QUERY

# what each query started here holds beside Spark: its progress listener, removed before the query stops so that
# Spark's listener bus has no Python callback left to call while the process ends (it would log a py4j stack
# trace), and the driver's Kafka producer (`release`)
RELEASED_AT_STOP: dict[str, tuple[StreamingQueryListener, BatchWriter]] = {}
LISTENER_DRAIN_MS = 5000


def stop_query(spark: SparkSession, query: StreamingQuery) -> None:
    """Stop `query` after releasing its listener and producer."""
    release(spark, query)
    query.stop()


def release(spark: SparkSession, query: StreamingQuery) -> None:
    """Remove `query`'s progress listener and close its producer (once; nothing if it has none)."""
    held = RELEASED_AT_STOP.pop(str(query.id), None)
    if held is None:
        return
    listener, writer = held
    try:
        spark.streams.removeListener(listener)
        # an event the bus took before the removal is still delivered: let it reach Python while Python is there
        spark.sparkContext._jsc.sc().listenerBus().waitUntilEmpty(LISTENER_DRAIN_MS)
    except (Py4JError, ConnectionError):  # the JVM is going too, or the bus did not drain in time
        pass
    try:
        writer.close()
    except Exception as error:  # noqa: BLE001 - a stop goes on; what failed is said, and repaired at the next start
        print(
            f"stream: the last micro-batch's alert explanations were not all published ({type(error).__name__}: "
            f"{error}); the next start explains the alerts `explanations` lacks",
            file=sys.stderr,
            flush=True,
        )


class ProgressMetrics(StreamingQueryListener):
    """The rates, the state's rows and the consumer lag of the micro-batch that just ended, from Spark's
    progress event of one query (others in the session are not ours). Spark sends it after the micro-batch's
    commit, on its listener thread."""

    def __init__(self, metrics: StreamMetrics, query_id: str) -> None:
        self.metrics, self.query_id = metrics, query_id

    def onQueryStarted(self, event: Any) -> None:
        pass

    def onQueryProgress(self, event: Any) -> None:
        if str(event.progress.id) == self.query_id:
            self.metrics.observe_progress(json.loads(event.progress.json))

    def onQueryIdle(self, event: Any) -> None:
        pass

    def onQueryTerminated(self, event: Any) -> None:
        pass


STOP_SIGNALS = ("SIGTERM", "SIGINT", "SIGHUP")
STOP_GRACE_SECONDS = 20.0  # within Kubernetes' default 30 s between SIGTERM and SIGKILL
CLEANUP_WAIT_SECONDS = 10  # how long a query that died may take to end its thread before the job stops anyway


def _stop_between_batches(spark: SparkSession, query: StreamingQuery, grace_seconds: float) -> None:
    """Stop `query` once the micro-batch in flight has ended (its commits done), or after `grace_seconds`."""

    def in_flight() -> int | None:
        progress = query.lastProgress
        return progress["batchId"] + 1 if progress and query.status["isTriggerActive"] else None

    batch, deadline = in_flight(), time.monotonic() + grace_seconds
    while batch is not None and time.monotonic() < deadline:
        progress = query.lastProgress
        if (progress and progress["batchId"] >= batch) or not query.status["isTriggerActive"]:
            break
        time.sleep(0.05)
    stop_query(spark, query)


def _thread_stack(spark: SparkSession, query: StreamingQuery) -> str:
    """The JVM stack of the query's execution thread (named after its run id), one frame a line."""
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    try:
        for thread, frames in jvm.java.lang.Thread.getAllStackTraces().items():
            if str(query.runId) in thread.getName():
                return "\n".join(f"    at {frame.toString()}" for frame in frames) or "    (no frames)"
    except (Py4JError, ConnectionError) as error:
        return f"    (not available: {error})"
    return f"    (no JVM thread named after run {query.runId})"


def _driver_stopped(spark: SparkSession) -> bool:
    """Whether Spark's driver has stopped (or its JVM is gone)."""
    try:
        return bool(spark.sparkContext._jsc.sc().isStopped())
    except (Py4JError, ConnectionError):
        return True


@contextlib.contextmanager
def stop_signals() -> Iterator[list[str]]:
    """While inside, STOP_SIGNALS do not end the process: their names are appended to the list it gives (for
    `watch`), and the previous handlers come back at the end. Only the main thread can set handlers; from
    another, the list stays empty."""
    asked: list[str] = []

    def ask_to_stop(number: int, frame: object) -> None:
        asked.append(signal.Signals(number).name)

    handled = threading.current_thread() is threading.main_thread()
    previous = {name: signal.signal(getattr(signal, name), ask_to_stop) for name in STOP_SIGNALS} if handled else {}
    try:
        yield asked
    finally:
        for name, handler in previous.items():
            signal.signal(getattr(signal, name), handler)


def staged_failure(query: StreamingQuery, wait: bool = False) -> BaseException | None:
    """The error of `query`'s thread that appends its staged micro-batches (jobs/stream/staged_tables.py), once
    it failed; with `wait`, after its micro-batch in flight is appended."""
    held = RELEASED_AT_STOP.get(str(query.id))
    if held is None:
        return None
    tables = held[1].tables
    if wait:
        try:
            tables.wait()
        except Exception as error:  # noqa: BLE001 - returned, for the caller's QueryFailed
            return error
    return tables.failure()


def tables_failed(error: BaseException, checkpoint: str) -> QueryFailed:
    """The error that ends `fraud stream` when a staged micro-batch could not be appended to its tables."""
    return QueryFailed(
        f"query {QUERY}'s micro-batch could not be appended to its tables, so fraud stream stops; restart it: "
        f"the start appends what is staged under its checkpoint {checkpoint} ({type(error).__name__}: "
        f"{error_summary(str(error))})"
    )


def watch(spark: SparkSession, query: StreamingQuery, checkpoint: str, asked: Sequence[str]) -> None:
    """Wait on the running `query` until it ends; stop it between micro-batches once `asked` holds a signal's
    name (filled by a signal handler). Raises QueryFailed if the query died, or if Spark's driver shut down
    under it."""
    try:
        # a short wait at a time: the handler runs between two waits, in this thread, and a query that died
        # ends the job even if its thread hangs in its clean-up (then awaitTermination would never return)
        while not query.awaitTermination(1):
            if asked:
                print(
                    f"stream: {asked[0]} received: stopping the query after the micro-batch in flight; a "
                    f"restart resumes from {checkpoint}",
                    flush=True,
                )
                try:
                    _stop_between_batches(spark, query, STOP_GRACE_SECONDS)
                except (Py4JError, ConnectionError):  # the JVM is going too: the signal reached it as well
                    print(
                        f"stream: Spark's driver shut down meanwhile; a restart resumes from {checkpoint}", flush=True
                    )
                break
            # before the query's own error: a failed append also fails the next micro-batch, which waits on it
            unstaged = staged_failure(query)
            if unstaged is not None:
                _stop_between_batches(spark, query, STOP_GRACE_SECONDS)
                raise tables_failed(unstaged, checkpoint) from unstaged
            died = query.exception()  # set when the query died, even while its thread is still cleaning up
            if died is not None:
                if not query.awaitTermination(CLEANUP_WAIT_SECONDS):  # raises `died` once the clean-up ends
                    print(
                        f"stream: query {QUERY} died, and its thread is still in its clean-up after "
                        f"{CLEANUP_WAIT_SECONDS:g} s; the job stops without it. The thread's stack:\n"
                        f"{_thread_stack(spark, query)}",
                        flush=True,
                    )
                raise died
    except (StreamingQueryException, Py4JError, ConnectionError) as error:
        if asked:  # the signal reached the JVM too (sent to the process group): Spark stopped under the query
            print(
                f"stream: {asked[0]} received, and Spark's driver shut down under the query; a restart resumes "
                f"from {checkpoint}",
                flush=True,
            )
            return
        if not isinstance(error, StreamingQueryException) or _driver_stopped(spark):
            # the JVM was told to stop (cluster mode, where it runs this process; or a signal sent to it alone)
            raise QueryFailed(
                f"Spark's driver shut down under query {QUERY} (was its JVM sent a signal?); a "
                f"restart resumes from its checkpoint {checkpoint}"
            ) from error
        # a dead query must end the process, so that its scheduler (Kubernetes, YARN, Airflow) restarts it
        # from the checkpoint; the CLI exits non-zero with this message
        raise QueryFailed(
            f"query {QUERY} terminated with an error, so fraud stream stops; restart it to resume "
            f"from its checkpoint {checkpoint}: {error_summary(str(error))}"
        ) from error
    if asked:
        print(f"stream: stopped on {asked[0]}", flush=True)
        return
    unstaged = staged_failure(query, wait=True)  # the query ended (available now): its last micro-batch's tables
    if unstaged is not None:
        raise tables_failed(unstaged, checkpoint) from unstaged


# exceptions that only carry another one: Spark's wrapper of a foreachBatch error, py4j's of a JVM call's
WRAPPERS = ("ForeachBatchUserFuncException", "Py4JJavaError", "StreamingQueryException")
EXCEPTION_LINE = re.compile(r"^(?:: )?(?:[\w$]+\.)*(\w*(?:Exception|Error)): (.+)$")


def error_summary(text: str) -> str:
    """A dead query's error in one line: its first, and the first exception it carries that is not a wrapper
    (a foreachBatch error's first line ends in "Traceback (most recent call last):")."""
    first = text.strip().splitlines()[0] if text.strip() else "(no message)"
    for line in text.splitlines()[1:]:
        found = EXCEPTION_LINE.match(line.strip())
        if found and found.group(1) not in WRAPPERS:
            return f"{first} ... {found.group(1)}: {found.group(2)}"
    return first
