"""`fraud backtest`: the bank's requirement measured through the live system, with the feedback loop a bank
has: the fraud team confirms alerts after a review delay, cardholders dispute the frauds nobody flagged
days later, and those labels are the only way the stream learns of frauds.

    fraud backtest [--cards 20000] [--terminals 1000] [--history-days 35] [--replay-days 5]
                   [--review-delay 1h] [--dispute-delay 7d] [--step 2h] [--reissue-cards] [--name backtest]

1. Simulates `--history-days` + `--replay-days` days of the `otus` preset (the bank's 1,000 terminals).
2. Cleans the history and trains CatBoost on it with `fraud train`'s defaults (the threshold keeps the
   bank's 5% FPR budget on validation) and a label delay of the review delay rounded up to whole hours:
   the frauds the stream learns of quickly are the ones it alerted on, confirmed after the review delay.
3. Starts a broker of its own and `fraud stream`, whose state starts from the history.
4. Replays the next days through the real path, in event time, `--step` at a time. At each step's start
   the labels due by then go to the `labels` topic, with their transaction's card, terminal and time (as
   the alert gives them), and the step's transactions to the `transactions` topic without labels; the
   stream reads both in one micro-batch: it records the labels and adds them to its state, and scores the
   transactions (a label's transaction is older than the step's: its change counts for them); then the
   fraud team's consumer reads the new alerts from the alerts topic. Each alert gets its label (the
   simulation's truth) due `--review-delay` after its transaction; each fraud that raised no alert gets one
   due `--dispute-delay` after it. A label reaches the state at most one step after it is due, never
   before its transaction was scored.
5. Measures, from `scores` against the simulation's truth, per day and overall: recall, FPR, precision,
   alerts, alert latency (Kafka timestamp -> alert), against the bank's requirement (recall above 98%
   with FPR at most 5%). A card is blocked once a fraud of it is confirmed (the history's a review delay
   after them, the replay's when their label is due): its later transactions are left out, as `fraud
   train` leaves them out of its test days (`every_transaction` keeps them). With `--reissue-cards` the bank
   reissues a blocked card instead: from the next step on, its holder pays with a new card id (no history)
   and the stolen card's frauds are declined (CardIssuer). The same days are also scored the batch way,
   every label after the model's label delay (`offline_same_days`).
6. Prints one JSON object on stdout, kept as benchmarks/results/NAME.json, with a chart of daily recall
   and FPR against the two lines, NAME.png.
Everything lives under --work (default: a temporary folder, removed afterwards unless --keep).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import math
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jobs.batch import clean, train
from jobs.core.common import job_main
from jobs.core.config import PROJECT_ROOT, Config, load_config, parse_override
from jobs.core.errors import FraudError
from jobs.core.metrics import StreamMetrics
from jobs.core.provenance import run_stamp
from jobs.core.session import get_spark
from jobs.core.stopwatch import Stopwatch
from jobs.dev import kafka_broker
from jobs.kafka_tools.produce import line_to_message, raw_lines, simulated_lines
from jobs.replay.bank import RAW_HEADER, CardIssuer, Channels, Retrainer, blocked_before, readable, time_of
from jobs.replay.figures import chart, measure, offline_comparison, replay_frame, spread
from jobs.replay.options import Loop, add_arguments, command, loop_from_args, parse_seeds, review_settings
from jobs.replay.reviews import Feedback
from jobs.simulation.simulator import make_spec
from jobs.stream import score_stream, supervision
from models.metrics import MAX_FPR, REQUIRED_RECALL
from models.split import Split

RESULTS = PROJECT_ROOT / "benchmarks" / "results"


def work_config(args: argparse.Namespace, work: Path) -> Config:
    """The configuration of the run: tables, checkpoints, MLflow and a broker of its own under `work`."""
    port = kafka_broker.free_port()
    overrides: dict[str, Any] = {
        "paths.lake": str(work / "lake"),
        "paths.checkpoint": str(work / "checkpoints"),
        "mlflow.tracking_uri": f"sqlite:///{work}/mlflow.db",
        "mlflow.artifact_location": str(work / "artifacts"),
        "kafka.broker.state_dir": str(work / "kafka"),
        "kafka.broker.port": port,
        "kafka.broker.controller_port": kafka_broker.free_port(),
        "kafka.bootstrap_servers": f"127.0.0.1:{port}",
        "stream.metrics_port": 0,
        "spark.ui_enabled": False,
    }
    overrides.update(dict(parse_override(o) for o in args.overrides))
    return load_config(args.env, overrides, args.conf_dir)


def policy(cfg: Config) -> dict[str, Any]:
    """The alerting policy a replay runs: the stream's settings that decide what is flagged and reviewed."""
    return {key: cfg.get(f"stream.{key}") for key in ("alert_budget", "terminal_checks", "blocked_card_days")}


