"""Scoring end to end on a demo book with a real registered model (MLflow SQLite store)."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from healthscore.config import Config
from healthscore.errors import HealthscoreError
from pipelines.cli import app
from pipelines.score import score

CONFIG = Config()
BANDS = {"Critical", "At-risk", "Healthy", "Thriving", "insufficient_data"}


@pytest.fixture(scope="module")
def setup(scoring_book):
    """The shared scoring book (conftest), with MLflow pointed at its store for this module."""
    root, data, as_of = scoring_book
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    yield root, data, as_of
    mp.undo()


def run(setup, as_of: dt.date, out: str = "scores.csv", **kw) -> pd.DataFrame:
    root, data, _ = setup
    return score(data, as_of, CONFIG, root / "out" / out, progress=lambda m: None, **kw).scores


@pytest.fixture(scope="module")
def scored(setup) -> pd.DataFrame:
    """One scoring run as of the data's last day, written to out/scores.csv."""
    return run(setup, setup[2])


def test_output_follows_the_contract(setup, scored):
    root, _, as_of = setup
    scores = scored
    for column in ("account_id", "as_of_date", "churn_probability", "health_score", "band",
                   "drivers", "model_version", "horizon_days"):
        assert column in scores.columns
    known = scores["band"] != "insufficient_data"
    assert scores.loc[known, "health_score"].between(0, 100, inclusive="neither").all()
    assert set(scores["band"]) <= BANDS and (scores["horizon_days"] == 90).all()
    assert scores.loc[~known, "health_score"].isna().all()  # no silent guess
    assert pd.read_csv(root / "out" / "scores.csv")["account_id"].tolist() == scores["account_id"].tolist()


@pytest.fixture(scope="module")
def model_view(setup):
    """The champion model and the metric rows it scored as of the data's last day."""
    from pipelines import registry
    from pipelines.features import stage_and_build
    from pipelines.score import scoring_snapshots
    from pipelines.validate import load_data_folder

    _, data, as_of = setup
    registry.connect(CONFIG.model.experiment)
    wrapped, _ = registry.load(f"models:/{CONFIG.model.registered_model}@{registry.CHAMPION}")
    history = stage_and_build(load_data_folder(data), as_of, CONFIG,
                              snapshots=scoring_snapshots(as_of, CONFIG.metrics.snapshot_every_days))
    today = history.loc[history["as_of_date"] == pd.Timestamp(as_of)].reset_index(drop=True)
    return wrapped.model, today


def test_score_is_the_yearly_risk_without_the_distance_to_the_renewal(scored, model_view):
    from models.health import yearly_log_odds
    from models.renewal import DAYS_TO_RENEWAL, TERM_LENGTH

    model, today = model_view
    assert scored["account_id"].tolist() == today["account_id"].tolist()
    X = today[model.features_]
    ok = scored["health_score"].notna().to_numpy()
    assert ok.sum() > 100
    risk = model.renewal_risk(X)
    np.testing.assert_allclose(scored.loc[ok, "renewal_risk"], risk[ok], rtol=1e-9)
    np.testing.assert_allclose(scored.loc[ok, "churn_probability"], model.churn_probability(X)[ok],
                               rtol=1e-9)
    contributions = model.contributions(X)
    term = X[TERM_LENGTH].to_numpy()
    # The renewal risk without the distance to the renewal, over a year of renewals.
    renewal = np.log(risk / (1 - risk)) - contributions[DAYS_TO_RENEWAL].to_numpy()
    expected = model.scale_.score(yearly_log_odds(renewal, term))
    np.testing.assert_allclose(scored.loc[ok, "health_score"], expected[ok], atol=0.051)  # to 0.1
    # The reference is per account: the model's base plus its term length's contribution.
    start = (contributions["base"] + contributions[TERM_LENGTH]).to_numpy()
    np.testing.assert_allclose(scored["reference_score"],
                               model.scale_.score(yearly_log_odds(start, term)), atol=0.0051)
    assert scored["reference_score"].nunique() > 1
    # The renewal date is the as-of date plus the days to the next renewal.
    days = (pd.to_datetime(scored["renewal_date"]) - pd.to_datetime(scored["as_of_date"])).dt.days
    np.testing.assert_array_equal(days, today[DAYS_TO_RENEWAL].to_numpy())
    # Not the renewal risk itself: taking the distance out reorders accounts.
    assert not scored.loc[ok].sort_values("renewal_risk")["health_score"].is_monotonic_decreasing


