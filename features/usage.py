"""The usage groups, from ``events``: frequency, breadth, depth and trend.

They read only the daily rollups of the events (:func:`features.engine.daily_rollups`),
never the events themselves: :func:`blocks` joins the rollups' days to each snapshot's
windows, :func:`fall_from_peak` looks back a year of snapshots, and :func:`derived`
builds the ratios, trends and falls once the blocks are joined onto the grid.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import ibis
import ibis.expr.types as ir

from features.expr import KEYS, day_number, exact_sum, in_window, int_sum, ratio
from features.metric import H, R, U, Metric, _slug
from healthscore.config import MetricsConfig

SOURCE = "events"

METRICS: tuple[Metric, ...] = (
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
)


def per_config(config: MetricsConfig) -> tuple[Metric, ...]:
    """The metrics the config asks for: a count per event type, a value sum per value
    event, an adoption share per key feature."""
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
    per_feature = tuple(
        Metric(
            f"key_feature_{_slug(f)}_adoption_30d", "depth",
            f"Share of the last 30 days' active users who used key feature `{f}`",
            "share", H, "events", ("events.user_id",),
        )
        for f in config.key_features
    )
    return per_event + per_feature


SLOPE_DAYS = 90
# The widest window back from a snapshot: 90 days (slopes, 90-day counts).
WIDEST_DAYS = 90
# The fall from peak looks back over this many days of snapshots. Callers that build only
# a recent part of the history must compute snapshots this far before the first one they
# keep (pipelines.features does).
PEAK_DAYS = 365


def rollup_event_types(config: MetricsConfig) -> list[str]:
    """The event names ``account_day`` counts apart, in column order (``e_0``, ...)."""
    return list(dict.fromkeys([*config.event_types, *config.key_features]))


def blocks(g: ir.Table, rollups: Mapping[str, ir.Table], snapshots: list[dt.date],
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
    ad = account_day.mutate(dn=day_number(account_day.day))
    gn = g.mutate(gdn=day_number(g.as_of_date))
    j = gn.join(ad, [gn.account_id == ad.account_id, ad.dn <= gn.gdn, ad.dn > gn.gdn - 30])
    recent = j.group_by(KEYS).aggregate(
        active_days_count_30d=j.dn.count(),
        events_count_30d=int_sum(j.events),
        _advanced_30d=int_sum(j.advanced),
        key_features_used_count_30d=sum(
            (int_sum(j[f"e_{index[f]}"]) > 0).cast("int64") for f in key
        ) if key else ibis.literal(0, "int64"),
        **{f"event_{_slug(e)}_count_30d": int_sum(j[f"e_{index[e]}"]) for e in config.event_types},
    )
    ad = ad.select("account_id", "dn", "events", "users")
    j = gn.join(ad, [gn.account_id == ad.account_id, ad.dn <= gn.gdn, ad.dn > gn.gdn - 90])
    age = j.gdn - j.dn  # 0 on the snapshot day
    # x = 0 on the first day of the 90-day window, 89 on the snapshot day.
    x = (SLOPE_DAYS - 1) - age
    longer = j.group_by(KEYS).aggregate(
        active_days_count_90d=j.dn.count(),
        _events_prev_30d=int_sum(j.events, where=(age >= 30) & (age < 60)),
        # Least-squares slope over the 90 days, days without usage counting as 0: only
        # the active days' sums are needed, the rest are constants of the window.
        _sy=int_sum(j.events), _sxy=int_sum(j.events * x),
        _su=int_sum(j.users), _sxu=int_sum(j.users * x),
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
    points = g.mutate(at=day_number(g.as_of_date)).union(
        g.mutate(at=day_number(g.as_of_date) - 30))
    few = len(set(snapshots)) <= FEW_DATES
    counted = distinct_users_at(user_day, points, 30, few=few)
    now = counted.at == day_number(counted.as_of_date)
    users = counted.group_by(KEYS).aggregate(
        active_users_count_30d=counted.users.max(where=now),
        _users_prev_30d=counted.users.max(where=~now),
    )
    blocks = [keep(t) for t in (recent, longer, last, values, users)]
    if key:
        # Adoption: distinct users of each key feature in the 30 days back.
        kud = rollups["key_user_day"]
        kud = kud.filter((kud.day > min(snapshots) - dt.timedelta(days=30)) & (kud.day <= last_day))
        points = g.mutate(at=day_number(g.as_of_date))
        adoption = distinct_users_at(kud, points, 30, split=("event", key), few=few)
        blocks.append(keep(adoption.select(*KEYS, **{f"_ku_{i}": adoption[f"users_{i}"]
                                                     for i in range(len(key))})))
    return blocks




def fall_from_peak(g: ir.Table, peaks: ir.Table, snapshots: list[dt.date],
                   every_days: int) -> ir.Table:
    """The highest 30-day events and users at a snapshot of the trailing year (D - 365, D],
    by day number, over the narrow :func:`features.engine.peak_inputs` table (a window
    drags every column it sees along): the peak as of D does not depend on how far back
    the history goes.

    Only dates on the snapshots' own cadence count (a store may also hold dates of
    another cadence or anchor).
    """
    lo = min(snapshots) - dt.timedelta(days=PEAK_DAYS - 1)
    anchor = day_number(ibis.literal(max(snapshots)))
    narrow = peaks.filter((peaks.as_of_date >= lo) & (peaks.as_of_date <= max(snapshots))
                          & ((day_number(peaks.as_of_date) - anchor) % every_days == 0))
    narrow = narrow.semi_join(g.select("account_id").distinct(), "account_id")
    narrow = narrow.mutate(_dn=day_number(narrow.as_of_date))
    if len(set(snapshots)) <= FEW_DATES:
        # Few snapshots: each joined to its account's inputs of the year behind it. A
        # snapshot without inputs of its own has no peak (as with the window below).
        gn = g.mutate(_gdn=day_number(g.as_of_date))
        j = gn.join(narrow, [gn.account_id == narrow.account_id, narrow._dn <= gn._gdn,
                             narrow._dn > gn._gdn - PEAK_DAYS])
        peaks = j.group_by(KEYS).aggregate(
            _peak_events=j.events_count_30d.max(), _peak_users=j.active_users_count_30d.max(),
            _own=(j._dn == j._gdn).any())
        return peaks.filter(peaks._own).drop("_own")
    window = ibis.range_window(group_by=narrow.account_id, order_by=narrow._dn,
                               preceding=PEAK_DAYS - 1, following=0)
    return narrow.select(
        *KEYS,
        _peak_events=narrow.events_count_30d.max().over(window),
        _peak_users=narrow.active_users_count_30d.max().over(window),
    )




def derived(out: ir.Table, config: MetricsConfig) -> ir.Table:
    """Zero-filled counts, then the ratios, trends and falls built from the blocks
    (joined onto the grid, whose seats and tenure some of them divide by).

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
        events_per_active_user_30d=ratio(out.events_count_30d, out.active_users_count_30d),
        events_count_per_seat_30d=ratio(out.events_count_30d, seats),
        active_days_share_tenure=ratio(
            out.active_days_count_90d,
            ibis.least(out.tenure_days_current + 1, ibis.literal(90, "int64")),
        ),
        active_users_ratio_30d=ratio(out.active_users_count_30d, seats),
        advanced_events_share_30d=ratio(out._advanced_30d, out.events_count_30d),
        events_count_change_30d=ratio(out.events_count_30d, out._events_prev_30d) - 1,
        events_daily_slope_90d=slope(out._sy, out._sxy),
        active_users_daily_slope_90d=slope(out._su, out._sxu),
        active_users_change_30d=ratio(out.active_users_count_30d, out._users_prev_30d) - 1,
        events_count_drop_from_peak=1 - ratio(out.events_count_30d, out._peak_events),
        active_users_drop_from_peak=1 - ratio(out.active_users_count_30d, out._peak_users),
        **{
            f"key_feature_{_slug(f)}_adoption_30d": ratio(
                out[f"_ku_{i}"].fill_null(0), out.active_users_count_30d
            )
            for i, f in enumerate(key)
        },
    )
    return out




