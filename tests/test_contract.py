"""Data tests: the input data contract, one test per rule, asserting on the message."""

from __future__ import annotations

import gzip
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from healthscore.contract import DROP, ERROR, validate_sources
from healthscore.errors import DataContractError
from pipelines.cli import app
from pipelines.validate import check_data_folder, load_data_folder
from tests.conftest import VALID_FOLDER

runner = CliRunner()


def problems(folder: Path) -> list[str]:
    return [f"{p.severity}: {p}" for p in check_data_folder(folder).all_problems]


def one_problem(folder: Path, severity: str) -> str:
    found = problems(folder)
    assert len(found) == 1, found
    assert found[0].startswith(f"{severity}: "), found
    return found[0]


def test_valid_folder_has_no_problems_and_typed_tables(data_folder):
    validation = check_data_folder(data_folder())
    assert validation.all_problems == []
    tables = validation.tables
    assert set(tables) == {n.split(".")[0] for n in VALID_FOLDER}
    assert pd.api.types.is_datetime64_any_dtype(tables["events"]["timestamp"])
    assert tables["subscriptions"]["arr"].dtype == "float64"
    assert tables["events"]["count"].tolist() == [1, 2, 3, 1]
    # The csm of an unmanaged account is missing, not the text "nan".
    assert tables["accounts"]["csm"].isna().tolist() == [False, True, False]


def test_offset_timestamps_are_converted_to_utc_and_naive_means_utc(data_folder):
    events = check_data_folder(data_folder()).tables["events"]
    assert events["timestamp"].dt.tz is None
    assert events.loc[2, "timestamp"] == pd.Timestamp("2024-03-02T08:00:00")  # 10:00+02:00
    assert events.loc[3, "timestamp"] == pd.Timestamp("2024-03-03")


# --- structural problems: always an error ---------------------------------------------


def test_missing_required_source(data_folder):
    msg = one_problem(data_folder(events=None), ERROR)
    assert "events" in msg and "required source is missing" in msg


def test_missing_optional_source_is_reported_not_an_error(data_folder):
    validation = check_data_folder(data_folder(tickets=None))
    assert validation.ok and "tickets" in validation.missing_optional


def test_missing_required_column_names_file_and_column(data_folder):
    text = VALID_FOLDER["subscriptions.csv"].replace(",arr,", ",revenue,")
    msg = one_problem(data_folder(subscriptions=text), ERROR)
    assert "subscriptions.csv" in msg and "required column 'arr' missing" in msg
    assert "'revenue'" in msg  # shows what was found instead


def test_wrong_delimiter_is_named(data_folder):
    text = VALID_FOLDER["accounts.csv"].replace(",", ";")
    msg = one_problem(data_folder(accounts=text), ERROR)
    assert "accounts.csv" in msg and "semicolons" in msg


def test_empty_file(data_folder):
    with pytest.raises(DataContractError, match=r"events.csv: the file is empty"):
        check_data_folder(data_folder(events=""))


def test_header_only_required_source(data_folder):
    msg = one_problem(data_folder(accounts="account_id,created_at\n"), ERROR)
    assert "accounts.csv" in msg and "header but no rows" in msg


def test_ragged_csv_names_the_line(data_folder):
    text = VALID_FOLDER["marketing.csv"] + "a1,2024-03-05T11:00:00,webinar,u1,extra,more\n"
    with pytest.raises(DataContractError, match=r"marketing.csv: .*line 3 has 6 fields"):
        check_data_folder(data_folder(marketing=text))


def test_not_utf8(data_folder):
    text = VALID_FOLDER["accounts.csv"].replace("Acme", "Acm\xe9").encode("latin-1")
    with pytest.raises(DataContractError, match=r"accounts.csv: not UTF-8"):
        check_data_folder(data_folder(accounts=text))


