"""The restricted max-margin QP solved in its dual, on the Gram matrix of the working-set points.

The primal interior-point method of ``_ipm`` factors a matrix of size K·(d+1): for a CIFAR-100 head (K=100,
d=512) that is 51,300² doubles (19.6 GiB). The dual of the same restricted problem lives on the p active
(point, rival class) units of the working set and needs only the Gram matrix of its m_s distinct points:

    minimise   ½ αᵀQα − 1ᵀα      Q_{uv} = (hᵢ·hⱼ)(c_u·c_v),  u = (i, k), v = (j, l)
    subject to α ≥ 0,
               E α = 0            (free bias: Σᵤ αᵤ c_u = 0, one row per class but one),
               Σ_{u∈i} αᵤ ≤ C     (soft margin: one slack per sample),

with cᵤ ∈ Rᴷ the unit's class coefficients (binary: yᵢ; Crammer–Singer: e_{yᵢ} − e_k). At the optimum
W = Σᵤ αᵤ cᵤ hᵢᵀ (the representer theorem: W lies in the span of the points, so d ≫ n costs nothing), the
multipliers of E give the bias, and those of the slack rows give ξ. A Mehrotra predictor–corrector iteration
factors one p×p matrix: time O(m_s²·d + p³) per solve, memory O(p² + m_s·d), independent of K·d. The caller
picks the primal or this dual by their cost (``_qp.solve_restricted``). When the features are torch tensors on
an accelerator (``_backend.DeviceFeatures.factors``), Q and the Cholesky factor live on their device and only
vectors of length p (and the p×(K−1) block M⁻¹Eᵀ) come back: on a GPU the p³ term, which is what limits
1000-class heads, runs there.

Like ``_ipm`` it has no infeasibility detection: when it does not converge it returns None (the caller falls
back to the primal method, Clarabel or the separability LP).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg.lapack

from nnboundary.svm._memory import check_memory
from nnboundary.svm._problem import MarginProblem

_potrf, _potrs = scipy.linalg.lapack.dpotrf, scipy.linalg.lapack.dpotrs
_MAX_ITER = 100
_STEP_TO_BOUNDARY = 0.99
_REFINEMENT_STEPS = 2
_DIVERGED = 1e15  # Σα = ‖W‖² = 1/margin² in the solver's unit-RMS units: beyond this the subset is not separable


class RestrictedDual:
    """The dual QP on a set of units: Q (p, p), the equality rows E (n_eq, p), the sample of each unit.

    Attributes: ``samples`` (m_s,) distinct samples of the units; ``us`` (p,) each unit's index into ``samples``;
    ``Hs`` (m_s, d) their features; ``C_units`` (p, K) the class coefficients cᵤ; ``eq_classes`` the classes whose
    bias is a multiplier of E (the others are 0 before centring).
    """

    def __init__(self, problem: MarginProblem, units: np.ndarray):
        self.K = problem.n_blocks
        self.samples, self.us = np.unique(problem.unit_samples(units), return_inverse=True)
        self.Hs = problem.rows(self.samples)
        self.p, self.m_s = len(units), len(self.samples)
        y = problem.y[self.samples[self.us]]
        if self.K == 1:
            self.C_units = y.astype(float)[:, None]
        else:
            rivals = units % problem.units_per_sample
            self.C_units = np.zeros((self.p, self.K))
            rows = np.arange(self.p)
            self.C_units[rows, y.astype(np.int64)] = 1.0
            self.C_units[rows, rivals] = -1.0
        device = problem.device
        self.device = device if device is not None and device.factors else None  # Q and its factor live there
        if self.device is not None:
            check_memory(8.0 * (3 * self.p * self.p + self.m_s * self.m_s),
                         f"The dual QP on {self.p} constraint units (on {device.device})",
                         "Pass fewer points (a class-balanced subset), or fewer classes.", limit=device.free_bytes())
            self.Q = device.pair_matrix(self.samples, self.us, self.C_units)  # (p, p) on the device
        else:
            G = self.Hs @ self.Hs.T if device is None else device.gram(self.samples)  # (m_s, m_s)
            self.Q = G[np.ix_(self.us, self.us)] * (self.C_units @ self.C_units.T)
        self.E, self.eq_classes = self._bias_rows(problem.free_bias)

    def matvec(self, v: np.ndarray) -> np.ndarray:
        """Q v, shape (p,) (on the device when Q lives there)."""
        return self.Q @ v if self.device is None else self.device.matvec(self.Q, v)

    def factor_solver(self, barrier: np.ndarray, omega: np.ndarray | None):
        """A function B ↦ M⁻¹B for M = Q + diag(barrier) + SᵀΩS (Ωᵢ on every pair of units of sample i), or None
        when M cannot be factored (see :func:`_factor`)."""
        if self.device is not None:
            return self.device.factor_solver(self.Q, barrier, self.us, omega)
        M = self.Q.copy()
        M[np.diag_indices_from(M)] += barrier
        if omega is not None:
            same = self.us[:, None] == self.us[None, :]
            M += np.where(same, omega[self.us][:, None], 0.0)
        L = _factor(M)
        return None if L is None else (lambda B: _potrs(L, B, lower=1)[0])

    def _bias_rows(self, free_bias: bool) -> tuple[np.ndarray, np.ndarray]:
        if not free_bias:
            return np.zeros((0, self.p)), np.zeros(0, dtype=np.int64)
        present = np.flatnonzero(np.abs(self.C_units).sum(0) > 0)
        if self.K > 1:
            present = present[:-1]  # the rows of all classes sum to zero: one is redundant
        return np.ascontiguousarray(self.C_units[:, present].T), present

    def per_sample(self, v: np.ndarray) -> np.ndarray:
        """Σ_{u∈i} vᵤ, shape (m_s,)."""
        return np.bincount(self.us, v, minlength=self.m_s)

    def primal(self, alpha: np.ndarray, nu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(W (K, d), b (K,)) from the multipliers: W = Σᵤ αᵤ cᵤ hᵢᵀ, b from the equality multipliers."""
        table = np.zeros((self.m_s, self.K))
        np.add.at(table, self.us, alpha[:, None] * self.C_units)
        b = np.zeros(self.K)
        b[self.eq_classes] = nu
        return table.T @ self.Hs, b


