"""MaxMarginClassifier against independent references (libsvm, cvxpy), KKT conditions, properties and bad input."""

import cvxpy as cp
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from sklearn.svm import SVC

from nnboundary.svm import MaxMarginClassifier, NotSeparableError


def separable(n, d, n_classes=2, seed=0, gap=0.2, offset=0.0, homogeneous=False):
    """Gaussian points labelled by a random linear teacher; points within ``gap`` of a teacher boundary dropped.

    ``homogeneous``: the teacher has no bias, so the data are separable by a classifier through the origin."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((4 * n, d)) + offset
    T = rng.standard_normal((d, n_classes))
    c = np.zeros(n_classes) if homogeneous else rng.standard_normal(n_classes)
    scores = X @ T + c
    if n_classes == 2:
        s = scores[:, 1] - scores[:, 0]
        s -= 0.0 if homogeneous else np.median(s)
        y, margin = (s > 0).astype(int), np.abs(s)
    else:
        top = np.sort(scores, axis=1)
        y, margin = scores.argmax(1), top[:, -1] - top[:, -2]
    keep = np.flatnonzero(margin > gap)[:n]
    return X[keep], y[keep]


def cosine(a, b):
    return float((a * b).sum() / (np.linalg.norm(a) * np.linalg.norm(b)))


# -- binary against libsvm ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n,d", [(3, 1), (10, 2), (50, 5), (40, 100), (300, 300), (1000, 20), (5000, 3)])
def test_binary_matches_libsvm_hard_margin(n, d):
    if n == 3:
        X, y = np.array([[0.0], [1.0], [3.0]]), np.array([0, 0, 1])
    elif d >= n:
        rng = np.random.default_rng(n)
        X, y = rng.standard_normal((n, d)), np.arange(n) % 2  # d >= n: any labelling is separable
    else:
        X, y = separable(n, d, seed=d)
    ours = MaxMarginClassifier().fit(X, y)
    ref = SVC(kernel="linear", C=1e8, tol=1e-10).fit(X, y)
    assert cosine(ours.coef_, ref.coef_) >= 1 - 1e-9
    # libsvm stops with its margin constraints violated by ~1e-5 (its 1/‖w‖ is not its geometric margin), so
    # compare geometric margins: ours is certified, so it may only be larger, and by little
    signs = np.where(y == ref.classes_[1], 1.0, -1.0)
    ref_margin = (signs * ref.decision_function(X)).min() / np.linalg.norm(ref.coef_)
    assert ours.margin_ >= ref_margin * (1 - 1e-9)
    assert ours.margin_ - ref_margin <= 1e-4 * ref_margin
    assert ours.max_violation_ <= ours.tol
    assert ours.margin_ == pytest.approx(1.0 / np.linalg.norm(ours.coef_), rel=1e-8)


@pytest.mark.parametrize("n,d", [(20, 2), (200, 10), (60, 80)])
def test_binary_margin_matches_generic_qp_to_1e6(n, d):
    X, y = separable(n, d, seed=n) if d < n else (np.random.default_rng(1).standard_normal((n, d)), np.arange(n) % 2)
    ours = MaxMarginClassifier().fit(X, y)
    W_ref, _ = reference_qp(X, y, 2, "free", None)
    assert cosine(ours.coef_, W_ref) >= 1 - 1e-9
    assert ours.margin_ == pytest.approx(1.0 / np.linalg.norm(W_ref), rel=1e-6)
    assert np.array_equal(ours.predict(X), y)


def test_three_points_closed_form():
    X, y = np.array([[0.0], [1.0], [3.0]]), np.array(["a", "a", "b"])
    clf = MaxMarginClassifier().fit(X, y)
    assert clf.coef_[0, 0] == pytest.approx(1.0, abs=1e-8)  # boundary at 2, margin 1
    assert clf.intercept_[0] == pytest.approx(-2.0, abs=1e-8)
    assert clf.margin_ == pytest.approx(1.0, abs=1e-8)
    assert set(clf.support_) == {1, 2}
    assert clf.predict([[2.5]])[0] == "b"


# -- every variant against a generic QP written in cvxpy ------------------------------------------------------------
def reference_qp(X, y_idx, n_classes, bias, C):
    """min ½‖W‖² (+½‖b‖²) (+CΣξ) with the Crammer–Singer constraints (binary: as K=1 with signs)."""
    n, d = X.shape
    binary = n_classes == 2
    K = 1 if binary else n_classes
    W = cp.Variable((K, d))
    b = cp.Variable(K) if bias != "none" else None
    xi = cp.Variable(n, nonneg=True) if C is not None else None
    scores = X @ W.T + (cp.reshape(b, (1, K), order="C") if b is not None else 0)
    cons = []
    slack = xi if xi is not None else 0
    if binary:
        cons.append(cp.multiply(np.where(y_idx == 1, 1.0, -1.0), scores[:, 0]) >= 1 - slack)
    else:
        true = cp.sum(cp.multiply(scores, np.eye(K)[y_idx]), axis=1)
        for k in range(K):
            m = y_idx != k
            cons.append(true[m] - scores[m, k] >= 1 - (xi[m] if xi is not None else 0))
        if bias == "free":
            cons.append(cp.sum(b) == 0)
    objective = 0.5 * cp.sum_squares(W)
    if bias == "regularized":
        objective += 0.5 * cp.sum_squares(b)
    if xi is not None:
        objective += C * cp.sum(xi)
    cp.Problem(cp.Minimize(objective), cons).solve(solver="CLARABEL")
    return W.value, (b.value if b is not None else np.zeros(K))


@pytest.mark.parametrize("n_classes", [2, 3, 4])
@pytest.mark.parametrize("bias", ["free", "regularized", "none"])
@pytest.mark.parametrize("C", [None, 0.5])
def test_variants_match_generic_qp(n_classes, bias, C):
    X, y = separable(80, 4, n_classes, seed=n_classes, homogeneous=bias == "none")
    if C is not None:  # make the soft problem non-trivial: flip a few labels
        y = y.copy()
        y[:3] = (y[:3] + 1) % n_classes
    clf = MaxMarginClassifier(C=C, bias=bias).fit(X, y)
    W_ref, b_ref = reference_qp(X, y, n_classes, bias, C)
    assert cosine(clf.coef_, W_ref) >= 1 - 1e-7
    assert np.allclose(clf.coef_, W_ref, atol=1e-5 * np.abs(W_ref).max())
    assert np.allclose(clf.intercept_, b_ref, atol=1e-5 * max(1.0, np.abs(b_ref).max()))
    assert clf.max_violation_ <= clf.tol
    assert abs(clf.duality_gap_) <= 1e-6 * max(1.0, 0.5 * (W_ref ** 2).sum())


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("bias", ["free", "regularized", "none"])
def test_kkt_conditions_hard_margin(n_classes, bias):
    X, y = separable(120, 3, n_classes, seed=7, homogeneous=bias == "none")
    clf = MaxMarginClassifier(bias=bias).fit(X, y)
    Xs = X[clf.support_]
    beta = clf.dual_coef_  # (1, n_sv) binary, (n_sv, K) multi-class
    W_from_dual = beta @ Xs if n_classes == 2 else beta.T @ Xs
    assert np.allclose(W_from_dual, clf.coef_, atol=1e-6 * np.abs(clf.coef_).max())  # stationarity in W
    b_weight = beta.sum(1) if n_classes == 2 else beta.sum(0)
    if bias == "free":
        assert np.allclose(b_weight, 0.0, atol=1e-6 * np.abs(beta).max())  # stationarity in the free bias
    elif bias == "regularized":
        assert np.allclose(b_weight, clf.intercept_, atol=1e-6 * np.abs(beta).max())
    scores = clf.decision_function(Xs)
    if n_classes == 2:  # complementary slackness: support vectors sit on the margin
        signs = np.where(y[clf.support_] == clf.classes_[1], 1.0, -1.0)
        assert np.allclose(signs * scores, 1.0, atol=1e-6)
        assert np.all(signs * beta[0] > 0)  # dual feasibility αᵢ > 0
    else:
        rows = np.arange(len(Xs))
        own = scores[rows, y[clf.support_]]
        rival = np.where(np.eye(n_classes, dtype=bool)[y[clf.support_]], -np.inf, scores).max(1)
        assert np.allclose(own - rival, 1.0, atol=1e-6)
    if bias == "free" and n_classes > 2:
        assert abs(clf.intercept_.sum()) < 1e-9


def test_ovr_is_k_binary_problems():
    from sklearn.datasets import make_blobs

    X, y = make_blobs(150, n_features=3, centers=3, cluster_std=0.5, random_state=3)  # each class vs rest separable
    ovr = MaxMarginClassifier(multiclass="ovr").fit(X, y)
    for k in range(3):
        single = MaxMarginClassifier().fit(X, (y == k).astype(int))
        assert cosine(ovr.coef_[k], single.coef_[0]) >= 1 - 1e-9
        assert ovr.intercept_[k] == pytest.approx(single.intercept_[0], rel=1e-6, abs=1e-8)


def test_regularized_bias_is_augmented_homogeneous_problem():
    X, y = separable(100, 3, seed=11, offset=2.0)
    reg = MaxMarginClassifier(bias="regularized").fit(X, y)
    homo = MaxMarginClassifier(bias="none").fit(np.c_[X, np.ones(len(X))], y)
    assert np.allclose(np.r_[reg.coef_[0], reg.intercept_], homo.coef_[0], rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_free_bias_is_translation_invariant_even_for_a_tiny_far_cloud(n_classes):
    X, y = separable(200, 3, n_classes, seed=4)
    base = MaxMarginClassifier().fit(X, y)
    offset = np.array([1e3, -2e3, 5e2])
    moved = MaxMarginClassifier().fit(1e-3 * X + offset, y)  # like features at the start of training
    assert np.allclose(moved.coef_ * 1e-3, base.coef_, rtol=1e-6, atol=1e-9 * np.abs(base.coef_).max())
    assert np.allclose(moved.decision_function(1e-3 * X + offset), base.decision_function(X), atol=1e-5)
    assert moved.max_violation_ <= moved.tol


def test_warm_start_gives_same_solution():
    X, y = separable(500, 10, 3, seed=5)
    cold = MaxMarginClassifier().fit(X, y)
    warm = MaxMarginClassifier().fit(X, y, init_support=cold.support_)
    assert np.allclose(cold.coef_, warm.coef_, rtol=1e-6, atol=1e-9)


# -- properties ------------------------------------------------------------------------------------------------------
_problem = st.tuples(st.integers(0, 10_000), st.integers(2, 4), st.integers(1, 5))


def drawn(problem):
    """A separable problem of the drawn shape with every class present (else hypothesis discards the draw)."""
    seed, K, d = problem
    X, y = separable(40, d, K, seed=seed, gap=0.3)
    assume(len(y) >= 2 * K and len(np.unique(y)) == K)
    return X, y, K


@settings(max_examples=12, deadline=None)
@given(_problem, st.floats(1e-3, 1e3), st.sampled_from(["free", "none"]))
def test_scaling_features_scales_weights(problem, s, bias):
    X, y, K = drawn(problem)
    try:
        base = MaxMarginClassifier(bias=bias).fit(X, y)
    except NotSeparableError:
        return  # bias="none" may have no solution; nothing to compare
    scaled = MaxMarginClassifier(bias=bias).fit(s * X, y)
    assert np.allclose(scaled.coef_ * s, base.coef_, rtol=1e-5, atol=1e-7 * np.abs(base.coef_).max())
    assert scaled.margin_ == pytest.approx(s * base.margin_, rel=1e-6)


@settings(max_examples=12, deadline=None)
@given(_problem)
def test_permuting_and_duplicating_rows_changes_nothing(problem):
    X, y, K = drawn(problem)
    base = MaxMarginClassifier().fit(X, y)
    perm = np.random.default_rng(problem[0]).permutation(len(X))
    permuted = MaxMarginClassifier().fit(X[perm], y[perm])
    doubled = MaxMarginClassifier().fit(np.r_[X, X[:10]], np.r_[y, y[:10]])
    tol = 1e-6 * np.abs(base.coef_).max()
    for other in (permuted, doubled):
        assert np.allclose(other.coef_, base.coef_, atol=tol)
        assert np.allclose(other.intercept_, base.intercept_, atol=1e-6 * max(1, np.abs(base.intercept_).max()))
    assert set(perm[permuted.support_]) == set(base.support_) or permuted.margin_ == pytest.approx(base.margin_)


@settings(max_examples=10, deadline=None)
@given(_problem)
def test_relabelling_permutes_coef_rows(problem):
    X, y, K = drawn(problem)
    names = np.array(["zebra", "apple", "mango", "kiwi"])[:K]
    base = MaxMarginClassifier().fit(X, y)
    relabelled = MaxMarginClassifier().fit(X, names[y])
    order = np.argsort(names)  # classes_ of the relabelled fit are sorted names: row j is class order[j]
    if K == 2:
        sign = 1.0 if order[1] == 1 else -1.0
        assert np.allclose(relabelled.coef_, sign * base.coef_, atol=1e-6 * np.abs(base.coef_).max())
    else:
        assert np.allclose(relabelled.coef_, base.coef_[order], atol=1e-6 * np.abs(base.coef_).max())
    assert np.array_equal(relabelled.predict(X), names[y])


# -- not separable, bad input -----------------------------------------------------------------------------------------
def test_xor_is_not_separable():
    X = np.array([[0.0, 0.0], [1.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    with pytest.raises(NotSeparableError, match="not linearly separable.*C="):
        MaxMarginClassifier().fit(X, [0, 0, 1, 1])
    soft = MaxMarginClassifier(C=1.0).fit(X, [0, 0, 1, 1])  # the soft margin always exists
    assert soft.max_violation_ <= soft.tol


def test_soft_margin_on_constant_features_has_zero_weights_and_margin():
    clf = MaxMarginClassifier(C=1.0).fit(np.zeros((6, 2)), [0, 1, 0, 1, 0, 1])
    assert np.allclose(clf.coef_, 0.0) and clf.margin_ == 0.0


@pytest.mark.parametrize("n_classes", [2, 3])
def test_overlapping_clouds_are_not_separable(n_classes):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((3000, 5))
    y = rng.integers(0, n_classes, 3000)
    with pytest.raises(NotSeparableError):
        MaxMarginClassifier().fit(X, y)
    assert isinstance(NotSeparableError("x"), ValueError)


@pytest.mark.parametrize("X,y,match", [
    (np.array([[0.0, np.nan], [1.0, 1.0]]), [0, 1], "NaN"),
    (np.array([[0.0, np.inf], [1.0, 1.0]]), [0, 1], "infinity"),
    (np.array([[0.0], [1.0]]), [1, 1], "at least 2 classes"),
    (np.array([[0.0], [1.0], [2.0]]), [0, 1], "inconsistent numbers of samples"),
    (np.array([0.0, 1.0]), [0, 1], "Expected 2D array"),
    (np.zeros((0, 2)), [], "0 sample"),
    (np.array([[0.0], [1.0]]), [0.5, 1.5], "Unknown label type"),
])
def test_bad_input_raises_clear_error(X, y, match):
    with pytest.raises(ValueError, match=match):
        MaxMarginClassifier().fit(X, np.asarray(y))


@pytest.mark.parametrize("params", [{"C": -1.0}, {"bias": "maybe"}, {"multiclass": "ovo"}, {"tol": 0.0},
                                    {"max_rounds": 0}])
def test_bad_parameters_are_named(params):
    with pytest.raises(ValueError, match=list(params)[0]):
        MaxMarginClassifier(**params).fit(np.array([[0.0], [1.0]]), [0, 1])


def test_predict_checks_feature_count():
    clf = MaxMarginClassifier().fit(np.array([[0.0, 0.0], [1.0, 1.0]]), [0, 1])
    with pytest.raises(ValueError, match="features"):
        clf.predict(np.zeros((2, 3)))


def test_soft_margin_passes_sklearn_estimator_checks():
    from sklearn.utils.estimator_checks import check_estimator

    check_estimator(MaxMarginClassifier(C=1.0))


def test_cached_parameter_names_are_sklearns_also_for_a_subclass():
    from sklearn.base import BaseEstimator, clone

    class Wider(MaxMarginClassifier):
        def __init__(self, *, shift=0.0, C=None, bias="free"):
            super().__init__(C=C, bias=bias)
            self.shift = shift

    for cls in (MaxMarginClassifier, Wider):
        assert cls._get_param_names() == BaseEstimator._get_param_names.__func__(cls)
    est = clone(Wider(shift=2.0, C=3.0))
    assert est.get_params() == {"C": 3.0, "bias": "free", "shift": 2.0}
    names = MaxMarginClassifier._get_param_names()
    names.append("mutated")  # a caller's copy: the cache is not changed through it
    assert "mutated" not in MaxMarginClassifier._get_param_names()
