"""The entry points: :func:`analyze` (a model and its data) and :func:`analyze_features` (features and a head),
which runs the analysis in memory (:mod:`nnboundary.analysis.core`) or streamed and sharded
(:mod:`nnboundary.analysis.streamed`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from nnboundary.analysis.core import Analysis, _analyze_in_memory
from nnboundary.analysis.fitting import _regularized_like, default_svm
from nnboundary.analysis.streamed import _analyze_streamed, _on_all_ranks
from nnboundary.features import LABEL_KEYS, extract_features, head_params


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
    features_file: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    distributed: bool | None = None,
    separable_hint: bool | None = None,
) -> Analysis:
    """Compare a classifier's last linear layer with the max-margin SVM on its features.

    Under ``torchrun`` (a process group of several ranks, see :mod:`nnboundary.distributed`) every rank extracts
    the features of its contiguous shard of the data (:func:`~nnboundary.distributed.shard_range`,
    :func:`~nnboundary.features.select_rows`) and the analysis runs on the shards (:func:`analyze_features` with a
    reducer): every rank gets the numbers of a one-process run (to rounding), and only rank 0's ``save`` writes.
    With ``features_file`` the features are streamed into a memory-mapped file and analysed chunk by chunk, so
    N·D·8 bytes may exceed the memory.

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
    features_file : path, default=None
        Stream the training features into this ``.npy`` file (and the logits beside it, see
        :func:`~nnboundary.features.extract_features`) and analyse them from disk in chunks. Several ranks write one
        file each, ``<stem>.rank<r>-of-<world>.npy``. Memory: one batch, one chunk and the solver's working set; disk
        N·(D + K)·8 bytes.
    overwrite : bool, default=False
        Replace an existing ``features_file`` (otherwise refused).
    distributed : bool, default=None
        None: shard over the ranks when a process group of more than one rank is initialised
        (``nnboundary.distributed.init_from_env()`` under torchrun); False: one process even then; True: require it.
    separable_hint : bool or None, default=None
        See :func:`analyze_features`.

    Returns
    -------
    Analysis
        Its ``summary`` carries the verdict: ``status`` (does the claim apply: ``separable`` / ``not fitted`` /
        ``not separable``, the words of ``reproduce``), ``closeness`` (``converged`` / ``approaching`` / ``far``,
        see :data:`~nnboundary.analysis.CLOSENESS`) and the neural-collapse metrics ``nc1`` ... ``nc4_ncc_mismatch``.

    Examples
    --------
    >>> result = analyze(model, loader, head="classifier")   # doctest: +SKIP
    >>> result.summary["status"], result.summary["closeness"]  # doctest: +SKIP
    ('separable', 'converged')
    """
    reducer = _reducer(distributed)
    world = 1 if reducer is None else int(reducer.world_size)
    show = progress and (reducer is None or reducer.rank == 0)
    file = None if features_file is None else _rank_file(features_file, reducer)

    def extract(data: Any, labels: Any, which: Any, out: Any) -> Any:
        if reducer is not None:
            from nnboundary.distributed import shard_range
            from nnboundary.features import n_rows, select_rows

            data, labels = select_rows(data, labels, *shard_range(n_rows(data, labels)))
        return extract_features(model, data, which, y=labels, batch_size=batch_size, device=device, progress=show,
                                forward=forward, label_key=label_key, out=out, overwrite=overwrite)
    ext = _on_all_ranks(lambda: extract(X, y, head, file), reducer)
    head_mod = model.get_submodule(ext.head_name)
    W, b = head_params(head_mod)
    H_te = y_te = Z_te = None
    if X_test is not None:
        te = _on_all_ranks(lambda: extract(X_test, y_test, ext.head_name, None), reducer)
        H_te, y_te, Z_te = te.features, te.labels, te.logits
    svm = default_svm(bias="free" if head_mod.bias is not None else "none") if svm is None else svm
    if svm_regularized is None:
        svm_regularized = False if head_mod.bias is None else _regularized_like(svm)
    result = analyze_features(
        ext.features, ext.labels, W, b, logits=ext.logits, svm=svm, svm_regularized=svm_regularized,
        H_test=H_te, y_test=y_te, logits_test=Z_te, soft_C=soft_C, grid_resolution=grid_resolution,
        init_support=init_support, init_support_regularized=init_support_regularized, head_name=ext.head_name,
        progress=show, reducer=reducer, separable_hint=separable_hint,
    )
    result.settings.update(batch_size=batch_size, model_class=type(model).__name__)
    if file is not None and world > 1:
        result.settings["features_files"] = [str(f) for f in reducer.allgather(str(file))]
    return result


def _reducer(distributed: bool | None) -> Any:
    """The reducer of :func:`analyze`: a ``TorchReducer`` when sharding over several ranks, else None."""
    if distributed is False:
        return None
    from nnboundary import distributed as dist

    if dist.is_distributed():
        return dist.TorchReducer()
    if distributed:
        raise RuntimeError("analyze(distributed=True) needs a process group of several ranks: start the program with "
                           "`torchrun --nproc-per-node=N ...` and call nnboundary.distributed.init_from_env() first.")
    return None


def _rank_file(path: str | os.PathLike[str], reducer: Any) -> Path:
    """``path`` in one process; ``<stem>.rank<r>-of-<world>.npy`` on rank r of several."""
    p = Path(path)
    if reducer is None or int(reducer.world_size) <= 1:
        return p
    stem = p.name.removesuffix(".npy")
    return p.with_name(f"{stem}.rank{reducer.rank}-of-{reducer.world_size}.npy")



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
    reducer: Any = None,
    separable_hint: bool | None = None,
) -> Analysis:
    """Compare a linear head (W, b) with the max-margin SVM on already extracted features.

    In memory by default. The analysis is **streamed** instead when H is a ``np.memmap`` (features larger than
    memory, e.g. from ``extract_features(out=PATH)``) or a ``reducer`` is given (H, y, logits are this rank's
    contiguous shard, under torchrun: ``nnboundary.distributed.TorchReducer()``): three passes over chunks of
    :data:`nnboundary.analysis.streamed.CHUNK_BYTES` of the local rows, whose per-rank sums, minima and counts are combined over the ranks. Memory
    beyond the SVM solver's own: O(K·D + D² + chunk) plus 7 numbers per point (the ``points`` table, gathered on
    every rank); time O(N·D·(D + K²)) over all ranks. The numbers equal the in-memory analysis of the concatenated
    shards up to rounding (sums taken in another order), and every rank gets them.

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
    reducer : object with ``rank``, ``world_size``, ``allgather(obj) -> list``, default=None
        Shards over ranks (see above). A user error on one rank (bad labels, NaN features) is raised on every rank.
    separable_hint : bool or None, default=None
        False: the features are expected not to be separable (the tracker passes it after an evaluation that was
        not), so the reference SVM's separability LP runs before its QP (see :func:`fit_svm`); the numbers are the
        same. Used in memory; the streamed analysis ignores it.

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
        (:func:`~nnboundary.analysis.claim_status`) and closeness (:func:`~nnboundary.analysis.closeness`); and with a regularised SVM: cosine_reg,
        angle_deg_reg, margin_ratio_reg, bias_offset_reg, agreement_train_reg.

    Raises
    ------
    ValueError
        Empty or non-finite features, labels outside the head's classes, or a class with no samples.
    """
    options = dict(logits=logits, svm=svm, svm_regularized=svm_regularized, H_test=H_test, y_test=y_test,
                   logits_test=logits_test, soft_C=soft_C, grid_resolution=grid_resolution, init_support=init_support,
                   init_support_regularized=init_support_regularized, head_name=head_name, progress=progress,
                   svm_fitted=svm_fitted)
    if reducer is not None or isinstance(H, np.memmap):
        return _analyze_streamed(H, y, W, b, **options, reducer=reducer)  # the hint applies to in-memory fits
    return _analyze_in_memory(H, y, W, b, **options, separable_hint=separable_hint)
