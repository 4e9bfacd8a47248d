"""A deterministic simulator of a B2B SaaS book of accounts.

The simulated book is the project's demo data and the ground truth for model tests.
Everything observable is driven by one hidden quantity, the account's *latent health*
``h[account, day]`` (about standard-normal scale: 0 is a typical account, -2 a
customer about to leave, +2 a fan):

* ``h`` is a mean-reverting (Ornstein-Uhlenbeck) walk around the account's baseline.
  Poor onboarding pulls it down for the first ~90 days; a champion leaving or a budget
  cut knocks it down suddenly (part of the drop is permanent, part recovers).
* At every term end the renewal is drawn with
  ``p_churn = sigmoid(b0[cycle] + b1 * mean(h, last 45 days) + b2 * trend + segment
  + discount + budget cut)``. Renewals resize seats with health.
* Usage, tickets, surveys, CSM notes, invoices, marketing touches and warehouse
  metrics are noisy functions of ``h`` on the days the account is a paying customer.

Conventions of the data: an account is active on day D iff a subscription has
``start_date <= D < end_date``, and nothing observed (usage, tickets, surveys, notes,
touches, metrics, milestones, bills, payments) happens on other days. Customers signed
before the data starts get ``created_at = start`` and a first term truncated to begin
at ``start``; what they did before is not in the data. Scheduled dates may lie after
``end``: the ``end_date`` of a term still running and an invoice's ``due_at``.
Timestamps are naive UTC.

The generator works on (accounts x days) matrices in chunks of accounts, so large
books stay within memory. Per-account traits are drawn for the whole book up front
(independent of chunking); day-level noise comes from one random stream per chunk,
so a given config (including ``chunk_size``) always produces identical frames.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

KEY_FEATURES: tuple[str, ...] = ("create_report", "share_dashboard", "run_workflow", "export_data")
ADVANCED_FEATURES: tuple[str, ...] = ("api_call", "automation_rule", "custom_integration")
ONBOARDING_MILESTONES: tuple[str, ...] = (
    "kickoff", "admin_setup", "integration", "first_value", "team_training", "go_live",
)
VALUE_EVENT = "deal_closed"  # the one event whose ``value`` carries an amount
EVENT_TYPES: tuple[str, ...] = ("login", *KEY_FEATURES, *ADVANCED_FEATURES, VALUE_EVENT)
SEGMENTS: tuple[str, ...] = ("SMB", "Mid-Market", "Enterprise")
MARKETING_KINDS: tuple[str, ...] = ("email_click", "docs_visit", "webinar", "event_attended")

# Per segment (SMB, Mid-Market, Enterprise).
_SEG_SHARE = np.array([0.62, 0.29, 0.09])
_SEAT_LO = np.array([3.0, 20.0, 100.0])
_SEAT_HI = np.array([25.0, 150.0, 1000.0])
_SEG_HEALTH = np.array([-0.1, 0.0, 0.15])
_SEG_CHURN = np.array([0.25, 0.0, -0.3])  # small accounts leave more easily
_TICKET_RATE = np.array([0.012, 0.035, 0.08])  # tickets per account-day at h = 0
_DEAL_SIZE = np.array([2_500.0, 9_000.0, 30_000.0])
# Plan tiers and list price per seat-month.
_TIERS = ("Starter", "Team", "Business", "Enterprise")
_PRICE = np.array([12.0, 25.0, 42.0, 68.0])
# Event model, columns in EVENT_TYPES order: intercept, health slope, extra counts.
_EV_ICPT = np.array([np.inf, -0.9, -1.6, -1.3, -2.1, -3.0, -3.4, -4.2, -3.6])
_EV_SLOPE = np.array([0.0, 0.9, 0.9, 0.9, 0.9, 1.3, 1.3, 1.3, 0.5])
_EV_EXTRA = np.array([0.8, 1.2, 0.8, 1.0, 0.6, 4.0, 0.8, 0.5, 0.15])
# Onboarding: days between milestones at perfect quality, and the quality below which
# a milestone tends not to be reached at all.
_MS_GAP = np.array([2.0, 5.0, 10.0, 12.0, 14.0, 18.0])
_MS_THRESHOLD = np.array([-1.0, 0.25, 0.38, 0.45, 0.5, 0.55])

_PREFIXES = (
    "Northwind", "Bluebird", "Summit", "Acme", "Pinnacle", "Cobalt", "Evergreen", "Harbor",
    "Ironclad", "Juniper", "Keystone", "Lumen", "Meridian", "Nimbus", "Orchid", "Paragon",
    "Quarry", "Redwood", "Sierra", "Tidewater", "Umbra", "Vantage", "Willow", "Zephyr",
    "Atlas", "Beacon", "Cedar", "Delta", "Ember", "Falcon", "Granite", "Helix", "Indigo",
    "Jasper", "Kestrel", "Lakeside", "Maple", "Nova", "Oakridge", "Polaris", "Quantum",
    "Riverbend", "Sterling", "Trident", "Unity", "Vertex", "Westfield", "Yellowstone",
)
_CORES = (
    "Analytics", "Logistics", "Health", "Foods", "Robotics", "Capital", "Media", "Systems",
    "Labs", "Partners", "Energy", "Retail", "Software", "Networks", "Dynamics", "Biotech",
    "Ventures", "Learning", "Manufacturing", "Consulting", "Insurance", "Motors", "Security",
    "Apparel", "Logic", "Cloud", "Data", "Supply", "Studios", "Outfitters",
)
_LEGAL = (" Inc.", " LLC", " Group", " Ltd.", " GmbH", " Co.", " Corp.", " S.A.")
_INDUSTRIES = (
    "Software", "Financial Services", "Healthcare", "Retail", "Manufacturing", "Education",
    "Media", "Logistics", "Professional Services", "Real Estate",
)
_FIRST = ("Dana", "Lee", "Priya", "Marco", "Aisha", "Tom", "Sofia", "Kenji", "Grace", "Omar",
          "Elena", "Jonas", "Maya", "Luis", "Hannah", "Ravi")
_LAST = ("Okafor", "Schmidt", "Nakamura", "Reyes", "Patel", "Larsen", "Moreau", "Kim",
         "Novak", "Silva", "Brennan", "Cohen")
_NOTES = (  # by sentiment band: 1-3, 4-6, 7-8, 9-10
    ("Escalation: {} blocking the team; sponsor disengaged.",
     "Customer frustrated with {}; renewal at risk.", "Usage dropping; complaints about {}."),
    ("Mixed feedback on {}; follow-up scheduled.", "Check-in; some friction around {}.",
     "Steady usage; asked for help with {}."),
    ("Positive check-in; team happy with {}.", "QBR went well; discussed {} roadmap.",
     "Adoption growing; training on {} requested."),
    ("Champion very engaged; expansion via {} discussed.", "Glowing feedback on {}; reference candidate.",
     "Exec sponsor praised {}; upsell likely."),
)
_TOPICS = ("reporting", "dashboards", "the API", "workflow automation", "onboarding new users",
           "integrations", "billing", "performance", "SSO setup", "data exports")

_DAY_S = 86_400
_MAX_TENURE = 400  # days a pre-window customer may have been signed before the data starts
# Row order of every output (chunks hold consecutive accounts, so sorting within a
# chunk sorts the whole book without a global sort).
_SORT_KEYS = {
    "terms": ("a", "start"), "events": ("a", "day", "sec", "rank", "event"), "tickets": ("a", "created"),
    "surveys": ("a", "at", "rank"), "onboarding": ("a", "at"), "invoices": ("a", "issued"),
    "csm_notes": ("a", "at"), "marketing": ("a", "at", "rank"), "account_metrics": ("a", "day"),
    "health": ("a", "day"),
}
_TERM_COLS = ("a", "start", "end", "t", "seats", "arr", "decided", "churned", "p_churn", "health")


@dataclass(frozen=True)
class SimulationConfig:
    """What book to simulate.

    Attributes:
        n_accounts: Number of accounts (ever) in the book.
        seed: Seed of all randomness; same config -> identical book.
        start: First day of data.
        end: Last day of data, inclusive.
        initial_share: Share of accounts already customers at ``start`` (their
            ``created_at`` is ``start``; their first term is the remainder of a contract
            signed up to ~13 months earlier). The rest sign up over the window, up to
            90 days before ``end``.
        chunk_size: Accounts simulated together; bounds memory. Part of the config
            because day-level noise is drawn per chunk.
        max_users_per_account: Cap on modelled users per account; big accounts' usage
            is scaled down to it to bound the event volume.
        status_share: Share of decided terms whose ``status`` column is filled in; the
            rest are empty and the pipeline must derive the outcome.
        champion_leave_rate: Probability an account's champion leaves during the window.
        budget_cut_rate: Probability an account suffers a budget cut during the window.
        churn_intercept_annual: Churn logit intercept of an annual renewal.
        churn_intercept_monthly: Churn logit intercept of a monthly renewal.
        churn_health_coef: Churn logit per unit of mean health over the last 45 days.
        churn_trend_coef: Churn logit per unit of health trend (last 30 days minus
            days 60-90 before the decision).
        churn_discount_coef: Churn logit per unit of discount (0.25 -> +0.5).
        churn_budget_cut: Churn logit added at the first renewal after a budget cut.
    """

    n_accounts: int = 400
    seed: int = 7
    start: dt.date = dt.date(2024, 10, 1)
    end: dt.date = dt.date(2026, 9, 30)
    initial_share: float = 0.4
    chunk_size: int = 250
    max_users_per_account: int = 40
    status_share: float = 0.3
    champion_leave_rate: float = 0.25
    budget_cut_rate: float = 0.12
    churn_intercept_annual: float = -3.1
    churn_intercept_monthly: float = -5.5
    churn_health_coef: float = -1.8
    churn_trend_coef: float = -1.2
    churn_discount_coef: float = 2.0
    churn_budget_cut: float = 0.5


@dataclass(frozen=True)
class DemoBook:
    """A simulated book.

    Attributes:
        sources: The ten contract sources, keyed by source name.
        truth: Generator ground truth: ``renewals`` (one row per renewal decision, with
            the ``p_churn`` used), ``health`` (weekly latent health while active) and
            ``accounts`` (hidden traits).
    """

    sources: dict[str, pd.DataFrame]
    truth: dict[str, pd.DataFrame]


def simulate_book(config: SimulationConfig = SimulationConfig(),
                  progress: Callable[[str], None] | None = None) -> DemoBook:
    """Simulate a book of accounts. Pure: no I/O, no global state.

    Args:
        config: What to simulate.
        progress: Called with a short stage name ("accounts", "chunk 2/8",
            "assemble") as work advances.

    Returns:
        The contract sources and the generator's ground truth.

    Raises:
        ValueError: If the config is not usable.
    """
    n_days = (config.end - config.start).days + 1
    if config.n_accounts < 1 or config.chunk_size < 1 or not 1 <= config.max_users_per_account <= 999:
        raise ValueError("n_accounts and chunk_size must be >= 1, max_users_per_account in 1..999")
    if n_days < 180:
        raise ValueError("the window must span at least 180 days")
    if not (0 <= config.initial_share <= 1 and 0 <= config.status_share <= 1):
        raise ValueError("initial_share and status_share must lie in [0, 1]")
    report = progress or (lambda _stage: None)
    trait_seed, name_seed, chunk_seed = np.random.SeedSequence(config.seed).spawn(3)

    report("accounts")
    acc = _draw_accounts(config, n_days, np.random.default_rng(trait_seed))
    cal = _calendar(config.start, n_days)
    starts = range(0, config.n_accounts, config.chunk_size)
    parts: dict[str, list[dict[str, np.ndarray]]] = {}
    for i, (lo, seed) in enumerate(zip(starts, chunk_seed.spawn(len(starts)), strict=True)):
        report(f"chunk {i + 1}/{len(starts)}")
        sub = {k: v[lo:lo + config.chunk_size] for k, v in acc.items()}
        for name, part in _simulate_chunk(config, sub, cal, seed, lo).items():
            parts.setdefault(name, []).append(part)
    report("assemble")
    cols: dict[str, dict[str, np.ndarray]] = {}
    while parts:  # free each chunk's arrays as soon as they are merged: big books are memory-bound
        name, ps = parts.popitem()
        cols[name] = {k: np.concatenate([p.pop(k) for p in ps]) for k in list(ps[0])}
    return _assemble(config, acc, cols, np.random.default_rng(name_seed))


# ---------------------------------------------------------------- account traits


def _draw_accounts(cfg: SimulationConfig, n_days: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Draw every per-account trait, numbered in order of first appearance."""
    n = cfg.n_accounts
    seg = rng.choice(3, size=n, p=_SEG_SHARE)
    initial = rng.random(n) < cfg.initial_share
    # origin = day the first contract was signed (negative: before the data starts).
    origin = np.where(initial, -rng.integers(0, _MAX_TENURE, n), rng.integers(1, n_days - 89, n))
    seats0 = np.round(np.exp(rng.uniform(np.log(_SEAT_LO[seg]), np.log(_SEAT_HI[seg])))).astype(np.int64)
    u = rng.random(n)
    monthly = np.where(seg == 0, u < 0.6, (seg == 1) & (u < 0.1))
    billing = np.where(monthly, 1, np.where((seg > 0) & (rng.random(n) < 0.3), 3, 12))
    tier = np.where(seg == 0, (rng.random(n) > 0.45).astype(np.int64), seg + 1)
    discount = np.round(rng.uniform(0.0, np.where(monthly, 0.10, 0.25)), 3)
    quality = rng.beta(5.0, 2.2, n)
    baseline = _SEG_HEALTH[seg] + 0.9 * (quality - 5.0 / 7.2) + rng.normal(0.0, 0.55, n)
    first = np.maximum(origin, 0)

    def shock_day(rate: float) -> np.ndarray:
        # A shock can hit any day from a month into the relationship to the window end.
        room = n_days - first - 30
        day = first + 30 + np.floor(rng.random(n) * np.maximum(room, 0)).astype(np.int64)
        return np.where((rng.random(n) < rate) & (room > 0), day, -1)

    champion, budget = shock_day(cfg.champion_leave_rate), shock_day(cfg.budget_cut_rate)
    util = rng.uniform(0.55, 0.95, n)  # share of seats that end up with a user
    wanted = np.ceil(1.3 * seats0 * util)  # 1.3: headroom for seat expansion
    pool = np.minimum(cfg.max_users_per_account, wanted).astype(np.int64)
    acc = {
        "seg": seg, "origin": origin, "first": first, "seats0": seats0,
        "cycle": np.where(monthly, 1, 12), "billing": billing, "tier": tier,
        "discount": discount, "quality": quality, "baseline": baseline,
        "champion": champion, "budget": budget, "util": util, "pool": pool,
        "user_scale": pool / wanted,
        # Working hours centre in UTC: Europe, US east, US west, APAC.
        "hour": rng.choice([12.0, 17.0, 20.0, 3.0], size=n, p=[0.35, 0.35, 0.2, 0.1]) + rng.normal(0, 0.7, n),
        "ticket_size": (seats0 / _SEAT_LO[seg]) ** 0.3,
    }
    order = np.lexsort((origin, first))  # account ids follow sign-up order
    return {k: v[order] for k, v in acc.items()}


