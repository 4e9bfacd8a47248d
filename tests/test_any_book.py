"""Anyone's data: books the simulator did not write (``tests/books.py``), with optional
columns and sources removed one at a time, integer and string ids, other event names,
ties on timestamps, short histories and young accounts.

Fast tests build metric histories for every variant; the ``slow`` matrix runs the whole
features -> train -> score -> report chain through the CLI on each variant.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from books import OPTIONAL_COLUMNS, OPTIONAL_SOURCES, foreign_book, minimal, without, write_book
from features.catalog import Metric, available_columns, catalog, metric_names, not_built
from healthscore.config import Config, MetricsConfig, ModelConfig
from models.backtest import final_calibration_days, plan_backtest
from pipelines.cli import app
from pipelines.features import compute_metric_history
from pipelines.validate import load_data_folder
from report_browser import payload_of

# The product's own names: nothing here is the demo's.
METRICS = MetricsConfig(
    snapshot_every_days=28,
    key_features=("quiz_submit", "video_play"), advanced_features=("forum_post",),
    event_types=("lesson_view", "quiz_submit", "video_play", "forum_post"),
    value_events=("certificate_issued",),
    onboarding_milestones=("welcome_call", "sso_configured", "first_course_published"),
)
CONFIG = Config(metrics=METRICS)
EVERY = OPTIONAL_COLUMNS + OPTIONAL_SOURCES


@pytest.fixture(scope="module")
def book():
    return foreign_book(accounts=50, days=420, seed=11)


@pytest.fixture(scope="module")
def full_history(book, tmp_path_factory):
    folder = write_book(book, tmp_path_factory.mktemp("full"), fmt="parquet")
    tables = load_data_folder(folder)
    return tables, compute_metric_history(tables, _end(book), CONFIG)


def _end(book) -> dt.date:
    return book["events"]["timestamp"].max().date()


def _needs(metric: Metric, item: str) -> bool:
    return item == metric.source or item in metric.needs


# The fast suite removes the columns a first user's export most often lacks (issue #1)
# and the user ids; every other column and source runs with the slow tests (CI runs both).
FAST = {"subscriptions.seats", "events.user_id", "events.count", "events.value", "tickets"}


@pytest.mark.parametrize("item", [pytest.param(i, marks=() if i in FAST else pytest.mark.slow)
                                  for i in EVERY])
def test_each_optional_column_and_source_leaves_out_only_what_needs_it(item, book, full_history,
                                                                       tmp_path):
    full_tables, full = full_history
    folder = write_book(without(book, item), tmp_path / "book", fmt="parquet")
    tables = load_data_folder(folder)
    history = compute_metric_history(tables, _end(book), CONFIG)

    own = ("seats_assigned",) if "account_metrics" in tables else ()
    expected = metric_names(METRICS, available_columns(tables), own)
    assert list(history.columns) == ["account_id", "as_of_date", *expected]
    lost = set(full.columns) - set(history.columns)
    needing = {m.name for m in catalog(METRICS, own_columns=("seats_assigned",)) if _needs(m, item)}
    assert lost == needing
    # Said in words, naming the source or column (bring-your-own metrics exist only
    # when their source does: nothing to say when it is absent).
    words = " ".join(not_built(METRICS, available_columns(tables), own))
    if item != "account_metrics":
        assert bool(lost) == (f" {item} is absent" in words)
        assert all(name in words for name in sorted(lost)[:3]) or "more not built" in words
    values = history.drop(columns=["account_id", "as_of_date"]).to_numpy(dtype=float)
    assert not np.isinf(values).any()
    # Nothing else moves, except what a default stands in for: count is 1 per event.
    if item != "events.count":
        pd.testing.assert_frame_equal(history, full[history.columns], check_exact=False, rtol=1e-12)
    else:
        assert (history["events_count_30d"] <= full["events_count_30d"]).all()
        assert (history["events_count_30d"] < full["events_count_30d"]).any()


def test_a_contract_minimal_book_with_string_ids_builds_point_in_time_metrics(tmp_path):
    """Required columns only; the metrics as of D equal those built from the data cut at D."""
    book = minimal(foreign_book(accounts=40, days=400, seed=3, string_ids=True))
    tables = load_data_folder(write_book(book, tmp_path / "all"))
    end = _end(book)
    day = end - dt.timedelta(days=140)
    history = compute_metric_history(tables, end, CONFIG)
    cut = {name: table.copy() for name, table in book.items()}
    cut["events"] = cut["events"].loc[cut["events"]["timestamp"] < pd.Timestamp(day) + pd.Timedelta(days=1)]
    # Terms are known from their start: a term starting after D is not known at D.
    cut["subscriptions"] = cut["subscriptions"].loc[cut["subscriptions"]["start_date"] <= pd.Timestamp(day)]
    cut["accounts"] = cut["accounts"].loc[cut["accounts"]["created_at"] <= pd.Timestamp(day)]
    early = compute_metric_history(load_data_folder(write_book(cut, tmp_path / "cut")), day, CONFIG)
    later = history.loc[history["as_of_date"] <= pd.Timestamp(day)].reset_index(drop=True)
    assert len(early) > 100 and history["account_id"].str.startswith("org-").all()
    pd.testing.assert_frame_equal(later, early, check_exact=False, rtol=1e-12)


def test_latest_values_tie_on_timestamps_by_their_mean_whatever_the_row_order(tmp_path):
    """A survey campaign stamps three responses with one time: the latest NPS is their
    mean, on any row order; so is the CSM's latest read when two notes share a minute."""
    book = foreign_book(accounts=30, days=300, seed=5)
    surveys = book["surveys"]
    at = surveys.groupby("account_id")["responded_at"].transform("max")
    ties = surveys.loc[surveys["responded_at"] == at].groupby("account_id")["responded_at"].size()
    assert (ties > 1).sum() >= 5  # the book really has ties at the latest time
    histories = []
    for seed in (0, 1):
        shuffled = {name: table.sample(frac=1, random_state=seed) for name, table in book.items()}
        tables = load_data_folder(write_book(shuffled, tmp_path / f"s{seed}"))
        histories.append(compute_metric_history(tables, _end(book), CONFIG))
    pd.testing.assert_frame_equal(*histories)
    # By hand, for every row: the mean NPS at the latest response time in (D - 365, D].
    history = histories[0]
    nps = surveys.loc[surveys["kind"] == "nps"].astype({"account_id": "str"})
    pairs = history[["account_id", "as_of_date"]].merge(nps, on="account_id")
    day = pairs["responded_at"].dt.normalize()
    pairs = pairs.loc[(day <= pairs["as_of_date"]) & (day > pairs["as_of_date"] - pd.Timedelta(days=365))]
    latest = pairs.groupby(["account_id", "as_of_date"])["responded_at"].transform("max")
    expected = pairs.loc[pairs["responded_at"] == latest].groupby(
        ["account_id", "as_of_date"])["score"].agg(["mean", "size"])
    got = history.set_index(["account_id", "as_of_date"])["nps_score_latest"]
    assert (expected["size"] > 1).sum() >= 10  # rows where the tie rule decides
    pd.testing.assert_series_equal(got.dropna().sort_index(), expected["mean"].sort_index(),
                                   check_names=False)