@pytest.mark.parametrize("bad", ["2024-13-01", "12/01/2024", "yesterday", "2024-02-30"])
def test_unparseable_date_names_column_line_and_value(data_folder, bad):
    text = VALID_FOLDER["accounts.csv"].replace("2024-01-15", bad)
    msg = one_problem(data_folder(accounts=text), ERROR)
    assert "accounts.csv, column 'created_at'" in msg
    assert "ISO 8601 date" in msg and "line 3" in msg and bad in msg


def test_unparseable_number(data_folder):
    text = VALID_FOLDER["subscriptions.csv"].replace("40000", "40k")
    msg = one_problem(data_folder(subscriptions=text), ERROR)
    assert "column 'arr'" in msg and "not a number" in msg and "line 6" in msg and "'40k'" in msg


def test_fractional_count_is_not_a_whole_number(data_folder):
    text = VALID_FOLDER["events.csv"].replace("u7,3,", "u7,2.5,")
    msg = one_problem(data_folder(events=text), ERROR)
    assert "column 'count'" in msg and "whole number" in msg


def test_required_value_empty(data_folder):
    text = VALID_FOLDER["events.csv"].replace(",login,u9", ",,u9")
    msg = one_problem(data_folder(events=text), ERROR)
    assert "column 'event'" in msg and "required value is empty" in msg and "line 5" in msg


def test_duplicate_account_id(data_folder):
    text = VALID_FOLDER["accounts.csv"] + "a2,2024-03-01,Beta again,SMB,Software,\n"
    msg = one_problem(data_folder(accounts=text), ERROR)
    assert "column 'account_id'" in msg and "unique" in msg and "(2 rows)" in msg and "'a2'" in msg


def test_duplicate_subscription_id(data_folder):
    text = VALID_FOLDER["subscriptions.csv"].replace("s5,", "s4,")
    msg = one_problem(data_folder(subscriptions=text), ERROR)
    assert "column 'subscription_id'" in msg and "unique" in msg


def test_negative_arr(data_folder):
    text = VALID_FOLDER["subscriptions.csv"].replace("40000", "-40000")
    msg = one_problem(data_folder(subscriptions=text), ERROR)
    assert "column 'arr'" in msg and "must be >= 0" in msg and "-40000" in msg


def test_end_date_not_after_start_date(data_folder):
    text = VALID_FOLDER["subscriptions.csv"].replace("2024-02-01,2025-02-01", "2024-02-01,2024-02-01")
    msg = one_problem(data_folder(subscriptions=text), ERROR)
    assert "end_date must be after start_date" in msg and "line 6" in msg


def test_unknown_status(data_folder):
    text = VALID_FOLDER["subscriptions.csv"].replace(",renewed", ",cancelled")
    msg = one_problem(data_folder(subscriptions=text), ERROR)
    assert "column 'status'" in msg and "must be one of renewed, churned" in msg


def test_unknown_priority(data_folder):
    text = VALID_FOLDER["tickets.csv"].replace(",urgent,", ",P1,")
    msg = one_problem(data_folder(tickets=text), ERROR)
    assert "column 'priority'" in msg and "must be one of low, normal, high, urgent" in msg


def test_unknown_survey_kind(data_folder):
    text = VALID_FOLDER["surveys.csv"].replace(",csat,", ",ces,")
    msg = one_problem(data_folder(surveys=text), ERROR)
    assert "column 'kind'" in msg and "must be one of nps, csat" in msg


def test_duplicate_onboarding_milestone(data_folder):
    text = VALID_FOLDER["onboarding.csv"] + "a1,kickoff,2024-01-05T10:00:00\n"
    msg = one_problem(data_folder(onboarding=text), ERROR)
    assert "(account_id, milestone) must be unique" in msg


def test_non_numeric_metric_column(data_folder):
    text = VALID_FOLDER["account_metrics.csv"].replace(",4,", ",four,")
    msg = one_problem(data_folder(account_metrics=text), ERROR)
    assert "column 'integrations_connected'" in msg and "not a number" in msg


def test_two_files_for_one_source(data_folder):
    folder = data_folder(events__parquet=b"")
    with pytest.raises(DataContractError, match=r"'events' has more than one file"):
        check_data_folder(folder)


