"""`fraud label`: send the fraud team's confirmations to the `labels` topic, as JSON
``{"transaction_id": 1234, "tx_fraud": 1}`` keyed by transaction id, or with the transaction's place (its
card, terminal and time, as its alert gives them) ``{..., "customer_id": 7, "terminal_id": 42, "tx_datetime":
"2018-04-01 10:00:05"}`` keyed by card. The streaming job adds each confirmed fraud to its card's and
terminal's fraud state (a repeated label changes nothing; a genuine label after a fraud one corrects it;
features see it once the fraud's hour is inside the label windows, which end at the model's label delay), and
records every label in the Delta table `labels`: a label with its place in the micro-batch that reads it; a
label by id alone is looked up in `scores` first and sent again with its place, so it counts one micro-batch
later.

    fraud label 1234 5678                  # confirmed frauds
    fraud label --genuine 1234             # confirmed genuine (corrects an earlier fraud label)
    fraud label --by alice 1234            # who decided, recorded with the time in `labels`
    fraud label --file confirmed.csv       # lines "transaction_id,tx_fraud" or
                                           # "transaction_id,tx_fraud,customer_id,terminal_id,tx_datetime"
                                           # (a header line is allowed)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

from jobs.core.common import add_common_options, config_from_args, job_main
from jobs.core.config import Config
from jobs.core.errors import FraudError
from jobs.core.kafka_clients import logged_in

# a label: (transaction_id, tx_fraud), or with its transaction's place (customer_id, terminal_id, tx_datetime)
Label = tuple[int, int] | tuple[int, int, int, int, str]
HEADERS = ("transaction_id,tx_fraud", "transaction_id,tx_fraud,customer_id,terminal_id,tx_datetime")


def read_label_file(path: Path) -> Iterator[Label]:
    """Labels from a CSV file (HEADERS); a wrong line is an error naming the file and line."""
    if not path.is_file():
        raise FraudError(f"--file {path}: no such file")
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            text = line.strip()
            if not text or (number == 1 and text.lower().replace(" ", "") in HEADERS):
                continue
            fields = [f.strip() for f in text.split(",")]
            placed = len(fields) == 5 and fields[2].isdigit() and fields[3].isdigit() and _is_time(fields[4])
            if (
                len(fields) not in (2, 5)
                or not fields[0].isdigit()
                or fields[1] not in ("0", "1")
                or (len(fields) == 5 and not placed)
            ):
                raise FraudError(
                    f"--file {path}, line {number}: expected '{HEADERS[0]}' or '{HEADERS[1]}' with whole "
                    f"numbers, 0 or 1 and a time 'YYYY-MM-DD HH:MM:SS', found {text[:80]!r}"
                )
            yield (
                (int(fields[0]), int(fields[1]), int(fields[2]), int(fields[3]), fields[4])
                if placed
                else (int(fields[0]), int(fields[1]))
            )


def _is_time(text: str) -> bool:
    try:
        dt.datetime.strptime(text, "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return False
    return True


def label_record(
    transaction_id: int,
    fraud: int,
    customer_id: int | None = None,
    terminal_id: int | None = None,
    tx_datetime: str | None = None,
    decided_by: str | None = None,
) -> tuple[bytes, bytes]:
    """A label as the (key, value) of its `labels` message, the value JSON: keyed by transaction, or with its
    transaction's place (all three or none) keyed by card. With `decided_by`, the message says who decided
    and when (`decided_at`, now in UTC, ISO 8601): the stream records both in `labels`."""
    value: dict[str, object] = {"transaction_id": transaction_id, "tx_fraud": fraud}
    if decided_by is not None:
        value.update(decided_by=decided_by, decided_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    if customer_id is None:
        return str(transaction_id).encode(), json.dumps(value).encode()
    value.update(customer_id=customer_id, terminal_id=terminal_id, tx_datetime=tx_datetime)
    return str(customer_id).encode(), json.dumps(value).encode()


def label_of_alert(alert: dict[str, object], fraud: int) -> Label:
    """The fraud team's decision on an alert (a message of the alerts topic) as a label with its transaction's
    place, which the stream counts in the micro-batch that reads it."""
    when = dt.datetime.fromisoformat(str(alert["tx_datetime"]).replace("Z", "+00:00"))
    if when.tzinfo is not None:
        when = when.astimezone(dt.UTC).replace(tzinfo=None)
    return (
        int(str(alert["transaction_id"])),
        fraud,
        int(str(alert["customer_id"])),
        int(str(alert["terminal_id"])),
        when.strftime("%Y-%m-%d %H:%M:%S"),
    )


def send_labels(cfg: Config, labels: Iterable[Label], decided_by: str | None = None) -> dict[str, object]:
    """Send labels to `kafka.topics.labels` (saying who decided them, if `decided_by`); return the topic and
    the count."""
    from kafka import KafkaProducer

    topic = str(cfg.get("kafka.topics.labels"))
    conn = logged_in(cfg)
    producer = KafkaProducer(**conn.python(), acks="all", linger_ms=5)
    sent = 0
    try:
        for label in labels:
            key, value = label_record(*label, decided_by=decided_by)  # type: ignore[misc]
            producer.send(topic, key=key, value=value)
            sent += 1
        producer.flush()
    finally:
        producer.close()
    return {"topic": topic, "sent": sent}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "transaction_ids",
        nargs="*",
        type=int,
        metavar="TRANSACTION_ID",
        help="transactions to label (as frauds, unless --genuine)",
    )
    parser.add_argument("--genuine", action="store_true", help="label them genuine (tx_fraud 0) instead")
    parser.add_argument("--file", type=Path, help="a CSV file of 'transaction_id,tx_fraud' lines")
    parser.add_argument("--by", metavar="NAME", help="who decided: recorded with the time in the `labels` table")
    add_common_options(parser)


def execute(args: argparse.Namespace) -> int:
    if not args.transaction_ids and not args.file:
        raise FraudError("fraud label: give transaction ids, or --file with 'transaction_id,tx_fraud' lines")
    labels: list[Label] = [(t, 0 if args.genuine else 1) for t in args.transaction_ids]
    if args.file:
        labels += list(read_label_file(args.file))
    print(json.dumps(send_labels(config_from_args(args), labels, decided_by=args.by)))
    return 0


main = job_main("fraud label", __doc__, add_arguments, execute)


if __name__ == "__main__":
    sys.exit(main())
