"""The contract group, from ``subscriptions`` and ``accounts``: revenue, seats, tenure,
renewal and term length of the terms covering each snapshot.

Its table is also the grid of the metric history: the accounts with a term covering
each snapshot date, onto which every other group is joined.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from features.expr import KEYS, exact_sum, ratio
from features.metric import H, U, Metric

METRICS: tuple[Metric, ...] = (
    Metric("arr_total_current", "contract", "ARR (annual recurring revenue) of the current terms", "currency", U, "subscriptions"),
    Metric("seats_total_current", "contract", "Licensed seats on the current terms", "seats", U, "subscriptions", ("subscriptions.seats",)),
    Metric("tenure_days_current", "contract", "Days since the account was created", "days", H, "accounts"),
    Metric("renewal_days_to_next", "contract", "Days to the next renewal (the end of the earliest current term)", "days", U, "subscriptions"),
    Metric("term_length_days_current", "contract", "Length of the longest current term (about 30 monthly, 365 annual)", "days", U, "subscriptions"),
    Metric("arr_change_365d", "contract", "ARR now against ARR a year earlier (relative change; empty: no term then)", "ratio", H, "subscriptions"),
    Metric("seats_change_365d", "contract", "Licensed seats now against a year earlier (relative change; empty: no term then)", "ratio", H, "subscriptions", ("subscriptions.seats",)),
)


def terms(subscriptions: ir.Table) -> ir.Table:
    """Subscription terms with their ``start`` and ``end`` days (a term covers D when
    start <= D < end)."""
    return subscriptions.mutate(start=subscriptions.start_date.date(), end=subscriptions.end_date.date())


def compute(subscriptions: ir.Table, accounts: ir.Table, dates: ir.Table) -> ir.Table:
    """Accounts active at each snapshot, with the contract metrics of their terms."""
    subs = terms(subscriptions)
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
        arr_change_365d=ratio(grid.arr_total_current, grid.arr_then) - 1,
        seats_change_365d=ratio(grid.seats_total_current, grid.seats_then) - 1,
    ).drop("next_end", "created_at", "arr_then", "seats_then")
