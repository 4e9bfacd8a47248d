"""Pipeline stage: data folder -> point-in-time metric history file."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import ibis
import pandas as pd

from features.engine import metric_history, snapshot_dates
from healthscore.config import Config
from healthscore.errors import HealthscoreError
from pipelines.io import write_table
from pipelines.validate import data_end_date, load_data_folder


def parse_as_of(value: str | None) -> dt.date | None:
    """``--as-of`` text to a date (None stays None)."""
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise HealthscoreError(f"--as-of {value!r}: not a date; use YYYY-MM-DD") from None


def compute_metric_history(
    tables: dict[str, pd.DataFrame], as_of: dt.date, config: Config
) -> pd.DataFrame:
    """Run the metric definitions on embedded DuckDB over validated tables."""
    first_day = min(
        tables["subscriptions"]["start_date"].min(), tables["events"]["timestamp"].min()
    ).date()
    snapshots = snapshot_dates(
        as_of, first_day, config.metrics.snapshot_every_days, config.metrics.history_days
    )
    if not snapshots:
        raise HealthscoreError(f"--as-of {as_of}: before the first data ({first_day})")
    con = ibis.duckdb.connect()
    # memtable, not create_table: ibis 12's create_table from a frame fails on DuckDB 2.0
    # ("DROP VIEW IF EXISTS" parser error).
    handles = {name: ibis.memtable(table) for name, table in tables.items()}
    history = con.to_pandas(metric_history(handles, snapshots, config.metrics))
    history["as_of_date"] = pd.to_datetime(history["as_of_date"]).astype("datetime64[us]")
    # A metric empty in every row comes back untyped; metrics are numbers, always.
    metrics = history.columns.drop(["account_id", "as_of_date"])
    untyped = [c for c in metrics if history[c].dtype == object]
    history[untyped] = history[untyped].astype("float64")
    return history


def build_features(data_dir: Path, out: Path, as_of: dt.date | None, config: Config) -> pd.DataFrame:
    """Validate ``data_dir``, build the metric history as of ``as_of`` and write it to ``out``."""
    tables = load_data_folder(data_dir)
    as_of = as_of or data_end_date(tables).date()
    history = compute_metric_history(tables, as_of, config)
    write_table(history, out)
    return history
