"""Fitting the SVMs that the analysis compares a head with: the reference SVM and its regularised-bias counterpart.

:func:`fit_svm` is the one hard-then-soft fallback and :func:`fit_svms` the one place both SVMs are fitted (warm
starts, progress bars, shards); the in-memory and the streamed analysis share them, with the reading of a fitted
SVM's linear rule and support set.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
from typing import Any

import numpy as np
from sklearn.base import clone

from nnboundary import metrics as M

logger = logging.getLogger(__name__)

_ACTIVE_TOL = 1e-4  # an SVM pair constraint within this of 1 counts as active


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


def _regularized_like(svm: Any) -> Any:
    """The regularised-bias counterpart of ``svm`` (same C and multiclass if it is ours, else hard)."""
    from nnboundary.svm import MaxMarginClassifier

    if not isinstance(svm, MaxMarginClassifier):
        return default_svm(bias="regularized")
    return default_svm(bias="regularized", C=svm.C, multiclass=svm.multiclass)


def _opt_idx(idx: Any) -> np.ndarray | None:
    return None if idx is None else np.asarray(idx, dtype=np.int64).ravel()
