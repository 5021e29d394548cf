"""Readable whole-frame comparison (the idea of chispa's assert_df_equality, without the dependency)."""
from __future__ import annotations

from typing import Any

from pyspark.sql import DataFrame


def _sorted(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda r: tuple((k, repr(v)) for k, v in sorted(r.items())))


def assert_frame_equal(actual: DataFrame, expected: DataFrame | list[dict[str, Any]],
                       check_schema: bool = True) -> None:
    """Assert that two frames hold the same rows, order ignored (and, for two DataFrames, the same schema).
    On failure, show the rows that differ rather than only the counts."""
    if isinstance(expected, DataFrame):
        if check_schema:
            a = [(f.name, f.dataType.simpleString()) for f in actual.schema.fields]
            e = [(f.name, f.dataType.simpleString()) for f in expected.schema.fields]
            assert a == e, f"schemas differ:\n  actual:   {a}\n  expected: {e}"
        expected = [r.asDict(recursive=True) for r in expected.collect()]
    actual_rows = _sorted([r.asDict(recursive=True) for r in actual.collect()])
    expected_rows = _sorted(list(expected))
    if actual_rows != expected_rows:
        missing = [r for r in expected_rows if r not in actual_rows]
        extra = [r for r in actual_rows if r not in expected_rows]
        raise AssertionError(
            f"frames differ ({len(actual_rows)} actual rows, {len(expected_rows)} expected)\n"
            f"  expected but not found: {missing[:10]}\n  found but not expected: {extra[:10]}"
        )
