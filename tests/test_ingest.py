"""Data tests: the DuckDB validator (pipelines.ingest) agrees with the pandas one.

Both must give the same problems (word for word), drops, reports and clean tables, or
raise the same error, on every folder of a corpus of broken ones: the contract tests'
cases, the fuzz generator's splices and random bytes, each as CSV, CSV.gz and Parquet
(text and typed), and a DuckDB database file.
"""

from __future__ import annotations

import gzip
import io
import random
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from healthscore.errors import DataContractError
from pipelines.ingest import validate_into, validate_source_into
from pipelines.validate import check_data_folder
from tests.conftest import VALID_FOLDER
from tests.test_contract_fuzz import JUNK

NOW = pd.Timestamp("2026-01-01")

# (file, old, new): the contract tests' broken cases, and a few more.
EDITS = [
    ("accounts", "2024-01-15", "2024-13-01"), ("accounts", "2024-01-15", "12/01/2024"),
    ("accounts", "2024-01-15", "2024-02-30"), ("accounts", "2024-01-15", " 2024-01-15T10:00:00 "),
    ("accounts", "a2,2024-01-15", "a1,2024-01-15"), ("accounts", ",", ";"),
    ("accounts", "account_id,created_at", "account_id,account_id"),
    ("accounts", "Acme Corp", "  NA"), ("accounts", "a3,", "NULL,"),
    ("subscriptions", "40000", "40k"), ("subscriptions", "40000", "-40000"),
    ("subscriptions", "40000", "4e4"), ("subscriptions", "40000", " 40000.50"),
    ("subscriptions", ",arr,", ",revenue,"), ("subscriptions", "s5,", "s4,"),
    ("subscriptions", "2024-02-01,2025-02-01", "2024-02-01,2024-02-01"),
    ("subscriptions", ",renewed", ",cancelled"), ("subscriptions", ",100,", ",1e19,"),
    ("subscriptions", ",100,", ",100.0,"), ("subscriptions", ",100,", ",1_00,"),
    ("events", "u7,3,", "u7,2.5,"), ("events", ",login,u9", ",,u9"), ("events", "u7,3,", "u7,0,"),
    ("events", "a2,2024-03-02T10:00:00+02:00", "zz,2024-03-02T10:00:00-05:30"),
    ("events", "2024-03-01T09:15:00", "2999-01-01T00:00:00"),
    ("events", "2024-03-01T09:15:00", "2024-03-01 09:15:00.123456789"),
    ("events", "2024-03-01T09:15:00", "2024-03-01T09:15Z"),
    ("events", "2024-03-01T09:15:00", "2024-03-01T24:00:00"),
    ("events", "1500.5", "inf"), ("events", "1500.5", "1e400"), ("events", "1500.5", "0x10"),
    ("events", "u1,1,\n", "u1,1,\n\n   \n"),
    ("tickets", ",urgent,", ",P1,"), ("tickets", "high,4", "high,7"),
    ("tickets", "2024-03-02T10:00:00,high", "2024-02-02T10:00:00,high"),
    ("surveys", ",csat,", ",ces,"), ("surveys", "nps,9,", "nps,11,"), ("surveys", "csat,2,", "csat,0,"),
    ("onboarding", "a1,go_live", "a1,kickoff"), ("csm_notes", ",8,", ",11,"),
    ("csm_notes", '"Happy, expanding', '"Happy\nexpanding'),
    ("invoices", ",100,", ",-100,"),
    ("invoices", "2024-01-31,120000,2024-01-20", "2024-01-31,120000,2023-12-20"),
    ("account_metrics", ",4,", ",four,"), ("account_metrics", ",api_error_rate", ""),
    ("marketing", "webinar,u1\n", "webinar,u1\na1,2024-03-05T11:00:00,webinar,u1,extra,more\n"),
    ("marketing", "webinar,u1\n", "webinar,u1,\n"),
]