def test_free_plans_with_zero_arr_and_zero_seats_make_no_infinities(tmp_path):
    book = foreign_book(accounts=30, days=300, seed=9)
    book["subscriptions"]["seats"] = np.where(book["subscriptions"]["arr"] == 0, 0,
                                              book["subscriptions"]["seats"])
    assert (book["subscriptions"]["arr"] == 0).any()
    history = compute_metric_history(load_data_folder(write_book(book, tmp_path)), _end(book), CONFIG)
    values = history.drop(columns=["account_id", "as_of_date"]).to_numpy()
    assert not np.isinf(values).any()
    free = history.loc[history["seats_total_current"] == 0]
    assert len(free) and free["active_users_ratio_30d"].isna().all()


# Backtest sizing, on observation tables whose labels are set by hand.
def _observations(weeks: int, churn_weeks: set[int], wait_days: int = 120) -> pd.DataFrame:
    days = pd.date_range("2024-01-07", periods=weeks, freq="7D")
    rows = [{"account_id": f"a{i}", "as_of_date": d, "churned": int(w in churn_weeks and i < 3),
             "label_known_at": d + pd.Timedelta(days=wait_days)}
            for w, d in enumerate(days) for i in range(20)]
    return pd.DataFrame(rows)


def test_backtest_keeps_the_configured_folds_when_the_history_allows_them():
    observations = _observations(100, set(range(100)))
    observations = observations.loc[observations["label_known_at"] <= observations["as_of_date"].max()]
    plan = plan_backtest(observations, ModelConfig())
    configured = ModelConfig()
    assert (len(plan.folds), plan.config.fold_days, plan.config.calibration_days) == (
        configured.folds, configured.fold_days, configured.calibration_days)
    assert plan.notes == []


