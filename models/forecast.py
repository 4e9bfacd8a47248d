"""The renewal forecast for CS leaders: ARR up for renewal and ARR likely lost, per period.

Input is a **renewal schedule**: one row per (account, upcoming renewal) with
``account_id``, ``renewal_date``, ``sequence`` (0 for the account's next renewal, 1 for the
one after it, ...), ``arr`` (the ARR at stake at that renewal) and ``renewal_risk`` (the
calibrated probability that the account churns at *that* renewal, given it reached it).
:func:`upcoming_renewals` builds the dates; the caller asks the model for each risk.

Definitions, all as of a date ``as_of``:

* **Periods** are ``(start, end]`` in whole days after ``as_of``: a renewal ``d`` days after
  ``as_of`` belongs to a period when ``start < d <= end``. A renewal on ``as_of`` itself
  (``d = 0``) belongs to none, one on a period's last day belongs to it. Renewals on or
  before ``as_of`` are outside the forecast altogether: the forecast is conditional on the
  account still being a customer at ``as_of``. See :func:`periods` for which periods.
* **Probability of loss at a renewal.** An account can only be lost at its k-th renewal if
  it survived the earlier ones, including those before the period starts:
  ``P_k = risk_k * prod_{j<k} (1 - risk_j)``. An account is lost at most once, so its
  probability of being lost in a period is the sum of ``P_k`` over its renewals there.
* **ARR up for renewal** counts each account's ARR once per period, however often it
  renews in it: ARR is annual, and a monthly account renewing three times in a quarter
  does not put three years of revenue at stake. So months do not add up to their quarter
  in ARR up for renewal (they do in expected ARR lost).
* **ARR lost** is the sum of independent per-account outcomes: the account is lost at one
  of its renewals in the period (with that renewal's ARR) or not at all. Its distribution
  is computed by convolution (:func:`loss_distribution`: exact when the ARR values share a
  common step of whole cents, otherwise on a grid of 1/20000 of the ARR at stake), and
  ``low``/``high`` are its central ``level`` interval. No sampling, so no seed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from models.renewal import risk_at

Period = tuple[str, int, int]  # (label, start, end): the days (start, end] after as_of

SCHEDULE_COLUMNS = ("account_id", "renewal_date", "sequence", "arr", "renewal_risk")
FORECAST_COLUMNS = ("period", "start", "end", "accounts", "arr_up_for_renewal",
                    "expected_arr_lost", "low", "high", "expected_accounts_lost")
BACKTEST_COLUMNS = ("month", "forecast_as_of", "arr_up_for_renewal", "expected_arr_lost",
                    "low", "high", "actual_arr_lost", "inside")
# The finest grid the loss distribution is computed on when ARR values share no usable
# common step: the interval is then exact to about (ARR up for renewal) / MAX_BINS.
MAX_BINS = 20_000


def _day(value) -> pd.Timestamp:
    return pd.Timestamp(value).normalize()


def _ordinal(n: int) -> str:
    """>>> [_ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 31)]
    ['1st', '2nd', '3rd', '4th', '11th', '12th', '13th', '21st', '22nd', '23rd', '31st']
    """
    suffix = "th" if 11 <= n % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def periods(as_of) -> list[Period]:
    """The next three calendar months and the next calendar quarter, as of ``as_of``.

    The months start with ``as_of``'s own month when days remain in it after ``as_of``
    (labelled with the first day counted), otherwise with the next month. The quarter is
    the first calendar quarter that starts after ``as_of``. Each period is
    ``(label, start, end)``: it holds the renewals ``d`` days after ``as_of`` with
    ``start < d <= end``.

    >>> periods("2026-09-30")
    [('Oct 2026', 0, 31), ('Nov 2026', 31, 61), ('Dec 2026', 61, 92), ('Q4 2026', 0, 92)]
    >>> periods("2026-11-15")
    [('Nov 2026 (from 16th)', 0, 15), ('Dec 2026', 15, 46), ('Jan 2027', 46, 77), ('Q1 2027', 46, 136)]
    """
    as_of = _day(as_of)
    one = pd.Timedelta(days=1)
    month_end = as_of + pd.offsets.MonthEnd(0)
    first = as_of.replace(day=1) if as_of < month_end else month_end + one
    out: list[Period] = []
    for i in range(3):
        month_first = first + pd.DateOffset(months=i)
        month_last = month_first + pd.offsets.MonthEnd(0)
        label = month_first.strftime("%b %Y")
        if as_of >= month_first:
            label += f" (from {_ordinal((as_of + one).day)})"
        start = max(month_first - one, as_of)
        out.append((label, (start - as_of).days, (month_last - as_of).days))
    quarter = pd.Period(as_of, freq="Q") + 1
    q_first, q_last = quarter.start_time.normalize(), quarter.end_time.normalize()
    out.append((f"Q{quarter.quarter} {quarter.year}", (q_first - one - as_of).days,
                (q_last - as_of).days))
    return out


YEAR_AHEAD = "Next 12 months"


def outlook_periods(as_of) -> list[Period]:
    """:func:`periods` and the next 12 months (the report's headline: the ARR a book
    can expect to lose in a year, whatever its terms).

    >>> outlook_periods("2026-09-30")[-1]
    ('Next 12 months', 0, 365)
    """
    as_of = _day(as_of)
    return [*periods(as_of), (YEAR_AHEAD, 0, (as_of + pd.DateOffset(years=1) - as_of).days)]


def upcoming_renewals(frame: pd.DataFrame, as_of, until) -> pd.DataFrame:
    """The renewal dates of each account in ``(as_of, until]``, ready for risks.

    Args:
        frame: Per account ``account_id``, ``renewal_days_to_next`` (days from ``as_of`` to
            the next renewal; NaN: no current term, no rows), ``term_length_days_current``
            (days between renewals; NaN or <= 0: only the next renewal) and
            ``arr_total_current``.
        as_of: The snapshot date.
        until: The last day of the schedule (included).

    Returns:
        ``account_id``, ``sequence``, ``renewal_date``, ``days_to_renewal`` and ``arr``, one
        row per renewal, where renewal ``sequence`` k falls ``renewal_days_to_next + k *
        term_length_days_current`` days (rounded to whole days) after ``as_of``. Only dates
        after ``as_of`` are kept, so sequence counts from the renewal at
        ``renewal_days_to_next`` even if that one is not listed. The caller adds
        ``renewal_risk`` (asking the model about ``days_to_renewal``).

    >>> frame = pd.DataFrame({"account_id": ["m", "y", "none"],
    ...                       "renewal_days_to_next": [10.0, 40.0, np.nan],
    ...                       "term_length_days_current": [30.0, 365.0, 30.0],
    ...                       "arr_total_current": [1200.0, 50000.0, 9.0]})
    >>> upcoming_renewals(frame, "2026-09-30", "2026-12-31")
      account_id  sequence renewal_date  days_to_renewal      arr
    0          m         0   2026-10-10               10   1200.0
    1          m         1   2026-11-09               40   1200.0
    2          m         2   2026-12-09               70   1200.0
    3          y         0   2026-11-09               40  50000.0
    """
    as_of, until = _day(as_of), _day(until)
    horizon = (until - as_of).days
    rows = frame.loc[frame["renewal_days_to_next"].notna()]
    first = rows["renewal_days_to_next"].to_numpy(dtype=float)
    term = rows["term_length_days_current"].to_numpy(dtype=float)
    repeats = np.isfinite(term) & (term > 0)
    safe_term = np.where(repeats, term, 1.0)
    # Generous candidate counts (from k = 0); the exact filter on rounded days follows.
    count = np.where(repeats, np.floor((horizon + 1 - first) / safe_term) + 1, 1)
    count = np.clip(np.nan_to_num(count), 0, None).astype(np.int64)
    which = np.repeat(np.arange(len(rows)), count)
    k = np.arange(len(which)) - np.repeat(np.cumsum(count) - count, count)
    days = np.floor(first[which] + k * np.where(repeats[which], term[which], 0.0) + 0.5)
    keep = (days > 0) & (days <= horizon)
    which, k, days = which[keep], k[keep], days[keep].astype(np.int64)
    schedule = pd.DataFrame({
        "account_id": rows["account_id"].to_numpy()[which],
        "sequence": k.astype(np.int64),
        "renewal_date": (as_of + pd.to_timedelta(days, unit="D")).astype("datetime64[us]"),
        "days_to_renewal": days,
        "arr": rows["arr_total_current"].to_numpy(dtype=float)[which],
    })
    return schedule.sort_values(["account_id", "sequence"], kind="stable").reset_index(drop=True)


def _check_schedule(schedule: pd.DataFrame) -> None:
    missing = [c for c in SCHEDULE_COLUMNS if c not in schedule.columns]
    if missing:
        raise ValueError(f"the renewal schedule lacks column(s) {missing}")
    risk = schedule["renewal_risk"].to_numpy(dtype=float)
    if not np.all((risk >= 0) & (risk <= 1)):  # NaN fails too
        raise ValueError("renewal_risk must be a probability in [0, 1] on every row (NaN is not)")
    arr = schedule["arr"].to_numpy(dtype=float)
    if not np.all(np.isfinite(arr) & (arr >= 0)):
        raise ValueError("arr must be finite and >= 0 on every row")
    if schedule["renewal_date"].isna().any():
        raise ValueError("renewal_date is missing on some rows")
    if schedule.duplicated(["account_id", "sequence"]).any():
        raise ValueError("an account has two rows with the same sequence")
    ordered = schedule.sort_values(["account_id", "sequence"], kind="stable")
    later = ordered.groupby("account_id", sort=False)["renewal_date"].diff().dropna()
    if (later <= pd.Timedelta(0)).any():
        raise ValueError("an account's renewal dates must increase with its sequence")


def _at_stake(schedule: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """Renewals after ``as_of``: ``day`` after it and ``p_lost``, P(the account is lost there)."""
    _check_schedule(schedule)
    day = (schedule["renewal_date"].dt.normalize() - as_of) // pd.Timedelta(days=1)
    rows = schedule.assign(day=day.astype(np.int64))
    rows = rows.loc[rows["day"] > 0].sort_values(["account_id", "sequence"], kind="stable")
    survive = 1.0 - rows["renewal_risk"].astype(float)
    survived = survive.groupby(rows["account_id"], sort=False).cumprod()
    reached = survived.groupby(rows["account_id"], sort=False).shift(1, fill_value=1.0)
    rows["p_lost"] = rows["renewal_risk"].astype(float) * reached
    rows["expected"] = rows["p_lost"] * rows["arr"].astype(float)
    return rows


def _in_window(stake: pd.DataFrame, start: int, end: int) -> pd.DataFrame:
    return stake.loc[(stake["day"] > start) & (stake["day"] <= end)]


def _grid_step(values: np.ndarray, total: float, max_bins: int) -> tuple[float, bool]:
    """The loss grid's step, and whether every ARR value lies exactly on it.

    When the values are whole cents with a common divisor giving at most ``max_bins``
    cells up to ``total``, that divisor: the distribution is then exact. Otherwise
    ``total / max_bins``, and values between cells are split between the two neighbours.
    """
    cents = np.round(values * 100)
    if np.all(np.abs(values * 100 - cents) < 1e-6):
        positive = cents[cents > 0].astype(np.int64)
        step = float(np.gcd.reduce(positive)) / 100
        if total / step <= max_bins:
            return step, True
    return total / max_bins, False


def loss_distribution(account_id: Sequence, arr: Sequence[float], probability: Sequence[float],
                      max_bins: int = MAX_BINS) -> pd.Series:
    """The distribution of the ARR lost when each account is lost at most once.

    Each row is one way an account can be lost: with ARR ``arr`` and probability
    ``probability`` (an account's rows are exclusive, so they sum to at most 1; it stays
    with the rest). Accounts are independent, and the distribution of their sum is built
    by convolution (:func:`_sum_of_accounts`). It is exact when the ARR values are whole cents
    whose common divisor makes at most ``max_bins`` cells up to the largest possible loss
    (up to floating-point rounding: beyond :data:`BLOCK` accounts the blocks are combined
    by Fourier transform, see :func:`_sum_of_accounts`); otherwise the cells are
    ``1 / max_bins`` of it wide and a value between cells is split between its two
    neighbours in proportion, which keeps the mean exact and the quantiles within about
    a cell.

    Returns:
        The probability of each possible total ARR lost (index, ascending).

    >>> loss_distribution(["a", "b"], [100.0, 200.0], [0.5, 0.25])
    0.0      0.375
    100.0    0.375
    200.0    0.125
    300.0    0.125
    dtype: float64
    """
    rows = pd.DataFrame({"account_id": list(account_id),
                         "arr": np.asarray(arr, dtype=float),
                         "p": np.asarray(probability, dtype=float)})
    rows = rows.loc[(rows["p"] > 0) & (rows["arr"] > 0)]
    per_account = rows.groupby("account_id", sort=False)
    if (per_account["p"].sum() > 1 + 1e-9).any():
        raise ValueError("an account's loss probabilities sum to more than 1")
    total = float(per_account["arr"].max().sum())
    if total == 0:
        return pd.Series([1.0], index=pd.Index([0.0]))
    step, exact = _grid_step(rows["arr"].to_numpy(), total, max_bins)
    position = rows["arr"].to_numpy() / step
    if exact:
        cell = np.round(position).astype(np.int64)
        cells, masses = [cell], [rows["p"].to_numpy()]
    else:
        low = np.floor(position).astype(np.int64)
        upper = position - low
        cells, masses = [low, low + 1], [rows["p"].to_numpy() * (1 - upper), rows["p"].to_numpy() * upper]
    atoms = pd.DataFrame({"account": np.tile(pd.factorize(rows["account_id"])[0], len(cells)),
                          "cell": np.concatenate(cells), "mass": np.concatenate(masses)})
    atoms = atoms.loc[atoms["mass"] > 0].groupby(["account", "cell"], as_index=False)["mass"].sum()
    pmf = _sum_of_accounts(atoms["account"].to_numpy(), atoms["cell"].to_numpy(),
                           atoms["mass"].to_numpy())
    keep = pmf > 0
    return pd.Series(pmf[keep], index=pd.Index(np.flatnonzero(keep) * step))


# Accounts per block of the loss distribution's convolution (see _sum_of_accounts).
BLOCK = 64
# After the blocks' transforms are multiplied, cells under this share of the largest are
# the transform's rounding, not probability.
FFT_FLOOR = 1e-12


def _sum_of_accounts(account: np.ndarray, cell: np.ndarray, mass: np.ndarray) -> np.ndarray:
    """The distribution (by cell) of the sum over accounts of independent losses: account
    ``a`` loses ``cell[i]`` cells with probability ``mass[i]`` for each of its rows ``i``
    (sorted by account; its masses sum to at most 1), else nothing.

    Accounts are dealt, largest reach first, into blocks of at most :data:`BLOCK`, and the
    blocks are convolved side by side, one account of each at a time (a few array
    operations per :data:`BLOCK` accounts, not per account). The blocks' distributions
    are then multiplied as Fourier transforms; cells under :data:`FFT_FLOOR` of the
    largest are that product's rounding and are set to 0. With one block the result is
    the direct convolution.
    """
    codes, first, atoms = np.unique(account, return_index=True, return_counts=True)
    accounts, width = len(codes), int(atoms.max())
    slot = np.arange(len(account)) - np.repeat(first, atoms)  # an atom's place in its account
    row = np.repeat(np.arange(accounts), atoms)
    cells = np.zeros((accounts, width), dtype=np.int64)
    masses = np.zeros((accounts, width))
    cells[row, slot], masses[row, slot] = cell, mass
    reach = cells.max(axis=1)
    blocks = -(-accounts // BLOCK)
    order = np.argsort(-reach, kind="stable")
    order = np.concatenate([order, np.full(blocks * BLOCK - accounts, -1)])
    # Turn j holds the accounts order[j * blocks : (j + 1) * blocks], one per block.
    cells = np.where(order[:, None] >= 0, cells[order], 0).reshape(BLOCK, blocks, width)
    masses = np.where(order[:, None] >= 0, masses[order], 0.0).reshape(BLOCK, blocks, width)
    block_reach = cells.max(axis=2).sum(axis=0)
    size = int(block_reach.max()) + 1
    pmf = np.zeros((blocks, size))
    pmf[:, 0] = 1.0
    columns = np.arange(size)
    for j in range(BLOCK):
        if not masses[j].any():
            continue
        new = pmf * (1.0 - masses[j].sum(axis=1))[:, None]
        for k in range(width):
            shift = columns[None, :] - cells[j, :, k][:, None]
            moved = np.take_along_axis(pmf, np.maximum(shift, 0), axis=1)
            new += masses[j, :, k][:, None] * np.where(shift >= 0, moved, 0.0)
        pmf = new
    if blocks == 1:
        return pmf[0]
    total = int(block_reach.sum()) + 1
    n = 1 << (total - 1).bit_length()
    spectrum = np.ones(n // 2 + 1, dtype=complex)
    for block in pmf:
        spectrum *= np.fft.rfft(block, n)
    out = np.fft.irfft(spectrum, n)[:total]
    out[out < FFT_FLOOR * out.max()] = 0.0
    return out


def central_interval(distribution: pd.Series, level: float) -> tuple[float, float]:
    """The central ``level`` interval of a discrete distribution (value -> probability).

    ``low`` is the smallest value whose cumulative probability reaches ``(1 - level) / 2``,
    ``high`` the smallest reaching ``(1 + level) / 2``; so the interval holds at least
    ``level`` of the probability (more when a value carries a large mass).

    >>> central_interval(pd.Series([0.375, 0.375, 0.125, 0.125], index=[0.0, 100.0, 200.0, 300.0]), 0.8)
    (0.0, 300.0)
    >>> central_interval(pd.Series([0.05, 0.9, 0.05], index=[0.0, 1.0, 2.0]), 0.8)
    (1.0, 1.0)
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be strictly between 0 and 1, not {level}")
    cdf = np.cumsum(distribution.to_numpy())
    # A tolerance so that a cumulative probability of exactly (1 - level) / 2, reached with
    # rounding error, still counts as reaching it.
    at = np.searchsorted(cdf, np.array([(1 - level) / 2, (1 + level) / 2]) - 1e-9, side="left")
    at = np.minimum(at, len(cdf) - 1)
    values = distribution.index.to_numpy(dtype=float)
    return float(values[at[0]]), float(values[at[1]])


