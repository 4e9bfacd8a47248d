"""Pipeline stage: scores + score history + the model's backtest + data -> one HTML report.

The report is a single self-contained file: no network, every script and style inline.
All values from the data travel as one JSON document inside the page and are put on
screen by the page's script as text (``textContent``), never as markup, so an account
named ``<script>...`` shows as those characters. The page has the portfolio (bands, ARR,
movers, distribution, weights, backtest, data freshness and monitoring, a sortable and filterable
account table) and a health card per account (score over time, driver waterfall,
metric histories against the portfolio median, playbook actions).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import jinja2
import mlflow
import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient

from features.catalog import catalog
from healthscore.config import Config
from healthscore.errors import HealthscoreError
from models.evaluation import reliability
from models import band_churn
from models.health import BAND_ORDER, INSUFFICIENT
from models.monitoring import source_recency
from pipelines import registry
from pipelines import store as metric_store
from pipelines.features import load_book
from pipelines.history import read_runs
from pipelines.io import atomic_path, json_ready, provenance
from pipelines.outputs import findings_path, forecast_path, parquet_beside

# Metric histories on each card, when the data has them (the portfolio median alongside).
CARD_METRICS = ("active_users_count_30d", "active_days_count_30d", "events_count_30d",
                "key_features_used_count_30d", "tickets_count_90d", "nps_score_latest",
                "renewal_days_to_next")
CARD_WEEKS = 26
# Models shown in the backtest section, in this order, with the names people know.
BACKTEST_MODELS = {"lightgbm": "The model (LightGBM blended with the baselines)",
                   "lightgbm_trees": "LightGBM alone", "logistic": "Logistic baseline",
                   "scorecard": "Hand-weighted scorecard"}


@dataclass
class ReportResult:
    path: Path
    accounts: int
    cards: int


def report(scores_file: Path, data_dir, out: Path, config: Config,
           store: Path | None = None, model_uri: str | None = None,
           max_cards: int = 5000, progress=print) -> ReportResult:
    """Build the report for one scoring run and write it to ``out`` (atomically).

    ``store``: the metric store the run used (default: ``store.duckdb`` beside the scores).
    """
    progress("reading the scores")
    scores = _read_scores(scores_file)
    as_of = pd.Timestamp(scores["as_of_date"].iloc[0])
    version = str(scores["model_version"].iloc[0])
    store = store or scores_file.parent / "store.duckdb"

    progress("reading the model's backtest from MLflow")
    registry.connect(config.model.experiment)
    uri = model_uri or f"models:/{config.model.registered_model}/{version}"
    wrapped, loaded_version = registry.load(uri)
    name = uri.removeprefix("models:/").split("/")[0].split("@")[0] if uri.startswith("models:/") else None
    backtest = _backtest(name, loaded_version, config)

    progress("reading the metric histories for the cards")
    book = load_book(data_dir, as_of.date(), config, store=store, progress=progress,
                     history_days=CARD_WEEKS * config.metrics.snapshot_every_days)
    with metric_store.opened(store, config, progress) as kept:
        runs = read_runs(kept, as_of)
    freshness = _freshness(book.record_days, book.rows, as_of)
    metric_catalog = {m.name: m for m in catalog(config.metrics, book.columns, book.own_columns)}
    metrics = book.history

    progress("writing the report")
    payload = _payload(scores, runs, backtest, freshness, metrics, metric_catalog, config,
                       max_cards)
    payload["monitor"] = _findings(scores_file)
    payload["forecast"] = _forecast(scores_file)
    html = render(payload)
    with atomic_path(out) as tmp:
        tmp.write_text(html, encoding="utf-8")
    return ReportResult(out, len(scores), len(payload["cards"]))


def render(payload: dict) -> str:
    """The HTML page around a payload (see :func:`_payload`)."""
    folder = resources.files("pipelines").joinpath("templates")
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    template = env.from_string(folder.joinpath("report.html.j2").read_text(encoding="utf-8"))
    return template.render(
        title=payload["meta"]["title"],
        style=jinja2.utils.markupsafe.Markup(folder.joinpath("report.css").read_text(encoding="utf-8")),
        script=jinja2.utils.markupsafe.Markup(folder.joinpath("report.js").read_text(encoding="utf-8")),
        data=jinja2.utils.markupsafe.Markup(script_json(payload)),
    )


def script_json(value) -> str:
    """JSON that is safe inside a ``<script>`` element: no ``<``, ``>`` or ``&`` can close
    it or open a comment, and NaN becomes null.

    >>> script_json({"name": "</script><b>", "x": float("nan")})
    '{"name": "\\\\u003c/script\\\\u003e\\\\u003cb\\\\u003e", "x": null}'
    """
    text = json.dumps(json_ready(value), allow_nan=False, ensure_ascii=False)
    for char, code in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                       ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, code)
    return text


def _read_scores(path: Path) -> pd.DataFrame:
    """The scores Parquet (``scores.csv`` means the Parquet written beside it)."""
    parquet = parquet_beside(path) if path.suffix.lower() == ".csv" else path
    if not parquet.exists():
        raise HealthscoreError(f"{parquet}: no scores there; run `healthscore score` first "
                               "(it writes the Parquet beside a CSV)")
    scores = pd.read_parquet(parquet)
    missing = {"account_id", "as_of_date", "health_score", "band", "model_version"} - set(scores)
    if missing or scores.empty:
        raise HealthscoreError(f"{parquet}: not a healthscore scores file "
                               f"({'missing ' + ', '.join(sorted(missing)) if missing else 'no rows'})")
    return scores


def _backtest(name: str | None, version: str, config: Config) -> dict:
    """The backtest of the run that logged registered model ``name`` version ``version``:
    metrics, curves and band churn (unavailable for a model outside the registry)."""
    if name is None:
        return {"available": False}
    run_id = MlflowClient().get_model_version(name, version).run_id
    with tempfile.TemporaryDirectory() as tmp:
        try:
            folder = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="backtest",
                                                             dst_path=tmp))
        except (mlflow.exceptions.MlflowException, OSError):
            return {"available": False}
        if not (folder / "learned_weights.csv").is_file():
            return {"available": False}
        weights = pd.read_csv(folder / "learned_weights.csv")
        needed = ("backtest_pooled.csv", "backtest_predictions.parquet")
        if not all((folder / f).is_file() for f in needed):
            # Trained on too short a history for an out-of-time backtest.
            plan = MlflowClient().get_run(run_id).data.tags.get("backtest_plan", "")
            return {"available": True, "backtested": False, "note": plan,
                    "weights": json_ready(weights.to_dict("records")),
                    "horizon_days": config.model.horizon_days, "capacity": config.model.capacity}
        pooled = pd.read_csv(folder / "backtest_pooled.csv")
        predictions = pd.read_parquet(folder / "backtest_predictions.parquet")
        early = (pd.read_csv(folder / "backtest_early_warning.csv")
                 if (folder / "backtest_early_warning.csv").is_file() else pd.DataFrame())
        forecast_check = (pd.read_csv(folder / "forecast_backtest.csv", parse_dates=["month", "forecast_as_of"])
                          if (folder / "forecast_backtest.csv").is_file() else pd.DataFrame())
        band_table = (pd.read_csv(folder / "backtest_bands.csv", keep_default_na=False,
                                  na_values=[""]) if (folder / "backtest_bands.csv").is_file() else None)
    if "fold" in predictions:  # the reported folds' rows whose horizon outcome is known
        predictions = predictions.loc[(predictions["fold"] >= 1) & predictions["y"].notna()]
    rows, curves, lift = [], {}, {}
    for key, label in BACKTEST_MODELS.items():
        row = pooled.loc[pooled["model"] == key]
        part = predictions.loc[predictions["model"] == key]
        if row.empty or part.empty:
            continue
        r = row.iloc[0]
        rows.append({"model": label, **{k: r.get(k) for k in (
            "roc_auc", "pr_auc", "top_decile_lift", "precision_at_capacity",
            "recall_at_capacity", "ece", "observations", "churn_rate")}})
        curve = reliability(part["y"].to_numpy(), part["p"].to_numpy())
        curves[label] = curve[["predicted", "observed"]].to_dict("list")
        lift[label] = _capture_curve(part["y"].to_numpy(), part["p"].to_numpy())
    # Churn per account-year by band of the product's score, pooled, per term and per
    # segment (trained before the score was per year: no such table).
    band_rows = (json_ready(band_table.to_dict("records")) if band_table is not None else [])
    problems = band_churn.ranking_problems(band_table) if band_table is not None else []
    return {"available": True, "backtested": True, "models": rows, "reliability": curves, "lift": lift,
            "bands": band_rows, "band_problems": problems, "horizon_days": config.model.horizon_days,
            "weights": weights.to_dict("records"), "capacity": config.model.capacity,
            "early_warning": _early_warning_rows(early),
            "forecast_check": forecast_check.to_dict("records")}


# The early-warning table's models, with the names people know.
EARLY_WARNING_MODELS = {**{k: v for k, v in BACKTEST_MODELS.items() if k != "lightgbm_trees"},
                        "lightgbm_no_contract": "LightGBM without any contract metric"}


def _early_warning_rows(early: pd.DataFrame) -> list[dict]:
    if early.empty:
        return []
    shown = early.loc[early["model"].isin(list(EARLY_WARNING_MODELS))].copy()
    shown["label"] = shown["model"].map(EARLY_WARNING_MODELS)
    order = {m: i for i, m in enumerate(EARLY_WARNING_MODELS)}
    shown = shown.sort_values(["model", "lead_days"], key=lambda c: c.map(order) if c.name == "model" else c)
    return shown.to_dict("records")


def _capture_curve(y: np.ndarray, p: np.ndarray, points: int = 20) -> dict:
    """Share of churners found when working the riskiest x% of observations."""
    order = np.argsort(-p, kind="stable")
    found = np.cumsum(y[order]) / max(y.sum(), 1)
    xs = np.linspace(0, 1, points + 1)
    idx = np.clip((xs * len(y)).astype(int) - 1, 0, len(y) - 1)
    return {"worked": xs.tolist(), "found": np.where(xs == 0, 0.0, found[idx]).tolist()}


def _forecast(scores_file: Path) -> dict | None:
    """The renewal forecast ``score`` wrote beside the scores, if there is one."""
    path = forecast_path(scores_file)
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def _findings(scores_file: Path) -> dict | None:
    """The monitor's findings written beside the scores by ``score`` (None before #8's
    monitor existed, or when the file is not there)."""
    path = findings_path(scores_file)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise HealthscoreError(f"{path}: cannot read the monitoring findings ({exc})") from None


def _freshness(record_days: dict, rows: dict[str, int], as_of: pd.Timestamp) -> list[dict]:
    """The last record of each source with rows against the as-of date (the monitor's
    numbers: :func:`models.monitoring.source_recency`)."""
    recency = source_recency(record_days, rows, as_of)
    shown = recency.loc[recency["rows"] > 0, ["source", "rows", "last_record", "days_behind"]]
    return shown.to_dict("records")


def _payload(scores, runs, backtest, freshness, metrics, metric_catalog, config, max_cards) -> dict:
    s = scores.copy()
    scheme = config.score.bands
    order = [*BAND_ORDER[scheme], INSUFFICIENT]
    worst = BAND_ORDER[scheme][0]
    at_risk = set(BAND_ORDER[scheme][:2])
    as_of = pd.Timestamp(s["as_of_date"].iloc[0])
    arr = s["arr"].fillna(0.0) if "arr" in s else pd.Series(0.0, index=s.index)
    band_rows = [{"band": b, "accounts": int((s["band"] == b).sum()),
                  "arr": float(arr[s["band"] == b].sum())} for b in order]
    change = s.get("score_change", pd.Series(np.nan, index=s.index))
    newly = s.loc[(s["band"] == worst) & (s.get("runs_in_band", 1) == 1) & change.notna()]
    group_cols = [c for c in s.columns if c.startswith("points_")]
    columns = ["account_id", "account_name", "health_score", "band", "churn_probability",
               "score_change", "runs_in_band", "band_since", "falling_runs", "arr",
               "top_risks", "top_strengths", "action", "drivers", "reference_score",
               "renewal_risk", "renewal_date"]
    accounts = s[[c for c in columns if c in s]].copy()
    accounts["groups"] = (s[group_cols].rename(columns=lambda c: c.removeprefix("points_"))
                          .to_dict("records") if group_cols else [{}] * len(s))

    # Cards: the riskiest first when the portfolio is larger than max_cards.
    carded = s.sort_values("health_score", na_position="last").head(max_cards)["account_id"]
    shown = [m for m in CARD_METRICS if m in metrics.columns and metrics[m].notna().any()]
    series = metrics.loc[metrics["account_id"].isin(set(carded)), ["account_id", "as_of_date", *shown]]
    medians = metrics.groupby("as_of_date")[shown].median()
    by_account = {a: g for a, g in series.groupby("account_id")}
    run_groups = {a: g for a, g in runs.groupby("account_id")} if len(runs) else {}
    cards = {}
    for account in carded:
        g = by_account.get(account)
        r = run_groups.get(account)
        cards[account] = {
            "runs": {"dates": [] if r is None else list(r["as_of_date"]),
                     "scores": [] if r is None else list(r["health_score"]),
                     "bands": [] if r is None else list(r["band"])},
            "metrics": {} if g is None else {"dates": list(g["as_of_date"]),
                                             **{m: list(g[m]) for m in shown}},
        }
    scored = s["health_score"].dropna()
    return {
        "meta": {
            "title": f"Customer health as of {as_of:%Y-%m-%d}",
            "as_of": as_of, "model_version": str(s["model_version"].iloc[0]),
            "horizon_days": int(s["horizon_days"].iloc[0]) if "horizon_days" in s else None,
            "generated": pd.Timestamp.now("UTC").strftime("%Y-%m-%d %H:%M UTC"),
            "versions": provenance(),
            "scheme": scheme, "bands": order, "at_risk_bands": sorted(at_risk, key=order.index),
            "reference_score": float(s["reference_score"].iloc[0]) if "reference_score" in s else None,
            "fixed_thresholds": [40, 60, 80] if scheme == "fixed" else [],
            "runs": int(runs["as_of_date"].nunique()) if len(runs) else 0,
            "max_cards": max_cards,
        },
        "kpis": {
            "accounts": len(s), "scored": int(scored.size),
            "arr": float(arr.sum()), "at_risk_arr": float(arr[s["band"].isin(at_risk)].sum()),
            "newly_worst": len(newly), "median_score": float(scored.median()) if len(scored) else None,
        },
        "bands": band_rows,
        "distribution": np.histogram(scored, bins=20, range=(0, 100))[0].tolist(),
        "movers": {
            "falls": _movers(s, change, ascending=True),
            "rises": _movers(s, change, ascending=False),
            "newly_worst": newly["account_id"].tolist(),
        },
        "backtest": backtest,
        "freshness": freshness,
        "metric_labels": {m: metric_catalog[m].description.split(" (")[0] if m in metric_catalog else m
                          for m in shown},
        "medians": {"dates": list(medians.index), **{m: list(medians[m]) for m in shown}},
        "accounts": accounts.to_dict("records"),
        "cards": cards,
    }


def _movers(s: pd.DataFrame, change: pd.Series, ascending: bool, n: int = 10) -> list[str]:
    moved = change.loc[change < 0] if ascending else change.loc[change > 0]
    return s.loc[moved.sort_values(ascending=ascending).index[:n], "account_id"].tolist()
