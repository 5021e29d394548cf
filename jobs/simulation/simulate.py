"""`fraud simulate`: generate transactions with the handbook's procedure and write them in the bank's raw
format (30-day `YYYY-MM-DD.txt` files), optionally with the bank's defects, plus `_manifest.json`: rows,
frauds per scenario, every defect injected, and the counts the cleaning job must reproduce.

    fraud simulate --preset handbook --out data/raw
    fraud simulate --preset otus --days 30 --customers 20000 --defects --out s3a://bucket/raw
    spark-submit/submit.sh jobs/simulation/simulate.py --preset otus --out hdfs:///data/raw   (any Hadoop path)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from jobs.core.common import add_common_options, config_from_args, job_main
from jobs.core.errors import FraudError
from jobs.simulation.rawfiles import (
    DAYS_PER_FILE,
    DEFECT_KINDS,
    DefectRates,
    file_name,
    format_day,
    inject_defects,
    open_raw_file,
    write_lines,
)
from jobs.simulation.simulator import PRESETS, SimulationSpec, Simulator, make_spec

MANIFEST = "_manifest.json"


class _Tally:
    """What was written: transactions, frauds by scenario, defects by kind and the rows the cleaning must
    quarantine by rule, for the manifest."""

    def __init__(self) -> None:
        self.scenarios: Counter[int] = Counter()
        self.clean_scenarios: Counter[int] = Counter()
        self.injected: Counter[str] = Counter()
        self.by_rule: Counter[str] = Counter()
        self.natural_zero = self.transactions = self.lines_written = 0

    def add(self, frame: pd.DataFrame, lines: int, kind: np.ndarray, rules: Counter[str] | None) -> None:
        """A day's transactions (`frame`), the `lines` written for them, each line's defect (`kind`, -1 for
        none) and the rules the defects break."""
        scen = frame["tx_fraud_scenario"].to_numpy()
        self.by_rule.update(rules or {})
        zero = (frame["tx_amount"].to_numpy() == 0) & (kind == -1)
        self.natural_zero += int(zero.sum())
        kept = ((kind == -1) | (kind == DEFECT_KINDS.index("duplicate"))) & ~zero
        self.scenarios.update(scen.tolist())
        self.clean_scenarios.update(scen[kept].tolist())
        self.injected.update(DEFECT_KINDS[k] for k in kind[kind >= 0])
        self.transactions += len(frame)
        self.lines_written += lines

    def manifest(
        self, spec: SimulationSpec, files: list[dict[str, Any]], defects: DefectRates | None, seconds: float
    ) -> dict[str, Any]:
        defects_by_kind = {k: int(self.injected.get(k, 0)) for k in DEFECT_KINDS}
        by_rule = Counter(self.by_rule)
        by_rule["tx_amount_positive"] += self.natural_zero
        quarantined = sum(v for k, v in defects_by_kind.items() if k != "duplicate") + self.natural_zero
        return {
            "spec": {**asdict(spec), "start_date": spec.start_date.isoformat()},
            "files": files,
            "transactions": self.transactions,
            "frauds": {
                "total": sum(v for s, v in self.scenarios.items() if s > 0),
                **{f"scenario_{s}": int(self.scenarios.get(s, 0)) for s in (1, 2, 3)},
            },
            "defect_rates": asdict(defects) if defects is not None else None,
            "defects": defects_by_kind,
            "natural": {"amount_zero": self.natural_zero},
            "expected_cleaning": {
                "rows_read": self.lines_written,
                "clean": self.transactions - quarantined,
                "quarantined": quarantined,
                "duplicates_removed": defects_by_kind["duplicate"],
                "quarantined_by_rule": dict(sorted((k, v) for k, v in by_rule.items() if v)),
                "clean_frauds": {f"scenario_{s}": int(self.clean_scenarios.get(s, 0)) for s in (1, 2, 3)},
            },
            "seconds": round(seconds, 3),
        }


def simulate_to_folder(
    spec: SimulationSpec, out: Path, defects: DefectRates | None = None, progress: bool = False
) -> dict[str, Any]:
    """Write the raw files of `spec` into a local folder and return the manifest (also written there)."""
    out.mkdir(parents=True, exist_ok=True)
    stale = sorted(p.name for p in out.glob("*.txt"))
    if stale:
        raise FraudError(f"--out {out} already holds raw files ({', '.join(stale[:3])}...); choose an empty folder")
    started = time.perf_counter()
    files: list[dict[str, Any]] = []
    tally = _Tally()
    fh = None
    for batch in tqdm(Simulator(spec).days(), total=spec.days, unit="day", disable=not progress, desc="simulate"):
        if batch.day % DAYS_PER_FILE == 0:
            if fh is not None:
                fh.close()
            files.append({"file": file_name(spec.start_date, batch.day), "first_day": batch.day, "lines": 0})
            fh = open_raw_file(out / files[-1]["file"])
        lines = format_day(batch, spec.start_date)
        kind, rules = np.full(len(lines), -1), None
        if defects is not None:
            lines, kind, rules = inject_defects(
                lines, defects, np.random.Generator(np.random.PCG64(np.random.SeedSequence([spec.seed, 9, batch.day])))
            )
        tally.add(batch.frame, len(lines), kind, rules)
        assert fh is not None
        write_lines(lines, fh)
        files[-1]["lines"] += len(lines)
    if fh is not None:
        fh.close()
    manifest = tally.manifest(spec, files, defects, time.perf_counter() - started)
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def simulate(
    spec: SimulationSpec, out: str, defects: DefectRates | None = None, progress: bool = False, cfg: Any = None
) -> dict[str, Any]:
    """Write to a local folder, or to any Hadoop URI (s3a://, hdfs://, file://) through a local staging
    folder whose files Spark's Hadoop file system copies to `out`."""
    if "://" not in out:
        return simulate_to_folder(spec, Path(out), defects, progress)
    from jobs.core.lake import copy_to_hadoop
    from jobs.core.session import get_spark

    spark = get_spark(cfg, "simulate")
    staging = Path(tempfile.mkdtemp(prefix="fraud-simulate-"))
    try:
        manifest = simulate_to_folder(spec, staging, defects, progress)
        for path in sorted(staging.iterdir()):
            copy_to_hadoop(spark, path, out.rstrip("/") + "/" + path.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def add_spec_arguments(parser: argparse.ArgumentParser) -> None:
    """The simulation's options (also used by `fraud produce --simulate`)."""
    parser.add_argument("--preset", choices=sorted(PRESETS), default="handbook", help="sizes to start from")
    parser.add_argument("--start-date", type=dt.date.fromisoformat, help="first day, YYYY-MM-DD")
    parser.add_argument("--days", type=int)
    parser.add_argument("--customers", type=int)
    parser.add_argument("--terminals", type=int)
    parser.add_argument("--radius", type=float, help="a customer uses terminals closer than this (default 5)")
    parser.add_argument("--seed", type=int)
    parser.add_argument(
        "--terminals-compromised-per-day",
        type=float,
        help="terminals drawn for a compromise each "
        "day (default 2); a fraction is a chance: 0.25 is one every fourth day on average",
    )


def spec_from_args(args: argparse.Namespace) -> SimulationSpec:
    try:
        return make_spec(
            args.preset,
            start_date=args.start_date,
            days=args.days,
            customers=args.customers,
            terminals=args.terminals,
            radius=args.radius,
            seed=args.seed,
            terminals_compromised_per_day=args.terminals_compromised_per_day,
        )
    except ValueError as exc:
        raise FraudError(str(exc)) from exc


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder: a local path, file://, s3a:// or hdfs://")
    add_spec_arguments(parser)
    parser.add_argument(
        "--defects",
        nargs="?",
        type=float,
        const=1.0,
        default=None,
        metavar="FACTOR",
        help="inject the bank's defects at the default rates (times FACTOR, default 1)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_common_options(parser)


def execute(args: argparse.Namespace) -> int:
    spec = spec_from_args(args)
    try:
        defects = DefectRates.scaled(args.defects) if args.defects is not None else None
    except ValueError as exc:
        raise FraudError(str(exc)) from exc
    cfg = config_from_args(args) if "://" in args.out else None
    manifest = simulate(spec, args.out, defects, progress=not args.no_progress, cfg=cfg)
    rate = manifest["transactions"] / max(manifest["seconds"], 1e-9)
    print(
        json.dumps(
            {
                "out": args.out,
                "files": len(manifest["files"]),
                "transactions": manifest["transactions"],
                "frauds": manifest["frauds"],
                "defects": sum(manifest["defects"].values()),
                "seconds": manifest["seconds"],
                "transactions_per_minute": round(rate * 60),
            },
            indent=2,
        )
    )
    return 0


main = job_main("fraud simulate", __doc__, add_arguments, execute)


if __name__ == "__main__":
    sys.exit(main())
