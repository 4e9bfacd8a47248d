"""Early warning before renewal: how well each renewal decision was ranked months ahead.

Measures the product's model as it is now (it learns the risk at the next renewal) the
same way the baseline measured the old 90-day model: for every renewal decision in the
reported backtest period, how well it was ranked 30, 90, 180 and 270 days before it:

    .venv/bin/python benchmarks/early_warning.py --seeds 7 5

For each seed:

* Simulate a 400-account book (``simulate_book``) ending on the demo's last day,
  2026-09-30, but starting a year before the demo (``--start``, default 2023-10-01).
  Build its metric history and label every observation with both labels as
  ``healthscore train`` does (``models.observations.label_all``: the outcome at the
  end of the current term, and churn in the 90-day window), and size the backtest with
  ``models.backtest.plan_backtest``.
* **Decisions**: the generator's renewal decisions (``truth["renewals"]``) whose
  decision date lies in the reported backtest period. The label, "churned at that
  renewal", is the outcome the pipeline derives from the subscriptions
  (``renewal_outcomes``); the script stops if it ever differs from the generator's.
* **Observations**: for a decision on day R and a lead L, the account's metric-history
  row on the latest weekly snapshot on or before R - L (none when the account had no
  row there). The main table keeps the decisions observed and scored at every lead;
  ``decisions=observed`` rows of the CSV use every decision observed at that lead.
* **Models**: exactly ``models.training.backtest``'s folds and models. The reported
  folds (``plan_backtest``) and the folds before them (``models.training.earlier_folds``,
  kept when ``fold_usable``), each model trained by ``models.backtest.walk_forward`` on
  the renewal outcomes known by the fold's start, with the fitters of
  ``models.training.fitters(..., early=True)`` on every fold: ``scorecard``,
  ``logistic``, ``lightgbm`` and ``lightgbm_no_contract`` (no contract metric at all).
  The product's backtest fits the same four on the reported folds (plus variants this
  table does not use). A model ranks decisions by its renewal risk (``p_renewal``);
  ``lightgbm_health`` ranks by the health score the product shows (the renewal
  log-odds without the days-to-renewal contribution, ``health_log_odds``, on the fold
  model's scale), computed from the same fitted LightGBM.
* **The ceiling**: the generator's own ``p_churn`` for the decision (the same at every
  lead). **Latent health at the observation** (sign flipped) is a reference, not a model;
  so is ``annual_first``, a 0/1 flag that ranks annual terms above monthly ones (the
  billing cycle alone).
* **3-12 months**: leads 90, 180 and 270 pooled (each decision three times), and
  LightGBM's ROC-AUC as a share of the ceiling's; the interval resamples decisions.
* **The 90-day window** on the reported folds: each model's churn probability ``p``
  against ``y`` (churn in the window, known by the as-of date), ROC-AUC, PR-AUC, ECE
  (``models.evaluation.scores``), and the generator's own window probability
  (``healthscore.simulate.oracle_churn_probability``) as its ceiling.

Results: benchmarks/results/early_warning.csv (per seed and pooled, decision set, cycle,
lead) and benchmarks/results/early_warning_window.csv (the 90-day window).
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

from features.catalog import available_columns, catalog
from features.lifecycle import renewal_outcomes
from healthscore.config import Config
from healthscore.simulate import SimulationConfig, oracle_churn_probability, simulate_book
from models.backtest import fold_usable, plan_backtest, walk_forward
from models.churn_model import CalibratedLightGBM
from models.early_warning import early_warning
from models.evaluation import scores
from models.observations import KEYS, label_all
from models.renewal import CALENDAR, health_log_odds
from models.training import earlier_folds, fitters
from pipelines.features import compute_metric_history

HERE = Path(__file__).resolve().parent
LEADS = (30, 90, 180, 270)
LONG = (90, 180, 270)  # "3-12 months": pooled
FITTED = ("lightgbm", "lightgbm_no_contract", "logistic", "scorecard")
MODELS = ("lightgbm", "lightgbm_health", "lightgbm_no_contract", "logistic", "scorecard",
          "health_at_obs", "annual_first", "ceiling")


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



def fitted_model(risks: dict) -> CalibratedLightGBM:
    """The CalibratedLightGBM a product fitter's risk function closes over."""
    found = {id(c.cell_contents): c.cell_contents for risk in risks.values()
             for c in (risk.__closure__ or ()) if isinstance(c.cell_contents, CalibratedLightGBM)}
    if len(found) != 1:
        raise RuntimeError(f"expected one fitted LightGBM in the fitter's result, found {len(found)}")
    return next(iter(found.values()))


