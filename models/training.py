"""The models the backtest compares, the final fit, and the learned weights per group."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.catalog import Metric
from healthscore.config import ModelConfig
from models.backtest import Fitter, fold_plan, summarise, walk_forward
from models.churn_model import CalibratedLightGBM, feature_columns, logistic_baseline
from models.monitoring import build_profile
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
    )


def fitters(config: ModelConfig, catalog: tuple[Metric, ...]) -> dict[str, Fitter]:
    """Every model of the backtest, as functions from training rows to predictors."""

    def scorecard(train: pd.DataFrame):
        features = feature_columns(train)
        model = HandWeightedScorecard().fit(train[features], train["churned"])
        return {"scorecard": lambda t: model.predict_proba(t[features])[:, 1]}

    def logistic(train: pd.DataFrame):
        features = feature_columns(train)
        model = logistic_baseline(config.seed).fit(train[features], train["churned"])
        return {"logistic": lambda t: model.predict_proba(t[features])[:, 1]}

    def boosted(monotone: bool):
        def fit(train: pd.DataFrame):
            features = feature_columns(train)
            model = lightgbm(config, catalog, monotone).fit(
                train[features], train["churned"], train["as_of_date"])
            name = "lightgbm" if monotone == config.monotone else (
                "lightgbm_monotone" if monotone else "lightgbm_unconstrained")
            out = {name: lambda t: model.predict_proba(t[features])[:, 1]}
            if monotone == config.monotone:
                out["lightgbm_isotonic"] = lambda t: model.predict_proba(t[features], "isotonic")[:, 1]
            return out
        return fit

    return {"scorecard": scorecard, "logistic": logistic,
            "lightgbm": boosted(config.monotone), "lightgbm_alt": boosted(not config.monotone)}


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
    shap = model.contributions(X).drop(columns="base").abs().mean()
    shap_by = shap.groupby(lambda m: category_of.get(group_of.get(m, "own"), "own metrics")).sum()
    names = logistic.named_steps["impute"].get_feature_names_out(list(X.columns))
    coef = pd.Series(np.abs(logistic.named_steps["model"].coef_[0]), index=names)
    # A missing-value flag belongs to its metric's category.
    base = coef.index.str.replace(r"^missingindicator_", "", regex=True)
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
             segments: pd.Series | None = None, progress=None) -> tuple[pd.DataFrame, dict]:
    """Walk-forward backtest of every model on the reported folds.

    Returns:
        (predictions per model and fold, summary tables: ``pooled``, ``folds``,
        ``segments``)
    """
    folds, _ = fold_plan(observations, config.folds, config.fold_days, config.tuning_folds)
    predictions = walk_forward(observations, folds, fitters(config, catalog), progress)
    return predictions, summarise(predictions, config.capacity, segments)


def fit_final(observations: pd.DataFrame, config: ModelConfig, catalog: tuple[Metric, ...],
              scale: tuple[float, float] = (70.0, 15.0), current: pd.DataFrame | None = None):
    """The production model on every labelled observation, the logistic baseline beside it,
    and the learned weights on the latest observations.

    ``current``: the metric rows as of the training date (labels not known yet), which
    become the model's monitoring profile; without them, the latest labelled rows do.

    Returns:
        (calibrated LightGBM, logistic pipeline, weights table, the latest observations)
    """
    features = feature_columns(observations)
    final = lightgbm(config, catalog, scale=scale).fit(
        observations[features], observations["churned"], observations["as_of_date"])
    logistic = logistic_baseline(config.seed).fit(observations[features], observations["churned"])
    cut = observations["as_of_date"].max() - pd.Timedelta(days=config.calibration_days)
    latest = observations.loc[observations["as_of_date"] > cut]
    # The monitor's reference: the portfolio as of the training date.
    reference = (current if current is not None and len(current) else latest)[features]
    final.profile_ = build_profile(reference, {m.name: m.group for m in catalog},
                                   final.scale_.score(final.log_odds(reference)))
    return final, logistic, learned_weights(final, logistic, latest[features], catalog), latest
