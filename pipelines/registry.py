"""MLflow: the tracking store, the logged pyfunc model, and the champion/challenger registry.

The registry is the trust boundary: scoring loads models only from the configured
MLflow store (by alias or a ``models:/`` URI), and a loaded model is unpickled code.
Point ``MLFLOW_TRACKING_URI`` only at a store you control.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterable
from importlib import metadata
from pathlib import Path

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.data.dataset_source import DatasetSource
from mlflow.data.pandas_dataset import PandasDataset
from mlflow.models import infer_signature
from mlflow.types.utils import _infer_schema

from features.catalog import Metric, catalog
from healthscore.config import MetricsConfig
from healthscore.errors import HealthscoreError
from pipelines.io import redact
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


def log_model(model, horizon_days: int, info: dict, example: pd.DataFrame,
              metric_definition: dict | None = None):
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
        metric_definition: What the model's metrics mean (:func:`metric_fingerprint`);
            default: the one :func:`log_training_input` recorded on the active run, if any.
            Carried as ``info["metric_definition"]`` and in the MLmodel metadata, from
            which :func:`register` tags the version ``metric_fingerprint``.
    """
    definition = metric_definition or _run_metric_definition()
    model_metadata = {}
    if definition:
        definition = _restricted(definition, model.features_)
        info = {**info, "metric_definition": definition}
        model_metadata["metric_fingerprint"] = definition["fingerprint"]
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
            metadata=model_metadata or None,
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
    """Register a logged model as a new version and alias it ``challenger``; returns the version.

    The version is also tagged ``metric_fingerprint`` when the model carries one.
    """
    fingerprint = (mlflow.models.get_model_info(model_uri).metadata or {}).get("metric_fingerprint")
    if fingerprint:
        tags = {**tags, "metric_fingerprint": fingerprint}
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


# --- What a model's metrics mean -------------------------------------------------------

# The MetricsConfig fields that change what a metric column of a given name means. The
# rest are deliberately left out; a test fails when a new field is in neither list.
MEANING_SETTINGS = {
    # The fall-from-peak metrics take the peak over the snapshots of the trailing year,
    # which lie this many days apart.
    "snapshot_every_days": "the snapshots the fall-from-peak metrics take their peak over",
    # key_features_used_count_30d counts these; its description does not name them.
    "key_features": "what key_features_used_count_30d counts",
    # advanced_events_share_30d is the share of these.
    "advanced_features": "what advanced_events_share_30d measures",
    # onboarding_completed_share and onboarding_stalled_flag are against this list.
    "onboarding_milestones": "what onboarding_completed_share and onboarding_stalled_flag measure against",
    # own_<column>_latest takes the latest value no older than this.
    "account_metrics_staleness_days": "how old an own_<column>_latest value may be",
}
NOT_MEANING = {
    "history_days": "only limits how far back the snapshots go; every value as of D is the same",
    # One column per event, whose catalog description names its event: a column the
    # model uses means the same whatever else the list holds (a renamed event changes
    # that column's description, which the fingerprint covers).
    "event_types": "adds or removes per-event columns; each column's description names its event",
    "value_events": "adds or removes per-event value columns; each column's description names its event",
}
# Lists whose order changes no metric (counts, shares, membership): compared sorted.
UNORDERED = ("key_features", "advanced_features", "onboarding_milestones")
CATALOG_FIELDS = ("name", "group", "source", "needs", "description")


def metric_settings(config) -> dict:
    """The metric settings that change what a model's metric columns mean (see
    :data:`MEANING_SETTINGS`): of ``config.metrics``, or of a :class:`MetricsConfig`.

    ``history_days`` is not among them: it only limits how far back snapshots go, and a
    value as of D is the same however far back the history starts. ``event_types`` and
    ``value_events`` are not either: they add or remove whole per-event columns, and the
    description of each column names its event, so a changed column shows in the
    catalog entries that :func:`metric_fingerprint` covers.

    >>> metric_settings(MetricsConfig(key_features=("b", "a"), history_days=90))["key_features"]
    ['a', 'b']
    """
    metrics = config if isinstance(config, MetricsConfig) else config.metrics
    settings = {}
    for name in MEANING_SETTINGS:
        value = getattr(metrics, name)
        settings[name] = sorted(value) if name in UNORDERED else (
            list(value) if isinstance(value, tuple) else value)
    return settings


