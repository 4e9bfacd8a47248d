"""Pipeline stage: data folder -> point-in-time metric history file.

The metric definitions (``features.engine``) run on embedded DuckDB. The ``features``
command validates the data folder, stages the validated tables as Parquet in a
temporary folder, frees them, and lets DuckDB read the Parquet itself: the engine then
works out-of-core, with DuckDB's own memory limit and spilling, and never holds a
pandas copy of the events next to its own.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import duckdb
import ibis
import ibis.expr.types as ir
import pandas as pd
from pydantic import ValidationError

from features.catalog import available_columns, not_built
from features.engine import PEAK_DAYS, metric_history, snapshot_dates
from healthscore.config import Config, EngineConfig
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
    tables: Mapping[str, pd.DataFrame], as_of: dt.date, config: Config,
    snapshots: Sequence[dt.date] | None = None,
) -> pd.DataFrame:
    """The metric history of validated in-memory tables (DuckDB over Arrow views of them)."""
    con = ibis.duckdb.connect()
    # memtable, not create_table: ibis 12's create_table from a frame fails on DuckDB 2.0
    # ("DROP VIEW IF EXISTS" parser error).
    return _run(con, {name: ibis.memtable(table) for name, table in tables.items()}, as_of, config,
                materialize=_stager(con), snapshots=snapshots)


def _stager(con):
    """DuckDB's way to compute an intermediate once: a temporary table of its own."""
    names = (f"_stage_{i}" for i in itertools.count())
    return lambda t: con.create_table(next(names), t, temp=True)


def metric_history_from_parquet(
    folder: Path, as_of: dt.date, config: Config, memory_limit: str | None = None,
    snapshots: Sequence[dt.date] | None = None,
) -> pd.DataFrame:
    """The metric history of validated tables staged as ``folder/<source>.parquet``.

    DuckDB scans the files itself (out-of-core). Its memory is capped at
    ``memory_limit`` (DuckDB syntax, e.g. ``"2GB"``; default ``engine.memory_limit`` of
    the config); beyond it, DuckDB spills to ``folder/spill``.
    """
    con = ibis.duckdb.connect()
    con.raw_sql(f"SET memory_limit = '{_size(memory_limit or config.engine.memory_limit)}'")
    con.raw_sql(f"SET temp_directory = '{_sql_path(folder / 'spill')}'")
    handles = {p.stem: con.read_parquet(p, table_name=f"src_{p.stem}")
               for p in sorted(folder.glob("*.parquet"))}
    try:
        return _run(con, handles, as_of, config, materialize=_stager(con), snapshots=snapshots)
    except duckdb.OutOfMemoryException as exc:
        limit = _size(memory_limit or config.engine.memory_limit)
        raise HealthscoreError(
            f"the metric engine ran out of its {limit} memory limit "
            f"({str(exc).splitlines()[0][:160]}). Raise it with --memory-limit or "
            "engine.memory_limit; it must exceed the metric history's own size (about 8 bytes "
            "x metrics x accounts x snapshots)") from None


def metric_history_on_spark(folder: Path, as_of: dt.date, config: Config,
                            snapshots: Sequence[dt.date] | None = None) -> pd.DataFrame:
    """The same metric history, with the same definitions, computed by Spark
    (``engine.spark_master``) over the staged Parquet files."""
    from pipelines import spark

    con = spark.connect(config.engine)
    keep = spark.stager(con)
    try:
        return _run(con, spark.read_staged(con, folder), as_of, config, materialize=keep,
                    snapshots=snapshots)
    finally:
        keep.release()


def _sql_path(path: Path) -> str:
    """A path inside a SQL string literal."""
    return str(path.resolve()).replace("'", "''")


