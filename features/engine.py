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
from collections.abc import Callable, Mapping

import ibis
import ibis.expr.types as ir
import pandas as pd

from features import groups
from features.catalog import _slug, available_columns, metric_names
from features.groups import exact_sum, in_window
from healthscore.config import MetricsConfig
from healthscore.contract import SOURCES, Kind

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


def _terms(subscriptions: ir.Table) -> ir.Table:
    return subscriptions.mutate(start=subscriptions.start_date.date(), end=subscriptions.end_date.date())


def _active(subscriptions: ir.Table, dates: ir.Table) -> ir.Table:
    """``account_id``, ``as_of_date``: the accounts with a term covering each date."""
    subs = _terms(subscriptions)
    covering = subs.join(dates, [subs.start <= dates.as_of_date, subs.end > dates.as_of_date])
    return covering.select(*KEYS).distinct()


def _dates(days: list[dt.date]) -> ir.Table:
    dates = ibis.memtable(pd.DataFrame({"as_of_date": pd.Series(days, dtype="object")}))
    return dates.mutate(as_of_date=dates.as_of_date.cast("date"))


def _grid(subscriptions: ir.Table, accounts: ir.Table, dates: ir.Table) -> ir.Table:
    """Accounts active at each snapshot, with the contract metrics of their terms."""
    subs = _terms(subscriptions)
    covering = subs.join(dates, [subs.start <= dates.as_of_date, subs.end > dates.as_of_date])
    grid = covering.group_by(KEYS).aggregate(
        arr_total_current=exact_sum(covering.arr),
        seats_total_current=covering.seats.sum(),
        next_end=covering.end.min(),
        term_length_days_current=covering.end.delta(covering.start, unit="day").max(),
    )
    # The same a year earlier, for past contraction or expansion.
    year_ago = dates.mutate(then=dates.as_of_date - ibis.interval(days=365))
    before = subs.join(year_ago, [subs.start <= year_ago.then, subs.end > year_ago.then])
    before = before.group_by(KEYS).aggregate(arr_then=exact_sum(before.arr), seats_then=before.seats.sum())
    grid = grid.join(accounts.select("account_id", "created_at"), "account_id")
    grid = grid.left_join(before, KEYS).drop("account_id_right", "as_of_date_right")
    return grid.mutate(
        renewal_days_to_next=grid.next_end.delta(grid.as_of_date, unit="day"),
        tenure_days_current=grid.as_of_date.delta(grid.created_at.date(), unit="day"),
        arr_change_365d=_ratio(grid.arr_total_current, grid.arr_then) - 1,
        seats_change_365d=_ratio(grid.seats_total_current, grid.seats_then) - 1,
    ).drop("next_end", "created_at", "arr_then", "seats_then")


ROLLUPS = ("account_day", "user_day", "key_user_day", "value_day")


