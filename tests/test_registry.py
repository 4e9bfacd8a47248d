"""What a logged model carries, against real MLflow SQLite stores in tmp_path."""

from __future__ import annotations

import logging
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from healthscore.config import Config
from models.churn_model import CalibratedLightGBM
from pipelines import registry


CONFIG = Config()
FEATURES = ["active_days_count_30d", "tickets_count_30d", "key_features_used_count_30d",
            "key_feature_create_report_adoption_30d", "event_login_count_30d"]


def observations(accounts: int = 30, weeks: int = 12, seed: int = 0) -> pd.DataFrame:
    """A small labelled observation table: churn falls with activity."""
    rng = np.random.default_rng(seed)
    keys = pd.MultiIndex.from_product(
        [[f"a{i}" for i in range(accounts)], pd.date_range("2025-01-06", periods=weeks, freq="7D")],
        names=["account_id", "as_of_date"]).to_frame(index=False)
    n = len(keys)
    metrics = pd.DataFrame({name: rng.poisson(5, n).astype("float64") for name in FEATURES})
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
    """One train-like run in its own store: model, registered version.

    Returns (store root, run id, version, the loaded pyfunc wrapper, the training rows)."""
    root = tmp_path_factory.mktemp("registry")
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    known = observations()
    model = fit(known)
    with mlflow.start_run(experiment_id=registry.connect("test")) as run:
        info = registry.log_model(model, 90, {"as_of": "2025-03-31"}, known)
    version = registry.register(info.model_uri, "hs-test", {"data_as_of": "2025-03-31"})
    wrapped, _ = registry.load(f"models:/hs-test/{version}")
    yield root, run.info.run_id, version, wrapped, known
    mp.undo()


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


def test_pyfunc_outputs_come_from_the_estimator(logged):
    *_, wrapped, known = logged
    rows = known.sample(20, random_state=0)
    out = wrapped.predict(None, rows[["as_of_date", "account_id", *FEATURES[::-1]]])
    model = wrapped.model
    np.testing.assert_array_equal(out["churn_probability"], model.predict_proba(rows[FEATURES])[:, 1])
    np.testing.assert_array_equal(out["churn_log_odds"], model.log_odds(rows[FEATURES]))
    np.testing.assert_array_equal(out["health_score"], model.scale_.score(model.log_odds(rows[FEATURES])))
    assert list(out.index) == list(rows.index)