def _calendar(start: dt.date, n_days: int) -> dict[str, np.ndarray]:
    """Day-level calendar effects shared by all accounts."""
    dates = pd.date_range(start, periods=n_days, freq="D")
    weekday = dates.day_of_week.to_numpy()
    month, day = dates.month.to_numpy(), dates.day.to_numpy()
    holidays = ((month == 12) & (day >= 20)) | ((month == 1) & (day <= 2))
    usage = np.where(weekday >= 5, -2.6, 0.0) - 1.2 * holidays - 0.35 * (month == 8)
    work = np.where(weekday >= 5, 0.25, 1.0) * np.where(holidays, 0.4, 1.0)
    quarter_start = (day == 1) & np.isin(month, (1, 4, 7, 10))
    return {"weekday": weekday, "usage": usage, "work": work, "quarter": np.flatnonzero(quarter_start)}


def _add_months(start: dt.date, origin: np.ndarray, n_months: int) -> np.ndarray:
    """Window-day index of ``origin + j`` calendar months, j = 0..n_months-1.

    Anniversaries are computed from the origin (not cumulatively) so that a contract
    signed on the 31st renews on the last day of short months and the 31st again.
    """
    base = np.datetime64(start, "D")
    signed = base + origin.astype("timedelta64[D]")
    month0 = signed.astype("datetime64[M]")
    day_of_month = (signed - month0.astype("datetime64[D]")).astype(np.int64)
    months = month0[:, None] + np.arange(n_months)
    first = months.astype("datetime64[D]")
    length = ((months + 1).astype("datetime64[D]") - first).astype(np.int64)
    return (first - base).astype(np.int64) + np.minimum(day_of_month[:, None], length - 1)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


