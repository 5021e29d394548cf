"""The options of `fraud backtest` (jobs/replay/backtest.py): the parser, the loop they describe (`Loop`), the
review and dispute settings, the seeds, and the command line a results file records."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import math
import re
from typing import Any

from jobs.core.common import add_common_options
from jobs.core.errors import FraudError
from jobs.replay.reviews import Disputes, Reviews, parse_hours

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
        "--compromise-days",
        type=int,
        help="how long a compromised terminal's payments are fraud (default: the simulator's 28 days)",
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
    if args.input is not None and args.compromise_days is not None:
        raise FraudError(
            "--compromise-days: the bank's raw files (--input) have their own; expected it without --input"
        )
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


def command(args: argparse.Namespace) -> str:
    """The command line that makes the report again."""
    source = (
        f"--input {args.input}"
        if args.input is not None
        else f"--cards {args.cards} --terminals {args.terminals} --radius {args.radius:g} --terminals-compromised-per-day "
        f"{args.terminals_compromised_per_day:g}"
        + (f" --compromise-days {args.compromise_days}" if args.compromise_days is not None else "")
        + f" --history-days {args.history_days} --seed {args.seed}"
    )
    return (
        f"fraud backtest {source} --replay-days {args.replay_days} --step {args.step} "
        f"--retrain-every {args.retrain_every}"
        + (" --reissue-cards" if args.reissue_cards else "")
        + review_options(args)
        + "".join(f" --set {o}" for o in args.overrides)
    )


def review_options(args: argparse.Namespace) -> str:
    """`--reviews` and every review and dispute option `args` gave, as given: the same loop whatever the defaults."""
    given = {key: getattr(args, key) for key in REVIEW_PRESETS["bank"] if getattr(args, key) is not None}
    return f" --reviews {args.reviews}" + "".join(
        f" --{key.replace('_', '-')} {value:g}" if isinstance(value, float) else f" --{key.replace('_', '-')} {value}"
        for key, value in given.items()
    )
