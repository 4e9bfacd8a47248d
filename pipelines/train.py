"""Pipeline stage: data folder -> backtested, calibrated churn model in the MLflow registry.

Reads top-down like the data flow: metric history as of T -> labelled observations
known by T -> walk-forward backtest of every model -> final fit -> learned weights ->
log to MLflow -> register as challenger -> gate against the champion.
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import mlflow
import numpy as np
import pandas as pd

from features.catalog import catalog
from healthscore.config import Config
from healthscore.errors import HealthscoreError
from models import band_churn
from models.backtest import final_calibration_days, plan_backtest
from models.forecast import backtest_summary as forecast_summary
from models.forecast import walk_forward_backtest
from models.gate import compare, gate_window
from models.churn_model import TooLittleHistory
from models.observations import label_all
from models.training import backtest, blend_weights, fit_final
from pipelines import plots, registry
from pipelines.io import redact
from pipelines.features import load_book

Progress = Callable[[str], None]


@dataclass
class TrainResult:
    """What a training run measured and decided."""

    as_of: dt.date
    run_id: str
    version: str
    promoted: bool
    reason: str
    pooled: pd.DataFrame
    folds: pd.DataFrame
    weights: pd.DataFrame
    observations: int
    churn_rate: float
    extra: dict = field(default_factory=dict)


@dataclass
class TrainingData:
    """What training learns from, all as of the training date T.

    Attributes:
        known: Observations whose renewal outcome is known by T (what models learn from).
        observations: Every observation as of T, with both labels as known by T (the
            backtest tests on them; see :func:`label_all`).
        accounts: The accounts table.
        as_of: T.
        catalog: The metric catalog of the metrics this data supports.
        current: The metric rows as of T itself (the portfolio the model is trained on
            the data of: the monitor's reference).
        not_built: The metrics the data cannot support, in words (one line per absent
            optional source or column).
    """

    known: pd.DataFrame
    observations: pd.DataFrame
    accounts: pd.DataFrame
    as_of: dt.date
    catalog: tuple
    current: pd.DataFrame
    not_built: list[str]


def build_observations(data_dir: Path, as_of: dt.date | None, config: Config,
                       progress: Progress = print, store: Path | None = None) -> TrainingData:
    """Metric history as of T and its observations labelled with outcomes known by T.

    Raises:
        HealthscoreError: No churned or no retained outcome is known by T: the message
            says which, and how much more history the horizon needs.
    """
    progress("reading the metric history")
    book = load_book(data_dir, as_of, config, store=store, progress=progress)
    as_of, history = book.as_of, book.history
    subscriptions, accounts = book.subscriptions, book.accounts
    metric_catalog = catalog(config.metrics, book.columns, book.own_columns)
    lost = book.not_built(config)
    m = config.model
    observations = label_all(history, subscriptions, pd.Timestamp(as_of), config.grace_days,
                             m.horizon_days, m.lead_days)
    known = observations.loc[observations["label_known_at"].notna()].reset_index(drop=True)
    _check_learnable(known, observations, as_of, config)
    current = history.loc[history["as_of_date"] == pd.Timestamp(as_of)].reset_index(drop=True)
    return TrainingData(known, observations, accounts, as_of, metric_catalog, current, lost)


def _check_learnable(known: pd.DataFrame, observations: pd.DataFrame, as_of: dt.date,
                     config: Config) -> None:
    """Stop with what is missing when the known outcomes cannot teach a model anything."""
    window = ("an observation's outcome is known when its current term ends (renewed) or "
              f"{config.grace_days} days after (churned: the grace period)")
    if observations.empty:
        raise HealthscoreError(f"as of {as_of} no account is active at any snapshot: "
                               "nothing to learn from (check subscriptions' dates)")
    if known.empty:
        first = observations["as_of_date"].min()
        ready = observations["renewal_date"].min() + pd.Timedelta(days=config.grace_days)
        more = max((ready - pd.Timestamp(as_of)).days, 1)
        raise HealthscoreError(
            f"as of {as_of} no outcome is known yet: {window}, and the first snapshot is "
            f"{first.date()}, whose terms end by {observations['renewal_date'].min().date()}, so "
            f"the first outcomes are known by {ready.date()}: about {more} more days of history "
            "are needed (or give terms an explicit `status`)")
    churned = int(known["churned"].sum())
    if churned == 0 or churned == len(known):
        which = ("no churn" if churned == 0 else "no retained account")
        raise HealthscoreError(
            f"as of {as_of} {which} is known among {len(known):,} labelled observations "
            f"({known['account_id'].nunique():,} accounts, snapshots {known['as_of_date'].min().date()} "
            f"to {known['as_of_date'].max().date()}): a model needs both churned and retained "
            f"accounts. {window[0].upper() + window[1:]}. Train again once outcomes of both kinds are known, "
            "or give terms an explicit `status`")


def model_spec(config: Config) -> dict:
    """What defines a trained model besides its data (compared by the promotion gate)."""
    m = config.model
    return {"lightgbm": dict(sorted(m.lightgbm.items())), "monotone": m.monotone,
            "calibration_days": m.calibration_days, "horizon_days": m.horizon_days,
            "lead_days": m.lead_days, "seed": m.seed, "blend": m.blend,
            "blend_weights": None if m.blend_weights is None else list(m.blend_weights)}


def train(data_dir: Path, as_of: dt.date | None, config: Config,
          progress: Progress = print, store: Path | None = None) -> TrainResult:
    """Backtest, fit, log, register and gate one model. See the module docstring.

    ``store``: the metric store file (default: a temporary one for this run).
    """
    data = build_observations(data_dir, as_of, config, progress, store)
    known, as_of, metric_catalog = data.known, data.as_of, data.catalog
    plan = plan_backtest(data.observations, config.model)
    m = plan.config
    calibration = final_calibration_days(known, m.calibration_days)
    if calibration is None:
        raise HealthscoreError(
            f"training as of {as_of}: the churned and retained outcomes known so far cannot be "
            "split in time into rows to learn from and a later week of rows to calibrate on "
            f"(churns known: {int(known['churned'].sum())} observations on "
            f"{known.loc[known['churned'] == 1, 'as_of_date'].nunique()} snapshot date(s)). "
            "Train again once churns on more snapshot dates are known")
    notes = list(plan.notes)
    if calibration != m.calibration_days:
        notes.append(f"the final model calibrates on the latest {calibration} days of "
                     f"observations (configured: {m.calibration_days})")
        m = m.model_copy(update={"calibration_days": calibration})
    user_config, config = config, config.model_copy(update={"model": m})
    accounts = data.accounts
    segments = accounts.set_index("account_id")["segment"] if "segment" in accounts else None

    try:
        if plan.folds:
            progress(f"backtest: {len(plan.folds)} folds x 5 models on {len(data.observations):,} "
                     "observations, and earlier folds for the early warning")
            predictions, summary = backtest(data.observations, m, metric_catalog, segments, progress)
            forecast_check = walk_forward_backtest(predictions, data.observations, as_of,
                                                   config.grace_days)
        else:
            predictions, summary, forecast_check = None, None, None
        progress("fitting the final model on every observation known by the as-of date")
        final, _, weights, latest = fit_final(
            known, m, metric_catalog, (config.score.reference, config.score.points_to_double),
            current=data.current, weights=blend_weights(summary))
    except TooLittleHistory as exc:
        raise HealthscoreError(
            f"training as of {as_of}: {exc}. Use more accounts or a longer history, or "
            "fewer/shorter backtest folds (model.folds, model.fold_days) or a longer "
            "model.calibration_days") from None
    features = final.features_

    progress("logging to MLflow")
    registry.connect(m.experiment)
    spec = model_spec(config)
    run_name = f"train as-of {as_of} h{m.horizon_days} {pd.Timestamp.now('UTC'):%Y-%m-%d %H:%M}"
    tags = {"git_commit": registry.git_commit(), "data_as_of": str(as_of),
            "config_hash": registry.config_hash(user_config), "data_dir": _source_label(data_dir),
            "backtest_plan": "; ".join(notes) or "as configured",
            "metrics_not_built": str(len(data.not_built))}
    with mlflow.start_run(run_name=run_name, tags=tags) as run:
        mlflow.log_params({
            "horizon_days": m.horizon_days, "lead_days": m.lead_days, "folds": m.folds,
            "fold_days": m.fold_days, "calibration_days": m.calibration_days,
            "capacity": m.capacity, "monotone": m.monotone, "seed": m.seed,
            "grace_days": config.grace_days, "observations": len(known),
            "features": len(features), "best_iteration": final.booster_.best_iteration_,
            "platt_a": round(final.platt_a_, 6), "platt_b": round(final.platt_b_, 6),
            **{f"blend_{p}": w for p, w in zip(("trees", "logistic", "scorecard"), final.blend_weights_)},
            **{f"lgbm_{k}": v for k, v in m.lightgbm.items()},
        })
        mlflow.log_text("\n".join(data.not_built) or "every catalog metric was built",
                        "data/metrics_not_built.txt")
        registry.log_training_input(known, data_dir, config, metric_catalog)
        if summary is not None:
            _log_backtest(summary, forecast_check)
        contributions = final.contributions(latest[features])
        _log_figures(predictions, contributions, latest[features],
                     None if summary is None else summary["early_warning"],
                     None if summary is None else summary.get("bands"))
        _log_tables(summary, predictions, weights, forecast_check)
        logged = registry.log_model(final, m.horizon_days,
                                    {"as_of": str(as_of), "features": features, "spec": spec},
                                    latest[features])
        version = registry.register(logged.model_uri, m.registered_model,
                                    {**tags, "model_spec": json.dumps(spec, sort_keys=True),
                                     "backtest_roc_auc": auc_text(summary, ".6f")})
        promoted, reason = _gate(config, final, known, version)
        mlflow.set_tags({"promoted": str(promoted), "gate": reason, "model_version": version})
        # Runs read apart in the UI: what data, which version, what the gate decided, when.
        outcome = "champion" if promoted else "challenger kept"
        mlflow.set_tag("mlflow.runName", f"v{version} {outcome} | as-of {as_of} | h{m.horizon_days} | "
                                         f"ROC-AUC {auc_text(summary, '.3f')} | "
                                         f"{pd.Timestamp.now('UTC'):%Y-%m-%d %H:%M}")
    empty = pd.DataFrame(columns=["model", "fold"])
    return TrainResult(as_of, run.info.run_id, version, promoted, reason,
                       empty if summary is None else summary["pooled"],
                       empty if summary is None else summary["folds"], weights, len(known),
                       float(known["churned"].mean()),
                       extra={"notes": notes, "not_built": data.not_built,
                              "early_warning": None if summary is None else summary["early_warning"],
                              "bands": None if summary is None else summary.get("bands"),
                              "blend": tuple(final.blend_weights_),
                              "forecast_check": (forecast_summary(forecast_check)
                                                 if forecast_check is not None and len(forecast_check)
                                                 else None)})


def auc_text(summary: dict[str, pd.DataFrame] | None, fmt: str) -> str:
    """LightGBM's pooled backtest ROC-AUC as text; ``n/a`` without a backtest."""
    return "n/a" if summary is None else format(_pooled(summary, "lightgbm"), fmt)


def _source_label(data_dir) -> str:
    """Where the data came from, for the run's tags (a URL without its password)."""
    text = str(data_dir)
    return redact(text) if "://" in text else str(Path(text).resolve())


def _pooled(summary: dict[str, pd.DataFrame], model: str, metric: str = "roc_auc") -> float:
    pooled = summary["pooled"].set_index("model")
    return float(pooled.loc[model, metric])


def _gate(config: Config, challenger, known: pd.DataFrame, version: str) -> tuple[bool, str]:
    """Promote the challenger unless the registered champion, loaded from the registry,
    ranks the newest known outcomes better (:mod:`models.gate`)."""
    m = config.model
    name = m.registered_model
    champ = registry.champion(name)
    if champ is None:
        registry.promote(name, version, "first model: there was no champion", "train")
        return True, "no champion yet: promoted"
    champ_spec = json.loads(champ.tags.get("model_spec", "{}"))
    if (champ_spec.get("horizon_days"), champ_spec.get("lead_days")) != (m.horizon_days, m.lead_days):
        return False, (f"champion v{champ.version} predicts a different window "
                       f"(horizon {champ_spec.get('horizon_days')}, lead {champ_spec.get('lead_days')}); "
                       "kept it: promote by hand with `healthscore promote` if intended")
    wrapped, _ = registry.load(f"models:/{name}/{champ.version}")
    champion = wrapped.model
    if not hasattr(champion, "renewal_risk"):
        return False, (f"champion v{champ.version} predicts churn in a window, not the risk at the "
                       "next renewal, so the two cannot be compared on the same outcomes; kept it: "
                       "promote by hand with `healthscore promote` if intended")
    missing = [c for c in champion.features_ if c not in known.columns]
    if missing:
        reason = (f"champion v{champ.version} needs metrics this data no longer produces "
                  f"({', '.join(missing[:5])}): it cannot score it; promoted")
        registry.promote(name, version, reason, "train")
        return True, reason
    window = gate_window(known, challenger.calibration_days)
    result = compare(challenger, champion, window, m.gate_tolerance, m.gate_log_loss_tolerance,
                     f"champion v{champ.version}")
    if not np.isnan(result.champion_roc_auc):
        mlflow.log_metrics({"gate.champion_roc_auc": result.champion_roc_auc,
                            "gate.challenger_roc_auc": result.challenger_roc_auc,
                            "gate.champion_log_loss": result.champion_log_loss,
                            "gate.challenger_log_loss": result.challenger_log_loss})
    if result.promote:
        registry.promote(name, version, result.reason, "train")
    return result.promote, result.reason


def _log_backtest(summary: dict[str, pd.DataFrame], forecast_check: pd.DataFrame | None) -> None:
    metrics = {}
    for row in summary["pooled"].to_dict("records"):
        for key, value in row.items():
            if key != "model" and pd.notna(value):
                metrics[f"{row['model']}.{key}"] = float(value)
    # Early warning: one metric per model, measure and lead (days before the renewal).
    for row in summary["early_warning"].to_dict("records"):
        for key in ("roc_auc", "pr_auc"):
            if pd.notna(row[key]):
                metrics[f"early_warning.{row['model']}.{key}.{int(row['lead_days'])}d"] = float(row[key])
    if forecast_check is not None and len(forecast_check):
        check = forecast_summary(forecast_check)
        metrics.update({f"forecast_backtest.{k}": float(v) for k, v in check.items()})
    if "bands" in summary:
        metrics.update(band_churn.mlflow_metrics(summary["bands"]))
        problems = band_churn.ranking_problems(summary["bands"])
        mlflow.set_tag("bands_rank_churn", "yes" if not problems else "no: " + "; ".join(problems))
    mlflow.log_metrics(metrics)
    for row in summary["folds"].to_dict("records"):
        step = int(row["fold"])
        for key in ("roc_auc", "pr_auc", "brier", "log_loss", "top_decile_lift", "ece",
                    "precision_at_capacity", "recall_at_capacity"):
            if pd.notna(row[key]):
                mlflow.log_metric(f"fold.{row['model']}.{key}", float(row[key]), step=step)


def _log_figures(predictions, contributions, X, early_warning=None, bands=None) -> None:
    reported = None if predictions is None else predictions.loc[
        (predictions["fold"] >= 1) & predictions["y"].notna()]
    figures = [] if reported is None else [
        ("reliability_curve.png", plots.reliability_figure(reported)),
        ("lift_chart.png", plots.lift_figure(reported))]
    if early_warning is not None and len(early_warning):
        figures.append(("early_warning.png", plots.early_warning_figure(early_warning)))
    if bands is not None and len(bands):
        figures.append(("band_churn.png", plots.band_churn_figure(bands)))
    for name, fig in [*figures, ("shap_summary.png", plots.shap_summary_figure(contributions, X))]:
        mlflow.log_figure(fig, f"plots/{name}")
        plt.close(fig)


def _log_tables(summary, predictions, weights, forecast_check=None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for key, table in (summary or {}).items():
            table.to_csv(folder / f"backtest_{key}.csv", index=False)
        if predictions is not None:
            predictions.to_parquet(folder / "backtest_predictions.parquet", index=False)
        if forecast_check is not None:
            forecast_check.to_csv(folder / "forecast_backtest.csv", index=False)
        weights.to_csv(folder / "learned_weights.csv", index=False)
        mlflow.log_artifacts(str(folder), "backtest")
