"""Split any PyTorch classifier into ``logits = head(features(x))`` and read the features.

The *head* is the ``nn.Linear`` whose output is the model's output (its logits); its input is the *transformed
space* (the last hidden layer's output) in which the max-margin SVM is fitted. The head is found by the one head
discovery of :mod:`nnboundary.models.heads` (one forward pass on the first batch: the linear layer whose output *is*
the model's output) and its input is captured with a forward pre-hook, so any ``nn.Module`` works.

Notation: N samples, B a batch, D = ``head.in_features``, K = ``head.out_features`` (K = 1 for a single-logit
binary head).

Batches
-------
Every batch of a DataLoader / Dataset (or the arrays given directly) is read like this:

* a tensor or array ``x``: ``model(x)``, no labels;
* a tuple or list ``(x,)`` or ``(x, y)``: ``model(x)``, labels ``y``; ``x`` a dict: ``model(**x)``. Longer tuples
  are refused (an item would be dropped silently): pass ``forward=``;
* a dict (Hugging Face convention, also ``BatchEncoding``): the label key (the first of ``label_key`` present,
  default ``("labels", "label", "y")``) holds the labels, and **every other key** goes to ``model(**inputs)``, so
  ``attention_mask`` and friends are never dropped;
* anything else, or any of these read differently: ``forward=callable(model, batch) -> output``. The labels are
  then still read from the batch as above (tuple item 1, the dict's label key).

Tensors inside a batch are moved to the device; floating-point ones are cast to the model's dtype, integer ones
(token ids, masks) are left as they are. A model that fails on ``uint8`` images gets one error that says to convert
and normalise them as in training.

Outputs may be a tensor, a tuple/list (first element), a dict (``"logits"``) or an object with ``.logits``. On every
batch the head's output is checked against the model's logits, so a head that is not really the last layer is
reported rather than analysed.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, SequentialSampler, Subset

from nnboundary.device import resolve_device
from nnboundary.models.heads import (
    HeadNotFoundError,
    candidates_text,
    find_head,
    linear_modules,
    output_logits,
    probe_head,
)

__all__ = [
    "HeadNotFoundError",
    "SplitClassifier",
    "ExtractedFeatures",
    "HeadInfo",
    "LABEL_KEYS",
    "split_classifier",
    "capture_head_input",
    "extract_features",
    "logits_path",
    "n_rows",
    "select_rows",
    "head_params",
    "head_predict",
    "describe",
    "linear_modules",
    "model_device",
]

logger = logging.getLogger(__name__)

#: Dict batches: the first of these keys present holds the labels; every other key is an input of ``forward``.
LABEL_KEYS = ("labels", "label", "y")

#: ``forward=`` callable: ``forward(model, batch) -> output`` (tensor, tuple, dict or object with ``.logits``).
Forward = Callable[[nn.Module, Any], Any]


# ----------------------------------------------------------------------------- the split


@dataclass(frozen=True)
class SplitClassifier:
    """A classifier seen as ``logits = head(feature_map(x))``.

    Shape: x (N, *) -> features (N, D), D = ``head.in_features`` -> logits (N, K),
    K = ``head.out_features``.

    Attributes
    ----------
    model : nn.Module
        The whole classifier (not copied: hooks are attached to it temporarily).
    head : nn.Linear
        The last linear layer. ``head.reset_parameters()`` re-initialises it in place.
    head_name : str
        Dotted path of the head inside ``model`` (``""`` if the model itself is the head).
    candidates : tuple of str
        The model's ``nn.Linear`` layers nearest the output, as ``"name (Linear D->K)"``, for messages.
    """

    model: nn.Module
    head: nn.Linear
    head_name: str
    candidates: tuple[str, ...] = field(default=(), compare=False)

    @property
    def n_features(self) -> int:
        """D, the dimension of the transformed space."""
        return int(self.head.in_features)

    @property
    def n_outputs(self) -> int:
        """Number of logits K (1 for a single-logit binary head)."""
        return int(self.head.out_features)

    @property
    def n_classes(self) -> int:
        """Number of classes: K, or 2 for a single-logit head."""
        return max(2, self.n_outputs)

    def feature_map(self, x: Tensor) -> Tensor:
        """Features of a batch: the head's input. Shape (B, *) -> (B, D). Gradients flow."""
        with capture_head_input(self.head) as cap:
            self.model(x)
        return cap.inputs[-1]


def _candidates(model: nn.Module) -> tuple[str, ...]:
    return tuple(f"{n or '<model>'} (Linear {m.in_features}->{m.out_features})" for n, m in linear_modules(model)[-8:])


