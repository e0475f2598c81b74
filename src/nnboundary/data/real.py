"""Real image data sets: MNIST, Fashion-MNIST, CIFAR-10 and scikit-learn's 8×8 digits.

Nothing is downloaded. :func:`load_real` looks for the files, in this order, in

1. the ``data_dir`` argument (the CLI's ``--data-dir``): a folder, or an ``.npz`` file;
2. each folder in the environment variable ``NNBOUNDARY_DATA_DIR`` (``os.pathsep``-separated);
3. the cache folder ``$XDG_CACHE_HOME/nnboundary/data`` (default ``~/.cache/nnboundary/data``);
4. for Fashion-MNIST also ``/usr/share/datasets/fashion-mnist`` (Debian package
   ``dataset-fashion-mnist``).

In each folder it accepts, first found wins:

``mnist``
    ``mnist.npz`` (uint8 arrays x_train, y_train, x_test, y_test; keras' file works), or the four
    IDX files ``{train,t10k}-{images-idx3,labels-idx1}-ubyte`` (``.gz`` or not) in ``mnist/``,
    ``MNIST/raw/``, ``MNIST/`` or ``MNIST_data/``.
``fashion_mnist``
    ``fashion_mnist.npz`` or ``fashion-mnist.npz``, or the four IDX files in ``fashion-mnist/``,
    ``fashion_mnist/``, ``FashionMNIST/raw/`` or ``FashionMNIST/``.
``cifar10``
    ``cifar10.npz``, ``cifar-10.npz`` or ``cifar10_airplane_bird.npz`` (the last holds classes
    0 and 2 only, so it serves ``classes=(0, 2)``), or ``cifar-10-batches-py/`` with
    ``data_batch_1`` … ``data_batch_5`` and ``test_batch``.
``digits``
    nothing: bundled with scikit-learn (1797 images, 8×8, a fixed stratified 80/20 split).

The IDX files and CIFAR batches may also sit directly in the ``data_dir`` folder. (Only there:
MNIST and Fashion-MNIST use the same IDX file names, so a bare folder is only trusted when the
caller named it.)
"""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ._errors import DataFormatError, DatasetNotFoundError
from ._readers import read_cifar_batch, read_idx, read_npz
from ._split import balanced_subsample_indices, stratified_split_indices

__all__ = ["ENV_VAR", "REAL_DATASETS", "ImageDataset", "data_search_dirs", "default_data_dir", "load_real"]

log = logging.getLogger(__name__)

ENV_VAR = "NNBOUNDARY_DATA_DIR"
"""Environment variable naming extra data folders (``os.pathsep``-separated)."""

Normalize = Literal["standard", "unit", "none"]
_NORMALIZE = ("standard", "unit", "none")
_IDX_FILES = {"x_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
              "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte"}
_CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_FILES = (*_CIFAR_TRAIN, "test_batch")
_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


@dataclass(frozen=True)
class _Spec:
    """What a real data set looks like and where its files may be."""

    name: str
    title: str
    fmt: Literal["idx", "cifar", "sklearn"]
    image_shape: tuple[int, int, int]                    # (C, H, W)
    class_names: tuple[str, ...]
    npz_names: tuple[str, ...] = ()
    subdirs: tuple[str, ...] = ()
    system_dirs: tuple[tuple[str, str], ...] = ()       # (folder, origin) searched last
    pixel_max: int = 255
    origin: str = ""                                     # where users can get the files
    npz_note: str = ""                                   # caveat on one of the npz names


