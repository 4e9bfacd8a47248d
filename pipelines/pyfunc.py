"""The registered model's pyfunc: metric rows in, calibrated churn odds and health out.

This module travels inside every logged model (``pipelines.registry.log_model`` copies it,
with ``models/``, ``features/`` and ``healthscore/``, into the model's ``code/`` folder), so
a model loads where healthscore is not installed, such as a Spark executor or a fresh
virtual environment holding only the model's ``requirements.txt``. It must therefore
import nothing beyond MLflow, NumPy and pandas at the top: no other ``pipelines`` module.

The model is logged as code (MLflow's models-from-code), not pickled whole: the small
script :data:`MODEL_CODE` calls ``mlflow.models.set_model`` on an empty
:class:`HealthscoreModel`, and :meth:`HealthscoreModel.load_context` reads the fitted
estimator and the training facts from the model's artifacts.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import mlflow
import pandas as pd

# The artifacts a model logged as code carries (names in the pyfunc's ``artifacts``).
ESTIMATOR, FACTS = "estimator", "facts"

MODEL_CODE = '''"""healthscore's churn model, logged as code (MLflow models-from-code).

The fitted estimator and the training facts are artifacts of this model; the classes
come from the model's code/ folder (pipelines.pyfunc, models, features, healthscore).
"""
from mlflow.models import set_model

from pipelines.pyfunc import HealthscoreModel

set_model(HealthscoreModel())
'''


class HealthscoreModel(mlflow.pyfunc.PythonModel):
    """The whole fitted pipeline as a pyfunc: metric rows in, calibrated churn odds out.

    ``predict`` takes metric-history rows (extra columns are ignored, missing metric
    columns are an error) and returns what ``healthscore score`` writes:
    ``churn_probability`` (over the horizon), ``renewal_risk`` (at the next renewal), its
    ``renewal_log_odds`` and the 0-100 ``health_score`` on the model's own scale, each
    from the fitted estimator's own methods. The fitted estimator (``self.model``) also gives exact per-metric
    contributions (``contributions``); ``horizon_days`` and ``info`` are the training facts.

    Args:
        model: The fitted estimator; None in a model logged as code, whose
            :meth:`load_context` reads it from the model's artifacts.
        horizon_days: The churn horizon it predicts.
        info: Training facts (as-of date, features, spec, metric definition).
    """

    def __init__(self, model=None, horizon_days: int | None = None, info: dict | None = None):
        self.model = model
        self.horizon_days = horizon_days
        self.info = info if info is not None else {}

    def load_context(self, context) -> None:
        # Models logged before healthscore logged them as code were pickled whole and
        # carry their state already (no artifacts).
        if ESTIMATOR not in context.artifacts:
            return
        with open(context.artifacts[ESTIMATOR], "rb") as file:
            self.model = pickle.load(file)  # noqa: S301 -- the registry is the trust boundary
        facts = json.loads(Path(context.artifacts[FACTS]).read_text(encoding="utf-8"))
        self.horizon_days = facts["horizon_days"]
        self.info = facts["info"]

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        missing = [c for c in self.model.features_ if c not in model_input.columns]
        if missing:
            raise ValueError(f"model input lacks metric columns: {', '.join(missing[:5])}")
        X = model_input[self.model.features_].astype("float64")
        if not hasattr(self.model, "renewal_risk"):  # a model of churn in a window (before 0.15)
            log_odds = self.model.log_odds(X)
            return pd.DataFrame({"churn_probability": self.model.predict_proba(X)[:, 1],
                                 "churn_log_odds": log_odds,
                                 "health_score": self.model.scale_.score(log_odds)},
                                index=model_input.index)
        # What `healthscore score` writes: the churn probability over the horizon (from the
        # renewal risk and the calendar), the renewal risk, and the health score.
        return pd.DataFrame({"churn_probability": self.model.churn_probability(X),
                             "renewal_risk": self.model.renewal_risk(X),
                             "renewal_log_odds": self.model.log_odds(X),
                             "health_score": self.model.health_score(X)},
                            index=model_input.index)


def write_artifacts(folder: Path, model, horizon_days: int, info: dict) -> dict[str, str]:
    """Write the estimator (pickled) and the training facts (JSON) into ``folder``;
    returns the pyfunc's ``artifacts`` mapping."""
    estimator, facts = folder / "estimator.pkl", folder / "facts.json"
    with open(estimator, "wb") as file:
        pickle.dump(model, file, protocol=pickle.HIGHEST_PROTOCOL)
    facts.write_text(json.dumps({"horizon_days": horizon_days, "info": info}, indent=1,
                                sort_keys=True, default=str), encoding="utf-8")
    return {ESTIMATOR: str(estimator), FACTS: str(facts)}
