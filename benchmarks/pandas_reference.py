"""The metric history in plain pandas: the cross-check and the baseline of the engine.

This is the implementation a data scientist would write first: for each snapshot date
D, cut every source to the window that ends with D, group by account, and stack the
snapshots. It is deliberately independent of the Ibis engine (``features/engine.py``)
and follows the definitions of ``docs/metrics.md``; it shares only the snapshot grid
(:func:`features.engine.snapshot_dates`) and the column names and order
(:func:`features.catalog.metric_names`), so the two can be compared row for row.

Conventions, as in the catalog:

* "As of D" is the end of day D. Every timestamp is reduced to its day, and a window
  of ``w`` days is (D - w, D] on those days.
* No data is not zero: counts are 0 when their source is present and nothing happened
  in the window; means, ratios and "latest" values stay empty when there is nothing to
  measure. A ratio is empty when its denominator is 0 or empty.
* Facts that become known later (a ticket's resolution and rating, an invoice's
  payment, a milestone's completion) count for D only once their own day is <= D.

    from benchmarks.pandas_reference import reference_metric_history
    history = reference_metric_history(tables, dt.date(2025, 12, 31), Config())
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import numpy as np
import pandas as pd

from features.catalog import PRIORITIES, _slug, available_columns, metric_names
from features.engine import PEAK_DAYS, snapshot_dates
from healthscore.config import Config, MetricsConfig
from healthscore.errors import HealthscoreError

KEYS = ["account_id", "as_of_date"]
DAY = pd.Timedelta(days=1)
SLOPE_DAYS = 90

# Usage values that are 0, not empty, for an active account without usage in the window
# (events exist, so no usage is a measurement): the counts, and the slopes of a flat line.
USAGE_COUNTS = (
    "active_days_count_30d", "active_days_count_90d", "events_count_30d", "events_prev_30d",
    "events_value_sum_30d", "advanced_30d", "key_features_used_count_30d",
    "active_users_count_30d", "users_prev_30d", "events_daily_slope_90d",
    "active_users_daily_slope_90d",
)


def _event_columns(metrics: MetricsConfig) -> list[str]:
    """Per-event counts and value sums: 0 when nothing happened, like the usage counts."""
    return [*(f"event_{_slug(e)}_count_30d" for e in metrics.event_types),
            *(f"event_{_slug(e)}_value_sum_30d" for e in metrics.value_events)]

# Metrics that are whole numbers and never empty (the engine returns them as int64).
INTEGERS = {
    "active_days_count_30d", "active_days_count_90d", "events_count_30d",
    "active_users_count_30d", "key_features_used_count_30d", "seats_total_current",
    "tenure_days_current", "renewal_days_to_next", "term_length_days_current",
    "tickets_count_30d", "tickets_count_90d", "tickets_high_count_30d",
    *(f"tickets_{p}_count_90d" for p in PRIORITIES), "tickets_open_count_current",
    "onboarding_stalled_flag", "invoices_late_count_365d", "invoices_overdue_days_max_current",
    "marketing_touches_count_30d", "marketing_touches_count_90d",
}
# Counts that are 0 when their optional source is present but has no rows in the window.
SOURCE_COUNTS = {
    "tickets": ("tickets_count_30d", "tickets_count_90d", "tickets_high_count_30d",
                *(f"tickets_{p}_count_90d" for p in PRIORITIES), "tickets_open_count_current"),
    "invoices": ("invoices_late_count_365d", "invoices_overdue_days_max_current",
                 "invoices_unpaid_amount_current"),
    "marketing": ("marketing_touches_count_30d", "marketing_touches_count_90d"),
}


def reference_metric_history(
    tables: Mapping[str, pd.DataFrame], as_of: dt.date, config: Config
) -> pd.DataFrame:
    """The metric history as of ``as_of``, computed snapshot by snapshot in pandas.

    Args:
        tables: Validated contract sources (as from ``pipelines.validate.load_data_folder``);
            ``accounts``, ``subscriptions`` and ``events`` are required.
        as_of: The last snapshot date.
        config: The configuration (only ``config.metrics`` is used).

    Returns:
        One row per account active at each snapshot: ``account_id``, ``as_of_date`` and
        every catalog metric, in the order of
        :func:`pipelines.features.compute_metric_history`, sorted by the keys.

    Raises:
        HealthscoreError: ``as_of`` lies before the first data.
    """
    metrics = config.metrics
    first_day = min(
        tables["subscriptions"]["start_date"].min(), tables["events"]["timestamp"].min()
    ).date()
    snapshots = snapshot_dates(as_of, first_day, metrics.snapshot_every_days,
                               metrics.history_days)
    if not snapshots:
        raise HealthscoreError(f"--as-of {as_of}: before the first data ({first_day})")
    if metrics.history_days is not None:  # the trailing year behind it, for the peaks
        snapshots = snapshot_dates(as_of, first_day, metrics.snapshot_every_days,
                                   metrics.history_days + PEAK_DAYS)
    src = _with_days(tables)
    own = own_metric_columns(tables)

    rows = []
    for snapshot in snapshots:
        day = pd.Timestamp(snapshot).as_unit("us")
        grid = _contract(src["subscriptions"], src["accounts"], day)
        if grid.empty:
            continue
        parts = [_usage(src["events"], day, metrics)]
        if "tickets" in src:
            parts.append(_support(src["tickets"], day))
        if "surveys" in src:
            parts.append(_surveys(src["surveys"], day))
        if "csm_notes" in src:
            parts.append(_csm_notes(src["csm_notes"], day))
        if "onboarding" in src and metrics.onboarding_milestones:
            parts.append(_onboarding(src["onboarding"], src["accounts"], grid.index, day,
                                     metrics.onboarding_milestones))
        if "invoices" in src:
            parts.append(_billing(src["invoices"], day))
        if "marketing" in src:
            parts.append(_marketing(src["marketing"], day))
        if own:
            parts.append(_own_metrics(src["account_metrics"], day, own,
                                      metrics.account_metrics_staleness_days))
        # Left joins onto the grid: accounts not active at D are dropped here.
        rows.append(grid.join(parts, how="left").assign(as_of_date=day))

    out = pd.concat(rows).rename_axis("account_id").reset_index()
    out = out.sort_values(KEYS, ignore_index=True)
    zero = [*USAGE_COUNTS, *_event_columns(metrics), *(c for s, cols in SOURCE_COUNTS.items() if s in tables for c in cols)]
    out[zero] = out[zero].fillna(0)
    out = _ratios(out, metrics)
    if "tickets" in tables:
        out["tickets_count_per_seat_90d"] = _ratio(out["tickets_count_90d"],
                                                   out["seats_total_current"])
    out["activity_days_since_last"] = _days_since_last_activity(src["events"], out)

    if metrics.history_days is not None:
        out = out.loc[out["as_of_date"] >= pd.Timestamp(as_of) - metrics.history_days * DAY]
        out = out.reset_index(drop=True)
    columns = metric_names(metrics, available_columns(tables), own)
    out = out[[*KEYS, *columns]]
    return out.astype({c: "int64" for c in columns if c in INTEGERS})


def own_metric_columns(tables: Mapping[str, pd.DataFrame]) -> tuple[str, ...]:
    """The bring-your-own metrics: every numeric column of ``account_metrics`` but the keys."""
    if "account_metrics" not in tables:
        return ()
    table = tables["account_metrics"]
    return tuple(
        c for c in table.columns
        if c not in KEYS and pd.api.types.is_numeric_dtype(table[c])
        and not pd.api.types.is_bool_dtype(table[c])
    )


# ----------------------------------------------------------------------------- inputs


def _with_days(tables: Mapping[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Each source with the day of its stamps (midnight), computed once for all snapshots."""
    out = dict(tables)
    accounts = tables["accounts"]
    out["accounts"] = accounts.assign(created=accounts["created_at"].dt.normalize())
    subs = tables["subscriptions"]
    out["subscriptions"] = subs.assign(start=subs["start_date"].dt.normalize(),
                                       end=subs["end_date"].dt.normalize())
    events = tables["events"]
    out["events"] = pd.DataFrame({
        "account_id": events["account_id"],
        "day": events["timestamp"].dt.normalize(),
        "event": events["event"],
        "user_id": events["user_id"],
        # An event row without a count is one event.
        "n": events["count"].fillna(1).astype("int64"),
        "value": events["value"].astype("float64"),
    })
    stamps = {"tickets": ("created_at", "resolved_at"), "surveys": ("responded_at",),
              "csm_notes": ("recorded_at",), "onboarding": ("completed_at",),
              "invoices": ("issued_at", "due_at", "paid_at"), "marketing": ("timestamp",),
              "account_metrics": ("as_of_date",)}
    for name, columns in stamps.items():
        if name in tables:
            out[name] = tables[name].assign(
                **{f"{c}_day": tables[name][c].dt.normalize() for c in columns}
            )
    return out