def _period_row(stake: pd.DataFrame, period: Period, level: float) -> dict:
    label, start, end = period
    inside = _in_window(stake, start, end)
    per_account = inside.groupby("account_id").agg(arr=("arr", "max"), p=("p_lost", "sum"),
                                                    expected=("expected", "sum"))
    low, high = central_interval(loss_distribution(inside["account_id"], inside["arr"],
                                                   inside["p_lost"]), level)
    return {"period": label, "start": start, "end": end, "accounts": len(per_account),
            "arr_up_for_renewal": float(per_account["arr"].sum()),
            "expected_arr_lost": float(per_account["expected"].sum()),
            "low": low, "high": high,
            "expected_accounts_lost": float(per_account["p"].sum())}


def forecast(schedule: pd.DataFrame, as_of, level: float = 0.8) -> pd.DataFrame:
    """ARR up for renewal and ARR likely lost in each of :func:`outlook_periods` (as_of).

    Args:
        schedule: The renewal schedule (module docstring); rows on or before ``as_of`` are
            ignored.
        as_of: The date the forecast is made.
        level: The probability the ``low``-``high`` interval of ARR lost holds (at least).

    Returns:
        Per period ``period`` (label), ``start``, ``end`` (days after ``as_of``, the period
        is ``(start, end]``), ``accounts`` renewing in it, ``arr_up_for_renewal`` (each
        account's ARR once; the largest if its renewals differ), ``expected_arr_lost``,
        ``low``, ``high`` and ``expected_accounts_lost``.

    >>> schedule = pd.DataFrame({"account_id": ["a", "a", "b"], "sequence": [0, 1, 0],
    ...     "renewal_date": pd.to_datetime(["2026-10-05", "2026-11-05", "2026-10-20"]),
    ...     "arr": [1200.0, 1200.0, 10000.0], "renewal_risk": [0.5, 0.5, 0.3]})
    >>> print(forecast(schedule, "2026-09-30")[["period", "accounts", "arr_up_for_renewal",
    ...                                         "expected_arr_lost", "high"]].to_string(index=False))
            period  accounts  arr_up_for_renewal  expected_arr_lost    high
          Oct 2026         2             11200.0             3600.0 11200.0
          Nov 2026         1              1200.0              300.0  1200.0
          Dec 2026         0                 0.0                0.0     0.0
           Q4 2026         2             11200.0             3900.0 11200.0
    Next 12 months         2             11200.0             3900.0 11200.0
    """
    as_of = _day(as_of)
    stake = _at_stake(schedule, as_of)
    rows = [_period_row(stake, period, level) for period in outlook_periods(as_of)]
    return pd.DataFrame(rows, columns=list(FORECAST_COLUMNS))


