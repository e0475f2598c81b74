"""The solver at the size of real heads: the dual method, its certificate checked from outside, scale invariance,
soft margins that always exist, memory refusals, progress, and inputs that were mishandled when fuzzed."""

import warnings

import numpy as np
import pytest

import nnboundary.svm._qp as qp_module
from nnboundary.svm import InsufficientMemoryError, MaxMarginClassifier, NotSeparableError, RoundProgress


def collapse_like(n, d, K, seed=0, noise=0.6):
    """Neural-collapse-like ReLU features: class means on a simplex in a random subspace, noise, ReLU, points the
    nearest-class-mean rule does not separate by a clear gap dropped (so the hard margin exists)."""
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.standard_normal((d, K)))
    means = 3.0 * ((np.eye(K) - 1.0 / K) @ basis.T)
    y = np.arange(2 * n) % K
    H = np.maximum(means[y] + noise * rng.standard_normal((2 * n, d)), 0.0)
    mu = np.stack([H[y == k].mean(0) for k in range(K)])
    scores = H @ mu.T - 0.5 * (mu ** 2).sum(1)
    true = scores[np.arange(2 * n), y]
    scores[np.arange(2 * n), y] = -np.inf
    keep = np.flatnonzero(true - scores.max(1) > 0.5)[:n]
    return H[keep], y[keep]


def forced(method, monkeypatch):
    """Make ``method`` ("primal" or "dual") the cheaper one for every restricted QP."""
    real = qp_module.restricted_costs

    def costs(problem, units):
        c = real(problem, units)
        other = "dual" if method == "primal" else "primal"
        return {method: (0.0, c[method][1]), other: (np.inf, c[other][1])}
    monkeypatch.setattr(qp_module, "restricted_costs", costs)


def on_accelerator(monkeypatch):
    """Treat CPU torch tensors as an accelerator's, so that the dual method's matrix and factor go to torch (on a
    real CPU tensor the host's LAPACK is used, being faster)."""
    import nnboundary.svm._backend as backend
    monkeypatch.setattr(backend.DeviceFeatures, "factors", property(lambda self: True))


def hinge_sum(clf, X, y):
    """Σ of the per-sample hinge losses of a fitted classifier (binary, Crammer–Singer or summed over OvR)."""
    scores = np.atleast_2d(clf.decision_function(X).T).T
    idx = np.searchsorted(clf.classes_, y)
    if scores.shape[1] == 1:
        return np.maximum(0, 1 - np.where(idx == 1, 1, -1) * scores[:, 0]).sum()
    if clf.multiclass == "ovr":
        signs = np.where(idx[:, None] == np.arange(scores.shape[1]), 1.0, -1.0)
        return np.maximum(0, 1 - signs * scores).sum()
    rows = np.arange(len(X))
    gaps = scores[rows, idx][:, None] - scores
    gaps[rows, idx] = np.inf
    return np.maximum(0, 1 - gaps.min(1)).sum()


