"""Pipeline stage: scoring run -> is the score still trustworthy? -> findings (JSON, MLflow).

Four checks, each point-in-time as of the run's date D (nothing recorded after D enters):

* **freshness**: each dated source's last record against D; stale when it is older than
  the source's own rhythm allows (:func:`models.monitoring.freshness`);
* **coverage**: per metric group, the share of scored accounts with data, against the
  model's training window;
* **drift**: PSI of every metric and of the health score against the training window;
* **realised performance**: score runs in the history whose outcomes are now known,
  with their ROC-AUC and calibration.

``healthscore score`` runs them on every run and writes ``<scores>.monitor.json`` beside
its output; ``healthscore monitor`` runs them alone. Both log a run to the MLflow
experiment ``<experiment>-monitoring``; the report shows the JSON.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from features.lifecycle import churn_events
from healthscore.config import Config
from models import monitoring
from pipelines.io import atomic_path, json_ready, provenance
from pipelines.outputs import findings_path

# Sources whose dates are contract terms or sign-up days, not a feed that can go stale.
NOT_FEEDS = ("accounts", "subscriptions", "onboarding")


@dataclass
class Inputs:
    """What the checks need from the data, taken before the tables are handed on."""

    recency: pd.DataFrame  # each feed's last record and usual gap (models.monitoring.source_recency)
    churns: pd.DataFrame
    not_built: list[str]  # metrics the data cannot support, in words


def inputs_from_book(book, config: Config) -> Inputs:
    """Each feed's last record and usual gap and the churns known, all as of the book's
    as-of date, and the metrics the data cannot support (see ``pipelines.features.Book``)."""
    recency = monitoring.source_recency(book.record_days, book.rows, book.as_of)
    recency = recency.loc[~recency["source"].isin(NOT_FEEDS)].reset_index(drop=True)
    churns = churn_events(book.subscriptions, pd.Timestamp(book.as_of), config.grace_days)
    return Inputs(recency, churns, book.not_built(config))


def check(inputs: Inputs, as_of: dt.date, model, version: str, horizon_days: int,
          X: pd.DataFrame, health: np.ndarray, groups: dict[str, str],
          runs: pd.DataFrame | None, config: Config) -> dict:
    """Every check, as one JSON-ready document (see the module docstring)."""
    day = pd.Timestamp(as_of)
    fresh = monitoring.freshness(inputs.recency, config.monitor.stale_days,
                                 config.monitor.min_stale_days)
    profile = getattr(model, "profile_", None)
    if profile is not None:
        drift = monitoring.drift(profile, X, health[~np.isnan(health)])
        coverage = monitoring.coverage_change(profile, X, groups)
    else:
        drift = coverage = None
    performance = pd.DataFrame()
    if runs is not None and len(runs) and "churn_probability" in runs:
        performance = monitoring.realised_performance(
            runs.loc[runs["as_of_date"] <= day], inputs.churns, day, horizon_days,
            config.grace_days)
    stale = fresh.loc[fresh["stale"], "source"].tolist()
    shifted = [] if drift is None else drift.loc[drift["status"] == "shift", "metric"].tolist()
    watch = [] if drift is None else drift.loc[drift["status"] == "watch", "metric"].tolist()
    thin = [] if coverage is None else coverage.loc[coverage["flagged"], "group"].tolist()
    return {
        "as_of_date": day.date().isoformat(),
        "model_version": version,
        "versions": provenance(),
        "alerts": {"stale_sources": stale, "shifted_metrics": shifted,
                   "coverage_drops": thin},
        "ok": not (stale or shifted or thin),
        "freshness": _records(fresh),
        "drift": None if drift is None else _records(drift),
        "drift_watch": watch,
        "coverage": None if coverage is None else _records(coverage),
        "performance": _records(performance),
        "history_runs": None if runs is None else int(runs["as_of_date"].nunique()),
        "not_built": list(inputs.not_built),
        "thresholds": {"psi_watch": monitoring.PSI_WATCH, "psi_shift": monitoring.PSI_ALERT,
                       "coverage_drop": monitoring.COVERAGE_DROP},
        "note": None if profile is not None else (
            f"model version {version} has no training profile (it was trained before "
            "monitoring existed): retrain to monitor drift and coverage"),
    }


def _records(frame: pd.DataFrame) -> list[dict]:
    return [json_ready(row, 6) for row in frame.to_dict("records")]


def write_findings(findings: dict, path: Path) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(findings, indent=2, ensure_ascii=False), encoding="utf-8")
    return path


def log_findings(findings: dict, config: Config) -> str:
    """One MLflow run per check, in ``<experiment>-monitoring``; returns its id."""
    from pipelines import registry

    registry.connect(f"{config.model.experiment}-monitoring")
    alerts = findings["alerts"]
    name = (f"monitor | as-of {findings['as_of_date']} | v{findings['model_version']} | "
            + ("ok" if findings["ok"] else "alerts: " + ", ".join(
                f"{len(v)} {k.replace('_', ' ')}" for k, v in alerts.items() if v)))
    with mlflow.start_run(run_name=name) as run:
        mlflow.set_tags({"as_of_date": findings["as_of_date"],
                         "model_version": findings["model_version"], "ok": str(findings["ok"]),
                         "metrics_not_built": str(len(findings.get("not_built", [])))})
        metrics = {f"alerts.{k}": len(v) for k, v in alerts.items()}
        if findings["drift"]:
            metrics["drift.max_psi"] = max(d["psi"] for d in findings["drift"])
            score = [d["psi"] for d in findings["drift"] if d["metric"] == "health_score"]
            if score:
                metrics["drift.health_score_psi"] = score[0]
        if findings["performance"]:
            latest = findings["performance"][-1]
            for key in ("roc_auc", "brier", "mean_predicted", "observed_rate"):
                if latest[key] is not None:
                    metrics[f"realised.{key}"] = latest[key]
        mlflow.log_metrics(metrics)
        mlflow.log_dict(findings, "monitor.json")
    return run.info.run_id


def summary(findings: dict) -> list[str]:
    """Lines for the terminal."""
    lines = [f"not built: {line}" for line in findings.get("not_built", [])]
    stale = [f for f in findings["freshness"] if f["stale"]]
    lines.append("freshness: " + ("every source is current" if not stale else "; ".join(
        f"{f['source']} is stale ({'no records' if f['days_behind'] is None else str(f['days_behind']) + ' days behind'}, "
        f"limit {f['limit_days']})" for f in stale)))
    if findings["drift"] is None:
        lines.append(f"drift: {findings['note']}")
    else:
        shifted = [d for d in findings["drift"] if d["status"] == "shift"]
        lines.append("drift: " + ("no metric shifted (PSI < "
                                  f"{findings['thresholds']['psi_shift']})" if not shifted else
                                  "; ".join(f"{d['metric']} PSI {d['psi']:.2f}" for d in shifted[:8])))
        thin = [c for c in findings["coverage"] if c["flagged"]]
        lines.append("coverage: " + ("as at training" if not thin else "; ".join(
            f"{c['group']} {c['now']:.0%} of accounts (training {c['training']:.0%})" for c in thin)))
    perf = findings["performance"]
    if perf:
        last = perf[-1]
        auc = "n/a" if last["roc_auc"] is None else f"{last['roc_auc']:.3f}"
        lines.append(f"realised: {len(perf)} run(s) with known outcomes; latest "
                     f"{last['as_of_date']}: ROC-AUC {auc}, predicted {last['mean_predicted']:.1%} "
                     f"vs observed {last['observed_rate']:.1%} churn")
    elif findings.get("history_runs") is None:
        lines.append("realised: no score history (the metric store has no scored run yet)")
    else:
        lines.append(f"realised: none of the {findings['history_runs']} score run(s) in the "
                     "history has known outcomes yet")
    return lines


def run(data_dir, as_of: dt.date | None, config: Config, out: Path,
        model_uri: str | None = None, store: Path | None = None, progress=print) -> dict:
    """``healthscore monitor``: the checks alone, on the data as of D and the model's view
    of today's accounts (one metric snapshot, no SHAP); writes ``out`` and logs to MLflow.

    ``store``: the metric store (its score history gives the realised performance);
    default ``store.duckdb`` beside ``out``.
    """
    from features.catalog import catalog
    from pipelines import registry
    from pipelines import store as metric_store
    from pipelines.features import load_book
    from pipelines.history import read_runs

    store = store or out.parent / "store.duckdb"
    progress("reading the metrics as of the day")
    book = load_book(data_dir, as_of, config, store=store, progress=progress,
                     snapshots=lambda day: [day])
    as_of, history = book.as_of, book.history
    groups = {m.name: m.group for m in catalog(config.metrics, book.columns, book.own_columns)}
    inputs = inputs_from_book(book, config)
    registry.connect(config.model.experiment)
    uri = model_uri or f"models:/{config.model.registered_model}@{registry.CHAMPION}"
    wrapped, version = registry.load(uri)
    model = wrapped.model
    X = history.reindex(columns=model.features_)
    health = model.health_score(X) if hasattr(model, "renewal_risk") else model.scale_.score(model.log_odds(X))
    young = (history["tenure_days_current"] < config.score.min_tenure_days).to_numpy()
    health = np.where(young, np.nan, health)
    with metric_store.opened(store, config, progress) as kept:
        runs = read_runs(kept, pd.Timestamp(as_of))
    progress("checking")
    findings = check(inputs, as_of, model, version, wrapped.horizon_days, X, health,
                     {m: groups.get(m, "other") for m in model.features_}, runs, config)
    write_findings(findings, out)
    log_findings(findings, config)
    return findings
