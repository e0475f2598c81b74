"""One max-margin QP on a subset of constraint units, solved exactly by an interior-point method.

The cheaper of two dense BLAS interior-point methods solves it first: the primal one of ``_ipm`` (cost driven by
K·(d+1)) or the dual one of ``_dual`` (cost driven by the number of units); when that does not converge (an
infeasible subset or numerical trouble) the other one, then Clarabel solves it, and Clarabel's infeasibility certificate (checked by an LP in
``_working_set``) is what proves a hard-margin subset not separable. For Clarabel, the variables are
``x = [vec(W) (n_blocks·d), b (n_bias), ξ (one per sample of the subset, soft margin only)]``; Clarabel's form
is ``min ½xᵀPx + qᵀx  s.t.  Ax + s = rhs, s ∈ K``. Each unit u gives the row ``−gᵤ(x) − ξ_{i(u)} + s = −1``
with s ≥ 0, and its dual variable is the multiplier αᵤ ≥ 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import clarabel
import numpy as np
import scipy.sparse as sp

from nnboundary.svm._dual import solve_dual_ipm
from nnboundary.svm._ipm import solve_ipm
from nnboundary.svm._memory import FALLBACK_BYTES, check_memory
from nnboundary.svm._problem import MarginProblem
from nnboundary.svm._separability import is_separable, lp_bytes

_LP_INFEASIBLE = "PrimalInfeasible (HiGHS LP)"  # decided by the separability LP itself: no confirmation needed
_INFEASIBLE = {"PrimalInfeasible", "AlmostPrimalInfeasible", _LP_INFEASIBLE}
_SOLVED = {"Solved", "AlmostSolved"}


class QPSolverError(RuntimeError):
    """Clarabel stopped without a solution or an infeasibility certificate."""


@dataclass(frozen=True)
class QPSolution:
    """Solution of the restricted QP.

    W : (n_blocks, d); b : (n_blocks,); alpha : (n_units,) multipliers of the units;
    xi_samples / xi : samples of the subset and their slacks (empty for a hard margin);
    status : how it was solved ("Solved (dense IPM)" or Clarabel's status string; "PrimalInfeasible" means no
    separating (W, b) exists for the subset).
    """

    W: np.ndarray
    b: np.ndarray
    alpha: np.ndarray
    xi_samples: np.ndarray
    xi: np.ndarray
    status: str
    iterations: int

    @property
    def infeasible(self) -> bool:
        return self.status in _INFEASIBLE


def solve_restricted(problem: MarginProblem, units: np.ndarray, C: float | None, tol: float) -> QPSolution:
    """Solve the QP restricted to ``units`` (sorted unit ids, shape (m,)).

    The cheaper of the two exact interior-point methods runs first (:func:`restricted_costs`): the primal one of
    ``_ipm`` (a K·(d+1) normal matrix) or the dual one of ``_dual`` (a p×p matrix on the Gram matrix of the
    units' points). When it does not converge: for a hard margin Clarabel (whose infeasibility certificate the
    caller checks with an LP); otherwise, or when Clarabel's primal problem would not fit, the other method, then
    Clarabel, then (hard margin) the separability LP on the subset.
    ``C=None`` is the hard margin; an infeasible subset is returned with ``status`` set, not raised, so the caller
    can turn it into a :class:`~nnboundary.svm.NotSeparableError` with context.
    """
    accuracy = _accuracy(tol)
    costs = restricted_costs(problem, units)
    first, other = sorted(costs, key=lambda k: costs[k][0])
    check_memory(costs[first][1], f"The restricted QP on {len(units)} constraint units ({first} method)",
                 "Pass fewer points (a class-balanced subset), or reduce the feature width (e.g. PCA).")
    solved = _SOLVERS[first](problem, units, C, accuracy)
    if solved is not None:
        return solved
    clarabel_fits = costs["primal"][1] <= FALLBACK_BYTES
    if clarabel_fits and C is None:  # most often an infeasible subset: Clarabel's certificate decides
        return solve_clarabel(problem, units, C, tol)
    if costs[other][1] <= FALLBACK_BYTES:
        solved = _SOLVERS[other](problem, units, C, accuracy)
        if solved is not None:
            return solved
    if clarabel_fits:
        return solve_clarabel(problem, units, C, tol)
    if C is None and lp_bytes(problem, units) <= FALLBACK_BYTES and not is_separable(problem, units):
        K, d = problem.n_blocks, problem.n_features
        return QPSolution(np.zeros((K, d)), np.zeros(K), np.zeros(len(units)), np.empty(0, dtype=np.int64),
                          np.zeros(0), _LP_INFEASIBLE, 0)
    raise QPSolverError(
        f"Neither interior-point method converged on a working set of {len(units)} constraints, and the "
        f"primal problem (K·(d+1) = {problem.n_blocks * (problem.n_features + 1)} variables) is too large for "
        "Clarabel. The features may be badly scaled (standardise them) or not separable (pass C=<float>).")


def restricted_costs(problem: MarginProblem, units: np.ndarray) -> dict[str, tuple[float, float]]:
    """(flops per interior-point iteration, bytes) of the primal and the dual method on ``units``.

    Primal: the normal matrix of size n = K·(d+1), n³/3 for its Cholesky factor plus m_s·K·(d+1)² to build it
    (Crammer–Singer: each sample touches the blocks of its class and its rivals). Dual: p = len(units), p³/3 for
    its factor plus p² per product, and m_s²·d once for the Gram matrix. When the dual's matrices live on an
    accelerator (``_backend.DeviceFeatures.factors``), its flops count at the device's assumed speed-up and its
    bytes are the host's share only.
    """
    K, d = problem.n_blocks, problem.n_features + (1 if problem.free_bias else 0)
    n = K * d
    m_s = len(np.unique(problem.unit_samples(units)))
    per_sample = min(K, max(1, len(units) // max(m_s, 1) + 1))
    primal = (n ** 3 / 3 + m_s * per_sample ** 2 * d ** 2, 8.0 * (3 * n * n + m_s * d))
    p = len(units)
    dual = (p ** 3 / 3 + 4 * p * p + m_s * m_s * d / 20, 8.0 * (5 * p * p + m_s * m_s + m_s * d))
    device = problem.device
    if device is not None and device.factors:  # Q and its factor on the device (its memory checked there)
        dual = (dual[0] / device.relative_speed, 8.0 * (m_s * d + 2 * p * K))
    return {"primal": primal, "dual": dual}


def _solve_primal(problem: MarginProblem, units: np.ndarray, C: float | None, accuracy: float):
    solved = solve_ipm(problem, units, C, accuracy)
    if solved is None:
        return None
    X, lam, xi, iterations, qp = solved
    d, K = problem.n_features, problem.n_blocks
    b = X[:, d].copy() if problem.free_bias else np.zeros(K)
    if problem.free_bias and K > 1:
        b -= b.mean()
    if C is None:
        xi_samples, xi = np.empty(0, dtype=np.int64), np.zeros(0)
    else:
        xi_samples, xi = qp.samples, np.maximum(xi, 0.0)
    return QPSolution(np.ascontiguousarray(X[:, :d]), b, np.maximum(lam, 0.0), xi_samples, xi,
                      "Solved (dense IPM)", iterations)


def _solve_dual(problem: MarginProblem, units: np.ndarray, C: float | None, accuracy: float):
    solved = solve_dual_ipm(problem, units, C, accuracy)
    if solved is None:
        return None
    W, b, alpha, xi, samples, iterations = solved
    if problem.free_bias and problem.n_blocks > 1:
        b = b - b.mean()
    if C is None:
        samples, xi = np.empty(0, dtype=np.int64), np.zeros(0)
    return QPSolution(W, b, np.maximum(alpha, 0.0), samples, xi, "Solved (dual IPM)", iterations)


_SOLVERS = {"primal": _solve_primal, "dual": _solve_dual}


def solve_clarabel(problem: MarginProblem, units: np.ndarray, C: float | None, tol: float) -> QPSolution:
    """:func:`solve_restricted` by Clarabel's sparse interior-point method (with infeasibility certificates)."""
    d, K = problem.n_features, problem.n_blocks
    n_w, n_b = K * d, problem.n_bias
    G = problem.unit_rows(units)  # (m, n_w + n_b)
    m = G.shape[0]
    soft = C is not None
    xi_samples, unit_to_xi = (np.unique(problem.unit_samples(units), return_inverse=True) if soft
                              else (np.empty(0, dtype=np.int64), None))
    n_xi = len(xi_samples)
    n_vars = n_w + n_b + n_xi

    blocks_A, rhs, cones = [], [], []
    if problem.free_bias and K > 1:  # the score shift is free: pin Σₖ bₖ = 0
        row = sp.csr_matrix((np.ones(K), (np.zeros(K, dtype=int), n_w + np.arange(K))), shape=(1, n_vars))
        blocks_A.append(row)
        rhs.append(np.zeros(1))
        cones.append(clarabel.ZeroConeT(1))
    margin_rows = -G
    if soft:
        slack_cols = sp.csr_matrix((-np.ones(m), (np.arange(m), unit_to_xi)), shape=(m, n_xi))
        margin_rows = sp.hstack([margin_rows, slack_cols])
        slack_nonneg = sp.hstack([sp.csr_matrix((n_xi, n_w + n_b)), -sp.identity(n_xi)])
        blocks_A += [margin_rows, slack_nonneg]
        rhs += [-np.ones(m), np.zeros(n_xi)]
        cones.append(clarabel.NonnegativeConeT(m + n_xi))
    else:
        blocks_A.append(margin_rows)
        rhs.append(-np.ones(m))
        cones.append(clarabel.NonnegativeConeT(m))
    A = sp.vstack(blocks_A).tocsc()
    P = sp.diags(np.r_[np.ones(n_w), np.zeros(n_b + n_xi)]).tocsc()
    q = np.r_[np.zeros(n_w + n_b), np.full(n_xi, float(C) if soft else 0.0)]

    sol = clarabel.DefaultSolver(P, q, A, np.concatenate(rhs), cones, _settings(tol)).solve()
    status = str(sol.status).split(".")[-1]
    if status in _INFEASIBLE:
        return QPSolution(np.zeros((K, d)), np.zeros(K), np.zeros(m), xi_samples, np.zeros(n_xi), status,
                          sol.iterations)
    if status not in _SOLVED:
        raise QPSolverError(
            f"Clarabel stopped with status {status} after {sol.iterations} iterations on a working set of "
            f"{m} constraints; the features may be badly scaled (try standardising them) or nearly degenerate.")
    x = np.asarray(sol.x)
    z = np.asarray(sol.z)
    offset = 1 if (problem.free_bias and K > 1) else 0
    W = x[:n_w].reshape(K, d)
    b = x[n_w:n_w + n_b] if n_b else np.zeros(K)
    xi = np.maximum(x[n_w + n_b:], 0.0)
    alpha = np.maximum(z[offset:offset + m], 0.0)
    return QPSolution(W, b, alpha, xi_samples, xi, status, sol.iterations)


def _accuracy(tol: float) -> float:
    """Residual and gap accuracy asked of the interior-point methods: two digits beyond ``tol``."""
    return float(np.clip(tol * 1e-2, 1e-12, 1e-8))


def _settings(tol: float) -> clarabel.DefaultSettings:
    settings = clarabel.DefaultSettings()
    settings.verbose = False
    accuracy = _accuracy(tol)
    settings.tol_gap_abs = accuracy
    settings.tol_gap_rel = accuracy
    settings.tol_feas = accuracy
    settings.tol_ktratio = 1e-7
    settings.max_iter = 200
    return settings
