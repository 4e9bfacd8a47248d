"""The metric catalog: every metric defined once, with its meaning.

A metric's name follows ``<what>_<aggregate>_<window>``. Its group is how weights and
drivers are shown to people; its direction (does a higher value mean healthier or
riskier?) drives the docs, the explanations and the model's monotone constraints.

Some metrics exist once per configured feature (``key_feature_<f>_adoption_30d``):
:func:`catalog` expands them from the config, so the catalog always lists exactly the
columns the metric history has.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from healthscore.config import MetricsConfig


class Direction(StrEnum):
    """What a higher value means."""

    HEALTHIER = "healthier"
    RISKIER = "riskier"
    UNKNOWN = "unknown"


GROUPS = (
    "frequency", "breadth", "depth", "trend", "support", "sentiment",
    "onboarding", "billing", "engagement", "contract",
)


@dataclass(frozen=True)
class Metric:
    """One column of the metric history."""

    name: str
    group: str
    description: str
    unit: str
    direction: Direction
    source: str

    def __post_init__(self) -> None:
        if self.group not in GROUPS:
            raise ValueError(f"{self.name}: unknown group {self.group!r}")


H, R, U = Direction.HEALTHIER, Direction.RISKIER, Direction.UNKNOWN

_FIXED: tuple[Metric, ...] = (
    # frequency
    Metric("active_days_count_30d", "frequency", "Days with any product usage in the last 30 days", "days", H, "events"),
    Metric("active_days_count_90d", "frequency", "Days with any product usage in the last 90 days", "days", H, "events"),
    Metric("events_count_30d", "frequency", "Product events (summing `count`) in the last 30 days", "events", H, "events"),
    Metric("events_per_active_user_30d", "frequency", "Events per active user in the last 30 days", "events/user", H, "events"),
    Metric("events_value_sum_30d", "frequency", "Sum of event `value` amounts in the last 30 days", "amount", H, "events"),
    Metric("activity_days_since_last", "frequency", "Days since the account's last product usage (empty: never used)", "days", R, "events"),
    # breadth
    Metric("active_users_count_30d", "breadth", "Distinct users active in the last 30 days", "users", H, "events"),
    Metric("active_users_ratio_30d", "breadth", "Active users in the last 30 days per licensed seat", "ratio", H, "events"),
    # depth
    Metric("key_features_used_count_30d", "depth", "Distinct key features used in the last 30 days", "features", H, "events"),
    Metric("advanced_events_share_30d", "depth", "Share of events on advanced features in the last 30 days (empty: no events)", "share", H, "events"),
    # trend
    Metric("events_count_change_30d", "trend", "Events in the last 30 days against the 30 before (relative change; empty: none before)", "ratio", H, "events"),
    Metric("active_users_change_30d", "trend", "Active users in the last 30 days against the 30 before (relative change)", "ratio", H, "events"),
    # contract
    Metric("arr_total_current", "contract", "Annual recurring revenue of the terms covering the day", "currency", U, "subscriptions"),
    Metric("seats_total_current", "contract", "Licensed seats of the terms covering the day", "seats", U, "subscriptions"),
    Metric("tenure_days_current", "contract", "Days since the account was created", "days", H, "accounts"),
    Metric("renewal_days_to_next", "contract", "Days until the earliest covering term ends", "days", U, "subscriptions"),
    Metric("term_length_days_current", "contract", "Length of the longest covering term (about 30 monthly, 365 annual)", "days", U, "subscriptions"),
)


def catalog(config: MetricsConfig | None = None) -> tuple[Metric, ...]:
    """Every metric the history holds for ``config``, in column order."""
    config = config or MetricsConfig()
    per_feature = tuple(
        Metric(
            f"key_feature_{_slug(f)}_adoption_30d", "depth",
            f"Share of the last 30 days' active users who used key feature `{f}`",
            "share", H, "events",
        )
        for f in config.key_features
    )
    return _FIXED + per_feature


def metric_names(config: MetricsConfig | None = None) -> list[str]:
    """Column names of the metric history, without the keys."""
    return [m.name for m in catalog(config)]


def _slug(event: str) -> str:
    """``Create Report`` -> ``create_report``: a safe column-name part."""
    out = "".join(c.lower() if c.isalnum() else "_" for c in event)
    return "_".join(p for p in out.split("_") if p) or "event"
