"""Feature definitions on small hand-computed cases."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from features.batch import build_features, compute_aggregates
from features.definitions import AGGREGATES, FEATURE_NAMES, FEATURES, derive_features, parse_delay

T0 = dt.datetime(2018, 4, 2, 10, 0, 0)  # a Monday


def tx(spark, rows):
    """rows: (id, hours after T0 (float), card, terminal, amount, fraud)."""
    data = [(i, T0 + dt.timedelta(hours=h), c, t, float(a), f, 1 if f else 0) for i, h, c, t, a, f in rows]
    return spark.createDataFrame(
        data,
        "transaction_id long, tx_datetime timestamp, customer_id int, "
        "terminal_id int, tx_amount double, tx_fraud int, tx_fraud_scenario int",
    )


def by_id(df, columns):
    return {r.transaction_id: tuple(r[c] for c in columns) for r in df.collect()}


def test_card_windows_include_the_transaction_and_23_hours_before_its_hour(spark):
    rows = [
        (1, 0.0, 7, 1, 10.0, 0),
        (2, 0.5, 7, 1, 20.0, 0),  # same hour, after 1
        (3, 23.2, 7, 1, 30.0, 0),  # hour +23: 1 and 2 are 23 hours back -> in the 1-day window
        (4, 24.1, 7, 1, 40.0, 0),  # hour +24: 1 and 2 are 24 hours back -> out of the 1-day window
        (5, 24.1, 8, 1, 99.0, 0),  # another card
    ]
    out = compute_aggregates(tx(spark, rows), label_delay_hours=168)
    assert by_id(out, ["card_tx_count_1d", "card_amount_sum_1d", "card_tx_count_7d"]) == {
        1: (1.0, 10.0, 1.0),
        2: (2.0, 30.0, 2.0),
        3: (3.0, 60.0, 3.0),
        4: (2.0, 70.0, 4.0),
        5: (1.0, 99.0, 1.0),
    }


def test_transactions_in_the_same_second_count_in_id_order(spark):
    rows = [(11, 1.0, 7, 1, 5.0, 0), (10, 1.0, 7, 1, 6.0, 0)]
    out = compute_aggregates(tx(spark, rows), 168)
    assert by_id(out, ["card_tx_count_1d"]) == {10: (1.0,), 11: (2.0,)}


def test_terminal_label_windows_end_at_the_delay(spark):
    d = 2  # label delay in hours, to keep the case small
    rows = [
        (1, 0.0, 1, 5, 10.0, 1),  # fraud at the terminal, hour 0
        (2, 1.0, 2, 5, 10.0, 0),  # hour 1: hour 0 is within the delay -> not known yet
        (3, 2.9, 3, 5, 10.0, 0),  # hour 2: still within the delay (window ends at hour 2-2-1 = -1)
        (4, 3.0, 4, 5, 10.0, 0),  # hour 3: window [3-2-24, 3-2-1] = [-23, 0] -> sees 1 (fraud)
        (5, 24.5, 4, 5, 10.0, 0),  # hour 24: window [-2, 21] -> sees 1, 2, 3, 4
        (6, 27.0, 4, 5, 10.0, 0),  # hour 27: window [1, 24] -> sees 2, 3, 4, 5 (1 left the 1-day window)
    ]
    out = compute_aggregates(tx(spark, rows), label_delay_hours=d)
    assert by_id(out, ["terminal_tx_count_1d", "terminal_fraud_count_1d"]) == {
        1: (0.0, 0.0),
        2: (0.0, 0.0),
        3: (0.0, 0.0),
        4: (1.0, 1.0),
        5: (4.0, 1.0),
        6: (4.0, 0.0),
    }


def test_derived_features_by_hand(spark):
    rows = [
        (1, 0.0, 7, 1, 10.0, 0),
        (2, 1.0, 7, 1, 30.0, 0),
        (3, 2.0, 7, 1, 100.0, 0),
        (4, 200.0, 9, 1, 5.0, 0),
        (5, 150.0, 7, 2, 60.0, 0),
        (6, 200.0, 7, 2, 90.0, 0),
    ]
    out = build_features(tx(spark, rows), 1)
    got = {r.transaction_id: r for r in out.collect()}
    assert out.columns[-len(FEATURE_NAMES) :] == FEATURE_NAMES
    assert got[3].card_amount_mean_1d == pytest.approx(140 / 3)
    assert got[3].card_amount_ratio_30d == pytest.approx(100 / 20)  # 100 against the mean of 10 and 30
    assert got[1].card_amount_ratio_30d is None  # no other transaction yet: null
    # amounts 10, 30, 100: mean 140/3, variance (100 + 900 + 10000)/3 - (140/3)**2
    variance = 11_000 / 3 - (140 / 3) ** 2
    assert got[3].card_amount_zscore_1d == pytest.approx((100 - 140 / 3) / (variance + 1) ** 0.5)
    assert got[1].card_amount_zscore_30d == pytest.approx(0.0)  # alone: its own mean
    # card 7 at hour 200: 1 day [177, 200] holds 90; 7 days [33, 200] hold 60 and 90; 30 days all five (mean 58)
    assert got[6].card_mean_ratio_1d_30d == pytest.approx(90 / 58)
    assert got[6].card_mean_ratio_7d_30d == pytest.approx(75 / 58)
    assert (got[3].card_mean_ratio_1d_30d, got[3].card_mean_ratio_7d_30d) == (pytest.approx(1.0), pytest.approx(1.0))
    # hour 200, 1-hour delay: the 7-day window is hours [31, 198], the 30-day one [-521, 198]
    assert (got[4].terminal_tx_count_7d, got[4].terminal_tx_count_30d, got[4].terminal_risk_30d) == (0.0, 3.0, 0.0)
    assert (got[1].tx_is_weekend, got[1].tx_is_night) == (0.0, 0.0)  # Monday 10:00 UTC
    assert got[1].tx_date == dt.date(2018, 4, 2)


def test_every_feature_has_a_description_and_every_aggregate_a_window():
    assert len(set(FEATURE_NAMES)) == len(FEATURES) and all(f.description for f in FEATURES)
    assert {a.hour_range(168) for a in AGGREGATES if a.name == "terminal_tx_count_7d"} == {(-336, -169)}
    assert {a.hour_range(168) for a in AGGREGATES if a.name == "card_tx_count_1d"} == {(-23, 0)}


def test_derive_features_names_missing_columns():
    with pytest.raises(ValueError, match=r"derive_features: the input must contain .* but \['card_tx_count_1d'"):
        derive_features(pd.DataFrame({"tx_datetime": [], "tx_amount": []}))


def test_parse_delay():
    assert [parse_delay(x) for x in ("7d", "1d", "1h", "36h", 5)] == [168, 24, 1, 36, 5]
    with pytest.raises(ValueError, match=r"label delay must look like 7d, 1d or 1h, found 'soon'"):
        parse_delay("soon")


def test_a_table_built_by_other_definitions_is_replaced_not_read(spark, make_cfg):
    from pyspark.sql import functions as F

    from jobs.batch import build_features as job

    cfg = make_cfg()
    rows = [(1, 0.0, 7, 1, 10.0, 0), (2, 1.0, 7, 1, 30.0, 0), (3, 30.0, 8, 2, 5.0, 1)]
    tx(spark, rows).withColumn("tx_date", F.to_date("tx_datetime")).write.format("delta").save(
        cfg.table_path("clean_transactions")
    )
    assert job.run(spark, cfg, 1)["rows"] == 3
    path = cfg.table_path("features_transactions")
    # what an earlier version wrote: one input fewer, and a second label delay built with it
    old = spark.read.format("delta").load(path).drop("card_mean_ratio_7d_30d")
    (
        old.unionByName(old.withColumn("label_delay_hours", F.lit(24)))
        .write.format("delta")
        .mode("overwrite")
        .option("overwriteSchema", "true")
        .partitionBy("label_delay_hours", "tx_date")
        .save(path)
    )
    assert job.read_features(spark, cfg, 1) is None and job.read_features(spark, cfg, 24) is None

    report = job.run(spark, cfg, 1)
    assert report["rows"] == 3
    assert "missing ['card_mean_ratio_7d_30d'], extra []" in report["replaced_stale_table"]
    table = spark.read.format("delta").load(path)
    assert set(FEATURE_NAMES) <= set(table.columns)
    assert {r.label_delay_hours for r in table.select("label_delay_hours").distinct().collect()} == {1}
    assert job.run(spark, cfg, 24)["rows"] == 3 and "replaced_stale_table" not in job.run(spark, cfg, 1)
    assert table.where("transaction_id = 2").first().card_mean_ratio_1d_30d == pytest.approx(1.0)


def test_a_rebuild_computes_only_the_changed_days_and_equals_a_full_build(spark, make_cfg):
    import numpy as np
    from pyspark.sql import functions as F

    from jobs.batch import build_features as job

    cfg = make_cfg()
    rng = np.random.default_rng(7)
    hours = np.sort(rng.uniform(0, 50 * 24, 600))  # 50 days, 5 cards, 3 terminals, some frauds
    rows = [
        (
            i,
            float(h),
            int(rng.integers(1, 6)),
            int(rng.integers(1, 4)),
            float(rng.integers(1, 200)),
            int(rng.random() < 0.1),
        )
        for i, h in enumerate(hours)
    ]
    every = tx(spark, rows).withColumn("tx_date", F.to_date("tx_datetime"))
    clean_path, cut = cfg.table_path("clean_transactions"), T0 + dt.timedelta(days=40)  # 2018-05-12 10:00

    def append(df):
        df.write.format("delta").mode("append").partitionBy("tx_date").save(clean_path)

    def table():
        return (
            spark.read.format("delta")
            .load(cfg.table_path("features_transactions"))
            .where("label_delay_hours = 24")
            .toPandas()
            .sort_values("transaction_id")
            .reset_index(drop=True)
        )

    def assert_equals_a_full_build(clean):
        expected = build_features(clean, 24).toPandas().sort_values("transaction_id").reset_index(drop=True)
        got = table()
        assert got["transaction_id"].tolist() == expected["transaction_id"].tolist()
        for name in FEATURE_NAMES:
            assert np.allclose(got[name], expected[name], equal_nan=True), name

    def files_before(day):
        return {
            r.f
            for r in spark.read.format("delta")
            .load(cfg.table_path("features_transactions"))
            .where(f"tx_date < DATE'{day}'")
            .select(F.col("_metadata.file_path").alias("f"))
            .distinct()
            .collect()
        }

    append(every.where(F.col("tx_datetime") < cut))
    assert job.run(spark, cfg, 24)["mode"] == "full"
    kept = files_before("2018-05-12")
    # the next file: the rest of 2018-05-12, and 8 more days. The history read starts 32 days before
    append(every.where(F.col("tx_datetime") >= cut))
    report = job.run(spark, cfg, 24)
    assert report["mode"] == "changed days" and report["first_day_built"] == "2018-05-12"
    assert files_before("2018-05-12") == kept  # the days before were not rewritten
    assert report["days_built"] == every.where("tx_date >= DATE'2018-05-12'").select("tx_date").distinct().count()
    assert report["rows"] == 600
    assert_equals_a_full_build(every)
    assert job.run(spark, cfg, 24) | {"table": None} == {
        "table": None,
        "label_delay_hours": 24,
        "mode": "up to date",
        "days_built": 0,
        "first_day_built": None,
        "rows": 600,
    }
    # a late file adds a fraud to an old day: that day and every later one are rebuilt
    late = tx(spark, [(10_000, 20 * 24 + 5.5, 1, 2, 99.0, 1)]).withColumn("tx_date", F.to_date("tx_datetime"))
    append(late)
    report = job.run(spark, cfg, 24)
    assert report["first_day_built"] == "2018-04-22" and report["rows"] == 601
    assert_equals_a_full_build(every.unionByName(late))
    # an amount corrected in place: same rows, same ids
    spark.sql(f"UPDATE delta.`{clean_path}` SET tx_amount = tx_amount + 0.01 WHERE transaction_id = 450")
    day = str(spark.read.format("delta").load(clean_path).where("transaction_id = 450").first().tx_date)
    assert job.run(spark, cfg, 24)["first_day_built"] == day
    assert_equals_a_full_build(spark.read.format("delta").load(clean_path))
    assert job.run(spark, cfg, 24, full=True)["mode"] == "full"
    assert_equals_a_full_build(spark.read.format("delta").load(clean_path))