# ---------------------------------------------------------------- one chunk


def _simulate_chunk(cfg: SimulationConfig, acc: dict[str, np.ndarray], cal: dict[str, np.ndarray],
                    seed: np.random.SeedSequence, offset: int) -> dict[str, dict[str, np.ndarray]]:
    """Simulate every source for one chunk; ``offset`` is the chunk's first account index."""
    rngs = [np.random.default_rng(s) for s in seed.spawn(11)]
    n_days = len(cal["weekday"])
    h = _simulate_health(acc, n_days, rngs[0])
    grid = _add_months(cfg.start, acc["origin"], (n_days + _MAX_TENURE) // 28 + 14)  # covers every term end
    terms = _simulate_terms(cfg, acc, h, grid, rngs[1])
    seats_day = np.zeros((len(h), n_days + 1), dtype=np.int64)
    np.add.at(seats_day, (terms["a"], terms["start"]), terms["seats"])
    np.add.at(seats_day, (terms["a"], np.minimum(terms["end"], n_days)), -terms["seats"])
    seats_day = np.cumsum(seats_day, axis=1)[:, :n_days]  # 0 on days without a contract
    active = seats_day > 0
    last = np.where(active.any(axis=1), n_days - 1 - np.argmax(active[:, ::-1], axis=1), -1)
    users = _simulate_users(acc, seats_day, rngs[2])
    out = {
        "terms": terms,
        "events": _simulate_events(acc, h, cal, users, rngs[3]),
        "tickets": _simulate_tickets(acc, h, cal, active, last, rngs[4]),
        "surveys": _simulate_surveys(acc, h, cal, active, users, rngs[5]),
        "onboarding": _simulate_onboarding(acc, active, rngs[6]),
        "invoices": _simulate_invoices(acc, h, grid, terms, last, rngs[7]),
        "csm_notes": _simulate_csm_notes(acc, h, active, rngs[8]),
        "marketing": _simulate_marketing(acc, h, cal, active, users, rngs[9]),
        "account_metrics": _simulate_metrics(acc, h, cal, active, seats_day, rngs[10]),
    }
    monday = np.flatnonzero(cal["weekday"] == 0)
    a, w = np.nonzero(active[:, monday])
    out["health"] = {"a": a, "day": monday[w], "health": h[a, monday[w]]}
    for name, part in out.items():
        part["a"] = part["a"] + offset  # local -> global account index
        order = np.lexsort(tuple(part[k] for k in reversed(_SORT_KEYS[name])))
        out[name] = {k: v[order] for k, v in part.items()}
    return out


def _simulate_health(acc: dict[str, np.ndarray], n_days: int, rng: np.random.Generator) -> np.ndarray:
    """Latent health (accounts x days): an OU walk around a shifting mean."""
    n = len(acc["seg"])
    theta, sd = 1.0 / 30.0, 0.45  # ~30-day memory, stationary spread around the mean
    sigma = sd * np.sqrt(1.0 - (1.0 - theta) ** 2)
    days = np.arange(n_days)
    age = days[None, :] - acc["origin"][:, None]
    onboarding = np.clip(1.0 - age / 90.0, 0.0, 1.0) * (age >= 0)
    mu = acc["baseline"][:, None] - 2.0 * (1.0 - acc["quality"])[:, None] * onboarding
    jump = np.zeros((n, n_days))
    for day, drop, lasting in ((acc["champion"], 1.0, 0.35), (acc["budget"], 0.6, 0.2)):
        hit = day >= 0
        mu -= lasting * (hit[:, None] & (days[None, :] >= day[:, None]))
        jump[np.flatnonzero(hit), day[hit]] -= drop
    noise = rng.normal(0.0, sigma, (n, n_days))
    fresh = mu + rng.normal(0.0, sd, (n, n_days))  # used on the sign-up day only
    signup = acc["origin"]
    h = np.empty((n, n_days))
    x = fresh[:, 0]
    for d in range(n_days):
        x = np.where(signup == d, fresh[:, d], x + theta * (mu[:, d] - x) + noise[:, d] + jump[:, d])
        h[:, d] = x
    return h


def _simulate_terms(cfg: SimulationConfig, acc: dict[str, np.ndarray], h: np.ndarray,
                    grid: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Contract terms, renewal decisions and seat changes, one term index at a time."""
    n, n_days = h.shape
    cycle, first = acc["cycle"], acc["first"]
    csum = np.concatenate([np.zeros((n, 1)), np.cumsum(h, axis=1)], axis=1)

    def mean(idx: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        lo, hi = np.clip(lo, first[idx], n_days), np.clip(hi, first[idx], n_days)
        return (csum[idx, hi] - csum[idx, lo]) / np.maximum(hi - lo, 1)

    # The term running on the first customer day (a stub for pre-window contracts).
    cols = np.arange(grid.shape[1])
    t = ((grid <= first[:, None]) & (cols % cycle[:, None] == 0)).sum(axis=1) - 1
    seats = acc["seats0"].copy()
    cut_pending = acc["budget"] >= 0
    price = _PRICE[acc["tier"]] * 12.0 * (1.0 - acc["discount"])
    b0 = np.where(cycle == 1, cfg.churn_intercept_monthly, cfg.churn_intercept_annual)
    rows: list[tuple[np.ndarray, ...]] = []
    alive = np.ones(n, dtype=bool)
    while alive.any():
        i = np.flatnonzero(alive)
        start = np.maximum(grid[i, cycle[i] * t[i]], 0)
        end = grid[i, cycle[i] * (t[i] + 1)]
        decided = end <= n_days - 1  # decided on end_date, which lies in the window
        health = mean(i, end - 45, end)
        early = mean(i, end - 90, end - 60)
        has_trend = end - 90 >= first[i]
        trend = np.where(has_trend, mean(i, end - 30, end) - early, 0.0)
        cut = cut_pending[i] & (acc["budget"][i] < end)
        z = (b0[i] + cfg.churn_health_coef * health + cfg.churn_trend_coef * trend
             + _SEG_CHURN[acc["seg"][i]] + cfg.churn_discount_coef * acc["discount"][i]
             + cfg.churn_budget_cut * cut)
        p = _sigmoid(z)
        churned = decided & (rng.random(len(i)) < p)
        rows.append((i, start, end, t[i].copy(), seats[i].copy(), seats[i] * price[i],
                     decided, churned, p, health))
        renew = i[decided & ~churned]
        # Annual renewals resize with health; monthly seats change now and then.
        g = 0.12 * health + rng.normal(0.0, 0.07, len(i))
        annual = np.maximum(np.round(seats[i] * np.exp(g)), 1)
        step = np.maximum(np.round(0.1 * seats[i]), 1) * np.sign(health + rng.normal(0, 0.5, len(i)))
        monthly = np.where(rng.random(len(i)) < 0.15, np.maximum(seats[i] + step, 1), seats[i])
        new = np.where(cycle[i] == 12, annual, monthly)
        new = np.where(cut, np.maximum(np.round(new * rng.uniform(0.6, 0.85, len(i))), 1), new)
        ok = decided & ~churned
        seats[renew] = new[ok].astype(np.int64)
        cut_pending[renew[cut[ok]]] = False
        t[renew] += 1
        alive[i[~ok]] = False
    out = {k: np.concatenate([r[j] for r in rows]) for j, k in enumerate(_TERM_COLS)}
    labelled = out["decided"] & (rng.random(len(out["a"])) < cfg.status_share)
    out["status"] = np.where(labelled, out["churned"].astype(np.int64), -1)  # 1 churned, 0 renewed
    return out


def _simulate_users(acc: dict[str, np.ndarray], seats_day: np.ndarray,
                    rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Each account's users and the (users x days) mask of days they hold a seat."""
    pool = acc["pool"]
    ua = np.repeat(np.arange(len(pool)), pool)
    rank = np.arange(len(ua)) - np.repeat(np.cumsum(pool) - pool, pool)
    # The admin joins at sign-up; others trickle in (faster with good onboarding), a
    # few join much later as the customer hires.
    ramp = rng.exponential(45.0 / acc["quality"][ua])
    late = rng.random(len(ua)) < 0.15
    join_age = np.where(rank == 0, rng.integers(0, 3, len(ua)),
                        np.where(late, rng.uniform(0, 600, len(ua)), ramp)).astype(np.int64)
    join = acc["origin"][ua] + join_age
    n_days = seats_day.shape[1]
    days = np.arange(n_days)
    licensed = np.minimum(pool[:, None], np.ceil(seats_day * (acc["util"] * acc["user_scale"])[:, None]))
    seated = (rank[:, None] < licensed[ua]) & (days[None, :] >= join[:, None])
    champ = acc["champion"][ua]
    gone = (rank == 0)[:, None] & (champ >= 0)[:, None] & (days[None, :] >= champ[:, None])
    propensity = rng.normal(0.0, 0.8, len(ua))
    return {"a": ua, "rank": rank, "seated": seated & ~gone, "propensity": propensity,
            "offset": np.cumsum(pool) - pool}


def _pick_users(users: dict[str, np.ndarray], pool: np.ndarray, a: np.ndarray, day: np.ndarray,
                rng: np.random.Generator) -> np.ndarray:
    """A random user of account ``a`` seated on ``day`` (-1 when the draw hits an empty seat)."""
    rank = np.floor(rng.random(len(a)) * pool[a]).astype(np.int64)
    user = users["offset"][a] + rank
    return np.where(users["seated"][user, day], rank, -1)


def _simulate_events(acc: dict[str, np.ndarray], h: np.ndarray, cal: dict[str, np.ndarray],
                     users: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Daily usage per (user, day, event type), pre-aggregated into ``count``."""
    u, d = np.nonzero(users["seated"])
    a, lp = users["a"][u], users["propensity"][u]
    p_active = _sigmoid(-1.2 + 0.9 * h[a, d] + lp + cal["usage"][d])
    keep = rng.random(len(u)) < p_active
    u, d, a, lp = u[keep], d[keep], a[keep], lp[keep]
    hd = h[a, d]
    # Every active user-day logs in; features follow health and the user's appetite.
    p = _sigmoid(_EV_ICPT[None, :] + _EV_SLOPE[None, :] * hd[:, None] + 0.5 * lp[:, None])
    r, e = np.nonzero(rng.random(p.shape) < p)
    heavy = np.exp(0.5 * lp[r])
    count = 1 + rng.poisson(_EV_EXTRA[e] * heavy)
    ar = a[r]
    is_deal = e == EVENT_TYPES.index(VALUE_EVENT)
    amount = rng.lognormal(np.log(_DEAL_SIZE[acc["seg"][ar]]), 0.7) * count
    first_seen = acc["hour"][a] * 3600 + rng.normal(0.0, 2.0 * 3600, len(u))
    sec = first_seen[r] + np.where(e > 0, rng.exponential(1.5 * 3600, len(r)), 0.0)
    # Compact dtypes: events dominate the book's memory.
    return {"a": ar.astype(np.int32), "day": d[r].astype(np.int32), "sec": _time_of_day(sec).astype(np.int32),
            "event": e.astype(np.int8), "rank": users["rank"][u[r]].astype(np.int16),
            "count": count.astype(np.int32), "value": np.where(is_deal, np.round(amount, 2), np.nan)}


def _time_of_day(sec: np.ndarray) -> np.ndarray:
    """Second of the (UTC) day; work spilling past midnight wraps to the small hours."""
    return np.mod(np.floor(sec), _DAY_S).astype(np.int64)


def _account_days(rate: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Poisson counts per account-day, expanded to one (account, day) pair per item."""
    count = rng.poisson(rate)
    a, d = np.nonzero(count)
    k = count[a, d]
    return np.repeat(a, k), np.repeat(d, k)


def _simulate_tickets(acc: dict[str, np.ndarray], h: np.ndarray, cal: dict[str, np.ndarray],
                      active: np.ndarray, last: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Support tickets: more, more urgent, slower and less liked as health falls."""
    rate = (_TICKET_RATE[acc["seg"]] * acc["ticket_size"])[:, None] * np.exp(-0.7 * h) * cal["work"] * active
    a, d = _account_days(rate, rng)
    hd = h[a, d]
    logits = np.stack([np.full_like(hd, 0.3), np.full_like(hd, 1.2), -0.6 - 0.7 * hd, -2.2 - 1.0 * hd], axis=1)
    prob = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    priority = (rng.random(len(a))[:, None] > np.cumsum(prob, axis=1)[:, :-1]).sum(axis=1)
    created = d * _DAY_S + _time_of_day(acc["hour"][a] * 3600 + rng.normal(0, 3 * 3600, len(a)))
    hours = np.array([40.0, 24.0, 10.0, 4.0])[priority] * np.exp(-0.35 * hd + rng.normal(0, 0.6, len(a)))
    resolved = created + np.round(hours * 3600).astype(np.int64)
    # Still open at the end of the data, or never closed because the customer left.
    open_ = resolved // _DAY_S > last[a]
    score = np.clip(np.round(3.9 + 0.8 * hd - 0.3 * np.log(hours / 24.0) + rng.normal(0, 0.8, len(a))), 1, 5)
    answered = (rng.random(len(a)) < 0.5) & ~open_
    return {"a": a, "created": created, "resolved": np.where(open_, -1, resolved),
            "priority": priority, "csat": np.where(answered, score, -1).astype(np.int64)}


def _simulate_surveys(acc: dict[str, np.ndarray], h: np.ndarray, cal: dict[str, np.ndarray],
                      active: np.ndarray, users: dict[str, np.ndarray],
                      rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Quarterly NPS to a few users per account, plus occasional in-app CSAT."""
    n, n_days = h.shape
    # NPS: each quarter, up to 4 users are asked within ~3 weeks and some answer.
    waves = cal["quarter"]
    a = np.repeat(np.arange(n), len(waves) * 4)
    wave = np.tile(np.repeat(np.arange(len(waves)), 4), n)
    day = waves[wave] + rng.integers(0, 10, len(a)) + np.floor(rng.exponential(4.0, len(a))).astype(np.int64)
    ok = day < n_days
    a, wave, day = a[ok], wave[ok], day[ok]
    rank = _pick_users(users, acc["pool"], a, day, rng)
    answer = (rank >= 0) & (rng.random(len(a)) < _sigmoid(-0.6 + 0.4 * h[a, day]))
    a, wave, day, rank = a[answer], wave[answer], day[answer], rank[answer]
    _, once = np.unique((a * len(waves) + wave) * 10_000 + rank, return_index=True)  # one answer per user
    a, day, rank = a[once], day[once], rank[once]
    nps = np.clip(np.round(7 + 2.5 * h[a, day] + rng.normal(0, 1.3, len(a))), 0, 10)
    # CSAT pops up in the product now and then.
    ca, cd = _account_days(0.004 * np.sqrt(acc["pool"])[:, None] * active, rng)
    crank = _pick_users(users, acc["pool"], ca, cd, rng)
    ca, cd, crank = ca[crank >= 0], cd[crank >= 0], crank[crank >= 0]
    csat = np.clip(np.round(4 + 0.8 * h[ca, cd] + rng.normal(0, 0.8, len(ca))), 1, 5)
    aa, dd = np.concatenate([a, ca]), np.concatenate([day, cd])
    return {"a": aa, "at": dd * _DAY_S + _time_of_day(acc["hour"][aa] * 3600 + rng.normal(0, 2.5 * 3600, len(aa))),
            "kind": np.r_[np.zeros(len(a)), np.ones(len(ca))].astype(np.int64),
            "score": np.concatenate([nps, csat]).astype(np.int64), "rank": np.concatenate([rank, crank])}


def _simulate_onboarding(acc: dict[str, np.ndarray], active: np.ndarray,
                         rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Milestones in order; slower with poor onboarding, later ones may never come."""
    n, n_days = active.shape
    q = acc["quality"][:, None]
    gaps = _MS_GAP[None, :] / q * rng.lognormal(0.0, 0.3, (n, len(_MS_GAP)))
    day = acc["origin"][:, None] + np.floor(np.cumsum(gaps, axis=1)).astype(np.int64)
    reached = np.cumprod(rng.random(day.shape) < _sigmoid(8.0 * (q - _MS_THRESHOLD[None, :])), axis=1) > 0
    # Milestones before the data starts are not in the data; neither after churn.
    seen = reached & (day >= acc["first"][:, None]) & (day < n_days)
    seen[seen] = active[np.nonzero(seen)[0], day[seen]]
    a, m = np.nonzero(seen)
    sec = _time_of_day(acc["hour"][a] * 3600 + rng.normal(0, 2 * 3600, len(a)))
    return {"a": a, "milestone": m, "at": day[a, m] * _DAY_S + sec}


def _simulate_invoices(acc: dict[str, np.ndarray], h: np.ndarray, grid: np.ndarray,
                       terms: dict[str, np.ndarray], last: np.ndarray,
                       rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One invoice per billing period inside each term; unhealthy accounts pay late."""
    n_days = h.shape[1]
    a, t = terms["a"], terms["t"]
    cycle, billing = acc["cycle"][a], acc["billing"][a]
    out_a, out_day, out_amount = [], [], []
    for k in range(4):  # at most four billing periods per term (quarterly billing)
        col = np.minimum(cycle * t + billing * k, grid.shape[1] - 1)
        day = grid[a, col]
        ok = (k < cycle // billing) & (day >= terms["start"]) & (day < np.minimum(terms["end"], n_days))
        out_a.append(a[ok])
        out_day.append(day[ok])
        out_amount.append(np.round(terms["arr"][ok] * billing[ok] / 12.0, 2))
    a, day, amount = np.concatenate(out_a), np.concatenate(out_day), np.concatenate(out_amount)
    hd = h[a, day]
    paid = day + np.round(20.0 * np.exp(-0.5 * hd + rng.normal(0, 0.5, len(a)))).astype(np.int64)
    never = rng.random(len(a)) < _sigmoid(-4.5 - 1.5 * hd)
    unpaid = never | (paid > last[a])  # customers who left keep their last bill
    return {"a": a, "issued": day, "amount": amount, "paid": np.where(unpaid, -1, paid)}


def _simulate_csm_notes(acc: dict[str, np.ndarray], h: np.ndarray, active: np.ndarray,
                        rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Managed accounts get a CSM note every 2-5 weeks; sentiment tracks health."""
    n, n_days = h.shape
    k = n_days // 14 + 2
    gaps = rng.integers(14, 36, (n, k))
    gaps[:, 0] = rng.integers(3, 21, n)
    day = acc["first"][:, None] + np.cumsum(gaps, axis=1)
    ok = (acc["seg"] > 0)[:, None] & (day < n_days)
    ok[ok] = active[np.nonzero(ok)[0], day[ok]]
    a, j = np.nonzero(ok)
    day = day[a, j]
    sentiment = np.clip(np.round(5.5 + 2.0 * h[a, day] + rng.normal(0, 1.0, len(a))), 1, 10).astype(np.int64)
    band = np.searchsorted([3, 6, 8], sentiment, side="left")
    note = (band * 3 + rng.integers(0, 3, len(a))) * len(_TOPICS) + rng.integers(0, len(_TOPICS), len(a))
    sec = _time_of_day(acc["hour"][a] * 3600 + 2 * 3600 + rng.normal(0, 2 * 3600, len(a)))
    return {"a": a, "at": day * _DAY_S + sec, "sentiment": sentiment, "note": note}


def _simulate_marketing(acc: dict[str, np.ndarray], h: np.ndarray, cal: dict[str, np.ndarray],
                        active: np.ndarray, users: dict[str, np.ndarray],
                        rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Marketing touches by the account's users, more of them when healthy."""
    rate = 0.03 * np.sqrt(acc["pool"])[:, None] * np.exp(0.6 * h) * cal["work"] * active
    a, d = _account_days(rate, rng)
    rank = _pick_users(users, acc["pool"], a, d, rng)
    a, d, rank = a[rank >= 0], d[rank >= 0], rank[rank >= 0]
    kind = rng.choice(len(MARKETING_KINDS), size=len(a), p=[0.5, 0.3, 0.12, 0.08])
    sec = _time_of_day(acc["hour"][a] * 3600 + rng.normal(0, 3 * 3600, len(a)))
    return {"a": a, "at": d * _DAY_S + sec, "kind": kind, "rank": rank}


def _simulate_metrics(acc: dict[str, np.ndarray], h: np.ndarray, cal: dict[str, np.ndarray],
                      active: np.ndarray, seats_day: np.ndarray,
                      rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Weekly warehouse metrics (Mondays) loosely tied to health."""
    monday = np.flatnonzero(cal["weekday"] == 0)
    a, w = np.nonzero(active[:, monday])
    d = monday[w]
    hd, age = h[a, d], d - acc["origin"][a]
    ceiling = rng.poisson(1 + 5 * acc["quality"] + 2 * acc["seg"])  # integrations an account needs
    ramp = 1.0 - np.exp(-age / 75.0)
    integrations = np.round(ceiling[a] * ramp * np.clip(1 + 0.25 * hd, 0.3, 1.5) + rng.normal(0, 0.4, len(a)))
    error_rate = np.clip(0.015 * np.exp(-0.6 * hd + rng.normal(0, 0.35, len(a))), 0.0, 1.0)
    volume = seats_day[a, d] * 0.4 * np.exp(0.4 * hd + rng.normal(0, 0.2, len(a)))
    return {"a": a, "day": d, "integrations_connected": np.maximum(integrations, 0).astype(np.int64),
            "api_error_rate": np.round(error_rate, 5), "data_volume_gb": np.round(volume, 2)}


# ---------------------------------------------------------------- assembly


def _strings(codes: np.ndarray, categories: list[str] | np.ndarray) -> pd.Series:
    """Plain string column from integer codes (-1 = missing), built without Python loops."""
    codes = np.asarray(codes, dtype=np.int32)
    arr = pa.DictionaryArray.from_arrays(pa.array(codes, mask=codes < 0), pa.array(list(categories), pa.string()))
    return arr.cast(pa.string()).to_pandas()


def _serial(prefix: str, count: int) -> pd.Series:
    """Row ids ``prefix_0000000``, ``prefix_0000001``, ... in row order."""
    return _strings(np.arange(count), [f"{prefix}_{i:07d}" for i in range(count)])


def _times(base: np.datetime64, seconds: np.ndarray) -> np.ndarray:
    """Naive timestamps (UTC) from seconds since the window start; -1 = missing."""
    seconds = np.asarray(seconds, dtype=np.int64)
    out = (seconds * 1_000_000).view("timedelta64[us]") + base.astype("datetime64[us]")
    out[seconds < 0] = np.datetime64("NaT")
    return out


def _assemble(cfg: SimulationConfig, acc: dict[str, np.ndarray], cols: dict[str, dict[str, np.ndarray]],
              rng: np.random.Generator) -> DemoBook:
    """Turn the chunk outputs into the contract's frames, with string ids."""
    n = cfg.n_accounts
    base = np.datetime64(cfg.start, "s")
    width = max(5, len(str(n)))
    account_ids = np.array([f"acct_{i:0{width}d}" for i in range(n)], dtype=object)

    def ids(a: np.ndarray) -> pd.Series:
        return _strings(a, account_ids)

    def day_dates(day: np.ndarray) -> np.ndarray:
        return _times(base, np.where(np.asarray(day) < 0, -1, np.asarray(day) * _DAY_S))

    cap = int(acc["pool"].max())
    user_names: list[str] = []

    def user_ids(a: np.ndarray, rank: np.ndarray) -> pd.Series:
        if not user_names:  # every possible user, so codes need no sort of the rows
            user_names.extend(f"usr_{i:0{width}d}_{j:03d}" for i in range(n) for j in range(cap))
        return _strings(a.astype(np.int64) * cap + rank, user_names)

    # Account names: word-list combinations, made unique with a legal-form suffix.
    prefix = rng.integers(0, len(_PREFIXES), n)
    core = rng.integers(0, len(_CORES), n)
    names = [f"{_PREFIXES[p]} {_CORES[c]}" for p, c in zip(prefix.tolist(), core.tolist(), strict=True)]
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        k = seen.get(name, 0)
        seen[name] = k + 1
        if k:
            names[i] = name + (_LEGAL[k - 1] if k <= len(_LEGAL) else f" {k - len(_LEGAL) + 1}")
    managed = acc["seg"] > 0
    n_csm = max(3, int(np.ceil(managed.sum() / 30)))
    csm_pool = [f"{f} {last}" for last in _LAST for f in _FIRST][: n_csm * 7 : 7]
    csm = np.where(managed, rng.integers(0, len(csm_pool), n), -1)
    accounts = pd.DataFrame({
        "account_id": ids(np.arange(n)), "created_at": day_dates(acc["first"]),
        "name": _strings(np.arange(n), names), "segment": _strings(acc["seg"], SEGMENTS),
        "industry": _strings(rng.integers(0, len(_INDUSTRIES), n), _INDUSTRIES),
        "csm": _strings(csm, csm_pool),
    })

    t = cols["terms"]
    plans = [f"{tier} {cycle}" for tier in _TIERS for cycle in ("monthly", "annual")]
    plan = acc["tier"][t["a"]] * 2 + (acc["cycle"][t["a"]] == 12)
    subscriptions = pd.DataFrame({
        "subscription_id": _serial("sub", len(t["a"])),
        "account_id": ids(t["a"]), "start_date": day_dates(t["start"]), "end_date": day_dates(t["end"]),
        "arr": np.round(t["arr"], 2).astype(np.float64), "plan": _strings(plan, plans),
        "seats": t["seats"].astype(np.int64), "status": _strings(t["status"], ("renewed", "churned")),
    })

    # Events are most of the book: convert column by column, dropping each input once used.
    e = cols.pop("events")
    ev = {"timestamp": _times(base, e.pop("day").astype(np.int64) * _DAY_S + e.pop("sec")),
          "event": _strings(e.pop("event"), EVENT_TYPES), "user_id": user_ids(e["a"], e.pop("rank"))}
    ev.update(account_id=ids(e.pop("a")), count=e.pop("count").astype(np.int64), value=e.pop("value"))
    events = pd.DataFrame(ev, columns=["account_id", "timestamp", "event", "user_id", "count", "value"], copy=False)
    del ev

    k = cols["tickets"]
    tickets = pd.DataFrame({
        "ticket_id": _serial("tkt", len(k["a"])),
        "account_id": ids(k["a"]), "created_at": _times(base, k["created"]),
        "resolved_at": _times(base, k["resolved"]),
        "priority": _strings(k["priority"], ("low", "normal", "high", "urgent")),
        "csat": pd.arrays.IntegerArray(np.maximum(k["csat"], 1), k["csat"] < 0),
    })

    s = cols["surveys"]
    surveys = pd.DataFrame({
        "account_id": ids(s["a"]), "responded_at": _times(base, s["at"]),
        "kind": _strings(s["kind"], ("nps", "csat")), "score": s["score"].astype(np.int64),
        "user_id": user_ids(s["a"], s["rank"]),
    })

    o = cols["onboarding"]
    onboarding = pd.DataFrame({
        "account_id": ids(o["a"]), "milestone": _strings(o["milestone"], ONBOARDING_MILESTONES),
        "completed_at": _times(base, o["at"]),
    })

    v = cols["invoices"]
    invoices = pd.DataFrame({
        "invoice_id": _serial("inv", len(v["a"])),
        "account_id": ids(v["a"]), "issued_at": day_dates(v["issued"]), "due_at": day_dates(v["issued"] + 30),
        "amount": v["amount"].astype(np.float64), "paid_at": day_dates(v["paid"]),
    })

    c = cols["csm_notes"]
    notes = [tpl.format(topic) for band in _NOTES for tpl in band for topic in _TOPICS]
    csm_notes = pd.DataFrame({
        "account_id": ids(c["a"]), "recorded_at": _times(base, c["at"]),
        "sentiment": c["sentiment"].astype(np.int64), "note": _strings(c["note"], notes),
    })

    m = cols["marketing"]
    marketing = pd.DataFrame({
        "account_id": ids(m["a"]), "timestamp": _times(base, m["at"]),
        "kind": _strings(m["kind"], MARKETING_KINDS), "user_id": user_ids(m["a"], m["rank"]),
    })

    w = cols["account_metrics"]
    account_metrics = pd.DataFrame({
        "account_id": ids(w["a"]), "as_of_date": day_dates(w["day"]),
        "integrations_connected": w["integrations_connected"], "api_error_rate": w["api_error_rate"],
        "data_volume_gb": w["data_volume_gb"],
    })

    decided = t["decided"]
    renewals = pd.DataFrame({
        "account_id": ids(t["a"][decided]),
        "subscription_id": subscriptions["subscription_id"][decided].reset_index(drop=True),
        "decision_date": day_dates(t["end"][decided]), "p_churn": t["p_churn"][decided],
        "churned": t["churned"][decided].astype(bool), "health_at_decision": t["health"][decided],
    })
    hw = cols["health"]
    health = pd.DataFrame({"account_id": ids(hw["a"]), "date": day_dates(hw["day"]), "health": hw["health"]})
    # A shock after the customer left never happened as far as the book is concerned.
    last_end = np.full(n, -1)
    np.maximum.at(last_end, t["a"], t["end"])
    champion = np.where((acc["champion"] >= 0) & (acc["champion"] < last_end), acc["champion"], -1)
    budget = np.where((acc["budget"] >= 0) & (acc["budget"] < last_end), acc["budget"], -1)
    truth_accounts = pd.DataFrame({
        "account_id": ids(np.arange(n)), "onboarding_quality": acc["quality"],
        "baseline_health": acc["baseline"], "champion_left_date": day_dates(champion),
        "budget_cut_date": day_dates(budget),
    })
    sources = {
        "accounts": accounts, "subscriptions": subscriptions, "events": events, "tickets": tickets,
        "surveys": surveys, "onboarding": onboarding, "invoices": invoices, "csm_notes": csm_notes,
        "marketing": marketing, "account_metrics": account_metrics,
    }
    return DemoBook(sources=sources,
                    truth={"renewals": renewals, "health": health, "accounts": truth_accounts})


def oracle_churn_probability(observations: pd.DataFrame, renewals: pd.DataFrame,
                             horizon_days: int, lead_days: int = 0) -> np.ndarray:
    """The generator's own churn probability for each observation: the ceiling to aim at.

    For an observation (account, D), the renewal decisions of the account in
    (D + lead, D + lead + horizon] each churn with the ``p_churn`` the generator drew
    them with (it knows the account's health at the decision, which no model can see at
    D); the oracle is the chance that at least one of them churns, 0 when none falls in
    the window. A model's out-of-time AUC is judged against this oracle's AUC.

    Args:
        observations: ``account_id`` and ``as_of_date`` per observation.
        renewals: The truth's ``renewals`` table (``account_id``, ``decision_date``,
            ``p_churn``).
        horizon_days: Label window length.
        lead_days: Gap before the label window.
    """
    start = observations["as_of_date"] + pd.Timedelta(days=lead_days)
    pairs = pd.DataFrame({"row": np.arange(len(observations)),
                          "account_id": observations["account_id"].to_numpy(),
                          "start": start.to_numpy(),
                          "end": (start + pd.Timedelta(days=horizon_days)).to_numpy()})
    pairs = pairs.merge(renewals[["account_id", "decision_date", "p_churn"]], on="account_id")
    inside = pairs.loc[(pairs["decision_date"] > pairs["start"]) & (pairs["decision_date"] <= pairs["end"])]
    survive = np.log1p(-inside["p_churn"].clip(upper=1 - 1e-12)).groupby(inside["row"]).sum()
    out = np.zeros(len(observations))
    out[survive.index.to_numpy()] = 1 - np.exp(survive.to_numpy())
    return out
