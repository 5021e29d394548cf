"""The topics of a Kafka cluster, through its admin API: whether the brokers answer, the topics created when
missing, and the demo's fresh start (deleted, then created empty). Any cluster `target` names: the local
broker (jobs/dev/kafka_broker.py) or the bank's, by a connection or a PLAINTEXT `host:port`."""

from __future__ import annotations

from collections.abc import Iterable

from jobs.core.errors import BrokerError, WaitTimeout
from jobs.core.kafka_clients import KafkaConnection, connection
from jobs.core.waiting import wait_until


def answers(target: str | KafkaConnection) -> bool:
    """True if the brokers of `target` answer a metadata request within 3 s."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        admin = KafkaAdminClient(**connection(target).python(), request_timeout_ms=3000)
    except (KafkaError, OSError, ValueError):
        return False
    try:
        admin.list_topics()
        return True
    except (KafkaError, OSError):
        return False
    finally:
        admin.close()


def create_topics(
    target: str | KafkaConnection, topics: Iterable[str], partitions: int, replication: int = 1
) -> list[str]:
    """Create the topics that do not exist yet on the brokers of `target` (a connection, or a PLAINTEXT
    `host:port`); return the names created."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(**connection(target).python(), request_timeout_ms=15000)
    try:
        missing = [t for t in topics if t not in set(admin.list_topics())]
        if missing:
            try:
                admin.create_topics([NewTopic(t, partitions, replication) for t in missing])
            except TopicAlreadyExistsError:
                pass
        return missing
    finally:
        admin.close()


def reset_topics(
    target: str | KafkaConnection, topics: Iterable[str], partitions: int, timeout_s: float = 30.0
) -> None:
    """Delete the topics (if they exist) and create them empty: a fresh start for the local demo."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError, UnknownTopicOrPartitionError

    topics = list(topics)
    conn = connection(target)
    admin = KafkaAdminClient(**conn.python(), request_timeout_ms=15000)
    try:
        existing = [t for t in topics if t in set(admin.list_topics())]
        if existing:
            try:
                admin.delete_topics(existing)
            except UnknownTopicOrPartitionError:
                pass
    finally:
        admin.close()

    def recreated() -> bool:  # deletion is asynchronous: creating too early fails until the old topic is gone
        try:
            return not create_topics(conn, topics, partitions) and _all_empty(conn, topics)
        except KafkaError:
            return False

    try:
        wait_until(recreated, f"topics {topics} recreated empty on {conn.bootstrap_servers}", timeout_s, 0.5)
    except WaitTimeout:
        raise BrokerError(
            f"could not recreate topics {topics} on {conn.bootstrap_servers} within {timeout_s:.0f} s"
        ) from None


def _all_empty(conn: KafkaConnection, topics: list[str]) -> bool:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(**conn.python())
    try:
        parts = [TopicPartition(t, p) for t in topics for p in (consumer.partitions_for_topic(t) or [])]
        return bool(parts) and all(v == 0 for v in consumer.end_offsets(parts).values())
    finally:
        consumer.close()
