"""Where a result came from: the commit stamp says "+changes" for changed code, not for changed results."""

from __future__ import annotations

import subprocess
from pathlib import Path

from jobs.core.provenance import run_stamp


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True).stdout.strip()


def test_a_changed_results_file_leaves_the_stamp_clean_and_changed_code_marks_it(tmp_path):
    root = tmp_path / "repo"
    for folder in ("benchmarks/results", "docs", "jobs"):
        (root / folder).mkdir(parents=True)
    (root / "benchmarks/results/seed1.json").write_text("{}\n")
    (root / "docs/results.md").write_text("# Results\n")
    (root / "jobs/step.py").write_text("STEP = 1\n")
    git(root, "init", "-q")
    git(root, "add", ".")
    git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    head = git(root, "rev-parse", "--short", "HEAD")
    assert run_stamp(root)["commit"] == head

    (root / "benchmarks/results/seed1.json").write_text('{"recall": 0.99}\n')
    (root / "docs/results.md").write_text("# Results\n\nnew\n")
    assert run_stamp(root)["commit"] == head

    (root / "jobs/step.py").write_text("STEP = 2\n")
    assert run_stamp(root)["commit"] == f"{head}+changes"
