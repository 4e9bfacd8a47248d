"""The models the backtest compares, the final fit, and the learned weights per group."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.metric import Metric
from healthscore.config import ModelConfig
from models import blend
from models.band_churn import band_churn
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
             params: dict | None = None, scale: tuple[float, float] = (70.0, 15.0),
             blend_weights: tuple[float, float, float] = blend.TREES_ONLY) -> CalibratedLightGBM:
    """The configured calibrated LightGBM (tuned parameters over the defaults), blended
    with the baselines by ``blend_weights`` (trees, logistic, scorecard).

    ``scale`` is the health score's (reference, points to double the odds).
    """
    return CalibratedLightGBM(
        params={**config.lightgbm, **(params or {})}, directions=directions(catalog),
        monotone=config.monotone if monotone is None else monotone,
        calibration_days=config.calibration_days, seed=config.seed,
        score_reference=scale[0], score_points_to_double=scale[1],
        horizon_days=config.horizon_days, lead_days=config.lead_days,
        blend_weights=tuple(blend_weights),
    )


def fitters(config: ModelConfig, catalog: tuple[Metric, ...], early: bool = False,
            blend_weights: tuple[float, float, float] = blend.TREES_ONLY) -> dict[str, Fitter]:
    """Every model of the backtest, as functions from training rows to renewal-risk
    functions. ``early``: only the models the early-warning table compares (for the
    folds before the reported period). ``blend_weights``: the product's blend of the
    trees with the baselines (:mod:`models.blend`); with a blend, ``lightgbm_trees`` is
    the same trees alone."""
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
        product = contract and monotone == config.monotone
        def fit(train: pd.DataFrame):
            features = [c for c in feature_columns(train)
                        if contract or group_of.get(c) != "contract"]
            # The ablations are the trees alone; the product blends as chosen.
            model = lightgbm(config, catalog, monotone,
                             blend_weights=blend_weights if product else blend.TREES_ONLY).fit(
                train[features], train["churned"], train["label_known_at"], decision_weights(train))
            if not contract:
                return {"lightgbm_no_contract": lambda t: model.renewal_risk(t[features])}
            name = "lightgbm" if product else (
                "lightgbm_monotone" if monotone else "lightgbm_unconstrained")

            def risk(t):
                return model.renewal_risk(t[features])
            if product:  # the product's score: its bands are judged too
                risk.health_score = lambda t: model.health_score(t[features])
            out = {name: risk}
            if product and config.blend:  # the trees alone: what later folds' blends are chosen on
                out["lightgbm_trees"] = lambda t: model.predict_proba(t[features], "trees")[:, 1]
            if product and not early:
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
        ``early_warning``, ``bands``: the product score's churn per account-year by
        band, pooled, per term length and per segment (:mod:`models.band_churn`), and
        ``blend``: each fold's blend weights and the production model's
        (:mod:`models.blend`))
    """
    h, lead = config.horizon_days, config.lead_days
    folds, _ = fold_plan(evaluable(observations), config.folds, config.fold_days, config.tuning_folds)
    # The folds before the reported ones: the early warning's, and the first blends'.
    before = [f for f in earlier_folds(observations, folds, max(leads, default=0) or config.fold_days * 3)
              if fold_usable(observations, f, config.calibration_days)]
    # Walk the folds in time order. Each fold's blend is chosen on the folds before it,
    # on the rows whose outcome was known when it began: never on the fold it is
    # judged on (the first, with nothing before it, has the trees alone).
    parts, chosen = [], []
    for fold in [*before, *folds]:
        early = fold.number <= 0
        weights, auc, trees, rows = _choice(config, parts and _known_by(_trees(parts), observations, fold.start))
        chosen.append({"use": f"fold {fold.number}", **dict(zip(blend.PARTS, weights)),
                       "rows": rows, "roc_auc": auc, "trees_roc_auc": trees})
        ordinal = (fold.number - before[0].number + 1, len(before)) if early else (fold.number, len(folds))
        parts.append(walk_forward(observations, [fold], fitters(config, catalog, early, weights),
                                  progress, h, lead, "earlier fold" if early else "fold", ordinal))
    predictions = pd.concat([p for p in parts if len(p)], ignore_index=True)
    summary = summarise(predictions.loc[predictions["fold"] >= 1], config.capacity, segments)
    # The production model's blend: the same rule at the training date, on every fold.
    final, auc, trees, rows = _choice(config, _trees([predictions]))
    summary["blend"] = pd.DataFrame([*chosen, {"use": "production", **dict(zip(blend.PARTS, final)),
                                                "rows": rows, "roc_auc": auc, "trees_roc_auc": trees}])
    summary["early_warning"] = early_warning(predictions, folds[0].start, folds[-1].end, leads)
    ours = predictions.loc[(predictions["fold"] >= 1) & (predictions["model"] == "lightgbm")]
    summary["bands"] = band_churn(ours, segments)
    return predictions, summary


NO_CHOICE = (blend.TREES_ONLY, float("nan"), float("nan"), 0)


def _choice(config: ModelConfig, evidence: pd.DataFrame | list) -> tuple:
    """The blend for the next fold from ``evidence`` (earlier folds' predictions whose
    outcome is known), or the configured fixed weights, or the trees alone."""
    if not config.blend:
        return NO_CHOICE
    if config.blend_weights is not None:
        return (tuple(config.blend_weights), float("nan"), float("nan"), 0)
    if not len(evidence):
        return NO_CHOICE
    return blend.choose(blend.parts_table(evidence))


def _known_by(predictions: pd.DataFrame, observations: pd.DataFrame, day: pd.Timestamp) -> pd.DataFrame:
    """The predictions whose horizon outcome was known by ``day``."""
    known = observations.loc[observations["window_known_at"] <= day, ["account_id", "as_of_date"]]
    return predictions.merge(known, on=["account_id", "as_of_date"])


def _trees(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """Folds' predictions with the trees alone named ``lightgbm`` (in a blended fold,
    ``lightgbm`` is the blend and ``lightgbm_trees`` the trees)."""
    out = []
    for part in parts:
        if (part["model"] == "lightgbm_trees").any():
            part = part.loc[part["model"] != "lightgbm"].replace({"model": {"lightgbm_trees": "lightgbm"}})
        out.append(part)
    return pd.concat(out, ignore_index=True)


def blend_weights(summary: dict[str, pd.DataFrame] | None) -> tuple[float, float, float]:
    """The production model's blend from a backtest summary (the trees alone without one)."""
    if summary is None or "blend" not in summary:
        return blend.TREES_ONLY
    row = summary["blend"].set_index("use").loc["production"]
    return tuple(float(row[p]) for p in blend.PARTS)


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
              scale: tuple[float, float] = (70.0, 15.0), current: pd.DataFrame | None = None,
              weights: tuple[float, float, float] = blend.TREES_ONLY):
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
    final = lightgbm(config, catalog, scale=scale, blend_weights=weights).fit(
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
