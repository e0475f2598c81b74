"""Tests of nnboundary.analysis.claim_verdict on constructed run summaries (one per branch of its rule)."""

from __future__ import annotations

import pytest

from nnboundary.analysis import VERDICT_THRESHOLDS, claim_verdict

BASE = {"separable": True, "accuracy": 1.0, "angle_deg": 8.0, "margin_ratio": 0.7, "bias_offset": 0.3,
        "train_loss": 1e-6}
SETTLED = {"diagnostics": {"step": 3000, "previous_step": 2000, "svm_step_angle_deg": 0.01, "feature_change": 1e-4}}
MOVING = {"diagnostics": {"step": 3000, "previous_step": 2000, "svm_step_angle_deg": 3.2, "feature_change": 1e-4}}


def _head(a0, a1, **kw):
    return {"head_alone": {"steps": 10000, "angle_start": a0, "angle_end": a1, "c": 20.0, "r2": 0.97,
                           "step_min": 50.0, "step_max": 10000.0, "holds": True, "loss_floor_step": None, **kw}}


def test_close_to_the_svm_is_supported():
    v = claim_verdict({**BASE, "angle_deg": 1.2, "margin_ratio": 0.95, "bias_offset": -0.05, "train_loss": 1e-13})
    assert v["verdict"] == "supported" and "1.2°" in v["reason"] and "1e-13" in v["reason"]


def test_each_threshold_on_its_own_blocks_support():
    good = {**BASE, "angle_deg": 1.2, "margin_ratio": 0.95, "bias_offset": -0.05, **SETTLED}
    T = VERDICT_THRESHOLDS
    for key, bad in (("angle_deg", T["max_angle_deg"] + 0.1), ("margin_ratio", T["min_margin_ratio"] - 0.01),
                     ("bias_offset", T["max_abs_offset"] + 0.01)):
        assert claim_verdict({**good, key: bad})["verdict"] != "supported", key
    # another SVM's numbers are judged by their own keys
    reg = {**good, "angle_deg": 30.0, "angle_deg_reg": 1.0, "margin_ratio_reg": 0.99, "bias_offset_reg": 0.0}
    assert claim_verdict(reg)["verdict"] != "supported"
    assert claim_verdict(reg, angle_key="angle_deg_reg", ratio_key="margin_ratio_reg",
                         offset_key="bias_offset_reg")["verdict"] == "supported"


def test_features_still_moving_is_not_reached_and_says_so():
    v = claim_verdict({**BASE, **MOVING, **_head(8.0, 2.0)})
    assert v["verdict"] == "not reached within budget"
    assert "features still move" in v["reason"] and "3.2°" in v["reason"] and "2000–3000" in v["reason"]
    big_change = {"diagnostics": {**MOVING["diagnostics"], "svm_step_angle_deg": 0.0, "feature_change": 0.05}}
    assert "features still move" in claim_verdict({**BASE, **big_change})["reason"]


def test_slow_head_on_settled_features_is_not_reached_with_its_rate():
    v = claim_verdict({**BASE, **SETTLED, **_head(8.0, 5.0), "stop_reason": "budget"})
    assert v["verdict"] == "not reached within budget"
    assert "features settled" in v["reason"] and "implicit bias is slow" in v["reason"]
    assert "c/log t holds: c = 20" in v["reason"] and "stopped: budget" in v["reason"]
    v = claim_verdict({**BASE, **SETTLED, **_head(8.0, 5.0, holds=False, r2=0.3)})
    assert "does not hold" in v["reason"] and v["verdict"] == "not reached within budget"


def test_settled_features_and_a_head_that_does_not_move_is_not_supported():
    v = claim_verdict({**BASE, **SETTLED, **_head(8.0, 7.99)})
    assert v["verdict"] == "not supported" and "does not approach" in v["reason"]
    floor = claim_verdict({**BASE, **SETTLED, **_head(8.0, 7.99, loss_floor_step=200)})
    assert floor["verdict"] == "not reached within budget" and "loss floor at step 200" in floor["reason"]


def test_without_a_head_alone_run_the_loss_decides():
    assert claim_verdict({**BASE, **SETTLED})["verdict"] == "not reached within budget"  # loss 1e-6 > 1e-12
    v = claim_verdict({**BASE, **SETTLED, "train_loss": 1e-14})
    assert v["verdict"] == "not supported" and "without the head" in v["reason"]
    assert "no feature-movement diagnostics" in claim_verdict(BASE)["reason"]


@pytest.mark.parametrize("summary", [{**BASE, "separable": False}, {**BASE, "accuracy": 0.97}])
def test_premise_not_reached(summary):
    v = claim_verdict({**summary, **SETTLED})
    assert v["verdict"] == "not reached within budget" and "premise" in v["reason"]


def test_the_head_alone_run_counts_only_for_the_svm_it_was_timed_against():
    base = {"separable": True, "accuracy": 1.0, "train_loss": 1e-13, "angle_deg": 20.0, "margin_ratio": 0.5,
            "bias_offset": 0.3, "angle_deg_reg": 5.0, "margin_ratio_reg": 0.8, "bias_offset_reg": 0.2,
            "diagnostics": {"svm_step_angle_deg": 0.01, "feature_change": 1e-4, "step": 10, "previous_step": 5},
            "head_alone": {"angle_start": 5.0, "angle_end": 1.0, "steps": 100, "svm_bias": "regularized"}}
    reg = claim_verdict(base, angle_key="angle_deg_reg", ratio_key="margin_ratio_reg", offset_key="bias_offset_reg")
    free = claim_verdict(base)
    assert reg["verdict"] == "not reached within budget" and "head alone 5°→1°" in reg["reason"]
    assert free["verdict"] == "not supported" and "head alone" not in free["reason"]