def split_classifier(
    model: nn.Module, head: str | nn.Module | None = None, n_classes: int | None = None
) -> SplitClassifier:
    """Identify the head of a classifier from its module tree (no forward pass).

    Parameters
    ----------
    model : nn.Module
        Any classifier whose logits are the output of an ``nn.Linear``.
    head : str or nn.Module, default=None
        Dotted name of the head (``"fc"``, ``"classifier.2"``), the head module itself, or None to discover it with
        the static rules of :func:`nnboundary.models.heads.find_head`.
    n_classes : int, default=None
        Number of logits the model produces, if known. A single-logit binary head has ``n_classes=1`` here.

    Returns
    -------
    SplitClassifier

    Raises
    ------
    HeadNotFoundError, TypeError
        As :func:`~nnboundary.models.heads.find_head`.
    """
    mod, name = find_head(model, head, n_classes=n_classes)
    return SplitClassifier(model=model, head=mod, head_name=name, candidates=_candidates(model))


# ----------------------------------------------------------------------------- hooks


@dataclass
class _Capture:
    """What one forward pass through the head produced (the last call wins per batch)."""

    inputs: list[Tensor] = field(default_factory=list)  # each (B, D)
    outputs: list[Tensor] = field(default_factory=list)  # each (B, K)


@contextmanager
def capture_head_input(head: nn.Module, *, outputs: bool = False) -> Iterator[_Capture]:
    """Record the head's input (and optionally output) for every forward pass in the block.

    A forward pre-hook sees ``args[0]``, the head's input (B, D); an optional forward hook sees
    its output (B, K). Both hooks are removed in ``finally``, so the user's model is left as it
    was even if the forward pass raises. Tensors are stored as they are (not detached, not
    copied), so use ``torch.no_grad()`` when gradients are not wanted.

    Yields
    ------
    capture : object with lists ``inputs`` and ``outputs`` of Tensors
    """
    cap = _Capture()

    def _pre(module: nn.Module, args: tuple[Any, ...]) -> None:
        cap.inputs.append(args[0])

    def _post(module: nn.Module, args: tuple[Any, ...], out: Tensor) -> None:
        cap.outputs.append(out)

    handles = [head.register_forward_pre_hook(_pre)]
    if outputs:
        handles.append(head.register_forward_hook(_post))
    try:
        yield cap
    finally:
        for h in handles:
            h.remove()  # never leave a hook on a user's model


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Put every submodule in eval mode; restore each one's own flag afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, was_training in modes:
            m.training = was_training


# ----------------------------------------------------------------------------- extraction


@dataclass
class ExtractedFeatures:
    """Features, labels and logits of a data set, all float64 numpy on the CPU.

    Attributes
    ----------
    features : ndarray of shape (N, D)
        The head's input for every sample.
    labels : ndarray of shape (N,) or None
        Integer labels if the data carried them.
    logits : ndarray of shape (N, K)
        The head's output (K = 1 for a single-logit head).
    head_name : str
    """

    features: np.ndarray
    labels: np.ndarray | None
    logits: np.ndarray
    head_name: str

    def __iter__(self) -> Iterator[Any]:  # allows ``H, y, Z = extract_features(...)``
        return iter((self.features, self.labels, self.logits))


def model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter or buffer (CPU for a parameter-free model)."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def _model_dtype(model: nn.Module) -> torch.dtype:
    for t in model.parameters():
        if t.is_floating_point():
            return t.dtype
    return torch.get_default_dtype()


def _as_tensor(x: Any) -> Tensor:
    if isinstance(x, Tensor):
        return x
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x))
    return torch.as_tensor(x)


def _to_loader(data: Any, y: Any, batch_size: int, label_keys: Sequence[str]) -> tuple[Iterable[Any], int | None]:
    """Turn the accepted data forms into an iterable of batches and a size estimate."""
    if isinstance(data, DataLoader):
        if y is not None:
            raise ValueError("Pass labels inside the DataLoader's batches, not as y=, when data is a DataLoader.")
        return data, _loader_size(data)
    if isinstance(data, Dataset):
        if y is not None:
            raise ValueError("Pass labels inside the Dataset's items, not as y=, when data is a Dataset.")
        loader = DataLoader(data, batch_size=batch_size, shuffle=False)
        return loader, _loader_size(loader)
    if isinstance(data, tuple) and len(data) == 2 and y is None:  # (X, y); a list is data
        data, y = data
    if isinstance(data, Mapping):  # a dict of input arrays (input_ids, attention_mask, ...) sliced together
        return _dict_batches(dict(data), y, batch_size, label_keys)
    is_batches = (isinstance(data, list) and data and isinstance(data[0], (Mapping, tuple))) or (
        not isinstance(data, (Tensor, np.ndarray, list, tuple)) and isinstance(data, Iterable))
    if is_batches:  # a list of dict batches, a generator of batches
        if y is not None:
            raise ValueError("Pass labels inside the batches, not as y=, when data is an iterable of batches.")
        return data, None
    X = _as_tensor(data)
    if X.ndim == 0:
        raise ValueError(f"X must have a sample axis, got a 0-d value {X!r}.")
    N = X.shape[0]
    if y is not None:
        Y = _check_y(y, N)
        return ((X[i : i + batch_size], Y[i : i + batch_size]) for i in range(0, N, batch_size)), N
    return ((X[i : i + batch_size],) for i in range(0, N, batch_size)), N


