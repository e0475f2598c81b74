"""A cheap approximate max-margin solution, used only to pick the first working set.

Two first-order methods, each where it was measured to be the cheaper good seed:

* K·(d+1) large (the restricted QPs go to the dual method, whose cost grows with the working set cubed, so the
  seed must be tight): liblinear's dual coordinate descent (scikit-learn's ``LinearSVC``: Keerthi et al. 2008 for
  Crammer–Singer, Hsieh et al. 2008 for binary problems) at a loose tolerance. On neural-collapse-like ReLU
  features (K=100, d=512, n=20,000; 2,723 active (point, rival) units) at ``tol=0.01`` every active unit had a
  margin below 1.008 under its solution and ranked among the 3,000 smallest (at ``tol=0.1``: below 1.026, among
  the 4,000 smallest), and the whole fit took 18.6 s against 21.9 s from the looser seed; at K=100, n=2,000
  (3,988 active units) 38.6 s against 116 s.
* K·(d+1) small (primal method): L-BFGS on the smooth L2-loss SVM over all units, a few hundred passes of two
  matrix products. On the ReLU features of ``benchmarks/svm_speed.py`` (K=10, d=128, n=10,000) liblinear needed
  7 s at ``tol=0.1`` against 0.8 s for L-BFGS.

Exactness never depends on either: the working-set loop that follows checks every point, and the QP solvers are
exact. Time O(passes · n · K · d), memory O(n · d) (liblinear's copy of the features).
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.optimize import minimize
from sklearn.exceptions import ConvergenceWarning
from sklearn.svm import LinearSVC

from nnboundary.svm._problem import MarginProblem


def approximate_solution(problem: MarginProblem, C: float | None = None, *, tight: bool = True
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Approximate (W (n_blocks, d), b (n_blocks,)) for features of unit RMS norm; b = 0 without a free bias.

    ``C``: the soft-margin constant in the solver's units (None: hard margin, approximated by C = 1e4).
    ``tight``: liblinear (see the module docstring); else L-BFGS.
    """
    if not tight:
        return lbfgs_solution(problem)
    return liblinear_solution(problem, C)


def liblinear_solution(problem: MarginProblem, C: float | None = None, tol: float = 0.01,
                       max_iter: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """liblinear's dual coordinate descent: (W, b) as :func:`approximate_solution`."""
    K = problem.n_blocks
    multi = "crammer_singer" if K > 1 else "ovr"
    labels = problem.y if K > 1 else (problem.y > 0).astype(np.int64)
    present = np.unique(labels)
    if len(present) < 2:  # a subsample with one class only (see ``_working_set.seed_problem``): no direction
        return np.zeros((K, problem.n_features)), np.zeros(K)
    svc = LinearSVC(C=1e4 if C is None else min(float(C), 1e8), loss="hinge", dual=True, tol=tol,
                    multi_class=multi, fit_intercept=problem.free_bias, intercept_scaling=1.0,
                    max_iter=max_iter, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        svc.fit(problem.H, labels)
    W = np.atleast_2d(svc.coef_)
    b = np.atleast_1d(svc.intercept_).astype(float) if problem.free_bias else np.zeros(K)
    if K > 1 and W.shape[0] != K:  # classes absent from a subsample: their rows stay 0
        full_W, full_b = np.zeros((K, W.shape[1])), np.zeros(K)
        if len(present) == 2:  # liblinear reports w₁ − w₀ (and b₁ − b₀) for two classes
            full_W[present], full_b[present] = np.stack([-W[0], W[0]]) / 2, np.r_[-b[0], b[0]] / 2
        else:
            full_W[present], full_b[present] = W, b
        W, b = full_W, full_b
    return W, b


def lbfgs_solution(problem: MarginProblem, C: float = 1e4, max_iter: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """L-BFGS on the smooth L2-loss SVM ``½‖W‖² + C Σᵤ max(0, 1 − gᵤ)²`` over all units: (W, b) as
    :func:`approximate_solution`. A few hundred passes of two matrix products."""
    K, d, n = problem.n_blocks, problem.n_features, problem.n_samples
    n_b = problem.n_bias
    valid = problem.valid_units()
    rows = np.arange(n)

    def objective(x):
        W, b = x[:K * d].reshape(K, d), (x[K * d:] if n_b else np.zeros(K))
        R = np.where(valid, np.maximum(1.0 - problem.margins(W, b), 0.0), 0.0)  # (n, units)
        if K == 1:
            dscores = (-2.0 * C * R[:, 0] * problem.y)[:, None]  # (n, 1)
        else:
            dscores = 2.0 * C * R
            dscores[rows, problem.y] = -2.0 * C * R.sum(1)
        grad_W = W + dscores.T @ problem.H
        value = 0.5 * float((W ** 2).sum()) + C * float((R ** 2).sum())
        grad = np.concatenate([grad_W.ravel(), dscores.sum(0)]) if n_b else grad_W.ravel()
        return value, grad

    result = minimize(objective, np.zeros(K * d + n_b), jac=True, method="L-BFGS-B",
                      options={"maxiter": max_iter, "gtol": 1e-10})
    x = result.x
    return x[:K * d].reshape(K, d), (x[K * d:] if n_b else np.zeros(K))
