"""The data of one run: generated (or read), split, and described for the run directory."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nnboundary.experiments.registry import ExperimentConfig

__all__ = ["RunData", "load_run_data"]


@dataclass(frozen=True, eq=False)
class RunData:
    """Train and test arrays of a run.

    Attributes
    ----------
    X_train : ndarray of shape (N, d) float64, or (N, C, H, W) float32 for images
    y_train : ndarray of shape (N,) int64, labels 0..K-1
    X_test, y_test : the held-out part, same layout
    n_classes : int
    info : dict
        JSON-serialisable description (generator parameters, sizes, class counts).
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def in_features(self) -> int:
        """Input dimension as a flat vector (d, or C*H*W)."""
        return int(np.prod(self.X_train.shape[1:]))

    @property
    def is_2d(self) -> bool:
        """True for 2-D tabular inputs, the only ones drawn in input space."""
        return self.X_train.ndim == 2 and self.X_train.shape[1] == 2

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``X, y, X_test, y_test`` to an ``.npz`` readable by ``nnboundary analyze --data``."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp.npz")
        np.savez_compressed(tmp, X=self.X_train, y=self.y_train, X_test=self.X_test, y_test=self.y_test)
        os.replace(tmp, path)
        return path


def load_run_data(cfg: ExperimentConfig, data_dir: str | os.PathLike[str] | None = None) -> RunData:
    """Generate (simulated) or read (real) the data of ``cfg`` and split it, all seeded by ``cfg.seed``.

    Simulated sets come from :func:`nnboundary.data.make_simulated` and are split with
    :func:`nnboundary.data.train_test_split` (stratified, ``cfg.test_fraction``). Real sets come
    from :func:`nnboundary.data.load_real` with their own test split; ``n_samples`` subsamples the
    training images and ``data_dir`` says where the files are. Images are flattened for the
    fully connected models (``mlp``, ``asym_mlp``, ``conv_mlp``).

    Raises
    ------
    ValueError
        Unknown data set or bad generator arguments.
    nnboundary.data.DatasetNotFoundError
        Real data files not found (the message lists where it looked).
    """
    from nnboundary.data import REAL_DATASETS, make_simulated, train_test_split

    if cfg.data in REAL_DATASETS:
        return _load_real(cfg, data_dir)
    ds = make_simulated(cfg.data, n_samples=cfg.n_samples, seed=cfg.seed, **cfg.data_kwargs)
    train, test = train_test_split(ds, test_fraction=cfg.test_fraction, seed=cfg.seed)
    info = {"name": ds.name, "n_train": train.n_samples, "n_test": test.n_samples,
            "train_class_counts": train.class_counts.tolist(), "params": ds.params}
    return RunData(X_train=train.X, y_train=train.y, X_test=test.X, y_test=test.y,
                   n_classes=ds.n_classes, info=info)


def _load_real(cfg: ExperimentConfig, data_dir: str | os.PathLike[str] | None) -> RunData:
    from nnboundary.data import load_real

    ds = load_real(cfg.data, data_dir=data_dir, subsample=cfg.n_samples, seed=cfg.seed, **cfg.data_kwargs)
    Xtr, Xte = ds.x_train, ds.x_test
    if cfg.model in ("mlp", "asym_mlp", "conv_mlp"):
        Xtr, Xte = Xtr.reshape(len(Xtr), -1), Xte.reshape(len(Xte), -1)  # (N, C*H*W)
    info = {"name": ds.name, "n_train": int(len(ds.y_train)), "n_test": int(len(ds.y_test)),
            "classes": list(ds.classes), "settings": ds.settings}
    return RunData(X_train=Xtr, y_train=ds.y_train, X_test=Xte, y_test=ds.y_test, n_classes=ds.n_classes,
                   info=info)
