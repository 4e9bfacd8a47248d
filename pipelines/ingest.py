"""Validating the data contract in DuckDB, straight from the files.

The same contract as :func:`healthscore.contract.validate_sources`, with the same
problems (word for word), drops, reports and clean tables, but DuckDB reads the files
itself and checks them in SQL, so a 40-million-row events file never becomes a pandas
table:

    file -> DuckDB raw relation (_row, c0, c1, ...)                 (read, no parsing)
         -> parsed table: every contract column typed, with a "bad" flag   (one pass)
         -> per rule, in SQL: how many rows break it and the first of them
         -> that first row only, fetched into pandas, worded by the contract's own
            ``_Checker`` (so the text is the pandas path's by construction)
         -> clean table ``{prefix}{name}`` (rows with drops removed), in DuckDB.

Exactness comes from three choices:

* **Values.** A value in a canonical spelling (``2024-03-01``, ``2024-03-01T09:15:00``,
  ``-12.5``...) is parsed by DuckDB, which agrees with the contract's parser on every
  such spelling (tested). Every other distinct value is handed to the contract's own
  ``_parse`` in pandas and joined back, so odd spellings parse exactly as before at the
  cost of a few distinct values.
* **Structure.** Whatever DuckDB cannot read plainly (ragged lines, not UTF-8, a bad
  gzip, corrupt Parquet, quoting pandas accepts and DuckDB does not) falls back on
  :func:`pipelines.io.read_source`, which raises the usual error or reads the file.
* **Words.** Messages are made by :meth:`healthscore.contract._Checker.record` from the
  count, the first row and that row's values as pandas would hold them.

Known differences. A column name with a NUL byte (junk, not a contract column) is cut
at the NUL in the DuckDB table: DuckDB names cannot hold one. And all in text values that begin with spaces *inside quotes*
(``"  x"``): pandas keeps the spaces, this reader drops them (as for an unquoted value
after a comma). Parsed contract columns strip them anyway; only an extra text column or
an example's quoted raw text can differ.
"""

from __future__ import annotations

import gzip
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow.parquet as pq

from healthscore.contract import (
    DROP,
    ERROR,
    NA_TOKENS,
    REQUIRED_SOURCES,
    SOURCES,
    Kind,
    Problem,
    RawSource,
    SourceReport,
    Validation,
    _check_columns,
    _Checker,
    _kind_words,
    _parse,
)
from healthscore.errors import DataContractError
from pipelines.io import (
    DATABASE_SUFFIXES,
    _contract_tables,
    _csv_header,
    _repeats,
    find_sources,
    read_database,
    read_duckdb_file,
    read_source,
    redact,
)

# Text that neither starts nor ends with a character Python's str.strip() could remove
# (nor any other control or space character) is already what contract._parse makes of it.
_EDGE = (r"[^\x{0}-\x{20}\x{7f}-\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}"
         r"\x{205f}\x{3000}]")
_TEXT = rf"(?s){_EDGE}(.*{_EDGE})?"
# Only padding (a missing trailing field) is NULL as read; an empty field stays ''.
_NULL_SENTINEL = "\x01healthscore-no-such-value\x02"
_YEAR = "[0-9]{4}"
# ISO dates and timestamps DuckDB reads as the contract does: naive, Z or +HH:MM.
_STAMP = (rf"{_YEAR}-[0-9]{{2}}-[0-9]{{2}}([T ]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9]"
          r"(\.[0-9]{1,6})?)?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])?)?")
_NUMBER = r"-?[0-9]{1,15}(\.[0-9]{1,6})?"
_NUMERIC_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT",
                  "UINTEGER", "FLOAT", "DOUBLE")
_SQL_TYPE = {Kind.STRING: "VARCHAR", Kind.DATE: "TIMESTAMP", Kind.TIMESTAMP: "TIMESTAMP",
             Kind.INT: "BIGINT", Kind.FLOAT: "DOUBLE"}
_PANDAS_TYPE = {Kind.STRING: "str", Kind.DATE: "datetime64[us]", Kind.TIMESTAMP: "datetime64[us]",
                Kind.INT: "Int64", Kind.FLOAT: "float64"}


def _quote(name: str) -> str:
    return '"' + str(name).replace('"', '""') + '"'


def _literal(text: str) -> str:
    """A SQL string literal (control characters spelled with chr(), so any text fits)."""
    parts, plain = [], ""
    for char in text:
        if char.isprintable() and char != "'":
            plain += char
            continue
        if plain:
            parts.append(f"'{plain}'")
            plain = ""
        parts.append("''''" if char == "'" else f"chr({ord(char)})")
    if plain or not parts:
        parts.append(f"'{plain}'")
    return "(" + " || ".join(parts) + ")"


@dataclass
class _Staged:
    """A source as DuckDB sees it, before any parsing.

    ``view`` has ``_row`` (0-based position, as the pandas index) and ``c0..cN`` in the
    file's column order; ``names`` are the names the pandas reader gives those columns.
    """

    name: str
    file: str
    names: list
    rows: int
    view: str | None = None
    types: list[str] = field(default_factory=list)
    first_row_number: int = 2
    numbering: str | None = None
    to_pandas: Callable[[duckdb.DuckDBPyRelation], pd.DataFrame] = lambda rel: rel.df()
    # A part of the file (:func:`validate_changes_into`): ``_row`` numbers the part's
    # rows from 0 and ``_file_row`` is each row's ``_row`` in the whole file's view.
    part: bool = False


