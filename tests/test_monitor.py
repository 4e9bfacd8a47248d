"""Monitoring: freshness, coverage, drift and realised performance, on a real registered
model and real scoring runs (the shared scoring book)."""

from __future__ import annotations

import datetime as dt
import json
import shutil

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from healthscore.config import Config
from healthscore.contract import SOURCES
from models import monitoring
from pipelines import monitor
from pipelines.cli import app
from pipelines.score import score

CONFIG = Config()


@pytest.fixture(scope="module")
def setup(scoring_store):
    return scoring_store


def test_psi_flags_a_shift_and_not_a_second_sample_of_the_same_distribution():
    rng = np.random.default_rng(0)
    then = pd.DataFrame({"logins": rng.poisson(20, 3000).astype(float),
                         "nps": np.where(rng.random(3000) < 0.3, np.nan, rng.normal(40, 10, 3000))})
    profile = monitoring.build_profile(then, {"logins": "frequency", "nps": "sentiment"})
    same = pd.DataFrame({"logins": rng.poisson(20, 800).astype(float),
                         "nps": np.where(rng.random(800) < 0.3, np.nan, rng.normal(40, 10, 800))})
    assert (monitoring.drift(profile, same)["status"] == "stable").all()
    moved = same.assign(logins=same["logins"] * 3, nps=np.nan)
    result = monitoring.drift(profile, moved).set_index("metric")
    assert result.loc["logins", "status"] == "shift" and result.loc["nps", "status"] == "shift"
    coverage = monitoring.coverage_change(profile, moved, {"logins": "frequency", "nps": "sentiment"})
    assert coverage.set_index("group").loc["sentiment", "flagged"]
    assert not coverage.set_index("group").loc["frequency", "flagged"]


def test_realised_performance_by_hand():
    runs = pd.DataFrame({"account_id": ["a", "b", "c", "d"],
                         "as_of_date": pd.Timestamp("2026-01-01"),
                         "churn_probability": [0.9, 0.2, 0.6, 0.1]})
    churns = pd.DataFrame({"account_id": ["a", "c"],
                           "churn_date": pd.to_datetime(["2026-02-01", "2026-05-01"])})
    # Outcomes of (Jan 1, Apr 1] are known on May 1 (90 + 30 days); c churned after the window.
    assert monitoring.realised_performance(runs, churns, pd.Timestamp("2026-04-30"), 90, 30).empty
    got = monitoring.realised_performance(runs, churns, pd.Timestamp("2026-05-01"), 90, 30).iloc[0]
    assert (got["accounts"], got["churned"], got["roc_auc"]) == (4, 1, 1.0)
    assert got["mean_predicted"] == pytest.approx(0.45) and got["observed_rate"] == 0.25
    assert got["brier"] == pytest.approx((0.01 + 0.04 + 0.36 + 0.01) / 4)


def _drifted_copy(data, folder, as_of: dt.date):
    """The book with a stale ticket feed (nothing in its last 20 days) and an integration
    rollout that logs every login three times over its last 30 days."""
    shutil.copytree(data, folder)
    events = pd.read_parquet(folder / "events.parquet")
    login = (events["event"] == "login") & (events["timestamp"] > pd.Timestamp(as_of) - pd.Timedelta(days=30))
    pd.concat([events, events.loc[login], events.loc[login]], ignore_index=True).to_parquet(
        folder / "events.parquet", index=False)
    tickets = pd.read_csv(folder / "tickets.csv")
    keep = pd.to_datetime(tickets["created_at"], format="ISO8601") < pd.Timestamp(as_of) - pd.Timedelta(days=20)
    tickets.loc[keep].to_csv(folder / "tickets.csv", index=False)


