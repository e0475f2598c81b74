"""The restricted-QP layer: the dense interior-point method against Clarabel, and the fallback between them."""

import numpy as np
import pytest

from nnboundary.svm import MaxMarginClassifier
from nnboundary.svm._ipm import RestrictedQP, solve_ipm
from nnboundary.svm._problem import MarginProblem
from nnboundary.svm._qp import solve_clarabel, solve_restricted
from tests.svm.test_svm import separable


def problem_of(X, y, n_classes, bias):
    """The MarginProblem the estimator builds (without its centring and scaling), with every unit."""
    H = np.c_[X, np.ones(len(X))] if bias == "regularized" else X
    labels = np.where(y == 1, 1.0, -1.0) if n_classes == 2 else y
    problem = MarginProblem(H, labels, 1 if n_classes == 2 else n_classes, free_bias=bias == "free")
    return problem, np.flatnonzero(problem.valid_units().ravel())


@pytest.mark.parametrize("n_classes", [2, 3, 4])
@pytest.mark.parametrize("bias", ["free", "regularized", "none"])
@pytest.mark.parametrize("C", [None, 0.5, 1e4])
def test_dense_ipm_matches_clarabel(n_classes, bias, C):
    X, y = separable(60, 4, n_classes, seed=3, homogeneous=bias == "none")
    if C is not None:  # make the soft margin bind: flip a few labels
        y = y.copy()
        y[:4] = (y[:4] + 1) % n_classes
    problem, units = problem_of(X, y, n_classes, bias)
    ours = solve_restricted(problem, units, C, tol=1e-8)
    ref = solve_clarabel(problem, units, C, tol=1e-8)
    assert ours.status == "Solved (dense IPM)"
    scale = np.abs(ref.W).max()
    assert np.allclose(ours.W, ref.W, atol=1e-6 * scale)
    assert np.allclose(ours.b, ref.b, atol=1e-6 * max(scale, 1.0))
    assert np.allclose(ours.alpha, ref.alpha, atol=1e-6 * max(ref.alpha.max(), 1.0))
    if C is not None:
        assert np.array_equal(ours.xi_samples, ref.xi_samples)
        assert np.allclose(ours.xi, ref.xi, atol=1e-6)


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("soft", [False, True])
def test_normal_matrix_is_the_reduced_newton_matrix(n_classes, soft):
    """N = P + Aᵀ D A − (AᵀDE) D_ξ⁻¹ (EᵀDA), built from explicit dense A and E."""
    rng = np.random.default_rng(0)
    X, y = separable(12, 3, n_classes, seed=1)
    problem, units = problem_of(X, y, n_classes, "free")
    qp = RestrictedQP(problem, units)
    n_vars = qp.K * qp.dh
    A = np.stack([qp.margins(e.reshape(qp.K, qp.dh)) for e in np.eye(n_vars)], axis=1)  # (m, n_vars)
    E = np.zeros((qp.m, qp.m_s))
    E[np.arange(qp.m), qp.us] = 1.0
    D, r = rng.uniform(0.1, 2.0, qp.m), rng.uniform(0.1, 2.0, qp.m_s)
    N = qp.normal_matrix(D, r if soft else None)
    expected = np.diag(qp.P) + A.T @ (D[:, None] * A)
    if soft:
        ADE = A.T @ (D[:, None] * E)
        expected -= ADE @ (ADE.T / (E.T @ D + r)[:, None])
    if n_classes > 2:
        bias = np.arange(qp.K) * qp.dh + qp.dh - 1
        expected[np.ix_(bias, bias)] += 1.0  # the fixed direction Σₚ bₚ
    assert np.allclose(N, expected, atol=1e-10 * np.abs(expected).max())


