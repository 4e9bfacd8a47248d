"""The engagement group, from ``marketing``: touches (clicks, webinars, visits)."""

from __future__ import annotations

import ibis.expr.types as ir

from features.expr import KEYS, in_window, pair
from features.metric import H, Metric

SOURCE = "marketing"

METRICS: tuple[Metric, ...] = (
    Metric("marketing_touches_count_30d", "engagement", "Marketing touches (clicks, webinars, visits) in the last 30 days", "touches", H, "marketing"),
    Metric("marketing_touches_count_90d", "engagement", "Marketing touches in the last 90 days", "touches", H, "marketing"),
)

# 0, not missing, when marketing data exists but has no touch in the window.
ZERO_WHEN_PRESENT = tuple(m.name for m in METRICS)


def compute(g: ir.Table, marketing: ir.Table) -> ir.Table:
    """The engagement metrics of each snapshot key ``g`` with a touch in the last 90 days."""
    mk = marketing.mutate(day=marketing.timestamp.date())
    j = pair(g, mk, "day", 90)
    return j.group_by(KEYS).aggregate(
        marketing_touches_count_30d=j.day.count(where=in_window(j.day, j.as_of_date, 30)),
        marketing_touches_count_90d=j.day.count(),
    )
