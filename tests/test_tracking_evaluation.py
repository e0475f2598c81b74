"""What one tracker evaluation computes: the details table agrees with the summary, and runs repeat exactly.

The evaluation's hot path (analysis.analyze_features) builds its details rows once and reads the summary's
aggregate from them; these tests pin what the table says, whichever way it is built.
"""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from threadpoolctl import threadpool_limits
from torch import nn

from nnboundary.analysis import analyze_features
from nnboundary.analysis.tables import _aggregate_offsets
from nnboundary.tracking import AlignmentTracker

torch.set_num_threads(1)
threadpool_limits(1)  # tiny BLAS problems: extra threads only contend on a shared CPU

_OFFSETS = ("bias_offset", "bias_offset_gap", "bias_offset_means", "bias_offset_reg")


def _features(K, n=90, D=3, seed=0):
    """Separable features of K classes (argmax of random linear scores, points near a boundary dropped) and a
    head that is not their SVM."""
    rng = np.random.default_rng(seed)
    H = rng.normal(size=(6 * n, D))
    S = H @ rng.normal(size=(K, D)).T
    top = np.sort(S, axis=1)
    keep = np.flatnonzero(top[:, -1] - top[:, -2] > 0.3)[:n]
    W = rng.normal(size=(1 if K == 2 else K, D))
    return H[keep], S.argmax(1)[keep], W, rng.normal(size=W.shape[0])


@pytest.mark.parametrize("K", [2, 3])
def test_the_overall_row_of_details_carries_the_summary(K):
    H, y, W, b = _features(K)
    res = analyze_features(H, y, W, b)
    s, d = res.summary, res.details
    overall, pairs = d[d["scope"] == "overall"].iloc[0], d[d["scope"] == "pair"]
    assert len(pairs) == K * (K - 1) // 2
    for key in ("cosine", "angle_deg", "margin_ratio", *_OFFSETS):
        assert overall[key] == s[key] or (np.isnan(overall[key]) and np.isnan(s[key])), key
    assert overall["margin_nn"] == s["nn_margin"] and overall["margin_svm"] == s["svm_margin"]
    assert d["margin_ratio"].dtype == np.float64 and d["bias_offset"].dtype == np.float64
    if K == 2:  # one pair: the summary's offset is the pair's own
        assert pairs["bias_offset"].iloc[0] == s["bias_offset"]
    else:  # K > 2: the mean absolute offset over the active pairs
        active = pairs[pairs["active"].astype(bool)]
        assert s["bias_offset"] == pytest.approx(np.abs(active["bias_offset"].to_numpy(float)).mean(), rel=1e-12)


def test_aggregate_offsets_read_the_same_from_a_frame_and_from_its_rows():
    rows = [{"scope": "pair", "active": act, **{k: v * (i + 1) for k, v in zip(_OFFSETS, (0.5, -1.0, 2.0, np.nan))}}
            for i, act in enumerate([True, False, True])]
    frame = pd.DataFrame(rows)
    for K in (2, 3):
        a, b = _aggregate_offsets(frame, K), _aggregate_offsets(rows, K)
        assert a.keys() == b.keys()
        assert all(a[k] == b[k] or (np.isnan(a[k]) and np.isnan(b[k])) for k in a)
    three = _aggregate_offsets(rows, 3)
    assert three["bias_offset"] == pytest.approx((0.5 + 1.5) / 2)  # the active pairs 0 and 2
    assert np.isnan(three["bias_offset_reg"])  # no finite value
    none_active = [{**r, "active": False} for r in rows]
    assert _aggregate_offsets(none_active, 3)["bias_offset_gap"] == pytest.approx((1 + 2 + 3) / 3)  # then all


def _tracked_run(seed):
    """A small MLP with a 2-unit bottleneck on two blobs, tracked on the log schedule for 60 steps."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 120)
    X = torch.tensor(rng.normal(size=(120, 2)) + 2.5 * y[:, None], dtype=torch.float32)
    y = torch.tensor(y)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 2), nn.ReLU(), nn.Linear(2, 2))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    tracker = AlignmentTracker(X, y)
    for t in range(1, 61):
        opt.zero_grad()
        nn.functional.cross_entropy(model(X), y).backward()
        opt.step()
        tracker.step(t, model)
    return tracker


def test_a_tracked_run_repeats_exactly():
    """Same seed, same rows: every recorded number but the timing is identical (warm starts included)."""
    a, b = _tracked_run(3), _tracked_run(3)
    assert [r["step"] for r in a.records] == [1, 2, 5, 10, 20, 50]
    for ra, rb in zip(a.records, b.records):
        assert ra.keys() == rb.keys()
        for key in ra:
            if key != "eval_seconds":
                same = ra[key] == rb[key] or (isinstance(ra[key], float) and np.isnan(ra[key]) and np.isnan(rb[key]))
                assert same, (ra["step"], key)
    assert np.array_equal(a._support, b._support)


def test_the_tables_are_built_on_first_use_and_then_kept():
    """An analysis builds its details and points tables only when they are read (the tracker reads neither), and
    the built table is the one the in-memory analysis defines, kept for the next access."""
    rng = np.random.default_rng(3)
    H = np.vstack([rng.normal(size=(30, 2)) + 4, rng.normal(size=(30, 2)) - 4])
    y = np.repeat([0, 1], 30)
    W, b = np.array([[-1.0, -1.0], [1.0, 1.0]]), np.zeros(2)
    result = analyze_features(H, y, W, b)
    assert callable(vars(result)["_details"]) and callable(vars(result)["_points"])  # nothing built yet
    details, points = result.details, result.points
    assert list(details["scope"])[0] == "overall" and len(points) == len(y)
    assert result.details is details and result.points is points  # built once
    assert points["is_support"].sum() == result.summary["n_support"]


def test_the_separable_hint_changes_no_number():
    """The tracker's hint after a non-separable evaluation (the LP decides first) gives the very same analysis."""
    rng = np.random.default_rng(5)
    H = rng.normal(size=(80, 2))
    y = (H[:, 0] * H[:, 1] > 0).astype(int)  # not linearly separable
    W, b = np.array([[0.0, -1.0], [0.0, 1.0]]), np.zeros(2)
    for features in (H, H + 6.0 * y[:, None]):  # not separable, then separable
        plain = analyze_features(features, y, W, b).summary
        hinted = analyze_features(features, y, W, b, separable_hint=False).summary
        assert json.dumps(plain, sort_keys=True, default=str) == json.dumps(hinted, sort_keys=True, default=str)
