"""Books the demo simulator did not write: a small, independent generator for tests.

It follows the contract but not the simulator's habits: integer account ids, the
product's own event names (an online-learning product), daily pre-aggregated usage
stamped at midnight (every row of a day ties), survey campaigns that stamp every
response with the send time, free plans with ARR 0, accounts that start late, and
monthly and annual terms. Churn is driven by a latent health that also drives usage,
support, surveys and payments, so a model has something real to learn.

``without(book, "events.count")`` and ``without(book, "tickets")`` remove one optional
column or source, for the "optional means optional" matrix.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

EVENTS = ("lesson_view", "quiz_submit", "video_play", "forum_post", "certificate_issued")
MILESTONES = ("welcome_call", "sso_configured", "first_course_published")

# Every optional column of every source in the contract, and every optional source.
OPTIONAL_COLUMNS = (
    "accounts.name", "accounts.segment", "accounts.industry", "accounts.csm",
    "subscriptions.subscription_id", "subscriptions.plan", "subscriptions.seats",
    "subscriptions.status",
    "events.user_id", "events.count", "events.value",
    "tickets.ticket_id", "tickets.resolved_at", "tickets.priority", "tickets.csat",
    "surveys.user_id", "invoices.invoice_id", "invoices.paid_at", "csm_notes.note",
    "marketing.user_id",
)
OPTIONAL_SOURCES = ("tickets", "surveys", "onboarding", "invoices", "csm_notes", "marketing",
                    "account_metrics")
REQUIRED = {
    "accounts": ["account_id", "created_at"],
    "subscriptions": ["account_id", "start_date", "end_date", "arr"],
    "events": ["account_id", "timestamp", "event"],
}


def foreign_book(accounts: int = 80, days: int = 540, seed: int = 0, start: str = "2024-01-06",
                 string_ids: bool = False, annual_share: float = 0.35,
                 churn_bias: float = 0.0) -> dict[str, pd.DataFrame]:
    """A contract book of ``accounts`` accounts over ``days`` days from ``start``.

    Args:
        accounts: Number of accounts.
        days: Days of history.
        seed: Random seed (same seed, same book).
        start: First day.
        string_ids: Account ids like ``"org-17"`` instead of integers.
        annual_share: Share of accounts on annual terms (the rest are monthly).
        churn_bias: Added to every renewal's churn log-odds.
    """
    rng = np.random.default_rng(seed)
    day0 = pd.Timestamp(start)
    ids = np.arange(1001, 1001 + accounts)
    account_ids = [f"org-{i}" for i in ids] if string_ids else list(ids)
    # Half the accounts exist from the start, the rest arrive over the first 60%.
    created = np.where(rng.random(accounts) < 0.5, 0, rng.integers(0, int(days * 0.6), accounts))
    annual = rng.random(accounts) < annual_share
    free = rng.random(accounts) < 0.1
    seats = rng.integers(2, 9, accounts)
    # Latent health per account and day: a level plus a random walk; low health churns.
    level = rng.normal(0.3, 1.0, accounts)
    walk = np.cumsum(rng.normal(0, 0.08, (accounts, days)), axis=1)
    health = level[:, None] + walk

    terms, churn_day = [], np.full(accounts, days + 1)
    for a in range(accounts):
        length = 365 if annual[a] else 30
        begin = int(created[a])
        while begin < days:
            end = begin + length
            price = 0.0 if free[a] else float(seats[a] * (1200 if annual[a] else 110))
            terms.append((account_ids[a], begin, end, price, int(seats[a])))
            if end >= days:
                break
            h = health[a, min(end - 1, days - 1)]
            if rng.random() < 1 / (1 + np.exp(-(-2.0 - 1.4 * h + churn_bias))):
                churn_day[a] = end
                break
            begin = end
    subscriptions = pd.DataFrame(terms, columns=["account_id", "s", "e", "arr", "seats"])
    subscriptions["start_date"] = day0 + pd.to_timedelta(subscriptions.pop("s"), unit="D")
    subscriptions["end_date"] = day0 + pd.to_timedelta(subscriptions.pop("e"), unit="D")
    subscriptions.insert(0, "subscription_id", [f"T{i}" for i in range(len(subscriptions))])
    subscriptions["plan"] = np.where(subscriptions["arr"] == 0, "free", "paid")
    subscriptions["status"] = pd.Series(pd.NA, index=subscriptions.index, dtype="str")

    # Usage: each user's active days, one row per user, day and event type with a count.
    alive = (np.arange(days)[None, :] >= created[:, None]) & (np.arange(days)[None, :] < churn_day[:, None])
    rows = []
    for a in range(accounts):
        active_p = 1 / (1 + np.exp(-(health[a] - 0.2))) * 0.55
        for user in range(int(seats[a]) - (0 if health[a, -1] > 0 else 1)):
            on = alive[a] & (rng.random(days) < active_p)
            for d in np.flatnonzero(on):
                kinds = rng.choice(len(EVENTS) - 1, size=rng.integers(1, 3), replace=False)
                for k in kinds:
                    rows.append((account_ids[a], d, EVENTS[k], f"{account_ids[a]}-u{user}",
                                 int(rng.integers(1, 6))))
            if alive[a].any() and rng.random() < 0.3:
                d = int(rng.choice(np.flatnonzero(alive[a])))
                rows.append((account_ids[a], d, EVENTS[-1], f"{account_ids[a]}-u{user}", 1))
    events = pd.DataFrame(rows, columns=["account_id", "d", "event", "user_id", "count"])
    events["timestamp"] = day0 + pd.to_timedelta(events.pop("d"), unit="D")  # midnight: ties
    events["value"] = np.where(events["event"] == EVENTS[-1], rng.integers(50, 500, len(events)), np.nan)
    events = events[["account_id", "timestamp", "event", "user_id", "count", "value"]]

    accounts_table = pd.DataFrame({
        "account_id": account_ids,
        "created_at": day0 + pd.to_timedelta(created, unit="D"),
        "name": [f"School {i}" for i in ids],
        "segment": np.where(annual, "district", "teacher"),
        "industry": "education",
        "csm": np.where(annual, "Ana", None),
    })
    alive_days = [np.flatnonzero(alive[a]) for a in range(accounts)]
    tickets, surveys, notes, touches, milestones, invoices, own = [], [], [], [], [], [], []
    for a in range(accounts):
        live = alive_days[a]
        if not len(live):
            continue
        for d in live[rng.random(len(live)) < 0.02 * (1.5 - np.tanh(health[a, live]))]:
            opened = d + rng.random() * 0.9
            resolved = opened + rng.exponential(30) / 24 if rng.random() < 0.85 else np.nan
            tickets.append((account_ids[a], opened, resolved,
                            rng.choice(["low", "normal", "high", "urgent"], p=[.3, .4, .2, .1]),
                            float(np.clip(round(3.5 + health[a, d]), 1, 5)) if rng.random() < 0.5 else np.nan))
        # A survey campaign each quarter: every responder stamped with the send time.
        for d in live[(live % 91) == 45]:
            for user in range(int(seats[a])):
                if rng.random() < 0.4:
                    surveys.append((account_ids[a], d + 0.375, "nps",
                                    float(np.clip(round(7 + 2 * health[a, d] + rng.normal(0, 1.5)), 0, 10)),
                                    f"{account_ids[a]}-u{user}"))
        for d in live[(live % 30) == 10]:
            sentiment = float(np.clip(round(6 + 2 * health[a, d]), 1, 10))
            notes.append((account_ids[a], d + 0.5, sentiment, "monthly check-in"))
            if rng.random() < 0.2:  # a second note at the same minute
                notes.append((account_ids[a], d + 0.5, max(1.0, sentiment - 2), "escalation"))
        for d in live[rng.random(len(live)) < 0.03]:
            touches.append((account_ids[a], d + 0.6, rng.choice(["webinar", "newsletter_click"]),
                            f"{account_ids[a]}-u0"))
        for k, name in enumerate(MILESTONES):
            if rng.random() < 0.5 + 0.15 * health[a, live[0]] and live[0] + 7 * (k + 1) < days:
                milestones.append((account_ids[a], name, live[0] + 7 * (k + 1) + 0.4))
        for d in live[(live - live[0]) % 30 == 0]:
            paid = d + (rng.integers(1, 25) if health[a, d] > -0.6 else rng.integers(25, 80))
            invoices.append((account_ids[a], d, d + 30, float(seats[a] * 100),
                             paid if paid < days else np.nan))
        for d in live[(live % 7) == 3]:
            own.append((account_ids[a], d, float(rng.integers(0, int(seats[a]) + 1))))

    def stamp(values) -> pd.Series:
        return day0 + pd.to_timedelta(pd.Series(values, dtype="float64"), unit="D")

    tickets_table = pd.DataFrame(tickets, columns=["account_id", "c", "r", "priority", "csat"])
    tickets_table["created_at"] = stamp(tickets_table.pop("c")).dt.floor("min")
    tickets_table["resolved_at"] = stamp(tickets_table.pop("r")).dt.floor("min")
    tickets_table.insert(0, "ticket_id", [f"K{i}" for i in range(len(tickets_table))])
    surveys_table = pd.DataFrame(surveys, columns=["account_id", "t", "kind", "score", "user_id"])
    surveys_table.insert(1, "responded_at", stamp(surveys_table.pop("t")))
    notes_table = pd.DataFrame(notes, columns=["account_id", "t", "sentiment", "note"])
    notes_table.insert(1, "recorded_at", stamp(notes_table.pop("t")))
    marketing = pd.DataFrame(touches, columns=["account_id", "t", "kind", "user_id"])
    marketing.insert(1, "timestamp", stamp(marketing.pop("t")).dt.floor("min"))
    onboarding = pd.DataFrame(milestones, columns=["account_id", "milestone", "t"])
    onboarding["completed_at"] = stamp(onboarding.pop("t")).dt.floor("min")
    invoice_table = pd.DataFrame(invoices, columns=["account_id", "i", "d", "amount", "p"])
    for column, name in (("i", "issued_at"), ("d", "due_at"), ("p", "paid_at")):
        invoice_table[name] = stamp(invoice_table.pop(column))
    invoice_table.insert(0, "invoice_id", [f"I{i}" for i in range(len(invoice_table))])
    own_table = pd.DataFrame(own, columns=["account_id", "d", "seats_assigned"])
    own_table.insert(1, "as_of_date", stamp(own_table.pop("d")))
    # Nothing is stamped after the last day of the book.
    end = day0 + pd.Timedelta(days=days - 1)
    book = {
        "accounts": accounts_table, "subscriptions": subscriptions, "events": events,
        "tickets": tickets_table, "surveys": surveys_table, "onboarding": onboarding,
        "invoices": invoice_table, "csm_notes": notes_table, "marketing": marketing,
        "account_metrics": own_table,
    }
    for name, table in book.items():
        for column in table.columns:
            if pd.api.types.is_datetime64_any_dtype(table[column]) and name != "subscriptions":
                table[column] = table[column].where(table[column] <= end + pd.Timedelta(hours=23))
    book["tickets"] = book["tickets"].loc[book["tickets"]["created_at"].notna()]
    book["invoices"] = book["invoices"].loc[book["invoices"]["due_at"].notna()]
    return book


def without(book: dict[str, pd.DataFrame], *what: str) -> dict[str, pd.DataFrame]:
    """The book without some optional sources (``tickets``) or columns (``events.value``)."""
    out = dict(book)
    for item in what:
        source, _, column = item.partition(".")
        if column:
            out[source] = out[source].drop(columns=[column])
        else:
            out.pop(source)
    return out


def minimal(book: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Only the required sources, with only their required columns."""
    return {name: book[name][columns] for name, columns in REQUIRED.items()}


def write_book(book: dict[str, pd.DataFrame], folder: Path, fmt: str = "csv") -> Path:
    """Write a book as one file per source (``csv`` or ``parquet``)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, table in book.items():
        if fmt == "parquet":
            table.to_parquet(folder / f"{name}.parquet", index=False)
        else:
            out = table.copy()
            for column in out.columns:
                if pd.api.types.is_datetime64_any_dtype(out[column]):
                    out[column] = out[column].dt.strftime("%Y-%m-%dT%H:%M:%S")
            out.to_csv(folder / f"{name}.csv", index=False)
    return folder
