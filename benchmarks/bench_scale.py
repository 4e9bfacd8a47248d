"""Scale: the metric history from 10M to 100M+ events on DuckDB, against a plain DuckDB
aggregation of the core metrics, and on Spark local[2].

    .venv/bin/python benchmarks/bench_scale.py --copies 1 5 10 --spark 1 --workdir /tmp/scale

The base book is the issue's 11M-event book: 5,000 accounts over two years, at most 25
modelled users each, seed 7, validated and staged as Parquet once (not timed). A book
of K copies repeats every source K times with the account ids suffixed, so accounts
and events both grow K-fold and each copy's metrics equal the base book's. The copies
are written by DuckDB straight from Parquet, so no process ever holds 100M rows in
pandas. (Validation is not part of these numbers: at this size it belongs in DuckDB,
see docs/benchmarks.md.)

Each measurement runs in its own process, under a wrapper that records the process's
peak RSS, while a thread in this process records the peak size of DuckDB's spill folder:

* ``engine``: ``metric_history_from_parquet`` (every catalog metric, every weekly
  snapshot), DuckDB capped at ``--memory-limit``;
* ``plain``:  hand-written DuckDB SQL for the core usage metrics (active days in 30 and
  90 days, events in 30 days, distinct active users in 30 days) at the same snapshots,
  the same cap; checked equal to the engine's values on the base book;
* ``spark``:  the engine's same definitions on Spark ``local[2]`` (``--spark`` sizes).

Results go to benchmarks/results/scale.csv and docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve()
ROOT = HERE.parents[1]
SOURCES_WITH_IDS = {"tickets": "ticket_id", "invoices": "invoice_id", "subscriptions": "subscription_id"}

_WRAPPER = """
import resource, subprocess, sys
proc = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, text=True)
print(proc.stdout.strip())
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.exit(proc.returncode)
"""

PLAIN_SQL = """
WITH dates AS (SELECT unnest(?::DATE[]) AS d),
grid AS (
    SELECT DISTINCT s.account_id, dates.d FROM subscriptions s JOIN dates
      ON CAST(s.start_date AS DATE) <= dates.d AND CAST(s.end_date AS DATE) > dates.d),
account_day AS (
    SELECT account_id, CAST("timestamp" AS DATE) AS day, sum(coalesce("count", 1)) AS n
    FROM events GROUP BY ALL),
user_day AS (
    SELECT DISTINCT account_id, user_id, CAST("timestamp" AS DATE) AS day
    FROM events WHERE user_id IS NOT NULL),
usage AS (
    SELECT g.account_id, g.d,
           count(*) FILTER (WHERE a.day > g.d - 30) AS active_days_count_30d,
           count(*) AS active_days_count_90d,
           sum(a.n) FILTER (WHERE a.day > g.d - 30) AS events_count_30d
    FROM grid g JOIN account_day a
      ON a.account_id = g.account_id AND a.day <= g.d AND a.day > g.d - 90
    GROUP BY ALL),
users AS (
    SELECT g.account_id, g.d, count(DISTINCT u.user_id) AS active_users_count_30d
    FROM grid g JOIN user_day u
      ON u.account_id = g.account_id AND u.day <= g.d AND u.day > g.d - 30
    GROUP BY ALL)
SELECT grid.account_id, grid.d AS as_of_date,
       coalesce(active_days_count_30d, 0) AS active_days_count_30d,
       coalesce(active_days_count_90d, 0) AS active_days_count_90d,
       coalesce(events_count_30d, 0) AS events_count_30d,
       coalesce(active_users_count_30d, 0) AS active_users_count_30d