def metric_fingerprint(config, metrics: Iterable[Metric]) -> dict:
    """What a model's metrics mean, and a short fingerprint of it.

    Args:
        config: The config (or its :class:`MetricsConfig`) the metrics were built with.
        metrics: The catalog entries of the model's metric columns
            (:func:`features.catalog.catalog`).

    Returns:
        ``{"settings": ..., "catalog": [...], "fingerprint": "<12 hex digits>"}``: the
        settings of :func:`metric_settings`, each metric's name, group, source, needs and
        description (by name), and the sha256 of both. Equal fingerprints: the same
        columns, computed the same way.
    """
    entries = [{field: (list(value) if isinstance(value := getattr(m, field), tuple) else str(value))
                for field in CATALOG_FIELDS} for m in metrics]
    return _definition(metric_settings(config), entries)


def _definition(settings: dict, entries: list[dict]) -> dict:
    entries = sorted(entries, key=lambda e: e["name"])
    text = json.dumps({"settings": settings, "catalog": entries}, sort_keys=True)
    return {"settings": settings, "catalog": entries,
            "fingerprint": hashlib.sha256(text.encode()).hexdigest()[:12]}


def _restricted(definition: dict, names: Iterable[str]) -> dict:
    """The definition of just these metrics (a model uses some of the training data's)."""
    keep = set(names)
    return _definition(definition["settings"], [e for e in definition["catalog"] if e["name"] in keep])


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def check_fingerprint(model_info: dict, config, metrics: Iterable[Metric] | None = None,
                      label: str = "the model", warn: Callable[[str], None] = _warn) -> str | None:
    """Stop when ``config`` would compute a model's metrics differently from training.

    Compares the metric definition the model carries (``info["metric_definition"]``)
    with this config's: the settings of :func:`metric_settings`, and the catalog entry
    of every model metric that ``metrics`` defines. A metric ``metrics`` lacks is not
    compared: the data cannot build it, which the caller reports as a missing column.

    Args:
        model_info: The loaded model's ``info``.
        config: The config about to compute the metrics.
        metrics: The catalog entries available now (default: the whole catalog of
            ``config``, without bring-your-own metrics).
        label: How messages name the model.
        warn: Where a warning goes (a model that carries no definition).

    Returns:
        The model's fingerprint, or None when it carries none (then ``warn`` was called).

    Raises:
        HealthscoreError: Naming each setting (old -> new) and metric that differs.
    """
    stored = (model_info or {}).get("metric_definition")
    if not stored:
        warn(f"{label} carries no metric definition (it was logged before models recorded "
             "one), so healthscore cannot check that this config computes its metrics the "
             "way they were computed in training; retrain to record it")
        return None
    current = {m.name: m for m in (catalog(config.metrics) if metrics is None else metrics)}
    now = metric_fingerprint(config, [current[e["name"]] for e in stored["catalog"]
                                      if e["name"] in current])
    now_entries = {e["name"]: e for e in now["catalog"]}
    # Only what the model recorded: a setting newer than the model cannot be compared.
    changes = [f"metrics.{name}: {_shown(old)} -> {_shown(now['settings'].get(name))}"
               for name, old in stored["settings"].items() if now["settings"].get(name) != old]
    for entry in stored["catalog"]:
        new = now_entries.get(entry["name"])
        if new is None:
            continue
        changes += [f"metric {entry['name']} {field}: {_shown(entry.get(field))} -> {_shown(new.get(field))}"
                    for field in CATALOG_FIELDS if field in entry and entry[field] != new.get(field)]
    if changes:
        shown = "; ".join(changes[:8]) + (f"; and {len(changes) - 8} more" if len(changes) > 8 else "")
        raise HealthscoreError(
            f"{label} was trained on metrics defined differently from this config's "
            f"(fingerprint {stored['fingerprint']}, now {now['fingerprint']}): {shown}. Its "
            "scores would not mean what its training measured. Score with the config the "
            "model was trained with, or retrain it with this config")
    return stored["fingerprint"]


def _shown(value) -> str:
    return "(none)" if value is None else json.dumps(value)


def _run_metric_definition() -> dict | None:
    """The metric definition :func:`log_training_input` recorded on the active run."""
    run = mlflow.active_run()
    if run is None:
        return None
    try:
        return mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/{METRIC_DEFINITION}")
    except (mlflow.exceptions.MlflowException, OSError):
        return None


