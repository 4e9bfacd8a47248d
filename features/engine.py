"""The metric engine: point-in-time metric histories, written once against Ibis.

This module wires the groups together: the daily rollups of events, the grid (the
contract group's table), each group's block joined onto it, and the check that what was
computed is what the catalog lists. Each group's definitions sit with its catalog entries
in its own module (:mod:`features.usage`, :mod:`features.support`, ...).

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

from features import (
    billing, contract_metrics, engagement, onboarding, own, sentiment, support, usage)
from features.catalog import available_columns, metric_names
from features.expr import KEYS, day_number, exact_sum, int_sum
from features.own import own_metric_columns
from features.usage import PEAK_DAYS, rollup_event_types
from healthscore.config import MetricsConfig
from healthscore.contract import SOURCES, Kind

# Public here, wherever defined (PEAK_DAYS: callers size their history with it).
__all__ = [
    "KEYS", "PEAK_DAYS", "ROLLUPS", "ZERO_WHEN_PRESENT", "complete_optional_columns",
    "daily_rollups", "metric_history", "own_metric_columns", "peak_inputs",
    "rollup_event_types", "snapshot_dates",
]

# Counts that are 0, not missing, when their source is present but has no rows in the
# window (each group module lists its own).
ZERO_WHEN_PRESENT = {m.SOURCE: m.ZERO_WHEN_PRESENT for m in (support, billing, engagement)}


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


def _active(subscriptions: ir.Table, dates: ir.Table) -> ir.Table:
    """``account_id``, ``as_of_date``: the accounts with a term covering each date."""
    subs = contract_metrics.terms(subscriptions)
    covering = subs.join(dates, [subs.start <= dates.as_of_date, subs.end > dates.as_of_date])
    return covering.select(*KEYS).distinct()


def _dates(days: list[dt.date]) -> ir.Table:
    dates = ibis.memtable(pd.DataFrame({"as_of_date": pd.Series(days, dtype="object")}))
    return dates.mutate(as_of_date=dates.as_of_date.cast("date"))


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
        events=int_sum(events.n),
        advanced=int_sum(events.n, where=events.event.isin(advanced)).fill_null(0)
        if advanced else ibis.literal(0, "int64"),
        **{f"e_{i}": int_sum(events.n, where=events.event == t).fill_null(0)
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


def peak_inputs(rollups: Mapping[str, ir.Table], subscriptions: ir.Table,
                dates: list[dt.date]) -> ir.Table:
    """What the fall from peak needs at each date: the 30-day events and distinct users of
    every account active then (``account_id``, ``as_of_date``, ``events_count_30d``,
    ``active_users_count_30d``), equal to the metric history's own columns at that date."""
    g = _active(subscriptions, _dates(dates))
    gn = g.mutate(gdn=day_number(g.as_of_date))
    ad = rollups["account_day"]
    ad = ad.filter((ad.day > min(dates) - dt.timedelta(days=30)) & (ad.day <= max(dates)))
    e = ad.select("account_id", "events", dn=day_number(ad.day))
    j = gn.join(e, [gn.account_id == e.account_id, e.dn <= gn.gdn, e.dn > gn.gdn - 30])
    counts = j.group_by(KEYS).aggregate(events_count_30d=int_sum(j.events))
    ud = rollups["user_day"]
    ud = ud.filter((ud.day > min(dates) - dt.timedelta(days=30)) & (ud.day <= max(dates)))
    users = usage.distinct_users_at(ud, g.mutate(at=day_number(g.as_of_date)), 30,
                                    few=len(set(dates)) <= usage.FEW_DATES)
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
    grid = keep(contract_metrics.compute(tables["subscriptions"], tables["accounts"],
                                         _dates(snapshots)))
    g = grid.select(*KEYS)
    parts = [
        *usage.blocks(g, rollups, snapshots, config, keep),
        # Each block computed once: the final join then reads small materialized tables
        # (on Spark, cached and broadcast, instead of a stage of many sorts at once).
        keep(usage.fall_from_peak(g, peaks, snapshots, config.snapshot_every_days)),
        *(keep(part) for part in _source_groups(g, tables, config)),
    ]
    out = grid
    for part in parts:
        out = out.left_join(part, KEYS).drop("account_id_right", "as_of_date_right")
    out = usage.derived(out, config)
    if support.SOURCE in tables:
        out = support.derived(out)
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


def complete_optional_columns(tables: Mapping[str, ir.Table]) -> dict[str, ir.Table]:
    """Each contract source with its absent optional columns added, empty and typed;
    an absent ``count`` is 1 per event, as the contract says.

    Metrics that need an absent column come out empty here, and :func:`metric_history`
    leaves them out (see :meth:`features.metric.Metric.missing`).
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


def _source_groups(g: ir.Table, tables: Mapping[str, ir.Table],
                   config: MetricsConfig) -> list[ir.Table]:
    """Each optional source's group of metrics (an absent source: no block, no columns).

    Counts of a present source are 0, not missing, where it has no rows in the window
    (see :data:`ZERO_WHEN_PRESENT`): each block fills them for every snapshot key.
    """
    parts = []
    if "tickets" in tables:
        parts.append(("tickets", support.compute(g, tables["tickets"])))
    if "surveys" in tables:
        parts.append(("surveys", sentiment.from_surveys(g, tables["surveys"])))
    if "csm_notes" in tables:
        parts.append(("csm_notes", sentiment.from_csm_notes(g, tables["csm_notes"])))
    if "onboarding" in tables and config.onboarding_milestones:
        parts.append(("onboarding", onboarding.compute(
            g, tables["onboarding"], tables["accounts"], config.onboarding_milestones)))
    if "invoices" in tables:
        parts.append(("invoices", billing.compute(g, tables["invoices"])))
    if "marketing" in tables:
        parts.append(("marketing", engagement.compute(g, tables["marketing"])))
    columns = own_metric_columns(tables)
    if columns:
        parts.append(("account_metrics", own.compute(
            g, tables["account_metrics"], list(columns), config.account_metrics_staleness_days)))
    out = []
    for source, part in parts:
        zero = ZERO_WHEN_PRESENT.get(source, ())
        if zero:
            part = g.left_join(part, KEYS).drop("account_id_right", "as_of_date_right")
            part = part.mutate(**{c: part[c].fill_null(0) for c in zero})
        out.append(part)
    return out
