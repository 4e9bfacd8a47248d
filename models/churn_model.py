"""The learned models: a regularised logistic baseline and calibrated LightGBM, blended.

``CalibratedLightGBM`` is the whole fitted pipeline that scoring needs: the metric
columns it was trained on, the booster and a Platt calibrator fitted out-of-time (on
the latest training observations, which the booster did not learn from). Platt scaling
keeps log-odds linear: calibrated log-odds = a * booster log-odds + b, so the booster's
SHAP contributions, times a, are exact contributions to the calibrated log-odds. An
isotonic calibrator is fitted next to it on the same rows, for the backtest's
comparison only. With ``blend_weights`` the trees' calibrated log-odds are blended with
a direction-bound logistic regression's and the practitioners' scorecard's (both
linear, so every metric's contribution stays exact) and calibrated once more with the
contract calendar (:mod:`models.blend`).
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
from models.health import HealthScale, yearly_log_odds
from models.scorecard import HandWeightedScorecard
from models.renewal import CALENDAR, TERM_LENGTH, health_log_odds, split_calendar, window_probability

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


# A Platt slope below this says the calibration window contradicts the model's ranking
# (a cohort whose outcomes all arrived at once): the window is not trusted with it.
MIN_PLATT_SLOPE = 0.1


def platt(log_odds: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Platt scaling (slope, intercept) of ``log_odds`` on ``y``; the identity (1, 0)
    when the slope comes out below :data:`MIN_PLATT_SLOPE`.

    >>> z = np.linspace(-3, 3, 200)
    >>> platt(z, (np.sin(z * 7) > 0).astype(int))
    (1.0, 0.0)
    """
    fit = LogisticRegression(C=1e6, max_iter=1000).fit(np.asarray(log_odds).reshape(-1, 1), y)
    slope = float(fit.coef_[0, 0])
    return (slope, float(fit.intercept_[0])) if slope >= MIN_PLATT_SLOPE else (1.0, 0.0)


