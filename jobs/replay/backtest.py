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
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import functions as F

from features.definitions import FEATURE_NAMES
from features.schema import RAW_HEADER as SCHEMA_RAW_HEADER
from jobs.batch import build_features, clean, train
from jobs.core import registry
from jobs.core.common import add_common_options, job_main
from jobs.core.config import PROJECT_ROOT, Config, load_config, parse_override
from jobs.core.dead_letters import DUPLICATE
from jobs.core.errors import FraudError
from jobs.core.kafka_clients import logged_in
from jobs.core.lake import table_exists
from jobs.core.metrics import StreamMetrics
from jobs.core.provenance import run_stamp
from jobs.core.session import get_spark
from jobs.dev import kafka_broker
from jobs.kafka_tools.label_cmd import label_record
from jobs.kafka_tools.produce import line_to_message, raw_lines, simulated_lines, transaction_record, without_labels
from jobs.replay.reviews import Disputes, Feedback, Reviews, parse_hours
from jobs.simulation.simulator import CARD_FRAUD_DAYS, make_spec
from jobs.stream import score_stream
from models import catboost_model
from models.blocking import after_block, blocked_since
from models.metrics import MAX_FPR, REQUIRED_RECALL, requirement
from models.split import Split

RAW_HEADER = SCHEMA_RAW_HEADER + "\n"  # the bank's raw files' first line (features/schema.py)
RESULTS = PROJECT_ROOT / "benchmarks" / "results"


