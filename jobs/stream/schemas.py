"""The rows of `fraud stream`'s query (jobs/stream/score_stream.py): what it reads from Kafka, what its two
stateful operators take, what `scores` and `alerts` hold, and the query's name."""

from __future__ import annotations

from pyspark.sql.types import (
    ArrayType,
    BooleanType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from features.definitions import AGGREGATES, FEATURE_NAMES
from features.schema import (
    TRANSACTION_SCHEMA,
)

QUERY = "score_transactions"


INPUT_SCHEMA = StructType(
    [
        *TRANSACTION_SCHEMA.fields,
        StructField("kafka_timestamp", TimestampType(), True),
        StructField("partition", IntegerType(), True),
        StructField("offset", LongType(), True),
    ]
)


# what the stateful operators take: every row of a micro-batch. Transactions and label increments
# (`label_row` true) update the state; label messages and malformed messages go through unchanged
# (`bypass_state` true), so that the Kafka source is read once per micro-batch. Such a message carries its
# topic, key, payload and errors as one JSON string, `message` (MESSAGE_SCHEMA): one narrow column through
# the operators rather than four, null for every transaction. `unpack_messages` gives them back after.
# No name starts with "_": the operators' pandas frames would get such a column as "_13" (its position).
MESSAGE_SCHEMA = StructType(
    [
        StructField("topic", StringType()),
        StructField("key", StringType()),
        StructField("payload", StringType()),
        StructField("errors", ArrayType(StringType())),
        StructField("reason", StringType()),
    ]
)


MESSAGE_COLUMNS = MESSAGE_SCHEMA.fieldNames()


STATE_INPUT_SCHEMA = StructType(
    [  # every field nullable: a message's row has no card, terminal or time
        *[StructField(f.name, f.dataType, True) for f in INPUT_SCHEMA.fields],
        StructField("label_row", BooleanType(), True),
        StructField("bypass_state", BooleanType(), True),
        StructField("message", StringType(), True),
    ]
)


STATE_INPUT_COLUMNS = STATE_INPUT_SCHEMA.fieldNames()


CARD_AGGS = [a.name for a in AGGREGATES if a.entity == "card"]


TERMINAL_AGGS = [a.name for a in AGGREGATES if a.entity == "terminal"]


# model inputs that are not input columns already (tx_amount is both)
DERIVED = [n for n in FEATURE_NAMES if n not in INPUT_SCHEMA.fieldNames()]


SCORES_SCHEMA = StructType(
    [
        *INPUT_SCHEMA.fields,
        *[StructField(n, DoubleType(), True) for n in DERIVED],
        StructField("score", DoubleType()),
        StructField("decision", BooleanType()),
        StructField("threshold", DoubleType()),
        StructField("model_version", StringType()),
        StructField("scored_at", TimestampType()),
        # why a flagged transaction was: "score" (at or above the threshold), or a check of its terminal
        # (jobs/stream/terminal_checks.py: "terminal_probe", "terminal_case", "terminal_explore"); null when not flagged
        StructField("alert_reason", StringType()),
    ]
)


# the column of `alerts` added after its first version (`add_columns` gives it to an older table)
ALERT_REASON = StructType([StructField("alert_reason", StringType())])


# what the driver takes of each scored transaction: an alert's fields, in the order of its message (alert_messages)
ALERT_FIELDS = [
    "transaction_id",
    "customer_id",
    "terminal_id",
    "tx_datetime",
    "tx_amount",
    "score",
    "model_version",
    "alert_reason",
]
