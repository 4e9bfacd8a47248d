"""Why an account scores what it does: SHAP points per metric, in words a CSM reads."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.catalog import Metric


def format_value(value: float, unit: str) -> str:
    """A metric value as people write it.

    >>> format_value(0.456, "share"), format_value(12.0, "users"), format_value(3.14159, "score")
    ('46%', '12', '3.14')
    """
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "no data"
    if unit == "share":
        return f"{value:.0%}"
    if unit == "ratio":  # relative changes
        return f"{value:+.0%}"
    if unit in ("currency", "amount"):
        return f"{value:,.0f}"
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.2f}" if abs(value) < 10 else f"{value:,.1f}"


def describe(metric: Metric, now: float, before: float, points: float) -> str:
    """One driver: "<what> fell from 34 to 12 (-9 points)".

    >>> m = Metric("active_users_count_30d", "breadth", "Distinct users active in the last 30 days", "users", "healthier", "events")
    >>> describe(m, 12, 34, -9.04)
    'Distinct users active in the last 30 days fell from 34 to 12 (−9 points)'
    """
    sign = "+" if points >= 0 else "−"
    shown = f"{abs(points):.0f}" if abs(points) >= 0.5 else f"{abs(points):.1f}"
    amount = f"({sign}{shown} point{'' if shown == '1' else 's'})"
    what = metric.description.split(" (")[0]  # the catalog's fine print stays in the docs
    now_text = format_value(now, metric.unit)
    if before is None or (isinstance(before, float) and np.isnan(before)) or np.isnan(now):
        return f"{what}: {now_text} {amount}"
    before_text = format_value(before, metric.unit)
    if before_text == now_text:
        return f"{what}: {now_text}, unchanged {amount}"
    verb = "rose" if now > before else "fell"
    return f"{what} {verb} from {before_text} to {now_text} {amount}"


def top_drivers(points: pd.DataFrame, now: pd.DataFrame, before: pd.DataFrame,
                catalog: dict[str, Metric], n: int = 3) -> tuple[list[list[str]], list[list[str]], list[list[str]]]:
    """The ``n`` biggest risks (negative points) and strengths (positive) of each account.

    Args:
        points: Score points per metric, one row per account.
        now: Metric values as of D (same index and columns).
        before: Metric values about 30 days earlier (same index; NaN when unknown).
        catalog: Metric name -> catalog entry.

    Returns:
        (risk sentences, strength sentences, risk metric names) per account.
    """
    risks, strengths, risk_names = [], [], []
    values, past = now.to_numpy(dtype=float), before.to_numpy(dtype=float)
    matrix = points.to_numpy(dtype=float)
    metrics = [catalog[c] for c in points.columns]
    columns = list(points.columns)
    order = np.argsort(matrix, axis=1, kind="stable")
    lowest, highest = order[:, :n], order[:, ::-1][:, :n]
    for i, row in enumerate(matrix):
        neg = [j for j in lowest[i] if row[j] < -0.05]
        pos = [j for j in highest[i] if row[j] > 0.05]
        risks.append([describe(metrics[j], values[i, j], past[i, j], row[j]) for j in neg])
        strengths.append([describe(metrics[j], values[i, j], past[i, j], row[j]) for j in pos])
        risk_names.append([columns[j] for j in neg])
    return risks, strengths, risk_names