@pytest.mark.parametrize("n_classes", [2, 3, 4])
@pytest.mark.parametrize("bias", ["free", "regularized", "none"])
@pytest.mark.parametrize("C", [None, 0.5, 1e4])
def test_dual_method_gives_the_primal_solution_on_every_variant(n_classes, bias, C, monkeypatch):
    X, y = collapse_like(90, 6, n_classes, seed=n_classes)
    if bias == "none":
        X = X - X.mean(0)  # separable through the origin
    if C is not None:
        y = y.copy()
        y[:4] = (y[:4] + 1) % n_classes  # not separable
    ovr = n_classes > 2 and not (bias == "none" and C is None)  # one class against the rest through the origin
    for multiclass in (["crammer_singer", "ovr"] if ovr else ["crammer_singer"]):  # is not separable here
        fits = {}
        for method in ("primal", "dual"):
            with monkeypatch.context() as m:
                forced(method, m)
                fits[method] = MaxMarginClassifier(C=C, bias=bias, multiclass=multiclass).fit(X, y)
        p, d = fits["primal"], fits["dual"]
        assert d.max_violation_ <= d.tol
        # ½‖W‖² is 1-strongly convex: ½‖W − W*‖² ≤ f(W) − f* ≤ the certified duality gap of each solution
        objective = 0.5 * (p.coef_ ** 2).sum() + (0.0 if C is None else C * hinge_sum(p, X, y))
        excess = max(p.duality_gap_, d.duality_gap_, 1e-12 * objective)
        assert abs(p.duality_gap_) <= 1e-8 * max(objective, 1.0) and abs(d.duality_gap_) <= 1e-8 * max(objective, 1.0)
        assert np.linalg.norm(d.coef_ - p.coef_) <= 2 * np.sqrt(2 * excess)
        if C is None:  # the hard-margin bias is then fixed by the margin points to the same accuracy
            assert np.allclose(d.intercept_, p.intercept_, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("bias", ["free", "regularized", "none"])
def test_the_certificate_can_be_recomputed_from_outside(bias):
    """W = βᵀX[support_] with the Crammer–Singer sign pattern, Σᵢβᵢₖ = 0 for a free bias, max violation over all
    n·(K−1) constraints ≤ tol and the gap ‖W‖² − Σα ≈ 0, all from the public attributes alone."""
    X, y = collapse_like(3000, 48, 8, seed=1)
    clf = MaxMarginClassifier(bias=bias).fit(X, y)
    beta = np.zeros((len(X), 8))
    beta[clf.support_] = clf.dual_coef_
    Xh = np.c_[X, np.ones(len(X))] if bias == "regularized" else X
    Wh = beta.T @ Xh
    W = Wh[:, :-1] if bias == "regularized" else Wh
    assert np.allclose(W, clf.coef_, atol=1e-7 * np.abs(clf.coef_).max())
    rows = np.arange(len(X))
    own = beta[rows, y]
    rivals = beta.copy()
    rivals[rows, y] = 0.0
    assert (rivals <= 1e-12 * own.max()).all()
    assert np.allclose(own, -rivals.sum(1), atol=1e-9 * own.max())
    if bias == "free":
        assert np.abs(beta.sum(0)).max() <= 1e-7 * own.max()
    if bias == "regularized":
        assert np.allclose(Wh[:, -1], clf.intercept_, atol=1e-7 * np.abs(clf.intercept_).max())
    scores = X @ clf.coef_.T + clf.intercept_
    gaps = scores[rows, y][:, None] - scores
    gaps[rows, y] = np.inf
    assert max(0.0, 1.0 - gaps.min()) <= clf.tol
    sum_alpha = own.sum()
    norm2 = (clf.coef_ ** 2).sum() + ((clf.intercept_ ** 2).sum() if bias == "regularized" else 0.0)
    assert abs(norm2 - sum_alpha) <= 1e-7 * norm2
    assert abs(clf.duality_gap_) <= 1e-7 * norm2


@pytest.mark.parametrize("s", [1e150, 1e-150, 1e154, 1e-200])
@pytest.mark.parametrize("multiclass_K", [2, 3])
def test_scale_invariance_far_beyond_the_usual_range(s, multiclass_K):
    X, y = collapse_like(200, 5, multiclass_K, seed=2)
    base = MaxMarginClassifier().fit(X, y)
    scaled = MaxMarginClassifier().fit(X * s, y)
    assert scaled.max_violation_ <= scaled.tol
    assert np.allclose(scaled.coef_ * s, base.coef_, rtol=1e-9, atol=1e-9 * np.abs(base.coef_).max())
    assert np.allclose(scaled.intercept_, base.intercept_, rtol=1e-9, atol=1e-9)


def test_separable_data_with_a_tiny_gap_or_subnormal_coordinates_is_separable():
    X = np.array([[0.0, 0.0], [0.0, 1.0], [1e-12, 0.0], [1e-12, 1.0]])
    clf = MaxMarginClassifier().fit(X, [0, 0, 1, 1])
    assert clf.max_violation_ <= clf.tol and clf.margin_ == pytest.approx(5e-13, rel=1e-6)
    Xs = np.array([[1.0, 5e-320], [2.0, 0.0], [4.0, 5e-320], [5.0, 0.0]])
    assert MaxMarginClassifier().fit(Xs, [0, 0, 1, 1]).max_violation_ <= 1e-8


def test_weights_that_overflow_float64_are_refused_with_a_reason():
    X = np.array([[0.0], [1e-310]])
    with pytest.raises(ValueError, match="overflows float64"):
        MaxMarginClassifier().fit(X, [0, 1])


@pytest.mark.parametrize("bias", ["free", "regularized", "none"])
@pytest.mark.parametrize("case", ["xor-offset", "huge-features", "huge-C", "huge-C-xor"])
def test_a_soft_margin_always_exists(bias, case):
    rng = np.random.default_rng(0)
    corners = np.array([[0.0, 0.0], [1.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    if case == "xor-offset":  # the fuzzed case: n=1200 went the working-set way and was called not separable
        X, y, C = np.tile(corners, (300, 1)) + 1e4, np.tile([0, 0, 1, 1], 300), 1e4
    elif case == "huge-features":
        X = np.r_[rng.normal(size=(20, 2)), rng.normal(size=(20, 2)) + 4.0] * 1e150
        y, C = np.repeat([0, 1], 20), 1.0
    elif case == "huge-C":
        X, y, C = np.r_[rng.normal(size=(20, 2)), rng.normal(size=(20, 2)) + 4.0] + 3.0, np.repeat([0, 1], 20), 1e300
    else:
        X, y, C = np.tile(corners, (10, 1)), np.tile([0, 0, 1, 1], 10), 1e300
    if case == "huge-C-xor":  # not separable: C is clamped to what float64 resolves, and it says so
        with pytest.warns(UserWarning, match="beyond what float64 resolves"):
            clf = MaxMarginClassifier(C=C, bias=bias).fit(X, y)
    else:
        clf = MaxMarginClassifier(C=C, bias=bias).fit(X, y)
    assert clf.max_violation_ <= clf.tol
    assert np.isfinite(clf.coef_).all()


def test_one_enormous_outlier_is_certified_for_every_variant():
    rng = np.random.default_rng(3)
    y = np.arange(60) % 3
    X = np.eye(5)[:3][y] * 6 + rng.normal(size=(60, 5)) * 0.5
    X[0] += 1e6
    for multiclass in ("crammer_singer", "ovr"):
        for bias in ("free", "regularized", "none"):
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                clf = MaxMarginClassifier(multiclass=multiclass, bias=bias).fit(X, y)
            assert clf.max_violation_ <= clf.tol


def test_init_support_must_be_integer_indices():
    X, y = collapse_like(60, 3, 2)
    with pytest.raises(ValueError, match="integer indices"):
        MaxMarginClassifier().fit(X, y, init_support=[0.5, 1.7])
    assert MaxMarginClassifier().fit(X, y, init_support=[0.0, 1.0]).max_violation_ <= 1e-8


@pytest.mark.parametrize("n_classes,n,d", [(3, 30, 5000), (2, 200, 20000)])
def test_wide_features_are_solved_in_the_span_of_the_points(n_classes, n, d):
    """d ≫ n: W lies in the span of the points (representer theorem), so the fit on the points' coordinates in
    an orthonormal basis of their span, mapped back, is the same solution."""
    rng = np.random.default_rng(4)
    y = np.arange(n) % n_classes
    X = rng.normal(size=(n, d)) + 0.3 * np.eye(n_classes, d)[y] * np.sqrt(d)
    clf = MaxMarginClassifier().fit(X, y)
    centred = X - np.median(X, axis=0)
    _, _, Vt = np.linalg.svd(centred, full_matrices=False)
    small = MaxMarginClassifier().fit(centred @ Vt.T, y)
    assert clf.max_violation_ <= clf.tol
    W = small.coef_ @ Vt
    assert np.allclose(clf.coef_, W, rtol=1e-6, atol=1e-7 * np.abs(W).max())


def test_memory_is_estimated_before_allocating(monkeypatch):
    import tracemalloc

    import nnboundary.svm._memory as memory
    X, y = collapse_like(3000, 40, 4, seed=5)
    monkeypatch.setattr(memory, "available_bytes", lambda: 2 ** 20)  # 1 MiB left
    tracemalloc.start()
    try:
        with pytest.raises(InsufficientMemoryError, match=r"needs about .* of memory, but only 1.0 MiB"):
            MaxMarginClassifier().fit(X, y)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * X.nbytes  # the input's validated copies, nothing of the fit's own
    assert issubclass(InsufficientMemoryError, MemoryError)


def test_a_restricted_qp_that_cannot_fit_is_refused(monkeypatch):
    import nnboundary.svm._memory as memory
    X, y = collapse_like(400, 10, 3, seed=6)
    real = memory.available_bytes
    monkeypatch.setattr(qp_module, "check_memory", lambda needed, what, advice: memory.check_memory(
        needed, what, advice, limit=1000.0))
    with pytest.raises(InsufficientMemoryError, match="restricted QP"):
        MaxMarginClassifier().fit(X, y)
    assert real() > 0


def test_progress_reports_every_round(capsys):
    X, y = collapse_like(2000, 16, 4, seed=7)
    seen = []
    clf = MaxMarginClassifier(progress=seen.append, verbose=1).fit(X, y)
    assert all(isinstance(r, RoundProgress) for r in seen)
    seed, rounds = seen[0], seen[1:]  # 6000 units: too many to solve whole, so a first-order seed runs first
    assert seed.stage == "seed" and seed.round == 0 and "seed: L-BFGS on 2000 rows" in seed.method
    assert len(rounds) == clf.n_iter_ and all(r.stage == "round" for r in rounds)
    assert [r.round for r in rounds] == list(range(1, clf.n_iter_ + 1))
    last = rounds[-1]
    assert last.n_violators == 0 and last.max_violation <= clf.tol and last.gap <= 1e-6
    assert "Crammer" in last.problem and "IPM" in last.method
    err = capsys.readouterr().err
    assert "[MaxMarginClassifier]" in err and "seed: L-BFGS" in err.splitlines()[0]


def test_a_problem_solved_whole_reports_no_seed():
    X, y = collapse_like(100, 4, 3, seed=1)  # 200 units: one QP on all of them, no seed
    seen = []
    clf = MaxMarginClassifier(progress=seen.append).fit(X, y)
    assert [r.stage for r in seen] == ["round"] * clf.n_iter_


def test_not_separable_is_still_certified():
    X = np.tile(np.array([[0.0, 0.0], [1.0, 1.0], [0.0, 1.0], [1.0, 0.0]]), (400, 1))
    with pytest.raises(NotSeparableError):
        MaxMarginClassifier().fit(X, np.tile([0, 0, 1, 1], 400))


@pytest.mark.parametrize("multiclass,K", [("crammer_singer", 2), ("crammer_singer", 4), ("ovr", 3)])
def test_features_on_an_accelerator_are_checked_where_they_live(multiclass, K, monkeypatch):
    """A torch tensor (here on the CPU; CUDA runs the same code) goes through the device backend: the whole-data
    passes, the dual method's p×p matrix and its Cholesky factor run in torch, and the answer is the NumPy one."""
    torch = pytest.importorskip("torch")
    import nnboundary.svm._backend as backend
    X, y = collapse_like(1500, 12, K, seed=9)
    calls = {"scores": 0, "pair_matrix": 0, "factor_solver": 0}
    on_accelerator(monkeypatch)
    for name in calls:
        real = getattr(backend.DeviceFeatures, name)

        def counted(self, *a, _real=real, _name=name):
            calls[_name] += 1
            return _real(self, *a)
        monkeypatch.setattr(backend.DeviceFeatures, name, counted)
    forced("dual", monkeypatch)
    on_device = MaxMarginClassifier(multiclass=multiclass).fit(torch.as_tensor(X, dtype=torch.float32), y)
    host = MaxMarginClassifier(multiclass=multiclass).fit(X.astype(np.float32).astype(np.float64), y)
    assert min(calls.values()) > 0
    assert on_device.max_violation_ <= on_device.tol
    a, b = on_device.coef_.ravel(), host.coef_.ravel()
    assert a @ b / np.linalg.norm(a) / np.linalg.norm(b) >= 1 - 1e-9
    labels = torch.as_tensor(y)
    assert (on_device.predict(X) == y).all() and MaxMarginClassifier().fit(torch.as_tensor(X), labels).max_violation_ <= 1e-8


@pytest.mark.parametrize("bias, C", [("free", 0.5), ("regularized", None), ("none", 1e4)])
def test_the_dual_method_on_the_device_gives_the_host_solution(bias, C, monkeypatch):
    """Soft margins (the per-sample Ω blocks), a regularised bias and no bias: the dual method with its matrix and
    factor in torch returns the host's solution and certificate."""
    torch = pytest.importorskip("torch")
    X, y = collapse_like(900, 10, 3, seed=4)
    forced("dual", monkeypatch)
    on_accelerator(monkeypatch)
    on_device = MaxMarginClassifier(C=C, bias=bias).fit(torch.as_tensor(X), y)
    host = MaxMarginClassifier(C=C, bias=bias).fit(X, y)
    a, b = on_device.coef_.ravel(), host.coef_.ravel()
    assert a @ b / np.linalg.norm(a) / np.linalg.norm(b) >= 1 - 1e-9
    assert np.allclose(on_device.intercept_, host.intercept_, atol=1e-7 * max(1.0, np.abs(host.intercept_).max()))
    assert on_device.max_violation_ <= on_device.tol and on_device.duality_gap_ <= 1e-6 * max(1.0, host.margin_ ** -2)


def test_a_dual_qp_that_cannot_fit_on_the_device_is_refused(monkeypatch):
    torch = pytest.importorskip("torch")
    import nnboundary.svm._backend as backend
    X, y = collapse_like(900, 10, 3, seed=4)
    forced("dual", monkeypatch)
    on_accelerator(monkeypatch)
    monkeypatch.setattr(backend.DeviceFeatures, "free_bytes", lambda self: 1000.0)
    with pytest.raises(InsufficientMemoryError, match="dual QP on .* constraint units"):
        MaxMarginClassifier().fit(torch.as_tensor(X), y)


def test_the_dual_regime_loop_reaches_a_certificate_from_a_poor_seed(monkeypatch):
    """With a random first working set, tight top-ups and one-round pruning, no unit may cycle in and out of the
    working set (a unit that comes back stays), and the loop ends with the certified solution."""
    import nnboundary.svm._working_set as working_set
    X, y = collapse_like(1500, 10, 6, seed=11)
    monkeypatch.setattr(working_set, "_PRIMAL_VARIABLES", 10)  # the dual regime at a small size
    rng = np.random.default_rng(0)
    monkeypatch.setattr(working_set, "approximate_solution",
                        lambda problem, C, tight: (rng.normal(size=(problem.n_blocks, problem.n_features)),
                                                   np.zeros(problem.n_blocks)))
    sets = []
    real = working_set.solve_restricted

    def recording(problem, units, C, tol):
        sets.append(set(units.tolist()))
        return real(problem, units, C, tol)
    monkeypatch.setattr(working_set, "solve_restricted", recording)
    clf = MaxMarginClassifier(max_rounds=40).fit(X, y)
    sets = list(sets)  # this fit's working sets only
    monkeypatch.undo()
    reference = MaxMarginClassifier().fit(X, y)
    assert clf.max_violation_ <= clf.tol and len(sets) < 40
    assert np.allclose(clf.coef_, reference.coef_, rtol=1e-6, atol=1e-7 * np.abs(reference.coef_).max())
    removals = {}
    for before, after in zip(sets, sets[1:]):
        for unit in before - after:
            removals[unit] = removals.get(unit, 0) + 1
    assert max(removals.values(), default=0) <= 1  # nobody leaves twice


def test_a_long_restricted_qp_is_announced_once(monkeypatch):
    """A round whose exact QP is estimated to take long says so (once per fit), and the fit still certifies."""
    import nnboundary.svm._working_set as ws

    X, y = collapse_like(2000, 16, 4, seed=7)
    monkeypatch.setattr(ws, "_LONG_QP_S", 0.0)  # every QP counts as long here
    with pytest.warns(UserWarning, match="constraint units") as record:
        clf = MaxMarginClassifier().fit(X, y)
    assert sum("constraint units" in str(w.message) for w in record) == 1 and clf.max_violation_ <= clf.tol


def test_no_long_qp_warning_on_an_ordinary_fit(recwarn):
    X, y = collapse_like(2000, 16, 4, seed=7)
    MaxMarginClassifier().fit(X, y)
    assert not [w for w in recwarn if "constraint units" in str(w.message)]


def test_separable_hint_lets_the_lp_decide_first_with_the_same_outcome(monkeypatch):
    """separable_hint=False: not separable is decided by the LP before any QP; separable features give the same
    fit as without the hint."""
    import nnboundary.svm._estimator as estimator

    X = np.tile(np.array([[0.0, 0.0], [1.0, 1.0], [0.0, 1.0], [1.0, 0.0]]), (50, 1))
    y = np.tile([0, 0, 1, 1], 50)  # XOR: no separating line
    real = estimator.solve_working_set
    calls = []
    monkeypatch.setattr(estimator, "solve_working_set", lambda *a, **k: calls.append(1) or real(*a, **k))
    with pytest.raises(NotSeparableError, match="linear program"):
        MaxMarginClassifier().fit(X, y, separable_hint=False)
    assert calls == []  # no QP ran
    with pytest.raises(NotSeparableError):
        MaxMarginClassifier().fit(X, y)
    assert calls  # without the hint the QP runs first
    for K in (2, 3):
        Xs, ys = collapse_like(300, 4, K, seed=K)
        hinted = MaxMarginClassifier().fit(Xs, ys, separable_hint=False)
        plain = MaxMarginClassifier().fit(Xs, ys)
        np.testing.assert_array_equal(hinted.coef_, plain.coef_)
        np.testing.assert_array_equal(hinted.intercept_, plain.intercept_)


def test_cpu_tensors_keep_the_dual_factor_on_the_host():
    torch = pytest.importorskip("torch")
    from nnboundary.svm._backend import DeviceFeatures
    assert not DeviceFeatures(np.ones((3, 2)), torch.zeros(1, dtype=torch.float64)).factors
