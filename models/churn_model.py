"""The learned models: a regularised logistic baseline and calibrated LightGBM.

``CalibratedLightGBM`` is the whole fitted pipeline that scoring needs: the metric
columns it was trained on, the booster and a Platt calibrator fitted out-of-time (on
the latest training observations, which the booster did not learn from). Platt scaling
keeps log-odds linear: calibrated log-odds = a * booster log-odds + b, so the booster's
SHAP contributions, times a, are exact contributions to the calibrated log-odds. An
isotonic calibrator is fitted next to it on the same rows, for the backtest's
comparison only.
"""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.impute import SimpleImputer
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from features.catalog import Direction
from models import tree_shap
from models.health import HealthScale

KEYS = ["account_id", "as_of_date"]
NOT_FEATURES = {*KEYS, "churned", "label_known_at", "segment"}

LGBM_DEFAULTS: dict[str, float | int] = {
    "learning_rate": 0.05,
    # Small trees: many weekly rows per account carry little independent signal, and
    # on demo books of several seeds 7 leaves beat 15 and 31 out-of-time.
    "num_leaves": 7,
    "min_child_samples": 50,
    "colsample_bytree": 0.8,
    "subsample": 0.8,
    "subsample_freq": 1,
    "reg_lambda": 1.0,
    "n_estimators": 1000,
}
EARLY_STOPPING_ROUNDS = 50


class TooLittleHistory(ValueError):
    """The training rows cannot support a held-out calibration period."""


def feature_columns(frame: pd.DataFrame) -> list[str]:
    """The metric columns of a metric history or observation table, in order."""
    return [c for c in frame.columns if c not in NOT_FEATURES]


def logistic_baseline(seed: int = 0, C: float = 0.05) -> Pipeline:
    """Regularised logistic regression on standardised metrics (missing: median + a flag)."""
    return Pipeline([
        ("impute", SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)),
        ("scale", StandardScaler()),
        ("model", LogisticRegression(C=C, max_iter=5000, random_state=seed)),
    ])


def split_for_calibration(dates: pd.Series, calibration_days: int) -> np.ndarray:
    """True for the observations in the latest ``calibration_days`` of observation dates."""
    cut = dates.max() - pd.Timedelta(days=calibration_days)
    return (dates > cut).to_numpy()


class CalibratedLightGBM(ClassifierMixin, BaseEstimator):
    """LightGBM with early stopping and out-of-time Platt calibration.

    Args:
        params: LightGBM parameters over :data:`LGBM_DEFAULTS`.
        directions: Metric -> catalog direction; with ``monotone`` the churn probability
            may only fall as a "healthier" metric rises, and only rise with a "riskier" one.
        monotone: Apply the directions as monotone constraints.
        calibration_days: The latest days of observations held out of the booster, to
            early-stop it and fit the calibrators.
        seed: Random seed.
    """

    def __init__(self, params: dict | None = None, directions: dict | None = None,
                 monotone: bool = True, calibration_days: int = 56, seed: int = 7,
                 score_reference: float = 70.0, score_points_to_double: float = 15.0):
        self.params = params
        self.directions = directions
        self.monotone = monotone
        self.calibration_days = calibration_days
        self.seed = seed
        self.score_reference = score_reference
        self.score_points_to_double = score_points_to_double

    def fit(self, X: pd.DataFrame, y: np.ndarray, dates: pd.Series) -> CalibratedLightGBM:
        """Fit on ``X`` (metric columns), ``y`` (0/1) and each row's observation date."""
        self.features_ = list(X.columns)
        y = np.asarray(y, dtype=int)
        held = split_for_calibration(pd.Series(dates).reset_index(drop=True), self.calibration_days)
        if held.all() or not held.any() or len(set(y[held])) < 2 or len(set(y[~held])) < 2:
            raise TooLittleHistory(
                f"the latest {self.calibration_days} days of training observations (held out to "
                "calibrate) or the rows before them lack either churned or retained accounts")
        params = {**LGBM_DEFAULTS, **(self.params or {})}
        params["n_estimators"] = int(params["n_estimators"])
        params["num_leaves"] = int(params["num_leaves"])
        params["min_child_samples"] = int(params["min_child_samples"])
        if self.monotone and self.directions:
            sign = {Direction.HEALTHIER: -1, Direction.RISKIER: 1}
            params["monotone_constraints"] = [sign.get(self.directions.get(c), 0) for c in self.features_]
            params["monotone_constraints_method"] = "advanced"
        self.booster_ = lgb.LGBMClassifier(
            **params, random_state=self.seed, n_jobs=2, verbose=-1, deterministic=True,
            force_row_wise=True,
        )
        fit_X, cal_X = X.loc[~held], X.loc[held]
        self.booster_.fit(
            fit_X, y[~held], eval_X=(cal_X,), eval_y=(y[held],), eval_metric="binary_logloss",
            callbacks=[lgb.early_stopping(EARLY_STOPPING_ROUNDS, verbose=False)],
        )
        margin = self.raw_log_odds(cal_X)
        platt = LogisticRegression(C=1e6, max_iter=1000).fit(margin.reshape(-1, 1), y[held])
        self.platt_a_ = float(platt.coef_[0, 0])
        self.platt_b_ = float(platt.intercept_[0])
        self.isotonic_ = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(margin, y[held])
        self.classes_ = np.array([0, 1])
        self.n_calibration_ = int(held.sum())
        # The health-score scale is part of the fitted model: anchored on the base churn
        # rate of the rows it learned from.
        self.scale_ = HealthScale(float(y.mean()), self.score_reference, self.score_points_to_double)
        return self

    def raw_log_odds(self, X: pd.DataFrame) -> np.ndarray:
        """The booster's uncalibrated log-odds of churn."""
        return self.booster_.predict(X[self.features_], raw_score=True,
                                     num_iteration=self.booster_.best_iteration_)

    def log_odds(self, X: pd.DataFrame) -> np.ndarray:
        """Calibrated log-odds of churn (Platt)."""
        return self.platt_a_ * self.raw_log_odds(X) + self.platt_b_

    def predict_proba(self, X: pd.DataFrame, calibration: str = "platt") -> np.ndarray:
        if calibration == "isotonic":
            p = self.isotonic_.predict(self.raw_log_odds(X))
        else:
            p = 1 / (1 + np.exp(-self.log_odds(X)))
        return np.column_stack([1 - p, p])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)

    def contributions(self, X: pd.DataFrame) -> pd.DataFrame:
        """Per-metric contributions to the calibrated log-odds, plus ``base``.

        Exact: each row sums to :meth:`log_odds`, because Platt scaling is linear in the
        booster's log-odds and LightGBM's contributions sum to them. LightGBM's own
        TreeSHAP values, computed once per decision pattern of each tree
        (:mod:`models.tree_shap`): several times faster on a large book.
        """
        values = X[self.features_].to_numpy(dtype=np.float64, na_value=np.nan)
        raw = tree_shap.contributions(self.booster_.booster_, values,
                                      self.booster_.best_iteration_)
        out = pd.DataFrame(raw[:, :-1] * self.platt_a_, columns=self.features_, index=X.index)
        out["base"] = raw[:, -1] * self.platt_a_ + self.platt_b_
        return out
