"""The metric catalog: every metric defined once, with its meaning.

Each group's module lists its metrics (:class:`~features.metric.Metric` entries) beside
the Ibis definitions that compute them: :mod:`features.usage` (frequency, breadth, depth,
trend), :mod:`features.contract_metrics`, :mod:`features.support`,
:mod:`features.sentiment`, :mod:`features.onboarding`, :mod:`features.billing`,
:mod:`features.engagement` and :mod:`features.own`. This module assembles them, in
column order.

A metric's name follows ``<what>_<aggregate>_<window>``. Its group is how weights and
drivers are shown to people; its direction (does a higher value mean healthier or
riskier?) drives the docs, the explanations and the model's monotone constraints.

Some metrics exist once per configured feature (``key_feature_<f>_adoption_30d``):
:func:`catalog` expands them from the config, so the catalog always lists exactly the
columns the metric history has.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

from features import (
    billing, contract_metrics, engagement, onboarding, own, sentiment, support, usage)
from features.metric import GROUPS, Direction, Metric, _slug
from features.support import PRIORITIES
from healthscore.config import MetricsConfig

# What other code imports from here, wherever it is defined.
__all__ = [
    "GROUPS", "PRIORITIES", "Direction", "Metric", "_slug",
    "available_columns", "catalog", "catalog_markdown", "metric_names", "not_built",
]

# Every group's fixed metrics, each listed in its group's module beside its definition,
# in column order; the metrics that follow the config come after them (_all_metrics).
_FIXED: tuple[Metric, ...] = (
    *usage.METRICS,
    *contract_metrics.METRICS,
    *support.METRICS,
    *sentiment.METRICS,
    *onboarding.METRICS,
    *billing.METRICS,
    *engagement.METRICS,
)


Available = Mapping[str, Collection[str]]


def available_columns(tables: Mapping[str, object]) -> dict[str, frozenset[str]]:
    """Source -> its columns, for tables of any kind that have ``.columns`` (pandas or
    Ibis): what :func:`catalog` checks each metric's needs against.

    >>> import pandas as pd
    >>> sorted(available_columns({"events": pd.DataFrame(columns=["account_id", "event"])})["events"])
    ['account_id', 'event']
    """
    return {name: frozenset(map(str, table.columns)) for name, table in tables.items()}


def catalog(
    config: MetricsConfig | None = None,
    sources: Available | Iterable[str] | None = None,
    own_columns: tuple[str, ...] = (),
) -> tuple[Metric, ...]:
    """Every metric the history holds, in column order.

    Args:
        config: Metric settings (key features, milestones).
        sources: What is present: source -> its columns (see :func:`available_columns`);
            a metric whose source or needed optional column is absent is left out. A
            plain collection of source names counts every column of each as present.
            Default: everything.
        own_columns: The numeric columns of ``account_metrics``.
    """
    return tuple(m for m in _all_metrics(config, own_columns)
                 if sources is None or not m.missing(_as_available(sources)))


def not_built(
    config: MetricsConfig | None, sources: Available, own_columns: tuple[str, ...] = ()
) -> list[str]:
    """The metrics that ``sources`` cannot support, in words: one line per missing
    source or column, naming the metrics it costs.

    >>> not_built(None, {"accounts": {"account_id"}, "subscriptions": {"arr"},
    ...                  "events": {"account_id", "user_id"}})[:2]  # doctest: +ELLIPSIS
    ['optional column events.value is absent: events_value_sum_30d, event_deal_closed_value_sum_30d not built', 'optional column subscriptions.seats is absent: ...]
    """
    lost: dict[str, list[str]] = {}
    for metric in _all_metrics(config, own_columns):
        for what in metric.missing(sources):
            lost.setdefault(what, []).append(metric.name)
    lines = []
    for what, names in sorted(lost.items(), key=lambda kv: ("." not in kv[0], kv[0])):
        label = (f"optional column {what} is absent" if "." in what
                 else f"optional source {what} is absent")
        shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
        lines.append(f"{label}: {shown} not built")
    return lines


def _as_available(sources: Available | Iterable[str]) -> Available:
    if isinstance(sources, Mapping):
        return sources
    return {name: _EVERY for name in sources}


class _Every(frozenset):
    """Every column (a collection that contains anything)."""

    def __contains__(self, item: object) -> bool:
        return True


_EVERY = _Every()


def _all_metrics(config: MetricsConfig | None, own_columns: tuple[str, ...]) -> tuple[Metric, ...]:
    config = config or MetricsConfig()
    metrics = (_FIXED + usage.per_config(config) + onboarding.per_config(config)
               + own.per_config(config, own_columns))
    if not config.onboarding_milestones:  # nothing expected: no onboarding group
        metrics = tuple(m for m in metrics if m.group != "onboarding")
    return metrics


def metric_names(
    config: MetricsConfig | None = None,
    sources: Available | Iterable[str] | None = None,
    own_columns: tuple[str, ...] = (),
) -> list[str]:
    """Column names of the metric history, without the keys."""
    return [m.name for m in catalog(config, sources, own_columns)]


DOC_HEADER = """# Metric catalog

The metric history (`healthscore features`) has one row per account active at each
snapshot date and one column per metric below. Every value "as of D" uses only what
was recorded by the end of day D (see [data-contract.md](data-contract.md) and
`tests/test_features.py`, which recomputes metrics on data truncated at random dates D
and requires identical results).

* Names follow `<what>_<aggregate>_<window>`; windows are the `w` days ending with D,
  i.e. (D − w, D].
* **No data is not zero.** Counts are 0 when their source is present but nothing happened
  in the window; ratios, means and "latest" values are empty when there is nothing to
  measure; a whole group is absent when its source file is absent.
* Per-event, per-feature and per-milestone metrics follow the config
  (`metrics.event_types`, `metrics.value_events`, `metrics.key_features`,
  `metrics.onboarding_milestones`); the tables show the defaults. Their direction is
  "unknown" for plain event counts: whether more of an event is healthy depends on the
  event. `own_<column>_latest`
  exists for every numeric column of your `account_metrics` (latest value at or before D,
  at most `metrics.account_metrics_staleness_days` old, default 35).
* "source" names the source a metric comes from and the optional columns it needs; when
  one is absent the metric is left out, and the commands say so (see
  [data-contract.md](data-contract.md#optional-means-optional)).
* "higher is" is the metric's direction, used for explanations and as an option for the
  model's monotone constraints.

This file is generated by `make docs` (`healthscore catalog --out docs/metrics.md`);
a test fails when it is out of date.

"""


def catalog_markdown(config: MetricsConfig | None = None) -> str:
    """The catalog as a Markdown document, a table per group (``docs/metrics.md``)."""
    config = config or MetricsConfig()
    metrics = catalog(config, own_columns=("<column>",))
    lines = [DOC_HEADER]
    for group in GROUPS:
        rows = [m for m in metrics if m.group == group]
        if not rows:
            continue
        lines += [f"### {group}", "", "| metric | meaning | unit | higher is | source |",
                  "|---|---|---|---|---|"]
        lines += [f"| `{m.name}` | {m.description} | {m.unit} | {m.direction} | {m.source}"
                  f"{'; needs ' + ', '.join(f'`{n}`' for n in m.needs) if m.needs else ''} |"
                  for m in rows]
        lines.append("")
    return "\n".join(lines)
