"""The metric catalog: every metric defined once, with its meaning.

A metric's name follows ``<what>_<aggregate>_<window>``. Its group is how weights and
drivers are shown to people; its direction (does a higher value mean healthier or
riskier?) drives the docs, the explanations and the model's monotone constraints.

Some metrics exist once per configured feature (``key_feature_<f>_adoption_30d``):
:func:`catalog` expands them from the config, so the catalog always lists exactly the
columns the metric history has.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from healthscore.config import MetricsConfig


class Direction(StrEnum):
    """What a higher value means."""

    HEALTHIER = "healthier"
    RISKIER = "riskier"
    UNKNOWN = "unknown"


GROUPS = (
    "frequency", "breadth", "depth", "trend", "support", "sentiment",
    "onboarding", "billing", "engagement", "contract",
    "own",  # bring-your-own metrics from account_metrics
)


@dataclass(frozen=True)
class Metric:
    """One column of the metric history."""

    name: str
    group: str
    description: str
    unit: str
    direction: Direction
    source: str
    # Optional contract columns the metric cannot be computed without, as
    # ``source.column`` (a per-seat ratio needs ``subscriptions.seats``).
    needs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.group not in GROUPS:
            raise ValueError(f"{self.name}: unknown group {self.group!r}")

    def missing(self, available: Mapping[str, Collection[str]]) -> list[str]:
        """What this metric needs that ``available`` (source -> columns) lacks: the
        source itself, or ``source.column`` entries.

        >>> Metric("x", "breadth", "", "", Direction.HEALTHIER, "events",
        ...        ("events.user_id",)).missing({"events": {"account_id"}})
        ['events.user_id']
        """
        if self.source not in available:
            return [self.source]
        return [n for n in self.needs
                if n.split(".", 1)[1] not in available.get(n.split(".", 1)[0], ())]


H, R, U = Direction.HEALTHIER, Direction.RISKIER, Direction.UNKNOWN

_FIXED: tuple[Metric, ...] = (
    # frequency
    Metric("active_days_count_30d", "frequency", "Days with any product usage in the last 30 days", "days", H, "events"),
    Metric("active_days_count_90d", "frequency", "Days with any product usage in the last 90 days", "days", H, "events"),
    Metric("events_count_30d", "frequency", "Product events (summing `count`) in the last 30 days", "events", H, "events"),
    Metric("events_per_active_user_30d", "frequency", "Events per active user in the last 30 days", "events/user", H, "events", ("events.user_id",)),
    Metric("events_value_sum_30d", "frequency", "Sum of event `value` amounts in the last 30 days", "amount", H, "events", ("events.value",)),
    Metric("activity_days_since_last", "frequency", "Days since the account's last product usage (empty: never used)", "days", R, "events"),
    Metric("active_days_share_tenure", "frequency", "Active days in the last 90 days per day the account has existed in them (young accounts compare fairly)", "share", H, "events"),
    Metric("events_count_per_seat_30d", "frequency", "Product events in the last 30 days per licensed seat", "events/seat", H, "events", ("subscriptions.seats",)),
    # breadth
    Metric("active_users_count_30d", "breadth", "Distinct users active in the last 30 days", "users", H, "events", ("events.user_id",)),
    Metric("active_users_ratio_30d", "breadth", "Active users in the last 30 days per licensed seat", "ratio", H, "events", ("events.user_id", "subscriptions.seats")),
    # depth
    Metric("key_features_used_count_30d", "depth", "Distinct key features used in the last 30 days", "features", H, "events"),
    Metric("advanced_events_share_30d", "depth", "Share of events on advanced features in the last 30 days (empty: no events)", "share", H, "events"),
    # trend
    Metric("events_count_change_30d", "trend", "Events in the last 30 days against the 30 before (relative change; empty: none before)", "ratio", H, "events"),
    Metric("events_daily_slope_90d", "trend", "Slope of daily events over the last 90 days (least squares; idle days count as 0)", "events/day per day", H, "events"),
    Metric("active_users_daily_slope_90d", "trend", "Slope of daily active users over the last 90 days", "users/day per day", H, "events", ("events.user_id",)),
    Metric("events_count_drop_from_peak", "trend", "Fall of 30-day events from the account's own highest 30-day count at a snapshot of the last 365 days (0: at its peak)", "share", R, "events"),
    Metric("active_users_drop_from_peak", "trend", "Fall of 30-day active users from the account's own highest count at a snapshot of the last 365 days (0: at its peak)", "share", R, "events", ("events.user_id",)),
    Metric("active_users_change_30d", "trend", "Active users in the last 30 days against the 30 before (relative change)", "ratio", H, "events", ("events.user_id",)),
    # contract
    Metric("arr_total_current", "contract", "ARR (annual recurring revenue) of the current terms", "currency", U, "subscriptions"),
    Metric("seats_total_current", "contract", "Licensed seats on the current terms", "seats", U, "subscriptions", ("subscriptions.seats",)),
    Metric("tenure_days_current", "contract", "Days since the account was created", "days", H, "accounts"),
    Metric("renewal_days_to_next", "contract", "Days to the next renewal (the end of the earliest current term)", "days", U, "subscriptions"),
    Metric("term_length_days_current", "contract", "Length of the longest current term (about 30 monthly, 365 annual)", "days", U, "subscriptions"),
    Metric("arr_change_365d", "contract", "ARR now against ARR a year earlier (relative change; empty: no term then)", "ratio", H, "subscriptions"),
    Metric("seats_change_365d", "contract", "Licensed seats now against a year earlier (relative change; empty: no term then)", "ratio", H, "subscriptions", ("subscriptions.seats",)),
    # support
    Metric("tickets_count_30d", "support", "Support tickets opened in the last 30 days", "tickets", R, "tickets"),
    Metric("tickets_count_90d", "support", "Support tickets opened in the last 90 days", "tickets", R, "tickets"),
    Metric("tickets_high_count_30d", "support", "High or urgent tickets opened in the last 30 days", "tickets", R, "tickets", ("tickets.priority",)),
    *(
        Metric(f"tickets_{p}_count_90d", "support", f"Tickets of priority {p} opened in the last 90 days", "tickets", R, "tickets", ("tickets.priority",))
        for p in ("low", "normal", "high", "urgent")
    ),
    Metric("tickets_count_per_seat_90d", "support", "Support tickets opened in the last 90 days per licensed seat", "tickets/seat", R, "tickets", ("subscriptions.seats",)),
    Metric("tickets_resolution_hours_mean_90d", "support", "Mean hours to resolve tickets opened in the last 90 days and resolved by the day", "hours", R, "tickets", ("tickets.resolved_at",)),
    Metric("tickets_csat_mean_90d", "support", "Mean ticket CSAT (1-5) of tickets opened in the last 90 days and resolved by the day", "score", H, "tickets", ("tickets.csat", "tickets.resolved_at")),
    Metric("tickets_open_count_current", "support", "Tickets open at the end of the day", "tickets", R, "tickets", ("tickets.resolved_at",)),
    # sentiment
    Metric("nps_score_latest", "sentiment", "Latest NPS response (0-10) in the last 365 days (responses at the same latest time: their mean)", "score", H, "surveys"),
    Metric("nps_score_mean_180d", "sentiment", "Mean NPS response in the last 180 days", "score", H, "surveys"),
    Metric("nps_score_change_180d", "sentiment", "Mean NPS of the last 180 days minus the 185 days before", "points", H, "surveys"),
    Metric("nps_promoter_share_365d", "sentiment", "Share of NPS responses of 9-10 in the last 365 days", "share", H, "surveys"),
    Metric("nps_detractor_share_365d", "sentiment", "Share of NPS responses of 0-6 in the last 365 days", "share", R, "surveys"),
    Metric("csat_score_mean_90d", "sentiment", "Mean CSAT survey response (1-5) in the last 90 days", "score", H, "surveys"),
    Metric("csm_sentiment_latest", "sentiment", "The CSM's latest read of the account (1-10) in the last 365 days (notes at the same latest time: their mean)", "score", H, "csm_notes"),
    Metric("csm_sentiment_change_90d", "sentiment", "Mean CSM sentiment of the last 90 days minus the 90 before", "points", H, "csm_notes"),
    # onboarding
    Metric("onboarding_completed_share", "onboarding", "Share of the expected onboarding milestones completed", "share", H, "onboarding"),
    Metric("onboarding_stalled_flag", "onboarding", "1 when onboarding is incomplete and nothing moved for 30 days", "flag", R, "onboarding"),
    # billing
    Metric("invoices_late_count_365d", "billing", "Invoices due in the last 365 days paid late or still overdue", "invoices", R, "invoices", ("invoices.paid_at",)),
    Metric("invoices_overdue_days_max_current", "billing", "Days the oldest overdue invoice is past due (0: none)", "days", R, "invoices", ("invoices.paid_at",)),
    Metric("invoices_unpaid_amount_current", "billing", "Amount of overdue unpaid invoices", "currency", R, "invoices", ("invoices.paid_at",)),
    # engagement
    Metric("marketing_touches_count_30d", "engagement", "Marketing touches (clicks, webinars, visits) in the last 30 days", "touches", H, "marketing"),
    Metric("marketing_touches_count_90d", "engagement", "Marketing touches in the last 90 days", "touches", H, "marketing"),
)

PRIORITIES = ("low", "normal", "high", "urgent")


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
    per_feature = tuple(
        Metric(
            f"key_feature_{_slug(f)}_adoption_30d", "depth",
            f"Share of the last 30 days' active users who used key feature `{f}`",
            "share", H, "events", ("events.user_id",),
        )
        for f in config.key_features
    )
    per_event = tuple(
        Metric(
            f"event_{_slug(e)}_count_30d", "frequency",
            f"Events `{e}` (summing `count`) in the last 30 days", "events", U, "events",
        )
        for e in config.event_types
    ) + tuple(
        Metric(
            f"event_{_slug(e)}_value_sum_30d", "frequency",
            f"Sum of the `value` of events `{e}` in the last 30 days", "amount", U, "events",
            ("events.value",),
        )
        for e in config.value_events
    )
    per_milestone = tuple(
        Metric(
            f"onboarding_{_slug(m)}_days_to", "onboarding",
            f"Days from account creation to milestone `{m}` (empty: not reached)", "days", R,
            "onboarding",
        )
        for m in config.onboarding_milestones
    )
    own = tuple(
        Metric(
            f"own_{c if c == '<column>' else _slug(c)}_latest", "own",
            f"Your metric `{c}` (from account_metrics: the latest value within "
            f"{config.account_metrics_staleness_days} days)", "as given", U, "account_metrics",
        )
        for c in own_columns
    )
    metrics = _FIXED + per_event + per_feature + per_milestone + own
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


def _slug(event: str) -> str:
    """``Create Report`` -> ``create_report``: a safe column-name part."""
    out = "".join(c.lower() if c.isalnum() else "_" for c in event)
    return "_".join(p for p in out.split("_") if p) or "event"


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
