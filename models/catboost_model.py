"""Fitting the CatBoost classifier on the FEATURES matrix."""

from __future__ import annotations

from typing import Any

import pandas as pd
from catboost import CatBoostClassifier

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