def solve_dual_ipm(problem: MarginProblem, units: np.ndarray, C: float | None, accuracy: float):
    """Solve the restricted QP in the dual.

    Returns ``(W (K, d), b (K,), α (p,), ξ (m_s,) or None, samples (m_s,), iterations)``, or None when the method
    does not converge. ``accuracy`` bounds the margins' residual (|gᵤ − (1 − ξ + zᵤ)|), the equality residual and
    the complementarity relative to the objective.
    """
    return _solve(RestrictedDual(problem, units), C, accuracy)


def _solve(qp: RestrictedDual, C: float | None, accuracy: float):
    soft = C is not None
    p, n_eq = qp.p, qp.E.shape[0]
    ones = np.ones(p)
    alpha, z = ones.copy(), ones.copy()
    nu = np.zeros(n_eq)
    if soft:  # start strictly inside Σ_{u∈i} αᵤ ≤ C
        count = qp.per_sample(ones)
        alpha = np.minimum(1.0, 0.5 * C / count)[qp.us]
        t, w = C - qp.per_sample(alpha), np.ones(qp.m_s)
    else:
        t = w = None
    n_pairs = p + (qp.m_s if soft else 0)
    for iteration in range(1, _MAX_ITER + 1):
        Qa = qp.matvec(alpha)
        r_d = Qa - 1.0 + qp.E.T @ nu - z + (w[qp.us] if soft else 0.0)
        r_e = qp.E @ alpha
        r_t = qp.per_sample(alpha) + t - C if soft else None
        gap = float(alpha @ z) + (float(t @ w) if soft else 0.0)
        objective = 0.5 * float(alpha @ Qa) - float(alpha.sum())
        scale = max(1.0, abs(objective))
        if (np.abs(r_d).max() <= accuracy and (n_eq == 0 or np.abs(r_e).max() <= accuracy * max(1.0, alpha.max()))
                and (not soft or np.abs(r_t).max() <= accuracy * max(1.0, C)) and gap <= accuracy * scale):
            W, b = qp.primal(alpha, nu)
            xi = np.maximum(w, 0.0) if soft else None
            return W, b, alpha, xi, qp.samples, iteration
        if not np.isfinite(gap) or alpha.sum() > _DIVERGED:
            return None
        omega = w / t if soft else None
        solve = _newton_solver(qp, z / alpha, omega)
        if solve is None:
            return None
        mu = gap / n_pairs
        # predictor (affine scaling) and Mehrotra's corrector share the factor
        rc_z, rc_w = -alpha * z, (-t * w if soft else None)
        da, dnu, dz, dt, dw = _direction(qp, solve, alpha, z, t, w, r_d, r_e, r_t, rc_z, rc_w)
        step = _max_step(alpha, z, t, w, da, dz, dt, dw)
        step = min(1.0, step)
        gap_aff = float((alpha + step * da) @ (z + step * dz))
        if soft:
            gap_aff += float((t + step * dt) @ (w + step * dw))
        sigma_mu = (gap_aff / n_pairs / mu) ** 3 * mu
        rc_z = sigma_mu - alpha * z - da * dz
        rc_w = sigma_mu - t * w - dt * dw if soft else None
        da, dnu, dz, dt, dw = _direction(qp, solve, alpha, z, t, w, r_d, r_e, r_t, rc_z, rc_w)
        step = min(1.0, _STEP_TO_BOUNDARY * _max_step(alpha, z, t, w, da, dz, dt, dw))
        if step < 1e-10:
            return None
        alpha, z, nu = alpha + step * da, z + step * dz, nu + step * dnu
        if soft:
            t, w = t + step * dt, w + step * dw
    return None