class _Session:
    """Temporary DuckDB objects of one validation, dropped at the end."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con
        self.tag = f"_hs_{secrets.token_hex(4)}"
        self.count = 0
        self.objects: list[tuple[str, str]] = []

    def name(self, hint: str) -> str:
        self.count += 1
        return f"{self.tag}_{self.count}_{hint}"

    def table(self, hint: str, sql: str) -> str:
        name = self.name(hint)
        self.con.execute(f"CREATE TEMP TABLE {name} AS {sql}")
        self.objects.append(("TABLE", name))
        return name

    def view(self, hint: str, sql: str) -> str:
        name = self.name(hint)
        self.con.execute(f"CREATE TEMP VIEW {name} AS {sql}")
        self.objects.append(("VIEW", name))
        return name

    def frame(self, hint: str, frame: pd.DataFrame) -> str:
        """A pandas frame copied into a temporary table."""
        name = self.name(hint)
        self.con.register(f"{name}_frame", frame)
        try:
            self.con.execute(f"CREATE TEMP TABLE {name} AS SELECT * FROM {name}_frame")
        finally:
            self.con.unregister(f"{name}_frame")
        self.objects.append(("TABLE", name))
        return name

    def attach(self, path: Path) -> str:
        name = self.name("db")
        self.con.execute(f"ATTACH {_literal(str(path))} AS {name} (READ_ONLY)")
        self.objects.append(("DATABASE", name))
        return name

    def release(self, keep: set[str] = frozenset()) -> None:
        """Drop the temporary tables and views made so far, but those in ``keep``."""
        kept = [o for o in self.objects if o[1] in keep or o[0] == "DATABASE"]
        self.objects = [o for o in self.objects if o not in kept]
        self.close()
        self.objects = kept

    def close(self) -> None:
        for kind, name in reversed(self.objects):
            try:
                if kind == "DATABASE":
                    self.con.execute(f"DETACH DATABASE IF EXISTS {name}")
                else:
                    self.con.execute(f"DROP {kind} IF EXISTS {name}")
            except duckdb.Error:
                pass
        self.objects = []


# ------------------------------------------------------------------------------ reading


def _describe(con: duckdb.DuckDBPyConnection, view: str) -> list[str]:
    return [row[1] for row in con.execute(f"DESCRIBE SELECT * EXCLUDE (_row) FROM {view}").fetchall()]


def _stage_frame(session: _Session, raw: RawSource) -> _Staged:
    """A source pandas read (the fallback): its table copied into DuckDB."""
    table = raw.table.reset_index(drop=True)
    names = list(table.columns)
    table = table.copy(deep=False)
    table.columns = [f"c{i}" for i in range(len(names))]
    copy = session.frame("pandas", table)
    view = session.view("raw", f"SELECT rowid AS _row, * FROM {copy}")
    staged = _Staged(raw.name, raw.file, names, len(table), view,
                     first_row_number=raw.first_row_number, numbering=raw.numbering)
    staged.types = _describe(session.con, view)
    return staged


def _stage_csv(session: _Session, name: str, path: Path) -> _Staged:
    """A CSV (or CSV.gz) file read by DuckDB as text, with ``read_source``'s rules: the
    NA tokens, a byte-order mark, spaces after a comma skipped, blank lines skipped."""
    if path.stat().st_size == 0:
        return _stage_frame(session, read_source(name, path))  # raises: the file is empty
    gz = path.name.endswith(".gz")
    try:
        names = list(pd.read_csv(path, dtype=str, nrows=0, keep_default_na=False,
                                 na_values=list(NA_TOKENS), compression="gzip" if gz else None,
                                 encoding="utf-8-sig", skipinitialspace=True).columns)
        header = _csv_header(path)
    except Exception:  # noqa: BLE001 -- read_source words every reading error
        return _stage_frame(session, read_source(name, path))
    opener = gzip.open if gz else open
    with opener(path, "rb") as handle:
        first = handle.readline(1 << 20)
        nul = b"\x00" in first
        # An odd number of quotes: maybe a quoted field left open at the end, which
        # DuckDB's reader would let pass as a blank line and pandas words as an error.
        quotes = first.count(b'"') + sum(chunk.count(b'"') for chunk in
                                         iter(lambda: handle.read(1 << 24), b""))
    if nul or quotes % 2 or len(header) != len(names) or any(
        h != c for h, c in zip(header, names) if h.strip() and header.count(h) == 1
    ):  # leading blank lines, NUL bytes, odd quoting: let pandas decide
        return _stage_frame(session, read_source(name, path))
    if _repeats(header):
        names = [h if h.strip() else c for h, c in zip(header, names)]
    n = len(names)
    # One column more than the header: a row with a surplus field shows up in it.
    columns = "{" + ", ".join(f"'c{i}': 'VARCHAR'" for i in range(n + 1)) + "}"
    options = (f"header=true, auto_detect=false, delim=',', quote='\"', escape='\"', "
               f"columns={columns}, null_padding=true, strict_mode=true, "
               f"nullstr={_literal(_NULL_SENTINEL)}, encoding='utf-8', "
               f"compression='{'gzip' if gz else 'none'}'")
    source = f"read_csv({_literal(str(path))}, {options}"
    con = session.con
    # pandas skips lines of only spaces; it words surplus fields (index columns,
    # "Expected N fields in line L") and reads a NUL byte its own way: flag those rows.
    blank = ("".join(f"c{i} IS NULL AND " for i in range(1, n + 1))
             + "c0 IS NOT NULL AND regexp_full_match(c0, '[ \t]*')")
    odd = f"c{n} IS NOT NULL OR " + " OR ".join(f"contains(c{i}, chr(0))" for i in range(n))
    na = ", ".join(_literal(t) for t in NA_TOKENS)
    # Spaces after a comma are skipped (skipinitialspace), then the NA tokens are missing.
    values = ", ".join(f"CASE WHEN t{i} IN ({na}) THEN NULL ELSE t{i} END AS c{i}" for i in range(n))
    spaced = ", ".join(f"ltrim(c{i}, ' ') AS t{i}" for i in range(n))
    read = None
    for extra in ("", ", parallel=false"):  # quoted line breaks need the serial reader
        try:
            read = session.table("csv", (
                f"SELECT {values}, _odd, _blank FROM (SELECT {spaced}, ({odd}) AS _odd, "
                f"({blank}) AS _blank FROM {source}{extra}))"))
            break
        except duckdb.Error:
            continue
    if read is None:
        return _stage_frame(session, read_source(name, path))
    surplus, blanks, rows = con.execute(
        f"SELECT count(*) FILTER (WHERE _odd), count(*) FILTER (WHERE _blank), count(*) "
        f"FROM {read}").fetchall()[0]
    if surplus:
        return _stage_frame(session, read_source(name, path))
    if blanks:  # number the rows without them, as pandas does
        read = session.table("csv", f"SELECT * FROM {read} WHERE NOT _blank ORDER BY rowid")
        rows -= blanks
    columns = ", ".join(f"c{i}" for i in range(n))
    view = session.view("raw", f"SELECT rowid AS _row, {columns} FROM {read}")
    return _Staged(name, path.name, names, rows, view, ["VARCHAR"] * n)


def _arrow_pandas(rel: duckdb.DuckDBPyRelation) -> pd.DataFrame:
    return rel.to_arrow_table().to_pandas()


def _stage_parquet(session: _Session, name: str, path: Path) -> _Staged:
    if path.stat().st_size == 0:
        return _stage_frame(session, read_source(name, path))
    try:
        schema = pq.read_schema(path)
        rows = pq.ParquetFile(path).metadata.num_rows
    except Exception:  # noqa: BLE001 -- read_source words every reading error
        return _stage_frame(session, read_source(name, path))
    index = {c for c in (schema.pandas_metadata or {}).get("index_columns", []) if isinstance(c, str)}
    names = [c for c in schema.names if c not in index]
    staged = _Staged(name, path.name, names, rows, first_row_number=1, to_pandas=_arrow_pandas)
    if len({str(c).strip() for c in names}) < len(names):
        return staged  # repeated names: the column check stops before any row is read
    columns = ", ".join(f"{_quote(c)} AS c{i}" for i, c in enumerate(names))
    try:
        staged.view = session.view(
            "raw", f"SELECT file_row_number AS _row, {columns} "
                   f"FROM read_parquet({_literal(str(path))}, file_row_number=true)")
        staged.types = _describe(session.con, staged.view)
    except duckdb.Error:
        return _stage_frame(session, read_source(name, path))
    return staged


def _stage_relation(session: _Session, name: str, file: str, relation: str,
                    to_pandas: Callable) -> _Staged:
    """A database table (already in DuckDB) as a source numbered from row 1."""
    con = session.con
    names = [row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()]
    columns = ", ".join(f"{_quote(c)} AS c{i}" for i, c in enumerate(names))
    view = session.view("raw", f"SELECT rowid AS _row, {columns} FROM {relation}")
    rows = con.execute(f"SELECT count(*) FROM {relation}").fetchall()[0][0]
    staged = _Staged(name, file, names, rows, view, first_row_number=1, to_pandas=to_pandas)
    staged.types = _describe(con, view)
    return staged


def _stage_file(session: _Session, name: str, path: Path) -> _Staged:
    if path.suffix == ".parquet":
        return _stage_parquet(session, name, path)
    return _stage_csv(session, name, path)


def _locate(session: _Session, data) -> dict[str, Callable[[], _Staged]]:
    """Each contract source present in ``data``, as a function that stages it."""
    text = str(data)
    if text.startswith("duckdb://") or ("://" not in text and Path(text).suffix.lower() in DATABASE_SUFFIXES):
        path = Path(text.removeprefix("duckdb://").split("?")[0])
        if not text.startswith("duckdb://") and not path.is_file():
            raise DataContractError(f"{path}: DuckDB database file not found")
        try:
            db = session.attach(path)
            tables = {row[0] for row in session.con.execute(
                "SELECT table_name FROM information_schema.tables "
                f"WHERE table_catalog = {_literal(db)} AND table_schema = 'main'").fetchall()}
        except duckdb.Error:
            read_duckdb_file(path)  # raises with the usual words
            raise
        found = _contract_tables(tables, path.name)

        def stage_db(name: str) -> _Staged:
            try:
                return _stage_relation(session, name, f"{path.name}:{name}",
                                       f"{db}.main.{_quote(name)}", lambda rel: rel.df())
            except duckdb.Error:  # a view has no rowid: read it as the pandas path does
                return _stage_frame(session, read_duckdb_file(path)[name])
        return {name: (lambda name=name: stage_db(name)) for name in found}
    if "://" in text:
        import ibis

        try:
            remote = ibis.connect(text)
            tables = set(remote.list_tables())
        except Exception:  # noqa: BLE001 -- each backend raises its own driver's errors
            read_database(text, text)  # raises with the usual words
            raise
        found = _contract_tables(tables, redact(text))

        def stage_remote(name: str) -> _Staged:
            arrow = remote.table(name).to_pyarrow()
            copy = session.name("remote")
            session.con.register(copy, arrow)
            try:
                local = session.table("remote", f"SELECT * FROM {copy}")
            finally:
                session.con.unregister(copy)
            return _stage_relation(session, name, f"{redact(text)}:{name}", local, _arrow_pandas)
        return {name: (lambda name=name: stage_remote(name)) for name in found}
    return {name: (lambda name=name, path=path: _stage_file(session, name, path))
            for name, path in find_sources(Path(data)).items()}


# ------------------------------------------------------------------------------ parsing


def _create_parsed(session: _Session, staged: _Staged, kinds: dict[int, Kind], target: str,
                   columns: list[int] | None = None) -> set[int]:
    """Create ``target``: every column ``i`` (of ``columns``, default all) as ``v{i}``: parsed to its contract type when ``i`` is in ``kinds``, with its "present
    but unparseable" flag ``b{i}``, else as read. Rows keep the file's order, so the
    table's ``rowid`` is the raw view's ``_row`` (not copied: numbering Parquet rows as
    they are read costs more than the copy itself).

    Canonical spellings are parsed by DuckDB in one pass. The other distinct values go
    through :func:`healthscore.contract._parse` and are written over their rows after it.

    Returns:
        The parsed columns none of whose values can be unparseable (``b{i}`` is false).
    """
    con = session.con
    clean: set[int] = set()
    columns = list(range(len(staged.types))) if columns is None else columns
    outputs, flags, late = [], [], []
    for i in columns:
        kind, c, raw_type = kinds.get(i), f"c{i}", staged.types[i]
        if kind is None:
            outputs.append(f"{c} AS v{i}")
            continue
        if raw_type == "VARCHAR" and kind is Kind.STRING:
            # Few distinct values, often long ones: test each distinct value once (in a
            # second statement, so the test is not pushed below the DISTINCT).
            distinct = session.table("values", f"SELECT DISTINCT {c} AS k FROM {staged.view}")
            odd = session.table("values", f"SELECT k FROM {distinct} WHERE k IS NOT NULL "
                                          f"AND NOT regexp_full_match(k, '{_TEXT}')")
            outputs.append(f"{c} AS v{i}, false AS b{i}")
            late.append((i, kind, odd))
            clean.add(i)
            continue
        fast_p, fast_b, canonical = _fast_parse(c, raw_type, kind)
        if canonical == "true":  # DuckDB parses every value of this column itself
            if fast_b == "false":
                clean.add(i)
            outputs.append(f"CAST({fast_p} AS {_SQL_TYPE[kind]}) AS v{i}, coalesce({fast_b}, false) AS b{i}")
            continue
        if canonical is None:
            canonical = "false"
        present = f"{c} IS NULL OR " if raw_type == "VARCHAR" else ""
        outputs.append(f"CAST(CASE WHEN {present}NOT k{i} THEN NULL ELSE {fast_p} END AS {_SQL_TYPE[kind]}) "
                       f"AS v{i}, coalesce({c} IS NOT NULL AND k{i} AND {fast_b}, false) AS b{i}")
        flags.append(f"{present}({canonical}) AS k{i}")
        late.append((i, kind, None))
    inner = f"SELECT *{''.join(', ' + f for f in flags)} FROM {staged.view}"
    keep = "".join(f", k{i}" for i, _, odd in late if odd is None)
    con.execute(f"CREATE TABLE {target} AS SELECT {', '.join(outputs)}{keep} FROM ({inner})")
    for i, kind, odd in late:
        if odd is None:
            odd = session.table("values", (
                f"SELECT DISTINCT r.c{i} AS k FROM {staged.view} r "
                f"SEMI JOIN (SELECT rowid AS _row FROM {target} WHERE NOT k{i}) o ON r._row = o._row"))
            con.execute(f"ALTER TABLE {target} DROP COLUMN k{i}")
        mapping = _mapping(session, staged, odd, kind)
        if mapping is None:
            continue
        clean.discard(i)
        # UPDATE keeps the rows' order (a join would not).
        con.execute(
            f"UPDATE {target} SET v{i} = x.p, b{i} = x.b FROM (SELECT r._row, m.p, m.b "
            f"FROM {staged.view} r JOIN {mapping} m ON r.c{i} IS NOT DISTINCT FROM m.k) x "
            f"WHERE {target}.rowid = x._row")
    return clean


def _fast_parse(c: str, raw_type: str, kind: Kind) -> tuple[str, str, str | None]:
    """DuckDB's parse of the values it agrees with the contract on: (parsed, bad,
    canonical), where ``canonical`` says which values those are (None: none)."""
    if raw_type == "VARCHAR":
        if kind is Kind.STRING:
            return c, "false", f"regexp_full_match({c}, '{_TEXT}')"
        if kind in (Kind.DATE, Kind.TIMESTAMP):
            # Among canonical spellings, an offset is a Z, a + or a - after the date.
            # (DuckDB's TIMESTAMP cast would ignore it: such values go through TIMESTAMPTZ.)
            offset = f"(right({c}, 1) = 'Z' OR contains({c}, '+') OR contains(substr({c}, 11), '-'))"
            parsed = (f"CASE WHEN {offset} THEN timezone('UTC', try_cast({c} AS TIMESTAMPTZ)) "
                      f"ELSE try_cast({c} AS TIMESTAMP) END")
            if kind is Kind.DATE:
                parsed = f"date_trunc('day', {parsed})"
            canonical = f"NOT starts_with({c}, '0000') AND regexp_full_match({c}, '{_STAMP}')"
            return parsed, f"({parsed}) IS NULL", canonical
        number = f"try_cast({c} AS DOUBLE)"
        canonical = f"regexp_full_match({c}, '{_NUMBER}')"
        if kind is Kind.INT:
            return f"CAST({number} AS BIGINT)", f"{number} != trunc({number})", canonical
        return number, "false", canonical
    base = raw_type.split("(")[0]
    if kind in (Kind.INT, Kind.FLOAT) and (base in _NUMERIC_TYPES or base == "DECIMAL"):
        d = f"CAST({c} AS DOUBLE)"
        bad = f"({c} IS NOT NULL AND NOT isnan({d}) AND (isinf({d})"
        if kind is Kind.INT:
            bad += f" OR {d} != trunc({d}) OR abs({d}) >= 9223372036854775808.0"
        bad += "))"
        parsed = f"CASE WHEN {c} IS NULL OR isnan({d}) OR {bad} THEN NULL ELSE {d} END"
        return parsed, bad, "true"
    if kind in (Kind.DATE, Kind.TIMESTAMP):
        parsed = None
        if base.startswith("TIMESTAMP WITH TIME ZONE"):
            parsed = f"timezone('UTC', {c})"
            canonical = "true"
        elif base in ("TIMESTAMP", "TIMESTAMP_S", "TIMESTAMP_MS", "TIMESTAMP_NS"):
            parsed, canonical = f"CAST({c} AS TIMESTAMP)", "true"
        elif base == "DATE":
            parsed = f"CAST({c} AS TIMESTAMP)"
            canonical = f"{c} IS NULL OR year({c}) BETWEEN 1 AND 9999"
        if parsed is not None:
            if kind is Kind.DATE:
                parsed = f"date_trunc('day', {parsed})"
            return parsed, "false", canonical
    return "NULL", "false", None


def _mapping(session: _Session, staged: _Staged, values: str, kind: Kind) -> str | None:
    """The distinct values in ``values`` (a table ``k``, in the column's raw type) parsed
    by the contract's ``_parse``: a table ``k, p, b``, or None when there are none."""
    con = session.con
    n = con.execute(f"SELECT count(*) FROM {values}").fetchall()[0][0]
    if n == 0:
        return None
    # rowid of a fresh table numbers its rows 0..n-1: the link to the parsed frame.
    texts = staged.to_pandas(con.sql(f"SELECT k FROM {values} ORDER BY rowid"))["k"]
    parsed, bad = _parse(texts, kind)
    frame = pd.DataFrame({"_id": range(n), "p": parsed.to_numpy(), "b": bad.to_numpy(dtype=bool)})
    parsed_values = session.frame("parsed", frame)
    return session.table(
        "mapping", f"SELECT v.k, CAST(x.p AS {_SQL_TYPE[kind]}) AS p, x.b "
                   f"FROM {values} v JOIN {parsed_values} x ON x._id = v.rowid")


# ------------------------------------------------------------------------------ checking


@dataclass
class _Rule:
    rule: str
    severity: str
    reason: str
    column: str | None
    condition: str
    shown: tuple[str, list[int]] | None = None  # ("raw"|"parsed", column positions)
    as_row: bool = False  # show "k=v, ..." (a Series) rather than one value


def _end_of_day(now: pd.Timestamp | None) -> pd.Timestamp:
    now = now if now is not None else pd.Timestamp.now("UTC").tz_localize(None).normalize()
    return now + pd.Timedelta(days=1) - pd.Timedelta(microseconds=1)


def _rules(staged: _Staged, names: list[str], kinds: dict[int, Kind],
           now: pd.Timestamp, reference: str | None) -> list[_Rule]:
    """Every row rule of the source, in the order ``contract._check_source`` runs them."""
    source = SOURCES[staged.name]
    pos = {n: i for i, n in enumerate(names)}
    name = staged.name
    rules: list[_Rule] = []
    for col in source.columns:
        if col.name not in pos:
            continue
        i = pos[col.name]
        rules.append(_Rule(f"{name}.{col.name}.type", ERROR, f"value is not {_kind_words(col.kind)}",
                           col.name, f"b{i}", ("raw", [i])))
        if col.required:
            rules.append(_Rule(f"{name}.{col.name}.required", ERROR, "required value is empty",
                               col.name, f"v{i} IS NULL AND NOT b{i}"))
    if source.extra_numeric:
        known = {c.name for c in source.columns}
        for i, extra in enumerate(names):
            if extra not in known:
                rules.append(_Rule(
                    f"{name}.{extra}.type", ERROR,
                    "metric value is not a number (every extra column here is a metric)",
                    extra, f"b{i}", ("raw", [i])))
    for col in source.columns:
        if col.unique and col.name in pos:
            i = pos[col.name]
            rules.append(_Rule(f"{name}.{col.name}.unique", ERROR, "value must be unique but repeats",
                               col.name, f"u{i}", ("parsed", [i])))
    if source.unique_together:
        keys = list(source.unique_together)
        rules.append(_Rule(f"{name}.unique_together", ERROR,
                           f"({', '.join(keys)}) must be unique but repeats", None, "u_keys",
                           ("parsed", [pos[k] for k in keys]), as_row=True))
    for col in source.columns:
        if col.name not in pos:
            continue
        v = f"v{pos[col.name]}"
        if col.allowed is not None:
            allowed = ", ".join(_literal(a) for a in col.allowed)
            rules.append(_Rule(f"{name}.{col.name}.allowed", ERROR,
                               f"value must be one of {', '.join(col.allowed)}", col.name,
                               f"{v} IS NOT NULL AND {v} NOT IN ({allowed})", ("parsed", [pos[col.name]])))
        if col.min_value is not None or col.max_value is not None:
            if col.max_value is None:
                words, test = f"must be >= {col.min_value:g}", f"{v} < {col.min_value!r}"
            elif col.min_value is None:
                words, test = f"must be <= {col.max_value:g}", f"{v} > {col.max_value!r}"
            else:
                words = f"must be between {col.min_value:g} and {col.max_value:g}"
                test = f"NOT ({v} BETWEEN {col.min_value!r} AND {col.max_value!r})"
            rules.append(_Rule(f"{name}.{col.name}.range", col.range_severity, f"value {words}",
                               col.name, f"{v} IS NOT NULL AND {test}", ("parsed", [pos[col.name]])))
    if name == "surveys":
        kind, score = f"v{pos['kind']}", f"v{pos['score']}"
        for label, lo, hi in (("nps", 0, 10), ("csat", 1, 5)):
            rules.append(_Rule(f"surveys.score.{label}_range", DROP,
                               f"{label} score must be between {lo} and {hi}", "score",
                               f"{kind} = '{label}' AND NOT ({score} BETWEEN {lo} AND {hi})",
                               ("parsed", [pos["score"]])))
    for order in source.orders:
        if order.later not in pos or order.earlier not in pos:
            continue
        early, late = f"v{pos[order.earlier]}", f"v{pos[order.later]}"
        words = "after" if order.strict else "on or after"
        rules.append(_Rule(f"{name}.{order.later}.order", order.severity,
                           f"{order.later} must be {words} {order.earlier}", order.later,
                           f"{late} {'<=' if order.strict else '<'} {early}",
                           ("parsed", [pos[order.earlier], pos[order.later]]), as_row=True))
    if source.date_column and name not in ("accounts", "subscriptions"):
        i = pos[source.date_column]
        rules.append(_Rule(f"{name}.{source.date_column}.future", DROP,
                           f"{source.date_column} is in the future (after {now.date().isoformat()})",
                           source.date_column, f"v{i} > TIMESTAMP '{now.isoformat(sep=' ')}'",
                           ("parsed", [i])))
    if reference and name != "accounts":
        rules.append(_Rule(f"{name}.account_id.reference", DROP, "account_id not found in accounts",
                           "account_id", f"v{pos['account_id']} IS NULL OR v{pos['account_id']} "
                           f"NOT IN (SELECT account_id FROM {reference})", ("parsed", [pos["account_id"]])))
    return rules


def _value(frame: pd.DataFrame, as_row: bool):
    return frame.iloc[0] if as_row else frame.iloc[0, 0]


def _check(session: _Session, staged: _Staged, account_ids: str | None, now: pd.Timestamp,
           target: str, others: str | None = None) -> SourceReport:
    """Check one staged source; on success create ``target`` with its clean rows.

    ``others``: a table of the source's rows kept from elsewhere (its clean rows outside
    a part being checked, :func:`validate_changes_into`), by column name: a value that
    must be unique repeats when it repeats there too.
    """
    con = session.con
    source = SOURCES[staged.name]
    raw = RawSource(staged.name, staged.file, pd.DataFrame(), staged.first_row_number,
                    staged.numbering)
    checker = _Checker(raw)
    names = [str(c).strip() for c in staged.names]
    report = SourceReport(staged.name, staged.file, rows=staged.rows)
    _check_columns(checker, source, names)
    if checker.problems:
        report.problems = checker.problems
        return report
    if source.required and staged.rows == 0:
        checker.record(f"{staged.name}.empty", ERROR, "required source has a header but no rows")
    kinds: dict[int, Kind] = {}
    for i, n in enumerate(names):
        col = source.column(n)
        if col is not None:
            kinds[i] = col.kind
        elif source.extra_numeric:
            kinds[i] = Kind.FLOAT
    # The parsed table becomes the clean one: drops deleted, flags dropped, columns renamed.
    parsed = target
    always_parsed = _create_parsed(session, staged, kinds, parsed)
    reference = None
    if account_ids is not None and staged.name != "accounts":
        reference = session.table("ids", f"SELECT DISTINCT account_id FROM {account_ids} "
                                          "WHERE account_id IS NOT NULL")
    rules = [r for r in _rules(staged, names, kinds, now, reference)
             if r.condition not in {f"b{i}" for i in always_parsed}]  # nothing to count
    pos = {n: i for i, n in enumerate(names)}

    # Repeats by grouping (a hash table), not by a window (a sort of the whole table).
    repeats = {f"u{pos[c.name]}": [pos[c.name]] for c in source.columns if c.unique and c.name in pos}
    if source.unique_together:
        repeats["u_keys"] = [pos[k] for k in source.unique_together]
    simple = [r for r in rules if r.condition not in repeats]
    found_by_rule = {}
    if simple:
        aggregates = ", ".join(f"count(*) FILTER (WHERE coalesce({r.condition}, false)), "
                               f"min(rowid) FILTER (WHERE coalesce({r.condition}, false))"
                               for r in simple)
        row = con.execute(f"SELECT {aggregates} FROM {parsed}").fetchall()[0]
        found_by_rule = {id(r): row[2 * k: 2 * k + 2] for k, r in enumerate(simple)}
    for r in rules:
        if r.condition in repeats:
            keys = [f"v{i}" for i in repeats[r.condition]]
            # pandas: a single column's missing values never repeat; a key's do.
            where = f"WHERE {keys[0]} IS NOT NULL" if r.condition != "u_keys" else ""
            on = " AND ".join(f"p.{k} IS NOT DISTINCT FROM d.{k}" for k in keys)
            pool = f"SELECT {', '.join(keys)} FROM {parsed} {where}"
            if others is not None:
                kept = ", ".join(f"{_quote(names[i])} AS v{i}" for i in repeats[r.condition])
                pool += f" UNION ALL SELECT * FROM (SELECT {kept} FROM {others}) {where}"
            found_by_rule[id(r)] = con.execute(
                f"SELECT count(*), min(p.rowid) FROM {parsed} p SEMI JOIN (SELECT {', '.join(keys)} "
                f"FROM ({pool}) GROUP BY ALL HAVING count(*) > 1) d ON {on}").fetchall()[0]
    found = [x for r in rules for x in found_by_rule[id(r)]]
    for number, rule in enumerate(rules):
        count, first = found[2 * number], found[2 * number + 1]
        if not count:
            continue
        shown = None
        if rule.shown is not None:
            where, columns = rule.shown
            shown = _value(_fetch_row(session, staged, parsed, where, columns, names, kinds, first),
                           rule.as_row)
        if staged.part:  # the part's row number -> the file's
            first = con.execute(f"SELECT _file_row FROM {staged.view} WHERE _row = {first}").fetchall()[0][0]
        checker.record(rule.rule, rule.severity, rule.reason, rule.column, int(count), int(first), shown)
    report.problems = checker.problems
    if any(p.severity == ERROR for p in checker.problems):
        con.execute(f"DROP TABLE {parsed}")
        return report
    drops = [r.condition for r, c in zip(rules, found[::2]) if r.severity == DROP and c]
    if drops:  # DELETE keeps the order of the rows that stay
        con.execute(f"DELETE FROM {parsed} WHERE {' OR '.join(f'coalesce({d}, false)' for d in drops)}")
    for i in sorted(kinds):
        con.execute(f"ALTER TABLE {parsed} DROP COLUMN b{i}")
    for i, n in enumerate(names):
        con.execute(f"ALTER TABLE {parsed} RENAME COLUMN v{i} TO {_quote(n)}")
    kept, low, high = con.execute(
        f"SELECT count(*), min({_quote(source.date_column)}), max({_quote(source.date_column)}) "
        f"FROM {target}").fetchall()[0] if source.date_column else (
        con.execute(f"SELECT count(*) FROM {target}").fetchall()[0][0], None, None)
    report.kept_rows = int(kept)
    if source.date_column and kept:
        report.date_min, report.date_max = pd.Timestamp(low), pd.Timestamp(high)
    return report


def _fetch_row(session: _Session, staged: _Staged, parsed: str, where: str, columns: list[int],
               names: list[str], kinds: dict[int, Kind], first: int) -> pd.DataFrame:
    """One row's values as the pandas path holds them (its first row is row ``first``)."""
    con = session.con
    if where == "raw":
        c = f"c{columns[0]}"
        # With a null elsewhere in the column, pandas would hold the column as objects
        # (booleans) or floats (integers): fetch one null too, so the value is typed alike.
        rel = con.sql(f"(SELECT 0 AS o, {c} FROM {staged.view} WHERE _row = {first}) UNION ALL "
                      f"(SELECT 1 AS o, {c} FROM {staged.view} WHERE {c} IS NULL LIMIT 1) ORDER BY o")
        return staged.to_pandas(rel.select(c))
    select = ", ".join(f"v{i} AS {_quote(names[i])}" for i in columns)
    frame = con.sql(f"SELECT {select} FROM {parsed} WHERE rowid = {first}").df()
    return frame.astype({names[i]: _PANDAS_TYPE[kinds[i]] for i in columns})


def _account_ids(session: _Session, staged: _Staged) -> str | None:
    """The parsed ids of accounts (a table ``account_id``), as the pandas path takes
    them: from the one column named exactly ``account_id``, even when accounts has errors."""
    if staged.view is None or list(staged.names).count("account_id") != 1:
        return None
    i = list(staged.names).index("account_id")
    parsed = session.name("ids")
    _create_parsed(session, staged, {i: Kind.STRING}, parsed, columns=[i])
    session.objects.append(("TABLE", parsed))
    ids = session.table("ids", f"SELECT DISTINCT v{i} AS account_id FROM {parsed} WHERE v{i} IS NOT NULL")
    return ids if session.con.execute(f"SELECT count(*) FROM {ids}").fetchall()[0][0] else None


# ------------------------------------------------------------------------------ the API


def validate_into(
    con: duckdb.DuckDBPyConnection,
    data,
    *,
    table_prefix: str = "src_",
    now: pd.Timestamp | None = None,
    progress: Callable[[str], None] | None = None,
    account_ids_table: str | None = None,
    read_digests: str | None = None,
) -> Validation:
    """Validate every source of ``data`` in DuckDB and keep the clean tables there.

    The same checks, problems (word for word), drops and reports as
    :func:`healthscore.contract.validate_sources` on :func:`pipelines.io.read_data_folder`,
    but DuckDB reads the files itself: no source becomes a pandas table.

    Args:
        con: The DuckDB connection that receives the clean tables.
        data: A data folder, a DuckDB database file (``*.duckdb``, ``duckdb://``) or a
            database URL Ibis can open, as for ``read_data_folder``.
        table_prefix: Clean tables are named ``{table_prefix}{source}``; existing tables
            of those names are replaced only when the whole validation succeeds.
        now: Anything stamped after this day is "in the future" (default: today, UTC).
        progress: Called with each source's name as it is checked.
        account_ids_table: Without errors, also create this temporary table: the
            accounts' ids the reference check used (``account_id``), for
            :func:`validate_changes_into` later. Not created when there were none (no
            reference check).
        read_digests: Without errors, also create the temporary tables
            ``{read_digests}{source}``: each dated source's digest as read (see
            :func:`validate_changes_into`), from the rows already read for the check
            (none for a source without usable key columns).

    Returns:
        A :class:`~healthscore.contract.Validation` whose ``tables`` maps each source
        name to the **name of its DuckDB table** (not a DataFrame). With errors,
        ``tables`` is empty and no table is created.

    Raises:
        DataContractError: A file cannot be read at all (empty, not UTF-8, ragged,
            corrupt), with the same words as the pandas path.
    """
    now = _end_of_day(now)
    session = _Session(con)
    result = Validation(tables={}, reports={})
    staging: dict[str, str] = {}
    try:
        located = _locate(session, data)
        for name in REQUIRED_SOURCES:
            if name not in located:
                result.problems.append(Problem(
                    name, f"{name}.parquet|.csv|.csv.gz", f"{name}.missing", ERROR,
                    "required source is missing from the data folder"))
        result.missing_optional = [n for n in SOURCES if n not in located and n not in REQUIRED_SOURCES]
        # One source at a time, in the contract's order, each one's copies dropped once
        # it is checked. A file that cannot be read raises the same error as in the
        # pandas path, which reads them all first in the same order.
        account_ids = None
        for name in (n for n in SOURCES if n in located):
            source = located[name]()
            if progress:
                progress(name)
            staging[name] = f"{table_prefix}{name}__staging_{session.tag}"
            report = _check(session, source, account_ids, now, staging[name])
            result.reports[name] = report
            if read_digests is not None and name in PARTED and not result.errors:
                _keyed_digest(session, source, f"{read_digests}{name}")
            if name == "accounts":
                account_ids = _account_ids(session, source)
            session.release(keep={account_ids} if account_ids else set())
        if not result.errors:
            if account_ids_table is not None:
                con.execute(f"DROP TABLE IF EXISTS {_quote(account_ids_table)}")
                if account_ids:
                    con.execute(f"CREATE TEMP TABLE {_quote(account_ids_table)} AS "
                                f"SELECT account_id FROM {account_ids}")
            for name, table in staging.items():
                final = _quote(f"{table_prefix}{name}")
                con.execute(f"DROP TABLE IF EXISTS {final}")
                con.execute(f"ALTER TABLE {table} RENAME TO {final}")
                result.tables[name] = f"{table_prefix}{name}"
    finally:
        for table in staging.values():
            con.execute(f"DROP TABLE IF EXISTS {table}")
        session.close()
    return result


def validate_source_into(
    con: duckdb.DuckDBPyConnection,
    name: str,
    path: Path,
    table: str,
    account_ids_table: str | None = None,
    now: pd.Timestamp | None = None,
    first_line: int | None = None,
    read_digest: str | None = None,
) -> SourceReport:
    """Validate one source file in DuckDB; on success create ``table`` with its clean rows.

    Args:
        con: The DuckDB connection that receives the clean table.
        name: The contract source (``events``).
        path: Its file (CSV, CSV.gz or Parquet).
        table: Name of the clean table to create (replaced when it exists).
        account_ids_table: A table or view with an ``account_id`` column: rows whose
            account is not in it are dropped (None: no such check).
        now: Anything stamped after this day is "in the future" (default: today, UTC).
        first_line: Number shown for the file's first row (default: 2 for CSV, whose
            line 1 is the header; 1 for Parquet). For the appended tail of a CSV file,
            written after its header to a file of its own, pass the real file's line
            number of the tail's first row, so messages name lines of the real file.
        read_digest: Without errors, also create this temporary table: the file's
            digest as read (see :func:`validate_changes_into`), for a dated source with
            usable key columns.

    Returns:
        The source's report; ``table`` exists only when it has no errors.
    """
    session = _Session(con)
    staging = f"{table}__staging_{session.tag}"
    try:
        staged = _stage_file(session, name, Path(path))
        if first_line is not None:
            staged.numbering = "line" if staged.first_row_number == 2 else "row"
            staged.first_row_number = first_line
        report = _check(session, staged, account_ids_table, _end_of_day(now), staging)
        if not any(p.severity == ERROR for p in report.problems):
            if read_digest is not None and name in PARTED:
                _keyed_digest(session, staged, read_digest)
            con.execute(f"DROP TABLE IF EXISTS {_quote(table)}")
            con.execute(f"ALTER TABLE {staging} RENAME TO {_quote(table)}")
    finally:
        con.execute(f"DROP TABLE IF EXISTS {staging}")
        session.close()
    return report


# ------------------------------------------------------------------------ reading a part

# A source read in parts: usage, support and the other dated sources of accounts.
# accounts and subscriptions (small, and what every other source refers to) are always
# read whole.
PARTED = tuple(n for n, s in SOURCES.items()
               if s.date_column and n not in ("accounts", "subscriptions")
               and s.column("account_id") is not None)


def _keyed_digest(session: _Session, staged: _Staged, target: str,
                  days_of: str | None = None) -> tuple[str, str, str, str | None] | None:
    """Create temporary table ``target``: per (account, day) key, the number of the
    file's rows and the sum of their hashes, as read. The key is parsed as the contract
    parses it; a row whose key cannot be parsed has none (it is never equal).

    With ``days_of`` (an earlier such digest), only the keys of the days whose totals
    (rows and hash sum) differ from ``days_of``'s are digested: grouping by day is
    several times cheaper than by key, and a week's change touches few days. A row
    without a day is on a day of its own, which never equals an earlier one.

    Returns the key as two SQL expressions over the view's columns (``r``), the view
    they apply to (its ``_row`` is the staged view's) and, with ``days_of``, the table of
    the days that differ (``day``); or None when a key column is missing or repeated
    (the full check words that).

    Plain-text ids and dates that DuckDB parses as the contract does (typed dates, ISO
    text: the common exports) are keyed straight from the file. Otherwise the key
    columns are parsed first (:func:`_create_parsed`, as the full check does), into a
    table beside the view.
    """
    names = [str(c).strip() for c in staged.names]
    day_column = SOURCES[staged.name].date_column
    if staged.view is None or names.count("account_id") != 1 or names.count(day_column) != 1:
        return None
    a, d = names.index("account_id"), names.index(day_column)
    con = session.con
    hashed = f"sum(hash({', '.join(f'r.c{i}' for i in range(len(staged.types)))})::HUGEINT)"

    def digest(account: str, day: str, view: str) -> tuple[str, str, str, str | None]:
        where, days = "", None
        if days_of is not None:
            days = session.table("days", (
                f"SELECT day FROM (SELECT day, sum(n) AS n, sum(h) AS h FROM {days_of} GROUP BY day) o "
                f"FULL JOIN (SELECT {day} AS day, count(*) AS n, {hashed} AS h FROM {view} r "
                "GROUP BY ALL) n USING (day) WHERE o.n IS DISTINCT FROM n.n OR o.h IS DISTINCT FROM n.h"))
            where = f"SEMI JOIN {days} d ON {day} IS NOT DISTINCT FROM d.day"
        con.execute(f"CREATE OR REPLACE TEMP TABLE {target} AS SELECT {account} AS account_id, "
                    f"{day} AS day, count(*) AS n, {hashed} AS h FROM {view} r {where} GROUP BY ALL")
        return account, day, view, days

    kind = SOURCES[staged.name].column(day_column).kind
    parsed, _, canonical = _fast_parse(f"r.c{d}", staged.types[d], kind)
    if staged.types[a] == "VARCHAR" and canonical is not None:
        day = f"CAST({parsed} AS DATE)"
        keyed = digest(f"r.c{a}", day if canonical == "true" else
                       f"CASE WHEN {canonical} THEN {day} END", staged.view)
        # Ids with odd spellings (edge spaces) parse to other text, and dates DuckDB does
        # not parse as the contract does have no day here: then parse them both. (Keys
        # of days whose totals are unchanged were parsed the same way last time.)
        odd = con.execute(f"SELECT count(*) FROM (SELECT DISTINCT account_id AS k FROM {target}) "
                          f"WHERE k IS NOT NULL AND NOT regexp_full_match(k, '{_TEXT}')").fetchall()[0][0]
        if not odd and not con.execute(f"SELECT count(*) FROM {target} WHERE day IS NULL").fetchall()[0][0]:
            return keyed
    parsed = session.name("keys")
    _create_parsed(session, staged, {a: Kind.STRING, d: SOURCES[staged.name].column(day_column).kind},
                   parsed, columns=[a, d])
    session.objects.append(("TABLE", parsed))
    view = session.view("keyed", f"SELECT r.*, k.v{a} AS _a, CAST(k.v{d} AS DATE) AS _d "
                                 f"FROM {parsed} k POSITIONAL JOIN {staged.view} r")
    return digest("r._a", "r._d", view)


def validate_changes_into(
    con: duckdb.DuckDBPyConnection,
    name: str,
    path: Path,
    *,
    digest: str,
    clean: str,
    account_ids: str | None,
    new_digest: str,
    changed: str,
    table: str,
    now: pd.Timestamp | None = None,
) -> SourceReport | None:
    """Validate only the rows of a rewritten source file whose (account, day) changed.

    The file is read whole, to digest it per day as read (the row count and a sum of
    row hashes; the day parsed as the contract parses it), then per (account, day) on
    the days whose totals differ from ``digest``'s (the file's last digest). Only the
    rows of the keys whose digest differs are parsed and checked; the other keys' rows
    are the ones ``clean`` already holds, checked before. Values that must be unique are
    checked against ``clean``'s rows outside the changed keys.

    Args:
        digest: The last digest (``account_id, day, n, h``) of this source's file.
        clean: The source's clean rows from that file.
        account_ids: The accounts' ids (the reference check), as ``validate_into`` took
            them; None for no such check.
        new_digest: Created (a temporary table): the file's digest now, on the days
            that differ.
        changed: Created (a temporary table): the changed keys (``account_id, day``).
        table: Created, without errors: the clean rows of the changed keys.
        now: Anything stamped after this day is "in the future" (default: today, UTC).

    Returns:
        The report of the rows read (their problems; the whole file's row count), or
        None when the part cannot stand for the file: key columns missing, or any error
        (the caller validates the whole file, which words every problem as usual).
    """
    session = _Session(con)
    staging = f"{table}__staging_{session.tag}"
    try:
        staged = _stage_file(session, name, Path(path))
        keyed = _keyed_digest(session, staged, new_digest, days_of=digest)
        if keyed is None:
            return None
        # Days first (their totals), then the keys of the days that differ (the only
        # ones ``new_digest`` holds): a week's change compares a week of keys, not the
        # whole file's.
        account, day, view, days = keyed
        old = f"(SELECT * FROM {digest} t SEMI JOIN {days} d ON t.day IS NOT DISTINCT FROM d.day)"
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {changed} AS SELECT account_id, day FROM {old} o "
            f"FULL JOIN {new_digest} n USING (account_id, day) "
            "WHERE o.n IS DISTINCT FROM n.n OR o.h IS DISTINCT FROM n.h")
        columns = ", ".join(f"r.c{i}" for i in range(len(staged.types)))
        # The changed days first (a week's appended rows are a sliver of the file), then
        # the keys; a key that cannot be parsed (no day) is always among them.
        since = f"({day} IS NULL OR {day} >= (SELECT min(day) FROM {changed}))"
        rows = (f"SELECT r.* FROM {view} r SEMI JOIN {changed} c "
                f"ON {account} IS NOT DISTINCT FROM c.account_id AND {day} IS NOT DISTINCT FROM c.day "
                f"WHERE {since}")
        if view != staged.view:  # parsed keys: pick the rows first, then read them once
            picked = session.table("part_rows", f"SELECT _row FROM ({rows})")
            rows = f"SELECT r.* FROM {staged.view} r SEMI JOIN {picked} p ON r._row = p._row"
        part = session.table("part", (
            f"SELECT CAST(row_number() OVER (ORDER BY r._row) - 1 AS BIGINT) AS _row, "
            f"r._row AS _file_row, {columns} "
            f"FROM ({rows}) r ORDER BY r._row"))
        staged.view, staged.part = part, True
        date_column = _quote(SOURCES[name].date_column)
        others = session.view("others", (
            f"SELECT * FROM {clean} o ANTI JOIN {changed} c "
            f"ON o.account_id = c.account_id AND CAST(o.{date_column} AS DATE) = c.day"))
        report = _check(session, staged, account_ids, _end_of_day(now), staging, others=others)
        if any(p.severity == ERROR for p in report.problems):
            return None
        con.execute(f"DROP TABLE IF EXISTS {_quote(table)}")
        con.execute(f"ALTER TABLE {staging} RENAME TO {_quote(table)}")
        return report
    finally:
        con.execute(f"DROP TABLE IF EXISTS {staging}")
        session.close()


def fetch_tables(con: duckdb.DuckDBPyConnection, tables: dict[str, str]) -> dict[str, pd.DataFrame]:
    """The clean DuckDB tables of :func:`validate_into` as the pandas path's DataFrames
    (contract columns typed as ``validate_sources`` types them)."""
    out = {}
    for name, table in tables.items():
        frame = con.table(_quote(table)).to_arrow_table().to_pandas()
        source = SOURCES[name]
        types = {}
        for column in frame.columns:
            col = source.column(column)
            if col is not None:
                types[column] = _PANDAS_TYPE[col.kind]
            elif source.extra_numeric:
                types[column] = "float64"
        out[name] = frame.astype(types)
    return out
