"""The metric store: one DuckDB file that every stage reads, kept up to date incrementally.

    data folder --validate--> src_<source>        the validated sources
                --diff------> _stale              accounts whose data changed, from which day
    src_events  --rollup----> account_day, user_day, key_user_day, value_day
    rollups + sources --engine--> peak_inputs, metric_history   (per snapshot date)
    score runs ------------> score_history, alerts              (pipelines.score)

A run opens the store (:func:`opened`), brings it up to date with the data folder
(:meth:`Store.sync`), and asks for the metric history at the dates it needs
(:meth:`Store.history`). Nothing already there and current is computed again:

* **Sources.** A file whose size, modification time and content hash are unchanged is
  not read. When a file changed, the folder is validated again and each source is
  compared with the stored one by a digest per account and day (the row count and a
  sum of row hashes), so appended weeks, late rows, edits and deletions all show up as
  the exact (account, day) keys they touch.
* **Daily rollups** are recomputed for the changed (account, day) keys of events only.
* **Snapshots.** A change of account A on day d makes A's rows at every stored snapshot
  on or after d stale (the days since last activity and the onboarding metrics reach
  back without limit, so "on or after" is the exact reach). Those rows are recomputed
  for A alone; new snapshot dates are computed for everyone.
* **Definitions.** The metric config and the code of ``features/`` are fingerprinted;
  a change drops the rollups and the history, which are then rebuilt.

The metric values at (account, D) depend only on data stamped up to D and on D itself
(the engine's point-in-time property), which is what makes keeping them sound.

Where the metrics are computed is pluggable (:class:`InDuckDB`, the default, or
:class:`pipelines.spark.InSpark` when ``engine.name`` is ``spark``): the same
``features.engine`` expressions over the store's tables, run by the store's own DuckDB
or by Spark over Parquet mirrors of those tables, and their rows inserted here. The
bookkeeping (validation, digests, what is stale or new) is always DuckDB's.

Runs take turns: the store is locked (``<store>.lock``, an advisory lock the operating
system frees when a process dies) while a run uses it. Each run's changes are one
DuckDB transaction: a run that fails or is killed leaves the store as it was.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import duckdb
import ibis
import ibis.expr.types as ir
import pandas as pd
import pyarrow as pa

import features
from features.catalog import available_columns
from features.engine import ROLLUPS, daily_rollups, metric_history, peak_inputs
from healthscore import __version__
from healthscore.config import Config
from healthscore.contract import SOURCES
from healthscore.errors import HealthscoreError
from pipelines.io import find_sources, locked

KEYS = ["account_id", "as_of_date"]
# Account-dates computed in one batch (see Store._batches): of the metric history, and
# of the peak inputs (two narrow columns).
BATCH_ROWS = 1_000_000
PEAK_BATCH_ROWS = 5_000_000
DEFAULT_PATH = Path("outputs") / "store.duckdb"
Progress = Callable[[str], None]


@dataclass
class Changes:
    """What a :meth:`Store.sync` found: sources re-read, and the rows that changed."""

    read: list[str] = field(default_factory=list)  # sources whose files were read
    changed_keys: dict[str, int] = field(default_factory=dict)  # source -> (account, day) keys
    stale_accounts: int = 0
    rebuilt: bool = False  # the definitions changed: rollups and history were dropped


def store_path(path: Path | str | None) -> Path:
    """The store file: ``path``, else ``$HEALTHSCORE_STORE``, else ``outputs/store.duckdb``."""
    return Path(path or os.environ.get("HEALTHSCORE_STORE") or DEFAULT_PATH)


@contextlib.contextmanager
def opened(path: Path, config: Config, progress: Progress | None = None) -> Iterator[Store]:
    """Open (or create) the store at ``path`` for one run: locked, one transaction.

    Commits when the block ends normally; on any error (or a kill) nothing the block
    did reaches the file.
    """
    from pipelines.config import memory_size as _size

    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.with_name(f".{path.name}.lock")
    with locked(lock, f"the store {path}", progress):
        try:
            con = duckdb.connect(str(path))
        except duckdb.Error as exc:
            raise HealthscoreError(f"{path}: cannot open the metric store "
                                   f"({str(exc).splitlines()[0][:200]})") from None
        try:
            con.execute(f"SET memory_limit = '{_size(config.engine.memory_limit)}'")
            spill = path.with_name(f".{path.name}.spill")
            con.execute(f"SET temp_directory = '{_sql_text(str(spill.resolve()))}'")
            con.execute("BEGIN TRANSACTION")
            store = Store(con, config, path)
            try:
                yield store
                store.engine.close()
            except BaseException:
                # The transaction may be aborted: the engine frees its own things
                # without asking DuckDB, and never hides the run's error.
                with contextlib.suppress(Exception):
                    store.engine.close(failed=True)
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
        except duckdb.OutOfMemoryException as exc:
            raise HealthscoreError(
                f"the metric store ran out of its {_size(config.engine.memory_limit)} memory "
                f"limit ({str(exc).splitlines()[0][:160]}). Raise engine.memory_limit "
                "(or --memory-limit)") from None
        finally:
            con.close()


class Store:
    """One open store (see :func:`opened`): its DuckDB connection and an Ibis view of it."""

    def __init__(self, con: duckdb.DuckDBPyConnection, config: Config, path: Path) -> None:
        self.con = con
        self.config = config
        self.path = path
        self.ibis = ibis.duckdb.from_connection(con)
        self.con.execute("CREATE TABLE IF NOT EXISTS _meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
        self.con.execute("CREATE TABLE IF NOT EXISTS _files (source VARCHAR PRIMARY KEY, "
                         "path VARCHAR, size BIGINT, mtime_ns BIGINT, digest VARCHAR)")
        self.con.execute("CREATE TABLE IF NOT EXISTS _stale (account_id VARCHAR, from_day DATE)")
        self.con.execute("CREATE TABLE IF NOT EXISTS _snapshots (as_of_date DATE PRIMARY KEY, "
                         "full_row BOOLEAN)")
        self._temp = 0
        # Rows the metric engine produced this run, per store table (what was computed).
        self.produced: dict[str, int] = {}
        if config.engine.name == "spark":
            from pipelines.spark import InSpark

            self.engine: InDuckDB = InSpark(self)
        else:
            self.engine = InDuckDB(self)

    # -- sources -------------------------------------------------------------------------

    @property
    def sources(self) -> list[str]:
        """The contract sources the store holds, in contract order."""
        names = self.table_names()
        return [s for s in SOURCES if f"src_{s}" in names]

    def table(self, source: str) -> ir.Table:
        """A validated source as an Ibis table."""
        return self.ibis.table(f"src_{source}")

    def tables(self) -> dict[str, ir.Table]:
        return {s: self.table(s) for s in self.sources}

    def frame(self, source: str) -> pd.DataFrame:
        """A validated source as a pandas frame: for the small sources (accounts,
        subscriptions), never for events."""
        return self.con.sql(f"SELECT * FROM src_{source}").df()

    def columns(self) -> dict[str, frozenset[str]]:
        """Source -> its columns (what :func:`features.catalog.catalog` checks)."""
        return available_columns(self.tables())

    def own_columns(self) -> tuple[str, ...]:
        """The numeric columns of ``account_metrics`` (bring-your-own metrics)."""
        if "account_metrics" not in self.sources:
            return ()
        schema = self.table("account_metrics").schema()
        return tuple(c for c, t in schema.items() if c not in KEYS and t.is_numeric())

    def end_date(self) -> dt.date:
        """The last day with a recorded activity: the natural "as of" of the data."""
        ends = [self.con.execute(f"SELECT max({SOURCES[s].date_column}) FROM src_{s}").fetchall()[0][0]
                for s in self.sources if s not in ("accounts", "subscriptions")]
        ends = [pd.Timestamp(e).date() for e in ends if e is not None]
        if not ends:
            raise HealthscoreError("the data has no dated activity to take an as-of date from")
        return max(ends)

    def first_day(self) -> dt.date:
        """The first day of the data: the first term's start or the first event."""
        starts = self.con.execute("SELECT min(start_date) FROM src_subscriptions").fetchall()[0][0]
        first = self.con.execute("SELECT min(timestamp) FROM src_events").fetchall()[0][0]
        return min(pd.Timestamp(t) for t in (starts, first) if t is not None).date()

    def row_counts(self) -> dict[str, int]:
        """Source -> its number of validated rows."""
        return {s: self.con.execute(f"SELECT count(*) FROM src_{s}").fetchall()[0][0]
                for s in self.sources}

    def record_days(self, source: str, as_of: dt.date) -> list[dt.date]:
        """The distinct days with a record of ``source`` up to ``as_of`` (for freshness)."""
        column = SOURCES[source].date_column
        rows = self.con.execute(
            f"SELECT DISTINCT CAST({column} AS DATE) FROM src_{source} "
            f"WHERE CAST({column} AS DATE) <= ? ORDER BY 1", [as_of]).fetchall()
        return [r[0] for r in rows]

    def sync(self, data, progress: Progress | None = None) -> Changes:
        """Bring the validated sources up to the data folder (or database), and mark what
        changed as stale.

        Raises:
            DataContractError: The data breaks the contract (nothing is changed).
        """
        say = progress or (lambda m: None)
        changes = Changes()
        stored = self._files()
        files = _fingerprints(data, stored)
        if files is not None and _contents(files) == _contents(stored) \
                and set(self.sources) == set(files) and not self._future_due():
            self._record_files(files)  # a touched file keeps its content: nothing to read
            self._check_definitions(changes)
            return changes
        plan = self._parts_plan(files, stored)
        if plan is None:
            say("validating the data")
            validated = self._validate(data, files)
            changes.read = sorted(validated)
            for name in list(self.sources):
                if name not in validated:  # a source that disappeared
                    self.con.execute(f"DROP TABLE src_{name}")
                    self.con.execute(f"DROP TABLE IF EXISTS _digest_{name}")
                    self.con.execute(f"DROP TABLE IF EXISTS _read_{name}")
                    self._forget(f"src_{name}")
            for name, new in validated.items():
                changed = self._replace_source(name, new)
                if changed:
                    changes.changed_keys[name] = changed
        else:
            say(f"validating what changed in {', '.join(plan)}")
            for name, how in self._validate_changed(data, plan).items():
                say(f"{name}: {'the changed days' if how == 'part' else 'the whole file'} read")
                changed = self._merge_part(name) if how == "part" else \
                    self._replace_source(name, f"new_{name}")
                changes.read.append(name)
                if changed:
                    changes.changed_keys[name] = changed
        self._record_files(files or {})
        self._check_definitions(changes)
        if not changes.rebuilt and "events" in changes.changed_keys:
            say("updating the daily rollups")
            self._update_rollups()
        self.con.execute("DROP TABLE IF EXISTS _changes_events")
        changes.stale_accounts = self.con.execute(
            "SELECT count(DISTINCT account_id) FROM _stale").fetchall()[0][0]
        return changes

    def _record_files(self, files: dict[str, tuple]) -> None:
        self.con.execute("DELETE FROM _files")
        for name, (path, size, mtime, digest) in files.items():
            self.con.execute("INSERT INTO _files VALUES (?, ?, ?, ?, ?)",
                             [name, path, size, mtime, digest])

    def _meta(self, key: str) -> str | None:
        row = self.con.execute("SELECT value FROM _meta WHERE key = ?", [key]).fetchall()
        return row[0][0] if row else None

    def _set_meta(self, key: str, value: str) -> None:
        self.con.execute("INSERT OR REPLACE INTO _meta VALUES (?, ?)", [key, value])

    def _validate(self, data, files: dict[str, tuple] | None) -> dict[str, str]:
        """Validate every source of ``data`` in DuckDB, straight from the files, into
        ``new_<source>`` tables (see :mod:`pipelines.ingest`); keep what a later run
        needs to read only what changed (each file's read digest, the accounts' ids).

        Raises:
            DataContractError: The data breaks the contract.
        """
        from pipelines.ingest import PARTED, validate_into
        from pipelines.validate import raise_if_broken

        # The validator numbers a new table's rows by its rowid, which counts from 0 only
        # outside a transaction (inside one, a new table's rowids start at 2**55). So it
        # runs between two transactions: all it creates are the new_<source> tables,
        # which a run that fails later leaves unused (the next run replaces them), and
        # temporary tables; the store's own tables change only in the transaction that
        # follows.
        self.con.execute("COMMIT")
        try:
            for name in PARTED:
                self.con.execute(f"DROP TABLE IF EXISTS temp.main._new_read_{name}")
            validation = validate_into(self.con, data, table_prefix="new_",
                                       account_ids_table="_new_account_ids",
                                       read_digests="_new_read_" if files is not None else None)
        finally:
            self.con.execute("BEGIN TRANSACTION")
        raise_if_broken(validation, data)
        self._keep_read_digests(PARTED)
        self.con.execute("DROP TABLE IF EXISTS _account_ids")
        if self.con.execute("SELECT count(*) FROM duckdb_tables() WHERE temporary "
                            "AND table_name = '_new_account_ids'").fetchall()[0][0]:
            self.con.execute("CREATE TABLE _account_ids AS SELECT * FROM _new_account_ids")
            self.con.execute("DROP TABLE _new_account_ids")
            self._set_meta("account_ids", "yes")
        else:
            self._set_meta("account_ids", "no")  # no reference check (no accounts' ids)
        self._record_validation(validation.reports, _today(), parts=set())
        return dict(validation.tables)

    def _record_validation(self, reports: dict, today: dt.date, parts: set[str]) -> None:
        """What a later run must know to trust rows it does not read again: the
        validator's code, the day "in the future" was judged against, and how many
        rows of each source were dropped as in the future then (a source read in
        ``parts`` adds its part's to those of the rows it kept, judged the same day)."""
        self._set_meta("validator", _validator_code())
        for name, report in reports.items():
            future = sum(p.count for p in report.problems if p.rule.endswith(".future"))
            if name in parts:
                future += int(self._meta(f"future:{name}") or 0)
            self._set_meta(f"future:{name}", str(future))
        self._set_meta("validated_on", today.isoformat())

    def _parts_plan(self, files: dict[str, tuple] | None, stored: dict[str, tuple]) -> dict | None:
        """The changed source files to read alone (source -> path), or None when the
        whole folder must be validated again: a database, a source added or removed, the
        accounts changed (every other source refers to them), a new validator, the
        clock gone back, or a store without what reading alone needs."""
        if files is None or set(files) != set(stored) or set(files) != set(self.sources):
            return None
        changed = {n: Path(f[0]) for n, f in files.items() if f[3] != stored[n][3]}
        if "accounts" in changed or self._meta("validator") != _validator_code():
            return None
        last = self._meta("validated_on")
        if last is None or _today().isoformat() < last or self._future_due():
            return None
        if self._meta("account_ids") is None:
            return None
        return {n: changed[n] for n in SOURCES if n in changed}

    def _future_due(self) -> bool:
        """Whether rows dropped as in the future may have come due: some were, on an
        earlier day than today (the data is then validated whole again)."""
        if self._meta("validated_on") == _today().isoformat():
            return False
        return any(int(v or 0) for (v,) in self.con.execute(
            "SELECT value FROM _meta WHERE key LIKE 'future:%'").fetchall())

    def _validate_changed(self, data, plan: dict[str, Path]) -> dict[str, str]:
        """Validate the changed files of ``plan``, each alone: the rows of its changed
        (account, day) keys only when the store holds its last read digest, else the
        whole file. Returns source -> ``part`` or ``whole``.

        Raises:
            DataContractError: The data breaks the contract (the problems of every
                changed file, each file validated whole, as a full validation words them).
        """
        from healthscore.contract import Validation
        from pipelines.ingest import PARTED, validate_changes_into, validate_source_into
        from pipelines.validate import raise_if_broken

        today = _today()
        ids = "_account_ids" if self._meta("account_ids") == "yes" else None
        names = self.table_names()
        how, reports = {}, {}
        self.con.execute("COMMIT")  # see _validate: the validator runs between transactions
        try:
            for name, path in plan.items():
                report = None
                if name in PARTED and f"_read_{name}" in names:
                    report = validate_changes_into(
                        self.con, name, path, digest=f"_read_{name}", clean=f"src_{name}",
                        account_ids=ids, new_digest=f"_new_read_{name}",
                        changed=f"_part_{name}", table=f"new_{name}")
                    if report is not None and not self._same_columns(f"new_{name}", f"src_{name}"):
                        report = None
                    if report is not None:
                        how[name] = "part"
                if report is None:
                    self.con.execute(f"DROP TABLE IF EXISTS temp.main._new_read_{name}")
                    report = validate_source_into(self.con, name, path, f"new_{name}",
                                                  account_ids_table=ids,
                                                  read_digest=f"_new_read_{name}")
                    how[name] = "whole"
                reports[name] = report
        finally:
            self.con.execute("BEGIN TRANSACTION")
        raise_if_broken(Validation(tables={}, reports=reports), data)
        self._record_validation(reports, today, parts={n for n, m in how.items() if m == "part"})
        self._keep_read_digests([n for n, m in how.items() if m == "whole" and n in PARTED])
        return how

    def _keep_read_digests(self, names) -> None:
        """Replace the stored read digest of each source in ``names`` by the one its
        whole validation just made (none when the file had no usable key columns)."""
        made = {r[0] for r in self.con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE temporary").fetchall()}
        for name in names:
            self.con.execute(f"DROP TABLE IF EXISTS _read_{name}")
            if f"_new_read_{name}" in made:
                self.con.execute(f"CREATE TABLE _read_{name} AS SELECT * FROM _new_read_{name}")
                self.con.execute(f"DROP TABLE _new_read_{name}")

    def _same_columns(self, a: str, b: str) -> bool:
        describe = "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = ? " \
                   "ORDER BY column_index"
        return self.con.execute(describe, [a]).fetchall() == self.con.execute(describe, [b]).fetchall()

    def _merge_part(self, name: str) -> int:
        """Put a source's re-read part in place: its changed keys' rows replace the stored
        ones, and those keys are marked stale. Returns the number of changed keys."""
        day = SOURCES[name].date_column
        keys = f"_part_{name}"
        on = lambda t: f"{t}.account_id = k.account_id AND CAST({t}.{day} AS DATE) = k.day"  # noqa: E731
        self.con.execute(f"DELETE FROM src_{name} USING {keys} AS k WHERE {on(f'src_{name}')}")
        self.con.execute(f"INSERT INTO src_{name} SELECT * FROM new_{name}")
        self.con.execute(f"DROP TABLE new_{name}")
        self.con.execute(f"DELETE FROM _read_{name} USING {keys} AS k "
                         f"WHERE _read_{name}.account_id = k.account_id AND _read_{name}.day = k.day")
        self.con.execute(f"INSERT INTO _read_{name} SELECT n.* FROM _new_read_{name} n "
                         f"SEMI JOIN {keys} k ON n.account_id = k.account_id AND n.day = k.day")
        self.con.execute(f"DROP TABLE _new_read_{name}")
        changed = self.con.execute(f"SELECT count(*) FROM {keys}").fetchall()[0][0]
        if not changed:
            self.con.execute(f"DROP TABLE {keys}")
            return 0
        columns = self.con.sql(f"SELECT * FROM src_{name} LIMIT 0").columns
        part = f"(SELECT * FROM src_{name} s SEMI JOIN {keys} k ON s.account_id = k.account_id " \
               f"AND CAST(s.{day} AS DATE) = k.day)"
        self.con.execute(f"DELETE FROM _digest_{name} USING {keys} AS k "
                         f"WHERE _digest_{name}.account_id = k.account_id AND _digest_{name}.day = k.day")
        self.con.execute(f"INSERT INTO _digest_{name} {_digest_sql(name, part, columns)}")
        self._changed(f"src_{name}")
        self.con.execute(f"INSERT INTO _stale SELECT account_id, min(day) FROM {keys} GROUP BY 1")
        if name == "events":
            self.con.execute(f"CREATE OR REPLACE TEMP TABLE _changes_events AS SELECT * FROM {keys}")
        self.con.execute(f"DROP TABLE {keys}")
        return changed

    def _replace_source(self, name: str, new: str) -> int:
        """Swap in a source's new validated table; mark the (account, day) keys whose rows
        differ as stale. Returns the number of changed keys."""
        digest = _digest_sql(name, new, self.con.sql(f"SELECT * FROM {new} LIMIT 0").columns)
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE _new_digest AS {digest}")
        if f"_digest_{name}" in self.table_names():
            self.con.execute(f"""
                CREATE OR REPLACE TEMP TABLE _changes AS
                SELECT account_id, day FROM _digest_{name} AS o
                FULL JOIN _new_digest AS n USING (account_id, day)
                WHERE o.n IS DISTINCT FROM n.n OR o.h IS DISTINCT FROM n.h""")
        else:
            self.con.execute("CREATE OR REPLACE TEMP TABLE _changes AS "
                             "SELECT account_id, day FROM _new_digest")
        changed = self.con.execute("SELECT count(*) FROM _changes").fetchall()[0][0]
        self.con.execute(f"CREATE OR REPLACE TABLE _digest_{name} AS SELECT * FROM _new_digest")
        if changed or f"src_{name}" not in self.table_names():
            self.con.execute(f"DROP TABLE IF EXISTS src_{name}")
            self.con.execute(f"ALTER TABLE {new} RENAME TO src_{name}")
            self._changed(f"src_{name}")
        else:
            self.con.execute(f"DROP TABLE {new}")
        if changed:
            self.con.execute("INSERT INTO _stale SELECT account_id, min(day) FROM _changes GROUP BY 1")
            if name == "events":
                self.con.execute("CREATE OR REPLACE TEMP TABLE _changes_events AS "
                                 "SELECT * FROM _changes")
        return changed

    # -- definitions ---------------------------------------------------------------------

    def _check_definitions(self, changes: Changes) -> None:
        """Drop the rollups and the history when the definitions that made them changed
        (metric config, ``features/`` code, the sources' columns)."""
        now = self._definitions()
        if self._meta("definitions") == now and all(r in self.table_names() for r in ROLLUPS):
            return
        for name in (*ROLLUPS, "peak_inputs", "metric_history"):
            self.con.execute(f"DROP TABLE IF EXISTS {name}")
            self._forget(name)
        self.con.execute("DELETE FROM _snapshots")
        self.con.execute("DELETE FROM _stale")
        self._set_meta("definitions", now)
        changes.rebuilt = True
        if "events" in self.sources:
            self._build_rollups()

    def _definitions(self) -> str:
        """A fingerprint of everything metric values depend on besides the data."""
        m = self.config.metrics.model_dump(mode="json")
        for setting in ("snapshot_every_days", "history_days"):  # which dates, not values
            m.pop(setting, None)
        code = hashlib.sha256()
        for file in sorted(resources.files(features).iterdir(), key=lambda f: f.name):
            if file.name.endswith(".py"):
                code.update(file.name.encode() + file.read_bytes())
        columns = {s: sorted(c) for s, c in self.columns().items()}
        text = json.dumps({"metrics": m, "code": code.hexdigest(), "version": __version__,
                           "columns": columns}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    # -- rollups -------------------------------------------------------------------------

    def rollups(self) -> dict[str, ir.Table]:
        return {name: self.ibis.table(name) for name in ROLLUPS}

    def _build_rollups(self) -> None:
        def create(name: str, expr: ir.Table) -> ir.Table:
            self.con.execute(f"DROP TABLE IF EXISTS {name}")
            self._write(name, expr)
            return self.engine.table(name)

        # user_day is written first, and account_day counts its users from it.
        daily_rollups(self.engine.table("src_events"), self.config.metrics, create)

    def _update_rollups(self) -> None:
        """Recompute the rollup rows of the changed (account, day) keys of events."""
        events = self.table("events")
        keys = self.ibis.table("_changes_events")
        events = events.mutate(_day=events.timestamp.date())
        events = events.semi_join(keys, [events.account_id == keys.account_id,
                                         events._day == keys.day]).drop("_day")
        # Only the changed days' events go to the engine (on Spark: a Parquet slice, not
        # a new mirror of the whole events table).
        for name in ROLLUPS:
            self.con.execute(f"DELETE FROM {name} USING _changes_events AS k "
                             f"WHERE {name}.account_id = k.account_id AND {name}.day = k.day")
            self._changed(name)

        def append(name: str, expr: ir.Table) -> ir.Table:
            self._write(name, expr)
            # The changed days' rows alone (account_day counts its users from user_day's).
            rows = self.ibis.table(name)
            rows = rows.semi_join(keys, [rows.account_id == keys.account_id, rows.day == keys.day])
            return self.engine.from_store(rows)

        daily_rollups(self.engine.from_store(events), self.config.metrics, append)

    def _engine_rollups(self) -> dict[str, ir.Table]:
        """The rollups as the metric engine reads them."""
        return {name: self.engine.table(name) for name in ROLLUPS}

    def _engine_tables(self) -> dict[str, ir.Table]:
        """The validated sources as the metric engine reads them. With the rollups given,
        the engine reads only the events' columns (which metrics exist), never their
        rows: the events are the one source not mirrored for every run."""
        return {s: self.engine.table(f"src_{s}", rows=s != "events") for s in self.sources}

    # -- snapshots -----------------------------------------------------------------------

    def history(self, snapshots: Sequence[dt.date], peak_dates: Sequence[dt.date] = (),
                progress: Progress | None = None) -> pd.DataFrame:
        """The metric history at ``snapshots``, computing only what the store lacks.

        ``peak_dates``: the earlier dates of the snapshots' trailing year (the fall from
        peak reads the 30-day usage there); their narrow inputs are kept too.
        """
        self.ensure(snapshots, peak_dates, progress)
        return self.read_history(snapshots)

    def ensure(self, snapshots: Sequence[dt.date], peak_dates: Sequence[dt.date] = (),
               progress: Progress | None = None) -> None:
        """Make the store hold the metric history at ``snapshots`` (see :meth:`history`)."""
        say = progress or (lambda m: None)
        self._refresh_stale(say)
        stored = dict(self.con.execute("SELECT as_of_date, full_row FROM _snapshots").fetchall())
        wanted = sorted(set(snapshots) | set(peak_dates))
        new = [d for d in wanted if d not in stored]
        batches = self._batches(new, rows=PEAK_BATCH_ROWS)
        for n, batch in enumerate(batches, 1):
            say(f"computing usage peaks at {len(new)} new date(s)"
                + (f": batch {n} of {len(batches)}" if len(batches) > 1 else ""))
            self._write("peak_inputs", peak_inputs(self._engine_rollups(),
                                                   self.engine.table("src_subscriptions"), batch))
            self.con.executemany("INSERT INTO _snapshots VALUES (?, false)", [[d] for d in batch])
        full = sorted(d for d in set(snapshots) if not stored.get(d))
        batches = self._batches(full)
        for n, batch in enumerate(batches, 1):
            say(f"computing the metrics at {len(full)} new snapshot(s)"
                + (f": batch {n} of {len(batches)}" if len(batches) > 1 else ""))
            self._write("metric_history",
                        self._metrics(self._engine_tables(), self._engine_rollups(), batch))
            self.con.executemany("UPDATE _snapshots SET full_row = true WHERE as_of_date = ?",
                                 [[d] for d in batch])

    def _batches(self, dates: list[dt.date], accounts: int | None = None,
                 rows: int | None = None) -> list[list[dt.date]]:
        """``dates`` in batches of about ``rows`` (default :data:`BATCH_ROWS`)
        account-dates (``accounts``: how many accounts are computed, default all):
        memory then depends on the accounts, not on how long the history is. A date's
        rows do not depend on which dates are computed with it (the engine's
        point-in-time property), so batches change nothing in the values."""
        rows = BATCH_ROWS if rows is None else rows
        if not dates:
            return []
        if accounts is None:
            accounts = self.con.execute(
                "SELECT count(DISTINCT account_id) FROM src_subscriptions").fetchall()[0][0]
        size = max(1, rows // max(accounts, 1))
        return [dates[i:i + size] for i in range(0, len(dates), size)]

    def _refresh_stale(self, say: Progress) -> None:
        """Recompute the stale accounts' rows at every stored date on or after their
        earliest change, then clear the stale marks."""
        stale = self.con.execute("SELECT count(*), min(from_day) FROM _stale").fetchall()[0]
        if not stale[0]:
            return
        since = stale[1]
        dates = dict(self.con.execute("SELECT as_of_date, full_row FROM _snapshots "
                                      "WHERE as_of_date >= ?", [since]).fetchall())
        if dates:
            self.con.execute("CREATE OR REPLACE TEMP TABLE _stale_accounts AS "
                             "SELECT DISTINCT account_id FROM _stale")
            n = self.con.execute("SELECT count(*) FROM _stale_accounts").fetchall()[0][0]
            say(f"recomputing {n:,} changed account(s) at {len(dates)} stored date(s)")
            accounts = self.engine.from_store(self.ibis.table("_stale_accounts"))
            tables = {s: t.semi_join(accounts, "account_id")
                      for s, t in self._engine_tables().items()}
            rollups = {r: t.semi_join(accounts, "account_id")
                       for r, t in self._engine_rollups().items()}
            self.con.execute("DELETE FROM peak_inputs WHERE as_of_date >= ? AND account_id IN "
                             "(SELECT account_id FROM _stale_accounts)", [since])
            self._changed("peak_inputs")
            for batch in self._batches(sorted(dates), n, PEAK_BATCH_ROWS):
                self._write("peak_inputs", peak_inputs(rollups, tables["subscriptions"], batch))
            full = sorted(d for d, f in dates.items() if f)
            if full:
                self.con.execute("DELETE FROM metric_history WHERE as_of_date >= ? AND account_id "
                                 "IN (SELECT account_id FROM _stale_accounts)", [since])
                self._changed("metric_history")
                for batch in self._batches(full, n):
                    self._write("metric_history", self._metrics(tables, rollups, batch))
        self.con.execute("DELETE FROM _stale")

    def _metrics(self, tables, rollups, snapshots: list[dt.date]) -> ir.Table:
        expr = metric_history(tables, snapshots, self.config.metrics,
                              materialize=self.engine.stage, rollups=rollups,
                              peaks=self.engine.table("peak_inputs"))
        # Every metric a float64 column, empty where missing: one type for counts and
        # ratios alike, so a model's input schema never depends on gaps in the data.
        return expr.mutate(**{c: expr[c].cast("float64") for c in expr.columns if c not in KEYS})

    def read_history(self, snapshots: Sequence[dt.date] | None = None) -> pd.DataFrame:
        """Stored metric rows (at ``snapshots``, or all), by account and date."""
        where = ""
        params = []
        if snapshots is not None:
            where, params = "WHERE as_of_date IN (SELECT unnest(?::DATE[]))", [list(snapshots)]
        history = self.con.sql(
            f"SELECT * FROM metric_history {where} ORDER BY account_id, as_of_date", params=params
        ).to_arrow_table().to_pandas()
        history["as_of_date"] = pd.to_datetime(history["as_of_date"]).astype("datetime64[us]")
        return history

    def export_history(self, out: Path, snapshots: Sequence[dt.date]) -> dict:
        """Write the stored metric history at ``snapshots`` to ``out`` (Parquet, CSV or
        CSV.gz by extension) straight from DuckDB, atomically: the history never passes
        through pandas. Returns its size (rows, accounts, dates, first, last, metrics)."""
        from pipelines.io import SUFFIXES, atomic_path, provenance

        suffix = ".csv.gz" if out.name.endswith(".csv.gz") else out.suffix
        if suffix not in SUFFIXES:
            raise HealthscoreError(
                f"{out}: unsupported output format '{suffix}'; use .parquet, .csv or .csv.gz")
        self.con.execute("CREATE OR REPLACE TEMP TABLE _export_dates AS "
                         "SELECT unnest(?::DATE[]) AS as_of_date", [list(snapshots)])
        # Parquet keeps the date as a timestamp (as pandas writes it); CSV as YYYY-MM-DD.
        day = "CAST(as_of_date AS TIMESTAMP)" if suffix == ".parquet" else "as_of_date"
        query = (f"SELECT * REPLACE ({day} AS as_of_date) FROM metric_history "
                 "WHERE as_of_date IN (SELECT as_of_date FROM _export_dates) "
                 "ORDER BY account_id, as_of_date")
        if suffix == ".parquet":
            meta = _sql_text(json.dumps(provenance(), sort_keys=True))
            options = f"FORMAT parquet, KV_METADATA {{healthscore: '{meta}'}}"
        else:
            options = "FORMAT csv, HEADER" + (", COMPRESSION gzip" if suffix == ".csv.gz" else "")
        with atomic_path(out) as tmp:
            self.con.execute(f"COPY ({query}) TO '{_sql_text(str(tmp))}' ({options})")
        rows, accounts, dates, first, last = self.con.execute(
            "SELECT count(*), count(DISTINCT account_id), count(DISTINCT as_of_date), "
            "min(as_of_date), max(as_of_date) FROM metric_history "
            "WHERE as_of_date IN (SELECT as_of_date FROM _export_dates)").fetchall()[0]
        metrics = len(self.con.sql("SELECT * FROM metric_history LIMIT 0").columns) - 2
        return {"rows": rows, "accounts": accounts, "dates": dates, "first": first, "last": last,
                "metrics": metrics}

    # -- helpers -------------------------------------------------------------------------

    def _write(self, name: str, expr: ir.Table) -> None:
        """Compute ``expr`` with the metric engine and append its rows to table ``name``."""
        rows = self.engine.insert(name, expr)
        self.produced[name] = self.produced.get(name, 0) + rows
        self._changed(name)

    def insert_arrow(self, name: str, rows: pa.Table) -> int:
        """Append Arrow rows to table ``name`` by column name (creating it); their count."""
        self.con.register("_arrow_rows", rows)
        try:
            if name in self.table_names():
                self.con.execute(f"INSERT INTO {name} BY NAME SELECT * FROM _arrow_rows")
            else:
                self.con.execute(f"CREATE TABLE {name} AS SELECT * FROM _arrow_rows")
        finally:
            self.con.unregister("_arrow_rows")
        return rows.num_rows

    def version(self, name: str) -> str:
        """The current version of store table ``name``: a new random token each time the
        table changes (:meth:`_changed`), so a copy made of it elsewhere (the Spark
        engine's Parquet mirror) knows whether it is current. A token, not a counter:
        a rolled-back run must not leave a number that a later change reuses."""
        return self._meta(f"version:{name}") or self._changed(name)

    def _changed(self, name: str) -> str:
        token = uuid.uuid4().hex
        self._set_meta(f"version:{name}", token)
        return token

    def _forget(self, name: str) -> None:
        self.con.execute("DELETE FROM _meta WHERE key = ?", [f"version:{name}"])

    def _insert(self, name: str, expr: ir.Table) -> int:
        """Append the rows of DuckDB expression ``expr`` to table ``name`` (by column
        name), creating it; returns the number of rows."""
        if name not in self.table_names():
            self.ibis.create_table(name, expr)
            return self.con.execute(f"SELECT count(*) FROM {name}").fetchall()[0][0]
        # Through Ibis, which registers the expression's in-memory tables (dates).
        # (ibis 12's overwrite=True fails on DuckDB 2.0: drop first.)
        self.con.execute("DROP TABLE IF EXISTS _insert")
        self.ibis.create_table("_insert", expr, temp=True)
        self.con.execute(f"INSERT INTO {name} BY NAME SELECT * FROM _insert")
        rows = self.con.execute("SELECT count(*) FROM _insert").fetchall()[0][0]
        self.con.execute("DROP TABLE _insert")
        return rows

    def _stage(self, expr: ir.Table) -> ir.Table:
        """The engine's intermediate tables: temporary tables of this connection."""
        self._temp += 1
        return self.ibis.create_table(f"_stage_{self._temp}", expr, temp=True)

    def table_names(self) -> set[str]:
        """The store's own (not temporary) tables."""
        return {r[0] for r in self.con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE NOT temporary").fetchall()}

    def _files(self) -> dict[str, tuple]:
        return {r[0]: tuple(r[1:]) for r in self.con.execute("SELECT * FROM _files").fetchall()}


class InDuckDB:
    """The default metric engine: the store's own DuckDB connection runs the expressions
    over the store's tables directly."""

    name = "duckdb"

    def __init__(self, store: Store) -> None:
        self.store = store

    def table(self, name: str, rows: bool = True) -> ir.Table:
        """Store table ``name`` as the engine reads it (``rows=False``: only its columns
        are read; here the table itself)."""
        return self.store.ibis.table(name)

    def from_store(self, expr: ir.Table) -> ir.Table:
        """A DuckDB expression over the store (a slice of it) as the engine reads it."""
        return expr

    def stage(self, expr: ir.Table) -> ir.Table:
        """Compute an intermediate once (the engine's ``materialize``)."""
        return self.store._stage(expr)

    def insert(self, name: str, expr: ir.Table) -> int:
        """Append the rows of ``expr`` to store table ``name``; their number."""
        return self.store._insert(name, expr)

    def close(self, failed: bool = False) -> None:
        """Free what the run held (nothing here). ``failed``: the run's transaction is
        being rolled back."""


def _today() -> dt.date:
    """The day "in the future" is judged against (as :mod:`pipelines.ingest` judges it)."""
    return pd.Timestamp.now("UTC").date()


def _validator_code() -> str:
    """A fingerprint of the validation's code: rows checked by another version of the
    contract are not trusted without being read again."""
    import healthscore.contract
    import pipelines.ingest

    code = hashlib.sha256(__version__.encode())
    for module in (healthscore.contract, pipelines.ingest):
        code.update(Path(module.__file__).read_bytes())
    return code.hexdigest()


def _digest_sql(name: str, table: str, columns: list[str]) -> str:
    """Per account and day of a source's date column: its row count and a sum of row
    hashes (order-free: the same rows in any order give the same digest)."""
    day = SOURCES[name].date_column
    row = ", ".join(f'"{c}"' for c in columns)
    return (f"SELECT account_id, CAST({day} AS DATE) AS day, count(*) AS n, "
            f"sum(hash({row})::HUGEINT) AS h FROM {table} GROUP BY ALL")


def _fingerprints(data, stored: dict[str, tuple]) -> dict[str, tuple] | None:
    """Each source file's (path, size, modification time, content hash); None for a
    database source (always read and compared). A file whose path, size and time are
    as stored keeps its stored hash, unread."""
    text = str(data)
    if "://" in text or Path(text).suffix.lower() in (".duckdb", ".ddb"):
        return None
    out = {}
    for name, path in find_sources(Path(data)).items():
        stat = path.stat()
        known = stored.get(name)
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        if known and tuple(known[:3]) == key:
            out[name] = (*key, known[3])
            continue
        with path.open("rb") as handle:
            digest = hashlib.file_digest(handle, "blake2b").hexdigest()
        out[name] = (*key, digest)
    return out


def _contents(files: dict[str, tuple]) -> dict[str, tuple]:
    """Source -> (path, content hash): what decides whether a file must be read."""
    return {name: (f[0], f[3]) for name, f in files.items()}


def _sql_text(text: str) -> str:
    return text.replace("'", "''")
