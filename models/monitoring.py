"""Is the score still trustworthy? Freshness, coverage, drift and realised performance.

Pure functions over tables; :mod:`pipelines.monitor` reads the inputs and writes the
findings. The reference for coverage and drift is the model's own training window,
kept in the fitted model as a :class:`Profile` (quantile bins per metric, coverage per
metric group, score distribution), so every version is monitored against what it
learned from.

Drift uses the population stability index (PSI) over the training window's decile bins
plus a bin for "missing". PSI measures how far the distribution moved, not whether the
move is statistically detectable, so it does not fire on every large sample the way a
significance test does. The usual reading: below 0.1 stable, 0.1-0.25 worth a look,
above 0.25 a shift.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from models.observations import label_observations

PSI_WATCH = 0.1
PSI_ALERT = 0.25
# Coverage (share of accounts with data) lower than at training by this much is flagged.
COVERAGE_DROP = 0.10
BINS = 10
# Metrics that move with the calendar by definition, reported but never alerted: tenure
# grows a day a day, and a monthly term lasts 28 to 31 days depending on the month.
CLOCKS = ("tenure_days_current", "term_length_days_current")
EPS = 1e-4  # floor on a bin's share, so an empty bin gives a finite PSI
# A feed's usual gap is read over the half-year before its last record.
RHYTHM_DAYS = 182


@dataclass
class Profile:
    """A reference distribution: the training window as the model saw it.

    Attributes:
        edges: Metric -> inner bin edges (deciles of the present values).
        shares: Metric -> share of rows per bin, the last bin being "missing".
        coverage: Metric group -> share of rows with at least one metric of the group.
        rows: Rows profiled.
    """

    edges: dict[str, list[float]]
    shares: dict[str, list[float]]
    coverage: dict[str, float]
    rows: int
    score_edges: list[float] = field(default_factory=list)
    score_shares: list[float] = field(default_factory=list)


def _edges(values: np.ndarray) -> list[float]:
    present = values[~np.isnan(values)]
    if len(present) == 0:
        return []
    return sorted(set(np.quantile(present, np.linspace(0, 1, BINS + 1)[1:-1]).tolist()))


def _shares(values: np.ndarray, edges: list[float]) -> np.ndarray:
    """Share of values per bin (``x <= edge`` goes left), the last bin being missing."""
    missing = np.isnan(values)
    counts = np.bincount(np.searchsorted(edges, values[~missing], side="left"),
                         minlength=len(edges) + 1).astype(float)
    counts = np.append(counts, missing.sum())
    return counts / max(len(values), 1)


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index between two binned distributions (shares per bin).

    >>> round(psi(np.array([0.5, 0.5]), np.array([0.5, 0.5])), 6)
    0.0
    >>> round(psi(np.array([0.5, 0.5]), np.array([0.9, 0.1])), 3)
    0.879
    """
    e, a = np.maximum(expected, EPS), np.maximum(actual, EPS)
    return float(np.sum((a - e) * np.log(a / e)))


def noise_psi(bins: int, n_then: int, n_now: int) -> float:
    """The PSI two samples of one distribution show by chance, about (bins - 1)(1/n + 1/m)
    (PSI is the symmetrised Kullback-Leibler divergence; n times it is roughly
    chi-squared with bins - 1 degrees of freedom).

    >>> round(noise_psi(11, 330, 330), 3), round(noise_psi(11, 100_000, 90_000), 5)
    (0.061, 0.00021)
    """
    return (bins - 1) * (1 / max(n_then, 1) + 1 / max(n_now, 1))


def group_coverage(frame: pd.DataFrame, groups: dict[str, str]) -> dict[str, float]:
    """Per metric group, the share of rows with at least one of the group's metrics."""
    out = {}
    for group in sorted(set(groups.values())):
        columns = [m for m, g in groups.items() if g == group and m in frame.columns]
        if columns:
            out[group] = float(frame[columns].notna().any(axis=1).mean()) if len(frame) else 0.0
    return out


