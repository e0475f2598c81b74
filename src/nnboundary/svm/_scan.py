"""One pass over all constraint units under (W, b), as a reduction over chunks of rows and over ranks.

Each chunk's margins (rows, K) are summarised and dropped; the summaries of all chunks and all ranks are combined
into one :class:`Scan` that is the same whichever way the rows are split into chunks or shards: maxima, minima and
counts are exact, candidate units are chosen by (value, global unit id) so ties go to the smaller id, and sums
differ only by rounding. Time O(n·K·d) flops; memory one chunk's tables plus O(n_top + n_low) candidates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nnboundary.svm._problem import MarginProblem

_EMPTY_IDS = np.zeros(0, dtype=np.int64)


@dataclass(frozen=True)
class Scan:
    """What a pass found (over ALL units, every rank's).

    max_violation: max over units of 1 − ξ_{i(u)} − gᵤ (−inf without units); n_outside: units outside the working
    set S whose violation exceeds tol; top / top_ids: the ``n_top`` largest violations outside S, largest first;
    in_S: the violation of each unit of S, in S's order; g_min: the smallest margin; hinge_sum: Σᵢ max(0, 1 −
    minᵤ gᵤ); low / low_ids: the ``n_low`` smallest margins, smallest first; n_below: units with margin below
    ``below``; firsts: per class present, (class, margin, unit) of the sample of that class with the smallest
    margin (its most violated rival), Crammer–Singer only.
    """

    max_violation: float
    n_outside: int
    top: np.ndarray
    top_ids: np.ndarray
    in_S: np.ndarray
    g_min: float
    hinge_sum: float
    low: np.ndarray
    low_ids: np.ndarray
    n_below: int
    firsts: np.ndarray  # (n_classes_present, 3): class, margin, unit


def smallest(values: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` entries of smallest value (ties: smallest id), ordered by (value, id). O(len(values))."""
    if k <= 0 or len(values) == 0:
        return values[:0], ids[:0]
    if len(values) > k:
        kth = np.partition(values, k - 1)[k - 1]
        keep = values <= kth
        values, ids = values[keep], ids[keep]
    order = np.lexsort((ids, values))[:k]
    return values[order], ids[order]


def scan(problem: MarginProblem, W: np.ndarray, b: np.ndarray, *, S: np.ndarray | None = None,
         xi_samples: np.ndarray | None = None, xi: np.ndarray | None = None, tol: float = 0.0, n_top: int = 0,
         n_low: int = 0, below: float = 1.0) -> Scan:
    """Summarise the margins of every unit under (W (n_blocks, d), b (n_blocks,)); see :class:`Scan`.

    ``S``: the working set (sorted unit ids), ``xi_samples`` / ``xi``: the slacks of its samples (soft margin;
    zero elsewhere). A collective when the problem's rows are sharded (one allgather of the summaries).
    """
    source = problem.source
    S = _EMPTY_IDS if S is None else S
    xi_samples = _EMPTY_IDS if xi_samples is None else xi_samples
    parts = []
    if source.device is not None:  # the local rows on an accelerator: one product there
        parts.append(_chunk(problem, source.offset, source.device.scores(W, b), S, xi_samples, xi, tol,
                            n_top, n_low, below))
    else:
        Wt = np.ascontiguousarray(W.T)
        for start, rows, H in source.chunks():
            parts.append(_chunk(problem, start, H @ Wt + b, S, xi_samples, xi, tol, n_top, n_low, below))
    mine = _combine(parts, n_top, n_low)
    return _combine(source.allgather(mine), n_top, n_low) if source.sharded else mine


def _chunk(problem, start, scores, S, xi_samples, xi, tol, n_top, n_low, below) -> Scan:
    """The summary of rows start..start+len(scores) (global), from their scores (rows, n_blocks)."""
    per, rows = problem.units_per_sample, len(scores)
    y = problem.y[start:start + rows]
    g = problem.margins_from_scores(scores, y)  # (rows, per), +inf in CS's true-class column
    row_min = g.min(1)
    first_id = start * per
    violation = 1.0 - g  # invalid units: -inf
    lo, hi = np.searchsorted(xi_samples, [start, start + rows])
    if hi > lo:
        violation[xi_samples[lo:hi] - start] -= xi[lo:hi][:, None]
    flat = violation.ravel()
    max_violation = float(flat.max()) if flat.size else -np.inf
    lo, hi = np.searchsorted(S, [first_id, first_id + rows * per])
    local_S = S[lo:hi] - first_id
    in_S = flat[local_S].copy()
    flat[local_S] = -np.inf
    n_outside = int((flat > tol).sum())
    top, top_ids = _EMPTY_IDS.astype(float), _EMPTY_IDS
    if n_top:
        finite = np.flatnonzero(flat > -np.inf)
        neg, top_ids = smallest(-flat[finite], finite + first_id, n_top)
        top = -neg
    low, low_ids, n_below = _EMPTY_IDS.astype(float), _EMPTY_IDS, 0
    firsts = np.zeros((0, 3))
    if n_low:
        gf = g.ravel()
        finite = np.flatnonzero(gf < np.inf)
        low, low_ids = smallest(gf[finite], finite + first_id, n_low)
        n_below = int((gf < below).sum())
        if problem.n_blocks > 1 and rows:
            order = np.lexsort((row_min, y))  # by class, then margin (stable: ties to the smaller index)
            first = order[np.r_[0, np.flatnonzero(np.diff(y[order])) + 1]]
            units = (start + first) * per + g[first].argmin(1)
            firsts = np.c_[y[first], row_min[first], units]
    hinge_sum = float(np.maximum(1.0 - row_min, 0.0).sum())
    return Scan(max_violation, n_outside, top, top_ids, in_S, float(row_min.min(initial=np.inf)), hinge_sum,
                low, low_ids, n_below, firsts)


def _combine(parts: list[Scan], n_top: int, n_low: int) -> Scan:
    """One summary of several (chunks in row order, or ranks in rank order)."""
    if len(parts) == 1:
        return parts[0]
    if not parts:
        empty = np.zeros(0)
        return Scan(-np.inf, 0, empty, _EMPTY_IDS, empty, np.inf, 0.0, empty, _EMPTY_IDS, 0, np.zeros((0, 3)))
    neg, top_ids = smallest(-np.concatenate([p.top for p in parts]), np.concatenate([p.top_ids for p in parts]),
                            n_top)
    low, low_ids = smallest(np.concatenate([p.low for p in parts]), np.concatenate([p.low_ids for p in parts]),
                            n_low)
    firsts = np.concatenate([p.firsts for p in parts])
    if len(firsts):  # per class, the smallest margin (ties: the smaller unit id, i.e. the earlier sample)
        order = np.lexsort((firsts[:, 2], firsts[:, 1], firsts[:, 0]))
        firsts = firsts[order]
        firsts = firsts[np.r_[0, np.flatnonzero(np.diff(firsts[:, 0])) + 1]]
    return Scan(max(p.max_violation for p in parts), sum(p.n_outside for p in parts), -neg, top_ids,
                np.concatenate([p.in_S for p in parts]), min(p.g_min for p in parts),
                float(sum(p.hinge_sum for p in parts)), low, low_ids, sum(p.n_below for p in parts), firsts)