def _check_y(y: Any, N: int) -> Tensor:
    Y = _as_tensor(y)
    if Y.ndim != 1 or Y.shape[0] != N:
        raise ValueError(f"y must have shape ({N},) to match X's {N} samples, got {tuple(Y.shape)}. "
                         "Pass integer class labels, one per sample.")
    return Y


def _dict_batches(d: dict[str, Any], y: Any, batch_size: int,
                  label_keys: Sequence[str]) -> tuple[Iterable[Any], int]:
    arrays = {k: _as_tensor(v) for k, v in d.items()}
    sizes = {k: (int(v.shape[0]) if v.ndim else None) for k, v in arrays.items()}
    if len(set(sizes.values())) != 1 or None in sizes.values():
        raise ValueError(f"Every array of a dict input needs the same sample axis; got lengths {sizes}.")
    N = next(iter(sizes.values()))
    if y is not None:
        if any(k in arrays for k in label_keys):
            raise ValueError(f"Labels were given twice: as y= and under a label key of the dict ({list(label_keys)}).")
        arrays[label_keys[0]] = _check_y(y, N)
    return ({k: v[i : i + batch_size] for k, v in arrays.items()} for i in range(0, N, batch_size)), N


def n_rows(data: Any, y: Any = None) -> int:
    """Number of samples of ``data`` in a form whose length is known without reading it (see :func:`select_rows`)."""
    if isinstance(data, DataLoader):
        n = _loader_size(data)
    elif isinstance(data, Dataset):
        n = _loader_size(DataLoader(data))
    elif isinstance(data, tuple) and len(data) == 2 and y is None:
        return n_rows(data[0])
    elif isinstance(data, Mapping):
        n = int(_as_tensor(next(iter(data.values()))).shape[0]) if data else 0
    elif isinstance(data, (Tensor, np.ndarray)):
        n = int(data.shape[0]) if data.ndim else None
    else:
        n = None
    if n is None:
        raise TypeError(f"Cannot tell how many samples a {type(data).__name__} holds; pass an array, a tuple (X, y), "
                        "a dict of arrays, a map-style Dataset or a DataLoader over one.")
    return int(n)


def select_rows(data: Any, y: Any, start: int, stop: int) -> tuple[Any, Any]:
    """Rows ``start:stop`` of a data set, in the same form, for one rank's contiguous shard.

    Arrays, tensors, tuples ``(X, y)`` and dicts of arrays are sliced (views, no copy); a map-style Dataset becomes a
    ``Subset``; a DataLoader is rebuilt over the ``Subset`` of its dataset with the same batch size, collate function
    and workers. The shards of ``shard_range`` taken in rank order are the data in its own order, so indices of the
    shards concatenated are the indices of the whole data set (unlike ``DistributedSampler``, which interleaves and
    pads).

    Raises
    ------
    TypeError
        A DataLoader that shuffles, drops its last batch or reads an IterableDataset, or an iterable of batches: the
        samples of a shard would not be known rows.
    """
    if isinstance(data, DataLoader):
        if isinstance(data.dataset, IterableDataset) or not isinstance(data.sampler, SequentialSampler) \
                or data.batch_sampler is None or data.drop_last:
            raise TypeError("Sharding a DataLoader across ranks needs one over a map-style dataset in order "
                            "(shuffle=False, no custom sampler, drop_last=False); pass its dataset instead.")
        return DataLoader(Subset(data.dataset, range(start, stop)), batch_size=data.batch_size,
                          collate_fn=data.collate_fn, num_workers=data.num_workers, pin_memory=data.pin_memory), y
    if isinstance(data, Dataset):
        return Subset(data, range(start, stop)), y
    if isinstance(data, tuple) and len(data) == 2 and y is None:
        return (data[0][start:stop], data[1][start:stop]), None
    ys = None if y is None else y[start:stop]
    if isinstance(data, Mapping):
        return {k: v[start:stop] for k, v in data.items()}, ys
    if isinstance(data, (Tensor, np.ndarray)):
        return data[start:stop], ys
    raise TypeError(f"Cannot shard a {type(data).__name__} by rows; pass an array, a tuple (X, y), a dict of arrays, "
                    "a map-style Dataset or a DataLoader over one.")