def daily_rollups(events: ir.Table, config: MetricsConfig,
                  materialize: Callable[[str, ir.Table], ir.Table] | None = None,
                  ) -> dict[str, ir.Table]:
    """The daily rollups of raw events: the only grouped passes over events.

    Every window of the metric history reads these, never events. Each row depends only
    on the events of its own account and day, so a store can keep them between runs and
    recompute just the (account, day) keys whose events changed.

    Returns:
        ``account_day``: account_id, day, events (summing ``count``), advanced, one
        ``e_<i>`` count per configured event type and key feature (see
        :func:`rollup_event_types`), users (distinct named users);
        ``user_day``: the distinct account_id, user_id, day of named events;
        ``key_user_day``: the same with ``event``, for key-feature events only;
        ``value_day``: account_id, day, event, value (the sum of ``value``).

    ``materialize(name, table)`` computes a rollup once and returns a handle to it;
    ``user_day`` goes through it before ``account_day`` counts its users from it.
    """
    keep = materialize or (lambda name, t: t)
    events = complete_optional_columns({"events": events})["events"]
    events = events.mutate(day=events.timestamp.date(), n=events["count"].fill_null(1))
    advanced = list(config.advanced_features)
    types = rollup_event_types(config)
    account_day = events.group_by(["account_id", "day"]).aggregate(
        events=_int_sum(events.n),
        advanced=_int_sum(events.n, where=events.event.isin(advanced)).fill_null(0)
        if advanced else ibis.literal(0, "int64"),
        **{f"e_{i}": _int_sum(events.n, where=events.event == t).fill_null(0)
           for i, t in enumerate(types)},
    )
    named = events.filter(events.user_id.notnull())
    user_day = keep("user_day", named.select("account_id", "user_id", "day").distinct())
    users_day = user_day.group_by(["account_id", "day"]).aggregate(users=user_day.user_id.count())
    account_day = account_day.left_join(users_day, ["account_id", "day"]).drop(
        "account_id_right", "day_right")
    account_day = account_day.mutate(users=account_day.users.fill_null(0))
    key = list(config.key_features)
    keyed = named.filter(named.event.isin(key)) if key else named.filter(ibis.literal(False))
    key_user_day = keyed.select("account_id", "user_id", "event", "day").distinct()
    valued = events.filter(events.value.notnull())
    value_day = valued.group_by(["account_id", "day", "event"]).aggregate(value=exact_sum(valued.value))
    return {"user_day": user_day, "account_day": keep("account_day", account_day),
            "key_user_day": keep("key_user_day", key_user_day),
            "value_day": keep("value_day", value_day)}


def rollup_event_types(config: MetricsConfig) -> list[str]:
    """The event names ``account_day`` counts apart, in column order (``e_0``, ...)."""
    return list(dict.fromkeys([*config.event_types, *config.key_features]))


def peak_inputs(rollups: Mapping[str, ir.Table], subscriptions: ir.Table,
                dates: list[dt.date]) -> ir.Table:
    """What the fall from peak needs at each date: the 30-day events and distinct users of
    every account active then (``account_id``, ``as_of_date``, ``events_count_30d``,
    ``active_users_count_30d``), equal to the metric history's own columns at that date."""
    g = _active(subscriptions, _dates(dates))
    gn = g.mutate(gdn=_day_number(g.as_of_date))
    ad = rollups["account_day"]
    ad = ad.filter((ad.day > min(dates) - dt.timedelta(days=30)) & (ad.day <= max(dates)))
    e = ad.select("account_id", "events", dn=_day_number(ad.day))
    j = gn.join(e, [gn.account_id == e.account_id, e.dn <= gn.gdn, e.dn > gn.gdn - 30])
    counts = j.group_by(KEYS).aggregate(events_count_30d=_int_sum(j.events))
    ud = rollups["user_day"]
    ud = ud.filter((ud.day > min(dates) - dt.timedelta(days=30)) & (ud.day <= max(dates)))
    users = _distinct_users_at(ud, g.mutate(at=_day_number(g.as_of_date)), 30)
    out = g.left_join(counts, KEYS).drop("account_id_right", "as_of_date_right")
    out = out.left_join(users.select(*KEYS, "users"), KEYS).drop(
        "account_id_right", "as_of_date_right")
    return out.select(*KEYS, events_count_30d=out.events_count_30d.fill_null(0),
                      active_users_count_30d=out.users.fill_null(0))