def _window(table: pd.DataFrame, day_column: str, day: pd.Timestamp, days: int) -> pd.DataFrame:
    """The rows of ``table`` dated in (day - days, day], with their ``age`` in days (0 = day)."""
    rows = table.loc[(table[day_column] > day - days * DAY) & (table[day_column] <= day)]
    return rows.assign(age=(day - rows[day_column]).dt.days)


# ------------------------------------------------------------------------------ groups


def _contract(subs: pd.DataFrame, accounts: pd.DataFrame, day: pd.Timestamp) -> pd.DataFrame:
    """The grid at ``day``: accounts with a term covering it (start <= D < end)."""
    covering = subs.loc[(subs["start"] <= day) & (subs["end"] > day)]
    covering = covering.assign(length=(covering["end"] - covering["start"]).dt.days)
    grid = covering.groupby("account_id").agg(
        arr_total_current=("arr", "sum"),
        seats_total_current=("seats", "sum"),
        next_end=("end", "min"),
        term_length_days_current=("length", "max"),
    )
    year_ago = day - 365 * DAY
    then = subs.loc[(subs["start"] <= year_ago) & (subs["end"] > year_ago)]
    then = then.groupby("account_id").agg(arr_then=("arr", "sum"), seats_then=("seats", "sum"))
    grid = grid.join(then, how="left")
    grid["arr_change_365d"] = _ratio(grid["arr_total_current"], grid["arr_then"]) - 1
    grid["seats_change_365d"] = _ratio(grid["seats_total_current"], grid["seats_then"]) - 1
    grid = grid.drop(columns=["arr_then", "seats_then"])
    grid = grid.join(accounts.set_index("account_id")["created"], how="inner")
    grid["renewal_days_to_next"] = (grid["next_end"] - day).dt.days
    grid["tenure_days_current"] = (day - grid["created"]).dt.days
    return grid.drop(columns=["next_end", "created"])


