"""The configuration's schema: every key of `conf/`, its type, its bounds and what it means, checked once when
the configuration is loaded (before Spark starts). docs/configuration.md's table of keys is made from it
(`make config-docs`; tests/test_config.py keeps the page current).

conf/base holds the default of every key and this schema holds no default: a key the schema lacks, or one
base lacks, is an error, so a key read by nothing cannot stay in conf/. A wrong value is a ConfigError that
names the key, what was expected and what was found."""

from __future__ import annotations

import re
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from jobs.core.errors import ConfigError
from models.metrics import MAX_FPR


@dataclass(frozen=True)
class Expect:
    """What a key's value must be, in words: the `expected ...` of its error."""

    what: str


def _matches(pattern: str) -> AfterValidator:
    compiled = re.compile(pattern, re.IGNORECASE)

    def check(value: str) -> str:
        if not compiled.match(value):
            raise ValueError(f"does not match {pattern}")
        return value

    return AfterValidator(check)


# what Spark's Trigger.ProcessingTime accepts: one or more "<number> <unit>" pairs (months and years are not a
# fixed length, so Spark refuses them)
_UNITS = r"(?:microseconds?|milliseconds?|seconds?|minutes?|hours?|days?|weeks?)"

Flag = Annotated[bool, Expect("true or false")]
Text = Annotated[str, Field(min_length=1), Expect("a text")]
Location = Annotated[str, Field(min_length=1), Expect("a path or a URI")]
Whole0 = Annotated[int, Field(ge=0), Expect("a whole number of 0 or more")]
Whole1 = Annotated[int, Field(ge=1), Expect("a whole number of 1 or more")]
Days = Annotated[int, Field(ge=1), Expect("a whole number of days of 1 or more")]
Hours = Annotated[int, Field(ge=1), Expect("a whole number of hours of 1 or more")]
Positive = Annotated[float, Field(gt=0), Expect("a number above 0")]
Seconds = Annotated[float, Field(ge=0), Expect("a number of seconds of 0 or more")]
Share = Annotated[float, Field(gt=0, le=MAX_FPR), Expect(f"a share above 0 and at most the bank's {MAX_FPR}")]
Port = Annotated[int, Field(ge=1, le=65535), Expect("a whole number from 1 to 65535")]
AnyPort = Annotated[int, Field(ge=0, le=65535), Expect("a whole number from 0 to 65535")]
Interval = Annotated[
    str,
    _matches(rf"^\s*(?:interval\s+)?(?:\d+(?:\.\d+)?\s*{_UNITS}\s*)+$"),
    Expect("a duration such as '0 seconds', '500 milliseconds' or '1 minute'"),
]
Offsets = Annotated[
    str,
    _matches(r"^(?:earliest|latest|\s*\{[\s\S]*)$"),
    Expect("'earliest', 'latest' or Spark's JSON of offsets per partition"),
]
Heap = Annotated[str, _matches(r"^\d+[kmg]$"), Expect("a JVM heap size such as 512m or 2g")]
# how a Kafka client connects, and how it logs in with a SASL_* protocol (jobs/core/kafka_clients.py)
PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")
Protocol = Annotated[str, _matches(rf"^(?:{'|'.join(PROTOCOLS)})$"), Expect(f"one of {', '.join(PROTOCOLS)}")]
Mechanism = Annotated[str, _matches(rf"^(?:{'|'.join(MECHANISMS)})$"), Expect(f"one of {', '.join(MECHANISMS)}")]
SparkValue = Annotated[str | int | float | bool, Expect("a text, a number or true/false")]
ModelRef = Annotated[str | int, Expect("a registry alias or a version number")]