def top_accounts(schedule: pd.DataFrame, as_of, period: str | Period, n: int = 10) -> pd.DataFrame:
    """The ``n`` accounts carrying most of a period's expected ARR lost.

    Args:
        schedule: The renewal schedule.
        as_of: The date the forecast is made.
        period: A label from :func:`periods` (as_of), or a ``(label, start, end)`` period.
        n: How many accounts.

    Returns:
        ``account_id``, ``renewals`` in the period, ``first_renewal_date`` in it, ``arr``,
        ``probability_lost`` in the period, ``expected_arr_lost`` and ``share`` of the
        period's expected ARR lost (0 when it is 0), largest first (ties by account).

    >>> schedule = pd.DataFrame({"account_id": ["a", "a", "b"], "sequence": [0, 1, 0],
    ...     "renewal_date": pd.to_datetime(["2026-10-05", "2026-11-05", "2026-10-20"]),
    ...     "arr": [1200.0, 1200.0, 10000.0], "renewal_risk": [0.5, 0.5, 0.3]})
    >>> top_accounts(schedule, "2026-09-30", "Q4 2026")[["account_id", "renewals",
    ...                                                 "probability_lost", "share"]]
      account_id  renewals  probability_lost     share
    0          b         1              0.30  0.769231
    1          a         2              0.75  0.230769
    """
    as_of = _day(as_of)
    if isinstance(period, str):
        known = {p[0]: p for p in outlook_periods(as_of)}
        if period not in known:
            raise ValueError(f"no period {period!r} as of {as_of.date()}; there are {list(known)}")
        period = known[period]
    _, start, end = period
    inside = _in_window(_at_stake(schedule, as_of), start, end)
    per_account = inside.groupby("account_id", as_index=False).agg(
        renewals=("sequence", "size"), first_renewal_date=("renewal_date", "min"),
        arr=("arr", "max"), probability_lost=("p_lost", "sum"),
        expected_arr_lost=("expected", "sum"))
    total = per_account["expected_arr_lost"].sum()
    per_account["share"] = per_account["expected_arr_lost"] / total if total > 0 else 0.0
    ranked = per_account.sort_values(["expected_arr_lost", "account_id"],
                                     ascending=[False, True], kind="stable")
    return ranked.head(n).reset_index(drop=True)


