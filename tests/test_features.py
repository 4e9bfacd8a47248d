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
from healthscore.contract import SOURCES
from features.engine import snapshot_dates
from healthscore.config import Config, MetricsConfig
from healthscore.errors import HealthscoreError
from healthscore.simulate import SimulationConfig, simulate_book
from pipelines.cli import app
from pipelines.config import load_config
from pipelines.features import compute_metric_history
from pipelines.score import scoring_snapshots

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
    names = metric_names(CONFIG.metrics, {"accounts", "subscriptions", "events"})
    assert list(tiny_history.columns) == ["as_of_date", *names]
    assert not any(c.startswith("tickets_") for c in tiny_history.columns)  # no source, no group
    assert len(set(names)) == len(names)
    assert {m.group for m in catalog(CONFIG.metrics)} <= set(GROUPS)


def test_snapshots_are_anchored_on_as_of():
    dates = snapshot_dates(dt.date(2024, 3, 31), dt.date(2024, 1, 1), 7, history_days=20)
    assert dates == [dt.date(2024, 3, 17), dt.date(2024, 3, 24), dt.date(2024, 3, 31)]


def tiny_with_sources() -> dict[str, pd.DataFrame]:
    tables = tiny()
    tables["tickets"] = pd.DataFrame({
        "account_id": ["a", "a", "a", "a"],
        "created_at": ts("2024-03-20 10:00", "2024-03-25 10:00", "2024-01-15 10:00", "2023-12-01"),
        "resolved_at": ts("2024-03-21 10:00", "2024-04-02 10:00", "2024-01-15 16:00", "2023-12-02"),
        "priority": ["high", "urgent", "low", "low"],
        "csat": [4.0, 1.0, 5.0, 2.0],  # the urgent one is rated after D: unknown at D
    })
    tables["surveys"] = pd.DataFrame({
        "account_id": ["a", "a", "a"],
        "responded_at": ts("2023-06-01", "2024-02-01", "2024-03-10"),
        "kind": ["nps", "nps", "csat"], "score": [10.0, 6.0, 4.0],
    })
    tables["csm_notes"] = pd.DataFrame({
        "account_id": ["a", "a"], "recorded_at": ts("2023-12-15", "2024-03-15"),
        "sentiment": [8.0, 5.0],
    })
    tables["onboarding"] = pd.DataFrame({
        "account_id": ["a", "a"], "milestone": ["kickoff", "go_live"],
        "completed_at": ts("2024-01-03", "2024-04-10"),
    })
    tables["invoices"] = pd.DataFrame({
        "account_id": ["a", "a", "a"],
        "issued_at": ts("2024-01-01", "2024-02-01", "2024-03-01"),
        "due_at": ts("2024-01-31", "2024-03-01", "2024-03-31"),
        "amount": [100.0, 200.0, 300.0],
        "paid_at": ts("2024-02-05", "2024-04-15", "2024-03-20"),  # late; paid after D; on time
    })
    tables["marketing"] = pd.DataFrame({
        "account_id": ["a", "a"], "timestamp": ts("2024-03-30", "2024-01-20"), "kind": ["webinar"] * 2,
    })
    tables["account_metrics"] = pd.DataFrame({
        "account_id": ["a", "a", "b"], "as_of_date": ts("2024-03-24", "2024-04-07", "2024-01-01"),
        "health_index": [7.0, 9.0, 3.0],
    })
    return tables


@pytest.fixture(scope="module")
def rich_history() -> pd.DataFrame:
    cfg = Config(metrics=MetricsConfig(key_features=("report",), advanced_features=("api",),
                                       onboarding_milestones=("kickoff", "training", "go_live")))
    history = compute_metric_history(tiny_with_sources(), D, cfg)
    return history.loc[history["as_of_date"] == pd.Timestamp(D)].set_index("account_id")


def test_support_hand_computed(rich_history):
    a, b = rich_history.loc["a"], rich_history.loc["b"]
    assert a["tickets_count_30d"] == 2 and a["tickets_count_90d"] == 3
    assert a["tickets_high_count_30d"] == 2 and a["tickets_urgent_count_90d"] == 1
    assert a["tickets_open_count_current"] == 1  # the urgent one, resolved after D
    assert a["tickets_resolution_hours_mean_90d"] == pytest.approx((24 + 6) / 2)
    assert a["tickets_csat_mean_90d"] == pytest.approx(4.5)
    assert b["tickets_count_90d"] == 0 and pd.isna(b["tickets_csat_mean_90d"])
    assert a["tickets_count_per_seat_90d"] == pytest.approx(3 / 10)  # a has 10 seats