def build_profile(X: pd.DataFrame, groups: dict[str, str],
                  scores: np.ndarray | None = None) -> Profile:
    """The reference profile of training rows ``X`` (metric columns) and their scores."""
    edges, shares = {}, {}
    for column in X.columns:
        values = X[column].to_numpy(dtype=float, na_value=np.nan)
        edges[column] = _edges(values)
        shares[column] = _shares(values, edges[column]).tolist()
    profile = Profile(edges, shares, group_coverage(X, groups), len(X))
    if scores is not None:
        scores = np.asarray(scores, dtype=float)
        profile.score_edges = _edges(scores)
        profile.score_shares = _shares(scores, profile.score_edges).tolist()
    return profile


def drift(profile: Profile, X: pd.DataFrame, scores: np.ndarray | None = None) -> pd.DataFrame:
    """PSI of each metric (and of the health score) against the profile, worst first.

    Returns:
        ``metric``, ``psi``, ``status`` (stable/watch/shift; ``clock`` for metrics that
        grow with the calendar, such as tenure), ``missing_then``,
        ``missing_now`` (shares of missing values).
    """
    rows = []
    for column, edges in profile.edges.items():
        if column not in X.columns:
            continue
        now = _shares(X[column].to_numpy(dtype=float, na_value=np.nan), edges)
        then = np.asarray(profile.shares[column])
        rows.append((column, psi(then, now), then[-1], now[-1]))
    if scores is not None and profile.score_shares:
        now = _shares(np.asarray(scores, dtype=float), profile.score_edges)
        then = np.asarray(profile.score_shares)
        rows.append(("health_score", psi(then, now), then[-1], now[-1]))
    out = pd.DataFrame(rows, columns=["metric", "psi", "missing_then", "missing_now"])
    # Two samples of the same distribution still differ: about (bins - 1) x (1/n + 1/m) of
    # PSI. The thresholds apply above that, so a small book does not raise false alarms.
    noise = noise_psi(BINS + 1, profile.rows, len(X))
    out["status"] = np.select([out["metric"].isin(CLOCKS), out["psi"] >= PSI_ALERT + noise,
                               out["psi"] >= PSI_WATCH + noise], ["clock", "shift", "watch"], "stable")
    return out.sort_values("psi", ascending=False, ignore_index=True)


def coverage_change(profile: Profile, X: pd.DataFrame, groups: dict[str, str]) -> pd.DataFrame:
    """Coverage per metric group now against training; ``flagged`` when it fell by
    :data:`COVERAGE_DROP` or more."""
    now = group_coverage(X, groups)
    out = pd.DataFrame([(g, profile.coverage.get(g, np.nan), now.get(g, 0.0))
                        for g in sorted(set(profile.coverage) | set(now))],
                       columns=["group", "training", "now"])
    out["flagged"] = (out["training"] - out["now"]) >= COVERAGE_DROP
    return out


def source_recency(record_days: Mapping[str, Sequence], rows: Mapping[str, int],
                   as_of: dt.date | pd.Timestamp, window_days: int = RHYTHM_DAYS) -> pd.DataFrame:
    """Each dated source's last record against the as-of date D, point in time: only
    records on or before D count. The one place the report's freshness table and the
    monitor's freshness check get their numbers.

    Args:
        record_days: Source -> the days (or times) it has records on, in any order.
        rows: Source -> its number of rows.
        as_of: The as-of date D.

    Returns:
        One row per source of ``record_days``, in its order: ``source``, ``rows``,
        ``last_record`` (the day, or None when nothing is on or before D),
        ``days_behind`` (D minus that day, or None) and ``usual_gap`` (:func:`usual_gap`
        up to that day, or None). Values are plain Python values (object columns), so
        they travel to JSON as they are.

    >>> t = pd.Timestamp
    >>> days = {"events": [t("2026-09-01 10:00"), t("2026-09-20 08:30"), t("2026-10-02")],
    ...         "tickets": []}
    >>> source_recency(days, {"events": 3, "tickets": 0}, dt.date(2026, 9, 30)).to_dict("records")  # doctest: +NORMALIZE_WHITESPACE
    [{'source': 'events', 'rows': 3, 'last_record': Timestamp('2026-09-20 00:00:00'), 'days_behind': 10,
      'usual_gap': 19.0},
     {'source': 'tickets', 'rows': 0, 'last_record': None, 'days_behind': None, 'usual_gap': None}]
    """
    day = pd.Timestamp(as_of).normalize()
    end = np.datetime64(day.date(), "D")
    out = []
    for name, stamps in record_days.items():
        days = pd.to_datetime(pd.Series(list(stamps), dtype="object")).to_numpy(
            dtype="datetime64[us]").astype("datetime64[D]")
        days = days[~np.isnat(days)]
        days = days[days <= end]
        if len(days) == 0:
            out.append((name, rows.get(name, 0), None, None, None))
            continue
        last = pd.Timestamp(days.max())
        out.append((name, rows.get(name, 0), last, int((day - last).days),
                    usual_gap(days.astype(np.int64), window_days)))
    return pd.DataFrame(out, columns=["source", "rows", "last_record", "days_behind", "usual_gap"],
                        dtype=object)


