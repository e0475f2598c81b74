"""The max-margin problems as *constraint units* over a feature matrix.

Every variant the solvers handle is one quadratic program

    minimise   ½‖W‖²_F  (+ ½‖b‖² if the bias is regularised)  (+ C Σᵢ ξᵢ if soft)
    subject to gᵤ(W, b) ≥ 1 − ξ_{i(u)}   for every constraint unit u,

where each unit u belongs to one sample i(u) and its functional margin gᵤ is linear in (W, b):

* binary (``n_blocks == 1``): one unit per sample, gᵢ = yᵢ (w·hᵢ + b) with yᵢ ∈ {−1, +1};
* Crammer–Singer (``n_blocks == K``): one unit per (sample i, rival class k ≠ yᵢ),
  g_{ik} = (w_{yᵢ} − w_k)·hᵢ + b_{yᵢ} − b_k.

Units are numbered ``u = i * n_units_per_sample + j`` so that a whole margin table is one
``(n, n_units_per_sample)`` array. This module knows only the algebra (margins of all units, the sparse rows
of a subset of units); the QP solver and the working-set loop live in their own modules.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp


@dataclass(frozen=True)
class MarginProblem:
    """Features and labels of one max-margin problem, seen as constraint units.

    Attributes
    ----------
    H : ndarray of shape (n_samples, n_features), or None
        Features (already including a constant column when the bias is "regularized"), when they are in memory
        whole; None when ``source`` streams or shards them.
    y : ndarray of shape (n_samples,)
        Binary: signs in {−1, +1}. Crammer–Singer: class indices in 0..K−1. Always all n labels (small), also
        when the features are sharded.
    n_blocks : int
        1 for the binary problem, K for Crammer–Singer.
    free_bias : bool
        Whether an unpenalised bias per block is a variable of the problem.
    device : DeviceFeatures or None
        The same H on an accelerator (see ``_backend``): the Gram blocks then run there.
    source : FeatureShards, GatheredRows or None
        Where H's rows come from (see ``_shards``); None: ``H`` itself, in one chunk.
    """

    H: np.ndarray | None
    y: np.ndarray
    n_blocks: int
    free_bias: bool
    device: object = None
    source: object = None

    def __post_init__(self):
        if self.source is None:
            from nnboundary.svm._shards import FeatureShards
            object.__setattr__(self, "source", FeatureShards(self.H, device=self.device))

    @property
    def n_samples(self) -> int:
        return self.source.n_total

    @property
    def n_features(self) -> int:
        return self.source.n_features

    @property
    def units_per_sample(self) -> int:
        return 1 if self.n_blocks == 1 else self.n_blocks

    @property
    def n_bias(self) -> int:
        return self.n_blocks if self.free_bias else 0

    @property
    def n_valid_units(self) -> int:
        """Number of constraint units: n (binary) or n·(K − 1) (Crammer–Singer)."""
        return self.n_samples * (1 if self.n_blocks == 1 else self.n_blocks - 1)

    def rows(self, samples: np.ndarray) -> np.ndarray:
        """H's rows at sorted, distinct sample indices, shape (len(samples), d) (a collective when sharded)."""
        return self.H[samples] if self.H is not None else self.source.rows(samples)

    def restricted(self, samples: np.ndarray) -> MarginProblem:
        """The same problem, reading only the rows of ``samples`` (sorted, distinct), gathered once: what a
        restricted QP on those samples' units needs, without collectives. Itself when H is in memory."""
        if self.H is not None:
            return self
        from nnboundary.svm._shards import GatheredRows
        rows = GatheredRows(samples, self.source.rows(samples), self.n_samples)
        device = None if self.source.sharded else self.device
        return MarginProblem(None, self.y, self.n_blocks, self.free_bias, device=device, source=rows)

    def margins_from_scores(self, scores: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Margins (rows, units_per_sample) of samples with labels ``y`` (rows,) from their scores (rows, n_blocks):
        binary yᵢ·sᵢ; Crammer–Singer score gaps with ``+inf`` in the true-class column (not a unit)."""
        if self.n_blocks == 1:
            return y[:, None] * scores
        rows = np.arange(len(y))
        gaps = scores[rows, y][:, None] - scores
        gaps[rows, y] = np.inf
        return gaps

    def margins(self, W: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Functional margins of every unit — the whole (n, units_per_sample) table, for small problems and tests
        (the solver's passes go chunk by chunk, see ``_scan``).

        Parameters
        ----------
        W : ndarray of shape (n_blocks, n_features)
        b : ndarray of shape (n_blocks,)  (zeros when there is no free bias)

        Returns
        -------
        ndarray of shape (n_samples, units_per_sample)
            Binary: yᵢ(w·hᵢ + b). Crammer–Singer: score gaps, ``+inf`` in the true-class column (not a unit).
        """
        H = self.H if self.H is not None else self.rows(np.arange(self.n_samples))
        scores = H @ W.T + b if self.device is None else self.device.scores(W, b)  # (n, n_blocks)
        return self.margins_from_scores(scores, self.y)

    def valid_units(self) -> np.ndarray:
        """Boolean mask of shape (n_samples, units_per_sample): False for the true-class column of CS."""
        mask = np.ones((self.n_samples, self.units_per_sample), dtype=bool)
        if self.n_blocks > 1:
            mask[np.arange(self.n_samples), self.y] = False
        return mask

    def valid(self, units: np.ndarray) -> np.ndarray:
        """Whether each unit id is a constraint (False for the true-class column of CS), shape (len(units),)."""
        if self.n_blocks == 1:
            return np.ones(len(units), dtype=bool)
        return units % self.units_per_sample != self.y[units // self.units_per_sample]

    def unit_rows(self, units: np.ndarray) -> sp.csr_matrix:
        """Coefficients of gᵤ in the variables [vec(W) (n_blocks·d), b (n_bias)] for the given (sorted) units.

        Returns
        -------
        csr_matrix of shape (len(units), n_blocks * n_features + n_bias)
        """
        d, m = self.n_features, len(units)
        samples = units // self.units_per_sample
        distinct, where = np.unique(samples, return_inverse=True)
        Hs = self.rows(distinct)[where]  # (m, d)
        cols_d = np.arange(d)
        if self.n_blocks == 1:
            signs = self.y[samples].astype(float)
            blocks = [(np.zeros(m, dtype=np.int64), signs)]
        else:
            rivals = units % self.units_per_sample
            blocks = [(self.y[samples].astype(np.int64), np.ones(m)), (rivals.astype(np.int64), -np.ones(m))]
        rows, cols, vals = [], [], []
        for block, sign in blocks:
            rows.append(np.repeat(np.arange(m), d))
            cols.append((block[:, None] * d + cols_d).ravel())
            vals.append((sign[:, None] * Hs).ravel())
            if self.free_bias:
                rows.append(np.arange(m))
                cols.append(self.n_blocks * d + block)
                vals.append(sign)
        n_vars = self.n_blocks * d + self.n_bias
        return sp.csr_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(m, n_vars)
        )

    def unit_samples(self, units: np.ndarray) -> np.ndarray:
        """Sample index of each unit, shape (len(units),)."""
        return units // self.units_per_sample
