"""The analysis in memory: the SVMs, every number, the result and the verdict words of :mod:`nnboundary.analysis`.

The features ``H = φ(X)`` (the head's input) are extracted once, the SVM is fitted once (plus the
regularised-bias SVM that gradient descent on a layer with a bias targets), the NN margins are
computed once, and then the pure functions of :mod:`nnboundary.metrics` produce the numbers.
Non-separable features do not fail: they are reported as ``separable=False`` and compared with
a soft-margin SVM. Sharded and larger-than-memory features go to :mod:`nnboundary.analysis.streamed`, which
reuses the checks, the SVM fitting and the result of this module.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone

from nnboundary import metrics as M
from nnboundary._jsonio import atomic_write
from nnboundary._jsonio import to_jsonable as _jsonable
from nnboundary.features import logits_path

logger = logging.getLogger(__name__)

#: Keys always present in ``Analysis.summary`` (others depend on the data: test set, D = 2, ...).
SUMMARY_KEYS = (
    "cosine", "angle_deg", "margin_ratio", "bias_offset", "agreement_train", "n_support",
    "sv_overlap_jaccard", "separable", "loss", "accuracy", "status", "closeness", *M.NC_KEYS,
)
_FILES = ("summary.json", "details.csv", "features.npz", "settings.json")
_ACTIVE_TOL = 1e-4  # an SVM pair constraint within this of 1 counts as active
_POINT_COLUMNS = ("label", "nn_pred", "svm_pred", "margin_nn", "margin_svm", "loss", "is_support")


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


# ----------------------------------------------------------------------------- result


class _BuiltOnFirstUse:
    """A table field of :class:`Analysis` that may be given as a function of no arguments, called on first access
    (and then kept). The tracker's evaluations read only the summary; building the two pandas tables took about a
    sixth of a small evaluation."""

    def __set_name__(self, owner: type, name: str) -> None:
        self._slot = "_" + name

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        if obj is None:
            raise AttributeError(self._slot[1:])  # a dataclass field without a default
        value = getattr(obj, self._slot)
        if callable(value):
            value = value()
            setattr(obj, self._slot, value)
        return value

    def __set__(self, obj: Any, value: Any) -> None:
        setattr(obj, self._slot, value)


@dataclass
class Analysis:
    """The comparison of one network head with the max-margin SVM on its features.

    Attributes
    ----------
    summary : dict
        Flat, JSON-serialisable numbers (see :func:`analyze_features` for every key).
    details : DataFrame (built on first access, like ``points``)
        One row per scope: ``overall``, each ``class`` (K > 2) and each class ``pair``, with
        columns cosine, angle_deg, margin_nn, margin_svm, margin_ratio, bias_offset,
        bias_offset_gap, bias_offset_means, bias_offset_reg, active.
    points : DataFrame
        One row per training point: label, nn_pred, svm_pred, margin_nn, margin_svm (geometric),
        loss, is_support.
    svm, svm_regularized : fitted estimators (``svm_regularized`` may be None)
    features : ndarray of shape (N, D), or None
        A read-only ``np.memmap`` when the features were streamed to a file; None after an analysis over several
        ranks (each rank held only its shard).
    labels : ndarray of shape (N,)
    logits : ndarray of shape (N, K), or None (as ``features``)
    nn_coef, nn_intercept : ndarray of shape (K, D), (K,)
        The head as it is (K = 1 for a single-logit head).
    settings : dict
        Everything needed to redo the analysis (SVM parameters, head, soft_C, ...).
    features_test, labels_test, logits_test : arrays or None
    rank : int
        The rank that computed this (0 in one process). Under torchrun every rank gets the same numbers, and only
        rank 0's :meth:`save` writes.
    """

    summary: dict[str, Any]
    details: pd.DataFrame = _BuiltOnFirstUse()
    points: pd.DataFrame = _BuiltOnFirstUse()
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
    rank: int = 0

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
        ``os.replace``, so a crash never leaves a half-written file. NaN/inf become JSON null. On a rank other than
        0 nothing is written (the ranks hold the same numbers; one writer keeps them from racing).

        A streamed analysis (features in a file, or sharded over ranks) does not copy the features into
        features.npz: it stores the head, the SVMs, the support and the per-point table, and ``settings.json``
        names the features file.

        Raises
        ------
        FileExistsError
            ``out_dir`` already holds a result (any of the four files) and ``overwrite`` is False.
        """
        out = Path(out_dir)
        if self.rank != 0:
            return out
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

    @property
    def streamed(self) -> bool:
        """True when the features were not held in memory (a features file, or shards on several ranks)."""
        return bool(self.settings.get("streamed")) or self.features is None or isinstance(self.features, np.memmap)

    def _arrays(self) -> dict[str, np.ndarray]:
        if self.streamed:
            arrays = {"labels": self.labels, **{f"point_{k}": self.points[k].to_numpy() for k in _POINT_COLUMNS}}
        else:
            arrays = {"features": self.features, "logits": self.logits, "labels": self.labels}
        arrays |= {
            "nn_coef": self.nn_coef, "nn_intercept": self.nn_intercept,
            "svm_coef": self.svm_coef, "svm_intercept": self.svm_intercept,
            "support": self.support, "margin_nn": self.points["margin_nn"].to_numpy(),
            "loss": self.points["loss"].to_numpy(),
        }
        if self.svm_regularized is not None:
            arrays["svm_reg_coef"] = np.asarray(self.svm_regularized.coef_, dtype=np.float64)
            arrays["svm_reg_intercept"] = np.atleast_1d(np.asarray(self.svm_regularized.intercept_, dtype=np.float64))
        for name in ("features_test", "labels_test", "logits_test"):
            if getattr(self, name) is not None and not self.streamed:
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
        if "features" not in a:  # a streamed analysis: the per-point table was saved, the features stay in their file
            points = pd.DataFrame({k: a[f"point_{k}"] for k in _POINT_COLUMNS})
            file = settings.get("features_file")
            a["features"] = np.load(file, mmap_mode="r") if file and Path(file).is_file() else None
            a["logits"] = None
            if file and a["features"] is not None and Path(logits_path(file)).is_file():
                a["logits"] = np.load(logits_path(file), mmap_mode="r")
            return cls(summary=summary, details=details, points=points, svm=svm, svm_regularized=svm_reg,
                       features=a["features"], labels=a["labels"], logits=a["logits"], nn_coef=a["nn_coef"],
                       nn_intercept=a["nn_intercept"], settings=settings)
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
    return _accepts(est, "init_support")


