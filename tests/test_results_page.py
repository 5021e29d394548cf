"""docs/results.md is what benchmarks/results_page.py makes of benchmarks/results/*.json: a figure on the page
cannot drift from its file."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import results_page  # noqa: E402


def test_the_committed_results_page_is_what_the_results_files_give():
    assert results_page.PAGE.read_text() == results_page.render(), "docs/results.md is stale: run `make results`"


def test_every_row_names_a_results_file_with_its_command_commit_and_day():
    for table in results_page.TABLES:
        for row in table.rows:
            d = json.loads((results_page.RESULTS / row.file).read_text())
            assert results_page.command_of(d).strip(), row.file
            assert d["run"]["commit"] and d["run"]["date"], row.file


def test_a_changed_figure_changes_the_page(tmp_path):
    for path in results_page.RESULTS.glob("*.json"):
        (tmp_path / path.name).write_text(path.read_text())
    changed = json.loads((tmp_path / "soak.json").read_text())
    changed["tables"]["scored_twice"] = 12_345
    (tmp_path / "soak.json").write_text(json.dumps(changed))
    assert "| 12,345 |" in results_page.render(tmp_path) and results_page.render(tmp_path) != results_page.render()
