"""What a logged model carries: its code, its metric definition and its training data's
lineage, against real MLflow SQLite stores in tmp_path. Plus the MLflow UI's runs links."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from features.catalog import available_columns, catalog
from healthscore.config import Config, MetricsConfig
from healthscore.errors import HealthscoreError
from models.churn_model import CalibratedLightGBM
from pipelines import registry
from pipelines.cli import app

CONFIG = Config()
# Real catalog metrics, so the model's features have catalog entries.
FEATURES = ["active_days_count_30d", "tickets_count_30d", "key_features_used_count_30d",
            "key_feature_create_report_adoption_30d", "event_login_count_30d",
            # The contract calendar every real model has: its churn probability needs it.
            "renewal_days_to_next", "term_length_days_current"]


def observations(accounts: int = 30, weeks: int = 12, seed: int = 0) -> pd.DataFrame:
    """A small labelled observation table: churn falls with activity."""
    rng = np.random.default_rng(seed)
    keys = pd.MultiIndex.from_product(
        [[f"a{i}" for i in range(accounts)], pd.date_range("2025-01-06", periods=weeks, freq="7D")],
        names=["account_id", "as_of_date"]).to_frame(index=False)
    n = len(keys)
    metrics = pd.DataFrame({name: rng.poisson(5, n).astype("float64") for name in FEATURES})
    metrics["term_length_days_current"] = rng.choice([30.0, 365.0], n)
    metrics["renewal_days_to_next"] = np.ceil(rng.random(n) * metrics["term_length_days_current"])
    risk = 1 / (1 + np.exp(0.6 * metrics["active_days_count_30d"] - 2.5))
    known = pd.concat([keys, metrics], axis=1)
    known["as_of_date"] = known["as_of_date"].astype("datetime64[us]")
    known["churned"] = (rng.random(n) < risk).astype(int)
    return known


def fit(known: pd.DataFrame) -> CalibratedLightGBM:
    return CalibratedLightGBM(params={"n_estimators": 40, "min_child_samples": 10},
                              calibration_days=21).fit(known[FEATURES], known["churned"],
                                                       known["as_of_date"])


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """One train-like run in its own store: training input, model, registered version.

    Returns (store root, run id, version, the loaded pyfunc wrapper, the training rows,
    the model's catalog entries)."""
    root = tmp_path_factory.mktemp("registry")
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    known = observations()
    model = fit(known)
    data_dir = root / "data"
    data_dir.mkdir()
    with mlflow.start_run(experiment_id=registry.connect("test")) as run:
        registry.log_training_input(known, data_dir, CONFIG, catalog(CONFIG.metrics))
        info = registry.log_model(model, 90, {"as_of": "2025-03-31"}, known)
    version = registry.register(info.model_uri, "hs-test", {"data_as_of": "2025-03-31"})
    wrapped, _ = registry.load(f"models:/hs-test/{version}")
    entries = [m for m in catalog(CONFIG.metrics) if m.name in FEATURES]
    yield root, run.info.run_id, version, wrapped, known, entries
    mp.undo()


def test_every_metric_setting_is_decided_on():
    """A new MetricsConfig field must be classed as changing what metrics mean or not."""
    fields = set(MetricsConfig.model_fields)
    assert fields == set(registry.MEANING_SETTINGS) | set(registry.NOT_MEANING)
    assert not set(registry.MEANING_SETTINGS) & set(registry.NOT_MEANING)


def test_the_model_and_its_version_carry_the_metric_fingerprint(logged):
    root, _, version, wrapped, _, entries = logged
    definition = wrapped.info["metric_definition"]
    expected = registry.metric_fingerprint(CONFIG, entries)
    assert definition == expected and len(definition["fingerprint"]) == 12
    # Only the model's own metrics, each with its catalog entry.
    assert [e["name"] for e in definition["catalog"]] == sorted(FEATURES)
    assert definition["catalog"][0] == {
        "name": "active_days_count_30d", "group": "frequency", "source": "events", "needs": [],
        "description": "Days with any product usage in the last 30 days"}
    assert definition["settings"]["key_features"] == sorted(CONFIG.metrics.key_features)
    assert "history_days" not in definition["settings"]
    tags = MlflowClient().get_model_version("hs-test", version).tags
    assert tags["metric_fingerprint"] == definition["fingerprint"]
    assert wrapped.info["as_of"] == "2025-03-31" and wrapped.horizon_days == 90


def test_the_fingerprint_changes_with_what_metrics_mean_only(logged):
    *_, entries = logged
    base = registry.metric_fingerprint(CONFIG, entries)["fingerprint"]

    def fingerprint(metrics=entries, **settings) -> str:
        config = Config(metrics=CONFIG.metrics.model_copy(update=settings))
        return registry.metric_fingerprint(config, metrics)["fingerprint"]

    assert fingerprint(history_days=120) == base
    assert fingerprint(key_features=CONFIG.metrics.key_features[::-1]) == base  # order: same counts
    assert fingerprint(event_types=(*CONFIG.metrics.event_types, "new_event")) == base
    assert fingerprint(key_features=("create_report",)) != base
    assert fingerprint(snapshot_every_days=14) != base
    assert fingerprint(account_metrics_staleness_days=10) != base
    changed = [dataclasses.replace(m, description=m.description + " (redefined)")
               if m.name == "tickets_count_30d" else m for m in entries]
    assert fingerprint(changed) != base


def test_scoring_with_the_training_config_passes_the_check(logged):
    *_, wrapped, _, _ = logged
    fingerprint = wrapped.info["metric_definition"]["fingerprint"]
    assert registry.check_fingerprint(wrapped.info, CONFIG) == fingerprint
    # Settings that do not change what the model's metrics mean.
    other = Config(metrics=CONFIG.metrics.model_copy(update={
        "history_days": 90, "event_types": (*CONFIG.metrics.event_types, "new_event"),
        "key_features": CONFIG.metrics.key_features[::-1]}))
    assert registry.check_fingerprint(wrapped.info, other) == fingerprint


def test_a_config_that_changes_what_metrics_mean_is_a_clear_error(logged):
    *_, wrapped, _, _ = logged
    other = Config(metrics=CONFIG.metrics.model_copy(update={
        "key_features": ("create_report", "run_workflow"), "snapshot_every_days": 14}))
    with pytest.raises(HealthscoreError) as error:
        registry.check_fingerprint(wrapped.info, other, label="model v1")
    message = str(error.value)
    assert message.startswith("model v1 was trained on metrics defined differently")
    assert "metrics.snapshot_every_days: 7 -> 14" in message
    assert ('metrics.key_features: ["create_report", "export_data", "run_workflow", '
            '"share_dashboard"] -> ["create_report", "run_workflow"]') in message
    assert "Score with the config the model was trained with, or retrain" in message
    assert "history_days" not in message


def test_a_redefined_metric_is_a_clear_error(logged):
    """A catalog entry that changed since training (new code), with the same config."""
    *_, wrapped, _, _ = logged
    now = [dataclasses.replace(m, description="Tickets opened in the last 28 days")
           if m.name == "tickets_count_30d" else m for m in catalog(CONFIG.metrics)]
    with pytest.raises(HealthscoreError, match=r'metric tickets_count_30d description: '
                       r'"Support tickets opened in the last 30 days" -> "Tickets opened in the last 28 days"'):
        registry.check_fingerprint(wrapped.info, CONFIG, now)
    # A metric the data cannot build is not a redefinition (scoring reports it as missing).
    present = [m for m in catalog(CONFIG.metrics) if m.name != "tickets_count_30d"]
    assert registry.check_fingerprint(wrapped.info, CONFIG, present)


def test_a_model_without_a_fingerprint_only_warns(logged):
    warnings = []
    assert registry.check_fingerprint({"as_of": "x"}, CONFIG, warn=warnings.append) is None
    assert len(warnings) == 1 and "carries no metric definition" in warnings[0]


def test_the_training_run_records_its_dataset(logged):
    root, run_id, _, _, known, _ = logged
    inputs = MlflowClient().get_run(run_id).inputs.dataset_inputs
    assert len(inputs) == 1
    dataset, tags = inputs[0].dataset, {t.key: t.value for t in inputs[0].tags}
    assert tags["mlflow.data.context"] == "training"
    assert dataset.name == "training observations" and dataset.source_type == "local"
    assert str((root / "data").resolve()) in dataset.source
    assert json.loads(dataset.profile) == {
        "rows": 360, "accounts": 30, "churned_rows": int(known["churned"].sum()),
        "first_as_of_date": "2025-01-06", "last_as_of_date": "2025-03-24", "metrics": len(FEATURES)}
    assert '"name": "churned"' in dataset.schema and '"name": "account_id"' in dataset.schema
    # The digest is the data's: one changed value changes it, the same rows keep it.
    with mlflow.start_run(experiment_id=registry.connect("test")) as run:
        registry.log_training_input(known, root / "data")
        changed = known.copy()
        changed.loc[0, "tickets_count_30d"] += 1
        registry.log_training_input(changed, root / "data")
    digests = [d.dataset.digest for d in MlflowClient().get_run(run.info.run_id).inputs.dataset_inputs]
    assert dataset.digest in digests and len(set(digests)) == 2


def test_a_database_source_is_logged_without_its_password(logged):
    # Other rows: MLflow keeps one dataset per name and digest in an experiment.
    with mlflow.start_run(experiment_id=registry.connect("test")) as run:
        registry.log_training_input(observations(seed=5), "postgres://cs:secret@db.internal:5432/crm")
    dataset = MlflowClient().get_run(run.info.run_id).inputs.dataset_inputs[0].dataset
    assert dataset.source_type == "database"
    assert "secret" not in dataset.source and "postgres://cs:***@db.internal:5432/crm" in dataset.source


def test_a_model_is_logged_as_code_without_the_cloudpickle_warning(logged, caplog):
    root, *_ = logged
    known = observations(seed=1)
    model = fit(known)
    with caplog.at_level(logging.WARNING, logger="mlflow"):
        with mlflow.start_run(experiment_id=registry.connect("test")):
            info = registry.log_model(model, 90, {}, known)
    assert not [r for r in caplog.records if "cloudpickle" in r.getMessage().lower()]
    local = Path(mlflow.artifacts.download_artifacts(info.model_uri, dst_path=str(root / "dl")))
    assert (local / "code" / "models" / "churn_model.py").is_file()
    assert (local / "code" / "pipelines" / "pyfunc.py").is_file()
    assert not (local / "code" / "pipelines" / "score.py").exists()
    assert not list(local.rglob("__pycache__"))
    assert not (local / "python_model.pkl").exists()  # nothing pickled whole
    # Logged without a training input: no metric definition to carry, so no fingerprint.
    assert "metric_definition" not in mlflow.pyfunc.load_model(info.model_uri).unwrap_python_model().info


def test_pyfunc_outputs_come_from_the_estimator(logged):
    *_, wrapped, known, _ = logged
    rows = known.sample(20, random_state=0)
    out = wrapped.predict(None, rows[["as_of_date", "account_id", *FEATURES[::-1]]])
    model = wrapped.model
    np.testing.assert_array_equal(out["churn_probability"], model.churn_probability(rows[FEATURES]))
    np.testing.assert_array_equal(out["renewal_risk"], model.renewal_risk(rows[FEATURES]))
    np.testing.assert_array_equal(out["renewal_log_odds"], model.log_odds(rows[FEATURES]))
    np.testing.assert_array_equal(out["health_score"], model.health_score(rows[FEATURES]))
    assert list(out.index) == list(rows.index)


# --- scoring: the check in `score` on the shared demo book -------------------------------

@pytest.fixture(scope="module")
def book_models(scoring_book, tmp_path_factory):
    """The shared scoring book's fitted model, logged again in a store of its own: as
    version 1 with the metric definition of the book's data, and as version 2 the way
    models were logged before they carried one (pickled whole)."""
    from pipelines.features import own_columns_of
    from pipelines.validate import load_data_folder

    root, data, as_of = scoring_book
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    registry.connect("healthscore")
    wrapped, _ = registry.load("models:/healthscore@champion")
    store = tmp_path_factory.mktemp("book-models")
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store / 'mlflow.db'}")
    tables = load_data_folder(data)
    metrics = catalog(CONFIG.metrics, available_columns(tables), own_columns_of(tables))
    model = wrapped.model
    rows = pd.DataFrame(np.zeros((3, len(model.features_))), columns=model.features_)
    with mlflow.start_run(experiment_id=registry.connect("healthscore")):
        definition = registry.metric_fingerprint(CONFIG, [m for m in metrics if m.name in model.features_])
        logged = registry.log_model(model, 90, {}, rows, metric_definition=definition)
        old = mlflow.pyfunc.log_model(name="old", python_model=registry.HealthscoreModel(model, 90, {}),
                                      pip_requirements=["mlflow"])
    assert registry.register(logged.model_uri, "book", {}) == "1"
    assert registry.register(old.model_uri, "book", {}) == "2"
    yield store, data, pd.Timestamp(as_of).date()
    mp.undo()


