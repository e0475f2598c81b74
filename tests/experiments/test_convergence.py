"""Tests of nnboundary.experiments.convergence (the head alone on frozen features) and of what the runner reports
about convergence: ``diagnostics``, ``rates`` and ``head_alone`` in summary.json."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits

from nnboundary.experiments import get_experiment, run_experiment
from nnboundary.experiments.convergence import LOSS_FLOOR, continue_head
from nnboundary.metrics import direction_angle
from nnboundary.svm import MaxMarginClassifier

torch.set_num_threads(1)
threadpool_limits(1)


def _separable_2d(n=40, seed=0):
    rng = np.random.default_rng(seed)
    H = np.r_[rng.normal(size=(n, 2)) * 0.5 + [2.0, 1.0], rng.normal(size=(n, 2)) * 0.5 + [-2.0, -1.0]]
    return H, np.r_[np.ones(n, dtype=np.int64), np.zeros(n, dtype=np.int64)]


def test_head_alone_on_fixed_separable_features_approaches_their_svm():
    H, y = _separable_2d()
    svm = MaxMarginClassifier().fit(H, y)
    c, s = np.cos(np.radians(50)), np.sin(np.radians(50))
    w = np.array([[c, -s], [s, c]]) @ svm.coef_[0] * 0.1  # 50 degrees off the SVM direction
    W, b = np.vstack([-w / 2, w / 2]), np.zeros(2)
    W0, H0 = W.copy(), H.copy()
    out = continue_head(H, y, W, b, svm.coef_, steps=40, lr=1e-3)
    assert out["angle_start"] == pytest.approx(direction_angle(W, svm.coef_))
    assert out["angle_end"] < out["angle_start"] / 3  # this run: 50 deg -> 3.9 deg
    assert out["loss_end"] < out["loss_start"]
    curve = np.array(out["curve"])
    assert curve[:, 0].tolist() == [0, 1, 2, 5, 10, 20, 40]  # 0, the log-spaced steps and the last
    assert curve[-1, 1] == pytest.approx(out["angle_end"])
    assert out["c"] > 0 and out["steps"] == 40 and out["optimizer"] == "loss_based"
    assert out["loss_floor_step"] is None and curve[-1, 2] > LOSS_FLOOR  # this run ends at loss 0.03
    np.testing.assert_array_equal(W, W0)  # inputs not modified
    np.testing.assert_array_equal(H, H0)
    with pytest.raises(ValueError, match="positive int"):
        continue_head(H, y, W, b, svm.coef_, steps=0)


def test_head_continuation_is_off_by_default_and_reported_when_asked(tmp_path):
    assert get_experiment("blobs", "smoke").head_continuation_steps == 0
    assert get_experiment("blobs", "quick").head_continuation_steps == 0
    with pytest.raises(ValueError, match="head_continuation_steps"):
        get_experiment("blobs", "smoke", head_continuation_steps=-1).validate()

    run = run_experiment("blobs", "smoke", tmp_path / "on", progress=False,
                         overrides={"plots": (), "head_continuation_steps": 20})
    row = json.loads((run.run_dir / "summary.json").read_text())["variants"]["main"]
    assert set(row["rates"]) == {"step", "loss"} and row["rates"]["step"]["value"] == "angle_deg"
    metrics = [json.loads(line) for line in (run.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert row["diagnostics"]["step"] == metrics[-1]["step"] and row["diagnostics"]["previous_step"] == \
        metrics[-2]["step"]
    assert row["diagnostics"]["feature_change"] == pytest.approx(metrics[-1]["feature_change"])
    ha = row["head_alone"]
    # a head with a bias is timed against the regularised-bias SVM, the limit gradient descent on it approaches
    assert ha["svm_bias"] == "regularized" and ha["steps"] == 20
    assert ha["angle_start"] == pytest.approx(row["angle_deg_reg"], abs=1e-6)
    assert {"c", "r2", "step_min", "step_max", "holds", "angle_end"} <= set(ha) and "curve" not in ha
    curve = json.loads((run.run_dir / "head_alone.json").read_text())["curve"]
    assert [r[0] for r in curve] == [0, 1, 2, 5, 10, 20] and curve[-1][1] == pytest.approx(ha["angle_end"])
    analysis = json.loads((run.run_dir / "analysis" / "summary.json").read_text())
    assert analysis["angle_deg"] == pytest.approx(row["angle_deg"])  # the continuation worked on a copy
