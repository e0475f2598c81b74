"""The verdict words of :mod:`nnboundary.analysis`: does the claim apply to a summary, how close the head is to the SVM
(:func:`claim_status`, :func:`closeness`, :func:`verdict`), and the claims-table verdict :func:`claim_verdict`.

Pure functions of a summary dict, kept apart from the analysis that computes the numbers so that reports can judge
saved summaries without fitting anything.
"""

from __future__ import annotations

from typing import Any

import numpy as np


#: How close the head is to the SVM when the claim applies: the first row whose two bounds both hold.
#: ``(word, largest angle_deg, smallest margin_ratio)``. "converged": the direction is within 2° and the NN's
#: normalised margin is at least 90 % of the SVM's (the paper's converged runs and GD on logistic regression after
#: 2000 steps, 0.2° / 0.99, are here); "approaching": within 15° and at least half the margin; "far" otherwise.
CLOSENESS = (("converged", 2.0, 0.9), ("approaching", 15.0, 0.5))


def claim_status(summary: dict[str, Any]) -> str:
    """Does the claim apply? The words ``reproduce`` uses for its status column.

    ``"not separable"``: the features are not linearly separable (no hard-margin SVM exists; the head was compared
    with a soft-margin SVM). ``"not fitted"``: separable, but the head misclassifies training points (accuracy < 1).
    ``"separable"``: separable and every training point is fitted, so the claim "the head converges to the
    max-margin SVM" applies to these numbers.
    """
    if summary.get("separable") is False:
        return "not separable"
    acc = summary.get("accuracy")
    if acc is not None and acc < 1.0:
        return "not fitted"
    return "separable"


def closeness(summary: dict[str, Any]) -> str | None:
    """``"converged"``, ``"approaching"`` or ``"far"`` (see :data:`CLOSENESS`); None when the claim does not apply."""
    if claim_status(summary) != "separable":
        return None
    angle, ratio = summary.get("angle_deg"), summary.get("margin_ratio")
    if angle is None or ratio is None or not (np.isfinite(angle) and np.isfinite(ratio)):
        return "far"
    for word, max_angle, min_ratio in CLOSENESS:
        if angle <= max_angle and ratio >= min_ratio:
            return word
    return "far"


def verdict(summary: dict[str, Any]) -> str:
    """One sentence: does the claim apply, and how close the head is to the max-margin SVM."""
    st = claim_status(summary)
    acc = summary.get("accuracy")
    if st == "not separable":
        return ("not separable: the features of the last hidden layer are not linearly separable, so the claim does "
                "not apply; the head is compared with a soft-margin SVM (C = "
                f"{summary.get('svm_C')}).")
    if st == "not fitted":
        return (f"not fitted: the features are separable but the head misclassifies training points (accuracy "
                f"{acc:.4f}), so the claim does not apply yet; train to 100 % training accuracy.")
    close = closeness(summary)
    return (f"separable, {close}: the claim applies; the head is {summary.get('angle_deg'):.3g}° from the max-margin "
            f"SVM with {summary.get('margin_ratio'):.3g} of its margin (thresholds: "
            + "; ".join(f"{w} if angle <= {a:g}° and margin ratio >= {r:g}" for w, a, r in CLOSENESS) + "; else far).")


#: The thresholds of :func:`claim_verdict` (see there).
VERDICT_THRESHOLDS = {
    "max_angle_deg": CLOSENESS[0][1],      # "converged" of CLOSENESS: within 2 degrees ...
    "min_margin_ratio": CLOSENESS[0][2],   # ... with at least 90 % of the SVM's margin ...
    "max_abs_offset": 0.1,                 # ... and the boundary within 0.1 SVM margins of the SVM's
    "max_svm_step_angle_deg": 0.5,         # features still moving: the SVM turned more than this in the last interval
    "max_feature_change": 0.01,            # ... or the features changed by more than 1 % in it
    "min_head_decrease_deg": 0.1,          # the head alone still approaches: its angle fell by more than this
    "target_loss": 1e-12,                  # the loss a converge run trains to
}


def _num(x: Any) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return float("nan")
    return v


