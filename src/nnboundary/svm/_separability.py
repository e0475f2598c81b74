"""Linear separability decided by a linear program (HiGHS via scipy), with the answer as a certificate.

Used when the working-set loop has not settled whether hard-margin features are separable: the LP
``find (W, b) with gᵤ(W, b) ≥ 1 for every unit`` is feasible exactly when a separating hyperplane exists
(scale any strict separator up), and HiGHS proves infeasibility otherwise.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog

from nnboundary.svm._problem import MarginProblem


def lp_bytes(problem: MarginProblem, units: np.ndarray | None = None) -> float:
    """Memory the LP of :func:`is_separable` needs: its sparse rows (two blocks of d entries per Crammer–Singer
    unit) in scipy's and HiGHS's copies."""
    n_units = problem.n_valid_units if units is None else len(units)
    per_row = problem.n_features * (1 if problem.n_blocks == 1 else 2) + 2
    return 3 * 16.0 * n_units * per_row


def is_separable(problem: MarginProblem, units: np.ndarray | None = None) -> bool:
    """True when some (W, b) gives every unit a functional margin ≥ 1 (HiGHS status 0), False when the LP is
    infeasible (status 2). Any other outcome raises RuntimeError: no guess is made.

    ``units``: decide it for these units only (default: every unit); an infeasible subset proves the whole
    problem infeasible.
    """
    if units is None:
        units = np.flatnonzero(problem.valid_units().ravel())
    G = problem.unit_rows(units)  # (m, n_vars)
    n_vars = G.shape[1]
    A_eq, b_eq = None, None
    if problem.free_bias and problem.n_blocks > 1:
        A_eq = sp.csr_matrix((np.ones(problem.n_blocks),
                              (np.zeros(problem.n_blocks, dtype=int),
                               problem.n_blocks * problem.n_features + np.arange(problem.n_blocks))),
                             shape=(1, n_vars))
        b_eq = np.zeros(1)
    result = linprog(np.zeros(n_vars), A_ub=-G, b_ub=-np.ones(len(units)), A_eq=A_eq, b_eq=b_eq,
                     bounds=(None, None), method="highs")
    if result.status == 0:
        return True
    if result.status == 2:
        return False
    raise RuntimeError(f"The separability LP ended with HiGHS status {result.status}: {result.message}")
