"""`fraud produce`: replay raw files (the bank's format) into the `transactions` topic as JSON, keyed by
card, at a target rate or as fast as possible. Lines are sent as they are: a defective line becomes a
malformed message (a dead letter downstream), never a crash here.

    fraud produce --input data/raw [--rate 400] [--limit 10000]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tqdm import tqdm

from features.schema import TRANSACTION_COLUMNS
from jobs.common import add_common_options, config_from_args, job_main
from jobs.config import Config
from jobs.errors import FraudError


def _value(text: str) -> Any:
    """A raw field as JSON: integers and decimals as numbers, anything else as the string it is."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
        return number if number == number and abs(number) != float("inf") else text
    except ValueError:
        return text


def line_to_message(line: str) -> dict[str, Any]:
    """One raw line as a transaction message; missing trailing fields are left out."""
    return {name: _value(v) for name, v in zip(TRANSACTION_COLUMNS, line.rstrip("\n").split(","))}


def raw_lines(source: Path) -> Iterator[str]:
    """The transaction lines of one raw file, or of every `*.txt` of a folder in name order (headers skipped)."""
    files = sorted(source.glob("*.txt")) if source.is_dir() else [source]
    if not files:
        raise FraudError(f"--input {source}: no raw files (*.txt) found")
    for path in files:
        with path.open(encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("#") or not line.strip():
                    continue
                yield line


def produce(cfg: Config, lines: Iterator[str], rate: float | None = None, limit: int | None = None,
            progress: bool = False) -> dict[str, Any]:
    """Send lines as JSON messages to `kafka.topics.transactions`; return counts and the achieved rate."""
    from kafka import KafkaProducer

    topic = str(cfg.get("kafka.topics.transactions"))
    producer = KafkaProducer(bootstrap_servers=str(cfg.get("kafka.bootstrap_servers")), acks="all",
                             linger_ms=20, batch_size=256 * 1024, compression_type=None)
    sent = 0
    started = time.perf_counter()
    bar = tqdm(total=limit, unit="tx", disable=not progress, desc=f"produce -> {topic}")
    try:
        for line in lines:
            if limit is not None and sent >= limit:
                break
            message = line_to_message(line)
            key = str(message.get("customer_id", "")).encode()
            producer.send(topic, key=key, value=json.dumps(message, separators=(",", ":")).encode())
            sent += 1
            bar.update(1)
            if rate:
                ahead = sent / rate - (time.perf_counter() - started)
                if ahead > 0:
                    time.sleep(ahead)
        producer.flush()
    finally:
        producer.close()
        bar.close()
    seconds = time.perf_counter() - started
    return {"topic": topic, "sent": sent, "seconds": round(seconds, 3), "rate": round(sent / max(seconds, 1e-9))}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", required=True, type=Path, help="a raw file or a folder of raw files")
    parser.add_argument("--rate", type=float, help="messages a second (default: as fast as possible)")
    parser.add_argument("--limit", type=int, help="stop after this many messages")
    parser.add_argument("--no-progress", action="store_true")
    add_common_options(parser)


def execute(args: argparse.Namespace) -> int:
    result = produce(config_from_args(args), raw_lines(args.input), args.rate, args.limit, not args.no_progress)
    print(json.dumps(result))
    return 0


main = job_main("fraud produce", __doc__, add_arguments, execute)


if __name__ == "__main__":
    sys.exit(main())
