"""The promotion gate: the registered champion against the challenger, on outcomes
neither learned from.

The window is the challenger's calibration hold-out: the observations whose renewal
outcome became known in the latest ``calibration_days`` before the training date. The
challenger's trees never saw them (they early-stopped and calibrated on them; the
two-parameter Platt calibration cannot change a ranking). The champion was trained
earlier, so its trees never saw them either. Both rank the same rows; the challenger is
promoted unless it is worse than the champion beyond the tolerance on ROC-AUC or on log
loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import log_loss, roc_auc_score


@dataclass(frozen=True)
class GateResult:
    """What the gate measured and decided."""

    promote: bool
    rows: int
    churned: int
    challenger_roc_auc: float
    champion_roc_auc: float
    challenger_log_loss: float
    champion_log_loss: float
    reason: str


def gate_window(known: pd.DataFrame, calibration_days: int) -> pd.DataFrame:
    """The observations whose renewal outcome became known in the latest
    ``calibration_days`` (the challenger's calibration hold-out)."""
    cut = known["label_known_at"].max() - pd.Timedelta(days=calibration_days)
    return known.loc[known["label_known_at"] > cut]


def compare(challenger, champion, window: pd.DataFrame, auc_tolerance: float,
            log_loss_tolerance: float, champion_name: str = "the champion") -> GateResult:
    """Rank ``window`` with both fitted models (each with ``features_`` and
    ``renewal_risk``) and decide.

    The challenger passes when its ROC-AUC is at most ``auc_tolerance`` below the
    champion's and its log loss at most ``log_loss_tolerance`` above it. A window with
    only one outcome cannot tell them apart: the champion is kept.
    """
    y = window["churned"].to_numpy(dtype=int)
    churned = int(y.sum())
    p_new = np.clip(challenger.renewal_risk(window[challenger.features_]), 1e-6, 1 - 1e-6)
    p_old = np.clip(champion.renewal_risk(window[champion.features_]), 1e-6, 1 - 1e-6)
    if churned == 0 or churned == len(y):
        return GateResult(False, len(y), churned, np.nan, np.nan, np.nan, np.nan,
                          f"the comparison window ({len(y):,} observations) holds only one "
                          f"outcome: kept {champion_name}")
    auc_new, auc_old = roc_auc_score(y, p_new), roc_auc_score(y, p_old)
    ll_new, ll_old = log_loss(y, p_new, labels=[0, 1]), log_loss(y, p_old, labels=[0, 1])
    measured = (f"on {len(y):,} observations ({churned:,} churned) whose outcomes neither "
                f"model learned from: challenger ROC-AUC {auc_new:.4f}, log loss {ll_new:.4f}; "
                f"{champion_name} ROC-AUC {auc_old:.4f}, log loss {ll_old:.4f}")
    worse = []
    if auc_new < auc_old - auc_tolerance:
        worse.append(f"ROC-AUC lower by more than {auc_tolerance}")
    if ll_new > ll_old + log_loss_tolerance:
        worse.append(f"log loss higher by more than {log_loss_tolerance}")
    if worse:
        reason = f"challenger worse than {champion_name} ({'; '.join(worse)}) {measured}: kept {champion_name}"
    else:
        reason = f"challenger at least as good as {champion_name} within tolerance {measured}: promoted"
    return GateResult(not worse, len(y), churned, float(auc_new), float(auc_old), float(ll_new),
                      float(ll_old), reason)