class DirectedLogistic(ClassifierMixin, BaseEstimator):
    """The logistic baseline with every metric's weight in its catalog direction.

    A plain logistic regression can give a "healthier" metric a positive weight when it
    moves with a stronger one; blended into the health score, more usage would then read
    as riskier. Metrics whose weight points the wrong way are dropped and the model refit
    until none does (the calendar and metrics without a direction are free).

    Args:
        directions: Metric -> catalog direction.
        seed: Random seed.
        C: Inverse regularisation strength.
    """

    def __init__(self, directions: dict | None = None, seed: int = 0, C: float = 0.05):
        self.directions = directions
        self.seed = seed
        self.C = C

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> DirectedLogistic:
        sign = {Direction.HEALTHIER: -1.0, Direction.RISKIER: 1.0}
        want = {c: sign.get((self.directions or {}).get(c), 0.0) for c in X.columns}
        keep = list(X.columns)
        while True:
            pipeline = logistic_baseline(self.seed, self.C).fit(X[keep], y)
            coef = pipeline.named_steps["model"].coef_[0][:len(keep)]
            wrong = {c for c, w in zip(keep, coef) if want[c] * w < 0}
            if not wrong or len(wrong) == len(keep):
                break
            keep = [c for c in keep if c not in wrong]
        self.features_, self.pipeline_ = keep, pipeline
        self.classes_ = np.array([0, 1])
        return self

    def decision_function(self, X: pd.DataFrame) -> np.ndarray:
        return self.pipeline_.decision_function(X[self.features_])

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return self.pipeline_.predict_proba(X[self.features_])

    def contributions(self, X: pd.DataFrame) -> pd.DataFrame:
        """Each metric's exact part of :meth:`decision_function` (its standardised value
        and missing-value flag times their weights), plus ``base`` (the intercept).
        Columns: every column of ``X`` (0 for a dropped metric)."""
        transformed = self.pipeline_[:-1].transform(X[self.features_])
        model = self.pipeline_.named_steps["model"]
        names = self.pipeline_.named_steps["impute"].get_feature_names_out(self.features_)
        metric = pd.Index(names).str.replace(r"^missingindicator_", "", regex=True)
        parts = pd.DataFrame(transformed * model.coef_[0], index=X.index).T.groupby(
            metric.to_numpy(), sort=False).sum().T
        out = pd.DataFrame(0.0, index=X.index, columns=list(X.columns))
        out[list(parts.columns)] = parts.to_numpy()
        out["base"] = float(model.intercept_[0])
        return out


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
        score_reference, score_points_to_double: The health score's scale
            (:class:`models.health.HealthScale`).
        horizon_days, lead_days: The window of :meth:`churn_probability`.
        blend_weights: (trees, logistic, scorecard) weights summing to 1; None: the
            trees alone.
    """

    def __init__(self, params: dict | None = None, directions: dict | None = None,
                 monotone: bool = True, calibration_days: int = 112, seed: int = 7,
                 score_reference: float = 70.0, score_points_to_double: float = 15.0,
                 horizon_days: int = 90, lead_days: int = 0,
                 blend_weights: tuple[float, float, float] | None = None):
        self.params = params
        self.blend_weights = blend_weights
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
        self.platt_a_, self.platt_b_ = platt(margin, y[held])
        self.isotonic_ = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(margin, y[held])
        self._fit_blend(fit_X, y[~held], cal_X, y[held])
        self.classes_ = np.array([0, 1])
        self.n_calibration_ = int(held.sum())
        # The health-score scale is part of the fitted model: the score is the risk of
        # churn within a year, and the typical account it learned from (the median of
        # its renewal decisions) scores the reference.
        self.per_year_ = True
        self.scale_ = HealthScale(self._typical_yearly_risk(X), self.score_reference,
                                  self.score_points_to_double)
        return self

    def _fit_blend(self, fit_X: pd.DataFrame, fit_y: np.ndarray, cal_X: pd.DataFrame,
                   cal_y: np.ndarray) -> None:
        """The baselines the trees are blended with, when ``blend_weights`` gives them a
        weight: the direction-bound logistic regression and the practitioners' scorecard.
        Like the trees, they learn from the rows before the calibration window; the
        blend of the three calibrated log-odds is then calibrated once more on the
        window (Platt: a weighted mean of calibrated log-odds is under-confident). The
        weights are chosen outside, on the backtest of earlier folds (:mod:`models.blend`)."""
        weights = np.asarray(self.blend_weights if self.blend_weights is not None else (1.0, 0.0, 0.0),
                             dtype=float)
        if weights.shape != (3,) or (weights < 0).any() or not np.isclose(weights.sum(), 1.0):
            raise ValueError(f"blend_weights must be three non-negative weights summing to 1, not {weights}")
        self.blend_weights_ = weights
        self.blend_platt_ = (1.0, 0.0)
        self.blend_calendar_ = np.zeros(len(self.calendar_))
        self.components_ = [
            DirectedLogistic(self.directions, self.seed).fit(fit_X, fit_y) if weights[1] > 0 else None,
            HandWeightedScorecard().fit(fit_X, fit_y) if weights[2] > 0 else None,
        ]
        if weights[0] < 1:
            self._calibrate_blend(cal_X, cal_y)

    def _calibrate_blend(self, cal_X: pd.DataFrame, cal_y: np.ndarray) -> None:
        """Platt scaling of the blend on the calibration window, with the contract
        calendar beside it: the scorecard does not know the term, so blending it in
        pulls an annual renewal's risk towards a monthly one's; the calendar's terms
        (log days to the renewal and log term length, as in the trees' offset) put
        them back. Without a clear positive slope the window is not trusted
        (:data:`MIN_PLATT_SLOPE`) and the blend stays as it is."""
        z = self._blended(cal_X).reshape(-1, 1)
        design = np.hstack([z, self._calendar_z(cal_X) - self.calendar_mean_]) if self.calendar_ else z
        fit = LogisticRegression(C=1e6, max_iter=1000).fit(design, cal_y)
        if fit.coef_[0, 0] >= MIN_PLATT_SLOPE:
            self.blend_platt_ = (float(fit.coef_[0, 0]), float(fit.intercept_[0]))
            self.blend_calendar_ = fit.coef_[0, 1:].astype(float)

    def _calendar_shift(self, X: pd.DataFrame) -> np.ndarray:
        """The blend calibration's calendar terms, per row and calendar metric."""
        weights = getattr(self, "blend_calendar_", None)
        if weights is None or not len(weights):
            return np.zeros((len(X), 0))
        return (self._calendar_z(X) - self.calendar_mean_) * weights

    def _blended(self, X: pd.DataFrame) -> np.ndarray:
        """The model's calibrated log-odds: the trees' (Platt), blended with the
        baselines' when they have a weight."""
        weights = getattr(self, "blend_weights_", np.array([1.0]))
        out = weights[0] * (self.platt_a_ * self.raw_log_odds(X) + self.platt_b_) if weights[0] else 0.0
        for component, w in zip(getattr(self, "components_", []), weights[1:]):
            if component is not None and w:
                out = out + w * component.decision_function(X[self.features_])
        return np.broadcast_to(np.asarray(out, dtype=float), (len(X),)).copy()

    def _typical_yearly_risk(self, X: pd.DataFrame, rows: int = 50_000) -> float:
        """The median yearly churn risk of the training rows (account-weeks: each
        account counts for the time it was observed, whatever its term), on a seeded
        sample of at most ``rows`` rows.

        Anchoring on the median rather than the mean keeps the scale's centre on a
        typical account when a few accounts carry most of the risk (a mean anchor put the
        median account of a high-churn book at 97 points).
        """
        picked = np.arange(len(X))
        if len(X) > rows:
            picked = np.sort(np.random.default_rng(self.seed).choice(len(X), rows, replace=False))
        odds = self.health_log_odds(X.iloc[picked])
        median = float(np.nanmedian(odds))
        return float(np.clip(1 / (1 + np.exp(-median)), 1e-4, 1 - 1e-4))

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
        """Calibrated log-odds of churn (the trees', blended with the baselines')."""
        a, b = getattr(self, "blend_platt_", (1.0, 0.0))
        return a * self._blended(X) + b + self._calendar_shift(X).sum(axis=1)

    def predict_proba(self, X: pd.DataFrame, calibration: str = "platt") -> np.ndarray:
        """Churn at the next renewal: ``platt`` (the model), ``isotonic`` (the trees alone,
        isotonic) or ``trees`` (the trees alone, Platt)."""
        if calibration == "isotonic":
            p = self.isotonic_.predict(self.raw_log_odds(X))
        elif calibration == "trees":
            p = 1 / (1 + np.exp(-(self.platt_a_ * self.raw_log_odds(X) + self.platt_b_)))
        else:
            p = 1 / (1 + np.exp(-self.log_odds(X)))
        return np.column_stack([1 - p, p])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)

    def renewal_risk(self, X: pd.DataFrame) -> np.ndarray:
        """Calibrated probability of churn at the next renewal."""
        return self.predict_proba(X)[:, 1]

    def health_score(self, X: pd.DataFrame) -> np.ndarray:
        """The 0-100 health score: the risk of churn within a year (the renewal risk
        without the distance to the renewal, :func:`models.renewal.health_log_odds`,
        over the account's renewals in a year, :func:`models.health.yearly_log_odds`),
        on the model's points scale."""
        return self.scale_.score(self.health_log_odds(X))

    def health_log_odds(self, X: pd.DataFrame, contributions: pd.DataFrame | None = None) -> np.ndarray:
        """The log-odds the health score is a scale of: churn within a year, whatever the
        distance to the renewal (models fitted before the score was per year: per
        renewal)."""
        renewal = health_log_odds(self.contributions(X) if contributions is None else contributions)
        return yearly_log_odds(renewal, self.term_days(X)) if getattr(self, "per_year_", False) else renewal

    def health_breakdown(self, X: pd.DataFrame, contributions: pd.DataFrame | None = None
                         ) -> tuple[np.ndarray, pd.DataFrame, np.ndarray]:
        """The health score, each metric's points and the reference score, per row.

        The points are the metrics about the customer (the calendar is left out:
        :func:`models.renewal.split_calendar`); they add up to the score minus the
        reference score, the score of the model's average account with this account's
        term length.
        """
        contributions = self.contributions(X) if contributions is None else contributions
        about_customer, start = split_calendar(contributions)
        term = self.term_days(X)
        points = self.scale_.points(about_customer, health_log_odds(contributions), start, term)
        reference = self.scale_.score(start if term is None else yearly_log_odds(start, term))
        return self.scale_.score(self.health_log_odds(X, contributions)), points, reference

    def term_days(self, X: pd.DataFrame) -> np.ndarray | None:
        """Each row's term length in days (None for a model that scores per renewal)."""
        if not getattr(self, "per_year_", False):
            return None
        return (X[TERM_LENGTH].to_numpy(dtype=float, na_value=np.nan) if TERM_LENGTH in X.columns
                else np.full(len(X), np.nan))

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
        weights = getattr(self, "blend_weights_", np.array([1.0]))
        out = pd.DataFrame(raw[:, :-1], columns=self.features_, index=X.index)
        base = raw[:, -1]
        if getattr(self, "offset_", None) is not None:
            # The offset is linear in the calendar design: each calendar metric's part,
            # measured from the training mean, is its contribution; the rest is base.
            w = self.offset_.coef_[0]
            parts = (self._calendar_z(X) - self.calendar_mean_) * w
            for j, name in enumerate(self.calendar_):
                out[name] += parts[:, j]
            base = base + self.offset_.intercept_[0] + float(self.calendar_mean_ @ w)
        out = out * (self.platt_a_ * weights[0])
        base = (base * self.platt_a_ + self.platt_b_) * weights[0]
        # Blended baselines are linear: their exact parts add in with their weights.
        for component, w in zip(getattr(self, "components_", []), weights[1:]):
            if component is not None and w:
                parts = component.contributions(X[self.features_])
                out += w * parts[self.features_].to_numpy()
                base = base + w * parts["base"].to_numpy()
        a, b = getattr(self, "blend_platt_", (1.0, 0.0))
        out = out * a
        for j, part in enumerate(self._calendar_shift(X).T):
            out[self.calendar_[j]] += part
        out["base"] = a * base + b
        return out
