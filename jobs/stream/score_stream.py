"""`fraud stream`: the main job. Kafka `transactions` and `labels` -> per-card and per-terminal features in
Spark's stateful operators -> CatBoost -> Delta `scores` and `alerts`, and the `alerts` topic.

    fraud stream [--available-now] [--model champion]
    spark-submit/submit.sh --master yarn --deploy-mode cluster jobs/stream/score_stream.py --env cluster

One query, `score_transactions`, reads both topics (one Kafka source, read once per micro-batch):
  messages: parsed in one projection (features/schema.py) and checked against the cleaning suite's
    one-transaction rules (jobs/batch/quality.py) -> the card operator (card aggregates; a transaction id the
    card counted before is flagged a duplicate) -> the terminal operator (terminal aggregates); both are
    Java `transformWithState` operators keeping one state value per card (terminal), fed their aggregates
    by features/operators.py, and seeded from `clean_transactions` when the query has no checkpoint
    (build_input)
  a label that gives its transaction's card, terminal and time goes through the same two operators in the
    micro-batch that reads it: it adds its +1 or -1 to the fraud count of its card and terminal at its hour
  malformed and rule-breaking transactions, duplicates and other label messages travel through the
    operators without touching the state
  -> BatchWriter (jobs/stream/batch_writer.py), once per micro-batch:
     - derive_features + CatBoost (broadcast, reloaded when the registry alias moves), flagged at the alert
       budget's threshold (jobs/stream/alert_budget.py) or sent for review by a terminal check
       (jobs/stream/terminal_checks.py) -> the alerts topic first; then `scores` and `alerts` appended
       together (or staged under the checkpoint and appended on a thread while the next micro-batch runs,
       `stream.tables_on_thread`: jobs/stream/staged_tables.py);
     - labels: recorded in `labels`; one given by transaction id alone is looked up in `scores` and sent
       again with its place (it counts in the next micro-batch); they tell the budget and the checks;
     - malformed, rule-breaking and duplicate messages, and labels of transactions never scored ->
       `dead_letters`.
  Every Delta append is idempotent (by batch id, jobs/core/lake.py): exactly once across restarts. The alerts
  topic is at least once: deduplicate by `alert_id`.
The state keeps each entity's hourly buckets for the longest window plus the label delay; a card (terminal)
idle for `stream.state_ttl_days` expires: bounded.
Messages must be keyed by card (as `fraud produce` does): a card's transactions then stay in order in one
partition, which the card windows need; terminal windows end at the label delay, so a terminal's
transactions may arrive out of order by up to that delay.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from features.definitions import lookback_hours
from features.operators import DAY_HOURS, LABEL_INCREMENT, LABEL_PREVIOUS, card_and_terminal_aggregates, seed_state
from features.schema import (
    LABEL_PLACE,
    TRANSACTION_COLUMNS,
    parse_json_labels,
    parse_json_transactions,
)
from jobs.batch.quality import (
    DERIVED_COLUMNS,
    Rule,
    derived_columns,
    load_rules,
    message_rules,
    rule_errors,
    rule_fails,
)
from jobs.core.common import add_common_options, config_from_args, job_main
from jobs.core.config import Config
from jobs.core.dead_letters import MALFORMED, rule_reason
from jobs.core.errors import FraudError
from jobs.core.kafka_clients import logged_in
from jobs.core.lake import (
    add_columns,
    list_files,
    path_exists,
    read_text,
    read_topic_stream,
    set_properties,
    table_exists,
)
from jobs.core.metrics import StreamMetrics
from jobs.core.session import get_spark
from jobs.stream.alert_budget import AlertBudget
from jobs.stream.batch_writer import BatchWriter, table_properties
from jobs.stream.ingest_stream import DEAD_LETTER_REASON, kafka_columns, reject_future
from jobs.stream.label_records import LABELS_ADDED, LABELS_SCHEMA
from jobs.stream.model_holder import ModelHolder
from jobs.stream.schemas import (
    ALERT_REASON,
    MESSAGE_COLUMNS,
    MESSAGE_SCHEMA,
    QUERY,
    SCORES_SCHEMA,
    STATE_INPUT_COLUMNS,
)
from jobs.stream.supervision import RELEASED_AT_STOP, ProgressMetrics, release, stop_signals, watch
from jobs.stream.terminal_checks import TerminalChecks


def state_ttl_days(cfg: Config, label_delay_hours: int) -> int | None:
    """`stream.state_ttl_days`, checked: longer than every window plus the label delay and the whole-day expiry."""
    ttl = cfg.get("stream.state_ttl_days")
    if ttl is None:
        return None
    needed = max(lookback_hours(e, label_delay_hours) for e in ("card", "terminal")) + 2 * DAY_HOURS
    if ttl * 24 <= needed:
        raise FraudError(
            f"stream.state_ttl_days: expected more than the longest window plus the label delay "
            f"plus 2 days ({needed / 24:g} days), found {ttl!r}"
        )
    return ttl


def parse_messages(messages: DataFrame, tx_topic: str, rules: list[Rule] | None = None) -> DataFrame:
    """Kafka messages of both topics -> STATE_INPUT_COLUMNS, in one projection: a message of `tx_topic` is
    parsed as a transaction (a malformed one, or one that fails any of `rules`, gets `message`), any other as
    a label (it always gets `message`). A well-formed label that gives its transaction's card, terminal and
    time is a `label_row`, for the state; any other label or malformed message bypasses it."""
    is_tx = F.col("topic") == tx_topic
    base = kafka_columns(messages)
    base = base.select(
        *[c for c in base.columns if c != "value"],
        F.when(is_tx, F.col("value")).alias("_tx_value"),
        F.when(~is_tx, F.col("value")).alias("_label_value"),
    )
    renamed = {
        "payload": "_tx_payload",
        "errors": "_tx_errors",
        "reason": "_tx_reason",
        "transaction_id": "_tx_id",
        "tx_fraud": "_tx_fraud",
        **{c: f"_tx_{c}" for c in LABEL_PLACE.fieldNames()},
    }
    transactions = reject_future(parse_json_transactions(base, "_tx_value"))
    if rules:  # the cleaning job's rules that judge one transaction (jobs/batch/quality.py), on well-formed ones
        broken = F.when(F.size("errors") == 0, rule_errors(rules)).otherwise(F.col("errors"))
        transactions = (
            transactions.select("*", *derived_columns())
            .withColumn("reason", F.coalesce("reason", first_broken_rule(rules)))
            .withColumn("errors", broken)
            .drop(*DERIVED_COLUMNS)
        )
    both = parse_json_labels(
        transactions.select(*[F.col(c).alias(renamed.get(c, c)) for c in transactions.columns]), "_label_value"
    )
    label_row = ~is_tx & (F.size("errors") == 0) & F.col("customer_id").isNotNull()
    bypass = (~is_tx & ~label_row) | (is_tx & (F.size("_tx_errors") > 0))
    message = F.to_json(
        F.struct(
            "topic",
            "key",
            F.when(is_tx, F.col("_tx_payload")).otherwise(F.col("payload")).alias("payload"),
            F.when(is_tx, F.col("_tx_errors")).otherwise(F.col("errors")).alias("errors"),
            F.when(is_tx, F.col("_tx_reason")).when(F.size("errors") > 0, F.lit(MALFORMED)).alias("reason"),
        )
    )
    return both.select(
        *[
            F.when(is_tx, F.col(renamed.get(c, c))).otherwise(F.col(c)).alias(c) if c in renamed else F.col(c)
            for c in TRANSACTION_COLUMNS
        ],
        "kafka_timestamp",
        "partition",
        "offset",
        label_row.alias("label_row"),
        bypass.alias("bypass_state"),
        F.when(bypass | label_row, message).alias("message"),
    ).select(*STATE_INPUT_COLUMNS)


def first_broken_rule(rules: list[Rule]) -> Column:
    """The dead letter's reason of a transaction that breaks one of `rules`: the first one's (null if none)."""
    return F.coalesce(*[F.when(rule_fails(r), F.lit(rule_reason(r.name))) for r in rules], F.lit(None).cast("string"))


def unpack_messages(featured: DataFrame) -> DataFrame:
    """The operators' output with `message` unpacked into MESSAGE_COLUMNS, and `row_kind`: "tx" (a
    transaction), "duplicate" (a transaction id counted before), "label" (a label that went through the
    state: counted if its `label_increment` is not null), "label_by_id" (a well-formed label without its
    transaction's place) or "dead" (a malformed message of either topic)."""
    message = F.from_json("message", MESSAGE_SCHEMA)
    kind = (
        F.when(F.col("label_row"), "label")
        .when(F.col("duplicate"), "duplicate")
        .when(~F.col("bypass_state"), "tx")
        .when(F.size(message["errors"]) > 0, "dead")
        .otherwise("label_by_id")
    )
    return featured.select(
        *[c for c in featured.columns if c != "message"],
        kind.alias("row_kind"),
        *[message[c].alias(c) for c in MESSAGE_COLUMNS],
    )


def stateful_features(
    rows: DataFrame, label_delay_hours: int, ttl_days: int | None, seeds: dict[str, DataFrame] | None = None
) -> DataFrame:
    """The rows of a micro-batch (STATE_INPUT_COLUMNS) -> the same rows with every AGGREGATES column, from
    Spark's state for transactions, null for the rest; `duplicate`: true for a transaction whose id its card
    counted before, which then counts nowhere; and, for a label row, `label_increment` and `label_previous`
    (features/operators.py): what it changed in the card's and the terminal's fraud counts, null if its card
    counted no such transaction. `seeds`: the initial state per entity (features/operators.py's
    seed_state), for a query without a checkpoint."""
    return card_and_terminal_aggregates(
        rows.select(*STATE_INPUT_COLUMNS),
        label_delay_hours,
        ttl_days,
        seeds,
        bypass=["bypass_state"],
        label_order="kafka_timestamp",
    )


def check_checkpoint_sources(spark: SparkSession, checkpoint: str) -> None:
    """Refuse a checkpoint whose query read other sources than this one's (Kafka alone): Spark would stop at
    its first micro-batch with an assertion about the number of sources."""
    offsets = [f for f in list_files(spark, checkpoint + "/offsets", suffix="") if f.rsplit("/", 1)[-1].isdigit()]
    if not offsets:
        return
    newest = max(offsets, key=lambda f: int(f.rsplit("/", 1)[-1]))
    sources = [line for line in read_text(spark, newest).splitlines()[2:] if line.strip()]
    if len(sources) != 1:
        raise FraudError(
            f"stream: the checkpoint {checkpoint} holds the offsets of {len(sources)} sources ({newest}), "
            "expected 1 (the Kafka topics): it was written by a query that also read the `labels` table. "
            "Start from a new checkpoint (`--checkpoint`, or remove this one): the state then starts "
            "from `clean_transactions` (stream.seed_from_history) and Kafka from "
            "kafka.starting_offsets"
        )


def seed_states(spark: SparkSession, cfg: Config, label_delay_hours: int) -> dict[str, DataFrame]:
    """The operators' initial state, for a query that has no checkpoint yet (`stream.seed_from_history`): the
    look-back of `clean_transactions` before its newest transaction, so that the stream's first transactions
    get the features the batch job gives them. The stream must then read the transactions after that history.
    Empty (no seed) when the checkpoint has a committed micro-batch, the option is off or the table is absent."""
    clean_path = cfg.table_path("clean_transactions")
    if (
        not cfg.get("stream.seed_from_history")
        or path_exists(spark, cfg.checkpoint_path(QUERY) + "/commits/0")
        or not table_exists(spark, clean_path)
    ):
        return {}
    clean = spark.read.format("delta").load(clean_path)
    newest = clean.select(F.max("tx_datetime")).collect()[0][0]
    if newest is None:
        return {}
    hour = int(newest.replace(tzinfo=dt.UTC).timestamp()) // 3600
    print(
        f"stream: no checkpoint yet: the state starts from {clean_path} up to {newest:%Y-%m-%d %H:%M:%S} "
        "(stream.seed_from_history)",
        flush=True,
    )
    # computed now and held by Spark (local checkpoint): the query reads a seed in its first micro-batch only,
    # but plans it in every one, and a plan over `clean_transactions` would cost each micro-batch a Delta
    # file listing and its data-skipping Spark job (docs/benchmarks.md). An executor lost before the first
    # micro-batch commits loses it: that micro-batch fails, and the restart computes the seed again
    return {
        entity: seed_state(clean, entity, label_delay_hours, hour, with_ids=entity == "card").localCheckpoint(
            eager=True
        )
        for entity in ("card", "terminal")
    }


def prepare_tables(spark: SparkSession, cfg: Config, properties: dict[str, str]) -> None:
    """Before the query starts: an empty `labels` table for analysts' queries, the tables' properties
    (`stream.delta_checkpoint_interval`), and the columns an older version's `scores` and `alerts` lack."""
    scores_path, alerts_path = cfg.table_path("scores"), cfg.table_path("alerts")
    labels_path, dead_path = cfg.table_path("labels"), cfg.table_path("dead_letters")
    if not table_exists(spark, labels_path):  # analysts' queries find it, empty, before the first label
        spark.createDataFrame([], LABELS_SCHEMA).write.format("delta").mode("append").options(**properties).save(
            labels_path
        )
    for path in (scores_path, alerts_path, labels_path, dead_path):  # tables made by an earlier run, or by hand
        set_properties(spark, path, properties)
    for path, schema in (
        (scores_path, SCORES_SCHEMA),
        (alerts_path, ALERT_REASON),
        (labels_path, LABELS_ADDED),
        (dead_path, DEAD_LETTER_REASON),
    ):
        added = add_columns(spark, path, schema)
        if added:
            print(f"stream: added the columns {added} to {path} (earlier rows hold null there)", flush=True)


def build_input(spark: SparkSession, cfg: Config, label_delay_hours: int) -> DataFrame:
    """The query's input: both topics' messages parsed and checked, through the two stateful operators,
    one row per message with its `row_kind` (`unpack_messages`)."""
    messages = read_topic_stream(spark, cfg, "transactions", "labels")
    rules = message_rules(load_rules()[1])
    seeds = seed_states(spark, cfg, label_delay_hours)
    parsed = parse_messages(messages, str(cfg.get("kafka.topics.transactions")), rules)
    return unpack_messages(stateful_features(parsed, label_delay_hours, state_ttl_days(cfg, label_delay_hours), seeds))


def start(
    spark: SparkSession,
    cfg: Config,
    available_now: bool = False,
    model: str | None = None,
    metrics: StreamMetrics | None = None,
    log_stages: bool = False,
) -> StreamingQuery:
    """Start the scoring query (see the module's docstring): the model, the tables, the input, and a
    BatchWriter for each micro-batch."""
    metrics = metrics or StreamMetrics()
    holder = ModelHolder(cfg, spark, str(model or cfg.get("stream.model")))
    holder.refresh()
    metrics.model.info({"alias": holder.alias, "version": holder.version, "threshold": str(holder.threshold)})
    properties = table_properties(cfg)
    for options in (AlertBudget, TerminalChecks):  # their options checked before anything is written
        options.from_config(cfg)
    check_checkpoint_sources(spark, cfg.checkpoint_path(QUERY))
    prepare_tables(spark, cfg, properties)
    combined = build_input(spark, cfg, holder.label_delay_hours)
    featured_columns = [
        c
        for c in combined.columns
        if c not in ("row_kind", "bypass_state", "duplicate", LABEL_INCREMENT, LABEL_PREVIOUS, *MESSAGE_COLUMNS)
    ]
    writer = BatchWriter(spark, cfg, holder, metrics, featured_columns, log_stages)
    writer.resume()
    trigger = {"availableNow": True} if available_now else {"processingTime": str(cfg.get("stream.trigger_interval"))}
    writer.query = (
        combined.writeStream.queryName(QUERY)
        .foreachBatch(writer)
        .option("checkpointLocation", cfg.checkpoint_path(QUERY))
        .trigger(**trigger)
        .start()
    )
    listener = ProgressMetrics(metrics, str(writer.query.id))
    spark.streams.addListener(listener)
    RELEASED_AT_STOP[str(writer.query.id)] = (listener, writer)
    return writer.query


def run(
    spark: SparkSession,
    cfg: Config,
    available_now: bool = False,
    model: str | None = None,
    metrics: StreamMetrics | None = None,
) -> StreamMetrics:
    """Run the query until it stops (at once with `available_now`); serve metrics meanwhile.

    SIGTERM (Kubernetes deleting the pod, YARN stopping the container, a scheduler killing the task), SIGINT
    and SIGHUP stop the query between micro-batches, and `run` returns: the checkpoint holds every committed
    micro-batch, and the one in flight is done again by the next start (jobs/stream/supervision.py). A query
    that dies raises QueryFailed, so that the process ends and its scheduler restarts it."""
    metrics = metrics or StreamMetrics()
    if metrics.port is None:
        port = metrics.serve(int(cfg.get("stream.metrics_port")))
        print(f"stream: Prometheus metrics on http://127.0.0.1:{port}/metrics")
    query = start(spark, cfg, available_now, model, metrics)
    try:
        with stop_signals() as asked:
            watch(spark, query, cfg.checkpoint_path(QUERY), asked)
    finally:
        release(spark, query)
    return metrics


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--available-now", action="store_true", help="process what the topic holds, then stop")
    parser.add_argument("--model", help="registry alias or version (default: stream.model, champion)")
    add_common_options(parser)


def execute(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    logged_in(cfg)  # before Spark starts: a wrong password or an untrusted certificate fails in seconds
    run(get_spark(cfg, "stream"), cfg, args.available_now, args.model)
    return 0


main = job_main("fraud stream", __doc__, add_arguments, execute)

if __name__ == "__main__":
    import sys

    sys.exit(main())
