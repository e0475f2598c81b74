"""Neural-collapse metrics (metrics.neural_collapse): the issue's formulas, written out densely here as the oracle."""

import numpy as np
import pytest

from nnboundary import metrics as M
from nnboundary.analysis import analyze_features


def _dense(H, y, W, b, K):
    """The formulas exactly as stated: Σ_W, Σ_B = MᵀM/K, pinv of the D×D Σ_B, row-centred W."""
    mu_G = H.mean(axis=0)
    mu = np.stack([H[y == k].mean(axis=0) for k in range(K)])
    Mk = mu - mu_G
    R = H - mu[y]
    Sw = R.T @ R / len(y)
    Sb = Mk.T @ Mk / K
    nc1 = np.trace(Sw @ np.linalg.pinv(Sb, hermitian=True)) / K
    norms = np.linalg.norm(Mk, axis=1)
    cos = [Mk[k] @ Mk[l] / (norms[k] * norms[l]) for k in range(K) for l in range(K) if k != l]
    Wf = np.vstack([np.zeros(W.shape[1]), W[0]]) if W.shape[0] == 1 else W
    Wt = Wf - Wf.mean(axis=0)
    nc3 = np.sum((Wt / np.linalg.norm(Wt) - Mk / np.linalg.norm(Mk)) ** 2)
    pred = (H @ W.T + b)
    pred = (pred[:, 0] > 0).astype(int) if W.shape[0] == 1 else pred.argmax(axis=1)
    ncc = np.argmin(((H[:, None, :] - mu[None]) ** 2).sum(-1), axis=1)
    return {"nc1": nc1, "nc2_equinorm": norms.std() / norms.mean(),
            "nc2_equiangular": np.mean(np.abs(np.array(cos) + 1 / (K - 1))), "nc3_self_duality": nc3,
            "nc4_ncc_mismatch": np.mean(pred != ncc)}


@pytest.mark.parametrize("K,D,single", [(3, 5, False), (4, 12, False), (2, 6, True), (2, 3, False)])
def test_matches_the_dense_formulas(K, D, single):
    rng = np.random.default_rng(K * 10 + D)
    y = np.repeat(np.arange(K), [30 + 7 * k for k in range(K)])  # unbalanced classes
    H = rng.normal(size=(len(y), D)) + 2.0 * rng.normal(size=(K, D))[y]
    W = rng.normal(size=(1 if single else K, D))
    b = rng.normal(size=W.shape[0])
    got = M.neural_collapse(H, y, W, b, chunk_size=17)
    want = _dense(H, y, W, b, K)
    assert set(got) == set(M.NC_KEYS)
    for k in M.NC_KEYS:
        assert got[k] == pytest.approx(want[k], rel=1e-8, abs=1e-12), k


def test_collapsed_features_give_zeros():
    K, D = 4, 6
    E = np.eye(K) - 1.0 / K  # simplex ETF rows (centred), in the first K coordinates
    mu = np.hstack([E, np.zeros((K, D - K))]) * 3.0 + 5.0  # far from the origin
    y = np.repeat(np.arange(K), 10)
    H = mu[y]
    W = mu - mu.mean(axis=0)  # self-dual head
    nc = M.neural_collapse(H, y, W, np.zeros(K))
    assert nc["nc1"] == pytest.approx(0, abs=1e-10) and nc["nc2_equinorm"] == pytest.approx(0, abs=1e-10)
    assert nc["nc2_equiangular"] == pytest.approx(0, abs=1e-10) and nc["nc3_self_duality"] == pytest.approx(0, abs=1e-10)
    assert nc["nc4_ncc_mismatch"] == 0.0


def test_streaming_is_exact_shift_invariant_and_small():
    rng = np.random.default_rng(0)
    K, D = 3, 8
    y = rng.integers(0, K, 2000)
    H = rng.normal(size=(2000, D)) + rng.normal(size=(K, D))[y]
    W = rng.normal(size=(K, D))
    a = M.neural_collapse(H, y, W, chunk_size=2000)
    b = M.neural_collapse(H, y, W, chunk_size=33)
    far = M.neural_collapse(H + 1e6, y, W, chunk_size=33)  # the first batch's mean is the shift: no cancellation
    for k in ("nc1", "nc2_equinorm", "nc2_equiangular", "nc3_self_duality"):
        assert a[k] == pytest.approx(b[k], rel=1e-10) and far[k] == pytest.approx(a[k], rel=1e-6)
    acc = M.NeuralCollapseAccumulator(K, D)
    for i in range(0, 2000, 100):
        acc.update(H[i:i + 100], y[i:i + 100])
    state = acc.counts.nbytes + acc.sums.nbytes + acc.scatter.nbytes
    assert state == 8 * (K + K * D + D * D)  # K·D + D² numbers, whatever N is


def test_missing_class_and_wrong_head_are_clear_errors():
    H, y = np.random.default_rng(0).normal(size=(10, 3)), np.array([0] * 5 + [1] * 5)
    with pytest.raises(ValueError, match=r"Classes \[2\] have no samples"):
        M.neural_collapse(H, y, np.ones((3, 3)))


def test_analyze_summary_carries_the_nc_keys():
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(3), 20)
    H = rng.normal(size=(60, 4)) * 0.1 + 3 * np.eye(3, 4)[y]
    W = np.eye(3, 4) * 5
    s = analyze_features(H, y, W, np.zeros(3), svm_regularized=False).summary
    ref = M.neural_collapse(H, y, W, np.zeros(3))
    for k in M.NC_KEYS:
        assert s[k] == pytest.approx(ref[k])
    assert s["status"] == "separable" and s["closeness"] in ("converged", "approaching", "far")