def _loader_size(loader: DataLoader) -> int | None:
    if isinstance(loader.dataset, IterableDataset):
        return None
    try:
        return len(loader.sampler) if loader.batch_sampler is not None else len(loader.dataset)  # type: ignore[arg-type]
    except TypeError:
        return None


@dataclass
class _Batch:
    """One batch read by the rules of the module docstring: how to call the model, and the labels."""

    call: str  # "args": model(*inputs); "kwargs": model(**inputs); "forward": forward(model, inputs)
    inputs: Any
    labels: Any


def _read_batch(batch: Any, label_keys: Sequence[str], forward: Forward | None) -> _Batch:
    if isinstance(batch, Mapping):
        lk = next((k for k in label_keys if k in batch), None)
        labels = batch[lk] if lk is not None else None
        if forward is not None:
            return _Batch("forward", batch, labels)
        inputs = {k: v for k, v in batch.items() if k != lk}
        if not inputs:
            raise ValueError(f"A dict batch with only the label key {lk!r} has no inputs for the model.")
        return _Batch("kwargs", inputs, labels)
    if isinstance(batch, (tuple, list)):
        if len(batch) == 0:
            raise ValueError("Got an empty batch; each batch must be x, (x, y) or a dict.")
        labels = batch[1] if len(batch) > 1 else None
        if forward is not None:
            return _Batch("forward", batch, labels)
        if len(batch) > 2:
            raise ValueError(
                f"A batch has {len(batch)} items; nnboundary reads (x, y) and would drop items 2..{len(batch) - 1} "
                "silently. Pass forward=lambda model, batch: model(batch[0], batch[2]) (whatever your model takes); "
                "the labels are then read from item 1.")
        if isinstance(batch[0], Mapping):  # (inputs_dict, y): every key of the dict goes to forward()
            return _Batch("kwargs", dict(batch[0]), labels)
        return _Batch("args", (batch[0],), labels)
    if forward is not None:
        return _Batch("forward", batch, None)
    if isinstance(batch, (Tensor, np.ndarray)):
        return _Batch("args", (batch,), None)
    raise TypeError(f"Cannot read a batch of type {type(batch).__name__}: nnboundary reads tensors, (x, y) tuples and "
                    "dicts. Pass forward=callable(model, batch) returning the model's output.")


def _to_device(obj: Any, dev: torch.device, dtype: torch.dtype) -> Any:
    """Tensors (and arrays) anywhere inside ``obj`` to ``dev``; floating-point ones to ``dtype``."""
    if isinstance(obj, np.ndarray) and obj.dtype.kind in "biuf":
        obj = torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, Tensor):
        return obj.to(dev, dtype=dtype if obj.is_floating_point() else None)
    if isinstance(obj, Mapping):
        moved = {k: _to_device(v, dev, dtype) for k, v in obj.items()}
        try:
            return type(obj)(moved)  # keep a BatchEncoding / OrderedDict for a user's forward=
        except TypeError:
            return moved
    if isinstance(obj, tuple):
        return tuple(_to_device(v, dev, dtype) for v in obj)
    if isinstance(obj, list):
        return [_to_device(v, dev, dtype) for v in obj]
    return obj


def _tensors(obj: Any) -> Iterator[Tensor]:
    if isinstance(obj, Tensor):
        yield obj
    elif isinstance(obj, Mapping):
        for v in obj.values():
            yield from _tensors(v)
    elif isinstance(obj, (tuple, list)):
        for v in obj:
            yield from _tensors(v)


def _batch_len(b: _Batch) -> int | None:
    if b.labels is not None:
        return int(_as_tensor(b.labels).shape[0])
    for t in _tensors(b.inputs):
        if t.ndim:
            return int(t.shape[0])
    return None


def _call(model: nn.Module, b: _Batch, forward: Forward | None) -> Any:
    try:
        if b.call == "kwargs":
            return model(**b.inputs)
        if b.call == "forward":
            return forward(model, b.inputs)  # type: ignore[misc]
        return model(*b.inputs)
    except (RuntimeError, TypeError) as exc:
        if any(t.dtype == torch.uint8 for t in _tensors(b.inputs)):
            raise TypeError(
                f"The model failed on uint8 inputs ({type(exc).__name__}: {str(exc).splitlines()[0]}). Raw image bytes "
                "must be converted as in training, e.g. x.float() / 255 and the same normalisation, before "
                "analysis.") from None
        if b.call == "kwargs" and isinstance(exc, TypeError) and "argument" in str(exc):
            raise TypeError(
                f"Calling model(**batch) with the keys {sorted(b.inputs)} failed: {exc}. Every key but the label key "
                "goes to forward(); set label_key= to the key of the labels, or pass forward=callable(model, batch)."
            ) from None
        raise


