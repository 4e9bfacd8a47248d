"""What a metric is: its name, group, meaning, unit, direction and source.

Each group module (:mod:`features.usage`, :mod:`features.support`, ...) lists its
metrics as :class:`Metric` entries beside the Ibis definitions that compute them;
:mod:`features.catalog` assembles them into the catalog.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from enum import StrEnum


class Direction(StrEnum):
    """What a higher value means."""

    HEALTHIER = "healthier"
    RISKIER = "riskier"
    UNKNOWN = "unknown"


GROUPS = (
    "frequency", "breadth", "depth", "trend", "support", "sentiment",
    "onboarding", "billing", "engagement", "contract",
    "own",  # bring-your-own metrics from account_metrics
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
    # Optional contract columns the metric cannot be computed without, as
    # ``source.column`` (a per-seat ratio needs ``subscriptions.seats``).
    needs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.group not in GROUPS:
            raise ValueError(f"{self.name}: unknown group {self.group!r}")

    def missing(self, available: Mapping[str, Collection[str]]) -> list[str]:
        """What this metric needs that ``available`` (source -> columns) lacks: the
        source itself, or ``source.column`` entries.

        >>> Metric("x", "breadth", "", "", Direction.HEALTHIER, "events",
        ...        ("events.user_id",)).missing({"events": {"account_id"}})
        ['events.user_id']
        """
        if self.source not in available:
            return [self.source]
        return [n for n in self.needs
                if n.split(".", 1)[1] not in available.get(n.split(".", 1)[0], ())]


H, R, U = Direction.HEALTHIER, Direction.RISKIER, Direction.UNKNOWN


def _slug(event: str) -> str:
    """``Create Report`` -> ``create_report``: a safe column-name part.

    >>> _slug("Create Report!")
    'create_report'
    """
    out = "".join(c.lower() if c.isalnum() else "_" for c in event)
    return "_".join(p for p in out.split("_") if p) or "event"
