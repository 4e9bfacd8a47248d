"""The models the backtest compares, the final fit, and the learned weights per group."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.metric import Metric
from healthscore.config import ModelConfig
from models.backtest import Fitter, Fold, evaluable, fold_plan, fold_usable, summarise, walk_forward
from models.churn_model import CalibratedLightGBM, feature_columns, logistic_baseline
from models.early_warning import LEADS, early_warning
from models.monitoring import build_profile
from models.observations import decision_weights
from models.renewal import CALENDAR
from models.scorecard import SCORECARD, HandWeightedScorecard

# Which metric groups each scorecard category stands for (for the weights table).
CATEGORY_GROUPS = {
    "usage": ("frequency", "breadth", "depth", "trend"),
    "csat_nps": ("sentiment",),
    "support": ("support",),
    "onboarding": ("onboarding",),
    "engagement": ("engagement",),
    "revenue": ("contract",),
    "billing": ("billing",),
    "own metrics": ("own",),
}


def directions(catalog: tuple[Metric, ...]) -> dict[str, str]:
    return {m.name: m.direction for m in catalog}


def lightgbm(config: ModelConfig, catalog: tuple[Metric, ...], monotone: bool | None = None,
             params: dict | None = None, scale: tuple[float, float] = (70.0, 15.0)) -> CalibratedLightGBM:
    """The configured calibrated LightGBM (tuned parameters over the defaults).

    ``scale`` is the health score's (reference, points to double the odds).
    """
    return CalibratedLightGBM(
        params={**config.lightgbm, **(params or {})}, directions=directions(catalog),
        monotone=config.monotone if monotone is None else monotone,
        calibration_days=config.calibration_days, seed=config.seed,
        score_reference=scale[0], score_points_to_double=scale[1],
        horizon_days=config.horizon_days, lead_days=config.lead_days,
    )


def fitters(config: ModelConfig, catalog: tuple[Metric, ...],
            early: bool = False) -> dict[str, Fitter]:
    """Every model of the backtest, as functions from training rows to renewal-risk
    functions. ``early``: only the models the early-warning table compares (for the
    folds before the reported period)."""
    group_of = {m.name: m.group for m in catalog}

    def scorecard(train: pd.DataFrame):
        features = feature_columns(train)
        model = HandWeightedScorecard().fit(train[features], train["churned"])
        return {"scorecard": lambda t: model.predict_proba(t[features])[:, 1]}

    def logistic(train: pd.DataFrame):
        features = feature_columns(train)
        model = logistic_baseline(config.seed).fit(train[features], train["churned"])
        return {"logistic": lambda t: model.predict_proba(t[features])[:, 1]}

    def boosted(monotone: bool, contract: bool = True):
        def fit(train: pd.DataFrame):
            features = [c for c in feature_columns(train)
                        if contract or group_of.get(c) != "contract"]
            model = lightgbm(config, catalog, monotone).fit(
                train[features], train["churned"], train["label_known_at"], decision_weights(train))
            if not contract:
                return {"lightgbm_no_contract": lambda t: model.renewal_risk(t[features])}
            name = "lightgbm" if monotone == config.monotone else (
                "lightgbm_monotone" if monotone else "lightgbm_unconstrained")
            out = {name: lambda t: model.renewal_risk(t[features])}
            if monotone == config.monotone and not early:
                out["lightgbm_isotonic"] = lambda t: model.predict_proba(t[features], "isotonic")[:, 1]
            return out
        return fit

    out = {"scorecard": scorecard, "logistic": logistic, "lightgbm": boosted(config.monotone),
           "lightgbm_no_contract": boosted(config.monotone, contract=False)}
    if not early:
        out["lightgbm_alt"] = boosted(not config.monotone)
    return out


def learned_weights(model: CalibratedLightGBM, logistic, X: pd.DataFrame,
                    catalog: tuple[Metric, ...]) -> pd.DataFrame:
    """Per scorecard category: the hand weight, LightGBM's share of mean |SHAP| and the
    logistic model's share of |standardised weight|.

    Args:
        model: The fitted calibrated LightGBM.
        logistic: The fitted logistic pipeline (impute, scale, model).
        X: Observations to explain (metric columns).
        catalog: The metric catalog (metric -> group).
    """
    group_of = {m.name: m.group for m in catalog}
    category_of = {g: c for c, groups in CATEGORY_GROUPS.items() for g in groups}
    # The calendar conditions the model (the same behaviour means less far from a
    # renewal); it is not a weight on the customer's health, so it is not shared out.
    shap = model.contributions(X).drop(columns=["base", *[c for c in CALENDAR if c in X]]).abs().mean()
    shap_by = shap.groupby(lambda m: category_of.get(group_of.get(m, "own"), "own metrics")).sum()
    names = logistic.named_steps["impute"].get_feature_names_out(list(X.columns))
    coef = pd.Series(np.abs(logistic.named_steps["model"].coef_[0]), index=names)
    # A missing-value flag belongs to its metric's category.
    base = coef.index.str.replace(r"^missingindicator_", "", regex=True)
    coef, base = coef[~base.isin(CALENDAR)], base[~base.isin(CALENDAR)]
    coef_by = coef.groupby([category_of.get(group_of.get(m, "own"), "own metrics") for m in base]).sum()
    hand = pd.Series({c: w for c, (w, _) in SCORECARD.items()})
    table = pd.DataFrame({
        "hand_weight": hand / hand.sum(),
        "lightgbm_shap_share": shap_by / shap_by.sum(),
        "logistic_weight_share": coef_by / coef_by.sum(),
    }).reindex(list(CATEGORY_GROUPS)).fillna(0.0)
    # A category whose sources are absent learns 0% for want of data, not of signal.
    present = {category_of.get(group_of.get(m, "own"), "own metrics") for m in X.columns}
    table["has_data"] = [c in present for c in table.index]
    table.index.name = "category"
    return table.reset_index()


def backtest(observations: pd.DataFrame, config: ModelConfig, catalog: tuple[Metric, ...],
             segments: pd.Series | None = None, progress=None,
             leads: tuple[int, ...] = LEADS) -> tuple[pd.DataFrame, dict]:
    """Walk-forward backtest of every model on the reported folds, and the early warning.

    The reported folds give the churn-in-horizon metrics (``pooled``, ``folds``,
    ``segments``). The early-warning table ranks every renewal decision dated in the
    reported period at each of ``leads`` days before it; the observations that far back
    lie before the period, so folds of the same length are added before it (scored by
    the compared models only, each trained on outcomes known by its fold's start).

    Args:
        observations: Every observation, with both labels (see
            :func:`models.observations.label_renewals`); a model trains on those whose
            renewal outcome is known by its fold's start.

    Returns:
        (predictions per model and fold (folds numbered 1.. in the reported period and
        0, -1, ... before it), summary tables: ``pooled``, ``folds``, ``segments``,
        ``early_warning``)
    """
    h, lead = config.horizon_days, config.lead_days
    folds, _ = fold_plan(evaluable(observations), config.folds, config.fold_days, config.tuning_folds)
    reported = walk_forward(observations, folds, fitters(config, catalog), progress, h, lead)
    before = [f for f in earlier_folds(observations, folds, max(leads, default=0))
              if fold_usable(observations, f, config.calibration_days)]
    earlier = (walk_forward(observations, before, fitters(config, catalog, early=True),
                            progress, h, lead, "early-warning fold") if before else None)
    predictions = pd.concat([p for p in (earlier, reported) if p is not None and len(p)],
                            ignore_index=True)
    summary = summarise(predictions.loc[predictions["fold"] >= 1], config.capacity, segments)
    summary["early_warning"] = early_warning(predictions, folds[0].start, folds[-1].end, leads)
    return predictions, summary


def earlier_folds(observations: pd.DataFrame, folds: list[Fold], max_lead: int) -> list[Fold]:
    """Folds of the reported folds' length before them, numbered 0, -1, ..., back to the
    observations ``max_lead`` days (and a week) before the first reported decision, or
    to the first observation."""
    if not folds:
        return []
    step = folds[0].end - folds[0].start
    earliest = max(folds[0].start - pd.Timedelta(days=max_lead + 7),
                   observations["as_of_date"].min())
    out, start, number = [], folds[0].start, 0
    while start > earliest:
        out.insert(0, Fold(number, start - step, start))
        start, number = start - step, number - 1
    return out


def fit_final(observations: pd.DataFrame, config: ModelConfig, catalog: tuple[Metric, ...],
              scale: tuple[float, float] = (70.0, 15.0), current: pd.DataFrame | None = None):
    """The production model on every observation whose renewal outcome is known, the
    logistic baseline beside it, and the learned weights on the portfolio as of the
    training date.

    ``current``: the metric rows as of the training date (outcomes not known yet), which
    become the model's monitoring profile and whose contributions give the learned
    weights; without them, the latest labelled rows do.

    Returns:
        (calibrated LightGBM, logistic pipeline, weights table, the rows explained)
    """
    features = feature_columns(observations)
    final = lightgbm(config, catalog, scale=scale).fit(
        observations[features], observations["churned"], observations["label_known_at"],
        decision_weights(observations))
    logistic = logistic_baseline(config.seed).fit(observations[features], observations["churned"])
    if current is not None and len(current):
        latest = current
    else:
        cut = observations["as_of_date"].max() - pd.Timedelta(days=config.calibration_days)
        latest = observations.loc[observations["as_of_date"] > cut]
    reference = latest[features]
    final.profile_ = build_profile(reference, {m.name: m.group for m in catalog},
                                   final.health_score(reference))
    return final, logistic, learned_weights(final, logistic, reference, catalog), latest
