"""A cheap approximate max-margin solution used only to pick the first working set.

L-BFGS on the smooth L2-loss SVM ``½‖W‖² + C Σᵤ max(0, 1 − gᵤ)²`` over all units: a few hundred passes of two
matrix products, typically a fraction of a degree from the hard-margin direction. Its smallest-margin units are
the likeliest support vectors, which saves most working-set rounds. Exactness never depends on it: the loop
that follows checks every point.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize

from nnboundary.svm._problem import MarginProblem


def approximate_solution(problem: MarginProblem, C: float = 1e4, max_iter: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Approximate (W (n_blocks, d), b (n_blocks,)) for features of unit RMS norm; b = 0 without a free bias."""
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