def _fuzz_cases(count: int, seed: int = 7) -> list[dict]:
    """The fuzz test's splices and random files, drawn with a fixed seed."""
    draw = random.Random(seed)
    cases = []
    for _ in range(count):
        file = draw.choice(sorted(VALID_FOLDER))
        text = VALID_FOLDER[file]
        if draw.random() < 0.15:
            content = bytes(draw.randrange(256) for _ in range(draw.randrange(60)))
            cases.append({file: content})
            continue
        cut = draw.randrange(len(text) + 1)
        junk = draw.choice(JUNK)
        cases.append({file: text[:cut] + junk + text[cut + draw.randrange(6):]})
    return cases


def _typed(text: str) -> pd.DataFrame:
    """A CSV text as pandas would type it (numbers, and timestamps where all parse)."""
    table = pd.read_csv(io.StringIO(text))
    for column in table.columns:
        if table[column].dtype == object or pd.api.types.is_string_dtype(table[column]):
            stamps = pd.to_datetime(table[column], errors="coerce", utc=True, format="ISO8601")
            if stamps.notna().sum() == table[column].notna().sum() and stamps.notna().any():
                table[column] = stamps
    return table


def _corpus() -> list[tuple[str, dict]]:
    cases = [(f"{f}:{old!r}->{new!r}", {f"{f}.csv": VALID_FOLDER[f"{f}.csv"].replace(old, new)})
             for f, old, new in EDITS]
    cases += [(f"fuzz{i}", case) for i, case in enumerate(_fuzz_cases(40))]
    cases += [(f"header-only {f}", {f: VALID_FOLDER[f].splitlines()[0] + "\n"}) for f in ("accounts.csv", "events.csv")]
    cases += [("empty events", {"events.csv": ""}), ("no tickets", {"tickets.csv": None})]
    variants = []
    for label, case in cases[: len(EDITS)]:
        [(file, text)] = case.items()
        stem = file.removesuffix(".csv")
        if stem in ("events", "marketing"):
            variants.append((f"gz {label}", {file: None, f"{file}.gz": gzip.compress(text.encode())}))
        try:
            frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
            typed = _typed(text)
        except Exception:  # noqa: BLE001 -- a file pandas cannot read has no Parquet variant
            continue
        variants.append((f"parquet text {label}", {file: None, f"{stem}.parquet": frame}))
        variants.append((f"parquet typed {label}", {file: None, f"{stem}.parquet": typed}))
    return cases + variants


def _write(folder: Path, case: dict) -> Path:
    folder.mkdir()
    files = dict(VALID_FOLDER)
    files.update(case)
    for name, content in files.items():
        if content is None:
            continue
        if isinstance(content, pd.DataFrame):
            content.to_parquet(folder / name)
        elif isinstance(content, bytes):
            (folder / name).write_bytes(content)
        else:
            (folder / name).write_text(content, encoding="utf-8")
    return folder


def _outcome(folder, engine: str):
    try:
        validation = check_data_folder(folder, engine=engine, now=NOW)
    except DataContractError as exc:
        return ("raises", str(exc)), {}
    reports = {n: (r.rows, r.kept_rows, r.date_min, r.date_max, [str(p) for p in r.problems])
               for n, r in validation.reports.items()}
    summary = ([f"{p.severity}: {p}" for p in validation.all_problems], [p.count for p in validation.all_problems],
               reports, validation.missing_optional)
    return summary, validation.tables


def assert_engines_agree(folder) -> None:
    expected, expected_tables = _outcome(folder, "pandas")
    found, tables = _outcome(folder, "duckdb")
    assert found == expected
    assert set(tables) == set(expected_tables)
    for name, table in expected_tables.items():
        # DuckDB cuts a column name at a NUL byte (an extra column's name from junk).
        table = table.rename(columns=lambda c: c.split("\x00")[0])
        pd.testing.assert_frame_equal(tables[name], table, obj=name)


