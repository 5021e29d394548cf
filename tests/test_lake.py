"""Idempotent Delta appends (jobs/core/lake.py): a replayed batch is written once, whoever else writes the table."""

from __future__ import annotations

from delta.tables import DeltaTable

from jobs.core import lake


def frame(spark, ids):
    return spark.createDataFrame([(i, "2018-04-01") for i in ids], "transaction_id long, day string")


def ids(spark, path):
    return sorted(r.transaction_id for r in spark.read.format("delta").load(path).collect())


def test_a_replayed_version_is_skipped(spark, tmp_path):
    path = str(tmp_path / "scores")
    assert lake.last_written(spark, path, "q") is None  # no table yet
    assert lake.append_idempotent(frame(spark, [1, 2]), path, "q", 0, partition_by=["day"])
    assert lake.append_idempotent(frame(spark, [3]), path, "q", 1, partition_by=["day"])
    assert not lake.append_idempotent(frame(spark, [3]), path, "q", 1, partition_by=["day"])  # the replay
    assert not lake.append_idempotent(frame(spark, [9]), path, "q", 0)  # older than the last one written
    assert ids(spark, path) == [1, 2, 3]
    assert lake.last_written(spark, path, "q") == 1
    notes = [r.userMetadata for r in DeltaTable.forPath(spark, path).history().orderBy("version").collect()]
    assert notes == ["q/0", "q/1"]


def test_writers_of_one_table_do_not_skip_each_other(spark, tmp_path):
    path = str(tmp_path / "dead_letters")  # fraud ingest and fraud stream both append dead letters
    assert lake.append_idempotent(frame(spark, [1]), path, "ingest", 5)
    assert lake.append_idempotent(frame(spark, [2]), path, "stream", 0)
    assert lake.append_idempotent(frame(spark, [3]), path, "ingest", 6)
    assert not lake.append_idempotent(frame(spark, [2]), path, "stream", 0)
    assert ids(spark, path) == [1, 2, 3]


def test_the_last_commit_is_found_beyond_the_first_page_of_history(spark, tmp_path, monkeypatch):
    path = str(tmp_path / "t")
    monkeypatch.setattr(lake, "HISTORY_PAGES", (2, 3, None))
    lake.append_idempotent(frame(spark, [1]), path, "stream", 7)
    for version in range(4):  # another writer's commits push it past the first two pages
        lake.append_idempotent(frame(spark, [10 + version]), path, "ingest", version)
    frame(spark, [99]).write.format("delta").mode("append").save(path)  # a commit without userMetadata
    frame(spark, [98]).write.format("delta").mode("append").option("userMetadata", "stream/by hand").save(path)
    assert lake.last_written(spark, path, "stream") == 7
    assert not lake.append_idempotent(frame(spark, [1]), path, "stream", 7)
    assert lake.last_written(spark, path, "nobody") is None
    assert ids(spark, path) == [1, 10, 11, 12, 13, 98, 99]


def properties(spark, path):
    return spark.sql(f"DESCRIBE DETAIL delta.`{path}`").collect()[0]["properties"]


def test_table_properties_are_set_on_creation_and_on_an_existing_table(spark, tmp_path):
    made, old = str(tmp_path / "made"), str(tmp_path / "old")
    every_100 = {"delta.checkpointInterval": "100"}
    assert lake.append_idempotent(frame(spark, [1]), made, "q", 0, properties=every_100)
    assert properties(spark, made) == every_100
    assert lake.append_idempotent(frame(spark, [2]), made, "q", 1, properties={"delta.checkpointInterval": "7"})
    assert properties(spark, made) == every_100  # an append does not change them

    assert lake.set_properties(spark, str(tmp_path / "missing"), every_100) == {}
    frame(spark, [1]).write.format("delta").save(old)  # made before the setting
    assert properties(spark, old) == {}
    assert lake.set_properties(spark, old, every_100) == every_100
    assert properties(spark, old) == every_100
    assert lake.set_properties(spark, old, every_100) == {}  # nothing to change, no commit
    assert DeltaTable.forPath(spark, old).history().count() == 2


def test_columns_a_new_version_writes_are_added_to_an_older_table(spark, tmp_path):
    path = str(tmp_path / "scores")
    wider = "transaction_id long, day string, card_mean_ratio_1d_30d double, top_features array<string>"
    assert lake.add_columns(spark, path, spark.createDataFrame([], wider).schema) == []  # no table yet
    lake.append_idempotent(frame(spark, [1]), path, "stream", 0)
    assert lake.add_columns(spark, path, spark.createDataFrame([], wider).schema) == [
        "card_mean_ratio_1d_30d",
        "top_features",
    ]
    assert lake.add_columns(spark, path, spark.createDataFrame([], wider).schema) == []
    # the new writer's frame, its columns in another order, appends without schema merging
    new = spark.createDataFrame(
        [(["a=1"], 2, "2018-04-02", 1.5)],
        "top_features array<string>, transaction_id long, day string, card_mean_ratio_1d_30d double",
    )
    assert lake.append_idempotent(new, path, "stream", 1)
    rows = sorted(spark.read.format("delta").load(path).collect(), key=lambda r: r.transaction_id)
    assert [(r.transaction_id, r.card_mean_ratio_1d_30d, r.top_features) for r in rows] == [
        (1, None, None),
        (2, 1.5, ["a=1"]),
    ]


