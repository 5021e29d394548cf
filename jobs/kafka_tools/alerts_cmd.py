"""`fraud alerts`: print the alerts topic readably, as alerts arrive (Ctrl-C to stop).

fraud alerts [--from-beginning] [--max N]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from typing import Any

from jobs.core.common import add_common_options, config_from_args, job_main
from jobs.core.config import Config
from jobs.core.kafka_clients import KafkaConnection, connection, logged_in


def format_alert(alert: dict[str, Any]) -> str:
    """One alert message as one readable line: why it was raised (its score, or a check of its terminal), and
    the features that pushed its score up most. The stream sends each alert twice: at once, then with its
    explanation (`top_features`) once computed; the first says the explanation follows."""
    reason = alert.get("alert_reason") or "score"
    why = (
        f"score {alert['score']:.3f} >= {alert['threshold']:.3f}"
        if reason == "score"
        else f"review asked by a {reason.replace('_', ' ')} (score {alert['score']:.3f})"
    )
    return (
        f"ALERT {alert['alert_id'][:8]} tx {alert['transaction_id']} card {alert['customer_id']} "
        f"terminal {alert['terminal_id']} at {alert['tx_datetime']} amount {alert['tx_amount']:.2f}: "
        f"{why} (model v{alert['model_version']}); "
        + (f"because {', '.join(alert['top_features'])}" if alert.get("top_features") else "explanation follows")
    )


def read_alerts(
    cfg: Config, from_beginning: bool, max_alerts: int | None, idle_ms: int | None = None
) -> Iterator[dict[str, Any]]:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        str(cfg.get("kafka.topics.alerts")),
        **logged_in(cfg).python(),
        auto_offset_reset="earliest" if from_beginning else "latest",
        enable_auto_commit=False,
        consumer_timeout_ms=idle_ms if idle_ms is not None else float("inf"),
    )
    seen = 0
    try:
        for record in consumer:
            yield json.loads(record.value)
            seen += 1
            if max_alerts is not None and seen >= max_alerts:
                return
    finally:
        consumer.close()


def read_topic(target: str | KafkaConnection | Config, topic: str) -> list[tuple[dict[str, Any], int]]:
    """Every message of a topic of JSON messages, from its beginning to its end now: (value, timestamp in ms).
    `target`: a Config, a KafkaConnection, or a PLAINTEXT `host:port`."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(**connection(target).python(), enable_auto_commit=False)
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        end = consumer.end_offsets(parts)
        out: list[tuple[dict[str, Any], int]] = []
        while any(consumer.position(p) < end[p] for p in parts):
            for records in consumer.poll(timeout_ms=2000).values():
                out.extend((json.loads(r.value), int(r.timestamp)) for r in records)
        return out
    finally:
        consumer.close()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from-beginning", action="store_true", help="also the alerts already in the topic")
    parser.add_argument("--max", type=int, help="stop after this many alerts")
    add_common_options(parser)


def execute(args: argparse.Namespace) -> int:
    for alert in read_alerts(config_from_args(args), args.from_beginning, args.max):
        print(format_alert(alert), flush=True)
    return 0


main = job_main("fraud alerts", __doc__, add_arguments, execute)
