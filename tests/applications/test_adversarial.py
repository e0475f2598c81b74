"""Attack invariants, feature-space margins and the adversarial run (tiny digits model, CPU)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from nnboundary.experiments import get_experiment, list_experiments
from nnboundary.experiments.rundir import RunExistsError
from nnboundary.applications._common import build_network, load_arrays
from nnboundary.applications.adversarial import (
    ce_objective,
    deepfool,
    feature_distance,
    fgsm,
    pgd,
    run_adversarial,
    svm_margin_objective,
    svm_scores,
)
from nnboundary.svm import MaxMarginClassifier
from nnboundary.train import fit



@pytest.fixture(scope="module")
def setup():
    """A small MLP trained to 100% on 3 digit classes, its SVM, and correctly classified test points."""
    data = load_arrays({"source": "real", "name": "digits", "normalize": "unit", "train_per_class": 30,
                        "test_per_class": 10}, [0, 1, 2])
    model, _ = build_network({"name": "mlp", "kwargs": {"hidden": [32, 8], "activations": "tanh",
                                                        "init": "torch"}}, (64,), 3, seed=0)
    Xtr = torch.as_tensor(data.x_train.reshape(len(data.x_train), -1))
    fit(model, Xtr, data.y_train, optimizer="adam", lr=1e-2, steps=300, progress=False)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        H = model.features(Xtr).double().numpy()
    svm = MaxMarginClassifier().fit(H, data.y_train)
    Xte = torch.as_tensor(data.x_test.reshape(len(data.x_test), -1))
    yte = torch.as_tensor(data.y_test)
    with torch.no_grad():
        ok = model(Xte).argmax(1) == yte
    return model, svm, Xte[ok], yte[ok]


def _pred(scores, x):
    with torch.no_grad():
        return scores(x).argmax(1)


# ----------------------------------------------------------------------------------- budgets, range
@pytest.mark.parametrize("norm,eps", [("linf", 0.1), ("linf", 0.3), ("l2", 0.5), ("l2", 2.0)])
def test_pgd_stays_in_budget_and_pixel_range(setup, norm, eps):
    model, svm, X, y = setup
    for scores, obj in ((model, ce_objective), (svm_scores(model, svm.coef_, svm.intercept_),
                                                 svm_margin_objective(svm.coef_, svm.intercept_))):
        adv = pgd(scores, X, y, eps, norm=norm, steps=10, success=model, generator=torch.Generator().manual_seed(0))
        d = (adv - X).flatten(1)
        size = d.abs().max(1).values if norm == "linf" else d.norm(dim=1)
        assert torch.all(size <= eps * (1 + 1e-5) + 1e-6)
        assert adv.min() >= 0 and adv.max() <= 1


def test_fgsm_budget_range_and_effect(setup):
    model, _, X, y = setup
    adv = fgsm(model, X, y, 0.2)
    assert torch.all((adv - X).abs() <= 0.2 + 1e-6) and adv.min() >= 0 and adv.max() <= 1
    with torch.no_grad():   # one signed-gradient step raises the loss on average
        assert ce_objective(model(adv), y).mean() > ce_objective(model(X), y).mean()


def test_pgd_with_zero_budget_is_identity_and_success_is_real(setup):
    model, _, X, y = setup
    assert torch.equal(pgd(model, X, y, 0.0), X)
    adv = pgd(model, X, y, 0.3, steps=20, generator=torch.Generator().manual_seed(1))
    broken = _pred(model, adv) != y
    assert broken.float().mean() > 0.5                 # the attack does something on a non-robust MLP
    assert torch.all((adv[broken] - X[broken]).abs().amax(1) > 0)


def test_pgd_is_deterministic_with_a_generator(setup):
    model, _, X, y = setup
    a = pgd(model, X, y, 0.1, norm="l2", generator=torch.Generator().manual_seed(4))
    b = pgd(model, X, y, 0.1, norm="l2", generator=torch.Generator().manual_seed(4))
    c = pgd(model, X, y, 0.1, norm="l2", generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_attack_arguments_are_checked(setup):
    model, _, X, y = setup
    with pytest.raises(ValueError, match="norm"):
        pgd(model, X, y, 0.1, norm="l1")
    with pytest.raises(ValueError, match="eps"):
        fgsm(model, X, y, -0.1)


# ------------------------------------------------------------------------------------------ DeepFool
def test_deepfool_success_means_a_changed_prediction(setup):
    model, _, X, y = setup
    adv, success = deepfool(model, X, y, max_iter=50)
    assert success.float().mean() > 0.9
    torch.testing.assert_close(success, _pred(model, adv) != y, rtol=0, atol=0)
    assert adv.min() >= 0 and adv.max() <= 1
    # near-minimal: shorter than the way to the nearest (correctly classified) test image of another class,
    # which is itself an adversarial example; the bisection refinement only ever shortens the perturbation
    dist = (adv - X).flatten(1).norm(dim=1)
    other = torch.cdist(X, X).masked_fill(y[:, None] == y[None, :], float("inf")).min(dim=1).values
    assert (dist[success] < other[success]).float().mean() > 0.8
    raw, _ = deepfool(model, X, y, max_iter=50, refine_steps=0)
    assert torch.all(dist[success] <= (raw - X).flatten(1).norm(dim=1)[success] + 1e-6)


def test_margin_guided_attack_crosses_the_svm_boundary_in_feature_space(setup):
    model, svm, X, y = setup
    scores = svm_scores(model, svm.coef_, svm.intercept_)
    adv, crossed = deepfool(scores, X, y, max_iter=50)
    assert crossed.float().mean() > 0.9
    with torch.no_grad():
        H_adv = model.features(adv).double().numpy()
        H = model.features(X).double().numpy()
    yn = y.numpy()
    svm_pred = svm.predict(H_adv)                                   # the SVM itself, in feature space
    np.testing.assert_array_equal(svm_pred != yn, crossed.numpy())
    assert np.all(feature_distance(H_adv, yn, svm.coef_, svm.intercept_)[crossed.numpy()] <= 0)
    assert np.all(feature_distance(H, yn, svm.coef_, svm.intercept_) > 0)   # clean points were on the right side


def test_budgeted_margin_guided_attack_reduces_the_svm_margin(setup):
    model, svm, X, y = setup
    scores = svm_scores(model, svm.coef_, svm.intercept_)
    objective = svm_margin_objective(svm.coef_, svm.intercept_)
    adv = pgd(scores, X, y, 0.05, steps=10, random_start=False, objective=objective, success=model)
    with torch.no_grad():
        before = feature_distance(model.features(X).double().numpy(), y.numpy(), svm.coef_, svm.intercept_)
        after = feature_distance(model.features(adv).double().numpy(), y.numpy(), svm.coef_, svm.intercept_)
    assert np.mean(after < before) > 0.9


# ------------------------------------------------------------------------------------ feature margin
def test_feature_distance_matches_geometry():
    rng = np.random.default_rng(0)
    H = rng.normal(size=(50, 3))
    w, c = np.array([[1.0, -2.0, 0.5]]), np.array([0.3])
    y = (H @ w[0] + c[0] > 0).astype(int)
    expected = np.where(y == 1, 1, -1) * (H @ w[0] + c[0]) / np.linalg.norm(w)
    np.testing.assert_allclose(feature_distance(H, y, w, c), expected)
    svm = MaxMarginClassifier().fit(H, y)                            # the SVM's margin is its smallest distance
    assert feature_distance(H, y, svm.coef_, svm.intercept_).min() == pytest.approx(svm.margin_, rel=1e-5)
    # K = 3: nearest of the pairwise hyperplanes
    W = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])
    d = feature_distance(np.array([[2.0, 1.0]]), np.array([0]), W, np.zeros(3))
    assert d[0] == pytest.approx(min((2 - 1) / np.sqrt(2), (4 + 2) / np.sqrt(5)))


def test_svm_margin_objective_is_minus_feature_distance(setup):
    model, svm, X, y = setup
    scores = svm_scores(model, svm.coef_, svm.intercept_)
    with torch.no_grad():
        obj = svm_margin_objective(svm.coef_, svm.intercept_)(scores(X).double(), y).numpy()
        H = model.features(X).double().numpy()
    np.testing.assert_allclose(-obj, feature_distance(H, y.numpy(), svm.coef_, svm.intercept_), rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------------------ full run
def test_run_adversarial_smoke_writes_consistent_tables(tmp_path, capsys):
    cfg = get_experiment("adversarial-digits", "smoke").settings
    res = run_adversarial(cfg, tmp_path / "adv", progress=True)
    bar = capsys.readouterr().err  # a bar over each seed's stages, naming the one in progress
    n_stages = 3 * len(res.summary["per_seed"])
    assert f"{n_stages}/{n_stages}" in bar and "attacking" in bar
    for name in ("config.json", "points.csv", "curves.csv", "curves_summary.csv", "quantiles.csv",
                 "quantiles_summary.csv", "support_vs_rest.csv", "summary.json", "report.md", "metrics.jsonl", "figures/robustness.png"):
        assert (tmp_path / "adv" / name).stat().st_size > 0
    curves = pd.read_csv(tmp_path / "adv" / "curves.csv")
    clean = res.summary["per_seed"][0]["clean_acc_attacked"]
    assert np.allclose(curves.loc[curves["eps"] == 0, "robust_acc"], clean)
    assert curves["robust_acc"].between(0, clean + 1e-12).all()
    assert curves["success_rate"].between(0, 1).all()
    pts = res.points[res.points["part"] == "test"]
    ok = pts["correct"]
    assert (pts.loc[ok, "quantile"] >= 0).all() and (pts.loc[~ok, "quantile"] == -1).all()
    # a point broken at budget eps has min_eps <= eps; the deepfool size is finite exactly when it succeeded
    assert (np.isfinite(pts["deepfool_l2"]) == pts["deepfool_success"]).all()
    train = res.points[res.points["part"] == "train"]
    assert train["is_support"].sum() == res.summary["per_seed"][0]["n_support"]
    json.loads((tmp_path / "adv" / "summary.json").read_text())
    with pytest.raises(RunExistsError):
        run_adversarial(cfg, tmp_path / "adv")


def test_adversarial_configs_resolve():
    for name in list_experiments(kind="adversarial"):
        for profile in ("smoke", "quick", "paper"):
            cfg = get_experiment(name, profile).settings
            assert cfg["attack"]["reference_linf"] > 0 and len(cfg["classes"]) >= 2
            json.dumps(cfg)
            shape = (1, 8, 8) if "digits" in name else (1, 28, 28)
            model, _ = build_network(cfg["model"], shape, len(cfg["classes"]), seed=0)
            assert model.head.out_features == len(cfg["classes"])
    with pytest.raises(ValueError, match="adversarial-mnist"):
        run_adversarial("adversarial-mnst")
