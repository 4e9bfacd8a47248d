"""Pipeline stage: read a data folder and check it against the contract.

Every later stage starts here: it gets clean, typed tables, or a
:class:`DataContractError` that says what is wrong and where.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from features.lifecycle import DEFAULT_GRACE_DAYS, active_accounts, renewal_outcomes
from healthscore.contract import SOURCES, Validation, validate_sources
from healthscore.errors import DataContractError
from pipelines.io import read_data_folder


@dataclass(frozen=True)
class LifecycleSummary:
    """Activity and churn derived from subscriptions, as of the data's last day."""

    as_of: pd.Timestamp
    accounts: int
    active: int
    renewed: int
    churned: int
    churned_by_status: int
    pending: int


ENGINES = ("duckdb", "pandas")


def check_data_folder(
    data_dir: Path,
    progress: Callable[[str], None] | None = None,
    engine: str = "duckdb",
    now: pd.Timestamp | None = None,
) -> Validation:
    """Read and validate every source in ``data_dir`` (never raises on bad rows).

    Args:
        data_dir: A data folder, a DuckDB database file or a database URL.
        progress: Called with each source's name as it is checked.
        engine: ``duckdb`` (DuckDB reads and checks the files: :mod:`pipelines.ingest`)
            or ``pandas`` (:func:`healthscore.contract.validate_sources` on tables read
            into pandas). Both give the same problems, drops, reports and tables.
        now: Anything stamped after this day is in the future (default: today, UTC).

    Returns:
        The validation, with the clean tables as pandas DataFrames.
    """
    if engine == "pandas":
        return validate_sources(read_data_folder(data_dir), now=now, progress=progress)
    if engine != "duckdb":
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    import duckdb

    from pipelines.ingest import fetch_tables, validate_into

    con = duckdb.connect()
    try:
        validation = validate_into(con, data_dir, now=now, progress=progress)
        validation.tables = fetch_tables(con, validation.tables)
    finally:
        con.close()
    return validation


def load_data_folder(data_dir: Path, engine: str = "duckdb") -> dict[str, pd.DataFrame]:
    """Clean tables of ``data_dir``, with documented drops applied.

    Raises:
        DataContractError: The folder has contract errors (listed in the message).
    """
    validation = check_data_folder(data_dir, engine=engine)
    raise_if_broken(validation, data_dir)
    return validation.tables


def raise_if_broken(validation: Validation, data_dir) -> None:
    """Raise the contract's errors, if any, as one message (the first 20 listed).

    Raises:
        DataContractError: The validation found errors.
    """
    if not validation.ok:
        lines = "\n".join(f"  - {p}" for p in validation.errors[:20])
        more = len(validation.errors) - 20
        extra = f"\n  ... and {more} more (run `healthscore validate`)" if more > 0 else ""
        raise DataContractError(f"{data_dir} breaks the data contract:\n{lines}{extra}")


def data_end_date(tables: dict[str, pd.DataFrame]) -> pd.Timestamp:
    """The last day with a recorded event: the natural "as of" of a data folder."""
    ends = [
        table[SOURCES[name].date_column].max().normalize()
        for name, table in tables.items()
        if name not in ("accounts", "subscriptions") and len(table)
    ]
    if not ends:
        raise DataContractError("the data has no dated activity to take an as-of date from")
    return max(ends)


def reports_end_date(validation: Validation) -> pd.Timestamp:
    """:func:`data_end_date` from a validation's reports (the clean tables' last dates),
    without the tables."""
    ends = [
        report.date_max.normalize()
        for name, report in validation.reports.items()
        if name not in ("accounts", "subscriptions") and report.kept_rows and report.date_max is not None
    ]
    if not ends:
        raise DataContractError("the data has no dated activity to take an as-of date from")
    return max(ends)


def check_and_summarise(
    data_dir: Path, grace_days: int = DEFAULT_GRACE_DAYS,
    progress: Callable[[str], None] | None = None,
) -> tuple[Validation, LifecycleSummary | DataContractError | None]:
    """What ``healthscore validate`` shows: the validation (tables left out, they stay in
    DuckDB) and, when it has no errors, the lifecycle summary (or the error that stops
    it, for the caller to raise once the table is shown). Only accounts and
    subscriptions come into pandas."""
    import duckdb

    from pipelines.ingest import fetch_tables, validate_into

    con = duckdb.connect()
    try:
        validation = validate_into(con, data_dir, progress=progress)
        summary = None
        if validation.ok:
            small = fetch_tables(con, {n: validation.tables[n] for n in ("accounts", "subscriptions")})
            try:
                summary = summarise_lifecycle(small, grace_days, as_of=reports_end_date(validation))
            except DataContractError as exc:  # raised after the table is shown
                summary = exc
        validation.tables = {}
    finally:
        con.close()
    return validation, summary


def summarise_lifecycle(
    tables: dict[str, pd.DataFrame], grace_days: int = DEFAULT_GRACE_DAYS,
    as_of: pd.Timestamp | None = None,
) -> LifecycleSummary:
    """Derive activity and renewal outcomes as of the data's last day (``as_of``: that
    day when already known; then only accounts and subscriptions are needed)."""
    as_of = as_of if as_of is not None else data_end_date(tables)
    outcomes = renewal_outcomes(tables["subscriptions"], as_of, grace_days)
    counts = outcomes["outcome"].value_counts()
    by_status = int(((outcomes["outcome"] == "churned") & (outcomes["decided_by"] == "status")).sum())
    return LifecycleSummary(
        as_of=as_of,
        accounts=len(tables["accounts"]),
        active=len(active_accounts(tables["subscriptions"], as_of)),
        renewed=int(counts.get("renewed", 0)),
        churned=int(counts.get("churned", 0)),
        churned_by_status=by_status,
        pending=int(counts.get("pending", 0)),
    )