def test_missing_folder(tmp_path):
    with pytest.raises(DataContractError, match=r"data folder not found"):
        check_data_folder(tmp_path / "nope")


def test_corrupt_parquet(data_folder):
    folder = data_folder(events=None, events__parquet=b"PAR1 this is not parquet")
    with pytest.raises(DataContractError, match=r"events.parquet: cannot be read as Parquet"):
        check_data_folder(folder)


def test_corrupt_gzip(data_folder):
    folder = data_folder(marketing=None, marketing__csv__gz=b"\x1f\x8b\x08 truncated")
    with pytest.raises(DataContractError, match=r"marketing.csv.gz: "):
        check_data_folder(folder)


# --- row-level anomalies: documented drops, counted -------------------------------------


def test_unknown_account_rows_are_dropped_and_counted(data_folder):
    text = VALID_FOLDER["events.csv"] + "zz,2024-03-03T10:00:00,login,u1,1,\nzz,2024-03-04,login,u1,1,\n"
    validation = check_data_folder(data_folder(events=text))
    assert validation.ok
    [problem] = validation.drops
    assert problem.count == 2 and problem.column == "account_id"
    assert "account_id not found in accounts" in str(problem) and "line 6" in str(problem)
    assert "zz" not in set(validation.tables["events"]["account_id"])
    assert len(validation.tables["events"]) == 4


def test_future_timestamp_is_dropped(data_folder):
    text = VALID_FOLDER["events.csv"] + "a1,2999-01-01T00:00:00,login,u1,1,\n"
    msg = one_problem(data_folder(events=text), DROP)
    assert "timestamp is in the future" in msg and "2999-01-01" in msg


def test_future_relative_to_explicit_now():
    from healthscore.contract import RawSource

    table = pd.DataFrame({"account_id": ["a"], "created_at": ["2024-01-01"]})
    subs = pd.DataFrame({"account_id": ["a"], "start_date": ["2024-01-01"],
                         "end_date": ["2025-01-01"], "arr": ["1"]})
    events = pd.DataFrame({"account_id": ["a", "a"], "timestamp": ["2024-03-01", "2024-03-02T00:00:01"],
                           "event": ["login", "login"]})
    validation = validate_sources(
        {"accounts": RawSource("accounts", "accounts.csv", table),
         "subscriptions": RawSource("subscriptions", "subscriptions.csv", subs),
         "events": RawSource("events", "events.csv", events)},
        now=pd.Timestamp("2024-03-01"),
    )
    assert [p.rule for p in validation.drops] == ["events.timestamp.future"]
    assert len(validation.tables["events"]) == 1  # the end of day D itself is not the future


@pytest.mark.parametrize(
    ("file", "old", "new", "words"),
    [
        ("surveys", "nps,9,", "nps,11,", "nps score must be between 0 and 10"),
        ("surveys", "csat,2,", "csat,0,", "csat score must be between 1 and 5"),
        ("tickets", "high,4", "high,7", "must be between 1 and 5"),
        ("csm_notes", ",8,", ",11,", "must be between 1 and 10"),
        ("events", "u7,3,", "u7,0,", "must be >= 1"),
        ("invoices", ",100,", ",-100,", "must be >= 0"),
        ("tickets", "2024-03-02T10:00:00,high", "2024-02-02T10:00:00,high",
         "resolved_at must be on or after created_at"),
        ("invoices", "2024-01-31,120000,2024-01-20", "2024-01-31,120000,2023-12-20",
         "paid_at must be on or after issued_at"),
    ],
)
def test_row_anomalies_are_dropped(data_folder, file, old, new, words):
    text = VALID_FOLDER[f"{file}.csv"].replace(old, new)
    assert text != VALID_FOLDER[f"{file}.csv"]
    validation = check_data_folder(data_folder(**{file: text}))
    msg = one_problem(data_folder(**{file: text}), DROP)
    assert words in msg and "-> rows dropped" in msg
    assert len(validation.tables[file]) == VALID_FOLDER[f"{file}.csv"].count("\n") - 2


