"""The bank around the stream in `fraud backtest`: the card issuer that blocks and reissues cards
(`--reissue-cards`), the weekly retraining inside the replay (`Retrainer`), the Kafka channels the replay
sends on and reads from (`Channels`), and the cards the history's frauds blocked before the replay."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import shutil
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from features.schema import RAW_HEADER as SCHEMA_RAW_HEADER
from jobs.batch import clean, train
from jobs.core.config import Config
from jobs.core.errors import FraudError
from jobs.core.kafka_clients import logged_in
from jobs.kafka_tools.label_cmd import label_record
from jobs.kafka_tools.produce import transaction_record, without_labels
from jobs.replay.options import Loop
from jobs.simulation.simulator import CARD_FRAUD_DAYS
from models.split import Split

RAW_HEADER = SCHEMA_RAW_HEADER + "\n"  # the bank's raw files' first line (features/schema.py)


def readable(line: str) -> bool:
    """Whether the backtest can place a raw line in time and judge it: nine fields, integer ids, a time, labels
    0/1 and 0..3. Others (the bank's defects) are still sent where they stand in the files: the stream makes
    them dead letters, as `fraud clean` quarantines them in the history."""
    fields = line.rstrip("\n").split(",")
    if len(fields) != 9 or fields[7] not in ("0", "1") or fields[8] not in ("0", "1", "2", "3"):
        return False
    try:
        int(fields[0]), int(fields[2]), int(fields[3]), time_of(line)
    except ValueError:
        return False
    return True


class CardIssuer:
    """The bank's answer to a confirmed fraud with `--reissue-cards`: the card is blocked and the cardholder
    gets a new one. From the first step that starts after the block, the cardholder's payments carry the new
    card's id (no history in the stream's state: scored as a new card). A stolen card's frauds (the
    simulation's scenario 3, a compromised card) are declined once that card is blocked: neither sent nor
    scored. A theft is the card its holder held at the compromise's first fraud (a compromise lasts
    CARD_FRAUD_DAYS from it): one that begins after a reissue has stolen the new card, whose frauds are
    sent, with its id, until it is blocked in turn. Without reissue every id stays the simulation's."""

    def __init__(self, enabled: bool, first_new_id: int, prior: pd.Series, history_frauds: Iterable[str] = ()) -> None:
        self.enabled = enabled
        self.next_id = first_new_id
        self.card: dict[int, int] = {}  # cardholder (the simulation's customer id) -> the card id now
        self.holder: dict[int, int] = {}  # a reissued card id -> its cardholder
        # blocks not applied yet: (when, card id); the history's frauds block their cards too
        self.blocks: list[tuple[dt.datetime, int]] = (
            sorted((when.to_pydatetime(), int(card)) for card, when in prior.items()) if enabled else []
        )
        self.reissued = 0
        self.declined: list[int] = []
        # cardholder -> (the first fraud of its card's latest compromise, the card stolen then); the history's
        # compromises stole the cardholder's first card
        self.thefts: dict[int, tuple[dt.datetime, int]] = {}
        for line in history_frauds:
            fields = line.split(",")
            if len(fields) == 9 and fields[8].strip() == "3":
                self._theft(int(fields[2]), time_of(line), int(fields[2]))

    def block(self, card: int, when: dt.datetime) -> None:
        if self.enabled:
            self.blocks.append((when, card))

    def apply(self, now: dt.datetime) -> None:
        """Reissue every card blocked by `now` that is still its holder's card."""
        due = sorted(b for b in self.blocks if b[0] <= now)
        self.blocks = [b for b in self.blocks if b[0] > now]
        for _, card in due:
            holder = self.holder.get(card, card)
            if self.card.get(holder, holder) == card:
                self.card[holder], self.holder[self.next_id] = self.next_id, holder
                self.next_id += 1
                self.reissued += 1

    def payment(self, line: str) -> str | None:
        """The raw line as the bank sees it now: with its holder's card id, or None if it is declined (a line the
        backtest cannot read goes as it is). Lines come in time order."""
        if not readable(line):
            return line
        fields = line.split(",")
        holder = int(fields[2])
        card = self.card.get(holder, holder)
        if fields[7] == "1" and fields[8].strip() == "3" and self._theft(holder, time_of(line), card) != card:
            self.declined.append(int(fields[0]))  # the stolen card, blocked since: declined
            return None
        if card == holder:
            return line
        fields[2] = str(card)
        return ",".join(fields)

    def _theft(self, holder: int, when: dt.datetime, card: int) -> int:
        """The card a compromised-card fraud of `holder` at `when` was made with: the one stolen at its
        compromise's first fraud (`card`, the holder's card now, when this fraud begins a compromise)."""
        first, stolen = self.thefts.get(holder, (None, card))
        if first is None or when - first >= dt.timedelta(days=CARD_FRAUD_DAYS):
            self.thefts[holder] = (when, card)
            return card
        return stolen


