"""``MaxMarginClassifier``: the exact, certified max-margin linear classifier as a scikit-learn estimator."""

from __future__ import annotations

import dataclasses
import functools
import sys
import warnings
from numbers import Integral, Real
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from nnboundary.svm._backend import DeviceFeatures, is_device_array, to_host
from nnboundary.svm._memory import FALLBACK_BYTES, check_memory
from nnboundary.svm._normalise import augmented, fit_normalisation
from nnboundary.svm._problem import MarginProblem
from nnboundary.svm._qp import QPSolverError
from nnboundary.svm._reducer import check_reducer
from nnboundary.svm._separability import is_separable, lp_bytes
from nnboundary.svm._shards import FeatureShards, chunk_rows
from nnboundary.svm._threads import one_thread
from nnboundary.svm._working_set import dual_coefficients, seed_rows, solve_working_set


@functools.cache
def _param_names(cls: type) -> tuple[str, ...]:
    """scikit-learn's parameter names of an estimator class (``BaseEstimator._get_param_names``), cached."""
    return tuple(BaseEstimator._get_param_names.__func__(cls))


def _as_indices(init_support) -> np.ndarray:
    """``init_support`` as int64 indices; non-integer values are refused, never truncated."""
    init = np.asarray(init_support).ravel()
    if init.dtype.kind in "iu":
        return init.astype(np.int64)
    if init.dtype.kind == "b" or (init.dtype.kind == "f" and len(init) and not np.all(np.isfinite(init))):
        raise ValueError("init_support must hold integer indices of training points (e.g. a previous support_).")
    if init.dtype.kind == "f" and np.array_equal(init, np.round(init)):
        return init.astype(np.int64)
    if len(init) == 0:
        return init.astype(np.int64)
    raise ValueError(f"init_support must hold integer indices of training points; got {init[:5].tolist()}... "
                     "Pass e.g. a previous fit's support_.")


_C_LARGE = 1e8   # from here on (solver units), a soft margin is tried as a hard one first (exact when it applies)
_C_LIMIT = 1e15  # larger C is solved as this one (a soft margin whose multipliers exceed it is numerically hard)


def _check_fit_memory(n_local: int, n_features: int, per: int, streamed: bool, seed_n: int, seed_copy: bool,
                      qp_bytes: float, rows_per_chunk: int) -> None:
    """Refuse a fit whose fixed allocations cannot fit, before any of them: this rank's normalised copy of the
    features (in memory) or one chunk of them (streamed), one chunk's margin tables, the seed's rows with
    liblinear's copy (16 bytes an entry, plus 8 when they are a gathered subsample) and the smallest restricted QP."""
    chunk = rows_per_chunk * _chunk_row_bytes(n_features, per, streamed)
    features = 0.0 if streamed else 8.0 * 2 * n_local * n_features
    seed = (24.0 if seed_copy else 16.0) * seed_n * (n_features + 1)
    needed = chunk + features + seed + qp_bytes
    what = (f"A max-margin fit on {n_local} points × {n_features} features"
            + (" (streamed in chunks)" if streamed else ""))
    check_memory(needed, what, "Pass fewer points (a class-balanced subset), reduce the feature width (e.g. PCA), "
                 "pass the features as a memory-mapped array (np.load(..., mmap_mode='r')), or use a machine with "
                 "more memory.")


def _chunk_row_bytes(n_features: int, per: int, streamed: bool) -> float:
    """Bytes one row of a chunk takes in a pass: its tables (scores, margins, violations and their selection, about
    6 values per unit) and, streamed, its raw and normalised feature rows."""
    return 8.0 * (6 * per + (3 * n_features if streamed else 0))


def _smallest_qp_bytes(n_vars: int, n_units: int, n_features: int) -> float:
    """Memory of the cheaper method on ``n_units`` units (see ``_qp.restricted_costs``)."""
    primal = 8.0 * (3 * n_vars * n_vars + n_units * n_features)
    dual = 8.0 * (6 * n_units * n_units + n_units * n_features)
    return min(primal, dual)


