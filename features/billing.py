"""The billing group, from ``invoices``: late payments, overdue days and unpaid amounts.

As of D an invoice is unpaid unless it was paid by D: a later payment is not yet known.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from features.expr import KEYS, exact_sum
from features.metric import R, Metric

SOURCE = "invoices"

METRICS: tuple[Metric, ...] = (
    Metric("invoices_late_count_365d", "billing", "Invoices due in the last 365 days paid late or still overdue", "invoices", R, "invoices", ("invoices.paid_at",)),
    Metric("invoices_overdue_days_max_current", "billing", "Days the oldest overdue invoice is past due (0: none)", "days", R, "invoices", ("invoices.paid_at",)),
    Metric("invoices_unpaid_amount_current", "billing", "Amount of overdue unpaid invoices", "currency", R, "invoices", ("invoices.paid_at",)),
)

# 0, not missing, when invoices exist but none is late or overdue.
ZERO_WHEN_PRESENT = tuple(m.name for m in METRICS)


def compute(g: ir.Table, invoices: ir.Table) -> ir.Table:
    """The billing metrics of each snapshot key ``g`` with an invoice issued by D."""
    inv = invoices.mutate(issued=invoices.issued_at.date(), due=invoices.due_at.date(),
                          paid=invoices.paid_at.date())
    # Every invoice issued by D: a debt overdue for years is still overdue today.
    j = g.join(inv, [g.account_id == inv.account_id, inv.issued <= g.as_of_date])
    unpaid = j.paid.isnull() | (j.paid > j.as_of_date)
    overdue_now = unpaid & (j.due < j.as_of_date)
    paid_late = ~unpaid & (j.paid > j.due)
    due_last_year = j.due > j.as_of_date - ibis.interval(days=365)
    return j.group_by(KEYS).aggregate(
        invoices_late_count_365d=((overdue_now | paid_late) & due_last_year).cast("int64").sum(),
        invoices_overdue_days_max_current=j.as_of_date.delta(j.due, unit="day").max(where=overdue_now),
        invoices_unpaid_amount_current=exact_sum(j.amount, where=overdue_now),
    )
