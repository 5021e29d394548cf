"""`fraud backtest`: the bank's requirement measured through the live system, with the feedback loop a bank
has: the fraud team confirms alerts after a review delay, cardholders dispute the frauds nobody flagged
days later, and those labels are the only way the stream learns of frauds.

    fraud backtest [--cards 20000] [--terminals 1000] [--history-days 35] [--replay-days 14]
                   [--review-delay 1h] [--dispute-delay 7d] [--step 1h] [--name backtest]

1. Simulates `--history-days` + `--replay-days` days of the `otus` preset (the bank's 1,000 terminals).
2. Cleans the history and trains CatBoost on it with `fraud train`'s defaults (the threshold keeps the
   bank's 5% FPR budget on validation) and a label delay of the review delay rounded up to whole hours:
   the frauds the stream learns of quickly are the ones it alerted on, confirmed after the review delay.
3. Starts a broker of its own and `fraud stream`, whose state starts from the history.
4. Replays the next days through the real path, in event time, `--step` at a time: the step's
   transactions go to the `transactions` topic without labels; once all are scored, each new alert gets
   its label (the simulation's truth) `--review-delay` after its transaction, and each fraud that raised
   no alert gets a label `--dispute-delay` after it. The labels due by the end of the step go to the
   `labels` topic, and the next step waits until the stream has recorded them. A label therefore reaches
   the state at most one step later than its due time, never before its transaction was scored.
5. Reports, from `scores` and `alerts` against the simulation's truth, per day and overall: recall, FPR,
   precision, alerts, alert latency (Kafka timestamp -> alert), against the bank's requirement (recall
   above 98% with FPR at most 5%). One JSON object on stdout, kept as benchmarks/results/NAME.json, with
   a chart of daily recall and FPR against the two lines, NAME.png.
Everything lives under --work (default: a temporary folder, removed afterwards unless --keep).
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import math
import re
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from jobs import clean, kafka_broker, score_stream, train
from jobs.common import add_common_options, job_main
from jobs.config import PROJECT_ROOT, Config, load_config, parse_override
from jobs.errors import FraudError
from jobs.label_cmd import send_labels
from jobs.lake import table_exists
from jobs.metrics import StreamMetrics
from jobs.produce import produce, simulated_lines, without_labels
from jobs.session import get_spark
from jobs.simulator import make_spec
from models.split import Split

REQUIRED_RECALL, MAX_FPR = 0.98, 0.05
RAW_HEADER = ("# tranaction_id | tx_datetime | customer_id | terminal_id | tx_amount | tx_time_seconds | "
              "tx_time_days | tx_fraud | tx_fraud_scenario\n")
RESULTS = PROJECT_ROOT / "benchmarks" / "results"


def parse_duration(text: str, option: str) -> dt.timedelta:
    """``15m``, ``1h``, ``7d`` -> a timedelta; anything else is an error naming the option."""
    match = re.fullmatch(r"\s*(\d+)\s*([mhd])\s*", text)
    if not match:
        raise FraudError(f"{option}: expected a duration like 15m, 1h or 7d, found {text!r}")
    value, unit = int(match.group(1)), match.group(2)
    return dt.timedelta(minutes=value) if unit == "m" else dt.timedelta(hours=value) if unit == "h" \
        else dt.timedelta(days=value)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cards", type=int, default=20_000, help="cards (customers) to simulate (default 20,000)")
    parser.add_argument("--terminals", type=int, default=1_000, help="terminals (default 1,000, the bank's)")
    parser.add_argument("--history-days", type=int, default=35, help="days before the replay: cleaning, training "
                        "and the stream's starting state (default 35)")
    parser.add_argument("--replay-days", type=int, default=14, help="days replayed through the stream (default 14)")
    parser.add_argument("--review-delay", default="1h", help="alert -> the fraud team's label (default 1h)")
    parser.add_argument("--dispute-delay", default="7d", help="a fraud with no alert -> the cardholder's dispute "
                        "(default 7d)")
    parser.add_argument("--step", default="1h", help="event time replayed between two label deliveries (default 1h)")
    parser.add_argument("--label-delay", help="the model's label delay (default: the review delay rounded up to "
                        "whole hours, at least 1h)")
    parser.add_argument("--seed", type=int, default=0, help="the simulation's seed (default 0)")
    parser.add_argument("--name", default="backtest", help="result name under benchmarks/results/ (default backtest)")
    parser.add_argument("--no-save", action="store_true", help="print the report only")
    parser.add_argument("--work", help="the folder of the run's broker, tables and model (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep --work afterwards")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_common_options(parser)


@dataclasses.dataclass(frozen=True)
class Loop:
    """The feedback loop's delays."""

    review: dt.timedelta
    dispute: dt.timedelta
    step: dt.timedelta
    label_delay_hours: int


