"""`kafka.security.*` -> the settings of every Kafka client; the password from the environment only."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs.core.config import load_config
from jobs.core.errors import ConfigError
from jobs.core.kafka_clients import PASSWORD_ENV, KafkaConnection, jaas_config
from jobs.dev import kafka_broker

SASL = {
    "kafka.security.protocol": "SASL_SSL",
    "kafka.security.sasl_mechanism": "SCRAM-SHA-512",
    "kafka.security.username": "fraud",
}


def test_plaintext_is_the_local_default_and_adds_nothing():
    conn = KafkaConnection.from_config(load_config("local"), environ={})
    assert conn.python() == {"bootstrap_servers": "127.0.0.1:9092", "security_protocol": "PLAINTEXT"}
    assert conn.spark() == {"kafka.bootstrap.servers": "127.0.0.1:9092", "kafka.security.protocol": "PLAINTEXT"}


def test_sasl_ssl_gives_every_client_the_same_login_and_truststore(tmp_path: Path):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    cfg = load_config("local", {**SASL, "kafka.security.truststore": str(ca)})
    conn = KafkaConnection.from_config(cfg, environ={PASSWORD_ENV: 'p"w\\d'})
    assert conn.python() == {
        "bootstrap_servers": "127.0.0.1:9092",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "fraud",
        "sasl_plain_password": 'p"w\\d',
        "ssl_cafile": str(ca),
    }
    spark = conn.spark()
    assert spark["kafka.sasl.jaas.config"] == (
        'org.apache.kafka.common.security.scram.ScramLoginModule required username="fraud" password="p\\"w\\\\d";'
    )
    assert (spark["kafka.ssl.truststore.type"], spark["kafka.ssl.truststore.location"]) == ("PEM", str(ca))
    assert 'p"w' not in repr(conn) and "fraud" in conn.describe() and 'p"w' not in conn.describe()


def test_the_cluster_layer_logs_in_with_scram_over_tls():
    conn = KafkaConnection.from_config(load_config("cluster"), environ={PASSWORD_ENV: "secret"})
    assert (conn.protocol, conn.mechanism, conn.username, conn.truststore) == (
        "SASL_SSL",
        "SCRAM-SHA-512",
        "fraud-detection",
        None,
    )


@pytest.mark.parametrize(
    "overrides, environ, message",
    [
        (SASL, {}, f"${PASSWORD_ENV} is not set"),
        ({**SASL, "kafka.security.username": None}, {PASSWORD_ENV: "x"}, "kafka.security.username"),
        ({**SASL, "kafka.security.sasl_mechanism": "GSSAPI"}, {PASSWORD_ENV: "x"}, "kafka.security.sasl_mechanism"),
        ({"kafka.security.protocol": "TLS"}, {}, "kafka.security.protocol: expected one of PLAINTEXT"),
        ({**SASL, "kafka.security.truststore": "/no/such/ca.pem"}, {PASSWORD_ENV: "x"}, "kafka.security.truststore"),
    ],
)
def test_a_wrong_setting_is_an_error_that_names_it(overrides, environ, message):
    with pytest.raises(ConfigError, match=message.replace("$", r"\$")):
        KafkaConnection.from_config(load_config("local", overrides), environ=environ)


def test_a_password_is_never_read_from_a_file(tmp_path: Path):
    conf = tmp_path / "conf"
    (conf / "base").mkdir(parents=True)
    (conf / "local").mkdir()
    (conf / "base" / "kafka.yaml").write_text("kafka:\n  security:\n    password: hunter2\n")
    with pytest.raises(ConfigError, match="looks like a secret"):
        load_config("local", conf_dir=conf)


def test_the_local_broker_refers_to_its_secrets_and_never_holds_them(tmp_path: Path, monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, "broker-secret")
    cfg = load_config("local", {**SASL, "kafka.broker.state_dir": str(tmp_path / "kafka")})
    spec = kafka_broker.spec_from_config(cfg)
    text = kafka_broker._properties(spec)
    assert "broker-secret" not in text and "${env:" + PASSWORD_ENV + "}" in text
    assert "listeners=SASL_SSL://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093" in text
    monkeypatch.setenv(PASSWORD_ENV, "short")
    with pytest.raises(ConfigError, match="at least 6 characters"):
        kafka_broker.spec_from_config(cfg)
    with pytest.raises(ConfigError, match="runs PLAINTEXT or SASL_SSL"):
        kafka_broker.spec_from_config(load_config("local", {"kafka.security.protocol": "SSL"}))


def test_jaas_escapes_quotes_and_backslashes():
    assert (
        jaas_config("PLAIN", 'a"b', "c\\d")
        == 'org.apache.kafka.common.security.plain.PlainLoginModule required username="a\\"b" password="c\\\\d";'
    )


def test_every_mechanism_the_schema_accepts_has_its_login_module():
    from jobs.core import settings
    from jobs.core.kafka_clients import MECHANISMS

    assert set(MECHANISMS) == set(settings.MECHANISMS)
