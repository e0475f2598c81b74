"""How ``analyze`` fits its two SVMs: the regularised-bias one starts from the reference one's support set, and
progress says which SVM is being solved."""

import numpy as np

from nnboundary.analysis import fit_svms
from nnboundary.svm import MaxMarginClassifier


def features(n=3000, d=12, K=3, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % K
    return np.maximum(3.0 * np.eye(K, d)[y] + 0.5 * rng.normal(size=(n, d)), 0.0), y


def test_the_regularised_bias_svm_is_warm_started_from_the_reference_support(monkeypatch):
    H, y = features()
    seen = []
    real = MaxMarginClassifier.fit

    def recording(self, X, yy, init_support=None):
        seen.append((self.bias, None if init_support is None else np.asarray(init_support)))
        return real(self, X, yy, init_support=init_support)
    monkeypatch.setattr(MaxMarginClassifier, "fit", recording)
    est, separable, reg = fit_svms(H, y, MaxMarginClassifier(), MaxMarginClassifier(bias="regularized"))
    assert separable and [b for b, _ in seen] == ["free", "regularized"]
    assert seen[0][1] is None and np.array_equal(seen[1][1], est.support_)
    cold = MaxMarginClassifier(bias="regularized").fit(H, y)
    assert reg.max_violation_ <= reg.tol
    assert np.allclose(reg.coef_, cold.coef_, rtol=1e-6, atol=1e-7 * np.abs(cold.coef_).max())
    assert np.allclose(reg.intercept_, cold.intercept_, rtol=1e-6, atol=1e-7 * np.abs(cold.intercept_).max())


def test_progress_names_each_svm(capsys):
    H, y = features(1500)
    est, _, reg = fit_svms(H, y, MaxMarginClassifier(), MaxMarginClassifier(bias="regularized"), progress=True)
    err = capsys.readouterr().err
    assert "SVM (reference)" in err and "SVM (regularised bias)" in err and "violators" in err
    assert est.get_params()["progress"] is None and reg.get_params()["progress"] is None  # nothing left attached
