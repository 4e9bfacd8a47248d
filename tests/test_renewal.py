"""Renewal labels, the calendar's churn probability, the health score's calendar split and
the early-warning table, on tiny hand-computable tables; and label_all point in time."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.early_warning import early_warning, observed_at_leads, decisions
from models.health import HealthScale
from models.observations import label_all, label_renewals
from models.renewal import CALENDAR, health_log_odds, split_calendar, window_probability

T = pd.Timestamp


def _history(*rows):
    return pd.DataFrame(rows, columns=["account_id", "as_of_date"]).astype({"as_of_date": "datetime64[us]"})


def _subs(*rows):
    return pd.DataFrame(rows, columns=["account_id", "start_date", "end_date"]).astype(
        {"start_date": "datetime64[us]", "end_date": "datetime64[us]"})


def _outcomes(*rows):
    return pd.DataFrame(rows, columns=["account_id", "end_date", "outcome", "known_at"]).astype(
        {"end_date": "datetime64[us]", "known_at": "datetime64[us]"})


# -- label_renewals ------------------------------------------------------------------

def test_the_current_term_is_the_earliest_ending_covering_one():
    # An annual term and a monthly add-on both cover 03-10: the add-on ends first.
    history = _history(("a", "2024-03-10"), ("a", "2024-04-10"))
    subs = _subs(("a", "2024-01-01", "2025-01-01"), ("a", "2024-03-01", "2024-04-01"))
    outcomes = _outcomes(("a", "2024-04-01", "churned", "2024-05-01"))
    out = label_renewals(history, subs, outcomes)
    assert out["renewal_date"].tolist() == [T("2024-04-01"), T("2025-01-01")]
    # The add-on's churn labels the first; the annual term's outcome is not decided yet.
    assert out["churned"].tolist() == [1, 0]
    assert out["label_known_at"].tolist()[0] == T("2024-05-01")
    assert pd.isna(out["label_known_at"].iloc[1])


def test_a_term_starting_after_the_observation_is_ignored():
    # The short term ends first but starts after D: not known at D.
    history = _history(("a", "2024-03-10"))
    subs = _subs(("a", "2024-01-01", "2025-01-01"), ("a", "2024-03-11", "2024-03-20"))
    outcomes = _outcomes(("a", "2024-03-20", "churned", "2024-04-19"),
                         ("a", "2025-01-01", "renewed", "2025-01-01"))
    out = label_renewals(history, subs, outcomes)
    assert out["renewal_date"].tolist() == [T("2025-01-01")]
    assert out["churned"].tolist() == [0] and out["label_known_at"].tolist() == [T("2025-01-01")]


def test_a_pending_outcome_is_unknown():
    history = _history(("a", "2024-01-10"), ("b", "2024-01-10"))
    subs = _subs(("a", "2024-01-01", "2024-02-01"), ("b", "2024-01-01", "2024-02-01"))
    outcomes = _outcomes(("a", "2024-02-01", "pending", None), ("b", "2024-02-01", "renewed", "2024-02-01"))
    out = label_renewals(history, subs, outcomes)
    assert pd.isna(out["label_known_at"].iloc[0]) and out["churned"].iloc[0] == 0
    assert out["label_known_at"].iloc[1] == T("2024-02-01") and out["churned"].iloc[1] == 0


def test_two_terms_ending_the_same_day_are_one_decision():
    # One renewed, one churned on the same day: the account churned there; known when
    # the later of the two was.
    history = _history(("a", "2024-01-10"))
    subs = _subs(("a", "2024-01-01", "2024-02-01"), ("a", "2024-01-05", "2024-02-01"))
    outcomes = _outcomes(("a", "2024-02-01", "renewed", "2024-02-01"),
                         ("a", "2024-02-01", "churned", "2024-03-02"))
    out = label_renewals(history, subs, outcomes)
    assert len(out) == 1
    assert out["churned"].tolist() == [1] and out["label_known_at"].tolist() == [T("2024-03-02")]


def test_no_covering_term_has_no_renewal_and_no_label():
    history = _history(("a", "2024-06-01"))
    out = label_renewals(history, _subs(("a", "2024-01-01", "2024-02-01")),
                         _outcomes(("a", "2024-02-01", "churned", "2024-03-02")))
    assert pd.isna(out["renewal_date"].iloc[0]) and pd.isna(out["label_known_at"].iloc[0])


# -- window_probability --------------------------------------------------------------

def _calendar(days, length):
    return pd.DataFrame({"renewal_days_to_next": np.asarray(days, dtype=float),
                         "term_length_days_current": np.asarray(length, dtype=float)})


def by_distance(X):
    """A risk that says which renewal it was asked about: days / 1000."""
    return X["renewal_days_to_next"].to_numpy() / 1000


def test_no_renewal_in_the_window_is_no_churn():
    X = _calendar([200.0, 91.0], [365.0, 365.0])
    np.testing.assert_array_equal(window_probability(by_distance, X, 90), [0.0, 0.0])


def test_a_monthly_account_has_three_renewals_in_90_days():
    # Renewals 10, 40 and 70 days ahead (100 is past the window); each is asked with its
    # own distance.
    X = _calendar([10.0, 90.0], [30.0, 365.0])
    p = window_probability(by_distance, X, 90)
    np.testing.assert_allclose(p, [1 - (1 - 0.01) * (1 - 0.04) * (1 - 0.07), 0.09], rtol=1e-12)


def test_lead_days_shift_the_window():
    # Window (30, 120]: the monthly account's renewals at 40, 70, 100; the annual one's
    # at 100 falls in, the one at 20 falls out.
    X = _calendar([10.0, 100.0, 20.0], [30.0, 365.0, 365.0])
    p = window_probability(by_distance, X, 90, lead_days=30)
    np.testing.assert_allclose(p, [1 - (1 - 0.04) * (1 - 0.07) * (1 - 0.10), 0.10, 0.0], rtol=1e-12)


def test_a_row_without_term_length_has_only_its_next_renewal():
    X = _calendar([10.0], [np.nan])
    np.testing.assert_allclose(window_probability(by_distance, X, 90), [0.01])


# -- health_log_odds and split_calendar ----------------------------------------------

def test_points_and_the_reference_add_up_to_the_score_without_the_calendar():
    c = pd.DataFrame({"base": [-3.0, -2.0, -2.5], "renewal_days_to_next": [-1.0, 0.4, 2.0],
                      "term_length_days_current": [0.5, -0.3, 0.0], "usage": [0.5, -1.2, 0.0],
                      "nps": [-0.2, 0.3, 1.0]})
    health = health_log_odds(c)
    np.testing.assert_allclose(health, [-2.2, -3.2, -1.5])  # every column but the days
    drivers, start = split_calendar(c)
    assert list(drivers.columns) == ["usage", "nps"] and not set(CALENDAR) & set(drivers.columns)
    np.testing.assert_allclose(start, [-2.5, -2.3, -2.5])  # base + term length
    np.testing.assert_allclose(drivers.sum(axis=1) + start, health)
    scale = HealthScale(0.05, 70.0, 15.0)
    points = scale.points(drivers, health, start)
    np.testing.assert_allclose(points.sum(axis=1), scale.score(health) - scale.score(start), atol=1e-9)
    # Less risk from usage is a point gained: the signs follow the health score.
    assert points.loc[1, "usage"] > 0 > points.loc[0, "usage"]


# -- early_warning -------------------------------------------------------------------

def _predictions():
    """Four decisions on 2025-07-01 (a and d churned), observed 95 and 32 days before
    (d only 32 days before: a new customer), one pending decision and one outside the period."""
    rows = [
        # account, as_of, p_renewal, y_renewal, renewal_date
        ("a", "2025-03-28", 0.10, 1.0, "2025-07-01"), ("a", "2025-05-30", 0.90, 1.0, "2025-07-01"),
        ("b", "2025-03-28", 0.50, 0.0, "2025-07-01"), ("b", "2025-05-30", 0.20, 0.0, "2025-07-01"),
        ("c", "2025-03-28", 0.60, 0.0, "2025-07-01"), ("c", "2025-05-30", 0.10, 0.0, "2025-07-01"),
        ("d", "2025-05-30", 0.80, 1.0, "2025-07-01"),
        ("e", "2025-05-30", 0.99, np.nan, "2025-07-01"),  # pending: no decision yet
        ("f", "2025-05-30", 0.99, 1.0, "2025-09-01"),  # decided after the period
    ]
    out = pd.DataFrame(rows, columns=["account_id", "as_of_date", "p_renewal", "y_renewal", "renewal_date"])
    out["as_of_date"] = pd.to_datetime(out["as_of_date"])
    out["renewal_date"] = pd.to_datetime(out["renewal_date"])
    return out.assign(model="m")


def test_early_warning_ranks_each_decision_at_each_lead():
    preds = _predictions()
    decided = decisions(preds, T("2025-06-01"), T("2025-08-01"))
    assert decided["account_id"].tolist() == ["a", "b", "c", "d"]
    matched = observed_at_leads(preds, decided, (30, 90))
    # 30 days before 07-01 is 06-01: the 05-30 snapshot; 90 days before is 04-02: 03-28.
    at30 = matched.loc[matched["lead_days"] == 30].set_index("account_id")
    at90 = matched.loc[matched["lead_days"] == 90].set_index("account_id")
    assert (at30["as_of_date"] == T("2025-05-30")).all() and sorted(at30.index) == ["a", "b", "c", "d"]
    assert (at90["as_of_date"] == T("2025-03-28")).all() and sorted(at90.index) == ["a", "b", "c"]
    table = early_warning(preds, T("2025-06-01"), T("2025-08-01"), (30, 90)).set_index("lead_days")
    assert table.loc[30, "decisions"] == 4 and table.loc[30, "churned"] == 2
    assert table.loc[90, "decisions"] == 3 and table.loc[90, "churned"] == 1
    # At 30 days the churned accounts rank first; 90 days before, a ranked last.
    assert table.loc[30, "roc_auc"] == 1.0 and table.loc[90, "roc_auc"] == 0.0
    assert table.loc[30, "churn_rate"] == 0.5 and table.loc[30, "pr_auc"] == 1.0


def test_an_observation_older_than_the_slack_is_not_a_lead():
    preds = _predictions()
    # Lead 60 (05-02): the nearest snapshot before it is 03-28, 35 days older: no match.
    table = early_warning(preds, T("2025-06-01"), T("2025-08-01"), (60,))
    assert table.empty


# -- label_all point in time ---------------------------------------------------------

@pytest.fixture(scope="module")
def subscriptions():
    from healthscore.simulate import SimulationConfig, simulate_book

    return simulate_book(SimulationConfig(n_accounts=150, seed=11)).sources["subscriptions"]


def test_labels_known_by_f_are_the_same_from_data_cut_at_f(subscriptions):
    subs = subscriptions
    days = pd.date_range(subs["start_date"].min() + pd.Timedelta(days=20), subs["end_date"].max(), freq="11D")
    history = pd.DataFrame([(a, d) for d in days for a in subs["account_id"].unique()],
                           columns=["account_id", "as_of_date"]).astype({"as_of_date": "datetime64[us]"})
    last = subs["end_date"].max()
    full = label_all(history, subs, last, 30, 90)
    columns = ["account_id", "as_of_date", "renewal_date", "churned", "label_known_at"]
    checked = 0
    for cut in pd.date_range(subs["start_date"].min() + pd.Timedelta(days=200), last, periods=4)[:-1]:
        truncated = subs.loc[subs["start_date"] <= cut].copy()
        if "status" in truncated:
            truncated.loc[truncated["end_date"] > cut, "status"] = None
        early = label_all(history, truncated, cut, 30, 90)
        assert early["label_known_at"].max() <= cut
        mine = early.loc[early["label_known_at"] <= cut, columns]
        theirs = full.loc[full["label_known_at"] <= cut, columns]
        pd.testing.assert_frame_equal(mine, theirs)
        assert mine["churned"].nunique() == 2
        window = early["churned_window"].notna()
        pd.testing.assert_series_equal(early.loc[window, "churned_window"], full.loc[window, "churned_window"])
        checked += len(mine)
    assert checked > 1000
