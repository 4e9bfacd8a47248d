"""Tests of the demo-book simulator: contract shape, hard invariants, and that the
generative story (health drives churn and every observable) is visible in the data."""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from healthscore.simulate import (
    ADVANCED_FEATURES,
    KEY_FEATURES,
    ONBOARDING_MILESTONES,
    DemoBook,
    SimulationConfig,
    simulate_book,
)

SMALL = SimulationConfig(n_accounts=150, seed=3, chunk_size=64)

COLUMNS = {
    "accounts": ["account_id", "created_at", "name", "segment", "industry", "csm"],
    "subscriptions": ["subscription_id", "account_id", "start_date", "end_date", "arr", "plan", "seats", "status"],
    "events": ["account_id", "timestamp", "event", "user_id", "count", "value"],
    "tickets": ["ticket_id", "account_id", "created_at", "resolved_at", "priority", "csat"],
    "surveys": ["account_id", "responded_at", "kind", "score", "user_id"],
    "onboarding": ["account_id", "milestone", "completed_at"],
    "invoices": ["invoice_id", "account_id", "issued_at", "due_at", "amount", "paid_at"],
    "csm_notes": ["account_id", "recorded_at", "sentiment", "note"],
    "marketing": ["account_id", "timestamp", "kind", "user_id"],
}
DATES = {
    "accounts": ["created_at"], "subscriptions": ["start_date", "end_date"],
    "invoices": ["issued_at", "due_at", "paid_at"], "account_metrics": ["as_of_date"],
}
# Observed stamps: none may lie outside the window or before the account existed.
OBSERVED = {
    "accounts": ["created_at"], "subscriptions": ["start_date"], "events": ["timestamp"],
    "tickets": ["created_at", "resolved_at"], "surveys": ["responded_at"],
    "onboarding": ["completed_at"], "invoices": ["issued_at", "paid_at"],
    "csm_notes": ["recorded_at"], "marketing": ["timestamp"], "account_metrics": ["as_of_date"],
}
# Activity: each of these rows must fall on a day a subscription covers.
ACTIVITY = {
    "events": "timestamp", "tickets": "created_at", "surveys": "responded_at",
    "marketing": "timestamp", "csm_notes": "recorded_at", "account_metrics": "as_of_date",
    "onboarding": "completed_at", "invoices": "issued_at",
}


@pytest.fixture(scope="module")
def book() -> DemoBook:
    return simulate_book(SMALL)


@pytest.fixture(scope="module")
def default_book() -> DemoBook:
    return simulate_book(SimulationConfig())


def _covering_term(book: DemoBook, frame: pd.DataFrame, column: str) -> pd.DataFrame:
    """Each row's day with the latest subscription starting on or before it."""
    subs = book.sources["subscriptions"][["account_id", "subscription_id", "start_date", "end_date", "plan"]]
    left = frame.dropna(subset=[column]).assign(day=lambda f: f[column].dt.normalize())
    return pd.merge_asof(left.sort_values("day"), subs.sort_values("start_date"), left_on="day",
                         right_on="start_date", by="account_id", direction="backward")


def _renewals_with_plan(book: DemoBook) -> pd.DataFrame:
    subs = book.sources["subscriptions"][["subscription_id", "plan"]]
    r = book.truth["renewals"].merge(subs, on="subscription_id", validate="1:1")
    return r.assign(monthly=r["plan"].str.endswith("monthly"))


# ---------------------------------------------------------------- shape


def test_sources_have_exactly_the_contract_columns_and_rows(book: DemoBook) -> None:
    assert set(book.sources) == set(COLUMNS) | {"account_metrics"}
    for name, frame in book.sources.items():
        assert len(frame) > 0, name
        if name == "account_metrics":
            assert list(frame.columns[:2]) == ["account_id", "as_of_date"]
            assert 2 <= len(frame.columns) - 2 <= 3
            assert all(pd.api.types.is_numeric_dtype(frame[c]) for c in frame.columns[2:])
        else:
            assert list(frame.columns) == COLUMNS[name], name


