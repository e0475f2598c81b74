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

import functools
import time
import warnings
from dataclasses import dataclass

import numpy as np

from nnboundary.svm._problem import MarginProblem
from nnboundary.svm._qp import _LP_INFEASIBLE, QPSolverError, restricted_costs, solve_restricted
from nnboundary.svm._scan import Scan, scan
from nnboundary.svm._separability import is_separable
from nnboundary.svm._warm_start import approximate_solution


@dataclass(frozen=True)
class WorkingSetResult:
    """Solution of the full problem with its certificate.

    W (n_blocks, d), b (n_blocks,); units (p,) the final working set (sorted unit ids) and alpha (p,) their
    multipliers (every other unit's is zero); xi_samples / xi: the slacks of its samples (zero elsewhere);
    max_violation: max over ALL units of max(0, 1 − ξ − gᵤ); min_margin: the smallest functional margin over all
    units; primal, dual: objective values (gap = primal − dual ≥ 0 certifies optimality); rounds, n_working: loop
    statistics; infeasible: the final subset had no separating solution.
    """

    W: np.ndarray
    b: np.ndarray
    units: np.ndarray
    alpha: np.ndarray
    xi_samples: np.ndarray
    xi: np.ndarray
    max_violation: float
    min_margin: float
    primal: float
    dual: float
    rounds: int
    n_working: int
    infeasible: bool
    converged: bool

    def largest_sample_alpha(self, problem: MarginProblem) -> float:
        """maxᵢ Σ_{u∈i} αᵤ (0 without units)."""
        if not len(self.units):
            return 0.0
        _, where = np.unique(problem.unit_samples(self.units), return_inverse=True)
        return float(np.bincount(where, self.alpha).max())


_WHOLE_PROBLEM_UNITS = 1000  # up to this many units, the first QP is the whole problem (no seeding)
_SEED_MARGIN = 1.005  # units whose margin under the approximate solution is below this seed the working set
_PRIMAL_VARIABLES = 2500  # up to this many QP variables (K·(d+1)) the primal method is the cheap one
_CLEARLY_INACTIVE = 1e-3  # an inactive unit this far above the margin leaves the working set after one round
_LONG_QP_S = 600.0  # a restricted QP estimated to take longer than this is announced with a warning
_ASSUMED_FLOPS = 1e10  # flop rate of one core for that estimate (the QPs run with one BLAS thread)
_TYPICAL_ITERATIONS = 30  # interior-point iterations of a restricted QP (measured 15-40)


@dataclass(frozen=True)
class RoundProgress:
    """What one working-set round reached, as passed to a ``progress`` callback.

    round: 1, 2, ...; n_working: units in the working set; n_violators: units outside it violating their margin
    by more than tol; max_violation: the largest violation over all units; gap: an upper bound on how far the
    round's objective is from the optimum (hard margin: ½‖W‖²·(1/g_min² − 1) when the smallest margin g_min over all
    units is positive, else inf; soft margin: full primal minus the restricted optimum); method: which QP solver
    ran; elapsed_s: seconds since the fit started; problem: which QP (set by the estimator); stage: "round" for a
    working-set round, "seed" for the one report made before the first-order seed starts (round 0, empty working
    set, violations unknown = inf; ``method`` says which seed on how many rows): on a large head that seed alone can
    take minutes, and it must not be a silence.
    """

    round: int
    n_working: int
    n_violators: int
    max_violation: float
    gap: float
    method: str
    elapsed_s: float
    problem: str = ""
    stage: str = "round"


def _dual_regime(problem: MarginProblem) -> bool:
    """Whether the restricted QPs will be solved in the dual (K·(d+1) above ``_PRIMAL_VARIABLES``): its cost
    grows like the working set's size cubed, so the set is kept tight; the primal's hardly depends on it."""
    return problem.n_blocks * (problem.n_features + 1) > _PRIMAL_VARIABLES


#: The first-order seed runs on at most this many bytes of features with liblinear's copy (a deterministic subsample
#: of the rows beyond). A fixed number, not the memory available, so that the seed (hence the last digits of the
#: result) is the same on every machine and however the rows are split; 5 GiB keeps every benchmark case of
#: svm_scale.py on all its rows (K=1000, d=2048, n=100,000: 109,170 rows fit).
SEED_BYTES = 5.0 * 2 ** 30


