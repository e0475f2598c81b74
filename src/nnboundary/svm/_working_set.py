"""The working-set (cutting-plane) loop that makes the exact QP cheap on large data.

At the optimum only the units on the margin carry a non-zero multiplier, and there are few of them (at most
about the number of variables in general position, far fewer for nearly collapsed network features). So: solve
the QP on a small candidate set S, compute the margin of *every* unit, add the most violated units to S, and
repeat. Outside S every multiplier is zero and every slack is zero, so when no unit outside S violates its
margin by more than ``tol`` the restricted solution satisfies the KKT conditions of the whole problem: the loop
stops with a certificate (the largest violation over all points), never on a timeout. S only grows, so the
restricted optimum increases monotonically and the loop terminates.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from nnboundary.svm._problem import MarginProblem
from nnboundary.svm._qp import _LP_INFEASIBLE, QPSolverError, solve_restricted
from nnboundary.svm._separability import is_separable
from nnboundary.svm._warm_start import approximate_solution


@dataclass(frozen=True)
class WorkingSetResult:
    """Solution of the full problem with its certificate.

    W (n_blocks, d), b (n_blocks,); alpha (n_samples, units_per_sample) multipliers (zero outside the final set);
    xi (n_samples,) slacks; max_violation: max over all units of max(0, 1 − ξ − gᵤ);
    primal, dual: objective values (gap = primal − dual ≥ 0 certifies optimality);
    rounds, n_working: loop statistics; infeasible: the final subset had no separating solution.
    """

    W: np.ndarray
    b: np.ndarray
    alpha: np.ndarray
    xi: np.ndarray
    max_violation: float
    primal: float
    dual: float
    rounds: int
    n_working: int
    infeasible: bool
    converged: bool


_WHOLE_PROBLEM_UNITS = 1000  # up to this many units, the first QP is the whole problem (no seeding)
_SEED_MARGIN = 1.005  # units whose margin under the approximate solution is below this seed the working set
_PRIMAL_VARIABLES = 2500  # up to this many QP variables (K·(d+1)) the primal method is the cheap one
_CLEARLY_INACTIVE = 1e-3  # an inactive unit this far above the margin leaves the working set after one round


@dataclass(frozen=True)
class RoundProgress:
    """What one working-set round reached, as passed to a ``progress`` callback.

    round: 1, 2, ...; n_working: units in the working set; n_violators: units outside it violating their margin
    by more than tol; max_violation: the largest violation over all units; gap: an upper bound on how far the
    round's objective is from the optimum (hard margin: ½‖W‖²·(1/g_min² − 1) when the smallest margin g_min over all
    units is positive, else inf; soft margin: full primal minus the restricted optimum); method: which QP solver
    ran; elapsed_s: seconds since the fit started; problem: which QP (set by the estimator).
    """

    round: int
    n_working: int
    n_violators: int
    max_violation: float
    gap: float
    method: str
    elapsed_s: float
    problem: str = ""


def _dual_regime(problem: MarginProblem) -> bool:
    """Whether the restricted QPs will be solved in the dual (K·(d+1) above ``_PRIMAL_VARIABLES``): its cost
    grows like the working set's size cubed, so the set is kept tight; the primal's hardly depends on it."""
    return problem.n_blocks * (problem.n_features + 1) > _PRIMAL_VARIABLES


def seed_units(problem: MarginProblem, size: int, init_samples: np.ndarray | None = None,
               C: float | None = None) -> np.ndarray:
    """First working set.

    A small problem (at most 1000 units) is solved whole: one interior-point solve costs less than the warm start
    that would pick a subset. With ``init_samples`` (a warm start, e.g. the previous support set during training):
    all units of those samples. Otherwise the units of small margin under a cheap approximate solution (see
    ``_warm_start``): for the primal method the ``size`` smallest; for the dual one (see :func:`_dual_regime`) those
    below ``_SEED_MARGIN``, at least ``min(size // 4, 500)`` and at most ``size``.
    """
    per = problem.units_per_sample
    valid = problem.valid_units().ravel()
    if valid.sum() <= _WHOLE_PROBLEM_UNITS:
        return np.flatnonzero(valid)
    if init_samples is not None and len(init_samples):
        units = (np.unique(np.asarray(init_samples, dtype=np.int64))[:, None] * per + np.arange(per)).ravel()
        units = units[valid[units]]
        if len(np.unique(problem.y[units // per])) > 1:  # a one-class seed says nothing about the boundary
            return units
    W, b = approximate_solution(problem, C, tight=_dual_regime(problem))
    g = np.where(valid, problem.margins(W, b).ravel(), np.inf)
    below = int((g < _SEED_MARGIN).sum()) if _dual_regime(problem) else size
    take = int(min(max(below, min(size // 4, 500), 1), size, valid.sum()))
    units = np.argpartition(g, take - 1)[:take] if take < len(g) else np.flatnonzero(valid)
    if problem.n_blocks > 1:  # every class constrained from the start: its smallest-margin unit, as the true class
        table = g.reshape(problem.n_samples, per).min(1)
        order = np.lexsort((table, problem.y))
        first = order[np.r_[0, np.flatnonzero(np.diff(problem.y[order])) + 1]]
        units = np.concatenate([units, first * per + g.reshape(problem.n_samples, per)[first].argmin(1)])
    return np.unique(units)


def solve_working_set(problem: MarginProblem, *, C: float | None, tol: float, max_rounds: int,
                      seed_size: int, chunk: int, init_samples: np.ndarray | None = None,
                      progress=None) -> WorkingSetResult:
    """Run the cutting-plane loop; see the module docstring. ``chunk`` bounds the units added per round;
    ``progress`` (optional) is called with a :class:`RoundProgress` after every round.

    To keep each QP small, units that stayed inactive (zero multiplier, margin above 1) for three rounds in a row
    leave the working set (in the dual regime after one round when their margin exceeds 1 + 1e-3); they are
    checked again every round like every other point and come back if violated, and a unit that comes back
    stays (so no unit cycles in and out). Dropping stops after ``max_rounds // 2`` rounds, so the set then only
    grows and the loop ends.

    Time per round: one pass over all points (O(n·K·d)) plus the restricted QP; memory O(n·K) for the margin
    table plus the QP's (see ``_qp.restricted_costs``).
    """
    start = time.perf_counter()
    n = problem.n_samples
    valid = problem.valid_units()
    S = seed_units(problem, seed_size, init_samples, C)
    idle = np.zeros(len(S), dtype=np.int64)  # consecutive rounds each unit of S was inactive
    dropped = np.zeros(valid.size, dtype=bool)  # units that left S once: if they come back, they stay
    rounds = 0
    while True:
        rounds += 1
        qp = solve_restricted(problem, S, C, tol)
        if qp.infeasible:
            if qp.status != _LP_INFEASIBLE:  # Clarabel's certificate: confirmed by the LP
                _confirm_infeasible(problem, S)
            return _result(problem, qp, S, C, rounds, infeasible=True, converged=True)
        xi = np.zeros(n)
        xi[qp.xi_samples] = qp.xi
        g = problem.margins(qp.W, qp.b)
        violation = np.where(valid, 1.0 - xi[:, None] - g, -np.inf).ravel()
        max_violation = max(float(violation.max()), 0.0)
        slack_in_S = violation[S]
        violation[S] = -np.inf  # units already in S are satisfied up to the QP's own accuracy
        outside = np.flatnonzero(violation > tol)
        if progress is not None:
            progress(RoundProgress(rounds, len(S), len(outside), max_violation, _gap_bound(problem, qp, g, C),
                                   f"{qp.status}, {qp.iterations} iterations", time.perf_counter() - start))
        if len(outside) == 0 or rounds >= max_rounds:
            return _result(problem, qp, S, C, rounds, infeasible=False, converged=len(outside) == 0)
        top_up = max(50, len(S) // 20) if _dual_regime(problem) else chunk // 2
        outside = _units_to_add(violation, len(outside), chunk, top_up)
        inactive = (qp.alpha <= 1e-9 * max(qp.alpha.max(), 1e-300)) & (slack_in_S < -1e-6)
        idle = np.where(inactive, idle + 1, 0)
        clear = inactive & (slack_in_S < -_CLEARLY_INACTIVE) & _dual_regime(problem)  # far above: no need to wait
        keep = ((idle < 3) & ~clear) | dropped[S] if rounds <= max_rounds // 2 else np.ones(len(S), dtype=bool)
        dropped[S[~keep]] = True
        S, order = np.unique(np.concatenate([S[keep], outside]), return_index=True)
        idle = np.concatenate([idle[keep], np.zeros(len(outside), dtype=np.int64)])[order]


def _gap_bound(problem: MarginProblem, qp, g: np.ndarray, C: float | None) -> float:
    """Upper bound on (optimum − restricted optimum): see :class:`RoundProgress`."""
    half_norm = 0.5 * float((qp.W ** 2).sum())  # g: margins() already puts inf in the true-class column
    if C is None:
        g_min = float(g.min())
        return max(half_norm * (1.0 / g_min ** 2 - 1.0), 0.0) if g_min > 0 else np.inf
    hinge = np.maximum(1.0 - g, 0.0).max(1)
    restricted = half_norm + float(C) * float(qp.xi.sum())
    return max(half_norm + float(C) * float(hinge.sum()) - restricted, 0.0)


def _confirm_infeasible(problem: MarginProblem, S: np.ndarray) -> None:
    """Check Clarabel's infeasibility certificate for the working set with a linear program (HiGHS).

    On badly conditioned features (a tiny cloud far from the origin that cannot be centred) Clarabel can
    declare a separable subset infeasible; the LP decides. If it finds a separating hyperplane, nothing can be
    certified here, and the error says so rather than calling the features not separable.
    """
    if not is_separable(problem, S):
        return
    raise QPSolverError(
        f"Clarabel reported the working set ({len(S)} constraints) infeasible, but a linear program found a "
        "separating hyperplane: the features are separable but too badly conditioned for the QP solvers (typical "
        "of a tiny cloud of features far from the origin with bias='regularized' or 'none'). Use bias='free' "
        "(solved on centred features), rescale the features, or pass C for a soft margin.")


def _units_to_add(violation: np.ndarray, n_violated: int, chunk: int, top_up: int) -> np.ndarray:
    """The violated units, most violated first, topped up with the nearest-to-violated ones to ``top_up``
    units (at most ``chunk``).

    Adding units that sit just above the margin (violation slightly below 0) anticipates the next round's
    violators: it costs a slightly larger QP but saves whole rounds of one or two new units each. The caller keeps
    the top-up a small share of the working set, since the dual QP's cost grows like its size cubed.
    """
    take = min(max(n_violated, min(chunk // 2, top_up)), chunk, int(np.isfinite(violation).sum()))
    return np.argpartition(-violation, take - 1)[:take]


def _result(problem: MarginProblem, qp, S: np.ndarray, C: float | None, rounds: int, *, infeasible: bool,
            converged: bool) -> WorkingSetResult:
    n, per = problem.n_samples, problem.units_per_sample
    alpha = np.zeros(n * per)
    xi = np.zeros(n)
    if infeasible:
        return WorkingSetResult(qp.W, qp.b, alpha.reshape(n, per), xi, np.inf, np.inf, -np.inf, rounds, len(S),
                                True, converged)
    alpha[S] = qp.alpha
    alpha = alpha.reshape(n, per)
    g = problem.margins(qp.W, qp.b)
    hinge = np.where(problem.valid_units(), 1.0 - g, -np.inf).max(1).clip(min=0.0)  # (n,) ξ that (W, b) needs
    if C is None:
        max_violation = float(hinge.max())
        primal = 0.5 * float((qp.W ** 2).sum())
    else:
        xi[qp.xi_samples] = qp.xi
        max_violation = float(np.where(problem.valid_units(), 1.0 - xi[:, None] - g, -np.inf).max().clip(min=0.0))
        primal = 0.5 * float((qp.W ** 2).sum()) + float(C) * float(hinge.sum())
    dual = _dual_objective(problem, alpha)
    return WorkingSetResult(qp.W, qp.b, alpha, xi, max_violation, primal, dual, rounds, len(S), False, converged)


def _dual_objective(problem: MarginProblem, alpha: np.ndarray) -> float:
    """Lagrange dual value Σα − ½‖Σᵤ αᵤ ∂gᵤ/∂W‖² of the multipliers (zero-extended to every unit).

    With a free bias, dual feasibility also needs Σᵤ αᵤ ∂gᵤ/∂b = 0; the QP solver meets it to its own accuracy.
    """
    coef = dual_coefficients(problem, alpha)  # (n, n_blocks)
    V = coef.T @ problem.H  # (n_blocks, d)
    return float(alpha.sum() - 0.5 * (V ** 2).sum())


def dual_coefficients(problem: MarginProblem, alpha: np.ndarray) -> np.ndarray:
    """Per-sample, per-block weights β with W = βᵀH at the optimum, shape (n_samples, n_blocks).

    Binary: βᵢ = yᵢαᵢ. Crammer–Singer: β_{i,yᵢ} = Σₖ α_{ik}, β_{ik} = −α_{ik} for k ≠ yᵢ.
    """
    if problem.n_blocks == 1:
        return (problem.y * alpha[:, 0])[:, None]
    beta = -alpha.copy()
    rows = np.arange(problem.n_samples)
    beta[rows, problem.y] = alpha.sum(1)
    return beta
