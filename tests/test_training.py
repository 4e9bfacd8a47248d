"""Model tests on a simulated book whose churn drivers are known (Made-With-ML's model suite).

One module-scoped backtest of every model on the demo book (`make demo`: 400 accounts,
two years, seed 7). Thresholds are set from measurement on demo books of five seeds
(see docs/model.md), with room for seed noise.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from features.catalog import catalog
from features.lifecycle import churn_events
from healthscore.config import Config
from healthscore.simulate import SimulationConfig, oracle_churn_probability, simulate_book
from models import tree_shap
from models.churn_model import feature_columns
from models.evaluation import expected_calibration_error
from models.observations import known_by, label_all, label_observations
from models.renewal import CALENDAR, split_calendar
from models.training import backtest, fit_final
from pipelines.features import compute_metric_history

CONFIG = Config()
M = CONFIG.model


@pytest.fixture(scope="module")
def book():
    return simulate_book(SimulationConfig())


@pytest.fixture(scope="module")
def every_observation(book):
    """Every observation with both labels as known at the data's last day (label_all)."""
    tables = book.sources
    as_of = tables["events"]["timestamp"].max().normalize()
    history = compute_metric_history(tables, as_of.date(), CONFIG)
    return label_all(history, tables["subscriptions"], as_of, CONFIG.grace_days, M.horizon_days,
                     M.lead_days)


@pytest.fixture(scope="module")
def observations(every_observation):
    """The observations whose renewal outcome is known: what the final model learns from."""
    known = every_observation["label_known_at"].notna()
    return every_observation.loc[known].reset_index(drop=True)


@pytest.fixture(scope="module")
def metric_catalog(book):
    return catalog(CONFIG.metrics, set(book.sources), ("integrations_connected", "api_error_rate",
                                                       "data_volume_gb"))


@pytest.fixture(scope="module")
def backtested(every_observation, metric_catalog):
    return backtest(every_observation, M, metric_catalog)


@pytest.fixture(scope="module")
def results(backtested):
    predictions, summary = backtested
    return predictions, summary["pooled"].set_index("model")


@pytest.fixture(scope="module")
def reported(results):
    """The reported folds' predictions whose churn-in-horizon outcome is known."""
    predictions, _ = results
    return predictions.loc[(predictions["fold"] >= 1) & predictions["y"].notna()]


@pytest.fixture(scope="module")
def final(observations, metric_catalog):
    return fit_final(observations, M, metric_catalog)


def test_every_model_is_backtested_on_the_same_rows(results):
    predictions, pooled = results
    predictions = predictions.loc[predictions["fold"] >= 1]
    rows = predictions.groupby("model").apply(lambda g: tuple(zip(g["account_id"], g["as_of_date"])))
    assert rows.map(len).nunique() == 1 and rows.map(frozenset).nunique() == 1
    assert {"scorecard", "logistic", "lightgbm", "lightgbm_isotonic"} <= set(pooled.index)


def test_lightgbm_beats_the_hand_weighted_scorecard_out_of_time(results):
    _, pooled = results
    # Churn-in-horizon ROC-AUC on the reported folds. Measured over five seeds on the old
    # horizon-label model: a lead of 0.07 to 0.22; re-measured on the renewal-risk model
    # (seed 7): 0.846 against 0.781, a lead of 0.065 (top-decile lift 3.63 against 3.46).
    assert pooled.loc["lightgbm", "roc_auc"] >= pooled.loc["scorecard", "roc_auc"] + 0.05
    assert pooled.loc["lightgbm", "top_decile_lift"] > pooled.loc["scorecard", "top_decile_lift"]


def test_out_of_time_auc_reaches_90_percent_of_the_oracle_and_not_beyond(results, reported, book):
    _, pooled = results
    rows = reported.loc[reported["model"] == "lightgbm"]
    oracle = oracle_churn_probability(rows, book.truth["renewals"], M.horizon_days, M.lead_days)
    oracle_auc = roc_auc_score(rows["y"], oracle)
    # Measured (renewal-risk model, seed 7): 0.846 against the oracle's 0.911 (93%).
    auc = pooled.loc["lightgbm", "roc_auc"]
    assert auc >= 0.9 * oracle_auc
    assert auc <= oracle_auc + 0.02  # better than the generator itself would mean leakage