def extract_features(
    model: nn.Module,
    data: Any,
    head: str | nn.Module | SplitClassifier | None = None,
    *,
    y: Any = None,
    batch_size: int = 1024,
    device: torch.device | str | None = None,
    progress: bool = False,
    forward: Forward | None = None,
    label_key: str | Sequence[str] = LABEL_KEYS,
    out: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
) -> ExtractedFeatures:
    """Run the model over a data set and collect the head's input and output.

    The model runs in eval mode under ``torch.no_grad()`` (each submodule's train/eval flag is restored afterwards),
    batch by batch, and the results are written into preallocated float64 arrays, so peak memory is the features
    themselves plus one batch. With ``out=PATH`` the features (and the logits, beside them at
    :func:`logits_path`) are streamed batch by batch into memory-mapped ``.npy`` files instead: memory is one batch
    plus the labels (8 bytes per sample), disk N·(D + K)·8 bytes, so features larger than memory can be extracted.

    Parameters
    ----------
    model : nn.Module
    data : Tensor or ndarray of shape (N, *), tuple (X, y), dict of arrays, Dataset, DataLoader, or an iterable of
        batches (a list of dicts or of (x, y) tuples, a generator). Batches are read as the module docstring says: ``x``, ``(x, y)``, or a dict whose label key holds the labels
        and whose other keys all go to ``model(**batch)``.
    head : str, nn.Module or SplitClassifier, default=None
        The head. None: the ``nn.Linear`` whose output is the model's output on the first batch. A named head is
        refused if its output is not the model's.
    y : array-like of shape (N,), default=None
        Labels when ``data`` is a plain array/tensor (or a dict of arrays).
    batch_size : int, default=1024
        Used when ``data`` is not already a DataLoader.
    device : torch.device or str, default=None
        Where inputs are sent (checked by :func:`nnboundary.device.resolve_device`); default the device of the
        model's first parameter. The model itself is never moved.
    progress : bool, default=False
        Show a tqdm progress bar.
    forward : callable(model, batch) -> output, default=None
        Runs the model on one batch when the rules above do not fit (custom batch objects, extra arguments). The
        output may be a tensor, a tuple, a dict or an object with ``.logits``.
    label_key : str or sequence of str, default=("labels", "label", "y")
        Key(s) of the labels in dict batches.
    out : path, default=None
        Write the features to this ``.npy`` file (float64, C order, readable with ``np.load(PATH, mmap_mode="r")``)
        and the logits to :func:`logits_path` ``(PATH)``. Each is written under a temporary name in the same folder
        and renamed into place only when the extraction succeeded, so a crash leaves no half-written file. Needs data
        of known length (an array, a Dataset, a DataLoader of a map-style dataset); the disk space is checked first.
    overwrite : bool, default=False
        Replace existing files at ``out``; otherwise they are refused (a file nnboundary did not write is never
        replaced unless asked).

    Returns
    -------
    ExtractedFeatures
        ``features`` (N, D), ``labels`` (N,) int64 or None, ``logits`` (N, K), all numpy; with ``out`` the features
        and logits are read-only ``np.memmap`` views of the files.

    Raises
    ------
    ValueError
        Empty data, non-finite features, a head that is not the model's last layer, a head input that is not
        (B, D), or a batch that would lose an input.
    TypeError
        uint8 inputs the model cannot take, keys ``forward`` does not accept, an unreadable batch.
    DeviceUnavailableError
        ``device`` does not exist on this machine.
    FileExistsError
        ``out`` (or its logits file) exists and ``overwrite`` is False.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    label_keys = (label_key,) if isinstance(label_key, str) else tuple(label_key)
    dev = resolve_device(device) if device is not None else model_device(model)
    dtype = _model_dtype(model)
    batches, n_est = _to_loader(data, y, batch_size, label_keys)
    if n_est == 0:
        raise ValueError("The data set is empty (0 samples); pass at least one sample per class.")
    files = _FeatureFiles(out, n_est, overwrite) if out is not None else None
    if progress:
        from tqdm.auto import tqdm

        try:
            total = len(batches)  # type: ignore[arg-type]  # a DataLoader knows its batch count
        except TypeError:
            total = None if n_est is None else -(-n_est // batch_size)
        batches = tqdm(batches, total=total, desc="features", unit="batch")
    split = head if isinstance(head, SplitClassifier) else None
    try:
        return _extract(model, batches, split, head, n_est, files, dev, dtype, label_keys, forward)
    except BaseException:
        if files is not None:
            files.discard()  # only the temporary files this call created
        raise


def _extract(model: nn.Module, batches: Iterable[Any], split: SplitClassifier | None, head: Any, n_est: int | None,
             files: _FeatureFiles | None, dev: torch.device, dtype: torch.dtype, label_keys: tuple[str, ...],
             forward: Forward | None) -> ExtractedFeatures:
    """The batch loop of :func:`extract_features`: into growing arrays, or into the memory-mapped ``files``."""
    H = Z = Y = None
    has_labels = None
    with _eval_mode(model), torch.no_grad():
        for raw in batches:
            b = _read_batch(raw, label_keys, forward)
            b.inputs = _to_device(b.inputs, dev, dtype)
            if split is None:
                mod, name = probe_head(model, lambda: _call(model, b, forward), head)
                split = SplitClassifier(model=model, head=mod, head_name=name, candidates=_candidates(model))
            hb, zb = _forward_batch(split, b, forward)  # (B, D), (B, K)
            if H is None:
                n0 = n_est if n_est is not None else 1024
                H, Z = (_Buffer(n0, hb.shape[1]), _Buffer(n0, zb.shape[1])) if files is None else \
                    files.open(hb.shape[1], zb.shape[1])
                Y = _Buffer(n0, 1)
                has_labels = b.labels is not None
            if (b.labels is not None) != has_labels:
                raise ValueError("Some batches carry labels and others do not; make them consistent.")
            H.add(hb)
            Z.add(zb)
            if b.labels is not None:
                Y.add(_labels_block(b.labels, hb.shape[0]))
    if H is None or H.n == 0 or split is None:
        raise ValueError("The data set is empty (0 samples); pass at least one sample per class.")
    labels = Y.result()[:, 0].astype(np.int64) if has_labels else None
    if files is not None:
        feats, logits = files.finish(H, Z, split.head_name)
        return ExtractedFeatures(features=feats, labels=labels, logits=logits, head_name=split.head_name)
    feats = H.result()
    _check_finite(feats, split.head_name)
    return ExtractedFeatures(features=feats, labels=labels, logits=Z.result(), head_name=split.head_name)


class _Buffer:
    """A preallocated float64 array that grows (doubling) only if the size estimate was short."""

    def __init__(self, n: int, width: int) -> None:
        self.a = np.empty((max(n, 1), width), dtype=np.float64)
        self.n = 0

    def add(self, block: np.ndarray) -> None:
        m = block.shape[0]
        if self.n + m > self.a.shape[0]:
            new = np.empty((max(2 * self.a.shape[0], self.n + m), self.a.shape[1]), np.float64)
            new[: self.n] = self.a[: self.n]
            self.a = new
        self.a[self.n : self.n + m] = block
        self.n += m

    def result(self) -> np.ndarray:
        return self.a if self.n == self.a.shape[0] else self.a[: self.n].copy()


def logits_path(features_file: str | os.PathLike[str]) -> Path:
    """Where ``extract_features(out=PATH)`` writes the logits: ``PATH`` with ``.logits.npy`` for ``.npy``."""
    p = Path(features_file)
    stem = p.name.removesuffix(".npy")
    return p.with_name(stem + ".logits.npy")


class _MemmapBuffer:
    """Rows appended into a preallocated memory-mapped ``.npy`` file (the same ``add`` as :class:`_Buffer`)."""

    def __init__(self, path: Path, n: int, width: int) -> None:
        self.path = path
        self.a = np.lib.format.open_memmap(path, mode="w+", dtype=np.float64, shape=(n, width))
        self.n = 0

    def add(self, block: np.ndarray) -> None:
        m = block.shape[0]
        if self.n + m > self.a.shape[0]:
            raise ValueError(f"The data yielded more than the {self.a.shape[0]} samples its length announced; "
                             "extract_features(out=...) needs data of exact length.")
        self.a[self.n : self.n + m] = block
        self.n += m


class _FeatureFiles:
    """The two files of ``extract_features(out=PATH)``: checked before any work, written under temporary names,
    renamed into place at the end (removed if the extraction fails)."""

    def __init__(self, out: str | os.PathLike[str], n: int | None, overwrite: bool) -> None:
        if n is None:
            raise ValueError("extract_features(out=...) needs data of known length (an array, a Dataset or a "
                             "DataLoader of a map-style dataset), not an iterable of batches.")
        self.final = [Path(out), logits_path(out)]
        if self.final[0].suffix != ".npy":
            raise ValueError(f"The features file {self.final[0]} must end in .npy (it is a NumPy array file).")
        for p in self.final:
            if p.exists() and not overwrite:
                raise FileExistsError(f"{p} already exists; pass overwrite=True (the CLI's --force) to replace it, "
                                      "or choose another features file.")
            if p.is_dir():
                raise FileExistsError(f"{p} is a folder; choose a file name for the features.")
        self.final[0].parent.mkdir(parents=True, exist_ok=True)
        self.tmp = [p.with_name(f".{p.name}.tmp-{os.getpid()}") for p in self.final]
        self.n = n
        self.buffers: list[_MemmapBuffer] = []

    def open(self, d: int, k: int) -> tuple[_MemmapBuffer, _MemmapBuffer]:
        need = self.n * (d + k) * 8 + 4096
        free = shutil.disk_usage(self.final[0].parent).free
        if need > free:
            raise OSError(28, f"Writing the features of {self.n} samples (D = {d}, K = {k}) needs {need / 2**30:.2f} "
                              f"GiB of disk, {free / 2**30:.2f} GiB is free", str(self.final[0]))
        self.buffers = [_MemmapBuffer(t, self.n, w) for t, w in zip(self.tmp, (d, k))]
        return self.buffers[0], self.buffers[1]

    def finish(self, H: _MemmapBuffer, Z: _MemmapBuffer, head_name: str) -> tuple[np.ndarray, np.ndarray]:
        if H.n != self.n:
            raise ValueError(f"The data yielded {H.n} samples but its length is {self.n}; extract_features(out=...) "
                             "needs data of exact length.")
        for i in range(0, H.n, _CHECK_ROWS):  # chunk by chunk: never the whole file in memory
            _check_finite(np.asarray(H.a[i : i + _CHECK_ROWS]), head_name, offset=i)
        for buf, final in zip((H, Z), self.final):
            buf.a.flush()
            del buf.a
            os.replace(buf.path, final)
        self.buffers = []
        return tuple(np.load(p, mmap_mode="r") for p in self.final)  # type: ignore[return-value]

    def discard(self) -> None:
        """Remove the temporary files (only ours) after a failure."""
        self.buffers = []
        for t in self.tmp:
            with _suppress_os_error():
                t.unlink()


@contextmanager
def _suppress_os_error() -> Iterator[None]:
    try:
        yield
    except OSError:
        pass


#: Rows per chunk when a features file is checked (64 MiB at D = 1024).
_CHECK_ROWS = 8192


def _labels_block(yb: Any, n: int) -> np.ndarray:
    t = _as_tensor(yb).detach().cpu()
    if t.ndim != 1 or t.shape[0] != n:
        raise ValueError(
            f"Labels of a batch have shape {tuple(t.shape)}, expected ({n},): one integer class "
            "index per sample (not one-hot)."
        )
    if t.is_floating_point() and not torch.equal(t, t.round()):
        raise ValueError("Labels must be integer class indices, got non-integer floats.")
    return t.to(torch.float64).numpy()[:, None]


def _forward_batch(split: SplitClassifier, b: _Batch, forward: Forward | None) -> tuple[np.ndarray, np.ndarray]:
    with capture_head_input(split.head, outputs=True) as cap:
        out = _call(split.model, b, forward)
    if not cap.inputs:
        raise RuntimeError(f"The head {split.head_name!r} never ran during forward(); pass head=<name>. "
                           f"Candidates: {list(split.candidates)}")
    if len(cap.inputs) > 1:
        raise ValueError(f"The head {split.head_name!r} ran {len(cap.inputs)} times in one forward pass; "
                         "nnboundary needs a head applied once per sample. Pass head=<name>.")
    h, z = cap.inputs[0], cap.outputs[0]
    B = _batch_len(b)
    if h.ndim != 2 or (B is not None and h.shape[0] != B):
        raise ValueError(
            f"The input of head {split.head_name!r} has shape {tuple(h.shape)}, expected "
            f"({B}, {split.n_features}): one feature vector per sample. Heads applied per token or "
            "per pixel are not supported; pass the head that maps (B, D) to logits.")
    logits = output_logits(out)
    if logits is None or logits.numel() != z.numel() or not torch.allclose(
            z.reshape(logits.shape).to(logits.dtype), logits, rtol=1e-5, atol=1e-6, equal_nan=True):
        raise HeadNotFoundError(
            f"The model's output differs from the output of its head {split.head_name!r}: the last layer is not the "
            "linear head (e.g. a Softmax/LogSoftmax, a scaling or a skip connection is added after it). nnboundary "
            "needs a model that returns the head's raw logits: remove the final activation or pass the right head=; "
            "if the logits are linear in other features too, build those features and call "
            f"analyze_features(H, y, W, b). {candidates_text(split.model)}.")
    return (h.detach().to("cpu", torch.float64).numpy(), z.detach().to("cpu", torch.float64).numpy())


def _check_finite(H: np.ndarray, head_name: str, offset: int = 0) -> None:
    bad = ~np.isfinite(H).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad) + offset
        raise ValueError(
            f"Features (input of head {head_name!r}) contain NaN/inf in {rows.size} of {H.shape[0]} "
            f"rows (first: {rows[:5].tolist()}). Check the inputs for NaN and the model for "
            "overflow (e.g. lower the learning rate)."
        )


# ----------------------------------------------------------------------------- head evaluation


def head_params(head: nn.Linear) -> tuple[np.ndarray, np.ndarray]:
    """The head's weights as float64 numpy: W of shape (K, D) and b of shape (K,) (zeros if no bias)."""
    W = head.weight.detach().to("cpu", torch.float64).numpy().copy()  # (K, D)
    if head.bias is None:
        b = np.zeros(W.shape[0])
    else:
        b = head.bias.detach().to("cpu", torch.float64).numpy().copy()  # (K,)
    return W, b