def score_folds(observations: pd.DataFrame, folds: list, config, metrics) -> tuple[pd.DataFrame, dict]:
    """The product's walk-forward predictions of the compared models on ``folds``, and
    the fitted LightGBM of each fold (kept to explain and to score health)."""
    product = fitters(config, metrics, early=True)
    boosters = []

    def lightgbm(train: pd.DataFrame):
        risks = product["lightgbm"](train)
        boosters.append(fitted_model(risks))
        return risks

    predictions = walk_forward(observations, folds, {**product, "lightgbm": lightgbm},
                               None, config.horizon_days, config.lead_days)
    numbers = list(dict.fromkeys(predictions.loc[predictions["model"] == "lightgbm", "fold"]))
    if len(numbers) != len(boosters):
        raise RuntimeError("folds and fitted models do not line up")
    return predictions, dict(zip(numbers, boosters))


def explain(observations: pd.DataFrame, keys: pd.DataFrame, fold_of: pd.Series,
            boosters: dict) -> pd.DataFrame:
    """LightGBM's contributions on the observations at ``keys`` (each from its fold's
    model), its health log-odds and the health score the product would show."""
    rows = keys.merge(observations, on=KEYS, how="left")
    rows["fold"] = pd.MultiIndex.from_frame(rows[KEYS]).map(fold_of).to_numpy()
    parts = []
    for number, group in rows.groupby("fold", sort=True):
        model = boosters[number]
        c = model.contributions(group)
        out = c.drop(columns="base")
        out["health_log_odds"] = health_log_odds(c)
        out["health_score"] = model.scale_.score(out["health_log_odds"].to_numpy())
        parts.append(pd.concat([group[KEYS], out], axis=1))
    return pd.concat(parts, ignore_index=True)


