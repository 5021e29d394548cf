"""How every Kafka client of the project connects: the bootstrap servers and the security settings of
`kafka.security.*`, with the SASL password from the environment ($FRAUD_KAFKA_PASSWORD), never from a file.

One `KafkaConnection` gives the same settings in the three forms the project needs: keyword arguments of
kafka-python (`fraud produce`, `fraud label`, `fraud alerts`, the broker helpers, the benchmarks), Java
client properties (the local broker's own), and the `kafka.`-prefixed options of Spark's Kafka source and
sink (the stream). The password stays out of `repr`, and Spark redacts option values that hold it.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobs.core.config import Config
from jobs.core.errors import ConfigError, FraudError

PASSWORD_ENV = "FRAUD_KAFKA_PASSWORD"
# the login module of each SASL mechanism the configuration's schema accepts (jobs/core/settings.py)
MECHANISMS = {
    "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
}


class KafkaLoginError(FraudError):
    """The broker refused the SASL login, or its certificate was not trusted."""


@dataclass(frozen=True)
class KafkaConnection:
    """Where the brokers are and how to reach them."""

    bootstrap_servers: str
    protocol: str = "PLAINTEXT"
    mechanism: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    truststore: str | None = None  # a PEM file of the CA certificates that signed the brokers'

    @property
    def sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @classmethod
    def from_config(
        cls, cfg: Config, environ: Mapping[str, str] | None = None, truststore_must_exist: bool = True
    ) -> KafkaConnection:
        """`kafka.bootstrap_servers` and `kafka.security.*`, checked; the password from $FRAUD_KAFKA_PASSWORD.
        `truststore_must_exist=False` lets the local broker name the CA file it is about to write."""
        environ = os.environ if environ is None else environ
        protocol = str(cfg.get("kafka.security.protocol")).upper()  # the schema checks it, in any case
        mechanism = cfg.get("kafka.security.sasl_mechanism")
        username = cfg.get("kafka.security.username")
        truststore = cfg.get("kafka.security.truststore")
        password = None
        if protocol.startswith("SASL_"):  # the schema checks that a mechanism and a user are given
            mechanism = str(mechanism).upper()
            password = environ.get(PASSWORD_ENV)
            if not password:
                raise ConfigError(
                    f"${PASSWORD_ENV} is not set: kafka.security.protocol {protocol} logs in as "
                    f"{username!r} (kafka.security.username) with the password in that variable"
                )
        if truststore:
            truststore = cfg.path("kafka.security.truststore")
            if truststore_must_exist and not Path(truststore).is_file():
                raise ConfigError(
                    f"kafka.security.truststore: expected a PEM file of CA certificates, found no file at {truststore}"
                )
        return cls(
            str(cfg.get("kafka.bootstrap_servers")),
            protocol,
            mechanism if password else None,
            str(username) if password else None,
            password,
            truststore or None,
        )

    def python(self) -> dict[str, Any]:
        """Keyword arguments for kafka-python's KafkaProducer, KafkaConsumer and KafkaAdminClient."""
        options: dict[str, Any] = {"bootstrap_servers": self.bootstrap_servers, "security_protocol": self.protocol}
        if self.sasl:
            options.update(
                sasl_mechanism=self.mechanism, sasl_plain_username=self.username, sasl_plain_password=self.password
            )
        if self.tls and self.truststore:
            options["ssl_cafile"] = self.truststore
        return options

    def java(self) -> dict[str, str]:
        """Kafka's Java client properties (without the bootstrap servers)."""
        props = {"security.protocol": self.protocol}
        if self.sasl:
            assert self.mechanism is not None
            props["sasl.mechanism"] = self.mechanism
            props["sasl.jaas.config"] = jaas_config(self.mechanism, str(self.username), str(self.password))
        if self.tls and self.truststore:
            props["ssl.truststore.type"] = "PEM"
            props["ssl.truststore.location"] = self.truststore
        return props

    def spark(self) -> dict[str, str]:
        """Options of Spark's Kafka source and sink: `kafka.bootstrap.servers` and the Java properties."""
        return {
            "kafka.bootstrap.servers": self.bootstrap_servers,
            **{f"kafka.{key}": value for key, value in self.java().items()},
        }

    def describe(self) -> str:
        """Where and how, for messages: never the password."""
        who = f" as {self.username!r} ({self.mechanism})" if self.sasl else ""
        return f"{self.bootstrap_servers} over {self.protocol}{who}"


def jaas_config(mechanism: str, username: str, password: str) -> str:
    """The JAAS line of a SASL login; quotes and backslashes in the values are escaped."""

    def quoted(value: str) -> str:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

    return f"{MECHANISMS[mechanism]} required username={quoted(username)} password={quoted(password)};"


