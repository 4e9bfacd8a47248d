"""Contract validation: the pandas path against the DuckDB path, on one book.

    .venv/bin/python benchmarks/bench_validate.py --data /tmp/score-books/smb-100000-u5

Each engine runs in its own process, so each peak RSS is that run's alone:

* ``pandas``: ``read_data_folder`` + ``validate_sources`` (every source as a DataFrame),
  what ``healthscore validate`` did before;
* ``duckdb``: ``pipelines.ingest.validate_into`` on an in-memory DuckDB connection
  (clean tables stay in DuckDB), what ``healthscore validate`` does now.

Both must report the same problems and rows; the script checks that. Results are
appended to ``benchmarks/results/validate_engines.csv``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def _one(engine: str, data: str) -> None:
    """Validate ``data`` in this process with ``engine``; print one JSON line."""
    import resource

    start = time.perf_counter()
    if engine == "pandas":
        from healthscore.contract import validate_sources
        from pipelines.io import read_data_folder

        validation = validate_sources(read_data_folder(data))
    else:
        import duckdb

        from pipelines.ingest import validate_into

        validation = validate_into(duckdb.connect(), data)
    seconds = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({
        "engine": engine, "seconds": round(seconds, 1),
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "rows": {n: r.rows for n, r in validation.reports.items()},
        "kept": {n: r.kept_rows for n, r in validation.reports.items()},
        "problems": [str(p) for p in validation.all_problems],
    }))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--engines", nargs="+", default=["duckdb", "pandas"])
    parser.add_argument("--out", type=Path, default=HERE / "results" / "validate_engines.csv")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # child: run this engine
    args = parser.parse_args()
    if args.one:
        _one(args.one, args.data)
        return
    results = []
    for engine in args.engines:
        proc = subprocess.run([sys.executable, __file__, "--data", args.data, "--one", engine],
                              capture_output=True, text=True, cwd=ROOT)
        if proc.returncode != 0:
            raise SystemExit(f"{engine} failed:\n{proc.stderr[-2000:]}")
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        results.append(result)
        rows = sum(result["rows"].values())
        print(f"{engine:7s} {result['seconds']:7.1f} s (CPU {result['cpu_seconds']:.1f} s)  peak RSS {result['peak_rss_mb']:,} MB  "
              f"({rows:,} rows, {len(result['problems'])} problems)", flush=True)
    if len(results) == 2:
        same = all(results[0][k] == results[1][k] for k in ("rows", "kept", "problems"))
        print("same rows, drops and problems" if same else "ENGINES DISAGREE")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    new = not args.out.exists()
    with args.out.open("a", newline="") as handle:
        writer = csv.writer(handle)
        if new:
            writer.writerow(["data", "engine", "rows", "seconds", "cpu_seconds", "peak_rss_mb", "cpus",
                             "load_average", "python"])
        for result in results:
            writer.writerow([Path(args.data).name, result["engine"], sum(result["rows"].values()),
                             result["seconds"], result["cpu_seconds"], result["peak_rss_mb"], _cpus(),
                             round(os.getloadavg()[0], 1), platform.python_version()])


def _cpus() -> int:
    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    main()
