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