def connection(target: str | KafkaConnection | Config) -> KafkaConnection:
    """A KafkaConnection from a Config, a connection, or a bare `host:port` (PLAINTEXT)."""
    if isinstance(target, KafkaConnection):
        return target
    if isinstance(target, Config):
        return KafkaConnection.from_config(target)
    return KafkaConnection(str(target))


def logged_in(cfg: Config) -> KafkaConnection:
    """The configured connection, once a login with it succeeded (`check_login`)."""
    conn = KafkaConnection.from_config(cfg)
    check_login(conn)
    return conn


# what kafka-python logs when a broker refused the login or the TLS handshake failed
REFUSED = r"Sasl\w*Error|Authorization\w*Error|Handshake failed"
ATTEMPT_MS = 2000  # one bootstrap attempt of the login check


class _Refusals(logging.Handler):
    """The errors kafka-python logs during a login check."""

    def __init__(self, conn: KafkaConnection) -> None:
        super().__init__(logging.ERROR)
        self.conn = conn
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append(record.getMessage())

    def refused(self) -> bool:
        """The broker refused the login, or the TLS handshake failed: trying again cannot help."""
        return any(re.search(REFUSED, m) for m in self.seen)

    def reason(self) -> str | None:
        """The broker's refusal or the TLS failure, if one was logged; else the first error. A broker
        closes the socket of a failed SASL login, often before its error reaches the client: a connection
        lost after the TLS handshake and the version exchange (`broker_version=(4, 3)`) is that."""
        found = [m for m in self.seen if re.search(REFUSED, m)]
        if not found and self.conn.sasl:
            found = [
                m.replace(
                    "KafkaConnectionError: socket disconnected",
                    "SaslLogin: the broker closed the connection during the SASL login",
                )
                for m in self.seen
                if re.search(r"broker_version=\(.*Connection lost: .*socket disconnected", m)
            ]
        texts = found or self.seen
        return re.split(r"Connection (?:lost|failed): ", texts[0])[-1] if texts else None


def _login_hint(conn: KafkaConnection, reason: str) -> str:
    """Which settings to check for a refused login `reason`."""
    login = f"kafka.security.username and ${PASSWORD_ENV}"
    trust = "kafka.security.truststore (a PEM file of the CA that signed the brokers' certificates)"
    if re.search(r"Sasl\w*", reason):
        return f"the broker refused the login: check {login}"
    if "Handshake failed" in reason:
        return f"the brokers' certificate is not trusted: check {trust}"
    return "check " + " and ".join(([login] if conn.sasl else []) + ([trust] if conn.tls else []))


def check_login(conn: KafkaConnection, timeout_ms: int = 15000) -> None:
    """Ask the brokers for their topics once; a refused login or an untrusted certificate is a
    KafkaLoginError naming the settings to check (never the password). PLAINTEXT connections pass unchecked.

    kafka-python retries a refused login until its timeout and then reports only that it could not
    bootstrap: the broker's reason is taken from the error it logs on the way, and the check stops at the
    first attempt that logged a refusal rather than at `timeout_ms`."""
    if conn.protocol == "PLAINTEXT":
        return
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    reasons = _Refusals(conn)
    logger = logging.getLogger("kafka")
    logger.addHandler(reasons)
    admin = None
    deadline = time.monotonic() + timeout_ms / 1000
    try:
        while True:  # short attempts: a refusal ends the check at once, a slow broker gets the whole timeout
            attempt_ms = max(100, min(ATTEMPT_MS, int((deadline - time.monotonic()) * 1000)))
            try:
                admin = KafkaAdminClient(
                    **conn.python(), request_timeout_ms=timeout_ms, bootstrap_timeout_ms=attempt_ms
                )
                admin.list_topics()
                break
            except (KafkaError, OSError):
                if reasons.refused() or time.monotonic() >= deadline:
                    raise
                if admin is not None:
                    admin.close()
                    admin = None
    except (KafkaError, OSError) as exc:  # a certificate that does not verify can surface as ssl.SSLError
        reason = reasons.reason() or f"{type(exc).__name__}: {exc}"
        raise KafkaLoginError(
            f"Kafka at {conn.describe()} did not let this client in "
            f"({_without(reason, conn.password)}): {_login_hint(conn, reason)}"
        ) from None
    finally:
        logger.removeHandler(reasons)
        if admin is not None:
            admin.close()


def _without(text: str, secret: str | None) -> str:
    return text.replace(secret, "***") if secret else text