def seed_rows(n_features: int) -> int:
    """Rows of the seed's subsample: as many as fit in ``SEED_BYTES`` with liblinear's copy (24 bytes an entry)."""
    return max(2000, int(SEED_BYTES // (24 * (n_features + 1))))


def seed_problem(problem: MarginProblem) -> MarginProblem | None:
    """The problem on the seed's rows, in memory: ``problem`` itself when its n rows are in memory and fit in
    ``SEED_BYTES``; else the rows of a deterministic global subsample (:func:`~nnboundary.svm._shards.subsample`,
    gathered from their owners when sharded), the same however the rows are split. A collective when sharded; None
    on the ranks other than 0 (only rank 0 computes the seed)."""
    n = problem.n_samples
    size = seed_rows(problem.n_features)
    if problem.H is not None and n <= size:
        return problem
    samples, H = problem.source.subsample_rows(size)
    return None if H is None else MarginProblem(H, problem.y[samples], problem.n_blocks, problem.free_bias)


def seed_units(problem: MarginProblem, size: int, init_samples: np.ndarray | None = None,
               C: float | None = None, announce=None) -> np.ndarray:
    """First working set.

    A small problem (at most 1000 units) is solved whole: one interior-point solve costs less than the warm start
    that would pick a subset. With ``init_samples`` (a warm start, e.g. the previous support set during training):
    all units of those samples. Otherwise the units of small margin under a cheap approximate solution (see
    ``_warm_start``; computed on :func:`seed_problem`'s rows, all of them unless n·d is very large — a poorer seed
    from a subsample only costs rounds, the certificate still checks every point): for the primal method the
    ``size`` smallest; for the dual one (see :func:`_dual_regime`) those below ``_SEED_MARGIN``, at least
    ``min(size // 4, 500)`` and at most ``size`` (ties to the smaller unit id); for Crammer–Singer also, per class,
    the smallest-margin unit of its samples. The margins of all units are one chunked pass (``_scan``).
    ``announce(text)`` (optional) is called with what the seed is about to run, before it runs.
    """
    per = problem.units_per_sample
    n_valid = problem.n_valid_units
    if n_valid <= _WHOLE_PROBLEM_UNITS:
        units = np.arange(problem.n_samples * per, dtype=np.int64)
        return units[problem.valid(units)]
    if init_samples is not None and len(init_samples):
        units = (np.unique(np.asarray(init_samples, dtype=np.int64))[:, None] * per + np.arange(per)).ravel()
        units = units[problem.valid(units)]
        if len(np.unique(problem.y[units // per])) > 1:  # a one-class seed says nothing about the boundary
            return units
    rows = seed_problem(problem)  # gathered on every rank (a collective); the seed itself is computed once
    if announce is not None:
        how = "liblinear dual coordinate descent" if _dual_regime(problem) else "L-BFGS"
        n_rows = rows.n_samples if rows is not None else min(problem.n_samples, seed_rows(problem.n_features))
        announce(f"seed: {how} on {n_rows} rows × {problem.n_features} features, {problem.n_blocks} blocks")
    W, b = on_rank0(problem.source, functools.partial(approximate_solution, rows, C, tight=_dual_regime(problem)))
    found = scan(problem, W, b, n_low=size, below=_SEED_MARGIN)
    below = found.n_below if _dual_regime(problem) else size
    take = int(min(max(below, min(size // 4, 500), 1), size, n_valid))
    units = found.low_ids[:take]
    if problem.n_blocks > 1:  # every class constrained from the start: its smallest-margin unit, as the true class
        units = np.concatenate([units, found.firsts[:, 2].astype(np.int64)])
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

    Sharded rows (``problem.source`` with a reducer of several ranks; every rank runs this loop, SPMD): each round
    the working set's rows are gathered from their owners, the restricted QP is solved on rank 0 and its solution
    sent to every rank, and every rank scores its own rows (``_scan``); the summaries — largest violation,
    violators outside S, the most violated units by (violation, global id), the gap terms — are all-gathered and
    combined, so every rank takes the same decisions and ends with the same result.

    Time per round: one pass over all points (O(n·K·d)) plus the restricted QP; memory one chunk's tables
    (``_shards.chunk_rows``) plus the QP's (see ``_qp.restricted_costs``).
    """
    start = time.perf_counter()
    announce = None if progress is None else (lambda text: progress(RoundProgress(
        0, 0, 0, np.inf, np.inf, text, time.perf_counter() - start, stage="seed")))
    S = seed_units(problem, seed_size, init_samples, C, announce)
    idle = np.zeros(len(S), dtype=np.int64)  # consecutive rounds each unit of S was inactive
    dropped = np.zeros(0, dtype=np.int64)  # units that left S once (sorted): if they come back, they stay
    rounds, warned = 0, False
    while True:
        rounds += 1
        view = problem.restricted(np.unique(problem.unit_samples(S)))
        warned = warned or _warn_if_long(view, S, rounds)
        qp, dual = on_rank0(problem.source, functools.partial(_restricted_step, view, S, C, tol))
        if qp.infeasible:
            return _infeasible_result(qp, S, rounds)
        found = scan(problem, qp.W, qp.b, S=S, xi_samples=qp.xi_samples, xi=qp.xi, tol=tol, n_top=chunk)
        max_violation = max(found.max_violation, 0.0)
        n_outside = found.n_outside
        if progress is not None:
            progress(RoundProgress(rounds, len(S), n_outside, max_violation, _gap_bound(qp, found, C),
                                   f"{qp.status}, {qp.iterations} iterations", time.perf_counter() - start))
        if n_outside == 0 or rounds >= max_rounds:
            return _result(qp, S, C, rounds, found, dual, converged=n_outside == 0)
        top_up = max(50, len(S) // 20) if _dual_regime(problem) else chunk // 2
        take = min(max(n_outside, min(chunk // 2, top_up)), chunk, problem.n_valid_units - len(S))
        outside = found.top_ids[:max(take, 0)]  # the most violated, topped up with the nearest-to-violated
        slack_in_S = found.in_S
        inactive = (qp.alpha <= 1e-9 * max(qp.alpha.max(initial=0.0), 1e-300)) & (slack_in_S < -1e-6)
        idle = np.where(inactive, idle + 1, 0)
        clear = inactive & (slack_in_S < -_CLEARLY_INACTIVE) & _dual_regime(problem)  # far above: no need to wait
        was_dropped = np.isin(S, dropped, assume_unique=True)
        keep = ((idle < 3) & ~clear) | was_dropped if rounds <= max_rounds // 2 else np.ones(len(S), dtype=bool)
        dropped = np.union1d(dropped, S[~keep])
        S, order = np.unique(np.concatenate([S[keep], outside]), return_index=True)
        idle = np.concatenate([idle[keep], np.zeros(len(outside), dtype=np.int64)])[order]


def _warn_if_long(view: MarginProblem, S: np.ndarray, round_: int) -> bool:
    """Warn (once per fit, on every rank) when the restricted QP of this round is estimated to take longer than
    ``_LONG_QP_S``: the cheaper method's flops per iteration (``_qp.restricted_costs``) times
    ``_TYPICAL_ITERATIONS`` at ``_ASSUMED_FLOPS``. Returns whether it warned. An estimate, said to be one: the point
    is that a fit which has become hours long says so and why, instead of only slowing down."""
    flops = min(cost for cost, _ in restricted_costs(view, S).values()) * _TYPICAL_ITERATIONS
    seconds = flops / _ASSUMED_FLOPS
    if seconds <= _LONG_QP_S:
        return False
    warnings.warn(
        f"Round {round_} of the max-margin fit solves an exact QP on {len(S)} constraint units: about {flops:.1e} "
        f"flops, roughly {seconds / 60:.0f} min at {_ASSUMED_FLOPS / 1e9:.0f} GFLOP/s, and later rounds can be "
        "larger. The solver's cost follows the number of active (point, rival class) pairs, and heads with tens of "
        "thousands of them (e.g. K=1000 classes) are beyond it on one machine. To make it smaller: fit a subset of "
        "the classes, or fewer points per class.", UserWarning, stacklevel=5)
    return True


def on_rank0(source, step):
    """``step()`` on rank 0 only, its value (or its exception) sent to every rank; just ``step()`` in one
    process. The restricted QP is solved once, so every rank continues from the very same solution."""
    if not source.sharded:
        return step()
    outcome = None
    if source.reducer.rank == 0:
        try:
            outcome = (True, step())
        except Exception as exc:  # noqa: BLE001 - re-raised on every rank below
            outcome = (False, exc)
    ok, value = source.allgather(outcome)[0]
    if not ok:
        raise value
    return value


def _restricted_step(view: MarginProblem, S: np.ndarray, C: float | None, tol: float):
    """The restricted QP on S (and, if it says infeasible, the LP's confirmation), with its dual objective."""
    qp = solve_restricted(view, S, C, tol)
    if qp.infeasible:
        if qp.status != _LP_INFEASIBLE:  # Clarabel's certificate: confirmed by the LP
            _confirm_infeasible(view, S)
        return qp, -np.inf
    return qp, _dual_objective(view, S, qp.alpha)


def _gap_bound(qp, found: Scan, C: float | None) -> float:
    """Upper bound on (optimum − restricted optimum): see :class:`RoundProgress`."""
    half_norm = 0.5 * float((qp.W ** 2).sum())
    if C is None:
        g_min = found.g_min
        return max(half_norm * (1.0 / g_min ** 2 - 1.0), 0.0) if g_min > 0 else np.inf
    restricted = half_norm + float(C) * float(qp.xi.sum())
    return max(half_norm + float(C) * found.hinge_sum - restricted, 0.0)


def _confirm_infeasible(problem: MarginProblem, S: np.ndarray) -> None:
    """Check Clarabel's infeasibility certificate for the working set with a linear program (HiGHS).

    On badly conditioned features (a tiny cloud of features far from the origin that cannot be centred) Clarabel
    can declare a separable subset infeasible; the LP decides. If it finds a separating hyperplane, nothing can be
    certified here, and the error says so rather than calling the features not separable.
    """
    if not is_separable(problem, S):
        return
    raise QPSolverError(
        f"Clarabel reported the working set ({len(S)} constraints) infeasible, but a linear program found a "
        "separating hyperplane: the features are separable but too badly conditioned for the QP solvers (typical "
        "of a tiny cloud of features far from the origin with bias='regularized' or 'none'). Use bias='free' "
        "(solved on centred features), rescale the features, or pass C for a soft margin.")


def _infeasible_result(qp, S: np.ndarray, rounds: int) -> WorkingSetResult:
    empty = np.zeros(0, dtype=np.int64)
    return WorkingSetResult(qp.W, qp.b, empty, np.zeros(0), empty, np.zeros(0), np.inf, -np.inf, np.inf, -np.inf,
                            rounds, len(S), True, True)


def _result(qp, S: np.ndarray, C: float | None, rounds: int, found: Scan, dual: float, *,
            converged: bool) -> WorkingSetResult:
    """The result of the last round, its certificate from that round's pass over all units (``found``)."""
    half_norm = 0.5 * float((qp.W ** 2).sum())
    if C is None:
        max_violation = max(1.0 - found.g_min, 0.0)
        primal = half_norm
        xi_samples, xi = np.zeros(0, dtype=np.int64), np.zeros(0)
    else:
        max_violation = max(found.max_violation, 0.0)
        primal = half_norm + float(C) * found.hinge_sum
        xi_samples, xi = qp.xi_samples, qp.xi
    return WorkingSetResult(qp.W, qp.b, S, qp.alpha, xi_samples, xi, max_violation, found.g_min, primal, dual,
                            rounds, len(S), False, converged)


def _dual_objective(problem: MarginProblem, units: np.ndarray, alpha: np.ndarray) -> float:
    """Lagrange dual value Σα − ½‖Σᵤ αᵤ ∂gᵤ/∂W‖² of the multipliers ``alpha`` of ``units`` (zero elsewhere).

    With a free bias, dual feasibility also needs Σᵤ αᵤ ∂gᵤ/∂b = 0; the QP solver meets it to its own accuracy.
    Time O(m_s·K·d) on the rows of the units' m_s samples.
    """
    samples, coef = dual_coefficients(problem, units, alpha)  # (m_s,), (m_s, n_blocks)
    V = coef.T @ problem.rows(samples)  # (n_blocks, d)
    return float(alpha.sum() - 0.5 * (V ** 2).sum())


def dual_coefficients(problem: MarginProblem, units: np.ndarray, alpha: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample, per-block weights β with W = βᵀH at the optimum, for the samples of ``units`` (their
    multipliers ``alpha``; every other sample's β is 0): (samples (m_s,), β (m_s, n_blocks)).

    Binary: βᵢ = yᵢαᵢ. Crammer–Singer: β_{i,yᵢ} = Σₖ α_{ik}, β_{ik} = −α_{ik} for k ≠ yᵢ.
    """
    per = problem.units_per_sample
    samples, where = np.unique(problem.unit_samples(units), return_inverse=True)
    if problem.n_blocks == 1:
        beta = np.zeros(len(samples))
        np.add.at(beta, where, alpha)
        return samples, (problem.y[samples] * beta)[:, None]
    table = np.zeros((len(samples), per))
    np.add.at(table, (where, units % per), alpha)
    beta = -table
    beta[np.arange(len(samples)), problem.y[samples]] = table.sum(1)
    return samples, beta