def backtest(predictions: pd.DataFrame, outcomes: pd.DataFrame, months: Iterable,
             level: float = 0.8) -> pd.DataFrame:
    """Past months' forecasts against the ARR actually lost.

    Each month is forecast as of the last snapshot on or before the day before it starts
    (so the whole month lies after it: with periods ``(start, end]``, that is "on or
    before the month's start"), from that snapshot's predictions.

    Args:
        predictions: Renewal schedules with ``as_of_date``, one per snapshot, with each
            ``renewal_risk`` as a walk-forward model scored it at that snapshot (trained
            only on outcomes known by then). Each snapshot's schedule must reach the end of
            the months it forecasts.
        outcomes: Per (``account_id``, ``renewal_date``) the realised ``churned`` (0/1) and
            ``arr``.
        months: The months to check (anything ``pd.Period(..., "M")`` reads). Contract:
            pass only months whose renewals all have known outcomes; a renewal missing from
            ``outcomes`` reads as not lost, which this function cannot tell apart.
        level: The interval's level.

    Returns:
        Per month (ascending) ``month`` (its first day), ``forecast_as_of``,
        ``arr_up_for_renewal``, ``expected_arr_lost``, ``low``, ``high``,
        ``actual_arr_lost`` and ``inside`` (``low <= actual <= high``). The actual ARR lost
        counts the accounts in the forecast snapshot's predictions that churned at a
        renewal dated in the month (each once, with the outcome's ARR): accounts signed
        after the snapshot are in neither side.
    """
    snapshots = np.sort(pd.to_datetime(predictions["as_of_date"]).dt.normalize().unique())
    snapshot_of = pd.to_datetime(predictions["as_of_date"]).dt.normalize()
    decided = outcomes.assign(renewal_date=pd.to_datetime(outcomes["renewal_date"]).dt.normalize())
    lost = decided.loc[decided["churned"].astype(bool)]
    one = pd.Timedelta(days=1)
    rows = []
    for month in sorted({pd.Period(m, freq="M") for m in months}):
        first, last = month.start_time.normalize(), month.end_time.normalize()
        before = snapshots[snapshots <= first - one]
        if len(before) == 0:
            raise ValueError(f"no snapshot on or before {(first - one).date()} to forecast {month}")
        as_of = pd.Timestamp(before[-1])
        schedule = predictions.loc[snapshot_of == as_of]
        period = (str(month), (first - one - as_of).days, (last - as_of).days)
        row = _period_row(_at_stake(schedule, as_of), period, level)
        churned = lost.loc[lost["renewal_date"].between(first, last)
                           & lost["account_id"].isin(schedule["account_id"])]
        churned = churned.sort_values("renewal_date", kind="stable").drop_duplicates("account_id")
        actual = float(churned["arr"].sum())
        rows.append({"month": first, "forecast_as_of": as_of,
                     "arr_up_for_renewal": row["arr_up_for_renewal"],
                     "expected_arr_lost": row["expected_arr_lost"],
                     "low": row["low"], "high": row["high"], "actual_arr_lost": actual,
                     "inside": bool(row["low"] <= actual <= row["high"])})
    return pd.DataFrame(rows, columns=list(BACKTEST_COLUMNS))


