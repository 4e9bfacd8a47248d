"""A score that means the same for every account: the yearly risk, and bands that rank churn.

Code tests on hand-computable numbers, then the property on books the demo simulator did
not write (slow: a walk-forward backtest each): a book that mixes monthly and annual
terms, and the same kind of book cut to the contract's required columns.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.band_churn import band_churn, ranking_problems, term_kind
from models.health import HealthScale, yearly_log_odds


def _p(log_odds):
    return 1 / (1 + np.exp(-np.asarray(log_odds)))


# -- the yearly risk -----------------------------------------------------------------

def test_a_monthly_renewal_is_judged_twelve_times_a_year():
    r = 0.02
    h = np.log(r / (1 - r))
    yearly = _p(yearly_log_odds([h, h, h, h], [365.25, 30.4375, 730.5, np.nan]))
    np.testing.assert_allclose(yearly, [r, 1 - (1 - r) ** 12, 1 - (1 - r) ** 0.5, r], rtol=1e-9)


def test_the_yearly_risk_is_exact_far_out_in_the_tails():
    yearly = yearly_log_odds([-40.0, 40.0], [30.4375, 30.4375])
    # A risk of e^-40 a month is 12 e^-40 a year; a near-certain churn stays near-certain.
    assert yearly[0] == pytest.approx(-40.0 + np.log(12), abs=1e-9)
    assert np.isfinite(yearly).all() and yearly[1] > 40


def test_the_same_renewal_risk_scores_lower_on_a_monthly_term():
    scale = HealthScale(0.1)
    h = np.log(0.02 / 0.98)
    annual, monthly = scale.score(yearly_log_odds([h, h], [365.0, 30.0]))
    assert monthly < annual - 15  # 2% a renewal is ~22% a year: over three doublings


def test_points_with_the_term_add_up_to_the_score_minus_the_reference():
    contributions = pd.DataFrame({"usage": [0.5, -1.2, 0.0], "nps": [-0.2, 0.3, 1.0]})
    start = np.array([-2.5, -2.3, -4.0])
    term = np.array([30.0, 365.0, 91.0])
    renewal = start + contributions.sum(axis=1).to_numpy()
    scale = HealthScale(0.15)
    points = scale.points(contributions, renewal, start, term)
    shown = scale.score(yearly_log_odds(renewal, term)) - scale.score(yearly_log_odds(start, term))
    np.testing.assert_allclose(points.sum(axis=1), shown, atol=1e-9)
    # Signs follow the score: more risk from usage costs points, less earns them.
    assert points.loc[0, "usage"] < 0 < points.loc[1, "usage"]


# -- churn per account-year by band ---------------------------------------------------

def _rows():
    """Eight decisions observed once: two per band, a monthly and an annual one each;
    plus a second observation of the Critical monthly decision, in At-risk."""
    rows = pd.DataFrame({
        "account_id": list("abcdefgha"),
        "health_score": [20.0, 30.0, 45.0, 55.0, 65.0, 75.0, 85.0, 95.0, 50.0],
        "y_renewal": [1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0],
        "term_days": [30.4375, 365.25] * 4 + [30.4375],
        "renewal_date": pd.Timestamp("2025-06-30"),
    })
    return rows


def test_band_churn_counts_churned_decisions_per_account_year_of_their_terms():
    table = band_churn(_rows())
    pooled = table.loc[table["view"] == "pooled"].set_index("band")
    # Critical: half of a's monthly decision (1/24 of a year, churned) and b's annual one
    # (a year, churned); At-risk: a's other half, c's monthly (churned) and d's annual.
    month = 1 / 12
    assert pooled["account_years"].tolist() == pytest.approx([0.5 * month + 1, 1.5 * month + 1,
                                                              month + 1, month + 1])
    assert pooled["churned"].tolist() == pytest.approx([1.5, 1.5, 0, 0])
    assert pooled["churn_per_account_year"].tolist() == pytest.approx(
        [1.5 / (0.5 * month + 1), 1.5 / (1.5 * month + 1), 0, 0])
    assert pooled["decisions"].sum() == pytest.approx(8) and pooled["observations"].sum() == 9
    monthly = table.loc[(table["view"] == "term") & (table["group"] == "monthly")].set_index("band")
    assert monthly["churn_per_account_year"].tolist() == pytest.approx([12.0, 12.0, 0, 0])


def test_band_churn_leaves_out_rows_whose_outcome_or_score_is_unknown():
    rows = _rows()
    rows.loc[0, "y_renewal"] = np.nan
    rows.loc[1, "health_score"] = np.nan
    assert band_churn(rows).query("view == 'pooled'")["observations"].sum() == 7


def test_term_kinds():
    assert term_kind([28, 31, 90, 182, 365, 366, 730]).tolist() == [
        "monthly", "monthly", "quarterly", "half-yearly", "annual", "annual", "multi-year"]


def _table(pooled, monthly, annual, shares=None):
    """A band table with the given churn per account-year, 1,000 account-years per band."""
    rows = []
    for view, group, rates in (("pooled", "all", pooled), ("term", "monthly", monthly),
                               ("term", "annual", annual)):
        for i, (band, rate) in enumerate(zip(["Critical", "At-risk", "Healthy", "Thriving"], rates)):
            share = 0.25 if shares is None or group != "annual" else shares[i]
            rows.append({"view": view, "group": group, "band": band, "observations": 100,
                         "account_years": 1000.0 * share / 0.25, "churn_per_account_year": rate,
                         "share": share})
    return pd.DataFrame(rows)


def test_ranking_problems_are_none_when_churn_falls_everywhere():
    assert ranking_problems(_table([0.5, 0.2, 0.1, 0.05], [0.6, 0.3, 0.1, 0.05],
                                   [0.4, 0.2, 0.1, 0.02])) == []


def test_ranking_problems_name_a_pooled_inversion():
    # The book: Thriving churned 31% a year against Healthy's 7%.
    problems = ranking_problems(_table([0.48, 0.18, 0.07, 0.31], [0.6, 0.3, 0.1, 0.05],
                                       [0.4, 0.2, 0.1, 0.02]))
    assert len(problems) == 1 and problems[0].startswith("pooled") and "Thriving 31.0%" in problems[0]


def test_ranking_problems_name_an_inversion_within_a_term():
    problems = ranking_problems(_table([0.5, 0.2, 0.1, 0.05], [0.6, 0.3, 0.1, 0.05],
                                       [0.4, 0.1, 0.2, 0.02]))
    assert len(problems) == 1 and problems[0].startswith("annual terms")


def test_ranking_problems_skip_bands_with_too_few_account_years():
    shares = [0.02, 0.2, 0.4, 0.38]  # Critical holds 80 account-years: its rate is noise
    table = _table([0.5, 0.2, 0.1, 0.05], [0.6, 0.3, 0.1, 0.05], [0.0, 0.2, 0.1, 0.02], shares)
    assert ranking_problems(table) == []


def test_ranking_problems_name_a_term_that_decides_the_band():
    # Every annual account in Healthy or Thriving: the term, not the customer, decides.
    shares = [0.0, 0.03, 0.17, 0.8]
    table = _table([0.5, 0.2, 0.1, 0.05], [0.6, 0.3, 0.1, 0.05], [0.0, 0.2, 0.1, 0.02], shares)
    problems = ranking_problems(table)
    assert len(problems) == 1 and "annual terms: only 2 band(s)" in problems[0]


# -- on books the simulator did not write (slow) --------------------------------------

def _backtest_bands(book: dict[str, pd.DataFrame], folder) -> pd.DataFrame:
    from books import write_book
    from features.catalog import catalog
    from healthscore.config import Config
    from models.observations import label_all
    from models.training import backtest
    from pipelines.features import compute_metric_history
    from pipelines.validate import load_data_folder

    config = Config()
    m = config.model
    tables = load_data_folder(write_book(book, folder))
    as_of = tables["events"]["timestamp"].max().normalize()
    history = compute_metric_history(tables, as_of.date(), config)
    observations = label_all(history, tables["subscriptions"], as_of, config.grace_days,
                             m.horizon_days, m.lead_days)
    segments = (tables["accounts"].set_index("account_id")["segment"]
                if "segment" in tables["accounts"] else None)
    _, summary = backtest(observations, m, catalog(config.metrics, set(tables), ()), segments,
                          leads=())
    return summary["bands"]


@pytest.mark.slow
@pytest.mark.parametrize("minimal", [False, True], ids=["every-column", "contract-minimal"])
def test_the_bands_rank_churn_on_a_book_of_monthly_and_annual_terms(minimal, tmp_path):
    from books import foreign_book
    from books import minimal as only_required

    book = foreign_book(accounts=900, days=800, seed=21, annual_share=0.5)
    bands = _backtest_bands(only_required(book) if minimal else book, tmp_path / "book")
    assert set(bands.loc[bands["view"] == "term", "group"]) == {"monthly", "annual"}
    assert ranking_problems(bands) == [], bands