def claim_verdict(summary: dict[str, Any], *, angle_key: str = "angle_deg", ratio_key: str = "margin_ratio",
                  offset_key: str = "bias_offset", thresholds: dict[str, float] | None = None) -> dict[str, str]:
    """Verdict on "the head converges to this SVM" for a claims table, with a one-line reason.

    Reads a run's summary row: the numbers (``angle_key``, ``ratio_key``, ``offset_key``; pass the ``*_reg`` keys to
    judge against the regularised-bias SVM), ``train_loss`` (else ``loss``), ``stop_reason`` (if the runner
    recorded one; quoted in the reason), and the two diagnostics the runner adds: ``diagnostics``
    (``svm_step_angle_deg`` and ``feature_change`` of the last tracked interval, see
    :class:`nnboundary.tracking.AlignmentTracker`) and ``head_alone`` (the head trained alone on the frozen final
    features, :func:`nnboundary.experiments.convergence.continue_head`; used only for the SVM it was timed
    against, its ``svm_bias``: a head with a bias approaches the regularised-bias SVM). With ``T`` = :data:`VERDICT_THRESHOLDS`
    (``thresholds`` overrides entries), in this order:

    1. the claim's premise is not reached (:func:`claim_status` is not "separable": the features are not separable
       or the head misclassifies training points) → ``"not reached within budget"``;
    2. angle ≤ ``T["max_angle_deg"]`` (2°), margin ratio ≥ ``T["min_margin_ratio"]`` (0.9) and, if recorded,
       ``|offset|`` ≤ ``T["max_abs_offset"]`` (0.1 SVM margins) → ``"supported"``;
    3. the features still move: the last ``svm_step_angle_deg`` > ``T["max_svm_step_angle_deg"]`` (0.5°) or the
       last ``feature_change`` > ``T["max_feature_change"]`` (1 %) → ``"not reached within budget"``;
    4. the head's own slow implicit bias: the head alone still approaches the SVM (its angle fell by more than
       ``T["min_head_decrease_deg"]``, 0.1°; the reason quotes its c / log t fit and whether it holds), or it
       stopped at float64's loss floor (``loss_floor_step``) → ``"not reached within budget"``;
    5. no head-alone run and the loss is above ``T["target_loss"]`` (1e-12) → ``"not reached within budget"``;
    6. otherwise (the features have settled, and the head alone does not approach the SVM, or the loss reached
       the target without the head getting there) → ``"not supported"``.

    Returns
    -------
    dict
        ``verdict``: ``"supported"``, ``"not supported"`` or ``"not reached within budget"``; ``reason``: one line.
    """
    T = {**VERDICT_THRESHOLDS, **(thresholds or {})}
    angle, ratio, offset = (_num(summary.get(k)) for k in (angle_key, ratio_key, offset_key))
    loss = _num(summary.get("train_loss", summary.get("loss")))
    stop = summary.get("stop_reason")
    tail = f"; loss {loss:.3g}" + (f", stopped: {stop}" if stop else "")
    at = f"{angle:.3g}° from the SVM, margin ratio {ratio:.3g}, offset {offset:.3g}"

    def out(word: str, why: str) -> dict[str, str]:
        return {"verdict": word, "reason": why + tail}

    status = claim_status(summary)
    if status != "separable":
        return out("not reached within budget", f"{status}: the claim's premise (separable features, every training "
                   "point fitted) is not reached")
    offset_ok = not np.isfinite(offset) or abs(offset) <= T["max_abs_offset"]
    if angle <= T["max_angle_deg"] and ratio >= T["min_margin_ratio"] and offset_ok:
        return out("supported", at)
    diag = summary.get("diagnostics") or {}
    step_angle, change = _num(diag.get("svm_step_angle_deg")), _num(diag.get("feature_change"))
    span = f"steps {diag.get('previous_step')}–{diag.get('step')}"
    if step_angle > T["max_svm_step_angle_deg"] or change > T["max_feature_change"]:
        return out("not reached within budget", f"{at}; the features still move: the SVM turned {step_angle:.3g}° "
                   f"and the features changed by {change:.3g} (relative) over {span}")
    settled = (f"features settled (SVM turned {step_angle:.3g}°, features changed {change:.3g} over {span})"
               if diag else "no feature-movement diagnostics")
    ha = summary.get("head_alone")
    judged = "regularized" if angle_key.endswith("_reg") else "free"
    if ha and ha.get("svm_bias", judged) != judged:  # the head alone was timed against the other SVM
        ha = None
    if ha:
        a0, a1 = _num(ha.get("angle_start")), _num(ha.get("angle_end"))
        fit = (f"c/log t holds: c = {_num(ha.get('c')):.3g}, R² = {_num(ha.get('r2')):.2f}, steps "
               f"{ha.get('step_min')}–{ha.get('step_max')}" if ha.get("holds") else
               f"c/log t does not hold (R² = {_num(ha.get('r2')):.2f})")
        alone = f"head alone {a0:.3g}°→{a1:.3g}° in {ha.get('steps_run', ha.get('steps'))} steps"
        if a0 - a1 > T["min_head_decrease_deg"]:
            return out("not reached within budget", f"{at}; {settled}; the head's own implicit bias is slow: "
                       f"{alone}, {fit}")
        if ha.get("loss_floor_step") is not None:
            return out("not reached within budget", f"{at}; {settled}; {alone}, stopped by float64's loss floor at "
                       f"step {ha.get('loss_floor_step')}")
        return out("not supported", f"{at}; {settled}, and the {alone}: it does not approach the SVM")
    if not loss <= T["target_loss"]:
        return out("not reached within budget", f"{at}; {settled}; loss above the target {T['target_loss']:g} "
                   "(no head-alone run to tell the two reasons apart)")
    return out("not supported", f"{at}; {settled}; the loss reached {T['target_loss']:g} without the head "
               "getting there")
