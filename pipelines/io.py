"""Reading the data folder and writing outputs atomically.

The only place that touches files. Reading turns every way a file can be broken
(empty, not UTF-8, ragged rows, corrupt Parquet) into a :class:`DataContractError`
that names the file and the reason. Writing goes to a temporary file in the target
folder and is renamed into place, so a failed run never leaves half-written output.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import functools
import json
import math
import gzip
import os
import re
import secrets
import shutil
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from healthscore.contract import NA_TOKENS, SOURCES, Kind, RawSource, date_columns
from healthscore.errors import DataContractError, HealthscoreError

SUFFIXES = (".parquet", ".csv", ".csv.gz")


def find_sources(data_dir: Path) -> dict[str, Path]:
    """Map each contract source present in ``data_dir`` to its file.

    Raises:
        DataContractError: The folder does not exist, or a source has two files.
    """
    if not data_dir.is_dir():
        raise DataContractError(f"{data_dir}: data folder not found")
    found: dict[str, Path] = {}
    for name in SOURCES:
        files = [data_dir / f"{name}{s}" for s in SUFFIXES if (data_dir / f"{name}{s}").is_file()]
        if len(files) > 1:
            raise DataContractError(
                f"{data_dir}: source '{name}' has more than one file "
                f"({', '.join(f.name for f in files)}); keep exactly one"
            )
        if files:
            found[name] = files[0]
    return found


def _ragged_line(message: str) -> str:
    match = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", message)
    if match:
        want, line, got = match.groups()
        return f"line {line} has {got} fields but the header has {want}"
    return message.strip().splitlines()[-1]


def read_source(name: str, path: Path) -> RawSource:
    """Read one source file as it is, for :func:`healthscore.contract.validate_sources`.

    CSV columns are read as text so that the contract, not pandas, decides how each
    value parses, and can point at the line of any value it rejects.
    """
    file = path.name
    if path.stat().st_size == 0:
        raise DataContractError(f"{file}: the file is empty (no header, no rows)")
    try:
        if path.suffix == ".parquet":
            names = pq.read_schema(path).names
            if len(set(names)) < len(names):
                # The dataset reader rejects a repeated name ("Multiple matches for
                # FieldRef"); the file reader keeps both, so the contract can say which.
                table = pq.ParquetFile(path).read().to_pandas()
            else:
                table = pq.read_table(path).to_pandas()
            return RawSource(name, file, table, first_row_number=1)
        table = pd.read_csv(
            path,
            dtype=str,
            keep_default_na=False,
            na_values=list(NA_TOKENS),
            compression="gzip" if path.name.endswith(".gz") else None,
            encoding="utf-8-sig",  # Excel writes a byte-order mark
            skipinitialspace=True,
        )
        header = _csv_header(path)
    except pd.errors.EmptyDataError:
        raise DataContractError(f"{file}: the file has no header row") from None
    except pd.errors.ParserError as exc:
        raise DataContractError(f"{file}: cannot be parsed as CSV: {_ragged_line(str(exc))}") from None
    except UnicodeDecodeError as exc:
        raise DataContractError(
            f"{file}: not UTF-8 text (byte {exc.start}); export it as UTF-8 CSV"
        ) from None
    except csv.Error as exc:
        raise DataContractError(f"{file}: cannot be parsed as CSV: header row ({exc})") from None
    except (gzip.BadGzipFile, zlib.error, EOFError) as exc:
        raise DataContractError(f"{file}: not a valid gzip file ({exc})") from None
    except (pa.ArrowException, OSError) as exc:
        raise DataContractError(f"{file}: cannot be read as Parquet ({exc})") from None
    if not isinstance(table.index, pd.RangeIndex):
        # pandas silently turns surplus leading fields into an index; say it instead.
        raise DataContractError(
            f"{file}: cannot be parsed as CSV: data rows have more fields than the header "
            f"({len(table.columns)} columns); check the header and the delimiter"
        )
    if _repeats(header) and len(header) == len(table.columns):
        # pandas renames a repeated name ("account_id" -> "account_id.1") and would let
        # the second column pass as an extra one: give the contract the names as written.
        # An empty name keeps pandas' "Unnamed: N" (trailing commas are common).
        table.columns = [h if h.strip() else c for h, c in zip(header, table.columns)]
    return RawSource(name, file, table, first_row_number=2)


def _csv_header(path: Path) -> list[str]:
    """The header row as the file writes it (same encoding, quoting and spacing rules as
    the table's read)."""
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8-sig", newline="") as handle:
        return next(csv.reader(handle, skipinitialspace=True), [])


def _repeats(names: list[str]) -> bool:
    """Whether a non-empty column name occurs twice (compared as the contract does,
    without surrounding spaces).

    >>> _repeats(["account_id", "created_at", "account_id "]), _repeats(["a", "", ""])
    (True, False)
    """
    stripped = [str(n).strip() for n in names if str(n).strip()]
    return len(set(stripped)) < len(stripped)


DATABASE_SUFFIXES = (".duckdb", ".ddb")


def read_data_folder(data_dir: Path | str) -> dict[str, RawSource]:
    """Read every contract source present in ``data_dir``: a folder of files, a DuckDB
    database file (``*.duckdb``), or a database URL that Ibis can connect to (for
    example ``postgres://user@host/db``, ``sqlite:///path.db``). In a database, each
    source is the table of the same name (``accounts``, ``subscriptions``, ``events``, ...)."""
    text = str(data_dir)
    if text.startswith("duckdb://"):
        return read_duckdb_file(Path(text.removeprefix("duckdb://").split("?")[0]))
    if "://" in text:
        return read_database(text, text)
    path = Path(data_dir)
    if path.suffix.lower() in DATABASE_SUFFIXES:
        if not path.is_file():
            raise DataContractError(f"{path}: DuckDB database file not found")
        return read_duckdb_file(path)
    return {name: read_source(name, path) for name, path in find_sources(path).items()}


def read_duckdb_file(path: Path) -> dict[str, RawSource]:
    """Each contract source from the table of its name in a DuckDB database file, opened
    read-only (DuckDB's own client: ibis 12 cannot list a DuckDB 2.0 file's tables)."""
    import duckdb

    try:
        con = duckdb.connect(str(path), read_only=True)
        tables = {row[0] for row in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'").fetchall()}
    except duckdb.Error as exc:
        raise DataContractError(f"{path.name}: cannot read the DuckDB database "
                                f"({str(exc).splitlines()[0][:200]})") from None
    try:
        found = _contract_tables(tables, path.name)
    except DataContractError:
        con.close()
        raise
    out = {name: RawSource(name, f"{path.name}:{name}", con.sql(f'SELECT * FROM "{name}"').df(),
                           first_row_number=1) for name in found}
    con.close()
    return out


def read_database(url: str, label: str) -> dict[str, RawSource]:
    """Each contract source from the database table of its name, as it is stored.

    Values are validated like a file's (typed columns as in Parquet, text as in CSV).
    Problems name the table as ``<label>:<table>``; rows are numbered from 1.
    """
    import ibis

    try:
        con = ibis.connect(url)
        tables = set(con.list_tables())
    except Exception as exc:  # each backend raises its own driver's errors
        raise DataContractError(f"{redact(label)}: cannot read the database "
                                f"({str(exc).splitlines()[0][:200]})") from None
    found = _contract_tables(tables, redact(label))
    out = {}
    for name in found:
        table = con.table(name).to_pyarrow().to_pandas()
        out[name] = RawSource(name, f"{redact(label)}:{name}", table, first_row_number=1)
    disconnect = getattr(con, "disconnect", None)
    if disconnect:
        disconnect()
    return out


def _contract_tables(tables: set[str], label: str) -> list[str]:
    """The contract sources among a database's tables, in contract order."""
    found = [name for name in SOURCES if name in tables]
    if not found:
        raise DataContractError(f"{label}: no contract tables (expected tables named "
                                f"{', '.join(SOURCES)})")
    return found


def redact(url: str) -> str:
    """A URL without its password, for messages.

    >>> redact("postgres://cs:secret@db.internal:5432/crm")
    'postgres://cs:***@db.internal:5432/crm'
    """
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def _new_beside(target: Path, create: Callable[[Path], None]) -> Path:
    """A fresh ``.<name>.<random>.tmp`` beside ``target``, made by ``create``, which must
    fail with FileExistsError rather than reuse a name."""
    for _ in range(100):
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
        try:
            create(tmp)
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"{target.parent}: no free temporary name for {target.name}")


def _new_file(path: Path) -> None:
    # Mode 0o666 like open(): the kernel applies the umask (or the folder's default ACL),
    # so a team's shared folder gets shareable outputs. mkstemp would make them 0o600.
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))