class Section(BaseModel):
    """A section of the configuration: every key required (conf/base gives it), none other allowed."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class Paths(Section):
    lake: Location = Field(description="root of the Delta tables (`--lake`); `s3a://` or `hdfs://` on a cluster")
    checkpoint: Location = Field(description="root of the streaming queries' checkpoints (`--checkpoint`)")
    warehouse: Location = Field(
        description="Spark SQL's warehouse folder (`spark.sql.warehouse.dir`): no `spark-warehouse/` appears in the "
        "working directory"
    )
    spark_jars: Location = Field(description="the Spark jars (Kafka connector, Delta, hadoop-aws) `make setup` fetches")
    kafka_jars: Location = Field(description="the Kafka broker's jars `make setup` fetches (`fraud kafka up`)")
    operator_jars: Location = Field(description="the stream's stateful operators, built by `make operators`")


class Tables(Section):
    raw_transactions: Text = Field(description="transactions as `fraud ingest` read them from Kafka")
    dead_letters: Text = Field(description="messages that could not be used, each with its reason code")
    clean_transactions: Text = Field(description="transactions that passed the cleaning rules")
    quarantine_transactions: Text = Field(description="transactions that broke a cleaning rule, with the rule")
    clean_ingested_files: Text = Field(description="which raw files each cleaning run took")
    clean_runs: Text = Field(description="one report row per finished cleaning run")
    features_transactions: Text = Field(description="the model's inputs, one partition per label delay")
    scores: Text = Field(description="every scored transaction (the stream)")
    alerts: Text = Field(description="every flagged transaction (the stream)")
    explanations: Text = Field(description="each alert's top SHAP features, written after the alert (the stream)")
    labels: Text = Field(description="every label of the labels topic, with its effect on the stream's state")


class S3(Section):
    endpoint: Text | None = Field(description="an S3 API other than AWS's (MinIO, Ceph): its URL; `null`: AWS")
    path_style_access: Flag = Field(description="the bucket in the path, not the host name (most servers but AWS)")
    region: Text | None = Field(description="the bucket's region; `null`: the AWS SDK's own lookup")


class Mlflow(Section):
    tracking_uri: Text = Field(
        description="the registry and tracking store (`--mlflow-uri`): SQLite here, PostgreSQL on the cluster"
    )
    artifact_location: Location = Field(
        description="where a new experiment keeps its artifacts (`s3://` on the cluster)"
    )
    experiment: Text = Field(description="the experiment `fraud train` logs its runs in")
    registered_model: Text = Field(
        description="the registry's name of the model `fraud train` registers and `fraud stream` scores with"
    )


class Desk(Section):
    host: Text = Field(
        description="the address `fraud desk` binds (`--host`): this machine only, unless a proxy with TLS is in front"
    )
    port: Port = Field(description="the desk's port (`--port`)")
    login_variable: Text = Field(
        description="the environment variable holding the desk's shared login secret (at least 8 characters; never a file)"
    )
    queue_hours: Hours = Field(description="alerts raised in the last N hours (Kafka time) make the queue")
    queue_limit: Whole1 = Field(
        description="the queue's rows shown at once (the count of every open alert is shown too)"
    )
    settle_days: Days = Field(
        description="a day's recall and FPR are settled this many days after it (the bank's dispute delay), every alert "
        "of it reviewed"
    )
    requirement_days: Days = Field(
        description="the days of event time the requirement page shows, up to the newest transaction (more than "
        "`settle_days` + 1)"
    )
    refresh_seconds: Positive = Field(
        description="the requirement page's figures are computed again at most this often"
    )
    stream_metrics_url: Text | None = Field(
        description="the stream's Prometheus endpoint; `null`: `stream.metrics_port` on this machine"
    )
    prometheus_url: Text | None = Field(
        description="the stream page's charts from this Prometheus (its base address); `null`: from the desk's own "
        "reads of the stream's endpoint"
    )
    chart_hours: Positive = Field(description="the hours the stream page's charts show")
    chart_sample_seconds: Positive = Field(
        description="without `prometheus_url`, the desk reads the stream's endpoint this often and keeps what it read"
    )
    session_hours: Positive = Field(description="how long a login lasts")


class Topics(Section):
    transactions: Text = Field(description="the topic of card transactions the stream reads")
    alerts: Text = Field(description="the topic the stream publishes its alerts to")
    labels: Text = Field(description="the topic of the fraud team's decisions (`fraud label`, the desk)")


class Security(Section):
    protocol: Protocol = Field(description="how every client connects: `SASL_SSL` for a bank's Kafka")
    sasl_mechanism: Mechanism | None = Field(description="the SASL login's mechanism, with a `SASL_*` protocol")
    username: Text | None = Field(
        description="the SASL user, with a `SASL_*` protocol; the password comes from `$FRAUD_KAFKA_PASSWORD`"
    )
    truststore: Location | None = Field(
        description="PEM file of the CA certificates that signed the brokers'; `null`: the system's"
    )

    @model_validator(mode="after")
    def _login(self) -> Security:
        if self.protocol.upper().startswith("SASL_"):
            if self.sasl_mechanism is None:
                raise ValueError(
                    f"kafka.security.sasl_mechanism: {self.protocol} needs one of {', '.join(MECHANISMS)}, found None"
                )
            if self.username is None:
                raise ValueError(f"kafka.security.username: {self.protocol} needs the SASL user's name, found None")
        return self


class Broker(Section):
    host: Text = Field(description="the address the local broker of `fraud kafka up` listens on")
    port: Port = Field(description="its client port")
    controller_port: Port = Field(description="its KRaft controller's port")
    state_dir: Location = Field(description="its data and logs")
    heap: Heap = Field(description="its JVM heap")
    start_timeout_s: Positive = Field(description="how long `fraud kafka up` waits for it to answer")


class Kafka(Section):
    bootstrap_servers: Text = Field(description="the brokers, `host:port,...` (`--bootstrap-servers`)")
    topics: Topics
    partitions: Whole1 = Field(
        description="partitions of the topics the local broker creates (`fraud kafka up`, the tests' and benchmarks' brokers)"
    )
    starting_offsets: Offsets = Field(description="where a stream without a checkpoint starts reading")
    max_offsets_per_trigger: Whole1 = Field(description="the most messages one micro-batch reads")
    fetch_max_wait_ms: Annotated[int, Field(ge=0, le=60_000), Expect("a whole number from 0 to 60000")] = Field(
        description="how long the broker may hold a fetch of the stream's source that finds nothing new (Kafka's "
        "`fetch.max.wait.ms`, 500 by default, which every micro-batch paid)"
    )
    security: Security
    broker: Broker


class Spark(Section):
    master: Text | None = Field(description="Spark's master; `null`: spark-submit's (`--master`)")
    app_name: Text = Field(description="each job's Spark application is named `<app_name>-<job>`")
    shuffle_partitions: Whole1 = Field(description="`spark.sql.shuffle.partitions`")
    ui_enabled: Flag = Field(description="Spark's web UI on or off")
    extra: dict[str, SparkValue] = Field(description="any Spark setting, passed through verbatim (`spark.*` keys)")


class AlertBudget(Section):
    enabled: Flag = Field(
        description="the alert threshold follows the bank's budget of flagged legitimate transactions; `false`: the "
        "model's own threshold"
    )
    fpr: Share = Field(
        description="the share of the window's legitimate transactions (not confirmed as fraud) the threshold flags at "
        "most; the bank's is 0.05, the rest a margin for the hours to come differing from the window"
    )
    window_hours: Hours = Field(description="the event time the budget looks back over")
    evidence_transactions: Whole1 = Field(
        description="while the window holds fewer legitimate transactions of the model in use (a start, a retraining), "
        "each micro-batch's own scores count with them"
    )
    unflagged_at_score: Flag = Field(
        description="a transaction not flagged and not reviewed counts as legitimate at 1 - its score, not in full: "
        "the frauds a threshold missed do not hold the next thresholds among them"
    )
    pending_at_precision: Flag = Field(
        description="an alert not reviewed yet counts as legitimate at the share of the window's reviewed alerts found "
        "genuine, not in full"
    )
    max_window_transactions: Whole1 | None = Field(
        description="the most transactions the window keeps: past it, one in 2, 4, ... of them (by a hash of the "
        "transaction id), each counting for as many, so that a micro-batch's work on the window stays the same at "
        "any traffic (a day at 400 a second is 35 million); `null`: every one"
    )
    rescore_window: Flag = Field(
        description="when the window holds fewer legitimate transactions of the model in use than "
        "`evidence_transactions` (a new model, a first start), the model scores the window's transactions again "
        "from `scores`, or with an empty window the `window_hours` of `features_transactions` before its first "
        "transaction, and those scores choose its threshold; `false`: the micro-batch's own scores count with the "
        "thin window"
    )


class TerminalChecks(Section):
    enabled: Flag = Field(description="a confirmed fraud probes its terminal, a fraudulent probe opens a case")
    probe_payments: Whole0 = Field(
        description="the terminal's next payments a probe sends for review (0: no probes, so no cases)"
    )
    case_hours: Hours = Field(description="how long (event time) a case sends every payment at its terminal for review")
    renew_cases: Flag = Field(
        description="a case payment confirmed as fraud renews its open case for `case_hours` from then, while at least "
        "half of the case's verdicts are frauds (a compromise lasts weeks); `false`: `case_hours` from its opening"
    )
    cooldown_hours: Hours = Field(description="a terminal is not probed again within this long of its last probe")
    explore_hours: Hours | None = Field(
        description="a terminal with no payment reviewed for this long gets its next one reviewed; `null`: no "
        "exploration"
    )
    explore_share: Share = Field(
        description="exploration reviews stay within this share of the budget window's legitimate transactions, the "
        "terminals longest without a review first"
    )


class Stream(Section):
    trigger_interval: Interval = Field(
        description="the micro-batch trigger: `0 seconds` starts the next micro-batch as soon as one ends and data "
        "waits; longer trades alert latency for fewer micro-batches"
    )
    state_ttl_days: Days | None = Field(
        description="a card's (terminal's) state idle this many days of processing time expires (`null`: never); "
        "more than the longest window plus the label delay plus 2 days (checked at start)"
    )
    seed_from_history: Flag = Field(
        description="a query without a checkpoint starts its state from `clean_transactions`' last weeks, so its first "
        "transactions get the features the model was trained on"
    )
    delta_checkpoint_interval: Annotated[int, Field(ge=1), Expect("a whole number of commits of 1 or more")] = Field(
        description="`delta.checkpointInterval` of the tables the stream writes (Delta's default: 10), set at start"
    )
    tables_on_thread: Flag = Field(
        description="`scores` and `alerts` are appended on a thread of the driver while the next micro-batch runs, "
        "from rows staged under the checkpoint (`false`: inside the micro-batch, before it ends); for drivers and "
        "executors with cores to spare: on 2 cores the append takes them from the next micro-batch"
    )
    explanations_table_seconds: Seconds = Field(
        description="the table `explanations` takes the alerts' explanations together at most this often, and all that "
        "is held at a stop (0: after every micro-batch); the alerts topic has each at once"
    )
    model: ModelRef = Field(description="the registry alias (or version) the stream scores with")
    metrics_port: AnyPort = Field(description="the stream's Prometheus endpoint on the driver (0: any free port)")
    blocked_card_days: Days = Field(
        description="how long (event time) the stream remembers a card with a confirmed fraud: the alert budget leaves "
        "its later payments out, the terminal checks take its later frauds as the card's"
    )
    alert_budget: AlertBudget
    terminal_checks: TerminalChecks


class Settings(Section):
    """The whole configuration."""

    paths: Paths
    tables: Tables
    s3: S3
    mlflow: Mlflow
    desk: Desk
    kafka: Kafka
    spark: Spark
    stream: Stream


def check(tree: Mapping[str, Any]) -> Settings:
    """`tree` (the merged layers) checked against the schema, or ConfigError naming the first wrong key."""
    try:
        return Settings.model_validate(tree)
    except ValidationError as error:
        raise ConfigError(_message(error.errors(include_url=False)[0])) from None


# the parts of an error's location that name the member of a union the value was tried as, not a key
_BRANCHES = ("str", "int", "float", "bool")


def _message(error: Mapping[str, Any]) -> str:
    loc = [str(part) for part in error["loc"]]
    while loc and loc[-1] in _BRANCHES:
        loc.pop()
    key = ".".join(loc)
    if error["type"] == "missing":
        return f"{key}: the key is missing; conf/base must define every key of the schema (jobs/core/settings.py)"
    if error["type"] == "extra_forbidden":
        return f"{key}: unknown configuration key (jobs/core/settings.py does not define it)"
    if error["type"] == "value_error" and not _expected(loc):  # a check across keys: its message names them
        return str(error["ctx"]["error"])
    what = _expected(loc) or error["msg"].replace("Input should be", "").strip()
    return f"{key}: expected {what}, found {error['input']!r}"


def _expected(loc: list[str]) -> str | None:
    """The `Expect` of the key at `loc`, with ", or null" where null is allowed."""
    model: type[BaseModel] = Settings
    annotation: Any = None
    for part in loc:
        fields = model.model_fields if isinstance(model, type) and issubclass(model, BaseModel) else {}
        if part not in fields:
            break
        annotation = fields[part].rebuild_annotation()
        model = _model_of(annotation)
    if annotation is None:
        return None
    found = _expects(annotation)
    if not found:
        return None
    return found[0] + (", or null" if type(None) in typing.get_args(annotation) else "")


def _model_of(annotation: Any) -> Any:
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _expects(annotation: Any) -> list[str]:
    if typing.get_origin(annotation) is Annotated:
        own = [m.what for m in annotation.__metadata__ if isinstance(m, Expect)]
        return own or _expects(typing.get_args(annotation)[0])
    return [what for arg in typing.get_args(annotation) for what in _expects(arg)]


def keys(model: type[BaseModel] = Settings, prefix: str = "") -> Iterator[tuple[str, str]]:
    """Every key of the schema, dotted, with what it means, in the schema's order."""
    for name, field in model.model_fields.items():
        inner = _model_of(field.annotation)
        if inner is not None:
            yield from keys(inner, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", field.description or ""


ROOT = Path(__file__).resolve().parents[2]
MARK = "<!-- the table below is made from jobs/core/settings.py by `make config-docs`: edit there -->"


def table(layers: Mapping[str, Mapping[str, Any]]) -> str:
    """The Markdown table of every key: its value in each layer (`base` first, the others where they set it) and
    what it means."""
    others = [name for name in layers if name != "base"]
    head = "| key | conf/base | " + " | ".join(f"conf/{name}" for name in others) + " | meaning |"
    rows = [head, "|" + "---|" * (3 + len(others))]
    for key, meaning in keys():
        values = [_shown(layers["base"].get(key, ""))] + [
            _shown(layers[name][key]) if key in layers[name] else "" for name in others
        ]
        rows.append(f"| `{key}` | " + " | ".join(values) + f" | {meaning} |")
    return "\n".join(rows) + "\n"


def _shown(value: Any) -> str:
    if isinstance(value, Mapping):
        return "<br>".join(f"`{k}: {v}`" for k, v in value.items())
    return "`null`" if value is None else f"`{str(value).lower() if isinstance(value, bool) else value}`"


def page(current: str) -> str:
    """docs/configuration.md with its table made again from the schema and the project's conf/ layers: the
    prose above MARK is kept as written."""
    from jobs.core.config import read_layer  # config imports this module to check with it

    conf = ROOT / "conf"
    layers = {"base": read_layer(conf / "base")} | {name: read_layer(conf / name) for name in ("local", "cluster")}
    head = current.split(MARK)[0].rstrip("\n")
    return f"{head}\n\n{MARK}\n\n{table(layers)}"


if __name__ == "__main__":  # make config-docs
    docs = ROOT / "docs" / "configuration.md"
    docs.write_text(page(docs.read_text()))
    print(f"wrote {docs}")