def parse_duration(text: str, option: str) -> dt.timedelta:
    """``15m``, ``1h``, ``7d`` -> a timedelta; anything else is an error naming the option."""
    match = re.fullmatch(r"\s*(\d+)\s*([mhd])\s*", text)
    if not match:
        raise FraudError(f"{option}: expected a duration like 15m, 1h or 7d, found {text!r}")
    value, unit = int(match.group(1)), match.group(2)
    return (
        dt.timedelta(minutes=value)
        if unit == "m"
        else dt.timedelta(hours=value)
        if unit == "h"
        else dt.timedelta(days=value)
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cards", type=int, default=20_000, help="cards (customers) to simulate (default 20,000)")
    parser.add_argument("--terminals", type=int, default=1_000, help="terminals (default 1,000, the bank's)")
    parser.add_argument(
        "--radius",
        type=float,
        default=5.0,
        help="a card uses the terminals closer than this on the "
        "simulation's 100 x 100 map (default 5: about 8 terminals a card with 1,000)",
    )
    parser.add_argument(
        "--terminals-compromised-per-day",
        type=float,
        default=2.0,
        help="compromises drawn a day (default 2, the bank's 0.2%% of 1,000 terminals); a fraction is a chance",
    )
    parser.add_argument(
        "--history-days",
        type=int,
        default=35,
        help="days before the replay: cleaning, training and the stream's starting state (default 35)",
    )
    parser.add_argument("--replay-days", type=int, default=5, help="days replayed through the stream (default 5)")
    parser.add_argument(
        "--reviews",
        default="bank",
        choices=tuple(REVIEW_PRESETS),
        help="the fraud team's and the cardholders' defaults: bank (working hours, riskiest first, "
        "calls that fail or mislead, disputes from most frauds over a statement month; "
        "docs/backtest.md says where each comes from) or oracle (every alert's truth an hour after "
        "it, day and night, every missed fraud disputed 7 days after it); the options below "
        "override it (default bank)",
    )
    parser.add_argument("--review-delay", help="an alert taken up for review -> the fraud team's label (bank: 1h)")
    parser.add_argument(
        "--review-capacity",
        help="reviews the fraud team does a day, or `none`; the rest wait "
        "(bank: none, a team staffed for the alert budget)",
    )
    parser.add_argument(
        "--review-hours", help="FIRST-LAST: the hours of the day reviews are done in, e.g. 8-20, or `all` (bank: 8-20)"
    )
    parser.add_argument(
        "--review-order",
        choices=("oldest", "riskiest"),
        help="which waiting alert the team takes first (bank: riskiest)",
    )
    parser.add_argument(
        "--review-wrong", type=float, help="the share of reviews whose label is the other one (bank: 0.01)"
    )
    parser.add_argument("--review-unanswered", type=float, help="the share of reviews that give no label (bank: 0.05)")
    parser.add_argument(
        "--dispute-delay", help="a fraud nobody confirmed -> the cardholder's dispute, at the earliest (bank: 1d)"
    )
    parser.add_argument(
        "--dispute-spread", help="disputes come uniformly within this after --dispute-delay (bank: 29d)"
    )
    parser.add_argument("--dispute-share", type=float, help="the share of frauds their cardholder disputes (bank: 0.9)")
    parser.add_argument("--step", default="2h", help="event time replayed between two label deliveries (default 2h)")
    parser.add_argument(
        "--label-delay",
        help="the model's label delay (default: the review delay rounded up to whole hours, at least 1h)",
    )
    parser.add_argument(
        "--reissue-cards",
        action="store_true",
        help="a confirmed fraud blocks its card and the "
        "bank reissues it: the cardholder's later payments come from a new card id with no history, "
        "and the stolen card's frauds are declined (default: the card's later payments go on and are "
        "left out of the figures)",
    )
    parser.add_argument(
        "--retrain-every",
        default="7d",
        help="the scheduled retraining inside the replay: `fraud "
        "train --latest` on the labels the loop produced by then, promoted only if better, every so "
        "much replayed time (default 7d, the Airflow DAG's weekly run; `off` for none)",
    )
    parser.add_argument("--seed", type=int, default=0, help="the simulation's seed (default 0)")
    parser.add_argument(
        "--seeds",
        help="replay once a seed, e.g. 1-5 or 1,3,7 (instead of --seed): each seed's "
        "report is saved as NAME_seedN.json, and NAME.json holds their spread (`seeds`)",
    )
    parser.add_argument(
        "--reuse-seeds",
        action="store_true",
        help="with --seeds: a seed whose NAME_seedN.json holds "
        "a replay of this same command is read instead of replayed (its `run` says the commit it ran "
        "on), so that a long list of seeds can be replayed over several sittings",
    )
    parser.add_argument(
        "--input",
        help="replay the bank's raw files instead of simulating: a file or a folder of "
        "them, as `fraud clean` reads them; their last --replay-days days are replayed, the days "
        "before are the history (at least 21), labels from their tx_fraud (--cards, --terminals, "
        "--history-days and --seed are the simulation's and then unused)",
    )
    parser.add_argument("--name", default="backtest", help="result name under benchmarks/results/ (default backtest)")
    parser.add_argument("--no-save", action="store_true", help="print the report only")
    parser.add_argument("--work", help="the folder of the run's broker, tables and model (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep --work afterwards")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_common_options(parser)


@dataclasses.dataclass(frozen=True)
class Loop:
    """The feedback loop's delays, reviews and disputes."""

    review: dt.timedelta
    dispute: dt.timedelta
    step: dt.timedelta
    label_delay_hours: int
    retrain_every: dt.timedelta | None = None  # None: no retraining inside the replay
    reviews: Reviews = Reviews()
    disputes: Disputes = Disputes()
    seed: int = 0  # the draws of the reviews' errors and of the disputes


def review_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The review and dispute options of `args`: each as given, or its --reviews preset's value."""
    preset = REVIEW_PRESETS[args.reviews]
    return {key: preset[key] if getattr(args, key) is None else getattr(args, key) for key in preset}


def parse_capacity(text: str | int | None) -> int | None:
    """`--review-capacity`: a whole number of reviews a day, or none."""
    if text is None or str(text).strip().lower() == "none":
        return None
    try:
        return int(text)
    except ValueError:
        raise FraudError(
            f"--review-capacity: expected a whole number of reviews a day or none, found {text!r}"
        ) from None


def loop_from_args(args: argparse.Namespace) -> Loop:
    settings = review_settings(args)
    review = parse_duration(settings["review_delay"], "--review-delay")
    dispute = parse_duration(settings["dispute_delay"], "--dispute-delay")
    step = parse_duration(args.step, "--step")
    if step <= dt.timedelta(0) or dt.timedelta(days=1) % step:
        raise FraudError(f"--step: expected a positive duration that divides a day, found {args.step!r}")
    if args.label_delay is not None:
        hours = int(
            parse_duration(
                args.label_delay if args.label_delay[-1:] in "mhd" else f"{args.label_delay}h", "--label-delay"
            ).total_seconds()
            // 3600
        )
    else:
        hours = max(1, math.ceil(review.total_seconds() / 3600))
    retrain = None
    if str(args.retrain_every).strip().lower() != "off":
        retrain = parse_duration(args.retrain_every, "--retrain-every")
        if retrain < step or retrain % step:
            raise FraudError(
                f"--retrain-every: expected `off` or a whole number of --step ({args.step}), "
                f"found {args.retrain_every!r}"
            )
    for option, value in (
        ("--cards", args.cards),
        ("--terminals", args.terminals),
        ("--replay-days", args.replay_days),
    ):
        if value < 1:
            raise FraudError(f"{option}: expected 1 or more, found {value}")
    if args.history_days < 21:
        raise FraudError(
            f"--history-days: expected at least 21 (training, validation, a gap and test days), "
            f"found {args.history_days}"
        )
    reviews = Reviews(
        review,
        parse_capacity(settings["review_capacity"]),
        parse_hours(settings["review_hours"]),
        settings["review_wrong"],
        settings["review_unanswered"],
        settings["review_order"],
    )
    disputes = Disputes(
        dispute, parse_duration(settings["dispute_spread"], "--dispute-spread"), settings["dispute_share"]
    )
    return Loop(review, dispute, step, hours, retrain, reviews, disputes, args.seed)


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


def execute(args: argparse.Namespace) -> int:
    if args.seeds is None:
        report = replay_once(args)
    else:
        seeds = parse_seeds(args.seeds)
        if args.input is not None:
            raise FraudError("--seeds: the bank's raw files (--input) are one draw; expected --seeds without --input")
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
            if args.reuse_seeds and kept.exists() and json.loads(kept.read_text()).get("command") == command(one):
                print(f"fraud backtest: seed {seed} read from {kept} (--reuse-seeds)", file=sys.stderr)
                reports[seed] = json.loads(kept.read_text())
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


def parse_seeds(text: str) -> list[int]:
    """`--seeds`: "1-5" -> [1, 2, 3, 4, 5]; "1,3,7" -> [1, 3, 7]."""
    try:
        if "-" in text and "," not in text:
            first, last = (int(part) for part in text.split("-"))
            seeds = list(range(first, last + 1))
        else:
            seeds = [int(part) for part in text.split(",")]
    except ValueError:
        raise FraudError(
            f"--seeds: expected FIRST-LAST or a comma-separated list of whole numbers, found {text!r}"
        ) from None
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise FraudError(f"--seeds: expected distinct seeds of 0 or more, found {text!r}")
    return seeds


def spread(reports: dict[int, dict[str, Any]], name: str) -> dict[str, Any]:
    """The figures of several seeds' reports: each seed's overall, settled and weekly recall and FPR; per
    week the median and the worst recall, the highest FPR and how many seeds met the requirement; and how
    many seeds met it in every week."""

    def brief(figures: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if figures is None else {k: figures[k] for k in ("recall", "fpr", "meets_requirement")}

    seeds = {
        str(seed): {
            "overall": brief(r["overall"]),
            "settled_weeks": brief(r["settled_weeks"]),
            "weeks": {w: brief(f) for w, f in r["weeks"].items()},
            "new_compromises": r["what_the_loop_knew"]["first_confirmation_hours"].get("terminals"),
            "file": f"{name}_seed{seed}.json",
            "run": r.get("run"),
        }
        for seed, r in reports.items()
    }
    weeks = sorted({w for r in reports.values() for w in r["weeks"]}, key=lambda w: int(w.split("_")[1]))
    by_week = {}
    for week in weeks:
        found = [r["weeks"][week] for r in reports.values() if week in r["weeks"]]
        recalls = [f["recall"] for f in found if f["recall"] is not None]
        by_week[week] = {
            "seeds": len(found),
            "median_recall": round(float(np.median(recalls)), 4) if recalls else None,
            "worst_recall": min(recalls) if recalls else None,
            "highest_fpr": max(f["fpr"] for f in found if f["fpr"] is not None),
            "seeds_meeting": sum(bool(f["meets_requirement"]) for f in found),
        }
    every_week = sum(all(f["meets_requirement"] for f in r["weeks"].values()) for r in reports.values())
    return {"seeds": seeds, "weeks": by_week, "seeds_meeting_it_every_week": every_week, "of_seeds": len(reports)}


class CardIssuer:
    """The bank's answer to a confirmed fraud with `--reissue-cards`: the card is blocked and the cardholder
    gets a new one. From the first step that starts after the block, the cardholder's payments carry the new
    card's id (no history in the stream's state: scored as a new card). A stolen card's frauds (the
    simulation's scenario 3, a compromised card) are declined once that card is blocked: neither sent nor
    scored. A theft is the card its holder held at the compromise's first fraud (a compromise lasts
    CARD_FRAUD_DAYS from it): one that begins after a reissue has stolen the new card, whose frauds are
    sent, with its id, until it is blocked in turn. Without reissue every id stays the simulation's."""

    def __init__(self, enabled: bool, first_new_id: int, prior: pd.Series, history_frauds: Iterable[str] = ()) -> None:
        self.enabled = enabled
        self.next_id = first_new_id
        self.card: dict[int, int] = {}  # cardholder (the simulation's customer id) -> the card id now
        self.holder: dict[int, int] = {}  # a reissued card id -> its cardholder
        # blocks not applied yet: (when, card id); the history's frauds block their cards too
        self.blocks: list[tuple[dt.datetime, int]] = (
            sorted((when.to_pydatetime(), int(card)) for card, when in prior.items()) if enabled else []
        )
        self.reissued = 0
        self.declined: list[int] = []
        # cardholder -> (the first fraud of its card's latest compromise, the card stolen then); the history's
        # compromises stole the cardholder's first card
        self.thefts: dict[int, tuple[dt.datetime, int]] = {}
        for line in history_frauds:
            fields = line.split(",")
            if len(fields) == 9 and fields[8].strip() == "3":
                self._theft(int(fields[2]), _time_of(line), int(fields[2]))

    def block(self, card: int, when: dt.datetime) -> None:
        if self.enabled:
            self.blocks.append((when, card))

    def apply(self, now: dt.datetime) -> None:
        """Reissue every card blocked by `now` that is still its holder's card."""
        due = sorted(b for b in self.blocks if b[0] <= now)
        self.blocks = [b for b in self.blocks if b[0] > now]
        for _, card in due:
            holder = self.holder.get(card, card)
            if self.card.get(holder, holder) == card:
                self.card[holder], self.holder[self.next_id] = self.next_id, holder
                self.next_id += 1
                self.reissued += 1

    def payment(self, line: str) -> str | None:
        """The raw line as the bank sees it now: with its holder's card id, or None if it is declined (a line the
        backtest cannot read goes as it is). Lines come in time order."""
        if not readable(line):
            return line
        fields = line.split(",")
        holder = int(fields[2])
        card = self.card.get(holder, holder)
        if fields[7] == "1" and fields[8].strip() == "3" and self._theft(holder, _time_of(line), card) != card:
            self.declined.append(int(fields[0]))  # the stolen card, blocked since: declined
            return None
        if card == holder:
            return line
        fields[2] = str(card)
        return ",".join(fields)

    def _theft(self, holder: int, when: dt.datetime, card: int) -> int:
        """The card a compromised-card fraud of `holder` at `when` was made with: the one stolen at its
        compromise's first fraud (`card`, the holder's card now, when this fraud begins a compromise)."""
        first, stolen = self.thefts.get(holder, (None, card))
        if first is None or when - first >= dt.timedelta(days=CARD_FRAUD_DAYS):
            self.thefts[holder] = (when, card)
            return card
        return stolen


class Retrainer:
    """The weekly retraining of the Airflow DAG (`fraud train --latest`) inside the replay.

    Every `--retrain-every` of replayed time, the bank's data as it stands then: the history, and the
    transactions replayed so far as the bank saw them (reissued card ids, no declined payments) with the
    labels the loop produced by then: a fraud is 1 once its review or dispute was due, every other payment 0
    (a fraud nobody has confirmed yet counts as genuine, as it does for the bank). They are cleaned into a
    lake of its own (a copy of the history's cleaned and featured tables: the stream's tables and the
    offline comparison stay untouched) and trained with the start's split, moved so that its test days end
    with the newest day. The version is registered in the run's registry and becomes `champion` only if it
    beats the champion on those test days (labelled by the loop too); the running stream switches to it at
    its next micro-batch."""

    def __init__(self, spark: Any, cfg: Config, work: Path, loop: Loop, shape: Split) -> None:
        self.spark, self.cfg, self.loop, self.shape = spark, cfg, loop, shape
        self.folder = work / "retraining"
        self.runs: list[dict[str, Any]] = []

    def keep_history(self) -> None:
        """Copy the history's tables, as cleaned and featured before the replay: each retraining starts there."""
        shutil.copytree(Path(self.cfg.path("paths.lake")), self.folder / "history_lake")

    def due(self, elapsed: dt.timedelta) -> bool:
        every = self.loop.retrain_every
        return every is not None and elapsed > dt.timedelta(0) and elapsed % every == dt.timedelta(0)

    def __call__(self, now: dt.datetime, sent_lines: Sequence[str], confirmed: dict[int, dt.datetime]) -> None:
        started = time.monotonic()
        folder = self.folder / now.strftime("%Y-%m-%dT%H%M")
        shutil.copytree(self.folder / "history_lake", folder / "lake")
        raw = folder / "raw" / f"{now.date().isoformat()}.txt"
        raw.parent.mkdir(parents=True)
        frauds = known = 0
        with raw.open("w") as out:
            out.write(RAW_HEADER)
            for line in filter(readable, sent_lines):
                if _time_of(line) >= now:
                    continue
                fields = line.rstrip("\n").split(",")
                frauds += fields[7] == "1"
                if int(fields[0]) in confirmed:
                    known += 1
                else:
                    fields[7:9] = ["0", "0"]
                out.write(",".join(fields) + "\n")
        cfg = dataclasses.replace(
            self.cfg, data={**self.cfg.data, "paths": {**self.cfg.data["paths"], "lake": str(folder / "lake")}}
        )
        clean.run(self.spark, cfg, str(raw))
        trained = train.run(self.spark, cfg, self.shape, self.loop.label_delay_hours, latest=True)
        self.runs.append(
            {
                "at": now.isoformat(sep=" "),
                "version": trained["registry"]["version"],
                "alias": trained["registry"]["alias"],
                "reason": trained["registry"]["reason"],
                "split": trained["split"],
                "threshold": trained["threshold"],
                "replayed_frauds_known": known,
                "replayed_frauds": frauds,
                "test_on_loop_labels": {
                    k: trained["test"][k] for k in ("recall", "fpr", "precision", "average_precision")
                },
                "seconds": round(time.monotonic() - started, 1),
            }
        )
        print(
            f"backtest: retrained at {now}: version {trained['registry']['version']} -> "
            f"{trained['registry']['alias']} ({trained['registry']['reason']})",
            file=sys.stderr,
            flush=True,
        )


def _time_of(line: str) -> dt.datetime:
    return dt.datetime.strptime(line.split(",", 2)[1], "%Y-%m-%d %H:%M:%S")


def blocked_before(history: Iterable[str], review: dt.timedelta) -> pd.Series:
    """The cards the history's frauds blocked, and when: each card's first fraud was confirmed a review delay
    after it (raw lines, in time order)."""
    first: dict[int, dt.datetime] = {}
    for line in history:
        fields = line.split(",", 8)
        if fields[7] == "1":
            first.setdefault(int(fields[2]), _time_of(line))
    return pd.Series({card: when + review for card, when in first.items()}, dtype="datetime64[ns]")


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


def readable(line: str) -> bool:
    """Whether the backtest can place a raw line in time and judge it: nine fields, integer ids, a time, labels
    0/1 and 0..3. Others (the bank's defects) are still sent where they stand in the files: the stream makes
    them dead letters, as `fraud clean` quarantines them in the history."""
    fields = line.rstrip("\n").split(",")
    if len(fields) != 9 or fields[7] not in ("0", "1") or fields[8] not in ("0", "1", "2", "3"):
        return False
    try:
        int(fields[0]), int(fields[2]), int(fields[3]), _time_of(line)
    except ValueError:
        return False
    return True


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
                when = _time_of(line)
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
        "seed": args.seed,
    }
    return days


def raw_days(args: argparse.Namespace, work: Path) -> Days:
    """The bank's raw files (`--input`, as `fraud clean` reads them): their last `--replay-days` days are
    replayed, the days before are the history. Labels come from the files' `tx_fraud`."""
    source = Path(args.input)
    if not source.exists():
        raise FraudError(f"--input: expected a raw file or a folder of them, found nothing at {source}")
    newest = max((_time_of(line) for line in raw_lines(source) if readable(line)), default=None)
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


class Stopwatch:
    """Seconds by stage of the set-up, for the report."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.clock = time.monotonic()

    def lap(self, stage: str) -> None:
        now = time.monotonic()
        self.seconds[stage] = round(now - self.clock, 1)
        self.clock = now


def run(cfg: Config, args: argparse.Namespace, loop: Loop, work: Path) -> dict[str, Any]:
    """The backtest (see the module's doc): the days, a broker, the history cleaned and trained on, the replay
    through the stream, the figures."""
    watch = Stopwatch()
    days = simulated_days(args, work) if args.input is None else raw_days(args, work)
    prior = blocked_before(days.history_frauds, loop.review)
    judged_frame = replay_frame(days.replay)
    truth = dict(zip(judged_frame["transaction_id"], judged_frame["fraud"].astype(int)))
    watch.lap("simulate")
    broker = kafka_broker.spec_from_config(cfg)
    kafka_broker.start(broker)
    watch.lap("broker")
    try:
        spark = get_spark(cfg, "backtest")
        spark.sparkContext.setLogLevel("ERROR")
        cleaning = clean.run(spark, cfg, str(days.history_file))
        watch.lap("clean")
        # the test week ends with the history; seven days between training and test
        split = Split(days.history_start, train_days=7, delay_days=7, test_days=7, val_days=2)
        trained = train.run(spark, cfg, split, loop.label_delay_hours, latest=True)
        retrainer = Retrainer(spark, cfg, work, loop, split)
        if loop.retrain_every is not None and loop.retrain_every < dt.timedelta(days=args.replay_days):
            retrainer.keep_history()
        watch.lap("train")
        issuer = CardIssuer(args.reissue_cards, days.highest_card + 1, prior, days.history_frauds)
        replayed, confirmed, sent_lines = through_the_stream(
            spark, cfg, days, truth, loop, issuer, retrainer, not args.no_progress
        )
        watch.lap("replay")
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
        watch.lap("measure_and_offline")
    finally:
        kafka_broker.stop(broker)
    replay_end = days.replay_start.date() + dt.timedelta(days=args.replay_days - 1)
    settings = review_settings(args)
    return {
        "benchmark": "backtest",
        "machine": "2 cores, local[2]",
        "command": command(args),
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
            "setup_seconds": watch.seconds,
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
        score_stream.stop_query(spark, query)
    value = metrics.registry.get_sample_value
    replayed["stream_batches"] = int(value("fraud_batch_duration_seconds_count") or 0)
    replayed["stream_seconds_by_stage"] = {
        stage: round(value("fraud_batch_stage_seconds_total", {"stage": stage}) or 0.0, 1)
        for stage in ("state", "score", "alerts_topic", "explanations", "tables", "labels", "dead_letters")
    }
    return replayed, confirmed, sent_lines


def command(args: argparse.Namespace) -> str:
    """The command line that makes the report again."""
    source = (
        f"--input {args.input}"
        if args.input is not None
        else f"--cards {args.cards} --terminals {args.terminals} --radius {args.radius:g} --terminals-compromised-per-day "
        f"{args.terminals_compromised_per_day:g} --history-days {args.history_days} --seed {args.seed}"
    )
    return (
        f"fraud backtest {source} --replay-days {args.replay_days} --step {args.step} "
        f"--retrain-every {args.retrain_every}"
        + (" --reissue-cards" if args.reissue_cards else "")
        + review_options(args)
        + "".join(f" --set {o}" for o in args.overrides)
    )


# The review and dispute defaults: `bank`, the loop as a bank has it (docs/backtest.md, "Reviews and disputes",
# says where each value comes from), and `oracle`, every review the truth at once and every dispute at one delay.
REVIEW_PRESETS: dict[str, dict[str, Any]] = {
    "bank": {
        "review_delay": "1h",
        "review_capacity": "none",
        "review_hours": "8-20",
        "review_order": "riskiest",
        "review_wrong": 0.01,
        "review_unanswered": 0.05,
        "dispute_delay": "1d",
        "dispute_spread": "29d",
        "dispute_share": 0.9,
    },
    "oracle": {
        "review_delay": "1h",
        "review_capacity": "none",
        "review_hours": "all",
        "review_order": "oldest",
        "review_wrong": 0.0,
        "review_unanswered": 0.0,
        "dispute_delay": "7d",
        "dispute_spread": "0d",
        "dispute_share": 1.0,
    },
}


def review_options(args: argparse.Namespace) -> str:
    """`--reviews` and every review and dispute option `args` gave, as given: the same loop whatever the defaults."""
    given = {key: getattr(args, key) for key in REVIEW_PRESETS["bank"] if getattr(args, key) is not None}
    return f" --reviews {args.reviews}" + "".join(
        f" --{key.replace('_', '-')} {value:g}" if isinstance(value, float) else f" --{key.replace('_', '-')} {value}"
        for key, value in given.items()
    )


class Channels:
    """The replay's Kafka clients: one producer for the transactions and the labels, whose messages of a step
    leave together at `flush` (a long linger), so that the stream reads a step in one micro-batch; and the
    fraud team's consumer of the alerts topic."""

    def __init__(self, cfg: Config) -> None:
        from kafka import KafkaConsumer, KafkaProducer, TopicPartition

        conn = logged_in(cfg)
        self.topics = {role: str(cfg.get(f"kafka.topics.{role}")) for role in ("transactions", "labels", "alerts")}
        # a batch under the broker's 1 MB limit; a step larger than that leaves in several
        self.producer = KafkaProducer(
            **conn.python(), acks="all", linger_ms=60_000, batch_size=768 * 1024, max_request_size=32 * 2**20
        )
        self.consumer = KafkaConsumer(**conn.python(), enable_auto_commit=False)
        topic = self.topics["alerts"]
        self.parts = [TopicPartition(topic, p) for p in sorted(self.consumer.partitions_for_topic(topic) or [])]
        if not self.parts:
            raise FraudError(f"backtest: the alerts topic {topic!r} has no partitions")
        self.consumer.assign(self.parts)
        self.consumer.seek_to_beginning(*self.parts)

    def send_transactions(self, lines: Sequence[str]) -> int:
        for line in without_labels(iter(lines)):
            key, value = transaction_record(line)
            self.producer.send(self.topics["transactions"], key=key, value=value)
        self.producer.flush()
        return len(lines)

    def send_labels(self, labels: Sequence[tuple[int, int, int, int, str]]) -> int:
        """Labels with their transaction's place, sent with the next `send_transactions` (one flush)."""
        for label in labels:
            key, value = label_record(*label)
            self.producer.send(self.topics["labels"], key=key, value=value)
        return len(labels)

    def new_alerts(self) -> list[tuple[int, float]]:
        """The alerts published since the last call (the topic's end now): transaction id and score, each once
        (the stream sends an alert before its micro-batch commits, then the same alert with its explanation,
        perhaps after)."""
        end = self.consumer.end_offsets(self.parts)
        out: dict[int, float] = {}
        while any(self.consumer.position(p) < end[p] for p in self.parts):
            for records in self.consumer.poll(timeout_ms=2000).values():
                for alert in (json.loads(r.value) for r in records):
                    out.setdefault(int(alert["transaction_id"]), float(alert["score"]))
        return list(out.items())

    def close(self) -> None:
        self.producer.close()
        self.consumer.close()


def steps_of(replay: Sequence[str], start: dt.datetime, step: dt.timedelta) -> tuple[list[list[str]], dt.datetime]:
    """The replayed lines by step from `start` (a line the backtest cannot read goes with the line before it),
    and the end of the last whole day."""
    last = max(_time_of(line) for line in replay if readable(line))
    end = start + dt.timedelta(days=math.ceil((last - start + dt.timedelta(seconds=1)) / dt.timedelta(days=1)))
    by_step: list[list[str]] = [[] for _ in range(int((end - start) / step))]
    k = 0
    for line in replay:
        k = int((_time_of(line) - start) / step) if readable(line) else k
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
        {int(line.split(",", 1)[0]): _time_of(line) for line in replay if readable(line)},
        np.random.default_rng([loop.seed, 45]),
    )
    by_step, end = steps_of(replay, start, loop.step)
    tx_place: dict[int, tuple[int, int, str]] = {}  # a label names its transaction's card, terminal and time
    sent_lines: list[str] = []
    sent = labels_sent = 0
    started = time.monotonic()
    phases = dict.fromkeys(("stream", "alerts", "retraining"), 0.0)
    bar = tqdm(total=len(by_step), desc="backtest", unit="step", disable=not progress)
    counted = ("fraud_labels", "fraud_transactions_scored", "fraud_dead_letters")  # a step is done when they add up
    for k, lines in enumerate(by_step):
        step_start, clock = start + k * loop.step, time.monotonic()
        # 1. the labels due by the step's start and the step's transactions, in one micro-batch: the labels
        #    recorded and in the state, the transactions scored
        due = feedback.due(step_start)
        for when, t, label in due:
            if label == 1:
                issuer.block(tx_place[t][0], when)
        issuer.apply(step_start)
        if retrainer.due(step_start - start):  # before the step: its micro-batch scores with the champion then
            retrainer(step_start, sent_lines, feedback.confirmed)
            clock = _add(phases, "retraining", clock)
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
        clock = _add(phases, "stream", clock)
        # 2. the fraud team reads the new alerts; the frauds that raised none will be disputed
        feedback.read(channels.new_alerts(), lines)
        _add(phases, "alerts", clock)
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
            "wall_seconds_by_phase": {phase: round(seconds, 1) for phase, seconds in phases.items()},
        },
        feedback.confirmed,
        sent_lines,
    )


