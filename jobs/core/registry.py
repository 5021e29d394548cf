"""MLflow: the experiment, logging a trained model, and the `fraud-detector` registry with its aliases."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from jobs.core.config import Config
from jobs.core.errors import FraudError

_REACHED: set[str] = set()  # PostgreSQL tracking stores this process has logged in to


def check_database(uri: str) -> None:
    """Log in to a PostgreSQL tracking store once, with a 10-second limit, and fail with a clear error if that
    fails: MLflow itself retries a refused login for minutes before it says why. The password comes from
    PGPASSWORD (or ~/.pgpass), never from the URI in conf/."""
    if not uri.startswith("postgresql") or uri in _REACHED:
        return
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(uri)
    try:
        psycopg.connect(
            host=url.host,
            port=url.port or 5432,
            dbname=url.database,
            user=url.username,
            password=url.password,
            connect_timeout=10,
        ).close()
    except psycopg.OperationalError as exc:
        reason = " ".join(str(exc).split())
        raise FraudError(
            f"mlflow.tracking_uri: could not log in to {url.render_as_string(hide_password=True)}: "
            f"{reason} (the password is read from PGPASSWORD or ~/.pgpass)"
        ) from None
    _REACHED.add(uri)


def connect(cfg: Config) -> str:
    """Point MLflow at the configured tracking store (creating a local SQLite folder); return the experiment id."""
    import mlflow

    uri = cfg.path("mlflow.tracking_uri")
    if cfg.get("s3.endpoint"):  # s3:// artifacts on a non-AWS S3 API: boto3 reads the endpoint from here
        os.environ.setdefault("MLFLOW_S3_ENDPOINT_URL", str(cfg.get("s3.endpoint")))
    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    check_database(uri)
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
        version = (
            client.get_model_version(name, model)
            if str(model).isdigit()
            else client.get_model_version_by_alias(name, model)
        )
    except MlflowException as exc:
        raise FraudError(
            f"--model {model}: no such version or alias of registered model {name!r} in "
            f"{cfg.path('mlflow.tracking_uri')}; train one with `fraud train`"
        ) from exc
    return str(version.version), dict(version.tags)


def load(cfg: Config, model: str) -> tuple[Any, dict[str, str], str]:
    """Load a registered model: (CatBoost model, its version's tags, its version)."""
    import mlflow

    version, tags = resolve(cfg, model)
    name = str(cfg.get("mlflow.registered_model"))
    return mlflow.catboost.load_model(f"models:/{name}/{version}"), tags, version
