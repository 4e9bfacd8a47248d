"""The floor under the store's time targets: the least a scoring run must do, in plain code.

    .venv/bin/python benchmarks/bench_floor.py --workdir /tmp/score-books

Run after ``bench_store.py`` on the same work folder (it reuses its 100,000-account book,
the book cut a week earlier, the model and the first run's store). Each part runs in its
own process (``measure.run``), on 2 threads and the default 2.5 GB DuckDB cap, and writes
a persistent DuckDB file as the store does:

1. **imports**: starting Python and importing what a scoring run cannot do without
   (DuckDB, pandas, LightGBM, MLflow), and what the installed command imports today;
2. **first run**: the events file (43 M rows) loaded into a table, its rows' per-day
   digest (what lets a later run tell what changed), the eight other sources loaded
   into tables as DuckDB reads them (types sniffed, nothing checked) and digested per
   day the same way, the three daily rollups every
   usage metric reads (account-days, user-days, key-feature user-days), and one
   snapshot of a handful of usage metrics per account (30- and 90-day events, active
   days, distinct users, key features): far fewer than the catalog's metrics. Timed
   after it, not part of the floor: one user-day table with a bitmask of the key
   features used, in place of the user-day and key-feature user-day tables;
3. **next week**: on the store the cut book built, every rewritten file read whole and
   digested per day (one file per source: a rewritten export must be read whole to
   know what changed), the new days' usage rows appended to the table and the rollups
   (the other sources' changed rows are not written), and the same snapshot for the
   new date;
4. **scoring**: the registered model loaded from MLflow, the churn probability and the
   SHAP contributions (LightGBM's ``pred_contrib``) of 100,000 accounts, and the scores
   written as CSV by Arrow.

Nothing is validated, and only five usage metrics are computed. The sums
are a floor for the targets (first run <= 30 s, next week <= 10 s), not a design.
Results: benchmarks/results/floor.csv, and docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import measure  # noqa: E402

END = dt.date(2026, 9, 30)


def _connect(path: Path):
    import duckdb

    con = duckdb.connect(str(path))
    con.execute("SET threads = 2; SET memory_limit = '2500MB'; SET preserve_insertion_order = false")
    return con


def _timed(steps: dict, name: str, con, sql: str) -> None:
    start = time.perf_counter()
    con.execute(sql)
    steps[name] = round(time.perf_counter() - start, 2)


def _rollups(key: list[str], where: str = "") -> dict[str, str]:
    """The three rollups of src_events (rows matching ``where``)."""
    keys = ", ".join(f"'{k}'" for k in key)
    base = f"SELECT * FROM src_events {where}"
    return {
        "account_day": f"SELECT account_id, CAST(timestamp AS DATE) AS day, "
                       f"sum(coalesce(count, 1)) AS events FROM ({base}) GROUP BY ALL",
        "user_day": f"SELECT DISTINCT account_id, user_id, CAST(timestamp AS DATE) AS day "
                    f"FROM ({base}) WHERE user_id IS NOT NULL",
        "key_user_day": f"SELECT DISTINCT account_id, user_id, event, CAST(timestamp AS DATE) AS day "
                        f"FROM ({base}) WHERE user_id IS NOT NULL AND event IN ({keys})",
    }


def _others(book: Path) -> list[tuple[str, str, str | None]]:
    """The book's other sources: (name, DuckDB reader, date column or None)."""
    from healthscore.contract import SOURCES

    others = []
    for file in sorted(book.iterdir()):
        name = file.name.split(".")[0]
        if name in SOURCES and name != "events":
            reader = (f"read_parquet('{file}')" if file.suffix == ".parquet"
                      else f"read_csv('{file}', header = true)")
            others.append((name, reader, SOURCES[name].date_column))
    return others


def _digest(reader: str, column: str | None) -> str:
    """The rows of ``reader`` (a table or a file reader) digested per day of ``column``."""
    day = f"TRY_CAST({column} AS DATE)" if column else "NULL::DATE"
    return f"SELECT {day} AS day, count(*) AS n, sum(hash(COLUMNS(*))) AS h FROM {reader} GROUP BY ALL"