def test_calibrated_probabilities_match_observed_rates(results):
    _, pooled = results
    # Churn is rare (about 3.5% per 90 days), so calibration errors are small in absolute
    # terms: the derived 90-day probability's ECE measured 0.008 (renewal-risk model, seed
    # 7; log loss 0.122 against the scorecard's 0.141 and isotonic's 0.150). Log loss is
    # the proper score that separates them.
    assert pooled.loc["lightgbm", "ece"] < 0.03
    assert pooled.loc["lightgbm", "log_loss"] < pooled.loc["scorecard", "log_loss"]
    assert pooled.loc["lightgbm", "log_loss"] < pooled.loc["lightgbm_isotonic", "log_loss"]


def test_less_usage_never_makes_an_account_healthier(final, observations, metric_catalog):
    model = final[0]
    usage = [m.name for m in metric_catalog
             if m.group in ("frequency", "breadth", "depth") and m.direction == "healthier"
             and m.name in model.features_]
    assert usage, "the model uses no usage metric that higher is healthier: nothing is tested"
    X = observations[model.features_].iloc[::50]
    before = model.predict_proba(X)[:, 1]
    for factor in (0.5, 0.0):
        less = X.copy()
        less[usage] = less[usage] * factor
        assert (model.predict_proba(less)[:, 1] >= before - 1e-12).all(), factor


def test_known_drivers_are_top_drivers(final, observations):
    model, _, weights, latest = final
    contributions = model.contributions(latest[model.features_]).drop(columns="base")
    top = contributions.abs().mean().sort_values(ascending=False).index[:12].tolist()
    # The model learns the risk at the renewal: the term length (a monthly renewal is
    # churned far less often than an annual one) conditions it most (measured first).
    assert "term_length_days_current" in top, top
    # The generator decides churn at renewal, from health; health drives usage and NPS:
    # they lead what is shown as drivers (the calendar left out).
    customer, _ = split_calendar(model.contributions(latest[model.features_]))
    drivers = customer.abs().mean().sort_values(ascending=False).index[:12].tolist()
    assert not set(CALENDAR) & set(drivers)
    assert any(m.startswith(("active_", "events_", "event_", "key_feature")) for m in drivers), drivers
    weights = weights.set_index("category")
    assert weights.loc["usage", "lightgbm_shap_share"] > 0.1
    assert weights["lightgbm_shap_share"].sum() == pytest.approx(1)


def test_contributions_add_up_to_the_calibrated_log_odds(final, observations):
    model = final[0]
    X = observations[model.features_].iloc[:200]
    contributions = model.contributions(X)
    np.testing.assert_allclose(contributions.sum(axis=1), model.log_odds(X), atol=1e-9)


def test_per_pattern_shap_equals_lightgbms_own(final, observations):
    # models.tree_shap groups rows by their decisions at every split; the values must be
    # LightGBM's pred_contrib, on real rows (missing values included) and on rows that
    # sit exactly on split thresholds, at zero and NaN.
    model = final[0]
    booster = model.booster_.booster_
    X = observations[model.features_].to_numpy(dtype=float, na_value=np.nan)
    thresholds = booster.trees_to_dataframe().dropna(subset=["threshold"])
    edge = np.tile(X[:40], (3, 1))
    rng = np.random.default_rng(0)
    for _, node in thresholds.sample(40, random_state=0).iterrows():
        column = model.features_.index(node["split_feature"])
        edge[rng.integers(len(edge), size=20), column] = node["threshold"]
    edge[rng.random(edge.shape) < 0.05] = 0.0
    edge[rng.random(edge.shape) < 0.05] = np.nan
    for rows in (X, edge):
        ours = tree_shap.contributions(booster, rows, model.booster_.best_iteration_, check=False)
        theirs = booster.predict(rows, pred_contrib=True, num_iteration=model.booster_.best_iteration_)
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-10)
    assert np.isnan(X).any()