def metric_history(
    tables: Mapping[str, ir.Table], snapshots: list[dt.date], config: MetricsConfig,
    materialize: Callable[[ir.Table], ir.Table] | None = None,
    peak_snapshots: list[dt.date] = (),
    rollups: Mapping[str, ir.Table] | None = None,
    peaks: ir.Table | None = None,
) -> ir.Table:
    """The metric history expression: one row per account active at each snapshot.

    Args:
        tables: Validated contract sources as Ibis tables (``accounts``,
            ``subscriptions`` and ``events`` are required; ``events`` is read only
            when ``rollups`` is not given).
        snapshots: Snapshot dates (see :func:`snapshot_dates`).
        config: Metric settings (key and advanced features).
        materialize: Optionally computes an intermediate table in the backend and
            returns a handle to it (e.g. ``lambda t: con.create_table(name, t,
            temp=True)``). The daily aggregates go through it, so the backend runs a few
            moderate queries instead of one huge one: less memory held at once.
        peak_snapshots: Earlier snapshot dates that count only towards the fall from
            peak (the highest 30-day usage at a snapshot of the trailing year). A short
            history passes the year of snapshots before its first one here, so its rows
            equal the full history's; only two narrow 30-day counts are computed at them.
        rollups: The :func:`daily_rollups` of the events, when the caller keeps them
            (a metric store); computed from ``tables["events"]`` otherwise.
        peaks: The :func:`peak_inputs` at the snapshots and at every earlier snapshot
            of their trailing year, when the caller keeps them; computed otherwise.

    Returns:
        An Ibis table with ``account_id``, ``as_of_date`` and every catalog metric, in no
        particular row order (sorting is cheaper in the caller than in the engine).

    Raises:
        ValueError: The definitions compute a metric the catalog does not know, or miss
            one it lists.
    """
    keep = materialize or (lambda t: t)
    # What the data has decides which metrics exist; every definition below may then
    # read any contract column (an absent one is empty, so what needs it is dropped).
    present = available_columns(tables)
    tables = complete_optional_columns(tables)
    if rollups is None:
        rollups = daily_rollups(tables["events"], config, lambda name, t: keep(t))
    if peaks is None:
        dates = sorted(set(peak_snapshots) | set(snapshots))
        peaks = keep(peak_inputs(rollups, tables["subscriptions"], dates))
    grid = keep(_grid(tables["subscriptions"], tables["accounts"], _dates(snapshots)))
    g = grid.select(*KEYS)
    parts = [
        *_usage(g, rollups, snapshots, config, keep),
        _fall_from_peak(g, peaks, snapshots, config.snapshot_every_days),
        *_source_groups(g, tables, config),
    ]
    out = grid
    for part in parts:
        out = out.left_join(part, KEYS).drop("account_id_right", "as_of_date_right")
    out = _derived(out, tables, config)
    return _catalogued(out, config, present, own_metric_columns(tables))


def _catalogued(out: ir.Table, config: MetricsConfig, present, own: tuple[str, ...]) -> ir.Table:
    """The metric columns the catalog lists for this data, in catalog order.

    Working columns start with ``_``. Any other computed column must be a catalog metric:
    a definition without its catalog entry is an error, not a silently dropped column.
    """
    computed = [c for c in out.columns if c not in KEYS and not c.startswith("_")]
    known = set(metric_names(config, None, own))
    unknown = [c for c in computed if c not in known]
    listed = metric_names(config, present, own)
    missing = [c for c in listed if c not in computed]
    if unknown or missing:
        raise ValueError(
            "the metric definitions and features/catalog.py disagree: "
            + "; ".join(part for part in (
                f"computed but not catalogued: {', '.join(unknown)}" if unknown else "",
                f"catalogued but not computed: {', '.join(missing)}" if missing else "")
                if part))
    return out.select(*KEYS, *listed)


