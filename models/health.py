"""From calibrated churn odds to a 0-100 health score, bands and drivers in points.

The score is a scale of the risk of churn **within a year** (:func:`yearly_log_odds`):
a monthly renewal is churned far less often than an annual one but comes twelve times a
year, so only a yearly risk means the same for every account whatever its term.

The scale is "points to double the odds", anchored on the typical account the model
learned from (the median yearly risk of its training rows): that account scores
``reference`` (70); every doubling of the yearly churn odds costs ``points_to_double``
(15) points, every halving earns them. So

    linear score = reference - k * (log-odds - logit(anchor rate)),  k = points / ln 2

and a metric's SHAP contribution c (calibrated log-odds) is worth about -k * c points.
SHAP contributions start from the model's expected log-odds (its average account), so
an account's drivers add up to its score minus the score of that average account with
the account's own term: its reference score, reported with every score. The yearly
transform and the compression near the ends (below 10 and above 90 points every further
point counts less, hyperbolically, so the score stays strictly monotone in the
probability) bend the line; the drivers are scaled by the same bend, so they still add
up to the displayed gap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

EDGE = 10.0  # width of the compressed zone at each end of the scale
YEAR_DAYS = 365.25


def renewals_per_year(term_days) -> np.ndarray:
    """How many renewals a year a term of ``term_days`` days has (1 when unknown).

    >>> renewals_per_year([30.4375, 365.25, 730.5, np.nan]).round(2).tolist()
    [12.0, 1.0, 0.5, 1.0]
    """
    days = np.asarray(term_days, dtype=float)
    return np.where(np.isfinite(days) & (days > 0), YEAR_DAYS / np.where(days > 0, days, 1.0), 1.0)


def yearly_log_odds(renewal_log_odds, term_days) -> np.ndarray:
    """The log-odds of churn within a year for an account whose every renewal in that
    year carries the risk ``sigmoid(renewal_log_odds)``: ``1 - (1 - r) ** n`` with ``n``
    renewals a year (12 for a monthly term, 1 for an annual one, 0.5 for two years).

    This is what makes a score mean the same for every account: a monthly renewal is
    churned far less often than an annual one, but twelve times a year. Computed in
    log space, so it stays exact for tiny and huge risks.

    >>> r = np.log(0.02 / 0.98)
    >>> p = 1 / (1 + np.exp(-yearly_log_odds([r, r], [365.25, 30.4375])))
    >>> p.round(4).tolist()
    [0.02, 0.2153]
    """
    h = np.asarray(renewal_log_odds, dtype=float)
    n = renewals_per_year(term_days)
    log_survive = -n * np.logaddexp(0.0, h)  # n * log(1 - r)
    # logit(1 - s) = log(1 - s) - log(s), with log(1 - s) = log(-expm1(log s)).
    with np.errstate(divide="ignore"):
        return np.log(-np.expm1(log_survive)) - log_survive


@dataclass(frozen=True)
class HealthScale:
    """The mapping from churn log-odds to points; fitted with the model (``base_rate``:
    the anchor's yearly risk, which scores ``reference``)."""

    base_rate: float
    reference: float = 70.0
    points_to_double: float = 15.0

    @property
    def k(self) -> float:
        return self.points_to_double / math.log(2)

    @property
    def base_log_odds(self) -> float:
        return math.log(self.base_rate / (1 - self.base_rate))

    def linear(self, log_odds: np.ndarray) -> np.ndarray:
        return self.reference - self.k * (np.asarray(log_odds, dtype=float) - self.base_log_odds)

    def score(self, log_odds: np.ndarray) -> np.ndarray:
        """Health 0-100 (strictly inside), higher is healthier, strictly falling in the odds.

        >>> s = HealthScale(0.05)
        >>> float(s.score(np.log(0.05 / 0.95)))
        70.0
        >>> bool(s.score(-20.0) < 100 and s.score(20.0) > 0)
        True
        """
        return _compress(self.linear(log_odds))

    def points(self, contributions: pd.DataFrame, log_odds: np.ndarray,
               base: float | np.ndarray, term_days=None) -> pd.DataFrame:
        """Per-metric contributions (calibrated renewal log-odds) as score points.

        ``base`` is where the contributions start: the model's log-odds for the average
        account, or per row that plus what is not shown as a driver (the contract
        calendar). Its score is the row's reference score, and each row's points sum to
        its score minus that reference (to float precision). With ``term_days``, both
        are scored per year (:func:`yearly_log_odds`), as the health score is; the
        points keep their proportions and add up to the displayed gap.
        """
        log_odds = np.asarray(log_odds, dtype=float)
        base = np.broadcast_to(np.asarray(base, dtype=float), log_odds.shape)
        raw = -self.k * contributions
        gap_linear = self.linear(log_odds) - self.linear(base)
        if term_days is not None:
            log_odds, base = yearly_log_odds(log_odds, term_days), yearly_log_odds(base, term_days)
        gap_shown = self.score(log_odds) - self.score(base)
        with np.errstate(divide="ignore", invalid="ignore"):
            factor = np.where(np.abs(gap_linear) > 1e-12, gap_shown / gap_linear, 1.0)
        return raw.mul(factor, axis=0)

    def reference_score(self, base: float) -> float:
        """The score of the model's average account: where every account's drivers start."""
        return float(self.score(np.array([base]))[0])


def _compress(linear: np.ndarray) -> np.ndarray:
    """Identity on [EDGE, 100 - EDGE]; beyond, a hyperbolic approach to 0 and 100.

    Smooth (slope 1 at the joins) and, unlike an exponential, still strictly increasing
    in floating point far out in the tails.
    """
    x = np.asarray(linear, dtype=float)
    low, high = EDGE, 100 - EDGE
    out = x.copy()
    below, above = x < low, x > high
    out[below] = EDGE * EDGE / (EDGE + (low - x[below]))
    out[above] = 100 - EDGE * EDGE / (EDGE + (x[above] - high))
    return out


# --------------------------------------------------------------------------- bands

FIXED = ((40.0, "Critical"), (60.0, "At-risk"), (80.0, "Healthy"), (100.0, "Thriving"))
QUANTILE = ((0.25, "Requires attention"), (0.75, "Take notice"), (1.0, "Doing well"))
INSUFFICIENT = "insufficient_data"


def fixed_bands(score: np.ndarray, thresholds=FIXED) -> np.ndarray:
    """Bands by score thresholds, on whole points (rounded half up). NaN -> insufficient."""
    score = np.asarray(score, dtype=float)
    points = np.floor(score + 0.5)
    out = np.full(score.shape, thresholds[-1][1], dtype=object)
    for upper, name in reversed(thresholds):
        out[points <= upper] = name
    out[np.isnan(score)] = INSUFFICIENT
    return out


def quantile_bands(score: np.ndarray, cuts=QUANTILE) -> np.ndarray:
    """Bands by the portfolio's own score quantiles (bottom 25%, middle 50%, top 25%)."""
    score = np.asarray(score, dtype=float)
    known = ~np.isnan(score)
    ranks = pd.Series(score[known]).rank(method="first", pct=True).to_numpy()
    names = np.full(known.sum(), cuts[-1][1], dtype=object)
    for upper, name in reversed(cuts):
        names[ranks <= upper] = name
    out = np.full(score.shape, INSUFFICIENT, dtype=object)
    out[known] = names
    return out


def capacity_bands(score: np.ndarray, capacity: int) -> np.ndarray:
    """The ``capacity`` lowest scores are Critical (the team's list); the rest Monitor."""
    score = np.asarray(score, dtype=float)
    known = ~np.isnan(score)
    ranks = pd.Series(score[known]).rank(method="first").to_numpy()
    out = np.full(score.shape, INSUFFICIENT, dtype=object)
    out[known] = np.where(ranks <= capacity, "Critical", "Monitor")
    return out


BAND_ORDER = {scheme: names for scheme, names in {
    "fixed": [n for _, n in FIXED],
    "quantile": [n for _, n in QUANTILE],
    "capacity": ["Critical", "Monitor"],
}.items()}


def assign_bands(score: np.ndarray, scheme: str, capacity: int = 25) -> np.ndarray:
    """Bands under ``scheme`` (``fixed``, ``quantile`` or ``capacity``), worst first in
    :data:`BAND_ORDER`."""
    if scheme == "fixed":
        return fixed_bands(score)
    if scheme == "quantile":
        return quantile_bands(score)
    if scheme == "capacity":
        return capacity_bands(score, capacity)
    raise ValueError(f"unknown band scheme {scheme!r}: use fixed, quantile or capacity")