def test_dtypes_are_plain(book: DemoBook) -> None:
    for name, frame in book.sources.items():
        for column in frame.columns:
            dtype = frame[column].dtype
            if column.endswith("_id") or column in ("name", "segment", "event", "kind", "plan", "note"):
                assert pd.api.types.is_string_dtype(dtype), (name, column)
            elif column in DATES.get(name, []):
                assert dtype.kind == "M" and getattr(dtype, "tz", None) is None, (name, column)
                values = frame[column].dropna()
                assert (values == values.dt.normalize()).all(), (name, column)
    s = book.sources
    assert s["subscriptions"]["seats"].dtype == np.int64 and s["events"]["count"].dtype == np.int64
    assert s["events"]["value"].dtype == np.float64 and s["subscriptions"]["arr"].dtype == np.float64
    assert str(s["tickets"]["csat"].dtype) == "Int64"
    # Timestamps carry a time of day spread over the day, not midnight stamps.
    ts = s["events"]["timestamp"]
    assert ts.dt.tz is None
    assert (ts == ts.dt.normalize()).mean() < 0.01
    assert ts.dt.hour.nunique() == 24


def test_truth_frames(book: DemoBook) -> None:
    t = book.truth
    assert list(t["renewals"].columns) == [
        "account_id", "subscription_id", "decision_date", "p_churn", "churned", "health_at_decision"]
    assert list(t["health"].columns) == ["account_id", "date", "health"]
    assert list(t["accounts"].columns) == [
        "account_id", "onboarding_quality", "baseline_health", "champion_left_date", "budget_cut_date"]
    assert t["renewals"]["churned"].dtype == bool
    assert t["renewals"]["p_churn"].between(0, 1).all()
    assert (t["health"]["date"].dt.day_of_week == 0).all()
    assert t["accounts"]["account_id"].tolist() == book.sources["accounts"]["account_id"].tolist()


# ---------------------------------------------------------------- ids and references


def test_ids_are_unique(book: DemoBook) -> None:
    s = book.sources
    for name, column in [("accounts", "account_id"), ("subscriptions", "subscription_id"),
                         ("tickets", "ticket_id"), ("invoices", "invoice_id"), ("accounts", "name")]:
        assert s[name][column].is_unique, (name, column)
        assert s[name][column].notna().all()
    assert not s["onboarding"].duplicated(["account_id", "milestone"]).any()
    assert not s["account_metrics"].duplicated(["account_id", "as_of_date"]).any()
    ev = s["events"].assign(day=lambda f: f["timestamp"].dt.normalize())
    assert not ev.duplicated(["account_id", "user_id", "event", "day"]).any()


def test_every_account_id_exists(book: DemoBook) -> None:
    known = set(book.sources["accounts"]["account_id"])
    for name, frame in [*book.sources.items(), *book.truth.items()]:
        assert set(frame["account_id"]) <= known, name
    # user ids belong to their account.
    for name in ("events", "surveys", "marketing"):
        f = book.sources[name]
        assert (f["user_id"].str.slice(4, 9) == f["account_id"].str.slice(5, 10)).all(), name


# ---------------------------------------------------------------- time invariants


def test_nothing_outside_the_window_or_before_creation(book: DemoBook) -> None:
    start, end = pd.Timestamp(SMALL.start), pd.Timestamp(SMALL.end)
    created = book.sources["accounts"].set_index("account_id")["created_at"]
    for name, columns in OBSERVED.items():
        frame = book.sources[name]
        for column in columns:
            values = frame[column]
            ok = values.isna() | ((values >= start) & (values < end + pd.Timedelta(days=1))
                                  & (values >= frame["account_id"].map(created)))
            assert ok.all(), (name, column, frame[~ok].head())
    # Scheduled dates may lie after the end: open terms' renewal dates, due dates.
    subs = book.sources["subscriptions"]
    assert (subs["end_date"] > end).any()