def _run(con, handles: Mapping[str, ir.Table], as_of: dt.date, config: Config,
         materialize=None, snapshots: Sequence[dt.date] | None = None) -> pd.DataFrame:
    starts = con.execute(handles["subscriptions"].start_date.min())
    first_event = con.execute(handles["events"].timestamp.min())
    first_day = min(pd.Timestamp(t) for t in (starts, first_event) if t is not None).date()
    m = config.metrics
    every = m.snapshot_every_days
    if snapshots is None:
        snapshots = snapshot_dates(as_of, first_day, every, m.history_days)
        back = m.history_days
    else:  # chosen dates, on the cadence's grid anchored on as_of
        snapshots = sorted(d for d in set(snapshots) if first_day <= d <= as_of)
        if any((as_of - d).days % every for d in snapshots):
            raise ValueError(f"snapshots must lie a multiple of {every} days before {as_of}")
        back = (as_of - snapshots[0]).days if snapshots else None
    if not snapshots:
        raise HealthscoreError(f"--as-of {as_of}: before the first data ({first_day})")
    # A short history still needs the trailing year of snapshots behind its first one
    # for the fall-from-peak metrics: the engine counts just the peak's inputs there.
    peak_snapshots = []
    if back is not None:
        peak_snapshots = snapshot_dates(as_of, first_day, every, back + PEAK_DAYS)
    expr = metric_history(handles, snapshots, config.metrics, materialize=materialize,
                          peak_snapshots=peak_snapshots)
    # Through Arrow: several times faster than the backend's own to_pandas here.
    history = con.to_pyarrow(expr).to_pandas()
    history["as_of_date"] = pd.to_datetime(history["as_of_date"]).astype("datetime64[us]")
    history = history.sort_values(["account_id", "as_of_date"], ignore_index=True)
    # Every metric is a float64 column, empty where missing: one type for counts and
    # ratios alike, so a model's input schema never depends on whether a column happened
    # to have gaps (and a metric empty in every row comes back untyped otherwise).
    metrics = history.columns.drop(["account_id", "as_of_date"])
    history[metrics] = history[metrics].astype("float64")
    return history


def metrics_not_built(tables: Mapping[str, pd.DataFrame], config: Config) -> list[str]:
    """The metrics the validated tables cannot support, in words (one line per absent
    optional source or column; see :func:`features.catalog.not_built`)."""
    return not_built(config.metrics, available_columns(tables), own_columns_of(tables))


def own_columns_of(tables: Mapping[str, pd.DataFrame]) -> tuple[str, ...]:
    """The numeric columns of ``account_metrics`` (bring-your-own metrics)."""
    if "account_metrics" not in tables:
        return ()
    frame = tables["account_metrics"]
    return tuple(c for c in frame.columns if c not in ("account_id", "as_of_date")
                 and pd.api.types.is_numeric_dtype(frame[c]))


def _size(text: str) -> str:
    """A DuckDB memory size such as ``2GB`` or ``512MB``, checked by the config's rule
    (it goes into SQL); ``auto`` is half of the physical memory.

    >>> _size(" 2 gb ")
    '2GB'
    """
    try:
        size = EngineConfig(memory_limit=text).memory_limit.strip().upper().replace(" ", "")
    except ValidationError:
        raise HealthscoreError(f"memory limit {text!r}: use a size such as 2GB or 512MB, "
                               "or auto") from None
    if size == "AUTO":
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        size = f"{max(physical // 2 // 2**20, 512)}MB"
    return size


def build_features(
    data_dir: Path, out: Path, as_of: dt.date | None, config: Config,
    memory_limit: str | None = None, progress: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Validate ``data_dir``, build the metric history as of ``as_of`` and write it to ``out``.

    ``progress`` hears, once, each metric the data cannot support and why.
    """
    tables = load_data_folder(data_dir)
    as_of = as_of or data_end_date(tables).date()
    for line in metrics_not_built(tables, config):
        (progress or print)(f"not built: {line}")
    history = stage_and_build(tables, as_of, config, memory_limit)
    write_table(history, out)
    return history


def stage_and_build(tables: dict[str, pd.DataFrame], as_of: dt.date, config: Config,
                    memory_limit: str | None = None,
                    snapshots: Sequence[dt.date] | None = None) -> pd.DataFrame:
    """Stage validated tables as Parquet, free them, and build the metric history.

    ``snapshots``: only these dates (each a multiple of the snapshot cadence before
    ``as_of``) instead of the config's history; their metrics equal the full history's.

    ``tables`` is emptied as it is staged, so its memory can go back before DuckDB
    starts; keep your own reference to any table you still need.
    """
    with tempfile.TemporaryDirectory(prefix="healthscore-stage-") as stage:
        for name in list(tables):
            tables.pop(name).to_parquet(Path(stage) / f"{name}.parquet", index=False)
        if config.engine.name == "spark":
            return metric_history_on_spark(Path(stage), as_of, config, snapshots)
        return metric_history_from_parquet(Path(stage), as_of, config, memory_limit, snapshots)
