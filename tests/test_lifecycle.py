"""Code tests: activity and churn derived from subscription terms, point-in-time."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.lifecycle import active_accounts, churn_events, known_terms, renewal_outcomes

T = pd.Timestamp


def terms(*rows: tuple) -> pd.DataFrame:
    """rows: (account_id, start, end[, status])."""
    frame = pd.DataFrame(
        [(f"s{i}", r[0], T(r[1]), T(r[2]), r[3] if len(r) > 3 else None) for i, r in enumerate(rows)],
        columns=["subscription_id", "account_id", "start_date", "end_date", "status"],
    )
    frame["start_date"] = frame["start_date"].astype("datetime64[us]")
    frame["end_date"] = frame["end_date"].astype("datetime64[us]")
    return frame


def outcome(subs: pd.DataFrame, as_of: str, grace: int = 30) -> list[tuple[str, str, str | None]]:
    out = renewal_outcomes(subs, T(as_of), grace)
    return [
        (r.subscription_id, r.outcome, None if pd.isna(r.known_at) else r.known_at.date().isoformat())
        for r in out.itertuples()
    ]


def test_active_on_day_covers_start_not_end():
    subs = terms(("a", "2024-01-01", "2024-02-01"))
    assert list(active_accounts(subs, T("2024-01-01"))) == ["a"]
    assert list(active_accounts(subs, T("2024-01-31"))) == ["a"]
    assert list(active_accounts(subs, T("2024-02-01"))) == []


def test_contiguous_renewal():
    subs = terms(("a", "2024-01-01", "2024-02-01"), ("a", "2024-02-01", "2024-03-01"))
    assert outcome(subs, "2024-02-15") == [("s0", "renewed", "2024-02-01")]


def test_late_renewal_within_grace_is_a_renewal():
    subs = terms(("a", "2024-01-01", "2024-02-01"), ("a", "2024-02-20", "2024-03-20"))
    assert outcome(subs, "2024-02-25") == [("s0", "renewed", "2024-02-20")]


def test_no_new_term_churns_once_grace_has_passed():
    subs = terms(("a", "2024-01-01", "2024-02-01"))
    assert outcome(subs, "2024-02-01") == [("s0", "pending", None)]
    assert outcome(subs, "2024-03-01") == [("s0", "pending", None)]
    assert outcome(subs, "2024-03-02") == [("s0", "churned", "2024-03-02")]
    assert outcome(subs, "2024-02-01", grace=0) == [("s0", "churned", "2024-02-01")]


def test_gap_longer_than_grace_is_churn_then_reactivation():
    subs = terms(("a", "2024-01-01", "2024-02-01"), ("a", "2024-04-01", "2024-05-01"))
    assert outcome(subs, "2024-04-15") == [("s0", "churned", "2024-03-02")]
    events = churn_events(subs, T("2024-06-15"))
    assert events["churn_date"].dt.date.astype(str).tolist() == ["2024-02-01", "2024-05-01"]


def test_overlapping_term_of_another_product_keeps_account_alive():
    subs = terms(("a", "2024-01-01", "2024-02-01"), ("a", "2023-12-01", "2024-12-01"))
    assert outcome(subs, "2024-06-01")[0][:2] == ("s0", "renewed")


def test_explicit_status_overrides_derived_outcome():
    # Renewed by status although no next term is in the data yet.
    subs = terms(("a", "2024-01-01", "2024-02-01", "renewed"))
    assert outcome(subs, "2024-06-01") == [("s0", "renewed", "2024-02-01")]
    # Churned by status: known at the term's end, no grace period to wait for.
    subs = terms(("a", "2024-01-01", "2024-02-01", "churned"), ("a", "2024-02-10", "2024-03-10"))
    assert outcome(subs, "2024-02-15")[0] == ("s0", "churned", "2024-02-01")
    out = renewal_outcomes(subs, T("2024-02-15"))
    assert out.loc[0, "decided_by"] == "status"


def test_terms_not_yet_started_are_unknown():
    subs = terms(("a", "2024-01-01", "2024-02-01"), ("a", "2024-02-25", "2024-03-25"))
    assert len(known_terms(subs, T("2024-02-24"))) == 1
    # As of 2024-02-24 the renewal has not started: nobody knew it would come.
    assert outcome(subs, "2024-02-24") == [("s0", "pending", None)]


def test_open_terms_have_no_outcome():
    subs = terms(("a", "2024-01-01", "2025-01-01"))
    assert outcome(subs, "2024-06-01") == []
    assert churn_events(subs, T("2024-06-01")).empty


# --- point-in-time invariants ---------------------------------------------------------

DAY0 = T("2024-01-01")


@st.composite
def books(draw: st.DrawFn) -> pd.DataFrame:
    rows = []
    for account in ("a", "b", "c"):
        day = draw(st.integers(0, 60))
        for _ in range(draw(st.integers(1, 4))):
            length = draw(st.sampled_from([30, 31, 90, 365]))
            status = draw(st.sampled_from([None, None, None, "renewed", "churned"]))
            rows.append((account, DAY0 + pd.Timedelta(days=day),
                         DAY0 + pd.Timedelta(days=day + length), status))
            day += length + draw(st.sampled_from([0, 0, 5, 29, 30, 31, 90]))
    return terms(*[(a, s, e, st_) for a, s, e, st_ in rows])


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(subs=books(), cut=st.integers(0, 900), later=st.integers(1, 400), grace=st.sampled_from([0, 30]))
def test_nothing_after_d_changes_outcomes_as_of_d(subs, cut, later, grace):
    as_of = DAY0 + pd.Timedelta(days=cut)
    full = renewal_outcomes(subs, as_of, grace)
    # 1. Removing every term that starts after D changes nothing as of D.
    truncated = renewal_outcomes(subs.loc[subs["start_date"] <= as_of], as_of, grace)
    pd.testing.assert_frame_equal(full, truncated)
    # 2. An outcome known by D is final: later data and later as-of dates keep it.
    decided = full.loc[full["outcome"] != "pending"]
    after = renewal_outcomes(subs, as_of + pd.Timedelta(days=later), grace)
    merged = decided.merge(after, on="subscription_id", suffixes=("", "_later"))
    assert len(merged) == len(decided)
    assert (merged["outcome"] == merged["outcome_later"]).all()
    assert (merged["known_at"] == merged["known_at_later"]).all()
    assert (decided["known_at"] <= as_of).all()


@pytest.mark.parametrize("grace", [1, 30])
def test_pending_resolves_by_end_plus_grace(grace):
    subs = terms(("a", "2024-01-01", "2024-02-01"))
    end = T("2024-02-01") + pd.Timedelta(days=grace)
    assert outcome(subs, str((end - pd.Timedelta(days=1)).date()), grace)[0][1] == "pending"
    assert outcome(subs, str(end.date()), grace)[0][1] == "churned"
