"""Wall time and peak RSS of a command run in its own process.

Linux starts a forked child's peak RSS at its parent's size and keeps it across exec: a
command started straight from a benchmark that has just simulated a 100,000-account book
(7 GB) reports 7 GB whatever it used itself. So the command is started by a fresh, small
Python process (the launcher), which reports its own child's peak (``os.wait4``).
"""

from __future__ import annotations

import csv
import subprocess
import sys
import time
from pathlib import Path

_LAUNCHER = (
    "import os, subprocess, sys\n"
    "child = subprocess.Popen(sys.argv[1:])\n"
    "_, status, usage = os.wait4(child.pid, 0)\n"
    "sys.stderr.write(f'\\n__peak_rss_kb {usage.ru_maxrss}\\n')\n"
    "sys.exit(os.waitstatus_to_exitcode(status))\n"
)


def run(command: list[str], env: dict | None = None) -> tuple[int, str, str, float, float]:
    """Run ``command``; return (exit code, stdout, stderr, wall seconds, peak RSS in GB)."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _LAUNCHER, *command], env=env,
                          capture_output=True, text=True)
    wall = time.perf_counter() - start
    stderr, marker, peak = done.stderr.rpartition("\n__peak_rss_kb ")
    if not marker:  # the launcher itself failed (its traceback is the stderr)
        return done.returncode or 1, done.stdout, done.stderr, wall, float("nan")
    return done.returncode, done.stdout, stderr, wall, int(peak.split()[0]) / 1e6


def write_rows(rows: list[dict], out: Path) -> None:
    """Results as CSV: one row per run, the columns of every row (empty where a run has none)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, list(dict.fromkeys(k for r in rows for k in r)))
        writer.writeheader()
        writer.writerows(rows)
