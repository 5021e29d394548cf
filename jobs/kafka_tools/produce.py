"""`fraud produce`: replay raw files (the bank's format), or the simulator directly, into the `transactions`
topic as JSON, keyed by card, at a target rate or as fast as possible. Lines are sent as they are: a
defective line becomes a malformed message (a dead letter downstream), never a crash here.

    fraud produce --input data/raw [--rate 400] [--limit 10000]
    fraud produce --simulate --preset otus --customers 20000 --days 30 --rate 5000 [--without-labels]
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
from jobs.core.common import add_common_options, config_from_args, job_main
from jobs.core.config import Config
from jobs.core.errors import FraudError
from jobs.core.kafka_clients import logged_in
from jobs.simulation.rawfiles import format_day
from jobs.simulation.simulate import add_spec_arguments, spec_from_args
from jobs.simulation.simulator import SimulationSpec, Simulator


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


def transaction_record(line: str) -> tuple[bytes, bytes]:
    """One raw line as the (key, value) of its `transactions` message: keyed by card, the value JSON."""
    message = line_to_message(line)
    return str(message.get("customer_id", "")).encode(), json.dumps(message, separators=(",", ":")).encode()


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


def simulated_lines(spec: SimulationSpec) -> Iterator[str]:
    """The simulator's transactions as raw lines, day by day (nothing written to disk)."""
    for batch in Simulator(spec).days():
        for row in format_day(batch, spec.start_date).itertuples(index=False):
            yield ",".join(row) + "\n"


def without_labels(lines: Iterator[str]) -> Iterator[str]:
    """Lines as production sends them: the first seven fields, no tx_fraud / tx_fraud_scenario."""
    for line in lines:
        yield ",".join(line.rstrip("\n").split(",")[:7]) + "\n"


def produce(
    cfg: Config, lines: Iterator[str], rate: float | None = None, limit: int | None = None, progress: bool = False
) -> dict[str, Any]:
    """Send lines as JSON messages to `kafka.topics.transactions`; return counts and the achieved rate."""
    from kafka import KafkaProducer

    topic = str(cfg.get("kafka.topics.transactions"))
    conn = logged_in(cfg)
    producer = KafkaProducer(**conn.python(), acks="all", linger_ms=20, batch_size=256 * 1024, compression_type=None)
    sent = 0
    started = time.perf_counter()
    bar = tqdm(total=limit, unit="tx", disable=not progress, desc=f"produce -> {topic}")
    try:
        for line in lines:
            if limit is not None and sent >= limit:
                break
            key, value = transaction_record(line)
            producer.send(topic, key=key, value=value)
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
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", type=Path, help="a raw file or a folder of raw files")
    source.add_argument("--simulate", action="store_true", help="generate transactions with the simulator's options")
    add_spec_arguments(parser)
    parser.add_argument(
        "--without-labels",
        action="store_true",
        help="leave tx_fraud and tx_fraud_scenario out, as production messages do",
    )
    parser.add_argument("--rate", type=float, help="messages a second (default: as fast as possible)")
    parser.add_argument("--limit", type=int, help="stop after this many messages")
    parser.add_argument("--no-progress", action="store_true")
    add_common_options(parser)


def execute(args: argparse.Namespace) -> int:
    lines = simulated_lines(spec_from_args(args)) if args.simulate else raw_lines(args.input)
    if args.without_labels:
        lines = without_labels(lines)
    result = produce(config_from_args(args), lines, args.rate, args.limit, not args.no_progress)
    print(json.dumps(result))
    return 0


main = job_main("fraud produce", __doc__, add_arguments, execute)


if __name__ == "__main__":
    sys.exit(main())
