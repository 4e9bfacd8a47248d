"""The input data contract, as code.

One folder, one file per source (see ``docs/data-contract.md``). This module holds
what every source must look like and the pure functions that check it:

    raw tables (as read) -> parse types -> check rules -> clean tables + problems

Nothing here reads or writes files; :mod:`pipelines.io` does that and hands over
:class:`RawSource` objects. Every problem found is a :class:`Problem` that names the
file, the column, an example row and the reason, with a *severity*:

* ``error`` -- structural or outcome-changing: the data cannot be used as it is.
* ``drop``  -- a row-level anomaly: the rows are removed, counted and reported.

The schemas are declared once in :data:`SOURCES`; the row-level value rules are
turned into pandera schemas, so a rule is written in one place and enforced lazily
over the whole table (every failure is counted, not just the first).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import pandas as pd
import pandera.pandas as pandera
import pyarrow as pa
import pyarrow.compute as pc
from pandera.errors import SchemaErrors

ERROR = "error"
DROP = "drop"

NA_TOKENS = ("", "NA", "N/A", "n/a", "NaN", "nan", "null", "NULL", "None")


class Kind(StrEnum):
    """The logical type of a contract column."""

    STRING = "string"
    DATE = "date"
    TIMESTAMP = "timestamp"
    INT = "integer"
    FLOAT = "number"


@dataclass(frozen=True)
class Column:
    """One column of a source.

    Attributes:
        name: Column name in the file.
        kind: Logical type; values that cannot be parsed as it are an error.
        required: The column must exist and every row must have a value.
        unique: Values must not repeat (error).
        allowed: The closed set of accepted values (error otherwise).
        min_value: Smallest accepted value, inclusive.
        max_value: Largest accepted value, inclusive.
        range_severity: What a value outside ``min_value``..``max_value`` does.
    """

    name: str
    kind: Kind
    required: bool = False
    unique: bool = False
    allowed: tuple[str, ...] | None = None
    min_value: float | None = None
    max_value: float | None = None
    range_severity: str = DROP


@dataclass(frozen=True)
class Order:
    """``earlier`` must not come after ``later`` (``strict``: must come before)."""

    earlier: str
    later: str
    severity: str
    strict: bool = False


@dataclass(frozen=True)
class Source:
    """One input source of the contract.

    Attributes:
        name: File stem (``events`` -> ``events.parquet``/``.csv``/``.csv.gz``).
        columns: The known columns.
        required: Whether the source must be present.
        date_column: The column whose range ``validate`` reports, and which must
            not lie in the future (rows stamped after the run are dropped).
        orders: Date-order rules between columns.
        unique_together: Column combinations that must not repeat (error).
        extra_numeric: Extra columns are metrics and must be numeric
            (``account_metrics``).
        description: One line for humans.
    """

    name: str
    columns: tuple[Column, ...]
    required: bool = False
    date_column: str | None = None
    orders: tuple[Order, ...] = ()
    unique_together: tuple[str, ...] | None = None
    extra_numeric: bool = False
    description: str = ""

    @property
    def required_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.required]

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)


def _account_id() -> Column:
    return Column("account_id", Kind.STRING, required=True)


SOURCES: dict[str, Source] = {
    s.name: s
    for s in (
        Source(
            "accounts",
            (
                Column("account_id", Kind.STRING, required=True, unique=True),
                Column("created_at", Kind.DATE, required=True),
                Column("name", Kind.STRING),
                Column("segment", Kind.STRING),
                Column("industry", Kind.STRING),
                Column("csm", Kind.STRING),
            ),
            required=True,
            date_column="created_at",
            description="one row per customer account",
        ),
        Source(
            "subscriptions",
            (
                _account_id(),
                Column("start_date", Kind.DATE, required=True),
                Column("end_date", Kind.DATE, required=True),
                # ARR and seats decide revenue and churn labels: a bad value is an error.
                Column("arr", Kind.FLOAT, required=True, min_value=0, range_severity=ERROR),
                Column("subscription_id", Kind.STRING, unique=True),
                Column("plan", Kind.STRING),
                Column("seats", Kind.INT, min_value=0, range_severity=ERROR),
                Column("status", Kind.STRING, allowed=("renewed", "churned")),
            ),
            required=True,
            date_column="start_date",
            orders=(Order("start_date", "end_date", ERROR, strict=True),),
            description="contract terms; activity and churn are derived from them",
        ),
        Source(
            "events",
            (
                _account_id(),
                Column("timestamp", Kind.TIMESTAMP, required=True),
                Column("event", Kind.STRING, required=True),
                Column("user_id", Kind.STRING),
                Column("count", Kind.INT, min_value=1),
                Column("value", Kind.FLOAT),
            ),
            required=True,
            date_column="timestamp",
            description="product usage",
        ),
        Source(
            "tickets",
            (
                _account_id(),
                Column("created_at", Kind.TIMESTAMP, required=True),
                Column("ticket_id", Kind.STRING, unique=True),
                Column("resolved_at", Kind.TIMESTAMP),
                Column("priority", Kind.STRING, allowed=("low", "normal", "high", "urgent")),
                Column("csat", Kind.FLOAT, min_value=1, max_value=5),
            ),
            date_column="created_at",
            orders=(Order("created_at", "resolved_at", DROP),),
            description="support tickets",
        ),
        Source(
            "surveys",
            (
                _account_id(),
                Column("responded_at", Kind.TIMESTAMP, required=True),
                Column("kind", Kind.STRING, required=True, allowed=("nps", "csat")),
                # The range depends on kind (nps 0-10, csat 1-5): see _survey_score_rule.
                Column("score", Kind.FLOAT, required=True),
                Column("user_id", Kind.STRING),
            ),
            date_column="responded_at",
            description="NPS and CSAT survey responses",
        ),
        Source(
            "onboarding",
            (
                _account_id(),
                Column("milestone", Kind.STRING, required=True),
                Column("completed_at", Kind.TIMESTAMP, required=True),
            ),
            date_column="completed_at",
            unique_together=("account_id", "milestone"),
            description="completed onboarding milestones",
        ),
        Source(
            "invoices",
            (
                _account_id(),
                Column("issued_at", Kind.DATE, required=True),
                Column("due_at", Kind.DATE, required=True),
                Column("amount", Kind.FLOAT, required=True, min_value=0),
                Column("invoice_id", Kind.STRING, unique=True),
                Column("paid_at", Kind.DATE),
            ),
            date_column="issued_at",
            orders=(Order("issued_at", "due_at", DROP), Order("issued_at", "paid_at", DROP)),
            description="invoices and payments; empty paid_at = unpaid",
        ),
        Source(
            "csm_notes",
            (
                _account_id(),
                Column("recorded_at", Kind.TIMESTAMP, required=True),
                Column("sentiment", Kind.FLOAT, required=True, min_value=1, max_value=10),
                Column("note", Kind.STRING),
            ),
            date_column="recorded_at",
            description="the CSM's own read of the account, 1 (worst) to 10",
        ),
        Source(
            "marketing",
            (
                _account_id(),
                Column("timestamp", Kind.TIMESTAMP, required=True),
                Column("kind", Kind.STRING, required=True),
                Column("user_id", Kind.STRING),
            ),
            date_column="timestamp",
            description="marketing engagement: email clicks, webinars, docs visits",
        ),
        Source(
            "account_metrics",
            (
                _account_id(),
                Column("as_of_date", Kind.DATE, required=True),
            ),
            date_column="as_of_date",
            unique_together=("account_id", "as_of_date"),
            extra_numeric=True,
            description="bring-your-own metrics computed in a warehouse",
        ),
    )
}

REQUIRED_SOURCES = tuple(name for name, s in SOURCES.items() if s.required)


@dataclass(frozen=True)
class RawSource:
    """A source as read from disk, before any parsing.

    Attributes:
        name: Source name (``events``).
        file: File name shown in messages (``events.csv.gz``).
        table: The table as read; CSV columns are strings, Parquet keeps its types.
        first_row_number: Number shown for the table's first row: 2 for CSV (line 1
            is the header), 1 for Parquet (row numbers).
        numbering: ``"line"`` or ``"row"`` when ``first_row_number`` alone does not
            say (default: ``line`` when it is 2).
    """

    name: str
    file: str
    table: pd.DataFrame
    first_row_number: int = 2
    numbering: str | None = None

    @property
    def row_word(self) -> str:
        """``line`` (a CSV file's line) or ``row``; ``numbering`` overrides the default
        taken from ``first_row_number`` (a CSV tail validated alone starts later)."""
        if self.numbering:
            return self.numbering
        return "line" if self.first_row_number == 2 else "row"


@dataclass(frozen=True)
class Problem:
    """One rule broken by one or more rows of a source."""

    source: str
    file: str
    rule: str
    severity: str
    reason: str
    column: str | None = None
    count: int = 1
    example: str | None = None

    def __str__(self) -> str:
        where = self.file + (f", column '{self.column}'" if self.column else "")
        rows = f" ({self.count:,} rows)" if self.count > 1 else ""
        action = " -> rows dropped" if self.severity == DROP else ""
        example = f"; e.g. {self.example}" if self.example else ""
        return f"{where}: {self.reason}{rows}{example}{action}"


@dataclass
class SourceReport:
    """What validation found in one source."""

    name: str
    file: str
    rows: int
    kept_rows: int = 0
    date_min: pd.Timestamp | None = None
    date_max: pd.Timestamp | None = None
    problems: list[Problem] = field(default_factory=list)


@dataclass
class Validation:
    """The outcome of validating a data folder.

    Attributes:
        tables: Clean, typed tables (rows with ``drop`` problems removed). Empty
            when there are errors.
        reports: One report per source present.
        problems: Problems not tied to one source's rows (missing files).
        missing_optional: Optional sources that are absent.
    """

    tables: dict[str, pd.DataFrame]
    reports: dict[str, SourceReport]
    problems: list[Problem] = field(default_factory=list)
    missing_optional: list[str] = field(default_factory=list)

    @property
    def all_problems(self) -> list[Problem]:
        return self.problems + [p for r in self.reports.values() for p in r.problems]

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.all_problems if p.severity == ERROR]

    @property
    def drops(self) -> list[Problem]:
        return [p for p in self.all_problems if p.severity == DROP]

    @property
    def ok(self) -> bool:
        return not self.errors


class _Checker:
    """Collects problems for one source, with row examples in the file's numbering."""

    def __init__(self, raw: RawSource) -> None:
        self.raw = raw
        self.problems: list[Problem] = []
        self.drop_mask = pd.Series(False, index=pd.RangeIndex(len(raw.table)))

    def row_ref(self, index_label: int) -> str:
        return f"{self.raw.row_word} {int(index_label) + self.raw.first_row_number}"

    def add(
        self,
        rule: str,
        severity: str,
        reason: str,
        column: str | None = None,
        bad: pd.Series | None = None,
        shown: pd.Series | pd.DataFrame | None = None,
    ) -> None:
        """Record a rule broken by the rows where ``bad`` is True (or file-wide)."""
        if bad is None:
            self.record(rule, severity, reason, column)
            return
        bad = bad.fillna(False).astype(bool)
        count = int(bad.sum())
        if count == 0:
            return
        first = bad.index[bad.to_numpy()][0]
        self.record(rule, severity, reason, column, count, first,
                    None if shown is None else shown.loc[first])
        if severity == DROP:
            self.drop_mask |= bad

    def record(
        self,
        rule: str,
        severity: str,
        reason: str,
        column: str | None = None,
        count: int = 1,
        first: int | None = None,
        shown_value: object = None,
    ) -> None:
        """Record a rule broken by ``count`` rows, the first at index label ``first``
        (None: file-wide), showing ``shown_value`` (that row's value, or its values as a
        Series) when given. The one place a problem's text is made: the pandas checks
        above and the DuckDB checks (:mod:`pipelines.ingest`) both come here."""
        example = None
        if first is not None:
            example = self.row_ref(first)
            if shown_value is not None:
                example += f": {_show(shown_value)}"
        self.problems.append(
            Problem(self.raw.name, self.raw.file, rule, severity, reason, column, count, example)
        )


def _show(value: object) -> str:
    if isinstance(value, pd.Series):
        return ", ".join(f"{k}={_show(v)}" for k, v in value.items())
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NaT:
        return "(empty)"
    if isinstance(value, pd.Timestamp):
        return value.date().isoformat() if value == value.normalize() else value.isoformat()
    if isinstance(value, (int, float, np.number)):
        return f"{value:g}"
    text = str(value)
    return repr(text if len(text) <= 60 else text[:57] + "...")


_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}([T ].*)?$")


