"""Fitting the CatBoost classifier on the FEATURES matrix."""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
from catboost import CatBoostClassifier, sum_models

# selected by prequential validation on the handbook preset (benchmarks/model_selection.py): the best mean
# validation average precision over four folds, among depth 4/6/8, learning rate 0.03/0.1, class weights
# none/SqrtBalanced and 100-600 trees. The number of trees is fixed: early stopping on two validation days
# was noisy (24 trees on one split). `seeds`: how many models (random seeds 0, 1, ...) are averaged.
DEFAULT_PARAMS: dict[str, Any] = {
    "iterations": 400,
    "learning_rate": 0.03,
    "depth": 6,
    "loss_function": "Logloss",
    "random_seed": 0,
    "thread_count": 2,
    "allow_writing_files": False,
    "verbose": False,
    "seeds": 1,
}


def fit(train: pd.DataFrame, y_train: pd.Series, params: dict[str, Any] | None = None) -> CatBoostClassifier:
    """Fit with DEFAULT_PARAMS, updated by `params`. With `seeds` n > 1, fit n models with random seeds
    `random_seed` .. `random_seed` + n - 1 and return one model whose log-odds are their mean
    (catboost.sum_models), which scores, explains (SHAP) and serialises like any other."""
    settings = {**DEFAULT_PARAMS, **(params or {})}
    seeds = int(settings.pop("seeds"))
    models = [CatBoostClassifier(**{**settings, "random_seed": int(settings["random_seed"]) + i}).fit(train, y_train)
              for i in range(seeds)]
    if seeds == 1:
        return models[0]
    with tempfile.TemporaryDirectory() as folder:
        path = str(Path(folder) / "model.cbm")
        sum_models(models, weights=[1.0 / seeds] * seeds).save_model(path)
        return CatBoostClassifier().load_model(path)


def trees_per_model(model: CatBoostClassifier, params: dict[str, Any] | None = None) -> int:
    """The trees of one of the averaged models (`seeds` of them were summed into `model`)."""
    return int(model.tree_count_) // int({**DEFAULT_PARAMS, **(params or {})}["seeds"])


def score(model: CatBoostClassifier, features: pd.DataFrame) -> pd.Series:
    """The fraud probability of each row."""
    return pd.Series(model.predict_proba(features)[:, 1], index=features.index, name="score")
