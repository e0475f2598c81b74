"""Tests of nnboundary.metrics: formulas checked against hand-derivable values and invariances."""

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits
import torch.nn.functional as F

from nnboundary import metrics as M
from nnboundary.metrics import fit_inverse_log
from nnboundary.svm import MaxMarginClassifier

threadpool_limits(1)  # tiny BLAS problems: extra threads only contend on a shared CPU


def _blobs(K=2, n=30, sep=6.0, seed=0):
    """K separable Gaussian blobs (unit noise) centred on a circle of radius ``sep``, D = 2."""
    rng = np.random.default_rng(seed)
    ang = 2 * np.pi * np.arange(K) / K + rng.uniform(0, 2 * np.pi)
    centers = sep * np.c_[np.cos(ang), np.sin(ang)]
    y = np.repeat(np.arange(K), n)
    H = centers[y] + rng.normal(size=(K * n, 2))
    return H, y


# ----------------------------------------------------------------------------- direction


def test_class_scores_expands_single_logit():
    W, b = M.class_scores(np.array([[1.0, 2.0]]), np.array([3.0]))
    np.testing.assert_array_equal(W, [[0, 0], [1, 2]])
    np.testing.assert_array_equal(b, [0, 3])
    with pytest.raises(ValueError, match="one bias per row"):
        M.class_scores(np.ones((3, 2)), np.ones(2))


def test_binary_cosine_uses_difference_and_matches_single_logit():
    v = np.array([[1.0, 0.0]])
    W2 = np.array([[0.3, -1.0], [1.3, -1.0]])  # w1 - w0 = (1, 0): same direction as v
    assert M.direction_cosine(W2, v) == pytest.approx(1.0)
    assert M.direction_angle(W2, v) == pytest.approx(0.0, abs=1e-6)
    assert M.direction_cosine(np.array([[0.0, 2.0]]), v) == pytest.approx(0.0, abs=1e-12)
    assert M.direction_angle(np.array([[0.0, 2.0]]), v) == pytest.approx(90.0)
    assert M.direction_cosine(-W2, v) == pytest.approx(-1.0)
    assert M.direction_angle(np.array([[1.0, 1.0]]), v) == pytest.approx(45.0)


def test_multiclass_cosine_is_invariant_to_row_shift_and_scale():
    rng = np.random.default_rng(1)
    W, V = rng.normal(size=(4, 5)), rng.normal(size=(4, 5))
    shift = rng.normal(size=(1, 5)) * 10
    c0 = M.direction_cosine(W, V)
    assert M.direction_cosine(W + shift, V) == pytest.approx(c0, abs=1e-12)
    assert M.direction_cosine(3.7 * W, V - shift) == pytest.approx(c0, abs=1e-12)
    np.testing.assert_allclose(M.class_cosines(W + shift, V), M.class_cosines(W, V), atol=1e-12)
    np.testing.assert_allclose(M.pair_cosines(W + shift, V), M.pair_cosines(W, V), atol=1e-12)
    # flattened cosine of the centred matrices, computed by hand
    Wc, Vc = W - W.mean(0), V - V.mean(0)
    assert c0 == pytest.approx((Wc * Vc).sum() / np.linalg.norm(Wc) / np.linalg.norm(Vc))


def test_pair_cosines_order_and_values():
    W = np.eye(3)
    pairs = M.class_pairs(3)
    assert pairs == [(0, 1), (0, 2), (1, 2)]
    cos = M.pair_cosines(W, W)
    np.testing.assert_allclose(cos, 1.0)
    V = W.copy()
    V[2] = -W[2]  # v2 - v0 = (-1, 0, -1) vs w2 - w0 = (-1, 0, 1): cos 0
    assert M.pair_cosines(W, V)[1] == pytest.approx(0.0, abs=1e-12)


def test_shape_mismatch_is_reported():
    with pytest.raises(ValueError, match="same features"):
        M.direction_cosine(np.ones((3, 2)), np.ones((4, 2)))


# ----------------------------------------------------------------------------- margins