def _parse(series: pd.Series, kind: Kind) -> tuple[pd.Series, pd.Series]:
    """Parse one column to its contract type.

    Returns:
        The parsed column and a mask of values that were present but unparseable.
    """
    if kind is Kind.STRING:
        parsed = series.astype("str").where(series.notna())
        parsed = parsed.str.strip()
        return parsed.where(parsed != "", None), pd.Series(False, index=series.index)
    present = series.notna()
    if kind in (Kind.DATE, Kind.TIMESTAMP):
        if pd.api.types.is_datetime64_any_dtype(series):
            parsed = series.dt.tz_convert("UTC").dt.tz_localize(None) if series.dt.tz else series
        else:
            text = series.astype("str").str.strip()
            # pandas also accepts "12/01/2024"; the contract says ISO 8601, so insist.
            iso = text.str.match(_ISO_DATE).fillna(False)
            parsed = pd.to_datetime(text.where(iso), format="ISO8601", utc=True, errors="coerce")
            parsed = parsed.dt.tz_localize(None)
        parsed = parsed.astype("datetime64[us]")
        if kind is Kind.DATE:
            parsed = parsed.dt.normalize()
        return parsed, present & parsed.isna()
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        parsed = series.astype("float64")
    else:
        parsed = _to_float(series.astype("str").str.strip())
    bad = present & (parsed.isna() | ~np.isfinite(parsed.fillna(0)))
    if kind is Kind.INT:
        bad |= present & parsed.notna() & (parsed % 1 != 0)
        # Whole numbers beyond a 64-bit integer (9.2e18) cannot be held: unparseable too.
        bad |= present & parsed.notna() & (parsed.abs() >= 2.0**63)
        parsed = parsed.where(~bad).astype("Int64")
    return parsed.where(~bad), bad