def test_sentiment_hand_computed(rich_history):
    a = rich_history.loc["a"]
    assert a["nps_score_latest"] == 6 and a["nps_score_mean_180d"] == 6
    assert a["nps_score_change_180d"] == 6 - 10
    assert a["nps_promoter_share_365d"] == 0.5 and a["nps_detractor_share_365d"] == 0.5
    assert a["csat_score_mean_90d"] == 4
    assert a["csm_sentiment_latest"] == 5 and a["csm_sentiment_change_90d"] == 5 - 8


def test_onboarding_billing_engagement_and_own_hand_computed(rich_history):
    a, b = rich_history.loc["a"], rich_history.loc["b"]
    assert a["onboarding_completed_share"] == pytest.approx(1 / 3)  # go_live came after D
    assert a["onboarding_kickoff_days_to"] == 2 and pd.isna(a["onboarding_go_live_days_to"])
    assert a["onboarding_stalled_flag"] == 1 and b["onboarding_stalled_flag"] == 0
    assert a["invoices_late_count_365d"] == 2  # paid late, and overdue at D
    assert a["invoices_overdue_days_max_current"] == 30
    assert a["invoices_unpaid_amount_current"] == 200
    assert a["marketing_touches_count_30d"] == 1 and a["marketing_touches_count_90d"] == 2
    assert a["own_health_index_latest"] == 7  # the 04-07 value is after D
    assert pd.isna(b["own_health_index_latest"])  # 90 days old: past the staleness limit


# --- point-in-time: data after D cannot change anything computed as of D ------------------

BOOK = simulate_book(SimulationConfig(n_accounts=40, seed=11, start=dt.date(2025, 1, 1),
                                      end=dt.date(2025, 12, 31)))


def known_at(tables: dict[str, pd.DataFrame], day: dt.date) -> dict[str, pd.DataFrame]:
    """The export as it would have looked at the end of ``day``: nothing recorded later."""
    cut = pd.Timestamp(day) + pd.Timedelta(days=1)
    out = {}
    for name, table in tables.items():
        table = table.copy()
        stamp = SOURCES[name].date_column
        table = table.loc[table[stamp] < cut]
        if name == "subscriptions":
            table.loc[table["end_date"] >= cut, "status"] = None  # outcome not known yet
        if name == "tickets":
            later = table["resolved_at"] >= cut  # resolved (and rated) after D: open at D
            table.loc[later, "resolved_at"] = pd.NaT
            table["csat"] = table["csat"].astype("Float64").mask(later)
        if name == "invoices":
            table.loc[table["paid_at"] >= cut, "paid_at"] = pd.NaT
        out[name] = table
    return out


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(offset=st.integers(40, 364))
def test_metrics_as_of_d_ignore_everything_after_d(offset):
    day = dt.date(2025, 1, 1) + dt.timedelta(days=offset)
    tables = dict(BOOK.sources)
    full = compute_metric_history(tables, day, Config())
    truncated = compute_metric_history(known_at(tables, day), day, Config())
    assert len(full) > 0 and full.shape[1] > 50  # every group takes part
    pd.testing.assert_frame_equal(full, truncated, check_dtype=False)


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


def test_metrics_doc_is_generated_from_the_catalog():
    doc = (Path(__file__).resolve().parents[1] / "docs" / "metrics.md").read_text(encoding="utf-8")
    from features.catalog import catalog_markdown

    assert doc == catalog_markdown(), "docs/metrics.md is out of date: run `make docs`"
    for metric in catalog(MetricsConfig()):
        assert f"`{metric.name}`" in doc