class Retrainer:
    """The weekly retraining of the Airflow DAG (`fraud train --latest`) inside the replay.

    Every `--retrain-every` of replayed time, the bank's data as it stands then: the history, and the
    transactions replayed so far as the bank saw them (reissued card ids, no declined payments) with the
    labels the loop produced by then: a fraud is 1 once its review or dispute was due, every other payment 0
    (a fraud nobody has confirmed yet counts as genuine, as it does for the bank). They are cleaned into a
    lake of its own (a copy of the history's cleaned and featured tables: the stream's tables and the
    offline comparison stay untouched) and trained with the start's split, moved so that its test days end
    with the newest day. The version is registered in the run's registry and becomes `champion` only if it
    beats the champion on those test days (labelled by the loop too); the running stream switches to it at
    its next micro-batch."""

    def __init__(self, spark: Any, cfg: Config, work: Path, loop: Loop, shape: Split) -> None:
        self.spark, self.cfg, self.loop, self.shape = spark, cfg, loop, shape
        self.folder = work / "retraining"
        self.runs: list[dict[str, Any]] = []

    def keep_history(self) -> None:
        """Copy the history's tables, as cleaned and featured before the replay: each retraining starts there."""
        shutil.copytree(Path(self.cfg.path("paths.lake")), self.folder / "history_lake")

    def due(self, elapsed: dt.timedelta) -> bool:
        every = self.loop.retrain_every
        return every is not None and elapsed > dt.timedelta(0) and elapsed % every == dt.timedelta(0)

    def __call__(self, now: dt.datetime, sent_lines: Sequence[str], confirmed: dict[int, dt.datetime]) -> None:
        started = time.monotonic()
        folder = self.folder / now.strftime("%Y-%m-%dT%H%M")
        shutil.copytree(self.folder / "history_lake", folder / "lake")
        raw = folder / "raw" / f"{now.date().isoformat()}.txt"
        raw.parent.mkdir(parents=True)
        frauds = known = 0
        with raw.open("w") as out:
            out.write(RAW_HEADER)
            for line in filter(readable, sent_lines):
                if time_of(line) >= now:
                    continue
                fields = line.rstrip("\n").split(",")
                frauds += fields[7] == "1"
                if int(fields[0]) in confirmed:
                    known += 1
                else:
                    fields[7:9] = ["0", "0"]
                out.write(",".join(fields) + "\n")
        cfg = dataclasses.replace(
            self.cfg, data={**self.cfg.data, "paths": {**self.cfg.data["paths"], "lake": str(folder / "lake")}}
        )
        clean.run(self.spark, cfg, str(raw))
        trained = train.run(self.spark, cfg, self.shape, self.loop.label_delay_hours, latest=True)
        self.runs.append(
            {
                "at": now.isoformat(sep=" "),
                "version": trained["registry"]["version"],
                "alias": trained["registry"]["alias"],
                "reason": trained["registry"]["reason"],
                "split": trained["split"],
                "threshold": trained["threshold"],
                "replayed_frauds_known": known,
                "replayed_frauds": frauds,
                "test_on_loop_labels": {
                    k: trained["test"][k] for k in ("recall", "fpr", "precision", "average_precision")
                },
                "seconds": round(time.monotonic() - started, 1),
            }
        )
        print(
            f"backtest: retrained at {now}: version {trained['registry']['version']} -> "
            f"{trained['registry']['alias']} ({trained['registry']['reason']})",
            file=sys.stderr,
            flush=True,
        )


class Channels:
    """The replay's Kafka clients: one producer for the transactions and the labels, whose messages of a step
    leave together at `flush` (a long linger), so that the stream reads a step in one micro-batch; and the
    fraud team's consumer of the alerts topic."""

    def __init__(self, cfg: Config) -> None:
        from kafka import KafkaConsumer, KafkaProducer, TopicPartition

        conn = logged_in(cfg)
        self.topics = {role: str(cfg.get(f"kafka.topics.{role}")) for role in ("transactions", "labels", "alerts")}
        # a batch under the broker's 1 MB limit; a step larger than that leaves in several
        self.producer = KafkaProducer(
            **conn.python(), acks="all", linger_ms=60_000, batch_size=768 * 1024, max_request_size=32 * 2**20
        )
        self.consumer = KafkaConsumer(**conn.python(), enable_auto_commit=False)
        topic = self.topics["alerts"]
        self.parts = [TopicPartition(topic, p) for p in sorted(self.consumer.partitions_for_topic(topic) or [])]
        if not self.parts:
            raise FraudError(f"backtest: the alerts topic {topic!r} has no partitions")
        self.consumer.assign(self.parts)
        self.consumer.seek_to_beginning(*self.parts)

    def send_transactions(self, lines: Sequence[str]) -> int:
        for line in without_labels(iter(lines)):
            key, value = transaction_record(line)
            self.producer.send(self.topics["transactions"], key=key, value=value)
        self.producer.flush()
        return len(lines)

    def send_labels(self, labels: Sequence[tuple[int, int, int, int, str]]) -> int:
        """Labels with their transaction's place, sent with the next `send_transactions` (one flush)."""
        for label in labels:
            key, value = label_record(*label)
            self.producer.send(self.topics["labels"], key=key, value=value)
        return len(labels)

    def new_alerts(self) -> list[tuple[int, float]]:
        """The alerts published since the last call (the topic's end now): transaction id and score, each once
        (the stream sends an alert before its micro-batch commits, then the same alert with its explanation,
        perhaps after)."""
        end = self.consumer.end_offsets(self.parts)
        out: dict[int, float] = {}
        while any(self.consumer.position(p) < end[p] for p in self.parts):
            for records in self.consumer.poll(timeout_ms=2000).values():
                for alert in (json.loads(r.value) for r in records):
                    out.setdefault(int(alert["transaction_id"]), float(alert["score"]))
        return list(out.items())

    def close(self) -> None:
        self.producer.close()
        self.consumer.close()


def time_of(line: str) -> dt.datetime:
    return dt.datetime.strptime(line.split(",", 2)[1], "%Y-%m-%d %H:%M:%S")


def blocked_before(history: Iterable[str], review: dt.timedelta) -> pd.Series:
    """The cards the history's frauds blocked, and when: each card's first fraud was confirmed a review delay
    after it (raw lines, in time order)."""
    first: dict[int, dt.datetime] = {}
    for line in history:
        fields = line.split(",", 8)
        if fields[7] == "1":
            first.setdefault(int(fields[2]), time_of(line))
    return pd.Series({card: when + review for card, when in first.items()}, dtype="datetime64[ns]")
