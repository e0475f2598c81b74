"""Shared plumbing of the applications: seed lists, data arrays, models, features, atomic output.

Nothing here is specific to forgetting or to attacks; both application modules use these helpers so
that they read their data, build their networks and write their run folders the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nnboundary._jsonio import atomic_write, write_json  # noqa: F401 - re-exported to the applications
from nnboundary._jsonio import to_jsonable as _jsonable  # noqa: F401
from torch import nn

from nnboundary.data import load_real, make_simulated, train_test_split
from nnboundary.experiments.registry import Profile
from nnboundary.models import build_model

if TYPE_CHECKING:
    from nnboundary.svm import MaxMarginClassifier

_FLAT_MODELS = ("mlp",)
_IMAGE_MODELS = ("resnet_mnist", "densenet")


# ----------------------------------------------------------------------------------------- configs
def seed_list(seeds: int | Sequence[int] | None, default: Sequence[int]) -> list[int]:
    """Normalise ``seeds`` (an int, a sequence or None for ``default``) to a non-empty list of ints."""
    out = list(default) if seeds is None else ([seeds] if isinstance(seeds, (int, np.integer)) else list(seeds))
    if not out or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0 for s in out):
        raise ValueError(f"seeds must be a non-negative int or a non-empty sequence of them, got {seeds!r}.")
    return [int(s) for s in out]


class _NoBar:
    """What :func:`work_bar` returns when progress is off: the calls a bar gets, doing nothing."""

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


def work_bar(total: int, desc: str, enabled: bool):
    """A tqdm bar over ``total`` units of an application's work (seeds × strategies, seeds × stages), or a
    do-nothing stand-in when ``enabled`` is False (``--no-progress``, tests)."""
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="step", dynamic_ncols=True)


# -------------------------------------------------------------------------------------------- data
@dataclass(frozen=True)
class Arrays:
    """Train/test arrays with labels ``0..K-1`` in the order of ``classes`` (original class ids).

    ``x_*`` are float32 of shape (N, C, H, W) for images or (N, d) for tabular data.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: tuple[int, ...]
    info: dict[str, Any]
    pixel_range: tuple[float, float] | None      # valid input range (images), None for tabular data


def load_arrays(data: Mapping[str, Any], classes: Sequence[int]) -> Arrays:
    """Load the data a config's ``data`` section names, keeping ``classes`` (relabelled in that order).

    ``data`` keys: ``source`` (``"real"`` or ``"simulated"``), ``name``, and for real data
    ``data_dir``, ``train_per_class``, ``test_per_class``, ``normalize`` (default ``"unit"``: pixels in
    [0, 1]); for simulated data ``n_samples``, ``test_fraction`` and ``kwargs``. ``seed`` seeds the
    subsampling / generation. Simulated inputs are standardised with the training mean and std.
    """
    classes = [int(c) for c in classes]
    seed = int(data.get("seed", 0))
    if data.get("source", "real") == "real":
        k = len(classes)
        per_tr, per_te = data.get("train_per_class"), data.get("test_per_class")
        ds = load_real(data["name"], data_dir=data.get("data_dir"), classes=classes,
                       subsample=None if per_tr is None else int(per_tr) * k,
                       test_subsample=None if per_te is None else int(per_te) * k,
                       seed=seed, normalize=data.get("normalize", "unit"))
        normalize = ds.settings.get("normalize", data.get("normalize", "unit"))
        rng = (0.0, 1.0) if normalize == "unit" else None
        return Arrays(ds.x_train.astype(np.float32), ds.y_train, ds.x_test.astype(np.float32), ds.y_test,
                      tuple(classes), {"dataset": ds.name, "settings": _jsonable(ds.settings)}, rng)
    if data.get("source") != "simulated":
        raise ValueError(f"data.source must be 'real' or 'simulated', got {data.get('source')!r}.")
    ds = make_simulated(data["name"], n_samples=data.get("n_samples"), seed=seed, **dict(data.get("kwargs", {})))
    train, test = train_test_split(ds, test_fraction=float(data.get("test_fraction", 0.2)), seed=seed)
    lookup = np.full(int(ds.y.max()) + 1, -1, dtype=np.int64)
    missing = sorted(set(classes) - set(np.unique(ds.y).tolist()))
    if missing:
        raise ValueError(f"{data['name']!r} has classes {sorted(np.unique(ds.y).tolist())}, not {missing}; "
                         "fix the task list.")
    lookup[classes] = np.arange(len(classes))
    mu, sd = train.X.mean(axis=0), train.X.std(axis=0) + 1e-12          # (d,), (d,)
    keep_tr, keep_te = lookup[train.y] >= 0, lookup[test.y] >= 0
    return Arrays(((train.X[keep_tr] - mu) / sd).astype(np.float32), lookup[train.y[keep_tr]],
                  ((test.X[keep_te] - mu) / sd).astype(np.float32), lookup[test.y[keep_te]], tuple(classes),
                  {"dataset": ds.name, "params": _jsonable(ds.params), "standardized": True}, None)


