"""The Ibis metric engine against an independent plain-pandas implementation.

``benchmarks/pandas_reference.py`` computes the same metric history snapshot by
snapshot, from the definitions in ``docs/metrics.md``. Agreement on a simulated book
and on a hand-made book of edge cases cross-checks both.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from healthscore.config import Config, MetricsConfig
from healthscore.simulate import SimulationConfig, simulate_book
from pipelines.features import compute_metric_history

# benchmarks/ is not an installed package: load the module from its file.
_SPEC = importlib.util.spec_from_file_location(
    "pandas_reference", Path(__file__).resolve().parents[1] / "benchmarks" / "pandas_reference.py"
)
reference = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(reference)

KEYS = ["account_id", "as_of_date"]


def _comparable(history: pd.DataFrame) -> pd.DataFrame:
    """Sorted by the keys, with all-empty metric columns as float.

    DuckDB hands a column that is empty in every row back as ``object`` (``None``);
    the values are what is compared here, not that dtype quirk.
    """
    history = history.sort_values(KEYS, ignore_index=True)
    empty = [c for c in history.columns if c not in KEYS and history[c].dtype == object]
    return history.astype({c: "float64" for c in empty})


def _assert_same(engine: pd.DataFrame, pandas: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(_comparable(pandas), _comparable(engine),
                                  check_dtype=False, rtol=1e-9)


# --- a simulated book: every source, a year of weekly snapshots ---------------------------

AS_OF = dt.date(2025, 12, 31)


@pytest.fixture(scope="module")
def book_tables() -> dict[str, pd.DataFrame]:
    book = simulate_book(SimulationConfig(n_accounts=40, seed=5, start=dt.date(2025, 1, 1),
                                          end=dt.date(2025, 12, 31)))
    return dict(book.sources)


def test_reference_equals_engine_on_a_simulated_book(book_tables):
    engine = compute_metric_history(book_tables, AS_OF, Config())
    pandas = reference.reference_metric_history(book_tables, AS_OF, Config())
    assert len(engine) > 1000 and engine.shape[1] > 55  # every group takes part
    assert list(pandas.columns) == list(engine.columns)
    _assert_same(engine, pandas)


# --- a hand-made book of edge cases --------------------------------------------------------

D = dt.date(2024, 4, 7)
EDGE_CONFIG = Config(metrics=MetricsConfig(
    # Snapshots every 3 days over 60 days: dense near the window edges, and the
    # fall from peak only sees the snapshots in the history.
    snapshot_every_days=3, history_days=60,
    key_features=("report", "share"), advanced_features=("api",),
    onboarding_milestones=("kickoff", "admin", "go_live"),  # nobody reaches "admin"
))


def _ts(*values: str | None) -> pd.Series:
    return pd.to_datetime(pd.Series(values), format="ISO8601").astype("datetime64[us]")


def _str(*values: str | None) -> pd.Series:
    return pd.Series(values, dtype="str")


def edge_book() -> dict[str, pd.DataFrame]:
    """Three accounts, every source, each row there to exercise one rule."""
    accounts = pd.DataFrame({"account_id": _str("a", "b", "c"),
                             "created_at": _ts("2023-01-01", "2024-01-10", "2024-02-01")})
    subscriptions = pd.DataFrame({
        "account_id": _str("a", "a", "a", "b", "b", "c"),
        "start_date": _ts("2023-01-01", "2024-01-01", "2024-02-01", "2024-01-10", "2024-03-20",
                          "2024-02-01"),
        # a: two overlapping terms (sums, earliest end, longest term); b: a gap between
        # terms, so it leaves and re-enters the grid; c: no seats.
        "end_date": _ts("2024-01-01", "2025-01-01", "2024-03-01", "2024-02-20", "2024-06-01",
                        "2024-08-01"),
        "arr": [900.0, 1000.0, 500.0, 200.0, 250.0, 0.0],
        "seats": pd.array([10, 10, 0, 3, 3, 0], dtype="Int64"),
    })
    events = pd.DataFrame({
        "account_id": _str("a", "a", "a", "a", "b", "b", "a", "a", "a"),
        "timestamp": _ts("2024-01-02 00:00", "2024-02-15 23:59:59", "2024-02-15 12:00",
                         "2024-03-10 08:00", "2024-01-20", "2024-04-01", "2024-04-07 10:00",
                         "2024-04-08", "2024-03-08 23:59:59"),
        "event": _str("login", "report", "api", "report", "login", "share", "login", "report",
                      "share"),
        "user_id": _str("u1", None, "u2", "u1", "v1", "v2", None, "u3", "u2"),  # anonymous rows
        "count": pd.array([None, 2, 3, None, 1, 4, 2, 1, 6], dtype="Int64"),  # empty count = 1
        "value": [5.0, None, None, 2.5, None, None, None, None, None],
    })
    tickets = pd.DataFrame({
        "account_id": _str("a", "a", "a", "b", "a"),
        "created_at": _ts("2024-01-05 10:00", "2024-02-10 10:00", "2024-03-30 09:00",
                          "2024-01-15", "2023-03-01"),
        # Never resolved; resolved on D itself; resolved the same day; open for a year.
        "resolved_at": _ts("2024-01-06 10:00", None, "2024-04-07 09:00", "2024-01-15 08:00", None),
        "priority": _str("urgent", None, "low", "high", "normal"),
        "csat": pd.array([3, None, 5, 2, None], dtype="Int64"),
    })
    surveys = pd.DataFrame({
        "account_id": _str("a", "a", "a", "b", "a"),
        "responded_at": _ts("2023-09-01", "2024-01-20", "2024-03-01", "2024-02-01", "2023-04-01"),
        "kind": _str("nps", "nps", "csat", "nps", "nps"),  # the last is over 365 days old
        "score": [9.0, 3.0, 4.0, 10.0, 0.0],
    })
    csm_notes = pd.DataFrame({
        "account_id": _str("a", "a", "c"),
        "recorded_at": _ts("2023-10-01", "2024-02-01", "2024-03-01"),
        "sentiment": [7.0, 4.0, 9.0],
    })
    onboarding = pd.DataFrame({
        "account_id": _str("a", "a", "c", "c"),
        "milestone": _str("kickoff", "not_expected", "kickoff", "go_live"),
        "completed_at": _ts("2024-01-03", "2024-03-01", "2024-01-25", "2024-04-01"),
    })
    invoices = pd.DataFrame({
        "account_id": _str("a", "a", "a", "b", "a"),
        "issued_at": _ts("2024-01-01", "2024-02-01", "2024-03-01", "2024-01-10", "2023-01-01"),
        "due_at": _ts("2024-01-31", "2024-03-01", "2024-04-07", "2024-02-09", "2023-01-31"),
        "amount": [10.0, 20.0, 30.0, 40.0, 70.0],
        # Paid late; unpaid; due on D and paid after it; on time; unpaid for over a year.
        "paid_at": _ts("2024-02-02", None, "2024-04-08", "2024-02-01", None),
    })
    marketing = pd.DataFrame({"account_id": _str("a", "c"),
                              "timestamp": _ts("2024-03-30", "2024-01-20"),
                              "kind": _str("webinar", "docs_visit")})
    account_metrics = pd.DataFrame({
        "account_id": _str("a", "a", "b"),
        "as_of_date": _ts("2024-03-03", "2024-04-01", "2024-02-01"),
        # a's newest row has empty cells: the latest value is the older one.
        "health": [1.0, np.nan, 3.0],
        "integrations": pd.array([1, None, 2], dtype="Int64"),
    })
    return {"accounts": accounts, "subscriptions": subscriptions, "events": events,
            "tickets": tickets, "surveys": surveys, "csm_notes": csm_notes,
            "onboarding": onboarding, "invoices": invoices, "marketing": marketing,
            "account_metrics": account_metrics}


@pytest.fixture(scope="module")
def edge_histories() -> tuple[pd.DataFrame, pd.DataFrame]:
    tables = edge_book()
    return (_comparable(compute_metric_history(tables, D, EDGE_CONFIG)),
            _comparable(reference.reference_metric_history(tables, D, EDGE_CONFIG)))


def test_reference_equals_engine_on_edge_cases(edge_histories):
    engine, pandas = edge_histories
    assert list(pandas.columns) == list(engine.columns)
    assert set(engine["account_id"]) == {"a", "b", "c"}
    # Includes an invoice overdue for over a year and an empty newest own-metric cell,
    # two cases the engine once got wrong.
    _assert_same(engine, pandas)


def test_reference_hand_computed_on_edge_cases(edge_histories):
    """The reference itself, by hand, on the edge cases the engine once got wrong."""
    _, pandas = edge_histories
    a = pandas.set_index(KEYS).loc[("a", pd.Timestamp(D))]
    assert a["invoices_overdue_days_max_current"] == (D - dt.date(2023, 1, 31)).days
    assert a["invoices_unpaid_amount_current"] == 20 + 70
    assert a["invoices_late_count_365d"] == 2  # paid late, and the one due 2024-03-01
    assert a["own_health_latest"] == 1 and a["own_integrations_latest"] == 1
    assert a["tickets_open_count_current"] == 2  # the year-old one still counts