# --- Where a model's data came from ----------------------------------------------------

METRIC_DEFINITION = "data/metric_definition.json"
KEY_COLUMNS = ("account_id", "as_of_date", "churned", "label_known_at", "segment")


class TrainingObservations(PandasDataset):
    """The labelled observations a model learned from, profiled for people: rows,
    accounts, churned rows, the snapshot date range and the number of metrics."""

    @functools.cached_property
    def schema(self):
        # MLflow hints that integer columns cannot hold missing values: true of `churned`,
        # which never misses, and about model inputs, which these rows are not.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
            return _infer_schema(self.df)

    @property
    def profile(self) -> dict:
        frame = self.df
        dates = frame["as_of_date"]
        return {
            "rows": len(frame), "accounts": int(frame["account_id"].nunique()),
            "churned_rows": int(frame["churned"].sum()),
            "first_as_of_date": str(dates.min().date()) if len(frame) else None,
            "last_as_of_date": str(dates.max().date()) if len(frame) else None,
            "metrics": sum(c not in KEY_COLUMNS for c in frame.columns),
        }


class DatabaseSource(DatasetSource):
    """A database the data was read from, by its URL without the password."""

    def __init__(self, url: str):
        self.url = url

    @staticmethod
    def _get_source_type() -> str:
        return "database"

    def load(self, **kwargs):
        raise NotImplementedError("healthscore reads a database with --data URL")

    @staticmethod
    def _can_resolve(raw_source) -> bool:
        return False

    @classmethod
    def _resolve(cls, raw_source):
        raise NotImplementedError

    def to_dict(self) -> dict:
        return {"url": self.url}

    @classmethod
    def from_dict(cls, source_dict: dict):
        return cls(source_dict["url"])


def log_training_input(known: pd.DataFrame, data_dir, config=None,
                       metric_catalog: Iterable[Metric] | None = None) -> TrainingObservations:
    """Log the training observations to the active run as its ``training`` dataset.

    The dataset is named ``training observations``; its source is the data folder or
    DuckDB file (a database URL without its password), its digest a hash of every row
    and column of ``known``, its schema the columns' types, and its profile the rows,
    accounts, churned rows and snapshot date range. With ``config`` and
    ``metric_catalog``, also records what the metric columns mean
    (:func:`metric_fingerprint`, as ``data/metric_definition.json``), which
    :func:`log_model` then carries in the model.

    Args:
        known: The labelled observations (``account_id``, ``as_of_date``, ``churned`` and
            the metric columns).
        data_dir: Where the data came from: a folder, a DuckDB file or a database URL.
        config: The config the metrics were built with.
        metric_catalog: The catalog entries of the metrics the data supports.
    """
    text = str(data_dir)
    if "://" in text:
        source = DatabaseSource(redact(text))
    else:
        source = mlflow.data.sources.LocalArtifactDatasetSource(str(Path(text).resolve()))
    rows = pd.util.hash_pandas_object(known, index=False).to_numpy()
    digest = hashlib.sha256(rows.tobytes() + json.dumps(list(map(str, known.columns))).encode())
    dataset = TrainingObservations(known, source=source, targets="churned",
                                   name="training observations", digest=digest.hexdigest()[:16])
    mlflow.log_input(dataset, context="training")
    if config is not None and metric_catalog is not None:
        columns = set(known.columns)
        mlflow.log_dict(metric_fingerprint(config, [m for m in metric_catalog if m.name in columns]),
                        METRIC_DEFINITION)
    return dataset


# --- The MLflow UI --------------------------------------------------------------------

def runs_urls(base_url: str, experiments: Iterable[str]) -> dict[str, str | None]:
    """Experiment name -> the URL of its runs table in the MLflow UI at ``base_url``
    (None when the store has no such experiment yet). Reads the store; creates nothing.

    MLflow 3.17's UI routes with a hash router, and opens an experiment in its GenAI
    view (traces). ``#/experiments/<id>/runs`` is the runs table, and
    ``workflowType=machine_learning`` switches the UI to its model-training view.
    """
    names = list(experiments)
    uri = tracking_uri()
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        return dict.fromkeys(names)
    client = MlflowClient(uri)
    found = {name: client.get_experiment_by_name(name) for name in names}
    return {name: None if e is None else
            f"{base_url.rstrip('/')}/#/experiments/{e.experiment_id}/runs?workflowType=machine_learning"
            for name, e in found.items()}
