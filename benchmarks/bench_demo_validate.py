"""Benchmark: demo-data generation and contract validation, by book size.

Runs each step as its own process (the installed ``healthscore`` command, as a user
would) and records wall time and peak resident memory of that process.

    .venv/bin/python benchmarks/bench_demo_validate.py --accounts 400 2000 --out benchmarks/results

Results are appended to ``benchmarks/results/demo_validate.csv`` and summarised in
``docs/benchmarks.md`` by hand, with the machine they ran on.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HS = str(Path(sys.executable).with_name("healthscore"))


_WRAPPER = (
    "import resource, subprocess, sys; "
    "code = subprocess.run(sys.argv[1:], capture_output=True).returncode; "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(code)"
)


def measure(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one command, run under its own wrapper process."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _WRAPPER, *cmd], capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed (exit {proc.returncode})")
    return wall, int(proc.stdout.strip().splitlines()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accounts", type=int, nargs="+", default=[400, 2000])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = args.out / "demo_validate.csv"
    new = not results.exists()
    with results.open("a", newline="") as fh, tempfile.TemporaryDirectory() as tmp:
        writer = csv.writer(fh)
        if new:
            writer.writerow(["date", "machine", "cpus", "accounts", "step", "events",
                             "data_mb", "wall_s", "peak_rss_mb"])
        for n in sorted(args.accounts):
            data = Path(tmp) / f"book{n}"
            wall, rss = measure([HS, "demo-data", "--out", str(data), "--accounts", str(n)])
            size = sum(p.stat().st_size for p in data.iterdir()) / 1e6
            import pyarrow.parquet as pq

            events = pq.ParquetFile(data / "events.parquet").metadata.num_rows
            rows = [(n, "demo-data", events, size, wall, rss)]
            wall, rss = measure([HS, "validate", "--data", str(data)])
            rows.append((n, "validate", events, size, wall, rss))
            for row in rows:
                line = [time.strftime("%Y-%m-%d"), platform.machine(), os.cpu_count(), *row[:3],
                        f"{row[3]:.1f}", f"{row[4]:.1f}", f"{row[5]:.0f}"]
                writer.writerow(line)
                print(*line, sep="\t", flush=True)


if __name__ == "__main__":
    main()
