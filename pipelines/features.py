"""Pipeline stage: data folder -> point-in-time metric history.

Every stage gets its data through :func:`load_book`: the metric store
(:mod:`pipelines.store`, one DuckDB file) is brought up to date with the data folder,
computes only the snapshots it lacks, and hands back the metric history at the dates
the stage asks for, with the few small tables and facts the stage needs besides
(accounts, subscriptions, each source's record days). The events never pass through
pandas. The ``features`` command writes the history to a file (an export).

On Spark (``engine.name: spark``) the store is the same and so is its bookkeeping; only
the metric computation runs on Spark, over Parquet mirrors of the store's tables
(:class:`pipelines.spark.InSpark`). :func:`stage_and_build` computes a whole history
from validated in-memory tables instead, on either engine, without a store.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import ibis
import ibis.expr.types as ir
import pandas as pd

from features.catalog import available_columns, not_built
from features.engine import PEAK_DAYS, metric_history, snapshot_dates
from healthscore.config import Config
from healthscore.contract import SOURCES
from healthscore.errors import HealthscoreError
from pipelines.config import memory_size as _size
from pipelines.io import write_table
from pipelines.validate import data_end_date, load_data_folder


@dataclass
class Book:
    """What a stage reads from the data: the metric history at the dates it asked for,
    and the small tables and facts it needs besides (never the events themselves).

    Attributes:
        as_of: The as-of date (the data's last day unless given).
        history: Metric history, one row per account active at each snapshot, sorted
            by account and date; every metric a float64 column.
        accounts: The validated ``accounts`` table.
        subscriptions: The validated ``subscriptions`` table.
        columns: Source -> its columns (what the metric catalog checks).
        own_columns: The numeric columns of ``account_metrics``.
        rows: Source -> its number of validated rows.
        record_days: Source -> the distinct days it has records on (by its date
            column), up to the as-of date, oldest first (for data freshness).
    """

    as_of: dt.date
    history: pd.DataFrame
    accounts: pd.DataFrame
    subscriptions: pd.DataFrame
    columns: dict[str, frozenset[str]]
    own_columns: tuple[str, ...]
    rows: dict[str, int] = field(default_factory=dict)
    record_days: dict[str, list[dt.date]] = field(default_factory=dict)

    def not_built(self, config: Config) -> list[str]:
        """The metrics this data cannot support, in words."""
        return not_built(config.metrics, self.columns, self.own_columns)


def load_book(data, as_of: dt.date | None, config: Config, *,
              snapshots: Sequence[dt.date] | Callable[[dt.date], Sequence[dt.date]] | None = None,
              history_days: int | None = None,
              store: Path | None = None, progress: Callable[[str], None] | None = None) -> Book:
    """Bring the metric store up to date with ``data`` and read the history from it.

    Args:
        data: A data folder, DuckDB file or database URL (see ``pipelines.io``).
        as_of: The last snapshot date; default the data's last day.
        snapshots: Only these dates (each a multiple of the snapshot cadence before
            ``as_of``), or a function of the as-of date that gives them; default the
            config's history (``history_days`` overrides its length). Their metrics
            equal the full history's.
        store: The store file; default a temporary one for this call alone.
        progress: Hears what is being computed.

    Raises:
        DataContractError: The data breaks the contract.
        HealthscoreError: ``as_of`` lies before the first data.
    """
    if snapshots is not None and not callable(snapshots):
        snapshots = list(snapshots)
    from pipelines import store as metric_store

    with _store_file(store) as path, metric_store.opened(path, config, progress) as s:
        s.sync(data, progress)
        as_of = as_of or s.end_date()
        if callable(snapshots):
            snapshots = snapshots(as_of)
        first = s.first_day()
        dates, peaks = history_dates(as_of, first, config, snapshots, history_days)
        history = s.history(dates, peaks, progress)
        return Book(as_of, history, s.frame("accounts"), s.frame("subscriptions"), s.columns(),
                    s.own_columns(), s.row_counts(),
                    {name: s.record_days(name, as_of) for name in s.sources})


def history_dates(as_of: dt.date, first_day: dt.date, config: Config,
                  snapshots: Sequence[dt.date] | None = None, history_days: int | None = None,
                  ) -> tuple[list[dt.date], list[dt.date]]:
    """The snapshot dates of a history as of ``as_of``, and the earlier dates of their
    trailing year that the fall from peak reads.

    Raises:
        HealthscoreError: No snapshot lies between the first data and ``as_of``.
        ValueError: A chosen snapshot is off the cadence's grid.
    """
    m = config.metrics
    every = m.snapshot_every_days
    if snapshots is None:
        back = history_days if history_days is not None else m.history_days
        dates = snapshot_dates(as_of, first_day, every, back)
    else:
        dates = sorted(d for d in set(snapshots) if first_day <= d <= as_of)
        if any((as_of - d).days % every for d in dates):
            raise ValueError(f"snapshots must lie a multiple of {every} days before {as_of}")
    if not dates:
        raise HealthscoreError(f"--as-of {as_of}: before the first data ({first_day})")
    peaks = snapshot_dates(as_of, first_day, every, (as_of - dates[0]).days + PEAK_DAYS)
    return dates, peaks


@contextlib.contextmanager
def _store_file(store: Path | None) -> Iterator[Path]:
    if store is not None:
        yield Path(store)
        return
    with tempfile.TemporaryDirectory(prefix="healthscore-store-") as folder:
        yield Path(folder) / "store.duckdb"


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
    # A short history still needs the trailing year of snapshots behind its first one
    # for the fall-from-peak metrics: the engine counts just the peak's inputs there.
    snapshots, peak_snapshots = history_dates(as_of, first_day, config, snapshots)
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


def build_features(
    data_dir, out: Path, as_of: dt.date | None, config: Config,
    memory_limit: str | None = None, progress: Callable[[str], None] | None = None,
    store: Path | None = None,
) -> dict:
    """Bring the metric store up to ``data_dir`` and export the metric history as of
    ``as_of`` to ``out`` (the stages read the store, not this file).

    The history goes from the store to the file without passing through pandas, on
    either engine. ``progress`` hears, once, each metric the data cannot support and why.

    Returns:
        The export's size: rows, accounts, dates, first and last date, metrics.
    """
    say = progress or print
    if memory_limit:
        config = config.model_copy(update={"engine": config.engine.model_copy(
            update={"memory_limit": memory_limit})})
    from pipelines import store as metric_store

    with _store_file(store) as path, metric_store.opened(path, config, progress) as s:
        s.sync(data_dir, progress)
        as_of = as_of or s.end_date()
        dates, peaks = history_dates(as_of, s.first_day(), config)
        s.ensure(dates, peaks, progress)
        for line in not_built(config.metrics, s.columns(), s.own_columns()):
            say(f"not built: {line}")
        return s.export_history(Path(out), dates)


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
