"""The one source schema: how strings become typed values, and which become errors."""

from __future__ import annotations

import json

from features.schema import STRING_SCHEMA, TRANSACTION_COLUMNS, parse_json_labels, parse_json_transactions, to_typed

GOOD = {
    "transaction_id": "1",
    "tx_datetime": "2018-04-01 10:00:00",
    "customer_id": "7",
    "terminal_id": "3",
    "tx_amount": "12.50",
    "tx_time_seconds": "36000",
    "tx_time_days": "0",
    "tx_fraud": "0",
    "tx_fraud_scenario": "0",
}


def typed(spark, **changes):
    row = {**GOOD, **changes}
    return to_typed(spark.createDataFrame([tuple(row[c] for c in TRANSACTION_COLUMNS)], STRING_SCHEMA)).collect()[0]


def test_integers_accept_whole_numbers_only(spark):
    assert typed(spark, customer_id="12").customer_id == 12
    assert typed(spark, customer_id=" 12.0 ").customer_id == 12
    for bad in ("12.5", "None", "1e400", "x12"):
        row = typed(spark, customer_id=bad)
        assert row.customer_id is None and row.errors == [f"customer_id: expected int, found '{bad}'"], bad
    assert typed(spark, customer_id="").errors == ["customer_id: missing"]


def test_labels_parse_with_errors(spark):
    values = [
        {"transaction_id": 5, "tx_fraud": 1},
        {"transaction_id": "5.0", "tx_fraud": "0"},
        {"transaction_id": 5, "tx_fraud": 2},
        {"transaction_id": 5.5, "tx_fraud": 1},
        {"tx_fraud": 1},
    ]
    frame = spark.createDataFrame([(json.dumps(v),) for v in values] + [("nope",)], "value string")
    rows = parse_json_labels(frame).collect()
    assert [(r.transaction_id, r.tx_fraud, r.errors) for r in rows] == [
        (5, 1, []),
        (5, 0, []),
        (5, None, ["tx_fraud: expected 0 or 1, found '2'"]),
        (None, 1, ["transaction_id: expected bigint, found '5.5'"]),
        (None, 1, ["transaction_id: missing"]),
        (None, None, ["payload: expected a JSON object, found malformed JSON"]),
    ]


def test_a_transaction_message_is_one_json_object_or_malformed(spark):
    good = json.dumps({**GOOD, "tx_amount": 12.5, "customer_id": 7})
    malformed = [
        good[:-1],
        good + " x",
        "[" + good + "]",
        "nope",
        "",
        good.replace('"7"', "07").replace("7,", "07,"),
        good.replace("12.5", "NaN"),
        good[:-1] + ", }",
        "42",
        None,
    ]
    frame = spark.createDataFrame([(v,) for v in [good, *malformed]], "value string")
    rows = parse_json_transactions(frame).collect()
    assert rows[0].errors == [] and (rows[0].customer_id, rows[0].tx_amount) == (7, 12.5)
    for value, row in zip(malformed, rows[1:]):
        assert row.errors == ["payload: expected a JSON object, found malformed JSON"], value
        assert row.payload == value
