"""Land the `transactions` topic in Delta: every well-formed message in `raw_transactions`, every malformed
one in `dead_letters` with its errors and topic/partition/offset. Exactly once across restarts: the
checkpoint tracks offsets and each micro-batch is appended idempotently (keyed by its batch id).

    spark-submit/submit.sh jobs/stream/ingest_stream.py --env cluster [--available-now]
    fraud ingest [--available-now]
"""

from __future__ import annotations

import argparse
import sys

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery
from pyspark.sql.types import StringType, StructField, StructType

from features.schema import TRANSACTION_COLUMNS, parse_json_transactions
from jobs.core.common import add_common_options, config_from_args, job_main
from jobs.core.config import Config
from jobs.core.dead_letters import FUTURE, MALFORMED
from jobs.core.lake import add_columns, append_idempotent, read_topic_stream
from jobs.core.session import get_spark

QUERY_NAME = "ingest_transactions"


# A transaction cannot happen long after the message that carries it was written: one that claims to (a
# clock or typing error, e.g. the year 2080) would make the stream's state forget every older hour of its
# bucket, so it is a dead letter. The margin allows for clock skew between the bank's systems and Kafka.
MAX_HOURS_AFTER_KAFKA_TIMESTAMP = 24
# the column of `dead_letters` added after its first version: why, as a code (jobs/core/dead_letters.py)
DEAD_LETTER_REASON = StructType([StructField("reason", StringType())])


def kafka_columns(messages: DataFrame) -> DataFrame:
    """A Kafka source's rows as topic, partition, offset, kafka_timestamp, key (string) and value."""
    return messages.select(
        "topic",
        "partition",
        "offset",
        F.col("timestamp").alias("kafka_timestamp"),
        F.col("key").cast("string").alias("key"),
        "value",
    )


def reject_future(parsed: DataFrame) -> DataFrame:
    """Add an error to each parsed transaction dated more than MAX_HOURS_AFTER_KAFKA_TIMESTAMP after its
    message's Kafka timestamp, and the dead letter's `reason` of each row with an error (MALFORMED before
    FUTURE)."""
    latest = F.col("kafka_timestamp") + F.make_dt_interval(F.lit(0), F.lit(MAX_HOURS_AFTER_KAFKA_TIMESTAMP))
    future = F.when(
        F.col("tx_datetime") > latest,
        F.concat(
            F.lit(
                f"tx_datetime: expected at most {MAX_HOURS_AFTER_KAFKA_TIMESTAMP} hours after the message's Kafka "
                "timestamp "
            ),
            F.date_format("kafka_timestamp", "yyyy-MM-dd HH:mm:ss"),
            F.lit(", found '"),
            F.date_format("tx_datetime", "yyyy-MM-dd HH:mm:ss"),
            F.lit("'"),
        ),
    )
    reason = F.when(F.size("errors") > 0, F.lit(MALFORMED)).when(future.isNotNull(), F.lit(FUTURE))
    return parsed.select("*", reason.alias("reason")).withColumn(
        "errors", F.when(future.isNull(), F.col("errors")).otherwise(F.array_append("errors", future))
    )


def split_messages(messages: DataFrame) -> tuple[DataFrame, DataFrame]:
    """Split Kafka messages into (transactions, dead letters), both ready to append."""
    parsed = reject_future(parse_json_transactions(kafka_columns(messages)))
    good = parsed.where(F.size("errors") == 0).select(
        *TRANSACTION_COLUMNS, "kafka_timestamp", "partition", "offset", F.to_date("tx_datetime").alias("tx_date")
    )
    bad = parsed.where(F.size("errors") > 0).select(
        "topic",
        "partition",
        "offset",
        "kafka_timestamp",
        "key",
        "payload",
        "errors",
        "reason",
        F.current_timestamp().alias("dead_at"),
    )
    return good, bad


def start(spark: SparkSession, cfg: Config, available_now: bool = False) -> StreamingQuery:
    """Start the ingestion query; with `available_now`, it processes what the topic holds and stops."""
    raw_path, dead_path = cfg.table_path("raw_transactions"), cfg.table_path("dead_letters")
    add_columns(spark, dead_path, DEAD_LETTER_REASON)  # a table of an older version gets `reason` (null there)

    def write_batch(batch: DataFrame, batch_id: int) -> None:
        batch.persist()
        try:
            good, bad = split_messages(batch)
            append_idempotent(
                good.drop("partition", "offset"),
                raw_path,
                QUERY_NAME,
                batch_id,
                partition_by=["tx_date"],
                keep_warm=True,
            )
            append_idempotent(bad, dead_path, QUERY_NAME, batch_id, keep_warm=True)
        finally:
            batch.unpersist()

    writer = (
        read_topic_stream(spark, cfg, "transactions")
        .writeStream.queryName(QUERY_NAME)
        .option("checkpointLocation", cfg.checkpoint_path(QUERY_NAME))
        .foreachBatch(write_batch)
    )
    writer = (
        writer.trigger(availableNow=True)
        if available_now
        else writer.trigger(processingTime=str(cfg.get("stream.trigger_interval")))
    )
    return writer.start()


def run(spark: SparkSession, cfg: Config, available_now: bool = False) -> None:
    start(spark, cfg, available_now).awaitTermination()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--available-now",
        action="store_true",
        help="process what the topic holds now, then stop (default: run until stopped)",
    )
    add_common_options(parser)


def execute(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    run(get_spark(cfg, "ingest"), cfg, args.available_now)
    return 0


main = job_main("fraud ingest", __doc__, add_arguments, execute)


if __name__ == "__main__":
    sys.exit(main())