def _usage(events: pd.DataFrame, day: pd.Timestamp, metrics: MetricsConfig) -> pd.DataFrame:
    """Frequency, breadth, depth and the raw parts of the trends, per account."""
    w90 = _window(events, "day", day, 90)
    w30 = w90.loc[w90["age"] < 30]
    prev30 = w90.loc[(w90["age"] >= 30) & (w90["age"] < 60)]
    w30 = w30.assign(advanced=w30["n"].where(w30["event"].isin(metrics.advanced_features), 0))

    last = w30.groupby("account_id").agg(
        active_days_count_30d=("day", "nunique"),
        events_count_30d=("n", "sum"),
        events_value_sum_30d=("value", "sum"),
        advanced_30d=("advanced", "sum"),
        active_users_count_30d=("user_id", "nunique"),
    )
    before = prev30.groupby("account_id").agg(
        events_prev_30d=("n", "sum"), users_prev_30d=("user_id", "nunique")
    )
    active_90 = w90.groupby("account_id")["day"].nunique().rename("active_days_count_90d")

    # Depth: a key feature is used when its events sum above 0; adoption is the share
    # of the window's active users who used it.
    keys = w30.loc[w30["event"].isin(metrics.key_features)]
    per_key = keys.groupby(["account_id", "event"]).agg(n=("n", "sum"),
                                                         users=("user_id", "nunique"))
    used = (per_key["n"] > 0).groupby("account_id").sum().rename("key_features_used_count_30d")
    adopters = per_key["users"].unstack("event").reindex(columns=list(metrics.key_features))
    adopters.columns = [f"_adopters_{_slug(f)}" for f in metrics.key_features]

    # Trends: least-squares slope of the daily series over the 90 days, idle days as 0.
    daily = w90.groupby(["account_id", "age"]).agg(events=("n", "sum"),
                                                   users=("user_id", "nunique"))
    slopes = pd.DataFrame({
        "events_daily_slope_90d": _daily_slope(daily["events"]),
        "active_users_daily_slope_90d": _daily_slope(daily["users"]),
    })
    per_event = w30.loc[w30["event"].isin(metrics.event_types)].groupby(
        ["account_id", "event"])["n"].sum().unstack("event")
    per_event = per_event.reindex(columns=list(metrics.event_types))
    per_event.columns = [f"event_{_slug(e)}_count_30d" for e in metrics.event_types]
    valued = w30.loc[w30["event"].isin(metrics.value_events) & w30["value"].notna()]
    per_value = valued.groupby(["account_id", "event"])["value"].sum().unstack("event")
    per_value = per_value.reindex(columns=list(metrics.value_events))
    per_value.columns = [f"event_{_slug(e)}_value_sum_30d" for e in metrics.value_events]
    return pd.concat([last, before, active_90, used, adopters, slopes, per_event, per_value],
                     axis=1)


