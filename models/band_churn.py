"""Do the bands rank real churn? Churn per account-year by band, for every kind of account.

A CS leader works the bands: Critical first, Thriving last. The bands are only worth
that if, out of time, accounts in a worse band churn more often *per year*, pooled over
the book and within every contract term and segment (a score whose band the term
decides would send the team to the wrong accounts).

Measured on the walk-forward backtest from renewal decisions: every reported
observation (an account at a weekly snapshot, scored by the model of its fold) carries
the outcome of its current term once it is known. A decision is counted once: each of
its observations weighs 1 / (its decision's observations), so a decision observed in
two bands is split between them. Then

    churn per account-year = churned decisions / account-years of the terms decided

(a monthly term is a twelfth of an account-year, an annual one a whole). Judging by
the term's outcome, not by churn within the next 90 days, keeps an annual account's
band from being judged by how far its renewal happened to be.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.health import BAND_ORDER, assign_bands, renewals_per_year
from models.observations import decision_weights

# Term lengths by name: the upper bound in days of each kind (a month is 28-31 days).
TERMS = ((45, "monthly"), (135, "quarterly"), (270, "half-yearly"), (400, "annual"),
         (np.inf, "multi-year"))
BAND_COLUMNS = ["view", "group", "band", "observations", "accounts", "decisions", "churned",
                "account_years", "churn_per_account_year", "share"]


def term_kind(days) -> np.ndarray:
    """The name of each term length (``unknown`` when missing).

    >>> term_kind([30, 31, 91, 365, 730, np.nan]).tolist()
    ['monthly', 'monthly', 'quarterly', 'annual', 'multi-year', 'unknown']
    """
    days = np.asarray(days, dtype=float)
    out = np.full(days.shape, "unknown", dtype=object)
    for upper, name in reversed(TERMS):
        out[days <= upper] = name
    return out


def band_churn(predictions: pd.DataFrame, segments: pd.Series | None = None,
               scheme: str = "fixed") -> pd.DataFrame:
    """Churn per account-year by band: pooled, within each term length and each segment.

    Args:
        predictions: Backtest rows of one model with ``health_score``, ``y_renewal``
            (churn at the end of the current term, NaN while unknown), ``account_id``,
            ``renewal_date`` and ``term_days``.
        segments: account_id -> segment (optional).
        scheme: The band scheme (:func:`models.health.assign_bands`).

    Returns:
        One row per view (``pooled``, ``term``, ``segment``), group and band, worst band
        first: ``observations``, ``accounts``, ``decisions`` (weighted: each renewal
        decision counts once), ``churned`` (decisions), ``account_years`` (of the
        decided terms), ``churn_per_account_year`` and ``share`` (of the group's
        observations).

    >>> rows = pd.DataFrame({"account_id": list("aabcd"), "health_score": [30.0, 50, 50, 70, 90],
    ...     "y_renewal": [1.0, 1.0, 0, 0, 0], "term_days": [30.4375, 30.4375, 365.25, 365.25, 365.25],
    ...     "renewal_date": pd.to_datetime(["2025-02-01"] * 2 + ["2025-12-31"] * 3)})
    >>> t = band_churn(rows)
    >>> t.loc[t["view"] == "pooled", ["band", "decisions", "churned", "account_years"]].values.tolist()
    [['Critical', 0.5, 0.5, 0.041666666666666664], ['At-risk', 1.5, 0.5, 1.0416666666666667], ['Healthy', 1.0, 0.0, 1.0], ['Thriving', 1.0, 0.0, 1.0]]
    >>> sorted(set(t.loc[t["view"] == "term", "group"]))
    ['annual', 'monthly']
    """
    rows = predictions.loc[predictions["y_renewal"].notna() & predictions["health_score"].notna()]
    weight = decision_weights(rows, scaled=False)
    years = 1.0 / renewals_per_year(rows["term_days"].to_numpy(dtype=float, na_value=np.nan))
    rows = rows.assign(band=assign_bands(rows["health_score"].to_numpy(), scheme),
                       term=term_kind(rows["term_days"]), w=weight,
                       wy=weight * rows["y_renewal"].to_numpy(dtype=float), wyears=weight * years)
    views = [("pooled", rows.assign(group="all")), ("term", rows.assign(group=rows["term"]))]
    if segments is not None:
        views.append(("segment", rows.assign(
            group=rows["account_id"].map(segments).astype(object).fillna("(none)").astype(str))))
    order = BAND_ORDER[scheme]
    parts = []
    for view, frame in views:
        for group, part in frame.groupby("group", sort=True):
            table = part.groupby("band").agg(
                observations=("w", "size"), accounts=("account_id", "nunique"),
                decisions=("w", "sum"), churned=("wy", "sum"), account_years=("wyears", "sum"),
            ).reindex(order).fillna(0)
            table[["observations", "accounts"]] = table[["observations", "accounts"]].astype("int64")
            table = table.reset_index().rename(columns={"index": "band"})
            table.insert(0, "group", group)
            table.insert(0, "view", view)
            with np.errstate(divide="ignore", invalid="ignore"):
                table["churn_per_account_year"] = np.where(
                    table["account_years"] > 0, table["churned"] / table["account_years"], np.nan)
            table["share"] = table["observations"] / max(len(part), 1)
            parts.append(table)
    if not parts:
        return pd.DataFrame(columns=BAND_COLUMNS)
    return pd.concat(parts, ignore_index=True)[BAND_COLUMNS]


def ranking_problems(table: pd.DataFrame, min_years: float = 100.0, min_share: float = 0.05,
                     min_bands: int = 3) -> list[str]:
    """Where the bands fail to rank churn, in words (empty: they rank it).

    * pooled, the churn per account-year falls strictly from the worst band to the best;
    * within each term length, it falls strictly among the bands holding at least
      ``min_years`` account-years of decided terms;
    * within each term length, at least ``min_bands`` bands each hold ``min_share`` of
      its observations (the term alone does not decide the band).
    """
    problems = []

    def falls(part: pd.DataFrame) -> bool:
        rates = part["churn_per_account_year"].to_numpy(dtype=float)
        return bool(len(rates) < 2 or np.all(np.diff(rates) < 0))

    pooled = table.loc[(table["view"] == "pooled") & (table["observations"] > 0)]
    if not falls(pooled):
        problems.append("pooled: churn per account-year does not fall from band to band ("
                        + _rates(pooled) + ")")
    for term, part in table.loc[table["view"] == "term"].groupby("group", sort=True):
        big = part.loc[part["account_years"] >= min_years]
        if not falls(big):
            problems.append(f"{term} terms: churn per account-year does not fall from band to "
                            f"band among the bands with {min_years:g}+ account-years ({_rates(big)})")
        held = int((part["share"] >= min_share).sum())
        if held < min_bands:
            problems.append(f"{term} terms: only {held} band(s) hold {min_share:.0%} of the "
                            f"observations ({', '.join(f'{b} {s:.0%}' for b, s in zip(part['band'], part['share']))})")
    return problems


def _rates(part: pd.DataFrame) -> str:
    return ", ".join(f"{b} {r:.1%}" for b, r in zip(part["band"], part["churn_per_account_year"]))


def mlflow_metrics(table: pd.DataFrame) -> dict[str, float]:
    """The table as MLflow metrics: ``bands.<view>.<group>.<band>.churn_per_account_year``
    and ``.share`` (names lower-case, other characters as ``_``)."""
    out = {}
    for row in table.to_dict("records"):
        key = ".".join(_slug(str(row[c])) for c in ("view", "group", "band"))
        for measure in ("churn_per_account_year", "share", "account_years"):
            if pd.notna(row[measure]):
                out[f"bands.{key}.{measure}"] = float(row[measure])
    return out


def _slug(text: str) -> str:
    """A name MLflow accepts in a metric key.

    >>> _slug("Mid Market/EU")
    'mid_market_eu'
    """
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in text.lower())
