"""Code tests for labels, the backtest's splits, evaluation metrics and the scorecard."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.backtest import Fold, fold_plan, split
from models.evaluation import at_capacity, expected_calibration_error, scores, top_decile_lift
from models.observations import known_by, label_observations
from models.scorecard import HandWeightedScorecard


def day(text: str) -> pd.Timestamp:
    return pd.Timestamp(text).as_unit("us")


def history(rows: list[tuple[str, str]]) -> pd.DataFrame:
    return pd.DataFrame({"account_id": [a for a, _ in rows],
                         "as_of_date": pd.to_datetime([d for _, d in rows]).astype("datetime64[us]")})


def test_label_window_is_open_at_d_and_closed_at_d_plus_horizon():
    obs = history([("a", "2024-01-01"), ("a", "2024-01-02"), ("a", "2024-03-31"),
                   ("a", "2024-04-01"), ("b", "2024-01-01")])
    churns = pd.DataFrame({"account_id": ["a"], "churn_date": [day("2024-03-31")]})
    labelled = label_observations(obs, churns, horizon_days=90)
    # (D, D + 90]: 2024-01-01 + 90 days = 2024-03-31 (in); churn on D itself is not after D.
    assert labelled["churned"].tolist() == [1, 1, 0, 0, 0]
    assert labelled["label_known_at"].iloc[0] == day("2024-03-31") + pd.Timedelta(days=30)


def test_lead_gap_moves_the_window():
    obs = history([("a", "2024-01-01")])
    churns = pd.DataFrame({"account_id": ["a"], "churn_date": [day("2024-01-20")]})
    assert label_observations(obs, churns, 90, lead_days=30)["churned"].tolist() == [0]
    churns["churn_date"] = day("2024-02-15")
    labelled = label_observations(obs, churns, 90, lead_days=30)
    assert labelled["churned"].tolist() == [1]
    assert labelled["label_known_at"].iloc[0] == day("2024-01-01") + pd.Timedelta(days=30 + 90 + 30)


def test_known_by_keeps_only_fully_observed_labels():
    obs = label_observations(history([("a", "2024-01-01"), ("a", "2024-06-01")]),
                             pd.DataFrame({"account_id": [], "churn_date": []}), 90)
    kept = known_by(obs, day("2024-05-01"))
    assert kept["as_of_date"].tolist() == [day("2024-01-01")]  # known 2024-04-30


def test_folds_are_in_time_order_and_training_labels_precede_each_fold():
    dates = pd.date_range("2024-01-01", "2024-12-30", freq="7D")
    obs = pd.DataFrame({"account_id": "a", "as_of_date": dates.astype("datetime64[us]"),
                        "churned": np.arange(len(dates)) % 2})
    obs["label_known_at"] = obs["as_of_date"] + pd.Timedelta(days=120)
    backtest, tuning = fold_plan(obs, folds=3, fold_days=28, tuning_folds=2)
    assert [f.number for f in backtest] == [1, 2, 3] and len(tuning) == 2
    assert tuning[-1].end == backtest[0].start and backtest[-1].end > obs["as_of_date"].max()
    for fold in backtest:
        train, test = split(obs, fold)
        assert (train["label_known_at"] <= fold.start).all()
        assert train["as_of_date"].max() < test["as_of_date"].min()
        assert ((test["as_of_date"] >= fold.start) & (test["as_of_date"] < fold.end)).all()


def test_split_never_trains_on_a_label_known_after_the_fold_starts():
    obs = pd.DataFrame({"account_id": ["a", "b"], "as_of_date": [day("2024-01-01")] * 2,
                        "label_known_at": [day("2024-05-01"), day("2024-05-02")], "churned": [0, 1]})
    train, _ = split(obs, Fold(1, day("2024-05-01"), day("2024-06-01")))
    assert train["account_id"].tolist() == ["a"]


def test_evaluation_metrics_hand_computed():
    y = np.array([1, 0, 0, 0, 0, 0, 0, 0, 0, 1])
    p = np.array([0.9, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.05])
    assert top_decile_lift(y, p) == pytest.approx(1 / 0.2)  # the top 1 of 10 is a churner
    frame = pd.DataFrame({"as_of_date": [1] * 5 + [2] * 5, "y": y, "p": p})
    precision, recall = at_capacity(frame, capacity=1)
    assert precision == pytest.approx(0.5) and recall == pytest.approx(0.5)
    assert expected_calibration_error(np.array([0, 1]), np.array([0.0, 1.0])) == 0
    s = scores(frame, 1)
    # One churner ranks above all 8 others, one below all: (8 + 0) / 16 pairs.
    assert s["roc_auc"] == pytest.approx(0.5)
    assert 0 < s["brier"] < 1 and s["churn_rate"] == pytest.approx(0.2)


def test_scorecard_scores_0_to_100_and_follows_directions():
    rng = np.random.default_rng(0)
    X = pd.DataFrame({
        "event_login_count_30d": rng.integers(0, 100, 200).astype(float),
        "active_days_count_30d": rng.integers(0, 30, 200).astype(float),
        "tickets_count_30d": rng.integers(0, 5, 200).astype(float),
        "nps_score_latest": np.where(rng.random(200) < 0.3, np.nan, rng.integers(0, 11, 200)),
    })
    y = (X["active_days_count_30d"] < 5).astype(int)
    card = HandWeightedScorecard().fit(X, y)
    score = card.health_score(X)
    assert ((score >= 0) & (score <= 100)).all()
    more_use = X.assign(event_login_count_30d=X["event_login_count_30d"] + 50)
    assert (card.health_score(more_use) >= score).all()
    more_tickets = X.assign(tickets_count_30d=X["tickets_count_30d"] + 3)
    assert (card.health_score(more_tickets) <= score).all()
    # A category with nothing known scores a neutral 5; unknown NPS takes csat's place.
    assert card.category_scores(X)["onboarding"].eq(5).all()
    proba = card.predict_proba(X)[:, 1]
    assert np.corrcoef(proba, score)[0, 1] < 0  # higher health, lower churn probability


def test_practitioner_bands_on_whole_points():
    from models.health import fixed_bands as band

    assert band(np.array([0, 40, 40.6, 60.4, 61, 80, 80.5, 100])).tolist() == [
        "Critical", "Critical", "At-risk", "At-risk", "Healthy", "Healthy", "Thriving", "Thriving"]


def test_cli_scorecard_scores_every_active_account(tmp_path, data_folder):
    from typer.testing import CliRunner

    from pipelines.cli import app

    out = tmp_path / "scorecard.csv"
    result = CliRunner().invoke(app, ["scorecard", "--data", str(data_folder()), "--out", str(out),
                                      "--as-of", "2024-03-15"])
    assert result.exit_code == 0, result.output
    scored = pd.read_csv(out)
    # a2's last term ends on 2024-03-15 (end dates are exclusive): not active that day.
    assert set(scored["account_id"]) == {"a1", "a3"}
    assert scored["scorecard_score"].between(0, 100).all()
    assert set(scored["band"]) <= {"Critical", "At-risk", "Healthy", "Thriving"}