def test_every_problem_is_reported_in_one_run(data_folder):
    accounts = VALID_FOLDER["accounts.csv"] + "a2,2024-03-01,Dup,SMB,,\n"
    subs = VALID_FOLDER["subscriptions.csv"].replace("40000", "-1")
    events = VALID_FOLDER["events.csv"] + "zz,2024-03-03,login,u1,1,\n"
    rules = {p.split(":")[0] + p.split(",")[0] for p in problems(
        data_folder(accounts=accounts, subscriptions=subs, events=events))}
    assert len(rules) == 3


def test_load_data_folder_raises_with_every_error(data_folder):
    text = VALID_FOLDER["subscriptions.csv"].replace("40000", "-40000")
    with pytest.raises(DataContractError, match=r"breaks the data contract:\n  - subscriptions.csv"):
        load_data_folder(data_folder(subscriptions=text))


def test_parquet_and_csv_gz_inputs_read_like_csv(data_folder, tmp_path):
    folder = data_folder()
    csv_tables = check_data_folder(folder).tables
    events = pd.read_csv(folder / "events.csv")
    events["timestamp"] = pd.to_datetime(events["timestamp"], format="ISO8601", utc=True)
    events.to_parquet(folder / "events.parquet")
    (folder / "events.csv").unlink()
    (folder / "marketing.csv.gz").write_bytes(gzip.compress(VALID_FOLDER["marketing.csv"].encode()))
    (folder / "marketing.csv").unlink()
    tables = check_data_folder(folder).tables
    pd.testing.assert_frame_equal(tables["marketing"], csv_tables["marketing"])
    pd.testing.assert_series_equal(tables["events"]["timestamp"], csv_tables["events"]["timestamp"])


# --- the command line ----------------------------------------------------------------


def test_cli_validate_ok(data_folder):
    result = runner.invoke(app, ["validate", "--data", str(data_folder())])
    assert result.exit_code == 0, result.output
    assert "OK" in result.output and "subscriptions.csv" in result.output
    # a2's last monthly term ended 2024-03-15, the data's last day: within the grace period.
    assert "1 renewed, 0 churned" in result.output and "1 pending" in result.output
    result = runner.invoke(app, ["validate", "--data", str(data_folder()), "--grace-days", "0"])
    assert "1 renewed, 1 churned" in result.output and "0 pending" in result.output


def test_cli_validate_errors_exit_2_without_traceback(data_folder):
    text = VALID_FOLDER["accounts.csv"].replace("2024-01-15", "15/01/2024")
    result = runner.invoke(app, ["validate", "--data", str(data_folder(accounts=text))])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert "accounts.csv, column 'created_at'" in result.output


def test_cli_validate_drops_exit_1_unless_allowed(data_folder):
    text = VALID_FOLDER["events.csv"] + "zz,2024-03-03,login,u1,1,\n"
    folder = data_folder(events=text)
    assert runner.invoke(app, ["validate", "--data", str(folder)]).exit_code == 1
    assert runner.invoke(app, ["validate", "--data", str(folder), "--allow-drops"]).exit_code == 0


def test_cli_structural_read_error_exit_2(data_folder):
    result = runner.invoke(app, ["validate", "--data", str(data_folder(events=""))])
    assert result.exit_code == 2 and "events.csv: the file is empty" in result.output
    assert "Traceback" not in result.output


def test_rows_with_more_fields_than_the_header(data_folder):
    text = VALID_FOLDER["account_metrics.csv"].replace(",api_error_rate", "")
    with pytest.raises(DataContractError, match=r"account_metrics.csv: .*more fields than the header"):
        check_data_folder(data_folder(account_metrics=text))


def test_parquet_with_its_own_index_reports_positions(data_folder):
    folder = data_folder(events=None)
    events = pd.read_csv(pd.io.common.StringIO(VALID_FOLDER["events.csv"]), dtype=str)
    events.index = [7, 7, 3, 9]  # a saved pandas index, repeated
    events.loc[events["account_id"] == "a3", "account_id"] = "zz"
    events.to_parquet(folder / "events.parquet")
    [problem] = check_data_folder(folder).drops
    assert "events.parquet" in str(problem) and "row 4" in str(problem)