def _binary_cases():
    """Binary restricted QPs of every kind the fast path must reproduce: separable, overlapping (the soft margin
    binds, the hard one is infeasible), collapsed features (duplicate points of both labels, as dead ReLUs give), a
    tiny cloud far from the origin, and a single feature."""
    rng = np.random.default_rng(5)
    X, y = separable(80, 3, seed=4)
    overlap = rng.standard_normal((120, 2)) + 0.7 * np.where(rng.random(120) < 0.5, 1.0, -1.0)[:, None]
    collapsed = np.maximum(rng.standard_normal((150, 2)), 0.0).round(1)
    yield "separable", X, y
    yield "overlapping", overlap, (overlap.sum(1) + 0.5 * rng.standard_normal(120) > 0).astype(int)
    yield "collapsed", collapsed, (collapsed[:, 0] > collapsed[:, 1]).astype(int)
    yield "far tiny cloud", 1e-4 * X + np.array([1.0, 2.0, 3.0]), y
    yield "one feature", X[:, :1], (X[:, 0] > 0.1).astype(int)


@pytest.mark.parametrize("bias", ["free", "regularized", "none"])
@pytest.mark.parametrize("C", [None, 0.5, 1e4])
def test_binary_fast_path_is_the_generic_iteration(bias, C):
    """The binary interior-point path returns exactly (bit for bit) what the generic iteration returns, including
    its iteration count and its None when it does not converge."""
    from nnboundary.svm._ipm import _solve_binary, _solve_generic

    for name, X, y in _binary_cases():
        problem, units = problem_of(X, y, 2, bias)
        for subset in (units, units[::3]):
            qp = RestrictedQP(problem, subset)
            fast, generic = _solve_binary(qp, C, 1e-10), _solve_generic(qp, C, 1e-10)
            assert (fast is None) == (generic is None), name
            if fast is not None:
                assert fast[3] == generic[3], name
                for a, b in zip(fast[:3], generic[:3]):
                    assert (a is None and b is None) or np.array_equal(a, b), name