def _usage(g: ir.Table, rollups: Mapping[str, ir.Table], snapshots: list[dt.date],
           config: MetricsConfig, keep) -> list[ir.Table]:
    """Frequency, breadth, depth and trend blocks from the daily rollups.

    Only days some window can reach are read: up to the last snapshot and back 90 days
    from the first. The last active day before that is kept apart, for the days since
    last activity.
    """
    first = min(snapshots) - dt.timedelta(days=WIDEST_DAYS)
    last_day = max(snapshots)
    account_day = rollups["account_day"]
    earlier = account_day.filter(account_day.day <= first).group_by("account_id").aggregate(
        at=account_day.day.max())
    account_day = account_day.filter((account_day.day > first) & (account_day.day <= last_day))
    user_day = rollups["user_day"]
    user_day = user_day.filter((user_day.day > first) & (user_day.day <= last_day))
    value_day = rollups["value_day"]
    value_day = value_day.filter((value_day.day > first) & (value_day.day <= last_day))
    key = list(config.key_features)
    index = {t: i for i, t in enumerate(rollup_event_types(config))}

    # Two windowed joins of account-days to snapshots: the 30-day one carries the many
    # per-event columns, the 90-day one only what needs 60 or 90 days. Windows compare
    # integer day numbers: much cheaper per joined row than date arithmetic.
    ad = account_day.mutate(dn=_day_number(account_day.day))
    gn = g.mutate(gdn=_day_number(g.as_of_date))
    j = gn.join(ad, [gn.account_id == ad.account_id, ad.dn <= gn.gdn, ad.dn > gn.gdn - 30])
    recent = j.group_by(KEYS).aggregate(
        active_days_count_30d=j.dn.count(),
        events_count_30d=_int_sum(j.events),
        _advanced_30d=_int_sum(j.advanced),
        key_features_used_count_30d=sum(
            (_int_sum(j[f"e_{index[f]}"]) > 0).cast("int64") for f in key
        ) if key else ibis.literal(0, "int64"),
        **{f"event_{_slug(e)}_count_30d": _int_sum(j[f"e_{index[e]}"]) for e in config.event_types},
    )
    ad = ad.select("account_id", "dn", "events", "users")
    j = gn.join(ad, [gn.account_id == ad.account_id, ad.dn <= gn.gdn, ad.dn > gn.gdn - 90])
    age = j.gdn - j.dn  # 0 on the snapshot day
    # x = 0 on the first day of the 90-day window, 89 on the snapshot day.
    x = (SLOPE_DAYS - 1) - age
    longer = j.group_by(KEYS).aggregate(
        active_days_count_90d=j.dn.count(),
        _events_prev_30d=_int_sum(j.events, where=(age >= 30) & (age < 60)),
        # Least-squares slope over the 90 days, days without usage counting as 0: only
        # the active days' sums are needed, the rest are constants of the window.
        _sy=_int_sum(j.events), _sxy=_int_sum(j.events * x),
        _su=_int_sum(j.users), _sxu=_int_sum(j.users * x),
    )
    # Days since last activity: a running max of activity days, over account-days and
    # snapshots in date order (activity on D itself sorts before the snapshot D).
    marks = account_day.select("account_id", at=account_day.day, active=ibis.literal(1)).union(
        earlier.select("account_id", "at", active=ibis.literal(1))).union(
        g.select("account_id", at=g.as_of_date, active=ibis.literal(0))
    )
    running = ibis.window(group_by=marks.account_id,
                          order_by=[marks.at, ibis.desc(marks.active)], preceding=None, following=0)
    marks = marks.mutate(
        last_day=ibis.ifelse(marks.active == 1, marks.at, ibis.null("date")).max().over(running)
    )
    snaps = marks.filter(marks.active == 0)
    last = snaps.select(
        "account_id", as_of_date=snaps.at,
        activity_days_since_last=snaps.at.delta(snaps.last_day, unit="day"),
    )
    # Amounts are floats: summed over a windowed join of the (few) days that carry one,
    # not as differences of running totals, which would depend on summation order.
    v = g.join(value_day, [g.account_id == value_day.account_id,
                           in_window(value_day.day, g.as_of_date, 30)])
    values = v.group_by(KEYS).aggregate(
        events_value_sum_30d=exact_sum(v.value),
        **{f"event_{_slug(e)}_value_sum_30d": exact_sum(v.value, where=v.event == e)
           for e in config.value_events},
    )
    # Breadth and its trend: distinct users in (D - 30, D] and (D - 60, D - 30].
    points = g.mutate(at=_day_number(g.as_of_date)).union(
        g.mutate(at=_day_number(g.as_of_date) - 30))
    counted = _distinct_users_at(user_day, points, 30)
    now = counted.at == _day_number(counted.as_of_date)
    users = counted.group_by(KEYS).aggregate(
        active_users_count_30d=counted.users.max(where=now),
        _users_prev_30d=counted.users.max(where=~now),
    )
    blocks = [keep(t) for t in (recent, longer, last, values, users)]
    if key:
        # Adoption: distinct users of each key feature in the 30 days back.
        kud = rollups["key_user_day"]
        kud = kud.filter((kud.day > min(snapshots) - dt.timedelta(days=30)) & (kud.day <= last_day))
        points = g.mutate(at=_day_number(g.as_of_date))
        adoption = _distinct_users_at(kud, points, 30, split=("event", key))
        blocks.append(keep(adoption.select(*KEYS, **{f"_ku_{i}": adoption[f"users_{i}"]
                                                     for i in range(len(key))})))
    return blocks