# ------------------------------------------------------------------------------------------ models
def mnist_network(p: Profile, dim: int) -> dict[str, Any]:
    """The applications' MNIST network (a config's ``model`` section) with a ``dim``-unit transformed space: paper a
    2-stage bottleneck ResNet, quick an MLP 784-256-``dim``, smoke an MLP 784-32-8."""
    mlp = {"activations": "relu", "init": "torch"}
    return p.pick(paper={"name": "resnet_mnist", "kwargs": {"width": 16, "stages": [[8, 32, 1], [16, 64, 1]],
                                                            "fc_width": 64, "transformed_dim": dim}},
                  quick={"name": "mlp", "kwargs": {"hidden": [256, dim], **mlp}},
                  smoke={"name": "mlp", "kwargs": {"hidden": [32, 8], **mlp}})


def build_network(model: Mapping[str, Any], input_shape: tuple[int, ...], n_classes: int,
                  seed: int) -> tuple[nn.Module, bool]:
    """Build ``model["name"]`` with ``model["kwargs"]`` for inputs of ``input_shape`` (one sample).

    Returns the network and whether inputs must be flattened to (N, prod(input_shape)) first. The
    input size, the number of classes and the seed are filled in here, not in the config.
    """
    name = model["name"]
    kwargs = dict(model.get("kwargs", {}))
    if name in _FLAT_MODELS:
        net = build_model(name, in_features=int(np.prod(input_shape)), n_classes=n_classes, seed=seed, **kwargs)
        return net, len(input_shape) > 1
    if name in _IMAGE_MODELS:
        if len(input_shape) != 3:
            raise ValueError(f"Model {name!r} needs image inputs (C, H, W), got samples of shape {input_shape}; "
                             "use model 'mlp' for tabular data.")
        net = build_model(name, in_channels=input_shape[0], n_classes=n_classes, seed=seed, **kwargs)
        return net, False
    raise ValueError(f"Model {name!r} is not supported by the applications; use one of "
                     f"{list(_FLAT_MODELS + _IMAGE_MODELS)} (models whose logits are head(features(x))).")


def head_arrays(model: nn.Module) -> tuple[np.ndarray, np.ndarray]:
    """``(W (K, D), b (K,))`` of ``model.head`` as float64 numpy."""
    W = model.head.weight.detach().double().cpu().numpy()
    b = (model.head.bias.detach().double().cpu().numpy() if model.head.bias is not None
         else np.zeros(W.shape[0]))
    return W, b


# -------------------------------------------------------------------------------------------- output
def write_csv(path: Path, frame: Any) -> Path:
    return atomic_write(path, lambda fh: frame.to_csv(fh, index=False, float_format="%.6g"))


def write_jsonl(path: Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    """One JSON object per line (NaN/inf as null), atomically: the run's ``metrics.jsonl``."""
    import json

    return atomic_write(path, lambda fh: fh.write("".join(json.dumps(_jsonable(r), allow_nan=False) + "\n"
                                                          for r in rows)))


jsonable = _jsonable


def fit_svm(H: np.ndarray, y: np.ndarray, soft_C: float) -> tuple["MaxMarginClassifier | None", bool]:
    """Hard-margin SVM, or the soft margin ``soft_C`` when the features are not separable.

    Returns ``(svm, separable)``; ``svm`` is None when even the soft-margin optimum is W = 0 (degenerate features,
    e.g. a dead ReLU layer), so there is no boundary to use.
    """
    from nnboundary import analysis
    from nnboundary.svm import MaxMarginClassifier

    svm, separable = analysis.fit_svm(MaxMarginClassifier(), H, y, soft_C)  # the one hard-then-soft fallback
    return (svm if separable or np.any(svm.coef_) else None), separable
