"""The sentiment group: NPS and CSAT from ``surveys``, the CSM's read from ``csm_notes``.

"Latest" values are the mean of the responses (or notes) stamped with the latest time
in the last 365 days, so ties never depend on row order.
"""

from __future__ import annotations

import ibis.expr.types as ir

from features.expr import KEYS, exact_mean, in_window, latest_time, pair
from features.metric import H, R, Metric

METRICS: tuple[Metric, ...] = (
    Metric("nps_score_latest", "sentiment", "Latest NPS response (0-10) in the last 365 days (responses at the same latest time: their mean)", "score", H, "surveys"),
    Metric("nps_score_mean_180d", "sentiment", "Mean NPS response in the last 180 days", "score", H, "surveys"),
    Metric("nps_score_change_180d", "sentiment", "Mean NPS of the last 180 days minus the 185 days before", "points", H, "surveys"),
    Metric("nps_promoter_share_365d", "sentiment", "Share of NPS responses of 9-10 in the last 365 days", "share", H, "surveys"),
    Metric("nps_detractor_share_365d", "sentiment", "Share of NPS responses of 0-6 in the last 365 days", "share", R, "surveys"),
    Metric("csat_score_mean_90d", "sentiment", "Mean CSAT survey response (1-5) in the last 90 days", "score", H, "surveys"),
    Metric("csm_sentiment_latest", "sentiment", "The CSM's latest read of the account (1-10) in the last 365 days (notes at the same latest time: their mean)", "score", H, "csm_notes"),
    Metric("csm_sentiment_change_90d", "sentiment", "Mean CSM sentiment of the last 90 days minus the 90 before", "points", H, "csm_notes"),
)


def from_surveys(g: ir.Table, surveys: ir.Table) -> ir.Table:
    """The survey metrics of each snapshot key ``g`` with a response in the last year."""
    s = surveys.mutate(day=surveys.responded_at.date())
    j = pair(g, s, "day", 365)
    nps = j.kind == "nps"
    j = j.mutate(_latest=latest_time(j, j.responded_at, nps))
    nps = j.kind == "nps"
    recent = in_window(j.day, j.as_of_date, 180)
    return j.group_by(KEYS).aggregate(
        # Ties: a campaign stamps many responses with one time; the latest is their mean.
        nps_score_latest=exact_mean(j.score, where=nps & (j.responded_at == j._latest)),
        nps_score_mean_180d=exact_mean(j.score, where=nps & recent),
        nps_score_change_180d=exact_mean(j.score, where=nps & recent) - exact_mean(j.score, where=nps & ~recent),
        nps_promoter_share_365d=exact_mean((j.score >= 9).cast("float64"), where=nps),
        nps_detractor_share_365d=exact_mean((j.score <= 6).cast("float64"), where=nps),
        csat_score_mean_90d=exact_mean(j.score, where=(j.kind == "csat") & in_window(j.day, j.as_of_date, 90)),
    )


def from_csm_notes(g: ir.Table, notes: ir.Table) -> ir.Table:
    """The CSM metrics of each snapshot key ``g`` with a note in the last year."""
    n = notes.mutate(day=notes.recorded_at.date())
    j = pair(g, n, "day", 365)
    j = j.mutate(_latest=latest_time(j, j.recorded_at))
    recent = in_window(j.day, j.as_of_date, 90)
    previous = ~recent & in_window(j.day, j.as_of_date, 180)
    return j.group_by(KEYS).aggregate(
        csm_sentiment_latest=exact_mean(j.sentiment, where=j.recorded_at == j._latest),
        csm_sentiment_change_90d=exact_mean(j.sentiment, where=recent) - exact_mean(j.sentiment, where=previous),
    )