def _is_clean(X, y) -> bool:
    """Whether ``validate_data(X, y, dtype=float64, order="C")`` would accept (X, y) and return them unchanged:
    a non-empty, finite, C-ordered float64 matrix and one integer label per row. Checking that directly costs a
    pass over X; the general check costs about 0.7 ms more per fit, which is a tenth of a small fit (the tracker's
    evaluations fit two SVMs on a few hundred points, many times per run). Anything else takes the general check,
    with its error messages."""
    return (type(X) is np.ndarray and X.ndim == 2 and X.dtype == np.float64 and X.flags.c_contiguous
            and X.shape[0] >= 1 and X.shape[1] >= 1 and type(y) is np.ndarray and y.ndim == 1
            and y.dtype.kind in "iu" and len(y) == X.shape[0] and bool(np.isfinite(X).all()))


def _is_streamed(X) -> bool:
    """Features to read chunk by chunk: a memory map, or an ndarray-like that is not an in-memory array."""
    if isinstance(X, np.memmap):
        return True
    if isinstance(X, (np.ndarray, list, tuple)) or is_device_array(X) or sp.issparse(X):
        return False
    return all(hasattr(X, name) for name in ("shape", "dtype", "__getitem__")) and len(X.shape) == 2


class _Rows(NamedTuple):
    """Where this rank's rows lie among all rows: global rows offset..offset+len(X) of n_total."""

    offset: int
    n_total: int
    reducer: object
    streamed: bool


def _global_rows(X, y, reducer) -> tuple[int, int, np.ndarray]:
    """(offset of this rank's rows, number of all rows, the labels of all rows) — one allgather when sharded
    (labels are n small values; the features stay where they are)."""
    if reducer.world_size == 1:
        return 0, X.shape[0], np.asarray(y)
    shards = reducer.allgather((int(X.shape[0]), int(X.shape[1]), np.asarray(y)))
    widths = {width for _, width, _ in shards}
    if len(widths) != 1:
        raise ValueError(f"The ranks' shards have different feature widths {sorted(widths)}; every rank must pass "
                         "features of the same layer.")
    sizes = [n for n, _, _ in shards]
    return int(sum(sizes[:reducer.rank])), int(sum(sizes)), np.concatenate([labels for _, _, labels in shards])


