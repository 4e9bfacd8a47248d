"""Faults and hostile input with real processes: killed runs, runs at once, reproducibility,
and config values that try to be code."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from healthscore.config import Config
from pipelines.cli import app
from pipelines.io import exclusive
from pipelines import store as metric_store
from pipelines.history import read_alerts, read_runs
from pipelines.score import score

CONFIG = Config()
HS = [sys.executable, "-m", "pipelines.cli"]
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def setup(scoring_store):
    return scoring_store


def _env(store: Path) -> dict:
    return {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{store}", "PYTHONPATH": str(ROOT)}


def test_a_locked_folder_makes_the_next_run_wait(tmp_path):
    # A real second process holds the lock; this one must wait until it lets go.
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time, pathlib; sys.path.insert(0, sys.argv[1]);"
        "from pipelines.io import exclusive\n"
        "with exclusive(pathlib.Path(sys.argv[2]), 'test'):\n"
        "    print('held', flush=True); time.sleep(1.5)"), str(ROOT), str(tmp_path)],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    said = []
    start = time.monotonic()
    with exclusive(tmp_path, "the score history", said.append):
        waited = time.monotonic() - start
    holder.wait(10)
    assert waited > 0.5 and said and "waiting for another run" in said[0]


@pytest.mark.slow  # end to end, twice; CI's slow suite runs it
def test_same_data_config_and_seed_give_byte_identical_outputs(setup, tmp_path):
    _, data, as_of = setup
    outputs = []
    for name in ("a", "b"):
        result = score(data, as_of, CONFIG, tmp_path / name / "scores.csv",
                       progress=lambda m: None)
        outputs.append(result)
    for file in ("scores.csv", "scores.parquet", "scores.monitor.json"):
        assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes(), file
    # Every output says what made it.
    meta = json.loads(pq.read_schema(tmp_path / "a" / "scores.parquet").metadata[b"healthscore"])
    assert {"healthscore", "python", "lightgbm", "pandas", "duckdb"} <= set(meta)
    assert outputs[0].scores["scored_by"].str.startswith("healthscore ").all()
    assert outputs[0].monitor["versions"] == meta


def test_config_values_that_look_like_code_are_only_ever_text(setup, tmp_path):
    _, data, _ = setup
    # A playbook "path" with shell syntax is a file name that does not exist, nothing more.
    config = tmp_path / "c.yaml"
    config.write_text(f"score:\n  playbook: '$(touch {tmp_path}/pwned); `touch {tmp_path}/pwned2`'\n")
    result = CliRunner().invoke(app, ["score", "--data", str(data), "--out", str(tmp_path / "s.csv"),
                                      "--config", str(config)])
    assert result.exit_code != 0 and "cannot read it" in result.output
    # YAML that asks to build Python objects is rejected, not run (safe loading).
    for target, text in ((config, "!!python/object/apply:os.system ['touch {p}/pwned3']\n"),
                         (tmp_path / "play.yaml", "bands: !!python/object/apply:os.system ['touch {p}/pwned4']\n")):
        target.write_text(text.format(p=tmp_path))
        if target.name == "play.yaml":
            config.write_text(f"score:\n  playbook: {target}\n")
        result = CliRunner().invoke(app, ["score", "--data", str(data), "--out",
                                          str(tmp_path / "s.csv"), "--config", str(config)])
        assert result.exit_code == 2 and "not valid YAML" in result.output, result.output
    assert not list(tmp_path.glob("pwned*")) and not (tmp_path / "s.csv").exists()


def _scores_are_whole(path: Path, rows: int) -> None:
    frame = pd.read_csv(path)
    assert len(frame) == rows and frame["health_score"].notna().any()


@pytest.mark.slow
def test_killed_runs_leave_outputs_history_and_registry_usable(setup, tmp_path):
    root, data, as_of = setup
    store = tmp_path / "mlflow.db"
    shutil.copy(root / "mlflow.db", store)  # kills must not touch the shared store
    env = _env(store)
    out, history = tmp_path / "out" / "scores.csv", tmp_path / "out" / "store.duckdb"
    first = subprocess.run([*HS, "score", "--data", str(data), "--out", str(out),
                            "--store", str(history)], env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    before = out.read_bytes()
    rows = len(pd.read_csv(out))
    # The run the kills interrupt, done whole elsewhere: the new file it would write (runs
    # are byte-reproducible, and the later day in the shared history is not read).
    week_ago = str(as_of - dt.timedelta(days=7))
    whole = subprocess.run([*HS, "score", "--data", str(data), "--out", str(tmp_path / "whole.csv"),
                            "--as-of", week_ago, "--store", str(tmp_path / "whole.duckdb")],
                           env=env, capture_output=True, text=True)
    assert whole.returncode == 0, whole.stderr
    after = (tmp_path / "whole.csv").read_bytes()
    assert after != before

    # Kill `score` at moments spread over its run (a run takes about 10 s here).
    for delay in (1.0, 3.5, 6.0, 8.0, 9.5):
        run = subprocess.Popen([*HS, "score", "--data", str(data), "--out", str(out),
                                "--store", str(history), "--as-of", week_ago],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        run.send_signal(signal.SIGKILL)
        run.wait()
        # The CRM file is the old one or a whole new one, never a torn one.
        now = out.read_bytes()
        assert now in (before, after), f"scores.csv torn after {delay} s: {len(now)} bytes"
        # The store is as a run left it or as it was: it opens, and the history (alerts
        # included) reads.
        with metric_store.opened(history, CONFIG) as kept:
            read_runs(kept, pd.Timestamp(as_of))
            read_alerts(kept)

    # Kill `train` and `report` mid-run: the champion still loads and scores; the old
    # report is intact.
    report = tmp_path / "out" / "report.html"
    done = subprocess.run([*HS, "report", "--data", str(data), "--scores", str(out), "--out",
                           str(report), "--store", str(history)], env=env, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    page = report.read_bytes()
    for command, delay in ((["report", "--data", str(data), "--scores", str(out), "--out", str(report),
                             "--store", str(history)], 4.0),
                           (["train", "--data", str(data), "--store", str(history)], 12.0),
                           (["train", "--data", str(data), "--store", str(history)], 25.0)):
        run = subprocess.Popen([*HS, *command], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        time.sleep(delay)
        run.send_signal(signal.SIGKILL)
        run.wait()
    assert report.read_bytes() == page
    again = subprocess.run([*HS, "score", "--data", str(data), "--out", str(out),
                            "--store", str(history)], env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    _scores_are_whole(out, rows)
    # The same day scored again after all the kills: the same scores as the first run.
    now, then = pd.read_csv(out), pd.read_csv(io.BytesIO(before))
    pd.testing.assert_frame_equal(now[["account_id", "health_score", "band", "drivers"]],
                                  then[["account_id", "health_score", "band", "drivers"]])
    # No leftover temporary file ever takes the name of a real output.
    names = {p.name for p in (tmp_path / "out").iterdir()}
    assert {"scores.csv", "scores.parquet", "scores.monitor.json", "report.html"} <= names


@pytest.mark.slow
def test_two_runs_at_once_share_a_score_history_safely(setup, tmp_path):
    root, data, as_of = setup
    store = tmp_path / "mlflow.db"
    shutil.copy(root / "mlflow.db", store)
    env = _env(store)
    history = tmp_path / "store.duckdb"
    days = [as_of - dt.timedelta(days=7), as_of]
    runs = [subprocess.Popen([*HS, "score", "--data", str(data), "--out", str(tmp_path / f"s{i}.csv"),
                              "--store", str(history), "--as-of", str(day)],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for i, day in enumerate(days)]
    for run in runs:
        _, err = run.communicate(timeout=300)
        assert run.returncode == 0, err
    with metric_store.opened(history, CONFIG) as kept:
        both = read_runs(kept, pd.Timestamp(as_of))
        read_alerts(kept)
    assert set(both["as_of_date"]) == {pd.Timestamp(d) for d in days}
    for i, day in enumerate(days):
        frame = pd.read_csv(tmp_path / f"s{i}.csv")
        assert set(frame["as_of_date"]) == {str(day)}
