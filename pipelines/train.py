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
import pandas as pd

from features.catalog import available_columns, catalog
from features.lifecycle import churn_events
from healthscore.config import Config
from healthscore.errors import HealthscoreError
from models.backtest import final_calibration_days, plan_backtest, summarise, walk_forward
from models.churn_model import TooLittleHistory
from models.observations import known_by, label_observations
from models.training import backtest, fit_final, fitters
from pipelines import plots, registry
from pipelines.io import redact
from pipelines.features import metrics_not_built, own_columns_of, stage_and_build
from pipelines.validate import data_end_date, load_data_folder

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
        known: Observations whose label is known by T.
        accounts: The accounts table.
        as_of: T.
        catalog: The metric catalog of the metrics this data supports.
        current: The metric rows as of T itself (the portfolio the model is trained on
            the data of: the monitor's reference).
        not_built: The metrics the data cannot support, in words (one line per absent
            optional source or column).
    """

    known: pd.DataFrame
    accounts: pd.DataFrame
    as_of: dt.date
    catalog: tuple
    current: pd.DataFrame
    not_built: list[str]


def build_observations(data_dir: Path, as_of: dt.date | None, config: Config,
                       progress: Progress = print) -> TrainingData:
    """Metric history as of T and its observations labelled with outcomes known by T.

    Raises:
        HealthscoreError: No churned or no retained outcome is known by T: the message
            says which, and how much more history the horizon needs.
    """
    tables = load_data_folder(data_dir)
    as_of = as_of or data_end_date(tables).date()
    subscriptions, accounts = tables["subscriptions"], tables["accounts"]
    own = own_columns_of(tables)
    metric_catalog = catalog(config.metrics, available_columns(tables), own)
    lost = metrics_not_built(tables, config)
    progress("building the metric history")
    history = stage_and_build(tables, as_of, config)
    churns = churn_events(subscriptions, pd.Timestamp(as_of), config.grace_days)
    m = config.model
    observations = label_observations(history, churns, m.horizon_days, m.lead_days, config.grace_days)
    known = known_by(observations, pd.Timestamp(as_of)).reset_index(drop=True)
    _check_learnable(known, observations, as_of, config)
    current = history.loc[history["as_of_date"] == pd.Timestamp(as_of)].reset_index(drop=True)
    return TrainingData(known, accounts, as_of, metric_catalog, current, lost)


def _check_learnable(known: pd.DataFrame, observations: pd.DataFrame, as_of: dt.date,
                     config: Config) -> None:
    """Stop with what is missing when the known outcomes cannot teach a model anything."""
    m = config.model
    wait = m.horizon_days + m.lead_days + config.grace_days
    window = (f"an observation's {m.horizon_days}-day outcome is known {wait} days after it "
              f"(horizon {m.horizon_days} + lead {m.lead_days} + grace {config.grace_days})")
    if observations.empty:
        raise HealthscoreError(f"as of {as_of} no account is active at any snapshot: "
                               "nothing to learn from (check subscriptions' dates)")
    if known.empty:
        first = observations["as_of_date"].min()
        ready = first + pd.Timedelta(days=wait)
        more = (ready - pd.Timestamp(as_of)).days
        raise HealthscoreError(
            f"as of {as_of} no outcome is known yet: {window}, and the first snapshot is "
            f"{first.date()}, so the first outcome is known on {ready.date()}: about {more} more "
            f"days of history are needed (or a shorter --horizon)")
    churned = int(known["churned"].sum())
    if churned == 0 or churned == len(known):
        which = ("no churn" if churned == 0 else "no retained account")
        raise HealthscoreError(
            f"as of {as_of} {which} is known among {len(known):,} labelled observations "
            f"({known['account_id'].nunique():,} accounts, snapshots {known['as_of_date'].min().date()} "
            f"to {known['as_of_date'].max().date()}): a model needs both churned and retained "
            f"accounts. {window.capitalize()}; a churn is known {config.grace_days} days after "
            "a term ends without renewal. Train again once outcomes of both kinds are known, "
            "or give terms an explicit `status`")


def model_spec(config: Config) -> dict:
    """What defines a trained model besides its data (compared by the promotion gate)."""
    m = config.model
    return {"lightgbm": dict(sorted(m.lightgbm.items())), "monotone": m.monotone,
            "calibration_days": m.calibration_days, "horizon_days": m.horizon_days,
            "lead_days": m.lead_days, "seed": m.seed}


def train(data_dir: Path, as_of: dt.date | None, config: Config,
          progress: Progress = print) -> TrainResult:
    """Backtest, fit, log, register and gate one model. See the module docstring."""
    data = build_observations(data_dir, as_of, config, progress)
    known, as_of, metric_catalog = data.known, data.as_of, data.catalog
    plan = plan_backtest(known, config.model)
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
            progress(f"backtest: {len(plan.folds)} folds x 4 models on {len(known):,} observations")
            predictions, summary = backtest(known, m, metric_catalog, segments, progress)
        else:
            predictions, summary = None, None
        progress("fitting the final model on every observation known by the as-of date")
        final, _, weights, latest = fit_final(
            known, m, metric_catalog, (config.score.reference, config.score.points_to_double),
            current=data.current)
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
            **{f"lgbm_{k}": v for k, v in m.lightgbm.items()},
        })
        mlflow.log_text("\n".join(data.not_built) or "every catalog metric was built",
                        "data/metrics_not_built.txt")
        registry.log_training_input(known, data_dir, config, metric_catalog)
        if summary is not None:
            _log_backtest(summary)
        contributions = final.contributions(latest[features])
        _log_figures(predictions, contributions, latest[features])
        _log_tables(summary, predictions, weights)
        logged = registry.log_model(final, m.horizon_days,
                                    {"as_of": str(as_of), "features": features, "spec": spec},
                                    latest[features])
        version = registry.register(logged.model_uri, m.registered_model,
                                    {**tags, "model_spec": json.dumps(spec, sort_keys=True),
                                     "backtest_roc_auc": auc_text(summary, ".6f")})
        promoted, reason = _gate(config, known, plan.folds, summary, metric_catalog, version)
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
                       extra={"notes": notes, "not_built": data.not_built})


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


def _gate(config: Config, known: pd.DataFrame, backtest, summary, metric_catalog,
          version: str) -> tuple[bool, str]:
    """Promote the challenger unless the champion backtests better on the same window."""
    m = config.model
    name = m.registered_model
    champ = registry.champion(name)
    if champ is None:
        registry.promote(name, version, "first model: there was no champion", "train")
        return True, "no champion yet: promoted"
    if summary is None:
        return False, (f"no backtest on this history to compare with champion v{champ.version}: "
                       "kept the champion (promote by hand with `healthscore promote` if intended)")
    challenger_auc = _pooled(summary, "lightgbm")
    spec = model_spec(config)
    champ_spec = json.loads(champ.tags.get("model_spec", "{}"))
    if (champ_spec.get("horizon_days"), champ_spec.get("lead_days")) != (m.horizon_days, m.lead_days):
        return False, (f"champion v{champ.version} predicts a different window "
                       f"(horizon {champ_spec.get('horizon_days')}, lead {champ_spec.get('lead_days')}); "
                       "kept it: promote by hand with `healthscore promote` if intended")
    if champ_spec == spec:
        champion_auc = challenger_auc  # same model definition: same backtest on this window
    else:
        champ_config = config.model_copy(update={"model": m.model_copy(update={
            "lightgbm": champ_spec.get("lightgbm", {}), "monotone": champ_spec.get("monotone", m.monotone),
            "calibration_days": champ_spec.get("calibration_days", m.calibration_days),
            "seed": champ_spec.get("seed", m.seed)})})
        refit = fitters(champ_config.model, metric_catalog)["lightgbm"]
        predictions = walk_forward(known, backtest, {"champion": refit})
        # The refit also yields its isotonic variant; the gate compares Platt to Platt.
        predictions = predictions.loc[predictions["model"] == "lightgbm"]
        champion_auc = float(summarise(predictions, m.capacity)["pooled"]["roc_auc"].iloc[0])
    mlflow.log_metric("gate.champion_roc_auc", champion_auc)
    if challenger_auc >= champion_auc - m.gate_tolerance:
        reason = (f"challenger backtest ROC-AUC {challenger_auc:.4f} vs champion v{champ.version} "
                  f"{champion_auc:.4f} on the same window (tolerance {m.gate_tolerance}): promoted")
        registry.promote(name, version, reason, "train")
        return True, reason
    return False, (f"challenger backtest ROC-AUC {challenger_auc:.4f} is worse than champion "
                   f"v{champ.version}'s {champion_auc:.4f} by more than {m.gate_tolerance}: kept the champion")


def _log_backtest(summary: dict[str, pd.DataFrame]) -> None:
    metrics = {}
    for row in summary["pooled"].to_dict("records"):
        for key, value in row.items():
            if key != "model" and pd.notna(value):
                metrics[f"{row['model']}.{key}"] = float(value)
    mlflow.log_metrics(metrics)
    for row in summary["folds"].to_dict("records"):
        step = int(row["fold"])
        for key in ("roc_auc", "pr_auc", "brier", "log_loss", "top_decile_lift", "ece",
                    "precision_at_capacity", "recall_at_capacity"):
            if pd.notna(row[key]):
                mlflow.log_metric(f"fold.{row['model']}.{key}", float(row[key]), step=step)


def _log_figures(predictions, contributions, X) -> None:
    figures = [] if predictions is None else [
        ("reliability_curve.png", plots.reliability_figure(predictions)),
        ("lift_chart.png", plots.lift_figure(predictions))]
    for name, fig in [*figures, ("shap_summary.png", plots.shap_summary_figure(contributions, X))]:
        mlflow.log_figure(fig, f"plots/{name}")
        plt.close(fig)


def _log_tables(summary, predictions, weights) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for key, table in (summary or {}).items():
            table.to_csv(folder / f"backtest_{key}.csv", index=False)
        if predictions is not None:
            predictions.to_parquet(folder / "backtest_predictions.parquet", index=False)
        weights.to_csv(folder / "learned_weights.csv", index=False)
        mlflow.log_artifacts(str(folder), "backtest")