def execute(args: argparse.Namespace) -> int:
    if args.seeds is None:
        report = replay_once(args)
    else:
        seeds = parse_seeds(args.seeds)
        if args.input is not None:
            raise FraudError("--seeds: the bank's raw files (--input) are one draw; expected --seeds without --input")
        # a seed's file is taken again only if it ran this command with this policy (a default may have changed)
        wanted = policy(load_config(args.env, dict(parse_override(o) for o in args.overrides), args.conf_dir))
        reports = {}
        for seed in seeds:
            one = argparse.Namespace(
                **{
                    **vars(args),
                    "seed": seed,
                    "seeds": None,
                    "name": f"{args.name}_seed{seed}",
                    "work": args.work and str(Path(args.work) / f"seed{seed}"),
                }
            )
            kept = RESULTS / f"{one.name}.json"
            earlier = json.loads(kept.read_text()) if args.reuse_seeds and kept.exists() else {}
            if earlier.get("command") == command(one) and earlier.get("policy") == wanted:
                print(f"fraud backtest: seed {seed} read from {kept} (--reuse-seeds)", file=sys.stderr)
                reports[seed] = earlier
            else:
                reports[seed] = replay_once(one)
        report = {
            "benchmark": "backtest_seeds",
            "machine": "2 cores, local[2]",
            "command": command(args).replace(f" --seed {args.seed}", f" --seeds {args.seeds}"),
            **spread(reports, args.name),
            "run": run_stamp(),
        }
        print(json.dumps(report, indent=2))
        if not args.no_save:
            (RESULTS / f"{args.name}.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0


def replay_once(args: argparse.Namespace) -> dict[str, Any]:
    """One replay of `args` (its --seed): the report, printed and saved under its --name."""
    loop = loop_from_args(args)
    stamp = run_stamp()  # the code the replay runs, taken before it starts
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="fraud-backtest-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        with contextlib.redirect_stdout(sys.stderr):  # the stream's own lines: stdout is the report's
            report = {**run(work_config(args, work), args, loop, work), "run": stamp}
    finally:
        if not args.keep and not args.work:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(report, indent=2))
    if not args.no_save:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"{args.name}.json").write_text(json.dumps(report, indent=2) + "\n")
        chart(report, RESULTS / f"{args.name}.png")
    return report


@dataclasses.dataclass
class Days:
    """The history (a raw file, cleaned and trained on before the replay) and the replayed lines."""

    history_file: Path
    history_start: dt.date
    replay_start: dt.datetime
    replay: list[str]  # every line of the replayed days, in the files' order, unreadable ones included
    history_frauds: list[str]
    highest_card: int
    described: dict[str, Any]


def split_lines(lines: Iterable[str], replay_start: dt.datetime, history_file: Path) -> Days:
    """Write the lines before `replay_start` to `history_file` (a raw file); keep the others to replay. A line
    the backtest cannot read stays with the readable line before it."""
    history_file.parent.mkdir(parents=True, exist_ok=True)
    replay: list[str] = []
    history_frauds: list[str] = []
    highest_card, in_replay, first = 0, False, None
    with history_file.open("w") as out:
        out.write(RAW_HEADER)
        for line in lines:
            if readable(line):
                when = time_of(line)
                first = first or when.date()
                in_replay = when >= replay_start
                highest_card = max(highest_card, int(line.split(",", 3)[2]))
                if not in_replay and line.split(",", 8)[7] == "1":
                    history_frauds.append(line)
            if in_replay:
                replay.append(line)
            else:
                out.write(line if line.endswith("\n") else line + "\n")
    return Days(history_file, first or replay_start.date(), replay_start, replay, history_frauds, highest_card, {})


