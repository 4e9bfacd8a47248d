"""Pipeline stage: data folder + registered model -> health scores, bands, drivers, actions.

Reads top-down like the data flow: metric history as of D -> the champion (or --model)
-> calibrated churn probability -> health score and band -> SHAP points and drivers in
words -> trend against earlier runs -> playbook actions -> score history, alerts and
exports.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import json

import numpy as np
import pandas as pd
import yaml

from features.catalog import catalog
from healthscore.config import Config
from healthscore.errors import HealthscoreError
from models.drivers import top_drivers
from models.health import BAND_ORDER, INSUFFICIENT, assign_bands
from models import forecast as renewal_forecast
from models.renewal import DAYS_TO_RENEWAL
from models.trends import account_trends
from pipelines import history, monitor, registry
from pipelines import store as metric_store
from pipelines.features import load_book
from pipelines.io import atomic_path, json_ready, provenance, write_table
from pipelines.outputs import alerts_path, findings_path, forecast_path, parquet_beside

KEYS = ["account_id", "as_of_date"]
# The stages ScoreResult.seconds times, in order.
STAGES = ("load", "metrics", "prediction", "explanation", "drivers", "history", "monitoring",
          "writing")
# The drivers' movement compares D with the snapshot this many days earlier.
MOVEMENT_DAYS = 28


@dataclass
class ScoreResult:
    scores: pd.DataFrame
    alerts: pd.DataFrame
    model_version: str
    store: Path  # the metric store that holds the score history and alerts
    seconds: dict[str, float]  # wall time per stage (see STAGES)
    monitor: dict | None = None  # the monitor's findings (pipelines.monitor.check)
    forecast: dict | None = None  # the renewal forecast (see renewal_forecast_of)


def load_playbook(path: str | None) -> dict:
    """The playbook YAML (``bands`` and ``drivers``); the built-in one by default."""
    if path is None:
        text = resources.files("healthscore").joinpath("playbook.yaml").read_text(encoding="utf-8")
        source = "the built-in playbook"
    else:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise HealthscoreError(f"playbook {path}: cannot read it ({exc.strerror})") from None
        source = path
    try:
        book = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise HealthscoreError(f"playbook {source}: not valid YAML ({exc})") from None
    if not isinstance(book.get("bands", {}), dict) or not isinstance(book.get("drivers", {}), dict):
        raise HealthscoreError(f"playbook {source}: needs mappings `bands:` and `drivers:`")
    for band, steps in book.get("bands", {}).items():
        if not isinstance(steps, list) or not all(isinstance(x, str) for x in steps):
            raise HealthscoreError(f"playbook {source}: bands.{band} must be a list of text lines "
                                   "(quote a line that contains ': ')")
    for group, hint in book.get("drivers", {}).items():
        if not isinstance(hint, str):
            raise HealthscoreError(f"playbook {source}: drivers.{group} must be one text line")
    return book


def score(data_dir, as_of: dt.date | None, config: Config, out: Path,
          model_uri: str | None = None, store: Path | None = None,
          progress=print) -> ScoreResult:
    """Score every account active as of D; write ``out``; add the run to the score
    history and the alerts in the metric store.

    ``store``: the metric store file (default: ``store.duckdb`` beside ``out``).
    """
    s = config.score
    clock = time.perf_counter()
    seconds: dict[str, float] = {}

    def lap(stage: str) -> None:
        nonlocal clock
        seconds[stage] = seconds.get(stage, 0.0) + time.perf_counter() - clock
        clock = time.perf_counter()

    playbook = load_playbook(s.playbook)
    progress("loading the model")
    registry.connect(config.model.experiment)
    uri = model_uri or f"models:/{config.model.registered_model}@{registry.CHAMPION}"
    wrapped, version = registry.load(uri)
    model, horizon = wrapped.model, wrapped.horizon_days
    lap("load")

    store = store or out.parent / "store.duckdb"
    progress("reading the metric history")
    book = load_book(data_dir, as_of, config, store=store, progress=progress,
                     snapshots=lambda day: scoring_snapshots(day, config.metrics.snapshot_every_days))
    as_of, history = book.as_of, book.history
    metric_catalog = {m.name: m for m in catalog(config.metrics, book.columns, book.own_columns)}
    accounts = book.accounts.set_index("account_id")
    registry.check_fingerprint(wrapped.info, config, metric_catalog.values(), f"model {uri} (version {version})")
    lap("metrics")

    watch = monitor.inputs_from_book(book, config)
    missing = [c for c in model.features_ if c not in history.columns]
    if missing:
        raise HealthscoreError(
            f"model {uri} (version {version}) needs metrics this data does not produce: "
            f"{', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}. Score with the "
            "config the model was trained with, or retrain on this data")
    day = pd.Timestamp(as_of)
    today = history.loc[history["as_of_date"] == day].reset_index(drop=True)
    if today.empty:
        raise HealthscoreError(f"no account is active on {as_of}: nothing to score")
    earlier = history.loc[history["as_of_date"] <= day - pd.Timedelta(days=MOVEMENT_DAYS), "as_of_date"]
    before = (history.loc[history["as_of_date"] == earlier.max()].set_index("account_id")
              .reindex(today["account_id"]) if len(earlier) else
              pd.DataFrame(index=today["account_id"], columns=history.columns, dtype=float))

    progress(f"scoring {len(today):,} accounts")
    X = today[model.features_]
    lap("metrics")
    renewal_risk = model.renewal_risk(X)
    probability = model.churn_probability(X)
    lap("prediction")
    contributions = model.contributions(X)
    lap("explanation")
    # The health score (the risk of churn within a year, whatever the distance to the
    # renewal), the points of each metric about the customer, and the account's
    # starting point (its term length).
    health, points, reference = model.health_breakdown(X, contributions)
    enough = (today["tenure_days_current"] >= s.min_tenure_days).to_numpy()
    if not enough.any():
        oldest = int(today["tenure_days_current"].max())
        raise HealthscoreError(
            f"every one of the {len(today):,} accounts active on {as_of} is younger than "
            f"score.min_tenure_days ({s.min_tenure_days} days; the oldest is {oldest} days): none "
            f"can be scored yet. Score again from {as_of + dt.timedelta(days=s.min_tenure_days - oldest)}, "
            "or lower score.min_tenure_days in the config")
    health = np.where(enough, health, np.nan)
    probability = np.where(enough, probability, np.nan)
    renewal_risk = np.where(enough, renewal_risk, np.nan)
    bands = assign_bands(health, s.bands, config.model.capacity)

    risks, strengths, risk_names = top_drivers(
        points, X[points.columns], before[points.columns].reset_index(drop=True), metric_catalog)
    group_of = {m: metric_catalog[m].group for m in points.columns}
    by_group = points.T.groupby(group_of).sum().T.add_prefix("points_")
    names = accounts["name"] if "name" in accounts else pd.Series(dtype="str")
    scores = pd.DataFrame({
        "account_id": today["account_id"], "as_of_date": today["as_of_date"],
        "account_name": today["account_id"].map(names).to_numpy(),
        "churn_probability": probability, "health_score": np.round(health, 1), "band": bands,
        "renewal_risk": renewal_risk,
        "renewal_date": (today["as_of_date"] + pd.to_timedelta(today[DAYS_TO_RENEWAL], unit="D")).to_numpy(),
        "drivers": [_drivers_text(r, st) if ok else "Too new to score (tenure under "
                    f"{s.min_tenure_days} days)" for r, st, ok in zip(risks, strengths, enough)],
        "top_risks": [" | ".join(r) for r in risks],
        "top_strengths": [" | ".join(st) for st in strengths],
        "model_version": version, "horizon_days": horizon,
        "scored_by": f"healthscore {provenance()['healthscore']}",
        "reference_score": np.round(reference, 2),
    })
    by_group = by_group.round(2)
    by_group.loc[~enough] = np.nan
    scores = pd.concat([scores, by_group], axis=1)
    scores["action"] = [_actions(playbook, b, names, group_of) for b, names in zip(bands, risk_names)]
    scores["arr"] = today["arr_total_current"].to_numpy()
    lap("drivers")
    outlook = renewal_forecast_of(today, model, day, names)
    lap("prediction")

    # Runs sharing a store take turns from appending to its score history until their
    # outputs are written, so two runs started at once cannot interleave their history,
    # alerts and exports; a failed run leaves the store's history as it was.
    with metric_store.opened(store, config, progress) as kept:
        scores, alerts, runs = _trend_and_alerts(scores, kept, s.debounce_runs, s.bands)
        lap("history")
        progress("checking freshness, coverage, drift and realised performance")
        findings = monitor.check(watch, as_of, model, version, horizon, X, health, group_of, runs,
                                 config)
        lap("monitoring")
        progress("writing")
        write_table(scores, out, spreadsheet_safe=True)
        if out.suffix.lower() == ".csv":  # the CRM file; pipelines (and the report) read Parquet
            write_table(scores, parquet_beside(out))
        monitor.write_findings(findings, findings_path(out))
        write_forecast(outlook, forecast_path(out))
        write_table(alerts, alerts_path(out), spreadsheet_safe=True)
        monitor.log_findings(findings, config)
        lap("writing")
    return ScoreResult(scores, alerts, version, store, seconds, findings, outlook)


def renewal_forecast_of(today: pd.DataFrame, model, day: pd.Timestamp, names: pd.Series,
                        top: int = 10) -> dict:
    """The renewal forecast as of ``day``: per period (the next three months, the next
    quarter and the next 12 months) ARR up for renewal, expected ARR lost with its 80% interval, and the
    accounts that carry most of it (:mod:`models.forecast`)."""
    schedule = renewal_forecast.schedule_with_risk(
        today, lambda rows: model.renewal_risk(rows[model.features_]), day,
        renewal_forecast.forecast_horizon(day))
    table = renewal_forecast.forecast(schedule, day)
    carriers = {}
    for period in renewal_forecast.outlook_periods(day):
        accounts = renewal_forecast.top_accounts(schedule, day, period, top)
        accounts.insert(1, "account_name", accounts["account_id"].map(names).to_numpy())
        carriers[period[0]] = accounts
    return {"as_of": day, "level": 0.8, "periods": table, "top_accounts": carriers}


def write_forecast(outlook: dict, path: Path) -> Path:
    payload = {"as_of": str(pd.Timestamp(outlook["as_of"]).date()), "level": outlook["level"],
               "periods": json_ready(outlook["periods"].to_dict("records")),
               "top_accounts": {k: json_ready(v.to_dict("records"))
                                for k, v in outlook["top_accounts"].items()}}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, ensure_ascii=False), encoding="utf-8")
    return path


def scoring_snapshots(as_of: dt.date, every_days: int = 7) -> list[dt.date]:
    """The two snapshots scoring builds: as of D, and the one ``MOVEMENT_DAYS`` earlier
    (rounded up to the snapshot cadence) for the drivers' movement. The engine still
    reads the year behind them for the fall from peak, so every metric equals the full
    history's.

    >>> scoring_snapshots(dt.date(2026, 9, 30), 10)
    [datetime.date(2026, 8, 31), datetime.date(2026, 9, 30)]
    """
    days = -(-MOVEMENT_DAYS // every_days) * every_days
    return [as_of - dt.timedelta(days=days), as_of]


def backfill(data_dir, as_of: dt.date | None, config: Config, out: Path, runs: int,
             model_uri: str | None = None, store: Path | None = None,
             progress=print) -> ScoreResult:
    """Score ``runs`` snapshots a cadence apart, oldest first, ending as of D: starts a score
    history (trends, movers, alerts) for a portfolio scored for the first time. ``out``
    holds the last run. The data is read into the store once; each run adds its dates."""
    if runs == 1:
        return score(data_dir, as_of, config, out, model_uri, store, progress)
    store = store or out.parent / "store.duckdb"
    if as_of is None:
        with metric_store.opened(store, config, progress) as kept:
            kept.sync(data_dir, progress)
            as_of = kept.end_date()
    every = dt.timedelta(days=config.metrics.snapshot_every_days)
    result = None
    for k in range(runs - 1, -1, -1):
        day = as_of - k * every
        result = score(data_dir, day, config, out, model_uri, store,
                       progress=lambda m, day=day: progress(f"{day}: {m}"))
    return result


def _drivers_text(risks: list[str], strengths: list[str]) -> str:
    parts = []
    if risks:
        parts.append("Risks: " + "; ".join(risks) + ".")
    if strengths:
        parts.append("Strengths: " + "; ".join(strengths) + ".")
    return " ".join(parts) or "No metric moves this score by a point."


def _actions(playbook: dict, band: str, risk_names: list[str], group_of: dict) -> str:
    steps = list(playbook.get("bands", {}).get(band, []))
    if risk_names and band != INSUFFICIENT:
        hint = playbook.get("drivers", {}).get(group_of[risk_names[0]])
        if hint:
            steps.append(hint)
    return " | ".join(steps)


def _trend_and_alerts(scores: pd.DataFrame, kept: metric_store.Store, debounce: int,
                      scheme: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Append this run to the score history (idempotent per as-of date and model version),
    add the trend columns, and set the alerts of this date: band changes that held
    ``debounce`` runs."""
    as_of = pd.Timestamp(scores["as_of_date"].iloc[0])
    history.append_run(kept, scores)
    runs = history.read_runs(kept, as_of)

    trend = account_trends(runs, debounce)
    scores = scores.join(trend.drop(columns="alert_from"), on="account_id")
    order = {b: i for i, b in enumerate(BAND_ORDER[scheme])}
    alerts = trend.loc[trend["alert_from"].notna(), ["alert_from"]].join(
        scores.set_index("account_id")[["as_of_date", "band", "health_score", "drivers"]])
    alerts = alerts.reset_index().rename(columns={"alert_from": "from_band", "band": "to_band"})
    alerts["direction"] = [("worse" if order.get(t, 0) < order.get(f, 0) else "better")
                           for f, t in zip(alerts["from_band"], alerts["to_band"])]
    alerts["held_runs"] = debounce
    alerts = alerts.sort_values("account_id", ignore_index=True)
    history.replace_alerts(kept, as_of, alerts)
    return scores, alerts.reindex(columns=history.ALERT_COLUMNS), runs
