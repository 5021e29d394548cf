"""Shared fixtures: one SparkSession and one real Kafka broker for the whole run; every test gets its own
tmp_path for tables and checkpoints, and its own topic names."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from jobs.core.config import Config, load_config
from jobs.dev import kafka_broker, kafka_topics
from jobs.dev.kafka_broker import free_port


@pytest.fixture(scope="session")
def base_cfg() -> Config:
    return load_config("local")


@pytest.fixture(scope="session")
def spark(base_cfg: Config) -> Iterator[Any]:
    from pyspark.sql import SparkSession

    from jobs.core.session import configure_spark

    # One JVM runs every job of the project, far more distinct queries than a job runs: Spark's cache of
    # compiled query code (100 entries by default) would evict them, and compile each again, and the JIT
    # then compiles those new classes again too (docs/testing.md)
    cfg = load_config(
        "local",
        {
            "spark.ui_enabled": False,
            "spark.shuffle_partitions": 2,
            "spark.extra.spark.driver.memory": "2g",
            "spark.extra.spark.sql.codegen.cache.maxEntries": 2000,
        },
    )
    session = configure_spark(SparkSession.builder.appName("fraud-tests"), cfg).getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory, base_cfg: Config) -> Iterator[kafka_broker.BrokerSpec]:
    """A real single-node KRaft broker on free ports, started once for the whole run."""
    spec = kafka_broker.BrokerSpec(
        state_dir=tmp_path_factory.mktemp("kafka"),
        jars_dir=Path(base_cfg.path("paths.kafka_jars")),
        port=free_port(),
        controller_port=free_port(),
        partitions=2,
        log_level="WARN",
    )
    kafka_broker.start(spec)
    yield spec
    kafka_broker.stop(spec)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Any]:
    """A real PostgreSQL cluster (Debian's server, tests/postgres.py) on a free port, for the whole run."""
    from tests import postgres as pg

    cluster = pg.start(free_port())
    yield cluster
    pg.stop(cluster)


@pytest.fixture
def pg_database(postgres: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """A database of its own on the `postgres` cluster, owned by a role of its own whose password reaches
    libpq through PGPASSWORD, as in production; returns its SQLAlchemy URI (no password in it)."""
    import secrets

    name = f"t_{uuid.uuid4().hex[:10]}"
    password = secrets.token_urlsafe(12)
    uri = postgres.create_database(name, owner=name, password=password)
    monkeypatch.setenv("PGPASSWORD", password)
    return uri.replace("postgresql://", "postgresql+psycopg://", 1)


@pytest.fixture
def make_cfg(tmp_path: Path) -> Callable[..., Config]:
    """Build a local Config whose lake and checkpoints live in this test's tmp_path."""

    def make(**overrides: Any) -> Config:
        values = {
            "paths.lake": str(tmp_path / "lake"),
            "paths.checkpoint": str(tmp_path / "checkpoints"),
            "kafka.broker.state_dir": str(tmp_path / "kafka"),
        }
        values.update({k.replace("__", "."): v for k, v in overrides.items()})
        return load_config("local", values)

    return make


@pytest.fixture
def stream_cfg(
    make_cfg: Callable[..., Config], broker: kafka_broker.BrokerSpec, topic_names: dict[str, str], tmp_path: Path
) -> Callable[..., Config]:
    """Build a Config for a streaming test: the shared broker with this test's topics (created here), MLflow in
    tmp_path, metrics on any free port; keyword overrides as `make_cfg`'s."""
    kafka_topics.create_topics(broker.bootstrap_servers, topic_names.values(), partitions=2)

    def make(**overrides: Any) -> Config:
        values: dict[str, Any] = {
            "kafka__bootstrap_servers": broker.bootstrap_servers,
            "stream__metrics_port": 0,
            "mlflow__tracking_uri": f"sqlite:///{tmp_path}/mlflow.db",
            **{f"kafka__topics__{role}": name for role, name in topic_names.items()},
        }
        return make_cfg(**{**values, **overrides})

    return make


@pytest.fixture
def topic_names() -> dict[str, str]:
    """Unique topic names for one test, so tests sharing the broker never see each other's messages."""
    suffix = uuid.uuid4().hex[:8]
    return {role: f"{role}-{suffix}" for role in ("transactions", "alerts", "labels")}
