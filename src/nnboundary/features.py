"""Split any PyTorch classifier into ``logits = head(features(x))`` and read the features.

The *head* is the last ``nn.Linear`` layer, the one that produces the logits; its input is the
*transformed space* (the last hidden layer's output) in which the max-margin SVM is fitted.
Nothing here relies on attributes of a particular model class: the head is found in the module
tree and its input is captured with a forward pre-hook, so any ``nn.Module`` works.

Notation: N samples, D = ``head.in_features``, K = ``head.out_features`` (K = 1 for a
single-logit binary head).

Head discovery (``head=None``):

1. K is ``n_classes`` when it is known (``analyze`` reads it from one forward pass), else the
   ``out_features`` of the last ``nn.Linear`` in registration order.
2. The candidates are the ``nn.Linear`` modules with ``out_features == K``. One candidate is
   the head. Several candidates are resolved only if one of them is the model's last leaf module
   (trailing ``nn.Identity``/``nn.Dropout`` ignored) or, when a forward pass is available
   (extraction), if exactly one of them produced the model's output; otherwise a
   ``HeadNotFoundError`` lists them and asks for ``head="<dotted name>"``. Nothing is guessed
   silently.
3. With ``n_classes`` unknown, the model's last leaf module must be an ``nn.Linear``; a final
   ``Softmax``/``LogSoftmax``/activation is an error (the comparison needs raw logits).
4. During extraction the head's output is checked against the model's output on the first
   batch, so a head that is not really the last layer is reported rather than analysed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, IterableDataset

__all__ = [
    "HeadNotFoundError",
    "SplitClassifier",
    "ExtractedFeatures",
    "HeadInfo",
    "split_classifier",
    "capture_head_input",
    "extract_features",
    "head_params",
    "head_predict",
    "describe",
    "linear_modules",
    "model_device",
]

logger = logging.getLogger(__name__)

# Modules that do nothing to the logits in eval mode and may follow the head.
_PASSTHROUGH = (nn.Identity, nn.Dropout)


class HeadNotFoundError(ValueError):
    """The classifier's head (its last ``nn.Linear``) could not be identified unambiguously."""


# ----------------------------------------------------------------------------- head discovery


