"""LightGBM's exact SHAP contributions, computed once per decision pattern of each tree.

Path-dependent TreeSHAP (what ``pred_contrib=True`` computes) depends on a row only
through the way it goes at each split of a tree: left or right at every internal node,
on its path or not. Rows that go the same way at every node of a tree get the same
contributions from that tree. Small trees have few such patterns (a 7-leaf tree has 6
splits, so at most 64), however many rows there are. So, per tree:

    rows -> the way each row goes at each split (vectorised) -> pattern code
    one row per pattern -> LightGBM's own TreeSHAP for that tree alone
    every row <- the contributions of its pattern

The values are LightGBM's, not a re-implementation of TreeSHAP: only the grouping is
ours, and it follows LightGBM's split rule (``NumericalDecision`` in ``tree.h``). The
result is checked against the booster's prediction, and anything this does not cover
(categorical splits, linear trees, trees too large for a 62-bit pattern) goes to
LightGBM's ``pred_contrib`` as a whole.
"""

from __future__ import annotations

import lightgbm as lgb
import numpy as np

# LightGBM's kZeroThreshold: |x| at or below it counts as zero for missing_type "Zero".
ZERO = 1e-35
MAX_SPLITS = 62  # pattern codes are int64 bit masks


def _splits(node: dict, out: list[dict]) -> bool:
    """Collect the internal nodes below ``node``; False if one is not a plain numeric split."""
    if "split_index" not in node:  # a leaf
        return "leaf_coeff" not in node  # linear trees: leaf outputs depend on the row
    if node.get("decision_type") != "<=":
        return False
    out.append(node)
    return _splits(node["left_child"], out) and _splits(node["right_child"], out)


def goes_left(values: np.ndarray, node: dict) -> np.ndarray:
    """LightGBM's numeric split rule, for a column of values.

    A missing value is 0 unless the split treats NaN as missing; a missing value (NaN,
    or zero for ``missing_type`` Zero) goes the node's default way; otherwise left when
    ``value <= threshold``.

    >>> node = {"threshold": 1.5, "missing_type": "NaN", "default_left": False}
    >>> goes_left(np.array([1.0, 1.5, 2.0, np.nan]), node).tolist()
    [True, True, False, False]
    >>> goes_left(np.array([np.nan]), {**node, "missing_type": "None"}).tolist()
    [True]
    """
    return _goes_left(values, np.where(np.isnan(values), 0.0, values), np.isnan(values), node)


def _goes_left(raw: np.ndarray, zeroed: np.ndarray, missing: np.ndarray, node: dict) -> np.ndarray:
    kind, threshold, default = node.get("missing_type", "None"), node["threshold"], node["default_left"]
    if kind == "NaN":  # NaN <= t is False: NaN goes right unless the default is left
        left = raw <= threshold
        return left | missing if default else left
    left = zeroed <= threshold
    if kind == "Zero":
        return np.where(np.abs(zeroed) <= ZERO, bool(default), left)
    return left


def contributions(booster: lgb.Booster, X: np.ndarray, num_iteration: int | None = None,
                  check: bool = True) -> np.ndarray:
    """What ``booster.predict(X, pred_contrib=True, num_iteration=...)`` returns: one
    column per feature and the expected value last, each row summing to the raw score.

    Args:
        booster: A fitted binary or regression booster (one output).
        X: Feature values, columns in the booster's order.
        num_iteration: Trees to use (``best_iteration``); all when None or <= 0.
        check: Compare each row's sum with the booster's raw prediction and fall back to
            LightGBM's own ``pred_contrib`` if they differ (they should not).
    """
    X = np.asfortranarray(X, dtype=np.float64)  # columns contiguous: read one per split
    n, width = X.shape
    dump = booster.dump_model(num_iteration=num_iteration if num_iteration else -1)
    trees = dump["tree_info"]

    def native() -> np.ndarray:
        return booster.predict(np.ascontiguousarray(X), pred_contrib=True, num_iteration=len(trees))

    if dump.get("num_tree_per_iteration", 1) != 1 or n == 0:
        return native()
    missing = np.isnan(X)
    zeroed = np.where(missing, 0.0, X)
    out = np.zeros((n, width + 1), order="F")
    rows = np.arange(n)
    for t, tree in enumerate(trees):
        nodes: list[dict] = []
        if not _splits(tree["tree_structure"], nodes) or len(nodes) > MAX_SPLITS:
            return native()
        if not nodes:  # a single leaf: all of it is expected value
            out[:, -1] += tree["tree_structure"]["leaf_value"]
            continue
        code = np.zeros(n, dtype=np.int64)
        for bit, node in enumerate(nodes):
            f = node["split_feature"]
            code |= _goes_left(X[:, f], zeroed[:, f], missing[:, f], node).astype(np.int64) << bit
        if len(nodes) <= 16:  # codes index a small table directly
            slot = np.full(1 << len(nodes), -1)
            slot[code] = rows  # one row per pattern (any will do: they share the values)
            patterns = np.flatnonzero(slot >= 0)
            first, table_of = slot[patterns], np.zeros(1 << len(nodes), dtype=np.int64)
            table_of[patterns] = np.arange(len(patterns))
            pattern = table_of[code]
        else:
            _, first, pattern = np.unique(code, return_index=True, return_inverse=True)
            pattern = pattern.reshape(-1)
        phi = booster.predict(np.ascontiguousarray(X[first]), pred_contrib=True,
                              start_iteration=t, num_iteration=1)
        for j in sorted({node["split_feature"] for node in nodes}) + [width]:
            out[:, j] += phi[:, j][pattern]
    out = np.ascontiguousarray(out)
    if check:
        raw = booster.predict(np.ascontiguousarray(X), raw_score=True, num_iteration=len(trees))
        if not np.allclose(out.sum(axis=1), raw, rtol=0, atol=1e-9):
            return native()
    return out