def _add(phases: dict[str, float], phase: str, then: float) -> float:
    now = time.monotonic()
    phases[phase] += now - then
    return now


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


def rates(frame: pd.DataFrame) -> dict[str, Any]:
    """The requirement's figures (models/metrics.requirement) of the `decision` column against `fraud`, the
    ratios to 4 decimals."""
    counted = requirement(frame["fraud"], frame["decision"])
    return {k: round(v, 4) if k in ("recall", "fpr", "precision") and v is not None else v for k, v in counted.items()}


def replay_frame(replay: Sequence[str]) -> pd.DataFrame:
    """The replayed transactions: transaction_id, customer_id, terminal_id, tx_datetime and the truth, fraud and
    scenario; the lines the backtest cannot read and the second copy of a transaction id are left out."""
    first: dict[str, list[str]] = {}
    for line in filter(readable, replay):
        split = line.rstrip("\n").split(",")
        first.setdefault(split[0], split)
    fields = list(first.values())
    return pd.DataFrame(
        {
            "transaction_id": np.array([int(f[0]) for f in fields], dtype="int64"),
            "customer_id": np.array([int(f[2]) for f in fields], dtype="int64"),
            "terminal_id": np.array([int(f[3]) for f in fields], dtype="int64"),
            "tx_datetime": pd.to_datetime([f[1] for f in fields]),
            "fraud": np.array([f[7] == "1" for f in fields]),
            "scenario": np.array([int(f[8]) for f in fields], dtype="int64"),
        }
    )


