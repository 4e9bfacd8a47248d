"""Early warning before renewal: how well each renewal decision was ranked months ahead.

The baseline for the "renewal countdown" issue: the model predicts churn in the next 90
days, and churn happens only at a term's end. This measures, for every renewal decision
in the reported backtest period, how well it was ranked 30, 90, 180 and 270 days before
the decision:

    .venv/bin/python benchmarks/early_warning.py --seeds 7 5

For each seed:

* Simulate a 400-account book (``simulate_book``) ending on the demo's last day,
  2026-09-30, but starting a year before the demo (``--start``, default 2023-10-01): the
  observation 270 days before the earliest reported decision must be scored by a model
  trained on outcomes known before it, and on the two-year demo book no outcome is known
  by then. Build its metric history and label observations as ``healthscore train``
  does (horizon 90 days, lead 0, grace 30).
* **Decisions**: the generator's renewal decisions (``truth["renewals"]``) whose
  decision date lies in the reported backtest period (the latest ``model.folds`` folds
  of ``fold_plan``, the period ``models.training.backtest`` reports). The label,
  "churned at that renewal", is the outcome the pipeline derives from the subscriptions
  (``renewal_outcomes``); the script stops if it ever differs from the generator's.
* **Observations**: for a decision on day R and a lead L, the account's metric-history
  row on the latest weekly snapshot on or before R - L. A decision whose account has no
  row on that snapshot (not yet a customer) has no observation at that lead. The main
  table keeps the decisions observed at every lead, so each lead ranks the same
  decisions; ``decisions=observed`` rows of the CSV use every decision observed at
  that lead.
* **Models, as a team would have had them at the observation date**: the walk-forward
  folds of ``fold_days`` (56) are extended back from the reported period until they
  cover every observation. For a fold starting on S, the scorecard, the logistic
  baseline and the calibrated monotone LightGBM (``models.training``, default config)
  learn only from observations whose label was known by S, in time order, and score
  the fold's observations. So an observation is scored by the model trained at most 56
  days before it, never after it.
* **The ceiling**: the generator's own ``p_churn`` for the decision. It knows the
  account's health over the 45 days before the decision, so it is the same at every
  lead and cannot be reached from a snapshot months earlier.
* **A reference for what the observation date can know**: the generator's latent
  health of the account at the observation (``truth["health"]``, weekly on Mondays:
  the latest Monday on or before the date, or the first after it for an account that
  started that week), sign flipped. It is not a model: no data shows the latent health,
  and it ignores what else sets ``p_churn`` (billing cycle, segment, discount, budget
  cut, trend).

Reported per lead and model: ROC-AUC (with a 95% bootstrap interval over decisions on
the seeds pooled) and PR-AUC (against the share of decisions that churned). LightGBM's
health score is strictly monotone in its churn probability, so it ranks identically.
Also per lead: the share of LightGBM's mean |SHAP| (on the lead's observations) that
falls on the contract group, and on its calendar part (``renewal_days_to_next`` and
``term_length_days_current``). Results go to benchmarks/results/early_warning.csv.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import rankdata
from sklearn.metrics import average_precision_score, roc_auc_score

from features.catalog import Metric, available_columns, catalog
from features.lifecycle import churn_events, renewal_outcomes
from healthscore.config import Config
from healthscore.simulate import SimulationConfig, simulate_book
from models.backtest import Fold, fold_plan, iter_folds
from models.churn_model import feature_columns
from models.observations import KEYS, known_by, label_observations
from models.training import fitters, lightgbm
from pipelines.features import compute_metric_history

HERE = Path(__file__).resolve().parent
LEADS = (30, 90, 180, 270)
MODELS = ("lightgbm", "logistic", "scorecard", "health_at_obs", "ceiling")
CALENDAR = ("renewal_days_to_next", "term_length_days_current")


def decisions_in_period(book, as_of: pd.Timestamp, grace_days: int,
                        start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """The generator's renewal decisions dated in [start, end), each with the outcome the
    pipeline derives (``churned``) and the term's billing cycle."""
    renewals = book.truth["renewals"]
    decisions = renewals.loc[(renewals["decision_date"] >= start) & (renewals["decision_date"] < end)]
    outcomes = renewal_outcomes(book.sources["subscriptions"], as_of, grace_days).set_index("subscription_id")
    observed = decisions["subscription_id"].map(outcomes["outcome"])
    if not observed.isin(["churned", "renewed"]).all():
        raise RuntimeError("a decision in the reported period has no known outcome")
    churned = (observed == "churned").to_numpy()
    if not np.array_equal(churned, decisions["churned"].to_numpy()):
        raise RuntimeError("the derived renewal outcome differs from the generator's")
    plans = book.sources["subscriptions"].set_index("subscription_id")["plan"]
    return pd.DataFrame({
        "account_id": decisions["account_id"].to_numpy(),
        "decision_date": decisions["decision_date"].to_numpy(),
        "cycle": decisions["subscription_id"].map(plans).str.split().str[-1].to_numpy(),
        "churned": churned.astype(int), "p_churn": decisions["p_churn"].to_numpy(),
    })