def _fall_from_peak(g: ir.Table, peaks: ir.Table, snapshots: list[dt.date],
                    every_days: int) -> ir.Table:
    """The highest 30-day events and users at a snapshot of the trailing year (D - 365, D],
    by day number, over the narrow :func:`peak_inputs` table (a window drags every column
    it sees along): the peak as of D does not depend on how far back the history goes.

    Only dates on the snapshots' own cadence count (a store may also hold dates of
    another cadence or anchor).
    """
    lo = min(snapshots) - dt.timedelta(days=PEAK_DAYS - 1)
    anchor = _day_number(ibis.literal(max(snapshots)))
    narrow = peaks.filter((peaks.as_of_date >= lo) & (peaks.as_of_date <= max(snapshots))
                          & ((_day_number(peaks.as_of_date) - anchor) % every_days == 0))
    narrow = narrow.semi_join(g.select("account_id").distinct(), "account_id")
    narrow = narrow.mutate(_dn=_day_number(narrow.as_of_date))
    window = ibis.range_window(group_by=narrow.account_id, order_by=narrow._dn,
                               preceding=PEAK_DAYS - 1, following=0)
    return narrow.select(
        *KEYS,
        _peak_events=narrow.events_count_30d.max().over(window),
        _peak_users=narrow.active_users_count_30d.max().over(window),
    )


def _derived(out: ir.Table, tables: Mapping[str, ir.Table], config: MetricsConfig) -> ir.Table:
    """Zero-filled counts, then the ratios, trends and falls built from the blocks.

    No usage in a window is zero activity (the account is active and events exist), not
    missing data; ratios with nothing to divide by stay empty.
    """
    key = list(config.key_features)
    zero = {c: out[c].fill_null(0) for c in (
        "active_days_count_30d", "active_days_count_90d", "events_count_30d",
        "_events_prev_30d", "events_value_sum_30d", "_advanced_30d",
        "key_features_used_count_30d", "active_users_count_30d", "_users_prev_30d",
        "_sy", "_sxy", "_su", "_sxu",
        *(f"event_{_slug(e)}_count_30d" for e in config.event_types),
        *(f"event_{_slug(e)}_value_sum_30d" for e in config.value_events),
    )}
    out = out.mutate(**zero)
    seats = out.seats_total_current
    out = out.mutate(
        events_per_active_user_30d=_ratio(out.events_count_30d, out.active_users_count_30d),
        events_count_per_seat_30d=_ratio(out.events_count_30d, seats),
        active_days_share_tenure=_ratio(
            out.active_days_count_90d,
            ibis.least(out.tenure_days_current + 1, ibis.literal(90, "int64")),
        ),
        active_users_ratio_30d=_ratio(out.active_users_count_30d, seats),
        advanced_events_share_30d=_ratio(out._advanced_30d, out.events_count_30d),
        events_count_change_30d=_ratio(out.events_count_30d, out._events_prev_30d) - 1,
        events_daily_slope_90d=_slope(out._sy, out._sxy),
        active_users_daily_slope_90d=_slope(out._su, out._sxu),
        active_users_change_30d=_ratio(out.active_users_count_30d, out._users_prev_30d) - 1,
        events_count_drop_from_peak=1 - _ratio(out.events_count_30d, out._peak_events),
        active_users_drop_from_peak=1 - _ratio(out.active_users_count_30d, out._peak_users),
        **{
            f"key_feature_{_slug(f)}_adoption_30d": _ratio(
                out[f"_ku_{i}"].fill_null(0), out.active_users_count_30d
            )
            for i, f in enumerate(key)
        },
    )
    if "tickets" in tables:
        out = out.mutate(tickets_count_per_seat_90d=_ratio(out.tickets_count_90d, seats))
    return out