def freshness(recency: pd.DataFrame, stale_days: dict[str, int] | None = None,
              min_days: int = 3) -> pd.DataFrame:
    """Whether each source in ``recency`` (:func:`source_recency`) is stale.

    A source is stale when its last record is older than its own rhythm allows: twice
    the longest gap between consecutive record days in the half-year before that record
    (at least ``min_days``), unless ``stale_days`` sets the limit for the source; a
    source with no record on or before D is stale.

    >>> t = pd.Timestamp
    >>> recency = pd.DataFrame({"source": ["events", "surveys"],
    ...                         "last_record": [t("2026-09-20"), t("2026-09-01")],
    ...                         "days_behind": [10, 29], "usual_gap": [1.0, 20.0]}, dtype=object)
    >>> f = freshness(recency)
    >>> f[["source", "days_behind", "limit_days", "stale"]].values.tolist()
    [['events', 10, 3, True], ['surveys', 29, 40, False]]
    """
    rows = []
    for source, last, behind, gap in recency[["source", "last_record", "days_behind", "usual_gap"]].itertuples(
            index=False):
        limit = (stale_days or {}).get(source)
        if limit is None:
            limit = max(min_days, int(np.ceil(2 * gap))) if gap is not None and gap == gap else min_days
        rows.append((source, last, behind, int(limit), behind is None or behind > limit))
    return pd.DataFrame(rows, columns=["source", "last_record", "days_behind", "limit_days", "stale"])


def usual_gap(days: np.ndarray, window_days: int = 182) -> float | None:
    """The longest gap, in days, between consecutive record days (day numbers) over the
    ``window_days`` before the last record (None with fewer than two record days).

    >>> usual_gap(np.array([100, 101, 101, 108]))
    7.0
    """
    days = np.asarray(days, dtype=np.int64)
    if len(days) == 0:
        return None
    days = days[days > days.max() - window_days]
    present = np.flatnonzero(np.bincount(days - days.min()))
    return float(np.diff(present).max()) if len(present) > 1 else None


def realised_performance(runs: pd.DataFrame, churn_events: pd.DataFrame, data_end: pd.Timestamp,
                         horizon_days: int, grace_days: int) -> pd.DataFrame:
    """How past score runs did once their outcomes became known.

    Args:
        runs: Score history rows: ``account_id``, ``as_of_date``, ``churn_probability``.
        churn_events: ``account_id``, ``churn_date`` known as of ``data_end``.
        data_end: The last day of data: a run's label window (D, D + horizon] is known
            once ``grace_days`` have passed after it.

    Returns:
        One row per matured run date: ``as_of_date``, ``accounts``, ``churned``,
        ``roc_auc`` (empty when only one class occurred), ``mean_predicted``,
        ``observed_rate``, ``brier``.
    """
    runs = runs.dropna(subset=["churn_probability"])
    known = runs["as_of_date"] + pd.Timedelta(days=horizon_days + grace_days) <= data_end
    runs = runs.loc[known]
    columns = ["as_of_date", "accounts", "churned", "roc_auc", "mean_predicted", "observed_rate", "brier"]
    if runs.empty:
        return pd.DataFrame(columns=columns)
    labelled = label_observations(runs.reset_index(drop=True), churn_events, horizon_days,
                                  grace_days=grace_days)
    rows = []
    for day, part in labelled.groupby("as_of_date"):
        y, p = part["churned"].to_numpy(), part["churn_probability"].to_numpy()
        auc = roc_auc_score(y, p) if 0 < y.sum() < len(y) else np.nan
        rows.append((day, len(part), int(y.sum()), auc, float(p.mean()), float(y.mean()),
                     float(np.mean((p - y) ** 2))))
    return pd.DataFrame(rows, columns=columns)