def run(seed: int, accounts: int, start: dt.date, config: Config) -> dict:
    """One book: scored decisions per lead, LightGBM's contributions on them, the 90-day
    window predictions, the product's own early-warning table and book facts."""
    book = simulate_book(SimulationConfig(n_accounts=accounts, seed=seed, start=start))
    tables = book.sources
    as_of = tables["events"]["timestamp"].max().normalize()
    history = compute_metric_history(tables, as_of.date(), config)
    m = config.model
    observations = label_all(history, tables["subscriptions"], as_of, config.grace_days,
                             m.horizon_days, m.lead_days)
    own = tuple(c for c in tables["account_metrics"].columns if c not in KEYS)
    metrics = catalog(config.metrics, available_columns(tables), own)
    plan = plan_backtest(observations, m)
    m, reported = plan.config, plan.folds
    before = [f for f in earlier_folds(observations, reported, max(LEADS))
              if fold_usable(observations, f, m.calibration_days)]
    dropped = len(earlier_folds(observations, reported, max(LEADS))) - len(before)
    decisions = decisions_in_period(book, as_of, config.grace_days, reported[0].start, reported[-1].end)
    snapshots = pd.DatetimeIndex(np.sort(history["as_of_date"].unique()))
    matched = match_observations(decisions, snapshots, pd.MultiIndex.from_frame(history[KEYS]), LEADS)
    matched["health_at_obs"] = -latent_health_at(matched, book.truth["health"])

    predictions, boosters = score_folds(observations, before + reported, m, metrics)
    wide = predictions.pivot_table(index=KEYS, columns="model", values="p_renewal").reset_index()
    scored = matched.merge(wide[KEYS + [c for c in FITTED if c in wide]], on=KEYS, how="left")
    fold_of = predictions.loc[predictions["model"] == "lightgbm"].set_index(KEYS)["fold"]
    keys = scored.loc[scored["lightgbm"].notna(), KEYS].drop_duplicates()
    shap = explain(observations, keys, fold_of, boosters)
    scored = scored.merge(shap[KEYS + ["health_score"]], on=KEYS, how="left")
    scored["lightgbm_health"] = -scored.pop("health_score")  # higher = riskier
    shap = scored[KEYS].merge(shap.drop(columns=["health_log_odds", "health_score"]), on=KEYS, how="left")
    complete = scored[[*FITTED, "lightgbm_health"]].notna().all(axis=1)
    leads_scored = (scored.loc[complete].groupby(["account_id", "decision_date"])["lead_days"]
                    .nunique().rename("leads_scored").reset_index())
    scored = scored.merge(leads_scored, on=["account_id", "decision_date"], how="left")
    scored = scored.assign(seed=seed, scored=complete.to_numpy(),
                           every_lead=(scored.pop("leads_scored") == len(LEADS)).to_numpy()
                           & complete.to_numpy())

    window = predictions.loc[(predictions["fold"] >= 1) & predictions["y"].notna()].copy()
    rows = window.loc[window["model"] == "lightgbm", KEYS].reset_index(drop=True)
    oracle = rows.assign(model="oracle", p=oracle_churn_probability(
        rows, book.truth["renewals"], m.horizon_days, m.lead_days))
    window = pd.concat([window, oracle.merge(window.loc[window["model"] == "lightgbm", KEYS + ["y", "fold"]],
                                             on=KEYS)], ignore_index=True).assign(seed=seed)
    product_table = early_warning(predictions, reported[0].start, reported[-1].end, LEADS).assign(seed=seed)
    group_of = {metric.name: metric.group for metric in metrics}
    shap = shap.drop(columns=KEYS).rename(columns=lambda c: group_of.get(c, "own") + ":" + c)
    unscored = int((~complete).sum())
    facts = {"seed": seed, "decisions": len(decisions), "churned": int(decisions["churned"].sum()),
             "annual": int((decisions["cycle"] == "annual").sum()),
             "annual_churned": int(decisions.loc[decisions["cycle"] == "annual", "churned"].sum()),
             "period": f"{reported[0].start:%Y-%m-%d} to {reported[-1].end - pd.Timedelta(days=1):%Y-%m-%d}",
             "folds": (f"{len(reported)} reported + {len(before)} earlier folds of {m.fold_days} days "
                       f"from {before[0].start if before else reported[0].start:%Y-%m-%d}"
                       + (f" ({dropped} earlier fold(s) not usable)" if dropped else "")),
             "plan": "; ".join(plan.notes) or "as configured", "unscored": unscored}
    return {"scored": scored, "shap": shap, "window": window, "product": product_table, "facts": facts}


def bootstrap(y: np.ndarray, columns: dict[str, np.ndarray], cluster: np.ndarray, reps: int,
              rng: np.random.Generator, ratio: tuple[str, str] | None = None) -> dict[str, tuple]:
    """95% percentile intervals of each column's ROC-AUC (and of one ROC-AUC over
    another) over decisions (``cluster``) resampled with replacement."""
    ids, inverse = np.unique(cluster, return_inverse=True)
    members = pd.Series(np.arange(len(y))).groupby(inverse).apply(np.array).to_list()
    values = {k: [] for k in [*columns, "ratio"]}
    for _ in range(reps):
        pick = rng.integers(0, len(ids), len(ids))
        i = np.concatenate([members[j] for j in pick])
        if not 0 < y[i].sum() < len(i):
            continue
        aucs = {k: rank_auc(y[i], p[i]) for k, p in columns.items()}
        for k, v in aucs.items():
            values[k].append(v)
        if ratio:
            values["ratio"].append(aucs[ratio[0]] / aucs[ratio[1]])
    return {k: (float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))) for k, v in values.items() if v}