def complete_optional_columns(tables: Mapping[str, ir.Table]) -> dict[str, ir.Table]:
    """Each contract source with its absent optional columns added, empty and typed;
    an absent ``count`` is 1 per event, as the contract says.

    Metrics that need an absent column come out empty here, and :func:`metric_history`
    leaves them out (see :meth:`features.catalog.Metric.missing`).
    """
    out = {}
    for name, table in tables.items():
        source = SOURCES.get(name)
        fill = {} if source is None else {
            c.name: _empty(c.kind) for c in source.columns if c.name not in table.columns}
        if name == "events" and "count" in fill:
            fill["count"] = ibis.literal(1, "int64")
        out[name] = table.mutate(**fill) if fill else table
    return out


def _empty(kind: Kind) -> ir.Value:
    """An empty value of a contract type, as the validated tables hold it (dates as
    timestamps)."""
    return ibis.null({Kind.STRING: "string", Kind.DATE: "timestamp", Kind.TIMESTAMP: "timestamp",
                      Kind.INT: "int64", Kind.FLOAT: "float64"}[kind])


def own_metric_columns(tables: Mapping[str, ir.Table]) -> tuple[str, ...]:
    """The metric columns of ``account_metrics`` (every numeric column but the keys)."""
    if "account_metrics" not in tables:
        return ()
    schema = tables["account_metrics"].schema()
    return tuple(c for c, t in schema.items() if c not in KEYS and t.is_numeric())


def _source_groups(g: ir.Table, tables: Mapping[str, ir.Table],
                   config: MetricsConfig) -> list[ir.Table]:
    """Each optional source's group of metrics (an absent source: no block, no columns).

    Counts of a present source are 0, not missing, where it has no rows in the window
    (see :data:`ZERO_WHEN_PRESENT`): each block fills them for every snapshot key.
    """
    parts = []
    if "tickets" in tables:
        parts.append(("tickets", groups.support(g, tables["tickets"])))
    if "surveys" in tables:
        parts.append(("surveys", groups.sentiment_surveys(g, tables["surveys"])))
    if "csm_notes" in tables:
        parts.append(("csm_notes", groups.sentiment_csm(g, tables["csm_notes"])))
    if "onboarding" in tables and config.onboarding_milestones:
        parts.append(("onboarding", groups.onboarding(g, tables["onboarding"], tables["accounts"],
                                                      config.onboarding_milestones)))
    if "invoices" in tables:
        parts.append(("invoices", groups.billing(g, tables["invoices"])))
    if "marketing" in tables:
        parts.append(("marketing", groups.engagement(g, tables["marketing"])))
    own = own_metric_columns(tables)
    if own:
        parts.append(("account_metrics", groups.own_metrics(
            g, tables["account_metrics"], list(own), config.account_metrics_staleness_days)))
    out = []
    for source, part in parts:
        zero = ZERO_WHEN_PRESENT.get(source, ())
        if zero:
            part = g.left_join(part, KEYS).drop("account_id_right", "as_of_date_right")
            part = part.mutate(**{c: part[c].fill_null(0) for c in zero})
        out.append(part)
    return out