_SPECS: dict[str, _Spec] = {
    "mnist": _Spec(
        "mnist", "MNIST", "idx", (1, 28, 28), tuple(str(d) for d in range(10)),
        npz_names=("mnist.npz",), subdirs=("mnist", "MNIST/raw", "MNIST", "MNIST_data"),
        origin="http://yann.lecun.com/exdb/mnist/ (or any mirror; keras' mnist.npz also works)"),
    "fashion_mnist": _Spec(
        "fashion_mnist", "Fashion-MNIST", "idx", (1, 28, 28),
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        npz_names=("fashion_mnist.npz", "fashion-mnist.npz"),
        subdirs=("fashion-mnist", "fashion_mnist", "FashionMNIST/raw", "FashionMNIST"),
        system_dirs=(("/usr/share/datasets/fashion-mnist", "Debian package dataset-fashion-mnist"),),
        origin="`apt-get install dataset-fashion-mnist` or https://github.com/zalandoresearch/fashion-mnist"),
    "cifar10": _Spec(
        "cifar10", "CIFAR-10", "cifar", (3, 32, 32),
        ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
        npz_names=("cifar10.npz", "cifar-10.npz", "cifar10_airplane_bird.npz"),
        subdirs=("cifar-10-batches-py", "CIFAR10/cifar-10-batches-py", "cifar10/cifar-10-batches-py"),
        origin="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz (unpack it)",
        npz_note="; cifar10_airplane_bird.npz holds only classes 0 and 2"),
    "digits": _Spec("digits", "8x8 digits", "sklearn", (1, 8, 8), tuple(str(d) for d in range(10)),
                    pixel_max=16),
}
_ALIASES = {"fashion-mnist": "fashion_mnist", "fashionmnist": "fashion_mnist", "fmnist": "fashion_mnist",
            "cifar-10": "cifar10", "cifar_10": "cifar10"}
REAL_DATASETS: tuple[str, ...] = tuple(_SPECS)
"""Names accepted by :func:`load_real`."""

_DIGITS_TEST_FRACTION, _DIGITS_SPLIT_SEED = 0.2, 0


# ------------------------------------------------------------------------------------- container

