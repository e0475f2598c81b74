"""The features the QP solvers see: centred, rescaled and (without a free bias) reflected, from statistics that do
not depend on how the rows are split into chunks or shards.

``H = reflect((X̂ − shift) / coarse / fine)``. X̂ is X with a constant column for ``bias="regularized"``. A free bias
absorbs any translation: the features are centred at their coordinate-wise median (a tiny cloud far from the
origin, as at the start of training, is otherwise badly conditioned; the median is not dragged away by one enormous
outlier as the mean is). With no free bias they cannot be centred, but the problem is invariant to rotations: a
Householder reflection turns the cloud's mean direction onto the first axis, so that the solvers' diagonal
equilibration separates the common direction from the small spread around it. The features are divided by the
median of the non-zero row norms, after an exact power-of-two rescaling (from the largest entry of ALL rows) so
that features of size 1e±150 or subnormal ones neither overflow nor underflow.

The median, the norms' median and the mean come from a deterministic global subsample of ``stats_rows(d̂)`` rows
(all rows below that: then they are exactly those of all the features); the peak is an exact maximum over all
rows. Every transformation is exact in exact arithmetic, so the statistics only affect conditioning.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from nnboundary.svm._shards import FeatureShards, subsample

#: Bytes of features the subsample for the normalisation statistics may take.
STATS_BYTES = 2 ** 28


def stats_rows(n_features: int) -> int:
    """Rows of the statistics' subsample for features of width ``n_features`` (256 MiB of float64)."""
    return max(1000, STATS_BYTES // (8 * max(n_features, 1)))


class Normalisation(NamedTuple):
    """``H = reflect((X̂ − shift) / coarse / fine)``; ``reflector`` is the unit vector v of the Householder
    reflection I − 2vvᵀ (None: none); ``augment``: X̂ has the constant column of ``bias="regularized"``."""

    shift: np.ndarray
    coarse: float
    fine: float
    reflector: np.ndarray | None
    augment: bool

    @property
    def scale(self) -> float:
        return self.coarse * self.fine

    def reflect(self, A: np.ndarray) -> np.ndarray:
        """A (·, d̂) times the reflection (its own inverse): maps solver-space W rows back, and features forth."""
        if self.reflector is None:
            return A
        return A - 2.0 * np.outer(A @ self.reflector, self.reflector)

    def apply(self, X: np.ndarray) -> np.ndarray:
        """H's rows from raw feature rows X (m, d) (any float dtype): a float64 copy, shape (m, d̂)."""
        H = augmented(X, self.augment) - self.shift
        self._scale_in_place(H)
        return H

    def _scale_in_place(self, H: np.ndarray) -> None:
        if self.coarse != 1.0 or self.fine != 1.0:
            H /= self.coarse
            H /= self.fine
        if self.reflector is not None:
            H -= 2.0 * np.outer(H @ self.reflector, self.reflector)


def augmented(X: np.ndarray, augment: bool) -> np.ndarray:
    """X as float64, with a constant column appended when ``augment`` (a copy only when needed)."""
    X = np.asarray(X, dtype=np.float64)
    return np.c_[X, np.ones(len(X))] if augment else X


def fit_normalisation(raw: FeatureShards, bias: str, materialise: bool
                      ) -> tuple[Normalisation, np.ndarray | None]:
    """The normalisation of the features ``raw`` (whose rows are X̂: float64, augmented), and, when
    ``materialise``, this rank's rows of H in memory (the one copy of the features a fit makes; else None and
    the solver applies the normalisation chunk by chunk). A collective when sharded.

    Time O(n·d) (one pass for the peak, plus the subsample's median); memory the subsample (≤ ``STATS_BYTES``) and,
    when materialised, the local rows of H.
    """
    augment, free = bias == "regularized", bias == "free"
    d_hat = raw.n_features
    sub = subsample(raw.n_total, stats_rows(d_hat))
    full = materialise and not raw.sharded and len(sub) == raw.n_total  # the statistics of all rows, in place
    R = raw.block(0, raw.n_local) if full else raw.rows(sub)  # (m, d̂) rows of X̂
    shift = column_median(R) if free else np.zeros(d_hat)
    H = None
    if materialise:
        H = (R if full else raw.block(0, raw.n_local)) - shift
        peak = float(max(H.max(initial=0.0), -H.min(initial=0.0)))
    else:
        peak = _streamed_peak(raw, shift)
    peak = raw.reduce_max(peak) if raw.sharded else peak
    if peak == 0.0 or not np.isfinite(peak):
        return Normalisation(shift, 1.0, 1.0, None, augment), H
    coarse = float(np.ldexp(1.0, int(np.frexp(peak)[1])))  # a power of two: dividing by it is exact
    if H is not None:
        H /= coarse
    rows = H if full else R  # the subsample's rows, scaled in place (R is no longer needed raw)
    if not full:
        rows -= shift
        rows /= coarse
    norms = np.sqrt(np.einsum("ij,ij->i", rows, rows))
    fine = float(np.median(norms[norms > 0])) if (norms > 0).any() else 1.0
    if H is not None:
        H /= fine
    if not full:
        rows /= fine
    reflector = None
    if bias != "free" and d_hat > 1:
        mean = rows.mean(0)
        size = float(np.linalg.norm(mean))
        if size > 0:
            v = mean / size
            v[0] += 1.0 if v[0] >= 0 else -1.0  # reflect the mean onto ∓e₀ (the sign that avoids cancellation)
            reflector = v / np.linalg.norm(v)
    if H is not None and reflector is not None:
        H -= 2.0 * np.outer(H @ reflector, reflector)
    return Normalisation(shift, coarse, fine, reflector, augment), H


def column_median(R: np.ndarray, block: int = 64) -> np.ndarray:
    """``np.median(R, axis=0)``, shape (d,), a block of columns at a time (numpy's median copies what it sorts:
    this way one block of columns, not all of R)."""
    return np.concatenate([np.median(R[:, j:j + block], axis=0) for j in range(0, R.shape[1], block)]
                          or [np.zeros(0)])


def _streamed_peak(raw: FeatureShards, shift: np.ndarray) -> float:
    """max |X̂ − shift| over this rank's rows, chunk by chunk; refuses NaN or infinite features (they were not
    validated whole)."""
    peak = 0.0
    for start, rows, block in raw.chunks():
        if not np.isfinite(block).all():
            raise ValueError(f"Input X contains NaN or infinity (in rows {start}..{start + rows - 1}). Remove or "
                             "replace those values before fitting.")
        centred = block - shift
        peak = max(peak, float(centred.max(initial=0.0)), float(-centred.min(initial=0.0)))
    return peak
