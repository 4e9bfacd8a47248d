"""Walk-forward, out-of-time backtest: every model on the same rows, folds in time order.

Observation dates in the reported period are cut into folds of ``fold_days``. For a
fold starting at S, a model learns only from observations whose label was certain by S
(``label_known_at <= S``: the outcome of their term was known by S) and is tested on the
fold's observations. There are many observations per account; time is the split, so an
account's past trains the model that scores its future, exactly as in production, and
nothing from the fold's future is seen. Tuning uses folds *before* the reported period
(see :func:`fold_plan`).

Every model predicts the renewal risk; its churn probability over the horizon follows
from the calendar (:func:`models.renewal.window_probability`). A test row carries both
outcomes as they were known by the training date: ``y`` (churn in the horizon, NaN when
not known yet) and ``y_renewal`` (churn at the next renewal, NaN while pending).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from healthscore.config import ModelConfig
from models.churn_model import split_for_calibration
from models.evaluation import scores
from models.renewal import TERM_LENGTH, window_probability


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


def evaluable(observations: pd.DataFrame) -> pd.DataFrame:
    """The observations whose horizon outcome is known: the folds are laid over their
    dates (the reported period ends where the churn-in-horizon metrics can be measured)."""
    if "churned_window" not in observations:
        return observations
    return observations.loc[observations["churned_window"].notna()]


# Shortest folds and calibration window a short book may be cut down to.
MIN_FOLD_DAYS = 14
MIN_CALIBRATION_DAYS = 14


@dataclass(frozen=True)
class BacktestPlan:
    """The backtest a book's labelled history supports.

    Attributes:
        config: The model settings with the folds, fold length and calibration window
            actually used (the configured ones when the history allows them).
        folds: The reported folds, oldest first (empty: too little history to backtest).
        tuning: The usable tuning folds before them.
        notes: What was changed from the configuration, and why, in words.
    """

    config: ModelConfig
    folds: list[Fold]
    tuning: list[Fold]
    notes: list[str] = field(default_factory=list)


def can_calibrate(labels: np.ndarray, dates: pd.Series, calibration_days: int) -> bool:
    """Both outcomes both in the latest ``calibration_days`` of outcome dates (held
    out to calibrate) and in the rows before them (to fit the booster)."""
    held = split_for_calibration(dates.reset_index(drop=True), calibration_days)
    labels = np.asarray(labels)
    return bool(held.any() and not held.all() and len(set(labels[held])) == 2
                and len(set(labels[~held])) == 2)


def fold_usable(observations: pd.DataFrame, fold: Fold, calibration_days: int) -> bool:
    """A fold can be backtested: test rows, and training rows known by its start that
    hold both outcomes before and inside the calibration window."""
    train, test = split(observations, fold)
    return (not test.empty and train["churned"].nunique() == 2
            and can_calibrate(train["churned"].to_numpy(), train["label_known_at"], calibration_days))


def plan_backtest(observations: pd.DataFrame, config: ModelConfig) -> BacktestPlan:
    """Size the backtest to the labelled history: the configured folds when every one of
    them can be trained and tested, else fewer folds, then shorter folds, then a shorter
    calibration window (never below 14 days), and no backtest at all as the last resort.

    The final model needs only that its own calibration window holds both outcomes;
    :func:`models.backtest.final_calibration_days` checks that.
    """
    configured = (config.folds, config.fold_days, config.calibration_days)
    for calibration in _halvings(config.calibration_days, MIN_CALIBRATION_DAYS):
        for fold_days in _halvings(config.fold_days, MIN_FOLD_DAYS):
            for count in range(config.folds, 0, -1):
                folds, _ = fold_plan(evaluable(observations), count, fold_days)
                if not all(fold_usable(observations, f, calibration) for f in folds):
                    continue
                _, tuning = fold_plan(evaluable(observations), count, fold_days, config.tuning_folds)
                tuning = [f for f in tuning if fold_usable(observations, f, calibration)]
                chosen = config.model_copy(update={
                    "folds": count, "fold_days": fold_days, "calibration_days": calibration})
                notes = [] if (count, fold_days, calibration) == configured else [
                    f"the labelled history supports {count} backtest fold(s) of {fold_days} days "
                    f"with a {calibration}-day calibration window (configured: {config.folds} x "
                    f"{config.fold_days} days, {config.calibration_days}-day calibration)"]
                return BacktestPlan(chosen, folds, tuning, notes)
    labelled = observations.loc[observations["label_known_at"].notna()]
    wait = int((labelled["label_known_at"] - labelled["as_of_date"]).max().days)
    span = int((labelled["as_of_date"].max() - labelled["as_of_date"].min()).days)
    return BacktestPlan(config, [], [], [
        f"no out-of-time backtest: an outcome is known {wait} days after its observation, so a "
        f"fold needs rows with both outcomes more than {wait} days before it, and the labelled "
        f"observations span {span} days (a backtest needs about {wait + MIN_FOLD_DAYS + 28} "
        "days with churns throughout); the model is trained and registered, but its quality "
        "is unmeasured until more outcomes are known"])


def final_calibration_days(observations: pd.DataFrame, calibration_days: int) -> int | None:
    """The longest calibration window, from ``calibration_days`` halving down to a week,
    in which the final fit can hold out both outcomes (and keep both before it); None
    when no window can."""
    labels, dates = observations["churned"].to_numpy(), observations["label_known_at"]
    return next((d for d in _halvings(calibration_days, 7) if can_calibrate(labels, dates, d)), None)


def _halvings(days: int, floor: int) -> list[int]:
    """``days``, then halved while at least ``floor``.

    >>> _halvings(56, 14)
    [56, 28, 14]
    """
    out = [days]
    while out[-1] // 2 >= floor:
        out.append(out[-1] // 2)
    return out


def split(observations: pd.DataFrame, fold: Fold) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(training rows, test rows) of one fold."""
    train = observations.loc[observations["label_known_at"] <= fold.start]
    dates = observations["as_of_date"]
    test = observations.loc[(dates >= fold.start) & (dates < fold.end)]
    return train, test


