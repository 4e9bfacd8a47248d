"""The metric engine: point-in-time metric histories, written once against Ibis.

The definitions use only portable Ibis operations (joins, group-bys, filtered
aggregates, window functions), so the same code runs on embedded DuckDB (the default)
and on other Ibis backends. Data flows:

    events -> user-event-day (the only scan of events)
           -> account-day, user-day, key-feature-user-day
    subscriptions x snapshot dates -> the grid: accounts active at each snapshot
    grid x day tables, windowed by (D - w, D] -> metrics as of D

"As of D" means up to the end of day D: a day table's row for day d counts for
snapshot D when d <= D. Nothing stamped after D enters any value for D.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import ibis
import ibis.expr.types as ir
import pandas as pd

from features import groups
from features.catalog import _slug, metric_names
from features.groups import in_window
from healthscore.config import MetricsConfig

KEYS = groups.KEYS
# Counts that are 0, not missing, when their source is present but has no rows in the window.
ZERO_WHEN_PRESENT = {
    "tickets": ("tickets_count_30d", "tickets_count_90d", "tickets_high_count_30d",
                "tickets_low_count_90d", "tickets_normal_count_90d", "tickets_high_count_90d",
                "tickets_urgent_count_90d", "tickets_open_count_current"),
    "invoices": ("invoices_late_count_365d", "invoices_overdue_days_max_current",
                 "invoices_unpaid_amount_current"),
    "marketing": ("marketing_touches_count_30d", "marketing_touches_count_90d"),
}


def snapshot_dates(
    as_of: dt.date, first_day: dt.date, every_days: int, history_days: int | None = None
) -> list[dt.date]:
    """Snapshot dates, every ``every_days`` back from ``as_of`` (inclusive), oldest first.

    Anchored on ``as_of``, so the snapshots as of D do not depend on later data.

    >>> snapshot_dates(dt.date(2024, 1, 29), dt.date(2024, 1, 10), 7)
    [datetime.date(2024, 1, 15), datetime.date(2024, 1, 22), datetime.date(2024, 1, 29)]
    """
    start = first_day
    if history_days is not None:
        start = max(start, as_of - dt.timedelta(days=history_days))
    dates, day = [], as_of
    while day >= start:
        dates.append(day)
        day -= dt.timedelta(days=every_days)
    return dates[::-1]


def _grid(subscriptions: ir.Table, accounts: ir.Table, dates: ir.Table) -> ir.Table:
    """Accounts active at each snapshot, with the contract metrics of their terms."""
    subs = subscriptions.mutate(
        start=subscriptions.start_date.date(), end=subscriptions.end_date.date()
    )
    covering = subs.join(dates, [subs.start <= dates.as_of_date, subs.end > dates.as_of_date])
    grid = covering.group_by(KEYS).aggregate(
        arr_total_current=covering.arr.sum(),
        seats_total_current=covering.seats.sum(),
        next_end=covering.end.min(),
        term_length_days_current=covering.end.delta(covering.start, unit="day").max(),
    )
    grid = grid.join(accounts.select("account_id", "created_at"), "account_id")
    return grid.mutate(
        renewal_days_to_next=grid.next_end.delta(grid.as_of_date, unit="day"),
        tenure_days_current=grid.as_of_date.delta(grid.created_at.date(), unit="day"),
    ).drop("next_end", "created_at")


def metric_history(
    tables: Mapping[str, ir.Table], snapshots: list[dt.date], config: MetricsConfig
) -> ir.Table:
    """The metric history expression: one row per account active at each snapshot.

    Args:
        tables: Validated contract sources as Ibis tables (``accounts``,
            ``subscriptions`` and ``events`` are required).
        snapshots: Snapshot dates (see :func:`snapshot_dates`).
        config: Metric settings (key and advanced features).

    Returns:
        An Ibis table with ``account_id``, ``as_of_date`` and every catalog metric.
    """
    dates = ibis.memtable(pd.DataFrame({"as_of_date": pd.Series(snapshots, dtype="object")}))
    dates = dates.mutate(as_of_date=dates.as_of_date.cast("date"))
    grid = _grid(tables["subscriptions"], tables["accounts"], dates)

    events = tables["events"]
    events = events.mutate(
        day=events.timestamp.date(),
        n=events["count"].fill_null(1),
    )
    # The only scan of raw events: everything below reads these daily aggregates.
    user_event_day = events.group_by(["account_id", "user_id", "event", "day"]).aggregate(
        n=events.n.sum(), value=events.value.sum()
    )
    key, advanced = list(config.key_features), list(config.advanced_features)
    ued = user_event_day
    account_day = ued.group_by(["account_id", "day"]).aggregate(
        events=ued.n.sum(),
        users=ued.user_id.nunique(),
        value=ued.value.sum(),
        advanced=ued.n.sum(where=ued.event.isin(advanced)) if advanced else ibis.literal(0),
        **{f"k_{i}": ued.n.sum(where=ued.event == f) for i, f in enumerate(key)},
    )
    named = ued.filter(ued.user_id.notnull())
    user_day = named.select("account_id", "user_id", "day").distinct()
    key_user_day = named.filter(named.event.isin(key)).select(
        "account_id", "user_id", "event", "day"
    ).distinct() if key else None

    g = grid.select(*KEYS)
    # Frequency, depth and event trend: one windowed join over account-days.
    j = g.join(account_day, [g.account_id == account_day.account_id,
                             in_window(account_day.day, g.as_of_date, 90)])
    last30 = in_window(j.day, j.as_of_date, 30)
    prev30 = ~last30 & in_window(j.day, j.as_of_date, 60)
    usage = j.group_by(KEYS).aggregate(
        active_days_count_30d=j.day.count(where=last30),
        active_days_count_90d=j.day.count(),
        events_count_30d=j.events.sum(where=last30),
        events_prev_30d=j.events.sum(where=prev30),
        events_value_sum_30d=j.value.sum(where=last30),
        advanced_30d=j.advanced.sum(where=last30),
        # Least-squares slope over the 90 days, days without usage counting as 0: only
        # the active days' sums are needed, the rest are constants of the window.
        _sy=j.events.sum(), _sxy=(j.events * _day_index(j.day, j.as_of_date)).sum(),
        _su=j.users.sum(), _sxu=(j.users * _day_index(j.day, j.as_of_date)).sum(),
        key_features_used_count_30d=sum(
            (j[f"k_{i}"].sum(where=last30).fill_null(0) > 0).cast("int64")
            for i in range(len(key))
        ) if key else ibis.literal(0),
    )
    # Breadth and its trend: distinct users over user-days.
    u = g.join(user_day, [g.account_id == user_day.account_id,
                          in_window(user_day.day, g.as_of_date, 60)])
    # Two steps (one row per snapshot and user, then sums) instead of filtered
    # COUNT(DISTINCT): the same numbers, and much cheaper on large joins.
    per_user = u.group_by([*KEYS, "user_id"]).aggregate(
        recent=in_window(u.day, u.as_of_date, 30).cast("int64").max(),
        earlier=(~in_window(u.day, u.as_of_date, 30)).cast("int64").max(),
    )
    users = per_user.group_by(KEYS).aggregate(
        active_users_count_30d=per_user.recent.sum(),
        users_prev_30d=per_user.earlier.sum(),
    )
    # Days since last activity: a running max of activity days, over account-days and
    # snapshots in date order (activity on D itself sorts before the snapshot D).
    marks = account_day.select("account_id", at=account_day.day, active=ibis.literal(1)).union(
        g.select("account_id", at=g.as_of_date, active=ibis.literal(0))
    )
    window = ibis.window(group_by=marks.account_id, order_by=[marks.at, ibis.desc(marks.active)],
                         preceding=None, following=0)
    marks = marks.mutate(
        last_day=ibis.ifelse(marks.active == 1, marks.at, ibis.null("date")).max().over(window)
    )
    snaps = marks.filter(marks.active == 0)
    last = snaps.select(
        "account_id", as_of_date=snaps.at,
        activity_days_since_last=snaps.at.delta(snaps.last_day, unit="day"),
    )

    out = grid.left_join(usage, KEYS).drop("account_id_right", "as_of_date_right")
    out = out.left_join(users, KEYS).drop("account_id_right", "as_of_date_right")
    out = out.left_join(last, KEYS).drop("account_id_right", "as_of_date_right")
    if key_user_day is not None:
        k = g.join(key_user_day, [g.account_id == key_user_day.account_id,
                                  in_window(key_user_day.day, g.as_of_date, 30)])
        feature_users = k.select(*KEYS, "user_id", "event").distinct()
        adoption = feature_users.group_by(KEYS).aggregate(
            **{f"ku_{i}": (feature_users.event == f).cast("int64").sum()
               for i, f in enumerate(key)}
        )
        out = out.left_join(adoption, KEYS).drop("account_id_right", "as_of_date_right")

    out = _join_groups(out, g, tables, config)

    # No usage in a window is zero activity (the account is active and events exist),
    # not missing data; ratios with nothing to divide by stay empty.
    zero = {c: out[c].fill_null(0) for c in (
        "active_days_count_30d", "active_days_count_90d", "events_count_30d",
        "events_prev_30d", "events_value_sum_30d", "advanced_30d",
        "key_features_used_count_30d", "active_users_count_30d", "users_prev_30d",
        "_sy", "_sxy", "_su", "_sxu",
    )}
    out = out.mutate(**zero)
    seats = out.seats_total_current
    out = out.mutate(
        events_per_active_user_30d=_ratio(out.events_count_30d, out.active_users_count_30d),
        active_users_ratio_30d=_ratio(out.active_users_count_30d, seats),
        advanced_events_share_30d=_ratio(out.advanced_30d, out.events_count_30d),
        events_count_change_30d=_ratio(out.events_count_30d, out.events_prev_30d) - 1,
        events_daily_slope_90d=_slope(out._sy, out._sxy),
        active_users_daily_slope_90d=_slope(out._su, out._sxu),
        active_users_change_30d=_ratio(out.active_users_count_30d, out.users_prev_30d) - 1,
        **{
            f"key_feature_{_slug(f)}_adoption_30d": _ratio(
                out[f"ku_{i}"].fill_null(0), out.active_users_count_30d
            )
            for i, f in enumerate(key)
        },
    )
    # Fall from the account's own peak: the highest 30-day usage at any earlier snapshot.
    peak = ibis.window(group_by=out.account_id, order_by=out.as_of_date, preceding=None, following=0)
    out = out.mutate(
        events_count_drop_from_peak=1 - _ratio(out.events_count_30d,
                                               out.events_count_30d.max().over(peak)),
        active_users_drop_from_peak=1 - _ratio(out.active_users_count_30d,
                                               out.active_users_count_30d.max().over(peak)),
    )
    sources = set(tables)
    own = own_metric_columns(tables)
    return out.select(*KEYS, *metric_names(config, sources, own)).order_by(KEYS)


def own_metric_columns(tables: Mapping[str, ir.Table]) -> tuple[str, ...]:
    """The metric columns of ``account_metrics`` (every numeric column but the keys)."""
    if "account_metrics" not in tables:
        return ()
    schema = tables["account_metrics"].schema()
    return tuple(c for c, t in schema.items() if c not in KEYS and t.is_numeric())


def _join_groups(out: ir.Table, g: ir.Table, tables: Mapping[str, ir.Table],
                 config: MetricsConfig) -> ir.Table:
    """Left-join each optional source's group onto the grid (absent source: no columns)."""
    parts = []
    if "tickets" in tables:
        parts.append(groups.support(g, tables["tickets"]))
    if "surveys" in tables:
        parts.append(groups.sentiment_surveys(g, tables["surveys"]))
    if "csm_notes" in tables:
        parts.append(groups.sentiment_csm(g, tables["csm_notes"]))
    if "onboarding" in tables and config.onboarding_milestones:
        parts.append(groups.onboarding(g, tables["onboarding"], tables["accounts"],
                                       config.onboarding_milestones))
    if "invoices" in tables:
        parts.append(groups.billing(g, tables["invoices"]))
    if "marketing" in tables:
        parts.append(groups.engagement(g, tables["marketing"]))
    own = own_metric_columns(tables)
    if own:
        parts.append(groups.own_metrics(g, tables["account_metrics"], list(own),
                                        config.account_metrics_staleness_days))
    for part in parts:
        out = out.left_join(part, KEYS).drop("account_id_right", "as_of_date_right")
    zero = {c: out[c].fill_null(0) for source, columns in ZERO_WHEN_PRESENT.items()
            if source in tables for c in columns}
    return out.mutate(**zero) if zero else out


SLOPE_DAYS = 90


def _day_index(day: ir.DateValue, as_of: ir.DateValue) -> ir.IntegerValue:
    """0 for the first day of the 90-day window ending with ``as_of``, 89 for ``as_of``."""
    return (SLOPE_DAYS - 1) - as_of.delta(day, unit="day")


def _slope(sum_y: ir.NumericValue, sum_xy: ir.NumericValue) -> ir.FloatingValue:
    """Least-squares slope of y on x = 0..n-1 from sum(y) and sum(x*y) (y = 0 elsewhere)."""
    n = SLOPE_DAYS
    sum_x, sum_xx = n * (n - 1) / 2, (n - 1) * n * (2 * n - 1) / 6
    return (n * sum_xy.cast("float64") - sum_x * sum_y.cast("float64")) / (n * sum_xx - sum_x**2)


def _ratio(numerator: ir.NumericValue, denominator: ir.NumericValue) -> ir.FloatingValue:
    """numerator / denominator, empty when the denominator is 0 or empty."""
    return ibis.ifelse(
        denominator.fill_null(0) > 0,
        numerator.cast("float64") / denominator.cast("float64"),
        ibis.null("float64"),
    )