def head_predict(head: nn.Linear, H: np.ndarray | Tensor) -> np.ndarray:
    """Evaluate the head on arbitrary points of the transformed space.

    Parameters
    ----------
    head : nn.Linear
    H : ndarray or Tensor of shape (M, D)

    Returns
    -------
    logits : ndarray of shape (M, K), float64 (computed in float64 from the head's weights)
    """
    W, b = head_params(head)
    H = np.asarray(H.detach().cpu() if isinstance(H, Tensor) else H, dtype=np.float64)
    if H.ndim != 2 or H.shape[1] != W.shape[1]:
        raise ValueError(
            f"H has shape {H.shape}, but the head expects (M, {W.shape[1]}). Extract features with "
            "the same head."
        )
    return H @ W.T + b  # (M, K)


# ----------------------------------------------------------------------------- describe


@dataclass(frozen=True)
class HeadInfo:
    """What ``describe`` found: the head and the shapes the analysis will use.

    ``verified`` is True when one forward pass showed that the head's output is the model's output; otherwise the
    head was chosen from the module tree alone.
    """

    model_class: str
    head_name: str
    n_features: int
    n_outputs: int
    has_bias: bool
    candidates: tuple[str, ...]
    n_linear: int = 0
    verified: bool = False

    @property
    def n_classes(self) -> int:
        return max(2, self.n_outputs)

    def rows(self) -> list[tuple[str, str]]:
        """``(field, value)`` pairs, the table ``nnboundary describe`` prints."""
        single = " (single logit, binary)" if self.n_outputs == 1 else ""
        check = ("yes: one forward pass showed its output is the model's output" if self.verified else
                 "no: chosen from the module tree; pass data (--data) to check it with one forward pass")
        return [
            ("model", self.model_class),
            ("head", f"{self.head_name or '<model>'}: Linear({self.n_features} -> {self.n_outputs}, "
                     f"bias={self.has_bias})"),
            ("features", f"D = {self.n_features}"),
            ("classes", f"K = {self.n_classes}{single}"),
            ("verified", check),
            (f"linear layers ({self.n_linear})",
             ("last: " if self.n_linear > len(self.candidates) else "") + ", ".join(self.candidates)),
        ]

    def __str__(self) -> str:
        return "\n".join(f"{k:<13} {v}" for k, v in self.rows())