def match_observations(decisions: pd.DataFrame, snapshots: pd.DatetimeIndex,
                       observed: pd.MultiIndex, leads: tuple[int, ...]) -> pd.DataFrame:
    """One row per decision and lead whose observation exists: ``as_of_date`` is the
    latest snapshot on or before decision - lead, kept when the account has a row there.

    >>> snaps = pd.DatetimeIndex(["2025-01-01", "2025-01-08"])
    >>> have = pd.MultiIndex.from_tuples([("a", snaps[0]), ("a", snaps[1])])
    >>> d = pd.DataFrame({"account_id": ["a"], "decision_date": pd.to_datetime(["2025-02-06"])})
    >>> match_observations(d, snaps, have, (30,))["as_of_date"].dt.strftime("%m-%d").tolist()
    ['01-01']
    """
    parts = []
    for lead in leads:
        target = decisions["decision_date"] - pd.Timedelta(days=lead)
        at = snapshots.searchsorted(target, side="right") - 1
        rows = decisions.assign(lead_days=lead, as_of_date=snapshots[np.maximum(at, 0)])
        rows = rows.loc[at >= 0]
        keep = pd.MultiIndex.from_frame(rows[KEYS]).isin(observed)
        parts.append(rows.loc[keep])
    return pd.concat(parts, ignore_index=True)


def latent_health_at(matched: pd.DataFrame, health: pd.DataFrame) -> np.ndarray:
    """The generator's latent health of each row's account nearest its ``as_of_date``
    (weekly truth: the Monday before a Wednesday snapshot, or the next one when the
    account started in between)."""
    rows = matched[KEYS].assign(_row=np.arange(len(matched))).sort_values("as_of_date")
    weekly = health.rename(columns={"date": "as_of_date"}).sort_values("as_of_date")
    found = pd.merge_asof(rows, weekly, on="as_of_date", by="account_id", direction="nearest",
                          tolerance=pd.Timedelta(days=6))
    if found["health"].isna().any():
        raise RuntimeError("an observation has no latent health within 6 days")
    return found.sort_values("_row")["health"].to_numpy()


def scoring_folds(reported: list[Fold], earliest: pd.Timestamp, fold_days: int) -> list[Fold]:
    """The reported folds, preceded by folds of the same length back to ``earliest``."""
    step = pd.Timedelta(days=fold_days)
    starts = [f.start for f in reported]
    while starts[0] > earliest:
        starts.insert(0, starts[0] - step)
    return [Fold(i + 1, s, s + step) for i, s in enumerate(starts)]