def simulated_days(args: argparse.Namespace, work: Path) -> Days:
    """`--history-days` + `--replay-days` days of the `otus` preset."""
    try:
        spec = make_spec(
            "otus",
            customers=args.cards,
            terminals=args.terminals,
            radius=args.radius,
            terminals_compromised_per_day=args.terminals_compromised_per_day,
            terminal_fraud_days=args.compromise_days,
            days=args.history_days + args.replay_days,
            seed=args.seed,
        )
    except ValueError as exc:
        raise FraudError(f"fraud backtest: {exc}") from exc
    replay_start = dt.datetime.combine(spec.start_date + dt.timedelta(days=args.history_days), dt.time())
    days = split_lines(
        simulated_lines(spec), replay_start, work / "raw" / "history" / f"{spec.start_date.isoformat()}.txt"
    )
    days.described = {
        "preset": "otus",
        "cards": args.cards,
        "terminals": args.terminals,
        "radius": args.radius,
        "terminals_compromised_per_day": args.terminals_compromised_per_day,
        "compromise_days": spec.terminal_fraud_days,
        "seed": args.seed,
    }
    return days


def raw_days(args: argparse.Namespace, work: Path) -> Days:
    """The bank's raw files (`--input`, as `fraud clean` reads them): their last `--replay-days` days are
    replayed, the days before are the history. Labels come from the files' `tx_fraud`."""
    source = Path(args.input)
    if not source.exists():
        raise FraudError(f"--input: expected a raw file or a folder of them, found nothing at {source}")
    newest = max((time_of(line) for line in raw_lines(source) if readable(line)), default=None)
    if newest is None:
        raise FraudError(f"--input {source}: expected lines in the bank's raw format, found none readable")
    replay_start = dt.datetime.combine(newest.date() - dt.timedelta(days=args.replay_days - 1), dt.time())
    days = split_lines(raw_lines(source), replay_start, work / "raw" / "history" / "history.txt")
    history = (replay_start.date() - days.history_start).days
    if history < 21:
        raise FraudError(
            f"--input {source}: expected at least 21 days before the {args.replay_days} replayed days "
            f"(training, validation, a gap and test days), found {history} "
            f"({days.history_start} to {replay_start.date() - dt.timedelta(days=1)})"
        )
    days.described = {
        "input": str(source.resolve()),
        "replayed_lines": len(days.replay),
        "unreadable_replayed_lines": sum(not readable(line) for line in days.replay),
    }
    return days


def run(cfg: Config, args: argparse.Namespace, loop: Loop, work: Path) -> dict[str, Any]:
    """The backtest (see the module's doc): the days, a broker, the history cleaned and trained on, the replay
    through the stream, the figures."""
    watch = Stopwatch()
    days = simulated_days(args, work) if args.input is None else raw_days(args, work)
    prior = blocked_before(days.history_frauds, loop.review)
    judged_frame = replay_frame(days.replay)
    truth = dict(zip(judged_frame["transaction_id"], judged_frame["fraud"].astype(int)))
    watch.done("simulate")
    broker = kafka_broker.spec_from_config(cfg)
    kafka_broker.start(broker)
    watch.done("broker")
    try:
        spark = get_spark(cfg, "backtest")
        spark.sparkContext.setLogLevel("ERROR")
        cleaning = clean.run(spark, cfg, str(days.history_file))
        watch.done("clean")
        # the test week ends with the history; seven days between training and test
        split = Split(days.history_start, train_days=7, delay_days=7, test_days=7, val_days=2)
        trained = train.run(spark, cfg, split, loop.label_delay_hours, latest=True)
        retrainer = Retrainer(spark, cfg, work, loop, split)
        if loop.retrain_every is not None and loop.retrain_every < dt.timedelta(days=args.replay_days):
            retrainer.keep_history()
        watch.done("train")
        issuer = CardIssuer(args.reissue_cards, days.highest_card + 1, prior, days.history_frauds)
        replayed, confirmed, sent_lines = through_the_stream(
            spark, cfg, days, truth, loop, issuer, retrainer, not args.no_progress
        )
        watch.done("replay")
        (work / "confirmed.json").write_text(json.dumps({str(t): w.isoformat() for t, w in confirmed.items()}))
        # the replay as the bank saw it (reissued card ids, declined payments left out), for the figures
        replay_file = work / "raw" / "replay" / f"{days.replay_start.date().isoformat()}.txt"
        replay_file.parent.mkdir(parents=True, exist_ok=True)
        replay_file.write_text(RAW_HEADER + "".join(sent_lines))
        frame = replay_frame(sent_lines)
        # the history's frauds at compromised terminals: the stream's state starts knowing them
        known_compromises = replay_frame(days.history_frauds).query("scenario == 2")[["terminal_id", "tx_datetime"]]
        unreadable = {
            i
            for i in (line_to_message(line).get("transaction_id") for line in sent_lines if not readable(line))
            if isinstance(i, int)
        }
        measured = measure(spark, cfg, frame, unreadable, confirmed, prior, known_compromises)
        offline = offline_comparison(
            spark, cfg, str(replay_file), trained, frame, loop, review_settings(args)["review_delay"], prior
        )
        watch.done("measure_and_offline")
    finally:
        kafka_broker.stop(broker)
    replay_end = days.replay_start.date() + dt.timedelta(days=args.replay_days - 1)
    settings = review_settings(args)
    return {
        "benchmark": "backtest",
        "machine": "2 cores, local[2]",
        "command": command(args),
        "policy": policy(cfg),
        "requirement": {"recall_above": REQUIRED_RECALL, "fpr_at_most": MAX_FPR},
        "simulation" if args.input is None else "input": {
            **days.described,
            "history": [days.history_start.isoformat(), (days.replay_start.date() - dt.timedelta(days=1)).isoformat()],
            "replay": [days.replay_start.date().isoformat(), replay_end.isoformat()],
            "history_clean_rows": cleaning["clean"],
            "history_quarantined_rows": cleaning["quarantined"],
            "replayed_transactions": len(truth),
            "replayed_frauds": int(sum(truth.values())),
            "reissue_cards": args.reissue_cards,
        },
        "loop": {
            "review_delay": settings["review_delay"],
            "dispute_delay": settings["dispute_delay"],
            "step": args.step,
            "model_label_delay_hours": loop.label_delay_hours,
            "review_model": {
                "preset": args.reviews,
                "capacity_per_day": loop.reviews.capacity,
                "hours": settings["review_hours"],
                "order": loop.reviews.order,
                "wrong_share": loop.reviews.wrong,
                "unanswered_share": loop.reviews.unanswered,
                "dispute_share": loop.disputes.share,
                "dispute_spread": settings["dispute_spread"],
            },
            **replayed,
            "setup_seconds": watch.rounded(1),
        },
        "offline_same_days": offline,
        "model": {
            "version": trained["registry"]["version"],
            "threshold": trained["threshold"],
            "threshold_rule": trained["threshold_rule"],
            "split": trained["split"],
            "offline_test": {
                k: trained["test"][k]
                for k in ("recall", "fpr", "precision", "roc_auc", "average_precision", "recall_at_fpr_5pct")
            },
        },
        **measured,
    }


