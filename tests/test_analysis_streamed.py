"""The streamed analysis (``analyze_features`` over shards with a reducer, or over a memory-mapped H) gives the
numbers of the in-memory analysis of the same data, to 1e-9; ranks are simulated by threads here (the real
2-process run under torchrun is in test_distributed_analyze.py)."""

from __future__ import annotations

import pickle
import threading

import numpy as np
import pandas as pd
import pytest

import nnboundary.analysis as A
import nnboundary.analysis.streamed as S
from nnboundary.analysis import Analysis, analyze_features
from nnboundary.svm import LocalReducer, MaxMarginClassifier


class _ThreadReducer:
    """``world_size`` ranks as threads: ``allgather`` pickles like a real transport; a failing rank aborts the rest."""

    def __init__(self, hub: dict, rank: int) -> None:
        self.hub, self.rank, self.world_size = hub, rank, len(hub["slots"])

    def allgather(self, obj):
        self.hub["slots"][self.rank] = pickle.dumps(obj)
        self.hub["barrier"].wait()
        out = [pickle.loads(b) for b in self.hub["slots"]]
        self.hub["barrier"].wait()
        return out


def on_ranks(fn, world: int):
    """``fn(rank, reducer)`` on ``world`` threads; (results by rank, errors by rank). A rank left waiting for one
    that failed alone gets a BrokenBarrierError after the barrier's timeout (no abort here: an abort could also
    break the ranks just released from the last barrier)."""
    hub = {"slots": [None] * world, "barrier": threading.Barrier(world, timeout=30)}
    results, errors = [None] * world, [None] * world

    def run(r):
        try:
            results[r] = fn(r, _ThreadReducer(hub, r))
        except BaseException as exc:  # noqa: BLE001 - checked by the caller
            errors[r] = exc
    threads = [threading.Thread(target=run, args=(r,)) for r in range(world)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    return results, errors


def blobs(n=300, D=5, K=3, seed=0, dup=0):
    """Separable class blobs and a head near (not at) the SVM; ``dup`` points repeated (ties on the margin)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % K
    centres = 4.0 * rng.normal(size=(K, D))
    H = centres[y] + rng.normal(size=(n, D))
    if dup:
        H[-dup:], y[-dup:] = H[:dup], y[:dup]
    W = centres + 0.3 * rng.normal(size=(K, D))
    b = 0.1 * rng.normal(size=K)
    return H, y, W, b


def assert_same(a: Analysis, b: Analysis, tol=1e-9) -> None:
    assert set(a.summary) == set(b.summary)
    for k, v in a.summary.items():
        w = b.summary[k]
        if isinstance(v, float) and v is not None and w is not None and np.isfinite(v):
            assert w == pytest.approx(v, rel=tol, abs=tol), k
        else:
            assert v == w or (v != v and w != w), k
    num = a.details.select_dtypes("number").columns
    np.testing.assert_allclose(b.details[num].to_numpy(float), a.details[num].to_numpy(float), rtol=tol, atol=tol)
    assert list(a.details["active"]) == list(b.details["active"])
    pd.testing.assert_frame_equal(a.points, b.points, rtol=tol, atol=tol)
    assert np.array_equal(a.support, b.support)


@pytest.mark.parametrize("K, dup", [(2, 0), (3, 4)])
def test_streamed_in_one_process_equals_in_memory(K, dup, monkeypatch):
    H, y, W, b = blobs(K=K, dup=dup)
    ref = analyze_features(H, y, W, b, H_test=H[:50], y_test=y[:50])
    monkeypatch.setattr(S, "CHUNK_BYTES", 8 * H.shape[1] * 37)  # several chunks of 37 rows
    got = analyze_features(H, y, W, b, H_test=H[:50], y_test=y[:50], reducer=LocalReducer())
    assert got.settings["streamed"] and ref.summary["n_support"] > 0
    assert_same(ref, got)


@pytest.mark.parametrize("world", [2, 3])
def test_sharded_over_ranks_equals_one_process(world, monkeypatch):
    H, y, W, b = blobs(n=301, K=3, dup=5)
    Z = H @ W.T + b + 1e-3  # the model's own logits, not recomputed
    ref = analyze_features(H, y, W, b, logits=Z)
    monkeypatch.setattr(S, "CHUNK_BYTES", 8 * H.shape[1] * 29)
    cuts = np.linspace(0, len(y), world + 1).astype(int)

    def run(r, red):
        i, j = cuts[r], cuts[r + 1]
        return analyze_features(H[i:j], y[i:j], W, b, logits=Z[i:j], reducer=red)
    results, errors = on_ranks(run, world)
    assert errors == [None] * world
    for r, res in enumerate(results):
        assert res.rank == r and res.features is None
        assert_same(ref, res)


def test_a_bad_label_on_one_rank_is_raised_on_every_rank():
    H, y, W, b = blobs(n=100, K=2)
    y = y.copy()
    y[80] = 7  # only rank 1's shard holds it

    def run(r, red):
        return analyze_features(H[50 * r: 50 * (r + 1)], y[50 * r: 50 * (r + 1)], W, b, reducer=red)
    _, errors = on_ranks(run, 2)
    assert all(isinstance(e, ValueError) for e in errors), errors
    assert all("labels range over" in str(e) for e in errors)
    assert "on rank 1" in str(errors[0])


def test_memmap_features_are_read_in_chunks_never_whole(tmp_path, monkeypatch):
    H, y, W, b = blobs(n=400, D=6, K=3)
    path = tmp_path / "H.npy"
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.float64, shape=H.shape)
    mm[:] = H
    mm.flush()
    del mm
    ref = analyze_features(H, y, W, b)
    rows = 23
    monkeypatch.setattr(S, "CHUNK_BYTES", 8 * H.shape[1] * rows)
    real = S._f64
    seen = []

    def counting(a, i, j):
        seen.append(min(j, a.shape[0]) - i)
        return real(a, i, j)
    monkeypatch.setattr(S, "_f64", counting)
    svm = MaxMarginClassifier(multiclass="crammer_singer")
    est = svm.fit(H, y)  # the SVM's own memmap path belongs to the solver; fitted once here and reused
    reg = S._regularized_like(svm).fit(H, y)
    got = analyze_features(np.load(path, mmap_mode="r"), y, W, b, svm=est, svm_regularized=reg, svm_fitted=True)
    assert max(seen) <= rows and sum(seen) >= 2 * H.shape[0]  # chunked passes, none of them whole
    assert got.settings["features_file"] == str(path)
    assert_same(A.analyze_features(H, y, W, b, svm=est, svm_regularized=reg, svm_fitted=True), got)
    assert ref.summary["n_support"] == got.summary["n_support"]


def test_streamed_save_and_load_without_copying_the_features(tmp_path):
    H, y, W, b = blobs(n=200, K=3)
    path = tmp_path / "H.npy"
    np.save(path, H)
    got = analyze_features(np.load(path, mmap_mode="r"), y, W, b)
    got.save(tmp_path / "out")
    with np.load(tmp_path / "out" / "features.npz") as z:
        assert "features" not in z.files and "point_margin_nn" in z.files
    back = Analysis.load(tmp_path / "out")
    assert isinstance(back.features, np.memmap) and np.array_equal(back.features, H)
    pd.testing.assert_frame_equal(back.points, got.points)
    assert np.array_equal(back.support, got.support)


def test_only_rank_0_saves(tmp_path):
    H, y, W, b = blobs(n=120, K=2)
    res = analyze_features(H, y, W, b)
    res.rank = 1
    res.save(tmp_path / "r1")
    assert not (tmp_path / "r1").exists()


def test_a_features_file_is_never_copied_whole_into_memory(tmp_path, monkeypatch):
    """Peak allocation while analysing a memory-mapped H stays well below one float64 copy of H (tracemalloc sees
    numpy's allocations): the test fails if any step loads the file whole."""
    import tracemalloc

    H, y, W, b = blobs(n=20000, D=60, K=3, seed=1)
    path = tmp_path / "H.npy"
    np.save(path, H)
    est = MaxMarginClassifier().fit(H, y)
    reg = MaxMarginClassifier(bias="regularized").fit(H, y)
    del H
    monkeypatch.setattr(S, "CHUNK_BYTES", 2 ** 18)
    mm = np.load(path, mmap_mode="r")
    tracemalloc.start()
    try:
        got = analyze_features(mm, y, W, b, svm=est, svm_regularized=reg, svm_fitted=True)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    full = mm.size * 8
    assert peak < 0.5 * full, (peak, full)
    assert got.summary["n_samples"] == 20000 and np.isfinite(got.summary["nc1"])


def test_analyze_distributed_true_without_a_process_group_says_to_use_torchrun():
    import torch
    from torch import nn

    from nnboundary.analysis import analyze

    model = nn.Sequential(nn.Linear(3, 2))
    with pytest.raises(RuntimeError, match="torchrun"):
        analyze(model, torch.randn(10, 3), torch.arange(10) % 2, distributed=True)


def test_nan_features_on_one_rank_are_reported_by_their_global_row_on_every_rank():
    H, y, W, b = blobs(n=100, K=2)
    H = H.copy()
    H[77, 1] = np.nan

    def run(r, red):
        return analyze_features(H[50 * r: 50 * (r + 1)], y[50 * r: 50 * (r + 1)], W, b, reducer=red)
    _, errors = on_ranks(run, 2)
    assert all(isinstance(e, ValueError) and "NaN/inf (first rows: [77])" in str(e) for e in errors), errors


def test_a_streamed_analysis_that_cannot_fit_is_refused_before_any_pass(tmp_path, monkeypatch):
    import nnboundary.svm._memory as memory
    from nnboundary.svm import InsufficientMemoryError

    H, y, W, b = blobs(n=200, D=4, K=3)
    path = tmp_path / "H.npy"
    np.save(path, H)
    passes = []
    monkeypatch.setattr(S, "_pass_head", lambda *a, **k: passes.append(1))
    monkeypatch.setattr(memory, "available_bytes", lambda: 1e6)  # less than the two chunks alone
    with pytest.raises(InsufficientMemoryError, match="streamed analysis of 200 points"):
        analyze_features(np.load(path, mmap_mode="r"), y, W, b)
    assert passes == []
