"""Account lifecycle: when an account is active, and when it churned, as of a date.

The contract's rule, made point-in-time:

* An account is **active** on day D when a subscription term covers D
  (``start_date <= D < end_date``).
* It **churns** at C when a term ends at C and no term covers the days after C,
  nor starts within the grace period (default 30 days). A churn derived this way is
  known only at ``C + grace``: before then the renewal may still be signed.
* An explicit ``status`` on a term overrides the derived outcome at its end and is
  known at its ``end_date``.

As of D, only terms that have started by D are known (a future term's row may
already exist in an export, but nobody could have acted on it at D). So every
function here takes ``as_of`` and uses nothing recorded after it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

DEFAULT_GRACE_DAYS = 30

OUTCOME_COLUMNS = [
    "account_id",
    "subscription_id",
    "end_date",
    "outcome",
    "known_at",
    "decided_by",
]


def known_terms(subscriptions: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """Terms known as of the end of day ``as_of``: those that started by then."""
    return subscriptions.loc[subscriptions["start_date"] <= as_of]


def active_accounts(subscriptions: pd.DataFrame, day: pd.Timestamp) -> pd.Index:
    """Account ids with a term covering ``day`` (sorted, unique).

    >>> subs = pd.DataFrame({"account_id": ["a", "b"],
    ...     "start_date": pd.to_datetime(["2024-01-01", "2024-03-01"]),
    ...     "end_date": pd.to_datetime(["2025-01-01", "2024-04-01"])})
    >>> list(active_accounts(subs, pd.Timestamp("2024-04-01")))
    ['a']
    """
    covers = (subscriptions["start_date"] <= day) & (subscriptions["end_date"] > day)
    return pd.Index(sorted(subscriptions.loc[covers, "account_id"].unique()), name="account_id")


def renewal_outcomes(
    subscriptions: pd.DataFrame,
    as_of: pd.Timestamp,
    grace_days: int = DEFAULT_GRACE_DAYS,
) -> pd.DataFrame:
    """The outcome at the end of every term that ended by ``as_of``.

    Args:
        subscriptions: Contract ``subscriptions`` table (validated, typed).
        as_of: Only what was known by the end of this day is used.
        grace_days: How long after a term ends a new term may start and still
            count as a renewal.

    Returns:
        One row per ended term: ``account_id``, ``subscription_id``, ``end_date``,
        ``outcome`` (``renewed`` | ``churned`` | ``pending``), ``known_at`` (when
        the outcome became known; NaT while pending) and ``decided_by``
        (``status`` | ``terms``).
    """
    as_of = pd.Timestamp(as_of)
    grace = pd.Timedelta(days=grace_days)
    terms = known_terms(subscriptions, as_of).reset_index(drop=True)
    if "subscription_id" not in terms.columns:
        terms = terms.assign(subscription_id=pd.Series(pd.NA, index=terms.index, dtype="str"))
    if "status" not in terms.columns:
        terms = terms.assign(status=pd.Series(pd.NA, index=terms.index, dtype="str"))
    terms = terms.assign(_term=np.arange(len(terms)))
    ended = terms.loc[terms["end_date"] <= as_of]
    if ended.empty:
        return pd.DataFrame({c: pd.Series(dtype=_dtype(c)) for c in OUTCOME_COLUMNS})

    # A term is continued when another known term of the account starts by C + grace
    # and runs past C. Pair every ended term with its account's other terms.
    pairs = ended[["account_id", "_term", "end_date"]].merge(
        terms[["account_id", "_term", "start_date", "end_date"]],
        on="account_id",
        suffixes=("", "_next"),
    )
    pairs = pairs.loc[
        (pairs["_term"] != pairs["_term_next"])
        & (pairs["start_date"] <= pairs["end_date"] + grace)
        & (pairs["end_date_next"] > pairs["end_date"])
    ]
    continued_from = pairs.groupby("_term")["start_date"].min()

    out = ended[["account_id", "subscription_id", "end_date", "status", "_term"]].copy()
    next_start = pd.Series(
        continued_from.reindex(out["_term"]).to_numpy(), index=out.index
    ).astype("datetime64[us]")
    continued = next_start.notna()
    grace_over = out["end_date"] + grace <= as_of
    out["outcome"] = np.select(
        [continued, grace_over], ["renewed", "churned"], default="pending"
    )
    known_at = pd.Series(pd.NaT, index=out.index, dtype="datetime64[us]")
    churn_known = (out["end_date"] + grace).astype("datetime64[us]")
    renew_known = next_start.where(next_start > out["end_date"], out["end_date"])
    known_at = known_at.mask(grace_over, churn_known).mask(continued, renew_known)
    out["known_at"] = known_at.astype("datetime64[us]")
    out["decided_by"] = "terms"

    explicit = out["status"].isin(["renewed", "churned"])
    out.loc[explicit, "outcome"] = out.loc[explicit, "status"]
    out.loc[explicit, "known_at"] = out.loc[explicit, "end_date"]
    out.loc[explicit, "decided_by"] = "status"
    out.loc[out["outcome"] == "pending", "known_at"] = pd.NaT
    out = out.sort_values(["account_id", "end_date", "_term"], kind="stable")
    return out[OUTCOME_COLUMNS].reset_index(drop=True)


def churn_events(
    subscriptions: pd.DataFrame,
    as_of: pd.Timestamp,
    grace_days: int = DEFAULT_GRACE_DAYS,
) -> pd.DataFrame:
    """Account churns known by ``as_of``: ``account_id``, ``churn_date``, ``known_at``.

    One row per account and churn date (an account that comes back and churns
    again has two rows).
    """
    outcomes = renewal_outcomes(subscriptions, as_of, grace_days)
    churned = outcomes.loc[outcomes["outcome"] == "churned"]
    events = (
        churned.groupby(["account_id", "end_date"], as_index=False)["known_at"]
        .min()
        .rename(columns={"end_date": "churn_date"})
    )
    return events.reset_index(drop=True)


def _dtype(column: str) -> str:
    return "datetime64[us]" if column in ("end_date", "known_at") else "str"
