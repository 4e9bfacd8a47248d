"""The score history on disk: one Parquet file per run, ``as_of=<D>/model=<version>.parquet``.

``score`` appends to it; ``score``, ``monitor`` and ``report`` read it back here, so none
of them has to import another stage to see past runs.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

# The columns each run keeps in the history.
RUN_COLUMNS = ["account_id", "as_of_date", "health_score", "band", "model_version", "churn_probability"]


def run_file(history_dir: Path, as_of: pd.Timestamp, version: str) -> Path:
    """Where the run of ``version`` as of ``as_of`` lives in the history."""
    return history_dir / f"as_of={as_of:%Y-%m-%d}" / f"model={version}.parquet"


def read_runs(history_dir: Path, as_of: pd.Timestamp) -> pd.DataFrame:
    """The score history up to ``as_of``: one row per account and run date (the newest
    model's run of that date), in account and date order."""
    files = sorted(history_dir.glob("as_of=*/model=*.parquet"))
    if not files:
        return pd.DataFrame(columns=RUN_COLUMNS)
    runs = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    # Registry versions are numbers kept as text: version 10 is newer than version 9.
    runs["_version"] = pd.to_numeric(runs["model_version"], errors="coerce")
    runs = (runs.sort_values(["as_of_date", "_version", "model_version"])
            .drop_duplicates(["account_id", "as_of_date"], keep="last").drop(columns="_version"))
    return runs.loc[runs["as_of_date"] <= as_of].sort_values(["account_id", "as_of_date"])
