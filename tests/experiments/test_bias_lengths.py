"""The bias experiment's head-training lengths (issue 13): one row per length, and longer is closer to the SVM."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from nnboundary.experiments import get_experiment
from nnboundary.experiments.bias import (HEAD_LENGTHS, ExperimentConfigError, aggregate_bias_runs, compare_heads,
                                         length_rows, length_study, train_head)


class _FixedFeatures(nn.Module):
    """A 'network' whose feature map is a fixed linear map (so the head sees fixed, separable features)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(2, 2)
        with torch.no_grad():
            self.body.weight.copy_(torch.tensor([[1.0, 0.3], [0.0, 1.0]]))
            self.body.bias.copy_(torch.tensor([2.0, 1.0]))          # features away from the origin: bias matters
        self.head = nn.Linear(2, 2)
        with torch.no_grad():
            self.head.weight.copy_(torch.tensor([[-1.0, -1.0], [1.0, 1.0]]))
            self.head.bias.zero_()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _toy(n: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two separable blobs in 2-D (gap of at least 0.6 between the classes along (1, 1))."""
    rng = np.random.default_rng(seed)
    X0 = rng.uniform(-1.0, 0.0, size=(n // 2, 2))
    X1 = rng.uniform(0.0, 1.0, size=(n - n // 2, 2)) + 0.6
    X = np.vstack([X0, X1]).astype(np.float32)
    return X, np.r_[np.zeros(n // 2), np.ones(n - n // 2)].astype(np.int64)


HEAD = {"input": "features", "reinit": "original", "batch_size": None, "steps": 10, "seeds": [0],
        "lr_scale": "none", "optimizers": {"loss_based": {"lr": 1.0, "lengths": [10, 100, 1000], "dtype": "float64"}}}


def test_one_row_per_length_and_longer_is_closer_to_the_svm() -> None:
    X, y = _toy()
    rows, extras = compare_heads(_FixedFeatures(), X, y, X, y, HEAD)
    runs = pd.DataFrame(rows)
    retrained = runs[runs["condition"].str.startswith("reinit-")]
    assert sorted(retrained["condition"].unique()) == ["reinit-loss_based@10", "reinit-loss_based@100",
                                                        "reinit-loss_based@1000"]
    assert len(retrained) == 3 and set(retrained["head_steps"]) == {10, 100, 1000}
    assert retrained["feature_map_identical"].all()
    table = aggregate_bias_runs(runs)
    lengths = length_rows(table)
    assert [r["head_steps"] for r in lengths] == [10, 100, 1000]          # ordered numerically, not as strings
    first, last = lengths[0], lengths[-1]
    assert last["angle_deg"] <= first["angle_deg"]
    assert last["final_loss"] < first["final_loss"]
    for r in lengths:  # the comparison with the joint head is there and finite
        assert np.isfinite(r["angle_to_joint_deg"]) and np.isfinite(r["offset_minus_joint"])
    # the joint head compared with itself
    joint = table.loc["joint"]
    assert joint["angle_to_joint_deg_mean"] == pytest.approx(0.0, abs=1e-5)   # arccos(1 - eps): ~1e-6 degrees
    assert joint["offset_minus_joint_mean"] == pytest.approx(0.0, abs=1e-12)


def test_a_length_is_the_same_head_as_a_run_of_that_many_steps() -> None:
    X, y = _toy()
    model = _FixedFeatures()
    with torch.no_grad():
        H = model.features(torch.from_numpy(X)).double().numpy()
    a = train_head(model, y=y, H=H, optimizer="loss_based", lr=1.0, steps=50, batch_size=None, seed=0,
                   dtype="float64")
    b = train_head(model, y=y, H=H, optimizer="loss_based", lr=1.0, steps=50, batch_size=None, seed=0,
                   dtype="float64")
    np.testing.assert_array_equal(a["W"], b["W"])                        # seeded: same numbers
    short = train_head(model, y=y, H=H, optimizer="loss_based", lr=1.0, steps=5, batch_size=None, seed=0,
                       dtype="float64")
    assert a["final_loss"] < short["final_loss"]
    with pytest.raises(ValueError, match="float64"):
        train_head(model, y=y, X=X, optimizer="sgd", lr=0.1, steps=2, batch_size=None, seed=0, input="model",
                   dtype="float64")


def test_lengths_in_the_settings_validate_and_quick_is_unchanged() -> None:
    study = {"head": {"input": "features", "optimizers": {"loss_based": length_study()}}}
    assert length_study()["lengths"] == list(HEAD_LENGTHS) == [1000, 10_000, 100_000]
    for name in ("bias-reinit-blobs", "bias-reinit-mnist01"):
        for profile in ("quick", "smoke", "paper"):
            assert set(get_experiment(name, profile).settings["head"]["optimizers"]) == {"sgd", "momentum", "adam"}
            head = get_experiment(name, profile, settings=study).settings["head"]
            assert head["optimizers"]["loss_based"] == {"lr": 1.0, "lengths": [1000, 10_000, 100_000],
                                                        "dtype": "float64", "batch_size": None,
                                                        "target_loss": 1e-300}
    bad = {"head": {"optimizers": {"loss_based": {"lr": 1.0, "lengths": [10, 10]}}}}
    with pytest.raises(ExperimentConfigError, match="distinct"):
        get_experiment("bias-reinit-blobs", "smoke", settings=bad)
    bad = {"head": {"optimizers": {"loss_based": {"lr": 1.0, "dtype": "float64"}}}}   # smoke trains through the model
    with pytest.raises(ExperimentConfigError, match="features"):
        get_experiment("bias-reinit-blobs", "smoke", settings=bad)
