"""Where a result came from: the commit of the code that made it and the day, kept in every results file
(benchmarks/results/*.json) so that docs/results.md can say which code each figure belongs to."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path
from typing import Any

from jobs.core.config import PROJECT_ROOT

ROOT = PROJECT_ROOT
NOT_CODE = ("benchmarks/results", "docs")  # what a run writes or describes, not what it runs


def run_stamp(root: Path = ROOT) -> dict[str, Any]:
    """{"commit": the checkout's short commit ("+changes" when files git tracks differ from it, results and docs
    aside: a replay over several seeds writes its first seeds' files before the next seed starts; None outside
    a git checkout), "date": today (UTC, ISO)}."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "--short", "HEAD")
    changed = git("status", "--porcelain", "--untracked-files=no", "--", ".", *(f":(exclude){p}" for p in NOT_CODE))
    if commit is not None and changed:
        commit += "+changes"
    return {"commit": commit, "date": dt.datetime.now(dt.UTC).date().isoformat()}
