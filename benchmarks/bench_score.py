"""Scoring speed and memory: `healthscore score` on books of growing size, time split by stage.

    .venv/bin/python benchmarks/bench_score.py --accounts 2000 20000 100000 --workdir /tmp/score-books

The model is fitted once on the two-year demo book (``--train-accounts``, seed 7) and
registered in a throwaway MLflow store (not timed): scoring is the weekly job, training
is not. Each scored book is a small-business book from the same simulator: 14 months of
data (2025-08-01 to 2026-09-30, enough for the trailing-year peak), at most
``--max-users`` modelled users per account (default 5), seed 7. Each size is scored as
of its last day in its own process, so the peak RSS is that run's alone.

Stages (``pipelines.score.STAGES``): load (read and validate the folder, load the
model), metrics (stage the tables as Parquet and build the short metric history),
prediction, explanation (LightGBM's exact SHAP contributions), drivers (points per
metric and group, sentences, actions), history (score history and alerts), writing.
Results go to benchmarks/results/score.csv and docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

import measure  # the peak RSS of a command, measured from a small launcher

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
START = dt.date(2025, 8, 1)


def _model_uri(workdir: Path, train_accounts: int) -> str:
    """Fit and register the model once per work folder; its URI is cached in a file."""
    cached = workdir / f"model-{train_accounts}.uri"
    if cached.exists():
        return cached.read_text().strip()
    import mlflow

    from healthscore.config import Config
    from healthscore.simulate import SimulationConfig
    from models.training import fit_final
    from pipelines import registry
    from pipelines.demo_data import MARKER, write_demo_data
    from pipelines.train import build_observations

    config = Config()
    data = workdir / f"train-book-{train_accounts}"
    if not (data / MARKER).exists():
        write_demo_data(data, SimulationConfig(n_accounts=train_accounts, seed=7))
    training = build_observations(data, None, config, lambda m: None)
    known = training.known
    model = fit_final(known, config.model, training.catalog, current=training.current)[0]
    registry.connect("bench")
    with mlflow.start_run():
        logged = registry.log_model(model, config.model.horizon_days, {}, known.tail(20))
    version = registry.register(logged.model_uri, "bench-score", {})
    uri = f"models:/bench-score/{version}"
    cached.write_text(uri)
    return uri


def _book(workdir: Path, accounts: int, max_users: int) -> Path:
    from healthscore.simulate import SimulationConfig
    from pipelines.demo_data import MARKER, write_demo_data

    data = workdir / f"smb-{accounts}-u{max_users}"
    if not (data / MARKER).exists():
        print(f"simulating {accounts:,} accounts", flush=True)
        write_demo_data(data, SimulationConfig(n_accounts=accounts, seed=7, start=START,
                                               max_users_per_account=max_users))
    return data


def _score_one(data: Path, uri: str, workdir: Path) -> dict:
    """Score one book in this process; print one JSON line."""
    import pyarrow.parquet as pq

    from healthscore.config import Config
    from pipelines.score import STAGES, score

    events = pq.ParquetFile(data / "events.parquet").metadata.num_rows
    out = workdir / f"scores-{data.name}.parquet"
    store = workdir / f"store-{data.name}.duckdb"
    start = time.perf_counter()
    result = score(data, None, Config(), out, model_uri=uri, store=store,
                   progress=lambda m: None)
    wall = time.perf_counter() - start
    row = {"book": data.name, "events": events, "scored": len(result.scores),
           "wall_s": round(wall, 1),
           **{f"{s}_s": round(result.seconds.get(s, 0.0), 2) for s in STAGES}}
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, nargs="+", default=[2000, 20000, 100000])
    parser.add_argument("--max-users", type=int, default=5)
    parser.add_argument("--train-accounts", type=int, default=2000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/score-books"))
    parser.add_argument("--out", type=Path, default=HERE / "results" / "score.csv")
    parser.add_argument("--one", type=Path, help=argparse.SUPPRESS)  # child: score this book
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{args.workdir / 'mlflow.db'}"
    uri = _model_uri(args.workdir, args.train_accounts)
    if args.one:
        _score_one(args.one, uri, args.workdir)
        return
    rows = []
    for n in args.accounts:
        data = _book(args.workdir, n, args.max_users)
        # An empty metric store per run: the benchmark times a first run of that date.
        (args.workdir / f"store-{data.name}.duckdb").unlink(missing_ok=True)
        code, stdout, stderr, _, peak_gb = measure.run(
            [sys.executable, __file__, "--workdir", str(args.workdir),
             "--train-accounts", str(args.train_accounts), "--one", str(data)])
        if code:
            sys.exit(f"scoring {data} failed:\n{stderr[-3000:]}")
        row = json.loads(stdout.strip().splitlines()[-1])
        row = {"accounts": n, "max_users": args.max_users, **row, "peak_rss_gb": round(peak_gb, 2)}
        rows.append(row)
        print(row, flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    main()
