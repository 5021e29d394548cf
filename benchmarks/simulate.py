"""Benchmark of `fraud simulate`: transactions a minute on one core, and peak memory, for the bank's sizes.

    .venv/bin/python benchmarks/simulate.py [--days 6] [--customers 810000]
    .venv/bin/python benchmarks/simulate.py --handbook      # the handbook preset's counts, against the published

With --handbook: the `handbook` preset (seed 0) generated once, its transactions, frauds and frauds per
scenario next to the published figures (../shared/SIMULATOR.md), kept in benchmarks/results/simulate_handbook.json.

Generates the `otus` preset (810,000 cards, 1,000 terminals: ~1.57 million transactions a day) twice in
one process, for N and 2N days, generation only and generation + writing the raw files with defects, and
prints one JSON object (also kept in benchmarks/results/simulate.json). Memory must not grow with days.
"""

from __future__ import annotations

import argparse
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import report  # noqa: E402
from jobs.simulation.rawfiles import DefectRates  # noqa: E402
from jobs.simulation.simulate import simulate_to_folder  # noqa: E402
from jobs.simulation.simulator import Simulator, make_spec  # noqa: E402


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=6)
    parser.add_argument("--customers", type=int, default=810_000)
    parser.add_argument("--handbook", action="store_true", help="the handbook preset's counts instead")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args()
    if args.handbook:
        report(handbook_counts(), "simulate_handbook", not args.no_save)
        return
    runs = []
    for days in (args.days, 2 * args.days):
        spec = make_spec("otus", days=days, customers=args.customers)
        started = time.perf_counter()
        sim = Simulator(spec)
        profiles_s = time.perf_counter() - started
        n = sum(len(b.frame) for b in sim.days())
        gen_s = time.perf_counter() - started - profiles_s
        out = Path(tempfile.mkdtemp(prefix="bench-sim-"))
        try:
            manifest = simulate_to_folder(spec, out, DefectRates())
            size = sum(p.stat().st_size for p in out.glob("*.txt"))
        finally:
            shutil.rmtree(out)
        runs.append(
            {
                "days": days,
                "transactions": n,
                "profiles_seconds": round(profiles_s, 2),
                "generate_seconds": round(gen_s, 2),
                "generate_tx_per_minute": round(n / gen_s * 60),
                "write_seconds": manifest["seconds"],
                "write_tx_per_minute": round(manifest["transactions"] / manifest["seconds"] * 60),
                "raw_bytes": size,
                "peak_rss_mib_so_far": round(peak_rss_mib()),
            }
        )
    result = {
        "benchmark": "simulate",
        "preset": "otus",
        "customers": args.customers,
        "terminals": 1_000,
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores, Python {platform.python_version()}",
        "single_core": True,
        "target_tx_per_minute": 1_000_000,
        "runs": runs,
        "memory_ratio_2n_over_n_days": round(runs[1]["peak_rss_mib_so_far"] / runs[0]["peak_rss_mib_so_far"], 2),
    }
    report(result, "simulate", not args.no_save)


def handbook_counts() -> dict[str, object]:
    """The handbook preset's transactions, frauds and frauds per scenario, against the published figures."""
    spec = make_spec("handbook")
    started = time.perf_counter()
    frames = [b.frame for b in Simulator(spec).days()]
    seconds = time.perf_counter() - started
    n = sum(len(f) for f in frames)
    frauds = sum(int(f["tx_fraud"].sum()) for f in frames)
    scenarios = {str(s): sum(int((f["tx_fraud_scenario"] == s).sum()) for f in frames) for s in (1, 2, 3)}
    return {
        "benchmark": "simulate_handbook",
        "preset": "handbook",
        "seed": 0,
        "days": spec.days,
        "generate_seconds": round(seconds, 1),
        "transactions": n,
        "transactions_a_day": round(n / spec.days),
        "frauds": frauds,
        "fraud_share": round(frauds / n, 5),
        "frauds_by_scenario": scenarios,
        "published": {
            "transactions": 1_754_155,
            "frauds": 14_681,
            "fraud_share": 0.0084,
            "frauds_by_scenario": {"1": 973, "2": 9_077, "3": 4_631},
        },
    }


if __name__ == "__main__":
    main()
