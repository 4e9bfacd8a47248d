"""How well churn probabilities rank and how honest they are: pure metric functions."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score


def reliability(y: np.ndarray, p: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Reliability curve: mean predicted against observed churn rate, in probability deciles.

    Bins are quantiles of ``p`` (equal counts), so sparse high-risk tails still get bins.
    """
    frame = pd.DataFrame({"y": np.asarray(y, dtype=float), "p": np.asarray(p, dtype=float)})
    ranks = frame["p"].rank(method="first")
    frame["bin"] = np.minimum((ranks - 1) * bins // len(frame), bins - 1).astype(int)
    curve = frame.groupby("bin").agg(predicted=("p", "mean"), observed=("y", "mean"),
                                     count=("y", "size"))
    return curve.reset_index()


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Count-weighted mean |observed - predicted| over the reliability curve's bins."""
    curve = reliability(y, p, bins)
    weights = curve["count"] / curve["count"].sum()
    return float((weights * (curve["observed"] - curve["predicted"]).abs()).sum())


def top_decile_lift(y: np.ndarray, p: np.ndarray) -> float:
    """Churn rate among the riskiest 10% of observations over the overall churn rate."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    if y.mean() == 0:
        return float("nan")
    n = max(1, int(round(len(y) * 0.1)))
    top = np.argsort(-p, kind="stable")[:n]
    return float(y[top].mean() / y.mean())


def at_capacity(frame: pd.DataFrame, capacity: int) -> tuple[float, float]:
    """Precision and recall when a team works the ``capacity`` riskiest accounts per snapshot.

    Args:
        frame: ``as_of_date``, ``y`` and ``p`` per observation.
        capacity: Accounts worked per snapshot date.

    Returns:
        Precision (churners among the worked accounts) and recall (worked churners among
        all churners), pooled over snapshot dates.
    """
    ranked = frame.assign(rank=frame.groupby("as_of_date")["p"].rank(method="first",
                                                                     ascending=False))
    worked = ranked.loc[ranked["rank"] <= capacity]
    churners = frame["y"].sum()
    precision = float(worked["y"].mean()) if len(worked) else float("nan")
    recall = float(worked["y"].sum() / churners) if churners else float("nan")
    return precision, recall


def scores(frame: pd.DataFrame, capacity: int) -> dict[str, float]:
    """Every backtest metric for one model on one set of observations.

    Args:
        frame: ``as_of_date``, ``y`` (0/1) and ``p`` (churn probability) per observation.
        capacity: Accounts a team can work per snapshot (precision and recall at it).
    """
    y, p = frame["y"].to_numpy(dtype=float), frame["p"].to_numpy(dtype=float)
    out: dict[str, float] = {"observations": float(len(y)), "churn_rate": float(y.mean())}
    both = 0 < y.sum() < len(y)
    out["roc_auc"] = float(roc_auc_score(y, p)) if both else float("nan")
    out["pr_auc"] = float(average_precision_score(y, p)) if both else float("nan")
    out["brier"] = float(brier_score_loss(y, p))
    out["log_loss"] = float(log_loss(y, np.clip(p, 1e-6, 1 - 1e-6), labels=[0, 1]))
    out["top_decile_lift"] = top_decile_lift(y, p)
    out["precision_at_capacity"], out["recall_at_capacity"] = at_capacity(frame, capacity)
    out["ece"] = expected_calibration_error(y, p)
    return out
