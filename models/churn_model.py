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

from features.metric import Direction
from models import tree_shap
from models.health import HealthScale
from models.renewal import CALENDAR, health_log_odds, window_probability

KEYS = ["account_id", "as_of_date"]
NOT_FEATURES = {*KEYS, "churned", "label_known_at", "segment", "renewal_date",
                "churned_window", "window_known_at"}

LGBM_DEFAULTS: dict[str, float | int] = {
    "learning_rate": 0.05,
    # Small trees: many weekly rows per account carry little independent signal, and
    # on demo books of several seeds 7 leaves beat 15 and 31 out-of-time. At least 200
    # rows a leaf (a renewal decision has up to 52 weekly rows) and a 112-day
    # calibration window were chosen on a book of seed 13, not the demo's: 90-day
    # ROC-AUC 0.852 -> 0.867, renewal risk 0.736 -> 0.755 (docs/model.md).
    "num_leaves": 7,
    "min_child_samples": 200,
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


def _calendar_design(calendar: pd.DataFrame) -> np.ndarray:
    """The calendar offset's inputs: log(1 + days) of each calendar metric."""
    return np.log1p(np.clip(calendar.to_numpy(dtype=float, na_value=np.nan), 0, None))


class CalibratedLightGBM(ClassifierMixin, BaseEstimator):
    """LightGBM with early stopping and out-of-time Platt calibration: the renewal risk.

    ``predict_proba`` is the risk that the account churns at its next renewal (the end
    of its current term); :meth:`churn_probability` turns it into the probability of
    churn in (D + lead, D + lead + horizon] with the contract calendar
    (:mod:`models.renewal`).

    Args:
        params: LightGBM parameters over :data:`LGBM_DEFAULTS`.
        directions: Metric -> catalog direction; with ``monotone`` the churn probability
            may only fall as a "healthier" metric rises, and only rise with a "riskier" one.
        monotone: Apply the directions as monotone constraints.
        calibration_days: The latest days of observations held out of the booster, to
            early-stop it and fit the calibrators.
        seed: Random seed.
        horizon_days, lead_days: The window of :meth:`churn_probability`.
    """

    def __init__(self, params: dict | None = None, directions: dict | None = None,
                 monotone: bool = True, calibration_days: int = 112, seed: int = 7,
                 score_reference: float = 70.0, score_points_to_double: float = 15.0,
                 horizon_days: int = 90, lead_days: int = 0):
        self.params = params
        self.directions = directions
        self.monotone = monotone
        self.calibration_days = calibration_days
        self.seed = seed
        self.score_reference = score_reference
        self.score_points_to_double = score_points_to_double
        self.horizon_days = horizon_days
        self.lead_days = lead_days

    def fit(self, X: pd.DataFrame, y: np.ndarray, dates: pd.Series,
            sample_weight: np.ndarray | None = None) -> CalibratedLightGBM:
        """Fit on ``X`` (metric columns), ``y`` (0/1) and the day each row's outcome
        became known: the rows whose outcomes became known in the latest
        ``calibration_days`` (the latest renewal decisions, every observation of their
        terms) are held out of the booster to early-stop it and fit the calibrators."""
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
        # The contract calendar's base risk first (a monthly renewal is churned far less
        # often than an annual one): a logistic offset, and the trees learn the
        # customer's signal on top of it instead of spending their few rounds on it.
        self.calendar_ = [c for c in CALENDAR if c in self.features_]
        self.offset_ = None
        if self.calendar_:
            Z = _calendar_design(fit_X[self.calendar_])
            self.calendar_fill_ = np.nanmedian(Z, axis=0)
            Z = np.where(np.isnan(Z), self.calendar_fill_, Z)
            self.calendar_mean_ = Z.mean(axis=0)
            self.offset_ = LogisticRegression(C=1.0, max_iter=1000).fit(Z, y[~held])
        weight = None if sample_weight is None else np.asarray(sample_weight, dtype=float)
        self.booster_.fit(
            fit_X, y[~held], sample_weight=None if weight is None else weight[~held],
            init_score=self._offset(fit_X), eval_X=(cal_X,), eval_y=(y[held],),
            eval_sample_weight=None if weight is None else [weight[held]],
            eval_init_score=[self._offset(cal_X)], eval_metric="binary_logloss",
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

    def _calendar_z(self, X: pd.DataFrame) -> np.ndarray:
        Z = _calendar_design(X[self.calendar_])
        return np.where(np.isnan(Z), self.calendar_fill_, Z)

    def _offset(self, X: pd.DataFrame) -> np.ndarray:
        """The calendar offset's log-odds (0 without calendar metrics)."""
        if getattr(self, "offset_", None) is None:
            return np.zeros(len(X))
        return self.offset_.decision_function(self._calendar_z(X))

    def raw_log_odds(self, X: pd.DataFrame) -> np.ndarray:
        """The uncalibrated log-odds of churn: the calendar offset plus the booster's."""
        return self.booster_.predict(X[self.features_], raw_score=True,
                                     num_iteration=self.booster_.best_iteration_) + self._offset(X)

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

    def renewal_risk(self, X: pd.DataFrame) -> np.ndarray:
        """Calibrated probability of churn at the next renewal."""
        return self.predict_proba(X)[:, 1]

    def health_score(self, X: pd.DataFrame) -> np.ndarray:
        """The 0-100 health score: the renewal risk without the distance to the renewal
        (:func:`models.renewal.health_log_odds`), on the model's points scale."""
        return self.scale_.score(health_log_odds(self.contributions(X)))

    def churn_probability(self, X: pd.DataFrame) -> np.ndarray:
        """Calibrated P(churn in (D + lead, D + lead + horizon]), from the renewal risk of
        every renewal in that window (0 when there is none)."""
        return window_probability(self.renewal_risk, X, self.horizon_days, self.lead_days)

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
        base = raw[:, -1]
        if getattr(self, "offset_", None) is not None:
            # The offset is linear in the calendar design: each calendar metric's part,
            # measured from the training mean, is its contribution; the rest is base.
            w = self.offset_.coef_[0]
            parts = (self._calendar_z(X) - self.calendar_mean_) * w
            for j, name in enumerate(self.calendar_):
                out[name] += parts[:, j] * self.platt_a_
            base = base + self.offset_.intercept_[0] + float(self.calendar_mean_ @ w)
        out["base"] = base * self.platt_a_ + self.platt_b_
        return out