# ----------------------------------------------------------------- warehouse sources

def _to_databases(folder, tmp_path):
    """The folder's raw sources as tables of a DuckDB file and of a SQLite database."""
    import sqlite3

    import duckdb

    from pipelines.io import read_data_folder

    raw = read_data_folder(folder)
    duck_file, lite_file = tmp_path / "crm.duckdb", tmp_path / "crm.db"
    duck = duckdb.connect(str(duck_file))
    lite = sqlite3.connect(lite_file)
    for name, source in raw.items():
        frame = source.table
        duck.register("frame", frame)
        duck.execute(f"CREATE TABLE {name} AS SELECT * FROM frame")
        duck.unregister("frame")
        frame.to_sql(name, lite, index=False)
    duck.execute("CREATE TABLE unrelated AS SELECT 1 AS x")
    duck.close()
    lite.close()
    return duck_file, lite_file


def test_sources_read_from_a_duckdb_file_and_a_database_url(data_folder, tmp_path):
    from pipelines.validate import load_data_folder

    folder = data_folder()
    duck_file, lite_file = _to_databases(folder, tmp_path)
    expected = load_data_folder(folder)
    for source in (duck_file, f"sqlite:///{lite_file}"):
        tables = load_data_folder(source)
        assert set(tables) == set(expected)
        for name, table in expected.items():
            pd.testing.assert_frame_equal(tables[name].reset_index(drop=True),
                                          table.reset_index(drop=True), check_dtype=False)
    result = CliRunner().invoke(app, ["validate", "--data", str(duck_file)])
    assert result.exit_code == 0, result.output


def test_a_bad_value_in_a_database_table_names_the_table(data_folder, tmp_path):
    import duckdb

    folder = data_folder()
    duck_file, _ = _to_databases(folder, tmp_path)
    con = duckdb.connect(str(duck_file))
    con.execute("UPDATE accounts SET created_at = 'soon' WHERE account_id = 'a2'")
    con.close()
    result = CliRunner().invoke(app, ["validate", "--data", str(duck_file)])
    assert result.exit_code == 2
    assert "crm.duckdb:accounts" in result.output and "created_at" in result.output
    missing = CliRunner().invoke(app, ["validate", "--data", "postgres://cs:secret@127.0.0.1:1/crm"])
    assert missing.exit_code == 2 and "secret" not in missing.output
    assert "cannot read the database" in missing.output and "Traceback" not in missing.output


NUMBER_TEXTS = ["1", "-1", "+1", "1.5", ".5", "5.", "1e5", "1E-3", "inf", "-Infinity", "nan", "0x10",
                "1_000", "1,000", "١", "", "1e400", "00012", "-0", "1d5", "TRUE", "1.2.3", "e5",
                "+-1", "½", "1 000", None]


@pytest.mark.parametrize("bad", [None, "12 apples"])
def test_fast_number_parsing_agrees_with_pandas(bad):
    # Arrow parses a clean column; a column with any rejected value goes through pandas.
    from healthscore.contract import _to_float

    texts = [t for t in NUMBER_TEXTS if t is None or pd.to_numeric(pd.Series([t]), errors="coerce").notna().all()]
    text = pd.Series([*texts, bad], dtype="str")
    expected = pd.to_numeric(text, errors="coerce").astype("float64")
    pd.testing.assert_series_equal(_to_float(text), expected)
    everything = pd.Series(NUMBER_TEXTS, dtype="str")
    pd.testing.assert_series_equal(_to_float(everything),
                                   pd.to_numeric(everything, errors="coerce").astype("float64"))


def test_fast_membership_agrees_with_pandas():
    from healthscore.contract import is_in

    values = pd.Series(["a", None, "b", "é", "a "], dtype="str")
    ids = pd.Index(["a", "é"])
    pd.testing.assert_series_equal(is_in(values, ids), values.isin(ids))
