"""Sharded fits (a reducer of several ranks, simulated by threads) and features larger than memory (memmap):
the same estimator as a one-process fit on the concatenated rows, to 1e-9."""

import pickle
import threading

import numpy as np
import pytest

from nnboundary.svm import LocalReducer, MaxMarginClassifier
from tests.svm.test_svm_scale import collapse_like


class _Hub:
    """What the simulated ranks share: one slot per rank and a barrier (aborted when a rank fails)."""

    def __init__(self, world_size):
        self.slots = [None] * world_size
        self.barrier = threading.Barrier(world_size, timeout=120)
        self.calls = 0


class ThreadReducer:
    """An in-process reducer of ``world_size`` ranks (one thread each): ``allgather`` pickles every object as a
    real transport would, so unpicklable or shared-mutable summaries fail here too."""

    def __init__(self, hub, rank):
        self.hub, self.rank, self.world_size = hub, rank, len(hub.slots)

    def allgather(self, obj):
        self.hub.slots[self.rank] = pickle.dumps(obj)
        self.hub.barrier.wait()
        out = [pickle.loads(blob) for blob in self.hub.slots]
        if self.rank == 0:
            self.hub.calls += 1
        self.hub.barrier.wait()
        return out


def fit_on_ranks(make, shards, **fit_kwargs):
    """``make().fit(X_r, y_r, reducer=...)`` on one thread per shard; the fitted estimators by rank."""
    hub = _Hub(len(shards))
    results, errors = [None] * len(shards), []

    def run(rank):
        try:
            results[rank] = make().fit(*shards[rank], reducer=ThreadReducer(hub, rank), **fit_kwargs)
        except BaseException as exc:  # noqa: BLE001 - reported below, after every thread stopped
            errors.append(exc)
            hub.barrier.abort()

    threads = [threading.Thread(target=run, args=(r,)) for r in range(len(shards))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results, hub.calls


def split(X, y, cuts):
    """Contiguous shards of (X, y) at the given row offsets."""
    edges = [0, *cuts, len(X)]
    return [(X[a:b], y[a:b]) for a, b in zip(edges, edges[1:])]


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
    make = lambda: MaxMarginClassifier(C=C, bias=bias, multiclass=multiclass)  # noqa: E731
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