def test_infeasible_subset_goes_to_clarabel_for_its_certificate():
    X = np.array([[0.0, 0.0], [1.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    problem, units = problem_of(X, np.array([0, 0, 1, 1]), 2, "free")
    assert solve_ipm(problem, units, None, 1e-10) is None
    assert solve_restricted(problem, units, None, tol=1e-8).infeasible


@pytest.mark.parametrize("n_classes,spread", [(2, 1e-4), (3, 1e-2)])
def test_regularized_bias_on_a_tiny_far_cloud_is_certified(n_classes, spread):
    """Features of an untrained network: a tiny cloud far from the origin, which cannot be centred when the bias is
    regularised. (Clarabel alone ends the binary case with margins violated by 0.2; Crammer–Singer clouds a hundred
    times tighter still defeat both solvers.)"""
    X, y = separable(200, 8, n_classes, seed=7)
    far = spread * X + np.linspace(1.0, 3.0, 8)
    clf = MaxMarginClassifier(bias="regularized").fit(far, y)
    assert clf.max_violation_ <= clf.tol
    primal = 0.5 * (np.sum(clf.coef_ ** 2) + np.sum(clf.intercept_ ** 2))
    assert abs(clf.duality_gap_) <= 1e-8 * primal
    assert (clf.predict(far) == y).all()


def test_clarabel_infeasibility_is_confirmed_by_the_lp():
    """Clarabel can call a badly conditioned separable subset infeasible; the LP check turns that into a clear
    QPSolverError instead of a false NotSeparableError, and lets a truly infeasible subset through."""
    from nnboundary.svm import QPSolverError
    from nnboundary.svm._working_set import _confirm_infeasible

    X, y = separable(40, 3, seed=2)
    problem, units = problem_of(X, y, 2, "free")
    with pytest.raises(QPSolverError, match="separable but too badly conditioned"):
        _confirm_infeasible(problem, units)
    xor, xor_units = problem_of(np.array([[0.0, 0.0], [1.0, 1.0], [0.0, 1.0], [1.0, 0.0]]), np.array([0, 0, 1, 1]),
                                2, "free")
    assert _confirm_infeasible(xor, xor_units) is None


def test_an_uncertified_solution_warns(monkeypatch):
    """When the solvers stop short of tol (badly conditioned features), fit says so instead of returning quietly."""
    import dataclasses

    from sklearn.exceptions import ConvergenceWarning

    import nnboundary.svm._estimator as estimator

    solve = estimator.solve_working_set

    def short_of_tol(*args, **kwargs):
        return dataclasses.replace(solve(*args, **kwargs), max_violation=1e-3)

    monkeypatch.setattr(estimator, "solve_working_set", short_of_tol)
    X, y = separable(50, 3, seed=1)
    with pytest.warns(ConvergenceWarning, match="No optimality certificate.*1.0e-03 > tol"):
        clf = MaxMarginClassifier().fit(X, y)
    assert clf.max_violation_ == 1e-3


def relu_separable(n, d, n_classes, seed):
    """ReLU features (like a penultimate layer) labelled by a linear teacher, the 1/6 nearest its boundary dropped."""
    rng = np.random.default_rng(seed)
    X = np.maximum(rng.standard_normal((n * 6 // 5, d)) @ rng.standard_normal((d, d)) / np.sqrt(d), 0.0)
    scores = X @ rng.standard_normal((d, n_classes))
    scores -= np.median(scores, axis=0)
    top = np.sort(scores, axis=1)
    keep = np.argsort(top[:, -2] - top[:, -1])[:n]
    return X[keep], scores.argmax(1)[keep]


@pytest.mark.parametrize("n_classes,C", [(3, None), (2, 2.0), (3, 2.0)])
def test_working_set_rounds_reach_the_whole_problem_solution(n_classes, C, monkeypatch):
    """Above 1000 units the first QP is a seeded subset and the loop adds violators round by round; its answer is
    the one-round solve of the whole problem, and a warm start from the support set gives it again."""
    import nnboundary.svm._working_set as working_set

    X, y = relu_separable(1500, 20, n_classes, seed=8)
    if C is not None:
        y = y.copy()
        y[:10] = (y[:10] + 1) % n_classes
    seed = working_set.approximate_solution  # a poor first working set (liblinear's is often exact): many rounds
    monkeypatch.setattr(working_set, "approximate_solution",
                        lambda problem, C, tight: (lambda W, b: (W * 0.3 + np.random.default_rng(0).normal(
                            size=W.shape) * np.abs(W).mean(), b))(*seed(problem, C, tight=tight)))
    rounds = MaxMarginClassifier(C=C).fit(X, y)
    warm = MaxMarginClassifier(C=C).fit(X, y, init_support=rounds.support_)
    monkeypatch.setattr(working_set, "_WHOLE_PROBLEM_UNITS", 10**9)
    whole = MaxMarginClassifier(C=C).fit(X, y)
    assert rounds.n_iter_ > 1 and whole.n_iter_ == 1
    for clf in (rounds, warm):
        assert clf.max_violation_ <= clf.tol
        assert np.allclose(clf.coef_, whole.coef_, rtol=1e-6, atol=1e-8 * np.abs(whole.coef_).max())
        assert np.allclose(clf.intercept_, whole.intercept_, rtol=1e-6, atol=1e-8)


def test_a_solver_that_stops_quietly_on_infeasible_features_is_overruled_by_the_lp(monkeypatch):
    """Clarabel can end an infeasible hard-margin QP with 'AlmostSolved' and a huge, violating W (seen on the
    8-D features of a barely trained net); the missing certificate sends the question to the LP."""
    import nnboundary.svm._working_set as working_set
    from nnboundary.svm import NotSeparableError
    from nnboundary.svm._qp import QPSolution

    def quietly_wrong(problem, units, C, tol):
        K, d = problem.n_blocks, problem.n_features
        return QPSolution(np.full((K, d), 1e8), np.zeros(K), np.ones(len(units)), np.empty(0, dtype=np.int64),
                          np.zeros(0), "AlmostSolved", 200)

    monkeypatch.setattr(working_set, "solve_restricted", quietly_wrong)
    X = np.array([[0.0, 0.0], [1.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    with pytest.raises(NotSeparableError, match="linear program"):
        MaxMarginClassifier().fit(X, [0, 0, 1, 1])
