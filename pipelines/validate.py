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


def summarise_lifecycle(
    tables: dict[str, pd.DataFrame], grace_days: int = DEFAULT_GRACE_DAYS
) -> LifecycleSummary:
    """Derive activity and renewal outcomes as of the data's last day."""
    as_of = data_end_date(tables)
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
