"""Tests of nnboundary.analysis (analyze, analyze_features, Analysis.save/load) and nnboundary.io."""

import json
import warnings

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from nnboundary.analysis import SUMMARY_KEYS, Analysis, analyze, analyze_features
from nnboundary.features import HeadNotFoundError
from nnboundary.io import load_data_file, load_model_file
from nnboundary.svm import MaxMarginClassifier

torch.set_num_threads(1)
threadpool_limits(1)  # tiny BLAS problems: extra threads only contend on a shared CPU


def _body(d_in=4, D=3, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d_in, 8), nn.Tanh(), nn.Linear(8, D), nn.Tanh()).double()


def _separable(body, K=2, n=120, seed=0, band=0.15):
    """Inputs X and labels y that are linearly separable (with a gap) in body(X)."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, body[0].in_features, generator=g, dtype=torch.float64)
    with torch.no_grad():
        H = body(X).numpy()
    rng = np.random.default_rng(seed)
    U, c = rng.normal(size=(K, H.shape[1])), rng.normal(size=K) * 0.1
    S = H @ U.T + c
    y = S.argmax(1)
    top2 = np.sort(S, axis=1)[:, -2:]
    keep = (top2[:, 1] - top2[:, 0]) > band * np.abs(S).max()
    return X[torch.from_numpy(keep)], torch.from_numpy(y[keep]), H[keep]


def _model_with_head(body, W, b):
    head = nn.Linear(W.shape[1], W.shape[0], bias=b is not None).double()
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(np.asarray(W)))
        if b is not None:
            head.bias.copy_(torch.from_numpy(np.asarray(b)))
    return nn.Sequential(*body, head)


def _assert_matches_svm(s):
    assert s["cosine"] == pytest.approx(1.0, abs=1e-6)
    assert s["angle_deg"] == pytest.approx(0.0, abs=0.1)  # arccos near 1 amplifies 1e-12 to ~1e-4 deg
    assert s["margin_ratio"] == pytest.approx(1.0, abs=1e-6)
    assert s["bias_offset"] == pytest.approx(0.0, abs=1e-6)
    assert s["agreement_train"] == 1.0
    assert s["separable"] is True
    assert s["sv_overlap_jaccard"] == 1.0 and s["sv_overlap_precision"] == 1.0


# ----------------------------------------------------------------------------- exact SVM head


def test_head_set_to_exact_svm_binary_two_logits():
    body = _body()
    X, y, H = _separable(body, K=2)
    svm = MaxMarginClassifier().fit(H, y.numpy())
    v, c = svm.coef_[0], svm.intercept_[0]
    model = _model_with_head(body, 2.5 * np.stack([-v / 2, v / 2]), 2.5 * np.array([-c / 2, c / 2]))
    res = analyze(model, X, y)
    assert set(SUMMARY_KEYS) <= set(res.summary)
    _assert_matches_svm(res.summary)
    assert res.summary["n_support"] == len(svm.support_)
    assert "agreement_grid" not in res.summary  # D = 3: no grid
    assert res.summary["head"] == "4" and res.features.shape == (len(y), 3)


def test_head_set_to_exact_svm_single_logit_in_2d():
    body = _body(D=2, seed=1)
    X, y, H = _separable(body, K=2, seed=1)
    svm = MaxMarginClassifier().fit(H, y.numpy())
    model = _model_with_head(body, 4 * svm.coef_, 4 * svm.intercept_)
    res = analyze(model, X, y)
    _assert_matches_svm(res.summary)
    assert res.summary["agreement_grid"] == 1.0
    assert res.summary["n_classes"] == 2 and res.logits.shape == (len(y), 1)


def test_head_set_to_exact_crammer_singer_svm_and_row_shift_invariance():
    body = _body(D=3, seed=2)
    X, y, H = _separable(body, K=3, n=200, seed=2)
    svm = MaxMarginClassifier().fit(H, y.numpy())
    res = analyze(_model_with_head(body, 3 * svm.coef_, 3 * svm.intercept_), X, y)
    _assert_matches_svm(res.summary)
    assert res.summary["n_classes"] == 3
    d = res.details
    assert list(d["scope"]) == ["overall", "class", "class", "class", "pair", "pair", "pair"]
    np.testing.assert_allclose(d["cosine"], 1.0, atol=1e-6)
    # adding one vector to every row of W (one number to every b_k) changes no decision
    shift_w, shift_b = np.array([[5.0, -3.0, 2.0]]), 7.0
    res2 = analyze(_model_with_head(body, 3 * svm.coef_ + shift_w, 3 * svm.intercept_ + shift_b), X, y)
    _assert_matches_svm(res2.summary)
    # ... also for a head that is NOT the SVM
    W = np.random.default_rng(0).normal(size=(3, 3))
    a = analyze_features(H, y.numpy(), W, np.zeros(3)).summary
    b = analyze_features(H, y.numpy(), W + shift_w, np.full(3, shift_b)).summary
    for key in ("cosine", "margin_ratio", "bias_offset", "agreement_train", "sv_overlap_jaccard", "loss"):
        assert b[key] == pytest.approx(a[key], abs=1e-9, nan_ok=True), key


def test_shifted_head_bias_offset_is_minus_delta_over_alpha():
    body = _body(seed=3)
    X, y, H = _separable(body, seed=3)
    svm = MaxMarginClassifier().fit(H, y.numpy())
    alpha, delta = 2.0, 0.6  # NN: alpha * (v·h + c) + delta  ->  offset -delta/alpha = -0.3 margins
    s = analyze_features(H, y.numpy(), alpha * svm.coef_, alpha * svm.intercept_ + delta).summary
    assert s["bias_offset"] == pytest.approx(-0.3, abs=1e-6)
    assert s["bias_offset_gap"] == pytest.approx(-0.3, abs=1e-4)  # free hard SVM: gap midpoint = SVM plane
    assert s["cosine"] == pytest.approx(1.0, abs=1e-9)
    assert s["margin_ratio"] == pytest.approx(0.7, abs=1e-5)  # the nearer support plane moved 0.3 margins in


class _OneTiedSupportVector(MaxMarginClassifier):
    """The same SVM, reporting only one of several tied support vectors of class 1 (as another solver might)."""

    def fit(self, X, y, **kwargs):
        super().fit(X, y, **kwargs)
        tied = self.support_[np.asarray(y)[self.support_] == 1]
        self.support_ = np.setdiff1d(self.support_, tied[1:])
        return self


def test_bias_offset_does_not_depend_on_which_tied_points_are_support_vectors():
    rng = np.random.default_rng(0)
    H = np.r_[rng.normal(size=(30, 2)) + [4.0, 0.0], np.tile([0.0, 0.0], (10, 1)), [[0.5, 3.0], [0.5, -3.0]]]
    y = np.r_[np.zeros(30), np.ones(12)].astype(int)  # class 1: ten copies of the origin and two far points
    W, b = np.array([[-1.0, 0.5], [1.0, -0.5]]), np.array([0.3, -0.3])  # a head not parallel to the SVM
    full = analyze_features(H, y, W, b, svm=MaxMarginClassifier(), svm_regularized=False)
    one = analyze_features(H, y, W, b, svm=_OneTiedSupportVector(), svm_regularized=False)
    assert len(one.svm.support_) < len(full.svm.support_)
    assert one.summary["bias_offset"] == pytest.approx(full.summary["bias_offset"], abs=1e-12)
    assert abs(full.summary["bias_offset"]) > 0.01
    once = analyze_features(np.r_[H[:30], H[39:]], np.r_[y[:30], y[39:]], W, b, svm_regularized=False)
    assert once.summary["bias_offset"] == pytest.approx(full.summary["bias_offset"], abs=1e-9)  # repeats count once


def test_head_at_regularized_svm_has_zero_regularized_offset():
    body = _body(seed=4)
    X, y, H = _separable(body, seed=4)
    H = H + np.array([1.5, -0.5, 0.8])  # off-centre features: free and regularised SVMs differ
    reg = MaxMarginClassifier(bias="regularized").fit(H, y.numpy())
    s = analyze_features(H, y.numpy(), 2 * reg.coef_, 2 * reg.intercept_).summary
    assert s["cosine_reg"] == pytest.approx(1.0, abs=1e-9)
    assert s["bias_offset_reg"] == pytest.approx(0.0, abs=1e-6)
    assert s["margin_ratio_reg"] == pytest.approx(1.0, abs=1e-6)


def test_head_without_bias_uses_homogeneous_svm():
    body = _body(seed=5)
    X, y, _ = _separable(body, seed=5)
    model = nn.Sequential(*body, nn.Linear(3, 2, bias=False).double())
    res = analyze(model, X, y)
    assert res.summary["svm_bias"] == "none" and res.svm_regularized is None
    assert "cosine_reg" not in res.summary
    assert np.all(res.svm_intercept == 0)


# ----------------------------------------------------------------------------- other paths


def test_sklearn_estimators_as_reference():
    from sklearn.svm import SVC, LinearSVC

    body = _body(seed=10)
    X, y, H = _separable(body, seed=10)
    exact = MaxMarginClassifier().fit(H, y.numpy())
    W, b = 3 * exact.coef_, 3 * exact.intercept_
    s = analyze_features(H, y.numpy(), W, b, svm=SVC(kernel="linear", C=1e6)).summary
    assert s["cosine"] == pytest.approx(1.0, abs=1e-4) and s["separable"] is True
    assert s["margin_ratio"] == pytest.approx(1.0, abs=1e-3) and s["n_support"] >= 2
    s = analyze_features(H, y.numpy(), W, b, svm=LinearSVC(C=10.0), svm_regularized=False).summary
    assert s["n_support"] >= 1 and "cosine_reg" not in s  # no support_: taken from active constraints


def test_not_separable_is_reported_with_soft_margin():
    rng = np.random.default_rng(6)
    H, y = rng.normal(size=(80, 2)), rng.integers(0, 2, 80)
    s = analyze_features(H, y, rng.normal(size=(2, 2)), np.zeros(2), soft_C=0.5).summary
    assert s["separable"] is False and s["svm_C"] == 0.5
    assert np.isfinite(s["cosine"]) and np.isnan(s["margin_ratio"])
    assert 0 <= s["agreement_train"] <= 1 and s["n_support"] > 0


def test_test_data_dataloader_and_template_untouched():
    body = _body(seed=7)
    X, y, H = _separable(body, seed=7)
    model = nn.Sequential(*body, nn.Linear(3, 2).double())
    template = MaxMarginClassifier(tol=1e-9)
    loader = DataLoader(TensorDataset(X, y), batch_size=16)
    res = analyze(model, loader, svm=template, X_test=X[:30], y_test=y[:30], batch_size=7)
    assert not hasattr(template, "coef_")  # cloned, never fitted in place
    s = res.summary
    assert s["n_test"] == 30 and 0 <= s["agreement_test"] <= 1 and 0 <= s["test_accuracy"] <= 1
    ref = analyze_features(H, y.numpy(), *[p.detach().numpy() for p in model[4].parameters()])
    for key in ("cosine", "margin_ratio", "bias_offset", "loss", "accuracy"):
        assert s[key] == pytest.approx(ref.summary[key], rel=1e-9, abs=1e-12), key


def test_bad_inputs_give_clear_errors():
    body = _body(seed=8)
    X, y, H = _separable(body, seed=8)
    model = nn.Sequential(*body, nn.Linear(3, 2).double())
    with pytest.raises(ValueError, match=r"labels range over 0..2.*2 outputs.*0..1"):
        analyze(model, X, torch.where(y == 1, 2, 0))
    with pytest.raises(ValueError, match="integer class indices"):
        analyze(model, X, y.double() + 0.5)
    Xn = X.clone()
    Xn[3, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        analyze(model, Xn, y)
    with pytest.raises(ValueError, match="empty"):
        analyze(model, X[:0], y[:0])
    with pytest.raises(ValueError, match="no labels"):
        analyze(model, X)
    with pytest.raises(ValueError, match=r"Classes \[2\].*no training samples"):
        analyze_features(H, y.numpy(), np.ones((3, 3)), np.zeros(3))
    with pytest.raises(ValueError, match="3 columns, but the head expects 4"):
        analyze_features(H, y.numpy(), np.ones((2, 4)), np.zeros(2))
    with pytest.raises(HeadNotFoundError, match="no submodule"):
        analyze(model, X, y, head="fc")


# ----------------------------------------------------------------------------- persistence


def test_save_load_roundtrip_and_overwrite_protection(tmp_path):
    body = _body(seed=9)
    X, y, _ = _separable(body, seed=9)
    res = analyze(nn.Sequential(*body, nn.Linear(3, 2).double()), X, y, X_test=X[:10], y_test=y[:10])
    out = res.save(tmp_path / "run")
    names = sorted(p.name for p in out.iterdir())
    assert names == ["details.csv", "features.npz", "settings.json", "summary.json"]  # no temp files left
    summary = json.loads((out / "summary.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    assert summary["cosine"] == pytest.approx(res.summary["cosine"])
    settings = json.loads((out / "settings.json").read_text())
    assert settings["svm"]["bias"] == "free" and settings["soft_C"] == 1.0
    with pytest.raises(FileExistsError, match="overwrite=True"):
        res.save(out)
    res.save(out, overwrite=True)
    back = Analysis.load(out)
    np.testing.assert_array_equal(back.features, res.features)
    np.testing.assert_array_equal(back.support, res.support)
    np.testing.assert_allclose(back.points["margin_nn"], res.points["margin_nn"])
    assert back.summary["n_support"] == res.summary["n_support"]
    assert list(back.details.columns) == list(res.details.columns)
    assert back.features_test.shape == (10, 3)


# ----------------------------------------------------------------------------- io


def test_load_model_file_torchscript_pickle_and_state_dict(tmp_path):
    model = nn.Sequential(nn.Sequential(nn.Linear(2, 3), nn.ReLU()), nn.Linear(3, 2)).double()
    x = torch.randn(5, 2, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(model), tmp_path / "m.ts")
    loaded = load_model_file(tmp_path / "m.ts")
    torch.testing.assert_close(loaded(x), model(x))
    assert isinstance(loaded.get_submodule("1"), nn.Linear)  # the head rebuilt eagerly, so it can be hooked
    torch.save(model, tmp_path / "m.pt")
    torch.testing.assert_close(load_model_file(tmp_path / "m.pt", allow_pickle=True)(x), model(x))
    torch.save(model.state_dict(), tmp_path / "sd.pt")
    with pytest.raises(ValueError, match="state_dict"):
        load_model_file(tmp_path / "sd.pt")
    with pytest.raises(FileNotFoundError):
        load_model_file(tmp_path / "nope.pt")


class _Custom(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 2)

    def forward(self, x):
        return self.fc(torch.relu(x))


def test_load_model_file_reads_scripted_custom_forward(tmp_path):
    model = _Custom()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(model), tmp_path / "c.ts")
    x = torch.randn(4, 2)
    torch.testing.assert_close(load_model_file(tmp_path / "c.ts")(x), model(x))


def test_load_data_file_npz_pt_and_errors(tmp_path):
    X, y = np.random.default_rng(0).normal(size=(6, 2)), np.array([0, 1] * 3)
    np.savez(tmp_path / "d.npz", X=X, y=y, X_test=X[:2], y_test=y[:2])
    d = load_data_file(tmp_path / "d.npz")
    np.testing.assert_array_equal(d.X, X)
    assert d.X_test.shape == (2, 2)
    torch.save({"X": torch.from_numpy(X), "y": torch.from_numpy(y)}, tmp_path / "d.pt")
    d = load_data_file(tmp_path / "d.pt")
    assert d.X_test is None and d.y.shape == (6,)
    np.savez(tmp_path / "bad.npz", inputs=X, y=y)
    with pytest.raises(ValueError, match=r"lacks \['X'\].*keys \['inputs', 'y'\]"):
        load_data_file(tmp_path / "bad.npz")
    np.savez(tmp_path / "len.npz", X=X, y=y[:5])
    with pytest.raises(ValueError, match="X has 6 samples but y has 5"):
        load_data_file(tmp_path / "len.npz")
    (tmp_path / "d.csv").write_text("1,2")
    with pytest.raises(ValueError, match=".npz or .pt"):
        load_data_file(tmp_path / "d.csv")
