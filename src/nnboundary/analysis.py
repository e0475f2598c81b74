"""``analyze``: compare a classifier's last layer with the max-margin SVM on its own features.

The features ``H = φ(X)`` (the head's input) are extracted once, the SVM is fitted once (plus the
regularised-bias SVM that gradient descent on a layer with a bias targets), the NN margins are
computed once, and then the pure functions of :mod:`nnboundary.metrics` produce the numbers.
Non-separable features do not fail: they are reported as ``separable=False`` and compared with
a soft-margin SVM.
"""

from __future__ import annotations

import contextlib

import inspect
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nnboundary._jsonio import atomic_write
from nnboundary._jsonio import to_jsonable as _jsonable
import pandas as pd
from sklearn.base import clone

from nnboundary import metrics as M
from nnboundary.features import LABEL_KEYS, extract_features, head_params

__all__ = ["Analysis", "analyze", "analyze_features", "default_svm", "fit_svm", "fit_svms", "SUMMARY_KEYS", "CLOSENESS",
           "claim_status", "closeness", "verdict", "claim_verdict", "VERDICT_THRESHOLDS"]

logger = logging.getLogger(__name__)

#: Keys always present in ``Analysis.summary`` (others depend on the data: test set, D = 2, ...).
SUMMARY_KEYS = (
    "cosine", "angle_deg", "margin_ratio", "bias_offset", "agreement_train", "n_support",
    "sv_overlap_jaccard", "separable", "loss", "accuracy", "status", "closeness", *M.NC_KEYS,
)
_FILES = ("summary.json", "details.csv", "features.npz", "settings.json")
_ACTIVE_TOL = 1e-4  # an SVM pair constraint within this of 1 counts as active


# ----------------------------------------------------------------------------- verdict

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
    features, :func:`nnboundary.experiments.convergence.continue_head`). With ``T`` = :data:`VERDICT_THRESHOLDS`
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
    if ha:
        a0, a1 = _num(ha.get("angle_start")), _num(ha.get("angle_end"))
        fit = (f"c/log t holds: c = {_num(ha.get('c')):.3g}, R² = {_num(ha.get('r2')):.2f}, steps "
               f"{ha.get('step_min')}–{ha.get('step_max')}" if ha.get("holds") else
               f"c/log t does not hold (R² = {_num(ha.get('r2')):.2f})")
        alone = f"head alone {a0:.3g}°→{a1:.3g}° in {ha.get('steps')} steps"
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


# ----------------------------------------------------------------------------- result


