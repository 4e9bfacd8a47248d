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

from features.lifecycle import churn_events, renewal_outcomes

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


def current_renewals(metric_history: pd.DataFrame, subscriptions: pd.DataFrame) -> pd.Series:
    """Each observation's next renewal: the end of the earliest-ending term covering D.

    Only terms that started by D count (a later term is not known at D). NaT when no
    term covers D.

    >>> history = pd.DataFrame({"account_id": ["a", "a"],
    ...     "as_of_date": pd.to_datetime(["2024-01-10", "2024-02-10"])})
    >>> subs = pd.DataFrame({"account_id": ["a", "a"],
    ...     "start_date": pd.to_datetime(["2024-01-01", "2024-02-01"]),
    ...     "end_date": pd.to_datetime(["2024-02-01", "2024-03-01"])})
    >>> current_renewals(history, subs).dt.strftime("%m-%d").tolist()
    ['02-01', '03-01']
    """
    rows = pd.DataFrame({"row": np.arange(len(metric_history)),
                         "account_id": metric_history["account_id"].to_numpy(),
                         "as_of_date": metric_history["as_of_date"].to_numpy()})
    pairs = rows.merge(subscriptions[["account_id", "start_date", "end_date"]], on="account_id")
    covering = pairs.loc[(pairs["start_date"] <= pairs["as_of_date"])
                         & (pairs["end_date"] > pairs["as_of_date"])]
    first = covering.groupby("row")["end_date"].min()
    out = pd.Series(pd.NaT, index=metric_history.index, dtype="datetime64[us]", name="renewal_date")
    out.iloc[first.index.to_numpy()] = first.to_numpy().astype("datetime64[us]")
    return out


def label_renewals(metric_history: pd.DataFrame, subscriptions: pd.DataFrame,
                   outcomes: pd.DataFrame) -> pd.DataFrame:
    """Attach the outcome of each observation's current term: the renewal-risk label.

    An observation (account, D) is labelled by what happened at the end of the term
    covering D (its next renewal, :func:`current_renewals`): 1 when the account churned
    there, 0 when it renewed. The label is known when that outcome was (the renewal's
    start, or the term's end plus the grace period for a churn): a monthly term's label
    arrives within weeks, an annual one's up to 13 months after D.

    Args:
        metric_history: One row per account and snapshot.
        subscriptions: The contract's subscriptions table.
        outcomes: :func:`features.lifecycle.renewal_outcomes` as of the training date.

    Returns:
        ``metric_history`` with ``renewal_date``, ``churned`` (0/1; 0 while unknown) and
        ``label_known_at`` (NaT while the outcome is pending or the term has not ended
        by the training date), in the same row order.

    >>> history = pd.DataFrame({"account_id": ["a", "a"],
    ...     "as_of_date": pd.to_datetime(["2024-01-10", "2024-02-10"])})
    >>> subs = pd.DataFrame({"account_id": ["a", "a"],
    ...     "start_date": pd.to_datetime(["2024-01-01", "2024-02-01"]),
    ...     "end_date": pd.to_datetime(["2024-02-01", "2024-03-01"])})
    >>> outcomes = pd.DataFrame({"account_id": ["a", "a"],
    ...     "end_date": pd.to_datetime(["2024-02-01", "2024-03-01"]),
    ...     "outcome": ["renewed", "churned"],
    ...     "known_at": pd.to_datetime(["2024-02-01", "2024-03-31"])})
    >>> label_renewals(history, subs, outcomes)["churned"].tolist()
    [0, 1]
    """
    renewal = current_renewals(metric_history, subscriptions)
    decided = outcomes.loc[outcomes["outcome"].isin(["churned", "renewed"])]
    # Terms of one account ending on the same day share one decision: the account
    # churned there when any of them did (no term carried it on).
    per_decision = (decided.assign(churned=(decided["outcome"] == "churned").astype("int64"))
                    .groupby(["account_id", "end_date"])
                    .agg(churned=("churned", "max"), known_at=("known_at", "max")))
    keys = pd.MultiIndex.from_arrays([metric_history["account_id"].to_numpy(), renewal.to_numpy()])
    found = per_decision.reindex(keys)
    out = metric_history.copy()
    out["renewal_date"] = renewal.to_numpy()
    out["churned"] = found["churned"].fillna(0).astype("int64").to_numpy()
    out["label_known_at"] = pd.to_datetime(found["known_at"].to_numpy()).astype("datetime64[us]")
    return out


def label_all(metric_history: pd.DataFrame, subscriptions: pd.DataFrame, as_of: pd.Timestamp,
              grace_days: int, horizon_days: int, lead_days: int = 0) -> pd.DataFrame:
    """Every observation with both labels, as known by the training date ``as_of``.

    ``renewal_date``, ``churned`` and ``label_known_at``: the outcome at the end of the
    observation's current term (what the model learns; ``label_known_at`` is NaT while
    it is unknown by ``as_of``), from :func:`label_renewals`. ``churned_window``: churn
    in (D + lead, D + lead + horizon] (what the churn probability is measured on; NaN
    while unknown by ``as_of``), from :func:`label_observations`, and
    ``window_known_at``, the day it is (or will be) known.
    """
    day = pd.Timestamp(as_of)
    observations = label_renewals(metric_history, subscriptions,
                                  renewal_outcomes(subscriptions, day, grace_days))
    late = observations["label_known_at"] > day
    observations.loc[late, "churned"] = 0
    observations.loc[late, "label_known_at"] = pd.NaT
    window = label_observations(metric_history, churn_events(subscriptions, day, grace_days),
                                horizon_days, lead_days, grace_days)
    observations["churned_window"] = window["churned"].astype(float).where(
        window["label_known_at"] <= day).to_numpy()
    observations["window_known_at"] = window["label_known_at"].to_numpy()
    return observations


def decision_weights(observations: pd.DataFrame, scaled: bool = True) -> np.ndarray:
    """A weight per observation so that every renewal decision counts once.

    An annual term has about 52 weekly observations and a monthly one about 4, all
    labelled by the same outcome: unweighted, the trees see each annual decision 13
    times over and overfit those few outcomes. Each observation weighs 1 / (the
    observations of its decision), scaled to a mean of 1 (``scaled``; else they sum
    to the number of decisions).

    >>> frame = pd.DataFrame({"account_id": ["a", "a", "b"],
    ...     "renewal_date": pd.to_datetime(["2025-01-01"] * 3)})
    >>> decision_weights(frame).round(2).tolist()
    [0.75, 0.75, 1.5]
    """
    size = observations.groupby(["account_id", "renewal_date"], dropna=False)["account_id"].transform("size")
    weight = 1.0 / size.to_numpy(dtype=float)
    return weight / weight.mean() if scaled else weight
