"""MLflow: the experiment, logging a trained model, and the `fraud-detector` registry with its aliases."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from jobs.config import Config
from jobs.errors import FraudError


def connect(cfg: Config) -> str:
    """Point MLflow at the configured tracking store (creating a local SQLite folder); return the experiment id."""
    import mlflow

    uri = cfg.path("mlflow.tracking_uri")
    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    name = str(cfg.get("mlflow.experiment"))
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return str(experiment.experiment_id)
    location = cfg.path("mlflow.artifact_location")
    if "://" not in location:
        Path(location).mkdir(parents=True, exist_ok=True)
        location = Path(location).as_uri()
    return str(mlflow.create_experiment(name, artifact_location=location))


def model_uri(cfg: Config, model: str) -> str:
    """`champion` / `challenger` (aliases) or a version number -> a models:/ URI."""
    name = str(cfg.get("mlflow.registered_model"))
    return f"models:/{name}/{model}" if str(model).isdigit() else f"models:/{name}@{model}"


def resolve(cfg: Config, model: str) -> tuple[str, dict[str, str]]:
    """A version number or alias -> (version, its tags); metadata only, cheap enough for every micro-batch."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    connect(cfg)
    client, name = MlflowClient(), str(cfg.get("mlflow.registered_model"))
    try:
        version = client.get_model_version(name, model) if str(model).isdigit() else \
            client.get_model_version_by_alias(name, model)
    except MlflowException as exc:
        raise FraudError(f"--model {model}: no such version or alias of registered model {name!r} in "
                         f"{cfg.path('mlflow.tracking_uri')}; train one with `fraud train`") from exc
    return str(version.version), dict(version.tags)


def load(cfg: Config, model: str) -> tuple[Any, dict[str, str], str]:
    """Load a registered model: (CatBoost model, its version's tags, its version)."""
    import mlflow

    version, tags = resolve(cfg, model)
    name = str(cfg.get("mlflow.registered_model"))
    return mlflow.catboost.load_model(f"models:/{name}/{version}"), tags, version