CORPUS = _corpus()
# The fast suite checks the hand-written edits and special folders; the seeded fuzz
# splices and the gzip/Parquet variants of every edit run with the slow tests (CI runs
# both), which keeps the default suite within its time.
_FAST = len(EDITS)


def _params() -> list:
    return [pytest.param(label, case, id=label,
                         marks=() if n < _FAST or not label.startswith(("fuzz", "gz ", "parquet "))
                         else pytest.mark.slow)
            for n, (label, case) in enumerate(CORPUS)]


@pytest.mark.parametrize(("label", "case"), _params())
def test_duckdb_and_pandas_validators_agree(tmp_path, label, case):
    assert_engines_agree(_write(tmp_path / "data", case))


def test_agree_on_typed_columns_of_every_kind(tmp_path):
    # Parquet brings its own types: numbers, booleans, dates, timestamps in any column.
    draw = np.random.default_rng(3)
    n = 6
    pools = {
        "int": pa.array([int(x) for x in draw.integers(-5, 5, n)], pa.int64()),
        "float": pa.array([1.5, float("nan"), float("inf"), None, 2.0, -0.0]),
        "bool": pa.array([True, None, False, True, True, False]),
        "text": pa.array(["a1", " a2", None, "2024-01-01", "7", ""]),
        "timestamp": pa.array(pd.to_datetime(["2024-01-01", "2024-01-02 10:00", None, "2999-01-01",
                                              "2024-03-01", "1900-01-01"], format="ISO8601")
                              .to_numpy("datetime64[us]")),
        "date": pa.array([pd.Timestamp("2024-01-01").date(), None] * 3, pa.date32()),
    }
    kinds = list(pools)
    for number in range(12):
        folder = _write(tmp_path / f"d{number}", {"events.csv": None})
        columns = ["account_id", "timestamp", "event", "user_id", "count", "value"]
        table = pa.table({c: pools[kinds[(number + k) % len(kinds)]] for k, c in enumerate(columns)})
        pq.write_table(table, folder / "events.parquet")
        assert_engines_agree(folder)


def test_agree_on_a_duckdb_database_file(tmp_path):
    folder = _write(tmp_path / "data", {"subscriptions.csv": VALID_FOLDER["subscriptions.csv"].replace("40000", "-1")})
    target = tmp_path / "crm.duckdb"
    con = duckdb.connect(str(target))
    for name in VALID_FOLDER:
        stem = name.split(".")[0]
        con.execute(f"CREATE TABLE {stem} AS SELECT * FROM read_csv('{folder / name}', all_varchar=true)")
    con.execute("UPDATE accounts SET created_at = 'soon' WHERE account_id = 'a2'")
    con.close()
    assert_engines_agree(target)


def test_validate_into_keeps_clean_tables_in_duckdb(tmp_path):
    folder = _write(tmp_path / "data", {"events.csv": VALID_FOLDER["events.csv"] + "zz,2024-03-04,login,u1,1,\n"})
    con = duckdb.connect()
    validation = validate_into(con, folder, now=NOW)
    assert validation.ok and validation.tables["events"] == "src_events"
    assert con.execute("SELECT count(*) FROM src_events").fetchall() == [(4,)]
    types = dict(con.execute("SELECT column_name, data_type FROM information_schema.columns "
                             "WHERE table_name = 'src_events'").fetchall())
    assert types == {"account_id": "VARCHAR", "timestamp": "TIMESTAMP", "event": "VARCHAR",
                     "user_id": "VARCHAR", "count": "BIGINT", "value": "DOUBLE"}
    assert validation.reports["events"].kept_rows == 4


def test_validate_into_creates_no_table_on_errors(tmp_path):
    folder = _write(tmp_path / "data", {"accounts.csv": VALID_FOLDER["accounts.csv"].replace("2024-01-15", "soon")})
    con = duckdb.connect()
    validation = validate_into(con, folder, now=NOW)
    assert not validation.ok and validation.tables == {}
    assert con.execute("SELECT table_name FROM information_schema.tables").fetchall() == []


