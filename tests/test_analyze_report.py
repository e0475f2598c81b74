"""The verdict of analyze (same words as reproduce) and its report: report.md and figures."""

import numpy as np
import pytest

from nnboundary.analysis import CLOSENESS, analyze_features, claim_status, closeness, verdict
from nnboundary.experiments.report import status_of
from nnboundary.plot.report import plane_projection, plot_pair_cosines, write_analysis_report


def _blobs(K=2, D=3, n=30, seed=0, spread=0.3):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(K), n)
    centres = rng.normal(size=(K, D)) * 3
    return rng.normal(size=(K * n, D)) * spread + centres[y], y


def _svm_head(H, y):
    from nnboundary.svm import MaxMarginClassifier

    svm = MaxMarginClassifier().fit(H, y)
    return svm.coef_, svm.intercept_


def test_verdict_words_match_reproduce_and_thresholds():
    H, y = _blobs()
    V, c = _svm_head(H, y)
    conv = analyze_features(H, y, V * 7, c * 7, svm_regularized=False).summary  # the SVM itself, scaled
    assert conv["status"] == "separable" and conv["closeness"] == "converged"
    assert conv["angle_deg"] < 1e-3 and conv["margin_ratio"] == pytest.approx(1, abs=1e-6)
    R = np.linalg.qr(np.random.default_rng(1).normal(size=(3, 3)))[0]
    tilted = V @ (np.cos(0.15) * np.eye(3) + np.sin(0.15) * (R - R.T) / np.linalg.norm(R - R.T, 2))
    s = analyze_features(H, y, tilted, c, svm_regularized=False).summary
    assert s["status"] == "separable"
    assert s["closeness"] == ("converged" if s["angle_deg"] <= 2 and s["margin_ratio"] >= 0.9 else
                              "approaching" if s["angle_deg"] <= 15 and s["margin_ratio"] >= 0.5 else "far")
    wrong = analyze_features(H, y, -V, -c, svm_regularized=False).summary  # separable features, head misfits
    assert wrong["status"] == "not fitted" and wrong["closeness"] is None and "does not apply" in verdict(wrong)
    Hx = np.array([[0, 0], [1, 1], [0, 1], [1, 0]], float)
    yx = np.array([0, 0, 1, 1])
    xor = analyze_features(Hx, yx, np.array([[1.0, -1.0]]), np.zeros(1), svm_regularized=False).summary
    assert xor["status"] == "not separable" and "soft-margin" in verdict(xor)
    for summary in (conv, s, wrong, xor):  # the same words as reproduce's status column
        assert claim_status(summary) == status_of(summary)
    assert [w for w, _, _ in CLOSENESS] == ["converged", "approaching"]
    assert closeness({"separable": True, "accuracy": 1.0, "angle_deg": 40.0, "margin_ratio": 0.2}) == "far"


def test_plane_projection_keeps_both_normals_and_every_side():
    rng = np.random.default_rng(0)
    H = rng.normal(size=(50, 6))
    v, w = rng.normal(size=6), rng.normal(size=6)
    P, U = plane_projection(H, v, w)
    np.testing.assert_allclose(U @ U.T, np.eye(2), atol=1e-12)
    assert np.linalg.norm(U @ v) == pytest.approx(np.linalg.norm(v))  # both normals lie in the plane
    assert np.linalg.norm(U @ w) == pytest.approx(np.linalg.norm(w))
    np.testing.assert_allclose(P @ (U @ w), H @ w, atol=1e-10)  # so each point's score (and side) is exact
    _, U2 = plane_projection(H, v, 3 * v)  # parallel normals: the plane still has two directions
    np.testing.assert_allclose(U2 @ U2.T, np.eye(2), atol=1e-12)


@pytest.mark.parametrize("K", [2, 3])
def test_report_and_figures(tmp_path, K):
    H, y = _blobs(K=K, D=4)
    V, c = _svm_head(H, y)
    W = V + 0.05 * np.random.default_rng(2).normal(size=V.shape)
    result = analyze_features(H, y, W, c, head_name="fc")
    path = write_analysis_report(result, tmp_path)
    text = path.read_text()
    assert "**Verdict: separable" in text and "nc1" in text and "converged" in text
    figs = sorted(p.name for p in (tmp_path / "figures").iterdir())
    assert figs == (["margins.png", "pair_cosines.png", "svm_nn_plane.png"] if K == 3 else
                    ["margins.png", "svm_nn_plane.png"])
    for f in figs:
        assert (tmp_path / "figures" / f).read_bytes()[:4] == b"\x89PNG" and f"figures/{f}" in text
    if K == 2:
        with pytest.raises(ValueError, match="K > 2"):
            plot_pair_cosines(result, tmp_path / "x.png")


def test_report_says_when_the_claim_does_not_apply(tmp_path):
    H, y = _blobs()
    V, c = _svm_head(H, y)
    result = analyze_features(H, y, -V, -c, svm_regularized=False)
    text = write_analysis_report(result, tmp_path).read_text()
    assert "not fitted" in text and "do not test the claim" in text