@dataclass(frozen=True, eq=False)
class ImageDataset:
    """A real image classification data set, ready for ``torch.from_numpy``.

    Parameters
    ----------
    x_train : ndarray of shape (n_train, C, H, W), float32
        Training images, channels first, normalised as ``settings["normalize"]`` says.
    y_train : ndarray of shape (n_train,), int64
        Labels in ``0..K-1``; label ``k`` is original class ``classes[k]``.
    x_test : ndarray of shape (n_test, C, H, W), float32
    y_test : ndarray of shape (n_test,), int64
    name : str
        ``"mnist"``, ``"fashion_mnist"``, ``"cifar10"`` or ``"digits"``.
    classes : tuple of int
        Original class ids, in label order.
    class_names : tuple of str
        Human-readable names, in label order.
    settings : dict
        Everything needed to reproduce the arrays (JSON-serialisable): the arguments of
        :func:`load_real`, the file read, the normalisation statistics, class counts.

    Attributes
    ----------
    n_classes : int
    image_shape : tuple of int
        ``(C, H, W)``.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    name: str
    classes: tuple[int, ...]
    class_names: tuple[str, ...]
    settings: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for part in ("train", "test"):
            x, y = getattr(self, f"x_{part}"), getattr(self, f"y_{part}")
            if x.ndim != 4 or y.shape != (len(x),):
                raise ValueError(f"ImageDataset {self.name!r}: x_{part} must be (n, C, H, W) and y_{part} (n,), "
                                 f"got {x.shape} and {y.shape}.")

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.x_train.shape[1:])  # type: ignore[return-value]

    def __repr__(self) -> str:
        return (f"ImageDataset(name={self.name!r}, classes={self.classes}, n_train={len(self.y_train)}, "
                f"n_test={len(self.y_test)}, image_shape={self.image_shape}, "
                f"normalize={self.settings.get('normalize')!r})")


# --------------------------------------------------------------------------------------- search

def default_data_dir() -> Path:
    """The cache folder searched last: ``$XDG_CACHE_HOME/nnboundary/data`` or ``~/.cache/nnboundary/data``."""
    cache = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(cache).expanduser() / "nnboundary" / "data"


def data_search_dirs(data_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """Folders searched for real data, in order: ``data_dir``, ``$NNBOUNDARY_DATA_DIR``, the cache.

    Parameters
    ----------
    data_dir : path-like or None, default=None

    Returns
    -------
    list of Path
    """
    return [root for root, _, _ in _roots(None, data_dir)]


def _roots(spec: _Spec | None, data_dir: str | os.PathLike[str] | None) -> list[tuple[Path, str, bool]]:
    """``(folder, origin, files_may_sit_directly_here)`` in search order."""
    roots: list[tuple[Path, str, bool]] = []
    if data_dir is not None:
        roots.append((Path(data_dir).expanduser(), "data_dir argument", True))
    for part in os.environ.get(ENV_VAR, "").split(os.pathsep):
        if part.strip():
            roots.append((Path(part.strip()).expanduser(), ENV_VAR, False))
    roots.append((default_data_dir(), "default cache folder", False))
    for folder, origin in (spec.system_dirs if spec else ()):
        roots.append((Path(folder), origin, True))
    return roots


@dataclass
class _Source:
    fmt: Literal["npz", "idx", "cifar"]
    path: Path                                  # the .npz file or the folder
    files: dict[str, Path] = field(default_factory=dict)


@dataclass
class _Search:
    lines: list[str] = field(default_factory=list)       # one per root, for the error message
    paths: list[Path] = field(default_factory=list)      # every file or folder checked
    notes: list[str] = field(default_factory=list)       # near misses worth telling the user


def _idx_source(folder: Path, search: _Search) -> _Source | None:
    files, missing = {}, []
    for key, stem in _IDX_FILES.items():
        hit = next((folder / f for f in (stem, f"{stem}.gz") if (folder / f).is_file()), None)
        if hit is None:
            missing.append(f"{stem}[.gz]")
        else:
            files[key] = hit
    if files and missing:
        search.notes.append(f"{folder} has {len(files)} of the 4 IDX files; missing {', '.join(missing)}.")
    return _Source("idx", folder, files) if not missing else None


def _cifar_source(folder: Path, search: _Search) -> _Source | None:
    present = {f: folder / f for f in _CIFAR_FILES if (folder / f).is_file()}
    if present and len(present) < len(_CIFAR_FILES):
        missing = [f for f in _CIFAR_FILES if f not in present]
        search.notes.append(f"{folder} has only part of the CIFAR-10 batches; missing {', '.join(missing)}.")
    return _Source("cifar", folder, present) if len(present) == len(_CIFAR_FILES) else None


def _find_sources(spec: _Spec, data_dir: str | os.PathLike[str] | None, search: _Search) -> list[_Source]:
    sources: list[_Source] = []
    original = "IDX files" if spec.fmt == "idx" else "CIFAR-10 batches"
    for root, origin, here in _roots(spec, data_dir):
        search.paths.append(root)
        if root.is_file():
            search.lines.append(f"{root} ({origin})")
            if root.suffix == ".npz":
                sources.append(_Source("npz", root))
            else:
                search.notes.append(f"{root} is a file but not an .npz archive; pass its folder instead.")
            continue
        if not root.is_dir():
            search.lines.append(f"{root}{os.sep} ({origin}): does not exist")
            continue
        folders = ([root] if here else []) + [root / sub for sub in spec.subdirs]
        search.paths += [root / n for n in spec.npz_names] + folders[1 if here else 0:]
        looked = [*spec.npz_names, f"{original} in " + ", ".join(
            ["./", *(f"{sub}/" for sub in spec.subdirs)] if here else [f"{sub}/" for sub in spec.subdirs])]
        search.lines.append(f"{root}{os.sep} ({origin}): looked for {'; '.join(looked)}")
        sources += [_Source("npz", root / n) for n in spec.npz_names if (root / n).is_file()]
        for folder in folders:
            if folder.is_dir():
                src = _idx_source(folder, search) if spec.fmt == "idx" else _cifar_source(folder, search)
                if src is not None:
                    sources.append(src)
    return sources


def _not_found(spec: _Spec, search: _Search) -> DatasetNotFoundError:
    if spec.fmt == "idx":
        originals = ("the four IDX files " + ", ".join(f"{s}.gz" for s in _IDX_FILES.values())
                     + " (gzipped or not), directly in DIR or in one of its subfolders " + ", ".join(
                         f"{s}/" for s in spec.subdirs))
    else:
        originals = ("the folder cifar-10-batches-py/ (data_batch_1 … data_batch_5, test_batch) "
                     "inside DIR, or those files directly in DIR")
    lines = [f"Could not find the {spec.title} data set ({spec.name!r}). Searched, in order:"]
    lines += [f"  - {line}" for line in search.lines]
    lines += [f"  ! {n}" for n in search.notes]
    lines += ["Provide it in one of these ways:",
              "  * pass --data-dir DIR on the command line, or load_real(..., data_dir=DIR) in Python;",
              f"  * set the environment variable {ENV_VAR}=DIR;",
              f"  * or put the files in {default_data_dir()}.",
              f"DIR must hold {' or '.join(spec.npz_names)} (uint8 arrays x_train, y_train, x_test, y_test"
              f"{spec.npz_note}), "
              f"or {originals}.",
              f"Get the files from {spec.origin}."]
    return DatasetNotFoundError("\n".join(lines), dataset=spec.name, searched=search.paths)


# --------------------------------------------------------------------------------------- loading

@dataclass
class _Raw:
    """Arrays straight from a source, classes already selected; images uint8 (n, C, H, W)."""

    x_train: np.ndarray
    y_train: np.ndarray                          # original class ids
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    fmt: str
    extra: dict[str, Any] = field(default_factory=dict)


def _check_labels(y: np.ndarray, spec: _Spec, where: str) -> np.ndarray:
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DataFormatError(f"{where}: labels must be a 1-D integer array, got {y.dtype} {y.shape}.")
    if y.size and (y.min() < 0 or y.max() >= len(spec.class_names)):
        raise DataFormatError(f"{where}: labels must lie in 0..{len(spec.class_names) - 1}, "
                              f"found {int(y.min())}..{int(y.max())}.")
    return y.astype(np.int64)


def _to_nchw(x: np.ndarray, spec: _Spec, where: str) -> np.ndarray:
    """Images in any of (n, H, W) [C = 1], (n, H, W, C), (n, C, H, W) to contiguous uint8 (n, C, H, W)."""
    c, h, w = spec.image_shape
    if x.shape[1:] == (h, w) and c == 1:
        x = x[:, None]
    elif x.shape[1:] == (h, w, c):
        x = x.transpose(0, 3, 1, 2)
    elif x.shape[1:] != (c, h, w):
        raise DataFormatError(f"{where}: images must have shape (n, {h}, {w}, {c}) or (n, {c}, {h}, {w})"
                              f"{f' or (n, {h}, {w})' if c == 1 else ''}, got {x.shape}.")
    if x.dtype != np.uint8:
        if not np.issubdtype(x.dtype, np.integer) or (x.size and (x.min() < 0 or x.max() > spec.pixel_max)):
            raise DataFormatError(f"{where}: pixels must be integers in 0..{spec.pixel_max} (uint8), "
                                  f"got dtype {x.dtype}. Store the raw, unnormalised images.")
    return np.ascontiguousarray(x, dtype=np.uint8)


def _missing_classes(y: np.ndarray, classes: Sequence[int]) -> list[int]:
    return sorted(set(classes) - set(np.unique(y).tolist()))


def _select(x: np.ndarray, y: np.ndarray, classes: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    keep = np.isin(y, classes)
    return x[keep], y[keep]


def _load_npz(src: _Source, spec: _Spec, classes: Sequence[int], search: _Search) -> _Raw | None:
    labels = read_npz(src.path, ("y_train", "y_test"))
    y_tr = _check_labels(labels["y_train"], spec, f"{src.path}: y_train")
    y_te = _check_labels(labels["y_test"], spec, f"{src.path}: y_test")
    missing = _missing_classes(y_tr, classes)
    if missing:
        held = sorted(np.unique(y_tr).tolist())
        search.notes.append(f"{src.path} was found but holds only classes {held}, not {missing}; "
                            f"pass classes={tuple(held)} or provide the full data set.")
        return None
    images = read_npz(src.path, ("x_train", "x_test"))
    out = []
    for part, x, y in (("x_train", images["x_train"], y_tr), ("x_test", images["x_test"], y_te)):
        if len(x) != len(y):
            raise DataFormatError(f"{src.path}: {part} has {len(x)} images but {len(y)} labels.")
        keep = np.isin(y, classes)
        out += [_to_nchw(x[keep], spec, f"{src.path}: {part}"), y[keep]]
    return _Raw(*out, source=str(src.path), fmt="npz")


def _load_idx(src: _Source, spec: _Spec, classes: Sequence[int]) -> _Raw:
    arrays = {}
    for part in ("train", "test"):
        xp, yp = src.files[f"x_{part}"], src.files[f"y_{part}"]
        x, y = read_idx(xp), _check_labels(read_idx(yp), spec, str(yp))
        if x.ndim != 3 or len(x) != len(y):
            raise DataFormatError(f"{xp}: expected {len(y)} images of shape {spec.image_shape[1:]} to match "
                                  f"{yp.name}, got an array of shape {x.shape}.")
        x, y = _select(x, y, classes)
        arrays[part] = (_to_nchw(x, spec, str(xp)), y)
    return _Raw(*arrays["train"], *arrays["test"], source=str(src.path), fmt="idx")


def _load_cifar(src: _Source, spec: _Spec, classes: Sequence[int]) -> _Raw:
    parts = {"train": [], "test": []}
    for fname in _CIFAR_FILES:
        x, y = read_cifar_batch(src.files[fname])
        _check_labels(y, spec, str(src.files[fname]))
        parts["test" if fname == "test_batch" else "train"].append(_select(x, y, classes))
    train = [np.concatenate(a) for a in zip(*parts["train"])]
    (x_te, y_te), = parts["test"]
    return _Raw(train[0], train[1], x_te, y_te, source=str(src.path), fmt="cifar-python")


def _load_digits() -> _Raw:
    from sklearn.datasets import load_digits   # bundled with scikit-learn; no download

    bunch = load_digits()
    x = np.asarray(bunch.images).round().astype(np.uint8)[:, None]     # (1797, 1, 8, 8), values 0..16
    y = np.asarray(bunch.target, dtype=np.int64)
    tr, te = stratified_split_indices(y, _DIGITS_TEST_FRACTION, np.random.default_rng(_DIGITS_SPLIT_SEED))
    return _Raw(x[tr], y[tr], x[te], y[te], source="sklearn.datasets.load_digits", fmt="sklearn",
                extra={"split": {"test_fraction": _DIGITS_TEST_FRACTION, "seed": _DIGITS_SPLIT_SEED,
                                 "stratified": True}})


def _load_raw(spec: _Spec, data_dir: Any, classes: Sequence[int]) -> _Raw:
    if spec.fmt == "sklearn":
        raw = _load_digits()
        return _Raw(*_select(raw.x_train, raw.y_train, classes), *_select(raw.x_test, raw.y_test, classes),
                    source=raw.source, fmt=raw.fmt, extra=raw.extra)
    search = _Search()
    for src in _find_sources(spec, data_dir, search):
        if src.fmt == "npz":
            raw = _load_npz(src, spec, classes, search)
            if raw is None:
                continue
        else:
            raw = (_load_idx if src.fmt == "idx" else _load_cifar)(src, spec, classes)
        log.info("Loaded %s from %s", spec.name, raw.source)
        return raw
    raise _not_found(spec, search)


# ------------------------------------------------------------------------------------- settings

def _resolve_name(name: str) -> _Spec:
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in _SPECS:
        close = difflib.get_close_matches(key, list(_SPECS) + list(_ALIASES), n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(f"Unknown real data set {name!r}.{hint} Available: {', '.join(_SPECS)}. "
                         "Simulated 2-D sets are made by nnboundary.data.make_simulated.")
    return _SPECS[key]


def _resolve_classes(classes: Sequence[int | str] | None, spec: _Spec) -> tuple[int, ...]:
    if classes is None:
        return tuple(range(len(spec.class_names)))
    if isinstance(classes, (str, bytes)) or not isinstance(classes, Sequence | np.ndarray):
        raise TypeError(f"classes must be a sequence of class ids, e.g. (0, 1), got {classes!r}.")
    lower = [n.lower() for n in spec.class_names]
    out = []
    for c in classes:
        if isinstance(c, str) and c.lower() in lower:
            out.append(lower.index(c.lower()))
        elif isinstance(c, (int, np.integer)) and not isinstance(c, bool) and 0 <= c < len(lower):
            out.append(int(c))
        else:
            raise ValueError(f"{spec.title} has classes 0..{len(lower) - 1} ({', '.join(spec.class_names)}); "
                             f"got {c!r} in classes={tuple(classes)!r}.")
    if len(set(out)) != len(out) or len(out) < 2:
        raise ValueError(f"classes must name at least two distinct classes, got {tuple(classes)!r}.")
    return tuple(out)


def _channel_stats(x: np.ndarray, pixel_max: int) -> tuple[list[float], list[float]]:
    """Exact per-channel mean and std of ``x / pixel_max`` from pixel histograms; x uint8 (n, C, H, W)."""
    values = np.arange(256, dtype=np.float64) / pixel_max
    means, stds = [], []
    for c in range(x.shape[1]):
        counts = np.bincount(x[:, c].ravel(), minlength=256).astype(np.float64)  # (256,)
        total = counts.sum()
        mean = float(counts @ values / total)
        var = float(counts @ (values - mean) ** 2 / total)
        means.append(mean)
        stds.append(float(np.sqrt(var)))
    return means, stds


def _to_float(x: np.ndarray, pixel_max: int, mean: list[float] | None, std: list[float] | None) -> np.ndarray:
    """uint8 (n, C, H, W) → float32 (n, C, H, W), scaled to [0, 1] and optionally standardised."""
    out = x.astype(np.float32)
    if pixel_max != 1:
        out *= np.float32(1.0 / pixel_max)
    if mean is not None and std is not None:
        shape = (1, -1, 1, 1)
        out -= np.asarray(mean, dtype=np.float32).reshape(shape)
        out /= np.asarray(std, dtype=np.float32).reshape(shape)
    return out


def _subsample(x: np.ndarray, y: np.ndarray, n: int | None, rng: np.random.Generator,
               what: str) -> tuple[np.ndarray, np.ndarray]:
    if n is None:
        return x, y
    idx = balanced_subsample_indices(y, n, rng, what=what)
    return x[idx], y[idx]


def load_real(name: str, data_dir: str | os.PathLike[str] | None = None,
              classes: Sequence[int | str] | None = None, subsample: int | None = None, seed: int = 0,
              normalize: Normalize = "standard", test_subsample: int | None = None) -> ImageDataset:
    """Load a real image data set from local files, with class selection, subsampling and normalisation.

    Parameters
    ----------
    name : {"mnist", "fashion_mnist", "cifar10", "digits"}
    data_dir : path-like or None, default=None
        A folder (or ``.npz`` file) searched before ``$NNBOUNDARY_DATA_DIR`` and the cache
        folder; see the module docstring for the file names. Ignored for ``"digits"``.
    classes : sequence of int (or class names) or None, default=None
        Original class ids to keep, e.g. ``(0, 1)`` for MNIST 0 vs 1 or ``(0, 2)`` for CIFAR-10
        airplane vs bird. Labels are remapped to ``0..K-1`` in this order. None keeps all.
    subsample : int or None, default=None
        Keep this many training images, balanced over the classes (``subsample // K`` each, the
        remainder to the first classes), drawn with ``seed``. None keeps all.
    seed : int, default=0
        Seed of the subsampling (train and test use independent streams).
    normalize : {"standard", "unit", "none"}, default="standard"
        ``"unit"`` maps pixels to [0, 1] (``x / 255``, ``x / 16`` for digits; the original's
        MNIST); ``"standard"`` then subtracts the per-channel mean and divides by the per-channel
        std, both measured on the returned *training* images and recorded in ``settings``;
        ``"none"`` keeps raw pixel values 0–255 as float (the original's CIFAR-10).
    test_subsample : int or None, default=None
        Like ``subsample``, for the test set.

    Returns
    -------
    ImageDataset
        ``x_train`` float32 of shape (n_train, C, H, W) (MNIST family: C=1, 28×28; CIFAR-10:
        3×32×32; digits: 1×8×8), ``y_train`` int64 of shape (n_train,), the same for the test
        set, and ``settings``.

    Raises
    ------
    DatasetNotFoundError
        No usable files; the message lists every place searched and how to provide them.
    DataFormatError
        A file exists but is corrupt or not in the expected format.
    ValueError
        Unknown name, class ids or normalisation, or a subsample larger than a class.

    Examples
    --------
    >>> ds = load_real("digits", classes=(0, 1), normalize="unit")
    >>> ds.x_train.shape[1:], ds.classes, sorted(set(ds.y_train.tolist()))
    ((1, 8, 8), (0, 1), [0, 1])
    """
    spec = _resolve_name(name)
    cls = _resolve_classes(classes, spec)
    if normalize not in _NORMALIZE:
        raise ValueError(f"normalize must be one of {_NORMALIZE}, got {normalize!r}.")
    raw = _load_raw(spec, data_dir, cls)
    lut = np.full(len(spec.class_names), -1, dtype=np.int64)
    lut[list(cls)] = np.arange(len(cls))
    train_rng, test_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    x_tr, y_tr = _subsample(raw.x_train, lut[raw.y_train], subsample, train_rng, "training images")
    x_te, y_te = _subsample(raw.x_test, lut[raw.y_test], test_subsample, test_rng, "test images")
    mean = std = None
    if normalize == "standard":
        mean, std = _channel_stats(x_tr, spec.pixel_max)
        std = [s if s > 0 else 1.0 for s in std]                 # a constant channel is left centred only
    pixel_max = 1 if normalize == "none" else spec.pixel_max
    settings = {
        "name": spec.name, "classes": list(cls), "class_names": [spec.class_names[c] for c in cls],
        "subsample": subsample, "test_subsample": test_subsample, "seed": int(seed),
        "normalize": normalize, "pixel_max": spec.pixel_max, "mean": mean, "std": std,
        "stats_from": "returned training images, in units of x / pixel_max" if mean is not None else None,
        "layout": "NCHW", "dtype": "float32", "source": raw.source, "format": raw.fmt,
        "n_train": int(len(y_tr)), "n_test": int(len(y_te)),
        "train_class_counts": np.bincount(y_tr, minlength=len(cls)).tolist(),
        "test_class_counts": np.bincount(y_te, minlength=len(cls)).tolist(), **raw.extra,
    }
    return ImageDataset(x_train=_to_float(x_tr, pixel_max, mean, std), y_train=y_tr,
                        x_test=_to_float(x_te, pixel_max, mean, std), y_test=y_te, name=spec.name,
                        classes=cls, class_names=tuple(settings["class_names"]), settings=settings)