def test_score_checks_the_models_metric_definition(book_models, tmp_path, capsys):
    from pipelines.score import score

    store, data, as_of = book_models
    result = score(data, as_of, CONFIG, tmp_path / "s.csv", model_uri="models:/book/1",
                   progress=lambda m: None)
    assert len(result.scores) > 100 and "warning" not in capsys.readouterr().err
    other = Config(metrics=CONFIG.metrics.model_copy(update={"onboarding_milestones": ("kickoff", "go_live")}))
    with pytest.raises(HealthscoreError, match=r"model models:/book/1 \(version 1\) was trained on metrics "
                       r"defined differently.*metrics.onboarding_milestones: \["):
        score(data, as_of, other, tmp_path / "t.csv", model_uri="models:/book/1", progress=lambda m: None)
    assert not (tmp_path / "t.csv").exists()


def test_score_warns_on_a_model_without_a_fingerprint(book_models, tmp_path, capsys):
    from pipelines.score import score

    store, data, as_of = book_models
    result = score(data, as_of, CONFIG, tmp_path / "s.csv", model_uri="models:/book/2",
                   progress=lambda m: None)
    err = capsys.readouterr().err
    assert "warning: model models:/book/2 (version 2) carries no metric definition" in err
    assert len(result.scores) > 100 and (tmp_path / "s.csv").exists()


