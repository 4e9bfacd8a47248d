"""The support group, from ``tickets``: volume, priority, resolution, ticket CSAT and the
open backlog.

A ticket counts from the day it was opened; its resolution (and the CSAT given with
it) counts only once the resolution's own date is <= D.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from features.expr import KEYS, exact_mean, in_window, pair, ratio
from features.metric import H, R, Metric

SOURCE = "tickets"
PRIORITIES = ("low", "normal", "high", "urgent")

METRICS: tuple[Metric, ...] = (
    Metric("tickets_count_30d", "support", "Support tickets opened in the last 30 days", "tickets", R, "tickets"),
    Metric("tickets_count_90d", "support", "Support tickets opened in the last 90 days", "tickets", R, "tickets"),
    Metric("tickets_high_count_30d", "support", "High or urgent tickets opened in the last 30 days", "tickets", R, "tickets", ("tickets.priority",)),
    *(
        Metric(f"tickets_{p}_count_90d", "support", f"Tickets of priority {p} opened in the last 90 days", "tickets", R, "tickets", ("tickets.priority",))
        for p in PRIORITIES
    ),
    Metric("tickets_count_per_seat_90d", "support", "Support tickets opened in the last 90 days per licensed seat", "tickets/seat", R, "tickets", ("subscriptions.seats",)),
    Metric("tickets_resolution_hours_mean_90d", "support", "Mean hours to resolve tickets opened in the last 90 days and resolved by the day", "hours", R, "tickets", ("tickets.resolved_at",)),
    Metric("tickets_csat_mean_90d", "support", "Mean ticket CSAT (1-5) of tickets opened in the last 90 days and resolved by the day", "score", H, "tickets", ("tickets.csat", "tickets.resolved_at")),
    Metric("tickets_open_count_current", "support", "Tickets open at the end of the day", "tickets", R, "tickets", ("tickets.resolved_at",)),
)

# Counts that are 0, not missing, when tickets exist but none fall in the window.
ZERO_WHEN_PRESENT = (
    "tickets_count_30d", "tickets_count_90d", "tickets_high_count_30d",
    *(f"tickets_{p}_count_90d" for p in PRIORITIES), "tickets_open_count_current",
)


def compute(g: ir.Table, tickets: ir.Table) -> ir.Table:
    """The support metrics of each snapshot key ``g`` with tickets (all but the per-seat
    ratio, which :func:`derived` adds once the seats are joined)."""
    t = tickets.mutate(
        day=tickets.created_at.date(),
        resolved_day=tickets.resolved_at.date(),
        # Whole seconds, averaged exactly and only then turned into hours.
        seconds=tickets.resolved_at.delta(tickets.created_at, unit="second").cast("float64"),
    )
    j = pair(g, t, "day", 90)
    last30 = in_window(j.day, j.as_of_date, 30)
    resolved = j.resolved_day.notnull() & (j.resolved_day <= j.as_of_date)
    counts = j.group_by(KEYS).aggregate(
        tickets_count_30d=j.day.count(where=last30),
        tickets_count_90d=j.day.count(),
        tickets_high_count_30d=j.day.count(where=last30 & j.priority.isin(["high", "urgent"])),
        **{f"tickets_{p}_count_90d": j.day.count(where=j.priority == p) for p in PRIORITIES},
        # Divided as doubles: Spark SQL reads a literal such as 3600.0 as a DECIMAL and
        # would round the quotient to 6 places.
        tickets_resolution_hours_mean_90d=exact_mean(j.seconds, where=resolved)
        / ibis.literal(3600.0, "float64"),
        # A ticket's CSAT is given when it is resolved: only resolved-by-D answers count.
        tickets_csat_mean_90d=exact_mean(j.csat, where=resolved),
    )
    # Open at D: created by D, not resolved by D (however long ago it was opened).
    o = g.join(t, [g.account_id == t.account_id, t.day <= g.as_of_date])
    still_open = o.resolved_day.isnull() | (o.resolved_day > o.as_of_date)
    opened = o.group_by(KEYS).aggregate(tickets_open_count_current=o.day.count(where=still_open))
    return counts.outer_join(opened, KEYS).select(
        account_id=ibis.coalesce(counts.account_id, opened.account_id),
        as_of_date=ibis.coalesce(counts.as_of_date, opened.as_of_date),
        **{c: counts[c] for c in counts.columns if c not in KEYS},
        tickets_open_count_current=opened.tickets_open_count_current,
    )


def derived(history: ir.Table) -> ir.Table:
    """``history`` (with the support and contract metrics) plus the tickets per seat."""
    return history.mutate(
        tickets_count_per_seat_90d=ratio(history.tickets_count_90d, history.seats_total_current))
