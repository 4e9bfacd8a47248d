"""MLflow: the tracking store, the logged pyfunc model, and the champion/challenger registry.

The registry is the trust boundary: scoring loads models only from the configured
MLflow store (by alias or a ``models:/`` URI), and a loaded model is unpickled code.
Point ``MLFLOW_TRACKING_URI`` only at a store you control.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import tempfile
from importlib import metadata
from pathlib import Path

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.models import infer_signature

from healthscore.errors import HealthscoreError
# Models logged before they were logged as code were pickled whole and name their class
# pipelines.registry.HealthscoreModel: the name stays importable here, so they still load.
from pipelines.pyfunc import MODEL_CODE, HealthscoreModel, write_artifacts

CHAMPION, CHALLENGER = "champion", "challenger"
# What a logged model needs installed: the packages its code (CODE_PACKAGES and
# pipelines/pyfunc.py) imports, pinned to this environment's versions.
REQUIREMENTS = ("lightgbm", "scikit-learn", "pandas", "numpy", "mlflow", "pyarrow", "pydantic")
CODE_PACKAGES = ("models", "features", "healthscore")


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


def log_model(model, horizon_days: int, info: dict, example: pd.DataFrame):
    """Log the pyfunc model with its code, signature and an input example; returns the
    model info (``.model_uri``).

    The model is logged as code (:data:`pipelines.pyfunc.MODEL_CODE`), with the fitted
    estimator and the training facts as artifacts and ``pipelines/pyfunc.py``,
    ``models/``, ``features/`` and ``healthscore/`` as its code paths: it loads with
    ``mlflow.pyfunc.load_model`` in any environment built from its ``requirements.txt``,
    healthscore installed or not.

    Args:
        model: The fitted estimator (``features_``, ``log_odds``, ``scale_``, ...).
        horizon_days: The churn horizon it predicts.
        info: Training facts to carry (JSON-serialisable).
        example: Rows holding at least the model's metric columns.
    """
    X = example[model.features_].astype("float64")
    signature = infer_signature(X, HealthscoreModel(model, horizon_days, info).predict(None, X))
    with tempfile.TemporaryDirectory(prefix="healthscore-model-") as folder:
        folder = Path(folder)
        code = folder / "healthscore_model.py"
        code.write_text(MODEL_CODE, encoding="utf-8")
        return mlflow.pyfunc.log_model(
            name="model", python_model=code, artifacts=write_artifacts(folder, model, horizon_days, info),
            code_paths=_stage_code(folder / "code"), signature=signature, input_example=X.head(5),
            pip_requirements=[f"{p}=={metadata.version(p)}" for p in REQUIREMENTS],
        )


def _stage_code(folder: Path) -> list[str]:
    """The packages a loaded model imports, copied without caches: ``pipelines`` holds
    only its ``__init__`` and ``pyfunc`` (the rest of the wiring stays out of the model)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    paths = []
    for name in CODE_PACKAGES:
        source = Path(importlib.util.find_spec(name).origin).parent
        paths.append(folder / name)
        shutil.copytree(source, folder / name, ignore=ignore)
    wiring = Path(__file__).resolve().parent
    (folder / "pipelines").mkdir(parents=True)
    for module in ("__init__.py", "pyfunc.py"):
        shutil.copy2(wiring / module, folder / "pipelines" / module)
    return [str(p) for p in (*paths, folder / "pipelines")]


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

