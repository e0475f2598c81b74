"""Sharded fits (a reducer of several ranks, simulated by threads) and features larger than memory (memmap):
the same estimator as a one-process fit on the concatenated rows, to 1e-9."""

import itertools
import pickle
import threading

import numpy as np
import pytest

from nnboundary.svm import LocalReducer, MaxMarginClassifier
from tests.svm.test_svm_scale import collapse_like


class _Hub:
    """What the simulated ranks share: the messages of every allgather call (by call number) and a flag that a
    rank failed (the others then stop waiting)."""

    def __init__(self, world_size):
        self.world_size = world_size
        self.cond = threading.Condition()
        self.messages: dict[int, list] = {}
        self.failed = False
        self.sizes = []  # pickled bytes each rank sent, per call


class ThreadReducer:
    """An in-process reducer of ``world_size`` ranks (one thread each): ``allgather`` pickles every object as a
    real transport would, so unpicklable or shared-mutable summaries fail here too."""

    def __init__(self, hub, rank):
        self.hub, self.rank, self.world_size = hub, rank, hub.world_size
        self.calls = 0

    def allgather(self, obj):
        blob, hub = pickle.dumps(obj), self.hub
        with hub.cond:
            slot = hub.messages.setdefault(self.calls, [None] * self.world_size)
            slot[self.rank] = blob
            hub.sizes.append(len(blob))
            hub.cond.notify_all()
            hub.cond.wait_for(lambda: hub.failed or all(m is not None for m in slot), timeout=120)
            if not all(m is not None for m in slot):
                raise RuntimeError("another rank failed (or did not call allgather within 120 s)")
        self.calls += 1
        return [pickle.loads(m) for m in slot]


