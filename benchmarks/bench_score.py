"""Scoring speed: `healthscore score` on demo books of growing size, time split by stage.

    .venv/bin/python benchmarks/bench_score.py --accounts 400 2000 --workdir /tmp/score-books

For each size: write a demo book (two years), fit the model on it and register it in a
throwaway MLflow store (not timed), then time one `score` run as of the last day, split
into the metric build (validation excluded), prediction, SHAP explanation and the rest
(loading, validation, drivers in words, history, writing). Results go to
benchmarks/results/score.csv and docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import csv
import os
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, nargs="+", default=[400, 2000])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/score-books"))
    parser.add_argument("--out", type=Path, default=HERE / "results" / "score.csv")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{args.workdir / 'mlflow.db'}"

    import mlflow

    from healthscore.config import Config
    from healthscore.simulate import SimulationConfig
    from models.training import fit_final
    from pipelines import registry
    from pipelines.demo_data import MARKER, write_demo_data
    from pipelines.score import score
    from pipelines.train import build_observations

    config = Config()
    rows = []
    for n in args.accounts:
        data = args.workdir / f"book-{n}"
        if not (data / MARKER).exists():
            write_demo_data(data, SimulationConfig(n_accounts=n, seed=7))
        known, _, as_of, metric_catalog = build_observations(data, None, config, lambda m: None)
        model = fit_final(known, config.model, metric_catalog)[0]
        name = f"bench-{n}"
        registry.connect("bench")
        with mlflow.start_run():
            logged = registry.log_model(model, 90, {}, known.tail(20))
        version = registry.register(logged.model_uri, name, {})
        start = time.perf_counter()
        result = score(data, as_of, config, args.workdir / f"scores-{n}.parquet",
                       model_uri=f"models:/{name}/{version}",
                       history_dir=args.workdir / f"history-{n}", progress=lambda m: None)
        wall = time.perf_counter() - start
        s = result.seconds
        row = {"accounts": n, "scored": len(result.scores), "wall_s": round(wall, 1),
               "metrics_s": round(s["metrics"], 1), "prediction_s": round(s["prediction"], 2),
               "explanation_s": round(s["explanation"], 2),
               "rest_s": round(wall - s["metrics"] - s["prediction"] - s["explanation"], 1)}
        rows.append(row)
        print(row, flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    main()
