"""The promotion gate with real models: the registered champion is loaded from a real
MLflow store and compared with the challenger on outcomes neither learned from."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest

from healthscore.config import Config
from healthscore.simulate import SimulationConfig
from models.gate import compare, gate_window
from models.training import fit_final
from pipelines import registry
from pipelines.demo_data import write_demo_data
from pipelines.train import _gate, build_observations

CONFIG = Config()
NAME = CONFIG.model.registered_model


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A 250-account book; a champion trained as of 90 days before its end, registered
    in a fresh SQLite store; the observations known at the end."""
    root = tmp_path_factory.mktemp("gate")
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    data = root / "book"
    write_demo_data(data, SimulationConfig(n_accounts=250, seed=11))
    end = build_observations(data, None, CONFIG, lambda m: None)
    early = build_observations(data, end.as_of - pd.Timedelta(days=90), CONFIG, lambda m: None)
    champion = fit_final(early.known, CONFIG.model, early.catalog)[0]
    registry.connect(CONFIG.model.experiment)
    with mlflow.start_run():
        logged = registry.log_model(champion, 90, {}, early.known.tail(20))
    version = registry.register(logged.model_uri, NAME, {"model_spec": '{"horizon_days": 90, "lead_days": 0}'})
    registry.promote(NAME, version, "test champion", "test")
    yield end, champion, data
    mp.undo()


def store_data(store):
    return store[2]


def _register(model, known) -> str:
    with mlflow.start_run():
        logged = registry.log_model(model, 90, {}, known.tail(20))
    return registry.register(logged.model_uri, NAME, {})


def test_a_challenger_trained_on_shuffled_labels_is_kept_out(store):
    end = store[0]
    shuffled = end.known.copy()
    shuffled["churned"] = np.random.default_rng(0).permutation(shuffled["churned"].to_numpy())
    bad = fit_final(shuffled, CONFIG.model, end.catalog)[0]
    before = registry.champion(NAME).version
    version = _register(bad, end.known)
    with mlflow.start_run():
        promoted, reason = _gate(CONFIG, bad, end.known, version)
    assert not promoted, reason
    assert f"kept champion v{before}" in reason
    assert registry.champion(NAME).version == before


def test_a_challenger_as_good_as_the_champion_is_promoted(store):
    end, champion = store[0], store[1]
    # The champion's own definition refitted on its own data: the same model, so it
    # cannot be worse, and the gate must let it through.
    early = build_observations(store_data(store), end.as_of - pd.Timedelta(days=90), CONFIG,
                               lambda m: None)
    same = fit_final(early.known, CONFIG.model, early.catalog)[0]
    version = _register(same, end.known)
    with mlflow.start_run():
        promoted, reason = _gate(CONFIG, same, end.known, version)
    assert promoted, reason
    assert str(registry.champion(NAME).version) == version


def test_the_decision_follows_the_measurement_on_the_window(store):
    end, champion = store[0], store[1]
    newer = fit_final(end.known, CONFIG.model, end.catalog)[0]
    window = gate_window(end.known, newer.calibration_days)
    measured = compare(newer, champion, window, CONFIG.model.gate_tolerance,
                       CONFIG.model.gate_log_loss_tolerance)
    worse_auc = measured.challenger_roc_auc < measured.champion_roc_auc - CONFIG.model.gate_tolerance
    worse_ll = measured.challenger_log_loss > measured.champion_log_loss + CONFIG.model.gate_log_loss_tolerance
    assert measured.promote == (not worse_auc and not worse_ll)


def test_the_gate_window_is_outcomes_the_challengers_trees_never_saw(store):
    end = store[0]
    model = fit_final(end.known, CONFIG.model, end.catalog)[0]
    window = gate_window(end.known, model.calibration_days)
    assert len(window) == model.n_calibration_
    assert window["churned"].nunique() == 2


def test_one_outcome_in_the_window_keeps_the_champion(store):
    end, champion = store[0], store[1]
    window = gate_window(end.known, 56)
    only_renewals = window.loc[window["churned"] == 0]
    result = compare(champion, champion, only_renewals, 0.005, 0.005)
    assert not result.promote and "only one outcome" in result.reason