def backtest_summary(backtest_table: pd.DataFrame) -> dict[str, float]:
    """How the forecast did over the backtest's months.

    Returns:
        ``months``, ``coverage`` (the share of months whose actual ARR lost was inside the
        interval; NaN without months), and the total ``expected_arr_lost`` and
        ``actual_arr_lost`` over them.

    >>> table = pd.DataFrame({"expected_arr_lost": [100.0, 50.0], "actual_arr_lost": [0.0, 300.0],
    ...                       "inside": [True, False]})
    >>> backtest_summary(table)
    {'months': 2, 'coverage': 0.5, 'expected_arr_lost': 150.0, 'actual_arr_lost': 300.0}
    """
    months = len(backtest_table)
    return {"months": months,
            "coverage": float(backtest_table["inside"].mean()) if months else float("nan"),
            "expected_arr_lost": float(backtest_table["expected_arr_lost"].sum()),
            "actual_arr_lost": float(backtest_table["actual_arr_lost"].sum())}


def schedule_with_risk(metric_rows: pd.DataFrame, risk, as_of, until) -> pd.DataFrame:
    """The renewal schedule of the accounts in ``metric_rows`` (one row per account, as
    of ``as_of``), each renewal's risk asked of ``risk`` (a renewal-risk function of
    metric rows) with the days to that renewal.

    Args:
        metric_rows: The accounts' metric rows as of ``as_of`` (``account_id``, the
            calendar metrics, ``arr_total_current`` and whatever ``risk`` reads).
        risk: Renewal risk of metric rows (a fitted model's ``renewal_risk``).
        as_of: The forecast date.
        until: The last day of the schedule (included).
    """
    rows = metric_rows.reset_index(drop=True)
    schedule = upcoming_renewals(rows, as_of, until)
    if schedule.empty:
        return schedule.assign(renewal_risk=pd.Series(dtype=float))
    # Each renewal's risk asked with that renewal's distance: the same question the
    # churn probability asks (models.renewal.risk_at).
    position = pd.Series(np.arange(len(rows)), index=rows["account_id"].to_numpy())
    ahead = pd.DataFrame({"row": position.loc[schedule["account_id"]].to_numpy(),
                          "days": schedule["days_to_renewal"].to_numpy(dtype=float)})
    return schedule.assign(renewal_risk=np.clip(risk_at(risk, rows, ahead), 0.0, 1.0))


