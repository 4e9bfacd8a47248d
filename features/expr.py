"""Ibis building blocks the metric groups share: windows, order-free sums and means,
ratios and day numbers.

Everything here is a portable Ibis expression, so every group runs alike on DuckDB and
Spark.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

KEYS = ["account_id", "as_of_date"]
EPOCH = ibis.date(1970, 1, 1)


# Float sums are taken in units of 1e-6: each value rounded to a whole number of
# micro-units, held in a double, summed, and scaled back.
EXACT_UNITS = 1_000_000


def exact_sum(value: ir.NumericValue, where: ir.BooleanValue | None = None) -> ir.FloatingValue:
    """The sum of floats, the same in any row order.

    A plain float sum depends on the order rows arrive in (which a parallel engine, or a
    store that recomputes a few accounts, does not fix); a metric must not. Each value
    is rounded to a whole number of millionths and the whole numbers are summed as
    doubles, which add whole numbers exactly below 2**53: so the sum is exact, in any
    order, while its magnitude stays below about 9e9 (far above any account's ARR,
    invoices or event values). Doubles, not decimals: Spark aggregates decimals wider
    than 18 digits on a slow path that runs out of memory.
    """
    units = (value.cast("float64") * EXACT_UNITS).round().cast("float64")
    return units.sum(where=where) / EXACT_UNITS


def exact_mean(value: ir.NumericValue, where: ir.BooleanValue | None = None) -> ir.FloatingValue:
    """The mean of floats, the same in any row order (see :func:`exact_sum`); empty
    without values."""
    n = value.count(where=where)
    return ibis.ifelse(n > 0, exact_sum(value, where) / n.cast("float64"), ibis.null("float64"))


def int_sum(value: ir.IntegerValue, where: ir.BooleanValue | None = None) -> ir.IntegerValue:
    """Sum of integers, as a 64-bit integer.

    Summed as double and cast back: DuckDB sums BIGINT into 128-bit integers, several
    times slower in the big joins; doubles add integers exactly below 2**53.
    """
    return value.cast("float64").sum(where=where).cast("int64")


def in_window(day: ir.Value, as_of: ir.Value, days: int) -> ir.BooleanValue:
    """``day`` lies in the ``days``-day window ending with ``as_of``: (D - days, D]."""
    return (day <= as_of) & (day > as_of - ibis.interval(days=days))


def pair(g: ir.Table, source: ir.Table, day: str, days: int) -> ir.Table:
    """Snapshot keys joined with a source's rows dated in the window before each snapshot."""
    return g.join(source, [g.account_id == source.account_id,
                           in_window(source[day], g.as_of_date, days)])


def latest_time(j: ir.Table, at: ir.TimestampValue,
                where: ir.BooleanValue | None = None) -> ir.TimestampValue:
    """The latest ``at`` (among rows ``where`` holds) of each snapshot key of ``j``.

    The tie rule of every "latest" metric: the mean of the values stamped with this
    time, so the result never depends on row order (several records of an account can
    share a timestamp: a survey campaign, a midnight export).
    """
    stamped = at if where is None else ibis.ifelse(where, at, ibis.null("timestamp"))
    return stamped.max().over(ibis.window(group_by=[j.account_id, j.as_of_date]))


def day_number(day: ir.DateValue) -> ir.IntegerValue:
    """Days since 1970-01-01: integer day arithmetic that every engine does alike."""
    return day.delta(EPOCH, unit="day")


def ratio(numerator: ir.NumericValue, denominator: ir.NumericValue) -> ir.FloatingValue:
    """numerator / denominator, empty when the denominator is 0 or empty."""
    return ibis.ifelse(
        denominator.fill_null(0) > 0,
        numerator.cast("float64") / denominator.cast("float64"),
        ibis.null("float64"),
    )
