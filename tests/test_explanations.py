"""The alerts' explanations off the micro-batch's path (jobs/stream/explanations.py): computed on a thread of
their own, published, appended to `explanations`; a failure there fails the next micro-batch; a start explains
the alerts a stop left unexplained."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from catboost import CatBoostClassifier

from features.definitions import FEATURE_NAMES
from jobs.stream.alerts_topic import ALERT_NAMESPACE
from jobs.stream.explanations import Explainer, explain, explain_missing


@pytest.fixture(scope="module")
def booster() -> CatBoostClassifier:
    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.random((400, len(FEATURE_NAMES))), columns=FEATURE_NAMES)
    y = (x[FEATURE_NAMES[0]] + 0.3 * x[FEATURE_NAMES[1]] > 0.9).astype(int)
    return CatBoostClassifier(iterations=20, depth=3, verbose=False, random_seed=0).fit(x, y)


def alerts(first_id: int, n: int, version: str = "1") -> pd.DataFrame:
    rng = np.random.default_rng(first_id)
    frame = pd.DataFrame(rng.random((n, len(FEATURE_NAMES))), columns=FEATURE_NAMES)
    return frame.assign(
        transaction_id=np.arange(first_id, first_id + n, dtype=np.int64),
        model_version=version,
        tx_datetime=pd.Timestamp("2026-12-01 12:00") + pd.to_timedelta(np.arange(n), unit="min"),
    )


def test_an_alert_s_explanation_is_published_and_appended_off_the_path(spark, make_cfg, booster):
    cfg = make_cfg()
    path = cfg.table_path("explanations")
    published: list[tuple[pd.DataFrame, dt.datetime, str]] = []
    gate = threading.Event()

    def publish(explained: pd.DataFrame, alerted_at: dt.datetime) -> None:
        gate.wait(30)  # the micro-batch's thread goes on meanwhile
        published.append((explained, alerted_at, threading.current_thread().name))

    explainer = Explainer(spark, path, publish, "test-query", {})
    alerted_at = dt.datetime(2026, 12, 1, 12, 30)
    explainer.submit(booster, alerts(1, 5), alerted_at, batch_id=0)
    assert not published, "submit returns before the explanation is made"
    gate.set()
    explainer.submit(booster, alerts(6, 3), alerted_at, batch_id=1)  # waits for batch 0's first
    explainer.close()
    assert [len(e) for e, _, _ in published] == [5, 3] and published[0][1] == alerted_at
    assert all(name.startswith("explanations") for _, _, name in published)
    first = published[0][0]
    assert list(first["top_features"]) == explain(booster, alerts(1, 5))
    assert all(len(top) == 3 and top[0].split("=")[0] in FEATURE_NAMES for top in first["top_features"])
    rows = spark.read.format("delta").load(path).orderBy("transaction_id").toPandas()
    assert list(rows["transaction_id"]) == list(range(1, 9))
    assert list(rows["alert_id"]) == [str(uuid.uuid5(ALERT_NAMESPACE, str(t))) for t in range(1, 9)]
    assert [list(t) for t in rows["top_features"][:5]] == list(first["top_features"])
    # a micro-batch done again after a restart appends nothing twice (its batch id is the key)
    explainer.submit(booster, alerts(6, 3), alerted_at, batch_id=1)
    explainer.close()
    assert spark.read.format("delta").load(path).count() == 8


def test_the_table_takes_the_explanations_of_many_micro_batches_in_one_append(spark, make_cfg, booster):
    from delta.tables import DeltaTable

    path = make_cfg().table_path("explanations")
    published: list[int] = []
    explainer = Explainer(spark, path, lambda e, a: published.append(len(e)), "test-query", {}, every_seconds=3600)
    for batch_id, first in enumerate((1, 4, 7)):
        explainer.submit(booster, alerts(first, 3), dt.datetime(2026, 12, 1), batch_id=batch_id)
    explainer.wait()
    assert published == [3, 3, 3], "each on the topic at once"
    assert not (Path(path) / "_delta_log").exists(), "none in the table before the hour or the stop"
    explainer.close()  # a stop appends what is held
    history = DeltaTable.forPath(spark, path).history().select("userMetadata").collect()
    assert [r.userMetadata for r in history] == ["test-query/2"], "one append, keyed by the newest micro-batch"
    assert spark.read.format("delta").load(path).count() == 9
    # a restart: Spark does micro-batch 2 again (its end was not recorded before the crash), then 3
    again = Explainer(spark, path, lambda e, a: None, "test-query", {}, every_seconds=0)
    again.submit(booster, alerts(7, 3), dt.datetime(2026, 12, 1), batch_id=2)
    again.submit(booster, alerts(10, 2), dt.datetime(2026, 12, 1), batch_id=3)
    again.close()
    ids = sorted(r.transaction_id for r in spark.read.format("delta").load(path).collect())
    assert ids == list(range(1, 12)), "micro-batch 2's alerts once, 3's appended"


def test_a_failure_to_explain_fails_the_next_micro_batch(spark, make_cfg, booster):
    def publish(explained: pd.DataFrame, alerted_at: dt.datetime) -> None:
        raise RuntimeError("the alerts topic is gone")

    explainer = Explainer(spark, make_cfg().table_path("explanations"), publish, "test-query", {})
    explainer.submit(booster, alerts(1, 2), dt.datetime(2026, 12, 1), batch_id=0)
    with pytest.raises(RuntimeError, match="the alerts topic is gone"):
        explainer.submit(booster, alerts(3, 2), dt.datetime(2026, 12, 1), batch_id=1)
    # the micro-batch failed before handing its alerts over: nothing is left to explain (the next start
    # explains both micro-batches' alerts from `scores`), and a stop closes at once
    assert explainer.pending is None
    explainer.close()
    explainer.submit(booster, alerts(5, 1), dt.datetime(2026, 12, 1), batch_id=2)
    with pytest.raises(RuntimeError, match="the alerts topic is gone"):
        explainer.close()  # a stop raises it too


def test_a_start_explains_the_alerts_a_stop_left_unexplained(spark, make_cfg, booster):
    cfg = make_cfg()
    scores_path, path = cfg.table_path("scores"), cfg.table_path("explanations")
    scored = pd.concat([alerts(1, 6, "1"), alerts(7, 4, "2")], ignore_index=True)
    scored["decision"] = scored["transaction_id"] % 2 == 1  # 1, 3, 5 of model 1; 7, 9 of model 2
    scored["tx_date"] = scored["tx_datetime"].dt.date
    spark.createDataFrame(scored).write.format("delta").partitionBy("tx_date").save(scores_path)
    explainer = Explainer(spark, path, lambda e, a: None, "test-query", {})
    explainer.submit(booster, scored[scored["transaction_id"] == 1], dt.datetime(2026, 12, 1), batch_id=0)
    explainer.close()  # alert 1 was explained before the stop; 3, 5, 7 and 9 were not
    loaded: list[str] = []

    def load(version: str) -> CatBoostClassifier:
        loaded.append(version)
        return booster

    since = dt.datetime(2026, 11, 30, 12)
    assert explain_missing(spark, scores_path, path, load, since, {}) == [3, 5, 7, 9]
    assert sorted(loaded) == ["1", "2"], "each alert with the model version that scored it"
    rows = spark.read.format("delta").load(path).orderBy("transaction_id").toPandas()
    assert list(rows["transaction_id"]) == [1, 3, 5, 7, 9] and list(rows["model_version"]) == ["1", "1", "1", "2", "2"]
    expected = explain(booster, scored[scored["transaction_id"] == 3])[0]
    assert list(rows.loc[rows["transaction_id"] == 3, "top_features"].iloc[0]) == expected
    assert explain_missing(spark, scores_path, path, load, since, {}) == []  # nothing left
    assert explain_missing(spark, scores_path, path, load, None, {}) == []  # nothing scored yet
    # the micro-batch of alerts 3 and 5, done again after the crash, appends neither a second time
    explainer.explained_at_start = {3, 5}
    explainer.submit(booster, scored[scored["transaction_id"].isin([3, 5])], dt.datetime(2026, 12, 1), batch_id=1)
    explainer.close()
    assert spark.read.format("delta").load(path).count() == 5


def test_a_stop_says_when_the_last_explanations_failed_and_goes_on(spark, capsys):
    from jobs.core.metrics import StreamMetrics
    from jobs.stream import supervision

    class Writer:
        def close(self) -> None:
            raise RuntimeError("the alerts topic is gone")

    class Query:
        id = "a-query-of-this-test"

    listener = supervision.ProgressMetrics(StreamMetrics(), Query.id)
    spark.streams.addListener(listener)
    supervision.RELEASED_AT_STOP[Query.id] = (listener, Writer())
    supervision.release(spark, Query())  # no exception: the stop goes on
    assert (
        "the last micro-batch's alert explanations were not all published (RuntimeError: the alerts topic is "
        "gone); the next start explains the alerts `explanations` lacks"
    ) in capsys.readouterr().err
    assert Query.id not in supervision.RELEASED_AT_STOP


def test_a_model_s_table_of_leaves_is_built_on_the_explainer_s_thread(spark, make_cfg):
    from models.catboost_model import LeafTable

    rng = np.random.default_rng(3)
    x = pd.DataFrame(rng.random((300, len(FEATURE_NAMES))), columns=FEATURE_NAMES)
    model = CatBoostClassifier(iterations=5, depth=2, verbose=False, random_seed=0).fit(x, x[FEATURE_NAMES[0]] > 0.5)
    built: list[str] = []
    own = LeafTable.build

    def build(cls: type[LeafTable], booster: CatBoostClassifier) -> LeafTable | None:
        built.append(threading.current_thread().name)
        return own(booster)

    explainer = Explainer(spark, make_cfg().table_path("explanations"), lambda e, a: None, "test-query", {})
    LeafTable.build = classmethod(build)  # type: ignore[method-assign, assignment]
    try:
        explainer.prepare(model)
        explainer.wait()
        explain(model, x.head(3))  # the alerts' explanation finds it built
    finally:
        LeafTable.build = own  # type: ignore[method-assign]
        explainer.close()
    assert len(built) == 1 and built[0].startswith("explanations")