def test_functional_margins_by_hand():
    H = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]])
    y = np.array([0, 1, 2])
    W = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    b = np.array([0.0, 0.0, -1.0])
    # point 0: s = (1, 0, 0)  -> 1 - 0 = 1 ; point 1: s = (0, 1, 0) -> 1 ; point 2: s = (2, 2, 3) -> 1
    np.testing.assert_allclose(M.functional_margins(H, y, W, b), [1, 1, 1])
    Wc = W - W.mean(0)
    assert M.normalized_margin(H, y, W, b) == pytest.approx(1 / np.linalg.norm(Wc))


def test_normalized_margin_equals_svm_margin_binary_and_crammer_singer():
    for K in (2, 3):
        H, y = _blobs(K=K, seed=K)
        svm = MaxMarginClassifier().fit(H, y)
        assert M.normalized_margin(H, y, svm.coef_, svm.intercept_) == pytest.approx(svm.margin_, rel=1e-6)
        assert M.functional_margins(H, y, svm.coef_, svm.intercept_).min() == pytest.approx(1.0, abs=1e-6)


def test_pair_margin_binary_matches_normalized_margin():
    H, y = _blobs(K=2, seed=4)
    svm = MaxMarginClassifier().fit(H, y)
    assert M.pair_margin(H, y, svm.coef_, svm.intercept_, (0, 1)) == pytest.approx(svm.margin_, rel=1e-6)


def test_margin_ratio_and_its_undefined_cases():
    assert M.margin_ratio(0.5, 1.0) == 0.5
    assert np.isnan(M.margin_ratio(0.5, 0.0))
    assert np.isnan(M.margin_ratio(0.5, -1.0))


def test_labels_out_of_range_raise():
    with pytest.raises(ValueError, match="0..1"):
        M.functional_margins(np.zeros((2, 2)), np.array([0, 2]), np.ones((2, 2)))


# ----------------------------------------------------------------------------- bias offset


def test_bias_offset_parallel_head_is_minus_delta_over_alpha():
    v, c = np.array([[2.0, 1.0]]), np.array([-0.5])
    for alpha, delta in [(1.0, 0.0), (3.0, 1.5), (0.5, -0.2)]:
        W, b = alpha * v, alpha * c + delta
        for anchor in (np.zeros(2), np.array([5.0, -3.0])):  # parallel: anchor does not matter
            assert M.bias_offset(W, b, v, c, anchor) == pytest.approx(-delta / alpha, abs=1e-12)


def test_bias_offset_sign_towards_positive_class():
    v, c = np.array([[1.0, 0.0]]), np.array([0.0])  # SVM boundary x = 0, margin 1/||v|| = 1
    # NN boundary at x = 0.5 (w = (1, 0), b = -0.5): shifted towards class 1 by half a margin
    assert M.bias_offset(np.array([[1.0, 0.0]]), np.array([-0.5]), v, c, np.zeros(2)) == pytest.approx(0.5)
    # tilted NN boundary through (0.5, 0) measured at the anchor on the x axis
    t = M.boundary_shift(np.array([1.0, 1.0]), -0.5, v[0], 0.0, np.array([0.0, 0.0]))
    assert t == pytest.approx(0.5)


def test_gap_offset_equals_bias_offset_for_free_hard_svm_and_means_offset_by_hand():
    H, y = _blobs(K=2, seed=7)
    svm = MaxMarginClassifier().fit(H, y)
    V, c = svm.coef_, svm.intercept_
    W, b = 2 * V, 2 * c - 0.8  # offset = +0.4 margins
    a = H[svm.support_].mean(0)
    off = M.bias_offset(W, b, V, c, a)
    assert off == pytest.approx(0.4, abs=1e-9)
    assert M.gap_offset(H, y, W, b, V, c, a) == pytest.approx(off, abs=1e-5)
    # means offset by hand along the unit normal
    n = V[0] / np.linalg.norm(V[0])
    s_nn = (-c[0] + 0.4) / np.linalg.norm(V[0])
    m0, m1 = (H[y == 0] @ n).mean(), (H[y == 1] @ n).mean()
    expect = (s_nn - (m0 + m1) / 2) / ((m1 - m0) / 2)
    assert M.means_offset(H, y, W, b, V, c, a) == pytest.approx(expect, abs=1e-9)