def score_folds(observations: pd.DataFrame, folds: list[Fold], matched: pd.DataFrame,
                config: Config, metrics: tuple[Metric, ...]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every model's churn probability on the matched observations, each from the model
    of the fold holding its date; and LightGBM's contributions on the same rows.

    Returns:
        (``matched`` with one column per model, contributions indexed like it)
    """
    wanted = pd.MultiIndex.from_frame(matched[KEYS])
    others = {k: f for k, f in fitters(config.model, metrics).items() if k in ("scorecard", "logistic")}
    scored, shap = [], []
    for fold, train, test in iter_folds(observations, folds):
        test = test.loc[pd.MultiIndex.from_frame(test[KEYS]).isin(wanted)]
        if test.empty:
            continue
        features = feature_columns(train)
        booster = lightgbm(config.model, metrics).fit(train[features], train["churned"], train["as_of_date"])
        out = test[KEYS].assign(lightgbm=booster.predict_proba(test[features])[:, 1])
        for fitter in others.values():
            for name, predict in fitter(train).items():
                out[name] = predict(test)
        scored.append(out)
        shap.append(pd.concat([test[KEYS], booster.contributions(test[features]).drop(columns="base")], axis=1))
    scored, shap = pd.concat(scored, ignore_index=True), pd.concat(shap, ignore_index=True)
    result = matched.merge(scored, on=KEYS, how="left")
    if result["lightgbm"].isna().any():
        raise RuntimeError(f"{int(result['lightgbm'].isna().sum())} observations fell in no trainable fold")
    return result, result[KEYS].merge(shap, on=KEYS, how="left").drop(columns=KEYS)


def run(seed: int, accounts: int, start: dt.date, config: Config) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """One book: (scored decisions per lead, LightGBM contributions on them, book facts)."""
    book = simulate_book(SimulationConfig(n_accounts=accounts, seed=seed, start=start))
    tables = book.sources
    as_of = tables["events"]["timestamp"].max().normalize()
    history = compute_metric_history(tables, as_of.date(), config)
    m = config.model
    churns = churn_events(tables["subscriptions"], as_of, config.grace_days)
    observations = known_by(label_observations(history, churns, m.horizon_days, m.lead_days,
                                               config.grace_days), as_of).reset_index(drop=True)
    own = tuple(c for c in tables["account_metrics"].columns if c not in KEYS)
    metrics = catalog(config.metrics, available_columns(tables), own)
    reported, _ = fold_plan(observations, m.folds, m.fold_days, m.tuning_folds)
    decisions = decisions_in_period(book, as_of, config.grace_days, reported[0].start, reported[-1].end)
    snapshots = pd.DatetimeIndex(np.sort(history["as_of_date"].unique()))
    matched = match_observations(decisions, snapshots, pd.MultiIndex.from_frame(history[KEYS]), LEADS)
    matched["health_at_obs"] = -latent_health_at(matched, book.truth["health"])
    folds = scoring_folds(reported, matched["as_of_date"].min(), m.fold_days)
    scored, shap = score_folds(observations, folds, matched, config, metrics)
    every_lead = scored.groupby(["account_id", "decision_date"])["lead_days"].transform("nunique") == len(LEADS)
    scored = scored.assign(seed=seed, every_lead=every_lead.to_numpy())
    facts = {"seed": seed, "decisions": len(decisions), "churned": int(decisions["churned"].sum()),
             "annual": int((decisions["cycle"] == "annual").sum()),
             "annual_churned": int(decisions.loc[decisions["cycle"] == "annual", "churned"].sum()),
             "period": f"{reported[0].start:%Y-%m-%d} to {reported[-1].end - pd.Timedelta(days=1):%Y-%m-%d}",
             "folds": f"{len(folds)} folds of {m.fold_days} days from {folds[0].start:%Y-%m-%d}"}
    group_of = {metric.name: metric.group for metric in metrics}
    return scored, shap.rename(columns=lambda c: group_of.get(c, "own") + ":" + c), facts


def rank_auc(y: np.ndarray, p: np.ndarray) -> float:
    """ROC-AUC from ranks (ties count half), as ``roc_auc_score`` but cheap enough to
    bootstrap.

    >>> rank_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.4, 0.9]))
    0.875
    """
    ranks = rankdata(p)
    positives = int(y.sum())
    negatives = len(y) - positives
    return float((ranks[y == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def bootstrap_auc(y: np.ndarray, p: np.ndarray, reps: int, rng: np.random.Generator) -> tuple[float, float]:
    """95% percentile interval of ROC-AUC over decisions resampled with replacement."""
    values = []
    for _ in range(reps):
        i = rng.integers(0, len(y), len(y))
        if 0 < y[i].sum() < len(i):
            values.append(rank_auc(y[i], p[i]))
    return float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))


def summarise(scored: pd.DataFrame, shap: pd.DataFrame, reps: int) -> list[dict]:
    """Rows of the results table: per seed (and all seeds), decision set, cycle and lead."""
    rows = []
    scored = scored.assign(ceiling=scored["p_churn"])
    calendar = [c for c in shap.columns if c.split(":", 1)[1] in CALENDAR]
    contract = [c for c in shap.columns if c.startswith("contract:")]
    for seed in [*sorted(scored["seed"].unique()), "all"]:
        for decisions in ("every_lead", "observed"):
            for cycle in ("all", "annual", "monthly"):
                keep = (scored["seed"] == seed) if seed != "all" else pd.Series(True, index=scored.index)
                keep &= scored["every_lead"] if decisions == "every_lead" else True
                keep &= (scored["cycle"] == cycle) if cycle != "all" else True
                for lead in LEADS:
                    at = keep & (scored["lead_days"] == lead)
                    part, y = scored.loc[at], scored.loc[at, "churned"].to_numpy()
                    if part.empty or y.sum() in (0, len(y)):
                        continue
                    mean_abs = shap.loc[at].abs().mean()
                    row = {"seed": seed, "decisions": decisions, "cycle": cycle, "lead_days": lead,
                           "n": len(part), "churned": int(y.sum()), "churn_rate": y.mean(),
                           "shap_contract_share": mean_abs[contract].sum() / mean_abs.sum(),
                           "shap_calendar_share": mean_abs[calendar].sum() / mean_abs.sum(),
                           "lightgbm_median_p": part["lightgbm"].median()}
                    for model in MODELS:
                        p = part[model].to_numpy()
                        row[f"{model}_roc_auc"] = roc_auc_score(y, p)
                        row[f"{model}_pr_auc"] = average_precision_score(y, p)
                        if seed == "all" and cycle == "all":
                            rng = np.random.default_rng(lead)
                            row[f"{model}_roc_lo"], row[f"{model}_roc_hi"] = bootstrap_auc(y, p, reps, rng)
                    rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[7, 5])
    parser.add_argument("--accounts", type=int, default=400)
    parser.add_argument("--start", type=dt.date.fromisoformat, default=dt.date(2023, 10, 1),
                        help="first day of the simulated data (the book ends 2026-09-30)")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples per interval")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "early_warning.csv")
    parser.add_argument("--scores", type=Path, help="also write every decision's scores per lead (CSV)")
    args = parser.parse_args()
    began = time.perf_counter()
    scored, shap = [], []
    for seed in args.seeds:
        start = time.perf_counter()
        s, c, facts = run(seed, args.accounts, args.start, Config())
        scored.append(s)
        shap.append(c)
        print(f"seed {seed}: {facts['decisions']} decisions ({facts['churned']} churned; "
              f"{facts['annual']} annual, {facts['annual_churned']} of them churned) in {facts['period']}; "
              f"{facts['folds']} [{time.perf_counter() - start:.0f} s]", flush=True)
    scored = pd.concat(scored, ignore_index=True)
    if args.scores:
        scored.to_csv(args.scores, index=False, float_format="%.6g")
    rows = summarise(scored, pd.concat(shap, ignore_index=True).fillna(0.0), args.bootstrap)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    columns = list(dict.fromkeys(k for r in rows for k in r))
    with args.out.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, columns)
        writer.writeheader()
        writer.writerows({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in r.items()} for r in rows)

    main_rows = [r for r in rows if r["seed"] == "all" and r["decisions"] == "every_lead" and r["cycle"] == "all"]
    print(f"\nSeeds {' '.join(map(str, args.seeds))} pooled, decisions observed at every lead; "
          "ROC-AUC [95% bootstrap] / PR-AUC")
    print("\n| lead | decisions (churned) | LightGBM | logistic | scorecard | latent health at obs "
          "| ceiling (p_churn) | LightGBM |SHAP| on contract (calendar) |")
    print("|---:|---:|---|---|---|---|---|---:|")
    for r in main_rows:
        cells = [f"{r[f'{m}_roc_auc']:.3f} [{r[f'{m}_roc_lo']:.2f}-{r[f'{m}_roc_hi']:.2f}] / "
                 f"{r[f'{m}_pr_auc']:.3f}" for m in MODELS]
        print(f"| {r['lead_days']} d | {r['n']} ({r['churned']}) | {' | '.join(cells)} | "
              f"{r['shap_contract_share']:.0%} ({r['shap_calendar_share']:.0%}) |")
    print("\nLightGBM ROC-AUC per seed (decisions observed at every lead): " + "; ".join(
        f"seed {seed}: " + ", ".join(f"{r['lead_days']} d {r['lightgbm_roc_auc']:.3f}" for r in rows
                                     if r["seed"] == seed and r["decisions"] == "every_lead" and r["cycle"] == "all")
        for seed in args.seeds))
    print("\nLightGBM ROC-AUC by cycle (seeds pooled, decisions observed at every lead):")
    for cycle in ("annual", "monthly"):
        parts = [r for r in rows if r["seed"] == "all" and r["decisions"] == "every_lead" and r["cycle"] == cycle]
        print(f"  {cycle}: " + ", ".join(
            f"{r['lead_days']} d {r['lightgbm_roc_auc']:.3f} (health at obs {r['health_at_obs_roc_auc']:.3f}, "
            f"ceiling {r['ceiling_roc_auc']:.3f}; "
            f"{r['n']} decisions, {r['churned']} churned; median p {r['lightgbm_median_p']:.3f}; "
            f"calendar SHAP {r['shap_calendar_share']:.0%})"
            for r in parts))
    print(f"\ntotal {time.perf_counter() - began:.0f} s; results in {args.out}")


if __name__ == "__main__":
    main()
