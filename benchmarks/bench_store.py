"""The metric store measured through the installed command, as a user runs it.

    .venv/bin/python benchmarks/bench_store.py --accounts 100000 --workdir /tmp/score-books
    .venv/bin/python benchmarks/bench_store.py --train /tmp/scale/base        # 11 M events
    .venv/bin/python benchmarks/bench_store.py --history /tmp/scale/copies-10  # 126 M events

On the bench_score book (``benchmarks/bench_score.py``: 14 months of a small-business
book, 100,000 accounts, 43 M usage rows in events.parquet) and a model fitted once on a
2,000-account demo book (not timed), runs of the installed command, each in its own
process, with its wall time and peak RSS (``measure.run``: ``os.wait4`` from a small launcher):

1. **first run**: the whole book, an empty store (what a new user's first run costs);
2. **four weeks ago**: the book cut a week earlier (every source up to D - 7) scored as
   of D - 28, an empty store;
3. **last week**: the same files as of D - 7, on that store (no file changed: a new date);
4. **next week**: the whole book as of D on that store: the weekly job. A week of new
   rows in every file; the store holds D - 28, the drivers' "four weeks ago", as a store
   run every week does.

Beside them, plain DuckDB SQL on the same file: the 43 M rows grouped by account and
day (the engine's first step), and read into a table (what the store's validation
must at least do). Results: benchmarks/results/store.csv, and docs/benchmarks.md.

``--train BOOK``: `healthscore features` and `healthscore train` on BOOK with an empty
store each (features alone is the reading of the data: validation, rollups, the whole
weekly history), then `train` again on train's store (nothing left to read). Results:
benchmarks/results/store_train.csv.

``--history BOOK``: `healthscore features` on BOOK with an empty store and the default
memory setting: the whole weekly history goes into the store and is exported to Parquet
by DuckDB, never fetched into pandas. Results: benchmarks/results/store_history.csv.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import bench_score  # noqa: E402  (the book and the model)
import measure  # noqa: E402


def _cut(book: Path, out: Path, day: dt.date) -> Path:
    """The book as exported a week earlier: every source's rows dated up to ``day``."""
    import duckdb

    from healthscore.contract import SOURCES

    if (out / "_done").exists():
        return out
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    con = duckdb.connect()
    for file in sorted(book.iterdir()):
        name = file.name.split(".")[0]
        if name not in SOURCES:
            continue
        column = SOURCES[name].date_column
        if file.suffix == ".parquet":
            con.execute(f"COPY (SELECT * FROM read_parquet('{file}') WHERE CAST({column} AS DATE) "
                        f"<= DATE '{day}') TO '{out / file.name}' (FORMAT parquet)")
        else:
            reader = f"read_csv('{file}', all_varchar = true, header = true)"
            compression = ", COMPRESSION gzip" if file.name.endswith(".gz") else ""
            con.execute(f"COPY (SELECT * FROM {reader} WHERE CAST({column} AS DATE) <= DATE '{day}') "
                        f"TO '{out / file.name}' (FORMAT csv, HEADER{compression})")
    (out / "_done").touch()
    return out


def _command(data: Path, out: Path, store: Path, uri: str, workdir: Path,
             as_of: dt.date | None = None) -> dict:
    """One `healthscore score` in its own process: wall time, peak RSS, exit code."""
    when = ["--as-of", as_of.isoformat()] if as_of else []
    return _run(["score", "--data", str(data), "--out", str(out), "--store", str(store),
                 "--model", uri, *when], workdir)


def _run(args: list[str], workdir: Path) -> dict:
    """One `healthscore` command in its own process: wall time and peak RSS."""
    hs = Path(sys.executable).with_name("healthscore")
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'mlflow.db'}"}
    code, stdout, stderr, wall, peak_gb = measure.run([str(hs), *args], env)
    if code:
        sys.exit(f"healthscore {args[0]} failed ({code}):\n{stderr[-3000:]}\n{stdout[-2000:]}")
    return {"wall_s": round(wall, 1), "peak_rss_gb": round(peak_gb, 2)}


