"""End to end: `healthscore train`, `tune` and `promote` against a real MLflow SQLite store."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

HS = [sys.executable, "-m", "pipelines.cli"]


def run(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([*HS, *args], capture_output=True, text=True, env=env, timeout=900)


@pytest.mark.slow
def test_train_tune_retrain_and_promote(tmp_path: Path):
    import os

    store = tmp_path / "mlflow.db"
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{store}", "COLUMNS": "200"}
    data = tmp_path / "demo"
    assert run("demo-data", "--out", str(data), "--accounts", "300", "--seed", "3", env=env).returncode == 0

    first = run("train", "--data", str(data), env=env)
    assert first.returncode == 0, first.stderr
    assert "lightgbm" in first.stdout and "scorecard" in first.stdout
    assert "no champion yet: promoted" in first.stdout

    tuned = tmp_path / "tuned.yaml"
    result = run("tune", "--data", str(data), "--out", str(tuned), "--trials", "3", env=env)
    assert result.returncode == 0, result.stderr
    assert "lightgbm:" in tuned.read_text() and "learning_rate" in tuned.read_text()

    second = run("train", "--data", str(data), "--config", str(tuned), env=env)
    assert second.returncode == 0, second.stderr
    # The gate loaded champion v1 and compared it with the tuned challenger on the
    # newest outcomes neither learned from.
    assert "neither model learned from" in " ".join(second.stdout.split())
    assert "champion v1" in second.stdout

    # Both URIs explicitly: other tests in this process may have pointed MLflow's global
    # registry URI at their own stores.
    mlflow.set_tracking_uri(f"sqlite:///{store}")
    mlflow.set_registry_uri(f"sqlite:///{store}")
    client = MlflowClient(tracking_uri=f"sqlite:///{store}", registry_uri=f"sqlite:///{store}")
    assert str(client.get_model_version_by_alias("healthscore", "challenger").version) == "2"
    runs = mlflow.search_runs(experiment_names=["healthscore"], output_format="list")
    trains = [r for r in runs if "model_version" in r.data.tags]
    assert len(trains) == 2 and all(r.data.tags["data_as_of"] for r in trains)
    # Run names tell retrains apart: version, gate outcome, data as-of, horizon, AUC, time.
    names = sorted(r.data.tags["mlflow.runName"] for r in trains)
    assert all(re.match(r"v\d+ (champion|challenger kept) \| as-of \d{4}-\d\d-\d\d \| h90 \| "
                        r"ROC-AUC 0\.\d{3} \| ", n) for n in names), names
    assert names[0].startswith("v1 champion") and names[1].startswith("v2 ")
    trials = [r for r in runs if r.data.tags.get("mlflow.parentRunId")]
    assert len(trials) >= 1  # nested tuning trials (pruned ones are not logged)
    artifacts = {a.path for a in client.list_artifacts(trains[0].info.run_id, "plots")}
    assert {"plots/reliability_curve.png", "plots/lift_chart.png", "plots/shap_summary.png"} <= artifacts

    back = run("promote", "1", "--reason", "roll back for the test", env=env)
    assert back.returncode == 0, back.stderr
    champion = client.get_model_version_by_alias("healthscore", "champion")
    assert str(champion.version) == "1" and champion.tags["promotion_reason"] == "roll back for the test"
    assert run("promote", "7", "--reason", "x", env=env).returncode == 2


def test_train_on_too_little_history_is_a_clear_error(tmp_path: Path, data_folder):
    import os

    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    # The label is the outcome at the end of the current term: with every term still
    # running on the data's last day (2024-03-15), no outcome is known.
    running = """subscription_id,account_id,start_date,end_date,arr,plan,seats,status
s1,a1,2024-01-01,2025-01-01,120000,Business annual,100,
s3,a2,2024-01-15,2025-01-15,1200,Team annual,5,
s5,a3,2024-02-01,2025-02-01,40000,Business annual,30,
"""
    result = run("train", "--data", str(data_folder(subscriptions=running)), env=env)
    assert result.returncode == 2
    assert "no outcome is known yet" in result.stderr and "more days of history" in result.stderr
    assert "Traceback" not in result.stderr