def _to_float(text: pd.Series) -> pd.Series:
    """Numbers from stripped text; what is not a number becomes NaN.

    Arrow's parser first: many times faster on a large column, and it accepts exactly
    what ``pd.to_numeric`` does on stripped text (tested). A column with any value it
    rejects goes through ``pd.to_numeric``, which marks just those values.
    """
    try:
        values = pc.cast(pa_array(text), pa.float64())
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return pd.to_numeric(text, errors="coerce").astype("float64")
    return pd.Series(values.to_numpy(zero_copy_only=False), index=text.index, dtype="float64")


def pa_array(values: pd.Series) -> pa.Array:
    """A column as one Arrow array (zero-copy for Arrow-backed text)."""
    array = pa.array(values, from_pandas=True)
    return array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array


def is_in(values: pd.Series, allowed: pd.Index) -> pd.Series:
    """``values.isin(allowed)`` for text, by Arrow's hash lookup (pandas turns Arrow text
    into Python objects for ``isin``: seconds per ten million rows)."""
    found = pc.is_in(pa_array(values.astype("str")), value_set=pa.array(allowed.astype("str")))
    return pd.Series(found.to_numpy(zero_copy_only=False), index=values.index, dtype=bool)


def _kind_words(kind: Kind) -> str:
    return {
        Kind.DATE: "an ISO 8601 date (YYYY-MM-DD)",
        Kind.TIMESTAMP: "an ISO 8601 timestamp (YYYY-MM-DD[THH:MM:SS[+HH:MM]])",
        Kind.INT: "a whole number",
        Kind.FLOAT: "a number",
        Kind.STRING: "text",
    }[kind]