def _accepts(est: Any, name: str) -> bool:
    """Does ``est.fit`` take a parameter ``name``? A bound method's answer is its class's, found once per class
    (``inspect.signature`` cost a few tenths of a millisecond per fit, a tenth of a small one)."""
    fit = getattr(est, "fit", None)
    func = getattr(fit, "__func__", None)
    if func is not None and getattr(fit, "__self__", None) is est:
        try:
            return _function_accepts(func, name)
        except TypeError:  # an unhashable function object: look it up every time
            pass
    return _signature_accepts(fit, name)


@functools.lru_cache(maxsize=256)
def _function_accepts(func: Any, name: str) -> bool:
    return _signature_accepts(func, name)


def _signature_accepts(fit: Any, name: str) -> bool:
    try:
        return name in inspect.signature(fit).parameters
    except (TypeError, ValueError):
        return False


def fit_svm(template: Any, H: np.ndarray, y: np.ndarray, soft_C: float,
            init_support: np.ndarray | None = None, progress: str | None = None, *, reducer: Any = None,
            n_total: int | None = None, separable_hint: bool | None = None) -> tuple[Any, bool | None]:
    """The one hard-then-soft SVM fallback: fit a clone of ``template``; if it is a hard margin and the features
    are not separable, a soft margin with C=soft_C instead.

    ``reducer`` (rank, world_size, allgather): H, y are this rank's shard and the estimator is fitted on all shards
    (``fit(H, y, reducer=...)``, which ``MaxMarginClassifier`` takes); ``n_total`` is then the global number of
    points (``init_support`` holds global indices).

    ``progress``: a label (e.g. "SVM, free bias"): show a progress bar of the solver's working-set rounds when the
    estimator reports them (``MaxMarginClassifier(progress=...)``).

    ``separable_hint``: passed to ``fit`` when the estimator takes it (``MaxMarginClassifier``: False lets the
    separability LP decide before a QP that would fail; the outcome is the same).

    Returns the fitted estimator and ``True``/``False`` if separability was decided by the hard
    margin fit, None if the template was already a soft-margin estimator.
    """
    from nnboundary.svm import NotSeparableError

    est = clone(template)
    params = est.get_params()
    hard = "C" in params and params["C"] is None
    kw: dict[str, Any] = {}
    n = len(y) if n_total is None else int(n_total)
    if init_support is not None and _accepts_init_support(est):
        kw["init_support"] = init_support[(init_support >= 0) & (init_support < n)]
    if separable_hint is not None and hard and _accepts(est, "separable_hint"):
        kw["separable_hint"] = separable_hint
    if reducer is not None:
        if not _accepts(est, "reducer"):
            if int(reducer.world_size) > 1:
                raise TypeError(f"{type(est).__name__}.fit takes no reducer=, so it cannot be fitted on shards over "
                                "several ranks; use nnboundary.svm.MaxMarginClassifier or run one process.")
        else:
            kw["reducer"] = reducer
    try:
        with _svm_progress(est, progress):
            est.fit(H, y, **kw)
        return est, (True if hard else None)
    except NotSeparableError:
        if not hard:
            raise
        logger.info("Features are not separable; comparing with a soft-margin SVM (C=%g).", soft_C)
    est = clone(template).set_params(C=soft_C)
    kw.pop("separable_hint", None)  # a soft margin always exists
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
        if getattr(info, "stage", "round") == "seed":
            bar.set_postfix_str(info.method, refresh=True)
            return
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
             progress: bool = False, fitted: bool = False, reducer: Any = None,
             n_total: int | None = None, separable_hint: bool | None = None) -> tuple[Any, bool | None, Any]:
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
    reducer, n_total : default=None
        H, y are one rank's shard: see :func:`fit_svm`.
    separable_hint : bool or None, default=None
        For the reference SVM: see :func:`fit_svm` (the tracker passes False after an evaluation that was not
        separable).

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
                              progress="SVM (reference)" if progress else None, reducer=reducer, n_total=n_total,
                              separable_hint=separable_hint)
    est_reg = None
    if svm_regularized is not False:
        reg = svm_regularized
        if separable is False and "C" in reg.get_params() and reg.get_params()["C"] is None:
            reg = clone(reg).set_params(C=soft_C)  # same separability question: skip the failing hard fit
        warm = init_support_regularized
        if warm is None:
            warm = getattr(est, "support_", None)
        est_reg, _ = fit_svm(reg, H, y, soft_C, _opt_idx(warm),
                              progress="SVM (regularised bias)" if progress else None, reducer=reducer,
                              n_total=n_total)
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


