"""Early warning: how well each renewal decision was ranked months before it.

A CS team needs to know which accounts will not renew while there is still time to
change it. For every renewal decision dated in the reported backtest period whose
outcome is known, and each lead L (30, 90, 180, 270 days), take the account's
observation on the latest snapshot on or before the decision minus L, as the walk-forward
model of that snapshot's fold scored it (trained only on outcomes known by the fold's
start). Each model ranks the decisions by its renewal risk at that observation. (The
health score leaves out the days-to-renewal contribution, so it is not strictly
monotone in the renewal risk; benchmarks/early_warning.py measures both, and they rank
within 0.01 ROC-AUC of each other.) A decision
the account was not yet a customer for at that lead, or that no fold scored, has no
observation at that lead; the table says how many decisions each lead holds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

LEADS = (30, 90, 180, 270)
# An observation stands for "L days before" when it is at most this many days older
# (two weekly snapshots).
SLACK_DAYS = 13


def decisions(predictions: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """Renewal decisions dated in [start, end) with a known outcome: ``account_id``,
    ``renewal_date``, ``churned``."""
    known = predictions.loc[predictions["y_renewal"].notna()
                            & (predictions["renewal_date"] >= start) & (predictions["renewal_date"] < end),
                            ["account_id", "renewal_date", "y_renewal"]]
    out = known.drop_duplicates(["account_id", "renewal_date"]).rename(columns={"y_renewal": "churned"})
    return out.sort_values(["renewal_date", "account_id"], kind="stable").reset_index(drop=True)


def observed_at_leads(predictions: pd.DataFrame, decided: pd.DataFrame,
                      leads: tuple[int, ...] = LEADS) -> pd.DataFrame:
    """Each decision's observation ``lead_days`` before it, per model.

    Returns:
        ``model``, ``lead_days``, ``account_id``, ``renewal_date``, ``churned``,
        ``as_of_date`` (the observation) and ``p_renewal`` (the model's risk then).

    >>> preds = pd.DataFrame({"model": "m", "account_id": "a",
    ...     "as_of_date": pd.to_datetime(["2025-01-01", "2025-01-08"]), "p_renewal": [0.1, 0.2]})
    >>> dec = pd.DataFrame({"account_id": ["a"], "renewal_date": pd.to_datetime(["2025-02-08"]), "churned": [1.0]})
    >>> observed_at_leads(preds, dec, (30,))[["as_of_date", "p_renewal"]].values.tolist()
    [[Timestamp('2025-01-08 00:00:00'), 0.2]]
    """
    rows = predictions[["model", "account_id", "as_of_date", "p_renewal"]].drop_duplicates(
        ["model", "account_id", "as_of_date"])
    rows = rows.assign(as_of_date=rows["as_of_date"].astype("datetime64[us]")).sort_values("as_of_date")
    parts = []
    for lead in leads:
        target = decided.assign(lead_days=lead, target=(decided["renewal_date"]
                                                        - pd.Timedelta(days=lead)).astype("datetime64[us]"))
        for model, scored in rows.groupby("model", sort=True):
            found = pd.merge_asof(target.sort_values("target"), scored.drop(columns="model"),
                                  left_on="target", right_on="as_of_date", by="account_id",
                                  direction="backward", tolerance=pd.Timedelta(days=SLACK_DAYS))
            found = found.loc[found["p_renewal"].notna()].assign(model=model)
            parts.append(found.drop(columns="target"))
    columns = ["model", "lead_days", "account_id", "renewal_date", "churned", "as_of_date", "p_renewal"]
    if not parts:
        return pd.DataFrame(columns=columns)
    return pd.concat(parts, ignore_index=True)[columns]


def early_warning(predictions: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp,
                  leads: tuple[int, ...] = LEADS) -> pd.DataFrame:
    """ROC-AUC and PR-AUC of every model at every lead, on the decisions in [start, end).

    Returns:
        ``lead_days``, ``model``, ``decisions``, ``churned`` (how many of them churned),
        ``churn_rate`` (PR-AUC's chance level), ``roc_auc`` and ``pr_auc`` (NaN when the
        lead's decisions are all of one outcome).
    """
    matched = observed_at_leads(predictions, decisions(predictions, start, end), leads)
    rows = []
    for (lead, model), group in matched.groupby(["lead_days", "model"], sort=True):
        y, p = group["churned"].to_numpy(dtype=float), group["p_renewal"].to_numpy(dtype=float)
        both = 0 < y.sum() < len(y)
        rows.append({"lead_days": int(lead), "model": model, "decisions": len(y),
                     "churned": int(y.sum()), "churn_rate": float(y.mean()),
                     "roc_auc": float(roc_auc_score(y, p)) if both else np.nan,
                     "pr_auc": float(average_precision_score(y, p)) if both else np.nan})
    return pd.DataFrame(rows, columns=["lead_days", "model", "decisions", "churned", "churn_rate",
                                       "roc_auc", "pr_auc"])