def forecast_horizon(as_of) -> pd.Timestamp:
    """The last day :func:`outlook_periods` reaches from ``as_of`` (the schedule's ``until``)."""
    return _day(as_of) + pd.Timedelta(days=max(end for _, _, end in outlook_periods(as_of)))


def walk_forward_backtest(predictions: pd.DataFrame, observations: pd.DataFrame,
                          as_of, grace_days: int, model: str = "lightgbm",
                          level: float = 0.8) -> pd.DataFrame:
    """:func:`backtest` on the walk-forward backtest's predictions: every past month whose
    renewals all have known outcomes by ``as_of``, forecast from the last snapshot before
    it as the model of that snapshot's fold scored it (trained only on outcomes known by
    the fold's start).

    A later renewal of the same account within the month (a monthly account renewing on
    the 1st and the 31st) takes the next renewal's risk: the walk-forward keeps one risk
    per observation.

    Args:
        predictions: :func:`models.backtest.walk_forward` output (``p_renewal`` per
            ``model``, ``account_id`` and ``as_of_date``).
        observations: The observations the backtest ran on (calendar metrics,
            ``arr_total_current``, ``renewal_date``, ``churned``, ``label_known_at``).
        as_of: The training date: a month is checked when its last day plus
            ``grace_days`` is on or before it.
    """
    as_of = _day(as_of)
    rows = predictions.loc[predictions["model"] == model, ["account_id", "as_of_date", "p_renewal"]]
    columns = ["account_id", "as_of_date", "renewal_days_to_next", "term_length_days_current",
               "arr_total_current"]
    scored = rows.merge(observations[columns], on=["account_id", "as_of_date"])
    if scored.empty:
        return pd.DataFrame(columns=list(BACKTEST_COLUMNS))
    parts = []
    first_snapshot = scored["as_of_date"].min()
    last_month = (as_of - pd.Timedelta(days=grace_days)).to_period("M")
    if (as_of - pd.Timedelta(days=grace_days)) != last_month.end_time.normalize():
        last_month = last_month - 1
    months = pd.period_range((first_snapshot + pd.Timedelta(days=1)).to_period("M") + 1, last_month,
                             freq="M") if last_month >= first_snapshot.to_period("M") + 1 else []
    if len(months) == 0:
        return pd.DataFrame(columns=list(BACKTEST_COLUMNS))
    snapshots = np.sort(scored["as_of_date"].unique())
    gap = pd.Series(snapshots).diff().min() if len(snapshots) > 1 else pd.Timedelta(days=7)
    checked = []
    for month in months:
        before = snapshots[snapshots <= month.start_time - pd.Timedelta(days=1)]
        snap = pd.Timestamp(before[-1])
        if month.start_time - snap > gap + pd.Timedelta(days=1):
            continue  # the walk-forward scored no snapshot in the week before this month
        checked.append(month)
        at = scored.loc[scored["as_of_date"] == snap]
        schedule = upcoming_renewals(at, snap, month.end_time.normalize())
        risk = at.set_index("account_id")["p_renewal"]
        parts.append(schedule.assign(as_of_date=snap,
                                     renewal_risk=risk.loc[schedule["account_id"]].to_numpy()))
    if not parts:
        return pd.DataFrame(columns=list(BACKTEST_COLUMNS))
    schedules = pd.concat(parts, ignore_index=True).drop_duplicates(
        ["as_of_date", "account_id", "sequence"])
    decided = observations.loc[observations["label_known_at"].notna()].sort_values("as_of_date")
    outcomes = (decided.groupby(["account_id", "renewal_date"], as_index=False)
                .agg(churned=("churned", "max"), arr=("arr_total_current", "last")))
    return backtest(schedules, outcomes, [m.start_time for m in checked], level)