# A model factory fits on training observations and returns renewal-risk functions (or
# several, by name, when one fit yields variants such as two calibrations).
Fitter = Callable[[pd.DataFrame], dict[str, Callable[[pd.DataFrame], np.ndarray]]]


def walk_forward(observations: pd.DataFrame, folds: list[Fold], fitters: dict[str, Fitter],
                 progress: Callable[[str], None] | None = None, horizon_days: int = 90,
                 lead_days: int = 0, label: str = "fold",
                 position: tuple[int, int] | None = None) -> pd.DataFrame:
    """Predictions of every model on every fold's test rows.

    ``position``: (number, total) to show in the progress messages, when the folds are
    walked one call at a time. A risk function may carry a ``health_score`` attribute (a function of the same
    rows): the product's 0-100 score, whose bands the backtest judges.

    Returns:
        ``model``, ``fold``, ``account_id``, ``as_of_date``, ``renewal_date``,
        ``term_days`` (the current term's length), ``y`` and ``p`` (churn in the
        horizon: outcome, probability), ``y_renewal`` and ``p_renewal`` (churn at the
        next renewal) and ``health_score`` (NaN for a model without one).
    """
    parts = []
    for count, (fold, train, test) in enumerate(iter_folds(observations, folds), start=1):
        y = test["churned_window"].to_numpy(dtype=float) if "churned_window" in test else (
            np.full(len(test), np.nan))
        known = test["label_known_at"].notna().to_numpy()
        y_renewal = np.where(known, test["churned"].to_numpy(dtype=float), np.nan)
        term_days = (test[TERM_LENGTH].to_numpy(dtype=float, na_value=np.nan)
                     if TERM_LENGTH in test else np.full(len(test), np.nan))
        for name, fitter in fitters.items():
            if progress:
                number, total = position or (count, len(folds))
                progress(f"{label} {number}/{total}: {name}")
            for variant, risk in fitter(train).items():
                health = getattr(risk, "health_score", None)
                parts.append(pd.DataFrame({
                    "model": variant, "fold": fold.number,
                    "account_id": test["account_id"].to_numpy(),
                    "as_of_date": test["as_of_date"].to_numpy(),
                    "renewal_date": test["renewal_date"].to_numpy(),
                    "term_days": term_days,
                    "y": y, "p": window_probability(risk, test, horizon_days, lead_days),
                    "y_renewal": y_renewal, "p_renewal": risk(test),
                    "health_score": np.nan if health is None else health(test),
                }))
    return pd.concat(parts, ignore_index=True)


def summarise(predictions: pd.DataFrame, capacity: int,
              segments: pd.Series | None = None) -> dict[str, pd.DataFrame]:
    """Pooled, per-fold and per-segment metrics of every model.

    Args:
        predictions: From :func:`walk_forward` (rows whose horizon outcome is not known
            by the training date are left out).
        capacity: Accounts a team works per snapshot.
        segments: account_id -> segment (optional).
    """
    predictions = predictions.loc[predictions["y"].notna()]

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
