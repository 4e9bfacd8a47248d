"""Never worse than its baselines: the blend of trees, logistic regression and scorecard.

Code tests on small synthetic tables (the blend's parts are exact, the weights are
chosen by the pooled ROC-AUC), and, slow, the property that names the design: a fold's
blend is chosen without its own outcomes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.metric import Direction
from models import blend
from models.churn_model import CalibratedLightGBM, DirectedLogistic


def _book(n: int = 3000, seed: int = 0):
    """Synthetic observations: usage lowers the risk, tickets raise it; monthly and
    annual terms; outcomes known over a year of dates."""
    rng = np.random.default_rng(seed)
    usage = rng.gamma(2.0, 5.0, n)
    tickets = rng.poisson(2.0, n).astype(float)
    noise = rng.normal(size=n)
    term = np.where(rng.random(n) < 0.5, 30.0, 365.0)
    days = rng.uniform(0, term)
    risk = 1 / (1 + np.exp(-(-1.5 - 0.15 * usage + 0.4 * tickets)))
    y = (rng.random(n) < risk).astype(int)
    X = pd.DataFrame({"usage_count_30d": usage, "tickets_count_30d": tickets, "noise_level": noise,
                      "renewal_days_to_next": days, "term_length_days_current": term})
    X.loc[rng.random(n) < 0.1, "tickets_count_30d"] = np.nan
    dates = pd.Timestamp("2025-01-01") + pd.to_timedelta(np.sort(rng.integers(0, 365, n)), unit="D")
    return X, y, pd.Series(dates)


DIRECTIONS = {"usage_count_30d": Direction.HEALTHIER, "tickets_count_30d": Direction.RISKIER}


def test_the_directed_logistic_drops_a_metric_whose_weight_points_the_wrong_way():
    X, y, _ = _book()
    # Tell it that tickets are healthier: their learned weight is positive, so they go.
    wrong = {**DIRECTIONS, "tickets_count_30d": Direction.HEALTHIER}
    model = DirectedLogistic(wrong).fit(X, y)
    assert "tickets_count_30d" not in model.features_ and "usage_count_30d" in model.features_
    assert DirectedLogistic(DIRECTIONS).fit(X, y).features_ == list(X.columns)


def test_the_directed_logistics_contributions_add_up_to_its_log_odds():
    X, y, _ = _book()
    model = DirectedLogistic(DIRECTIONS).fit(X, y)
    parts = model.contributions(X)
    np.testing.assert_allclose(parts.sum(axis=1), model.decision_function(X), atol=1e-9)
    # A missing value's flag belongs to its metric.
    assert parts.loc[X["tickets_count_30d"].isna(), "tickets_count_30d"].nunique() == 1


@pytest.mark.parametrize("weights", [(1.0, 0.0, 0.0), (0.5, 0.3, 0.2), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)])
def test_a_blends_contributions_add_up_to_its_log_odds_and_its_score(weights):
    X, y, dates = _book()
    model = CalibratedLightGBM(directions=DIRECTIONS, blend_weights=weights,
                               calibration_days=90).fit(X, y, dates)
    contributions = model.contributions(X)
    np.testing.assert_allclose(contributions.sum(axis=1), model.log_odds(X), atol=1e-9)
    health, points, reference = model.health_breakdown(X)
    np.testing.assert_allclose(points.sum(axis=1), health - reference, atol=1e-9)
    # The trees alone are the same trees, whatever the blend.
    trees = CalibratedLightGBM(directions=DIRECTIONS, calibration_days=90).fit(X, y, dates)
    np.testing.assert_allclose(model.predict_proba(X, "trees"), trees.predict_proba(X), atol=1e-12)


def test_a_blend_keeps_less_usage_from_reading_as_healthier():
    X, y, dates = _book()
    model = CalibratedLightGBM(directions=DIRECTIONS, blend_weights=(0.4, 0.3, 0.3),
                               calibration_days=90).fit(X, y, dates)
    less = X.assign(usage_count_30d=X["usage_count_30d"] * 0.5)
    assert (model.health_score(less) <= model.health_score(X) + 1e-9).all()


def test_blend_weights_must_be_three_that_sum_to_one():
    X, y, dates = _book(600)
    with pytest.raises(ValueError, match="three non-negative weights summing to 1"):
        CalibratedLightGBM(blend_weights=(0.5, 0.6, 0.0), calibration_days=90).fit(X, y, dates)


def test_the_blend_is_chosen_by_pooled_roc_auc_and_a_tie_keeps_the_trees():
    rng = np.random.default_rng(3)
    y = (rng.random(2000) < 0.2).astype(float)
    signal = y + rng.normal(0, 1.0, 2000)
    to_p = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    parts = pd.DataFrame({"y": y, "trees": to_p(rng.normal(size=2000)),
                          "logistic": to_p(signal), "scorecard": to_p(rng.normal(size=2000))})
    weights, auc, _, rows = blend.choose(parts)
    assert weights[1] >= 0.8 and rows == 2000 and auc > 0.7
    same = parts.assign(trees=parts["logistic"], scorecard=parts["logistic"])
    assert blend.choose(same)[0] == (1.0, 0.0, 0.0)
    assert blend.choose(parts.assign(y=0.0))[0::3] == ((1.0, 0.0, 0.0), 0)


@pytest.mark.slow
def test_a_folds_blend_is_chosen_without_its_own_outcomes(tmp_path):
    from books import foreign_book, write_book
    from features.catalog import catalog
    from healthscore.config import Config
    from models.observations import label_all
    from models.training import backtest
    from pipelines.features import compute_metric_history
    from pipelines.validate import load_data_folder

    config = Config()
    m = config.model.model_copy(update={"blend_weights": None})  # chosen on earlier folds
    tables = load_data_folder(write_book(foreign_book(accounts=300, days=720, seed=5), tmp_path))
    as_of = tables["events"]["timestamp"].max().normalize()
    history = compute_metric_history(tables, as_of.date(), config)
    observations = label_all(history, tables["subscriptions"], as_of, config.grace_days,
                             m.horizon_days, m.lead_days)
    metric_catalog = catalog(config.metrics, set(tables), ())
    _, summary = backtest(observations, m, metric_catalog, leads=())
    chosen = summary["blend"].set_index("use")
    last = int(summary["folds"]["fold"].max())
    assert {f"fold {last}", "production"} <= set(chosen.index)
    assert (chosen["rows"] > 0).sum() >= 2  # at least two folds chose on evidence
    # Turn upside down every outcome that was not yet known when the last fold began
    # (the rows of the folds just before it): no fold's blend may change, for each is
    # chosen on what was known at its start. Only the production blend, chosen at the
    # training date on every fold, may move.
    start = summary_start(observations, m)
    flipped = observations.copy()
    unknown = (flipped["window_known_at"] > start) & (flipped["as_of_date"] < start)
    assert flipped.loc[unknown, "churned_window"].notna().sum() > 500
    flipped.loc[unknown, "churned_window"] = 1 - flipped.loc[unknown, "churned_window"]
    _, again = backtest(flipped, m, metric_catalog, leads=())
    weights = list(blend.PARTS)
    before = chosen.drop(index="production")[weights]
    pd.testing.assert_frame_equal(again["blend"].set_index("use").drop(index="production")[weights], before)


def summary_start(observations, m):
    """The first day of the last reported fold."""
    from models.backtest import evaluable, fold_plan

    folds, _ = fold_plan(evaluable(observations), m.folds, m.fold_days, m.tuning_folds)
    return folds[-1].start
