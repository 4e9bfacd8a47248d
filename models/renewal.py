"""From the risk at a renewal to the churn probability over a horizon, by the calendar.

The model learns the **renewal risk**: the probability that the account churns at the
end of its current term, given what is known at D. Churn can only happen at a term's
end (the contract's rule), so the probability of churn in (D + lead, D + lead + H] is
fixed by the calendar and that risk:

* no renewal in the window: no churn in it (probability 0);
* one renewal in it (an annual account, or a monthly one with a short window): its risk;
* several (a monthly account over 90 days): 1 - prod(1 - r_k) over the renewals in the
  window, where r_k is the model's risk for the k-th renewal ahead, asked with the days
  to the renewal set to that renewal's distance (the account's behaviour is what is
  known now; the farther renewal is judged as the farther one it is).

The calendar metrics (days to the next renewal, the term length) condition the model:
the same behaviour means less 200 days before a renewal than 20 days before it. They
are not about the customer, so they are never shown as a driver (:func:`split_calendar`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

DAYS_TO_RENEWAL = "renewal_days_to_next"
TERM_LENGTH = "term_length_days_current"
# The contract calendar: conditions the model, never a driver in words or points.
CALENDAR = (DAYS_TO_RENEWAL, TERM_LENGTH)

RiskFunction = Callable[[pd.DataFrame], np.ndarray]


def renewals_ahead(X: pd.DataFrame, after_days: float, until_days: float) -> pd.DataFrame:
    """Every renewal of each row in (D + after_days, D + until_days].

    The k-th renewal ahead is ``days to the next renewal + k * term length`` days after
    D. A row without a term length (or 0) has only its next renewal.

    Returns:
        ``row`` (position in ``X``), ``sequence`` (k) and ``days`` (from D), by row then k.

    >>> X = pd.DataFrame({"renewal_days_to_next": [10.0, 200.0], "term_length_days_current": [30.0, 365.0]})
    >>> renewals_ahead(X, 0, 90).values.tolist()
    [[0.0, 0.0, 10.0], [0.0, 1.0, 40.0], [0.0, 2.0, 70.0]]
    """
    if DAYS_TO_RENEWAL not in X.columns:
        raise ValueError(f"the churn probability needs the metric {DAYS_TO_RENEWAL}")
    first = X[DAYS_TO_RENEWAL].to_numpy(dtype=float, na_value=np.nan)
    length = (X[TERM_LENGTH].to_numpy(dtype=float, na_value=np.nan) if TERM_LENGTH in X.columns
              else np.full(len(X), np.nan))
    length = np.where(np.isnan(length) | (length <= 0), np.inf, length)
    parts = []
    k = 0
    while True:
        days = first + k * length if k else first
        if k and not np.any(np.isfinite(days) & (days <= until_days)):
            break
        keep = np.flatnonzero(np.isfinite(days) & (days > after_days) & (days <= until_days))
        parts.append(pd.DataFrame({"row": keep, "sequence": k, "days": days[keep]}))
        k += 1
        if k > 400:  # a term of a day over a year's window; nothing real goes near this
            break
    out = pd.concat(parts, ignore_index=True)
    return out.sort_values(["row", "sequence"], kind="stable").reset_index(drop=True)


def risk_at(risk: RiskFunction, X: pd.DataFrame, ahead: pd.DataFrame) -> np.ndarray:
    """The renewal risk of each of ``ahead``'s renewals (rows of ``X`` with the days to
    the renewal set to that renewal's distance)."""
    if ahead.empty:
        return np.zeros(0)
    shifted = X.iloc[ahead["row"].to_numpy()].reset_index(drop=True).copy()
    shifted[DAYS_TO_RENEWAL] = ahead["days"].to_numpy(dtype=float)
    return np.asarray(risk(shifted), dtype=float)


def window_probability(risk: RiskFunction, X: pd.DataFrame, horizon_days: int,
                       lead_days: int = 0) -> np.ndarray:
    """P(churn in (D + lead, D + lead + horizon]) from the renewal risk and the calendar.

    Args:
        risk: Renewal risk of metric rows (a fitted model's, or a baseline's).
        X: Metric rows, with the calendar metrics.
        horizon_days: The window's length.
        lead_days: Days from D to the window's start.

    >>> X = pd.DataFrame({"renewal_days_to_next": [10.0, 200.0], "term_length_days_current": [30.0, 365.0]})
    >>> window_probability(lambda x: np.full(len(x), 0.1), X, 90).round(3).tolist()
    [0.271, 0.0]
    """
    ahead = renewals_ahead(X, lead_days, lead_days + horizon_days)
    survive = np.ones(len(X))
    if len(ahead):
        r = np.clip(risk_at(risk, X, ahead), 0.0, 1.0)
        kept = pd.Series(1 - r).groupby(ahead["row"].to_numpy()).prod()
        survive[kept.index.to_numpy()] = kept.to_numpy()
    return 1 - survive


def health_log_odds(contributions: pd.DataFrame) -> np.ndarray:
    """The renewal risk's log-odds with the distance to the renewal taken out.

    The model's contribution of the days to the next renewal (how much nearer or
    farther than the average account's renewal this one is) is removed, so the health
    score ranks accounts by their risk at the renewal whatever its distance, and an
    account's score does not move only because time passed.

    >>> c = pd.DataFrame({"base": [-3.0], "renewal_days_to_next": [-1.0], "usage": [0.5]})
    >>> health_log_odds(c).tolist()
    [-2.5]
    """
    kept = contributions.drop(columns=[DAYS_TO_RENEWAL], errors="ignore")
    return kept.sum(axis=1).to_numpy(dtype=float)


def split_calendar(contributions: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """Per-metric contributions about the customer, and each row's starting point.

    The starting point is the model's base plus the term length's contribution (an
    annual contract's renewal carries a different risk than a monthly one's): where the
    account stands before anything about the customer is counted. The distance to the
    renewal is left out altogether (:func:`health_log_odds`). The remaining
    contributions add up to the health log-odds minus the starting point.

    Args:
        contributions: Per-metric contributions with a ``base`` column (as
            ``CalibratedLightGBM.contributions`` returns).
    """
    calendar = [c for c in CALENDAR if c in contributions.columns]
    start = contributions["base"].to_numpy(dtype=float)
    if TERM_LENGTH in contributions.columns:
        start = start + contributions[TERM_LENGTH].to_numpy(dtype=float)
    return contributions.drop(columns=[*calendar, "base"]), start
