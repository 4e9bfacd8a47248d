"""Typed configuration. Loaded once (by ``pipelines.config``); unknown keys are rejected.

Every field has a default, so a run needs no config file. The defaults describe the
built-in demo product; point ``key_features``, ``advanced_features`` and
``onboarding_milestones`` at your own event and milestone names.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


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


class Config(BaseModel):
    """The whole healthscore configuration."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    grace_days: int = Field(30, ge=0, description="Days a renewal may lag a term's end.")
    metrics: MetricsConfig = MetricsConfig()
