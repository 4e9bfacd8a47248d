"""Time-aware hyper-parameter search for LightGBM with Optuna.

The objective is the pooled out-of-time ROC-AUC over the *tuning* folds, which lie
before the reported backtest period, so the reported numbers are never tuned on. Each
fold is a step: after it, Optuna's median pruner may stop a trial that is already
behind the others.
"""

from __future__ import annotations

from collections.abc import Callable

import optuna
import pandas as pd
from sklearn.metrics import roc_auc_score

from features.metric import Metric
from healthscore.config import ModelConfig
from models.backtest import Fold, iter_folds
from models.churn_model import feature_columns
from models.observations import decision_weights
from models.training import lightgbm


def search_space(trial: optuna.Trial) -> dict[str, float | int]:
    """LightGBM parameters to search (trees stop early, so no tree count here)."""
    return {
        "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.2, log=True),
        "num_leaves": trial.suggest_int("num_leaves", 4, 63, log=True),
        "min_child_samples": trial.suggest_int("min_child_samples", 20, 400, log=True),
        "colsample_bytree": trial.suggest_float("colsample_bytree", 0.4, 1.0),
        "subsample": trial.suggest_float("subsample", 0.5, 1.0),
        "reg_lambda": trial.suggest_float("reg_lambda", 1e-3, 30.0, log=True),
    }


def objective(observations: pd.DataFrame, folds: list[Fold], config: ModelConfig,
              catalog: tuple[Metric, ...],
              on_trial: Callable[[optuna.Trial, dict, float], None] | None = None):
    """An Optuna objective: pooled ROC-AUC of calibrated LightGBM's renewal risk over
    ``folds`` (the fold's observations whose renewal outcome is known)."""
    prepared = list(iter_folds(observations, folds))
    if not prepared:
        raise ValueError("no tuning fold has test rows and both outcomes in training")

    def run(trial: optuna.Trial) -> float:
        params = search_space(trial)
        ys, ps = [], []
        for step, (_, train, test) in enumerate(prepared):
            features = feature_columns(train)
            model = lightgbm(config, catalog, params=params).fit(
                train[features], train["churned"], train["label_known_at"], decision_weights(train))
            known = test.loc[test["label_known_at"].notna()]
            ys.append(known["churned"].to_numpy())
            ps.append(model.renewal_risk(known[features]))
            y, p = pd.Series([v for a in ys for v in a]), pd.Series([v for a in ps for v in a])
            value = float(roc_auc_score(y, p)) if y.nunique() == 2 else 0.5
            trial.report(value, step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        if on_trial:
            on_trial(trial, params, value)
        return value

    return run


def study(seed: int) -> optuna.Study:
    """A maximising study with a seeded sampler and a median pruner."""
    return optuna.create_study(
        direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0),
    )
