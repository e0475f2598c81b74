"""Real-image experiments and the bias experiment: configs, smoke runs, bookkeeping, errors.

Smoke runs on MNIST / CIFAR-10 use the shared copies in ``<repo>/../shared/data`` and are skipped when
they are absent; the runs on scikit-learn's bundled digits and on simulated blobs always work.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import SHARED_DATA
import torch

from nnboundary.data import DatasetNotFoundError, ENV_VAR
from nnboundary.experiments import PROFILES, get_experiment, list_experiments
from nnboundary.experiments.bias import (
    feature_map_state,
    reinit_head_,
    run_bias_reinit,
    same_state,
    svm_head,
    train_head,
)
from nnboundary.experiments.images import (
    ExperimentConfigError,
    load_trained_model,
    run_image_experiment,
)
from nnboundary.models import ResNetMNIST
from nnboundary.svm import MaxMarginClassifier
from nnboundary.train import fit

SHARED = SHARED_DATA
HAS_MNIST = (SHARED / "mnist.npz").is_file()
HAS_CIFAR = (SHARED / "cifar10_airplane_bird.npz").is_file()
DIGITS01 = {"data": {"name": "digits", "classes": [0, 1], "subsample": None, "test_subsample": None}}


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def mnist01_run(tmp_path_factory):
    """One smoke run of mnist01-resnet, shared by the tests that need a trained MNIST network."""
    if not HAS_MNIST:
        pytest.skip(f"shared MNIST copy not found in {SHARED}")
    out = tmp_path_factory.mktemp("mnist01") / "run"
    torch.set_num_threads(1)
    return out, run_image_experiment("mnist01-resnet", "smoke", out, data_dir=SHARED)


# ------------------------------------------------------------------------------------------ configs
def settings(name, profile, overrides=None):
    return get_experiment(name, profile, settings=overrides).settings


_CONVERGE_IMAGES = ("mnist01-resnet", "mnist012-densenet")


@pytest.mark.parametrize("name", list_experiments(kind="image"))
@pytest.mark.parametrize("profile", PROFILES)
def test_image_profiles_validate(name, profile):
    if profile == "converge" and name not in _CONVERGE_IMAGES:
        with pytest.raises(ValueError, match="no converge settings"):
            settings(name, profile)
        return
    cfg = settings(name, profile)
    if profile == "converge":
        assert cfg["train"]["optimizer"] == "loss_based" and cfg["train"]["target_loss"] == 1e-12
        assert cfg["train"]["batch_size"] is None and cfg["label"].startswith("converge")
    assert cfg["experiment"] == name and cfg["profile"] == profile
    assert 0.9 < cfg["reference"]["test_accuracy"] < 1.0
    if profile == "quick":
        assert cfg["label"] == "quick (CPU, reduced)"
        assert cfg["data"].get("subsample") is not None          # a subset of the training set
    if profile == "paper":
        assert cfg["data"].get("subsample") is None and cfg["data"].get("test_subsample") is None
        assert cfg["train"]["optimizer"] in ("adam", "momentum")


@pytest.mark.parametrize("name", list_experiments(kind="bias"))
@pytest.mark.parametrize("profile", PROFILES)
def test_bias_profiles_validate(name, profile):
    cfg = settings(name, profile)
    if profile == "converge":  # the head-length study: loss-based float64 heads to the float64 loss floor
        (spec,) = cfg["head"]["optimizers"].values()
        assert set(cfg["head"]["optimizers"]) == {"loss_based"} and spec["lengths"] == [1000, 10_000, 100_000]
        assert spec["dtype"] == "float64" and 0 < spec["target_loss"] < 1e-250
        return
    assert set(cfg["head"]["optimizers"]) == {"sgd", "momentum", "adam"}
    assert len(cfg["head"]["seeds"]) >= 2


@pytest.mark.parametrize("overrides, match", [
    ({"bogus": 1}, "unknown keys"),
    ({"train": {"optimizer": "lbfgs"}}, "optimizer"),
    ({"train": {"steps": 10, "epochs": 2}}, "exactly one of"),
    ({"train": {"lr": -1.0}}, "lr"),
    ({"model": {"kwargs": {"no_such_argument": 3}}}, "no_such_argument"),
    ({"data": {"name": "imagenet"}}, "data.name"),
    ({"data": {"subsample": 0}}, "subsample"),
    ({"analysis": {"figures": ["pie_chart"]}}, "pie_chart"),
])
def test_invalid_image_config_is_rejected(overrides, match):
    with pytest.raises(ExperimentConfigError, match=match):
        settings("mnist01-resnet", "smoke", overrides)


def test_unknown_names_are_rejected():
    with pytest.raises(ValueError, match="mnist01-resnet"):
        run_image_experiment("mnist01-resent", "quick")
    with pytest.raises(ValueError, match="profile"):
        settings("mnist01-resnet", "huge")
    with pytest.raises(ValueError, match="bias experiment, not of kind 'image'"):
        run_image_experiment("bias-reinit-blobs", "smoke")
    with pytest.raises(ExperimentConfigError, match="head.input"):
        settings("bias-reinit-blobs", "smoke", {"head": {"input": "pixels"}})
    with pytest.raises(ExperimentConfigError, match="figure_optimizer"):
        settings("bias-reinit-blobs", "smoke", {"figure_optimizer": "rmsprop"})
    with pytest.raises(ExperimentConfigError, match="network: Unknown experiment 'mnist01-resent'"):
        settings("bias-reinit-mnist01", "smoke", {"network": {"image_experiment": "mnist01-resent"}})


# ------------------------------------------------------------------------------------- smoke runs
def _check_run(out: Path, summary: dict, figures: bool = True) -> None:
    for f in ("summary.json", "config.json", "report.md", "model.pt"):
        assert (out / f).is_file(), f
    assert json.loads((out / "summary.json").read_text())["test_accuracy"] == pytest.approx(summary["test_accuracy"])
    assert 0.0 <= summary["test_accuracy"] <= 1.0
    assert summary["n_dead_units"] == sum(summary["dead_units"])
    report = (out / "report.md").read_text()
    assert summary["dead_units_note"] in report and summary["label"] in report
    if summary["analysis"] is None:                       # every transformed-space unit dead
        assert summary["n_dead_units"] == len(summary["dead_units"]) and summary["figures"] == {}
    else:
        assert 0.0 <= summary["angle_deg"] <= 180.0
        assert 0.0 <= summary["agreement_test"] <= 1.0
        assert (out / summary["figures"]["nn_vs_svm"]).is_file() if figures else summary["figures"] == {}


def test_smoke_run_on_digits_always_works(tmp_path):
    out = tmp_path / "digits"
    summary = run_image_experiment("mnist01-resnet", "smoke", out, overrides=DIGITS01)
    _check_run(out, summary)
    assert summary["classes"] == [0, 1] and summary["model"]["kwargs"]["in_channels"] == 1

    # the saved network is the trained one: it reproduces the reported test accuracy
    model, cfg = load_trained_model(out)
    from nnboundary.experiments.images import load_image_data

    ds = load_image_data(cfg, seed=cfg["seed"])
    with torch.no_grad():
        acc = (model(torch.from_numpy(ds.x_test)).argmax(1).numpy() == ds.y_test).mean()
    assert acc == pytest.approx(summary["test_accuracy"])

    with pytest.raises(FileExistsError, match="force"):
        run_image_experiment("mnist01-resnet", "smoke", out, overrides=DIGITS01)
    (out / "keep.txt").write_text("user file")
    no_figures = {**DIGITS01, "analysis": {"figures": []}}
    again = run_image_experiment("mnist01-resnet", "smoke", out, overrides=no_figures, force=True)
    assert again["test_accuracy"] == summary["test_accuracy"]          # same seed, same numbers on CPU
    assert (out / "keep.txt").is_file()                                 # force removes only our outputs


def test_smoke_run_mnist01(mnist01_run):
    out, summary = mnist01_run
    _check_run(out, summary)
    assert summary["n_train"] == 64 and summary["classes"] == [0, 1]


@pytest.mark.parametrize("name, channels, n_classes, figures", [
    ("mnist012-densenet", 1, 3, True),
    ("cifar10-airplane-bird-densenet", 3, 2, False),      # figures are drawn in the other smoke runs
    ("mnist-10class-densenet", 1, 10, False),
])
def test_smoke_run_densenet_experiments(tmp_path, name, channels, n_classes, figures):
    needed = SHARED / ("cifar10_airplane_bird.npz" if channels == 3 else "mnist.npz")
    if not needed.is_file():
        pytest.skip(f"shared copy {needed} not found")
    overrides = None if figures else {"analysis": {"figures": []}}
    summary = run_image_experiment(name, "smoke", tmp_path / name, data_dir=SHARED, overrides=overrides)
    _check_run(tmp_path / name, summary, figures)
    assert summary["model"]["kwargs"]["in_channels"] == channels
    assert summary["model"]["kwargs"]["n_classes"] == n_classes == len(summary["classes"])


def test_missing_data_gives_the_data_modules_error(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    empty, out = tmp_path / "empty", tmp_path / "out"
    empty.mkdir()
    with pytest.raises(DatasetNotFoundError) as err:
        run_image_experiment("mnist01-resnet", "smoke", out, data_dir=empty)
    assert "Could not find the MNIST data set" in str(err.value) and str(empty) in str(err.value)
    assert not out.exists()                                              # nothing written before the data


# ------------------------------------------------------------------------------ bias bookkeeping
def _bn_resnet(seed: int = 0) -> tuple[ResNetMNIST, torch.Tensor, torch.Tensor]:
    """A tiny BatchNorm ResNet trained a few steps (so its BN statistics are not the initial ones)."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(48, 1, 8, 8, generator=g)
    y = (X[:, 0, :4].mean(dim=(1, 2)) > 0).long()
    model = ResNetMNIST(width=4, stages=[[2, 8, 1]], fc_width=8, seed=seed)
    fit(model, X, y, optimizer="adam", lr=1e-2, steps=5, batch_size=16, progress=False)
    return model, X, y


