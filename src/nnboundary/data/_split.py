"""Deterministic, stratified index selection: train/test splits and class-balanced subsamples."""

from __future__ import annotations

import numpy as np

from ._dataset import Dataset

__all__ = ["train_test_split", "stratified_split_indices", "balanced_subsample_indices"]


def stratified_split_indices(y: np.ndarray, test_fraction: float,
                             rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Split row indices so that every class keeps (about) the same test fraction.

    Class ``c`` with ``n_c`` members sends ``round(test_fraction * n_c)`` of them to the test
    set, clipped to ``[1, n_c - 1]``, so both sides see every class.

    Parameters
    ----------
    y : ndarray of shape (n_samples,)
        Integer labels.
    test_fraction : float in (0, 1)
    rng : numpy.random.Generator
        Source of randomness; the same generator state gives the same split.

    Returns
    -------
    train_idx : ndarray of shape (n_train,), sorted, int64
    test_idx : ndarray of shape (n_test,), sorted, int64

    Raises
    ------
    ValueError
        If ``test_fraction`` is outside (0, 1) or a class has fewer than 2 samples.
    """
    if not 0.0 < float(test_fraction) < 1.0:
        raise ValueError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction!r}. "
                         "Use e.g. test_fraction=0.1 for the original 90/10 split.")
    y = np.asarray(y)
    labels, counts = np.unique(y, return_counts=True)
    if np.any(counts < 2):
        small = {int(c): int(n) for c, n in zip(labels, counts) if n < 2}
        raise ValueError(f"A stratified split needs at least 2 samples per class; classes with fewer: "
                         f"{small} (label: count). Generate more samples or drop those classes.")
    test_parts = []
    for label, n_c in zip(labels, counts):
        members = np.flatnonzero(y == label)                     # (n_c,)
        n_test = int(np.clip(round(test_fraction * n_c), 1, n_c - 1))
        test_parts.append(rng.choice(members, size=n_test, replace=False))
    test_idx = np.sort(np.concatenate(test_parts)).astype(np.int64)
    mask = np.ones(len(y), dtype=bool)
    mask[test_idx] = False
    return np.flatnonzero(mask).astype(np.int64), test_idx


def balanced_subsample_indices(y: np.ndarray, n_total: int, rng: np.random.Generator, *,
                               what: str = "samples") -> np.ndarray:
    """Pick ``n_total`` row indices spread as evenly as possible over the classes present in ``y``.

    Each of the ``K`` classes gets ``n_total // K`` rows; the remainder goes one each to the
    first classes (in sorted label order). Rows are drawn without replacement.

    Parameters
    ----------
    y : ndarray of shape (n_samples,)
        Integer labels.
    n_total : int
        Number of indices wanted, ``>= K``.
    rng : numpy.random.Generator
    what : str, default="samples"
        Word used in error messages (e.g. ``"training images"``).

    Returns
    -------
    idx : ndarray of shape (n_total,), sorted, int64
        Sorted, so the subsample keeps the source's row order.

    Raises
    ------
    ValueError
        If ``n_total < K`` or a class has fewer rows than its quota.
    """
    y = np.asarray(y)
    labels, counts = np.unique(y, return_counts=True)
    k = len(labels)
    if int(n_total) != n_total or n_total < k:
        raise ValueError(f"subsample must be an integer >= the number of classes ({k}), got {n_total!r}.")
    n_total = int(n_total)
    quotas = np.full(k, n_total // k)
    quotas[: n_total % k] += 1
    short = [(int(c), int(n), int(q)) for c, n, q in zip(labels, counts, quotas) if n < q]
    if short:
        c, n, q = short[0]
        limit = int(k * counts.min())
        raise ValueError(f"subsample={n_total} asks for {q} {what} of label {c}, but only {n} exist. "
                         f"Pass subsample <= {limit} (balanced) or subsample=None for all.")
    parts = [rng.choice(np.flatnonzero(y == c), size=q, replace=False) for c, q in zip(labels, quotas)]
    return np.sort(np.concatenate(parts)).astype(np.int64)


def train_test_split(ds: Dataset, test_fraction: float = 0.1, seed: int = 0) -> tuple[Dataset, Dataset]:
    """Deterministic stratified split of a :class:`Dataset` into train and test parts.

    The original code used a 90/10 split with ``random_state=0``; this keeps those defaults
    but stratifies, so both parts hold every class in the same proportion. Rows keep their
    order within each part.

    Parameters
    ----------
    ds : Dataset
    test_fraction : float, default=0.1
        Fraction of each class sent to the test part, in (0, 1).
    seed : int, default=0
        Seed of the ``numpy.random.default_rng`` that picks the test rows.

    Returns
    -------
    train, test : Dataset
        Same ``name``; ``params`` gains ``split`` (``"train"``/``"test"``), ``test_fraction``,
        ``split_seed`` and ``class_counts`` of the part.

    Raises
    ------
    ValueError
        If ``test_fraction`` is outside (0, 1) or a class has fewer than 2 samples.

    Examples
    --------
    >>> import numpy as np
    >>> ds = Dataset(X=np.arange(40.0).reshape(20, 2), y=np.repeat([0, 1], 10), name="toy")
    >>> train, test = train_test_split(ds, test_fraction=0.2, seed=0)
    >>> train.n_samples, test.n_samples, test.class_counts.tolist()
    (16, 4, [2, 2])
    """
    if not isinstance(ds, Dataset):
        raise TypeError(f"train_test_split expects an nnboundary.data.Dataset, got {type(ds).__name__}. "
                        "Real image data sets already come with x_test/y_test.")
    train_idx, test_idx = stratified_split_indices(ds.y, test_fraction, np.random.default_rng(seed))
    return _take(ds, train_idx, "train", test_fraction, seed), _take(ds, test_idx, "test", test_fraction, seed)


def _take(ds: Dataset, idx: np.ndarray, part: str, test_fraction: float, seed: int) -> Dataset:
    y = ds.y[idx]
    params = {**ds.params, "split": part, "test_fraction": float(test_fraction), "split_seed": int(seed),
              "class_counts": np.bincount(y, minlength=ds.n_classes).tolist()}
    return Dataset(X=ds.X[idx], y=y, name=ds.name, params=params)
