"""The OLD 90-day model's churn-in-window scores on the early-warning books (baseline).

``early_warning.py`` measures the 90-day window of the current model on its two books
(seeds 7 and 5, 400 accounts, 2023-10-01 to 2026-09-30). The model it replaced learned
churn in the next 90 days directly; this script measures that old model on the same
books and the same reported rows, so the two can be compared. It must run against the
code of commit bc91d46 (the last commit before the renewal-risk model), not this one:

    git worktree add /tmp/healthscore-old bc91d46        # or: git archive bc91d46 | tar -x -C DIR
    PYTHONPATH=/tmp/healthscore-old .venv/bin/python benchmarks/early_warning_baseline_window.py

For each seed: the old labels (``label_observations``, horizon 90, lead 0, grace 30,
known by the book's end), the old fold plan (4 reported folds of 56 days) and the old
``models.training.fitters`` minus ``lightgbm_alt`` (the unconstrained variant, not
compared here), each trained walk-forward on labels known by its fold's start; and the
generator's own window probability (``oracle_churn_probability``) on the same rows.
Results: benchmarks/results/early_warning_baseline_window.csv.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import time
from pathlib import Path

import pandas as pd

from features.catalog import available_columns, catalog
from features.lifecycle import churn_events
from healthscore.config import Config
from healthscore.simulate import SimulationConfig, oracle_churn_probability, simulate_book
from models.backtest import fold_plan, walk_forward
from models.evaluation import scores
from models.observations import known_by, label_observations
from models.training import fitters
from pipelines.features import compute_metric_history

HERE = Path(__file__).resolve().parent


def run(seed: int, accounts: int, start: dt.date, config: Config) -> pd.DataFrame:
    book = simulate_book(SimulationConfig(n_accounts=accounts, seed=seed, start=start))
    tables = book.sources
    as_of = tables["events"]["timestamp"].max().normalize()
    history = compute_metric_history(tables, as_of.date(), config)
    m = config.model
    churns = churn_events(tables["subscriptions"], as_of, config.grace_days)
    observations = known_by(label_observations(history, churns, m.horizon_days, m.lead_days,
                                               config.grace_days), as_of).reset_index(drop=True)
    own = tuple(c for c in tables["account_metrics"].columns if c not in ("account_id", "as_of_date"))
    metrics = catalog(config.metrics, available_columns(tables), own)
    folds, _ = fold_plan(observations, m.folds, m.fold_days, m.tuning_folds)
    chosen = {k: f for k, f in fitters(m, metrics).items() if k != "lightgbm_alt"}
    predictions = walk_forward(observations, folds, chosen)
    rows = predictions.loc[predictions["model"] == "lightgbm"]
    oracle = rows.assign(model="oracle", p=oracle_churn_probability(
        rows, book.truth["renewals"], m.horizon_days, m.lead_days))
    print(f"seed {seed}: reported {folds[0].start:%Y-%m-%d} to {folds[-1].end:%Y-%m-%d}, "
          f"{len(rows)} rows", flush=True)
    return pd.concat([predictions, oracle], ignore_index=True).assign(seed=seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[7, 5])
    parser.add_argument("--accounts", type=int, default=400)
    parser.add_argument("--start", type=dt.date.fromisoformat, default=dt.date(2023, 10, 1))
    parser.add_argument("--out", type=Path, default=HERE / "results" / "early_warning_baseline_window.csv")
    args = parser.parse_args()
    began = time.perf_counter()
    config = Config()
    window = pd.concat([run(s, args.accounts, args.start, config) for s in args.seeds], ignore_index=True)
    rows = []
    for seed in [*args.seeds, "all"]:
        part = window if seed == "all" else window.loc[window["seed"] == seed]
        for model, group in part.groupby("model", sort=True):
            s = scores(group, config.model.capacity)
            rows.append({"seed": seed, "model": model, **{k: s[k] for k in (
                "observations", "churn_rate", "roc_auc", "pr_auc", "brier", "log_loss", "ece",
                "top_decile_lift", "recall_at_capacity")}})
            print(f"  seed {seed} {model}: ROC-AUC {s['roc_auc']:.3f}, PR-AUC {s['pr_auc']:.3f}, "
                  f"ECE {s['ece']:.4f}, log loss {s['log_loss']:.4f} ({s['observations']:.0f} rows)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, list(rows[0]))
        writer.writeheader()
        writer.writerows({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in r.items()} for r in rows)
    print(f"total {time.perf_counter() - began:.0f} s; results in {args.out}")


if __name__ == "__main__":
    main()
