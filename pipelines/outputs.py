"""Where a scoring run's outputs live: beside the scores file the user named.

``score`` writes them, ``monitor``, ``report`` and the CLI find them; the names live
here so that finding them needs no import of the stage that writes them.
"""

from __future__ import annotations

from pathlib import Path


def parquet_beside(out: Path) -> Path:
    """``scores.csv`` -> ``scores.parquet``: the same rows, values as they are."""
    return out.with_suffix(".parquet")


def forecast_path(scores_out: Path) -> Path:
    """``scores.csv`` -> ``scores.forecast.json`` (beside the run's output)."""
    return scores_out.with_name(f"{scores_out.name.split('.')[0]}.forecast.json")


def findings_path(scores_out: Path) -> Path:
    """``scores.csv`` -> ``scores.monitor.json`` (beside the run's output)."""
    return scores_out.with_name(f"{scores_out.name.split('.')[0]}.monitor.json")


def alerts_path(scores_out: Path) -> Path:
    """``scores.csv`` -> ``scores.alerts.csv``: this run's alerts (all of them stay in the
    metric store)."""
    return scores_out.with_name(f"{scores_out.name.split('.')[0]}.alerts.csv")