def _delimiter_hint(columns: list[str]) -> str | None:
    if len(columns) == 1:
        for sep, word in ((";", "semicolons"), ("\t", "tabs"), ("|", "pipes")):
            if sep in columns[0]:
                return f"the header looks separated by {word}; the contract needs commas"
    return None


def _value_schema(source: Source) -> pandera.DataFrameSchema:
    """The pandera schema for a source's single-column value rules."""
    columns = {}
    for col in source.columns:
        checks = []
        if col.allowed is not None:
            checks.append(
                pandera.Check.isin(
                    list(col.allowed),
                    name=f"allowed|{ERROR}|must be one of {', '.join(col.allowed)}",
                )
            )
        if col.min_value is not None or col.max_value is not None:
            lo = -np.inf if col.min_value is None else col.min_value
            hi = np.inf if col.max_value is None else col.max_value
            if np.isinf(hi):
                words = f"must be >= {lo:g}"
            elif np.isinf(lo):
                words = f"must be <= {hi:g}"
            else:
                words = f"must be between {lo:g} and {hi:g}"
            checks.append(
                pandera.Check.in_range(lo, hi, name=f"range|{col.range_severity}|{words}")
            )
        if checks:
            columns[col.name] = pandera.Column(checks=checks, nullable=True, required=False)
    return pandera.DataFrameSchema(columns)