def test_bands_follow_the_score(scored):
    scores = scored.dropna(subset=["health_score"])
    ordered = scores.sort_values("health_score")
    rank = {"Critical": 0, "At-risk": 1, "Healthy": 2, "Thriving": 3}
    assert ordered["band"].map(rank).is_monotonic_increasing
    assert ordered["band"].nunique() >= 2



def test_the_contract_calendar_is_never_a_driver(scored):
    # The days to the renewal and the term length condition the model; they are not
    # about the customer, so no driver text or points names them.
    text = " ".join(scored["drivers"]) + " ".join(scored["top_risks"]) + " ".join(scored["top_strengths"])
    assert "Risks: " in text
    assert "Days to the next renewal" not in text and "Length of the longest current term" not in text
    assert not any("renewal_days" in c or "term_length" in c for c in scored.columns)


def test_drivers_add_up_to_the_gap_from_the_reference(scored):
    scores = scored.dropna(subset=["health_score"])
    points = scores.filter(like="points_").sum(axis=1)
    gap = scores["health_score"] - scores["reference_score"]
    assert (points - gap).abs().max() < 0.15  # rounding: the score to 0.1, groups to 0.01
    worst = scores.sort_values("health_score").iloc[0]
    assert worst["drivers"].startswith("Risks: ")
    assert re.search(r"\(−\d+(\.\d)? points?\)", worst["drivers"]), worst["drivers"]


def _stored(store: Path, as_of: dt.date) -> tuple[pd.DataFrame, pd.DataFrame]:
    from pipelines import store as metric_store
    from pipelines.history import read_alerts, read_runs

    with metric_store.opened(store, CONFIG) as kept:
        return read_runs(kept, pd.Timestamp(as_of)), read_alerts(kept)


def test_scoring_the_same_day_twice_changes_nothing(setup):
    root, _, as_of = setup
    first = run(setup, as_of, "twice.csv")
    runs, alerts = _stored(root / "out" / "store.duckdb", as_of)
    assert (runs["as_of_date"] == pd.Timestamp(as_of)).sum() == len(first)  # the run is kept
    second = run(setup, as_of, "twice.csv")
    pd.testing.assert_frame_equal(first, second)
    again, alerts_again = _stored(root / "out" / "store.duckdb", as_of)
    pd.testing.assert_frame_equal(runs, again)
    pd.testing.assert_frame_equal(alerts, alerts_again)


@pytest.mark.slow
def test_trend_and_debounced_alerts_over_runs(setup):
    root, data, as_of = setup
    store = root / "trend.duckdb"
    runs = [score(data, as_of - dt.timedelta(days=d), CONFIG, root / "out" / f"t{d}.csv",
                  store=store, progress=lambda m: None) for d in (14, 7, 0)]
    last, previous = runs[-1].scores.set_index("account_id"), runs[-2].scores.set_index("account_id")
    both = last.index.intersection(previous.index)
    change = (last.loc[both, "health_score"] - previous.loc[both, "health_score"]).dropna()
    np.testing.assert_allclose(last.loc[change.index, "score_change"], change, atol=1e-9)
    assert last["runs_in_band"].between(1, 3).all()
    # A band change is alerted once it has held two runs, and only then: with three runs,
    # exactly the accounts whose last two bands agree and differ from the first.
    bands = pd.concat([r.scores.set_index("account_id")["band"] for r in runs], axis=1,
                      keys=["first", "second", "last"]).dropna()
    held = bands.loc[(bands["second"] == bands["last"]) & (bands["first"] != bands["last"])]
    expected = set(zip(held.index, [pd.Timestamp(as_of)] * len(held), held["first"], held["last"]))
    assert expected, "the book has no band change that held two runs: nothing is tested"
    alerts = _stored(store, as_of)[1]
    assert set(zip(alerts["account_id"], alerts["as_of_date"], alerts["from_band"],
                   alerts["to_band"])) == expected
    assert len(alerts) == len(expected)
    # This run's alerts are also a file beside its scores.
    exported = pd.read_csv(root / "out" / "t0.alerts.csv", parse_dates=["as_of_date"])
    assert len(exported) == len(expected)


def test_crm_csv_neutralises_formulas(setup, scored):
    root, _, as_of = setup
    text = (root / "out" / "scores.csv").read_text()
    assert "'=HYPERLINK" in text and ',=HYPERLINK' not in text and ',"=HYPERLINK' not in text
    # Only the CSV is neutralised: the frame (and so the Parquet export) keeps the data.
    assert scored["account_name"].str.startswith("=HYPERLINK").any()