def _distinct_users_at(
    user_days: ir.Table, points: ir.Table, days: int, split: tuple[str, list] | None = None
) -> ir.Table:
    """Distinct users per account active in the ``days``-day window ending at each point.

    A user active on day d counts for every point in [d, d + days). Consecutive active
    days less than ``days`` apart merge into one run, counting over [first, last + days);
    so each run becomes +1 at its first day and -1 ``days`` after its last, and the count
    at a point is the running sum of those steps up to it. Cost grows with user-days and
    points, not with their product (which a windowed join would take). The steps up to a
    point depend only on days up to it: a run's end is placed only where no later day
    falls inside the window, and that later day would itself be before the point.

    Args:
        user_days: Distinct rows of ``account_id``, ``user_id``, ``day`` (and the
            ``split`` column).
        points: Rows of ``account_id`` and ``at`` (the day number, see
            :func:`_day_number`, of the window's last day), and any other columns.
        days: Window length.
        split: (column, values): count users separately for each value of the column
            (a user who used two features counts once for each).

    Returns:
        ``points`` with ``users`` (or ``users_0``, ``users_1``, ... per split value),
        0 where nobody was active.
    """
    by = ["account_id", split[0]] if split else ["account_id"]
    per_user = ibis.window(group_by=[*by, "user_id"], order_by="day")
    t = user_days.mutate(before=user_days.day.lag().over(per_user),
                         after=user_days.day.lead().over(per_user))
    starts = t.filter(t.before.isnull() | (t.day.delta(t.before, unit="day") >= days))
    ends = t.filter(t.after.isnull() | (t.after.delta(t.day, unit="day") >= days))
    steps = starts.select(*by, at=_day_number(starts.day), step=ibis.literal(1, "int64")).union(
        ends.select(*by, at=_day_number(ends.day) + days, step=ibis.literal(-1, "int64")),
        distinct=False,
    )
    # One timeline per account; a column of steps per split value.
    names = [f"users_{i}" for i in range(len(split[1]))] if split else ["users"]
    conditions = [steps[split[0]] == v for v in split[1]] if split else [None]
    steps = steps.group_by(["account_id", "at"]).aggregate(**{
        n: _int_sum(steps.step, where=c).fill_null(0) if c is not None else _int_sum(steps.step)
        for n, c in zip(names, conditions)
    })
    marks = points.select("account_id", "at").distinct()
    timeline = steps.mutate(mark=ibis.literal(0, "int64")).union(
        marks.mutate(**{n: ibis.literal(0, "int64") for n in names}, mark=ibis.literal(1, "int64"))
        .select("account_id", "at", *names, "mark"),
        distinct=False,
    )
    # Steps on a day come before that day's mark: a user active on the point day counts.
    running = ibis.window(group_by=timeline.account_id, order_by=[timeline.at, timeline.mark],
                          preceding=None, following=0)
    timeline = timeline.mutate(**{n: timeline[n].cast("float64").sum().over(running).cast("int64")
                                  for n in names})
    counts = timeline.filter(timeline.mark == 1).select("account_id", "at", *names)
    out = points.left_join(counts, ["account_id", "at"]).drop("account_id_right", "at_right")
    return out.mutate(**{n: out[n].fill_null(0) for n in names})


def _int_sum(value: ir.IntegerValue, where: ir.BooleanValue | None = None) -> ir.IntegerValue:
    """Sum of integers, as a 64-bit integer.

    Summed as double and cast back: DuckDB sums BIGINT into 128-bit integers, several
    times slower in the big joins; doubles add integers exactly below 2**53.
    """
    return value.cast("float64").sum(where=where).cast("int64")


SLOPE_DAYS = 90
# The widest window back from a snapshot: 90 days (slopes, 90-day counts).
WIDEST_DAYS = 90
# The fall from peak looks back over this many days of snapshots. Callers that build only
# a recent part of the history must compute snapshots this far before the first one they
# keep (pipelines.features does).
PEAK_DAYS = 365
EPOCH = ibis.date(1970, 1, 1)


def _day_number(day: ir.DateValue) -> ir.IntegerValue:
    """Days since 1970-01-01: integer day arithmetic that every engine does alike."""
    return day.delta(EPOCH, unit="day")


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
