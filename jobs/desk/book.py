"""The desk's book of alerts: what the alerts and labels topics say, read by one consumer in a thread of
its own, and the fraud team's decisions, sent to the labels topic as `fraud label` sends them.

An alert is open until a label of its transaction is on the labels topic (from the desk, `fraud label`, or
any other writer); the desk records its own decisions at once, so that a second click on the same alert
sends nothing, even before the topic gives the label back. Only alerts raised in the last `queue_hours`
(Kafka time) are read: the book holds a bounded window of the topic, never a copy on disk.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jobs.core.config import Config
from jobs.core.errors import FraudError
from jobs.core.kafka_clients import KafkaConnection
from jobs.kafka_tools.label_cmd import label_of_alert, label_record

log = logging.getLogger("fraud.desk")
CASE = "terminal_case"  # the alert reason of a terminal case's payments (jobs/stream/terminal_checks.py)
POLL_MS = 200
PRUNE_SECONDS = 60


class UnknownAlert(FraudError):
    """A transaction id that is no open or decided alert of the book."""


@dataclass(frozen=True)
class Decision:
    """A label of an alert's transaction: fraud (1) or genuine (0), who decided and when (ISO 8601, UTC)."""

    tx_fraud: int
    decided_by: str | None
    decided_at: str | None


