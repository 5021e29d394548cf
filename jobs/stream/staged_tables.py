"""`scores` and `alerts` off the micro-batch's path (`StagedTables`), with `stream.tables_on_thread`.

A micro-batch ends once its scored rows are durable, not once Delta has committed them: the driver writes the
rows it already holds (one Arrow file a micro-batch, under the query's checkpoint) and a thread of their own
appends them to the two tables while the next micro-batch runs; the file takes a few milliseconds. What a
stop or a crash leaves staged is appended by the next start before its query runs (`recover`). The appends
are idempotent by batch id (jobs/core/lake.py), so a staged micro-batch that Spark then runs again (it
crashed before Spark committed it) is appended once.
The append then shares the cores with the next micro-batch: it pays where the driver and the executors have
cores to spare, not on two (`make bench-stream` measures both ways).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pyarrow as pa
from pyspark.sql import SparkSession

from jobs.core.config import join_location
from jobs.core.lake import delete_file, list_files, read_bytes, write_bytes

# the folder of staged micro-batches, inside the query's checkpoint: deleting the checkpoint deletes them too
STAGE_FOLDER = "staged_tables"
SUFFIX = ".arrow"


def to_arrow_file(rows: pa.Table) -> bytes:
    """`rows` as the bytes of an Arrow file (zstd-compressed)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, rows.schema, options=pa.ipc.IpcWriteOptions(compression="zstd")) as writer:
        writer.write_table(rows)
    return bytes(sink.getvalue().to_pybytes())


def from_arrow_file(data: bytes) -> pa.Table:
    """The rows of an Arrow file's bytes (`to_arrow_file`)."""
    return pa.ipc.open_file(pa.py_buffer(data)).read_all()


class StagedTables:
    """Each micro-batch's rows staged under `checkpoint`, then `append(rows, batch_id)` on a thread of its own,
    one micro-batch after the other. At most one micro-batch is appended
    while the next runs: `stage` waits for the previous one first, and raises its error, if any, so that the
    query fails and its restart appends what is staged."""

    def __init__(self, spark: SparkSession, checkpoint: str, append: Callable[[pa.Table, int], Any]) -> None:
        self.spark, self.append = spark, append
        self.folder = join_location(checkpoint, STAGE_FOLDER)
        self.pool: ThreadPoolExecutor | None = None
        self.pending: Future[Any] | None = None
        self.failed: BaseException | None = None  # an append's error, once `wait` raised it

    def file_of(self, batch_id: int) -> str:
        return join_location(self.folder, f"{batch_id:012d}{SUFFIX}")

    def stage(self, rows: pa.Table, batch_id: int) -> None:
        """Write `rows` to the stage (durable when this returns), then hand them to the thread."""
        write_bytes(self.spark, self.file_of(batch_id), to_arrow_file(rows))
        self.wait()
        if self.pool is None:
            self.pool = ThreadPoolExecutor(1, thread_name_prefix="staged-tables")
        self.pending = self.pool.submit(self._append, rows, batch_id)

    def _append(self, rows: pa.Table, batch_id: int) -> None:
        self.append(rows, batch_id)
        delete_file(self.spark, self.file_of(batch_id))

    def wait(self) -> None:
        """Until the micro-batch on the thread is appended (its error, if any, raised)."""
        if self.pending is not None:
            pending, self.pending = self.pending, None
            try:
                pending.result()
            except BaseException as error:
                self.failed = error
                raise

    def failure(self) -> BaseException | None:
        """The error of an append that failed (None while it runs or if none did)."""
        pending = self.pending
        if self.failed is None and pending is not None and pending.done():
            return pending.exception()
        return self.failed

    def close(self) -> None:
        """Append what is on the thread, then end the thread (a later `stage` starts another)."""
        try:
            self.wait()
        finally:
            if self.pool is not None:
                pool, self.pool = self.pool, None
                pool.shutdown(wait=True)

    def recover(self) -> list[int]:
        """Append, oldest first, the micro-batches a stop left staged; their batch ids."""
        self.wait()
        found = sorted(
            (int(name.rsplit("/", 1)[-1].removesuffix(SUFFIX)), name)
            for name in list_files(self.spark, self.folder, suffix=SUFFIX)
        )
        for batch_id, name in found:
            self._append(from_arrow_file(read_bytes(self.spark, name)), batch_id)
        return [batch_id for batch_id, _ in found]
