"""The score history and the alerts, kept in the metric store (:mod:`pipelines.store`).

``score`` appends each run (one row per account: score, band, probability, model
version) and replaces the alerts of its date; ``score``, ``monitor`` and ``report`` read
them back here, so none of them has to import another stage to see past runs.
"""

from __future__ import annotations

import pandas as pd

from pipelines.store import Store

# The columns each run keeps in the history.
RUN_COLUMNS = ["account_id", "as_of_date", "health_score", "band", "model_version", "churn_probability"]
ALERT_COLUMNS = ["account_id", "from_band", "as_of_date", "to_band", "health_score", "drivers",
                 "direction", "held_runs"]


def append_run(store: Store, scores: pd.DataFrame) -> None:
    """Add one run to the history: idempotent per as-of date and model version (a run
    scored again replaces its rows)."""
    run = scores[RUN_COLUMNS].copy()
    run["account_id"] = run["account_id"].astype(str)
    run["model_version"] = run["model_version"].astype(str)
    day, version = pd.Timestamp(run["as_of_date"].iloc[0]), str(run["model_version"].iloc[0])
    _put(store, "score_history", run, "as_of_date = ? AND model_version = ?", [day, version])


def read_runs(store: Store, as_of: pd.Timestamp) -> pd.DataFrame:
    """The score history up to ``as_of``: one row per account and run date (the newest
    model's run of that date), in account and date order."""
    if "score_history" not in store.table_names():
        return pd.DataFrame(columns=RUN_COLUMNS)
    # Registry versions are numbers kept as text: version 10 is newer than version 9.
    runs = store.con.sql("""
        SELECT * EXCLUDE (_rank) FROM (
            SELECT *, row_number() OVER (PARTITION BY account_id, as_of_date
                ORDER BY TRY_CAST(model_version AS BIGINT) DESC NULLS LAST, model_version DESC) AS _rank
            FROM score_history WHERE as_of_date <= ?)
        WHERE _rank = 1 ORDER BY account_id, as_of_date""", params=[as_of]).df()
    runs["as_of_date"] = runs["as_of_date"].astype("datetime64[us]")
    return runs.reset_index(drop=True)


def replace_alerts(store: Store, as_of: pd.Timestamp, alerts: pd.DataFrame) -> None:
    """The alerts of ``as_of``: this run's replace any earlier run's of the same date."""
    alerts = alerts.reindex(columns=ALERT_COLUMNS).astype({
        "account_id": str, "from_band": str, "to_band": str, "drivers": str, "direction": str,
        "health_score": "float64", "held_runs": "int64", "as_of_date": "datetime64[us]"})
    _put(store, "alerts", alerts, "as_of_date = ?", [pd.Timestamp(as_of)])


def read_alerts(store: Store) -> pd.DataFrame:
    """Every alert so far, by date and account."""
    if "alerts" not in store.table_names():
        return pd.DataFrame(columns=ALERT_COLUMNS)
    alerts = store.con.sql("SELECT * FROM alerts ORDER BY as_of_date, account_id").df()
    alerts["as_of_date"] = alerts["as_of_date"].astype("datetime64[us]")
    return alerts


def _put(store: Store, table: str, rows: pd.DataFrame, where: str, params: list) -> None:
    """Delete the rows ``where`` holds, then append ``rows`` (creating the table)."""
    con = store.con
    con.register("_rows", rows)
    try:
        if table not in store.table_names():
            con.execute(f"CREATE TABLE {table} AS SELECT * FROM _rows LIMIT 0")
        con.execute(f"DELETE FROM {table} WHERE {where}", params)
        con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _rows")
    finally:
        con.unregister("_rows")
