"""MLflow: the tracking store, the logged pyfunc model, and the champion/challenger registry.

The registry is the trust boundary: scoring loads models only from the configured
MLflow store (by alias or a ``models:/`` URI), and a loaded model is unpickled code.
Point ``MLFLOW_TRACKING_URI`` only at a store you control.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from importlib import metadata
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.models import infer_signature

from healthscore.errors import HealthscoreError

CHAMPION, CHALLENGER = "champion", "challenger"
REQUIREMENTS = ("lightgbm", "scikit-learn", "pandas", "numpy", "mlflow", "pyarrow", "pydantic")


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI``, or a SQLite store ``mlflow.db`` in the working folder."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def connect(experiment: str) -> str:
    """Point MLflow at the store and the experiment; returns the experiment id.

    A new experiment keeps its artifacts next to a SQLite store (``mlartifacts/``), not
    wherever the command happens to run.
    """
    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    found = mlflow.get_experiment_by_name(experiment)
    if found is not None:
        mlflow.set_experiment(experiment)
        return found.experiment_id
    location = None
    if uri.startswith("sqlite:///"):
        location = (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts").resolve().as_uri()
    experiment_id = mlflow.create_experiment(experiment, artifact_location=location)
    mlflow.set_experiment(experiment)
    return experiment_id


class HealthscoreModel(mlflow.pyfunc.PythonModel):
    """The whole fitted pipeline as a pyfunc: metric rows in, calibrated churn odds out.

    ``predict`` takes metric-history rows (extra columns are ignored, missing metric
    columns are an error) and returns ``churn_probability``, ``churn_log_odds`` and the
    0-100 ``health_score`` on the model's own scale.
    The fitted model (``self.model``) also gives exact per-metric contributions
    (``contributions``) and carries its horizon and the training facts.
    """

    def __init__(self, model, horizon_days: int, info: dict):
        self.model = model
        self.horizon_days = horizon_days
        self.info = info

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        missing = [c for c in self.model.features_ if c not in model_input.columns]
        if missing:
            raise ValueError(f"model input lacks metric columns: {', '.join(missing[:5])}")
        X = model_input[self.model.features_].astype("float64")
        log_odds = self.model.log_odds(X)
        return pd.DataFrame({"churn_probability": 1 / (1 + np.exp(-log_odds)),
                             "churn_log_odds": log_odds,
                             "health_score": self.model.scale_.score(log_odds)},
                            index=model_input.index)


def log_model(model, horizon_days: int, info: dict, example: pd.DataFrame):
    """Log the pyfunc model with its signature and an input example; returns the model info."""
    wrapped = HealthscoreModel(model, horizon_days, info)
    X = example[model.features_].astype("float64")
    signature = infer_signature(X, wrapped.predict(None, X))
    return mlflow.pyfunc.log_model(
        name="model", python_model=wrapped, signature=signature, input_example=X.head(5),
        pip_requirements=[f"{p}=={metadata.version(p)}" for p in REQUIREMENTS],
    )


def register(model_uri: str, name: str, tags: dict[str, str]) -> str:
    """Register a logged model as a new version and alias it ``challenger``; returns the version."""
    version = mlflow.register_model(model_uri, name, tags=tags)
    MlflowClient().set_registered_model_alias(name, CHALLENGER, version.version)
    return str(version.version)


def champion(name: str):
    """The champion's model version, or None when there is none yet."""
    try:
        return MlflowClient().get_model_version_by_alias(name, CHAMPION)
    except mlflow.exceptions.MlflowException:
        return None


def promote(name: str, version: str, reason: str, by: str) -> None:
    """Move ``champion`` to ``version`` and record why and by whom on the version."""
    client = MlflowClient()
    try:
        client.get_model_version(name, version)
    except mlflow.exceptions.MlflowException:
        raise HealthscoreError(f"model {name!r} has no version {version}") from None
    client.set_registered_model_alias(name, CHAMPION, version)
    client.set_model_version_tag(name, version, "promoted_by", by)
    client.set_model_version_tag(name, version, "promotion_reason", reason)
    client.set_model_version_tag(name, version, "promoted_at", pd.Timestamp.now("UTC").isoformat())


def git_commit() -> str:
    """The source's git commit (with ``-dirty`` for uncommitted changes), or ``unknown``."""
    root = Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("-dirty" if dirty else "")


def config_hash(config) -> str:
    """A short, stable hash of the whole configuration."""
    text = json.dumps(config.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def load(uri: str):
    """The pyfunc's fitted model and its version, from the configured store only.

    Returns:
        (the :class:`HealthscoreModel` inside, a version label)
    """
    client = MlflowClient()
    try:
        loaded = mlflow.pyfunc.load_model(uri)
    except (mlflow.exceptions.MlflowException, OSError) as exc:
        raise HealthscoreError(
            f"model {uri}: not found in the MLflow store {tracking_uri()} "
            f"({str(exc).splitlines()[0][:200]}). Train one with `healthscore train`, or pass "
            "--model models:/NAME/VERSION") from None
    wrapped = loaded.unwrap_python_model()
    if not isinstance(wrapped, HealthscoreModel) or not hasattr(wrapped.model, "scale_"):
        raise HealthscoreError(f"model {uri}: not a healthscore model with a score scale; retrain it")
    version = uri
    if uri.startswith("models:/"):
        name, _, ref = uri.removeprefix("models:/").partition("@")
        if ref:
            version = str(client.get_model_version_by_alias(name, ref).version)
        else:
            version = uri.rsplit("/", 1)[-1]
    return wrapped, version