def test_backtest_shrinks_to_a_short_history_and_says_so():
    # 30 weeks of labelled observations: churns throughout, outcomes known 120 days later.
    observations = _observations(30, set(range(30)))
    plan = plan_backtest(observations, ModelConfig())
    assert 1 <= len(plan.folds) < 4 or plan.config.fold_days < 56
    assert plan.notes and "backtest fold(s)" in plan.notes[0]
    for fold in plan.folds:  # every fold trains on labels known before it, both outcomes
        train = observations.loc[observations["label_known_at"] <= fold.start]
        assert train["churned"].nunique() == 2


def test_no_backtest_when_outcomes_arrive_after_the_labelled_span_but_the_model_can_still_fit():
    observations = _observations(10, set(range(10)))  # 63 days of labelled observation dates
    plan = plan_backtest(observations, ModelConfig())
    assert plan.folds == [] and "no out-of-time backtest" in plan.notes[0]
    assert final_calibration_days(observations, 56) == 56
    assert final_calibration_days(_observations(5, set(range(5))), 56) == 28  # 4 weeks of dates
    assert final_calibration_days(_observations(10, {0}), 56) is None  # churn only once


def _fast_config(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"metrics": METRICS.model_dump(mode="json"),
                                    "model": {"folds": 2, "lightgbm": {"n_estimators": 200}}}))
    return path