def test_unknown_model_is_a_clear_error(setup, tmp_path):
    root, data, as_of = setup
    with pytest.raises(HealthscoreError, match="models:/nope@champion: not found in the MLflow store"):
        score(data, as_of, CONFIG, tmp_path / "s.csv", model_uri="models:/nope@champion",
              progress=lambda m: None)
    result = CliRunner().invoke(app, ["score", "--data", str(data), "--out", str(tmp_path / "s.csv"),
                                      "--model", "models:/nope/3"])
    assert result.exit_code == 2 and "not found" in result.output
    assert not (tmp_path / "s.csv").exists()


def test_metrics_that_do_not_match_the_model_are_a_clear_error(setup, tmp_path):
    _, data, as_of = setup
    other = Config(metrics=CONFIG.metrics.model_copy(update={"event_types": ("login",)}))
    with pytest.raises(HealthscoreError, match="needs metrics this data does not produce: event_"):
        score(data, as_of, other, tmp_path / "s.csv", progress=lambda m: None)


def test_the_newest_model_version_wins_a_day_by_number_not_text(tmp_path):
    from pipelines import store as metric_store
    from pipelines.history import append_run, read_runs

    day = pd.Timestamp("2026-09-30")
    with metric_store.opened(tmp_path / "store.duckdb", CONFIG) as kept:
        for version, health in (("9", 40.0), ("10", 70.0)):
            append_run(kept, pd.DataFrame({"account_id": ["a"], "as_of_date": [day],
                                           "health_score": [health], "band": ["x"],
                                           "model_version": [version], "churn_probability": [0.1]}))
        runs = read_runs(kept, day)
    assert runs["model_version"].tolist() == ["10"] and runs["health_score"].tolist() == [70.0]


@pytest.mark.slow  # end to end, twice; CI's slow suite runs it
def test_scores_and_alerts_from_an_incremental_store_equal_a_rebuild(setup, tmp_path):
    """The weekly job on a store that saw last week's export, late rows and an edit
    gives the same scores and alerts, bit for bit, as a fresh store built from this
    week's files (holding the same earlier score runs)."""
    import shutil

    from pipelines import store as metric_store
    from pipelines.history import append_run, read_alerts, read_runs, replace_alerts

    _, data, as_of = setup
    events = pd.read_parquet(data / "events.parquet")
    stamps = pd.to_datetime(events["timestamp"])
    last_week = pd.Timestamp(as_of) - pd.Timedelta(days=7)
    late = events.index[stamps < last_week][::997]  # reach the export a week late
    earlier, now = tmp_path / "earlier", tmp_path / "now"
    for folder in (earlier, now):
        shutil.copytree(data, folder)
    events.loc[(stamps < last_week + pd.Timedelta(days=1)) & ~events.index.isin(late)].to_parquet(
        earlier / "events.parquet", index=False)
    edited = events.copy()
    row = events.index[stamps < last_week - pd.Timedelta(days=20)][5]
    edited.loc[row, "event"] = "export"  # an old row corrected in this week's export
    edited.to_parquet(now / "events.parquet", index=False)

    weekly = tmp_path / "weekly.duckdb"
    score(earlier, last_week.date(), CONFIG, tmp_path / "a" / "scores.csv", store=weekly,
          progress=lambda m: None)
    incremental = score(now, as_of, CONFIG, tmp_path / "a" / "scores.csv", store=weekly,
                        progress=lambda m: None)
    fresh = tmp_path / "fresh.duckdb"
    with metric_store.opened(weekly, CONFIG) as kept, metric_store.opened(fresh, CONFIG) as new:
        runs = read_runs(kept, last_week)
        append_run(new, runs.assign(model_version=runs["model_version"].astype(str)))
        old_alerts = read_alerts(kept)
        old_alerts = old_alerts.loc[old_alerts["as_of_date"] < pd.Timestamp(as_of)]
        for day, alerts in old_alerts.groupby("as_of_date"):
            replace_alerts(new, day, alerts)
    rebuilt = score(now, as_of, CONFIG, tmp_path / "b" / "scores.csv", store=fresh,
                    progress=lambda m: None)
    assert incremental.scores["score_change"].notna().any()  # the trend read last week's run
    pd.testing.assert_frame_equal(incremental.scores, rebuilt.scores, check_exact=True)
    pd.testing.assert_frame_equal(incremental.alerts, rebuilt.alerts, check_exact=True)
    with metric_store.opened(weekly, CONFIG) as kept, metric_store.opened(fresh, CONFIG) as new:
        day = [as_of - dt.timedelta(days=28), as_of]
        pd.testing.assert_frame_equal(kept.read_history(day), new.read_history(day), check_exact=True)
        pd.testing.assert_frame_equal(read_alerts(kept), read_alerts(new), check_exact=True)
