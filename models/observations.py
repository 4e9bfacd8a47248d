"""Observations and labels: (account, as_of_date) pairs with what happened next.

An observation is a row of the metric history: an account active at snapshot D. Its
label is 1 when the account churns in (D + lead, D + lead + horizon]. A churn at the end
of a term is only certain ``grace`` days later (the renewal may still be signed), so the
label is *known* at D + lead + horizon + grace. Training as of T keeps only observations
whose label is known by T; each fold of the backtest applies the same rule at its own
start.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

KEYS = ["account_id", "as_of_date"]


def label_observations(
    metric_history: pd.DataFrame,
    churn_events: pd.DataFrame,
    horizon_days: int,
    lead_days: int = 0,
    grace_days: int = 30,
) -> pd.DataFrame:
    """Attach ``churned`` and ``label_known_at`` to every observation.

    Args:
        metric_history: One row per account and snapshot (``account_id``, ``as_of_date``
            and metrics).
        churn_events: ``account_id`` and ``churn_date`` (from
            :func:`features.lifecycle.churn_events` as of the training date).
        horizon_days: Length of the label window.
        lead_days: Days between the observation and the start of the label window.
        grace_days: Days after a term's end before a churn is certain.

    Returns:
        ``metric_history`` with ``churned`` (0/1) and ``label_known_at`` (the day by
        which the label is certain), in the same row order.

    >>> history = pd.DataFrame({"account_id": ["a", "a"],
    ...     "as_of_date": pd.to_datetime(["2024-01-01", "2024-06-01"])})
    >>> churns = pd.DataFrame({"account_id": ["a"], "churn_date": pd.to_datetime(["2024-03-01"])})
    >>> label_observations(history, churns, 90)["churned"].tolist()
    [1, 0]
    """
    start = metric_history["as_of_date"] + pd.Timedelta(days=lead_days)
    end = start + pd.Timedelta(days=horizon_days)
    churned = np.zeros(len(metric_history), dtype="int64")
    if len(churn_events):
        pairs = pd.DataFrame({"row": np.arange(len(metric_history)),
                              "account_id": metric_history["account_id"].to_numpy(),
                              "start": start.to_numpy(), "end": end.to_numpy()})
        pairs = pairs.merge(churn_events[["account_id", "churn_date"]], on="account_id")
        hit = pairs.loc[(pairs["churn_date"] > pairs["start"]) & (pairs["churn_date"] <= pairs["end"]),
                        "row"].unique()
        churned[hit] = 1
    out = metric_history.copy()
    out["churned"] = churned
    out["label_known_at"] = (end + pd.Timedelta(days=grace_days)).astype("datetime64[us]")
    return out


def known_by(observations: pd.DataFrame, day: pd.Timestamp) -> pd.DataFrame:
    """Observations whose label is certain by the end of ``day``."""
    return observations.loc[observations["label_known_at"] <= pd.Timestamp(day)]
