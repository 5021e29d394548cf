"""Run great-expectations on a Spark DataFrame with the repo's suite; keep the result JSON and HTML data docs."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame

from jobs.batch.quality import Rule


def validate(df: DataFrame, suite_name: str, rules: list[Rule], out_dir: Path) -> dict[str, Any]:
    """Validate `df` with the rules; write `validation.json` and `data_docs/` into `out_dir` (a local folder).

    Returns:
        {"success": bool, "element_count": n, "unexpected": {rule name: count}}.
    """
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    project = Path(tempfile.mkdtemp(prefix="fraud-gx-"))
    try:
        ctx = gx.get_context(mode="file", project_root_dir=str(project))
        ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
        batch_def = (
            ctx.data_sources.add_spark("spark")
            .add_dataframe_asset(suite_name)
            .add_batch_definition_whole_dataframe("batch")
        )
        suite = ctx.suites.add(
            gx.ExpectationSuite(
                name=suite_name,
                expectations=[
                    ExpectationConfiguration(
                        type=r.type, kwargs=r.kwargs, meta={"rule": r.name, "description": r.description}
                    )
                    for r in rules
                ],
            )
        )
        definition = ctx.validation_definitions.add(
            gx.ValidationDefinition(name=suite_name, data=batch_def, suite=suite)
        )
        checkpoint = ctx.checkpoints.add(
            gx.Checkpoint(
                name=suite_name,
                validation_definitions=[definition],
                actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs")],
                result_format={"result_format": "SUMMARY"},
            )
        )
        result = checkpoint.run(batch_parameters={"dataframe": df})
        run = next(iter(result.run_results.values()))
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "validation.json").write_text(json.dumps(run.to_json_dict(), indent=2, default=str))
        docs = project / "gx" / "uncommitted" / "data_docs" / "local_site"
        if docs.is_dir():
            shutil.copytree(docs, out_dir / "data_docs", dirs_exist_ok=True)
        unexpected: dict[str, int] = {}
        element_count = 0
        for r in run.results:
            assert r.expectation_config is not None
            name = r.expectation_config.meta["rule"]
            unexpected[name] = int(r.result.get("unexpected_count") or 0)
            element_count = max(element_count, int(r.result.get("element_count") or 0))
        return {"success": bool(run.success), "element_count": element_count, "unexpected": unexpected}
    finally:
        shutil.rmtree(project, ignore_errors=True)