def _snapshot(day: dt.date) -> str:
    d = f"DATE '{day}'"
    return f"""
        CREATE OR REPLACE TABLE snapshot AS
        WITH a AS (SELECT account_id,
                          sum(events) FILTER (WHERE day > {d} - 30) AS events_30d,
                          sum(events) FILTER (WHERE day <= {d} - 30) AS events_prev_60d,
                          count(*) FILTER (WHERE day > {d} - 30) AS active_days_30d
                   FROM account_day WHERE day > {d} - 90 AND day <= {d} GROUP BY ALL),
             u AS (SELECT account_id,
                          count(DISTINCT user_id) FILTER (WHERE day > {d} - 30) AS users_30d,
                          count(DISTINCT user_id) AS users_90d
                   FROM user_day WHERE day > {d} - 90 AND day <= {d} GROUP BY ALL),
             k AS (SELECT account_id, count(DISTINCT event) AS key_features_30d,
                          count(DISTINCT user_id) AS key_users_30d
                   FROM key_user_day WHERE day > {d} - 30 AND day <= {d} GROUP BY ALL)
        SELECT * FROM a LEFT JOIN u USING (account_id) LEFT JOIN k USING (account_id)"""


def part_first(book: Path, store: Path, day: dt.date) -> dict:
    from healthscore.config import Config

    store.unlink(missing_ok=True)
    con = _connect(store)
    steps: dict = {}
    events = f"read_parquet('{book / 'events.parquet'}')"
    _timed(steps, "load", con, f"CREATE TABLE src_events AS SELECT * FROM {events}")
    _timed(steps, "digest", con, f"CREATE TABLE _digest AS {_digest(events, 'timestamp')}")
    start = time.perf_counter()
    for name, reader, column in _others(book):
        con.execute(f"CREATE TABLE src_{name} AS SELECT * FROM {reader}")
        con.execute(f"CREATE TABLE _digest_{name} AS {_digest(f'src_{name}', column)}")
    steps["other_sources"] = round(time.perf_counter() - start, 2)
    key = list(Config().metrics.key_features)
    for name, sql in _rollups(key).items():
        _timed(steps, name, con, f"CREATE TABLE {name} AS {sql}")
    _timed(steps, "snapshot", con, _snapshot(day))
    _timed(steps, "checkpoint", con, "CHECKPOINT")
    # Not in the floor: the user-days with a bitmask of the key features used, one table
    # in place of user_day and key_user_day (a layout the store could move to).
    bits = " ".join(f"WHEN '{k}' THEN {1 << i}" for i, k in enumerate(key))
    _timed(steps, "user_day_with_key_bits", con,
           f"CREATE TABLE user_day_bits AS SELECT account_id, user_id, CAST(timestamp AS DATE) AS day, "
           f"bit_or(CASE event {bits} ELSE 0 END) AS keys FROM src_events "
           "WHERE user_id IS NOT NULL GROUP BY ALL")
    con.close()
    return steps


def part_week(book: Path, store: Path, day: dt.date) -> dict:
    from healthscore.config import Config

    con = _connect(store)
    steps: dict = {}
    events = f"read_parquet('{book / 'events.parquet'}')"
    _timed(steps, "digest", con, f"CREATE TEMP TABLE _new AS {_digest(events, 'timestamp')}")
    start = time.perf_counter()
    for name, reader, column in _others(book):
        con.execute(f"CREATE TEMP TABLE _new_{name} AS {_digest(reader, column)}")
    steps["other_sources"] = round(time.perf_counter() - start, 2)
    _timed(steps, "compare", con, "CREATE TEMP TABLE _changed AS SELECT day FROM _new n "
                                  "LEFT JOIN _digest o USING (day) WHERE o.h IS DISTINCT FROM n.h "
                                  "OR o.n IS DISTINCT FROM n.n")
    _timed(steps, "append", con, f"INSERT INTO src_events SELECT * FROM {events} "
                                 "WHERE CAST(timestamp AS DATE) IN (SELECT day FROM _changed)")
    where = "WHERE CAST(timestamp AS DATE) IN (SELECT day FROM _changed)"
    for name, sql in _rollups(list(Config().metrics.key_features), where).items():
        _timed(steps, name, con, f"INSERT INTO {name} {sql}")
    _timed(steps, "snapshot", con, _snapshot(day))
    _timed(steps, "checkpoint", con, "CHECKPOINT")
    steps["changed_days"] = con.execute("SELECT count(*) FROM _changed").fetchall()[0][0]
    con.close()
    return steps


