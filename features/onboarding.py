"""The onboarding group, from ``onboarding``: progress through the expected milestones
(``metrics.onboarding_milestones``; none expected: no onboarding group)."""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from features.expr import KEYS
from features.metric import H, R, Metric, _slug
from healthscore.config import MetricsConfig

SOURCE = "onboarding"

METRICS: tuple[Metric, ...] = (
    Metric("onboarding_completed_share", "onboarding", "Share of the expected onboarding milestones completed", "share", H, "onboarding"),
    Metric("onboarding_stalled_flag", "onboarding", "1 when onboarding is incomplete and nothing moved for 30 days", "flag", R, "onboarding"),
)


def per_config(config: MetricsConfig) -> tuple[Metric, ...]:
    """One metric per expected milestone: the days it took to reach it."""
    return tuple(
        Metric(
            f"onboarding_{_slug(m)}_days_to", "onboarding",
            f"Days from account creation to milestone `{m}` (empty: not reached)", "days", R,
            "onboarding",
        )
        for m in config.onboarding_milestones
    )


def compute(g: ir.Table, milestones: ir.Table, accounts: ir.Table,
            expected: tuple[str, ...]) -> ir.Table:
    """The onboarding metrics of every snapshot key ``g``: milestones completed by D."""
    m = milestones.filter(milestones.milestone.isin(list(expected)))
    m = m.mutate(day=m.completed_at.date())
    j = g.join(m, [g.account_id == m.account_id, m.day <= g.as_of_date])
    done = j.group_by(KEYS).aggregate(
        completed=j.milestone.nunique(),
        last_day=j.day.max(),
        **{f"_d_{i}": j.day.min(where=j.milestone == name) for i, name in enumerate(expected)},
    )
    base = g.join(accounts.select("account_id", created=accounts.created_at.date()), "account_id")
    out = base.left_join(done, KEYS)
    completed = out.completed.fill_null(0)
    since_progress = out.as_of_date.delta(ibis.coalesce(out.last_day, out.created), unit="day")
    return out.select(
        account_id=out.account_id,
        as_of_date=out.as_of_date,
        onboarding_completed_share=completed.cast("float64") / len(expected),
        onboarding_stalled_flag=((completed < len(expected)) & (since_progress > 30)).cast("int64"),
        **{
            f"onboarding_{_slug(name)}_days_to": out[f"_d_{i}"].delta(out.created, unit="day")
            for i, name in enumerate(expected)
        },
    )