def _regularized_like(svm: Any) -> Any:
    """The regularised-bias counterpart of ``svm`` (same C and multiclass if it is ours, else hard)."""
    from nnboundary.svm import MaxMarginClassifier

    if not isinstance(svm, MaxMarginClassifier):
        return default_svm(bias="regularized")
    return default_svm(bias="regularized", C=svm.C, multiclass=svm.multiclass)


def _analyze_in_memory(
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
    separable_hint: bool | None = None,
) -> Analysis:
    """The in-memory body of :func:`nnboundary.analysis.analyze_features` (see there): features, labels and
    head as arrays in this process; time O(N·K·D) plus the SVM fits, memory O(N·(D + K)) plus the fits'."""
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
                                       fitted=svm_fitted, separable_hint=separable_hint)
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

    rows = _details_rows(H, y, W, b, V, c, est_reg, overall={**s, "margin_nn": nn_margin, "margin_svm": svm_margin})
    offsets = _aggregate_offsets([r for r in rows if r["scope"] == "pair"], K)
    s.update(offsets)
    rows[0].update(offsets)  # the overall row carries the summary's aggregate (and margin ratio)
    details = functools.partial(_details_frame, rows, overall_margin_ratio=s["margin_ratio"])  # built when read

    pred_nn, pred_svm = M.predict_classes(H, W, b), M.predict_classes(H, V, c)
    s["agreement_train"] = M.agreement(pred_nn, pred_svm)
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
    points = functools.partial(_points_frame, H, y, W, b, V, c, loss_i, is_sup, pred_nn=pred_nn, pred_svm=pred_svm,
                               margins_nn=m_nn)  # built when read
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
    at the mean of its points (every point, so that the sharded analysis gets it from the class sums).
    """
    idx, g = _pair_margins(H, y, V, c, pair)
    on_margin = idx[g <= 1 + _ACTIVE_TOL]
    if on_margin.size:
        return np.unique(H[on_margin], axis=0).mean(axis=0)
    return H[idx].mean(axis=0)


def _pair_active(H: np.ndarray, y: np.ndarray, V: np.ndarray, c: np.ndarray, pair: tuple[int, int]) -> bool:
    """Does some point of class j (k) meet the SVM's j-vs-k (k-vs-j) constraint with equality?"""
    _, g = _pair_margins(H, y, V, c, pair)
    return bool(g.size and g.min() <= 1 + _ACTIVE_TOL)


