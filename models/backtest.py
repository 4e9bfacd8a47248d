"""Walk-forward, out-of-time backtest: every model on the same rows, folds in time order.

Observation dates in the reported period are cut into folds of ``fold_days``. For a
fold starting at S, a model learns only from observations whose label was certain by S
(``label_known_at <= S``) and is tested on the fold's observations. There are many
observations per account; time is the split, so an account's past trains the model
that scores its future, exactly as in production, and nothing from the fold's future
is seen. Tuning uses folds *before* the reported period (see :func:`fold_plan`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.evaluation import scores


@dataclass(frozen=True)
class Fold:
    """Test observation dates [start, end); training labels known by ``start``."""

    number: int
    start: pd.Timestamp
    end: pd.Timestamp


def fold_plan(observations: pd.DataFrame, folds: int, fold_days: int,
              tuning_folds: int = 0) -> tuple[list[Fold], list[Fold]]:
    """Backtest folds over the latest labelled observation dates, and tuning folds before them.

    Args:
        observations: Labelled observations (only those with a known label).
        folds: Number of reported folds.
        fold_days: Days of observation dates per fold.
        tuning_folds: Number of folds right before the reported period, for tuning.

    Returns:
        (backtest folds, tuning folds), each oldest first.
    """
    last = observations["as_of_date"].max()
    end = last + pd.Timedelta(days=1)
    step = pd.Timedelta(days=fold_days)
    starts = [end - step * k for k in range(folds + tuning_folds, 0, -1)]
    plan = [Fold(i, s, s + step) for i, s in enumerate(starts)]
    tuning, backtest = plan[:tuning_folds], plan[tuning_folds:]
    return ([Fold(i + 1, f.start, f.end) for i, f in enumerate(backtest)],
            [Fold(i + 1, f.start, f.end) for i, f in enumerate(tuning)])


def split(observations: pd.DataFrame, fold: Fold) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(training rows, test rows) of one fold."""
    train = observations.loc[observations["label_known_at"] <= fold.start]
    dates = observations["as_of_date"]
    test = observations.loc[(dates >= fold.start) & (dates < fold.end)]
    return train, test


# A model factory fits on training observations and returns a churn-probability function
# (or several, by name, when one fit yields variants such as two calibrations).
Fitter = Callable[[pd.DataFrame], dict[str, Callable[[pd.DataFrame], np.ndarray]]]


def walk_forward(observations: pd.DataFrame, folds: list[Fold], fitters: dict[str, Fitter],
                 progress: Callable[[str], None] | None = None) -> pd.DataFrame:
    """Predictions of every model on every fold's test rows.

    Returns:
        ``model``, ``fold``, ``account_id``, ``as_of_date``, ``y`` and ``p``.
    """
    parts = []
    for fold, train, test in iter_folds(observations, folds):
        for name, fitter in fitters.items():
            if progress:
                progress(f"fold {fold.number}/{len(folds)}: {name}")
            for variant, predict in fitter(train).items():
                parts.append(pd.DataFrame({
                    "model": variant, "fold": fold.number,
                    "account_id": test["account_id"].to_numpy(),
                    "as_of_date": test["as_of_date"].to_numpy(),
                    "y": test["churned"].to_numpy(), "p": predict(test),
                }))
    return pd.concat(parts, ignore_index=True)


def summarise(predictions: pd.DataFrame, capacity: int,
              segments: pd.Series | None = None) -> dict[str, pd.DataFrame]:
    """Pooled, per-fold and per-segment metrics of every model.

    Args:
        predictions: From :func:`walk_forward`.
        capacity: Accounts a team works per snapshot.
        segments: account_id -> segment (optional).
    """
    def table(keys: list[str]) -> pd.DataFrame:
        rows = [{**dict(zip(keys, k if isinstance(k, tuple) else (k,))), **scores(g, capacity)}
                for k, g in predictions.groupby(keys, sort=True)]
        return pd.DataFrame(rows)

    out = {"pooled": table(["model"]), "folds": table(["model", "fold"])}
    if segments is not None:
        predictions = predictions.assign(segment=predictions["account_id"].map(segments))
        out["segments"] = table(["model", "segment"])
    return out


def iter_folds(observations: pd.DataFrame, folds: list[Fold]) -> Iterator[tuple[Fold, pd.DataFrame, pd.DataFrame]]:
    """(fold, training rows, test rows) for folds with a test set and both outcomes in training."""
    for fold in folds:
        train, test = split(observations, fold)
        if not test.empty and train["churned"].nunique() == 2:
            yield fold, train, test