def loop_from_args(args: argparse.Namespace) -> Loop:
    review = parse_duration(args.review_delay, "--review-delay")
    dispute = parse_duration(args.dispute_delay, "--dispute-delay")
    step = parse_duration(args.step, "--step")
    if step <= dt.timedelta(0) or dt.timedelta(days=1) % step:
        raise FraudError(f"--step: expected a positive duration that divides a day, found {args.step!r}")
    if args.label_delay is not None:
        hours = int(parse_duration(args.label_delay if args.label_delay[-1:] in "mhd" else f"{args.label_delay}h",
                                   "--label-delay").total_seconds() // 3600)
    else:
        hours = max(1, math.ceil(review.total_seconds() / 3600))
    for option, value in (("--cards", args.cards), ("--terminals", args.terminals), ("--replay-days", args.replay_days)):
        if value < 1:
            raise FraudError(f"{option}: expected 1 or more, found {value}")
    if args.history_days < 21:
        raise FraudError(f"--history-days: expected at least 21 (training, validation, a gap and test days), "
                         f"found {args.history_days}")
    return Loop(review, dispute, step, hours)


def work_config(args: argparse.Namespace, work: Path) -> Config:
    """The configuration of the run: tables, checkpoints, MLflow and a broker of its own under `work`."""
    port = kafka_broker.free_port()
    overrides: dict[str, Any] = {
        "paths.lake": str(work / "lake"), "paths.checkpoint": str(work / "checkpoints"),
        "mlflow.tracking_uri": f"sqlite:///{work}/mlflow.db", "mlflow.artifact_location": str(work / "artifacts"),
        "kafka.broker.state_dir": str(work / "kafka"), "kafka.broker.port": port,
        "kafka.broker.controller_port": kafka_broker.free_port(), "kafka.bootstrap_servers": f"127.0.0.1:{port}",
        "stream.metrics_port": 0, "spark.ui_enabled": False}
    overrides.update(dict(parse_override(o) for o in args.overrides))
    return load_config(args.env, overrides, args.conf_dir)


def execute(args: argparse.Namespace) -> int:
    loop = loop_from_args(args)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="fraud-backtest-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        report = run(work_config(args, work), args, loop, work)
    finally:
        if not args.keep and not args.work:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(report, indent=2))
    if not args.no_save:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"{args.name}.json").write_text(json.dumps(report, indent=2) + "\n")
        chart(report, RESULTS / f"{args.name}.png")
    return 0


def _time_of(line: str) -> dt.datetime:
    return dt.datetime.strptime(line.split(",", 2)[1], "%Y-%m-%d %H:%M:%S")


def run(cfg: Config, args: argparse.Namespace, loop: Loop, work: Path) -> dict[str, Any]:
    spec = make_spec("otus", customers=args.cards, terminals=args.terminals,
                     days=args.history_days + args.replay_days, seed=args.seed)
    replay_start = dt.datetime.combine(spec.start_date + dt.timedelta(days=args.history_days), dt.time())
    history_file = work / "raw" / f"{spec.start_date.isoformat()}.txt"
    history_file.parent.mkdir(parents=True, exist_ok=True)
    replay: list[str] = []
    with history_file.open("w") as out:
        out.write(RAW_HEADER)
        for line in simulated_lines(spec):
            if _time_of(line) < replay_start:
                out.write(line)
            else:
                replay.append(line)
    truth = {int(f[0]): int(f[7]) for f in (line.split(",") for line in replay)}
    broker = kafka_broker.spec_from_config(cfg)
    kafka_broker.start(broker)
    query = None
    try:
        spark = get_spark(cfg, "backtest")
        spark.sparkContext.setLogLevel("ERROR")
        cleaning = clean.run(spark, cfg, str(history_file))
        # the test week ends with the history; seven days between training and test
        split = Split(spec.start_date, train_days=7, delay_days=7, test_days=7, val_days=2)
        trained = train.run(spark, cfg, split, loop.label_delay_hours, latest=True)
        query = score_stream.start(spark, cfg, available_now=False, metrics=StreamMetrics())
        replayed = replay_loop(spark, cfg, query, replay, truth, replay_start, loop, not args.no_progress)
        report = measure(spark, cfg, truth)
    finally:
        if query is not None:
            query.stop()
        kafka_broker.stop(broker)
    return {
        "benchmark": "backtest", "machine": "2 cores, local[2]",
        "command": "fraud backtest " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in (
            ("cards", args.cards), ("terminals", args.terminals), ("history_days", args.history_days),
            ("replay_days", args.replay_days), ("review_delay", args.review_delay),
            ("dispute_delay", args.dispute_delay), ("step", args.step))),
        "requirement": {"recall_above": REQUIRED_RECALL, "fpr_at_most": MAX_FPR},
        "simulation": {"preset": "otus", "cards": args.cards, "terminals": args.terminals, "seed": args.seed,
                       "history": [spec.start_date.isoformat(), (replay_start.date() - dt.timedelta(days=1)).isoformat()],
                       "replay": [replay_start.date().isoformat(),
                                  (replay_start.date() + dt.timedelta(days=args.replay_days - 1)).isoformat()],
                       "history_clean_rows": cleaning["clean"], "replayed_transactions": len(replay),
                       "replayed_frauds": int(sum(truth.values()))},
        "loop": {"review_delay": args.review_delay, "dispute_delay": args.dispute_delay, "step": args.step,
                 "model_label_delay_hours": loop.label_delay_hours, **replayed},
        "model": {"version": trained["registry"]["version"], "threshold": trained["threshold"],
                  "threshold_rule": trained["threshold_rule"], "split": trained["split"],
                  "offline_test": {k: trained["test"][k] for k in ("recall", "fpr", "precision", "roc_auc",
                                                                   "average_precision", "recall_at_fpr_5pct")}},
        **report,
    }