def test_readme_config_example_is_valid(tmp_path):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    block = readme.split("```yaml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "config.yaml"
    path.write_text(block)
    config = load_config(path)
    assert config.metrics.key_features == ("create_report", "share_dashboard")


def test_trend_slope_hand_computed(tiny_history):
    import numpy as np

    a = tiny_history.loc["a"]
    daily_events, daily_users = np.zeros(90), np.zeros(90)
    for day, events, users in (("2024-03-31", 1, 1), ("2024-03-30", 5, 2),
                               ("2024-03-02", 1, 1), ("2024-03-01", 5, 1)):
        index = 89 - (D - dt.date.fromisoformat(day)).days
        daily_events[index], daily_users[index] = events, users
    assert a["events_daily_slope_90d"] == pytest.approx(np.polyfit(np.arange(90), daily_events, 1)[0])
    assert a["active_users_daily_slope_90d"] == pytest.approx(np.polyfit(np.arange(90), daily_users, 1)[0])
    assert tiny_history.loc["b", "events_daily_slope_90d"] == 0  # no usage: flat


def test_trend_drop_from_peak():
    history = compute_metric_history(tiny(), dt.date(2024, 5, 5), CONFIG)
    a = history.loc[history["account_id"] == "a"].set_index("as_of_date")
    assert a.loc[pd.Timestamp("2024-04-28"), "events_count_30d"] == 15  # the peak
    assert a.loc[pd.Timestamp("2024-04-28"), "events_count_drop_from_peak"] == 0
    assert a.loc[pd.Timestamp("2024-05-05"), "events_count_drop_from_peak"] == 1  # idle since 04-01
    assert a.loc[pd.Timestamp("2024-05-05"), "active_users_drop_from_peak"] == 1


def test_no_expected_milestones_means_no_onboarding_group():
    cfg = Config(metrics=MetricsConfig(key_features=("report",), onboarding_milestones=()))
    history = compute_metric_history(tiny_with_sources(), D, cfg)
    assert not any(c.startswith("onboarding_") for c in history.columns)
    assert "tickets_count_30d" in history.columns


def test_event_types_per_seat_and_tenure_hand_computed():
    cfg = Config(metrics=MetricsConfig(key_features=("report",), advanced_features=("api",),
                                       event_types=("login", "report"), value_events=("report",)))
    history = compute_metric_history(tiny(), D, cfg)
    a = history.loc[history["as_of_date"] == pd.Timestamp(D)].set_index("account_id").loc["a"]
    assert a["event_login_count_30d"] == 1
    assert a["event_report_count_30d"] == 3  # the 5 on 03-01 is 30 days back: outside
    assert a["event_report_value_sum_30d"] == 100.0
    assert a["events_count_per_seat_30d"] == pytest.approx(7 / 10)
    # Active on 03-31, 03-30, 03-02 and 03-01; the account is 90 days old at D.
    assert a["active_days_share_tenure"] == pytest.approx(4 / 90)
    b = history.loc[history["as_of_date"] == pd.Timestamp(D)].set_index("account_id").loc["b"]
    assert b["event_login_count_30d"] == 0 and b["active_days_share_tenure"] == 0


def test_past_contraction_or_expansion_hand_computed():
    tables = tiny()
    tables["subscriptions"] = pd.DataFrame({
        "account_id": ["a", "a", "b"],
        "start_date": ts("2023-01-01", "2024-01-01", "2024-03-01"),
        "end_date": ts("2024-01-01", "2025-01-01", "2024-04-01"),
        "arr": [1000.0, 1500.0, 600.0],
        "seats": pd.array([5, 4, 2], dtype="Int64"),
    })
    tables["accounts"].loc[0, "created_at"] = pd.Timestamp("2023-01-01")
    history = compute_metric_history(tables, D, CONFIG)
    at_d = history.loc[history["as_of_date"] == pd.Timestamp(D)].set_index("account_id")
    assert at_d.loc["a", "arr_change_365d"] == pytest.approx(0.5)
    assert at_d.loc["a", "seats_change_365d"] == pytest.approx(-0.2)
    assert pd.isna(at_d.loc["b", "arr_change_365d"])  # no term a year earlier: unknown


def test_the_store_export_equals_the_in_memory_path(tmp_path, data_folder):
    from pipelines.features import build_features
    from pipelines.validate import load_data_folder

    folder = data_folder()
    as_of = dt.date(2024, 3, 15)
    size = build_features(folder, tmp_path / "h.parquet", as_of, Config(), memory_limit="1GB")
    in_memory = compute_metric_history(load_data_folder(folder), as_of, Config())
    # The export, written by DuckDB from the store, is the in-memory engine's history.
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "h.parquet"), in_memory)
    assert size["rows"] == len(in_memory) and size["metrics"] == len(in_memory.columns) - 2
    build_features(folder, tmp_path / "h.csv", as_of, Config())
    assert pd.read_csv(tmp_path / "h.csv").shape == in_memory.shape