def fit_on_ranks(make, shards, **fit_kwargs):
    """``make().fit(X_r, y_r, reducer=...)`` on one thread per shard; the fitted estimators by rank and the number
    of allgather calls. ``fit_on_ranks.errors`` / ``.largest_message``: what the last call raised / sent."""
    hub = _Hub(len(shards))
    results, errors = [None] * len(shards), []

    def run(rank):
        try:
            results[rank] = make().fit(*shards[rank], reducer=ThreadReducer(hub, rank), **fit_kwargs)
        except BaseException as exc:  # noqa: BLE001 - reported below, after every thread stopped
            errors.append(exc)
            with hub.cond:
                hub.failed = True
                hub.cond.notify_all()

    threads = [threading.Thread(target=run, args=(r,)) for r in range(len(shards))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    fit_on_ranks.errors = errors
    fit_on_ranks.largest_message = max(hub.sizes, default=0)
    if errors:
        raise errors[0]
    return results, len(hub.messages)


def split(X, y, cuts):
    """Contiguous shards of (X, y) at the given row offsets."""
    edges = [0, *cuts, len(X)]
    return [(X[a:b], y[a:b]) for a, b in itertools.pairwise(edges)]


def assert_same_fit(a, b):
    u, v = a.coef_.ravel(), b.coef_.ravel()
    assert u @ v / np.linalg.norm(u) / np.linalg.norm(v) >= 1 - 1e-9
    scale = np.linalg.norm(b.coef_)
    assert np.abs(a.intercept_ - b.intercept_).max() / scale <= 1e-9
    assert np.array_equal(a.classes_, b.classes_)
    assert a.max_violation_ <= a.tol and abs(a.duality_gap_ - b.duality_gap_) <= 1e-9 * max(1.0, scale ** 2)
    assert set(a.support_.tolist()) == set(b.support_.tolist())


def test_the_local_reducer_is_one_process():
    X, y = collapse_like(200, 5, 3, seed=1)
    assert_same_fit(MaxMarginClassifier().fit(X, y, reducer=LocalReducer()), MaxMarginClassifier().fit(X, y))


@pytest.mark.parametrize("K,multiclass", [(2, "crammer_singer"), (3, "crammer_singer"), (3, "ovr")])
@pytest.mark.parametrize("C,bias", [(None, "free"), (None, "regularized"), (2.0, "free"), (2.0, "none")])
def test_sharded_fit_equals_the_one_process_fit(K, multiclass, C, bias):
    X, y = collapse_like(1300, 8, K, seed=K)
    if C is not None:  # make the soft margin bind
        y = y.copy()
        y[:6] = (y[:6] + 1) % K
    make = lambda: MaxMarginClassifier(C=C, bias=bias, multiclass=multiclass)
    whole = make().fit(X, y)
    fits, calls = fit_on_ranks(make, split(X, y, [400, 1100]))  # uneven shards
    assert calls > 0
    for clf in fits:
        assert_same_fit(clf, whole)
        assert np.array_equal(clf.coef_, fits[0].coef_) and np.array_equal(clf.support_, fits[0].support_)


def test_empty_and_one_class_shards():
    X, y = collapse_like(1200, 6, 3, seed=4)
    order = np.argsort(y, kind="stable")  # shard 1 holds class 0 only; shard 2 is empty
    X, y = X[order], y[order]
    first = int((y == 0).sum())
    whole = MaxMarginClassifier().fit(X, y)
    fits, _ = fit_on_ranks(MaxMarginClassifier, split(X, y, [first // 2, first, first]))
    for clf in fits:
        assert_same_fit(clf, whole)


def test_sharded_warm_start_takes_global_indices():
    X, y = collapse_like(1300, 8, 3, seed=6)
    whole = MaxMarginClassifier().fit(X, y)
    fits, _ = fit_on_ranks(MaxMarginClassifier, split(X, y, [650]), init_support=whole.support_)
    assert_same_fit(fits[1], whole)
    with pytest.raises(ValueError, match="init_support"):
        fit_on_ranks(MaxMarginClassifier, split(X, y, [650]), init_support=[len(X)])


def as_memmap(tmp_path, X, dtype=np.float64):
    """X written to a .npy file and opened again as a read-only memory map."""
    path = tmp_path / "features.npy"
    out = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=X.shape)
    out[:] = X
    out.flush()
    del out
    return np.load(path, mmap_mode="r")


def small_chunks(monkeypatch, rows=97):
    """Chunks of about ``rows`` rows in every pass; returns the list of block sizes read (FeatureShards.block)."""
    import nnboundary.svm._estimator as estimator
    import nnboundary.svm._shards as shards
    sizes = []
    real = shards.FeatureShards.block

    def block(self, start, stop):
        sizes.append(stop - start)
        return real(self, start, stop)
    monkeypatch.setattr(shards.FeatureShards, "block", block)
    monkeypatch.setattr(estimator, "chunk_rows", lambda bytes_per_row, budget=None: rows)
    return sizes


@pytest.mark.parametrize("K,multiclass,C,bias", [(2, "crammer_singer", None, "free"),
                                                 (3, "crammer_singer", None, "regularized"),
                                                 (3, "crammer_singer", 2.0, "free"),
                                                 (3, "ovr", None, "free"), (3, "ovr", 2.0, "none")])
def test_memmap_features_are_streamed_in_chunks_and_give_the_in_memory_fit(tmp_path, monkeypatch, K, multiclass, C,
                                                                             bias):
    X, y = collapse_like(1300, 8, K, seed=K + 10)
    if C is not None:
        y = y.copy()
        y[:6] = (y[:6] + 1) % K
    X = X.astype(np.float32)  # a float32 file, as features are usually stored
    make = lambda: MaxMarginClassifier(C=C, bias=bias, multiclass=multiclass)
    whole = make().fit(X.astype(np.float64), y)
    import nnboundary.svm._estimator as estimator
    monkeypatch.setattr(estimator, "validate_data", None)  # a streamed fit never validates (copies) X whole
    sizes = small_chunks(monkeypatch)
    streamed = make().fit(as_memmap(tmp_path, X, np.float32), y)
    assert_same_fit(streamed, whole)
    assert max(sizes) <= 97 and len(sizes) >= 3 * (len(X) // 97)  # several passes, each in chunks of ≤ 97 rows
    assert streamed.n_features_in_ == X.shape[1]


def test_sharded_memmaps_with_subsampled_statistics_and_seed(tmp_path, monkeypatch):
    """Beyond the subsample sizes (patched small here) the statistics and the seed come from a deterministic
    global subsample: the sharded, streamed fit is still the one-process one, which is still the exact solution."""
    import nnboundary.svm._normalise as normalise
    import nnboundary.svm._working_set as working_set
    X, y = collapse_like(1500, 8, 3, seed=21)
    exact = MaxMarginClassifier().fit(X, y)
    monkeypatch.setattr(normalise, "stats_rows", lambda d: 700)  # of 1500 rows
    monkeypatch.setattr(working_set, "seed_rows", lambda d: 500)
    whole = MaxMarginClassifier().fit(X, y)
    mm = as_memmap(tmp_path, X)
    small_chunks(monkeypatch, rows=211)
    fits, _ = fit_on_ranks(MaxMarginClassifier, [(mm[:500], y[:500]), (mm[500:1400], y[500:1400]),
                                                 (mm[1400:], y[1400:])])
    for clf in fits:
        assert_same_fit(clf, whole)
    assert fit_on_ranks.largest_message < X.nbytes / 3  # summaries and a few rows, never a shard
    # other statistics are another (exact) conditioning of the same problem: the same solution to the QPs' accuracy
    assert whole.max_violation_ <= whole.tol
    u, v = whole.coef_.ravel(), exact.coef_.ravel()
    assert u @ v / np.linalg.norm(u) / np.linalg.norm(v) >= 1 - 1e-9
    assert np.abs(whole.intercept_ - exact.intercept_).max() <= 1e-6 * np.linalg.norm(v)


def test_a_streamed_fit_that_cannot_fit_is_refused_before_reading(tmp_path, monkeypatch):
    import nnboundary.svm._memory as memory
    from nnboundary.svm import InsufficientMemoryError
    X, y = collapse_like(1300, 8, 3, seed=2)
    mm = as_memmap(tmp_path, X)
    sizes = small_chunks(monkeypatch)
    monkeypatch.setattr(memory, "available_bytes", lambda: 2 ** 16)  # 64 KiB left
    with pytest.raises(InsufficientMemoryError, match=r"streamed in chunks\) needs about .* but only 64.0 KiB"):
        MaxMarginClassifier().fit(mm, y)
    assert sizes == []  # refused before any row was read


def test_streamed_features_with_nan_are_refused(tmp_path):
    X, y = collapse_like(300, 4, 2, seed=3)
    X[123, 2] = np.nan
    with pytest.raises(ValueError, match="NaN or infinity"):
        MaxMarginClassifier().fit(as_memmap(tmp_path, X), y)


def test_an_error_of_the_restricted_qp_on_rank_0_is_raised_on_every_rank(monkeypatch):
    """The QP runs on rank 0 only; when it fails (here: it would not fit in memory), every rank raises the same
    error instead of waiting for a solution that never comes."""
    import nnboundary.svm._memory as memory
    import nnboundary.svm._qp as qp_module
    from nnboundary.svm import InsufficientMemoryError
    X, y = collapse_like(400, 10, 3, seed=6)
    monkeypatch.setattr(qp_module, "check_memory", lambda needed, what, advice: memory.check_memory(
        needed, what, advice, limit=1000.0))
    with pytest.raises(InsufficientMemoryError, match="restricted QP"):
        fit_on_ranks(MaxMarginClassifier, split(X, y, [150, 300]))
    assert len(fit_on_ranks.errors) == 3
    assert all(isinstance(e, InsufficientMemoryError) for e in fit_on_ranks.errors)


@pytest.mark.parametrize("K", [2, 3])
def test_predict_and_scores_of_a_memmap_are_chunked_and_equal_in_memory(tmp_path, monkeypatch, K):
    """predict / decision_function of memory-mapped features read them chunk by chunk (never whole) and give the
    in-memory answers; a wrong width is one clear error."""
    X, y = collapse_like(700, 6, K, seed=K)
    clf = MaxMarginClassifier().fit(X, y)
    labels, scores = clf.predict(X), clf.decision_function(X)  # in memory
    mm = as_memmap(tmp_path, X)
    import nnboundary.svm._estimator as estimator
    monkeypatch.setattr(estimator, "validate_data", None)  # a streamed X is never validated (copied) whole
    monkeypatch.setattr(estimator, "chunk_rows", lambda bytes_per_row, budget=None: 64)
    read = []
    real_check = estimator.check_array
    monkeypatch.setattr(estimator, "check_array", lambda a, **kw: read.append(len(a)) or real_check(a, **kw))
    np.testing.assert_array_equal(clf.predict(mm), labels)
    assert max(read) <= 64 and sum(read) == len(X)
    np.testing.assert_allclose(clf.decision_function(mm), scores, rtol=1e-12, atol=1e-12)
    narrow = np.lib.format.open_memmap(tmp_path / "narrow.npy", mode="w+", dtype=np.float64, shape=(10, 5))
    with pytest.raises(ValueError, match="expecting 6 features"):
        clf.predict(narrow)