def summarise(scored: pd.DataFrame, shap: pd.DataFrame, reps: int) -> list[dict]:
    """Rows of the results table: per seed (and all seeds), decision set, cycle and lead
    (and the 3-12 month pool of leads 90, 180 and 270)."""
    rows = []
    scored = scored.assign(ceiling=scored["p_churn"], annual_first=(scored["cycle"] == "annual").astype(float))
    calendar = [c for c in shap.columns if c.split(":", 1)[1] in CALENDAR]
    contract = [c for c in shap.columns if c.startswith("contract:")]
    for seed in [*sorted(scored["seed"].unique()), "all"]:
        for decisions in ("every_lead", "observed"):
            for cycle in ("all", "annual", "monthly"):
                keep = (scored["seed"] == seed) if seed != "all" else pd.Series(True, index=scored.index)
                keep &= scored["every_lead"] if decisions == "every_lead" else scored["scored"]
                keep &= (scored["cycle"] == cycle) if cycle != "all" else True
                for lead in [*LEADS, "90-270"]:
                    leads = LONG if lead == "90-270" else (lead,)
                    at = keep & scored["lead_days"].isin(leads)
                    part, y = scored.loc[at], scored.loc[at, "churned"].to_numpy()
                    if part.empty or y.sum() in (0, len(y)):
                        continue
                    mean_abs = shap.loc[at].abs().mean()
                    row = {"seed": seed, "decisions": decisions, "cycle": cycle, "lead_days": lead,
                           "n": len(part), "decisions_n": part[["seed", "account_id", "decision_date"]].drop_duplicates().shape[0],
                           "churned": int(y.sum()), "churn_rate": y.mean(),
                           "churned_decisions": part.loc[part["churned"] == 1, ["seed", "account_id", "decision_date"]]
                           .drop_duplicates().shape[0],
                           "shap_contract_share": mean_abs[contract].sum() / mean_abs.sum(),
                           "shap_calendar_share": mean_abs[calendar].sum() / mean_abs.sum(),
                           "lightgbm_median_p": part["lightgbm"].median()}
                    for model in MODELS:
                        p = part[model].to_numpy()
                        row[f"{model}_roc_auc"] = roc_auc_score(y, p)
                        row[f"{model}_pr_auc"] = average_precision_score(y, p)
                    row["lightgbm_share_of_ceiling"] = row["lightgbm_roc_auc"] / row["ceiling_roc_auc"]
                    row["lightgbm_health_share_of_ceiling"] = row["lightgbm_health_roc_auc"] / row["ceiling_roc_auc"]
                    if lead == "90-270":
                        row["lightgbm_mean_lead_roc_auc"] = np.mean([
                            roc_auc_score(part.loc[part["lead_days"] == d, "churned"],
                                          part.loc[part["lead_days"] == d, "lightgbm"]) for d in LONG])
                    if seed == "all" and cycle == "all":
                        rng = np.random.default_rng(sum(leads))
                        cluster = (part["seed"].astype(str) + part["account_id"].astype(str)
                                   + part["decision_date"].astype(str)).to_numpy()
                        found = bootstrap(y, {k: part[k].to_numpy() for k in MODELS}, cluster, reps, rng,
                                          ("lightgbm", "ceiling"))
                        for k, (lo, hi) in found.items():
                            name = "lightgbm_share_of_ceiling" if k == "ratio" else f"{k}_roc"
                            row[f"{name}_lo"], row[f"{name}_hi"] = lo, hi
                    rows.append(row)
    return rows


def window_rows(window: pd.DataFrame, capacity: int) -> list[dict]:
    """The 90-day window on the reported folds: every model's scores per seed and pooled."""
    rows = []
    for seed in [*sorted(window["seed"].unique()), "all"]:
        part = window if seed == "all" else window.loc[window["seed"] == seed]
        for model, group in part.groupby("model", sort=True):
            s = scores(group, capacity)
            rows.append({"seed": seed, "model": model, **{k: s[k] for k in (
                "observations", "churn_rate", "roc_auc", "pr_auc", "brier", "log_loss", "ece",
                "top_decile_lift", "recall_at_capacity")}})
    return rows