class AlertBook:
    """The open alerts and the decisions of the last `hours`, kept up to date from the topics by `start()`."""

    def __init__(self, cfg: Config, hours: float | None = None, now: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.hours = float(hours if hours is not None else cfg.get("desk.queue_hours"))
        self.topics = {role: str(cfg.get(f"kafka.topics.{role}")) for role in ("alerts", "labels")}
        self.connection = KafkaConnection.from_config(cfg)
        self.now = now
        self.alerts: dict[int, dict[str, Any]] = {}  # transaction id -> its alert (the topic is at least once)
        self.decisions: dict[int, Decision] = {}  # transaction id -> its last label
        self.arrived: dict[int, float] = {}  # transaction id -> its alert's Kafka time (s), to forget it
        self.labelled: dict[int, float] = {}  # transaction id -> its last label's Kafka time (s)
        self.lock = threading.Lock()
        self.caught_up = threading.Event()  # the topics read up to their ends at start
        self.error: str | None = None  # the reader's last failure, shown on the page
        self.finish = threading.Event()
        self.producer: Any = None
        self.stopping: list[Callable[[], None]] = []
        self.thread = threading.Thread(target=self._run, name="desk-topics", daemon=True)

    def start(self) -> AlertBook:
        self.thread.start()
        return self

    def on_stop(self, action: Callable[[], None]) -> None:
        """Run `action` when the book stops (what the desk started beside it)."""
        self.stopping.append(action)

    def stop(self) -> None:
        for action in self.stopping:
            action()
        self.finish.set()
        self.thread.join(10)
        with self.lock:
            if self.producer is not None:
                self.producer.close(timeout=5)
                self.producer = None

    # --- what the pages show -------------------------------------------------------------------------------
    def open_alerts(self, order: str = "newest") -> list[dict[str, Any]]:
        """The alerts without a label, newest (`alerted_at`) or riskiest (`score`) first."""
        if order not in ("newest", "riskiest"):
            raise FraudError(f"order: expected 'newest' or 'riskiest', found {order[:40]!r}")
        key = "alerted_at" if order == "newest" else "score"
        with self.lock:
            found = [a for t, a in self.alerts.items() if t not in self.decisions]
        return sorted(found, key=lambda a: (a.get(key) or 0, a["transaction_id"]), reverse=True)

    def open_cases(self) -> dict[int, list[dict[str, Any]]]:
        """The terminal cases with open alerts: terminal id -> its open case payments, newest first."""
        cases: dict[int, list[dict[str, Any]]] = {}
        for alert in self.open_alerts():
            if alert.get("alert_reason") == CASE:
                cases.setdefault(int(alert["terminal_id"]), []).append(alert)
        return cases

    def alert(self, transaction_id: int) -> tuple[dict[str, Any], Decision | None]:
        """An alert of the book and its decision (None while open); UnknownAlert if it has none."""
        with self.lock:
            found = self.alerts.get(transaction_id)
            if found is None:
                raise UnknownAlert(
                    f"transaction {transaction_id}: no alert of it in the alerts topic's last "
                    f"{self.hours:g} hours (desk.queue_hours)"
                )
            return found, self.decisions.get(transaction_id)

    # --- decisions -------------------------------------------------------------------------------------------
    def decide(self, transaction_id: int, fraud: int, user: str) -> tuple[Decision, bool]:
        """Send the label of an alert (fraud 1 or genuine 0) with who decided, as `fraud label` sends it;
        return the decision and whether it was sent now. An alert decided already is left as it is (False)."""
        return self.decide_many({transaction_id: fraud}, user)[transaction_id]

    def decide_many(self, wanted: dict[int, int], user: str) -> dict[int, tuple[Decision, bool]]:
        """`decide` for several alerts (transaction id -> fraud 1 or genuine 0), their labels sent together:
        UnknownAlert (nothing sent) if one is not in the book; a FraudError if the broker did not take one,
        after recording those it took."""
        if any(fraud not in (0, 1) for fraud in wanted.values()):
            raise FraudError(f"decision: expected fraud (1) or genuine (0), found {sorted(set(wanted.values()))}")
        with self.lock:  # held while sending: a second click waits, then finds the first one's decision
            unknown = [t for t in wanted if t not in self.alerts]
            if unknown:
                raise UnknownAlert(
                    f"transaction {unknown[0]}: no alert of it in the alerts topic's last "
                    f"{self.hours:g} hours (desk.queue_hours)"
                )
            out = {t: (self.decisions[t], False) for t in wanted if t in self.decisions}
            todo = {
                t: label_record(*label_of_alert(self.alerts[t], f), decided_by=user)  # type: ignore[misc]
                for t, f in wanted.items()
                if t not in out
            }
            failed = self._send(todo)
            for transaction_id, (_, value) in todo.items():
                if transaction_id not in failed:
                    decision = Decision(wanted[transaction_id], user, json.loads(value)["decided_at"])
                    self.decisions[transaction_id] = decision
                    out[transaction_id] = decision, True
        for transaction_id in out.keys() & (todo.keys() - failed.keys()):
            alert = self.alerts.get(transaction_id, {})
            log.info(
                "desk: %s decided transaction %s %s (card %s, terminal %s, alert %s)",
                user,
                transaction_id,
                "fraud" if wanted[transaction_id] else "genuine",
                alert.get("customer_id"),
                alert.get("terminal_id"),
                alert.get("alert_id"),
            )
        if failed:  # not recorded: those alerts stay open, the page says why
            error = next(iter(failed.values()))
            raise FraudError(
                f"labels topic {self.topics['labels']}: the brokers {self.connection.bootstrap_servers} did "
                f"not take the decision on {len(failed)} alert(s) ({type(error).__name__}: {error}); "
                "those were not recorded, try again"
            )
        return out

    def decide_case(self, terminal_id: int, fraud: int, user: str) -> list[int]:
        """Decide every open payment of a terminal's case alike; return the transactions labelled now."""
        alerts = self.open_cases().get(terminal_id)
        if not alerts:
            raise UnknownAlert(f"terminal {terminal_id}: no open case there")
        done = self.decide_many({int(a["transaction_id"]): fraud for a in alerts}, user)
        return [t for t, (_, sent) in done.items() if sent]

    def _send(self, records: dict[int, tuple[bytes, bytes]]) -> dict[int, Exception]:
        """Send (key, value) label messages and wait for the broker's acknowledgement of each; return those it
        did not take, with why."""
        from kafka import KafkaProducer

        failed: dict[int, Exception] = {}
        try:
            if self.producer is None:
                self.producer = KafkaProducer(
                    **self.connection.python(),
                    acks="all",
                    linger_ms=5,
                    request_timeout_ms=15_000,
                    max_block_ms=15_000,
                    delivery_timeout_ms=30_000,
                )
            futures = {t: self.producer.send(self.topics["labels"], key=k, value=v) for t, (k, v) in records.items()}
            self.producer.flush(timeout=30)
        except Exception as error:  # no producer, a send refused, a flush timed out: none is recorded (sent again
            return {t: error for t in records}  # by a retry, a label the broker had counts once in the stream)
        for transaction_id, future in futures.items():
            try:
                future.get(timeout=30)
            except Exception as error:
                failed[transaction_id] = error
        return failed

    # --- the reader ------------------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self.finish.is_set():
            consumer = None
            try:
                consumer = self._consumer()
                ends = consumer.end_offsets(list(consumer.assignment()))
                pruned = time.monotonic()
                while not self.finish.is_set():
                    for records in consumer.poll(timeout_ms=POLL_MS).values():
                        for record in records:
                            self._take(record.topic, record.value, record.timestamp / 1000)
                    if time.monotonic() - pruned > PRUNE_SECONDS:
                        self.forget_old()
                        pruned = time.monotonic()
                    if not self.caught_up.is_set() and all(consumer.position(tp) >= end for tp, end in ends.items()):
                        self.caught_up.set()
                    self.error = None
            except Exception as error:  # the broker away, a topic missing: said on the page, tried again
                self.error = f"{type(error).__name__}: {error}"
                log.warning("desk: reading the topics failed (%s); trying again in 5 s", self.error)
                self.finish.wait(5)
            finally:
                if consumer is not None:
                    consumer.close()

    def _consumer(self) -> Any:
        """A consumer of both topics' partitions, each from its first message of the last `hours`."""
        from kafka import KafkaConsumer, TopicPartition

        consumer = KafkaConsumer(**self.connection.python(), enable_auto_commit=False, group_id=None)
        partitions = []
        for topic in self.topics.values():
            found = consumer.partitions_for_topic(topic)
            if not found:
                consumer.close()
                raise FraudError(f"topic {topic}: not found on {self.connection.bootstrap_servers}")
            partitions += [TopicPartition(topic, p) for p in sorted(found)]
        consumer.assign(partitions)
        since = int((self.now() - self.hours * 3600) * 1000)
        for tp, found_offset in consumer.offsets_for_times({tp: since for tp in partitions}).items():
            if found_offset is None:
                consumer.seek_to_end(tp)
            else:
                consumer.seek(tp, found_offset.offset)
        return consumer

    def forget_old(self) -> None:
        """Drop the alerts older than the window (Kafka time), and their decisions: the book stays bounded
        however long the desk runs."""
        since = self.now() - self.hours * 3600
        with self.lock:
            for transaction_id in [t for t, at in self.arrived.items() if at < since]:
                for kept in (self.alerts, self.arrived):
                    kept.pop(transaction_id, None)
            for transaction_id in [t for t, at in self.labelled.items() if at < since and t not in self.alerts]:
                for known in (self.decisions, self.labelled):
                    known.pop(transaction_id, None)

    def _take(self, topic: str, value: bytes | None, kafka_time: float) -> None:
        """One message of either topic into the book; one that is not what the stream or `fraud label`
        writes is left out (the stream dead-letters bad labels)."""
        try:
            message = json.loads(value or b"")
            transaction_id = int(message["transaction_id"])
        except (ValueError, KeyError, TypeError):
            return
        with self.lock:
            if topic == self.topics["alerts"]:
                self.alerts[transaction_id] = message
                self.arrived[transaction_id] = kafka_time
            elif message.get("tx_fraud") in (0, 1, "0", "1"):
                self.decisions[transaction_id] = Decision(
                    int(message["tx_fraud"]), message.get("decided_by"), message.get("decided_at")
                )
                self.labelled[transaction_id] = kafka_time
