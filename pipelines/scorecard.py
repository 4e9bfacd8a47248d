"""Pipeline stage: the classic hand-weighted scorecard, run as teams run it today.

Builds the metric history as of D, scales every scorecard metric on the portfolio's
history up to D (percentiles, 0-10), and writes each account's 0-100 score, band and
category scores as of D. No outcomes are needed; it is the baseline `train` beats.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd

from healthscore.config import Config
from models.churn_model import feature_columns
from models.health import fixed_bands
from models.scorecard import HandWeightedScorecard
from pipelines.features import load_book
from pipelines.io import write_table


def run_scorecard(data_dir: Path, as_of: dt.date | None, config: Config, out: Path,
                  store: Path | None = None) -> pd.DataFrame:
    """Score every account active at ``as_of`` with the hand weights; write and return it."""
    book = load_book(data_dir, as_of, config, store=store)
    as_of, history = book.as_of, book.history
    features = feature_columns(history)
    card = HandWeightedScorecard().fit(history[features])
    today = history.loc[history["as_of_date"] == pd.Timestamp(as_of)].reset_index(drop=True)
    categories = card.category_scores(today[features]).round(1)
    score = card.health_score(today[features])
    scored = pd.DataFrame({
        "account_id": today["account_id"], "as_of_date": today["as_of_date"],
        "scorecard_score": score.round(1), "band": fixed_bands(score),
        **{f"{name}_score_0_10": categories[name] for name in categories.columns},
    }).sort_values(["scorecard_score", "account_id"], ignore_index=True)
    write_table(scored, out)
    return scored
