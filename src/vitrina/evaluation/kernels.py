"""Compiled inner loops for metrics that need every item, not just the top k."""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(parallel=True, cache=True)
def auc_per_positive(scores: np.ndarray, candidate: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """For each positive (rows[p], cols[p]): the share of the row's negatives scored below it.

    `candidate[r, j]` marks negatives (unseen, not positive). Ties count one half. One pass over
    the row per positive, so all positives of a batch cost n_positives x n_items comparisons.
    """
    out = np.empty(len(rows), dtype=np.float64)
    for p in numba.prange(len(rows)):
        r = rows[p]
        s = scores[r, cols[p]]
        below = 0
        ties = 0
        total = 0
        for j in range(scores.shape[1]):
            if candidate[r, j]:
                total += 1
                v = scores[r, j]
                if v < s:
                    below += 1
                elif v == s:
                    ties += 1
        out[p] = (below + 0.5 * ties) / total if total > 0 else 0.0
    return out
