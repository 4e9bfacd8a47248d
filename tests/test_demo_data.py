"""The demo data as a user gets it: written by the CLI, read back through the contract."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from features.lifecycle import active_accounts, renewal_outcomes
from pipelines.cli import app
from report_browser import check_in_browser, payload_of
from pipelines.validate import check_data_folder, data_end_date

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("demo") / "book"
    result = runner.invoke(app, ["demo-data", "--out", str(folder), "--accounts", "80", "--seed", "3"])
    assert result.exit_code == 0, result.output
    return folder, folder.with_name("book-truth")


def test_demo_folder_holds_every_source_in_every_format(demo):
    folder, truth = demo
    names = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    assert names == sorted([
        "accounts.csv", "subscriptions.csv", "events.parquet", "tickets.csv", "surveys.csv",
        "onboarding.csv", "invoices.csv", "csm_notes.csv", "marketing.csv.gz",
        "account_metrics.csv",
    ])
    # Ground truth lives outside the data folder, where no pipeline reads it.
    assert (truth / "renewals.parquet").is_file() and not (folder / "renewals.parquet").exists()


def test_demo_data_follows_the_contract(demo):
    validation = check_data_folder(demo[0])
    assert validation.all_problems == []
    assert all(len(t) > 0 for t in validation.tables.values())


def test_churn_derived_from_terms_matches_the_generator(demo):
    folder, truth = demo
    tables = check_data_folder(folder).tables
    as_of = data_end_date(tables)
    outcomes = renewal_outcomes(tables["subscriptions"], as_of)
    decided = outcomes.loc[outcomes["outcome"] != "pending"]
    renewals = pd.read_parquet(truth / "renewals.parquet")
    merged = decided.merge(renewals, on="subscription_id", validate="one_to_one")
    assert len(merged) == len(decided) > 50
    assert ((merged["outcome"] == "churned") == merged["churned"]).all()
    # Every generator decision is either derived or still inside the grace period.
    pending = outcomes.loc[outcomes["outcome"] == "pending", "subscription_id"]
    assert set(renewals["subscription_id"]) == set(decided["subscription_id"]) | set(pending)


def test_no_activity_on_inactive_days(demo):
    tables = check_data_folder(demo[0]).tables
    subs = tables["subscriptions"]
    for day in pd.date_range("2025-01-01", "2026-09-30", freq="61D"):
        active = set(active_accounts(subs, day))
        used = set(tables["events"].loc[tables["events"]["timestamp"].dt.normalize() == day, "account_id"])
        assert used <= active, day


def test_same_seed_same_files(demo, tmp_path):
    folder = tmp_path / "again"
    runner.invoke(app, ["demo-data", "--out", str(folder), "--accounts", "80", "--seed", "3"])
    for name in ("accounts.csv", "subscriptions.csv", "tickets.csv"):
        assert (folder / name).read_bytes() == (demo[0] / name).read_bytes()


def test_refuses_to_overwrite_a_foreign_folder(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "accounts.csv").write_text("precious")
    result = runner.invoke(app, ["demo-data", "--out", str(folder), "--accounts", "10"])
    assert result.exit_code == 2 and "refusing to overwrite" in result.output
    assert (folder / "accounts.csv").read_text() == "precious"


def test_console_script_reports_errors_without_traceback(tmp_path):
    """The installed command, as a user runs it, on a folder with a broken file."""
    (tmp_path / "accounts.csv").write_text("account_id;created_at\na1;2024-01-01\n")
    exe = Path(sys.executable).with_name("healthscore")
    proc = subprocess.run([str(exe), "validate", "--data", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "accounts.csv" in proc.stdout and "semicolons" in proc.stdout
    assert "subscriptions" in proc.stdout and "required source is missing" in proc.stdout


def test_metric_history_of_the_demo_has_every_group(demo, tmp_path):
    from features.catalog import GROUPS, catalog

    out = tmp_path / "history.parquet"
    result = runner.invoke(app, ["features", "--data", str(demo[0]), "--out", str(out)])
    assert result.exit_code == 0, result.output
    history = pd.read_parquet(out)
    by_group = {}
    for metric in catalog(own_columns=("integrations_connected", "api_error_rate", "data_volume_gb")):
        assert metric.name in history.columns, metric.name
        by_group.setdefault(metric.group, []).append(history[metric.name].notna().mean())
    assert set(by_group) == set(GROUPS)
    for group, coverage in by_group.items():
        assert max(coverage) > 0.2, group  # every group carries real values
    # The metrics carry the simulator's churn driver: in the month before a renewal
    # decision, accounts that went on to churn used the product less.
    renewals = pd.read_parquet(demo[1] / "renewals.parquet")
    before = history.merge(renewals, on="account_id")
    before = before.loc[(before["as_of_date"] <= before["decision_date"])
                        & (before["as_of_date"] > before["decision_date"] - pd.Timedelta(days=30))]
    usage = before.groupby("churned")["active_days_count_30d"].mean()
    assert usage[True] < usage[False]


@pytest.mark.slow
def test_make_demo_path_end_to_end(tmp_path):
    """`make demo` on a small book, through make, the installed CLI and real files."""
    demo_dir = tmp_path / "demo"
    proc = subprocess.run(
        ["make", "--no-print-directory", "demo", f"DEMO_DIR={demo_dir}", "ACCOUNTS=60",
         f"MLFLOW_TRACKING_URI=sqlite:///{tmp_path / 'mlflow.db'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "OK: the data follows the contract." in proc.stdout
    assert (demo_dir / "events.parquet").is_file()
    assert (tmp_path / "demo-truth" / "renewals.parquet").is_file()
    history = pd.read_parquet(tmp_path / "demo-outputs" / "metric_history.parquet")
    assert history["account_id"].nunique() > 30 and history.shape[1] > 50
    assert "Out-of-time backtest" in proc.stdout and "Gate: no champion yet: promoted" in proc.stdout
    assert (tmp_path / "mlflow.db").is_file() and (tmp_path / "mlartifacts").is_dir()
    scores = pd.read_csv(tmp_path / "demo-outputs" / "scores.csv")
    assert set(scores["account_id"]) <= set(history["account_id"]) and len(scores) > 20
    # One metric store for every step: the validated data, the history the export came
    # from, and the four scored runs.
    import duckdb

    con = duckdb.connect(str(tmp_path / "demo-outputs" / "store.duckdb"), read_only=True)
    assert con.execute("SELECT count(DISTINCT as_of_date) FROM score_history").fetchall()[0][0] == 4
    assert con.execute("SELECT count(*) FROM metric_history").fetchall()[0][0] >= len(history)
    con.close()
    # The report: four backfilled weekly runs, the backtest from the training run in
    # MLflow, and a page that opens in a real browser with a working account card.
    report = tmp_path / "demo-outputs" / "report.html"
    assert f">> report:         {report}" in proc.stdout
    payload = payload_of(report.read_text(encoding="utf-8"))
    assert payload["meta"]["runs"] == 4 and payload["backtest"]["available"]
    assert {m["model"] for m in payload["backtest"]["models"]} >= {
        "The model (LightGBM blended with the baselines)", "Hand-weighted scorecard",
        "Logistic baseline"}
    # The bands' churn per account-year, pooled and per term, and the year's expected loss.
    views = {(b["view"], b["group"]) for b in payload["backtest"]["bands"]}
    assert ("pooled", "all") in views and ("term", "monthly") in views and ("term", "annual") in views
    year = [p for p in payload["forecast"]["periods"] if p["period"] == "Next 12 months"]
    assert len(year) == 1 and 0 < year[0]["expected_arr_lost"] < 0.5 * payload["kpis"]["arr"]
    check_in_browser(report, "demo-report", hostile=False)  # no demo account has that name


@pytest.mark.slow
def test_make_demo_path_on_a_contract_minimal_book(tmp_path):
    """`make demo MINIMAL=1`: only the required sources and columns, the whole make path."""
    demo_dir = tmp_path / "demo"
    proc = subprocess.run(
        ["make", "--no-print-directory", "demo", f"DEMO_DIR={demo_dir}", "ACCOUNTS=80",
         "MINIMAL=1", f"MLFLOW_TRACKING_URI=sqlite:///{tmp_path / 'mlflow.db'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert sorted(p.name for p in demo_dir.iterdir() if not p.name.startswith(".")) == [
        "accounts.csv", "events.parquet", "subscriptions.csv"]
    assert list(pd.read_parquet(demo_dir / "events.parquet").columns) == ["account_id", "timestamp", "event"]
    assert list(pd.read_csv(demo_dir / "subscriptions.csv").columns) == [
        "account_id", "start_date", "end_date", "arr"]
    # What could not be built is said once, in words, by the commands that build metrics.
    assert proc.stdout.count("Not built: optional source tickets is absent") == 2  # features, train
    assert "Not built: optional column events.user_id is absent: events_per_active_user_30d" in proc.stdout
    assert "internal error" not in proc.stdout + proc.stderr
    history = pd.read_parquet(tmp_path / "demo-outputs" / "metric_history.parquet")
    assert "active_users_count_30d" not in history and "seats_total_current" not in history
    assert "events_count_30d" in history and "renewal_days_to_next" in history
    scores = pd.read_csv(tmp_path / "demo-outputs" / "scores.csv")
    assert len(scores) > 20 and scores["churn_probability"].notna().any()
    assert scores["health_score"].dropna().between(0, 100).all()
    check_in_browser(tmp_path / "demo-outputs" / "report.html", "minimal-report", hostile=False)