def _plain(book: Path) -> dict:
    """Plain DuckDB on the same events file, in this process."""
    import duckdb

    con = duckdb.connect()
    events = book / "events.parquet"
    start = time.perf_counter()
    # Counted in DuckDB: fetching 12 M grouped rows into Python would time Python.
    con.execute(f"SELECT count(*) FROM (SELECT account_id, CAST(timestamp AS DATE) AS day, "
                f"sum(coalesce(count, 1)) FROM read_parquet('{events}') GROUP BY ALL)").fetchall()
    grouped = time.perf_counter() - start
    start = time.perf_counter()
    con.execute(f"CREATE TABLE e AS SELECT * FROM read_parquet('{events}')")
    loaded = time.perf_counter() - start
    rows = con.execute("SELECT count(*) FROM e").fetchall()[0][0]
    return {"events": rows, "plain_group_by_day_s": round(grouped, 1),
            "plain_load_s": round(loaded, 1)}


def _train(book: Path, workdir: Path) -> None:
    runs = workdir / "train-runs"
    shutil.rmtree(runs, ignore_errors=True)
    runs.mkdir(parents=True)
    rows = []
    for label, args in (
            ("features, empty store", ["features", "--data", str(book), "--out",
                                       str(runs / "history.parquet"), "--store", str(runs / "f.duckdb")]),
            ("train, empty store", ["train", "--data", str(book), "--store", str(runs / "t.duckdb")]),
            ("train, same store", ["train", "--data", str(book), "--store", str(runs / "t.duckdb")])):
        print(f"{label} ...", flush=True)
        rows.append({"run": label, "book": book.name, **_run(args, workdir)})
        print(rows[-1], flush=True)
    measure.write_rows(rows, HERE / "results" / "store_train.csv")


def _history(book: Path, workdir: Path) -> None:
    runs = workdir / "history-runs"
    shutil.rmtree(runs, ignore_errors=True)
    runs.mkdir(parents=True)
    store = runs / "store.duckdb"
    row = {"run": "features, empty store, default memory", "book": book.name,
           **_run(["features", "--data", str(book), "--out", str(runs / "history.parquet"),
                   "--store", str(store)], workdir)}
    row["store_gb"] = round(store.stat().st_size / 1e9, 2)
    import duckdb

    con = duckdb.connect(str(store), read_only=True)
    row["history_rows"] = con.execute("SELECT count(*) FROM metric_history").fetchall()[0][0]
    row["events"] = con.execute("SELECT count(*) FROM src_events").fetchall()[0][0]
    print(row, flush=True)
    measure.write_rows([row], HERE / "results" / "store_history.csv")


def plain_only(book: Path) -> None:
    print(_plain(book), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=Path, help="time features and train on this book")
    parser.add_argument("--history", type=Path, help="time the whole history of this book")
    parser.add_argument("--plain", type=Path, help="only the plain DuckDB SQL on this book")
    parser.add_argument("--accounts", type=int, default=100000)
    parser.add_argument("--max-users", type=int, default=5)
    parser.add_argument("--train-accounts", type=int, default=2000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/score-books"))
    parser.add_argument("--out", type=Path, default=HERE / "results" / "store.csv")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{args.workdir / 'mlflow.db'}"
    if args.plain:
        return plain_only(args.plain)
    if args.train:
        return _train(args.train, args.workdir)
    if args.history:
        return _history(args.history, args.workdir)
    uri = bench_score._model_uri(args.workdir, args.train_accounts)
    book = bench_score._book(args.workdir, args.accounts, args.max_users)
    end = dt.date(2026, 9, 30)
    earlier = _cut(book, args.workdir / f"{book.name}-week-before", end - dt.timedelta(days=7))
    runs = args.workdir / "store-runs"
    shutil.rmtree(runs, ignore_errors=True)
    runs.mkdir()
    rows = []
    week = dt.timedelta(days=7)
    for label, data, store, as_of in (
            ("first run, empty store", book, runs / "first.duckdb", None),
            ("four weeks ago, empty store", earlier, runs / "weekly.duckdb", end - 4 * week),
            ("last week, same store, same files", earlier, runs / "weekly.duckdb", end - week),
            ("next week, same store", book, runs / "weekly.duckdb", None)):
        print(f"{label} ...", flush=True)
        row = {"run": label, "accounts": args.accounts,
               **_command(data, runs / f"{store.stem}.csv", store, uri, args.workdir, as_of)}
        row["store_gb"] = round(store.stat().st_size / 1e9, 2)
        print(row, flush=True)
        rows.append(row)
    plain = _plain(book)
    print(plain, flush=True)
    measure.write_rows([{**r, **plain} for r in rows], args.out)


if __name__ == "__main__":
    main()