# Up to this many dates, windows are counted by joining each date to the days in its
# window (work grows with dates x days); beyond it, by one pass over the days in order
# (work grows with the days alone). Both count exactly the same.
FEW_DATES = 4


def distinct_users_at(
    user_days: ir.Table, points: ir.Table, days: int, split: tuple[str, list] | None = None,
    few: bool = False,
) -> ir.Table:
    """Distinct users per account active in the ``days``-day window ending at each point.

    ``few``: the points fall on at most :data:`FEW_DATES` dates; each is joined to the
    user-days of its window and its distinct users counted (cheaper for a weekly run).
    Otherwise:

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
            :func:`features.expr.day_number`, of the window's last day), and any other columns.
        days: Window length.
        split: (column, values): count users separately for each value of the column
            (a user who used two features counts once for each).

    Returns:
        ``points`` with ``users`` (or ``users_0``, ``users_1``, ... per split value),
        0 where nobody was active.
    """
    if few:
        return _distinct_users_joined(user_days, points, days, split)
    by = ["account_id", split[0]] if split else ["account_id"]
    per_user = ibis.window(group_by=[*by, "user_id"], order_by="day")
    t = user_days.mutate(before=user_days.day.lag().over(per_user),
                         after=user_days.day.lead().over(per_user))
    starts = t.filter(t.before.isnull() | (t.day.delta(t.before, unit="day") >= days))
    ends = t.filter(t.after.isnull() | (t.after.delta(t.day, unit="day") >= days))
    steps = starts.select(*by, at=day_number(starts.day), step=ibis.literal(1, "int64")).union(
        ends.select(*by, at=day_number(ends.day) + days, step=ibis.literal(-1, "int64")),
        distinct=False,
    )
    # One timeline per account; a column of steps per split value.
    names = [f"users_{i}" for i in range(len(split[1]))] if split else ["users"]
    conditions = [steps[split[0]] == v for v in split[1]] if split else [None]
    steps = steps.group_by(["account_id", "at"]).aggregate(**{
        n: int_sum(steps.step, where=c).fill_null(0) if c is not None else int_sum(steps.step)
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




def _distinct_users_joined(user_days: ir.Table, points: ir.Table, days: int,
                           split: tuple[str, list] | None) -> ir.Table:
    """:func:`distinct_users_at` for points on few dates: a windowed join, then distinct
    users counted per point."""
    names = [f"users_{i}" for i in range(len(split[1]))] if split else ["users"]
    ud = user_days.mutate(_dn=day_number(user_days.day))
    marks = points.select("account_id", "at").distinct()
    j = marks.join(ud, [marks.account_id == ud.account_id, ud._dn <= marks.at, ud._dn > marks.at - days])
    if split:
        counts = {n: j.user_id.nunique(where=j[split[0]] == v) for n, v in zip(names, split[1])}
    else:
        counts = {"users": j.user_id.nunique()}
    counted = j.group_by(["account_id", "at"]).aggregate(**counts)
    out = points.left_join(counted, ["account_id", "at"]).drop("account_id_right", "at_right")
    return out.mutate(**{n: out[n].fill_null(0).cast("int64") for n in names})


def slope(sum_y: ir.NumericValue, sum_xy: ir.NumericValue) -> ir.FloatingValue:
    """Least-squares slope of y on x = 0..n-1 from sum(y) and sum(x*y) (y = 0 elsewhere)."""
    n = SLOPE_DAYS
    sum_x, sum_xx = n * (n - 1) / 2, (n - 1) * n * (2 * n - 1) / 6
    return (n * sum_xy.cast("float64") - sum_x * sum_y.cast("float64")) / (n * sum_xx - sum_x**2)