def _chain(folder: Path, tmp_path: Path, monkeypatch, tune: bool = False) -> dict[str, object]:
    """validate -> features -> train (-> tune) -> score -> monitor -> report through the CLI."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    runner, config, out = CliRunner(), str(_fast_config(tmp_path)), tmp_path / "out"
    results = {}
    for name, args in (
        ("validate", ["validate", "--data", str(folder), "--allow-drops"]),
        ("features", ["features", "--data", str(folder), "--out", str(out / "h.parquet"), "--config", config]),
        ("train", ["train", "--data", str(folder), "--config", config]),
        *([("tune", ["tune", "--data", str(folder), "--out", str(out / "tuned.yaml"), "--config",
                     config, "--trials", "2"])] if tune else []),
        ("score", ["score", "--data", str(folder), "--out", str(out / "scores.csv"), "--config", config,
                   "--backfill", "2"]),
        ("monitor", ["monitor", "--data", str(folder), "--out", str(out / "m.json"), "--config", config]),
        ("report", ["report", "--data", str(folder), "--scores", str(out / "scores.csv"),
                    "--out", str(out / "report.html"), "--config", config]),
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, f"{name}: {result.output[-2000:]}"
        results[name] = result.output
    return results


def test_the_whole_chain_on_a_contract_minimal_book_with_integer_ids(tmp_path, monkeypatch):
    book = minimal(foreign_book(accounts=70, days=620, seed=2))
    outputs = _chain(write_book(book, tmp_path / "book"), tmp_path, monkeypatch, tune=True)
    assert "Not built: optional column events.user_id is absent" in outputs["train"]
    assert "Best tuning-fold ROC-AUC" in outputs["tune"]
    assert outputs["train"].count("optional source tickets is absent") == 1
    scores = pd.read_csv(tmp_path / "out" / "scores.csv")
    assert len(scores) > 10 and scores["churn_probability"].between(0, 1).all()
    assert scores["health_score"].between(0, 100).all()
    backtest = payload_of((tmp_path / "out" / "report.html").read_text(encoding="utf-8"))["backtest"]
    assert backtest["backtested"] and backtest["models"]
    # Categories without a source learn nothing for want of data, and say so.
    no_data = {w["category"] for w in backtest["weights"] if not w["has_data"]}
    assert no_data == {"csat_nps", "support", "onboarding", "engagement", "billing", "own metrics"}


@pytest.mark.slow
@pytest.mark.parametrize("item", EVERY)
def test_the_whole_chain_without_each_optional_column_and_source(item, tmp_path, monkeypatch):
    book = without(foreign_book(accounts=60, days=450, seed=4, string_ids=item.startswith("events")), item)
    _chain(write_book(book, tmp_path / "book", fmt="parquet" if "." in item else "csv"),
           tmp_path, monkeypatch)
    assert pd.read_csv(tmp_path / "out" / "scores.csv")["health_score"].notna().any()


@pytest.mark.slow
def test_a_six_month_book_of_monthly_terms_trains_and_registers_a_model(tmp_path, monkeypatch):
    book = foreign_book(accounts=150, days=182, annual_share=0, seed=4)
    outputs = _chain(write_book(book, tmp_path / "book"), tmp_path, monkeypatch)
    assert "Backtest sized to the data" in outputs["train"]
    assert "registered version 1" in outputs["train"]
    # The report says why there is no backtest, instead of "not in this MLflow store".
    backtest = payload_of((tmp_path / "out" / "report.html").read_text(encoding="utf-8"))["backtest"]
    assert backtest["available"] and backtest["backtested"] is False
    assert "no out-of-time backtest" in backtest["note"] and backtest["weights"]


def test_a_book_with_no_known_outcome_yet_says_how_much_history_is_missing(tmp_path, monkeypatch):
    # The label is the outcome at the end of the current term: 100 days of annual terms
    # (none has ended) is a book with no known outcome. (Monthly terms would give
    # outcomes within a month, so they are learnable after 100 days.)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    folder = write_book(minimal(foreign_book(accounts=30, days=100, annual_share=1, seed=5)), tmp_path / "b")
    result = CliRunner().invoke(app, ["train", "--data", str(folder)])
    assert result.exit_code == 2
    assert "no outcome is known yet" in result.output and "more days of history" in result.output


def _score_with_min_tenure(data: Path, tmp_path: Path, days: int):
    """``healthscore score`` of ``data`` into ``tmp_path/s.csv`` with score.min_tenure_days."""
    config = tmp_path / "young.yaml"
    config.write_text(f"score:\n  min_tenure_days: {days}\n")
    return CliRunner().invoke(app, ["score", "--data", str(data), "--out", str(tmp_path / "s.csv"),
                                    "--config", str(config)])


def test_scoring_a_book_whose_accounts_are_all_too_new_says_so_and_fails(scoring_store, tmp_path):
    """Every active account younger than score.min_tenure_days: no scores, a clear
    message with the day scoring can start, and a non-zero exit."""
    _, data, _ = scoring_store
    result = _score_with_min_tenure(data, tmp_path, 5000)
    assert result.exit_code == 2, result.output
    assert "younger than score.min_tenure_days (5000 days" in result.output
    assert "none can be scored yet" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "s.csv").exists()


def test_scoring_says_how_many_accounts_were_held_back_as_too_new(scoring_store, tmp_path):
    _, data, _ = scoring_store
    result = _score_with_min_tenure(data, tmp_path, 400)
    assert result.exit_code == 0, result.output
    scores = pd.read_csv(tmp_path / "s.csv")
    young = int((scores["band"] == "insufficient_data").sum())
    assert 0 < young < len(scores)
    assert f"{young:,} of {len(scores):,} accounts held back as too new to score" in result.output
    assert scores.loc[scores["band"] == "insufficient_data", "churn_probability"].isna().all()


def test_a_book_where_nobody_has_churned_yet_stops_naming_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    book = minimal(foreign_book(accounts=30, days=300, seed=6, churn_bias=-30))
    result = CliRunner().invoke(app, ["train", "--data", str(write_book(book, tmp_path / "b"))])
    assert result.exit_code == 2, result.output
    assert "no churn is known among" in result.output
    assert "needs both churned and retained accounts" in result.output.replace("\n", " ")
