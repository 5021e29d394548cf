"""The alerts topic (`kafka.topics.alerts`): each flagged transaction as a JSON message keyed by card, with a
stable `alert_id`, sent from the driver by one long-lived producer (`Publisher`); the same alert again once
explained (jobs/stream/explanations.py)."""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from collections.abc import Sequence
from typing import Any

import pandas as pd
from pyspark.sql import Column
from pyspark.sql import functions as F

from jobs.core.errors import FraudError
from jobs.core.kafka_clients import KafkaConnection

ALERT_NAMESPACE = uuid.UUID("6f1c2a9e-3b7d-4c55-9a0e-2f4b8c1d7e60")
ALERTS_DELIVERY_SECONDS = 120  # how long an alert waits for a broker that is down (Kafka's default delivery timeout)


def alert_id(transaction_id: Column) -> Column:
    """An alert's id: the UUID (version 5, SHA-1) of its transaction id's text in ALERT_NAMESPACE, as Python's
    `uuid.uuid5(ALERT_NAMESPACE, str(transaction_id))` makes it, computed by Spark's own functions (a Python
    UDF would cost a round trip to a Python worker)."""
    digest = F.sha1(F.concat(F.unhex(F.lit(ALERT_NAMESPACE.hex)), F.encode(transaction_id.cast("string"), "UTF-8")))
    variant = F.conv(F.substring(digest, 17, 1), 16, 10).cast("int").bitwiseAND(3).bitwiseOR(8)  # RFC 4122: 10xx
    return F.concat_ws(
        "-",
        F.substring(digest, 1, 8),
        F.substring(digest, 9, 4),
        F.concat(F.lit("5"), F.substring(digest, 14, 3)),
        F.concat(F.lower(F.conv(variant.cast("string"), 10, 16)), F.substring(digest, 18, 3)),
        F.substring(digest, 21, 12),
    )


class Publisher:
    """Sends (key, JSON value) messages to a topic from the driver and waits until the broker has every one
    (acks=all): the alerts, their explanations, and the labels sent again with their place. Flagged
    transactions are a few in a hundred: the driver's producer sends them in milliseconds, where a Spark
    write to Kafka is a job of its own. One producer lives as long as the stream (opening one costs a
    connection and a metadata round trip); it is opened again after a failure.

    A broker that is down is waited for, as Spark's Kafka writer does, for up to ALERTS_DELIVERY_SECONDS;
    past that the micro-batch fails (and the query with it: a restart sends the messages again)."""

    def __init__(self, kafka: KafkaConnection) -> None:
        self.kafka = kafka
        self.producer: Any = None

    def send(self, topic: str, messages: Sequence[tuple[str, str]], what: str) -> None:
        if not messages:
            return
        from kafka import KafkaProducer
        from kafka.errors import KafkaError

        deadline = time.monotonic() + ALERTS_DELIVERY_SECONDS
        while True:
            try:
                if self.producer is None:
                    self.producer = KafkaProducer(
                        **self.kafka.python(),
                        acks="all",
                        linger_ms=0,
                        max_block_ms=ALERTS_DELIVERY_SECONDS * 1000,
                        delivery_timeout_ms=ALERTS_DELIVERY_SECONDS * 1000,
                    )
                futures = [self.producer.send(topic, key=key.encode(), value=value.encode()) for key, value in messages]
                self.producer.flush()
                for future in futures:
                    future.get()
                return
            except KafkaError as error:  # no broker answered (its bootstrap, or the messages' delivery)
                self.close()
                if time.monotonic() > deadline:
                    raise FraudError(
                        f"{what} topic {topic}: the brokers {self.kafka.bootstrap_servers} did not take "
                        f"the {what} within {ALERTS_DELIVERY_SECONDS} s ({type(error).__name__}: {error}); "
                        f"the micro-batch fails, and a restart sends its {what} again"
                    ) from error
                # and all again: a copy the broker already had is an alert told apart by its `alert_id`, or a
                # label repeated, which adds nothing
                time.sleep(1)

    def close(self) -> None:
        if self.producer is not None:
            producer, self.producer = self.producer, None
            producer.close(timeout=5)


def alert_messages(flagged: pd.DataFrame, alerted_at: dt.datetime) -> list[tuple[str, str]]:
    """The alerts topic's (key, JSON) messages of `flagged` (ALERT_FIELDS, and `top_features` once explained:
    empty before), keyed by card, written as Spark's `to_json` writes the `alerts` table's row (times in UTC to
    the millisecond)."""
    at = _json_time(alerted_at)
    return [
        (
            str(int(row.customer_id)),
            json.dumps(
                {
                    "alert_id": str(uuid.uuid5(ALERT_NAMESPACE, str(int(row.transaction_id)))),
                    "transaction_id": int(row.transaction_id),
                    "customer_id": int(row.customer_id),
                    "terminal_id": int(row.terminal_id),
                    "tx_datetime": _json_time(row.tx_datetime),
                    "tx_amount": float(row.tx_amount),
                    "score": float(row.score),
                    "threshold": float(row.threshold),
                    "model_version": row.model_version,
                    "top_features": list(getattr(row, "top_features", None) or []),
                    "alert_reason": row.alert_reason,
                    "alerted_at": at,
                },
                separators=(",", ":"),
            ),
        )
        for row in flagged.itertuples(index=False)
    ]


def _json_time(value: Any) -> str:
    return pd.Timestamp(value).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
