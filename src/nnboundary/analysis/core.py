"""The analysis in memory: every number and the result of :mod:`nnboundary.analysis`.

The features ``H = φ(X)`` (the head's input) are extracted once, the SVM is fitted once (plus the
regularised-bias SVM that gradient descent on a layer with a bias targets), the NN margins are
computed once, and then the pure functions of :mod:`nnboundary.metrics` produce the numbers.
Non-separable features do not fail: they are reported as ``separable=False`` and compared with
a soft-margin SVM. The SVMs are fitted by :mod:`~nnboundary.analysis.fitting`, the tables built by
:mod:`~nnboundary.analysis.tables` and the verdict words come from :mod:`~nnboundary.analysis.verdict`. Sharded and
larger-than-memory features go to :mod:`nnboundary.analysis.streamed`, which reuses the checks and the result of
this module.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nnboundary import metrics as M
from nnboundary._jsonio import atomic_write
from nnboundary._jsonio import to_jsonable as _jsonable
from nnboundary.analysis.fitting import _regularized_like, _svm_rule, _svm_support, default_svm, fit_svms
from nnboundary.analysis.tables import _aggregate_offsets, _details_frame, _details_rows, _points_frame
from nnboundary.analysis.verdict import claim_status, closeness
from nnboundary.features import logits_path

#: Keys always present in ``Analysis.summary`` (others depend on the data: test set, D = 2, ...).
SUMMARY_KEYS = (
    "cosine", "angle_deg", "margin_ratio", "bias_offset", "agreement_train", "n_support",
    "sv_overlap_jaccard", "separable", "loss", "accuracy", "status", "closeness", *M.NC_KEYS,
)
_FILES = ("summary.json", "details.csv", "features.npz", "settings.json")
_POINT_COLUMNS = ("label", "nn_pred", "svm_pred", "margin_nn", "margin_svm", "loss", "is_support")


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


def _analyze_in_memory(H, y, W, b, *, logits, svm, svm_regularized, H_test, y_test, logits_test, soft_C,
                       grid_resolution, init_support, init_support_regularized, head_name, progress, svm_fitted,
                       separable_hint) -> Analysis:
    """The in-memory body of :func:`nnboundary.analysis.analyze_features` (see there for the parameters and their
    defaults; it passes every one): features, labels and head as arrays in this process; time O(N·K·D) plus the
    SVM fits, memory O(N·(D + K)) plus the fits'."""
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