def test_stale_source_and_injected_drift_are_flagged_and_a_clean_run_is_not(setup, tmp_path):
    root, data, as_of = setup
    # A clean scoring run eight weeks before the training date: no false alarm.
    clean = score(data, as_of - dt.timedelta(days=56), CONFIG, tmp_path / "clean.csv",
                  store=tmp_path / "h.duckdb", progress=lambda m: None).monitor
    assert clean["ok"], clean["alerts"]
    assert json.loads((tmp_path / "clean.monitor.json").read_text()) == clean
    assert {f["source"] for f in clean["freshness"]} >= {"events", "tickets"}

    _drifted_copy(data, tmp_path / "drifted", as_of)
    result = CliRunner().invoke(app, ["monitor", "--data", str(tmp_path / "drifted"),
                                      "--out", str(tmp_path / "m.json"), "--strict"])
    assert result.exit_code == 4, result.output
    assert "tickets is stale" in result.output
    found = json.loads((tmp_path / "m.json").read_text())
    assert found["alerts"]["stale_sources"] == ["tickets"]
    assert "event_login_count_30d" in found["alerts"]["shifted_metrics"]
    assert not found["ok"]


def _truncated(data, folder, day: dt.date):
    """The data folder as it stood at the end of ``day``: nothing recorded later."""
    folder.mkdir()
    end = pd.Timestamp(day) + pd.Timedelta(days=1)
    for path in data.iterdir():
        name = path.name.split(".")[0]
        if name not in SOURCES:
            continue
        table = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
        column = "start_date" if name == "subscriptions" else SOURCES[name].date_column
        if name != "accounts":
            stamps = pd.to_datetime(table[column], format="ISO8601")
            table = table.loc[stamps < end]
        if path.suffix == ".parquet":
            table.to_parquet(folder / path.name, index=False)
        else:
            table.to_csv(folder / path.name, index=False)


def test_monitoring_as_of_d_ignores_data_after_d_and_reports_matured_runs(setup, tmp_path):
    root, data, as_of = setup
    day = as_of - dt.timedelta(days=35)
    # A run old enough for its 90-day outcomes to be known 30 days (grace) before D.
    old = day - dt.timedelta(days=126)
    score(data, old, CONFIG, tmp_path / "old.csv", store=tmp_path / "h.duckdb", progress=lambda m: None)
    full = monitor.run(data, day, CONFIG, tmp_path / "full.json", store=tmp_path / "h.duckdb",
                       progress=lambda m: None)
    _truncated(data, tmp_path / "until-d", day)
    cut = monitor.run(tmp_path / "until-d", day, CONFIG, tmp_path / "cut.json",
                      store=tmp_path / "h.duckdb", progress=lambda m: None)
    assert full == cut
    assert [p["as_of_date"] for p in full["performance"]] == [old.isoformat()]
    realised = full["performance"][0]
    assert realised["accounts"] > 100 and realised["churned"] > 0
    assert 0.5 < realised["roc_auc"] <= 1


def test_report_and_monitor_share_one_freshness():
    """One computation of each source's last record: the report's table is the same
    numbers as the monitor's check, point in time (a record dated after D does not count),
    and the report leaves out empty sources."""
    from pipelines.monitor import NOT_FEEDS
    from pipelines.report import _freshness

    t = pd.Timestamp
    days = {"accounts": [t("2025-01-01")], "events": [t("2026-09-28 23:59"), t("2026-10-01")],
            "tickets": []}
    rows = {"accounts": 1, "events": 2, "tickets": 0}
    day = t("2026-09-30")
    recency = monitoring.source_recency(days, rows, day)
    assert _freshness(days, rows, day) == [
        {"source": "accounts", "rows": 1, "last_record": t("2025-01-01"), "days_behind": 637},
        {"source": "events", "rows": 2, "last_record": t("2026-09-28"), "days_behind": 2}]
    feeds = recency.loc[~recency["source"].isin(NOT_FEEDS)]
    fresh = monitoring.freshness(feeds).set_index("source")
    assert fresh.loc["events", "days_behind"] == 2 and not fresh.loc["events", "stale"]
    assert fresh.loc["tickets", "stale"]  # no record at all