def test_cli_features_rejects_a_bad_memory_limit(tmp_path, data_folder):
    result = CliRunner().invoke(app, ["features", "--data", str(data_folder()), "--out",
                                      str(tmp_path / "h.parquet"), "--memory-limit", "lots; DROP"])
    assert result.exit_code == 2 and "use a size such as 2GB" in result.output
    assert not (tmp_path / "h.parquet").exists()


def test_a_short_history_gives_the_same_metrics_as_the_full_one():
    tables = dict(BOOK.sources)
    day = dt.date(2026, 6, 1)
    full = compute_metric_history(tables, day, Config())
    short_config = Config(metrics=MetricsConfig(history_days=60))
    short = compute_metric_history(tables, day, short_config)
    assert short["as_of_date"].min() >= pd.Timestamp(day) - pd.Timedelta(days=60)
    assert short["as_of_date"].nunique() == 9  # 60 days of weekly snapshots, D included
    expected = full.loc[full["as_of_date"].isin(short["as_of_date"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(short, expected)
    # The trailing-year peak reaches back before the short history's first snapshot.
    assert (short["events_count_drop_from_peak"] > 0).any()


def test_chosen_snapshots_give_the_full_historys_rows():
    # Scoring builds just D and the snapshot 28 days earlier; the peak's year behind them
    # is still read, so those rows equal the full history's.
    tables = dict(BOOK.sources)
    day = dt.date(2026, 6, 1)
    full = compute_metric_history(tables, day, Config())
    two = compute_metric_history(tables, day, Config(), snapshots=scoring_snapshots(day))
    assert sorted(two["as_of_date"].unique()) == [pd.Timestamp("2026-05-04"), pd.Timestamp(day)]
    expected = full.loc[full["as_of_date"].isin(two["as_of_date"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(two, expected)
    assert (two["events_count_drop_from_peak"] > 0).any()
    with pytest.raises(ValueError, match="multiple of 7 days"):
        compute_metric_history(tables, day, Config(), snapshots=[day - dt.timedelta(days=3)])


def test_a_short_history_still_sees_activity_older_than_its_windows():
    # The engine reads only the days its windows reach; the last active day before them
    # must still set the days since last activity.
    tables = tiny()
    tables["accounts"] = pd.concat([tables["accounts"], pd.DataFrame(
        {"account_id": ["d"], "created_at": ts("2022-01-01")})], ignore_index=True)
    tables["subscriptions"] = pd.concat([tables["subscriptions"], pd.DataFrame(
        {"account_id": ["d"], "start_date": ts("2022-01-01"), "end_date": ts("2025-01-01"),
         "arr": [1000.0], "seats": pd.array([3], dtype="Int64")})], ignore_index=True)
    tables["events"] = pd.concat([tables["events"], pd.DataFrame(
        {"account_id": ["d"], "timestamp": ts("2022-02-01 12:00"), "event": ["login"],
         "user_id": ["z"], "count": pd.array([1], dtype="Int64"), "value": [None]})],
        ignore_index=True)
    short_config = Config(metrics=MetricsConfig(key_features=("report", "share"),
                                                advanced_features=("api",), history_days=14))
    short = compute_metric_history(tables, D, short_config).set_index(["account_id", "as_of_date"])
    full = compute_metric_history(tables, D, CONFIG).set_index(["account_id", "as_of_date"])
    assert short.loc[("d", pd.Timestamp(D)), "activity_days_since_last"] == (D - dt.date(2022, 2, 1)).days
    pd.testing.assert_frame_equal(short, full.loc[short.index])


def test_running_out_of_the_memory_limit_is_a_clear_error(tmp_path):
    from pipelines.features import metric_history_from_parquet

    for name, table in dict(BOOK.sources).items():
        table.to_parquet(tmp_path / f"{name}.parquet", index=False)
    with pytest.raises(HealthscoreError, match="ran out of its 1MB memory limit.*--memory-limit"):
        metric_history_from_parquet(tmp_path, dt.date(2025, 12, 31), Config(), memory_limit="1MB")
