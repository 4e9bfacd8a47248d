"""Pipeline stage: Optuna search for LightGBM parameters on the tuning folds.

One MLflow parent run per study and one nested run per finished trial (parameters and
score, no model). The best parameters are written into a config file that ``train``
reads with ``--config``, so training reuses them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import mlflow
import optuna
import yaml

from healthscore.config import Config
from healthscore.errors import HealthscoreError
from models.backtest import plan_backtest
from models.tuning import objective, study
from pipelines import registry
from pipelines.io import atomic_path
from pipelines.train import Progress, build_observations


@dataclass
class TuneResult:
    """The best parameters and where they went."""

    best_params: dict
    best_value: float
    trials: int
    pruned: int
    run_id: str
    config_file: Path


def tune(data_dir: Path, as_of: dt.date | None, config: Config, out: Path, trials: int,
         timeout: float | None, progress: Progress = print,
         store: Path | None = None) -> TuneResult:
    """Search on the folds before the reported backtest period and save the best.

    ``store``: the metric store file (default: a temporary one for this run).
    """
    data = build_observations(data_dir, as_of, config, progress, store)
    known, as_of, metric_catalog = data.known, data.as_of, data.catalog
    # The same sizing as `train`, so the tuning folds lie before the period train reports.
    plan = plan_backtest(data.observations, config.model)
    m, tuning = plan.config, plan.tuning
    for line in data.not_built:
        progress(f"not built: {line}")
    for note in plan.notes:
        progress(f"backtest sized to the data: {note}")
    if not tuning:
        raise HealthscoreError(
            f"tuning as of {as_of}: no tuning fold before the backtest period has training rows "
            "with both churned and retained accounts known before it; tuning needs a longer "
            "labelled history than training (train uses the default LightGBM parameters "
            "meanwhile)")
    registry.connect(m.experiment)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    search = study(m.seed)
    tags = {"git_commit": registry.git_commit(), "data_as_of": str(as_of),
            "config_hash": registry.config_hash(config), "kind": "tuning",
            "metrics_not_built": str(len(data.not_built))}
    with mlflow.start_run(run_name=f"tune as-of {as_of} ({trials} trials)", tags=tags) as parent:
        mlflow.log_params({"trials": trials, "timeout_s": timeout, "tuning_folds": len(tuning),
                           "tuning_start": str(tuning[0].start.date()) if tuning else "",
                           "backtest_start": str(tuning[-1].end.date()) if tuning else ""})
        mlflow.log_text("\n".join(data.not_built) or "every catalog metric was built",
                        "data/metrics_not_built.txt")

        def record(trial: optuna.Trial, params: dict, value: float) -> None:
            with mlflow.start_run(run_name=f"trial {trial.number}", nested=True):
                mlflow.log_params(params)
                mlflow.log_metric("tuning_roc_auc", value)
            progress(f"trial {trial.number + 1}/{trials}: ROC-AUC {value:.4f} "
                     f"(best {max(value, _best(search)):.4f})")

        try:
            search.optimize(objective(data.observations, tuning, m, metric_catalog, record),
                            n_trials=trials, timeout=timeout)
        except ValueError as exc:
            raise HealthscoreError(f"tuning: {exc}") from None
        done = [t for t in search.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if not done:
            raise HealthscoreError("tuning: no trial finished; raise --trials or --timeout")
        pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in search.trials)
        mlflow.log_params({f"best_{k}": v for k, v in search.best_params.items()})
        mlflow.log_metrics({"best_tuning_roc_auc": search.best_value, "pruned_trials": pruned})
        tuned = config.model_copy(update={"model": m.model_copy(update={"lightgbm": search.best_params})})
        with atomic_path(out) as tmp:
            tmp.write_text(
                "# Written by `healthscore tune`: the config with the best LightGBM parameters.\n"
                + yaml.safe_dump(tuned.model_dump(mode="json"), sort_keys=False),
                encoding="utf-8")
        mlflow.log_artifact(str(out), "tuning")
    return TuneResult(search.best_params, search.best_value, len(search.trials), pruned,
                      parent.info.run_id, out)


def _best(search: optuna.Study) -> float:
    try:
        return search.best_value
    except ValueError:
        return float("-inf")
