"""What goes in and what comes out: a column named twice in a file, the Spark engine
without pyspark or Java, and outputs whose permissions follow the user's umask."""

from __future__ import annotations

import contextlib
import gzip
import importlib.util
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from healthscore.contract import ERROR
from pipelines.cli import app
from pipelines.io import atomic_dir, atomic_path, write_table
from pipelines.validate import check_data_folder
from tests.conftest import VALID_FOLDER

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()


def errors(folder: Path) -> list[str]:
    return [str(p) for p in check_data_folder(folder).all_problems if p.severity == ERROR]


def flat(text: str) -> str:
    """Console output on one line (rich wraps long messages)."""
    return " ".join(text.split())


# --- a column named twice --------------------------------------------------------------

ACCOUNT_ROWS = "a1,2024-01-01,x\na2,2024-01-15,y\na3,2024-02-01,z\n"


def _parquet_accounts(names: list[str]) -> bytes:
    columns = [pa.array(["a1", "a2", "a3"]), pa.array(["2024-01-01", "2024-01-15", "2024-02-01"]),
               pa.array(["x", "y", "z"])]
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table(columns, names=names), sink)  # pyarrow writes repeated names
    return sink.getvalue().to_pybytes()


REPEATED = {
    "csv": ("accounts.csv", ("account_id,created_at,account_id\n" + ACCOUNT_ROWS).encode()),
    # Excel's byte-order mark must not hide the first name from the comparison.
    "csv.gz with BOM": ("accounts.csv.gz", gzip.compress(
        ("\ufeffaccount_id,created_at,account_id\n" + ACCOUNT_ROWS).encode())),
    "space before": ("accounts.csv", ("account_id,created_at, account_id\n" + ACCOUNT_ROWS).encode()),
    "space after": ("accounts.csv", ("account_id,created_at,account_id \n" + ACCOUNT_ROWS).encode()),
    "quoted": ("accounts.csv", ('"account_id","created_at","account_id"\n' + ACCOUNT_ROWS).encode()),
    "parquet": ("accounts.parquet", _parquet_accounts(["account_id", "created_at", "account_id"])),
}


@pytest.mark.parametrize("case", REPEATED)
def test_a_column_named_twice_is_an_error_naming_file_and_column(data_folder, case):
    file, content = REPEATED[case]
    folder = data_folder(accounts=None, **{file.replace(".", "__"): content})
    assert errors(folder) == [
        f"{file}, column 'account_id': 2 columns have this name (columns 1 and 3); it is "
        "ambiguous which one holds the values, so rename or remove all but one"]


def test_validate_and_features_stop_with_exit_2_on_a_column_named_twice(data_folder, tmp_path):
    text = VALID_FOLDER["accounts.csv"].replace("csm\n", "account_id\n", 1)
    folder = data_folder(accounts=text)
    result = runner.invoke(app, ["validate", "--data", str(folder)])
    assert result.exit_code == 2, result.output
    said = flat(result.output)
    assert "accounts.csv, column 'account_id': 2 columns have this name (columns 1 and 6)" in said
    assert "OK" not in said and "Traceback" not in said

    out = tmp_path / "history.parquet"
    result = runner.invoke(app, ["features", "--data", str(folder), "--out", str(out)])
    assert result.exit_code == 2, result.output
    said = flat(result.output)
    assert "accounts.csv, column 'account_id': 2 columns have this name" in said
    assert "internal error" not in said and not out.exists()


def test_an_extra_column_named_twice_is_an_error_too(data_folder):
    # Unused today, but the config may pick an extra column up, and which copy it would
    # get is a guess; a pandas rename ("note.1") would hide it.
    text = "account_id,recorded_at,sentiment,note,note\na1,2024-03-15T16:00:00,8,good,bad\n"
    assert errors(data_folder(csm_notes=text)) == [
        "csm_notes.csv, column 'note': 2 columns have this name (columns 4 and 5); it is "
        "ambiguous which one holds the values, so rename or remove all but one"]


def test_every_repeated_name_is_named_and_pandas_renaming_does_not_confuse_them(data_folder):
    # pandas reads this header as name, name.1 (the file's own), name.2, name.3.
    text = ("account_id,created_at,name,name.1,name,name\n"
            "a1,2024-01-01,A,B,C,D\na2,2024-01-15,A,B,C,D\na3,2024-02-01,A,B,C,D\n")
    found = errors(data_folder(accounts=text))
    assert len(found) == 1 and "column 'name': 3 columns have this name (columns 3, 5 and 6)" in found[0]


