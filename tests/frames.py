"""Readable whole-frame comparison (the idea of chispa's assert_df_equality, without the dependency)."""

from __future__ import annotations

from typing import Any

from pyspark.sql import DataFrame


def _sorted(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda r: tuple((k, repr(v)) for k, v in sorted(r.items())))


def assert_frame_equal(
    actual: DataFrame, expected: DataFrame | list[dict[str, Any]], check_schema: bool = True
) -> None:
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


def assert_features_match(actual: Any, expected: Any, key: str, columns: list[str], tolerance: float = 1e-6) -> None:
    """Assert that two pandas frames give every `key` the same values of `columns`, within `tolerance`, with
    null a value of its own: a null on one side only is a difference (a stream emitting a null feature must
    fail a parity test, not vanish in a max of differences). Both sides must hold the same keys."""
    import numpy as np

    merged = actual.merge(expected, on=key, how="outer", suffixes=("", "_expected"), indicator=True)
    one_sided = merged[merged["_merge"] != "both"]
    assert one_sided.empty, (
        f"{len(one_sided)} {key}s on one side only, e.g. {one_sided[[key, '_merge']].head(5).values.tolist()}"
    )
    wrong: list[str] = []
    for name in columns:
        a, e = merged[name].astype(float).to_numpy(), merged[f"{name}_expected"].astype(float).to_numpy()
        differ = (np.isnan(a) != np.isnan(e)) | (~np.isnan(a) & ~np.isnan(e) & (np.abs(a - e) > tolerance))
        if differ.any():
            first = int(np.flatnonzero(differ)[0])
            wrong.append(
                f"{name}: {int(differ.sum())} rows, e.g. {key} {merged[key].iloc[first]}: {a[first]} "
                f"against {e[first]} expected"
            )
    assert not wrong, "features differ:\n  " + "\n  ".join(wrong)
