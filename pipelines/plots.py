"""Figures for people: reliability curves, lift, SHAP summary (matplotlib, no display)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
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


def early_warning_figure(table: pd.DataFrame):
    """ROC-AUC of each model by days before the renewal decision (the early-warning table)."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for model, rows in table.groupby("model", sort=True):
        rows = rows.sort_values("lead_days")
        ax.plot(rows["lead_days"], rows["roc_auc"], marker="o", label=model)
    ax.axhline(0.5, color="grey", linestyle="--", linewidth=1, label="coin")
    ax.set(xlabel="days before the renewal decision", ylabel="ROC-AUC",
           title="Early warning: renewal decisions ranked ahead of time")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def band_churn_figure(table: pd.DataFrame):
    """Churn per account-year by band, all accounts and each term length side by side
    (:func:`models.band_churn.band_churn`): a worse band should stand taller in every group."""
    rows = table.loc[table["view"].isin(["pooled", "term"])]
    groups = list(dict.fromkeys(rows["group"]))
    bands = list(dict.fromkeys(rows["band"]))
    colors = {"Critical": "#c53030", "At-risk": "#dd6b20", "Healthy": "#38a169", "Thriving": "#2b6cb0"}
    fig, ax = plt.subplots(figsize=(7, 4.5))
    width = 0.8 / len(bands)
    for i, band in enumerate(bands):
        part = rows.loc[rows["band"] == band].set_index("group").reindex(groups)
        ax.bar(np.arange(len(groups)) + i * width, part["churn_per_account_year"].fillna(0.0),
               width, label=band, color=colors.get(band))
    ax.set_xticks(np.arange(len(groups)) + width * (len(bands) - 1) / 2,
                  ["all accounts" if g == "all" else f"{g} terms" for g in groups])
    ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    ax.set(ylabel="churn per account-year", title="Do the bands rank real churn? (out-of-time backtest)")
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


def _money(value: float, _position=None) -> str:
    """Axis labels for ARR: 950, 12k, 3.4M."""
    for limit, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.3g}{suffix}"
    return f"{value:.0f}"


def forecast_figure(forecast_table: pd.DataFrame, backtest_table: pd.DataFrame | None = None,
                    level: float = 0.8):
    """Renewal forecast: next periods' ARR at stake and likely lost; past months' forecasts.

    Args:
        forecast_table: :func:`models.forecast.forecast`'s table (periods in its order; the
            quarter overlaps the months, so it is drawn apart).
        backtest_table: :func:`models.forecast.backtest`'s table, or None.
        level: The intervals' level, for the labels.
    """
    from matplotlib.ticker import FuncFormatter

    fig, (ahead, behind) = plt.subplots(1, 2, figsize=(12, 4.8),
                                        gridspec_kw={"width_ratios": [1, 1.3]})
    band = f"{level:.0%} interval"
    x = np.arange(len(forecast_table), dtype=float)
    x[-1:] += 0.5  # the quarter, after a gap: it is not a fourth month
    up = forecast_table["arr_up_for_renewal"].to_numpy(dtype=float)
    lost = forecast_table["expected_arr_lost"].to_numpy(dtype=float)
    low = forecast_table["low"].to_numpy(dtype=float)
    high = forecast_table["high"].to_numpy(dtype=float)
    ahead.bar(x - 0.2, up, width=0.4, color="#c7d3e0", label="ARR up for renewal")
    ahead.bar(x + 0.2, lost, width=0.4, color="#d9534f", label="expected ARR lost")
    # Drawn from its own ends: with few accounts the expected loss can lie outside the
    # interval (0 with 96% probability, 1000 otherwise: expected 40, interval [0, 0]).
    ahead.errorbar(x + 0.2, (low + high) / 2, yerr=(high - low) / 2, fmt="none", ecolor="black",
                   capsize=4, linewidth=1, label=band)
    for xi, u, h, e in zip(x, up, high, lost):
        text, at = (f"{e / u:.0%}", max(h, e)) if u > 0 else ("no renewals", 0.0)
        ahead.annotate(text, (xi + 0.2 if u > 0 else xi, at), textcoords="offset points",
                       xytext=(0, 3), ha="center", fontsize=8)
    if len(x) > 1:
        ahead.axvline(x[-1] - 0.75, color="grey", linestyle=":", linewidth=1)
    ahead.set_xticks(x, forecast_table["period"], fontsize=8)
    ahead.yaxis.set_major_formatter(FuncFormatter(_money))
    # Headroom above the bars for the legend, which would otherwise cover the tallest.
    ahead.set(ylabel="ARR", title="Renewals ahead (% = expected share lost)",
              ylim=(0, 1.25 * max(up.max(initial=0), high.max(initial=0), lost.max(initial=0)) or 1))
    ahead.legend(fontsize=8, loc="upper left", ncols=2)

    if backtest_table is None or backtest_table.empty:
        behind.text(0.5, 0.5, "No past month with known outcomes yet", ha="center",
                    va="center", transform=behind.transAxes, color="grey")
        behind.set(xticks=[], yticks=[], title="Past forecasts against actual loss")
    else:
        months = pd.to_datetime(backtest_table["month"])
        xb = np.arange(len(backtest_table), dtype=float)
        expected = backtest_table["expected_arr_lost"].to_numpy(dtype=float)
        actual = backtest_table["actual_arr_lost"].to_numpy(dtype=float)
        inside = backtest_table["inside"].to_numpy(dtype=bool)
        low_b = backtest_table["low"].to_numpy(dtype=float)
        high_b = backtest_table["high"].to_numpy(dtype=float)
        behind.errorbar(xb, (low_b + high_b) / 2, yerr=(high_b - low_b) / 2, fmt="none",
                        ecolor="#1f77b4", capsize=4, label=band)
        behind.scatter(xb, expected, marker="o", color="#1f77b4", s=25, zorder=3,
                       label="expected")
        behind.scatter(xb[inside], actual[inside], marker="D", color="black", s=28, zorder=3,
                       label="actual, inside")
        behind.scatter(xb[~inside], actual[~inside], marker="D", color="#d9534f", s=28,
                       zorder=3, label="actual, outside")
        behind.set_xticks(xb, [m.strftime("%b %Y") for m in months], fontsize=8,
                          rotation=45 if len(xb) > 8 else 0, ha="right" if len(xb) > 8 else "center")
        behind.yaxis.set_major_formatter(FuncFormatter(_money))
        top = max(high_b.max(), expected.max(), actual.max())
        behind.set(ylabel="ARR lost", ylim=(0, 1.25 * top or 1), xlim=(-0.5, len(xb) - 0.5),
                   title=f"Past forecasts: {inside.sum()} of {len(inside)} months inside the "
                         f"{band}")
        behind.legend(fontsize=8, loc="upper left", ncols=3)
    fig.tight_layout()
    return fig
