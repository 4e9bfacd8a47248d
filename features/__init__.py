"""Features: point-in-time per-account metric histories.

Everything here is pure and "as of D": a value computed as of day D uses only what was
recorded by the end of D. Each metric group's module (:mod:`features.usage`,
:mod:`features.contract_metrics`, :mod:`features.support`, :mod:`features.sentiment`,
:mod:`features.onboarding`, :mod:`features.billing`, :mod:`features.engagement`,
:mod:`features.own`) holds its catalog entries and their Ibis definitions;
:mod:`features.catalog` assembles the catalog and :mod:`features.engine` the metric
history. :mod:`features.lifecycle` derives activity and churn from subscription terms.
"""