def test_activity_only_while_a_subscription_covers_the_day(book: DemoBook) -> None:
    for name, column in ACTIVITY.items():
        m = _covering_term(book, book.sources[name], column)
        covered = m["start_date"].notna() & (m["day"] < m["end_date"])
        assert covered.all(), (name, m[~covered].head())
    # Closing a ticket or paying a bill is activity too.
    for name, column in [("tickets", "resolved_at"), ("invoices", "paid_at")]:
        m = _covering_term(book, book.sources[name], column)
        assert (m["start_date"].notna() & (m["day"] < m["end_date"])).all(), name
    health = _covering_term(book, book.truth["health"], "date")
    assert (health["day"] < health["end_date"]).all()


def test_churned_accounts_go_silent(book: DemoBook) -> None:
    r = book.truth["renewals"]
    churn_day = r[r["churned"]].set_index("account_id")["decision_date"]
    assert len(churn_day) > 0
    last_event = book.sources["events"].groupby("account_id")["timestamp"].max()
    both = last_event.index.intersection(churn_day.index)
    assert (last_event[both] < churn_day[both]).all()
    subs = book.sources["subscriptions"]
    last_end = subs.groupby("account_id")["end_date"].max().reindex(churn_day.index)
    assert (last_end.to_numpy() == churn_day.to_numpy()).all()


def test_terms_are_contiguous_and_decided(book: DemoBook) -> None:
    subs = book.sources["subscriptions"].sort_values(["account_id", "start_date"])
    end = pd.Timestamp(SMALL.end)
    assert (subs["end_date"] > subs["start_date"]).all()
    nxt = subs.groupby("account_id")["start_date"].shift(-1)
    has_next = nxt.notna()
    assert (nxt[has_next] == subs["end_date"][has_next]).all()  # contiguous, no overlap, no gap
    assert (subs["end_date"][has_next] <= end).all()
    # Terms ending by the end of data are decided; exactly those are in the truth.
    decided = subs[subs["end_date"] <= end]
    r = book.truth["renewals"].set_index("subscription_id")
    assert set(decided["subscription_id"]) == set(r.index)
    assert (r.loc[decided["subscription_id"], "decision_date"].to_numpy() == decided["end_date"].to_numpy()).all()
    renewed = r.loc[decided["subscription_id"], "churned"].to_numpy() == False  # noqa: E712
    assert (has_next[decided.index].to_numpy() == renewed).all()
    # First term starts when the account is created.
    first = subs.groupby("account_id")["start_date"].min()
    created = book.sources["accounts"].set_index("account_id")["created_at"]
    assert (first == created[first.index]).all()


def test_status_is_partial_and_truthful(book: DemoBook) -> None:
    subs = book.sources["subscriptions"]
    end = pd.Timestamp(SMALL.end)
    assert subs.loc[subs["end_date"] > end, "status"].isna().all()
    decided = subs[subs["end_date"] <= end].merge(book.truth["renewals"], on=["subscription_id", "account_id"])
    filled = decided["status"].notna()
    assert 0.15 < filled.mean() < 0.45
    assert (decided.loc[filled, "status"] == np.where(decided.loc[filled, "churned"], "churned", "renewed")).all()


def test_cohorts_give_labels(book: DemoBook) -> None:
    created = book.sources["accounts"]["created_at"]
    at_start = created == pd.Timestamp(SMALL.start)
    assert 0.3 < at_start.mean() < 0.5
    assert created.max() <= pd.Timestamp(SMALL.end) - pd.Timedelta(days=89)
    assert created[~at_start].nunique() > 0.4 * len(created)  # spread over the window
    r = book.truth["renewals"]
    assert r["account_id"].nunique() > 0.6 * len(created)


