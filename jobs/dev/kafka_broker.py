"""A real single-node Apache Kafka broker (KRaft: broker and controller in one JVM) for local runs and tests.

It runs from the jars `make jars` fetched (profile `kafka` of spark-submit/pom.xml), keeps its data, logs
and pid file in one state folder, formats the storage on first start, waits until the broker answers,
and creates the configured topics (jobs/dev/kafka_topics.py). `stop` ends only the process whose pid file this module wrote, and only
if that process is still the broker of this state folder.

With `kafka.security.protocol: SASL_SSL` it listens with TLS and a SCRAM login only. Its certificate is made
with the JDK's keytool into `<state>/tls/` (`broker.p12`, and `ca.pem` for the clients' truststore); its
user is created when the storage is formatted. The password ($FRAUD_KAFKA_PASSWORD) is written nowhere:
it protects the keystore, and the broker reads it from its environment (Kafka's EnvVarConfigProvider).
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from jobs.core.config import Config
from jobs.core.errors import BrokerError, ConfigError, SetupError, WaitTimeout
from jobs.core.kafka_clients import PASSWORD_ENV, KafkaConnection
from jobs.core.session import list_jars
from jobs.core.waiting import wait_until
from jobs.dev import kafka_topics

_LOG4J2 = """\
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log_dir}/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = {level}
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = {level}
logger.apache.name = org.apache.kafka
logger.apache.level = {level}
"""


@dataclass(frozen=True)
class BrokerSpec:
    """Where and how to run the local broker."""

    state_dir: Path
    jars_dir: Path
    host: str = "127.0.0.1"
    port: int = 9092
    controller_port: int = 9093
    heap: str = "512m"
    start_timeout_s: float = 90.0
    topics: tuple[str, ...] = ()
    partitions: int = 2
    log_level: str = "INFO"
    extra_properties: dict[str, str] = field(default_factory=dict)
    # SASL_SSL with this SCRAM user (None: PLAINTEXT)
    sasl_mechanism: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def secure(self) -> bool:
        return self.password is not None

    @property
    def tls_dir(self) -> Path:
        return self.state_dir / "tls"

    @property
    def ca_file(self) -> Path:
        """The broker's certificate as PEM: the clients' truststore (kafka.security.truststore)."""
        return self.tls_dir / "ca.pem"

    @property
    def connection(self) -> KafkaConnection:
        """How a client reaches this broker."""
        if not self.secure:
            return KafkaConnection(self.bootstrap_servers)
        return KafkaConnection(
            self.bootstrap_servers, "SASL_SSL", self.sasl_mechanism, self.username, self.password, str(self.ca_file)
        )

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "broker.pid"

    @property
    def properties_file(self) -> Path:
        return self.state_dir / "server.properties"

    @property
    def data_dir(self) -> Path:
        return self.state_dir / "data"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now: for a broker (or another server) of a test or a benchmark."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spec_from_config(cfg: Config) -> BrokerSpec:
    """Build the BrokerSpec of `kafka.broker.*`, `kafka.topics.*` and `kafka.security.*`."""
    protocol = str(cfg.get("kafka.security.protocol") or "PLAINTEXT").upper()
    secure: dict[str, str | None] = {}
    if protocol == "SASL_SSL":
        conn = KafkaConnection.from_config(cfg, truststore_must_exist=False)
        if not str(conn.mechanism).startswith("SCRAM-"):
            raise ConfigError(
                f"kafka.security.sasl_mechanism: the local broker logs users in with SCRAM-SHA-512 or "
                f"SCRAM-SHA-256, found {conn.mechanism!r}"
            )
        if len(str(conn.password)) < 6:
            raise ConfigError(
                f"${PASSWORD_ENV}: the local broker's keystore needs a password of at least 6 "
                "characters (keytool's minimum)"
            )
        secure = {"sasl_mechanism": conn.mechanism, "username": conn.username, "password": conn.password}
    elif protocol != "PLAINTEXT":
        raise ConfigError(
            f"kafka.security.protocol: the local broker (fraud kafka up) runs PLAINTEXT or SASL_SSL, found {protocol!r}"
        )
    return BrokerSpec(
        state_dir=Path(cfg.path("kafka.broker.state_dir")),
        jars_dir=Path(cfg.path("paths.kafka_jars")),
        host=str(cfg.get("kafka.broker.host")),
        port=int(cfg.get("kafka.broker.port")),
        controller_port=int(cfg.get("kafka.broker.controller_port")),
        heap=str(cfg.get("kafka.broker.heap")),
        start_timeout_s=float(cfg.get("kafka.broker.start_timeout_s")),
        topics=tuple(str(t) for t in cfg.get("kafka.topics").values()),
        partitions=int(cfg.get("kafka.partitions")),
        **secure,  # type: ignore[arg-type]
    )


def _security_properties(spec: BrokerSpec) -> dict[str, str]:
    """The SASL_SSL listener's settings. Secrets are references to the broker's environment, not values."""
    if not spec.secure:
        return {}
    from jobs.core.kafka_clients import MECHANISMS

    secret = "${env:" + PASSWORD_ENV + "}"
    mechanism = str(spec.sasl_mechanism)
    return {
        "config.providers": "env",
        "config.providers.env.class": "org.apache.kafka.common.config.provider.EnvVarConfigProvider",
        "sasl.enabled.mechanisms": mechanism,
        "sasl.mechanism.inter.broker.protocol": mechanism,
        f"listener.name.sasl_ssl.{mechanism.lower()}.sasl.jaas.config": f'{MECHANISMS[mechanism]} required username="{spec.username}" password="{secret}";',
        "ssl.keystore.type": "PKCS12",
        "ssl.keystore.location": str(spec.tls_dir / "broker.p12"),
        "ssl.keystore.password": secret,
        "ssl.key.password": secret,
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(spec.ca_file),
    }


def _properties(spec: BrokerSpec) -> str:
    listener = "SASL_SSL" if spec.secure else "PLAINTEXT"
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.bootstrap.servers": f"{spec.host}:{spec.controller_port}",
        # the controller's listener stays PLAINTEXT on the broker's own host: only this JVM talks to it
        "listeners": f"{listener}://{spec.host}:{spec.port},CONTROLLER://{spec.host}:{spec.controller_port}",
        "advertised.listeners": f"{listener}://{spec.host}:{spec.port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": listener,
        "listener.security.protocol.map": f"CONTROLLER:PLAINTEXT,{listener}:{listener}",
        **_security_properties(spec),
        "log.dirs": str(spec.data_dir),
        "num.partitions": str(spec.partitions),
        "auto.create.topics.enable": "false",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "4",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "log.retention.hours": "168",
        **spec.extra_properties,
    }
    return "".join(f"{k}={v}\n" for k, v in props.items())


def _java() -> str:
    java = shutil.which("java")
    if java is None:
        raise SetupError(
            "`java` was not found on PATH: the Kafka broker and Spark need Java 17 (apt-get install openjdk-17-jdk-headless)"
        )
    return java


def _java_cmd(spec: BrokerSpec, main: str, *args: str) -> list[str]:
    jars = list_jars(spec.jars_dir, what="paths.kafka_jars")
    return [
        _java(),
        f"-Xmx{spec.heap}",
        f"-Xms{spec.heap}",
        "-XX:+UseG1GC",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={spec.state_dir / 'log4j2.properties'}",
        f"-Dkafka.logs.dir={spec.log_dir}",
        "-cp",
        os.pathsep.join(jars),
        main,
        *args,
    ]


def _read_pid(spec: BrokerSpec) -> int | None:
    try:
        return int(spec.pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _is_our_broker(pid: int, spec: BrokerSpec) -> bool:
    """True if `pid` is alive and is the broker started with this state folder's server.properties."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True  # no /proc (macOS): trust the pid file
    return str(spec.properties_file).encode() in cmdline and b"kafka.Kafka" in cmdline


