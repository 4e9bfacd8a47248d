"""Features: point-in-time per-account metric histories.

Everything here is pure and "as of D": a value computed as of day D uses only what was
recorded by the end of D. :mod:`features.lifecycle` derives activity and churn from
subscription terms; the metric catalog and engine arrive with issue #3.
"""