def _daily_slope(per_day: pd.Series) -> pd.Series:
    """Slope of y on x = 0..89 (89 = D) per account, from a (account_id, age) series."""
    y = per_day.unstack("age", fill_value=0).reindex(columns=range(SLOPE_DAYS), fill_value=0)
    x = (SLOPE_DAYS - 1) - y.columns.to_numpy(dtype="float64")
    centred = x - x.mean()
    return pd.Series(y.to_numpy(dtype="float64") @ centred / (centred**2).sum(), index=y.index)


def _support(tickets: pd.DataFrame, day: pd.Timestamp) -> pd.DataFrame:
    """Ticket counts by window and priority, resolution and CSAT, and tickets open at D."""
    w = _window(tickets, "created_at_day", day, 90)
    last30 = w["age"] < 30
    resolved = w["resolved_at_day"] <= day  # NaT (unresolved) compares False
    flags = pd.DataFrame({
        "account_id": w["account_id"],
        "tickets_count_30d": last30,
        "tickets_count_90d": True,
        "tickets_high_count_30d": last30 & w["priority"].isin(["high", "urgent"]),
        **{f"tickets_{p}_count_90d": w["priority"] == p for p in PRIORITIES},
    }, index=w.index)
    counts = flags.groupby("account_id").sum()
    # Resolution time and the ticket's CSAT are known once it is resolved.
    done = w.loc[resolved].assign(
        hours=(w["resolved_at"] - w["created_at"]).dt.total_seconds() / 3600,
        csat=w["csat"].astype("float64"),
    )
    means = done.groupby("account_id").agg(
        tickets_resolution_hours_mean_90d=("hours", "mean"),
        tickets_csat_mean_90d=("csat", "mean"),
    )
    # Open at the end of D: created by D, not resolved by D, however old.
    is_open = (tickets["created_at_day"] <= day) & ~(tickets["resolved_at_day"] <= day)
    still_open = tickets.loc[is_open].groupby("account_id").size()
    still_open = still_open.rename("tickets_open_count_current")
    return pd.concat([counts, means, still_open], axis=1)


