"""Typed configuration. Loaded once (by ``pipelines.config``); unknown keys are rejected.

Every field has a default, so a run needs no config file. The defaults describe the
built-in demo product; point ``key_features``, ``advanced_features`` and
``onboarding_milestones`` at your own event and milestone names.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class MetricsConfig(BaseModel):
    """How the metric history is built."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    snapshot_every_days: int = Field(7, ge=1, le=92, description="Days between snapshots.")
    history_days: int | None = Field(
        None, ge=1, description="How far back snapshots go from the as-of date (default: all data)."
    )
    key_features: tuple[str, ...] = Field(
        ("create_report", "share_dashboard", "run_workflow", "export_data"),
        description="Event names that count as the product's key features (depth).",
    )
    advanced_features: tuple[str, ...] = Field(
        ("api_call", "automation_rule", "custom_integration"),
        description="Event names of advanced features (share of advanced use).",
    )
    event_types: tuple[str, ...] = Field(
        ("login", "create_report", "share_dashboard", "run_workflow", "export_data",
         "api_call", "automation_rule", "custom_integration", "deal_closed"),
        description="Event names that get their own 30-day count (frequency).",
    )
    value_events: tuple[str, ...] = Field(
        ("deal_closed",),
        description="Event names whose `value` amounts get their own 30-day sum.",
    )
    onboarding_milestones: tuple[str, ...] = Field(
        ("kickoff", "admin_setup", "integration", "first_value", "team_training", "go_live"),
        description="Expected onboarding milestones, in order.",
    )
    account_metrics_staleness_days: int = Field(
        35, ge=0, description="Oldest bring-your-own metric value still joined to a snapshot."
    )


class EngineConfig(BaseModel):
    """How the metric engine runs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Literal["duckdb", "spark"] = Field(
        "duckdb", description="Where the metric definitions run: embedded DuckDB, or Spark.")
    memory_limit: str = Field(
        "auto", pattern=r"(?i)^\s*(auto|\d+(\.\d+)?\s*[KMGT]i?B)\s*$",
        description="DuckDB's memory cap (e.g. 2GB); beyond it, it spills to a temporary "
        "folder. `auto`: half of this machine's physical memory, at most 2.5 GB.",
    )
    spark_master: str = Field(
        "local[2]", pattern=r"^(local(\[(\d+|\*)\])?|(spark|yarn|k8s|sc)://?[^\s]*|yarn)$",
        description="Spark master URL: local[N], spark://host:port, yarn or k8s://...",
    )
    spark_driver_memory: str = Field(
        "2g", pattern=r"(?i)^\d+[kmgt]$", description="spark.driver.memory (local mode's whole heap).")
    spark_shuffle_partitions: int = Field(
        8, ge=1, description="spark.sql.shuffle.partitions: 8 suits one machine; raise it on a cluster.")
    spark_conf: dict[str, str] = Field(
        default_factory=dict,
        description="Any other Spark settings, set on the session as given (after the ones "
        "above, so they win). On a cluster, e.g. spark.executor.memory, spark.pyspark.python "
        "or spark.executorEnv.PYTHONPATH.")


class ModelConfig(BaseModel):
    """How observations are labelled, how the backtest splits time, and the models."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    horizon_days: int = Field(90, ge=7, le=730, description="Predict churn in (D + lead, D + lead + horizon].")
    lead_days: int = Field(0, ge=0, le=365, description="Gap between the observation date and the label window.")
    folds: int = Field(4, ge=1, le=24, description="Walk-forward backtest folds (the reported period).")
    fold_days: int = Field(56, ge=7, description="Length of each backtest fold, in days of observation dates.")
    tuning_folds: int = Field(2, ge=1, le=12, description="Folds before the backtest period that tuning uses.")
    calibration_days: int = Field(112, ge=7, description="Observations whose renewal outcome became known in these latest days are held out of the trees, to early-stop them and calibrate.")
    capacity: int = Field(25, ge=1, description="Accounts a CS team can work per week: precision and recall at this many.")
    monotone: bool = Field(True, description="Constrain LightGBM to the catalog's metric directions.")
    blend: bool = Field(True, description="Blend the trees with the direction-bound logistic regression and the practitioners' scorecard (docs/model.md), so the model is not worse than its baselines; false: the trees alone.")
    blend_weights: tuple[float, float, float] | None = Field((0.5, 0.25, 0.25), description="The blend's weights (trees, logistic, scorecard), summing to 1; null: choose them for each backtest fold on the folds before it, and for the production model on every fold.")
    seed: int = Field(7, description="Random seed of every model and of tuning.")
    gate_tolerance: float = Field(0.02, ge=0, le=0.2, description="Largest ROC-AUC loss against the champion, on the newest known outcomes, that still promotes.")
    gate_log_loss_tolerance: float = Field(0.01, ge=0, le=1, description="Largest log-loss rise against the champion, on the newest known outcomes, that still promotes.")
    lightgbm: dict[str, float | int] = Field(
        default_factory=dict, description="LightGBM parameters over the defaults (tuning writes its best here)."
    )
    registered_model: str = Field("healthscore", description="Name of the model in the MLflow registry.")
    experiment: str = Field("healthscore", description="MLflow experiment name.")


class ScoreConfig(BaseModel):
    """How churn probabilities become health scores, bands, alerts and actions."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    reference: float = Field(70.0, gt=0, lt=100, description="Score of an account at the portfolio's base churn rate (fixed at training).")
    points_to_double: float = Field(15.0, gt=0, le=50, description="Points lost when the churn odds double (fixed at training).")
    bands: Literal["fixed", "quantile", "capacity"] = Field("fixed", description="Band scheme.")
    min_tenure_days: int = Field(30, ge=0, description="Younger accounts get insufficient_data instead of a score.")
    debounce_runs: int = Field(2, ge=1, le=12, description="Runs a band change must hold before it is alerted.")
    playbook: str | None = Field(None, description="YAML file with per-band and per-driver actions (default: the built-in playbook).")


class MonitorConfig(BaseModel):
    """When the monitor calls a source stale (coverage and drift thresholds are fixed:
    see docs/monitoring.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stale_days: dict[str, int] = Field(
        default_factory=dict,
        description="Per source, days behind the as-of date after which it is stale (default: "
        "twice the longest gap between its record days over the last half-year).")
    min_stale_days: int = Field(3, ge=0, description="No source is stale before this many days behind.")

    @field_validator("stale_days")
    @classmethod
    def _known_sources(cls, value: dict[str, int]) -> dict[str, int]:
        from healthscore.contract import SOURCES

        unknown = sorted(set(value) - set(SOURCES))
        if unknown:
            raise ValueError(f"unknown sources {unknown}; use source names such as events, tickets")
        if any(days < 0 for days in value.values()):
            raise ValueError("days must be 0 or more")
        return value


class Config(BaseModel):
    """The whole healthscore configuration."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    grace_days: int = Field(30, ge=0, description="Days a renewal may lag a term's end.")
    metrics: MetricsConfig = MetricsConfig()
    model: ModelConfig = ModelConfig()
    engine: EngineConfig = EngineConfig()
    score: ScoreConfig = ScoreConfig()
    monitor: MonitorConfig = MonitorConfig()
