"""Fitting the CatBoost classifier on the FEATURES matrix, scoring with it, and its exact SHAP values at the
cost of a table lookup."""

from __future__ import annotations

import itertools
import json
import tempfile
import threading
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from catboost import CatBoost, CatBoostClassifier, Pool

# selected by prequential validation on the handbook preset (benchmarks/model_selection.py): the best mean
# validation average precision over four folds, among depth 4/6/8, learning rate 0.03/0.1, class weights
# none/SqrtBalanced and 100-600 trees (validation AP 0.6729, benchmarks/results/model_selection.json). The
# number of trees is fixed: early stopping on two validation days was noisy (24 trees on one split).
DEFAULT_PARAMS: dict[str, Any] = {
    "iterations": 200,
    "learning_rate": 0.03,
    "depth": 8,
    "loss_function": "Logloss",
    "random_seed": 0,
    "thread_count": 2,
    "allow_writing_files": False,
    "verbose": False,
}


def fit(train: pd.DataFrame, y_train: pd.Series, params: dict[str, Any] | None = None) -> CatBoostClassifier:
    """Fit with DEFAULT_PARAMS, updated by `params`."""
    return CatBoostClassifier(**{**DEFAULT_PARAMS, **(params or {})}).fit(train, y_train)


def score(model: CatBoostClassifier, features: pd.DataFrame) -> pd.Series:
    """The fraud probability of each row."""
    return pd.Series(model.predict_proba(features)[:, 1], index=features.index, name="score")


def shap_values(model: CatBoost, features: pd.DataFrame) -> np.ndarray:
    """CatBoost's exact SHAP values of each row (rows x columns of `features`, without the expected value).

    In an oblivious tree every row that lands in a leaf has the same SHAP values, so a model's values are
    a table of (tree, leaf) -> contributions, built once per model (`LeafTable`); a row's values are then
    the sum of its leaves' rows. CatBoost's own call builds that table on every call, or walks each row
    through each tree: about a second for a micro-batch's alerts on 200 trees of depth 8, against a few
    milliseconds here. Models with other than float splits get CatBoost's own call."""
    table = LeafTable.of(model)
    if table is None:
        pool = Pool(features, cat_features=model.get_cat_feature_indices())
        shap = model.get_feature_importance(pool, type="ShapValues", thread_count=-1)
        return np.asarray(shap)[:, :-1]
    return table.values(model, features)


class LeafTable:
    """The SHAP values of every leaf of every tree of one model, computed by CatBoost itself: for each tree,
    one row per reachable leaf (each of the tree's features set at or just above each of its borders in
    that tree) scored by the model cut down to that tree."""

    # by model object (CatBoost models compare by content and cannot be hashed): id -> (the model, its table)
    _tables: dict[int, tuple[weakref.ref[CatBoost], LeafTable | None]] = {}
    _lock = threading.Lock()

    def __init__(self, leaves: np.ndarray) -> None:
        self.leaves = leaves  # trees x leaves x features

    @classmethod
    def of(cls, model: CatBoost) -> LeafTable | None:
        """The model's table, built at its first call (None if the model has other than float splits)."""
        with cls._lock:
            for key in [k for k, (ref, _) in cls._tables.items() if ref() is None]:
                del cls._tables[key]
            kept = cls._tables.get(id(model))
            if kept is None or kept[0]() is not model:
                kept = cls._tables[id(model)] = (weakref.ref(model), cls.build(model))
            return kept[1]

    @classmethod
    def build(cls, model: CatBoost) -> LeafTable | None:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "model.json"
            model.save_model(str(path), format="json")
            dump = json.loads(path.read_text())
        trees = dump.get("oblivious_trees")
        float_features = dump["features_info"].get("float_features", [])
        if not trees or dump["features_info"].get("categorical_features"):
            return None
        column = {f["feature_index"]: f["flat_feature_index"] for f in float_features}
        width = len(model.feature_names_)
        leaves = np.zeros((len(trees), max(len(t["leaf_values"]) for t in trees), width))
        for index, tree in enumerate(trees):
            if any(split.get("split_type") != "FloatFeature" for split in tree["splits"]):
                return None
            borders: dict[int, set[np.float32]] = {}
            for split in tree["splits"]:
                borders.setdefault(column[split["float_feature_index"]], set()).add(np.float32(split["border"]))
            used = sorted(borders)
            # a float split is `value > border` (in float32): each border itself, and the next float above the
            # highest, reach every side of every split
            choices = [[*sorted(borders[c]), np.nextafter(max(borders[c]), np.float32(np.inf))] for c in used]
            rows = np.zeros((int(np.prod([len(c) for c in choices])), width))
            rows[:, used] = list(itertools.product(*choices))
            one = model.copy()
            one.shrink(ntree_end=index + 1, ntree_start=index)
            pool = Pool(pd.DataFrame(rows, columns=model.feature_names_))
            shap = np.asarray(one.get_feature_importance(pool, type="ShapValues", thread_count=1))[:, :-1]
            leaves[index, np.asarray(one.calc_leaf_indexes(pool))[:, 0]] = shap
        return cls(leaves)

    def values(self, model: CatBoost, features: pd.DataFrame) -> np.ndarray:
        """The rows' SHAP values: the sum over trees of their leaves' values."""
        if features.empty:
            return np.zeros((0, self.leaves.shape[2]))
        landed = np.asarray(model.calc_leaf_indexes(Pool(features), thread_count=1))  # rows x trees
        return self.leaves[np.arange(self.leaves.shape[0]), landed].sum(axis=1)
