"""Metric history: hand-computed values on tiny tables, and the point-in-time guarantee."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from features.catalog import GROUPS, catalog, metric_names
from features.engine import snapshot_dates
from healthscore.config import Config, MetricsConfig
from healthscore.errors import HealthscoreError
from healthscore.simulate import SimulationConfig, simulate_book
from pipelines.cli import app
from pipelines.config import load_config
from pipelines.features import compute_metric_history

D = dt.date(2024, 3, 31)
CONFIG = Config(metrics=MetricsConfig(key_features=("report", "share"), advanced_features=("api",)))


def ts(*values: str) -> pd.Series:
    return pd.to_datetime(pd.Series(values), format="ISO8601").astype("datetime64[us]")


def tiny() -> dict[str, pd.DataFrame]:
    accounts = pd.DataFrame({"account_id": ["a", "b", "c"], "created_at": ts("2024-01-01", "2024-03-01", "2023-01-01")})
    subscriptions = pd.DataFrame({
        "account_id": ["a", "b", "c"],
        "start_date": ts("2024-01-01", "2024-03-01", "2023-01-01"),
        "end_date": ts("2025-01-01", "2024-04-01", "2024-03-01"),  # c ended before D
        "arr": [12000.0, 600.0, 5000.0],
        "seats": pd.array([10, 2, 5], dtype="Int64"),
    })
    events = pd.DataFrame({
        "account_id": ["a"] * 6 + ["c"],
        "timestamp": ts("2024-03-31 23:59:59",  # end of day D counts
                        "2024-03-30 10:00", "2024-03-30 11:00", "2024-03-02 09:00",  # 03-02 is 29 days back
                        "2024-03-01 09:00",  # 30 days back: outside (D-30, D]
                        "2024-04-01 00:00",  # after D: must not count
                        "2024-02-20 09:00"),
        "event": ["login", "report", "api", "share", "report", "report", "login"],
        "user_id": ["u1", "u1", "u2", "u3", "u4", "u1", "x"],
        "count": pd.array([1, 3, 2, 1, 5, 9, 1], dtype="Int64"),
        "value": [None, 100.0, None, None, None, None, None],
    })
    return {"accounts": accounts, "subscriptions": subscriptions, "events": events}


@pytest.fixture(scope="module")
def tiny_history() -> pd.DataFrame:
    history = compute_metric_history(tiny(), D, CONFIG)
    return history.loc[history["as_of_date"] == pd.Timestamp(D)].set_index("account_id")


def test_grid_holds_accounts_active_on_each_snapshot(tiny_history):
    assert list(tiny_history.index) == ["a", "b"]  # c's term ended 2024-03-01


def test_frequency_hand_computed(tiny_history):
    a = tiny_history.loc["a"]
    assert a["active_days_count_30d"] == 3  # 03-02, 03-30, 03-31
    assert a["active_days_count_90d"] == 4  # plus 03-01
    assert a["events_count_30d"] == 1 + 3 + 2 + 1
    assert a["events_value_sum_30d"] == 100.0
    assert a["activity_days_since_last"] == 0
    assert a["events_per_active_user_30d"] == pytest.approx(7 / 3)


def test_breadth_depth_and_trend_hand_computed(tiny_history):
    a = tiny_history.loc["a"]
    assert a["active_users_count_30d"] == 3  # u1, u2, u3 (u4 was 30 days back)
    assert a["active_users_ratio_30d"] == pytest.approx(3 / 10)
    assert a["key_features_used_count_30d"] == 2
    assert a["key_feature_report_adoption_30d"] == pytest.approx(1 / 3)
    assert a["key_feature_share_adoption_30d"] == pytest.approx(1 / 3)
    assert a["advanced_events_share_30d"] == pytest.approx(2 / 7)
    assert a["events_count_change_30d"] == pytest.approx(7 / 5 - 1)  # 5 events on 03-01
    assert a["active_users_change_30d"] == pytest.approx(3 / 1 - 1)


def test_contract_hand_computed(tiny_history):
    a = tiny_history.loc["a"]
    assert a["arr_total_current"] == 12000 and a["seats_total_current"] == 10
    assert a["tenure_days_current"] == (D - dt.date(2024, 1, 1)).days
    assert a["renewal_days_to_next"] == (dt.date(2025, 1, 1) - D).days
    assert a["term_length_days_current"] == 366


def test_zero_activity_is_zero_and_never_used_is_empty(tiny_history):
    b = tiny_history.loc["b"]
    assert b["events_count_30d"] == 0 and b["active_users_count_30d"] == 0
    assert pd.isna(b["activity_days_since_last"])  # never used: no data, not zero
    assert pd.isna(b["events_per_active_user_30d"]) and pd.isna(b["advanced_events_share_30d"])


def test_days_since_last_activity_over_snapshots():
    history = compute_metric_history(tiny(), dt.date(2024, 4, 14), CONFIG)
    a = history.loc[history["account_id"] == "a"].set_index("as_of_date")
    assert a.loc[pd.Timestamp("2024-04-14"), "activity_days_since_last"] == 13  # last: 04-01
    assert a.loc[pd.Timestamp("2024-03-31"), "activity_days_since_last"] == 0


def test_catalog_describes_every_column_once(tiny_history):
    names = metric_names(CONFIG.metrics)
    assert list(tiny_history.columns) == ["as_of_date", *names]
    assert len(set(names)) == len(names)
    assert {m.group for m in catalog(CONFIG.metrics)} <= set(GROUPS)


def test_snapshots_are_anchored_on_as_of():
    dates = snapshot_dates(dt.date(2024, 3, 31), dt.date(2024, 1, 1), 7, history_days=20)
    assert dates == [dt.date(2024, 3, 17), dt.date(2024, 3, 24), dt.date(2024, 3, 31)]


# --- point-in-time: data after D cannot change anything computed as of D ------------------

BOOK = simulate_book(SimulationConfig(n_accounts=40, seed=11, start=dt.date(2025, 1, 1),
                                      end=dt.date(2025, 12, 31)))


def known_at(tables: dict[str, pd.DataFrame], day: dt.date) -> dict[str, pd.DataFrame]:
    """Everything recorded by the end of ``day``, and nothing else."""
    cut = pd.Timestamp(day) + pd.Timedelta(days=1)
    subs = tables["subscriptions"]
    subs = subs.loc[subs["start_date"] < cut].copy()
    subs.loc[subs["end_date"] >= cut, "status"] = None  # an outcome not known yet
    return {
        "accounts": tables["accounts"].loc[tables["accounts"]["created_at"] < cut],
        "subscriptions": subs,
        "events": tables["events"].loc[tables["events"]["timestamp"] < cut],
    }


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(offset=st.integers(40, 364))
def test_metrics_as_of_d_ignore_everything_after_d(offset):
    day = dt.date(2025, 1, 1) + dt.timedelta(days=offset)
    tables = {k: BOOK.sources[k] for k in ("accounts", "subscriptions", "events")}
    full = compute_metric_history(tables, day, Config())
    truncated = compute_metric_history(known_at(tables, day), day, Config())
    assert len(full) > 0
    pd.testing.assert_frame_equal(full, truncated)


def test_an_event_after_d_would_be_caught():
    """The comparison above can fail: a leaked late event changes the metrics."""
    tables = tiny()
    before = compute_metric_history(tables, D, CONFIG)
    tables["events"].loc[5, "timestamp"] = pd.Timestamp("2024-03-31 12:00")
    assert not compute_metric_history(tables, D, CONFIG).equals(before)


# --- config and command line -------------------------------------------------------------


def test_config_rejects_unknown_keys(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("metrics:\n  snapshot_every_day: 7\n")
    with pytest.raises(HealthscoreError, match=r"c.yaml: invalid config: metrics.snapshot_every_day"):
        load_config(path)


def test_cli_features_writes_history(tmp_path, data_folder):
    out = tmp_path / "out" / "history.csv"
    result = CliRunner().invoke(app, ["features", "--data", str(data_folder()), "--out", str(out),
                                      "--as-of", "2024-03-15"])
    assert result.exit_code == 0, result.output
    history = pd.read_csv(out)
    assert set(history["account_id"]) == {"a1", "a2", "a3"}
    assert history["as_of_date"].max() == "2024-03-15"


def test_cli_features_bad_as_of(tmp_path, data_folder):
    result = CliRunner().invoke(app, ["features", "--data", str(data_folder()), "--out",
                                      str(tmp_path / "h.parquet"), "--as-of", "31/03/2024"])
    assert result.exit_code == 2 and "not a date; use YYYY-MM-DD" in result.output
    assert not (tmp_path / "h.parquet").exists()