def _check_values(checker: _Checker, source: Source, table: pd.DataFrame) -> None:
    schema = _value_schema(source)
    if not schema.columns:
        return
    try:
        schema.validate(table, lazy=True)
    except SchemaErrors as exc:
        cases = exc.failure_cases
        for (column, _), group in cases.groupby(["column", "check"], sort=False):
            check_number = int(group["check_number"].iloc[0])
            rule, severity, words = schema.columns[column].checks[check_number].name.split("|", 2)
            bad = pd.Series(False, index=table.index)
            bad.loc[group["index"].dropna().astype(table.index.dtype).unique()] = True
            checker.add(
                f"{source.name}.{column}.{rule}", severity, f"value {words}", column, bad,
                table[column],
            )


def _survey_score_rule(checker: _Checker, table: pd.DataFrame) -> None:
    for kind, lo, hi in (("nps", 0, 10), ("csat", 1, 5)):
        bad = (table["kind"] == kind) & ~table["score"].between(lo, hi)
        checker.add(
            f"surveys.score.{kind}_range", DROP,
            f"{kind} score must be between {lo} and {hi}", "score", bad & table["score"].notna(),
            table["score"],
        )


def _repeated_names(columns: list[str]) -> dict[str, list[int]]:
    """Each column name that occurs more than once, with its 1-based positions.

    >>> _repeated_names(["account_id", "created_at", "account_id", "name"])
    {'account_id': [1, 3]}
    """
    positions: dict[str, list[int]] = {}
    for number, name in enumerate(columns, start=1):
        positions.setdefault(name, []).append(number)
    return {name: found for name, found in positions.items() if len(found) > 1}


def _check_columns(checker: _Checker, source: Source, columns: list[str]) -> None:
    """Repeated column names and missing required columns (names already stripped)."""
    for name, positions in _repeated_names(columns).items():
        where = f"{', '.join(map(str, positions[:-1]))} and {positions[-1]}"
        checker.add(
            f"{source.name}.duplicate_column", ERROR,
            f"{len(positions)} columns have this name (columns {where}); it is ambiguous "
            "which one holds the values, so rename or remove all but one", name,
        )
    missing = [c for c in source.required_columns if c not in columns]
    if missing:
        hint = _delimiter_hint(columns)
        found = ", ".join(map(repr, columns[:12]))
        checker.add(
            f"{source.name}.missing_column", ERROR,
            f"required column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(map(repr, missing))} missing (found: {found})"
            + (f"; {hint}" if hint else ""),
        )


