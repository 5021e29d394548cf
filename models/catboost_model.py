"""Fitting the CatBoost classifier on the FEATURES matrix."""
from __future__ import annotations

from typing import Any

import pandas as pd
from catboost import CatBoostClassifier

DEFAULT_PARAMS: dict[str, Any] = {
    "iterations": 600,
    "learning_rate": 0.05,
    "depth": 6,
    "loss_function": "Logloss",
    "eval_metric": "PRAUC",
    "auto_class_weights": "SqrtBalanced",  # frauds are ~1%: weigh them up, but only by the square root
    "random_seed": 0,
    "thread_count": 2,
    "allow_writing_files": False,
    "verbose": False,
}


def fit(train: pd.DataFrame, y_train: pd.Series, val: pd.DataFrame | None = None, y_val: pd.Series | None = None,
        params: dict[str, Any] | None = None) -> CatBoostClassifier:
    """Fit; with validation data, stop early on PR AUC and keep the best iteration."""
    model = CatBoostClassifier(**{**DEFAULT_PARAMS, **(params or {})})
    if val is not None:
        model.fit(train, y_train, eval_set=(val, y_val), early_stopping_rounds=100, use_best_model=True)
    else:
        model.fit(train, y_train)
    return model


def score(model: CatBoostClassifier, features: pd.DataFrame) -> pd.Series:
    """The fraud probability of each row."""
    return pd.Series(model.predict_proba(features)[:, 1], index=features.index, name="score")