def _stacked(betas: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """The per-fit (samples, β) side by side on the union of their samples: (m,), (m, Σ blocks)."""
    samples = functools.reduce(np.union1d, [s for s, _ in betas])
    out = np.zeros((len(samples), sum(beta.shape[1] for _, beta in betas)))
    col = 0
    for s, beta in betas:
        out[np.searchsorted(samples, s), col:col + beta.shape[1]] = beta
        col += beta.shape[1]
    return samples.astype(np.int64), out


class NotSeparableError(ValueError):
    """Hard-margin SVM asked for features that no hyperplane separates (a certificate proved it)."""


class MaxMarginClassifier(ClassifierMixin, BaseEstimator):
    """Exact maximum-margin linear classifier (hard or soft margin, binary, Crammer–Singer or one-vs-rest).

    The QP is solved by an interior-point method (a dense BLAS one of our own; Clarabel when that does not
    converge) inside a working-set loop that checks every training point, so the result comes with a certificate:
    ``max_violation_`` (largest margin violation over all points) and ``duality_gap_``.

    Parameters
    ----------
    C : float or None, default=None
        None: hard margin, ``min ½‖W‖²`` s.t. every margin ≥ 1 (raises :class:`NotSeparableError` when the
        features are not separable). A positive float: soft margin with hinge loss, ``+ C Σᵢ ξᵢ`` (as sklearn's SVC
        for binary problems; one slack per sample for Crammer–Singer).
    bias : {"free", "regularized", "none"}, default="free"
        "free": unpenalised intercept (the usual SVM). "regularized": the max-margin classifier of the features
        augmented with a constant 1, ``min ½(‖W‖² + ‖b‖²)`` — what gradient descent on a layer with a bias converges
        to. "none": homogeneous, b = 0 (Soudry et al.'s setting).
    multiclass : {"crammer_singer", "ovr"}, default="crammer_singer"
        For K > 2 classes. "crammer_singer": ``min ½Σₖ‖wₖ‖²`` s.t. ``(w_{yᵢ} − wₖ)·hᵢ + b_{yᵢ} − bₖ ≥ 1`` for all
        k ≠ yᵢ — the limit of softmax cross-entropy. "ovr": K binary problems, class k against the rest.
    tol : float, default=1e-8
        Largest margin violation (functional margin 1 − tol) accepted on any training point.
    max_rounds : int, default=100
        Bound on working-set rounds; a ConvergenceWarning says when it was reached.
    verbose : int, default=0
        0: silent. 1: one line per working-set round on stderr (round, units in the working set, violators left,
        largest violation, optimality-gap bound, QP method, elapsed seconds), as scikit-learn estimators do.
    progress : callable or None, default=None
        Called after every working-set round with a :class:`~nnboundary.svm.RoundProgress` (its ``problem``
        field says which QP: the binary one, a one-vs-rest class, or Crammer–Singer), and once before the
        first-order seed of a large problem starts (``stage="seed"``, ``round=0``; on a large head the seed alone
        can take minutes). The CLI and ``analyze`` use it for their progress bars.

    Notes
    -----
    Cost. Each working-set round is one pass over all n points (O(n·K·d) flops, in chunks of rows whose tables
    take at most 64 MiB, so never the whole (n, K) margin table of a large problem) plus one exact restricted QP,
    solved by the cheaper of a primal interior-point method (a normal matrix of size K·(d+1): O((K·d)³) per
    iteration) and a dual one on the p units of the working set (the Gram matrix of its points: O(p³ + m_s²·d) per
    iteration, O(p²) memory), so a CIFAR-100 head (K·d = 51,200) costs what its few thousand active (point, rival)
    pairs cost. The first working set comes from liblinear's dual coordinate descent at a loose tolerance
    (O(n·K·d) per pass), on all rows, or on a deterministic subsample of them when n·(d+1)·24 bytes exceed 5 GiB (the
    certificate still checks every point: a poorer seed only costs rounds). Memory is estimated before each large
    allocation and an :class:`~nnboundary.svm.InsufficientMemoryError` says how much is needed instead of a raw
    ``MemoryError``.

    Features larger than memory. ``X`` may be an ``np.memmap`` (``np.load(path, mmap_mode="r")``) or another
    ndarray-like that is not an in-memory array: it is never read whole, nor copied; every pass reads it chunk by
    chunk and normalises each chunk, and the restricted QPs read only their working set's rows. The normalisation
    statistics (median, norm scale, mean direction) come from a deterministic subsample of the rows (all of them
    up to 2²⁸ bytes of features), the peak from all rows.

    Several processes. ``fit(X_shard, y_shard, reducer=...)`` on every rank (see ``fit``): each rank scores its
    own rows, the small summaries of each pass are all-gathered, the working set's rows are gathered from their
    owners, and the restricted QP is solved on rank 0 and sent to every rank. The subsamples, the seed and the
    choice of candidate units are by global index, so the fit equals the one-process fit on the concatenated rows
    (to rounding).

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    coef_ : ndarray of shape (1, n_features) if n_classes == 2 else (n_classes, n_features)
        Binary problems store one direction w (positive class = ``classes_[1]``), not the pair (−w/2, w/2).
    intercept_ : ndarray of shape (1,) or (n_classes,)
        Crammer–Singer intercepts are centred (Σₖ bₖ = 0); zeros for ``bias="none"``.
    support_ : ndarray of shape (n_support,)
        Indices of the training points with a non-zero dual weight.
    dual_coef_ : ndarray of shape (1, n_support) if binary else (n_support, n_classes)
        β with ``coef_ = β @ X[support_]`` (binary: yᵢαᵢ as in sklearn's SVC; CS: per-class weights).
        For ``bias="regularized"``, ``intercept_ = β.sum(...)`` likewise (the constant feature).
    margin_ : float
        Geometric margin of the solution in feature space: the smallest functional margin divided by ‖coef_‖_F
        (binary: ``min yᵢ(w·xᵢ + b) / ‖w‖``; CS: ``min ((w_y − w_k)·x + b_y − b_k) / ‖W‖_F``; OvR: the smallest of
        the K binary margins).
    max_violation_ : float
        ``max(0, 1 − ξᵢ − gᵢ)`` over ALL training points and rivals; ≤ tol for a certified solution.
    duality_gap_ : float
        Primal objective minus the dual objective of the multipliers (≥ 0 up to rounding; ≈ 0 at the optimum).
    n_iter_ : int
        Working-set rounds (summed over the K problems for OvR).
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from nnboundary.svm import MaxMarginClassifier
    >>> X = np.array([[0., 0.], [0., 1.], [2., 0.], [2., 1.]]); y = np.array([0, 0, 1, 1])
    >>> clf = MaxMarginClassifier().fit(X, y)
    >>> round(clf.margin_, 6), clf.predict([[1.5, 0.5]]).tolist()
    (1.0, [1])
    """

    _parameter_constraints: dict = {
        "C": [None, Interval(Real, 0, None, closed="neither")],
        "bias": [StrOptions({"free", "regularized", "none"})],
        "multiclass": [StrOptions({"crammer_singer", "ovr"})],
        "tol": [Interval(Real, 0, None, closed="neither")],
        "max_rounds": [Interval(Integral, 1, None, closed="left")],
        "verbose": ["verbose"],
        "progress": [None, callable],
    }

    def __init__(self, *, C=None, bias="free", multiclass="crammer_singer", tol=1e-8, max_rounds=100, verbose=0,
                 progress=None):
        self.C = C
        self.bias = bias
        self.multiclass = multiclass
        self.tol = tol
        self.max_rounds = max_rounds
        self.verbose = verbose
        self.progress = progress

    @classmethod
    def _get_param_names(cls):
        """The constructor's parameter names (sorted), computed once per class: scikit-learn inspects
        ``__init__``'s signature on every ``get_params``, ``set_params`` and ``clone``, which costs about as much
        as a small fit's whole QP, and a training run's tracker clones and inspects its SVMs at every evaluation."""
        return list(_param_names(cls))

    def fit(self, X, y, init_support=None, reducer=None, separable_hint=None):
        """Solve the max-margin problem on (X, y).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            In memory (NumPy, an accelerator's array), or an ``np.memmap`` / ndarray-like read chunk by chunk (see
            the class notes). With a ``reducer`` of several ranks: this rank's contiguous shard of the rows (the global order is the
            shards concatenated in rank order; a shard may be empty).
        y : array-like of shape (n_samples,), any hashable labels, at least two classes (over all shards).
        init_support : array-like of int, optional
            Training-point indices (global ones when sharded) to put in the first working set (warm start, e.g.
            the previous support set).
        reducer : object or None
            None: one process. Otherwise an object with ``rank``, ``world_size`` and ``allgather(obj) -> list``
            (see ``nnboundary.svm.LocalReducer``; ``nnboundary.distributed.TorchReducer`` under torchrun). Every
            rank calls ``fit`` with its shard and ends with the same fitted estimator, equal to a one-process fit
            on the concatenated shards (``support_`` holds global indices).
        separable_hint : bool or None
            None (default): a hard margin is decided by the QP, and only a QP that finds no solution asks the
            separability LP. False: the features are expected not to be separable (e.g. the previous evaluation of
            a training run was not): the LP over all units decides first, which skips a QP that would fail, when it
            fits in memory and the rows are in this process. The outcome is the same either way; only the cost
            differs (the LP costs a few milliseconds on a small problem, the failing QP more).
        """
        self._validate_params()
        reducer = check_reducer(reducer)
        like = X if is_device_array(X) else None  # an accelerator's array: the passes over all points run there
        if like is not None:
            X = to_host(X)
        if is_device_array(y):
            y = to_host(y)
        streamed = _is_streamed(X)
        if streamed:
            X, y = self._validate_streamed(X, y)
        elif _is_clean(X, y):  # what validate_data would return unchanged: only the feature count is set
            X, y = validate_data(self, X, y, skip_check_array=True)
        else:
            X, y = validate_data(self, X, y, dtype=np.float64, order="C",
                                 **({"ensure_min_samples": 0} if reducer.world_size > 1 else {}))
        offset, n_total, y = _global_rows(X, y, reducer)
        if np.asarray(y).dtype.kind not in "iub":  # integer and boolean labels are classification targets
            check_classification_targets(y)
        self.classes_, y_idx = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"MaxMarginClassifier needs samples of at least 2 classes; got 1 class "
                             f"({self.classes_[0]!r}). Pass data with two or more labels.")
        init = None if init_support is None else _as_indices(init_support)
        if init is not None and len(init) and (init.min() < 0 or init.max() >= n_total):
            raise ValueError(f"init_support must hold indices of training points (0..{n_total - 1}); got values "
                             f"from {init.min()} to {init.max()}. Pass the support_ of a fit on the same rows.")
        # One BLAS thread: the products here are thin (n×d by d×K), the QP solver is single-threaded, and BLAS
        # threads that spin beside other work made these products 20-40x slower on a shared 2-core machine
        with one_thread():
            fits = self._fit_all(X, y_idx, init, like, _Rows(offset, n_total, reducer, streamed),
                                 lp_first=separable_hint is False)
        self._store(fits)
        return self

    def _validate_streamed(self, X, y):
        """The checks ``validate_data`` makes, without reading X whole (its values are checked chunk by chunk)."""
        if len(X.shape) != 2 or np.dtype(X.dtype).kind not in "fiu":
            raise ValueError(f"X must be a 2-D array of numbers; got shape {X.shape} and dtype {X.dtype}.")
        y = np.asarray(y).ravel()
        if len(y) != X.shape[0]:
            raise ValueError(f"X has {X.shape[0]} rows but y has {len(y)} labels; pass one label per row.")
        self.n_features_in_ = int(X.shape[1])
        return X, y

    def _fit_all(self, X, y_idx, init, like, where, lp_first=False):
        """One (result, transform) per QP: the binary problem, K one-vs-rest problems, or Crammer–Singer; the
        features are normalised once (and put on the accelerator once, if they came from one).

        ``X``: this rank's rows (in memory, or streamed chunk by chunk); ``where``: their place among all rows.
        The memory a fit needs is checked before anything is allocated.
        """
        augment = self.bias == "regularized"
        d_hat = X.shape[1] + int(augment)
        K = len(self.classes_)
        n_blocks = K if K > 2 and self.multiclass == "crammer_singer" else 1
        per = n_blocks  # units per sample: 1 (binary, OvR) or K (Crammer–Singer)
        n_vars = n_blocks * d_hat + (n_blocks if self.bias == "free" else 0)
        n_valid = where.n_total * (per - 1 if per > 1 else 1)
        seed_size = max(min(2 * n_vars, 6000), 50)
        rows = chunk_rows(_chunk_row_bytes(d_hat, per, where.streamed))
        seed_n = min(where.n_total, seed_rows(d_hat))
        _check_fit_memory(len(X), d_hat, per, where.streamed, seed_n,
                          where.streamed or where.reducer.world_size > 1 or seed_n < where.n_total,
                          _smallest_qp_bytes(n_vars, min(n_valid, min(seed_size // 4, 500) + K), d_hat),
                          min(rows, max(len(X), 1)))
        shards = functools.partial(FeatureShards, offset=where.offset, n_total=where.n_total,
                                   reducer=where.reducer, rows_per_chunk=rows, n_features=d_hat)
        raw = shards(X, transform=functools.partial(augmented, augment=augment))
        norm, H = fit_normalisation(raw, self.bias, materialise=not where.streamed)
        if H is None:
            source = shards(X, transform=norm.apply)
        else:
            source = shards(H, device=None if like is None else DeviceFeatures(H, like))
        whole = H if where.reducer.world_size == 1 else None
        solve = functools.partial(self._solve, source, whole, norm, init=init, n_points=where.n_total,
                                  lp_first=lp_first)
        if K == 2:
            return [solve(np.where(y_idx == 1, 1.0, -1.0), n_blocks=1, what="the two classes")]
        if self.multiclass == "ovr":
            return [solve(np.where(y_idx == k, 1.0, -1.0), n_blocks=1, what=f"class {c!r} against the rest")
                    for k, c in enumerate(self.classes_)]
        return [solve(y_idx, n_blocks=K, what="the classes (Crammer–Singer)")]

    def _solve(self, source, H, norm, y, *, n_blocks, init, what, n_points, lp_first=False):
        scale = norm.scale
        device = source.device if H is not None else None
        problem = MarginProblem(H, y, n_blocks, free_bias=self.bias == "free", device=device, source=source)
        if (lp_first and self.C is None and H is not None and lp_bytes(problem) <= FALLBACK_BYTES
                and not is_separable(problem)):
            raise self._not_separable(what, "a linear program (HiGHS) proved that no separating hyperplane exists")
        n_vars = n_blocks * problem.n_features + problem.n_bias
        # ½‖W‖² scales by scale² in the solver's units; beyond _C_LIMIT a soft margin is numerically a hard one
        C = None if self.C is None else min(float(self.C) * scale * scale, _C_LIMIT)
        solve = functools.partial(solve_working_set, problem, tol=self.tol, max_rounds=self.max_rounds,
                                  seed_size=max(min(2 * n_vars, 6000), 50), chunk=max(min(n_vars, 2000), 50),
                                  init_samples=init, progress=self._round_reporter(what))
        result = self._solve_soft_as_hard(solve, problem, C) if C is not None and C >= _C_LARGE else None
        if result is None:
            if C is not None and float(self.C) * scale * scale > _C_LIMIT:
                warnings.warn(f"C={self.C:g} is beyond what float64 resolves for these non-separable features; the "
                              f"soft margin is solved with C={_C_LIMIT / (scale * scale):.3g} (the hinge term then "
                              "dominates just as much).", UserWarning, stacklevel=4)
            result = solve(C=C)
        if result.infeasible and C is None:
            raise self._not_separable(what, "Clarabel returned an infeasibility certificate for a subset of the "
                                            f"{n_points} points, and a linear program (HiGHS) confirmed it")
        if result.infeasible:  # a soft margin always exists: a solver that says otherwise failed
            raise QPSolverError(f"The QP solvers could not solve the soft-margin problem for {what} (C={self.C}): "
                                "the features are too badly conditioned. Standardise them, or use a smaller C.")
        certified = result.converged and result.max_violation <= self.tol
        if not certified and self.C is None and lp_bytes(problem) <= FALLBACK_BYTES and not is_separable(problem):
            # a QP solver may stop on an infeasible problem without saying so (Clarabel's AlmostSolved): the LP
            # decides (when it fits in memory; otherwise the warning below says the fit is uncertified)
            raise self._not_separable(what, "a linear program (HiGHS) proved that no separating hyperplane exists")
        if not result.converged:
            warnings.warn(f"No optimality certificate after max_rounds={self.max_rounds} working-set rounds "
                          f"(largest margin violation {result.max_violation:.1e} > tol={self.tol:.0e}); "
                          "increase max_rounds.", ConvergenceWarning, stacklevel=4)
        elif result.max_violation > self.tol:
            hint = ("typical of a tiny cloud of features far from the origin with bias='regularized' or 'none'; "
                    "bias='free' or rescaled features avoid it" if self.bias != "free" else
                    "typical of features whose scales differ by many orders of magnitude (e.g. one enormous "
                    "outlier); standardise the features or remove the outlier")
            warnings.warn(f"No optimality certificate for {what}: the QP solvers stopped short of their accuracy on "
                          f"these badly conditioned features, leaving a margin violation of "
                          f"{result.max_violation:.1e} > tol={self.tol:.0e} ({hint}).", ConvergenceWarning,
                          stacklevel=4)
        return result, (problem, norm)

    @staticmethod
    def _solve_soft_as_hard(solve, problem, C):
        """For a very large C, the hard-margin solution when it exists and all its multipliers are ≤ C: then it
        satisfies the soft-margin KKT conditions exactly (ξ = 0), and the soft QP would be badly scaled."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                result = solve(C=None)
        except QPSolverError:
            return None
        if result.infeasible or not result.converged or result.largest_sample_alpha(problem) > C:
            return None
        return result

    def _round_reporter(self, what):
        """The per-round callback: ``progress`` and/or a verbose line on stderr."""
        if not self.verbose and self.progress is None:
            return None

        def report(info):
            info = dataclasses.replace(info, problem=what)
            if self.verbose and info.stage == "seed":
                print(f"[MaxMarginClassifier] {what}: {info.method} (one first-order pass before round 1; "
                      f"{info.elapsed_s:.1f} s)", file=sys.stderr, flush=True)
            elif self.verbose:
                print(f"[MaxMarginClassifier] {what}: round {info.round}, {info.n_working} units, "
                      f"{info.n_violators} violators, max violation {info.max_violation:.1e}, gap ≤ {info.gap:.1e}, "
                      f"{info.method}, {info.elapsed_s:.1f} s", file=sys.stderr, flush=True)
            if self.progress is not None:
                self.progress(info)
        return report

    def _not_separable(self, what, how):
        return NotSeparableError(
            f"The features of {what} are not linearly separable ({how}), so the hard-margin SVM does not exist. "
            "Train the network to 100% training accuracy first, or pass C=<float> (e.g. C=1.0) for a soft margin.")

    # -- learned attributes -------------------------------------------------------------------------------------
    @np.errstate(over="ignore", under="ignore")
    def _store(self, fits):
        coefs, intercepts, betas, margins, violations, gaps, rounds = [], [], [], [], [], [], []
        for result, (problem, norm) in fits:
            W = norm.reflect(result.W) / norm.scale
            b = result.b - W @ norm.shift  # undo the centring: w·(h − shift) + b' = w·h + (b' − w·shift)
            if problem.n_blocks > 1 and problem.free_bias:
                b -= b.mean()  # Crammer–Singer scores are shift-invariant: report Σₖ bₖ = 0
            samples, beta = dual_coefficients(problem, result.units, result.alpha)  # (m_s,), (m_s, n_blocks)
            betas.append((samples, beta / norm.scale / norm.scale))  # original units
            if self.bias == "regularized":
                W, b = W[:, :-1], W[:, -1].copy()
            coefs.append(W)
            intercepts.append(b)
            size = float(np.linalg.norm(W))  # 0 only for a soft margin whose best W is 0 (e.g. constant features)
            margins.append(result.min_margin / size if size > 0 else 0.0)  # functional margins: the same in H
            violations.append(result.max_violation)
            gaps.append((result.primal - result.dual) / norm.scale / norm.scale)
            rounds.append(result.rounds)
        scale = fits[0][1][1].scale
        self.coef_ = np.vstack(coefs)
        self.intercept_ = np.concatenate(intercepts)
        if not (np.isfinite(self.coef_).all() and np.isfinite(self.intercept_).all()):
            raise ValueError("The max-margin solution of these features overflows float64 (features of size "
                             f"about {scale:.1e} need weights of about their inverse). Rescale the features, "
                             "e.g. X / np.abs(X).max(), and divide coef_ by the same factor.")
        samples, beta = _stacked(betas)  # (m,), (m, 1) binary, (m, K) CS or OvR
        active = np.abs(beta).max(1, initial=0.0)
        keep = active > 1e-7 * max(active.max(initial=0.0), np.finfo(float).tiny)
        self.support_ = samples[keep]
        self.dual_coef_ = beta[keep].T if len(self.classes_) == 2 else beta[keep]
        self.margin_ = float(min(margins))
        self.max_violation_ = float(max(violations))
        self.duality_gap_ = float(sum(gaps))
        self.n_iter_ = int(sum(rounds))

    # -- prediction -----------------------------------------------------------------------------------------------
    def decision_function(self, X):
        """Scores: shape (n_samples,) for two classes (positive → ``classes_[1]``), else (n_samples, n_classes).

        A memory-mapped (or other streamed) ``X`` is read chunk by chunk, never whole; the (n, K) scores it
        returns are checked against the memory available before they are allocated."""
        check_is_fitted(self)
        if not _is_streamed(X):
            X = validate_data(self, X, dtype=np.float64, reset=False)
            return self._scores(X)
        n_blocks = self.coef_.shape[0]
        check_memory(8.0 * X.shape[0] * n_blocks, f"The scores of {X.shape[0]} points × {n_blocks} classes",
                     "Call predict (which keeps only the labels) or pass the rows in parts.")
        out = np.empty((X.shape[0], n_blocks) if n_blocks > 1 else (X.shape[0],))
        for start, rows in self._streamed_rows(X):
            out[start:start + len(rows)] = self._scores(rows)
        return out

    def predict(self, X):
        """Predicted labels, shape (n_samples,), taken from ``classes_``. A streamed ``X`` (e.g. ``np.load(...,
        mmap_mode="r")``) is scored chunk by chunk: memory O(chunk · K), not O(n · (d + K))."""
        if not _is_streamed(X):
            return self._labels(self.decision_function(X))
        check_is_fitted(self)
        return np.concatenate([self._labels(self._scores(rows)) for _, rows in self._streamed_rows(X)]
                              or [self.classes_[:0]])

    def _scores(self, X: np.ndarray) -> np.ndarray:
        scores = X @ self.coef_.T + self.intercept_
        return scores[:, 0] if scores.shape[1] == 1 else scores

    def _labels(self, scores: np.ndarray) -> np.ndarray:
        idx = (scores > 0).astype(int) if scores.ndim == 1 else scores.argmax(1)
        return self.classes_[idx]

    def _streamed_rows(self, X):
        """(first row, float64 rows) of a streamed X in chunks of at most ``_shards.CHUNK_BYTES``; each chunk is
        validated as ``validate_data`` would validate the whole (finite numbers, the fitted width)."""
        if len(X.shape) != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has shape {tuple(X.shape)}, but {type(self).__name__} is expecting "
                             f"{self.n_features_in_} features as input.")
        step = chunk_rows(8.0 * (2 * X.shape[1] + self.coef_.shape[0]))
        for start in range(0, X.shape[0], step):
            yield start, check_array(np.asarray(X[start:start + step]), dtype=np.float64)