def test_invoices_at_billing_starts(book: DemoBook) -> None:
    inv = book.sources["invoices"]
    assert (inv["amount"] > 0).all()
    assert (inv["due_at"] - inv["issued_at"] == pd.Timedelta(days=30)).all()
    assert (inv["paid_at"].dropna() >= inv.loc[inv["paid_at"].notna(), "issued_at"]).all()
    m = _covering_term(book, inv, "issued_at")
    months = (m["issued_at"].dt.year * 12 + m["issued_at"].dt.month) - (
        m["start_date"].dt.year * 12 + m["start_date"].dt.month)
    stub = m["start_date"] == pd.Timestamp(SMALL.start)  # contract signed before the data starts
    monthly = m["plan"].str.endswith("monthly")
    assert (m.loc[monthly & ~stub, "issued_at"] == m.loc[monthly & ~stub, "start_date"]).all()
    assert months[~monthly & ~stub].isin([0, 3, 6, 9]).all()
    # Every monthly term not truncated by the window start bills exactly once.
    subs = book.sources["subscriptions"]
    full = subs[subs["plan"].str.endswith("monthly") & (subs["start_date"] > pd.Timestamp(SMALL.start))]
    per_term = m.groupby("subscription_id").size()
    assert (per_term.reindex(full["subscription_id"]).fillna(0) == 1).all()
    assert 0 < inv["paid_at"].isna().mean() < 0.3


# ---------------------------------------------------------------- values


def test_value_ranges(book: DemoBook) -> None:
    s = book.sources
    subs = s["subscriptions"]
    assert (subs["arr"] > 0).all() and (subs["seats"] >= 1).all()
    assert set(s["accounts"]["segment"]) == {"SMB", "Mid-Market", "Enterprise"}
    ev = s["events"]
    assert (ev["count"] >= 1).all()
    assert set(ev["event"]) == {"login", "deal_closed", *KEY_FEATURES, *ADVANCED_FEATURES}
    assert ev["value"].notna().eq(ev["event"] == "deal_closed").all()
    assert (ev["value"].dropna() > 0).all()
    t = s["tickets"]
    assert set(t["priority"]) == {"low", "normal", "high", "urgent"}
    assert t["csat"].dropna().between(1, 5).all() and 0.3 < t["csat"].isna().mean() < 0.7
    assert 0 < t["resolved_at"].isna().mean() < 0.1
    assert (t["resolved_at"].dropna() > t.loc[t["resolved_at"].notna(), "created_at"]).all()
    sv = s["surveys"]
    assert set(sv["kind"]) == {"nps", "csat"}
    assert sv.loc[sv["kind"] == "nps", "score"].between(0, 10).all()
    assert sv.loc[sv["kind"] == "csat", "score"].between(1, 5).all()
    assert s["csm_notes"]["sentiment"].between(1, 10).all() and s["csm_notes"]["note"].str.len().gt(10).all()
    assert set(s["marketing"]["kind"]) >= {"email_click", "webinar", "docs_visit"}
    am = s["account_metrics"]
    assert (am["as_of_date"].dt.day_of_week == 0).all()
    assert (am["integrations_connected"] >= 0).all() and am["api_error_rate"].between(0, 1).all()


def test_csm_only_for_managed_accounts(book: DemoBook) -> None:
    acc = book.sources["accounts"]
    smb = acc["segment"] == "SMB"
    assert acc.loc[smb, "csm"].isna().all() and acc.loc[~smb, "csm"].notna().all()
    noted = set(book.sources["csm_notes"]["account_id"])
    assert noted <= set(acc.loc[~smb, "account_id"]) and len(noted) > 0


def test_onboarding_in_order_and_driven_by_quality(book: DemoBook) -> None:
    ob = book.sources["onboarding"]
    rank = ob["milestone"].map({m: i for i, m in enumerate(ONBOARDING_MILESTONES)})
    ordered = ob.assign(rank=rank).sort_values(["account_id", "completed_at"])
    assert (ordered.groupby("account_id")["rank"].diff().dropna() > 0).all()
    # Accounts signed in the window with room to finish: better onboarding, more milestones.
    acc = book.sources["accounts"]
    late = acc[(acc["created_at"] > pd.Timestamp(SMALL.start))
               & (acc["created_at"] < pd.Timestamp(SMALL.end) - pd.Timedelta(days=200))]
    done = ob.groupby("account_id").size().reindex(late["account_id"]).fillna(0)
    quality = book.truth["accounts"].set_index("account_id")["onboarding_quality"][late["account_id"]]
    assert np.corrcoef(done.to_numpy(), quality.to_numpy())[0, 1] > 0.3


