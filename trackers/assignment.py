"""Hungarian matching with a cost threshold, and DeepSORT's matching cascade.

Pure functions on index arrays: a stage takes a full cost matrix (all candidate tracks x all
detections), the rows and columns still free, and returns matches and what is left.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

Empty = np.empty(0, dtype=np.int64)


def min_cost_matching(cost: np.ndarray, max_cost: float, rows: np.ndarray | None = None,
                      cols: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Optimal assignment on cost[rows][:, cols]; pairs costing more than `max_cost` are refused.

    Returns (matches (K,2) of [row, col] in the full matrix, unmatched rows, unmatched cols).
    """
    rows = np.arange(cost.shape[0]) if rows is None else np.asarray(rows, dtype=np.int64)
    cols = np.arange(cost.shape[1]) if cols is None else np.asarray(cols, dtype=np.int64)
    if len(rows) == 0 or len(cols) == 0:
        return np.empty((0, 2), dtype=np.int64), rows, cols
    sub = cost[np.ix_(rows, cols)]
    # Capping costs just above the threshold keeps the solver from trading a good pair for a
    # forbidden one; those capped pairs are discarded after the assignment.
    sub = np.minimum(sub, max_cost + 1e-5)
    r, c = linear_sum_assignment(sub)
    keep = sub[r, c] <= max_cost
    matches = np.stack([rows[r[keep]], cols[c[keep]]], axis=1).astype(np.int64)
    unmatched_rows = np.setdiff1d(rows, matches[:, 0], assume_unique=True)
    unmatched_cols = np.setdiff1d(cols, matches[:, 1], assume_unique=True)
    return matches, unmatched_rows, unmatched_cols


def matching_cascade(cost: np.ndarray, max_cost: float, time_since_update: np.ndarray,
                     rows: np.ndarray, cols: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """DeepSORT's cascade: tracks seen most recently pick detections first, one age level at a time.

    `time_since_update` is per row of `cost`; levels 1..depth are matched in order.
    """
    rows = np.asarray(rows, dtype=np.int64)
    unmatched_cols = np.asarray(cols, dtype=np.int64)
    all_matches = [np.empty((0, 2), dtype=np.int64)]
    for level in range(1, depth + 1):
        if len(unmatched_cols) == 0:
            break
        level_rows = rows[time_since_update[rows] == level]
        if len(level_rows) == 0:
            continue
        matches, _, unmatched_cols = min_cost_matching(cost, max_cost, level_rows, unmatched_cols)
        all_matches.append(matches)
    matches = np.concatenate(all_matches)
    unmatched_rows = np.setdiff1d(rows, matches[:, 0])
    return matches, unmatched_rows, unmatched_cols