def _surveys(surveys: pd.DataFrame, day: pd.Timestamp) -> pd.DataFrame:
    """NPS (latest, means, shares) over 365 days and survey CSAT over 90 days."""
    w = _window(surveys, "responded_at_day", day, 365)
    nps = w.loc[w["kind"] == "nps"].assign(score=lambda t: t["score"].astype("float64"))
    recent = nps.loc[nps["age"] < 180].groupby("account_id")["score"].mean()
    older = nps.loc[nps["age"] >= 180].groupby("account_id")["score"].mean()
    csat = w.loc[(w["kind"] == "csat") & (w["age"] < 90)]
    return pd.DataFrame({
        "nps_score_latest": _latest(nps, "responded_at", "score"),
        "nps_score_mean_180d": recent,
        "nps_score_change_180d": recent - older,  # empty unless both halves have answers
        "nps_promoter_share_365d": (nps["score"] >= 9).groupby(nps["account_id"]).mean(),
        "nps_detractor_share_365d": (nps["score"] <= 6).groupby(nps["account_id"]).mean(),
        "csat_score_mean_90d": csat.groupby("account_id")["score"].mean().astype("float64"),
    })


def _csm_notes(notes: pd.DataFrame, day: pd.Timestamp) -> pd.DataFrame:
    """The CSM's latest read within 365 days, and its change over 90 days."""
    w = _window(notes, "recorded_at_day", day, 365).assign(
        sentiment=lambda t: t["sentiment"].astype("float64")
    )
    recent = w.loc[w["age"] < 90].groupby("account_id")["sentiment"].mean()
    previous = w.loc[(w["age"] >= 90) & (w["age"] < 180)].groupby("account_id")["sentiment"].mean()
    return pd.DataFrame({
        "csm_sentiment_latest": _latest(w, "recorded_at", "sentiment"),
        "csm_sentiment_change_90d": recent - previous,
    })


def _latest(table: pd.DataFrame, stamp: str, value: str) -> pd.Series:
    """Per account, the mean ``value`` of the rows stamped at its latest ``stamp`` (the
    contract's tie rule: the result never depends on row order)."""
    latest = table.groupby("account_id")[stamp].transform("max")
    return table.loc[table[stamp] == latest].groupby("account_id")[value].mean()


def _onboarding(milestones: pd.DataFrame, accounts: pd.DataFrame, grid: pd.Index,
                day: pd.Timestamp, expected: tuple[str, ...]) -> pd.DataFrame:
    """Completion share, stall flag and days to each expected milestone completed by D."""
    created = accounts.set_index("account_id")["created"]
    done = milestones.loc[milestones["milestone"].isin(expected)
                          & (milestones["completed_at_day"] <= day)]
    done = done.assign(days_to=(done["completed_at_day"] - done["account_id"].map(created)).dt.days)
    by_account = done.groupby("account_id")
    completed = by_account["milestone"].nunique().reindex(grid, fill_value=0)
    # Nothing completed yet: progress is measured from the account's creation.
    last_move = by_account["completed_at_day"].max().reindex(grid).fillna(created.reindex(grid))
    idle_days = (day - last_move).dt.days
    days_to = done.groupby(["account_id", "milestone"])["days_to"].min().unstack("milestone")
    days_to = days_to.reindex(index=grid, columns=list(expected)).astype("float64")
    days_to.columns = [f"onboarding_{_slug(name)}_days_to" for name in expected]
    flags = pd.DataFrame({
        "onboarding_completed_share": completed / len(expected),
        "onboarding_stalled_flag": ((completed < len(expected)) & (idle_days > 30)).astype("int64"),
    }, index=grid)
    return flags.join(days_to)


def _billing(invoices: pd.DataFrame, day: pd.Timestamp) -> pd.DataFrame:
    """Late invoices over 365 days, and what is overdue at D.

    As of D an invoice is unpaid unless it was paid by D: a later payment is not yet
    known. An invoice is overdue when it is unpaid and its due day has passed; every
    overdue invoice counts for the ``_current`` metrics, however old.
    """
    known = invoices.loc[invoices["issued_at_day"] <= day]
    unpaid = ~(known["paid_at_day"] <= day)
    overdue = unpaid & (known["due_at_day"] < day)
    paid_late = ~unpaid & (known["paid_at_day"] > known["due_at_day"])
    due_in_year = known["due_at_day"] > day - 365 * DAY
    late = ((overdue | paid_late) & due_in_year).groupby(known["account_id"]).sum()
    over = known.loc[overdue]
    return pd.DataFrame({
        "invoices_late_count_365d": late,
        "invoices_overdue_days_max_current": (day - over["due_at_day"]).dt.days
        .groupby(over["account_id"]).max(),
        "invoices_unpaid_amount_current": over.groupby("account_id")["amount"].sum(),
    })


