"""Score trends: how each account's health score and band moved over its score runs.

Pure: takes the score history as a table (:func:`pipelines.history.read_runs` reads it)
and returns a table; ``score`` joins it onto the run's scores and raises the alerts.
"""

from __future__ import annotations

import pandas as pd


def account_trends(runs: pd.DataFrame, debounce: int) -> pd.DataFrame:
    """Per account, from its runs in date order (the last one is the current run): the
    score change since the previous run, runs in the current band, the date it entered
    the band, consecutive runs falling, and the band it left if that change has just held
    ``debounce`` runs (else empty).

    >>> runs = pd.DataFrame({"account_id": ["a"] * 4, "as_of_date": pd.date_range("2026-01-05", periods=4, freq="7D"),
    ...                      "health_score": [70.0, 65.0, 55.0, 50.0], "band": ["Healthy", "Healthy", "At-risk", "At-risk"]})
    >>> t = account_trends(runs, debounce=2).loc["a"]
    >>> float(t.score_change), int(t.runs_in_band), str(t.band_since.date()), int(t.falling_runs), t.alert_from
    (-5.0, 2, '2026-01-19', 3, 'Healthy')
    """
    runs = runs.sort_values(["account_id", "as_of_date"], ignore_index=True)
    account, band, health = runs["account_id"], runs["band"], runs["health_score"]
    first = account.ne(account.shift())
    # Blocks of consecutive runs in one band; stretches of consecutive falls.
    block = (first | band.ne(band.shift())).cumsum()
    falls = ~first & (health < health.shift())
    stretch = (~falls).cumsum()
    last = ~account.duplicated(keep="last")
    block_start = runs.groupby(block)["as_of_date"].transform("first")
    in_band = runs.groupby(block).cumcount() + 1
    band_before = band.shift().where(~first)
    left = band_before.groupby(block).transform("first")
    has_before = ~first.groupby(block).transform("first")
    trend = pd.DataFrame({
        "score_change": (health - health.shift()).where(~first),
        "runs_in_band": in_band,
        "band_since": block_start,
        "falling_runs": runs.groupby(stretch).cumcount(),
        "alert_from": left.where(has_before & (in_band == debounce)),
    }).loc[last]
    trend.index = account[last]
    return trend
