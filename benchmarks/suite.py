"""How long CI's run takes: `make test` on a fresh clone of the committed HEAD, timed by phase.

    python3 benchmarks/suite.py [--keep] [--no-save] [--beside TEXT]

Clones the repository's HEAD into a temporary folder (nothing set up there: no .venv, .jars or .tools) and
runs what `make test` runs, one phase at a time: `make setup` (the venvs, the jars, the operators, Prometheus,
Airflow), ruff, mypy, then pytest with every test's duration. The suite is kept under 40 minutes (CI stops a run at
90). The
machine should run nothing else meanwhile; `--beside TEXT` says in the result what did. Prints JSON: seconds by phase and in all, the tests passed and
failed, and the slowest tests; keeps benchmarks/results/suite.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LIMIT_SECONDS = 40 * 60  # the suite is kept under it; CI stops a run at 90 minutes


def timed(command: list[str], cwd: Path, log: Path) -> tuple[int, float]:
    """Run a phase with its output appended to `log`; return (exit code, seconds)."""
    started = time.monotonic()
    with log.open("a") as out:
        out.write(f"$ {' '.join(command)}\n")
        out.flush()
        code = subprocess.run(
            command,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"},
        ).returncode
    return code, round(time.monotonic() - started, 1)


def test_durations(junit: Path) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """Counts by outcome and every test's seconds (setup, call and teardown together), slowest first."""
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    tests = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        outcome = (
            "failed"
            if case.find("failure") is not None or case.find("error") is not None
            else "skipped"
            if case.find("skipped") is not None
            else "passed"
        )
        counts[outcome] += 1
        tests.append(
            {
                "test": f"{case.get('classname', '').replace('.', '/')}.py::{case.get('name')}",
                "seconds": round(float(case.get("time", 0)), 1),
                "outcome": outcome,
            }
        )
    return counts, sorted(tests, key=lambda t: -t["seconds"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", action="store_true", help="keep the clone (its path is in the result)")
    parser.add_argument("--no-save", action="store_true", help="print the result only")
    parser.add_argument(
        "--beside", metavar="TEXT", help="what else ran on the machine meanwhile, kept in the result (default: nothing)"
    )
    args = parser.parse_args(argv)

    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    clone = Path(tempfile.mkdtemp(prefix="fraud-suite-")) / "repo"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    log, junit = clone.parent / "suite.log", clone.parent / "junit.xml"
    phases: dict[str, float] = {}
    codes: dict[str, int] = {}
    for name, command in (
        ("setup", ["make", "setup"]),
        ("ruff", ["sh", "-c", ".venv/bin/ruff check . && .venv/bin/ruff format --check ."]),
        ("mypy", [".venv/bin/mypy"]),
        ("pytest", [".venv/bin/python", "-m", "pytest", "-q", f"--junitxml={junit}"]),
    ):
        codes[name], phases[name] = timed(command, clone, log)
        print(f"suite: {name} exited {codes[name]} after {phases[name]:.0f} s", file=sys.stderr, flush=True)
        if codes[name] and name != "pytest":
            break
    counts, tests = test_durations(junit) if junit.exists() else ({}, [])
    total = round(sum(phases.values()), 1)
    summary = re.findall(r"^=*\s*(\d+ (?:passed|failed).* in [\d.]+s[^=]*?)\s*=*$", log.read_text(), re.M)
    result = {
        "benchmark": "suite",
        "command": "python3 benchmarks/suite.py",
        "commit": head,
        "machine": "2 cores, 24 GiB; a fresh clone, nothing set up",
        "beside": args.beside,
        "seconds": {**phases, "total": total},
        "limit_seconds": LIMIT_SECONDS,
        "within_limit": total <= LIMIT_SECONDS and not any(codes.values()),
        "exit_codes": codes,
        "tests": counts,
        "pytest_summary": summary[-1] if summary else None,
        "slowest": tests[:20],
        "log": str(log) if args.keep else None,
        "run": {"commit": head[:7], "date": time.strftime("%Y-%m-%d", time.gmtime())},
    }
    print(json.dumps(result, indent=2))
    if not args.no_save:
        (ROOT / "benchmarks/results/suite.json").write_text(json.dumps(result, indent=2) + "\n")
    if not args.keep:
        shutil.rmtree(clone.parent, ignore_errors=True)
    return 0 if not any(codes.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