def write(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, columns)
        writer.writeheader()
        writer.writerows({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in r.items()} for r in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[7, 5])
    parser.add_argument("--accounts", type=int, default=400)
    parser.add_argument("--start", type=dt.date.fromisoformat, default=dt.date(2023, 10, 1),
                        help="first day of the simulated data (the book ends 2026-09-30)")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples per interval")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "early_warning.csv")
    parser.add_argument("--window-out", type=Path, default=HERE / "results" / "early_warning_window.csv")
    parser.add_argument("--scores", type=Path, help="also write every decision's scores per lead (CSV)")
    args = parser.parse_args()
    began = time.perf_counter()
    config = Config()
    books = []
    for seed in args.seeds:
        start = time.perf_counter()
        book = run(seed, args.accounts, args.start, config)
        books.append(book)
        f = book["facts"]
        print(f"seed {seed}: {f['decisions']} decisions ({f['churned']} churned; "
              f"{f['annual']} annual, {f['annual_churned']} of them churned) in {f['period']}; "
              f"{f['folds']}; plan {f['plan']}; {f['unscored']} observation(s) unscored "
              f"[{time.perf_counter() - start:.0f} s]", flush=True)
    scored = pd.concat([b["scored"] for b in books], ignore_index=True)
    if args.scores:
        scored.to_csv(args.scores, index=False, float_format="%.6g")
    rows = summarise(scored, pd.concat([b["shap"] for b in books], ignore_index=True).fillna(0.0),
                     args.bootstrap)
    write(args.out, rows)
    window = window_rows(pd.concat([b["window"] for b in books], ignore_index=True), config.model.capacity)
    write(args.window_out, window)

    main_rows = [r for r in rows if r["seed"] == "all" and r["decisions"] == "every_lead" and r["cycle"] == "all"]
    print(f"\nSeeds {' '.join(map(str, args.seeds))} pooled, decisions observed at every lead; "
          "ROC-AUC [95% bootstrap] / PR-AUC")
    print("\n| lead | decisions (churned) | " + " | ".join(MODELS) + " | LightGBM / ceiling "
          "| LightGBM |SHAP| on contract (calendar) |")
    print("|---:|---:|" + "---|" * len(MODELS) + "---:|---:|")
    for r in main_rows:
        cells = [f"{r[f'{m}_roc_auc']:.3f} [{r[f'{m}_roc_lo']:.2f}-{r[f'{m}_roc_hi']:.2f}] / "
                 f"{r[f'{m}_pr_auc']:.3f}" for m in MODELS]
        share = (f"{r['lightgbm_share_of_ceiling']:.0%} [{r['lightgbm_share_of_ceiling_lo']:.0%}-"
                 f"{r['lightgbm_share_of_ceiling_hi']:.0%}]")
        print(f"| {r['lead_days']} d | {r['decisions_n']} ({r['churned_decisions']}) | {' | '.join(cells)} | {share} | "
              f"{r['shap_contract_share']:.0%} ({r['shap_calendar_share']:.0%}) |")
    print("\nLightGBM ROC-AUC per seed (every lead): " + "; ".join(
        f"seed {seed}: " + ", ".join(f"{r['lead_days']} d {r['lightgbm_roc_auc']:.3f}" for r in rows
                                     if r["seed"] == seed and r["decisions"] == "every_lead" and r["cycle"] == "all")
        for seed in args.seeds))
    print("\nROC-AUC by cycle (seeds pooled, every lead):")
    for cycle in ("annual", "monthly"):
        parts = [r for r in rows if r["seed"] == "all" and r["decisions"] == "every_lead" and r["cycle"] == cycle]
        print(f"  {cycle}: " + "; ".join(
            f"{r['lead_days']} d LightGBM {r['lightgbm_roc_auc']:.3f}, health score {r['lightgbm_health_roc_auc']:.3f}, "
            f"no contract {r['lightgbm_no_contract_roc_auc']:.3f}, logistic {r['logistic_roc_auc']:.3f}, "
            f"scorecard {r['scorecard_roc_auc']:.3f}, latent {r['health_at_obs_roc_auc']:.3f}, "
            f"ceiling {r['ceiling_roc_auc']:.3f} ({r['decisions_n']} decisions, {r['churned_decisions']} churned; "
            f"median p {r['lightgbm_median_p']:.3f}; calendar SHAP {r['shap_calendar_share']:.0%})"
            for r in parts))
    print("\n90-day window, reported folds:")
    for r in window:
        print(f"  seed {r['seed']} {r['model']}: n {r['observations']:.0f}, rate {r['churn_rate']:.4f}, "
              f"ROC-AUC {r['roc_auc']:.3f}, PR-AUC {r['pr_auc']:.3f}, ECE {r['ece']:.4f}, "
              f"log loss {r['log_loss']:.4f}")
    product = pd.concat([b["product"] for b in books], ignore_index=True)
    print("\nThe product's own early-warning table (models.early_warning), per seed:")
    print(product.loc[product["model"] == "lightgbm"].to_string(index=False))
    print(f"\ntotal {time.perf_counter() - began:.0f} s; results in {args.out} and {args.window_out}")


if __name__ == "__main__":
    main()