def test_users_join_gradually(book: DemoBook) -> None:
    acc = book.sources["accounts"]
    new = acc.loc[acc["created_at"] > pd.Timestamp(SMALL.start), ["account_id", "created_at"]]
    ev = book.sources["events"].merge(new, on="account_id")
    age = (ev["timestamp"] - ev["created_at"]).dt.days
    early = ev[age < 14].groupby("account_id")["user_id"].nunique()
    later = ev[(age >= 120) & (age < 134)].groupby("account_id")["user_id"].nunique()
    both = early.index.intersection(later.index)
    assert len(both) > 10
    assert (later[both] > early[both]).mean() > 0.6


# ---------------------------------------------------------------- determinism


def test_same_config_same_book(book: DemoBook) -> None:
    again = simulate_book(SMALL)
    for group in ("sources", "truth"):
        for name, frame in getattr(book, group).items():
            pd.testing.assert_frame_equal(frame, getattr(again, group)[name], check_exact=True)


def test_other_seed_other_book(book: DemoBook) -> None:
    other = simulate_book(dataclasses.replace(SMALL, seed=SMALL.seed + 1))
    assert not other.sources["accounts"]["name"].equals(book.sources["accounts"]["name"])
    assert len(other.sources["events"]) != len(book.sources["events"])
    assert not other.truth["renewals"]["p_churn"].head(50).equals(book.truth["renewals"]["p_churn"].head(50))


def test_progress_is_reported() -> None:
    stages: list[str] = []
    simulate_book(SimulationConfig(n_accounts=12, chunk_size=5, seed=1), progress=stages.append)
    assert stages[0] == "accounts"
    assert [s for s in stages if s.startswith("chunk")] == ["chunk 1/3", "chunk 2/3", "chunk 3/3"]


def test_bad_config_is_rejected() -> None:
    with pytest.raises(ValueError):
        simulate_book(SimulationConfig(n_accounts=0))
    with pytest.raises(ValueError):
        simulate_book(SimulationConfig(start=dt.date(2025, 1, 1), end=dt.date(2025, 3, 1)))


# ---------------------------------------------------------------- the generative story


def test_churn_rates_are_plausible(default_book: DemoBook) -> None:
    r = _renewals_with_plan(default_book)
    annual, monthly = r[~r["monthly"]], r[r["monthly"]]
    assert len(annual) > 100 and len(monthly) > 500
    assert 0.06 < annual["churned"].mean() < 0.22
    assert 0.01 < monthly["churned"].mean() < 0.04
    share = r.groupby("account_id")["churned"].any().sum() / len(default_book.sources["accounts"])
    assert 0.10 < share < 0.28


def test_default_book_volume(default_book: DemoBook) -> None:
    assert 500_000 <= len(default_book.sources["events"]) <= 2_000_000
    assert len(default_book.sources["accounts"]) == 400


def test_oracle_auc_shows_learnable_drivers(book: DemoBook) -> None:
    r = book.truth["renewals"]
    assert r["churned"].sum() >= 10
    assert roc_auc_score(r["churned"], r["p_churn"]) > 0.7
    # Health alone already ranks churners.
    assert roc_auc_score(r["churned"], -r["health_at_decision"]) > 0.7
    assert r.loc[r["churned"], "health_at_decision"].mean() < r.loc[~r["churned"], "health_at_decision"].mean() - 0.3


def _weekly(f: pd.DataFrame, column: str) -> pd.Series:
    """Rows per (account, Monday-starting week)."""
    week = (f[column].dt.normalize() - pd.to_timedelta(f[column].dt.day_of_week, unit="D")).astype("datetime64[us]")
    return f.groupby([f["account_id"], week.rename("date")]).size()