def _marketing(marketing: pd.DataFrame, day: pd.Timestamp) -> pd.DataFrame:
    """Marketing touches in the last 30 and 90 days."""
    w = _window(marketing, "timestamp_day", day, 90)
    return pd.DataFrame({
        "marketing_touches_count_30d": (w["age"] < 30).groupby(w["account_id"]).sum(),
        "marketing_touches_count_90d": w.groupby("account_id").size(),
    })


def _own_metrics(account_metrics: pd.DataFrame, day: pd.Timestamp, columns: tuple[str, ...],
                 staleness_days: int) -> pd.DataFrame:
    """Each own metric's latest value dated in [D - staleness, D]."""
    am = account_metrics
    w = am.loc[(am["as_of_date_day"] <= day) & (am["as_of_date_day"] >= day - staleness_days * DAY)]
    # groupby.last takes the latest non-empty value of each column separately.
    latest = w.sort_values("as_of_date_day").groupby("account_id")[list(columns)].last()
    return latest.astype("float64").rename(columns=lambda c: f"own_{_slug(c)}_latest")


# --------------------------------------------------------------------- across snapshots


def _ratio(numerator: pd.Series, denominator: pd.Series) -> pd.Series:
    """numerator / denominator, empty when the denominator is 0 or empty."""
    return numerator.astype("float64") / denominator.astype("float64").where(denominator > 0)


def _ratios(out: pd.DataFrame, metrics: MetricsConfig) -> pd.DataFrame:
    """Ratios, changes, adoption and the fall from peak, on the stacked snapshots."""
    users, events = out["active_users_count_30d"], out["events_count_30d"]
    # The peak is the highest 30-day value at a snapshot of the account in the trailing
    # 365 days, (D - 365, D]; rows are sorted by account and date.
    def trailing_max(column: str) -> pd.Series:
        rolled = (out.groupby("account_id", sort=False)
                  .rolling(f"{PEAK_DAYS}D", on="as_of_date")[column].max())
        return pd.Series(rolled.to_numpy(), index=out.index)

    peak_events = trailing_max("events_count_30d")
    peak_users = trailing_max("active_users_count_30d")
    new = {
        "events_per_active_user_30d": _ratio(events, users),
        "events_count_per_seat_30d": _ratio(events, out["seats_total_current"]),
        "active_days_share_tenure": _ratio(out["active_days_count_90d"],
                                           (out["tenure_days_current"] + 1).clip(upper=90)),
        "active_users_ratio_30d": _ratio(users, out["seats_total_current"]),
        "advanced_events_share_30d": _ratio(out["advanced_30d"], events),
        "events_count_change_30d": _ratio(events, out["events_prev_30d"]) - 1,
        "active_users_change_30d": _ratio(users, out["users_prev_30d"]) - 1,
        "events_count_drop_from_peak": 1 - _ratio(events, peak_events),
        "active_users_drop_from_peak": 1 - _ratio(users, peak_users),
        **{
            f"key_feature_{_slug(f)}_adoption_30d": _ratio(
                out[f"_adopters_{_slug(f)}"].fillna(0), users
            )
            for f in metrics.key_features
        },
    }
    return pd.concat([out, pd.DataFrame(new, index=out.index)], axis=1)


def _days_since_last_activity(events: pd.DataFrame, out: pd.DataFrame) -> pd.Series:
    """Days from each snapshot back to the account's last active day on or before it."""
    active = events[["account_id", "day"]].drop_duplicates().sort_values("day")
    keys = out[KEYS].reset_index().sort_values("as_of_date")
    last = pd.merge_asof(keys, active, left_on="as_of_date", right_on="day", by="account_id",
                         direction="backward")
    return (last["as_of_date"] - last["day"]).dt.days.set_axis(last["index"]).sort_index()
