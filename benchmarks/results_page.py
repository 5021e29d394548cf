"""docs/results.md, made from benchmarks/results/*.json: one table per question, each row naming its results
file, the command that made it, and the commit and day it ran on. `make results` writes it;
tests/test_results_page.py fails when the committed page differs from what the files give, so a figure in the
docs cannot drift from its file.

    .venv/bin/python benchmarks/results_page.py [--check]

A row is a results file of code that still ships; a run of code that no longer ships leaves the page with its
file (git keeps both).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks/results"
PAGE = ROOT / "docs/results.md"

Result = dict[str, Any]


@dataclass(frozen=True)
class Row:
    file: str  # under benchmarks/results/
    label: str  # what the run is, in a few words
    cells: Callable[[Result], list[str]]


@dataclass(frozen=True)
class Table:
    title: str
    question: str
    columns: list[str]
    rows: list[Row] | Callable[[Path], list[Row]]  # or made from the results folder (one a seed, say)
    notes: str = ""

    def rows_in(self, results: Path) -> list[Row]:
        return self.rows(results) if callable(self.rows) else self.rows


def share(value: float | None, digits: int = 4) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def met(figures: Result) -> str:
    return "yes" if figures.get("meets_requirement") else "no"


def weeks(d: Result) -> list[str]:
    """Recall / FPR of each replayed week, then of the settled weeks (2 on), then whether each week meets it."""
    by_week = d.get("weeks") or {}
    cells = [f"{share(w['recall'])} / {share(w['fpr'])}" for w in by_week.values()]
    cells += [""] * (4 - len(cells))
    settled = d.get("settled_weeks") or {}
    every = all(w.get("meets_requirement") for w in by_week.values()) if by_week else False
    return [*cells[:4], f"{share(settled.get('recall'))} / {share(settled.get('fpr'))}", "yes" if every else "no"]


SEEDS_FILE = "backtest_4w_bank_seeds.json"


def seed_rows(results: Path) -> list[Row]:
    """One row a report seed of SEEDS_FILE (each from its own file), then their spread (none before it exists)."""
    if not (results / SEEDS_FILE).exists():
        return []
    spread = json.loads((results / SEEDS_FILE).read_text())
    rows = [Row(seed["file"], f"seed {number}", weeks) for number, seed in spread["seeds"].items()]

    def summary(d: Result) -> list[str]:
        by_week = [d["weeks"].get(f"week_{n}") for n in range(1, 5)]
        cells = [
            "" if w is None else f"{share(w['median_recall'])} ({share(w['worst_recall'])}) / {share(w['highest_fpr'])}"
            for w in by_week
        ]
        settled = [s["settled_weeks"]["recall"] for s in d["seeds"].values() if s["settled_weeks"]]
        median = sorted(settled)[len(settled) // 2] if settled else None
        return [*cells, share(median), f"{d['seeds_meeting_it_every_week']} of {d['of_seeds']} seeds"]

    return [*rows, Row(SEEDS_FILE, "median (worst) recall / highest FPR", summary)]


def first_days(d: Result, count: int) -> list[str]:
    """Recall / FPR of the first `count` replayed days (blank past the last)."""
    cells = [f"{share(v['recall'])} / {share(v['fpr'])}" for v in list(d["days"].values())[:count]]
    return cells + [""] * (count - len(cells))


def new_model_days(d: Result) -> str:
    """The recall of each replayed day on which a model scored that had not the day before: `day N: recall`."""
    cells, before = [], None
    for n, (day, versions) in enumerate((d.get("model_versions_by_day") or {}).items(), start=1):
        if before is not None and set(versions) - before:
            cells.append(f"day {n}: {share(d['days'][day]['recall'])}")
        before = set(versions)
    return ", ".join(cells) or "none"


def days(d: Result) -> list[str]:
    """Recall, FPR and precision over the replayed days, and whether they meet the requirement."""
    o = d["overall"]
    return [share(o["recall"]), share(o["fpr"]), share(o["precision"]), met(o)]


def shape(d: Result) -> str:
    sim = d.get("simulation")
    if not sim:
        return "the bank's raw files" if d.get("input") else ""
    days_replayed = d["loop"].get("steps", 0) * step_hours(d) / 24
    return f"{sim['cards']:,} cards, {sim['terminals']:,} terminals, {days_replayed:g} days, seed {sim['seed']}"


def seconds_or_dash(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def speed(d: dict[str, Any], run: str) -> list[str]:
    """A row of the stream's speed: the latency run `run` of stream.json; the floor and the drain with the
    stream's own explanations only."""
    at = d[run]
    own = run == "latency_at_400_tx_per_second"
    return [
        f"{share(at['flagged_share'])} ({share(d['fraud_share'])})",
        f"{at['alert_p50_seconds']:.2f} / {at['alert_p99_seconds']:.2f}",
        f"{at['scores_p99_seconds']:.2f}",
        seconds_or_dash(at.get("explanation_p99_seconds")),
        f"{at['mean_batch_seconds']:.2f} ({at['mean_batch_rows']:,.0f})",
        f"{d['floor_batch_seconds']:.2f}" if own else "–",
        f"{d['throughput']['warm_tx_per_second']:,} ({share(d['throughput']['full']['flagged_share'])})"
        if own
        else "–",
    ]