def test_same_data_and_seed_give_the_same_model(observations, metric_catalog):
    from models.training import lightgbm

    features = feature_columns(observations)
    rows = observations.iloc[: len(observations) // 2]
    a = lightgbm(M, metric_catalog).fit(rows[features], rows["churned"], rows["label_known_at"])
    b = lightgbm(M, metric_catalog).fit(rows[features], rows["churned"], rows["label_known_at"])
    np.testing.assert_array_equal(a.predict_proba(rows[features]), b.predict_proba(rows[features]))


def test_labels_known_by_f_do_not_change_when_data_after_f_is_removed(book):
    subs = book.sources["subscriptions"]
    days = pd.date_range("2025-03-01", "2026-06-01", freq="37D")
    history = pd.DataFrame([(a, d) for d in days for a in subs["account_id"].unique()[:80]],
                           columns=["account_id", "as_of_date"]).astype({"as_of_date": "datetime64[us]"})
    full = label_observations(history, churn_events(subs, pd.Timestamp("2026-09-30"), 30), 90)
    for cut in pd.to_datetime(["2025-09-15", "2026-02-01", "2026-06-20"]):
        truncated = subs.loc[subs["start_date"] <= cut].copy()
        truncated.loc[truncated["end_date"] > cut, "status"] = None
        early = label_observations(history, churn_events(truncated, cut, 30), 90)
        pd.testing.assert_frame_equal(known_by(early, cut), known_by(full, cut))


def test_registered_pyfunc_gives_the_models_probabilities(final, observations, tmp_path, monkeypatch):
    import mlflow

    from pipelines import registry

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    model = final[0]
    registry.connect("test")
    rows = observations.iloc[-300:]
    with mlflow.start_run():
        logged = registry.log_model(model, 90, {"as_of": "x"}, rows)
    assert registry.champion("hs-test") is None
    version = registry.register(logged.model_uri, "hs-test", {"data_as_of": "x"})
    registry.promote("hs-test", version, "first", "test")
    assert str(registry.champion("hs-test").version) == version
    loaded = mlflow.pyfunc.load_model("models:/hs-test@champion")
    # Metric rows as the history stores them: keys and float metrics, in any column order.
    out = loaded.predict(rows[["as_of_date", "account_id", *model.features_[::-1]]])
    np.testing.assert_allclose(out["renewal_log_odds"], model.log_odds(rows[model.features_]))
    assert (tmp_path / "mlartifacts").is_dir()  # artifacts next to the store, not in the cwd


def test_the_pyfuncs_churn_probability_and_score_are_the_scoring_pipelines(final, observations):
    from models.health import yearly_log_odds
    from models.renewal import TERM_LENGTH, health_log_odds
    from pipelines.registry import HealthscoreModel

    model = final[0]
    X = observations[model.features_].iloc[-300:]
    out = HealthscoreModel(model, M.horizon_days, {}).predict(None, X)
    np.testing.assert_allclose(out["churn_probability"], model.churn_probability(X))
    yearly = yearly_log_odds(health_log_odds(model.contributions(X)), X[TERM_LENGTH])
    np.testing.assert_allclose(out["health_score"], model.scale_.score(yearly))
    np.testing.assert_allclose(out["renewal_risk"], model.renewal_risk(X))


def test_the_derived_churn_probability_is_calibrated_for_monthly_and_annual_accounts(
        reported, every_observation):
    # The 90-day probability comes from the renewal risk and the calendar: a monthly
    # account has three renewals in the window, an annual one at most one. Measured on
    # the reported folds (seed 7): monthly mean p 0.0646 against 0.0600 observed (3,718
    # rows), annual 0.0186 against 0.0208 (6,104 rows): 8% and 11% off. Tolerance 25%
    # (the annual rate rests on 127 churned rows, about 9% sampling error).
    rows = reported.loc[reported["model"] == "lightgbm"].merge(
        every_observation[["account_id", "as_of_date", "term_length_days_current"]],
        on=["account_id", "as_of_date"])
    length = rows["term_length_days_current"]
    for name, group in (("monthly", rows.loc[length <= 31]), ("annual", rows.loc[length >= 360])):
        assert len(group) > 1000 and group["y"].sum() > 50, name
        assert group["p"].mean() == pytest.approx(group["y"].mean(), rel=0.25), name
    # Monthly accounts churn more often within 90 days, and the probability says so.
    assert rows.loc[length <= 31, "p"].mean() > 2 * rows.loc[length >= 360, "p"].mean()


def test_the_bands_rank_churn_per_account_year_pooled_and_within_each_term(backtested):
    from models.band_churn import ranking_problems

    # The score is the risk of churn within a year, so a band means the same churn per
    # account-year for a monthly and an annual account. Measured (seed 7, renewal
    # decisions of the reported folds): pooled Critical 89% / At-risk 41% / Healthy 18% /
    # Thriving 5.7% a year; monthly 95 / 50 / 15 / 4.5%, annual 48 / 23 / 19 / 6.0%.
    _, summary = backtested
    table = summary["bands"]
    assert set(table["view"]) == {"pooled", "term"} and set(table.loc[table["view"] == "term", "group"]) == {
        "monthly", "annual"}
    assert ranking_problems(table) == []
    # Not the per-renewal ranking of before: monthly accounts are not all Healthy or
    # Thriving, and annual ones are not kept out of Thriving.
    share = table.loc[table["view"] == "term"].set_index(["group", "band"])["share"]
    assert share["monthly", "Critical"] + share["monthly", "At-risk"] > 0.2
    assert share["annual", "Thriving"] > 0.1


@pytest.mark.parametrize("scheme", ["quantile", "capacity"])
def test_observed_churn_falls_from_the_worst_band_to_the_best_in_every_scheme(reported, scheme):
    from models.health import BAND_ORDER, assign_bands

    rows = reported.loc[reported["model"] == "lightgbm"].sort_values("as_of_date", kind="stable")
    if scheme == "capacity":  # the team's 25 accounts per week: bands per snapshot date
        bands = np.concatenate([assign_bands(g["health_score"].to_numpy(), scheme, M.capacity)
                                for _, g in rows.groupby("as_of_date", sort=True)])
    else:
        bands = assign_bands(rows["health_score"].to_numpy(), scheme)
    rates = rows.groupby(bands)["y"].mean().reindex(BAND_ORDER[scheme])
    assert rates.notna().all(), rates
    assert rates.is_monotonic_decreasing and rates.nunique() == len(rates), rates


def test_early_warning_ranks_renewal_decisions_at_every_lead(backtested):
    _, summary = backtested
    table = summary["early_warning"]
    ours = table.loc[table["model"] == "lightgbm"].set_index("lead_days")
    assert list(ours.index) == [30, 90, 180, 270]
    # The further back, the fewer decisions had a customer to observe (measured 919,
    # 854, 779, 536 decisions, 18 to 28 churned each).
    assert ours["decisions"].is_monotonic_decreasing and (ours["churned"] >= 10).all()
    assert (ours["churn_rate"] == ours["churned"] / ours["decisions"]).all()
    # Every compared model is scored on the same decisions at a lead.
    compared = table.loc[table["model"].isin(["lightgbm", "logistic", "scorecard"])]
    assert (compared.groupby("lead_days")["decisions"].nunique() == 1).all()
    # Measured ROC-AUC 0.62 at 30 days and 0.67 at 90 (about 28 churned decisions each:
    # noisy, so only better than chance).
    assert (ours.loc[[30, 90], "roc_auc"] > 0.55).all()


def test_the_renewal_risk_is_calibrated_at_the_renewal_decisions(results):
    # Each renewal decision of the reported folds, by the observation nearest before it:
    # the mean renewal risk matches the share that churned. Measured (seed 7): 1,107
    # decisions, 3.2% predicted against 3.3% churned. Tolerance 25% (37 churned
    # decisions: about 16% sampling error).
    predictions, _ = results
    rows = predictions.loc[(predictions["model"] == "lightgbm") & (predictions["fold"] >= 1)
                           & predictions["y_renewal"].notna()]
    last = rows.sort_values("as_of_date").groupby(["account_id", "renewal_date"]).tail(1)
    assert len(last) > 800 and last["y_renewal"].sum() > 20
    assert last["p_renewal"].mean() == pytest.approx(last["y_renewal"].mean(), rel=0.25)
    # Over every known observation too (a mix of distances): measured ECE 0.021.
    assert expected_calibration_error(rows["y_renewal"].to_numpy(), rows["p_renewal"].to_numpy()) < 0.04