def _count(spark: Any, path: str) -> int:
    return int(spark.read.format("delta").load(path).count()) if table_exists(spark, path) else 0


def replay_loop(spark: Any, cfg: Config, query: Any, replay: list[str], truth: dict[int, int],
                start: dt.datetime, loop: Loop, progress: bool) -> dict[str, Any]:
    """Send the replay a step at a time, with the labels due by each step's end (see the module's doc)."""
    from tqdm import tqdm

    scores_path, dead_path = cfg.table_path("scores"), cfg.table_path("dead_letters")
    alerts_path, labels_path = cfg.table_path("alerts"), cfg.table_path("labels")
    tx_time = {int(line.split(",", 1)[0]): _time_of(line) for line in replay}
    last = max(tx_time.values())
    end = start + dt.timedelta(days=math.ceil((last - start + dt.timedelta(seconds=1)) / dt.timedelta(days=1)))
    steps = int((end - start) / loop.step)
    by_step: list[list[str]] = [[] for _ in range(steps)]
    for line in replay:
        by_step[int((_time_of(line) - start) / loop.step)].append(line)
    sent = labels_sent = reviews = disputes = 0
    alerted: set[int] = set()
    pending: list[tuple[dt.datetime, int, int]] = []  # (due, transaction id, label)
    review_hours: list[float] = []  # transaction -> the end of the step whose labels carried its review
    started = time.monotonic()
    bar = tqdm(total=steps, desc="backtest", unit="step", disable=not progress)
    for k, lines in enumerate(by_step):
        step_end = start + (k + 1) * loop.step
        if lines:
            sent += produce(cfg, without_labels(iter(lines)))["sent"]
            wait_for(spark, query, [scores_path, dead_path], sent, f"step {k + 1}: the step's transactions scored")
        new = [int(r.transaction_id) for r in spark.read.format("delta").load(alerts_path).select("transaction_id")
               .collect() if int(r.transaction_id) not in alerted] if table_exists(spark, alerts_path) else []
        alerted.update(new)
        pending += [(tx_time[t] + loop.review, t, truth.get(t, 0)) for t in new]
        reviews += len(new)
        missed = [int(line.split(",", 1)[0]) for line in lines if truth[int(line.split(",", 1)[0])] == 1]
        missed = [t for t in missed if t not in alerted]
        pending += [(tx_time[t] + loop.dispute, t, 1) for t in missed]
        disputes += len(missed)
        due = [(t, label) for when, t, label in pending if when < step_end]
        review_hours += [(step_end - tx_time[t]).total_seconds() / 3600 for t, _ in due if t in alerted]
        if due:
            pending = [p for p in pending if p[0] >= step_end]
            send_labels(cfg, due)
            labels_sent += len(due)
            wait_for(spark, query, [labels_path], labels_sent, f"step {k + 1}: the step's labels recorded")
        bar.update(1)
        bar.set_postfix(tx=sent, alerts=len(alerted), labels=labels_sent)
    bar.close()
    return {"steps": steps, "transactions_sent": sent, "alerts_reviewed": reviews,
            "frauds_missed_and_disputed": disputes, "labels_sent": labels_sent,
            # the review delay the loop delivered: at least --review-delay, at most about one --step more
            "review_label_hours": {f"p{q}": round(float(np.percentile(review_hours, q)), 2) for q in (50, 90, 100)}
            if review_hours else {},
            "labels_due_after_the_replay": len(pending), "wall_seconds": round(time.monotonic() - started, 1)}