def test_a_csv_tail_names_the_lines_of_the_real_file(tmp_path):
    # The incremental store validates only the appended rows: header + tail in a file
    # of their own, numbered from the real file's line.
    tail = tmp_path / "events.csv"
    tail.write_text("account_id,timestamp,event,user_id,count,value\n"
                    "a1,2024-03-05,login,u1,1,\nzz,2024-03-06,login,u1,x,\n")
    con = duckdb.connect()
    con.execute("CREATE TABLE ids AS SELECT 'a1' AS account_id")
    report = validate_source_into(con, "events", tail, "events_tail", account_ids_table="ids",
                                  now=NOW, first_line=1001)
    assert [str(p) for p in report.problems] == [
        "events.csv, column 'count': value is not a whole number; e.g. line 1002: 'x'",
        "events.csv, column 'account_id': account_id not found in accounts; "
        "e.g. line 1002: 'zz' -> rows dropped"]
    assert con.execute("SELECT count(*) FROM information_schema.tables "
                       "WHERE table_name = 'events_tail'").fetchall() == [(0,)]
    tail.write_text("account_id,timestamp,event,user_id,count,value\n"
                    "a1,2024-03-05,login,u1,1,\nzz,2024-03-06,login,u1,2,\n")
    report = validate_source_into(con, "events", tail, "events_tail", account_ids_table="ids",
                                  now=NOW, first_line=1001)
    assert [str(p) for p in report.problems] == [
        "events.csv, column 'account_id': account_id not found in accounts; "
        "e.g. line 1002: 'zz' -> rows dropped"]
    assert con.execute("SELECT account_id, count FROM events_tail").fetchall() == [("a1", 1)]


CANONICAL = ["2024-03-01", "2024-02-29", "2023-02-29", "2024-13-01", "2024-04-31", "0001-01-01",
             "9999-12-31", "2024-03-01T09:15:00", "2024-03-01 09:15:00", "2024-03-01T09:15",
             "2024-03-01T23:59:59.999999", "2024-03-01T09:15:00.5", "2024-03-01T09:15:00Z",
             "2024-03-01T09:15:00+02:00", "2024-03-01T00:15:00+05:30", "2024-12-31T23:00:00-05:00",
             "2024-03-01T09:15Z", "2024-03-01 09:15:00.123+01:00", "1900-02-29", "2000-02-29",
             "0", "-0", "12", "-12.5", "0.000001", "999999999999999.999999", "123456789012345",
             "00012", "1.0", "2.5"]


@pytest.mark.parametrize("kind_name", ["DATE", "TIMESTAMP", "INT", "FLOAT", "STRING"])
def test_canonical_spellings_parse_as_the_contract_does(kind_name):
    # DuckDB parses the canonical spellings itself: it must agree with contract._parse.
    from healthscore.contract import Kind, _parse
    from pipelines.ingest import _SQL_TYPE, _fast_parse

    kind = Kind[kind_name]
    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT unnest(?::VARCHAR[]) AS c", [CANONICAL])
    parsed, bad, canonical = _fast_parse("c", "VARCHAR", kind)
    rows = con.execute(f"SELECT c, CAST({parsed} AS {_SQL_TYPE[kind]}), coalesce({bad}, false) "
                       f"FROM t WHERE {canonical}").fetchall()
    texts = pd.Series([r[0] for r in rows], dtype="str")
    expected, expected_bad = _parse(texts, kind)
    assert [r[2] for r in rows] == expected_bad.tolist()
    for (text, value, _), want, unparseable in zip(rows, expected, expected_bad):
        if not unparseable:
            assert pd.Timestamp(value) == want if kind in (Kind.DATE, Kind.TIMESTAMP) else value == want, text