def _port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def running_pid(spec: BrokerSpec) -> int | None:
    """Return the pid of the broker this state folder started, if it is still running."""
    pid = _read_pid(spec)
    return pid if pid is not None and _is_our_broker(pid, spec) else None


def new_cluster_id() -> str:
    """A random cluster id as Kafka writes them (URL-safe base64 of 16 bytes), never starting with '-':
    the storage tool's argument parser would take such an id for an option (Kafka's Uuid avoids it too)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


def _broker_env(spec: BrokerSpec) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != PASSWORD_ENV}
    if spec.secure:
        env[PASSWORD_ENV] = str(spec.password)
    return env


def _redacted(text: str, spec: BrokerSpec) -> str:
    return text.replace(spec.password, "***") if spec.password else text


def _format_storage(spec: BrokerSpec) -> None:
    cmd = _java_cmd(
        spec,
        "kafka.tools.StorageTool",
        "format",
        "--standalone",
        f"--cluster-id={new_cluster_id()}",
        f"--config={spec.properties_file}",
    )
    if spec.secure:
        # the user's salted SCRAM credential goes into the cluster's metadata; the password itself nowhere
        cmd.append(f"--add-scram={spec.sasl_mechanism}=[name={spec.username},password={spec.password}]")
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=_broker_env(spec))
    if done.returncode != 0:
        raise BrokerError(
            f"formatting Kafka storage in {spec.data_dir} failed (exit {done.returncode}): "
            f"{_redacted((done.stderr or done.stdout).strip()[-2000:], spec)}"
        )


def _keytool(spec: BrokerSpec, *args: str) -> subprocess.CompletedProcess[str]:
    keytool = Path(_java()).resolve().parent / "keytool"
    return subprocess.run(
        [str(keytool), *args, "-storepass:env", PASSWORD_ENV],
        capture_output=True,
        text=True,
        timeout=60,
        env=_broker_env(spec),
    )


def ensure_certificate(spec: BrokerSpec) -> None:
    """The broker's key pair and self-signed certificate (for its host name or address), made with keytool
    into `<state>/tls/broker.p12` under the SASL password, and the certificate as PEM in `ca.pem`. Made again
    when missing or when the keystore does not open with the current password."""
    keystore = spec.tls_dir / "broker.p12"
    if (
        keystore.is_file()
        and spec.ca_file.is_file()
        and _keytool(spec, "-list", "-keystore", str(keystore), "-storetype", "PKCS12").returncode == 0
    ):
        return
    spec.tls_dir.mkdir(parents=True, exist_ok=True)
    keystore.unlink(missing_ok=True)
    spec.ca_file.unlink(missing_ok=True)
    names = {"localhost", spec.host}
    san = ",".join(f"ip:{n}" if n.replace(".", "").isdigit() else f"dns:{n}" for n in sorted(names))
    steps = (
        (
            "-genkeypair",
            "-alias",
            "broker",
            "-keyalg",
            "RSA",
            "-keysize",
            "2048",
            "-validity",
            "3650",
            "-dname",
            "CN=fraud-detection local Kafka broker",
            "-ext",
            f"SAN={san}",
            "-keystore",
            str(keystore),
            "-storetype",
            "PKCS12",
        ),
        (
            "-exportcert",
            "-rfc",
            "-alias",
            "broker",
            "-keystore",
            str(keystore),
            "-storetype",
            "PKCS12",
            "-file",
            str(spec.ca_file),
        ),
    )
    for args in steps:
        done = _keytool(spec, *args)
        if done.returncode != 0:
            raise BrokerError(
                f"keytool {args[0]} for the broker's certificate in {spec.tls_dir} failed "
                f"(exit {done.returncode}): {_redacted((done.stderr or done.stdout).strip(), spec)}"
            )


def start(spec: BrokerSpec) -> int:
    """Start the broker if it is not running, wait until it answers, create the topics. Idempotent.

    Returns:
        The broker's pid.
    """
    pid = running_pid(spec)
    if pid is None:
        if _port_open(spec.host, spec.port):
            raise BrokerError(
                f"port {spec.host}:{spec.port} is taken by another process; stop it or choose another "
                "port (kafka.broker.port, and kafka.bootstrap_servers to match)"
            )
        for d in (spec.state_dir, spec.data_dir, spec.log_dir):
            d.mkdir(parents=True, exist_ok=True)
        if spec.secure:
            ensure_certificate(spec)
        spec.properties_file.write_text(_properties(spec))
        (spec.state_dir / "log4j2.properties").write_text(_LOG4J2.format(log_dir=spec.log_dir, level=spec.log_level))
        if not (spec.data_dir / "meta.properties").exists():
            _format_storage(spec)
        out = (spec.log_dir / "stdout.log").open("ab")
        proc = subprocess.Popen(
            _java_cmd(spec, "kafka.Kafka", str(spec.properties_file)),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # not killed with the shell or pytest's process group
            env=_broker_env(spec),
        )
        out.close()
        spec.pid_file.write_text(str(proc.pid))
        pid = proc.pid
        try:
            _wait_ready(spec, proc)
        except BaseException:
            stop(spec)  # never leave a half-started broker behind
            raise
    kafka_topics.create_topics(spec.connection, spec.topics, spec.partitions)
    return pid


def _wait_ready(spec: BrokerSpec, proc: subprocess.Popen) -> None:
    def ready() -> bool:
        if proc.poll() is not None:
            raise BrokerError(
                f"the Kafka broker exited with code {proc.returncode} while starting; see {spec.log_dir}/server.log "
                f"and {spec.log_dir}/stdout.log:\n{_tail(spec.log_dir / 'stdout.log')}"
            )
        return _port_open(spec.host, spec.port) and kafka_topics.answers(spec.connection)

    try:
        wait_until(ready, f"the Kafka broker to answer on {spec.bootstrap_servers}", spec.start_timeout_s, 0.5)
    except WaitTimeout:
        raise BrokerError(
            f"the Kafka broker did not answer on {spec.bootstrap_servers} within {spec.start_timeout_s:.0f} s "
            f"(kafka.broker.start_timeout_s); see {spec.log_dir}/server.log"
        ) from None


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def stop(spec: BrokerSpec, timeout_s: float = 30.0) -> bool:
    """Stop the broker this state folder started (SIGTERM, then SIGKILL). Returns False if none ran."""
    pid = running_pid(spec)
    if pid is None:
        spec.pid_file.unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)

    def gone() -> bool:
        _reap(pid)
        return not _is_our_broker(pid, spec)

    try:
        wait_until(gone, f"the Kafka broker (pid {pid}) to stop after SIGTERM", timeout_s, 0.2)
    except WaitTimeout:
        pass  # SIGKILL below
    if _is_our_broker(pid, spec):
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
        _reap(pid)
    spec.pid_file.unlink(missing_ok=True)
    return True


def _reap(pid: int) -> None:
    """Collect the exit status if the broker is our own child (tests), so it does not linger as a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def status(spec: BrokerSpec) -> dict[str, object]:
    """Return the broker's state: pid, whether it answers, and its topics."""
    pid = running_pid(spec)
    answering = pid is not None and _port_open(spec.host, spec.port) and kafka_topics.answers(spec.connection)
    topics: list[str] = []
    if answering:
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(**spec.connection.python(), request_timeout_ms=5000)
        try:
            topics = sorted(t for t in admin.list_topics() if not t.startswith("__"))
        finally:
            admin.close()
    return {
        "running": pid is not None,
        "pid": pid,
        "answering": answering,
        "bootstrap_servers": spec.bootstrap_servers,
        "security_protocol": spec.connection.protocol,
        **({"truststore": str(spec.ca_file)} if spec.secure else {}),
        "topics": topics,
        "state_dir": str(spec.state_dir),
    }