def blocked(frame: pd.DataFrame, known: dict[int, dt.datetime], prior: pd.Series) -> pd.Series:
    """Whether each transaction's card was blocked before it (models/blocking.py): the bank has blocked that
    card, so the transaction would not happen. `known`: a replayed fraud -> its confirmation, in event time;
    `prior`: a card -> the confirmation of its first fraud before the replay."""
    confirmed = frame[["transaction_id", "customer_id"]].merge(
        pd.DataFrame({"transaction_id": list(known), "known_at": pd.to_datetime(list(known.values()))}),
        on="transaction_id",
    )
    since = blocked_since(
        np.concatenate([confirmed["customer_id"].to_numpy(), prior.index.to_numpy()]),
        np.concatenate([confirmed["known_at"].to_numpy(), pd.to_datetime(prior).to_numpy()]),
    )
    return pd.Series(after_block(frame["customer_id"], frame["tx_datetime"], since), index=frame.index)


def by_scenario(frame: pd.DataFrame) -> dict[str, dict[str, int]]:
    """The frauds of `frame` and those missed, by the simulation's scenario: 1 a large amount, 2 a compromised
    terminal, 3 a compromised card."""
    frauds = frame[frame["fraud"]]
    missed = frauds[~frauds["decision"]]
    return {
        f"scenario_{k}": {"frauds": int(n), "missed": int((missed["scenario"] == k).sum())}
        for k, n in frauds["scenario"].value_counts().sort_index().items()
    }