def _check_source(
    raw: RawSource, account_ids: pd.Index | None, now: pd.Timestamp
) -> tuple[SourceReport, pd.DataFrame | None]:
    """Check one source. Returns its report and clean table (None on errors)."""
    source = SOURCES[raw.name]
    checker = _Checker(raw)
    # Row numbers in messages are positions; a Parquet file may carry its own index.
    table = raw.table.reset_index(drop=True)
    table.columns = [str(c).strip() for c in table.columns]
    report = SourceReport(raw.name, raw.file, rows=len(table))

    _check_columns(checker, source, list(table.columns))
    if checker.problems:  # the columns themselves are wrong: no row can be read right
        report.problems = checker.problems
        return report, None
    if source.required and len(table) == 0:
        checker.add(f"{raw.name}.empty", ERROR, "required source has a header but no rows")

    for col in source.columns:
        if col.name not in table.columns:
            continue
        parsed, unparseable = _parse(table[col.name], col.kind)
        checker.add(
            f"{raw.name}.{col.name}.type", ERROR, f"value is not {_kind_words(col.kind)}",
            col.name, unparseable, table[col.name],
        )
        if col.required:
            checker.add(
                f"{raw.name}.{col.name}.required", ERROR, "required value is empty",
                col.name, parsed.isna() & ~unparseable,
            )
        table[col.name] = parsed
    if source.extra_numeric:
        known = {c.name for c in source.columns}
        for extra in (c for c in table.columns if c not in known):
            parsed, unparseable = _parse(table[extra], Kind.FLOAT)
            checker.add(
                f"{raw.name}.{extra}.type", ERROR,
                "metric value is not a number (every extra column here is a metric)",
                extra, unparseable, table[extra],
            )
            table[extra] = parsed
    for col in source.columns:
        if col.unique and col.name in table.columns:
            dup = table[col.name].duplicated(keep=False) & table[col.name].notna()
            checker.add(f"{raw.name}.{col.name}.unique", ERROR,
                        "value must be unique but repeats", col.name, dup, table[col.name])
    if source.unique_together:
        keys = list(source.unique_together)
        dup = table.duplicated(keys, keep=False)
        checker.add(f"{raw.name}.unique_together", ERROR,
                    f"({', '.join(keys)}) must be unique but repeats", None, dup, table[keys])
    _check_values(checker, source, table)
    if raw.name == "surveys":
        _survey_score_rule(checker, table)
    for order in source.orders:
        if order.later not in table.columns or order.earlier not in table.columns:
            continue
        early, late = table[order.earlier], table[order.later]
        bad = (late <= early) if order.strict else (late < early)
        words = "after" if order.strict else "on or after"
        checker.add(
            f"{raw.name}.{order.later}.order", order.severity,
            f"{order.later} must be {words} {order.earlier}", order.later, bad,
            table[[order.earlier, order.later]],
        )
    if source.date_column and raw.name != "accounts" and raw.name != "subscriptions":
        future = table[source.date_column] > now
        checker.add(
            f"{raw.name}.{source.date_column}.future", DROP,
            f"{source.date_column} is in the future (after {now.date().isoformat()})",
            source.date_column, future, table[source.date_column],
        )
    if account_ids is not None and raw.name != "accounts":
        unknown = ~is_in(table["account_id"], account_ids)
        checker.add(
            f"{raw.name}.account_id.reference", DROP,
            "account_id not found in accounts", "account_id", unknown, table["account_id"],
        )

    report.problems = checker.problems
    if any(p.severity == ERROR for p in checker.problems):
        return report, None
    clean = table.loc[~checker.drop_mask].reset_index(drop=True)
    report.kept_rows = len(clean)
    if source.date_column and len(clean):
        report.date_min = clean[source.date_column].min()
        report.date_max = clean[source.date_column].max()
    return report, clean


def validate_sources(
    raws: Mapping[str, RawSource],
    now: pd.Timestamp | None = None,
    progress: Callable[[str], None] | None = None,
) -> Validation:
    """Check every source of a data folder against the contract.

    Args:
        raws: Sources as read, keyed by name; absent optional sources are left out.
        now: Anything stamped after this is "in the future" (default: end of today, UTC).
        progress: Called with each source's name as it is checked.

    Returns:
        The clean tables, per-source reports and problems.
    """
    now = now if now is not None else pd.Timestamp.now("UTC").tz_localize(None).normalize()
    now = now + pd.Timedelta(days=1) - pd.Timedelta(microseconds=1)
    result = Validation(tables={}, reports={})
    for name in REQUIRED_SOURCES:
        if name not in raws:
            result.problems.append(Problem(
                name, f"{name}.parquet|.csv|.csv.gz", f"{name}.missing", ERROR,
                "required source is missing from the data folder",
            ))
    result.missing_optional = [n for n in SOURCES if n not in raws and n not in REQUIRED_SOURCES]
    unknown = sorted(set(raws) - set(SOURCES))
    if unknown:
        raise ValueError(f"unknown sources: {unknown}")

    account_ids = None
    for name in SOURCES:  # accounts first: the others are checked against it
        if name not in raws:
            continue
        if progress:
            progress(name)
        report, clean = _check_source(raws[name], account_ids, now)
        result.reports[name] = report
        if clean is not None:
            result.tables[name] = clean
        if name == "accounts" and list(raws[name].table.columns).count("account_id") == 1:
            # Even when accounts has errors, check the others against the ids it has,
            # so one run reports every problem.
            ids = pd.Index(_parse(raws[name].table["account_id"], Kind.STRING)[0].dropna())
            account_ids = ids if len(ids) else None
    if result.errors:
        result.tables = {}
    return result


def date_columns(name: str) -> dict[str, Kind]:
    """The date and timestamp columns of a source (for writing files)."""
    return {c.name: c.kind for c in SOURCES[name].columns if c.kind in (Kind.DATE, Kind.TIMESTAMP)}


def today_utc() -> dt.date:
    """Today's date in UTC, the default reference for "in the future"."""
    return dt.datetime.now(dt.UTC).date()
