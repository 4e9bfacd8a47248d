"""Metric groups from the smaller sources: support, sentiment, onboarding, billing,
engagement, and bring-your-own metrics.

Each function takes the snapshot keys ``g`` (account_id, as_of_date) and one source,
and returns one row per key that has data, with the group's metrics. Windows are
(D - w, D] on the day a fact became known; facts known only later (a ticket's
resolution, an invoice's payment) count only once their own date is <= D.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from features.catalog import PRIORITIES, _slug

KEYS = ["account_id", "as_of_date"]


def exact_sum(value: ir.NumericValue, where: ir.BooleanValue | None = None) -> ir.FloatingValue:
    """The sum of floats, the same in any row order: summed exactly as decimals with nine
    places, then a float again.

    A plain float sum depends on the order rows arrive in (which a parallel engine, or a
    store that recomputes a few accounts, does not fix); a metric must not.
    """
    return value.cast("decimal(38, 9)").sum(where=where).cast("float64")


def exact_mean(value: ir.NumericValue, where: ir.BooleanValue | None = None) -> ir.FloatingValue:
    """The mean of floats, the same in any row order (see :func:`exact_sum`); empty
    without values."""
    n = value.count(where=where)
    return ibis.ifelse(n > 0, exact_sum(value, where) / n.cast("float64"), ibis.null("float64"))


def in_window(day: ir.Value, as_of: ir.Value, days: int) -> ir.BooleanValue:
    """``day`` lies in the ``days``-day window ending with ``as_of``: (D - days, D]."""
    return (day <= as_of) & (day > as_of - ibis.interval(days=days))


def latest_time(j: ir.Table, at: ir.TimestampValue,
                where: ir.BooleanValue | None = None) -> ir.TimestampValue:
    """The latest ``at`` (among rows ``where`` holds) of each snapshot key of ``j``.

    The tie rule of every "latest" metric: the mean of the values stamped with this
    time, so the result never depends on row order (several records of an account can
    share a timestamp: a survey campaign, a midnight export).
    """
    stamped = at if where is None else ibis.ifelse(where, at, ibis.null("timestamp"))
    return stamped.max().over(ibis.window(group_by=[j.account_id, j.as_of_date]))


def _pair(g: ir.Table, source: ir.Table, day: str, days: int) -> ir.Table:
    """Snapshot keys joined with a source's rows dated in the window before each snapshot."""
    return g.join(source, [g.account_id == source.account_id,
                           in_window(source[day], g.as_of_date, days)])