def test_an_append_that_meets_a_concurrent_alter_table_is_retried(spark, tmp_path):
    """`fraud stream` sets table properties (ALTER TABLE) at start, while `fraud ingest` may be appending to
    the same `dead_letters`: Delta then refuses the append's commit (MetadataChangedException). The append
    is retried from the new snapshot, once, and its rows land exactly once."""
    import threading

    from pyspark.sql import functions as F

    from jobs.core.waiting import wait_until

    path = str(tmp_path / "dead_letters")
    assert lake.append_idempotent(frame(spark, [1]), path, "stream", 0)
    started, altered = tmp_path / "append-started", tmp_path / "altered"

    @F.udf("long")
    def after_the_alter(value):  # the append's job waits here, inside its transaction, for the ALTER TABLE
        if not altered.exists():
            started.touch()
            wait_until(altered.exists, "the ALTER TABLE of the other thread", 60, 0.05)
        return value

    def alter() -> None:
        wait_until(started.exists, "the append to start its job", 60, 0.05)
        spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ('delta.checkpointInterval' = '100')")
        altered.touch()

    other = threading.Thread(target=alter)
    other.start()
    try:
        rows = frame(spark, [2, 3]).withColumn("transaction_id", after_the_alter("transaction_id"))
        assert lake.append_idempotent(rows, path, "ingest", 7)
    finally:
        other.join()
    assert ids(spark, path) == [1, 2, 3]
    history = DeltaTable.forPath(spark, path).history().orderBy("version").collect()
    assert [(r.operation, r.userMetadata) for r in history] == [
        ("WRITE", "stream/0"),
        ("SET TBLPROPERTIES", None),
        ("WRITE", "ingest/7"),
    ]


def test_two_writers_of_one_batch_append_it_once_after_each_checked_before_the_other_wrote(
    spark, tmp_path, monkeypatch
):
    """Two drivers on one checkpoint (one thought dead and restarted while it still runs): each checks the
    history before the other has committed, so the check finds nothing for both. Delta's transaction id in
    the commit refuses the second append."""
    path = str(tmp_path / "scores")
    assert lake.append_idempotent(frame(spark, [1]), path, "q", 0)
    monkeypatch.setattr(lake, "last_written", lambda *args: 0)  # both saw only batch 0 written
    monkeypatch.setattr(lake, "_LAST_APPENDED", {})
    lake.append_idempotent(frame(spark, [2, 3]), path, "q", 1)  # the restarted driver
    monkeypatch.setattr(lake, "_LAST_APPENDED", {})  # the old driver, another process: it remembers nothing
    lake.append_idempotent(frame(spark, [2, 3]), path, "q", 1)
    assert ids(spark, path) == [1, 2, 3]
    commits = DeltaTable.forPath(spark, path).history().select("userMetadata").collect()
    assert sorted(r.userMetadata for r in commits) == ["q/0", "q/1"]


def test_two_writers_of_one_batch_committing_at_the_same_time_append_it_once(spark, tmp_path, monkeypatch):
    """The same two drivers, both writing at once: one commit wins, the other is refused as a conflict or
    skipped by Delta; the table holds the batch once."""
    import threading

    path = str(tmp_path / "scores")
    assert lake.append_idempotent(frame(spark, [1]), path, "q", 0)
    both_checked = threading.Barrier(2, timeout=60)

    def checked_before_the_other_wrote(*args):
        both_checked.wait()
        return 0

    monkeypatch.setattr(lake, "last_written", checked_before_the_other_wrote)
    monkeypatch.setattr(lake, "_LAST_APPENDED", {})
    errors: list[BaseException] = []

    def driver() -> None:
        try:
            lake.append_idempotent(frame(spark, [2, 3]), path, "q", 1)
        except BaseException as error:  # noqa: BLE001 - read below
            errors.append(error)

    # after a refused commit, the retry checks again: let it pass alone
    monkeypatch.setattr(lake, "CONFLICT_RETRIES", 0)
    threads = [threading.Thread(target=driver) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert ids(spark, path) == [1, 2, 3]
    # the loser, if Delta saw the two commits race, was refused (never appended); else Delta skipped it
    assert all(type(e).__name__ == "ConcurrentTransactionException" for e in errors), errors