def through_the_stream(
    spark: Any,
    cfg: Config,
    days: Days,
    truth: dict[int, int],
    loop: Loop,
    issuer: CardIssuer,
    retrainer: Retrainer,
    progress: bool,
) -> tuple[dict[str, Any], dict[int, dt.datetime], list[str]]:
    """Start `fraud stream`, replay the days through it (replay_loop), stop it; the loop's figures with the
    stream's micro-batches and their seconds by stage."""
    metrics = StreamMetrics()
    query = score_stream.start(spark, cfg, available_now=False, metrics=metrics)
    channels = Channels(cfg)
    try:
        replayed, confirmed, sent_lines = replay_loop(
            query, metrics, channels, days.replay, truth, days.replay_start, loop, issuer, retrainer, progress
        )
    finally:
        channels.close()
        supervision.stop_query(spark, query)
    value = metrics.registry.get_sample_value
    replayed["stream_batches"] = int(value("fraud_batch_duration_seconds_count") or 0)
    replayed["stream_seconds_by_stage"] = {
        stage: round(value("fraud_batch_stage_seconds_total", {"stage": stage}) or 0.0, 1)
        for stage in ("state", "score", "alerts_topic", "explanations", "tables", "labels", "dead_letters")
    }
    return replayed, confirmed, sent_lines


def steps_of(replay: Sequence[str], start: dt.datetime, step: dt.timedelta) -> tuple[list[list[str]], dt.datetime]:
    """The replayed lines by step from `start` (a line the backtest cannot read goes with the line before it),
    and the end of the last whole day."""
    last = max(time_of(line) for line in replay if readable(line))
    end = start + dt.timedelta(days=math.ceil((last - start + dt.timedelta(seconds=1)) / dt.timedelta(days=1)))
    by_step: list[list[str]] = [[] for _ in range(int((end - start) / step))]
    k = 0
    for line in replay:
        k = int((time_of(line) - start) / step) if readable(line) else k
        by_step[k].append(line)
    return by_step, end