def wait_for(spark: Any, query: Any, paths: Sequence[str], count: int, what: str) -> None:
    """Let the query process everything its sources hold (Spark's `processAllAvailable`: the micro-batches
    that read it are committed, and so are the ones that read the `labels` rows they wrote), then check that
    the tables at `paths` hold `count` rows between them."""
    if not query.isActive:
        raise FraudError(f"backtest: the streaming query stopped: {query.exception()}")
    query.processAllAvailable()
    found = sum(_count(spark, p) for p in paths)
    if found < count:
        raise FraudError(f"backtest: {what}: expected {count} rows in {', '.join(paths)}, found {found}")


def rates(frame: pd.DataFrame) -> dict[str, Any]:
    """Recall, FPR and precision of the `decision` column against `fraud`."""
    frauds, genuine = int(frame["fraud"].sum()), int((~frame["fraud"]).sum())
    caught = int((frame["decision"] & frame["fraud"]).sum())
    false_alerts = int((frame["decision"] & ~frame["fraud"]).sum())
    alerts = caught + false_alerts
    recall = caught / frauds if frauds else None
    fpr = false_alerts / genuine if genuine else None
    return {"transactions": len(frame), "frauds": frauds, "alerts": alerts, "frauds_alerted": caught,
            "false_alerts": false_alerts, "recall": None if recall is None else round(recall, 4),
            "fpr": None if fpr is None else round(fpr, 4),
            "precision": round(caught / alerts, 4) if alerts else None,
            "meets_requirement": recall is not None and fpr is not None and recall > REQUIRED_RECALL
            and fpr <= MAX_FPR}


def measure(spark: Any, cfg: Config, truth: dict[int, int]) -> dict[str, Any]:
    """Per day (of the transaction) and overall, from `scores` and `alerts` against the truth."""
    scores = spark.read.format("delta").load(cfg.table_path("scores")).select(
        "transaction_id", "tx_datetime", "decision", "kafka_timestamp").toPandas()
    scores["fraud"] = scores["transaction_id"].map(truth).fillna(0).astype(bool)
    scores["day"] = pd.to_datetime(scores["tx_datetime"]).dt.date.astype(str)
    days = {day: rates(frame) for day, frame in scores.groupby("day")}
    alerts = spark.read.format("delta").load(cfg.table_path("alerts")).select("transaction_id", "alerted_at") \
        .toPandas() if table_exists(spark, cfg.table_path("alerts")) else pd.DataFrame(columns=["transaction_id", "alerted_at"])
    timed = alerts.merge(scores[["transaction_id", "kafka_timestamp"]], on="transaction_id")
    seconds = (pd.to_datetime(timed["alerted_at"]) - pd.to_datetime(timed["kafka_timestamp"])).dt.total_seconds()
    latency = {f"p{q}_seconds": round(float(np.percentile(seconds, q)), 2) for q in (50, 90, 99)} if len(seconds) else {}
    return {"overall": rates(scores), "alert_latency": latency, "days": days}


def chart(report: dict[str, Any], path: Path) -> None:
    """Daily recall and FPR against the requirement's lines, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    days = report["days"]
    x = [dt.date.fromisoformat(d) for d in days]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    top.plot(x, [days[d]["recall"] for d in days], marker="o", label="recall")
    top.axhline(REQUIRED_RECALL, color="red", linestyle="--", label=f"required: above {REQUIRED_RECALL:.0%}")
    top.set_ylabel("recall")
    top.set_ylim(min([0.5] + [days[d]["recall"] or 0 for d in days]) - 0.02, 1.01)
    top.legend(loc="lower right")
    bottom.plot(x, [days[d]["fpr"] for d in days], marker="o", color="tab:orange", label="false-positive rate")
    bottom.axhline(MAX_FPR, color="red", linestyle="--", label=f"allowed: at most {MAX_FPR:.0%}")
    bottom.set_ylabel("FPR")
    bottom.set_ylim(0, max([MAX_FPR * 1.5] + [days[d]["fpr"] or 0 for d in days]) * 1.1)
    bottom.legend(loc="upper right")
    loop = report["loop"]
    overall = report["overall"]
    fig.suptitle(f"Backtest through fraud stream: review {loop['review_delay']}, dispute {loop['dispute_delay']}; "
                 f"overall recall {overall['recall']}, FPR {overall['fpr']}")
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


main = job_main("fraud backtest", __doc__, add_arguments, execute)
