"""Why an account scores what it does: SHAP points per metric, in words a CSM reads."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd

from features.metric import Metric


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


@functools.lru_cache(maxsize=1 << 16)
def _formatted(value: float, unit: str) -> str:
    """:func:`format_value` of a present value, remembered: a book repeats its values."""
    return format_value(value, unit)


def _shown(value: float | None, unit: str) -> str:
    if value is None or value != value:  # NaN
        return "no data"
    return _formatted(float(value), unit)


def describe(metric: Metric, now: float, before: float, points: float) -> str:
    """One driver: "<what>: 12 (34 four weeks ago) (-9 points)".

    The points are the model's verdict on the value now (its SHAP contribution), not
    on the change: a value that improved can still cost points when it is still worse
    than usual. So the sentence states the value, with the earlier one for context,
    and never says "rose" or "fell" as if the movement were the reason.

    >>> m = Metric("active_users_count_30d", "breadth", "Distinct users active in the last 30 days", "users", "healthier", "events")
    >>> describe(m, 12, 34, -9.04)
    'Distinct users active in the last 30 days: 12 (34 four weeks ago) (−9 points)'
    """
    sign = "+" if points >= 0 else "−"
    shown = f"{abs(points):.0f}" if abs(points) >= 0.5 else f"{abs(points):.1f}"
    amount = f"({sign}{shown} point{'' if shown == '1' else 's'})"
    what = metric.description.split(" (")[0]  # the catalog's fine print stays in the docs
    now_text = _shown(now, metric.unit)
    if before is None or before != before or now != now:
        return f"{what}: {now_text} {amount}"
    before_text = _shown(before, metric.unit)
    if before_text == now_text:
        return f"{what}: {now_text}, unchanged {amount}"
    return f"{what}: {now_text} ({before_text} four weeks ago) {amount}"


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
    # Python floats and lists: element access on them is several times cheaper than on
    # NumPy arrays, and there are (accounts x 2n) sentences to write.
    picked = np.concatenate([lowest, highest], axis=1)
    rows = np.arange(len(matrix))[:, None]
    p, v, b = (a[rows, picked].tolist() for a in (matrix, values, past))
    for i, js in enumerate(picked.tolist()):
        pi, vi, bi = p[i], v[i], b[i]
        neg = [k for k in range(n) if pi[k] < -0.05]
        pos = [k for k in range(n, 2 * n) if pi[k] > 0.05]
        risks.append([describe(metrics[js[k]], vi[k], bi[k], pi[k]) for k in neg])
        strengths.append([describe(metrics[js[k]], vi[k], bi[k], pi[k]) for k in pos])
        risk_names.append([columns[js[k]] for k in neg])
    return risks, strengths, risk_names
