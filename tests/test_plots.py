"""The figures logged to MLflow: each its own picture."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

from pipelines import plots


def test_figures_built_together_stay_apart():
    rng = np.random.default_rng(0)
    n = 400
    p = rng.uniform(0.01, 0.5, n)
    predictions = pd.concat([pd.DataFrame({"model": m, "y": (rng.uniform(size=n) < p).astype(int),
                                           "p": p}) for m in ("lightgbm", "scorecard")])
    X = pd.DataFrame(rng.normal(size=(n, 3)), columns=["a", "b", "c"])
    contributions = X.mul([0.5, -0.2, 0.1]).assign(base=-2.0)
    # Built in one expression, as training logs them.
    figures = (plots.reliability_figure(predictions), plots.lift_figure(predictions),
               plots.shap_summary_figure(contributions, X))
    assert len({id(f) for f in figures}) == 3
    assert len(figures[1].axes) == 1  # the lift chart holds only its bars
    pngs = []
    for fig in figures:
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        pngs.append(buffer.getvalue())
        plots.plt.close(fig)
    assert len(set(pngs)) == 3


def test_forecast_figure_draws_intervals_that_miss_the_expected_loss():
    from models.forecast import forecast

    # Lost w.p. 0.04: expected 40, yet the 80% interval is [0, 0].
    schedule = pd.DataFrame({"account_id": ["a", "b"], "sequence": [0, 0],
                             "renewal_date": pd.to_datetime(["2026-10-05", "2026-11-05"]),
                             "arr": [1000.0, 300.0], "renewal_risk": [0.04, 0.5]})
    table = forecast(schedule, "2026-09-30")
    assert table.loc[0, "expected_arr_lost"] > table.loc[0, "high"]
    past = pd.DataFrame({"month": pd.to_datetime(["2026-08-01", "2026-09-01"]),
                         "expected_arr_lost": [35.0, 500.0], "low": [0.0, 100.0],
                         "high": [0.0, 900.0], "actual_arr_lost": [1000.0, 300.0],
                         "inside": [False, True]})
    with_past, without = plots.forecast_figure(table, past), plots.forecast_figure(table, None)
    assert [len(f.axes) for f in (with_past, without)] == [2, 2]
    assert with_past.axes[1].get_title() == "Past forecasts: 1 of 2 months inside the 80% interval"
    assert "No past month" in without.axes[1].texts[0].get_text()
    assert [t.get_text() for t in with_past.axes[0].get_xticklabels()] == table["period"].tolist()
    for fig in (with_past, without):
        fig.savefig(io.BytesIO(), format="png")
        plots.plt.close(fig)