def judged(frame: pd.DataFrame, known: dict[int, dt.datetime], prior: pd.Series) -> dict[str, Any]:
    """Overall, per-day and per-week rates of `frame` (`decision`, `fraud`, `tx_datetime`), leaving out the
    transactions of blocked cards; the rates of every transaction too. Weeks count from the first day of
    `frame`; `settled_weeks` is the second week on (None before there is one), after the loop has had a week
    to learn."""
    first = frame["tx_datetime"].min().normalize()
    out = frame.assign(
        blocked=blocked(frame, known, prior).to_numpy(),
        day=frame["tx_datetime"].dt.date.astype(str),
        week=(frame["tx_datetime"] - first).dt.days // 7 + 1,
    )
    kept = out[~out["blocked"]]
    return {
        "overall": rates(kept),
        "days": {day: rates(part) for day, part in kept.groupby("day")},
        "weeks": {f"week_{int(w)}": rates(part) for w, part in kept.groupby("week")},
        "settled_weeks": rates(kept[kept["week"] >= 2]) if (kept["week"] >= 2).any() else None,
        # the simulation's fraud scenarios: 1 large amount, 2 compromised terminal, 3 compromised card
        "frauds_by_scenario": by_scenario(kept),
        "frauds_by_scenario_by_week": {f"week_{int(w)}": by_scenario(part) for w, part in kept.groupby("week")},
        "blocked_card_transactions": int(out["blocked"].sum()),
        "every_transaction": rates(out),
    }