def describe(
    model: nn.Module,
    head: str | nn.Module | None = None,
    *,
    n_classes: int | None = None,
    example: Any = None,
    forward: Forward | None = None,
    label_key: str | Sequence[str] = LABEL_KEYS,
) -> HeadInfo:
    """Dry run: which module is the head, its shape, D and K. Runs no data unless ``example``.

    Parameters
    ----------
    model : nn.Module
    head : str or nn.Module, default=None
    n_classes : int, default=None
        Number of logits, if known (static discovery only).
    example : batch, default=None
        One batch in any form :func:`extract_features` reads (a tensor, ``(x, y)``, a dict). If given, the head is the
        layer whose output is the model's output on it, exactly as ``analyze`` will choose; a named head whose output
        is not the model's is refused.
    forward, label_key :
        As in :func:`extract_features`.
    """
    if example is not None:
        label_keys = (label_key,) if isinstance(label_key, str) else tuple(label_key)
        with _eval_mode(model), torch.no_grad():
            b = _read_batch(example, label_keys, forward)
            b.inputs = _to_device(b.inputs, model_device(model), _model_dtype(model))
            mod, name = probe_head(model, lambda: _call(model, b, forward), head)
            split = SplitClassifier(model=model, head=mod, head_name=name, candidates=_candidates(model))
            _forward_batch(split, b, forward)
    else:
        mod, name = find_head(model, head, n_classes=n_classes, strict=True)
        split = SplitClassifier(model=model, head=mod, head_name=name, candidates=_candidates(model))
    return HeadInfo(
        model_class=type(model).__name__,
        head_name=split.head_name,
        n_features=split.n_features,
        n_outputs=split.n_outputs,
        has_bias=split.head.bias is not None,
        candidates=split.candidates,
        n_linear=len(linear_modules(model)),
        verified=example is not None,
    )