def run_stages(run: dict[str, Any]) -> list[str]:
    """`stages` of a latency run of stream.json: its mean micro-batch."""
    return stages(run["mean_batch_stage_seconds"], run["mean_batch_duration_ms"])


def stages(seconds: Result, duration_ms: Result) -> list[str]:
    return [f"{seconds.get(k, 0.0):.2f}" for k in ("state", "score", "alerts_topic", "explanations", "tables")] + [
        f"{duration_ms.get('queryPlanning', 0) / 1000:.2f}"
    ]


def step_hours(d: Result) -> float:
    step = str(d["loop"].get("step", "2h"))
    return float(step[:-1]) / 60 if step.endswith("m") else float(step[:-1]) * (24 if step.endswith("d") else 1)


TABLES = [
    Table(
        "The requirement across report seeds, with reviews as a bank has them",
        "Does `fraud stream`, inside the fraud team's loop (alerts reviewed, missed frauds disputed, blocked cards "
        "reissued, the model retrained weekly), keep recall above 0.98 with at most 5% of legitimate payments "
        "flagged? Four replayed weeks at the bank's traffic per terminal (about 309 payments a terminal a day) on "
        "the report seeds (nothing was tuned on them), the policy as it ships ([a new model's threshold]"
        "(#a-new-models-threshold-from-the-whole-window-chosen-on-the-tuning-seed) among it), with the fraud team "
        "and the "
        "cardholders of `--reviews bank`: reviews in working hours (8 to 20), riskiest first, 1% of them wrong "
        "and 5% unanswered, 90% of missed frauds disputed 1 to 30 days after them "
        "([reviews and disputes](backtest.md#reviews-and-disputes-as-options)). The first week is the loop "
        "finding the compromises already under way, weeks 2 to 4 the settled ones. Recall / FPR per week; the last "
        "row gives per week the median recall, the worst in brackets, and the highest FPR, the median settled "
        "recall, and how many seeds met the requirement in every week.",
        ["run", "week 1", "week 2", "week 3", "week 4", "settled (2-4)", "every week meets it"],
        seed_rows,
        "Seeds 1 to 5 are the report seeds; the last row counts those replayed so far. "
        "A seed is one draw of the simulation: which terminals are compromised and when. A row's commit is the "
        "code that seed ran on (`fraud backtest --seeds ... --reuse-seeds` goes on with a list of seeds over "
        "several sittings). Nearly every fraud counted is at a compromised terminal (every payment there is fraud "
        "for 28 days), so recall is mostly how fast the loop finds a compromise: "
        "[what a figure rests on](backtest.md#what-a-figure-rests-on).",
    ),
    Table(
        "The first replayed days",
        "The alert budget acts from the stream's first micro-batch, whatever the traffic: the first days of the "
        "report seeds' four-week replays (each day's recall / FPR), and a replay step's seconds "
        "(one micro-batch of two hours of payments and labels; the target is at most 6 s on this machine, alone). "
        "The last day of the history, scored by the model, is the window's evidence from the first micro-batch "
        "([a new model's threshold](#a-new-models-threshold-from-the-whole-window-chosen-on-the-tuning-seed)); "
        "the last column gives the recall of each day a new model started scoring.",
        ["run", "day 1", "day 2", "day 3", "seconds a step", "days a new model started"],
        lambda results: [
            Row(
                row.file,
                row.label,
                lambda d: [*first_days(d, 3), f"{d['loop']['seconds_per_step']:.2f}", new_model_days(d)],
            )
            for row in seed_rows(results)[:-1]
        ],
        "A step's seconds are those of the run as it went: beside other work they are more.",
    ),
    Table(
        "Renewed cases, chosen on the tuning seed",
        "Does a terminal's case that its reviews keep confirming run on (`stream.terminal_checks.renew_cases`) "
        "instead of ending `case_hours` after it opened? Two bank-like weeks of seed 0, the tuning seed, with "
        "reviews as a bank has them; cases of a fixed length work the same in both rows' commits. Recall / FPR per "
        "week.",
        ["run", "week 1", "week 2", "week 3", "week 4", "settled (2-4)", "every week meets it"],
        [
            Row("backtest_2w_bank_seed0_fixed_cases.json", "cases of a fixed 48 hours (`renew_cases=false`)", weeks),
            Row(
                "backtest_2w_bank_seed0_renew_majority.json",
                "cases renewed while half their verdicts are frauds (as it ships)",
                weeks,
            ),
        ],
        "Settled here is week 2 alone. Renewing a case at every fraud its reviews confirmed (commit 8fc6770, "
        "`backtest_2w_bank_seed0_renew_cases.json`) kept honest terminals' cases open on their wrong reviews and "
        "stolen cards: 1,006 case reviews a day against 335, week 2 at 0.9791 / 0.0680. The rule renews a case "
        "only while at least half its verdicts are frauds.",
    ),
    Table(
        "A new model's threshold from the whole window, chosen on the tuning seed",
        "Does a model new to the alert budget's window (at the first start, after each retraining promoted) get a "
        "better threshold from the window scored again by it (`stream.alert_budget.rescore_window`, as it ships) "
        "than from its own first hours of scores, whose frauds nobody has confirmed yet? Four bank-like weeks of "
        "seed 0, the tuning seed, reviews as a bank has them, both on one commit. Recall / FPR per week, the "
        "first replayed day's, and the recall of each day a new model started scoring.",
        [
            "run",
            "week 1",
            "week 2",
            "week 3",
            "week 4",
            "settled (2-4)",
            "every week meets it",
            "day 1",
            "days a new model started",
        ],
        lambda results: [
            Row(file, label, lambda d: [*weeks(d), first_days(d, 1)[0], new_model_days(d)])
            for file, label in (
                ("backtest_4w_bank_seed0.json", "the window scored again (as it ships)"),
                ("backtest_4w_bank_seed0_thin_window.json", "the first hours' own scores (`rescore_window=false`)"),
            )
            if (results / file).exists()
        ],
        "The report seeds above ran with the window scored again, as it ships: their first days and the days a "
        "new model started are in [the first replayed days](#the-first-replayed-days).",
    ),
    Table(
        "What each lever of the alerting policy buys",
        "The same four bank-like weeks with one lever changed (its `--set` in the command). Recall / FPR per week.",
        ["run", "week 1", "week 2", "week 3", "week 4", "settled (2-4)", "every week meets it"],
        lambda results: [
            Row(row.file, f"{row.label}, the policy of its commit", weeks) for row in seed_rows(results)[:1]
        ],
        "The policy with one lever off has not been replayed on the alert budget's current rule; each is the "
        "command above with one more `--set`: `stream.terminal_checks.explore_hours=null` (no exploration), "
        "`stream.terminal_checks.enabled=false` (the budget alone), `stream.alert_budget.enabled=false` (each "
        "model's own threshold). [The levers](backtest.md) says what each does.",
    ),
    Table(
        "The loop where compromises are harder to find",
        "The bank's 1,000 terminals with 20,000 cards: about 38 payments a terminal a day, so a compromised "
        "terminal takes longer to show; 5 replayed days.",
        ["run", "recall", "FPR", "precision", "meets 0.98 / 5%"],
        [
            Row(
                "backtest_1000_terminals.json",
                "the policy of its commit, reviews and disputes as a bank has them",
                days,
            )
        ],
    ),
    Table(
        "Stream speed",
        "How soon an alert follows its payment at the bank's 400 a second, and how fast `fraud stream` drains a "
        "backlog, at the operating point: the shipped model and policy on the bank-like replay's traffic per "
        "terminal, the alert budget flagging its share, on this 2-core machine (Spark `local[2]`); "
        "[benchmarks](benchmarks.md#the-streaming-job-make-bench-stream) has the method. Targets: alert p99 at most 5 s, "
        "`scores` p99 at most 8 s, a mean micro-batch under 2.5 s, with at least 4% of payments flagged.",
        [
            "run",
            "share flagged (frauds)",
            "alert p50 / p99 (s)",
            "scores p99 (s)",
            "explanation p99 (s)",
            "mean micro-batch (s, rows)",
            "10-row micro-batch (s)",
            "warm drain (tx/s, share flagged)",
        ],
        [
            Row("stream.json", "`make bench-stream`", lambda d: speed(d, "latency_at_400_tx_per_second")),
            Row(
                "stream.json",
                "the same, explanations by CatBoost's SHAP call",
                lambda d: speed(d, "latency_with_shap_call"),
            ),
            Row(
                "stream.json",
                "the same, Delta's transaction ids not computed ahead (`--compare-without-warming`)",
                lambda d: speed(d, "latency_without_warming"),
            ),
            Row(
                "stream.json",
                "the same, `scores` and `alerts` appended on a thread (`stream.tables_on_thread`)",
                lambda d: speed(d, "latency_tables_on_thread"),
            ),
        ],
    ),
    Table(
        "The alert budget at the bank's traffic in real time",
        "What the alert budget costs the driver at each micro-batch (its threshold, the micro-batch added to the "
        "window, the labels) when its window holds what a bank at 400 tx/s really puts in it: `make bench-stream` "
        "replays the simulation's event times, about 39,000 transactions a day. Kept whole, against kept within "
        "`stream.alert_budget.max_window_transactions` as it ships, in one run; and the share of the window's "
        "legitimate transactions each threshold flags.",
        [
            "window",
            "transactions",
            "kept (one in)",
            "ms a micro-batch, whole",
            "ms a micro-batch, kept",
            "whole / kept",
            "share flagged, whole / kept",
        ],
        lambda results: [
            Row(
                "budget_window.json",
                f"{hours} at {json.loads((results / 'budget_window.json').read_text())['rate']} tx/s",
                lambda d, hours=hours: [
                    f"{d['windows'][hours]['transactions']:,}",
                    f"{d['windows'][hours]['kept_within_the_limit']['kept_transactions']:,} "
                    f"({d['windows'][hours]['kept_within_the_limit']['kept_one_in']})",
                    f"{d['windows'][hours]['every_transaction']['ms_per_micro_batch']['all']:,.0f}",
                    f"{d['windows'][hours]['kept_within_the_limit']['ms_per_micro_batch']['all']:,.0f}",
                    f"{d['windows'][hours]['every_over_kept']:.1f}",
                    f"{d['windows'][hours]['every_transaction']['flagged_share_of_the_kept']:.4f} / "
                    f"{d['windows'][hours]['kept_within_the_limit']['flagged_share_of_the_kept']:.4f}",
                ],
            )
            for hours in (
                json.loads((results / "budget_window.json").read_text())["windows"]
                if (results / "budget_window.json").exists()
                else {}
            )
        ],
    ),
    Table(
        "Checkpoint files on a local disk",
        "What the files a streaming query writes to its checkpoint at every micro-batch cost on this machine's "
        "disk through each of Spark's checkpoint file managers: the offsets, the commit and a state store's "
        "changelog (the stream writes four), in a small stateful query with a micro-batch every second, the "
        "designs taking turns in one run; medians, ms. conf/local/spark.yaml sets Hadoop's FileSystem "
        "([benchmarks](benchmarks.md#checkpoint-files-make-bench-checkpoint-files)).",
        [
            "file manager",
            "offsets",
            "commit",
            "changelog",
            "state commit",
            "micro-batch",
            "micro-batch over FileSystem's",
        ],
        lambda results: [
            Row(
                "checkpoint_files.json",
                label,
                lambda d, name=name: (
                    [
                        f"{d['designs'][name][key]:,.0f}"
                        for key in (
                            "wal_commit_ms",
                            "commit_offsets_ms",
                            "changelog_write_ms",
                            "state_commit_ms",
                            "trigger_execution_ms",
                        )
                    ]
                    + [
                        f"{d['designs'][name]['trigger_execution_ms'] / d['designs']['file_system']['trigger_execution_ms']:.2f}"
                    ]
                ),
            )
            for name, label in (
                ("file_context", "Hadoop's FileContext (Spark's default)"),
                ("file_system", "Hadoop's FileSystem (conf/local/spark.yaml)"),
            )
            if (results / "checkpoint_files.json").exists()
        ],
    ),
    Table(
        "Where a micro-batch goes",
        "The stream's own stage timer, seconds: the mean micro-batch at 400 tx/s and the median 10-row one. An "
        "alert's path is the state, the scores and the alerts topic; the tables come after it, while the "
        "explanation runs on a thread of the driver (its column: the wait for the previous micro-batch's).",
        ["run", "state", "scores", "alerts topic", "explanation (wait)", "tables", "query planning"],
        [
            Row("stream.json", "at 400 tx/s", lambda d: run_stages(d["latency_at_400_tx_per_second"])),
            Row(
                "stream.json",
                "at 400 tx/s, explanations by CatBoost's SHAP call",
                lambda d: run_stages(d["latency_with_shap_call"]),
            ),
            Row(
                "stream.json",
                "at 400 tx/s, Delta's transaction ids not computed ahead",
                lambda d: run_stages(d["latency_without_warming"]),
            ),
            Row(
                "stream.json",
                "at 400 tx/s, the tables appended on a thread (tables: their staged file)",
                lambda d: run_stages(d["latency_tables_on_thread"]),
            ),
            Row(
                "stream.json",
                "10 rows",
                lambda d: stages(d["floor"]["median_stage_seconds"], d["floor"]["median_duration_ms"]),
            ),
        ],
    ),
    Table(
        "The alerts' explanation",
        "Every alert of the run (the drain, the 400 tx/s load and the 10-row micro-batches) explained by "
        "CatBoost's exact SHAP call and by the stream's table of leaves (the same values, looked up), and one "
        "micro-batch's alerts at 400 tx/s by each.",
        [
            "run",
            "alerts",
            "CatBoost call (s)",
            "table: build, lookup (s)",
            "alerts a micro-batch",
            "their CatBoost call (s)",
            "their lookup (s)",
            "largest difference",
        ],
        [
            Row(
                "stream.json",
                "`make bench-stream`",
                lambda d: [
                    f"{d['explanations']['alerts']:,}",
                    f"{d['explanations']['exact_seconds']:.2f}",
                    f"{d['explanations']['table_build_seconds']:.2f}, {d['explanations']['table_seconds']:.3f}",
                    f"{d['explanations']['alerts_per_batch']}",
                    f"{d['explanations']['exact_batch_seconds']:.3f}",
                    f"{d['explanations']['table_batch_seconds']:.4f}",
                    f"{d['explanations']['max_abs_difference']:.1e}",
                ],
            )
        ],
    ),
    Table(
        "Staying up",
        "`fraud stream` for 30 minutes at 400 tx/s through idle gaps, re-sends, malformed messages, labels, a "
        "broker restart and a `kill -9`.",
        ["run", "transactions sent", "scored once", "scored twice", "missing", "bad messages dead-lettered"],
        [
            Row(
                "soak.json",
                "`make soak`",
                lambda d: [
                    f"{d['sent']['transactions']:,}",
                    f"{d['tables']['scored_distinct']:,}",
                    f"{d['tables']['scored_twice']:,}",
                    f"{d['tables']['missing']:,}",
                    "all" if d["tables"]["every_bad_message_dead_lettered"] else "not all",
                ],
            )
        ],
    ),
    Table(
        "The cluster path",
        "`fraud stream` drained from a backlog on `local[2]`, on YARN in cluster mode (two executors of one core, "
        "Hadoop's MiniYARNCluster) and on `local[2]` again, one after the other on this machine's two cores: what "
        "the cluster path costs ([operations](operations.md#on-yarn)).",
        ["run", "local[2] (tx/s)", "YARN (tx/s)", "local[2] again (tx/s)", "YARN / local[2]", "flagged", "beside"],
        [
            Row(
                "cluster_drain.json",
                "`make bench-cluster-drain`",
                lambda d: [
                    f"{d['runs']['local']['tx_per_second']:,}",
                    f"{d['runs']['yarn']['tx_per_second']:,}",
                    f"{d['runs']['local_again']['tx_per_second']:,}",
                    f"{d['yarn_to_local']:.2f}",
                    share(d["runs"]["yarn"]["flagged_share"]),
                    d.get("beside") or "nothing",
                ],
            )
        ],
    ),
    Table(
        "The test suite",
        "CI's run (`make test` on a fresh clone: set-up, mypy, the whole suite), kept under 40 minutes on this "
        "machine; [testing](testing.md) says what runs.",
        ["run", "set-up (s)", "mypy (s)", "pytest (s)", "in all (s)", "tests passed / failed", "slowest test (s)"],
        [
            Row(
                "suite.json",
                "`make bench-suite`",
                lambda d: [
                    f"{d['seconds']['setup']:,.0f}",
                    f"{d['seconds']['mypy']:,.0f}",
                    f"{d['seconds']['pytest']:,.0f}",
                    f"{d['seconds']['total']:,.0f}" + (f" (beside {d['beside']})" if d.get("beside") else ""),
                    f"{d['tests']['passed']} / {d['tests']['failed']}",
                    f"{d['slowest'][0]['seconds']:,.0f} (`{d['slowest'][0]['test'].split('::')[-1]}`)",
                ],
            )
        ],
    ),
    Table(
        "The model offline",
        "CatBoost on the handbook's data against its published figures, and on the bank-sized `otus` preset by "
        "how soon labels come back ([model](model.md)).",
        ["run", "ROC AUC", "average precision", "card precision@100", "recall at FPR 5%"],
        [
            Row(
                "model_figures.json",
                "handbook, prequential, mean of seeds",
                lambda d: [
                    share(d["handbook_prequential_by_seed"]["mean"]["roc_auc"]),
                    share(d["handbook_prequential_by_seed"]["mean"]["average_precision"]),
                    share(d["handbook_prequential_by_seed"]["mean"]["card_precision_at_100"]),
                    share(d["handbook_prequential_by_seed"]["mean"]["recall_at_fpr_5pct"]),
                ],
            ),
            Row(
                "model_figures.json",
                "the handbook's published best (tuned, prequential)",
                lambda d: [
                    share(d["published"]["prequential_best_tuned"]["roc_auc"], 3),
                    share(d["published"]["prequential_best_tuned"]["average_precision"], 3),
                    share(d["published"]["prequential_best_tuned"]["card_precision_at_100"], 3),
                    "",
                ],
            ),
            *[
                Row(
                    "model_figures.json",
                    f"otus preset, labels back after {delay}",
                    lambda d, delay=delay: [
                        share(d["otus"]["by_label_delay"][delay]["test_roc_auc"]),
                        share(d["otus"]["by_label_delay"][delay]["test_average_precision"]),
                        "",
                        share(d["otus"]["by_label_delay"][delay]["test_recall_at_fpr_5pct"]),
                    ],
                )
                for delay in ("7d", "1d", "1h")
            ],
        ],
    ),
]