def measure(
    spark: Any,
    cfg: Config,
    frame: pd.DataFrame,
    unreadable: set[int],
    confirmed: dict[int, dt.datetime],
    prior: pd.Series,
    known_compromises: pd.DataFrame,
) -> dict[str, Any]:
    """The stream's figures: its `scores` against the truth (a card is blocked once a fraud of it was
    confirmed in the loop), and the alert latency (Kafka timestamp -> `alerted_at`). `frame`: the replayed
    transactions the backtest can judge; `unreadable`: the ids of the other lines sent (the stream may score
    one whose labels alone are broken; it is left out of the figures)."""
    scores = (
        spark.read.format("delta")
        .load(cfg.table_path("scores"))
        .select(
            "transaction_id",
            "decision",
            "kafka_timestamp",
            "terminal_risk_1d",
            "threshold",
            "alert_reason",
            "model_version",
        )
        .toPandas()
    )
    dead_path = cfg.table_path("dead_letters")
    letters = (
        spark.read.format("delta")
        .load(dead_path)
        .where(F.col("topic") == str(cfg.get("kafka.topics.transactions")))
        .select("payload", "reason")
        .collect()
        if table_exists(spark, dead_path)
        else []
    )
    duplicates = sum(r.reason == DUPLICATE for r in letters)
    dead = {_id_of(r.payload) for r in letters if r.reason != DUPLICATE}
    scored = set(scores["transaction_id"])
    replayed = set(frame["transaction_id"])
    if (
        len(scores) != len(scored)
        or not replayed <= scored | dead
        or scored & dead
        or not scored <= replayed | unreadable
    ):
        raise FraudError(
            f"backtest: {cfg.table_path('scores')} holds {len(scores)} rows of {len(scored)} transactions "
            f"and {dead_path} {len(dead)} more; {len(frame)} were replayed, each expected once in one of them"
        )
    merged = frame.merge(scores, on="transaction_id")
    alerts = (
        spark.read.format("delta").load(cfg.table_path("alerts")).select("transaction_id", "alerted_at").toPandas()
        if table_exists(spark, cfg.table_path("alerts"))
        else pd.DataFrame(columns=["transaction_id", "alerted_at"])
    )
    timed = alerts.merge(merged[["transaction_id", "kafka_timestamp"]], on="transaction_id")
    seconds = (pd.to_datetime(timed["alerted_at"]) - pd.to_datetime(timed["kafka_timestamp"])).dt.total_seconds()
    latency = (
        {f"p{q}_seconds": round(float(np.percentile(seconds, q)), 2) for q in (50, 90, 99)} if len(seconds) else {}
    )
    figures = judged(merged, confirmed, prior)
    # a transaction breaking a cleaning rule (a zero amount) is a dead letter, not scored; `fraud clean`
    # quarantines it the same way
    # the threshold each day's transactions were scored with: the alert budget's (stream.alert_budget), or the
    # model's until the budget's window held enough transactions
    thresholds = merged.groupby(merged["tx_datetime"].dt.date)["threshold"]
    by_day = {
        str(day): {
            "min": round(float(t.min()), 4),
            "median": round(float(t.median()), 4),
            "max": round(float(t.max()), 4),
        }
        for day, t in thresholds
    }
    # the reviews the stream asked for, by reason (its score, or a check of its terminal), blocked cards left
    # out as in the figures; and the frauds each reason caught
    kept = merged[~blocked(merged, confirmed, prior).to_numpy()]
    by_reason = reviews_by_reason(kept)
    first = kept["tx_datetime"].min().normalize()
    by_reason_by_week = {
        f"week_{int(w)}": reviews_by_reason(part)
        for w, part in kept.groupby((kept["tx_datetime"] - first).dt.days // 7 + 1)
    }
    # the model versions that scored each day (a retraining inside the replay moves the champion)
    versions = {
        str(day): {str(v): int(n) for v, n in part.value_counts().sort_index().items()}
        for day, part in merged.groupby(merged["tx_datetime"].dt.date)["model_version"]
    }
    return {
        "overall": figures.pop("overall"),
        "alert_latency": latency,
        "dead_letters": {
            "refused_by_rules": len(dead & replayed),
            "unreadable": len(letters) - duplicates - len(dead & replayed),
            "duplicates": duplicates,
        },
        "unreadable_lines_scored": len(scored & unreadable - replayed),
        **figures,
        "alert_threshold_by_day": by_day,
        "model_versions_by_day": versions,
        "reviews_by_reason": by_reason,
        "reviews_by_reason_by_week": by_reason_by_week,
        "what_the_loop_knew": loop_knowledge(merged, confirmed, prior, known_compromises),
    }


def reviews_by_reason(frame: pd.DataFrame) -> dict[str, dict[str, float]]:
    """The reviews the stream asked for a day, by reason (its score, or a check of its terminal), and the frauds
    each reason caught."""
    days = max(1, frame["tx_datetime"].dt.date.nunique())
    return {
        str(r): {"reviews_a_day": round(len(part) / days, 1), "frauds": int(part["fraud"].sum())}
        for r, part in frame[frame["decision"]].groupby("alert_reason")
    }


def _id_of(payload: str) -> int | None:
    """The transaction id of a dead letter's message, if it has one."""
    try:
        return int(json.loads(payload)["transaction_id"])
    except (ValueError, KeyError, TypeError):
        return None


COMPROMISE_DAYS = 28  # how long the simulation keeps a terminal compromised (SIMULATOR.md)


def loop_knowledge(
    frame: pd.DataFrame, confirmed: dict[int, dt.datetime], prior: pd.Series, history: pd.DataFrame
) -> dict[str, Any]:
    """What the loop knew of a terminal when it missed a fraud there, per week (blocked cards left out).

    A missed compromised-terminal fraud (scenario 2) is `unknown` when no fraud of that compromise (the
    terminal's scenario-2 frauds of the COMPROMISE_DAYS before it: the history's, which the stream's state
    starts with, and the replay's whose label was due) was known yet, `confirmed_low_risk` when one was but
    the terminal's 1-day risk feature was still below 0.5 when it was scored, `confirmed_high_risk`
    otherwise. `first_confirmation_hours`: for each terminal compromised during the replay (no such fraud at
    it in the COMPROMISE_DAYS before the replay), the hours from its first fraud to the first label of its
    frauds (median, p90), and how many had none by the end. `history`: the history's scenario-2 frauds
    (`terminal_id`, `tx_datetime`)."""
    first = frame["tx_datetime"].min().normalize()
    kept = frame[~blocked(frame, confirmed, prior).to_numpy()].assign(
        week=(frame["tx_datetime"] - first).dt.days // 7 + 1
    )
    in_replay = frame[frame["fraud"] & (frame["scenario"] == 2)].assign(
        due=lambda f: pd.to_datetime(f["transaction_id"].map(confirmed))
    )
    at_terminals = pd.concat([history[["terminal_id", "tx_datetime"]].assign(due=first), in_replay], ignore_index=True)
    window = pd.Timedelta(days=COMPROMISE_DAYS)

    def knew(row: Any) -> str:
        same = at_terminals[
            (at_terminals["terminal_id"] == row.terminal_id)
            & (at_terminals["tx_datetime"] >= row.tx_datetime - window)
            & (at_terminals["tx_datetime"] <= row.tx_datetime)
        ]
        if not (same["due"] <= row.tx_datetime).any():
            return "unknown"
        return "confirmed_low_risk" if row.terminal_risk_1d < 0.5 else "confirmed_high_risk"

    missed = kept[kept["fraud"] & ~kept["decision"] & (kept["scenario"] == 2)]
    kinds = pd.Series([knew(r) for r in missed.itertuples()], index=missed.index, dtype="object")
    weeks = {
        f"week_{int(w)}": {
            k: int((kinds[part.index] == k).sum()) for k in ("unknown", "confirmed_low_risk", "confirmed_high_risk")
        }
        for w, part in missed.groupby("week")
    }
    per_terminal = in_replay.groupby("terminal_id").agg(first_fraud=("tx_datetime", "min"), first_due=("due", "min"))
    recent = history[history["tx_datetime"] >= first - window]
    per_terminal = per_terminal[~per_terminal.index.isin(recent["terminal_id"])]  # compromised before the replay
    days = max(1, (frame["tx_datetime"].max().normalize() - first).days + 1)
    compromised_in = (per_terminal["first_fraud"] - first).dt.days // 7 + 1
    week = (frame["tx_datetime"] - first).dt.days // 7 + 1
    days_by_week = frame["tx_datetime"].dt.date.groupby(week).nunique()
    return {
        "missed_compromised_terminal_frauds_by_week": weeks,
        "first_confirmation_hours": first_confirmation(per_terminal),
        # by the week of the compromise's first fraud
        "first_confirmation_hours_by_week": {
            f"week_{int(w)}": first_confirmation(part) for w, part in per_terminal.groupby(compromised_in)
        },
        "alerts_a_day": round(float(frame["decision"].sum()) / days, 1),
        "alerts_a_day_by_week": {
            f"week_{int(w)}": round(float(n) / days_by_week[w], 1)
            for w, n in frame["decision"].groupby(week).sum().items()
        },
    }


def first_confirmation(per_terminal: pd.DataFrame) -> dict[str, Any]:
    """Of terminals compromised during the replay (`first_fraud`, `first_due`: the first label of their frauds,
    NaT if none), how many, how many never confirmed, and the hours to the first label (median, p90)."""
    hours = ((per_terminal["first_due"] - per_terminal["first_fraud"]).dt.total_seconds() / 3600).dropna()
    return {
        "terminals": len(per_terminal),
        "never_confirmed": int(per_terminal["first_due"].isna().sum()),
        **({"p50": round(float(hours.median()), 1), "p90": round(float(hours.quantile(0.9)), 1)} if len(hours) else {}),
    }


def offline_comparison(
    spark: Any,
    cfg: Config,
    replay_file: str,
    trained: dict[str, Any],
    frame: pd.DataFrame,
    loop: Loop,
    review: str,
    prior: pd.Series,
) -> dict[str, Any]:
    """The same days scored the batch way, as `fraud train` tests: features from every label `label_delay_hours`
    after its transaction, each fraud confirmed `--review-delay` after it; the same model and threshold."""
    booster, _, version = registry.load(cfg, str(trained["registry"]["version"]))
    clean.run(spark, cfg, replay_file)
    build_features.run(spark, cfg, loop.label_delay_hours)
    features = build_features.read_features(spark, cfg, loop.label_delay_hours)
    assert features is not None
    first, last = frame["tx_datetime"].min().date(), frame["tx_datetime"].max().date()
    window: pd.DataFrame = (
        features.where((F.col("tx_date") >= F.lit(first)) & (F.col("tx_date") <= F.lit(last)))
        .select("transaction_id", *FEATURE_NAMES)
        .toPandas()
    )
    window["score"] = catboost_model.score(booster, window[FEATURE_NAMES])
    merged = frame.merge(window[["transaction_id", "score"]], on="transaction_id")
    merged["decision"] = merged["score"] >= float(trained["threshold"])
    known = {
        int(t): when + loop.review
        for t, when in zip(merged.loc[merged["fraud"], "transaction_id"], merged.loc[merged["fraud"], "tx_datetime"])
    }
    return {
        "what": f"every label known {loop.label_delay_hours} h after its transaction (the model's label delay), "
        f"every fraud confirmed {review} after it, model version {version}",
        "scored": len(merged),
        **judged(merged, known, prior),
    }


def chart(report: dict[str, Any], path: Path) -> None:
    """Daily recall and FPR against the requirement's lines, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    days = report["days"]
    x = [dt.date.fromisoformat(d) for d in days]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    offline = report.get("offline_same_days", {}).get("days", {})
    top.plot(x, [days[d]["recall"] for d in days], marker="o", label="recall, the stream in the loop")
    if offline:
        top.plot(
            x,
            [offline.get(d, {}).get("recall") for d in days],
            color="gray",
            linestyle=":",
            marker=".",
            label="recall, offline (every label after the model's label delay)",
        )
    top.axhline(REQUIRED_RECALL, color="red", linestyle="--", label=f"required: above {REQUIRED_RECALL:.0%}")
    top.set_ylabel("recall")
    recalls = [
        r for r in [days[d]["recall"] for d in days] + [o.get("recall") for o in offline.values()] if r is not None
    ]
    top.set_ylim(min([0.95] + recalls) - 0.01, 1.002)
    top.legend(loc="lower right")
    bottom.plot(
        x, [days[d]["fpr"] for d in days], marker="o", color="tab:orange", label="false-positive rate, the stream"
    )
    if offline:
        bottom.plot(
            x,
            [offline.get(d, {}).get("fpr") for d in days],
            color="gray",
            linestyle=":",
            marker=".",
            label="false-positive rate, offline",
        )
    bottom.axhline(MAX_FPR, color="red", linestyle="--", label=f"allowed: at most {MAX_FPR:.0%}")
    bottom.set_ylabel("FPR")
    fprs = [f for f in [days[d]["fpr"] for d in days] + [o.get("fpr") for o in offline.values()] if f is not None]
    bottom.set_ylim(0, max([MAX_FPR * 1.5] + fprs) * 1.1)
    bottom.legend(loc="upper right")
    loop = report["loop"]
    overall = report["overall"]
    fig.suptitle(
        f"fraud stream in the loop: review {loop['review_delay']}, dispute {loop['dispute_delay']}, "
        f"cards blocked once a fraud is confirmed\noverall recall {overall['recall']}, FPR {overall['fpr']}, "
        f"precision {overall['precision']}",
        fontsize=10,
    )
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


main = job_main("fraud backtest", __doc__, add_arguments, execute)
