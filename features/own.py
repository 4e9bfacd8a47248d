"""The own group: bring-your-own metrics, one per numeric column of ``account_metrics``."""

from __future__ import annotations

from collections.abc import Mapping

import ibis
import ibis.expr.types as ir

from features.expr import KEYS
from features.metric import U, Metric, _slug
from healthscore.config import MetricsConfig

SOURCE = "account_metrics"


def per_config(config: MetricsConfig, own_columns: tuple[str, ...]) -> tuple[Metric, ...]:
    """One metric per own column (``<column>`` stands for any, in the docs)."""
    return tuple(
        Metric(
            f"own_{c if c == '<column>' else _slug(c)}_latest", "own",
            f"Your metric `{c}` (from account_metrics: the latest value within "
            f"{config.account_metrics_staleness_days} days)", "as given", U, "account_metrics",
        )
        for c in own_columns
    )


def own_metric_columns(tables: Mapping[str, ir.Table]) -> tuple[str, ...]:
    """The metric columns of ``account_metrics`` (every numeric column but the keys)."""
    if SOURCE not in tables:
        return ()
    schema = tables[SOURCE].schema()
    return tuple(c for c, t in schema.items() if c not in KEYS and t.is_numeric())


def compute(g: ir.Table, account_metrics: ir.Table, columns: list[str],
            staleness_days: int) -> ir.Table:
    """The latest value of each bring-your-own metric at or before D, within the staleness limit."""
    am = account_metrics.mutate(day=account_metrics.as_of_date.date()).drop("as_of_date")
    j = g.join(am, [g.account_id == am.account_id, am.day <= g.as_of_date,
                    am.day >= g.as_of_date - ibis.interval(days=staleness_days)])
    return j.group_by(KEYS).aggregate(
        # An empty cell is "no value": skip it and take the latest value that exists.
        **{f"own_{_slug(c)}_latest": j[c].argmax(j.day, where=j[c].notnull()) for c in columns}
    )