# --- the MLflow UI's links ---------------------------------------------------------------

def test_runs_url_before_any_experiment_says_so_and_creates_no_store(tmp_path):
    store = tmp_path / "mlflow.db"
    result = CliRunner().invoke(app, ["runs-url"], env={"MLFLOW_TRACKING_URI": f"sqlite:///{store}"})
    assert result.exit_code == 0, result.output
    assert "Training runs: none yet" in result.output and "run `make train` first" in result.output
    assert "Monitoring runs: none yet" in result.output
    assert not store.exists()


def test_runs_url_links_each_experiments_runs_table(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    registry.connect("other")
    training = registry.connect("healthscore")
    result = CliRunner().invoke(app, ["runs-url", "--port", "5123"])
    assert result.exit_code == 0, result.output
    assert (f"Training runs: http://127.0.0.1:5123/#/experiments/{training}/runs"
            "?workflowType=machine_learning") in result.output
    assert "Monitoring runs: none yet" in result.output
    monitoring = registry.connect("healthscore-monitoring")
    result = CliRunner().invoke(app, ["runs-url", "--port", "5123"])
    assert f"Monitoring runs: http://127.0.0.1:5123/#/experiments/{monitoring}/runs" in result.output
    assert training != monitoring


# --- a model that loads where healthscore is not installed -------------------------------

LOAD_ELSEWHERE = """
import importlib.util, json, sys, time
import mlflow, pandas as pd

assert importlib.util.find_spec("healthscore") is None, "healthscore is installed here"
start = time.perf_counter()
loaded = mlflow.pyfunc.load_model(sys.argv[1])
out = loaded.predict(pd.read_parquet("rows.parquet"))
out.to_parquet("out.parquet")
model = loaded.unwrap_python_model()
json.dump({"seconds": time.perf_counter() - start,
           "code": sys.modules["models.churn_model"].__file__,
           "fingerprint": model.info["metric_definition"]["fingerprint"]}, open("facts.json", "w"))
"""


@pytest.mark.slow
def test_a_trained_model_loads_and_predicts_in_a_venv_of_its_requirements_only(tmp_path):
    """`healthscore train` on a small demo book, then a fresh venv holding nothing but the
    model's logged requirements.txt loads the champion from the SQLite store, outside the
    repository and without PYTHONPATH, and predicts what the project predicts."""
    import json
    import subprocess
    import sys
    import time
    import venv

    from healthscore.config import Config
    from pipelines.features import stage_and_build
    from pipelines.score import scoring_snapshots
    from pipelines.validate import data_end_date, load_data_folder

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": store}
    hs = [sys.executable, "-m", "pipelines.cli"]
    data = tmp_path / "demo"
    for args in (["demo-data", "--out", str(data), "--accounts", "120"], ["train", "--data", str(data)]):
        done = subprocess.run([*hs, *args], capture_output=True, text=True, env=env, timeout=900)
        assert done.returncode == 0, done.stderr
        assert "cloudpickle" not in (done.stdout + done.stderr).lower()

    # The train hooks: the run's training dataset, the version's fingerprint.
    client = MlflowClient(tracking_uri=store, registry_uri=store)
    version = client.get_model_version_by_alias("healthscore", "champion")
    inputs = client.get_run(version.run_id).inputs.dataset_inputs
    assert [i.dataset.name for i in inputs] == ["training observations"]
    # The accounts with a renewal outcome known at the end (measured: 100 of 120).
    assert json.loads(inputs[0].dataset.profile)["accounts"] > 80
    fingerprint = version.tags["metric_fingerprint"]

    monkey = pytest.MonkeyPatch()
    monkey.setenv("MLFLOW_TRACKING_URI", store)
    try:
        registry.connect("healthscore")
        wrapped, _ = registry.load("models:/healthscore@champion")
        requirements = Path(mlflow.artifacts.download_artifacts(
            "models:/healthscore@champion/requirements.txt", dst_path=str(tmp_path / "req")))
    finally:
        monkey.undo()
    assert wrapped.info["metric_definition"]["fingerprint"] == fingerprint
    tables = load_data_folder(data)
    day = data_end_date(tables).date()
    history = stage_and_build(tables, day, Config(), snapshots=scoring_snapshots(day))
    rows = history.loc[history["as_of_date"] == pd.Timestamp(day)].reset_index(drop=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    rows.to_parquet(elsewhere / "rows.parquet")
    (elsewhere / "load.py").write_text(LOAD_ELSEWHERE, encoding="utf-8")

    start = time.perf_counter()
    venv.create(tmp_path / "venv", with_pip=True)
    python = tmp_path / "venv" / "bin" / "python"
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    install = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "-r", str(requirements)],
                             capture_output=True, text=True, env=clean, timeout=1800)
    assert install.returncode == 0, install.stderr[-3000:]
    installed = time.perf_counter() - start
    load = subprocess.run([str(python), "load.py", "models:/healthscore@champion"], cwd=elsewhere,
                          capture_output=True, text=True, env={**clean, "MLFLOW_TRACKING_URI": store},
                          timeout=600)
    assert load.returncode == 0, load.stderr[-3000:]
    facts = json.loads((elsewhere / "facts.json").read_text())
    print(f"fresh venv: {installed:.0f} s to create and install the model's requirements; "
          f"{facts['seconds']:.1f} s to load and predict {len(rows)} rows")

    # The model's own copy of the code, not the repository's; the same numbers.
    assert str(tmp_path) in facts["code"] and "/code/models/churn_model.py" in facts["code"]
    assert facts["fingerprint"] == fingerprint
    out = pd.read_parquet(elsewhere / "out.parquet")
    expected = wrapped.predict(None, rows)
    assert len(out) == len(rows) > 50
    pd.testing.assert_frame_equal(out, expected, check_exact=False, rtol=1e-12)
    np.testing.assert_allclose(out["health_score"], wrapped.model.health_score(
        rows[wrapped.model.features_]), rtol=1e-12)
