"""Benchmark: the metric history, Ibis engine on DuckDB against plain pandas.

For each book size, every step runs as its own process under a wrapper that records
the process's peak resident memory (as in ``bench_demo_validate.py``):

* ``load``   -- ``load_data_folder``: read and validate the demo folder.
* ``engine`` -- ``metric_history_from_parquet`` on the validated tables (staged as Parquet).
* ``pandas`` -- ``reference_metric_history`` (``benchmarks/pandas_reference.py``).

So that the engine's and the reference's memory is not hidden under the loading peak,
the validated tables are cached once as Parquet (not measured), and the ``engine`` and
``pandas`` processes start from that cache. ``wall_s`` is the measured call alone;
``tables_rss_mb`` is the process's resident memory just before it (the tables held in
pandas), ``peak_rss_mb`` the whole process's peak.

Two series of books (demo data, two years; events grow with the accounts):

* ``events``:   320, 960 and 3,200 accounts, about 1M, 3M and 10M events.
* ``accounts``: about 3M events spread over 960, 2,300 and 6,000 accounts (fewer users
  per account), so the snapshot grid grows while the events stay put.

    .venv/bin/python benchmarks/bench_metric_history.py                 # both series
    .venv/bin/python benchmarks/bench_metric_history.py --series events --workdir /tmp/books
    .venv/bin/python benchmarks/bench_metric_history.py --data my-data  # one given folder

Results are appended to ``benchmarks/results/metric_history.csv``.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve()
# Exit code of the wrapper when the measured process ran past its time limit.
TIMEOUT_EXIT = 124

# Runs the measured command as its only child: the children's peak RSS is that command's.
# The child's stdout (its JSON) is passed on, then the peak in KB on the last line.
_WRAPPER = f"""
import resource, subprocess, sys
limit = float(sys.argv[1]) or None
try:
    proc = subprocess.run(sys.argv[2:], stdout=subprocess.PIPE, text=True, timeout=limit)
    code, out = proc.returncode, proc.stdout
except subprocess.TimeoutExpired:
    code, out = {TIMEOUT_EXIT}, ""
print(out.strip())
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.exit(code)
"""

FIELDS = ["date", "machine", "cpus", "series", "accounts", "max_users", "events", "step",
          "status", "wall_s", "process_wall_s", "peak_rss_mb", "tables_rss_mb", "rows",
          "snapshots"]


@dataclass(frozen=True)
class Book:
    """One demo book to generate: ``max_users`` caps users (and so events) per account."""

    series: str
    accounts: int
    max_users: int = 40
    seed: int = 7
    compare: bool = False  # also run the pandas reference

    @property
    def name(self) -> str:
        return f"book-{self.accounts}a-{self.max_users}u-s{self.seed}"


SERIES = {
    "events": [Book("events", 320, compare=True), Book("events", 960, compare=True),
               Book("events", 3200, compare=True)],
    "accounts": [Book("accounts", 960), Book("accounts", 2300, 10), Book("accounts", 6000, 3),
                 Book("accounts", 5000, 20, compare=True)],
}


# ---------------------------------------------------------------- the measured processes


def _child(step: str, folder: str, cache: str) -> None:
    """Run one step in this process and print its measurements as JSON on stdout."""
    import resource

    import pyarrow.parquet as pq

    from healthscore.config import Config
    from pipelines.validate import load_data_folder

    result: dict[str, object] = {}
    if step in ("load", "cache"):
        start = time.perf_counter()
        tables = load_data_folder(Path(folder))
        result["wall_s"] = time.perf_counter() - start
        result["events"] = len(tables["events"])
        result["accounts"] = len(tables["accounts"])
        if step == "cache":
            Path(cache).mkdir(parents=True, exist_ok=True)
            for name, table in tables.items():
                table.to_parquet(Path(cache) / f"{name}.parquet", index=False)
    else:
        as_of = _as_of(Path(cache))
        if step == "engine":
            # What `healthscore features` runs after validating: DuckDB scans the staged
            # validated Parquet itself; no pandas copy of the tables in this process.
            from pipelines.features import metric_history_from_parquet

            result["tables_rss_mb"] = _rss_mb()
            start = time.perf_counter()
            history = metric_history_from_parquet(Path(cache), as_of, Config())
        else:
            sys.path.insert(0, str(HERE.parent))
            from pandas_reference import reference_metric_history

            tables = {p.stem: pq.read_table(p).to_pandas()
                      for p in sorted(Path(cache).glob("*.parquet"))}
            result["tables_rss_mb"] = _rss_mb()
            start = time.perf_counter()
            history = reference_metric_history(tables, as_of, Config())
        result["wall_s"] = time.perf_counter() - start
        result["rows"] = len(history)
        result["snapshots"] = history["as_of_date"].nunique()
        result["events"] = pq.ParquetFile(Path(cache) / "events.parquet").metadata.num_rows
        result["accounts"] = pq.ParquetFile(Path(cache) / "accounts.parquet").metadata.num_rows
    result["self_peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def _as_of(cache: Path) -> dt.date:
    """The last day in the cached tables, as ``healthscore features`` defaults to."""
    import pyarrow.parquet as pq

    from pipelines.validate import data_end_date

    small = {p.stem: pq.read_table(p).to_pandas() for p in sorted(cache.glob("*.parquet"))
             if p.stem != "events"}
    events = pq.read_table(cache / "events.parquet", columns=["timestamp"]).to_pandas()
    return data_end_date({**small, "events": events}).date()


def _rss_mb() -> float:
    """This process's resident memory now, in MB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# ------------------------------------------------------------------------------- driver


