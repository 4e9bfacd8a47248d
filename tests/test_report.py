"""The HTML report: built from real scoring runs and a registered model, opened in a real
headless Chromium (Debian's chromium and chromedriver, installed by `make browser`)."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from healthscore.config import Config
from healthscore.errors import HealthscoreError
from pipelines.report import render, report, script_json
from pipelines.score import backfill
from report_browser import HOSTILE, check_in_browser, payload_of

CONFIG = Config()


@pytest.fixture(scope="module")
def built(scoring_book):
    """Three weekly scoring runs, then the report."""
    root, data, as_of = scoring_book
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    out = root / "report-run"
    backfill(data, as_of.date() if hasattr(as_of, "date") else as_of, CONFIG, out / "scores.csv",
             runs=3, progress=lambda m: None)
    result = report(out / "scores.csv", data, out / "report.html", CONFIG, progress=lambda m: None)
    yield result, out
    mp.undo()


def test_script_json_cannot_end_the_script_element():
    text = script_json({"name": "</script><img src=x onerror=alert(1)>", "x": float("nan")})
    assert "<" not in text and ">" not in text
    assert json.loads(text) == {"name": "</script><img src=x onerror=alert(1)>", "x": None}


def test_report_is_self_contained_and_escapes_the_data(built):
    result, _ = built
    html = result.path.read_text(encoding="utf-8")
    # No file, script or style is fetched: every script and style is inline, and the
    # page's content security policy forbids any fetch.
    assert not re.search(r"<(script|img|iframe)[^>]+src=|<link[^>]+href=", html)
    assert "default-src 'none'" in html
    # The hostile name exists only as escaped JSON text, never as markup.
    assert HOSTILE not in html
    names = [a["account_name"] for a in payload_of(html)["accounts"]]
    assert HOSTILE in names


def test_report_numbers_match_the_scores(built):
    result, out = built
    payload = payload_of(result.path.read_text(encoding="utf-8"))
    scores = pd.read_parquet(out / "scores.parquet")
    bands = {b["band"]: b for b in payload["bands"]}
    assert sum(b["accounts"] for b in payload["bands"]) == len(scores) == result.accounts
    critical = scores.loc[scores["band"] == "Critical", "arr"].sum()
    assert bands["Critical"]["arr"] == pytest.approx(critical)
    at_risk = scores.loc[scores["band"].isin(["Critical", "At-risk"]), "arr"].sum()
    assert payload["kpis"]["at_risk_arr"] == pytest.approx(at_risk)
    assert payload["meta"]["runs"] == 3
    assert payload["meta"]["versions"]["healthscore"] and payload["meta"]["versions"]["lightgbm"]
    assert set(payload["cards"]) == set(scores["account_id"])
    # Each card's score history is the three runs; the last one is today's score.
    account = scores.dropna(subset=["health_score"]).iloc[0]
    card = payload["cards"][account["account_id"]]
    assert len(card["runs"]["dates"]) == 3
    assert card["runs"]["scores"][-1] == pytest.approx(account["health_score"], abs=1e-3)
    falls = payload["movers"]["falls"]
    assert falls  # three runs of this book have falls, so the checks below see some
    changes = scores.set_index("account_id").loc[falls, "score_change"]
    assert (changes < 0).all() and changes.is_monotonic_increasing
    # Data freshness: the last event is the as-of day itself.
    fresh = {f["source"]: f for f in payload["freshness"]}
    assert fresh["events"]["days_behind"] == 0
    # No backtest in this store (the model was logged without a training run's artifacts).
    assert payload["backtest"] == {"available": False}
    # The scoring run's monitoring findings travel into the page as they were written.
    written = json.loads((out / "scores.monitor.json").read_text())
    for key in ("as_of_date", "model_version", "alerts", "ok", "freshness", "performance"):
        assert payload["monitor"][key] == written[key], key
    assert [d["metric"] for d in payload["monitor"]["drift"]] == [d["metric"] for d in written["drift"]]
    assert payload["monitor"]["ok"] and payload["monitor"]["drift"]


def test_missing_scores_are_a_clear_error(tmp_path, scoring_book):
    with pytest.raises(HealthscoreError, match="run `healthscore score` first"):
        report(tmp_path / "scores.csv", scoring_book[1], tmp_path / "r.html", CONFIG)


def test_render_puts_no_data_in_markup():
    payload = {"meta": {"title": HOSTILE}, "x": HOSTILE}
    html = render(payload)
    assert HOSTILE not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_report_opens_in_a_real_browser(built):
    result, _ = built
    check_in_browser(result.path, "report")