def _newton_solver(qp: RestrictedDual, barrier: np.ndarray, omega: np.ndarray | None):
    """A function solving [[M, Eᵀ], [E, 0]] [Δα; Δν] = [r₁; r₂] with M = Q + diag(z/α) + SᵀΩS, or None.

    M is factored by Cholesky (a tiny diagonal shift when it is numerically singular, as with tied or duplicated
    points; iterative refinement on the full system removes the error), the equality rows by their Schur
    complement E M⁻¹ Eᵀ. M and its factor live where Q does (``RestrictedDual.factor_solver``).
    """
    solve_M = qp.factor_solver(barrier, omega)
    if solve_M is None:
        return None
    E = qp.E
    if E.shape[0]:
        MinvEt = solve_M(np.ascontiguousarray(E.T))  # (p, n_eq)
        S = E @ MinvEt
        Ls = _factor(S)
        if Ls is None:
            return None

    def apply(da, dnu):  # for the refinement residual: M from its parts, not stored twice
        out = qp.matvec(da) + barrier * da + E.T @ dnu
        if omega is not None:
            out += (omega * qp.per_sample(da))[qp.us]
        return out, E @ da

    def solve_once(r1, r2):
        x = solve_M(r1)
        if not E.shape[0]:
            return x, np.zeros(0)
        dnu = _potrs(Ls, E @ x - r2, lower=1)[0]
        return x - MinvEt @ dnu, dnu

    def solve(r1, r2):
        da, dnu = solve_once(r1, r2)
        for _ in range(_REFINEMENT_STEPS):
            e1, e2 = apply(da, dnu)
            ca, cnu = solve_once(r1 - e1, r2 - e2)
            da, dnu = da + ca, dnu + cnu
        return da, dnu

    return solve


def _direction(qp, solve, alpha, z, t, w, r_d, r_e, r_t, rc_z, rc_w):
    """Newton direction for complementarity targets ``rc_z`` (α∘z) and ``rc_w`` (t∘w); see the module docstring."""
    soft = t is not None
    r1 = -r_d + rc_z / alpha
    if soft:
        r1 = r1 - ((rc_w + w * r_t) / t)[qp.us]
    da, dnu = solve(r1, -r_e)
    dz = (rc_z - z * da) / alpha
    if not soft:
        return da, dnu, dz, None, None
    dt = -r_t - qp.per_sample(da)
    dw = (rc_w - w * dt) / t
    return da, dnu, dz, dt, dw


def _max_step(alpha, z, t, w, da, dz, dt, dw) -> float:
    step = np.inf
    for value, delta in ((alpha, da), (z, dz), (t, dt), (w, dw)):
        if value is not None and (delta < 0).any():
            neg = delta < 0
            step = min(step, float((-value[neg] / delta[neg]).min()))
    return step


def _factor(M: np.ndarray):
    """Cholesky factor of M, or of M plus a tiny diagonal shift when M is numerically singular; None if neither."""
    L, info = _potrf(M, lower=1, clean=0)
    if info == 0 and np.isfinite(L).all():
        return L
    diagonal = np.diag(M).copy()
    for relative in (1e-14, 1e-12, 1e-10):
        shifted = M.copy()
        shifted[np.diag_indices_from(shifted)] = diagonal + relative * max(diagonal.max(), 1.0)
        L, info = _potrf(shifted, lower=1, clean=0)
        if info == 0 and np.isfinite(L).all():
            return L
    return None
