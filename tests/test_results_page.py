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
        for row in table.rows_in(results_page.RESULTS):
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


def test_the_seeds_table_has_a_row_a_seed_from_its_own_file_and_their_spread(tmp_path):
    for path in results_page.RESULTS.glob("*.json"):
        (tmp_path / path.name).write_text(path.read_text())
    week = {"recall": 0.99, "fpr": 0.04, "meets_requirement": True}
    run = {"commit": "abc1234", "date": "2026-12-06"}
    for seed in (1, 2):
        one = {
            "command": f"fraud backtest --seed {seed}",
            "weeks": {"week_1": week},
            "settled_weeks": None,
            "days": {"2019-09-26": {"recall": 0.87, "fpr": 0.025}, "2019-09-27": week},
            "loop": {"seconds_per_step": 5.25},
            "model_versions_by_day": {"2019-09-26": {"1": 900}, "2019-09-27": {"1": 100, "2": 800}},
            "run": run,
        }
        (tmp_path / f"{results_page.SEEDS_FILE[:-5]}_seed{seed}.json").write_text(json.dumps(one))
    spread = {
        "command": "fraud backtest --seeds 1-2",
        "run": run,
        "seeds": {
            str(seed): {"file": f"{results_page.SEEDS_FILE[:-5]}_seed{seed}.json", "settled_weeks": None}
            for seed in (1, 2)
        },
        "weeks": {"week_1": {"median_recall": 0.985, "worst_recall": 0.975, "highest_fpr": 0.045}},
        "seeds_meeting_it_every_week": 1,
        "of_seeds": 2,
    }
    (tmp_path / results_page.SEEDS_FILE).write_text(json.dumps(spread))
    page = results_page.render(tmp_path)
    assert "| seed 1 | 0.9900 / 0.0400 |" in page and "| seed 2 |" in page
    assert "| median (worst) recall / highest FPR | 0.9850 (0.9750) / 0.0450 |" in page and "1 of 2 seeds" in page
    # the first replayed days of each report seed, its seconds a step and the days a new model started
    assert "| seed 1 | 0.8700 / 0.0250 | 0.9900 / 0.0400 |  | 5.25 | day 2: 0.9900 |" in page