def measure(cmd: list[str], timeout_s: float = 0) -> tuple[str, float, float, dict]:
    """Status, wall seconds, peak RSS (MB) and printed JSON of one command, under its wrapper."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _WRAPPER, str(timeout_s), *cmd],
                          capture_output=True, text=True)
    wall = time.perf_counter() - start
    lines = proc.stdout.strip().splitlines()
    if proc.returncode == TIMEOUT_EXIT:
        return "timeout", wall, int(lines[-1]) / 1024, {}
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return "ok", wall, int(lines[-1]) / 1024, json.loads(lines[-2])


def generate(book: Book, folder: Path) -> None:
    """Write ``book`` as demo data (skipped when the folder already holds it)."""
    from pipelines.demo_data import MARKER

    if (folder / MARKER).exists():
        return
    code = (
        "import sys; from pathlib import Path; "
        "from healthscore.simulate import SimulationConfig; "
        "from pipelines.demo_data import write_demo_data; "
        "write_demo_data(Path(sys.argv[1]), SimulationConfig(n_accounts=int(sys.argv[2]), "
        "max_users_per_account=int(sys.argv[3]), seed=int(sys.argv[4])), "
        "truth_dir=Path(sys.argv[1] + '-truth'))"
    )
    print(f"generating {book.name} ...", flush=True)
    subprocess.run([sys.executable, "-c", code, str(folder), str(book.accounts),
                    str(book.max_users), str(book.seed)], check=True)


def run_book(book: Book, folder: Path, cache: Path, steps: list[str], pandas_timeout: float,
             writer: csv.DictWriter, repeat: int = 1) -> None:
    """Measure every step on one data folder and write a row per step and run.

    ``load`` and ``engine`` run ``repeat`` times (the docs report the median); the slow
    pandas reference runs once.
    """
    me = [sys.executable, str(HERE), "_child"]
    if not (cache / "events.parquet").exists():
        subprocess.run([*me, "cache", str(folder), str(cache)], check=True,
                       stdout=subprocess.DEVNULL)
    for step in [s for s in steps for _ in range(1 if s == "pandas" else repeat)]:
        limit = pandas_timeout if step == "pandas" else 0
        status, wall, peak, out = measure([*me, step, str(folder), str(cache)], limit)
        row = {
            "date": time.strftime("%Y-%m-%d"), "machine": platform.machine(),
            "cpus": os.cpu_count(), "series": book.series,
            "accounts": out.get("accounts", book.accounts),
            "max_users": book.max_users or "", "events": out.get("events", ""), "step": step,
            "status": status, "wall_s": _fmt(out.get("wall_s", wall)),
            "process_wall_s": _fmt(wall), "peak_rss_mb": f"{peak:.0f}",
            "tables_rss_mb": _fmt(out.get("tables_rss_mb"), 0), "rows": out.get("rows", ""),
            "snapshots": out.get("snapshots", ""),
        }
        writer.writerow(row)
        print(*(row[f] for f in FIELDS[3:]), sep="\t", flush=True)


def _fmt(value: object, digits: int = 1) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", nargs="+", choices=sorted(SERIES), default=sorted(SERIES))
    parser.add_argument("--data", type=Path, help="measure this data folder instead of demo books")
    parser.add_argument("--workdir", type=Path,
                        help="keep (and reuse) generated books and caches here "
                             "(default: a temp dir)")
    parser.add_argument("--pandas-max-events", type=float, default=12e6,
                        help="run the pandas reference only on books up to this many events")
    parser.add_argument("--pandas-timeout", type=float, default=900,
                        help="seconds before a pandas run is stopped and recorded as a timeout")
    parser.add_argument("--out", type=Path, default=HERE.parent / "results")
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs of the load and engine steps per book (this machine's "
                             "timings vary by about 20%% from run to run)")
    parser.add_argument("--books", nargs="+", help="only these books (names as in --workdir)")
    args = parser.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    results = args.out / "metric_history.csv"
    new = not results.exists()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-metric-history-"))
    try:
        with results.open("a", newline="") as fh:
            writer = csv.DictWriter(fh, FIELDS)
            if new:
                writer.writeheader()
            print(*FIELDS[3:], sep="\t", flush=True)
            if args.data:
                book = Book("given", 0, 0, 0)
                run_book(book, args.data, workdir / f"{args.data.name}-cache",
                         ["load", "engine", "pandas"], args.pandas_timeout, writer, args.repeat)
                return
            for series in args.series:
                for book in SERIES[series]:
                    if args.books and book.name not in args.books:
                        continue
                    folder = workdir / book.name
                    generate(book, folder)
                    steps = ["load", "engine"]
                    # The events series and the issue's ~10 M-event, ~5,000-account book
                    # carry the engine-vs-pandas comparison.
                    if book.compare and _events(folder) <= args.pandas_max_events:
                        steps.append("pandas")
                    run_book(book, folder, workdir / f"{book.name}-cache", steps,
                             args.pandas_timeout, writer, args.repeat)
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)


def _events(folder: Path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(folder / "events.parquet").metadata.num_rows


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        _child(*sys.argv[2:5])
    else:
        main()