def _within_account_corr(book: DemoBook, counts: pd.Series) -> float:
    """Correlation of weekly counts with weekly health, both centred per account."""
    h = book.truth["health"].set_index(["account_id", "date"])["health"]
    df = pd.DataFrame({"health": h, "n": counts.reindex(h.index).fillna(0)})
    centred = df - df.groupby(level="account_id").transform("mean")
    return float(centred["health"].corr(centred["n"]))


def test_health_drives_usage_tickets_and_marketing(book: DemoBook) -> None:
    s = book.sources
    assert _within_account_corr(book, _weekly(s["events"], "timestamp")) > 0.2
    assert _within_account_corr(book, _weekly(s["tickets"], "created_at")) < -0.05
    assert _within_account_corr(book, _weekly(s["marketing"], "timestamp")) > 0.05
    # Deeper use goes with health: advanced features' share of events rises with it.
    adv = s["events"][s["events"]["event"].isin(ADVANCED_FEATURES)]
    share = (_weekly(adv, "timestamp") / _weekly(s["events"], "timestamp")).dropna()
    h = book.truth["health"].set_index(["account_id", "date"])["health"].reindex(share.index)
    assert share.corr(h, method="spearman") > 0.2


def test_health_drives_opinions(book: DemoBook) -> None:
    health = book.truth["health"].sort_values("date")
    for name, column, kind in [("surveys", "responded_at", "nps"), ("csm_notes", "recorded_at", None)]:
        f = book.sources[name]
        if kind:
            f = f[f["kind"] == kind]
        m = pd.merge_asof(f.sort_values(column), health, left_on=column, right_on="date", by="account_id")
        score = m["score"] if kind else m["sentiment"]
        assert score.corr(m["health"]) > 0.4, name
    t = book.sources["tickets"]
    m = pd.merge_asof(t.sort_values("created_at"), health, left_on="created_at", right_on="date", by="account_id")
    urgent = m["priority"].isin(["high", "urgent"])
    assert m.loc[urgent, "health"].mean() < m.loc[~urgent, "health"].mean()
    answered = m["csat"].notna()
    assert m.loc[answered, "csat"].astype(float).corr(m.loc[answered, "health"]) > 0.2


def test_late_payers_are_unhealthy(book: DemoBook) -> None:
    inv = book.sources["invoices"]
    health = book.truth["health"].sort_values("date")
    m = pd.merge_asof(inv.sort_values("issued_at"), health, left_on="issued_at", right_on="date",
                      by="account_id").dropna(subset=["health"])
    late = m["paid_at"].isna() | (m["paid_at"] > m["due_at"])
    assert m.loc[late, "health"].mean() < m.loc[~late, "health"].mean()


def test_shocks_hit_health_and_seats(default_book: DemoBook) -> None:
    traits = default_book.truth["accounts"]
    health = default_book.truth["health"].merge(traits, on="account_id")
    for column in ("champion_left_date", "budget_cut_date"):
        hit = health[health[column].notna()]
        weeks = (hit["date"] - hit[column]).dt.days
        before, after = hit.loc[weeks.between(-56, -1), "health"], hit.loc[weeks.between(0, 27), "health"]
        assert after.mean() < before.mean() - 0.2, column
    # Seats shrink at the first annual renewal after a budget cut.
    subs = default_book.sources["subscriptions"].merge(traits, on="account_id").sort_values(["account_id", "start_date"])
    subs["prev_seats"] = subs.groupby("account_id")["seats"].shift()
    cut = subs[subs["budget_cut_date"].notna() & subs["prev_seats"].notna() & subs["plan"].str.endswith("annual")
               & (subs["start_date"] > subs["budget_cut_date"])]
    first = cut.groupby("account_id").head(1)
    assert len(first) >= 3
    assert (first["seats"] / first["prev_seats"]).median() < 0.9