def support(g: ir.Table, tickets: ir.Table) -> ir.Table:
    t = tickets.mutate(
        day=tickets.created_at.date(),
        resolved_day=tickets.resolved_at.date(),
        # Divided as doubles: Spark SQL reads a literal such as 3600.0 as a DECIMAL and
        # would round the quotient to 6 places.
        hours=tickets.resolved_at.delta(tickets.created_at, unit="second").cast("float64")
        / ibis.literal(3600.0, "float64"),
    )
    j = _pair(g, t, "day", 90)
    last30 = in_window(j.day, j.as_of_date, 30)
    resolved = j.resolved_day.notnull() & (j.resolved_day <= j.as_of_date)
    counts = j.group_by(KEYS).aggregate(
        tickets_count_30d=j.day.count(where=last30),
        tickets_count_90d=j.day.count(),
        tickets_high_count_30d=j.day.count(where=last30 & j.priority.isin(["high", "urgent"])),
        **{f"tickets_{p}_count_90d": j.day.count(where=j.priority == p) for p in PRIORITIES},
        tickets_resolution_hours_mean_90d=exact_mean(j.hours, where=resolved),
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


def sentiment_surveys(g: ir.Table, surveys: ir.Table) -> ir.Table:
    s = surveys.mutate(day=surveys.responded_at.date())
    j = _pair(g, s, "day", 365)
    nps = j.kind == "nps"
    j = j.mutate(_latest=latest_time(j, j.responded_at, nps))
    nps = j.kind == "nps"
    recent = in_window(j.day, j.as_of_date, 180)
    return j.group_by(KEYS).aggregate(
        # Ties: a campaign stamps many responses with one time; the latest is their mean.
        nps_score_latest=exact_mean(j.score, where=nps & (j.responded_at == j._latest)),
        nps_score_mean_180d=exact_mean(j.score, where=nps & recent),
        nps_score_change_180d=exact_mean(j.score, where=nps & recent) - exact_mean(j.score, where=nps & ~recent),
        nps_promoter_share_365d=exact_mean((j.score >= 9).cast("float64"), where=nps),
        nps_detractor_share_365d=exact_mean((j.score <= 6).cast("float64"), where=nps),
        csat_score_mean_90d=exact_mean(j.score, where=(j.kind == "csat") & in_window(j.day, j.as_of_date, 90)),
    )


def sentiment_csm(g: ir.Table, notes: ir.Table) -> ir.Table:
    n = notes.mutate(day=notes.recorded_at.date())
    j = _pair(g, n, "day", 365)
    j = j.mutate(_latest=latest_time(j, j.recorded_at))
    recent = in_window(j.day, j.as_of_date, 90)
    previous = ~recent & in_window(j.day, j.as_of_date, 180)
    return j.group_by(KEYS).aggregate(
        csm_sentiment_latest=exact_mean(j.sentiment, where=j.recorded_at == j._latest),
        csm_sentiment_change_90d=exact_mean(j.sentiment, where=recent) - exact_mean(j.sentiment, where=previous),
    )


def onboarding(g: ir.Table, milestones: ir.Table, accounts: ir.Table,
               expected: tuple[str, ...]) -> ir.Table:
    m = milestones.filter(milestones.milestone.isin(list(expected)))
    m = m.mutate(day=m.completed_at.date())
    j = g.join(m, [g.account_id == m.account_id, m.day <= g.as_of_date])
    done = j.group_by(KEYS).aggregate(
        completed=j.milestone.nunique(),
        last_day=j.day.max(),
        **{f"_d_{i}": j.day.min(where=j.milestone == name) for i, name in enumerate(expected)},
    )
    base = g.join(accounts.select("account_id", created=accounts.created_at.date()), "account_id")
    out = base.left_join(done, KEYS)
    completed = out.completed.fill_null(0)
    since_progress = out.as_of_date.delta(ibis.coalesce(out.last_day, out.created), unit="day")
    return out.select(
        account_id=out.account_id,
        as_of_date=out.as_of_date,
        onboarding_completed_share=completed.cast("float64") / len(expected),
        onboarding_stalled_flag=((completed < len(expected)) & (since_progress > 30)).cast("int64"),
        **{
            f"onboarding_{_slug(name)}_days_to": out[f"_d_{i}"].delta(out.created, unit="day")
            for i, name in enumerate(expected)
        },
    )


def billing(g: ir.Table, invoices: ir.Table) -> ir.Table:
    inv = invoices.mutate(issued=invoices.issued_at.date(), due=invoices.due_at.date(),
                          paid=invoices.paid_at.date())
    # Every invoice issued by D: a debt overdue for years is still overdue today.
    j = g.join(inv, [g.account_id == inv.account_id, inv.issued <= g.as_of_date])
    # As of D an invoice is unpaid unless it was paid by D: a later payment is unknown.
    unpaid = j.paid.isnull() | (j.paid > j.as_of_date)
    overdue_now = unpaid & (j.due < j.as_of_date)
    paid_late = ~unpaid & (j.paid > j.due)
    due_last_year = j.due > j.as_of_date - ibis.interval(days=365)
    return j.group_by(KEYS).aggregate(
        invoices_late_count_365d=((overdue_now | paid_late) & due_last_year).cast("int64").sum(),
        invoices_overdue_days_max_current=j.as_of_date.delta(j.due, unit="day").max(where=overdue_now),
        invoices_unpaid_amount_current=exact_sum(j.amount, where=overdue_now),
    )


def engagement(g: ir.Table, marketing: ir.Table) -> ir.Table:
    mk = marketing.mutate(day=marketing.timestamp.date())
    j = _pair(g, mk, "day", 90)
    return j.group_by(KEYS).aggregate(
        marketing_touches_count_30d=j.day.count(where=in_window(j.day, j.as_of_date, 30)),
        marketing_touches_count_90d=j.day.count(),
    )


def own_metrics(g: ir.Table, account_metrics: ir.Table, columns: list[str],
                staleness_days: int) -> ir.Table:
    """The latest value of each bring-your-own metric at or before D, within the staleness limit."""
    am = account_metrics.mutate(day=account_metrics.as_of_date.date()).drop("as_of_date")
    j = g.join(am, [g.account_id == am.account_id, am.day <= g.as_of_date,
                    am.day >= g.as_of_date - ibis.interval(days=staleness_days)])
    return j.group_by(KEYS).aggregate(
        # An empty cell is "no value": skip it and take the latest value that exists.
        **{f"own_{_slug(c)}_latest": j[c].argmax(j.day, where=j[c].notnull()) for c in columns}
    )