def test_head_retraining_leaves_feature_map_bit_identical():
    model, X, y = _bn_resnet()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    run = train_head(model, y=y.numpy(), X=X, optimizer="momentum", lr=0.05, steps=8, batch_size=16, seed=3,
                     input="model")
    trained = run["model"]
    assert run["feature_map_identical"]
    buffers = [k for k in before if "running_" in k or "num_batches" in k]
    assert buffers                                                          # BN buffers are checked too
    for k, v in trained.state_dict().items():
        if not k.startswith("head."):
            assert torch.equal(v, before[k]), k                             # weights AND BN buffers
    assert not torch.equal(trained.head.weight, before["head.weight"])     # but the head did train
    for k, v in model.state_dict().items():                                 # the caller's model is untouched
        assert torch.equal(v, before[k]), k

    # negative control: training the whole network moves the BN statistics, so the check can fail
    whole = copy.deepcopy(model)
    fit(whole, X, y, optimizer="sgd", lr=1e-3, steps=1, batch_size=16, progress=False)
    assert not same_state(feature_map_state(model), feature_map_state(whole))


def test_features_path_matches_model_path():
    model, X, y = _bn_resnet(1)
    with torch.no_grad():
        H = model.eval().features(X).double().numpy()
    kw = dict(y=y.numpy(), optimizer="adam", lr=0.01, steps=12, batch_size=16, seed=5)
    on_model = train_head(model, X=X, input="model", **kw)
    on_features = train_head(model, H=H, input="features", **kw)
    np.testing.assert_allclose(on_features["W"], on_model["W"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(on_features["b"], on_model["b"], rtol=1e-5, atol=1e-6)
    assert on_features["feature_map_identical"] and on_model["feature_map_identical"]


def test_reinit_head_is_seeded_and_original_scaled():
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    reinit_head_(a, "original", seed=7)
    reinit_head_(b, "original", seed=7)
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
    assert torch.all(a.bias == 0.01) and torch.all(a.weight.abs() <= 0.1)   # truncated at 2 std = 0.1
    reinit_head_(b, "original", seed=8)
    assert not torch.equal(a.weight, b.weight)


@pytest.mark.parametrize("K", [2, 3])
def test_svm_head_makes_the_svm_decisions(K):
    rng = np.random.default_rng(0)
    H = np.concatenate([rng.normal(3 * k, 0.3, size=(20, 2)) for k in range(K)])
    y = np.repeat(np.arange(K), 20)
    svm = MaxMarginClassifier().fit(H, y)
    W, b = svm_head(svm, K)
    assert W.shape == (K, 2) and b.shape == (K,)
    np.testing.assert_array_equal((H @ W.T + b).argmax(1), svm.predict(H))
    if K == 2:
        np.testing.assert_allclose((H @ W.T + b) @ [-1, 1], svm.decision_function(H), rtol=1e-12, atol=1e-12)


def test_bias_experiment_on_blobs(tmp_path):
    out = tmp_path / "bias"
    summary = run_bias_reinit("bias-reinit-blobs", "smoke", out)
    cfg = settings("bias-reinit-blobs", "smoke")
    n_reinit = len(cfg["head"]["optimizers"]) * len(cfg["head"]["seeds"])
    runs = pd.read_csv(out / "bias_runs.csv")
    assert (runs["condition"].str.startswith("reinit-")).sum() == n_reinit == summary["n_heads_retrained"]
    curves = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert {(c["condition"], c["head_seed"]) for c in curves} == {
        (f"reinit-{o}", s) for o in cfg["head"]["optimizers"] for s in cfg["head"]["seeds"]}
    assert all(c["step"] >= 1 and c["train_loss"] >= 0 for c in curves)
    assert (out / "report.md").is_file() and (out / "figures").is_dir()
    assert summary["feature_map_identical"] and runs["feature_map_identical"].dropna().all()
    table = summary["table"]
    assert set(table) == {"joint", "reinit-sgd", "reinit-momentum", "reinit-adam", "svm", "svm-regularized"}
    # (c): the head set to the SVM has angle 0 and offset 0 to it, and the regularised one to its own SVM
    assert table["svm"]["angle_deg_mean"] == pytest.approx(0.0, abs=1e-4)
    assert table["svm"]["bias_offset_mean"] == pytest.approx(0.0, abs=1e-6)
    assert table["svm"]["margin_ratio_mean"] == pytest.approx(1.0, abs=1e-6)
    assert table["svm-regularized"]["bias_offset_reg_mean"] == pytest.approx(0.0, abs=1e-6)
    assert table["svm-regularized"]["angle_deg_reg_mean"] == pytest.approx(0.0, abs=1e-4)
    # mean and spread over seeds are those of the single runs
    sgd = runs[runs["condition"] == "reinit-sgd"]["angle_deg"]
    assert table["reinit-sgd"]["angle_deg_mean"] == pytest.approx(sgd.mean())
    assert table["reinit-sgd"]["angle_deg_std"] == pytest.approx(sgd.std())
    assert (out / "figures" / "bias_three_panel.png").is_file()
    assert "| joint |" in (out / "report.md").read_text()
    by_network = pd.read_csv(out / "bias_table_by_network.csv")
    assert set(by_network["network_seed"]) == set(cfg["network_seeds"])


def test_bias_experiment_reuses_a_trained_mnist_network(mnist01_run, tmp_path):
    run_dir, image_summary = mnist01_run
    if image_summary["analysis"] is None:
        pytest.skip("the smoke network has no live transformed-space unit")
    summary = run_bias_reinit("bias-reinit-mnist01", "smoke", tmp_path / "bias", model_dir=run_dir,
                              data_dir=SHARED, overrides={"head": {"seeds": [0]}})
    assert summary["feature_map_identical"]                  # smoke retrains through the frozen ResNet
    joint = summary["table"]["joint"]
    assert joint["angle_deg_mean"] == pytest.approx(image_summary["angle_deg"], rel=1e-6, abs=1e-6)
    assert joint["test_accuracy_mean"] == pytest.approx(image_summary["test_accuracy"])
    assert summary["table"]["svm"]["angle_deg_mean"] == pytest.approx(0.0, abs=1e-4)


def test_model_dir_is_refused_for_simulated_networks(tmp_path):
    with pytest.raises(ExperimentConfigError, match="model_dir"):
        run_bias_reinit("bias-reinit-blobs", "smoke", tmp_path / "x", model_dir=tmp_path)
