"""`fraud label`: send the fraud team's confirmations to the `labels` topic, as JSON
``{"transaction_id": 1234, "tx_fraud": 1}`` keyed by transaction id. The streaming job adds each confirmed
fraud to its card's and terminal's fraud state in the next micro-batch (a repeated label changes nothing; a
genuine label after a fraud one corrects it; features see it once the fraud's hour is inside the label
windows, which end at the model's label delay), and records every label in the Delta table `labels`.

    fraud label 1234 5678                  # confirmed frauds
    fraud label --genuine 1234             # confirmed genuine (corrects an earlier fraud label)
    fraud label --file confirmed.csv       # lines "transaction_id,tx_fraud" (a header line is allowed)
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

from jobs.common import add_common_options, config_from_args, job_main
from jobs.config import Config
from jobs.errors import FraudError
from jobs.kafka_clients import logged_in


def read_label_file(path: Path) -> Iterator[tuple[int, int]]:
    """(transaction_id, tx_fraud) pairs from a CSV file; a wrong line is an error naming the file and line."""
    if not path.is_file():
        raise FraudError(f"--file {path}: no such file")
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            text = line.strip()
            if not text or (number == 1 and text.lower().replace(" ", "") == "transaction_id,tx_fraud"):
                continue
            fields = [f.strip() for f in text.split(",")]
            if len(fields) != 2 or not fields[0].isdigit() or fields[1] not in ("0", "1"):
                raise FraudError(f"--file {path}, line {number}: expected 'transaction_id,tx_fraud' with a whole "
                                 f"number and 0 or 1, found {text[:80]!r}")
            yield int(fields[0]), int(fields[1])


def label_record(transaction_id: int, fraud: int) -> tuple[bytes, bytes]:
    """A label as the (key, value) of its `labels` message: keyed by transaction, the value JSON."""
    return str(transaction_id).encode(), json.dumps({"transaction_id": transaction_id, "tx_fraud": fraud}).encode()


def send_labels(cfg: Config, labels: Iterable[tuple[int, int]]) -> dict[str, object]:
    """Send (transaction_id, tx_fraud) pairs to `kafka.topics.labels`; return the topic and the count."""
    from kafka import KafkaProducer

    topic = str(cfg.get("kafka.topics.labels"))
    conn = logged_in(cfg)
    producer = KafkaProducer(**conn.python(), acks="all", linger_ms=5)
    sent = 0
    try:
        for transaction_id, fraud in labels:
            key, value = label_record(transaction_id, fraud)
            producer.send(topic, key=key, value=value)
            sent += 1
        producer.flush()
    finally:
        producer.close()
    return {"topic": topic, "sent": sent}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("transaction_ids", nargs="*", type=int, metavar="TRANSACTION_ID",
                        help="transactions to label (as frauds, unless --genuine)")
    parser.add_argument("--genuine", action="store_true", help="label them genuine (tx_fraud 0) instead")
    parser.add_argument("--file", type=Path, help="a CSV file of 'transaction_id,tx_fraud' lines")
    add_common_options(parser)


def execute(args: argparse.Namespace) -> int:
    if not args.transaction_ids and not args.file:
        raise FraudError("fraud label: give transaction ids, or --file with 'transaction_id,tx_fraud' lines")
    labels = [(t, 0 if args.genuine else 1) for t in args.transaction_ids]
    if args.file:
        labels += list(read_label_file(args.file))
    print(json.dumps(send_labels(config_from_args(args), labels)))
    return 0


main = job_main("fraud label", __doc__, add_arguments, execute)


if __name__ == "__main__":
    sys.exit(main())
