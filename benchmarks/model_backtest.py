"""The out-of-time backtest on demo books of several seeds, against the generator's oracle.

Reproduces the seed table in docs/model.md (and, for seed 7, the demo's pooled table):

    .venv/bin/python benchmarks/model_backtest.py --seeds 7 5 11 23 31

For each seed: simulate a 400-account, two-year book, build its metric history, label
observations with outcomes known at the end of the data, run the walk-forward backtest
of every model with the default config, and compute the oracle's ROC-AUC on the same
reported rows (the generator's own churn probabilities, which know the account's health
at each renewal decision). Results go to benchmarks/results/model_backtest.csv.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from features.catalog import available_columns, catalog
from healthscore.config import Config
from healthscore.simulate import SimulationConfig, oracle_churn_probability, simulate_book
from models.band_churn import ranking_problems
from models.evaluation import expected_calibration_error
from models.observations import label_all
from models.training import backtest
from pipelines.demo_data import contract_minimal
from pipelines.features import compute_metric_history

HERE = Path(__file__).resolve().parent


def run(seed: int, accounts: int, config: Config, minimal: bool = False) -> dict[str, float]:
    book = simulate_book(SimulationConfig(n_accounts=accounts, seed=seed))
    tables = contract_minimal(book.sources) if minimal else book.sources
    as_of = tables["events"]["timestamp"].max().normalize()
    history = compute_metric_history(tables, as_of.date(), config)
    m = config.model
    observations = label_all(history, tables["subscriptions"], as_of, config.grace_days,
                             m.horizon_days, m.lead_days)
    own = tuple(c for c in tables["account_metrics"].columns
                if c not in ("account_id", "as_of_date")) if "account_metrics" in tables else ()
    predictions, summary = backtest(observations, m, catalog(config.metrics, available_columns(tables), own))
    pooled = summary["pooled"].set_index("model")
    rows = predictions.loc[(predictions["model"] == "lightgbm") & (predictions["fold"] >= 1)
                           & predictions["y"].notna()]
    oracle_p = oracle_churn_probability(rows, book.truth["renewals"], m.horizon_days, m.lead_days)
    oracle = roc_auc_score(rows["y"], oracle_p)
    # Among the rows with a renewal in the window (the due window): the ranking that
    # the calendar does not decide.
    due = ((rows["renewal_date"] - rows["as_of_date"]).dt.days <= m.horizon_days + m.lead_days).to_numpy()
    due_auc = roc_auc_score(rows["y"][due], rows["p"][due])
    due_oracle = roc_auc_score(rows["y"][due], oracle_p[due])
    brier = float(np.mean((rows["p"] - rows["y"]) ** 2))
    oracle_brier = float(np.mean((oracle_p - rows["y"]) ** 2))
    problems = ranking_problems(summary["bands"])
    production = summary["blend"].set_index("use").loc["production"]
    early = summary["early_warning"]
    warn = {f"{r['model']}_early_{int(r['lead_days'])}d_roc_auc": r["roc_auc"]
            for r in early.to_dict("records") if r["model"] in ("lightgbm", "scorecard", "logistic",
                                                                "lightgbm_no_contract")}
    return {"seed": seed, "accounts": accounts,
            "observations": int(observations["label_known_at"].notna().sum()),
            "reported_rows": len(rows), "churn_rate": rows["y"].mean(),
            **{f"{model}_roc_auc": pooled.loc[model, "roc_auc"] for model in pooled.index},
            "lightgbm_log_loss": pooled.loc["lightgbm", "log_loss"],
            "scorecard_log_loss": pooled.loc["scorecard", "log_loss"],
            "lightgbm_ece": pooled.loc["lightgbm", "ece"],
            "oracle_roc_auc": oracle, "lightgbm_share_of_oracle": pooled.loc["lightgbm", "roc_auc"] / oracle,
            "due_roc_auc": due_auc, "due_oracle_roc_auc": due_oracle, "due_share_of_oracle": due_auc / due_oracle,
            "brier": brier, "oracle_brier": oracle_brier, "brier_ratio": brier / oracle_brier,
            "band_problems": len(problems),
            "blend": "/".join(f"{production[p]:.1f}" for p in ("trees", "logistic", "scorecard")),
            "oracle_ece": expected_calibration_error(rows["y"].to_numpy(), oracle_churn_probability(
                rows, book.truth["renewals"], m.horizon_days, m.lead_days)), **warn}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[7, 5, 11, 23, 31])
    parser.add_argument("--accounts", type=int, default=400)
    parser.add_argument("--minimal", action="store_true", help="contract-minimal books (required columns only)")
    parser.add_argument("--blend", type=float, nargs=3, default=None,
                        help="fixed blend weights (trees, logistic, scorecard) instead of the chosen ones")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "model_backtest.csv")
    args = parser.parse_args()
    results = []
    for seed in args.seeds:
        start = time.perf_counter()
        config = Config()
        if args.blend:
            config = config.model_copy(update={"model": config.model.model_copy(
                update={"blend_weights": tuple(args.blend)})})
        results.append(run(seed, args.accounts, config, args.minimal))
        r = results[-1]
        print(f"seed {seed}: LightGBM {r['lightgbm_roc_auc']:.3f}, scorecard {r['scorecard_roc_auc']:.3f}, "
              f"logistic {r['logistic_roc_auc']:.3f}, oracle {r['oracle_roc_auc']:.3f} "
              f"({r['lightgbm_share_of_oracle']:.0%} of it; due window {r['due_share_of_oracle']:.0%}, "
              f"Brier {r['brier_ratio']:.2f}x; blend {r['blend']}; band problems {r['band_problems']}) "
              f"[{time.perf_counter() - start:.0f} s]", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, list(results[0]))
        writer.writeheader()
        writer.writerows({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in r.items()}
                         for r in results)
    print("\n| seed | LightGBM | logistic | scorecard | oracle | LightGBM / oracle |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['seed']} | {r['lightgbm_roc_auc']:.3f} | {r['logistic_roc_auc']:.3f} | "
              f"{r['scorecard_roc_auc']:.3f} | {r['oracle_roc_auc']:.3f} | {r['lightgbm_share_of_oracle']:.0%} |")


if __name__ == "__main__":
    main()