def test_other_sources_are_still_checked_when_accounts_repeats_a_column(data_folder):
    accounts = "account_id,created_at,account_id\n" + ACCOUNT_ROWS
    events = VALID_FOLDER["events.csv"].replace("2024-03-03,login", "03/03/2024,login")
    found = errors(data_folder(accounts=accounts, events=events))
    assert [e.split(":")[0] for e in found] == ["accounts.csv, column 'account_id'",
                                                "events.csv, column 'timestamp'"]


@pytest.mark.parametrize("header, row", [
    ("account_id,created_at,name,,", "a1,2024-01-01,Acme,,"),  # empty names: trailing commas
    ("account_id,created_at,name.1", "a1,2024-01-01,Acme"),     # a name that only looks renamed
])
def test_names_that_are_not_repeated_still_pass(data_folder, header, row):
    assert errors(data_folder(accounts=f"{header}\n{row}\n")) == []


# --- the Spark engine without pyspark or Java -------------------------------------------

SPARK_INSTALLED = importlib.util.find_spec("pyspark") is not None


def _run(code: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Python code in a fresh interpreter, with this checkout's code first."""
    env = {**(env if env is not None else os.environ), "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=300, cwd=ROOT)


# None in sys.modules is Python's own way to say "this module cannot be imported": import
# raises ModuleNotFoundError and find_spec returns None, as if pyspark were not installed.
WITHOUT_PYSPARK = "import sys; sys.modules['pyspark'] = None\n"


def _cli(*args: str) -> str:
    return ("from pipelines.cli import main\n"
            f"sys.argv = ['healthscore', *{list(args)!r}]\n"
            "main()\n")


def test_spark_engine_without_pyspark_is_a_clear_error(data_folder, tmp_path):
    out = tmp_path / "history.parquet"
    proc = _run(WITHOUT_PYSPARK + "import sys\n" + _cli(
        "features", "--data", str(data_folder()), "--out", str(out), "--engine", "spark"))
    said = flat(proc.stderr + proc.stdout)
    assert proc.returncode == 2, said
    assert "error: the spark engine needs pyspark, which is not installed" in said
    assert "run `make spark`, which installs the pinned pyspark into ./.venv" in said
    assert "pip install -e '.[spark]'" in said  # not eaten as console markup
    assert "internal error" not in said and "ibis-framework" not in said
    assert not out.exists()


def test_spark_engine_from_the_config_without_pyspark_is_a_clear_error(data_folder):
    # The path every command takes (train and monitor read the engine from the config
    # and build metrics through here), not only the command line's early check.
    proc = _run(WITHOUT_PYSPARK + (
        "import datetime as dt\n"
        "from healthscore.config import Config, EngineConfig\n"
        "from healthscore.errors import HealthscoreError\n"
        "from pipelines.features import stage_and_build\n"
        "from pipelines.validate import load_data_folder\n"
        f"tables = load_data_folder({str(data_folder())!r})\n"
        "try:\n"
        "    stage_and_build(tables, dt.date(2024, 3, 15), Config(engine=EngineConfig(name='spark')))\n"
        "except HealthscoreError as exc:\n"
        "    print('HealthscoreError:', exc)\n"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("HealthscoreError: the spark engine needs pyspark"), proc.stdout


@pytest.mark.skipif(not SPARK_INSTALLED, reason="pyspark not installed (run `make spark`)")
@pytest.mark.parametrize("java_home, says", [
    (None, "there is no `java` on the PATH and JAVA_HOME is not set"),
    ("empty", "has no bin/java"),
])
def test_spark_engine_without_java_is_a_clear_error(data_folder, tmp_path, java_home, says):
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "JAVA_HOME"}
    env["PATH"] = str(empty)  # no java here, whatever the machine has
    if java_home:
        env["JAVA_HOME"] = str(empty)
    out = tmp_path / "history.parquet"
    proc = _run("import sys\n" + _cli("features", "--data", str(data_folder()), "--out", str(out),
                                      "--engine", "spark"), env)
    said = flat(proc.stderr + proc.stdout)
    assert proc.returncode == 2, said
    assert "error: the spark engine needs Java 17 for Spark's JVM" in said and says in said
    assert "make spark" in said and not out.exists()


@pytest.mark.skipif(not SPARK_INSTALLED, reason="pyspark not installed (run `make spark`)")
def test_spark_check_passes_where_spark_can_run():
    from pipelines.spark import require

    if not os.environ.get("JAVA_HOME") and not shutil.which("java"):
        pytest.skip("no Java on this machine")
    require()  # no error, and no JVM started


# --- outputs a team can share -------------------------------------------------------------


@contextlib.contextmanager
def umask(mask: int):
    """The process umask set to ``mask`` for the block (restored after)."""
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


SCORES = pd.DataFrame({"account_id": ["a1", "a2"], "health_score": [80.0, 35.5]})


@pytest.mark.parametrize("mask", [0o022, 0o027], ids=["umask022", "umask027"])
@pytest.mark.parametrize("name", ["scores.csv", "scores.csv.gz", "scores.parquet"])
def test_write_table_gives_the_permissions_open_would(tmp_path, mask, name):
    out = tmp_path / "outputs" / name
    with umask(mask):
        write_table(SCORES, out)
        reference = tmp_path / "outputs" / "by-open.txt"
        reference.write_text("x")
        write_table(SCORES, out)  # replacing an output: a new file, same permissions
    assert mode(out) == 0o666 & ~mask == mode(reference)
    assert mode(out.parent) == 0o777 & ~mask
    assert sorted(p.name for p in out.parent.iterdir()) == ["by-open.txt", name]  # no temp left
    read = pd.read_parquet(out) if name.endswith(".parquet") else pd.read_csv(out)
    pd.testing.assert_frame_equal(read, SCORES)


@pytest.mark.parametrize("mask", [0o022, 0o027], ids=["umask022", "umask027"])
def test_atomic_path_gives_the_permissions_open_would_and_stays_atomic(tmp_path, mask):
    target = tmp_path / "report.html"
    with umask(mask):
        with atomic_path(target) as tmp:
            assert tmp.parent == tmp_path and tmp.name.startswith(".report.html.")
            tmp.write_text("<html>new</html>")
            assert not target.exists()  # nothing in place until the block succeeds
        with pytest.raises(RuntimeError), atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("the run fails")
    assert target.read_text() == "<html>new</html>"  # a failed write leaves it alone
    assert mode(target) == 0o666 & ~mask
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


@pytest.mark.parametrize("mask", [0o022, 0o027], ids=["umask022", "umask027"])
def test_atomic_dir_gives_the_permissions_mkdir_would_and_swaps_whole(tmp_path, mask):
    target = tmp_path / "demo"
    with umask(mask):
        for content in ("old", "new"):
            with atomic_dir(target) as tmp:
                (tmp / "accounts.csv").write_text(content)
                write_table(SCORES, tmp / "events.parquet")
        with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
            (tmp / "accounts.csv").write_text("half")
            raise RuntimeError("the run fails")
    assert (target / "accounts.csv").read_text() == "new"
    assert mode(target) == 0o777 & ~mask
    assert {p.name: mode(p) for p in target.iterdir()} == {
        "accounts.csv": 0o666 & ~mask, "events.parquet": 0o666 & ~mask}
    assert [p.name for p in tmp_path.iterdir()] == ["demo"]  # no temp or .old folder left


def test_a_command_under_umask_027_writes_group_readable_outputs(tmp_path):
    """The installed command, started by a shell with the umask a team sets."""
    exe = Path(sys.executable).with_name("healthscore")
    out = tmp_path / "shared" / "demo"
    proc = subprocess.run(["sh", "-c", 'umask 027 && exec "$0" demo-data --out "$1" --accounts 10',
                           str(exe), str(out)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    written = list(out.parent.rglob("*"))  # the data and its demo-truth folder beside it
    files = [p for p in written if p.is_file()]
    assert len(files) > 10 and {mode(p) for p in files} == {0o640}
    assert {mode(p) for p in [out.parent, *(p for p in written if p.is_dir())]} == {0o750}
    assert not [p for p in written if p.name.endswith((".tmp", ".old"))]  # nothing half-done