COMMANDS = {  # results files whose benchmark does not record its whole command line
    "stream": "make bench-stream",
    "soak": "make soak",
    "model_figures": "make bench-model",
    "suite": "make bench-suite",
    "cluster_drain": "make bench-cluster-drain",
}


def command_of(d: Result) -> str:
    command = str(d.get("command") or "")
    if command.startswith(("fraud ", "python ")):
        return command
    return COMMANDS.get(str(d.get("benchmark")), f"python benchmarks/{d.get('benchmark')}.py {command}".strip())


def render(results: Path = RESULTS) -> str:
    """The page, from the results files under `results`."""
    lines = [
        "# Results",
        "",
        "Made by `make results` from the files in `benchmarks/results/` (`benchmarks/results_page.py`); "
        "`tests/test_results_page.py` fails when this page differs from what they give. Each row names its file, "
        "the commit its run was made on and the day; the commands are under the tables. A run of code that no "
        "longer ships leaves this page; git keeps its file. The method of each: [backtest](backtest.md), "
        "[benchmarks](benchmarks.md), [model](model.md).",
        "",
    ]
    commands: dict[str, str] = {}
    for table in TABLES:
        lines += [
            f"## {table.title}",
            "",
            table.question,
            "",
            "| " + " | ".join([*table.columns, "file", "commit, day"]) + " |",
            "|" + "---|" * (len(table.columns) + 2),
        ]
        for row in table.rows_in(results):
            d = json.loads((results / row.file).read_text())
            run = d.get("run") or {}
            commands[row.file] = command_of(d)
            lines.append(
                "| "
                + " | ".join(
                    [
                        row.label,
                        *row.cells(d),
                        f"[{row.file}](../benchmarks/results/{row.file})",
                        f"{run.get('commit') or 'not recorded'}, {run.get('date') or ''}",
                    ]
                )
                + " |"
            )
        if table.notes:
            lines += ["", table.notes]
        lines.append("")
    lines += ["## Commands", "", "| file | command |", "|---|---|"]
    lines += [f"| {file} | `{command}` |" for file, command in commands.items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/results.md differs from the files")
    args = parser.parse_args(argv)
    page = render()
    if args.check:
        if PAGE.read_text() != page:
            print(f"{PAGE} differs from benchmarks/results/: run `make results`", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(page)
    print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
