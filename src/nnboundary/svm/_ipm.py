"""A dense primal–dual interior-point method for the restricted max-margin QP, built on BLAS.

The restricted QP of ``_problem`` (variables ``X`` = per-block ``[wₚ, bₚ]``, one slack ξᵢ per sample if soft)

    minimise ½ Σₚ ‖wₚ‖² (+ C Σᵢ ξᵢ)   s.t.   gᵤ(X) + ξ_{i(u)} ≥ 1,  ξ ≥ 0

has few variables (K·(d+1) ≤ a few thousand) and many constraints whose rows are dense in the features. A
generic sparse solver (Clarabel's LDL) factors a KKT system with one dense row per constraint and no BLAS; here
the Newton system is reduced to the *normal matrix* on the variables,

    N = P + Σᵢ Mᵢ ⊗ ĥᵢĥᵢᵀ,     Mᵢ = Σ_{u∈i} Dᵤ cᵤcᵤᵀ − vᵢvᵢᵀ / (Σ_{u∈i} Dᵤ + νᵢ/ξᵢ)   (vᵢ = Σ_{u∈i} Dᵤcᵤ),

where ĥᵢ are the (bias-augmented) features, cᵤ ∈ Rᴷ the unit's class coefficients (binary: yᵢ; Crammer–Singer:
e_{yᵢ} − e_k), Dᵤ = λᵤ/sᵤ the barrier weights, and the second term of Mᵢ eliminates the slack of a soft margin.
Each block of N is one weighted matrix product over the samples that touch it, and N is factored by a dense
Cholesky: a Mehrotra predictor–corrector iteration then costs O(m·d² + (K·d)³) flops at BLAS speed.

Binary problems (K = 1) run the same iteration through :func:`_solve_binary`, which returns the same numbers bit for
bit with about half the NumPy calls (the small problems of a training run cost their call overhead, not their flops).

The method is infeasible-start and has no infeasibility detection: when it does not converge (a subset with no
separating hyperplane, or numerical trouble) it says so by returning ``None``, and the caller falls back to
Clarabel, whose homogeneous embedding certifies infeasibility.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import scipy.linalg
import scipy.linalg.lapack

from nnboundary.svm._problem import MarginProblem

_potrf, _potrs = scipy.linalg.lapack.dpotrf, scipy.linalg.lapack.dpotrs
_MAX_ITER = 80
_STEP_TO_BOUNDARY = 0.99
_REFINEMENT_STEPS = 2


class RestrictedQP:
    """The QP restricted to a set of units, in per-sample form.

    Attributes: ``samples`` (m_s,) the samples the units belong to; ``Hs`` (m_s, d̂) their features with a
    constant column appended when the bias is free; ``us`` (m,) each unit's row in ``Hs``; ``pos`` / ``neg`` (m,)
    the blocks with coefficient +1 / −1 in the unit's margin (binary: ``pos`` = 0, ``sign`` = yᵢ, no ``neg``).

    Binary rows are stored signed, ``Hs[i] = yᵢĥᵢ``, so a margin is a row times X and an adjoint a weighted sum of
    rows with no sign products; a sign flip is exact, so every margin, adjoint and normal matrix is bit for bit the
    one of the unsigned rows times yᵢ (and the signed copy replaces the unsigned one: no extra memory).
    """

    def __init__(self, problem: MarginProblem, units: np.ndarray):
        self.K = problem.n_blocks
        self.samples, self.us = np.unique(problem.unit_samples(units), return_inverse=True)
        H = problem.rows(self.samples)
        self.free_bias = problem.free_bias
        self.Hs = np.c_[H, np.ones(len(H))] if problem.free_bias else np.ascontiguousarray(H)
        self.m, self.m_s, self.dh = len(units), len(self.samples), self.Hs.shape[1]
        y = problem.y[self.samples[self.us]]
        if self.K == 1:
            if self.m != self.m_s or (self.m > 1 and (np.diff(units) <= 0).any()):
                raise ValueError("RestrictedQP needs sorted, distinct unit ids (one unit per sample when binary).")
            self.sign = y.astype(float)
            self.Hs = self.Hs * self.sign[:, None]  # signed rows yᵢĥᵢ (see the class docstring)
        else:
            self.pos, self.neg = y.astype(np.int64), (units % problem.units_per_sample).astype(np.int64)
        regularized = np.ones(self.dh)
        if problem.free_bias:
            regularized[-1] = 0.0
        self.P = np.tile(regularized, self.K)  # diagonal of the quadratic term, (K·d̂,)

    # -- the constraint operator A (rows ∂gᵤ/∂X) and its adjoint ------------------------------------------------
    def margins(self, X: np.ndarray) -> np.ndarray:
        """gᵤ(X) for every unit, shape (m,); X has shape (K, d̂)."""
        scores = self.Hs @ X.T  # (m_s, K)
        if self.K == 1:  # signed rows: the score is the margin
            return scores[:, 0]
        return scores[self.us, self.pos] - scores[self.us, self.neg]

    def coefficient_table(self, w: np.ndarray) -> np.ndarray:
        """Σ_{u∈i} wᵤ cᵤ per sample, shape (m_s, K)."""
        if self.K == 1:  # one unit per sample, in sample order; the sign yᵢ is in the signed rows
            return w[:, None]
        size = self.m_s * self.K
        return (np.bincount(self.us * self.K + self.pos, w, minlength=size)
                - np.bincount(self.us * self.K + self.neg, w, minlength=size)).reshape(self.m_s, self.K)

    def adjoint(self, table: np.ndarray) -> np.ndarray:
        """Aᵀw from a coefficient table (m_s, K): shape (K, d̂)."""
        return table.T @ self.Hs

    def per_sample(self, w: np.ndarray) -> np.ndarray:
        """Σ_{u∈i} wᵤ, shape (m_s,)."""
        return w if self.K == 1 else np.bincount(self.us, w, minlength=self.m_s)

    # -- the normal matrix -----------------------------------------------------------------------------------------
    def normal_matrix(self, D: np.ndarray, slack_weight: np.ndarray | None) -> np.ndarray:
        """N = P + Σᵢ Mᵢ ⊗ ĥᵢĥᵢᵀ (see the module docstring), shape (K·d̂, K·d̂).

        D (m,): the units' barrier weights λ/s; slack_weight (m_s,): ν/ξ of the samples' slacks (None if hard).
        """
        K, dh = self.K, self.dh
        M = self._sample_weights(D, slack_weight)
        if K == 1:
            N = self.Hs.T @ (M[:, None] * self.Hs)
        else:
            N = np.empty((K * dh, K * dh))
            for p in range(K):
                for q in range(p, K):
                    rows = np.flatnonzero(M[:, p, q])
                    Hr = self.Hs[rows]
                    block = Hr.T @ (M[rows, p, q, None] * Hr)
                    N[p * dh:(p + 1) * dh, q * dh:(q + 1) * dh] = block
                    N[q * dh:(q + 1) * dh, p * dh:(p + 1) * dh] = block.T
            if self.free_bias:  # scores are shift-invariant: fix the direction Σₚ bₚ (N is singular along it)
                bias = np.arange(K) * dh + dh - 1
                N[np.ix_(bias, bias)] += 1.0
        N[np.diag_indices_from(N)] += self.P
        return N

    def _sample_weights(self, D: np.ndarray, slack_weight: np.ndarray | None) -> np.ndarray:
        """Mᵢ of every sample: shape (m_s,) for binary problems, (m_s, K, K) for Crammer–Singer."""
        if self.K == 1:  # one unit per sample: Dᵢ − Dᵢ²/(Dᵢ + rᵢ) = Dᵢrᵢ/(Dᵢ + rᵢ), without the cancellation
            D = self.per_sample(D)
            return D if slack_weight is None else D * slack_weight / (D + slack_weight)
        K, size = self.K, self.m_s * self.K * self.K
        flat = self.us * K * K
        M = (np.bincount(flat + self.pos * (K + 1), D, minlength=size)
             + np.bincount(flat + self.neg * (K + 1), D, minlength=size)
             - np.bincount(flat + self.pos * K + self.neg, D, minlength=size)
             - np.bincount(flat + self.neg * K + self.pos, D, minlength=size)).reshape(self.m_s, K, K)
        if slack_weight is not None:
            v = self.coefficient_table(D)
            M -= v[:, :, None] * v[:, None, :] / (self.per_sample(D) + slack_weight)[:, None, None]
        return M


class _Point(NamedTuple):
    """An iterate, or a direction: X (K, d̂); unit slacks s and multipliers λ (m,); sample slacks ξ and their
    multipliers ν (m_s,), None for a hard margin."""

    X: np.ndarray
    s: np.ndarray
    lam: np.ndarray
    xi: np.ndarray | None = None
    nu: np.ndarray | None = None

    def moved(self, direction: "_Point", alpha: float) -> "_Point":
        return _Point(*(None if a is None else a + alpha * b for a, b in zip(self, direction)))

    def complementarity(self) -> float:
        """sᵀλ (+ ξᵀν): zero exactly at the optimum of a feasible point."""
        return float(self.s @ self.lam) + (float(self.xi @ self.nu) if self.xi is not None else 0.0)

    def max_step(self, direction: "_Point") -> float:
        """Largest α keeping s, λ (and ξ, ν) non-negative along the direction (inf if none decreases)."""
        alpha = np.inf
        for value, step in zip(self[1:], direction[1:]):
            if value is not None and (step < 0).any():
                alpha = min(alpha, float((-value[step < 0] / step[step < 0]).min()))
        return alpha


@dataclass(frozen=True)
class _Residuals:
    """Right-hand side of the Newton system: stationarity in X (K, d̂) and ξ (m_s,), primal feasibility of the
    units (m,), and the complementarity targets of s∘λ (m,) and ξ∘ν (m_s,)."""

    x: np.ndarray
    xi: np.ndarray | None
    s: np.ndarray
    c: np.ndarray
    c_xi: np.ndarray | None


class _NewtonSystem:
    """The Newton system at one iterate: the normal matrix is built and factored once, then solved for the
    predictor and the corrector right-hand sides (see the module docstring for the elimination)."""

    def __init__(self, qp: RestrictedQP, point: _Point):
        self.qp, self.point = qp, point
        self.D = point.lam / point.s
        self.soft = point.xi is not None
        self.v = qp.coefficient_table(self.D) if self.soft else None
        slack_weight = point.nu / point.xi if self.soft else None
        self.D_xi = qp.per_sample(self.D) + slack_weight if self.soft else None
        self.solve_normal = _normal_solver(qp.normal_matrix(self.D, slack_weight))

    def solve(self, r: _Residuals) -> _Point:
        """The exact elimination; only the normal-matrix solve is inexact."""
        qp, pt, D = self.qp, self.point, self.D
        rho = -r.s + r.c / pt.lam
        table = qp.coefficient_table(D * rho)
        if self.soft:
            rho_xi = -r.xi + qp.per_sample(D * rho) + r.c_xi / pt.xi
            table = table - self.v * (rho_xi / self.D_xi)[:, None]
        dX = self.solve_normal((-r.x + qp.adjoint(table)).ravel()).reshape(qp.K, qp.dh)
        A_dX = qp.margins(dX)
        d_xi = d_nu = None
        if self.soft:
            d_xi = (rho_xi - qp.per_sample(D * A_dX)) / self.D_xi
            A_dX = A_dX + d_xi[qp.us]
            d_nu = (r.c_xi - pt.nu * d_xi) / pt.xi
        d_lam = D * (rho - A_dX)
        return _Point(dX, (r.c - pt.s * d_lam) / pt.lam, d_lam, d_xi, d_nu)

    def refined_solve(self, r: _Residuals) -> _Point:
        """``solve`` plus iterative refinement.

        Only the stationarity rows (in X and ξ) carry the error of the normal-matrix solve; their residuals are
        solved for again with the same factor, which keeps the dual residual falling when N is ill-conditioned
        near the optimum (features of tiny variance, rank-deficient features). Always run: an error in ΔX far below
        the dual-residual target is still multiplied by D (up to ~1e12) in Δλ (measured: skipping it when small
        left a far tiny cloud uncertified).
        """
        qp = self.qp
        step = self.solve(r)
        zero_m, zero_s = np.zeros(qp.m), (np.zeros(qp.m_s) if self.soft else None)
        for _ in range(_REFINEMENT_STEPS):
            e_x = step.X * qp.P.reshape(qp.K, qp.dh) - qp.adjoint(qp.coefficient_table(step.lam)) + r.x
            e_xi = -qp.per_sample(step.lam) - step.nu + r.xi if self.soft else None
            step = step.moved(self.solve(_Residuals(e_x, e_xi, zero_m, zero_m, zero_s)), 1.0)
        return step


def solve_ipm(problem: MarginProblem, units: np.ndarray, C: float | None, accuracy: float):
    """Solve the restricted QP by Mehrotra's predictor–corrector method.

    Returns ``(X (K, d̂), λ (m,), ξ (m_s,) or None, iterations, qp)``, or None when it does not converge.
    ``accuracy`` bounds the margins' residual, and the dual residual and duality gap relative to the objective.
    """
    qp = RestrictedQP(problem, units)
    return _solve_binary(qp, C, accuracy) if qp.K == 1 else _solve_generic(qp, C, accuracy)


def _solve_generic(qp: RestrictedQP, C: float | None, accuracy: float):
    """The iteration of :func:`solve_ipm` for any K (binary problems take :func:`_solve_binary`, which returns the
    same numbers faster)."""
    point = _starting_point(qp, C)
    n_pairs = qp.m + (qp.m_s if C is not None else 0)
    for iteration in range(1, _MAX_ITER + 1):
        r, scale, converged = _residuals(qp, point, C, accuracy)
        if converged:
            return point.X, point.lam, point.xi, iteration, qp
        if point.complementarity() <= accuracy ** 2 * scale:
            return None  # complementarity far past the target and the residuals stuck: N too ill-conditioned
        system = _NewtonSystem(qp, point)
        if system.solve_normal is None:
            return None
        affine = system.refined_solve(r)
        alpha = min(1.0, point.max_step(affine))
        mu = point.complementarity() / n_pairs
        sigma_mu = (point.moved(affine, alpha).complementarity() / n_pairs / mu) ** 3 * mu
        corrected = _Residuals(r.x, r.xi, r.s, -point.s * point.lam - affine.s * affine.lam + sigma_mu,
                               None if C is None else -point.xi * point.nu - affine.xi * affine.nu + sigma_mu)
        direction = system.refined_solve(corrected)
        alpha = min(1.0, _STEP_TO_BOUNDARY * point.max_step(direction))
        if alpha < 1e-10:
            return None
        point = point.moved(direction, alpha)
    return None


def _solve_binary(qp: RestrictedQP, C: float | None, accuracy: float):
    """:func:`solve_ipm` for a binary QP (K = 1: one unit per sample, so m = m_s and ``us`` is the identity).

    The same iteration as the generic one (starting point, residuals, Newton system, refined solves, step lengths),
    operation for operation, so it returns the very same floating-point numbers (up to the sign of a zero). Only the
    bookkeeping is cheaper, which matters because on the small problems of a training run (a few hundred units,
    d ≤ a few dozen) every NumPy call costs its overhead rather than its flops:

    * the slacks and multipliers live in one array ``Z`` (rows s[, ξ], λ[, ν]), so a step, a step length and a
      complementarity target are one call each instead of one per vector;
    * the rows are signed (``RestrictedQP``), so margins and adjoints need no sign products;
    * the refinement solves, whose right-hand side is zero but in the stationarity rows, skip the terms that are
      exactly zero and divide by the negated λ (ξ) instead of negating the quotient.

    Time per iteration O(m·d̂² + d̂³), memory O(m·d̂).
    """
    soft = C is not None
    m, dh = qp.m, qp.dh
    SH, P = qp.Hs, qp.P  # (m, d̂): the signed unit rows yᵢĥᵢ
    P2 = P.reshape(1, dh)
    diagonal = np.arange(dh)
    k = 2 if soft else 1  # Z rows: [s, ξ, λ, ν] (soft) or [s, λ] (hard); slacks Z[:k], multipliers Z[k:]
    n_pairs = m * k
    X, Z = np.zeros((1, dh)), np.ones((2 * k, m))
    if soft:  # as _starting_point: Σ_{u∈i} λᵤ + νᵢ = C with λ = ν
        share = C / (np.ones(m) + 1.0)
        Z[2], Z[3] = share, share

    def comp(Z: np.ndarray) -> float:  # sᵀλ (+ ξᵀν), as _Point.complementarity
        return float(Z[0] @ Z[k]) + (float(Z[1] @ Z[3]) if soft else 0.0)

    def max_step(Z: np.ndarray, dZ: np.ndarray) -> float:  # as _Point.max_step (the min over all rows)
        neg = dZ < 0
        return float((-Z[neg] / dZ[neg]).min()) if neg.any() else np.inf

    for iteration in range(1, _MAX_ITER + 1):
        s, lam = Z[0], Z[k]
        xi, nu = (Z[1], Z[3]) if soft else (None, None)
        # -- _residuals
        PX = X * P2
        r_x = PX - lam[:, None].T @ SH
        g = (SH @ X.T)[:, 0]
        r_s = (g + xi if soft else g) - 1.0 - s
        r_xi = C - lam - nu if soft else None
        quadratic = float((PX * X).sum())
        primal = 0.5 * quadratic + (C * float(xi.sum()) if soft else 0.0)
        dual = float(lam.sum()) - 0.5 * quadratic
        scale = max(1.0, abs(primal))
        dual_residual = max(np.abs(r_x).max(), np.abs(r_xi).max() if soft else 0.0)
        c = comp(Z)
        if (np.abs(r_s).max() <= accuracy and dual_residual <= accuracy * scale
                and abs(primal - dual) <= accuracy * scale and c <= accuracy * scale):
            return X, lam.copy(), None if xi is None else xi.copy(), iteration, qp
        if c <= accuracy ** 2 * scale:
            return None  # as solve_ipm: N too ill-conditioned
        RC = -Z[:k] * Z[k:]  # complementarity targets of s∘λ (and ξ∘ν)
        # -- _NewtonSystem
        D = lam / s
        neg_D, neg_lam = -D, -lam
        if soft:
            slack_weight = nu / xi
            D_xi = D + slack_weight
            neg_xi = -xi
            M = D * slack_weight / D_xi
        else:
            M = D
        N = SH.T @ (M[:, None] * SH)
        N[diagonal, diagonal] += P
        solve_normal = _normal_solver(N)
        if solve_normal is None:
            return None

        def solve(r_x, r_s, r_xi, RC):
            """_NewtonSystem.solve with the right-hand side (r_x, r_s, r_xi, RC = [c, c_xi])."""
            rho = -r_s + RC[0] / lam
            D_rho = D * rho
            if soft:
                rho_xi = -r_xi + D_rho + RC[1] / xi
                table = D_rho[:, None] - (D * (rho_xi / D_xi))[:, None]  # y ∘ table of _NewtonSystem.solve
            else:
                table = D_rho[:, None]
            dX = solve_normal((-r_x + table.T @ SH).ravel()).reshape(1, dh)
            dZ = np.empty_like(Z)
            A_dX = (SH @ dX.T)[:, 0]
            if soft:
                d_xi = (rho_xi - D * A_dX) / D_xi
                A_dX = A_dX + d_xi
                dZ[1] = d_xi
                np.divide(RC[1] - nu * d_xi, xi, out=dZ[3])
            d_lam = dZ[k]
            np.multiply(D, rho - A_dX, out=d_lam)
            np.divide(RC[0] - s * d_lam, lam, out=dZ[0])
            return dX, dZ

        def refine(dX, dZ, r_x, r_xi):
            """One refinement step of _NewtonSystem.refined_solve: the solve of the stationarity residuals with
            r_s = c = 0 (so ρ = 0 exactly, and 0 − t is −t)."""
            d_lam = dZ[k]
            e_x = dX * P2 - d_lam[:, None].T @ SH + r_x
            ddZ = np.empty_like(Z)
            if soft:
                rho_xi = -(-d_lam - dZ[3] + r_xi)
                table = -(D * (rho_xi / D_xi))[:, None]
                ddX = solve_normal((-e_x + table.T @ SH).ravel()).reshape(1, dh)
                A_dX = (SH @ ddX.T)[:, 0]
                d_xi = (rho_xi - D * A_dX) / D_xi
                A_dX = A_dX + d_xi
                ddZ[1] = d_xi
                np.divide(nu * d_xi, neg_xi, out=ddZ[3])
            else:
                ddX = solve_normal((-e_x).ravel()).reshape(1, dh)
                A_dX = (SH @ ddX.T)[:, 0]
            dd_lam = ddZ[k]
            np.multiply(neg_D, A_dX, out=dd_lam)
            np.divide(s * dd_lam, neg_lam, out=ddZ[0])
            return dX + ddX, dZ + ddZ

        def refined_solve(r_x, r_s, r_xi, RC):
            dX, dZ = solve(r_x, r_s, r_xi, RC)
            for _ in range(_REFINEMENT_STEPS):
                dX, dZ = refine(dX, dZ, r_x, r_xi)
            return dX, dZ

        dXa, dZa = refined_solve(r_x, r_s, r_xi, RC)
        alpha = min(1.0, max_step(Z, dZa))
        mu = c / n_pairs
        sigma_mu = (comp(Z + alpha * dZa) / n_pairs / mu) ** 3 * mu
        dX, dZ = refined_solve(r_x, r_s, r_xi, RC - dZa[:k] * dZa[k:] + sigma_mu)
        alpha = min(1.0, _STEP_TO_BOUNDARY * max_step(Z, dZ))
        if alpha < 1e-10:
            return None
        X, Z = X + alpha * dX, Z + alpha * dZ
    return None


def _starting_point(qp: RestrictedQP, C: float | None) -> _Point:
    """X = 0 and unit slacks and multipliers of 1; a soft margin starts dual feasible in ξ (Σ_{u∈i} λᵤ + νᵢ = C),
    since a large C otherwise makes a first residual that only tiny steps can follow."""
    X, ones = np.zeros((qp.K, qp.dh)), np.ones(qp.m)
    if C is None:
        return _Point(X, ones, ones.copy())
    share = C / (qp.per_sample(ones) + 1.0)
    return _Point(X, ones, share[qp.us], np.ones(qp.m_s), share)


def _residuals(qp: RestrictedQP, point: _Point, C: float | None, accuracy: float):
    """(Newton right-hand side for the affine step, objective scale, whether the point is optimal to accuracy)."""
    soft = C is not None
    PX = point.X * qp.P.reshape(qp.K, qp.dh)
    r_x = PX - qp.adjoint(qp.coefficient_table(point.lam))
    r_s = qp.margins(point.X) + (point.xi[qp.us] if soft else 0.0) - 1.0 - point.s
    r_xi = C - qp.per_sample(point.lam) - point.nu if soft else None
    quadratic = float((PX * point.X).sum())
    primal = 0.5 * quadratic + (C * float(point.xi.sum()) if soft else 0.0)
    dual = float(point.lam.sum()) - 0.5 * quadratic
    scale = max(1.0, abs(primal))
    dual_residual = max(np.abs(r_x).max(), np.abs(r_xi).max() if soft else 0.0)
    converged = (np.abs(r_s).max() <= accuracy and dual_residual <= accuracy * scale
                 and abs(primal - dual) <= accuracy * scale and point.complementarity() <= accuracy * scale)
    residuals = _Residuals(r_x, r_xi, r_s, -point.s * point.lam, -point.xi * point.nu if soft else None)
    return residuals, scale, converged


def _normal_solver(N: np.ndarray):
    """A function solving N Δ = r, or None when N cannot be factored even with regularisation.

    Near the optimum N mixes barrier weights from ~0 to ~1e12 and can lose definiteness in floating point (free
    bias directions of bounded slacks, features of tiny variance). Then N + δI is factored instead, δ a tiny
    fraction of N's largest diagonal entry; the caller's iterative refinement removes the error this makes.
    """
    def factor(M):  # LAPACK directly: scipy's wrappers cost more than the solve itself on small problems
        L, info = _potrf(M, lower=1, clean=0)
        return L if info == 0 and np.isfinite(L).all() else None

    # Jacobi equilibration: factor S N S with S = diag(N)^-½ (Newton's step is invariant to it, its rounding is
    # not: features of very different scales, e.g. a tiny cloud far from the origin, give diagonals ~1e-8 and ~1)
    equil = 1.0 / np.sqrt(np.maximum(np.diag(N), np.finfo(float).tiny))
    N = N * equil[:, None] * equil[None, :]
    L = factor(N)
    if L is None:
        diagonal = np.diag(N).copy()
        for relative in (1e-14, 1e-12, 1e-10):
            N[np.diag_indices_from(N)] = diagonal + relative * max(diagonal.max(), 1.0)
            L = factor(N)
            if L is not None:
                break
        else:
            return None
    return lambda r: equil * _potrs(L, equil * r, 1)[0]  # lower=1 (positional: the wrapper's keywords are slow)
