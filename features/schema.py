"""The transaction source schema, defined once: the bank's raw files, the Kafka JSON messages and the
Delta tables all use these names and types.

Parsing is done in two steps so that bad input is never a crash nor a silent null: every field is first
read as a string (raw file columns, or JSON values), then `to_typed` converts each one with `try_*`
functions (Spark 4 runs in ANSI mode, where a plain cast would fail the whole query) and records, per row,
an `errors` array naming each field that was missing or did not convert, with the value found.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import (
    DataType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

DATETIME_FORMAT = "yyyy-MM-dd HH:mm:ss"
ALERT_DATETIME_FORMAT = "yyyy-MM-dd'T'HH:mm:ss[.SSS][XXX]"  # Spark's JSON of a timestamp (the alerts topic's)
# Transaction times must fall in [1970-01-01, 2089-01-01): the streaming state packs (key, hour since 1970)
# into one integer with 20 bits of hours, and one far-future row would otherwise age out its bucket's state.
DATETIME_RANGE = ("1970-01-01 00:00:00", "2089-01-01 00:00:00")
# The bank's pseudo-header, verbatim (including its typo "tranaction_id").
RAW_HEADER = (
    "# tranaction_id | tx_datetime | customer_id | terminal_id | tx_amount | tx_time_seconds | "
    "tx_time_days | tx_fraud | tx_fraud_scenario"
)

TRANSACTION_SCHEMA = StructType(
    [
        StructField("transaction_id", LongType(), False),
        StructField("tx_datetime", TimestampType(), False),
        StructField("customer_id", IntegerType(), False),
        StructField("terminal_id", IntegerType(), False),
        StructField("tx_amount", DoubleType(), False),
        StructField("tx_time_seconds", LongType(), False),
        StructField("tx_time_days", LongType(), False),
        StructField("tx_fraud", IntegerType(), True),
        StructField("tx_fraud_scenario", IntegerType(), True),
    ]
)
TRANSACTION_COLUMNS = [f.name for f in TRANSACTION_SCHEMA.fields]
LABEL_COLUMNS = ("tx_fraud", "tx_fraud_scenario")
# The same fields, every one a string: how raw columns and JSON values are read before conversion.
STRING_SCHEMA = StructType([StructField(f.name, StringType(), True) for f in TRANSACTION_SCHEMA.fields])


def _convert(value: Column, dtype: DataType) -> Column:
    trimmed = F.trim(value)
    if isinstance(dtype, TimestampType):
        ts = F.try_to_timestamp(trimmed, F.lit(DATETIME_FORMAT))
        return F.when(
            ts.between(
                F.lit(DATETIME_RANGE[0]).cast("timestamp"),
                F.lit(DATETIME_RANGE[1]).cast("timestamp") - F.expr("INTERVAL 1 SECOND"),
            ),
            ts,
        )
    if isinstance(dtype, (IntegerType, LongType)):
        # "12" and "12.0" are integers; "12.5", "None", "" are not. The plain cast is the common case, and
        # coalesce stops at it: the decimal path runs only for the rest
        as_decimal = trimmed.try_cast("decimal(38,6)")
        whole = F.when(as_decimal == F.floor(as_decimal), as_decimal)
        return F.coalesce(trimmed.try_cast(dtype), whole.try_cast(dtype))
    if isinstance(dtype, DoubleType):
        number = trimmed.try_cast(dtype)
        return F.when(~F.isnan(number) & (F.abs(number) != F.lit(float("inf"))), number)
    return trimmed.try_cast(dtype)


def to_typed(strings: DataFrame, required: tuple[str, ...] | None = None) -> DataFrame:
    """Convert the string columns of TRANSACTION_SCHEMA to their types and collect conversion errors.

    Args:
        strings: a DataFrame with every TRANSACTION_SCHEMA column as a string (other columns are kept).
        required: the fields that must be present; default every field except the labels.

    Returns:
        The same rows with typed columns and an `errors` column (array of strings, empty when the row is
        well formed), e.g. ``terminal_id: expected int, found 'None'``.

    Example:
        >>> to_typed(spark.createDataFrame([("1", "2019-08-22 06:51:03", "0", "Err", ...)], STRING_SCHEMA))
    """
    required = required if required is not None else tuple(c for c in TRANSACTION_COLUMNS if c not in LABEL_COLUMNS)
    missing = [c for c in TRANSACTION_COLUMNS if c not in strings.columns]
    if missing:
        raise ValueError(f"to_typed: the input must contain columns {TRANSACTION_COLUMNS}, but {missing} were missing")
    typed: dict[str, Column] = {}
    problems: list[Column] = []
    for field in TRANSACTION_SCHEMA.fields:
        raw = F.col(field.name)
        value = _convert(raw, field.dataType)
        typed[field.name] = value
        absent = raw.isNull() | (F.trim(raw) == "")
        expected = field.dataType.simpleString()
        if field.name in required:
            problems.append(F.when(absent, F.lit(f"{field.name}: missing")))
        problems.append(
            F.when(
                ~absent & value.isNull(),
                F.concat(F.lit(f"{field.name}: expected {expected}, found '"), F.substring(raw, 1, 60), F.lit("'")),
            )
        )
    others = [c for c in strings.columns if c not in typed and c != "errors"]
    errors = F.filter(F.array(*problems), lambda e: e.isNotNull())
    return strings.select(*others, *[typed[c].alias(c) for c in TRANSACTION_COLUMNS], errors.alias("errors"))


_CORRUPT = "_corrupt_record"


def _parse_object(payload: Column, fields: StructType) -> tuple[Column, Column]:
    """(the JSON object in `payload` read as `fields`, whether `payload` is not one JSON object). One parse:
    the parser marks what it cannot read (truncated, NaN, a leading zero, a trailing comma) in a corrupt-record
    field, and the text must be an object, not an array, a scalar or an object followed by more text."""
    parsed = F.from_json(
        payload,
        StructType([*fields.fields, StructField(_CORRUPT, StringType(), True)]),
        {
            "mode": "PERMISSIVE",
            "allowNumericLeadingZeros": "false",
            "allowNonNumericNumbers": "false",
            "columnNameOfCorruptRecord": _CORRUPT,
        },
    )
    is_object = F.regexp_like(F.trim(payload), F.lit(r"^\{.*\}$"))
    return parsed, payload.isNull() | parsed.isNull() | parsed[_CORRUPT].isNotNull() | ~is_object


def parse_json_transactions(messages: DataFrame, value_col: str = "value") -> DataFrame:
    """Parse Kafka JSON transactions (one object per message) into typed rows with an `errors` column.

    Args:
        messages: a DataFrame with a string or binary column `value_col` (the Kafka value).
        value_col: the name of that column.

    Returns:
        The input's other columns, every TRANSACTION_SCHEMA column typed, `payload` (the raw text) and
        `errors`: empty for a good message; otherwise why it is malformed (not JSON, missing field, type).
    """
    payload = F.col(value_col).cast("string")
    parsed, not_json = _parse_object(payload, STRING_SCHEMA)
    keep = [c for c in messages.columns if c != value_col]
    strings = messages.select(
        *keep,
        payload.alias("payload"),
        *[parsed[c].alias(c) for c in TRANSACTION_COLUMNS],
        not_json.alias("_not_json"),
    )
    typed = to_typed(strings)
    not_json = F.when(
        F.col("_not_json"), F.array(F.lit("payload: expected a JSON object, found malformed JSON"))
    ).otherwise(F.col("errors"))
    return typed.withColumn("errors", not_json).drop("_not_json")


LABEL_SCHEMA = StructType(
    [StructField("transaction_id", LongType(), False), StructField("tx_fraud", IntegerType(), False)]
)
# what a label may add to find its transaction in the stream's state at once: the alert carries all three
LABEL_PLACE = StructType(
    [
        StructField("customer_id", IntegerType(), True),
        StructField("terminal_id", IntegerType(), True),
        StructField("tx_datetime", TimestampType(), True),
    ]
)


def parse_json_labels(messages: DataFrame, value_col: str = "value") -> DataFrame:
    """Parse the fraud team's label messages, ``{"transaction_id": 123, "tx_fraud": 1}``, or with the
    transaction's place too, ``{"transaction_id": 123, "tx_fraud": 1, "customer_id": 7, "terminal_id": 42,
    "tx_datetime": "2018-04-01 10:00:05"}`` (LABEL_PLACE: all three or none), with an `errors` column like
    `parse_json_transactions`: not JSON, a missing field, an id that is not an integer, a `tx_fraud` other
    than 0 or 1, a place field of the wrong type, or a place given in part.

    Returns:
        The input's other columns, `transaction_id` (long), `tx_fraud` (int), the LABEL_PLACE columns (null
        when not given), `payload` and `errors`.
    """
    payload = F.col(value_col).cast("string")
    fields = StructType([StructField(f.name, StringType(), True) for f in [*LABEL_SCHEMA.fields, *LABEL_PLACE.fields]])
    parsed, not_json = _parse_object(payload, fields)
    keep = [c for c in messages.columns if c != value_col]
    raw_id, raw_label = F.trim(parsed["transaction_id"]), F.trim(parsed["tx_fraud"])
    transaction_id = _convert(raw_id, LongType())
    label = _convert(raw_label, IntegerType())
    label = F.when(label.isin(0, 1), label)

    def absent(raw: Column) -> Column:
        return raw.isNull() | (raw == "")

    def problem(raw: Column, value: Column, name: str, expected: str) -> Column:
        return F.when(absent(raw), F.lit(f"{name}: missing")).when(
            value.isNull(),
            F.concat(F.lit(f"{name}: expected {expected}, found '"), F.substring(raw, 1, 60), F.lit("'")),
        )

    place_raw = {f.name: F.trim(parsed[f.name]) for f in LABEL_PLACE.fields}
    place = {f.name: _convert(place_raw[f.name], f.dataType) for f in LABEL_PLACE.fields}
    # the time as the raw files write it, or as the alerts topic's JSON does (2018-04-01T10:00:05.000Z)
    place["tx_datetime"] = F.coalesce(
        place["tx_datetime"], F.try_to_timestamp(place_raw["tx_datetime"], F.lit(ALERT_DATETIME_FORMAT))
    )
    some_place = F.lit(False)
    for raw in place_raw.values():
        some_place = some_place | ~absent(raw)
    given = ", ".join(place)
    place_problems = [
        F.when(
            some_place,
            F.when(absent(place_raw[f.name]), F.lit(f"{f.name}: missing (a label gives {given}: all or none)")).when(
                place[f.name].isNull(),
                F.concat(
                    F.lit(f"{f.name}: expected {f.dataType.simpleString()}, found '"),
                    F.substring(place_raw[f.name], 1, 60),
                    F.lit("'"),
                ),
            ),
        )
        for f in LABEL_PLACE.fields
    ]
    errors = F.when(not_json, F.array(F.lit("payload: expected a JSON object, found malformed JSON"))).otherwise(
        F.filter(
            F.array(
                problem(raw_id, transaction_id, "transaction_id", "bigint"),
                problem(raw_label, label, "tx_fraud", "0 or 1"),
                *place_problems,
            ),
            lambda e: e.isNotNull(),
        )
    )
    return messages.select(
        *keep,
        payload.alias("payload"),
        transaction_id.alias("transaction_id"),
        label.alias("tx_fraud"),
        *[place[n].alias(n) for n in place],
        errors.alias("errors"),
    )
