"""The :class:`Dataset` container shared by all simulated (tabular) data sets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Dataset"]


@dataclass(frozen=True, eq=False)
class Dataset:
    """A labelled point cloud: the input to every 2-D experiment.

    Instances are frozen; ``X`` and ``y`` are converted on construction to
    C-contiguous float64 and int64 arrays.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Inputs, float64.
    y : ndarray of shape (n_samples,)
        Integer labels in ``0..n_classes - 1``, int64.
    name : str
        Registry name of the generator (e.g. ``"blobs"``, ``"plate_large"``).
    params : dict
        Everything needed to regenerate the data (generator arguments, seed, scale) plus
        derived facts (class counts); JSON-serialisable.

    Attributes
    ----------
    n_samples : int
    n_features : int
    n_classes : int
        ``max(y) + 1``.
    class_counts : ndarray of shape (n_classes,)
        Number of samples per label.

    Examples
    --------
    >>> import numpy as np
    >>> ds = Dataset(X=np.zeros((4, 2)), y=np.array([0, 1, 0, 1]), name="toy", params={})
    >>> ds.n_samples, ds.n_features, ds.n_classes
    (4, 2, 2)
    """

    X: np.ndarray
    y: np.ndarray
    name: str
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        X = np.ascontiguousarray(self.X, dtype=np.float64)
        y = np.asarray(self.y)
        if X.ndim != 2:
            raise ValueError(f"Dataset {self.name!r}: X must have shape (n_samples, n_features), "
                             f"got shape {X.shape}. Reshape it with X.reshape(len(X), -1).")
        if y.ndim != 1 or len(y) != len(X):
            raise ValueError(f"Dataset {self.name!r}: y must have shape ({len(X)},) to match X, "
                             f"got shape {y.shape}.")
        if y.dtype.kind not in "iub" and not (y.dtype.kind == "f" and np.all(y == np.round(y))):
            raise ValueError(f"Dataset {self.name!r}: labels must be integers 0..K-1, got dtype {y.dtype}.")
        y = np.ascontiguousarray(y, dtype=np.int64)
        if y.size and y.min() < 0:
            raise ValueError(f"Dataset {self.name!r}: labels must be >= 0, got min {y.min()}. "
                             "Map them to 0..K-1 first (np.unique(y, return_inverse=True)).")
        object.__setattr__(self, "X", X)
        object.__setattr__(self, "y", y)
        object.__setattr__(self, "params", dict(self.params))

    @property
    def n_samples(self) -> int:
        return int(self.X.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.X.shape[1])

    @property
    def n_classes(self) -> int:
        return int(self.y.max()) + 1 if self.y.size else 0

    @property
    def class_counts(self) -> np.ndarray:
        return np.bincount(self.y, minlength=self.n_classes)

    def __repr__(self) -> str:
        counts = ", ".join(str(int(c)) for c in self.class_counts)
        return (f"Dataset(name={self.name!r}, n_samples={self.n_samples}, n_features={self.n_features}, "
                f"class_counts=[{counts}])")