FROM grid LEFT JOIN usage USING (account_id, d) LEFT JOIN users USING (account_id, d)
"""
CORE = ["active_days_count_30d", "active_days_count_90d", "events_count_30d", "active_users_count_30d"]


# --------------------------------------------------------------------------- children

def _child(step: str, folder: Path, memory_limit: str, out: Path | None) -> None:
    sys.path.insert(0, str(ROOT))
    from healthscore.config import Config, EngineConfig
    from pipelines.features import metric_history_from_parquet, metric_history_on_spark

    as_of = _as_of(folder)
    start = time.perf_counter()
    if step == "engine":
        history = metric_history_from_parquet(folder, as_of, Config(), memory_limit)
    elif step == "spark":
        engine = EngineConfig(name="spark", spark_driver_memory=os.environ.get("HS_SPARK_MEMORY", "2g"))
        history = metric_history_on_spark(folder, as_of, Config(engine=engine))
    else:
        history = _plain(folder, as_of, memory_limit)
    wall = time.perf_counter() - start
    if out is not None:
        history.to_parquet(out, index=False)
    print(json.dumps({"wall_s": wall, "rows": len(history), "columns": history.shape[1]}))


def _plain(folder: Path, as_of: dt.date, memory_limit: str):
    import duckdb

    from features.engine import snapshot_dates

    con = duckdb.connect()
    con.execute(f"SET memory_limit = '{memory_limit}'")
    con.execute(f"SET temp_directory = '{folder / 'spill'}'")
    for name in ("subscriptions", "events"):
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{folder / name}.parquet')")
    first = con.execute("SELECT least((SELECT min(start_date) FROM subscriptions), "
                        "(SELECT min(\"timestamp\") FROM events))").fetchall()[0][0]
    dates = snapshot_dates(as_of, first.date(), 7)
    return con.execute(PLAIN_SQL, [dates]).df()


def _as_of(folder: Path) -> dt.date:
    import duckdb

    stamp = duckdb.sql(f"SELECT max(\"timestamp\") FROM read_parquet('{folder / 'events.parquet'}')").fetchall()[0][0]
    return stamp.date()


# --------------------------------------------------------------------------- books

def base_book(workdir: Path) -> Path:
    """The 11M-event book, validated and staged as Parquet (cached)."""
    staged = workdir / "base-staged"
    if (staged / "events.parquet").exists():
        return staged
    sys.path.insert(0, str(ROOT))
    from healthscore.simulate import SimulationConfig
    from pipelines.demo_data import write_demo_data
    from pipelines.validate import load_data_folder

    raw = workdir / "base"
    print("simulating the base book (5,000 accounts)", flush=True)
    write_demo_data(raw, SimulationConfig(n_accounts=5000, max_users_per_account=25, seed=7))
    tables = load_data_folder(raw)
    tmp = workdir / "base-staged.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for name, table in tables.items():
        table.to_parquet(tmp / f"{name}.parquet", index=False)
    tmp.rename(staged)
    return staged


def copies(base: Path, k: int, workdir: Path) -> Path:
    """The base book repeated ``k`` times (account ids suffixed), written by DuckDB."""
    folder = workdir / f"copies-{k}"
    if k == 1:
        return base
    if (folder / "events.parquet").exists():
        return folder
    import duckdb

    tmp = workdir / f"copies-{k}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    con = duckdb.connect()
    con.execute(f"SET temp_directory = '{tmp / 'spill'}'")
    for src in sorted(base.glob("*.parquet")):
        name = src.stem
        suffix = "|| '~' || CAST(k AS VARCHAR)"
        replace = [f"account_id {suffix} AS account_id"]
        if name in SOURCES_WITH_IDS:
            replace.append(f"{SOURCES_WITH_IDS[name]} {suffix} AS {SOURCES_WITH_IDS[name]}")
        print(f"writing {k} copies of {name}", flush=True)
        con.execute(f"""COPY (SELECT * EXCLUDE (k) REPLACE ({', '.join(replace)})
                              FROM read_parquet('{src}'), range({k}) AS r(k))
                        TO '{tmp / src.name}' (FORMAT parquet)""")
    shutil.rmtree(tmp / "spill", ignore_errors=True)
    tmp.rename(folder)
    return folder


def count_rows(folder: Path, name: str) -> int:
    import duckdb

    return duckdb.sql(f"SELECT count(*) FROM read_parquet('{folder / name}.parquet')").fetchall()[0][0]


# --------------------------------------------------------------------------- measure

def measure(step: str, folder: Path, memory_limit: str, out: Path | None = None) -> dict:
    spill = folder / "spill"
    peak = {"bytes": 0}
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            try:
                size = sum(f.stat().st_size for f in spill.rglob("*") if f.is_file())
            except OSError:  # the folder or a file vanished while it was being walked
                size = 0
            peak["bytes"] = max(peak["bytes"], size)
            time.sleep(0.5)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    cmd = [sys.executable, "-c", _WRAPPER, sys.executable, str(HERE), "--child", step,
           "--folder", str(folder), "--memory-limit", memory_limit]
    if out is not None:
        cmd += ["--child-out", str(out)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    elapsed = time.perf_counter() - start
    done.set()
    thread.join()
    if proc.returncode:
        lines = [line for line in proc.stderr.splitlines() if "Error" in line or "Exception" in line]
        (workdir_log := folder / f"{step}-failure.log").write_text(proc.stderr)
        return {"status": f"failed: {(lines or [str(proc.returncode)])[0].strip()[:200]} (log: {workdir_log})",
                "process_s": round(elapsed, 1)}
    lines = proc.stdout.strip().splitlines()
    result = json.loads(lines[-2])
    return {"status": "ok", "wall_s": round(result["wall_s"], 1), "process_s": round(elapsed, 1),
            "peak_rss_gb": round(int(lines[-1]) / 1e6, 2),
            "spill_peak_gb": round(peak["bytes"] / 1e9, 2), "rows": result["rows"],
            "columns": result["columns"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, nargs="+", default=[1, 5, 10])
    parser.add_argument("--spark", type=int, nargs="*", default=[1], help="copies to run on Spark too")
    parser.add_argument("--plain", type=int, nargs="*", default=None, help="copies for the plain SQL (default: all)")
    parser.add_argument("--memory-limit", default="1300MB")
    parser.add_argument("--spark-memory", default="2g", help="spark.driver.memory (local mode's heap)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/scale"))
    parser.add_argument("--out", type=Path, default=HERE.parent / "results" / "scale.csv")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.folder, args.memory_limit, args.child_out)
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
    os.environ["HS_SPARK_MEMORY"] = args.spark_memory
    base = base_book(args.workdir)
    rows = []
    plain_sizes = args.copies if args.plain is None else args.plain
    for k in args.copies:
        folder = copies(base, k, args.workdir)
        events, accounts = count_rows(folder, "events"), count_rows(folder, "accounts")
        steps = ["engine"] + (["plain"] if k in plain_sizes else []) + (["spark"] if k in args.spark else [])
        for step in steps:
            check = args.workdir / f"{step}-{k}.parquet" if k == 1 and step != "spark" else None
            result = measure(step, folder, args.memory_limit, check)
            row = {"copies": k, "events": events, "accounts": accounts, "step": step, **result}
            rows.append(row)
            print(row, flush=True)
        if k == 1 and (args.workdir / "plain-1.parquet").exists():
            _check_plain(args.workdir)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fields = list(dict.fromkeys(key for row in rows for key in row))
    with args.out.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fields)
        writer.writeheader()
        writer.writerows(rows)


def _check_plain(workdir: Path) -> None:
    """The plain SQL's core metrics equal the engine's on the base book."""
    import pandas as pd

    engine = pd.read_parquet(workdir / "engine-1.parquet")
    plain = pd.read_parquet(workdir / "plain-1.parquet")
    plain["as_of_date"] = pd.to_datetime(plain["as_of_date"]).astype("datetime64[us]")
    keys = ["account_id", "as_of_date"]
    merged = engine[keys + CORE].merge(plain, on=keys, suffixes=("", "_plain"), how="outer",
                                       indicator=True)
    assert (merged["_merge"] == "both").all(), merged["_merge"].value_counts()
    for column in CORE:
        diff = (merged[column].astype(float) - merged[f"{column}_plain"].astype(float)).abs().max()
        assert diff == 0, (column, diff)
    print(f"plain SQL equals the engine on {len(merged):,} rows x {len(CORE)} core metrics", flush=True)


if __name__ == "__main__":
    main()