def linear_modules(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    """All ``nn.Linear`` submodules of ``model`` as ``(dotted_name, module)``, in registration order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]


def _fmt_linear(name: str, m: nn.Linear) -> str:
    return f"{name or '<model>'} (Linear {m.in_features}->{m.out_features})"


def _candidates_text(model: nn.Module) -> str:
    lins = linear_modules(model)
    if not lins:
        return "the model has no nn.Linear modules"
    return "nn.Linear modules: [" + ", ".join(_fmt_linear(n, m) for n, m in lins) + "]"


def _last_leaf(model: nn.Module) -> tuple[str, nn.Module] | None:
    """The last leaf module in registration order, skipping Identity/Dropout."""
    leaves = [(n, m) for n, m in model.named_modules() if not any(True for _ in m.children())]
    for name, m in reversed(leaves):
        if not isinstance(m, _PASSTHROUGH):
            return name, m
    return None


def _name_of(model: nn.Module, module: nn.Module) -> str | None:
    for name, m in model.named_modules():
        if m is module:
            return name
    return None


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
        Every ``nn.Linear`` of the model, as ``"name (Linear D->K)"``, for messages.
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


def split_classifier(
    model: nn.Module, head: str | nn.Module | None = None, n_classes: int | None = None
) -> SplitClassifier:
    """Identify the head (last ``nn.Linear``) of a classifier.

    Parameters
    ----------
    model : nn.Module
        Any classifier whose logits are the output of an ``nn.Linear``.
    head : str or nn.Module, default=None
        Dotted name of the head (``"fc"``, ``"classifier.2"``), the head module itself, or None
        to discover it with the rules in the module docstring.
    n_classes : int, default=None
        Number of logits the model produces, if known (e.g. from a forward pass). A
        single-logit binary head has ``n_classes=1`` here.

    Returns
    -------
    SplitClassifier

    Raises
    ------
    HeadNotFoundError
        No head, several possible heads, or a last layer that is not ``nn.Linear``; the message
        lists the candidate modules.
    TypeError
        ``model`` is not an ``nn.Module`` or the named head is not an ``nn.Linear``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    cands = tuple(_fmt_linear(n, m) for n, m in linear_modules(model))
    if head is not None:
        name, mod = _resolve_named_head(model, head)
    else:
        name, mod = _discover_head(model, n_classes)
    if n_classes is not None and mod.out_features != n_classes:
        raise HeadNotFoundError(
            f"Head {name!r} has {mod.out_features} outputs but the model produces {n_classes} "
            f"logits. Pass the layer that produces the logits as head=; {_candidates_text(model)}."
        )
    return SplitClassifier(model=model, head=mod, head_name=name, candidates=cands)


def _resolve_named_head(model: nn.Module, head: str | nn.Module) -> tuple[str, nn.Linear]:
    if isinstance(head, str):
        try:
            mod = model.get_submodule(head)
        except AttributeError:
            raise HeadNotFoundError(
                f"The model has no submodule {head!r}. Pass one of the {_candidates_text(model)}."
            ) from None
        name = head
    elif isinstance(head, nn.Module):
        found = _name_of(model, head)
        if found is None:
            raise HeadNotFoundError(
                f"The given head module is not part of the model. {_candidates_text(model)}."
            )
        name, mod = found, head
    else:
        raise TypeError(f"head must be a str, an nn.Module or None, got {type(head).__name__}.")
    if not isinstance(mod, nn.Linear):
        raise TypeError(
            f"Head {name!r} is a {type(mod).__name__}, not nn.Linear; nnboundary compares a "
            f"linear last layer with the SVM. {_candidates_text(model)}."
        )
    return name, mod


def _discover_head(model: nn.Module, n_classes: int | None) -> tuple[str, nn.Linear]:
    lins = linear_modules(model)
    if not lins:
        raise HeadNotFoundError(
            f"{type(model).__name__} has no nn.Linear layer, so it has no linear head to compare "
            "with the SVM. nnboundary needs logits = Linear(features)."
        )
    last = _last_leaf(model)
    if n_classes is None:
        if last is None or not isinstance(last[1], nn.Linear):
            lname, lmod = last if last is not None else ("?", None)
            raise HeadNotFoundError(
                f"The last layer of {type(model).__name__}, {lname!r} ({type(lmod).__name__}), is "
                "not nn.Linear. The comparison needs raw logits: remove the final activation "
                "(cross-entropy takes logits) or pass head='<name>'. "
                f"{_candidates_text(model)}."
            )
        n_classes = last[1].out_features
    cands = [(n, m) for n, m in lins if m.out_features == n_classes]
    if len(cands) == 1:
        return cands[0]
    if not cands:
        raise HeadNotFoundError(
            f"No nn.Linear in {type(model).__name__} has out_features={n_classes} (the number of "
            f"logits). Pass head='<name>'; {_candidates_text(model)}."
        )
    if last is not None and any(m is last[1] for _, m in cands):
        return last[0], last[1]  # type: ignore[return-value]
    listed = ", ".join(_fmt_linear(n, m) for n, m in cands)
    raise HeadNotFoundError(
        f"Ambiguous head: {len(cands)} nn.Linear layers have out_features={n_classes}: [{listed}]. "
        "Pass head='<name>' to choose one."
    )


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


def _to_loader(data: Any, y: Any, batch_size: int) -> tuple[Iterable[Any], int | None]:
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
    X = _as_tensor(data)
    if X.ndim == 0:
        raise ValueError(f"X must have a sample axis, got a 0-d value {X!r}.")
    N = X.shape[0]
    if y is not None:
        Y = _as_tensor(y)
        if Y.ndim != 1 or Y.shape[0] != N:
            raise ValueError(
                f"y must have shape ({N},) to match X's {N} samples, got {tuple(Y.shape)}. "
                "Pass integer class labels, one per sample."
            )
        return ((X[i : i + batch_size], Y[i : i + batch_size]) for i in range(0, N, batch_size)), N
    return ((X[i : i + batch_size],) for i in range(0, N, batch_size)), N


def _loader_size(loader: DataLoader) -> int | None:
    if isinstance(loader.dataset, IterableDataset):
        return None
    try:
        return len(loader.sampler) if loader.batch_sampler is not None else len(loader.dataset)  # type: ignore[arg-type]
    except TypeError:
        return None


def _split_batch(batch: Any) -> tuple[Any, Any]:
    if isinstance(batch, (tuple, list)):
        if len(batch) == 0:
            raise ValueError("Got an empty batch; each batch must be x or (x, y, ...).")
        return batch[0], (batch[1] if len(batch) > 1 else None)
    if isinstance(batch, dict):
        x = batch.get("x", batch.get("input", batch.get("inputs")))
        if x is None:
            raise ValueError(f"Dict batches need an 'x' key; got keys {sorted(batch)}.")
        return x, batch.get("y", batch.get("label", batch.get("labels")))
    return batch, None


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


def extract_features(
    model: nn.Module,
    data: Any,
    head: str | nn.Module | SplitClassifier | None = None,
    *,
    y: Any = None,
    batch_size: int = 1024,
    device: torch.device | str | None = None,
    progress: bool = False,
) -> ExtractedFeatures:
    """Run the model over a data set and collect the head's input and output.

    The model runs in eval mode under ``torch.no_grad()`` (each submodule's train/eval flag is
    restored afterwards), batch by batch, and the results are written into preallocated float64
    arrays, so peak memory is the features themselves plus one batch.

    Parameters
    ----------
    model : nn.Module
    data : Tensor or ndarray of shape (N, *), tuple (X, y), Dataset or DataLoader
        Batches of a DataLoader/Dataset may be ``x``, ``(x, y, ...)`` or a dict with key ``x``
        (and ``y``).
    y : array-like of shape (N,), default=None
        Labels when ``data`` is a plain array/tensor.
    head : str, nn.Module or SplitClassifier, default=None
        The head, see :func:`split_classifier`. None: discovered from the first batch's logits.
    batch_size : int, default=1024
        Used when ``data`` is not already a DataLoader.
    device : torch.device or str, default=None
        Where inputs are sent; default the device of the model's first parameter. The model
        itself is never moved.
    progress : bool, default=False
        Show a tqdm progress bar.

    Returns
    -------
    ExtractedFeatures
        ``features`` (N, D), ``labels`` (N,) int64 or None, ``logits`` (N, K), all numpy.

    Raises
    ------
    ValueError
        Empty data, non-finite features, a head that is not the model's last layer, or a head
        input that is not (B, D).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    dev = torch.device(device) if device is not None else model_device(model)
    dtype = _model_dtype(model)
    batches, n_est = _to_loader(data, y, batch_size)
    if n_est == 0:
        raise ValueError("The data set is empty (0 samples); pass at least one sample per class.")
    if progress:
        from tqdm.auto import tqdm

        try:
            total = len(batches)  # type: ignore[arg-type]  # a DataLoader knows its batch count
        except TypeError:
            total = None if n_est is None else -(-n_est // batch_size)
        batches = tqdm(batches, total=total, desc="features", unit="batch")
    split = head if isinstance(head, SplitClassifier) else None
    H = Z = Y = None
    has_labels = None
    with _eval_mode(model), torch.no_grad():
        for batch in batches:
            xb, yb = _split_batch(batch)
            xb = _as_tensor(xb)
            xb = xb.to(dev, dtype=dtype if xb.is_floating_point() else None)
            if split is None:
                split = _split_from_probe(model, head, xb)
            hb, zb = _forward_batch(split, xb, check=H is None)  # (B, D), (B, K)
            if H is None:
                n0 = n_est if n_est is not None else 1024
                H, Z = _Buffer(n0, hb.shape[1]), _Buffer(n0, zb.shape[1])
                Y = _Buffer(n0, 1)
                has_labels = yb is not None
            if (yb is not None) != has_labels:
                raise ValueError("Some batches carry labels and others do not; make them consistent.")
            H.add(hb)
            Z.add(zb)
            if yb is not None:
                Y.add(_labels_block(yb, hb.shape[0]))
    if H is None or H.n == 0:
        raise ValueError("The data set is empty (0 samples); pass at least one sample per class.")
    feats = H.result()
    _check_finite(feats, split.head_name)
    labels = Y.result()[:, 0].astype(np.int64) if has_labels else None
    return ExtractedFeatures(features=feats, labels=labels, logits=Z.result(), head_name=split.head_name)


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


def _split_from_probe(model: nn.Module, head: Any, xb: Tensor) -> SplitClassifier:
    """Discover the head with K read from one forward pass on the first batch."""
    if head is not None:
        return split_classifier(model, head)
    outs: dict[str, Tensor] = {}
    handles = [m.register_forward_hook(lambda mod, a, o, n=name: outs.__setitem__(n, o))
               for name, m in linear_modules(model)]
    try:
        out = model(xb[:2])
    finally:
        for h in handles:
            h.remove()
    n_out = out.shape[-1] if isinstance(out, Tensor) and out.ndim >= 2 else None
    try:
        return split_classifier(model, None, n_classes=n_out)
    except HeadNotFoundError:
        if n_out is None:
            raise
        # Several candidates: the head is the one whose output *is* the model's output.
        same = [n for n, o in outs.items() if isinstance(o, Tensor) and o.shape == out.shape and torch.equal(o, out)]
        if len(same) != 1:
            raise
        return split_classifier(model, same[0])


def _forward_batch(split: SplitClassifier, xb: Tensor, *, check: bool) -> tuple[np.ndarray, np.ndarray]:
    with capture_head_input(split.head, outputs=True) as cap:
        out = split.model(xb)
    if not cap.inputs:
        raise RuntimeError(
            f"The head {split.head_name!r} never ran during forward(); pass head=<name>. "
            f"Candidates: {list(split.candidates)}"
        )
    if len(cap.inputs) > 1:
        raise ValueError(
            f"The head {split.head_name!r} ran {len(cap.inputs)} times in one forward pass; "
            "nnboundary needs a head applied once per sample. Pass head=<name>."
        )
    h, z = cap.inputs[0], cap.outputs[0]
    B = xb.shape[0]
    if h.ndim != 2 or h.shape[0] != B:
        raise ValueError(
            f"The input of head {split.head_name!r} has shape {tuple(h.shape)}, expected "
            f"({B}, {split.n_features}): one feature vector per sample. Heads applied per token or "
            "per pixel are not supported; pass the head that maps (B, D) to logits."
        )
    if check and isinstance(out, Tensor) and out.shape == z.shape and not torch.allclose(out, z, equal_nan=True):
        raise HeadNotFoundError(
            f"The model's output differs from the output of its head {split.head_name!r}: the "
            "last layer is not the linear head (e.g. a Softmax/LogSoftmax, a scaling or a skip "
            "connection is added after it). nnboundary needs a model that returns the head's raw "
            "logits: remove the final activation or pass the right head=; if the logits are linear "
            "in other features too, build those features and call analyze_features(H, y, W, b). "
            f"Candidates: {list(split.candidates)}"
        )
    return (h.detach().to("cpu", torch.float64).numpy(), z.detach().to("cpu", torch.float64).numpy())


def _check_finite(H: np.ndarray, head_name: str) -> None:
    bad = ~np.isfinite(H).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
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
    """What ``describe`` found: the head and the shapes the analysis will use."""

    model_class: str
    head_name: str
    n_features: int
    n_outputs: int
    has_bias: bool
    candidates: tuple[str, ...]

    @property
    def n_classes(self) -> int:
        return max(2, self.n_outputs)

    def __str__(self) -> str:
        single = " (single logit, binary)" if self.n_outputs == 1 else ""
        lines = [
            f"model        {self.model_class}",
            f"head         {self.head_name or '<model>'}: Linear({self.n_features} -> "
            f"{self.n_outputs}, bias={self.has_bias})",
            f"features     D = {self.n_features}",
            f"classes      K = {self.n_classes}{single}",
            f"linear layers {len(self.candidates)}: " + ", ".join(self.candidates),
        ]
        return "\n".join(lines)


def describe(
    model: nn.Module,
    head: str | nn.Module | None = None,
    *,
    n_classes: int | None = None,
    example: Any = None,
) -> HeadInfo:
    """Dry run: which module is the head, its shape, D and K. Runs no data unless ``example``.

    Parameters
    ----------
    model : nn.Module
    head : str or nn.Module, default=None
    n_classes : int, default=None
        Number of logits, if known.
    example : Tensor of shape (B, *), default=None
        One input batch; if given, K is read from a forward pass (eval mode, no_grad) and the
        head is checked to be the model's last layer, exactly as ``analyze`` will do.
    """
    if example is not None:
        with _eval_mode(model), torch.no_grad():
            xb = _as_tensor(example).to(model_device(model))
            if xb.is_floating_point():
                xb = xb.to(_model_dtype(model))
            split = _split_from_probe(model, head, xb) if n_classes is None else split_classifier(model, head, n_classes)
            _forward_batch(split, xb, check=True)
    else:
        split = split_classifier(model, head, n_classes)
    return HeadInfo(
        model_class=type(model).__name__,
        head_name=split.head_name,
        n_features=split.n_features,
        n_outputs=split.n_outputs,
        has_bias=split.head.bias is not None,
        candidates=split.candidates,
    )