def part_score(store: Path, uri: str, out: Path) -> dict:
    import duckdb
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from pipelines import registry

    steps: dict = {}
    start = time.perf_counter()
    wrapped, _ = registry.load(uri)
    model = wrapped.model
    steps["model_load"] = round(time.perf_counter() - start, 2)
    con = duckdb.connect(str(store), read_only=True)
    X = con.execute("SELECT * FROM metric_history WHERE as_of_date = "
                    "(SELECT max(as_of_date) FROM metric_history)").df()[model.features_]
    start = time.perf_counter()
    probability = model.churn_probability(X)
    steps["predict"] = round(time.perf_counter() - start, 2)
    start = time.perf_counter()
    contributions = model.contributions(X)
    steps["shap"] = round(time.perf_counter() - start, 2)
    start = time.perf_counter()
    table = pa.table({"churn_probability": probability,
                      **{c: contributions[c].to_numpy() for c in contributions.columns[:12]}})
    pacsv.write_csv(table, out)
    steps["write_csv"] = round(time.perf_counter() - start, 2)
    steps["accounts"] = len(X)
    return steps


def _child(part: str, *args: str) -> dict:
    code, stdout, stderr, wall, peak = measure.run([sys.executable, __file__, "--part", part, *args])
    if code:
        sys.exit(f"{part} failed ({code}):\n{stderr[-3000:]}")
    return {"part": part, "wall_s": round(wall, 2), "peak_rss_gb": round(peak, 2),
            **json.loads(stdout.strip().splitlines()[-1])}


def _imports(modules: str) -> dict:
    code, _, stderr, wall, peak = measure.run([sys.executable, "-c", f"import {modules}"])
    if code:
        sys.exit(stderr[-2000:])
    return {"part": f"import {modules}", "wall_s": round(wall, 2), "peak_rss_gb": round(peak, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/score-books"))
    parser.add_argument("--accounts", type=int, default=100000)
    parser.add_argument("--max-users", type=int, default=5)
    parser.add_argument("--train-accounts", type=int, default=2000)
    parser.add_argument("--part", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "floor.csv")
    args = parser.parse_args()
    if args.part:
        name, *rest = args.part
        if name == "first":
            result = part_first(Path(rest[0]), Path(rest[1]), dt.date.fromisoformat(rest[2]))
        elif name == "week":
            result = part_week(Path(rest[0]), Path(rest[1]), dt.date.fromisoformat(rest[2]))
        else:
            result = part_score(Path(rest[0]), rest[1], Path(rest[2]))
        print(json.dumps(result))
        return
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{args.workdir / 'mlflow.db'}"
    book = args.workdir / f"smb-{args.accounts}-u{args.max_users}"
    earlier = args.workdir / f"{book.name}-week-before"
    uri = (args.workdir / f"model-{args.train_accounts}.uri").read_text().strip()
    scored = args.workdir / "store-runs" / "first.duckdb"
    for needed in (book, earlier, scored):
        if not needed.exists():
            sys.exit(f"{needed} is missing: run benchmarks/bench_store.py --workdir {args.workdir} first")
    runs = args.workdir / "floor-runs"
    shutil.rmtree(runs, ignore_errors=True)
    runs.mkdir()
    rows = [_imports("duckdb, pandas, lightgbm, mlflow"), _imports("pipelines.cli")]
    print(rows[0], rows[1], sep="\n", flush=True)
    for part, args_ in (
            ("first", [str(book), str(runs / "first.duckdb"), str(END)]),
            ("first", [str(earlier), str(runs / "weekly.duckdb"), str(END - dt.timedelta(days=7))]),
            ("week", [str(book), str(runs / "weekly.duckdb"), str(END)]),
            ("score", [str(scored), uri, str(runs / "scores.csv")])):
        row = _child(part, *args_)
        row["book"] = Path(args_[0]).name
        print(row, flush=True)
        rows.append(row)
    measure.write_rows(rows, args.out)


if __name__ == "__main__":
    main()
