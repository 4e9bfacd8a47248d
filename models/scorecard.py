"""The hand-weighted scorecard that customer-success teams build today: the baseline.

Practitioners score each metric 0-10, average the metrics of a category, and weight the
categories: product adoption and usage 25%, CSAT and NPS 20%, support 15%, onboarding
10%, engagement 5%, revenue 5% (plus 20% for a "churn probability" item, which is what
this product computes, so it is left out and the rest renormalised to 100). The result
is a 0-100 health score, banded Critical 0-40, At-risk 41-60, Healthy 61-80, Thriving
81-100.

Here "score 0-10" is made concrete and fitted on training data only: a metric's value
is placed on the training distribution (its percentile, times 10), flipped for metrics
where higher is riskier. A missing metric takes its category's other metrics; a category
with nothing known scores a neutral 5. To compare with the models on probabilities, a
one-variable logistic fit on the training data maps the score to a churn probability;
that is monotone, so rankings (AUC, lift, capacity) are the scorecard's own.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression

from features.metric import Direction

# Category -> (weight, the metrics practitioners put in it, with higher-is direction).
SCORECARD: dict[str, tuple[float, tuple[tuple[str, str], ...]]] = {
    "usage": (0.25, (("event_login_count_30d", "healthier"),        # logins in the last 30 days
                     ("key_features_used_count_30d", "healthier"),  # feature adoption
                     ("active_days_count_30d", "healthier"))),      # usage frequency
    "csat_nps": (0.20, (("csat_score_mean_90d", "healthier"), ("nps_score_latest", "healthier"))),
    "support": (0.15, (("tickets_count_30d", "riskier"),             # tickets in the last 30 days
                       ("tickets_high_count_30d", "riskier"))),      # complexity
    "onboarding": (0.10, (("onboarding_completed_share", "healthier"),)),
    "engagement": (0.05, (("marketing_touches_count_30d", "healthier"),)),
    "revenue": (0.05, (("arr_total_current", "healthier"),           # total revenue
                       ("tenure_days_current", "healthier"))),       # lifetime (value) so far
}


class HandWeightedScorecard(ClassifierMixin, BaseEstimator):
    """The practitioners' weighted 0-100 health score, as an estimator.

    Args:
        scorecard: Category weights and metrics (default: :data:`SCORECARD`).
    """

    def __init__(self, scorecard: dict | None = None):
        self.scorecard = scorecard

    def fit(self, X: pd.DataFrame, y: np.ndarray | None = None) -> HandWeightedScorecard:
        """Learn the 0-10 scales from ``X``; with outcomes ``y``, also the probability link."""
        card = self.scorecard or SCORECARD
        # Training quantiles of every metric present: the 0-10 scale.
        self.quantiles_ = {
            metric: np.sort(X[metric].dropna().to_numpy(dtype=float))
            for _, metrics in card.values() for metric, _ in metrics
            if metric in X.columns and X[metric].notna().any()
        }
        self.categories_ = {
            name: (weight, tuple((m, d) for m, d in metrics if m in self.quantiles_))
            for name, (weight, metrics) in card.items()
        }
        self.classes_ = np.array([0, 1])
        if y is not None:
            health = self.health_score(X).reshape(-1, 1)
            self.link_ = LogisticRegression().fit(health, np.asarray(y))
        return self

    def _metric_score(self, X: pd.DataFrame, metric: str, direction: str) -> np.ndarray:
        """A metric's 0-10 score: its training percentile, flipped where higher is
        riskier (NaN where the value is missing)."""
        ref = self.quantiles_[metric]
        values = X[metric].to_numpy(dtype=float)
        pct = np.searchsorted(ref, values, side="right") / len(ref)
        return np.where(np.isnan(values), np.nan,
                        10 * (pct if direction == Direction.HEALTHIER else 1 - pct))

    def category_scores(self, X: pd.DataFrame) -> pd.DataFrame:
        """Each category's 0-10 score (neutral 5 when nothing in it is known)."""
        out = {}
        for name, (_, metrics) in self.categories_.items():
            parts = []
            for metric, direction in metrics:
                parts.append(self._metric_score(X, metric, direction))
            if parts:
                stacked = np.vstack(parts)
                known = ~np.isnan(stacked)
                mean = np.where(known.any(axis=0),
                                np.nansum(stacked, axis=0) / np.maximum(known.sum(axis=0), 1), 5.0)
            else:
                mean = np.full(len(X), 5.0)
            out[name] = mean
        return pd.DataFrame(out, index=X.index)

    def health_score(self, X: pd.DataFrame) -> np.ndarray:
        """The 0-100 score: weighted category scores, weights renormalised to 1."""
        categories = self.category_scores(X)
        weights = pd.Series({n: w for n, (w, _) in self.categories_.items()})
        return (categories[weights.index].to_numpy() @ (weights / weights.sum()).to_numpy()) * 10

    def decision_function(self, X: pd.DataFrame) -> np.ndarray:
        """The churn log-odds of the probability link."""
        return self.link_.decision_function(self.health_score(X).reshape(-1, 1))

    def contributions(self, X: pd.DataFrame) -> pd.DataFrame:
        """Each metric's exact part of :meth:`decision_function`, plus ``base``.

        The link is linear in the score and the score in the category scores, and a
        category is the mean of its known metrics' scores (a neutral 5 when none is
        known). So, measured from a scorecard of neutral 5s (``base``), metric m of
        category c is worth ``slope * 10 * weight_c * (score_m - 5) / known_c``.
        Columns: every column of ``X`` (0 where the scorecard does not use it).
        """
        card = self.categories_
        total = sum(w for w, _ in card.values())
        slope = float(self.link_.coef_[0, 0])
        out = pd.DataFrame(0.0, index=X.index, columns=list(X.columns))
        for _, (weight, metrics) in card.items():
            parts = {metric: self._metric_score(X, metric, direction) for metric, direction in metrics}
            if not parts:
                continue
            known = np.maximum(sum((~np.isnan(v)).astype(float) for v in parts.values()), 1.0)
            for metric, score in parts.items():
                out[metric] += slope * 10 * (weight / total) * np.nan_to_num(score - 5.0) / known
        out["base"] = float(self.link_.intercept_[0]) + slope * 50.0
        return out

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return self.link_.predict_proba(self.health_score(X).reshape(-1, 1))

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)