def _new_folder(path: Path) -> None:
    path.mkdir(mode=0o777)  # umask applies, as for mkdir(1); mkdtemp would make it 0o700


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it into place on success.

    On any failure the temporary file is removed and ``target`` is untouched. The file
    gets the permissions ``open()`` would give a new file (0o666 less the umask).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_beside(target, _new_file)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def exclusive(folder: Path, what: str, progress=None) -> Iterator[None]:
    """Hold ``folder/.lock`` exclusively: runs that write the same folder take turns.

    An advisory ``flock``: the operating system releases it when the process ends, even
    when it is killed, so a crashed run never leaves the folder locked.
    """
    folder.mkdir(parents=True, exist_ok=True)
    with locked(folder / ".lock", f"{what} ({folder})", progress):
        yield


@contextlib.contextmanager
def locked(lock_file: Path, what: str, progress=None) -> Iterator[None]:
    """Hold ``lock_file`` exclusively (an advisory ``flock``, freed by the operating system
    when the process ends); a run that has to wait says so."""
    import fcntl

    with open(lock_file, "a+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if progress:
                progress(f"waiting for another run to finish with {what}")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``target``; swap it into place on success.

    The folder gets the permissions ``mkdir`` would give it (0o777 less the umask).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_beside(target, _new_folder)
    try:
        yield tmp
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _for_csv(name: str | None, table: pd.DataFrame) -> pd.DataFrame:
    """Format dates as YYYY-MM-DD and timestamps as ISO 8601 for CSV."""
    out = table.copy()
    kinds = date_columns(name) if name in SOURCES else {}
    for column in out.columns:
        if not pd.api.types.is_datetime64_any_dtype(out[column]):
            continue
        values = out[column].dropna()
        is_date = kinds.get(column) is Kind.DATE or (
            column not in kinds and bool((values == values.dt.normalize()).all())
        )
        fmt = "%Y-%m-%d" if is_date else "%Y-%m-%dT%H:%M:%S"
        out[column] = out[column].dt.strftime(fmt)
    return out


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise_formulas(table: pd.DataFrame) -> pd.DataFrame:
    """Text cells that a spreadsheet would run as a formula get a leading apostrophe.

    Only text columns change: numbers (including negative ones) stay numbers.

    >>> neutralise_formulas(pd.DataFrame({"a": ["=1+1", "ok", "-2", "@x"], "b": [-1, 2, 3, 4]}))
         a  b
    0  '=1+1 -1
    1     ok  2
    2    '-2  3
    3    '@x  4
    """
    out = table.copy()
    for column in out.columns:
        if pd.api.types.is_string_dtype(out[column]) or out[column].dtype == object:
            values = out[column]
            text = values.astype("str")
            risky = values.notna() & text.str.startswith(FORMULA_START)
            if risky.any():
                out[column] = values.astype(object).where(~risky, "'" + text)
    return out


def write_table(table: pd.DataFrame, target: Path, source: str | None = None,
                spreadsheet_safe: bool = False) -> Path:
    """Write a table as Parquet, CSV or CSV.gz (by extension), atomically.

    With ``spreadsheet_safe``, CSV text cells that start like a formula are neutralised
    (see :func:`neutralise_formulas`); Parquet keeps the data as it is.
    """
    suffix = "".join(target.suffixes[-2:]) if target.name.endswith(".csv.gz") else target.suffix
    if suffix not in SUFFIXES:
        raise HealthscoreError(
            f"{target}: unsupported output format '{suffix}'; use .parquet, .csv or .csv.gz"
        )
    with atomic_path(target) as tmp:
        if suffix == ".parquet":
            arrow = pa.Table.from_pandas(table, preserve_index=False)
            metadata = {**(arrow.schema.metadata or {}),
                        b"healthscore": json.dumps(provenance(), sort_keys=True).encode()}
            pq.write_table(arrow.replace_schema_metadata(metadata), tmp)
        else:
            csv_table = neutralise_formulas(table) if spreadsheet_safe else table
            # gzip without a timestamp: the same table gives the same bytes.
            _for_csv(source, csv_table).to_csv(
                tmp, index=False,
                compression={"method": "gzip", "mtime": 0} if suffix == ".csv.gz" else None,
            )
    return target


def json_ready(value, digits: int = 4):
    """Tables' values as JSON values: NaN and infinities become null, NumPy scalars plain
    numbers (floats rounded to ``digits``), dates ``YYYY-MM-DD``; dicts and lists recursively.

    >>> json_ready({"x": np.float64("nan"), "d": pd.Timestamp("2026-09-30"), "ok": np.bool_(True)})
    {'x': None, 'd': '2026-09-30', 'ok': True}
    """
    if isinstance(value, dict):
        return {str(k): json_ready(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v, digits) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (np.floating, float)):
        return None if math.isnan(value) or math.isinf(value) else round(float(value), digits)
    if isinstance(value, np.integer):
        return int(value)
    if value is None or value is pd.NaT:  # NaT first: it is a datetime too
        return None
    if isinstance(value, (pd.Timestamp, dt.date)):
        return f"{value:%Y-%m-%d}"
    return value


PROVENANCE = ("lightgbm", "scikit-learn", "pandas", "numpy", "pyarrow", "duckdb", "ibis-framework",
              "mlflow", "shap")


@functools.cache
def provenance() -> dict[str, str]:
    """The versions that make an output: healthscore, Python and the libraries that
    compute it. Parquet outputs carry it in their metadata (key ``healthscore``).

    >>> sorted(provenance())[:3]
    ['duckdb', 'healthscore', 'ibis-framework']
    """
    import platform
    from importlib import metadata

    from healthscore import __version__

    found = {"healthscore": __version__, "python": platform.python_version()}
    for name in PROVENANCE:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found
