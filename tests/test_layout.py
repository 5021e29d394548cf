"""The folders of jobs/ are its layers: a sub-package imports only those below it (no cycle, nothing
upward), and the packages outside jobs/ never import it. What each holds is in its __init__.py."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# bottom to top; two on one level may not import each other
LAYERS = [("core",), ("simulation", "dev"), ("batch",), ("stream",), ("kafka_tools",), ("desk",), ("replay",)]
LEVEL = {name: level for level, names in enumerate(LAYERS) for name in names}


def imported(path: Path) -> set[str]:
    """Every module `path` imports, at its top or inside a function."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_every_module_of_jobs_lives_in_a_layer():
    loose = sorted(p.name for p in (ROOT / "jobs").glob("*.py") if p.name not in ("__init__.py", "cli.py"))
    assert loose == [], "jobs/ holds only cli.py (the command line) and its sub-packages"
    packages = sorted(p.name for p in (ROOT / "jobs").iterdir() if (p / "__init__.py").exists())
    assert packages == sorted(LEVEL)
    for name in packages:
        assert ast.get_docstring(ast.parse((ROOT / "jobs" / name / "__init__.py").read_text())), name


def test_a_layer_imports_only_the_layers_below_it():
    upward = []
    for path in sorted((ROOT / "jobs").glob("*/*.py")):
        own = path.parent.name
        for module in imported(path):
            parts = module.split(".")
            if (
                parts[0] == "jobs"
                and len(parts) > 1
                and parts[1] in LEVEL
                and parts[1] != own
                and LEVEL[parts[1]] >= LEVEL[own]
            ):
                upward.append(f"{path.relative_to(ROOT)} imports {module}")
    assert upward == []


def test_features_and_models_do_not_import_jobs():
    found = [
        f"{p.relative_to(ROOT)} imports {m}"
        for top in ("features", "models")
        for p in sorted((ROOT / top).rglob("*.py"))
        for m in imported(p)
        if m.split(".")[0] == "jobs"
    ]
    assert found == []
