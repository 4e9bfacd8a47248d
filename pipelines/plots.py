"""Figures for people: reliability curves, lift, SHAP summary (matplotlib, no display)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from models.evaluation import reliability  # noqa: E402


def reliability_figure(predictions: pd.DataFrame):
    """Predicted against observed churn rate per probability decile, one line per model."""
    fig, ax = plt.subplots(figsize=(6, 5))
    top = 0.0
    for model, rows in predictions.groupby("model", sort=True):
        curve = reliability(rows["y"].to_numpy(), rows["p"].to_numpy())
        ax.plot(curve["predicted"], curve["observed"], marker="o", label=model)
        top = max(top, curve["predicted"].max(), curve["observed"].max())
    ax.plot([0, top], [0, top], color="grey", linestyle="--", linewidth=1, label="perfect")
    ax.set(xlabel="predicted churn probability (decile mean)", ylabel="observed churn rate",
           title="Reliability, out-of-time backtest")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def lift_figure(predictions: pd.DataFrame):
    """Churn rate per risk decile over the overall rate (decile 1 = riskiest), per model."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    models = sorted(predictions["model"].unique())
    width = 0.8 / len(models)
    for i, model in enumerate(models):
        rows = predictions.loc[predictions["model"] == model]
        ranks = rows["p"].rank(method="first", ascending=False)
        decile = np.minimum(((ranks - 1) * 10 // len(rows)).astype(int), 9) + 1
        lift = rows.groupby(decile)["y"].mean() / rows["y"].mean()
        ax.bar(lift.index + (i - (len(models) - 1) / 2) * width, lift.to_numpy(), width=width,
               label=model)
    ax.axhline(1, color="grey", linewidth=1)
    ax.set(xlabel="risk decile (1 = riskiest 10%)", ylabel="lift (churn rate / overall)",
           title="Lift by risk decile, out-of-time backtest", xticks=range(1, 11))
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def shap_summary_figure(contributions: pd.DataFrame, X: pd.DataFrame, top: int = 20):
    """SHAP beeswarm of the ``top`` metrics (contributions to calibrated log-odds of churn)."""
    import shap

    values = contributions.drop(columns="base")
    order = values.abs().mean().sort_values(ascending=False).index[:top]
    # shap draws on the current figure: give it its own, or it paints over whichever
    # figure happens to be open (the lift chart, when both are built together).
    fig = plt.figure()
    # A seeded generator for the beeswarm's jitter: the same figure on every run.
    shap.summary_plot(values[order].to_numpy(), X[order], show=False, max_display=top,
                      plot_size=(8, 0.35 * top + 1.5), rng=np.random.default_rng(0))
    fig.suptitle("What drives churn risk (SHAP, log-odds)", fontsize=11)
    fig.tight_layout()
    return fig
