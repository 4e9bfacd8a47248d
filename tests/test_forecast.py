"""Code tests for the renewal forecast: tiny schedules whose answers are checked by hand."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from models.forecast import (backtest, backtest_summary, central_interval, forecast,
                             loss_distribution, periods, top_accounts, upcoming_renewals)

AS_OF = "2026-09-30"  # periods: Oct (0, 31], Nov (31, 61], Dec (61, 92], Q4 (0, 92]


def schedule(rows: list[tuple[str, int, str, float, float]]) -> pd.DataFrame:
    """(account_id, sequence, renewal_date, arr, renewal_risk) rows as a renewal schedule."""
    frame = pd.DataFrame(rows, columns=["account_id", "sequence", "renewal_date", "arr",
                                        "renewal_risk"])
    frame["renewal_date"] = pd.to_datetime(frame["renewal_date"]).astype("datetime64[us]")
    return frame


def by_period(table: pd.DataFrame) -> pd.DataFrame:
    return table.set_index("period")


# --- periods -------------------------------------------------------------------------------

@pytest.mark.parametrize("as_of, expected", [
    ("2026-09-30", [("Oct 2026", 0, 31), ("Nov 2026", 31, 61), ("Dec 2026", 61, 92),
                    ("Q4 2026", 0, 92)]),
    # Days remain in November: it comes first, from the 16th; Q4 started before as_of.
    ("2026-11-15", [("Nov 2026 (from 16th)", 0, 15), ("Dec 2026", 15, 46),
                    ("Jan 2027", 46, 77), ("Q1 2027", 46, 136)]),
    # A quarter's first day: that quarter did not start *after* as_of, the next one did.
    ("2026-10-01", [("Oct 2026 (from 2nd)", 0, 30), ("Nov 2026", 30, 60), ("Dec 2026", 60, 91),
                    ("Q1 2027", 91, 181)]),
    # Leap February, and a year boundary.
    ("2028-01-31", [("Feb 2028", 0, 29), ("Mar 2028", 29, 60), ("Apr 2028", 60, 90),
                    ("Q2 2028", 60, 151)]),
    ("2026-12-31", [("Jan 2027", 0, 31), ("Feb 2027", 31, 59), ("Mar 2027", 59, 90),
                    ("Q1 2027", 0, 90)]),
])
def test_periods_are_the_next_three_months_and_the_next_quarter(as_of, expected):
    assert periods(as_of) == expected
    assert periods(pd.Timestamp(as_of) + pd.Timedelta(hours=13)) == expected  # the day counts


# --- upcoming_renewals ----------------------------------------------------------------------

def test_upcoming_renewals_repeat_each_term_until_the_last_day_included():
    frame = pd.DataFrame({
        "account_id": ["monthly", "annual", "no_term", "one_off", "zero_term", "late"],
        "renewal_days_to_next": [1.0, 92.0, np.nan, 5.0, 7.0, 93.0],
        "term_length_days_current": [30.0, 365.0, 30.0, np.nan, 0.0, 30.0],
        "arr_total_current": [1200.0, 50000.0, 1.0, 700.0, 800.0, 900.0],
    })
    out = upcoming_renewals(frame, AS_OF, "2026-12-31")  # 92 days
    assert list(out.columns) == ["account_id", "sequence", "renewal_date", "days_to_renewal", "arr"]
    got = {(a, s): d for a, s, d in out[["account_id", "sequence", "days_to_renewal"]].itertuples(index=False)}
    # monthly: 1, 31, 61, 91 (121 is past until); annual: 92 = until, included; late: 93 is not.
    assert got == {("monthly", 0): 1, ("monthly", 1): 31, ("monthly", 2): 61, ("monthly", 3): 91,
                   ("annual", 0): 92, ("one_off", 0): 5, ("zero_term", 0): 7}
    assert out.loc[out["account_id"] == "annual", "renewal_date"].iloc[0] == pd.Timestamp("2026-12-31")
    assert (out["renewal_date"] - pd.Timestamp(AS_OF)).dt.days.tolist() == out["days_to_renewal"].tolist()
    assert out.loc[out["account_id"] == "monthly", "arr"].tolist() == [1200.0] * 4


def test_upcoming_renewals_keep_only_dates_after_as_of():
    frame = pd.DataFrame({"account_id": ["due_today", "overdue"], "renewal_days_to_next": [0.0, -3.0],
                          "term_length_days_current": [30.0, 30.0], "arr_total_current": [1.0, 2.0]})
    out = upcoming_renewals(frame, AS_OF, "2026-10-31")
    # Sequence still counts from the renewal at renewal_days_to_next.
    assert out[["account_id", "sequence", "days_to_renewal"]].values.tolist() == [
        ["due_today", 1, 30], ["overdue", 1, 27]]


# --- forecast -------------------------------------------------------------------------------

def test_an_accounts_later_renewals_need_it_to_survive_the_earlier_ones():
    # One monthly account, risks 0.5, 0.2, 0.1: lost in Oct 0.5, Nov 0.5 * 0.2 = 0.1,
    # Dec 0.5 * 0.8 * 0.1 = 0.04, the quarter 0.64.
    table = by_period(forecast(schedule([("m", 0, "2026-10-10", 1000.0, 0.5),
                                         ("m", 1, "2026-11-10", 1000.0, 0.2),
                                         ("m", 2, "2026-12-10", 1000.0, 0.1)]), AS_OF))
    # The next 12 months hold the same three renewals: 0.64 too.
    assert table["expected_accounts_lost"].tolist() == pytest.approx([0.5, 0.1, 0.04, 0.64, 0.64])
    assert table["expected_arr_lost"].tolist() == pytest.approx([500.0, 100.0, 40.0, 640.0, 640.0])


def test_an_account_is_lost_at_most_once_in_a_quarter():
    # Three renewals at risk 0.5: P(lost in Q4) = 1 - 0.5**3 = 0.875, not 1.5.
    rows = [("m", k, f"2026-{10 + k}-05", 1200.0, 0.5) for k in range(3)]
    q4 = by_period(forecast(schedule(rows), AS_OF)).loc["Q4 2026"]
    assert q4["expected_accounts_lost"] == pytest.approx(0.875)
    assert q4["expected_arr_lost"] == pytest.approx(1050.0)
    # The loss is 0 (0.125) or 1200 once (0.875): 0.1 -> 0, 0.9 -> 1200, never 2400 or 3600.
    assert (q4["low"], q4["high"]) == (0.0, 1200.0)


def test_the_next_12_months_hold_a_monthly_accounts_twelve_renewals_and_no_thirteenth():
    # Renewals on the 5th of every month from Oct 2026: twelve by 2027-09-30, the
    # thirteenth (2027-10-05) is after the year. Each at risk 0.1: lost 1 - 0.9**12.
    rows = [("m", k, (pd.Timestamp("2026-10-05") + pd.DateOffset(months=k)).date().isoformat(),
             1200.0, 0.1) for k in range(13)]
    year = by_period(forecast(schedule(rows), AS_OF)).loc["Next 12 months"]
    assert (year["start"], year["end"]) == (0, 365)
    assert year["expected_accounts_lost"] == pytest.approx(1 - 0.9 ** 12)
    assert year["expected_arr_lost"] == pytest.approx(1200.0 * (1 - 0.9 ** 12))
    assert (year["low"], year["high"]) == (0.0, 1200.0)


def test_arr_counts_once_per_period_however_often_an_account_renews():
    rows = [("m", k, f"2026-{10 + k}-05", 1200.0, 0.1) for k in range(3)]
    rows.append(("y", 0, "2026-11-20", 50000.0, 0.1))
    table = by_period(forecast(schedule(rows), AS_OF))
    assert table["arr_up_for_renewal"].tolist() == [1200.0, 51200.0, 1200.0, 51200.0, 51200.0]
    assert table["accounts"].tolist() == [1, 2, 1, 2, 2]


def test_a_period_without_renewals_is_zero_with_an_interval_of_zero():
    table = by_period(forecast(schedule([("y", 0, "2026-10-15", 5000.0, 0.4)]), AS_OF))
    for label in ("Nov 2026", "Dec 2026"):
        row = table.loc[label]
        assert (row["accounts"], row["arr_up_for_renewal"], row["expected_arr_lost"], row["low"],
                row["high"], row["expected_accounts_lost"]) == (0, 0.0, 0.0, 0.0, 0.0, 0.0)
    empty = forecast(schedule([]), AS_OF)
    assert len(empty) == 5 and (empty[["accounts", "arr_up_for_renewal", "low", "high"]] == 0).all().all()


def test_period_boundaries_a_renewal_on_the_end_belongs_one_on_as_of_does_not():
    rows = [("today", 0, AS_OF, 7000.0, 0.9),            # on as_of: in no period, no survival
            ("today", 1, "2026-10-31", 7000.0, 0.5),      # Oct's last day: Oct, not Nov
            ("end", 0, "2026-12-31", 3000.0, 0.5),        # the quarter's last day
            ("after", 0, "2027-01-01", 9000.0, 0.5)]      # after the quarter
    table = by_period(forecast(schedule(rows), AS_OF))
    assert table["arr_up_for_renewal"].tolist() == [7000.0, 0.0, 3000.0, 10000.0, 19000.0]
    # 0.5, not 0.1 * 0.5: the renewal on as_of does not count as one it had to survive.
    assert table.loc["Oct 2026", "expected_arr_lost"] == pytest.approx(3500.0)
    assert table.loc["Q4 2026", "expected_arr_lost"] == pytest.approx(5000.0)


def test_the_interval_is_the_central_80_percent_of_the_hand_computed_distribution():
    rows = [("a", 0, "2026-10-05", 100.0, 0.5),
            ("b", 0, "2026-10-06", 200.0, 0.5), ("b", 1, "2026-11-06", 200.0, 0.5)]
    sched = schedule(rows)
    # Oct: a 0/100 (0.5/0.5), b 0/200 (0.5/0.5): each sum 0, 100, 200, 300 has 0.25.
    # Nov: b only, 200 with 0.25.  Q4: a 100 w.p. 0.5, b 200 w.p. 0.75:
    #   0: 0.125, 100: 0.125, 200: 0.375, 300: 0.375; cdf 0.125, 0.25, 0.625, 1.
    table = by_period(forecast(sched, AS_OF))
    assert table.loc["Oct 2026", ["low", "high"]].tolist() == [0.0, 300.0]
    assert table.loc["Nov 2026", ["low", "high"]].tolist() == [0.0, 200.0]
    assert table.loc["Q4 2026", ["low", "high"]].tolist() == [0.0, 300.0]  # 0.125 >= 0.1
    assert table.loc["Q4 2026", "expected_arr_lost"] == pytest.approx(50.0 + 150.0)
    # Narrower levels: the Q4 cdf first reaches 0.15 at 100, 0.3 at 200, 0.7 and 0.85 at 300.
    for level, interval in [(0.7, (100.0, 300.0)), (0.4, (200.0, 300.0))]:
        q4 = by_period(forecast(sched, AS_OF, level=level)).loc["Q4 2026"]
        assert (q4["low"], q4["high"]) == interval


def test_a_cumulative_probability_of_exactly_90_percent_reaches_the_high_bound():
    # 100 w.p. 0.25, 200 w.p. 0.25, 400 w.p. 0.4: P(0..500) = .3375, .1125, .1125, .0375,
    # .225, .075, so the cdf is exactly 0.9 at 500 (0.8999999999999999 in floating point).
    rows = [("a", 0, "2026-10-05", 100.0, 0.25), ("b", 0, "2026-10-06", 200.0, 0.25),
            ("c", 0, "2026-10-07", 400.0, 0.4)]
    oct_ = by_period(forecast(schedule(rows), AS_OF)).loc["Oct 2026"]
    assert (oct_["low"], oct_["high"]) == (0.0, 500.0)


def test_loss_distribution_by_hand_and_against_enumeration():
    dist = loss_distribution(["a", "b", "b"], [100.0, 200.0, 200.0], [0.5, 0.25, 0.5])
    assert dist.to_dict() == pytest.approx({0.0: 0.125, 100.0: 0.125, 200.0: 0.375, 300.0: 0.375})
    # Values off any round grid (the split-cell path): the mean stays exact, quantiles within
    # a cell of those of the enumerated distribution.
    arr, p = [1000.37, 2500.11, 733.9, 4210.0], [0.3, 0.2, 0.6, 0.1]
    exact: dict[float, float] = {}
    for lost in itertools.product([0, 1], repeat=4):
        value = sum(a for a, x in zip(arr, lost) if x)
        exact[value] = exact.get(value, 0.0) + np.prod([q if x else 1 - q for q, x in zip(p, lost)])
    exact_dist = pd.Series(exact).sort_index()
    coarse = loss_distribution(["a", "b", "c", "d"], arr, p, max_bins=200)
    cell = sum(arr) / 200
    assert (coarse.index.to_numpy() * coarse.to_numpy()).sum() == pytest.approx(np.dot(arr, p))
    for level in (0.5, 0.8, 0.9):
        assert np.allclose(central_interval(coarse, level), central_interval(exact_dist, level),
                           atol=2 * cell)


def test_the_interval_matches_a_normal_approximation_on_a_large_book():
    # 2000 single renewals: the sum is close to normal; Cornish-Fisher's skewness term
    # corrects the rest. The tolerance, 2% of sigma plus a grid cell, is far below the
    # interval's half-width (1.28 sigma).
    rng = np.random.default_rng(3)
    n = 2000
    arr = rng.integers(10_000, 50_000, n).astype(float) + 0.5
    risk = rng.uniform(0.02, 0.3, n)
    rows = schedule([(f"a{i}", 0, "2026-11-15", arr[i], risk[i]) for i in range(n)])
    q4 = by_period(forecast(rows, AS_OF)).loc["Q4 2026"]
    mean = float(arr @ risk)
    sigma = float(np.sqrt((arr**2 * risk * (1 - risk)).sum()))
    skew = float((arr**3 * risk * (1 - risk) * (1 - 2 * risk)).sum()) / sigma**3
    z = 1.2815515655446004
    target = [mean + sigma * (-z + skew * (z * z - 1) / 6), mean + sigma * (z + skew * (z * z - 1) / 6)]
    cell = arr.sum() / 20_000
    assert q4["expected_arr_lost"] == pytest.approx(mean)
    assert np.allclose([q4["low"], q4["high"]], target, atol=0.02 * sigma + cell)


def _simulated_loss(sched: pd.DataFrame, start: int, end: int, worlds: int, seed: int) -> np.ndarray:
    """ARR lost in (start, end] in each simulated world: renewals decided one after another."""
    rng = np.random.default_rng(seed)
    day = (sched["renewal_date"] - pd.Timestamp(AS_OF)).dt.days.to_numpy()
    lost = np.zeros(worlds)
    for _, rows in sched.groupby("account_id"):
        rows = rows.sort_values("sequence")
        churn = rng.uniform(size=(worlds, len(rows))) < rows["renewal_risk"].to_numpy()
        first = np.where(churn.any(axis=1), churn.argmax(axis=1), -1)  # the renewal it churns at
        d = day[rows.index.to_numpy()]
        hit = (first >= 0) & np.isin(first, np.flatnonzero((d > start) & (d <= end)))
        lost += hit * rows["arr"].to_numpy()[np.maximum(first, 0)]
    return lost


def test_the_interval_covers_about_80_percent_of_simulated_worlds():
    rng = np.random.default_rng(11)
    rows = []
    for i in range(40):
        arr = float(rng.integers(5_000, 60_000))
        if i % 3 == 0:  # monthly: three renewals in the quarter
            rows += [(f"a{i}", k, f"2026-{10 + k}-{5 + i % 20:02d}", arr, rng.uniform(0.05, 0.4))
                     for k in range(3)]
        else:
            rows.append((f"a{i}", 0, f"2026-{10 + i % 3}-{1 + i % 28:02d}", arr, rng.uniform(0.05, 0.4)))
    sched = schedule(rows)
    table = by_period(forecast(sched, AS_OF))
    worlds = 4000
    for label in ("Nov 2026", "Q4 2026"):  # Nov needs the October survival
        _, start, end = next(p for p in periods(AS_OF) if p[0] == label)
        low, high = table.loc[label, ["low", "high"]]
        lost = _simulated_loss(sched, start, end, worlds, seed=5)
        covered = float(np.mean((lost >= low) & (lost <= high)))
        # The interval holds at least 80% by construction, more only where one loss value
        # carries a lot of probability; 40 accounts with distinct ARR make thousands of
        # values, and it holds 80.01%. Allowing 1 point for that and four binomial standard
        # errors of 4000 worlds (0.025), a correct forecast fails with odds ~1/15000, while
        # an 80% interval that ignored the survival product or counted an account lost more
        # than once would not pass.
        se = np.sqrt(0.8 * 0.2 / worlds)
        assert 0.8 - 4 * se <= covered <= 0.81 + 4 * se, (label, covered)
        assert lost.mean() == pytest.approx(table.loc[label, "expected_arr_lost"], rel=0.03)


# --- top_accounts ---------------------------------------------------------------------------

def test_top_accounts_carry_most_of_the_expected_loss_with_their_share():
    sched = schedule([("a", 0, "2026-10-05", 1000.0, 0.5), ("a", 1, "2026-11-05", 1000.0, 0.5),
                      ("b", 0, "2026-10-20", 4000.0, 0.25), ("c", 0, "2026-11-20", 500.0, 0.2),
                      ("d", 0, "2027-02-01", 9000.0, 0.9)])  # after Q4
    top = top_accounts(sched, AS_OF, "Q4 2026")
    # a: 1000 * 0.75 = 750; b: 1000; c: 100; total 1850.
    assert top["account_id"].tolist() == ["b", "a", "c"]
    assert top["expected_arr_lost"].tolist() == pytest.approx([1000.0, 750.0, 100.0])
    assert top["share"].tolist() == pytest.approx([1000 / 1850, 750 / 1850, 100 / 1850])
    assert top.loc[1, "renewals"] == 2 and top.loc[1, "probability_lost"] == pytest.approx(0.75)
    assert top_accounts(sched, AS_OF, "Q4 2026", n=1)["account_id"].tolist() == ["b"]
    nov = top_accounts(sched, AS_OF, ("Nov", 31, 61))
    assert nov["account_id"].tolist() == ["a", "c"] and nov["share"].sum() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no period 'Q3 2026'"):
        top_accounts(sched, AS_OF, "Q3 2026")


# --- backtest -------------------------------------------------------------------------------

def _predictions() -> pd.DataFrame:
    frames = []
    for as_of, rows in [
        ("2026-09-30", [("a", 0, "2026-10-10", 1000.0, 0.5), ("b", 0, "2026-10-20", 3000.0, 0.25)]),
        ("2026-10-31", [("a", 0, "2026-11-10", 1000.0, 0.4), ("c", 0, "2026-11-01", 2000.0, 0.5)]),
        # On November's first day: too late for November, the one December uses.
        ("2026-11-01", [("a", 0, "2026-11-10", 1000.0, 0.3), ("a", 1, "2026-12-10", 1000.0, 0.05)]),
    ]:
        frames.append(schedule(rows).assign(as_of_date=pd.Timestamp(as_of)))
    return pd.concat(frames, ignore_index=True)


OUTCOMES = pd.DataFrame({
    "account_id": ["a", "b", "d", "c", "a", "a"],
    "renewal_date": pd.to_datetime(["2026-10-10", "2026-10-20", "2026-10-25", "2026-11-01",
                                    "2026-11-10", "2026-12-10"]),
    "churned": [0, 0, 1, 1, 0, 1],  # d signed after 30 Sep: in no forecast, so not counted
    "arr": [1000.0, 3000.0, 500.0, 2000.0, 1000.0, 1000.0],
})


def test_backtest_forecasts_each_month_from_the_last_snapshot_before_it():
    table = backtest(_predictions(), OUTCOMES, ["2026-12", "2026-10", pd.Period("2026-11", "M")])
    assert table["month"].tolist() == [pd.Timestamp(f"2026-{m}-01") for m in (10, 11, 12)]
    assert table["forecast_as_of"].tolist() == [pd.Timestamp(d) for d in
                                                ("2026-09-30", "2026-10-31", "2026-11-01")]
    # Oct: a 1000 w.p. 0.5, b 3000 w.p. 0.25 -> 0 .375, 1000 .375, 3000 .125, 4000 .125.
    # Nov: a 1000 w.p. 0.4, c 2000 w.p. 0.5 -> cdf .3, .5, .8, 1 at 0, 1000, 2000, 3000.
    # Dec: a 1000 w.p. 0.05 * (1 - 0.3) = 0.035 (it must survive 10 Nov first) -> [0, 0].
    assert table["arr_up_for_renewal"].tolist() == [4000.0, 3000.0, 1000.0]
    assert table["expected_arr_lost"].tolist() == pytest.approx([1250.0, 1400.0, 35.0])
    assert table[["low", "high"]].values.tolist() == [[0.0, 4000.0], [0.0, 3000.0], [0.0, 0.0]]
    assert table["actual_arr_lost"].tolist() == [0.0, 2000.0, 1000.0]
    assert table["inside"].tolist() == [True, True, False]  # October's 0 is on its low bound
    assert backtest_summary(table) == pytest.approx(
        {"months": 3, "coverage": 2 / 3, "expected_arr_lost": 2685.0, "actual_arr_lost": 3000.0})


def test_backtest_needs_a_snapshot_before_the_month():
    with pytest.raises(ValueError, match="no snapshot on or before 2026-08-31 to forecast 2026-09"):
        backtest(_predictions(), OUTCOMES, ["2026-09"])
    empty = backtest(_predictions(), OUTCOMES, [])
    assert empty.empty and list(empty.columns)[-1] == "inside"
    assert np.isnan(backtest_summary(empty)["coverage"])


# --- bad schedules --------------------------------------------------------------------------

@pytest.mark.parametrize("change, message", [
    (lambda s: s.assign(renewal_risk=[0.5, 1.2]), "renewal_risk must be a probability"),
    (lambda s: s.assign(renewal_risk=[0.5, np.nan]), "renewal_risk must be a probability"),
    (lambda s: s.assign(arr=[-1.0, 5.0]), "arr must be finite and >= 0"),
    (lambda s: s.assign(arr=[np.inf, 5.0]), "arr must be finite and >= 0"),
    (lambda s: s.assign(sequence=[0, 0]), "two rows with the same sequence"),
    (lambda s: s.assign(sequence=[1, 0]), "renewal dates must increase with its sequence"),
    (lambda s: s.drop(columns="renewal_risk"), r"lacks column\(s\) \['renewal_risk'\]"),
])
def test_a_bad_schedule_is_refused_with_the_rule_it_breaks(change, message):
    good = schedule([("a", 0, "2026-10-05", 100.0, 0.5), ("a", 1, "2026-11-05", 100.0, 0.5)])
    forecast(good, AS_OF)
    with pytest.raises(ValueError, match=message):
        forecast(change(good), AS_OF)


def test_schedule_with_risk_asks_each_renewal_with_its_own_distance():
    from models.forecast import schedule_with_risk

    rows = pd.DataFrame({"account_id": ["m", "y"], "renewal_days_to_next": [10.0, 40.0],
                         "term_length_days_current": [30.0, 365.0],
                         "arr_total_current": [1200.0, 50000.0]})
    # A risk that reads the distance it is asked about: 1% per 10 days.
    schedule = schedule_with_risk(rows, lambda x: x["renewal_days_to_next"].to_numpy() / 1000,
                                  "2026-09-30", "2026-12-31")
    assert schedule[["account_id", "sequence", "days_to_renewal"]].values.tolist() == [
        ["m", 0, 10], ["m", 1, 40], ["m", 2, 70], ["y", 0, 40]]
    assert schedule["renewal_risk"].tolist() == pytest.approx([0.01, 0.04, 0.07, 0.04])