def test_gap_offset_nan_when_classes_overlap():
    H = np.array([[0.0], [2.0], [1.0], [3.0]])
    y = np.array([0, 0, 1, 1])
    assert np.isnan(M.gap_offset(H, y, np.array([[1.0]]), np.array([-1.5]), np.array([[1.0]]),
                                 np.array([-1.5]), np.zeros(1)))


# ----------------------------------------------------------------------------- agreement, overlap, context


def test_agreement_and_grid_agreement():
    H, y = _blobs(K=2, seed=2)
    V, c = np.array([[1.0, 0.3]]), np.array([0.1])
    assert M.agreement(M.predict_classes(H, V, c), M.predict_classes(H, 5 * V, 5 * c)) == 1.0
    assert M.grid_agreement(H, V, c, 5 * V, 5 * c, resolution=50) == 1.0
    assert M.grid_agreement(H, V, c, -V, -c, resolution=50) == pytest.approx(0.0, abs=1e-3)
    xx0, xx1 = M.feature_grid(H, resolution=7, pad=0.1)
    ext = H.max(0) - H.min(0)
    assert xx0.shape == (7, 7) and xx0.min() == pytest.approx(H[:, 0].min() - 0.1 * ext[0])
    assert xx1.max() == pytest.approx(H[:, 1].max() + 0.1 * ext[1])


def test_two_class_predictions_are_argmax_with_its_ties_and_nans():
    """Two classes are predicted by one comparison, not argmax: the same classes, ties to class 0, NaN scores
    counted as the largest (as argmax does), for a single-logit head and for a two-row one."""
    special = np.array([0.0, -0.0, 1.0, -1.0, np.nan, np.inf, -np.inf, 5e-324])
    S = np.array([[a, b] for a in special for b in special])  # scores of two classes: every pair of special values
    rng = np.random.default_rng(0)
    H = np.vstack([S, rng.standard_normal((200, 2)), rng.integers(-2, 3, (200, 2)).astype(float)])
    with np.errstate(invalid="ignore"):
        W2, b2 = np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([0.0, -0.0])
        assert np.isnan(H @ W2.T).any() and (H[:, 0] == H[:, 1]).any()  # NaNs and ties occur
        assert np.array_equal(M.predict_classes(H, W2, b2), np.argmax(H @ W2.T + b2, axis=1))
        W, b = np.array([[1.0, -2.0]]), np.array([0.5])  # single logit: the rows (0, w), biases (0, b)
        Ws, bs = M.class_scores(W, b)
        assert np.array_equal(M.predict_classes(H, W, b), np.argmax(H @ Ws.T + bs, axis=1))
    W3, b3 = rng.standard_normal((3, 2)), rng.standard_normal(3)  # K > 2 keeps argmax
    assert np.array_equal(M.predict_classes(H[-400:], W3, b3), np.argmax(H[-400:] @ W3.T + b3, axis=1))


def test_sv_overlap_by_hand():
    score = np.array([0.1, 5.0, 0.2, 0.3, 9.0])  # 3 lowest: {0, 2, 3}
    p, j = M.sv_overlap(np.array([0, 2, 4]), score)
    assert p == pytest.approx(2 / 3) and j == pytest.approx(2 / 4)
    assert M.sv_overlap(np.array([3, 0, 2]), score) == (1.0, 1.0)
    assert all(np.isnan(M.sv_overlap(np.array([], dtype=int), score)))


def test_cross_entropy_matches_torch_and_single_logit_is_logistic():
    rng = np.random.default_rng(3)
    Z, y = rng.normal(size=(20, 4)) * 30, rng.integers(0, 4, 20)
    ref = F.cross_entropy(torch.tensor(Z), torch.tensor(y), reduction="none").numpy()
    np.testing.assert_allclose(M.cross_entropy(Z, y), ref, rtol=1e-12, atol=1e-12)
    z, yb = rng.normal(size=(20, 1)) * 5, rng.integers(0, 2, 20)
    ref = F.binary_cross_entropy_with_logits(torch.tensor(z[:, 0]), torch.tensor(yb, dtype=torch.float64),
                                             reduction="none").numpy()
    np.testing.assert_allclose(M.cross_entropy(z, yb), ref, rtol=1e-10)
    assert M.accuracy(z, yb) == pytest.approx(np.mean((z[:, 0] > 0) == yb))


