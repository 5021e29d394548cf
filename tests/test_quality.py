"""Row-level rules read from the expectation suite, on hand-made lines."""

from __future__ import annotations

import pytest

from jobs.batch.quality import Rule, flag_rules, load_rules, prepare_lines, rule_fails
from tests.frames import assert_frame_equal

GOOD = "0,2019-08-22 06:51:03,0,711,70.91,24663,0,0,0"


def flagged(spark, lines: list[str]):
    _, rules = load_rules()
    df = spark.createDataFrame([(i, line) for i, line in enumerate(lines)], "n int, raw_line string")
    return flag_rules(prepare_lines(df), rules).select("n", "failed_rules")


def test_each_defect_fails_the_rules_it_should(spark):
    lines = [
        GOOD,
        "1,2019-08-22 06:51:03,0,Err,70.91,24663,0,0,0",  # terminal id not an integer
        "2,2019-08-22 06:51:03,-999999,711,70.91,24663,0,0,0",  # customer sentinel
        "3,2019-08-22 06:51:03,0,89518096,70.91,24663,0,0,0",  # terminal outlier
        "4,2019-02-30 06:51:03,0,711,70.91,24663,0,0,0",  # no such date
        "40,9999-12-31 06:51:03,0,711,70.91,24663,0,0,0",  # beyond what the streaming state can hold
        "5,2019-08-22 06:51:03,0,711,70.91,24663,2,0,0",  # days disagree with seconds
        "6,2019-08-22 06:51:04,0,711,70.91,24663,0,0,0",  # seconds disagree with the datetime
        "7,2019-08-22 06:51:03,0,711,70.91,24663,0",  # short line: labels missing
        "8,2019-08-22 06:51:03,0,711,-5.00,24663,0,0,0",  # negative amount
        "9,2019-08-22 06:51:03,0,711,0.00,24663,0,0,0",  # zero amount
        "10,2019-08-22 06:51:03,0,711,9999.99,24663,0,1,1",  # a huge amount is fraud, never an outlier
        "11,2019-08-22 06:51:03,0,711,70.91,24663,0,2,0",  # fraud label out of range
        "12,2019-08-22 06:51:03,0,711,70.91,24663,0,1,0",  # fraud without a scenario
        "13,2019-08-22 06:51:03,0,711,abc,24663,0,0,0",  # amount not numeric
        "14,2019-08-22 06:51:03,0,711,70.91,24663,0,0,0",  # transaction id 14 twice, different lines
        "14,2019-08-22 06:51:03,0,712,70.91,24663,0,0,0",
        "",  # an empty line
    ]
    assert_frame_equal(
        flagged(spark, lines),
        [
            {"n": 0, "failed_rules": []},
            {"n": 1, "failed_rules": ["terminal_id_not_null"]},
            {"n": 2, "failed_rules": ["customer_id_range"]},
            {"n": 3, "failed_rules": ["terminal_id_range"]},
            {"n": 4, "failed_rules": ["tx_datetime_not_null"]},
            {"n": 5, "failed_rules": ["tx_datetime_not_null"]},
            {"n": 6, "failed_rules": ["tx_time_days_consistent"]},
            {"n": 7, "failed_rules": ["tx_time_seconds_consistent"]},
            {"n": 8, "failed_rules": ["field_count", "tx_fraud_not_null", "tx_fraud_scenario_not_null"]},
            {"n": 9, "failed_rules": ["tx_amount_positive"]},
            {"n": 10, "failed_rules": ["tx_amount_positive"]},
            {"n": 11, "failed_rules": []},
            {"n": 12, "failed_rules": ["tx_fraud_in_set"]},
            {"n": 13, "failed_rules": ["tx_fraud_consistent"]},
            {"n": 14, "failed_rules": ["tx_amount_not_null"]},
            {"n": 15, "failed_rules": ["transaction_id_unique"]},
            {"n": 16, "failed_rules": ["transaction_id_unique"]},
            {
                "n": 17,
                "failed_rules": [
                    "field_count",
                    *[
                        f"{c}_not_null"
                        for c in (
                            "transaction_id",
                            "tx_datetime",
                            "customer_id",
                            "terminal_id",
                            "tx_amount",
                            "tx_time_seconds",
                            "tx_time_days",
                            "tx_fraud",
                            "tx_fraud_scenario",
                        )
                    ],
                ],
            },
        ],
    )


def test_the_suite_has_no_upper_bound_on_amounts():
    _, rules = load_rules()
    amount_rules = [r for r in rules if r.kwargs.get("column") == "tx_amount"]
    assert {r.name for r in amount_rules} == {"tx_amount_not_null", "tx_amount_positive"}
    assert all(r.kwargs.get("max_value") is None for r in amount_rules)


def test_an_expectation_without_a_row_level_form_is_refused():
    with pytest.raises(
        ValueError, match=r"rule x: expectation type 'expect_table_row_count_to_equal' has no row-level form"
    ):
        rule_fails(Rule("x", "expect_table_row_count_to_equal", {"value": 3}))