def _details_rows(H, y, W, b, V, c, est_reg, overall: dict[str, float] | None = None) -> list[dict[str, Any]]:
    """The rows of the ``details`` table (:func:`_details_frame`): the overall row first, then each class (K > 2)
    and each class pair. ``overall``: the overall row's cosine, angle_deg, margin_nn and margin_svm when the caller
    has computed them already (the summary's)."""
    K = max(2, W.shape[0])
    Vr = cr = None
    if est_reg is not None:
        Vr, cr = _svm_rule(est_reg, K)
    if overall is None:
        overall = {"cosine": M.direction_cosine(W, V), "angle_deg": M.direction_angle(W, V),
                   "margin_nn": M.normalized_margin(H, y, W, b), "margin_svm": M.normalized_margin(H, y, V, c)}
    rows = [{"scope": "overall", "classes": "all", **{k: overall[k] for k in ("cosine", "angle_deg", "margin_nn",
                                                                             "margin_svm")}}]
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
    return rows


def _details_frame(rows: list[dict[str, Any]], overall_margin_ratio: float | None = None) -> pd.DataFrame:
    """The ``details`` table (one row per scope: overall and each class pair), margin ratios filled in;
    ``overall_margin_ratio``, if given, is the first (overall) row's."""
    def number(r: dict[str, Any], key: str) -> float:
        v = r.get(key)
        return np.nan if v is None else float(v)

    ratios = []
    for r in rows:
        nn, svm = number(r, "margin_nn"), number(r, "margin_svm")
        ratios.append(M.margin_ratio(nn, svm) if np.isfinite(nn) else np.nan)
    if overall_margin_ratio is not None:
        ratios[0] = overall_margin_ratio
    return pd.DataFrame([{**r, "margin_ratio": ratio} for r, ratio in zip(rows, ratios)],
                        columns=["scope", "classes", "cosine", "angle_deg", "margin_nn", "margin_svm",
                                 "margin_ratio", "bias_offset", "bias_offset_gap", "bias_offset_means",
                                 "bias_offset_reg", "active"])


def _aggregate_offsets(pairs: pd.DataFrame | list[dict[str, Any]], K: int) -> dict[str, float]:
    """The summary's offsets from the pair rows of ``details`` (a frame, or its rows as dicts): the pair's own for
    K = 2, else the mean absolute value over the active pairs (all pairs if none is active)."""
    cols = ("bias_offset", "bias_offset_gap", "bias_offset_means", "bias_offset_reg")
    if isinstance(pairs, pd.DataFrame):
        pairs = pairs.to_dict("records")
    if K == 2:
        return {col: float(pairs[0][col]) for col in cols}
    use = [r for r in pairs if bool(r["active"])]
    use = use if len(use) else pairs
    out = {}
    for col in cols:
        v = np.array([r[col] for r in use], dtype=float)
        v = v[np.isfinite(v)]
        out[col] = float(np.abs(v).mean()) if v.size else float("nan")
    return out


def _points_frame(H, y, W, b, V, c, loss, is_support, *, pred_nn=None, pred_svm=None,
                  margins_nn=None) -> pd.DataFrame:
    """The ``points`` table; ``pred_nn``, ``pred_svm``, ``margins_nn``: the predictions and the NN's functional
    margins when the caller has them already (computed here otherwise)."""
    nW, nV = M.margin_norm(W), M.margin_norm(V)
    m_nn = M.functional_margins(H, y, W, b) if margins_nn is None else margins_nn
    return pd.DataFrame({
        "label": y,
        "nn_pred": M.predict_classes(H, W, b) if pred_nn is None else pred_nn,
        "svm_pred": M.predict_classes(H, V, c) if pred_svm is None else pred_svm,
        "margin_nn": m_nn / (nW if nW > 0 else np.nan),
        "margin_svm": M.functional_margins(H, y, V, c) / (nV if nV > 0 else np.nan),
        "loss": loss,
        "is_support": is_support,
    })