def test_weight_norm():
    assert M.weight_norm(np.array([[3.0, 4.0]])) == 5.0


# ----------------------------------------------------------------------------- 1/log fits and when they hold


def test_inverse_log_fit_on_c_over_log_t_holds():
    from nnboundary.metrics import inverse_log_fit_holds

    t = np.geomspace(2, 1e5, 16)
    fit = fit_inverse_log(t, 25.0 / np.log(t) * (1 + 0.01 * np.sin(np.arange(16))))  # 1 % wiggle
    assert fit["c"] == pytest.approx(25.0, rel=0.02) and fit["r2"] > 0.99 and fit["rel_rms"] < 0.02
    assert fit["n_used"] == 8 and fit["span_decades"] == pytest.approx(np.log10(t[-1] / t[8]))
    assert fit["clock"] == "step" and inverse_log_fit_holds(fit)


@pytest.mark.parametrize("shape", ["plateau", "exponential", "power", "increasing"])
def test_inverse_log_fit_is_refused_on_data_that_is_not_one_over_log(shape):
    from nnboundary.metrics import inverse_log_fit_holds

    t = np.geomspace(2, 1e5, 16)
    a = {"plateau": 20.0 + 0 * t, "exponential": 30.0 * np.exp(-t / 300.0) + 1e-3, "power": 30.0 / t,
         "increasing": np.log(t)}[shape]
    fit = fit_inverse_log(t, a)
    assert np.isfinite(fit["c"]) and not inverse_log_fit_holds(fit), fit


def test_inverse_log_fit_needs_points_and_a_decade():
    from nnboundary.metrics import INVERSE_LOG_RULE, inverse_log_fit_holds

    short = np.geomspace(100, 900, 12)  # less than a decade: 1/log t is nearly a straight line there
    fit = fit_inverse_log(short, 5.0 / np.log(short), fraction=1.0)
    assert fit["r2"] == pytest.approx(1.0) and not inverse_log_fit_holds(fit)
    assert inverse_log_fit_holds(fit, {"min_decades": 0.5})  # the rule is a parameter
    few = np.array([10.0, 100.0, 1000.0, 10000.0])
    fit = fit_inverse_log(few, 5.0 / np.log(few), fraction=1.0)
    assert fit["n_used"] == 4 < INVERSE_LOG_RULE["min_points"] and not inverse_log_fit_holds(fit)
    assert not inverse_log_fit_holds(None) and not inverse_log_fit_holds(fit_inverse_log([0, 1], [3.0, 2.0]))


def test_inverse_log_fit_on_the_loss_clock():
    from nnboundary.metrics import inverse_log_fit_holds

    step = np.arange(1, 21, dtype=float)
    loss = np.exp(-np.geomspace(1.0, 600.0, 20))  # a loss-based step size: L falls far faster than 1/t
    angle = 12.0 / -np.log(loss)  # exactly c / log(1/L), down to L = e^-600 (1/L would overflow)
    fit = fit_inverse_log(step, angle, loss=loss)
    assert fit["clock"] == "loss" and fit["c"] == pytest.approx(12.0) and fit["r2"] == pytest.approx(1.0)
    assert fit["loss_min"] == pytest.approx(loss[-1]) and fit["step_min"] == 11 and fit["step_max"] == 20
    assert fit["span_decades"] > 1 and inverse_log_fit_holds(fit)
    # on the step clock the same points span steps 11-20 only, well under a decade: no verdict from them
    assert not inverse_log_fit_holds(fit_inverse_log(step, angle))
    ok = fit_inverse_log(step, angle, loss=np.r_[loss[:-2], 0.0, np.nan])  # L = 0 and NaN are not on the clock
    assert ok["n_used"] == 9
    with pytest.raises(ValueError, match="one value per step"):
        fit_inverse_log(step, angle, loss=loss[:3])
