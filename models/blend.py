"""Never worse than its baselines: blend the trees with them, by the backtest of earlier folds.

On some books the trees rank churn worse than a plain logistic regression (a book with
few metrics) or than the practitioners' scorecard (a book where the contract metrics
mislead the trees). The product therefore blends the calibrated log-odds of three
models, the trees, the direction-bound logistic regression and the scorecard
(:class:`models.churn_model.CalibratedLightGBM`, ``blend_weights``), with weights on a
grid of tenths chosen where a team could have chosen them: on the out-of-time
predictions of the walk-forward folds *before* the ones it is judged on, by the pooled
ROC-AUC of churn in the horizon, among the rows whose outcome was known by then.

* The reported backtest uses the weights chosen on the folds before it (the
  early-warning folds), never on its own folds.
* The production model uses the weights chosen on every fold whose outcome is known
  at the training date (the same rule, applied later).

The grid is searched on the folds' stored probabilities: the blend of a row's
probabilities in log-odds, which is exact for a window holding one renewal and close
for a monthly account's several. A tie keeps the most weight on the trees.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

# The blended models, in the order of the weights, by their name in the backtest.
PARTS = ("trees", "logistic", "scorecard")
TREES_ONLY = (1.0, 0.0, 0.0)
STEP = 0.1
# How much better than the trees alone a blend must rank the earlier folds' outcomes.
MARGIN = 0.0


def grid(step: float = STEP) -> np.ndarray:
    """Every weighting of the three models on a grid of ``step``, summing to 1, the
    trees' largest first (so a tie keeps the most of the trees).

    >>> grid(0.5).tolist()
    [[1.0, 0.0, 0.0], [0.5, 0.0, 0.5], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0], [0.0, 0.5, 0.5], [0.0, 1.0, 0.0]]
    """
    n = round(1 / step)
    rows = [(n - i - j, i, j) for i in range(n + 1) for j in range(n + 1 - i)]
    rows.sort(key=lambda r: (-r[0], -r[2]))
    return np.array(rows, dtype=float) / n


def parts_table(predictions: pd.DataFrame, trees: str = "lightgbm") -> pd.DataFrame:
    """The three models' horizon probabilities side by side, one row per observation.

    Args:
        predictions: :func:`models.backtest.walk_forward` rows with the outcome known
            (``y``), of the models ``trees``, ``logistic`` and ``scorecard``.
        trees: The name of the trees alone in ``predictions``.

    Returns:
        ``fold``, ``account_id``, ``as_of_date``, ``y`` and a column per part.
    """
    names = {trees: "trees", "logistic": "logistic", "scorecard": "scorecard"}
    rows = predictions.loc[predictions["model"].isin(names) & predictions["y"].notna()]
    wide = rows.pivot_table(index=["fold", "account_id", "as_of_date"], columns="model",
                            values="p", aggfunc="first").rename(columns=names)
    y = rows.drop_duplicates(["fold", "account_id", "as_of_date"]).set_index(
        ["fold", "account_id", "as_of_date"])["y"]
    wide = wide.join(y).dropna()
    return wide.reset_index()[["fold", "account_id", "as_of_date", "y", *PARTS]] if len(wide) else (
        pd.DataFrame(columns=["fold", "account_id", "as_of_date", "y", *PARTS]))


def choose(parts: pd.DataFrame, step: float = STEP, margin: float = MARGIN
           ) -> tuple[tuple[float, float, float], float, float, int]:
    """The weights whose blend ranks ``parts``' outcomes best (pooled ROC-AUC), if it
    ranks them better than the trees alone by more than ``margin``; else the trees.

    Returns:
        (weights, their ROC-AUC, the trees' ROC-AUC, rows used); the trees alone, NaN,
        NaN and 0 rows when the rows hold no churn or no retention to rank.

    >>> parts = pd.DataFrame({"y": [0, 0, 1, 1], "trees": [0.5, 0.1, 0.2, 0.3],
    ...                       "logistic": [0.1, 0.2, 0.3, 0.4], "scorecard": [0.4, 0.3, 0.2, 0.1]})
    >>> choose(parts, 0.5)
    ((0.0, 1.0, 0.0), 1.0, 0.5, 4)
    """
    if parts.empty or parts["y"].nunique() < 2:
        return TREES_ONLY, float("nan"), float("nan"), 0
    p = parts[list(PARTS)].to_numpy(dtype=float).clip(1e-9, 1 - 1e-9)
    logit = np.log(p / (1 - p))
    y = parts["y"].to_numpy(dtype=float)
    trees = float(roc_auc_score(y, logit[:, 0]))
    best, best_auc = TREES_ONLY, trees
    for weights in grid(step):
        auc = roc_auc_score(y, logit @ weights)
        if auc > best_auc + 1e-9:
            best, best_auc = tuple(float(w) for w in weights), float(auc)
    if best_auc <= trees + margin:
        return TREES_ONLY, trees, trees, len(parts)
    return best, best_auc, trees, len(parts)