@dataclass
class Analysis:
    """The comparison of one network head with the max-margin SVM on its features.

    Attributes
    ----------
    summary : dict
        Flat, JSON-serialisable numbers (see :func:`analyze_features` for every key).
    details : DataFrame
        One row per scope: ``overall``, each ``class`` (K > 2) and each class ``pair``, with
        columns cosine, angle_deg, margin_nn, margin_svm, margin_ratio, bias_offset,
        bias_offset_gap, bias_offset_means, bias_offset_reg, active.
    points : DataFrame
        One row per training point: label, nn_pred, svm_pred, margin_nn, margin_svm (geometric),
        loss, is_support.
    svm, svm_regularized : fitted estimators (``svm_regularized`` may be None)
    features : ndarray of shape (N, D)
    labels : ndarray of shape (N,)
    logits : ndarray of shape (N, K)
    nn_coef, nn_intercept : ndarray of shape (K, D), (K,)
        The head as it is (K = 1 for a single-logit head).
    settings : dict
        Everything needed to redo the analysis (SVM parameters, head, soft_C, ...).
    features_test, labels_test, logits_test : arrays or None
    """

    summary: dict[str, Any]
    details: pd.DataFrame
    points: pd.DataFrame
    svm: Any
    svm_regularized: Any
    features: np.ndarray
    labels: np.ndarray
    logits: np.ndarray
    nn_coef: np.ndarray
    nn_intercept: np.ndarray
    settings: dict[str, Any] = field(default_factory=dict)
    features_test: np.ndarray | None = None
    labels_test: np.ndarray | None = None
    logits_test: np.ndarray | None = None

    @property
    def svm_coef(self) -> np.ndarray:
        """SVM weights, shape (1, D) if binary else (K, D)."""
        return np.asarray(self.svm.coef_, dtype=np.float64)

    @property
    def svm_intercept(self) -> np.ndarray:
        """SVM intercepts, shape (1,) or (K,)."""
        return np.atleast_1d(np.asarray(self.svm.intercept_, dtype=np.float64))

    @property
    def support(self) -> np.ndarray:
        """Indices of the SVM's support vectors among the training points, shape (n_support,)."""
        return np.flatnonzero(self.points["is_support"].to_numpy())

    @property
    def head_name(self) -> str:
        return str(self.summary.get("head", ""))

    def __repr__(self) -> str:
        s = self.summary
        return (f"Analysis(head={s.get('head')!r}, N={s.get('n_samples')}, D={s.get('n_features')}, "
                f"K={s.get('n_classes')}, cosine={s.get('cosine'):.6g}, "
                f"margin_ratio={s.get('margin_ratio')}, separable={s.get('separable')})")

    # -- persistence -------------------------------------------------------------------------
    def save(self, out_dir: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write summary.json, details.csv, features.npz and settings.json into ``out_dir``.

        Each file is written to a temporary file in the same directory and moved into place with
        ``os.replace``, so a crash never leaves a half-written file. NaN/inf become JSON null.

        Raises
        ------
        FileExistsError
            ``out_dir`` already holds a result (any of the four files) and ``overwrite`` is False.
        """
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        existing = [f for f in _FILES if (out / f).exists()]
        if existing and not overwrite:
            raise FileExistsError(
                f"{out} already holds an analysis ({', '.join(existing)}). Pass overwrite=True (the CLI's "
                "--force) or choose another directory."
            )
        atomic_write(out / "summary.json", lambda f: f.write(_dumps(self.summary).encode()), binary=True)
        atomic_write(out / "settings.json", lambda f: f.write(_dumps(self.settings).encode()), binary=True)
        atomic_write(out / "details.csv", lambda f: f.write(self.details.to_csv(index=False).encode()), binary=True)
        atomic_write(out / "features.npz", lambda f: np.savez_compressed(f, **self._arrays()), binary=True)
        return out

    def _arrays(self) -> dict[str, np.ndarray]:
        arrays = {
            "features": self.features, "labels": self.labels, "logits": self.logits,
            "nn_coef": self.nn_coef, "nn_intercept": self.nn_intercept,
            "svm_coef": self.svm_coef, "svm_intercept": self.svm_intercept,
            "support": self.support, "margin_nn": self.points["margin_nn"].to_numpy(),
            "loss": self.points["loss"].to_numpy(),
        }
        if self.svm_regularized is not None:
            arrays["svm_reg_coef"] = np.asarray(self.svm_regularized.coef_, dtype=np.float64)
            arrays["svm_reg_intercept"] = np.atleast_1d(np.asarray(self.svm_regularized.intercept_, dtype=np.float64))
        for name in ("features_test", "labels_test", "logits_test"):
            if getattr(self, name) is not None:
                arrays[name] = getattr(self, name)
        return arrays

    @classmethod
    def load(cls, out_dir: str | os.PathLike[str]) -> Analysis:
        """Read a saved analysis back. The SVMs come back as light objects holding coef_/intercept_."""
        out = Path(out_dir)
        missing = [f for f in _FILES if not (out / f).exists()]
        if missing:
            raise FileNotFoundError(f"{out} is not a saved analysis: missing {', '.join(missing)}.")
        summary = json.loads((out / "summary.json").read_text())
        settings = json.loads((out / "settings.json").read_text())
        details = pd.read_csv(out / "details.csv")
        with np.load(out / "features.npz", allow_pickle=False) as z:
            a = {k: z[k] for k in z.files}
        N = len(a["labels"])
        sup = np.zeros(N, dtype=bool)
        sup[a["support"]] = True
        svm = _LoadedLinear(a["svm_coef"], a["svm_intercept"], a["support"])
        svm_reg = (_LoadedLinear(a["svm_reg_coef"], a["svm_reg_intercept"], np.empty(0, int))
                   if "svm_reg_coef" in a else None)
        points = _points_frame(a["features"], a["labels"], a["nn_coef"], a["nn_intercept"], svm.coef_,
                               svm.intercept_, a["loss"], sup)
        return cls(summary=summary, details=details, points=points, svm=svm, svm_regularized=svm_reg,
                   features=a["features"], labels=a["labels"], logits=a["logits"], nn_coef=a["nn_coef"],
                   nn_intercept=a["nn_intercept"], settings=settings,
                   features_test=a.get("features_test"), labels_test=a.get("labels_test"),
                   logits_test=a.get("logits_test"))


@dataclass
class _LoadedLinear:
    """Stands in for a fitted SVM after ``Analysis.load``: only the learned linear rule."""

    coef_: np.ndarray
    intercept_: np.ndarray
    support_: np.ndarray


def _dumps(obj: Any) -> str:
    return json.dumps(_jsonable(obj), indent=2, allow_nan=False) + "\n"


# ----------------------------------------------------------------------------- SVM fitting


def default_svm(*, bias: str = "free", C: float | None = None, multiclass: str = "crammer_singer") -> Any:
    """The reference SVM: an exact hard-margin ``MaxMarginClassifier`` (Crammer–Singer if K > 2)."""
    from nnboundary.svm import MaxMarginClassifier

    return MaxMarginClassifier(C=C, bias=bias, multiclass=multiclass)


def _accepts_init_support(est: Any) -> bool:
    try:
        return "init_support" in inspect.signature(est.fit).parameters
    except (TypeError, ValueError):
        return False


def fit_svm(template: Any, H: np.ndarray, y: np.ndarray, soft_C: float,
            init_support: np.ndarray | None = None, progress: str | None = None) -> tuple[Any, bool | None]:
    """The one hard-then-soft SVM fallback: fit a clone of ``template``; if it is a hard margin and the features
    are not separable, a soft margin with C=soft_C instead.

    ``progress``: a label (e.g. "SVM, free bias"): show a progress bar of the solver's working-set rounds when the
    estimator reports them (``MaxMarginClassifier(progress=...)``).

    Returns the fitted estimator and ``True``/``False`` if separability was decided by the hard
    margin fit, None if the template was already a soft-margin estimator.
    """
    from nnboundary.svm import NotSeparableError

    est = clone(template)
    params = est.get_params()
    hard = "C" in params and params["C"] is None
    kw = {}
    if init_support is not None and _accepts_init_support(est):
        kw["init_support"] = init_support[(init_support >= 0) & (init_support < len(y))]
    try:
        with _svm_progress(est, progress):
            est.fit(H, y, **kw)
        return est, (True if hard else None)
    except NotSeparableError:
        if not hard:
            raise
        logger.info("Features are not separable; comparing with a soft-margin SVM (C=%g).", soft_C)
    est = clone(template).set_params(C=soft_C)
    with _svm_progress(est, progress and f"{progress}, soft margin C={soft_C:g}"):
        est.fit(H, y, **kw)
    return est, False


@contextlib.contextmanager
def _svm_progress(est: Any, label: str | None):
    """A tqdm bar fed by the estimator's per-round reports while it fits (nothing if it has no ``progress``)."""
    if not label or "progress" not in est.get_params():
        yield
        return
    from tqdm.auto import tqdm

    bar = tqdm(desc=label, unit="round", leave=True)

    def report(info):
        bar.update(1)
        bar.set_postfix_str(f"{info.n_working} units, {info.n_violators} violators, "
                            f"max violation {info.max_violation:.1e}, gap ≤ {info.gap:.1e}")
    est.set_params(progress=report)
    try:
        yield
    finally:
        est.set_params(progress=None)
        bar.close()


def fit_svms(H: np.ndarray, y: np.ndarray, svm: Any, svm_regularized: Any, *, soft_C: float = 1.0,
             init_support: Any = None, init_support_regularized: Any = None,
             progress: bool = False, fitted: bool = False) -> tuple[Any, bool | None, Any]:
    """The one place where ``analyze`` fits its SVMs: the reference SVM, then the regularised-bias one.

    The regularised-bias SVM is warm-started from the reference SVM's support set unless
    ``init_support_regularized`` is given: the two differ only in the bias term, so their active sets mostly
    coincide, and the second fit costs a fraction of the first instead of as much again.

    Parameters
    ----------
    H : ndarray of shape (N, D)
    y : ndarray of shape (N,)
    svm : estimator
        Template of the reference SVM (cloned). A hard margin that is not separable falls back to C=soft_C.
    svm_regularized : estimator or False
        Template of the regularised-bias SVM, or False to skip it.
    soft_C : float, default=1.0
    init_support, init_support_regularized : ndarray of int, default=None
        Warm starts (previous support sets).
    progress : bool, default=False
        Show which SVM is being solved, with a bar of its working-set rounds.
    fitted : bool, default=False
        ``svm`` and ``svm_regularized`` are already fitted on these (H, y): use them as they are (no clone, no
        refit), e.g. to compare several heads of one network with the same SVMs.

    Returns
    -------
    est : fitted reference SVM
    separable : bool or None
        Decided by the hard-margin fit; None for a soft-margin template.
    est_reg : fitted regularised-bias SVM or None
    """
    if fitted:
        return svm, (svm.get_params().get("C", 0) is None), (None if svm_regularized is False else svm_regularized)
    est, separable = fit_svm(svm, H, y, soft_C, _opt_idx(init_support),
                              progress="SVM (reference)" if progress else None)
    est_reg = None
    if svm_regularized is not False:
        reg = svm_regularized
        if separable is False and "C" in reg.get_params() and reg.get_params()["C"] is None:
            reg = clone(reg).set_params(C=soft_C)  # same separability question: skip the failing hard fit
        warm = init_support_regularized
        if warm is None:
            warm = getattr(est, "support_", None)
        est_reg, _ = fit_svm(reg, H, y, soft_C, _opt_idx(warm),
                              progress="SVM (regularised bias)" if progress else None)
    return est, separable, est_reg


def _svm_rule(est: Any, K: int) -> tuple[np.ndarray, np.ndarray]:
    V = np.atleast_2d(np.asarray(est.coef_, dtype=np.float64))
    c = np.atleast_1d(np.asarray(getattr(est, "intercept_", np.zeros(V.shape[0])), dtype=np.float64))
    if V.shape[0] not in ({1} if K == 2 else {K}):
        raise ValueError(
            f"The SVM's coef_ has shape {V.shape}, but with {K} classes nnboundary needs "
            f"{'(1, D)' if K == 2 else f'({K}, D)'} (one row per class; one-vs-one SVMs are not "
            "supported). Use nnboundary.svm.MaxMarginClassifier."
        )
    if c.shape[0] != V.shape[0]:
        c = np.broadcast_to(c, (V.shape[0],)).copy()
    return V, c


def _svm_support(est: Any, H: np.ndarray, y: np.ndarray, V: np.ndarray, c: np.ndarray) -> np.ndarray:
    sup = getattr(est, "support_", None)
    if sup is not None:
        return np.unique(np.asarray(sup, dtype=np.int64))
    m = M.functional_margins(H, y, V, c)  # no support_ (e.g. LinearSVC): the active constraints
    return np.flatnonzero(m <= 1 + _ACTIVE_TOL)


# ----------------------------------------------------------------------------- input checks


def _check_inputs(H: Any, y: Any, W: Any, b: Any, what: str = "training") -> tuple[np.ndarray, ...]:
    H = np.asarray(H, dtype=np.float64)
    W = np.atleast_2d(np.asarray(W, dtype=np.float64))
    b = np.zeros(W.shape[0]) if b is None else np.atleast_1d(np.asarray(b, dtype=np.float64))
    if H.ndim != 2:
        raise ValueError(f"{what} features must have shape (N, D), got {H.shape}.")
    if H.shape[0] == 0:
        raise ValueError(f"The {what} data is empty (0 samples); pass at least one sample per class.")
    if H.shape[1] != W.shape[1]:
        raise ValueError(
            f"{what} features have {H.shape[1]} columns, but the head expects {W.shape[1]}. Extract "
            "features with the same head."
        )
    if not np.isfinite(H).all():
        rows = np.flatnonzero(~np.isfinite(H).all(axis=1))
        raise ValueError(
            f"{what} features contain NaN/inf in {rows.size} rows (first: {rows[:5].tolist()}). "
            "Check the inputs and the model for overflow."
        )
    if not (np.isfinite(W).all() and np.isfinite(b).all()):
        raise ValueError("The head's weights contain NaN/inf; the network diverged. Lower the learning rate.")
    y = _check_labels(y, H.shape[0], W.shape[0], what)
    return H, y, W, b


def _check_labels(y: Any, N: int, n_out: int, what: str) -> np.ndarray:
    if y is None:
        raise ValueError(f"The {what} data has no labels; pass y= or batches of (x, y).")
    y = np.asarray(y)
    if y.shape != (N,):
        raise ValueError(f"{what} labels have shape {y.shape}, expected ({N},): one class index per sample.")
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            raise ValueError(f"{what} labels must be integer class indices, got non-integer values.")
    elif y.dtype.kind not in "iub":
        raise ValueError(f"{what} labels must be integer class indices 0..K-1, got dtype {y.dtype}.")
    y = y.astype(np.int64)
    K = max(2, n_out)
    if y.min() < 0 or y.max() >= K:
        kind = "a single-logit head (labels 0/1)" if n_out == 1 else f"a head with {n_out} outputs"
        raise ValueError(
            f"{what} labels range over {y.min()}..{y.max()}, but the model has {kind}, so labels "
            f"must lie in 0..{K - 1}. Map the labels to the head's output indices or pass the right head=."
        )
    return y


def _check_all_classes(y: np.ndarray, K: int) -> None:
    missing = sorted(set(range(K)) - set(np.unique(y).tolist()))
    if missing:
        raise ValueError(
            f"Classes {missing} of the head's {K} have no training samples; the SVM needs every class "
            "the head scores. Pass data that contains all classes."
        )


# ----------------------------------------------------------------------------- entry points


def analyze(
    model: Any,
    X: Any,
    y: Any = None,
    head: Any = None,
    svm: Any = None,
    X_test: Any = None,
    y_test: Any = None,
    *,
    svm_regularized: Any = None,
    soft_C: float = 1.0,
    batch_size: int = 1024,
    device: Any = None,
    progress: bool = False,
    grid_resolution: int = 200,
    init_support: np.ndarray | None = None,
    init_support_regularized: np.ndarray | None = None,
    forward: Any = None,
    label_key: Any = LABEL_KEYS,
) -> Analysis:
    """Compare a classifier's last linear layer with the max-margin SVM on its features.

    Parameters
    ----------
    model : nn.Module
        Any classifier whose logits are the output of an ``nn.Linear`` head.
    X : Tensor or ndarray of shape (N, *), tuple (X, y), Dataset or DataLoader
        Training inputs (the SVM is fitted on their features).
    y : array-like of shape (N,), default=None
        Integer labels in 0..K-1, unless X already carries them.
    head : str or nn.Module, default=None
        The head; None discovers it (see :mod:`nnboundary.features`).
    svm : estimator, default=None
        Template of the reference SVM (cloned, never modified). None: exact hard-margin
        ``MaxMarginClassifier`` with a free bias (``bias="none"`` if the head has no bias),
        Crammer–Singer for K > 2.
    X_test, y_test : like X, y, default=None
        Optional test data, for ``agreement_test`` and test loss/accuracy.
    svm_regularized : estimator or False, default=None
        The regularised-bias SVM (``min ‖W‖² + ‖b‖²``, what gradient descent on a biased layer
        targets). None: ``MaxMarginClassifier(bias="regularized")``, warm-started from the reference SVM's support
        set (see :func:`fit_svms`); False: skip it.
    soft_C : float, default=1.0
        C of the soft-margin SVM used when the features are not separable.
    batch_size, device :
        Passed to :func:`~nnboundary.features.extract_features`.
    progress : bool, default=False
        Progress bars: feature extraction, then each SVM by name with its working-set rounds (violators left,
        largest violation, optimality-gap bound).
    grid_resolution : int, default=200
        Grid size per axis for ``agreement_grid`` (D = 2 only).
    init_support, init_support_regularized : ndarray of int, default=None
        Warm start for the SVM solvers (indices of the previous support vectors).
    forward : callable(model, batch) -> output, default=None
        How to run the model on one batch when the standard rules do not fit (see
        :func:`~nnboundary.features.extract_features`: tensors, ``(x, y)``, and dicts whose every key but the
        label key goes to ``model(**batch)`` are read without it).
    label_key : str or sequence of str, default=("labels", "label", "y")
        Key of the labels in dict batches.

    Returns
    -------
    Analysis
        Its ``summary`` carries the verdict: ``status`` (does the claim apply: ``separable`` / ``not fitted`` /
        ``not separable``, the words of ``reproduce``), ``closeness`` (``converged`` / ``approaching`` / ``far``,
        see :data:`CLOSENESS`) and the neural-collapse metrics ``nc1`` ... ``nc4_ncc_mismatch``.

    Examples
    --------
    >>> result = analyze(model, loader, head="classifier")   # doctest: +SKIP
    >>> result.summary["status"], result.summary["closeness"]  # doctest: +SKIP
    ('separable', 'converged')
    """
    ext = extract_features(model, X, head, y=y, batch_size=batch_size, device=device, progress=progress,
                           forward=forward, label_key=label_key)
    head_mod = model.get_submodule(ext.head_name)
    W, b = head_params(head_mod)
    H_te = y_te = Z_te = None
    if X_test is not None:
        te = extract_features(model, X_test, ext.head_name, y=y_test, batch_size=batch_size, device=device,
                              progress=progress, forward=forward, label_key=label_key)
        H_te, y_te, Z_te = te.features, te.labels, te.logits
    svm = default_svm(bias="free" if head_mod.bias is not None else "none") if svm is None else svm
    if svm_regularized is None:
        svm_regularized = False if head_mod.bias is None else _regularized_like(svm)
    result = analyze_features(
        ext.features, ext.labels, W, b, logits=ext.logits, svm=svm, svm_regularized=svm_regularized,
        H_test=H_te, y_test=y_te, logits_test=Z_te, soft_C=soft_C, grid_resolution=grid_resolution,
        init_support=init_support, init_support_regularized=init_support_regularized, head_name=ext.head_name,
        progress=progress,
    )
    result.settings.update(batch_size=batch_size, model_class=type(model).__name__)
    return result


def _regularized_like(svm: Any) -> Any:
    """The regularised-bias counterpart of ``svm`` (same C and multiclass if it is ours, else hard)."""
    from nnboundary.svm import MaxMarginClassifier

    if not isinstance(svm, MaxMarginClassifier):
        return default_svm(bias="regularized")
    return default_svm(bias="regularized", C=svm.C, multiclass=svm.multiclass)


def analyze_features(
    H: np.ndarray,
    y: np.ndarray,
    W: np.ndarray,
    b: np.ndarray | None = None,
    *,
    logits: np.ndarray | None = None,
    svm: Any = None,
    svm_regularized: Any = None,
    H_test: np.ndarray | None = None,
    y_test: np.ndarray | None = None,
    logits_test: np.ndarray | None = None,
    soft_C: float = 1.0,
    grid_resolution: int = 200,
    init_support: np.ndarray | None = None,
    init_support_regularized: np.ndarray | None = None,
    head_name: str = "head",
    progress: bool = False,
    svm_fitted: bool = False,
) -> Analysis:
    """Compare a linear head (W, b) with the max-margin SVM on already extracted features.

    Parameters
    ----------
    H : ndarray of shape (N, D)
    y : ndarray of shape (N,), labels in 0..K-1
    W : ndarray of shape (K, D), or (1, D) for a single-logit binary head
    b : ndarray of shape (K,) or (1,), default=None (no bias)
    logits : ndarray of shape (N, K), default=None
        The model's logits, for loss and accuracy; default ``H @ W.T + b``.
    svm, svm_regularized, soft_C, grid_resolution, init_support, init_support_regularized, progress :
        As in :func:`analyze` (``svm_regularized=None`` here means: fit one if b is not None).
    svm_fitted : bool, default=False
        ``svm`` / ``svm_regularized`` are fitted on (H, y) already: reuse them (see :func:`fit_svms`).
    H_test, y_test, logits_test : optional test features, labels, logits
    head_name : str, default="head"

    Returns
    -------
    Analysis
        ``summary`` keys: n_samples, n_features, n_classes, head, separable, svm_C, svm_bias,
        svm_multiclass, svm_max_violation, svm_duality_gap, svm_n_iter; cosine, angle_deg;
        nn_margin, svm_margin, margin_ratio; bias_offset, bias_offset_gap, bias_offset_means
        (binary: signed, see :func:`~nnboundary.metrics.bias_offset`; K > 2: mean absolute value
        over the class pairs whose SVM constraint is active); agreement_train[, agreement_test,
        agreement_grid (D = 2)]; n_support, sv_overlap_precision, sv_overlap_jaccard (support vs
        the n_support smallest NN margins), sv_overlap_precision_loss, sv_overlap_jaccard_loss
        (vs the highest losses); loss, accuracy[, test_loss, test_accuracy]; weight_norm,
        bias_norm; the neural-collapse metrics nc1, nc2_equinorm, nc2_equiangular, nc3_self_duality,
        nc4_ncc_mismatch (:func:`~nnboundary.metrics.neural_collapse`); the verdict: status
        (:func:`claim_status`) and closeness (:func:`closeness`); and with a regularised SVM: cosine_reg,
        angle_deg_reg, margin_ratio_reg, bias_offset_reg, agreement_train_reg.

    Raises
    ------
    ValueError
        Empty or non-finite features, labels outside the head's classes, or a class with no samples.
    """
    has_bias = b is not None
    H, y, W, b = _check_inputs(H, y, W, b)
    K = max(2, W.shape[0])
    _check_all_classes(y, K)
    Z = H @ W.T + b if logits is None else np.asarray(logits, dtype=np.float64)
    if Z.shape != (H.shape[0], W.shape[0]):
        raise ValueError(f"logits have shape {Z.shape}, expected {(H.shape[0], W.shape[0])}.")
    if svm is None:
        svm = default_svm(bias="free" if has_bias else "none")
    if svm_regularized is None:
        svm_regularized = _regularized_like(svm) if has_bias else False

    est, separable, est_reg = fit_svms(H, y, svm, svm_regularized, soft_C=soft_C, init_support=init_support,
                                       init_support_regularized=init_support_regularized, progress=progress,
                                       fitted=svm_fitted)
    V, c = _svm_rule(est, K)
    support = _svm_support(est, H, y, V, c)

    m_nn = M.functional_margins(H, y, W, b)  # (N,)
    loss_i = M.cross_entropy(Z, y)  # (N,)
    nn_margin, svm_margin = M.normalized_margin(H, y, W, b), M.normalized_margin(H, y, V, c)
    if separable is None:  # soft template: the features are separable if either rule separates them
        separable = True if (nn_margin > 0 or svm_margin > 0) else None

    s: dict[str, Any] = {
        "n_samples": int(H.shape[0]), "n_features": int(H.shape[1]), "n_classes": int(K),
        "head": head_name, "separable": separable,
    }
    s.update(_svm_meta(est))
    s["cosine"] = M.direction_cosine(W, V)
    s["angle_deg"] = M.direction_angle(W, V)
    s["nn_margin"], s["svm_margin"] = nn_margin, svm_margin
    s["margin_ratio"] = M.margin_ratio(nn_margin, svm_margin)

    details = _details(H, y, W, b, V, c, est_reg)
    offsets = _aggregate_offsets(details[details["scope"] == "pair"], K)
    s.update(offsets)
    for col, val in offsets.items():  # the overall row carries the summary's aggregate
        details.loc[details["scope"] == "overall", col] = val
    details.loc[details["scope"] == "overall", "margin_ratio"] = s["margin_ratio"]

    pred_nn = M.predict_classes(H, W, b)
    s["agreement_train"] = M.agreement(pred_nn, M.predict_classes(H, V, c))
    if H.shape[1] == 2:
        s["agreement_grid"] = M.grid_agreement(H, W, b, V, c, resolution=grid_resolution)

    s["n_support"] = int(support.size)
    s["sv_overlap_precision"], s["sv_overlap_jaccard"] = M.sv_overlap(support, m_nn)
    s["sv_overlap_precision_loss"], s["sv_overlap_jaccard_loss"] = M.sv_overlap(support, -loss_i)
    s["loss"], s["accuracy"] = float(loss_i.mean()), M.accuracy(Z, y)
    s["weight_norm"], s["bias_norm"] = M.weight_norm(W), float(np.linalg.norm(b))
    s.update(M.neural_collapse(H, y, W, b, pred=pred_nn))

    if est_reg is not None:
        Vr, cr = _svm_rule(est_reg, K)
        s["cosine_reg"], s["angle_deg_reg"] = M.direction_cosine(W, Vr), M.direction_angle(W, Vr)
        s["margin_ratio_reg"] = M.margin_ratio(nn_margin, M.normalized_margin(H, y, Vr, cr))
        s["agreement_train_reg"] = M.agreement(pred_nn, M.predict_classes(H, Vr, cr))

    Ht = yt = Zt = None
    if H_test is not None:
        Ht, yt, _, _ = _check_inputs(H_test, y_test, W, b, what="test")
        Zt = Ht @ W.T + b if logits_test is None else np.asarray(logits_test, dtype=np.float64)
        s["n_test"] = int(Ht.shape[0])
        s["agreement_test"] = M.agreement(M.predict_classes(Ht, W, b), M.predict_classes(Ht, V, c))
        s["test_loss"], s["test_accuracy"] = float(M.cross_entropy(Zt, yt).mean()), M.accuracy(Zt, yt)

    s["status"], s["closeness"] = claim_status(s), closeness(s)
    is_sup = np.zeros(H.shape[0], dtype=bool)
    is_sup[support] = True
    points = _points_frame(H, y, W, b, V, c, loss_i, is_sup)
    settings = {
        "format": 1, "head": head_name, "soft_C": soft_C, "grid_resolution": grid_resolution,
        "svm": _est_settings(svm), "svm_regularized": None if est_reg is None else _est_settings(svm_regularized),
        "nnboundary_version": _version(),
    }
    return Analysis(summary=s, details=details, points=points, svm=est, svm_regularized=est_reg,
                    features=H, labels=y, logits=Z, nn_coef=W, nn_intercept=b, settings=settings,
                    features_test=Ht, labels_test=yt, logits_test=Zt)


def _opt_idx(idx: Any) -> np.ndarray | None:
    return None if idx is None else np.asarray(idx, dtype=np.int64).ravel()


def _svm_meta(est: Any) -> dict[str, Any]:
    p = est.get_params() if hasattr(est, "get_params") else {}
    return {
        "svm": type(est).__name__, "svm_C": p.get("C"), "svm_bias": p.get("bias"),
        "svm_multiclass": p.get("multiclass"),
        "svm_max_violation": _f(getattr(est, "max_violation_", None)),
        "svm_duality_gap": _f(getattr(est, "duality_gap_", None)),
        "svm_n_iter": None if getattr(est, "n_iter_", None) is None else int(np.max(est.n_iter_)),
    }


def _f(x: Any) -> float | None:
    return None if x is None else float(x)


def _est_settings(est: Any) -> dict[str, Any]:
    p = est.get_params() if hasattr(est, "get_params") else {}
    return {"class": f"{type(est).__module__}.{type(est).__name__}", **_jsonable(p)}


def _version() -> str:
    try:
        from nnboundary import __version__

        return str(__version__)
    except ImportError:  # pragma: no cover
        return "unknown"


def _pair_margins(H: np.ndarray, y: np.ndarray, V: np.ndarray, c: np.ndarray,
                  pair: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(indices of the points of classes j and k, their functional margins under the SVM's j-vs-k rule)."""
    Vs, cs = M.class_scores(V, c)
    j, k = pair
    idx = np.flatnonzero((y == j) | (y == k))
    d = H[idx] @ (Vs[k] - Vs[j]) + cs[k] - cs[j]
    return idx, np.where(y[idx] == k, d, -d)


def _pair_anchor(H: np.ndarray, y: np.ndarray, V: np.ndarray, c: np.ndarray, pair: tuple[int, int]) -> np.ndarray:
    """Where to measure the offset of pair (j, k): the mean of the distinct points on the SVM's j-vs-k margin.

    Those points are fixed by the SVM's (unique) hyperplanes; its support set is not when points tie (e.g. a class
    collapsed to one point), so an anchor built from ``support_`` would depend on the solver. Repeated points count
    once, as they do for the SVM. A pair with no point on its margin (an inactive Crammer–Singer pair) is anchored
    at the mean of its points.
    """
    idx, g = _pair_margins(H, y, V, c, pair)
    on_margin = idx[g <= 1 + _ACTIVE_TOL]
    return np.unique(H[on_margin if on_margin.size else idx], axis=0).mean(axis=0)


def _pair_active(H: np.ndarray, y: np.ndarray, V: np.ndarray, c: np.ndarray, pair: tuple[int, int]) -> bool:
    """Does some point of class j (k) meet the SVM's j-vs-k (k-vs-j) constraint with equality?"""
    _, g = _pair_margins(H, y, V, c, pair)
    return bool(g.size and g.min() <= 1 + _ACTIVE_TOL)


def _details(H, y, W, b, V, c, est_reg) -> pd.DataFrame:
    K = max(2, W.shape[0])
    Vr = cr = None
    if est_reg is not None:
        Vr, cr = _svm_rule(est_reg, K)
    rows = [{
        "scope": "overall", "classes": "all", "cosine": M.direction_cosine(W, V),
        "angle_deg": M.direction_angle(W, V), "margin_nn": M.normalized_margin(H, y, W, b),
        "margin_svm": M.normalized_margin(H, y, V, c),
    }]
    if K > 2:
        for k, cos in enumerate(M.class_cosines(W, V)):
            rows.append({"scope": "class", "classes": str(k), "cosine": cos,
                         "angle_deg": float(np.degrees(np.arccos(cos)))})
    for pair, cos in zip(M.class_pairs(K), M.pair_cosines(W, V)):
        a = _pair_anchor(H, y, V, c, pair)
        mn, ms = M.pair_margin(H, y, W, b, pair), M.pair_margin(H, y, V, c, pair)
        rows.append({
            "scope": "pair", "classes": f"{pair[0]}-{pair[1]}", "cosine": cos,
            "angle_deg": float(np.degrees(np.arccos(cos))), "margin_nn": mn, "margin_svm": ms,
            "bias_offset": M.bias_offset(W, b, V, c, a, pair),
            "bias_offset_gap": M.gap_offset(H, y, W, b, V, c, a, pair),
            "bias_offset_means": M.means_offset(H, y, W, b, V, c, a, pair),
            "bias_offset_reg": np.nan if Vr is None else M.bias_offset(W, b, Vr, cr, a, pair),
            "active": _pair_active(H, y, V, c, pair),
        })
    df = pd.DataFrame(rows, columns=["scope", "classes", "cosine", "angle_deg", "margin_nn", "margin_svm",
                                     "margin_ratio", "bias_offset", "bias_offset_gap", "bias_offset_means",
                                     "bias_offset_reg", "active"])
    df["margin_ratio"] = [M.margin_ratio(a, b_) if np.isfinite(a) else np.nan
                          for a, b_ in zip(df["margin_nn"].astype(float), df["margin_svm"].astype(float))]
    return df


def _aggregate_offsets(pairs: pd.DataFrame, K: int) -> dict[str, float]:
    cols = ("bias_offset", "bias_offset_gap", "bias_offset_means", "bias_offset_reg")
    if K == 2:
        return {col: float(pairs[col].iloc[0]) for col in cols}
    use = pairs[pairs["active"].astype(bool)]
    use = use if len(use) else pairs
    out = {}
    for col in cols:
        v = use[col].to_numpy(dtype=float)
        v = v[np.isfinite(v)]
        out[col] = float(np.abs(v).mean()) if v.size else float("nan")
    return out


def _points_frame(H, y, W, b, V, c, loss, is_support) -> pd.DataFrame:
    nW, nV = M.margin_norm(W), M.margin_norm(V)
    return pd.DataFrame({
        "label": y,
        "nn_pred": M.predict_classes(H, W, b),
        "svm_pred": M.predict_classes(H, V, c),
        "margin_nn": M.functional_margins(H, y, W, b) / (nW if nW > 0 else np.nan),
        "margin_svm": M.functional_margins(H, y, V, c) / (nV if nV > 0 else np.nan),
        "loss": loss,
        "is_support": is_support,
    })