def replay_loop(
    query: Any,
    metrics: StreamMetrics,
    channels: Channels,
    replay: list[str],
    truth: dict[int, int],
    start: dt.datetime,
    loop: Loop,
    issuer: CardIssuer,
    retrainer: Retrainer,
    progress: bool,
) -> tuple[dict[str, Any], dict[int, dt.datetime], list[str]]:
    """Replay a step at a time (see the module's doc); return the loop's figures, for each fraud whose label
    was due within the replay when (the bank blocks the card then), and the lines as sent (`issuer`'s card
    ids, without the declined payments)."""
    from tqdm import tqdm

    feedback = Feedback(
        loop.reviews,
        loop.disputes,
        truth,
        {int(line.split(",", 1)[0]): time_of(line) for line in replay if readable(line)},
        np.random.default_rng([loop.seed, 45]),
    )
    by_step, end = steps_of(replay, start, loop.step)
    tx_place: dict[int, tuple[int, int, str]] = {}  # a label names its transaction's card, terminal and time
    sent_lines: list[str] = []
    sent = labels_sent = 0
    started = time.monotonic()
    phases = Stopwatch("stream", "alerts", "retraining")
    bar = tqdm(total=len(by_step), desc="backtest", unit="step", disable=not progress)
    counted = ("fraud_labels", "fraud_transactions_scored", "fraud_dead_letters")  # a step is done when they add up
    for k, lines in enumerate(by_step):
        step_start = start + k * loop.step
        phases.restart()
        # 1. the labels due by the step's start and the step's transactions, in one micro-batch: the labels
        #    recorded and in the state, the transactions scored
        due = feedback.due(step_start)
        for when, t, label in due:
            if label == 1:
                issuer.block(tx_place[t][0], when)
        issuer.apply(step_start)
        if retrainer.due(step_start - start):  # before the step: its micro-batch scores with the champion then
            retrainer(step_start, sent_lines, feedback.confirmed)
            phases.done("retraining")
        lines = [paid for paid in map(issuer.payment, lines) if paid is not None]
        tx_place.update(
            (int(m["transaction_id"]), (int(m["customer_id"]), int(m["terminal_id"]), str(m["tx_datetime"])))
            for m in map(line_to_message, filter(readable, lines))
        )
        sent_lines += lines
        if due or lines:
            # a label is recorded, or a dead letter if its transaction was one (a zero amount breaks a rule)
            before = metrics_total(metrics, *counted)
            labels_sent += channels.send_labels([(t, label, *tx_place[t]) for _, t, label in due])
            sent += channels.send_transactions(lines)
            settle(
                query,
                lambda: metrics_total(metrics, *counted),
                before + len(due) + len(lines),
                f"step {k + 1}: its {len(due)} labels recorded and {len(lines)} transactions scored, or dead letters",
            )
        phases.done("stream")
        # 2. the fraud team reads the new alerts; the frauds that raised none will be disputed
        feedback.read(channels.new_alerts(), lines)
        phases.done("alerts")
        bar.update(1)
        bar.set_postfix(tx=sent, alerts=len(feedback.alerted), labels=labels_sent)
    bar.close()
    wall = time.monotonic() - started
    return (
        {
            "steps": len(by_step),
            "transactions_sent": sent,
            **feedback.close(end),
            "labels_sent": labels_sent,
            "cards_reissued": issuer.reissued,
            "declined_on_reissued_cards": len(issuer.declined),
            "retrainings": retrainer.runs,
            "wall_seconds": round(wall, 1),
            "seconds_per_step": round(wall / max(len(by_step), 1), 2),
            "wall_seconds_by_phase": phases.rounded(1),
        },
        feedback.confirmed,
        sent_lines,
    )


def metrics_total(metrics: StreamMetrics, *counters: str) -> int:
    """The sum of the stream's counters (the rows its micro-batches committed)."""
    return int(sum(metrics.registry.get_sample_value(f"{c}_total") or 0 for c in counters))


def settle(query: Any, committed: Callable[[], int], expected: int, what: str) -> None:
    """Let the query process everything its sources hold (Spark's `processAllAvailable`: the micro-batches
    that read it are committed), then check that its sinks committed `expected` rows."""
    if not query.isActive:
        raise FraudError(f"backtest: the streaming query stopped: {query.exception()}")
    query.processAllAvailable()
    found = committed()
    if found < expected:
        raise FraudError(f"backtest: {what}: expected {expected} rows committed, found {found}")


main = job_main("fraud backtest", __doc__, add_arguments, execute)
