"""The training loop: :class:`Trainer` and :func:`fit`.

One loop, read top to bottom: set up the data stream, the head (optionally frozen feature map and a
re-initialised head), the optimizer, restore a checkpoint if asked, then ``forward -> loss -> backward ->
step`` with bookkeeping only on scheduled steps. The loop never imports the modules to its right
(models, tracking): those reach it through the small callback protocol defined here.

Step and epoch semantics
------------------------
* A *step* is one optimizer update. Steps are numbered from 1; the loss and accuracy reported for step
  ``t`` are those of the batch used by update ``t``, evaluated *before* that update, while callbacks and
  checkpoints of step ``t`` see the model *after* it.
* ``batch_size=None``: full batch, every step uses all ``N`` samples.
* ``batch_size=B``: an *epoch* is one pass over a fresh random permutation of the ``N`` samples, drawn
  from the trainer's own ``torch.Generator`` seeded with ``seed``; it has ``ceil(N / B)`` steps (the last
  batch is smaller when ``B`` does not divide ``N``) or ``N // B`` with ``drop_last=True``. Epochs follow
  each other for as many steps as asked ("cycled" minibatches).
* A ``DataLoader``: an epoch is one pass of the loader (``len(loader)`` steps); ``epochs=E`` trains for
  ``E * len(loader)`` steps.

Determinism and resume
----------------------
On CPU, two runs with the same ``seed`` (and the same initial model) give bit-identical weights. The
trainer never seeds global RNGs; model initialisation is the model's job. Checkpoints store the model,
the optimizer, the shuffling state and the global torch RNG state (for dropout), so ``resume=True``
continues exactly where the last checkpoint left off: the final weights are bit-identical to those of an
uninterrupted run. Resuming restores the global torch RNG state saved in the checkpoint.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import math
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Union, runtime_checkable

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from torch.utils.data import default_collate

from nnboundary._jsonio import to_jsonable

from .checkpoint import (CheckpointExistsError, checkpoint_path, latest_checkpoint, list_checkpoints,
                         load_checkpoint, require_keys, save_checkpoint, CHECKPOINT_FORMAT)
from .losses import make_loss
from .optim import make_optimizer
from .schedule import ScheduleSpec, resolve_schedule

__all__ = ["Trainer", "fit", "TrainResult", "TrainCallback", "StepCallback", "as_callback", "find_head",
           "evaluate"]

logger = logging.getLogger(__name__)

LossSpec = Union[str, Callable[[Tensor, Tensor], Tensor]]
OptimizerSpec = Union[str, Callable[..., torch.optim.Optimizer]]
# Settings that must match for a resume to be exact (``steps`` may grow; ``device`` may change).
_RESUME_KEYS = ("loss", "loss_kwargs", "optimizer", "optimizer_kwargs", "lr", "batch_size", "drop_last",
                "seed", "dtype", "train_only_head", "head", "reinit_head", "data", "n_samples")


# ----------------------------------------------------------------------------------------------------
# Callbacks
# ----------------------------------------------------------------------------------------------------
@runtime_checkable
class TrainCallback(Protocol):
    """What the loop calls. Every method is optional; implement the ones you need.

    ``on_start(step, model, *, total_steps)``
        Once before the first update (``step`` = 0, or the resumed step).
    ``on_step(step, model, *, loss, accuracy)``
        After update ``step``; ``loss``/``accuracy`` (floats) are those of that step's batch before the
        update. Called on every step unless the callback has ``wants(step) -> bool``, which is asked first
        (so a callback that looks at a few steps costs nothing on the others).
    ``on_end(step, model, *, result)``
        Once after the last update, with the :class:`TrainResult`.
    ``state_dict()`` / ``load_state_dict(state)``
        Saved in every checkpoint and restored on resume (key: ``state_key`` if set, else the class name
        and position).

    ``on_start`` and ``on_end`` receive only the arguments their signature names, so
    ``def on_end(self, step, model)`` works too.
    """

    def on_step(self, step: int, model: nn.Module, **extra: float) -> None: ...


class StepCallback:
    """Adapt an object with ``.step(step, model, **extra)`` (e.g. ``AlignmentTracker``) to the protocol.

    Parameters
    ----------
    target : object
        Has ``step(step, model, **extra)``; optional ``wants(step)`` or ``is_scheduled(step)``,
        ``eval_steps`` (a container of steps), ``on_end``/``finish``, ``state_key``,
        ``state_dict``/``load_state_dict`` are used when present.
    schedule : "log", int, iterable of int or None, default=None
        Steps on which to call ``target.step``; ``None`` lets ``target.wants``/``target.is_scheduled``/
        ``target.eval_steps`` decide, or calls it on every step when it has none of them.
    prefix : str, default="train_"
        Prefix for the keyword names passed to ``target.step``: ``train_loss=..., train_accuracy=...``
        (the batch values of the step, before the update).
    """

    def __init__(self, target: Any, *, schedule: ScheduleSpec = None, prefix: str = "train_") -> None:
        if not callable(getattr(target, "step", None)):
            raise TypeError(f"{type(target).__name__} has no step(step, model, **extra) method.")
        self.target = target
        self.schedule = schedule
        self._steps: frozenset[int] | None = None
        self.prefix = prefix

    @property
    def state_key(self) -> str | None:
        """The target's ``state_key`` (read when the checkpoint is written), if it has one."""
        return getattr(self.target, "state_key", None)

    def on_start(self, step: int, model: nn.Module, *, total_steps: int | None = None) -> None:
        if self.schedule is not None and total_steps is not None:
            self._steps = resolve_schedule(self.schedule, total_steps)

    def wants(self, step: int) -> bool:
        if self._steps is not None:
            return step in self._steps
        for name in ("wants", "is_scheduled"):
            method = getattr(self.target, name, None)
            if callable(method):
                return bool(method(step))
        eval_steps = getattr(self.target, "eval_steps", None)
        if eval_steps is not None and not callable(eval_steps):
            return step in eval_steps
        return True

    def on_step(self, step: int, model: nn.Module, **extra: float) -> None:
        self.target.step(step, model, **{self.prefix + k: v for k, v in extra.items()})

    def on_end(self, step: int, model: nn.Module, **extra: Any) -> None:
        for name in ("on_end", "finish"):
            method = getattr(self.target, name, None)
            if callable(method):
                _call_accepting(method, step, model, **extra)
                return

    def state_dict(self) -> dict[str, Any]:
        method = getattr(self.target, "state_dict", None)
        return method() if callable(method) else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        method = getattr(self.target, "load_state_dict", None)
        if callable(method) and state:
            method(state)


def as_callback(obj: Any) -> Any:
    """Return ``obj`` if it has ``on_step``/``on_end``/``on_start``, else wrap a ``.step`` object in
    :class:`StepCallback`.

    Raises
    ------
    TypeError
        ``obj`` has none of these methods.
    """
    if any(callable(getattr(obj, m, None)) for m in ("on_step", "on_end", "on_start")):
        return obj
    if callable(getattr(obj, "step", None)):
        return StepCallback(obj)
    raise TypeError(f"Cannot use {type(obj).__name__} as a training callback: it needs on_step(step, model, "
                    "**extra) / on_end(...), or step(step, model, **extra).")


def _position_key(cb: Any, index: int) -> str:
    target = cb.target if isinstance(cb, StepCallback) else cb
    return f"{index}:{type(target).__name__}"


def _save_callback_states(callbacks: list[Any]) -> dict[str, dict[str, Any]]:
    """``{position key: {"state_key": ..., "state": ...}}`` for the callbacks that have state."""
    return {_position_key(cb, i): {"state_key": getattr(cb, "state_key", None), "state": cb.state_dict()}
            for i, cb in enumerate(callbacks) if callable(getattr(cb, "state_dict", None))}


def _load_callback_states(callbacks: list[Any], saved: dict[str, dict[str, Any]], path: Path) -> None:
    """Give each callback its saved state: matched by ``state_key``, else by position and class."""
    by_key = {entry["state_key"]: entry["state"] for entry in saved.values() if entry.get("state_key")}
    for i, cb in enumerate(callbacks):
        if not callable(getattr(cb, "load_state_dict", None)):
            continue
        key, pos = getattr(cb, "state_key", None), _position_key(cb, i)
        if key and key in by_key:
            cb.load_state_dict(by_key[key])
        elif pos in saved:
            cb.load_state_dict(saved[pos]["state"])
        else:
            logger.warning("Checkpoint %s has no state for callback %s; it starts empty.", path, key or pos)


# ----------------------------------------------------------------------------------------------------
# Result
# ----------------------------------------------------------------------------------------------------
@dataclass
class TrainResult:
    """What :func:`fit` returns.

    Attributes
    ----------
    final_loss, final_accuracy : float
        Of the final model on the whole training set (eval mode, no gradient) for tensor and Dataset
        inputs; of the last batch for DataLoader inputs (see ``final_on``).
    steps : int
        Index of the last update (the total number of updates, counting resumed ones).
    history : list of (step, loss, accuracy)
        At the logged steps (log-spaced plus every ``log_every`` steps), batch values before the update.
    wall_time_s : float
        Seconds spent in this call (set-up, loop and final evaluation).
    settings : dict
        The resolved, JSON-serialisable settings of the run.
    start_step : int
        0 for a fresh run, else the step of the checkpoint it resumed from.
    checkpoints : list of str
        Checkpoint files written by this call.
    final_on : {"train_set", "last_batch"}
    """

    final_loss: float
    final_accuracy: float
    steps: int
    history: list[tuple[int, float, float]]
    wall_time_s: float
    settings: dict[str, Any]
    start_step: int = 0
    checkpoints: list[str] = field(default_factory=list)
    final_on: str = "train_set"

    @property
    def steps_per_second(self) -> float:
        """Updates per second in this call (``nan`` if nothing ran)."""
        done = self.steps - self.start_step
        return done / self.wall_time_s if done > 0 and self.wall_time_s > 0 else float("nan")

    def history_frame(self) -> Any:
        """History as a pandas DataFrame with columns ``step, loss, accuracy``."""
        import pandas as pd

        return pd.DataFrame(self.history, columns=["step", "loss", "accuracy"])

    def summary(self) -> dict[str, Any]:
        """JSON-serialisable summary (everything but the history)."""
        out = dataclasses.asdict(self)
        out.pop("history")
        out["steps_per_second"] = self.steps_per_second
        return out


# ----------------------------------------------------------------------------------------------------
# Data streams: each yields (xb, yb) on the device; state_dict() makes the order resumable
# ----------------------------------------------------------------------------------------------------
class _FullBatch:
    def __init__(self, X: Tensor, y: Tensor) -> None:
        self.X, self.y, self.steps_per_epoch = X, y, 1

    def next(self) -> tuple[Tensor, Tensor]:
        return self.X, self.y

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class _ShuffledBatches:
    """Consecutive slices of a fresh permutation per epoch, drawn from its own torch.Generator."""

    def __init__(self, n: int, batch_size: int, *, seed: int, drop_last: bool,
                 fetch: Callable[[Tensor], tuple[Tensor, Tensor]], index_device: torch.device) -> None:
        self.n, self.batch_size, self.fetch, self.index_device = n, batch_size, fetch, index_device
        self.steps_per_epoch = n // batch_size if drop_last else math.ceil(n / batch_size)
        if self.steps_per_epoch < 1:
            raise ValueError(f"batch_size={batch_size} > n_samples={n} with drop_last=True leaves no batch. "
                             "Lower batch_size or set drop_last=False.")
        self.generator = torch.Generator().manual_seed(int(seed))
        self.perm: Tensor | None = None
        self.pos = self.steps_per_epoch        # forces a new permutation on the first call
        self.epoch = 0

    def next(self) -> tuple[Tensor, Tensor]:
        if self.pos >= self.steps_per_epoch:
            self.perm = torch.randperm(self.n, generator=self.generator).to(self.index_device)
            self.pos, self.epoch = 0, self.epoch + 1
        start = self.pos * self.batch_size
        self.pos += 1
        return self.fetch(self.perm[start:start + self.batch_size])

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state(), "pos": self.pos, "epoch": self.epoch,
                "perm": None if self.perm is None else self.perm.cpu()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self.pos, self.epoch = int(state["pos"]), int(state["epoch"])
        self.perm = None if state["perm"] is None else state["perm"].to(self.index_device)


class _LoaderBatches:
    """Cycles a DataLoader; resumable when its order depends only on the RNG state at the epoch start."""

    def __init__(self, loader: DataLoader, convert: Callable[[Any], tuple[Tensor, Tensor]]) -> None:
        self.loader, self.convert = loader, convert
        self.steps_per_epoch = len(loader)
        if self.steps_per_epoch < 1:
            raise ValueError("The DataLoader yields no batch; check its dataset and drop_last.")
        self.iterator: Any = None
        self.pos, self.epoch = 0, 0
        self.epoch_rng: dict[str, Any] | None = None

    def _start_epoch(self) -> None:
        gen = self.loader.generator
        self.epoch_rng = {"torch": torch.get_rng_state(), "loader": None if gen is None else gen.get_state()}
        self.iterator, self.pos, self.epoch = iter(self.loader), 0, self.epoch + 1

    def next(self) -> tuple[Tensor, Tensor]:
        if self.iterator is None or self.pos >= self.steps_per_epoch:
            self._start_epoch()
        try:
            batch = next(self.iterator)
        except StopIteration:                  # loader shorter than len() claims
            self._start_epoch()
            batch = next(self.iterator)
        self.pos += 1
        return self.convert(batch)

    def state_dict(self) -> dict[str, Any]:
        return {"epoch_rng": self.epoch_rng, "pos": self.pos, "epoch": self.epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Replay the current epoch's order up to ``pos`` (the caller restores the global RNG afterwards)."""
        self.epoch, self.pos, self.epoch_rng = int(state["epoch"]), 0, state["epoch_rng"]
        if self.epoch_rng is None:
            return
        torch.set_rng_state(self.epoch_rng["torch"])
        if self.epoch_rng["loader"] is not None and self.loader.generator is not None:
            self.loader.generator.set_state(self.epoch_rng["loader"])
        self.iterator = iter(self.loader)
        for _ in range(int(state["pos"])):
            next(self.iterator)
        self.pos = int(state["pos"])


# ----------------------------------------------------------------------------------------------------
# Helpers: inputs, head, evaluation
# ----------------------------------------------------------------------------------------------------
def _resolve_dtype(dtype: Any) -> torch.dtype:
    table = {"float32": torch.float32, "float64": torch.float64, "float": torch.float32,
             "double": torch.float64, torch.float32: torch.float32, torch.float64: torch.float64}
    if dtype not in table:
        raise ValueError(f"dtype must be float32 or float64 (torch dtype or string), got {dtype!r}.")
    return table[dtype]


def _resolve_device(device: Any) -> torch.device:
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' was asked for, but torch sees no CUDA device. Use device='cpu'.")
    return device


def _as_labels(y: Any) -> Tensor:
    y = torch.as_tensor(np.asarray(y) if not isinstance(y, Tensor) else y)
    if y.dim() != 1:
        raise ValueError(f"y must have shape (N,), got {tuple(y.shape)}. Pass class indices, not one-hot rows.")
    if y.dtype.is_floating_point:
        if not torch.equal(y, y.round()):
            raise ValueError("y holds non-integer values; pass class indices 0..K-1.")
    elif y.dtype == torch.bool:
        pass
    y = y.long()
    if y.numel() and int(y.min()) < 0:
        raise ValueError(f"y holds negative labels (min {int(y.min())}); pass class indices 0..K-1.")
    return y


def _batch_converter(device: torch.device, dtype: torch.dtype) -> Callable[[Any], tuple[Tensor, Tensor]]:
    def convert(batch: Any) -> tuple[Tensor, Tensor]:
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise TypeError("Each batch must be a pair (x, y); got "
                            f"{type(batch).__name__}. Make the Dataset return (x, label).")
        xb, yb = batch[0], batch[1]
        xb = xb.to(device=device, dtype=dtype if xb.is_floating_point() else None, non_blocking=True)
        return xb, torch.as_tensor(yb).to(device=device, non_blocking=True).long()
    return convert


def _make_stream(X: Any, y: Any, *, batch_size: int | None, drop_last: bool, seed: int,
                 device: torch.device, dtype: torch.dtype) -> tuple[Any, dict[str, Any], Any]:
    """Build the batch stream.

    Returns (stream, data settings, ``eval_batches``): ``eval_batches()`` iterates once over the whole
    training set in order (for the final evaluation), or is ``None`` for a DataLoader.
    """
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                   or batch_size < 1):
        raise ValueError(f"batch_size must be None (full batch) or a positive int, got {batch_size!r}.")
    convert = _batch_converter(device, dtype)
    if isinstance(X, DataLoader):
        if y is not None:
            raise ValueError("Pass y=None with a DataLoader: the labels come from its batches.")
        if batch_size is not None:
            raise ValueError("batch_size is set by the DataLoader; leave batch_size=None.")
        return _LoaderBatches(X, convert), {"data": "dataloader", "n_samples": None}, None
    if isinstance(X, Dataset) and not isinstance(X, Tensor):
        if y is not None:
            raise ValueError("Pass y=None with a Dataset: it must return (x, label) pairs.")
        n = len(X)  # type: ignore[arg-type]
        info = {"data": "dataset", "n_samples": n}
        if batch_size is None:
            Xt, yt = convert(default_collate([X[i] for i in range(n)]))
            return _FullBatch(Xt, yt), info, lambda: [(Xt, yt)]
        fetch = lambda idx: convert(default_collate([X[i] for i in idx.tolist()]))  # noqa: E731
        stream = _ShuffledBatches(n, batch_size, seed=seed, drop_last=drop_last, fetch=fetch,
                                  index_device=torch.device("cpu"))
        chunks = lambda: (fetch(torch.arange(s, min(s + batch_size, n))) for s in range(0, n, batch_size))  # noqa: E731
        return stream, info, chunks
    if y is None:
        raise ValueError("y is missing: pass labels y of shape (N,) with tensor/array X, or a Dataset "
                         "/ DataLoader of (x, label) pairs as X.")
    Xt = torch.as_tensor(X if isinstance(X, Tensor) else np.asarray(X))
    yt = _as_labels(y)
    if Xt.dim() < 2 or Xt.shape[0] != yt.shape[0]:
        raise ValueError(f"X must have shape (N, ...) with N = len(y) = {yt.shape[0]}, got {tuple(Xt.shape)}.")
    if Xt.shape[0] == 0:
        raise ValueError("X is empty; pass at least one sample.")
    Xt = Xt.to(device=device, dtype=dtype)
    yt = yt.to(device)
    info = {"data": "tensor", "n_samples": int(Xt.shape[0])}
    n = int(Xt.shape[0])
    chunk = n if batch_size is None else batch_size
    chunks = lambda: ((Xt[s:s + chunk], yt[s:s + chunk]) for s in range(0, n, chunk))  # noqa: E731
    if batch_size is None:
        return _FullBatch(Xt, yt), info, chunks
    stream = _ShuffledBatches(n, batch_size, seed=seed, drop_last=drop_last,
                              fetch=lambda idx: (Xt[idx], yt[idx]), index_device=device)
    return stream, info, chunks


def find_head(model: nn.Module, head: nn.Module | str | None = None) -> tuple[nn.Module, str]:
    """The classifier's last linear layer and its dotted name in ``model``.

    Parameters
    ----------
    model : nn.Module
    head : nn.Module, str or None, default=None
        A submodule of ``model``, its dotted name, or ``None``: ``model.head`` if it exists, else the last
        ``nn.Linear`` registered in ``model``.

    Returns
    -------
    head : nn.Module
    name : str
        Dotted name in ``model.named_modules()`` (``""`` if the model itself is the head).

    Raises
    ------
    ValueError
        No head can be found, or the given module is not part of ``model``.
    """
    names = {id(m): n for n, m in model.named_modules()}
    if head is None:
        candidate = getattr(model, "head", None)
        if isinstance(candidate, nn.Module) and id(candidate) in names:
            return candidate, names[id(candidate)]
        linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise ValueError(f"{type(model).__name__} has no nn.Linear layer to use as the head. "
                             "Pass head=<module or dotted name>.")
        name, module = linears[-1]
        return module, name
    if isinstance(head, str):
        try:
            return model.get_submodule(head), head
        except AttributeError as exc:
            available = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
            raise ValueError(f"No submodule {head!r} in {type(model).__name__}; its linear layers are "
                             f"{available}.") from exc
    if id(head) not in names:
        raise ValueError(f"The head {type(head).__name__} is not a submodule of {type(model).__name__}. "
                         "Pass the model's own layer (or its dotted name).")
    return head, names[id(head)]


def evaluate(model: nn.Module, X: Tensor, y: Tensor, loss_fn: Callable[[Tensor, Tensor], Tensor],
             *, batch_size: int | None = None) -> tuple[float, float]:
    """Loss and accuracy of ``model`` on ``(X, y)`` in eval mode, without gradients.

    Parameters
    ----------
    model : nn.Module
        Its train/eval flags are restored afterwards.
    X : Tensor of shape (N, ...)
    y : Tensor of shape (N,)
    loss_fn : callable
        ``loss_fn(logits, y)`` with reduction "mean" or "sum" (read from ``loss_fn.reduction``,
        default "mean").
    batch_size : int or None, default=None
        Evaluate in chunks of this size (``None``: one forward pass).

    Returns
    -------
    loss, accuracy : float
    """
    n = int(X.shape[0])
    chunk = n if batch_size is None else int(batch_size)
    return _evaluate_batches(model, ((X[s:s + chunk], y[s:s + chunk]) for s in range(0, n, chunk)), loss_fn)


@torch.no_grad()
def _evaluate_batches(model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]],
                      loss_fn: Callable[[Tensor, Tensor], Tensor]) -> tuple[float, float]:
    """Loss and accuracy over an iterable of ``(x, y)`` batches in eval mode (modes restored after)."""
    modes = {m: m.training for m in model.modules()}
    model.eval()
    mean_reduction = getattr(loss_fn, "reduction", "mean") == "mean"
    total, correct, n = torch.zeros((), dtype=torch.float64), torch.zeros((), dtype=torch.int64), 0
    try:
        for xb, yb in batches:
            logits = model(xb)
            part = loss_fn(logits, yb).to(torch.float64)
            total = total.to(part.device) + (part * yb.shape[0] if mean_reduction else part)
            correct = correct.to(yb.device) + (logits.argmax(dim=1) == yb).sum()
            n += int(yb.shape[0])
    finally:
        for m, flag in modes.items():
            m.training = flag
    if n == 0:
        return float("nan"), float("nan")
    return float(total / n if mean_reduction else total), float(correct) / n


def _describe(obj: Any) -> str:
    if isinstance(obj, str):
        return obj
    name = getattr(obj, "__qualname__", None) or type(obj).__qualname__
    return f"{getattr(obj, '__module__', '')}.{name}".lstrip(".")


def _schedule_repr(spec: ScheduleSpec) -> Any:
    if spec is None or isinstance(spec, (str, int)):
        return spec
    return sorted(int(s) for s in spec)


def _describe_setting(value: Any) -> str:
    """How a non-JSON setting is recorded: functions and classes by name, anything else by repr."""
    return _describe(value) if callable(value) else repr(value)


# ----------------------------------------------------------------------------------------------------
# Trainer
# ----------------------------------------------------------------------------------------------------
class Trainer:
    """Train a classifier ``logits = model(x)`` with a named loss and optimizer, resumably.

    ``__init__`` only stores the settings; :meth:`fit` validates and runs. :func:`fit` is the one-call form.

    Parameters
    ----------
    loss : str or callable, default="cross_entropy"
        A name for :func:`~nnboundary.train.make_loss` (float64 logit-gap cross-entropy by default), or a
        callable ``loss(logits (N, K), y (N,)) -> scalar Tensor``.
    optimizer : str or callable, default="sgd"
        A name for :func:`~nnboundary.train.make_optimizer`, or a factory called as
        ``optimizer(params, lr=lr, **optimizer_kwargs)`` (a ``torch.optim`` class works).
    lr : float
        Learning rate.
    steps : int, optional
        Number of updates (the last step index). Give ``steps`` or ``epochs``.
    epochs : int, optional
        Number of epochs; ``steps = epochs * steps_per_epoch`` (see the module docstring).
    batch_size : int or None, default=None
        ``None``: full batch. An int: shuffled minibatches, cycled (tensor or Dataset inputs).
    drop_last : bool, default=False
        With minibatches, drop the last incomplete batch of each epoch.
    seed : int, default=0
        Seeds the trainer's own shuffling generator (nothing global).
    device : str or torch.device, default="cpu"
        The model and the data are moved there; batches from a DataLoader are moved as they come.
    dtype : {torch.float32, torch.float64, "float32", "float64"}, default=torch.float32
        The model's parameters and the floating inputs are cast to it.
    callbacks : sequence, default=()
        :class:`TrainCallback` objects, or objects with ``.step(step, model, **extra)`` (wrapped by
        :class:`StepCallback`).
    checkpoint_dir : path-like or None, default=None
        Where to write ``step_*.pt`` checkpoints; ``None`` writes none.
    checkpoint_schedule : "log", int, iterable of int or None, default="log"
        Steps that get a checkpoint: log-spaced ``1, 2, 5, 10, 20, 50, ...`` plus the last step; an int
        ``k`` means every ``k`` steps plus the last.
    resume : bool, default=False
        Continue from the latest checkpoint in ``checkpoint_dir`` (start fresh, with a log message, if
        there is none). Without it, a directory that already holds checkpoints is refused.
    keep_checkpoints : int or None, default=None
        Keep only the newest ``k`` checkpoints (``None``: keep all, useful for snapshots).
    progress : bool, default=True
        Show a tqdm bar with the loss and accuracy.
    log_every : int or None, default=None
        History (and progress bar) entries every ``log_every`` steps in addition to the log-spaced
        steps; ``None`` picks ``max(1, steps // 100)``.
    train_only_head : bool, default=False
        Train the head only: the other parameters get ``requires_grad=False`` and the other modules are put
        in eval mode (BatchNorm statistics do not move). Flags and modes are restored at the end.
    reinit_head : bool or callable, default=False
        Re-initialise the head before training: ``True`` calls ``head.reset_parameters()``, a callable is
        called as ``reinit_head(head)``. The optimizer is always fresh (built by this call), so with
        ``train_only_head=True`` this is "retrain the last layer from scratch". Skipped on resume.
    head : nn.Module, str or None, default=None
        The head for ``train_only_head``/``reinit_head``; see :func:`find_head`.
    loss_kwargs, optimizer_kwargs : dict or None, default=None
        Extra keywords for the loss / optimizer (e.g. ``{"multiclass": "weston_watkins"}``,
        ``{"momentum": 0.99}``).
    on_nonfinite : {"raise", "warn"}, default="raise"
        What to do when a logged loss is NaN or infinite (checked on logged steps only).
    """

    def __init__(self, *, loss: LossSpec = "cross_entropy", optimizer: OptimizerSpec = "sgd",
                 lr: float, steps: int | None = None, epochs: int | None = None,
                 batch_size: int | None = None, drop_last: bool = False, seed: int = 0,
                 device: str | torch.device = "cpu", dtype: Any = torch.float32,
                 callbacks: Sequence[Any] = (), checkpoint_dir: str | Path | None = None,
                 checkpoint_schedule: ScheduleSpec = "log", resume: bool = False,
                 keep_checkpoints: int | None = None, progress: bool = True, log_every: int | None = None,
                 train_only_head: bool = False, reinit_head: bool | Callable[[nn.Module], None] = False,
                 head: nn.Module | str | None = None, loss_kwargs: dict[str, Any] | None = None,
                 optimizer_kwargs: dict[str, Any] | None = None, on_nonfinite: str = "raise") -> None:
        self.loss = loss
        self.optimizer = optimizer
        self.lr = lr
        self.steps = steps
        self.epochs = epochs
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.seed = seed
        self.device = device
        self.dtype = dtype
        self.callbacks = callbacks
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_schedule = checkpoint_schedule
        self.resume = resume
        self.keep_checkpoints = keep_checkpoints
        self.progress = progress
        self.log_every = log_every
        self.train_only_head = train_only_head
        self.reinit_head = reinit_head
        self.head = head
        self.loss_kwargs = loss_kwargs
        self.optimizer_kwargs = optimizer_kwargs
        self.on_nonfinite = on_nonfinite

    # -- set-up ------------------------------------------------------------------------------------
    def _check_params(self) -> None:
        if (self.steps is None) == (self.epochs is None):
            raise ValueError(f"Give exactly one of steps and epochs (got steps={self.steps!r}, "
                             f"epochs={self.epochs!r}).")
        for name in ("steps", "epochs"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ValueError(f"{name} must be a non-negative int, got {value!r}.")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}.")
        if self.resume and self.checkpoint_dir is None:
            raise ValueError("resume=True needs checkpoint_dir=<the directory of the run to continue>.")
        if self.on_nonfinite not in ("raise", "warn"):
            raise ValueError(f"on_nonfinite must be 'raise' or 'warn', got {self.on_nonfinite!r}.")
        if self.keep_checkpoints is not None and self.keep_checkpoints < 1:
            raise ValueError(f"keep_checkpoints must be None or >= 1, got {self.keep_checkpoints!r}.")
        if self.log_every is not None and self.log_every < 1:
            raise ValueError(f"log_every must be None or >= 1, got {self.log_every!r}.")

    def _make_loss(self) -> Callable[[Tensor, Tensor], Tensor]:
        if isinstance(self.loss, str):
            loss_fn = make_loss(self.loss, **(self.loss_kwargs or {}))
        elif callable(self.loss):
            if self.loss_kwargs:
                raise ValueError("loss_kwargs only apply to a loss given by name.")
            loss_fn = self.loss
        else:
            raise TypeError(f"loss must be a name or a callable, got {type(self.loss).__name__}.")
        if getattr(loss_fn, "reduction", "mean") == "none":
            raise ValueError("Training needs a scalar loss; use reduction='mean' or 'sum'.")
        return loss_fn

    def _make_optimizer(self, params: list[nn.Parameter]) -> torch.optim.Optimizer:
        kwargs = self.optimizer_kwargs or {}
        if isinstance(self.optimizer, str):
            return make_optimizer(self.optimizer, params, self.lr, **kwargs)
        if callable(self.optimizer):
            return self.optimizer(params, lr=self.lr, **kwargs)
        raise TypeError(f"optimizer must be a name or a factory, got {type(self.optimizer).__name__}.")

    def _prepare_head(self, model: nn.Module, resuming: bool) -> tuple[list[nn.Parameter], str | None]:
        """Pick the trainable parameters, freeze the feature map if asked; returns (params, head name)."""
        if not (self.train_only_head or self.reinit_head):
            return [p for p in model.parameters() if p.requires_grad], None
        head, name = find_head(model, self.head)
        if self.reinit_head and not resuming:
            if callable(self.reinit_head):
                self.reinit_head(head)
            elif callable(getattr(head, "reset_parameters", None)):
                head.reset_parameters()
            else:
                raise ValueError(f"The head {type(head).__name__} has no reset_parameters(); pass "
                                 "reinit_head=<function(head)> instead of True.")
        if not self.train_only_head:
            return [p for p in model.parameters() if p.requires_grad], name
        head_ids = {id(p) for p in head.parameters()}
        for p in model.parameters():
            if id(p) not in head_ids:
                p.requires_grad_(False)
        model.eval()          # feature map: no BatchNorm statistics updates, no dropout
        head.train()
        return [p for p in head.parameters() if p.requires_grad], name

    def _settings(self, steps: int, data_info: dict[str, Any], head_name: str | None,
                  device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
        return to_jsonable({
            "loss": _describe(self.loss), "loss_kwargs": self.loss_kwargs or {},
            "optimizer": _describe(self.optimizer), "optimizer_kwargs": self.optimizer_kwargs or {},
            "lr": float(self.lr), "steps": steps, "batch_size": self.batch_size, "drop_last": self.drop_last,
            "seed": self.seed, "device": str(device), "dtype": str(dtype).replace("torch.", ""),
            "train_only_head": self.train_only_head, "head": head_name,
            "reinit_head": self.reinit_head if isinstance(self.reinit_head, bool) else _describe(self.reinit_head),
            "checkpoint_schedule": _schedule_repr(self.checkpoint_schedule),
            **data_info,
        }, default=_describe_setting)

    # -- checkpoints -------------------------------------------------------------------------------
    def _prepare_checkpoint_dir(self) -> Path | None:
        if self.checkpoint_dir is None:
            return None
        directory = Path(self.checkpoint_dir)
        directory.mkdir(parents=True, exist_ok=True)
        existing = list_checkpoints(directory)
        if existing and not self.resume:
            raise CheckpointExistsError(
                f"{directory} already holds {len(existing)} checkpoint(s) (up to step {existing[-1][0]}). "
                "Pass resume=True to continue that run, or choose an empty checkpoint_dir.")
        return directory

    @staticmethod
    def _check_compatible(saved: dict[str, Any], current: dict[str, Any], path: Path) -> None:
        for key in _RESUME_KEYS:
            if saved.get(key) != current.get(key):
                raise ValueError(f"Cannot resume from {path}: the checkpoint has {key}={saved.get(key)!r}, "
                                 f"this run asks for {current.get(key)!r}. Use the same settings or a new "
                                 "checkpoint_dir.")

    # -- the run -----------------------------------------------------------------------------------
    def fit(self, model: nn.Module, X: Any, y: Any = None) -> TrainResult:
        """Train ``model`` in place and return a :class:`TrainResult`.

        Parameters
        ----------
        model : nn.Module
            Maps ``x`` of shape ``(B, ...)`` to logits ``(B, K)``; moved to ``device``/``dtype``.
        X : Tensor or ndarray of shape (N, ...), Dataset or DataLoader
            Training inputs, or a Dataset / DataLoader of ``(x, label)`` pairs.
        y : Tensor or ndarray of shape (N,), optional
            Integer labels ``0..K-1`` (only with tensor/array ``X``).

        Raises
        ------
        CheckpointExistsError
            ``checkpoint_dir`` already holds checkpoints and ``resume`` is False.
        ValueError
            Inconsistent settings or inputs, or a resume whose settings differ from the checkpoint's.
        """
        t0 = time.perf_counter()
        self._check_params()
        device, dtype = _resolve_device(self.device), _resolve_dtype(self.dtype)
        directory = self._prepare_checkpoint_dir()
        loss_fn = self._make_loss()
        callbacks = [as_callback(cb) for cb in self.callbacks]
        stream, data_info, eval_batches = _make_stream(X, y, batch_size=self.batch_size, drop_last=self.drop_last,
                                                    seed=self.seed, device=device, dtype=dtype)
        steps = self.steps if self.steps is not None else self.epochs * stream.steps_per_epoch
        model.to(device=device, dtype=dtype)
        modes = {m: m.training for m in model.modules()}
        flags = {p: p.requires_grad for p in model.parameters()}
        try:
            model.train()
            resume_from = latest_checkpoint(directory) if directory is not None and self.resume else None
            if self.resume and resume_from is None:
                logger.warning("resume=True but %s holds no checkpoint: starting from step 0.", directory)
            params, head_name = self._prepare_head(model, resuming=resume_from is not None)
            optimizer = self._make_optimizer(params)
            settings = self._settings(steps, data_info, head_name, device, dtype)
            start, history, written = 0, [], []
            if resume_from is not None:
                start, history = self._restore(resume_from, model, optimizer, stream, callbacks, settings,
                                               steps, device)
            logged = resolve_schedule("log", steps) | resolve_schedule(self.log_every or max(1, steps // 100),
                                                                        steps)
            ckpt_steps = resolve_schedule(self.checkpoint_schedule, steps) if directory is not None else frozenset()
            for cb in callbacks:
                if callable(getattr(cb, "on_start", None)):
                    _call_accepting(cb.on_start, start, model, total_steps=steps)
            last = self._loop(model, loss_fn, optimizer, stream, callbacks, start, steps, logged, ckpt_steps,
                              history, written, directory, settings, device)
            result = self._finish(model, loss_fn, eval_batches, last, steps, history, settings, start, written, t0)
            for cb in callbacks:
                if callable(getattr(cb, "on_end", None)):
                    _call_accepting(cb.on_end, steps, model, result=result)
            return result
        finally:
            for m, flag in modes.items():
                m.training = flag
            for p, flag in flags.items():
                p.requires_grad_(flag)

    def _restore(self, path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, stream: Any,
                 callbacks: list[Any], settings: dict[str, Any], steps: int,
                 device: torch.device) -> tuple[int, list[tuple[int, float, float]]]:
        """Load the checkpoint at ``path`` into the run; returns (step, history)."""
        payload = load_checkpoint(path)
        require_keys(payload, ("step", "model", "optimizer", "stream", "rng", "history", "settings"), path)
        self._check_compatible(payload["settings"], settings, path)
        start = int(payload["step"])
        if start > steps:
            raise ValueError(f"Cannot resume: {path} is at step {start}, beyond steps={steps}. Ask for at least "
                             f"{start} steps or use a new checkpoint_dir.")
        model.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
        stream.load_state_dict(payload["stream"])
        torch.set_rng_state(payload["rng"]["torch"])
        if device.type == "cuda" and payload["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state(payload["rng"]["cuda"], device)
        _load_callback_states(callbacks, payload.get("callbacks", {}), path)
        logger.info("Resumed from %s (step %d).", path, start)
        return start, [tuple(h) for h in payload["history"]]

    def _save(self, directory: Path, step: int, model: nn.Module, optimizer: torch.optim.Optimizer,
              stream: Any, callbacks: list[Any], history: list[tuple[int, float, float]],
              settings: dict[str, Any], device: torch.device, written: list[str]) -> None:
        rng = {"torch": torch.get_rng_state(),
               "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}
        payload = {"format": CHECKPOINT_FORMAT, "step": step, "model": model.state_dict(),
                   "optimizer": optimizer.state_dict(), "stream": stream.state_dict(), "rng": rng,
                   "history": list(history), "settings": settings,
                   "callbacks": _save_callback_states(callbacks)}
        written.append(str(save_checkpoint(checkpoint_path(directory, step), payload)))
        if self.keep_checkpoints is not None:
            for _, old in list_checkpoints(directory)[:-self.keep_checkpoints]:
                old.unlink(missing_ok=True)

    def _loop(self, model: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor],
              optimizer: torch.optim.Optimizer, stream: Any, callbacks: list[Any], start: int, steps: int,
              logged: frozenset[int], ckpt_steps: frozenset[int], history: list[tuple[int, float, float]],
              written: list[str], directory: Path | None, settings: dict[str, Any],
              device: torch.device) -> tuple[float, float]:
        """The hot loop. Returns the last batch's (loss, accuracy) (nan if no step ran)."""
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=steps, initial=start, desc="train", unit="step", dynamic_ncols=True)
        steppers = [cb for cb in callbacks if callable(getattr(cb, "on_step", None))]
        always = [cb for cb in steppers if not callable(getattr(cb, "wants", None))]
        asking = [cb for cb in steppers if callable(getattr(cb, "wants", None))]
        needs_closure = bool(getattr(optimizer, "needs_closure", False))
        last = (float("nan"), float("nan"))
        next_draw = time.monotonic()
        try:
            for step in range(start + 1, steps + 1):
                xb, yb = stream.next()
                logits = model(xb)
                loss = loss_fn(logits, yb)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if needs_closure:
                    optimizer.step(_loss_closure(model, loss_fn, xb, yb, loss))
                else:
                    optimizer.step()
                # ---- bookkeeping only on scheduled steps: each float() is a device sync ----
                active = always + [cb for cb in asking if cb.wants(step)] if steppers else steppers
                is_logged = step in logged
                if is_logged or active or step == steps:
                    with torch.no_grad():
                        acc = (logits.argmax(dim=1) == yb).to(torch.float64).mean()
                        loss_val, acc_val = torch.stack([loss.detach().to(torch.float64), acc]).tolist()
                    last = (loss_val, acc_val)
                    if is_logged:
                        self._check_finite(loss_val, step)
                        history.append((step, loss_val, acc_val))
                        if bar is not None:
                            bar.set_postfix(loss=f"{loss_val:.3e}", acc=f"{acc_val:.4f}", refresh=False)
                    for cb in active:
                        cb.on_step(step, model, loss=loss_val, accuracy=acc_val)
                if step in ckpt_steps:
                    self._save(directory, step, model, optimizer, stream, callbacks, history, settings, device,
                               written)
                # the bar is redrawn at most twice a second (tqdm.update on every step costs ~50 us)
                if bar is not None and (is_logged or time.monotonic() >= next_draw):
                    bar.update(step - bar.n)
                    next_draw = time.monotonic() + 0.5
            if bar is not None:
                bar.update(steps - bar.n)
        finally:
            if bar is not None:
                bar.close()
        return last

    def _check_finite(self, loss_val: float, step: int) -> None:
        if math.isfinite(loss_val):
            return
        msg = (f"The training loss is {loss_val} at step {step}. Lower lr, use loss='cross_entropy' "
               "(float64), or dtype=float64.")
        if self.on_nonfinite == "raise":
            raise FloatingPointError(msg)
        warnings.warn(msg, RuntimeWarning, stacklevel=3)

    def _finish(self, model: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor],
                eval_batches: Callable[[], Iterable[tuple[Tensor, Tensor]]] | None, last: tuple[float, float],
                steps: int, history: list[tuple[int, float, float]], settings: dict[str, Any], start: int,
                written: list[str], t0: float) -> TrainResult:
        if eval_batches is not None:
            loss_val, acc_val = _evaluate_batches(model, eval_batches(), loss_fn)
            final_on = "train_set"
        else:
            loss_val, acc_val = last
            final_on = "last_batch"
            if start == steps and history:
                loss_val, acc_val = history[-1][1], history[-1][2]
        return TrainResult(final_loss=loss_val, final_accuracy=acc_val, steps=steps, history=list(history),
                           wall_time_s=time.perf_counter() - t0, settings=settings, start_step=start,
                           checkpoints=written, final_on=final_on)


def _loss_closure(model: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor], xb: Tensor, yb: Tensor,
                  current: Tensor) -> Callable[[], Tensor]:
    """``closure()`` for optimizers that re-evaluate the loss: the loss at the current parameters.

    The first call returns ``current`` (already computed for this step); later calls run a forward pass
    without gradient on the same batch.
    """
    pending = [current.detach()]

    def closure() -> Tensor:
        if pending:
            return pending.pop()
        with torch.no_grad():
            return loss_fn(model(xb), yb).detach()

    return closure


def _call_accepting(method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``method`` with as many leading ``args`` and with those ``kwargs`` its signature accepts.

    Lets callbacks declare only what they use: ``on_start(self, step, model)`` does not need
    ``total_steps``, and a tracker's ``finish(self)`` needs nothing.
    """
    try:
        params = list(inspect.signature(method).parameters.values())
    except (TypeError, ValueError):
        return method(*args, **kwargs)
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        n_args = len(args)
    else:
        n_args = min(len(args), sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params))
    if not any(p.kind is p.VAR_KEYWORD for p in params):
        names = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        kwargs = {k: v for k, v in kwargs.items() if k in names}
    return method(*args[:n_args], **kwargs)


def fit(model: nn.Module, X: Any, y: Any = None, **settings: Any) -> TrainResult:
    """Train ``model`` on ``(X, y)``: ``Trainer(**settings).fit(model, X, y)``.

    See :class:`Trainer` for the settings (``loss``, ``optimizer``, ``lr``, ``steps``, ``batch_size``,
    ``seed``, ``device``, ``dtype``, ``callbacks``, ``checkpoint_dir``, ``checkpoint_schedule``,
    ``resume``, ``progress``, ``train_only_head``, ``reinit_head``, ``head``, ...).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> X = torch.tensor([[-1.0, 0.0], [1.0, 0.0]]); y = torch.tensor([0, 1])
    >>> torch.manual_seed(0); model = nn.Linear(2, 2)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> result = fit(model, X, y, lr=0.5, steps=50, progress=False)
    >>> result.final_accuracy
    1.0
    """
    return Trainer(**settings).fit(model, X, y)


def _fit_signature() -> inspect.Signature:
    """``fit(model, X, y=None, *, <Trainer's keyword arguments>)`` for help() and IDEs."""
    positional = [inspect.Parameter("model", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation="nn.Module"),
                  inspect.Parameter("X", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation="Any"),
                  inspect.Parameter("y", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None, annotation="Any")]
    keywords = [p for name, p in inspect.signature(Trainer.__init__).parameters.items() if name != "self"]
    return inspect.Signature(positional + keywords, return_annotation="TrainResult")


fit.__signature__ = _fit_signature()  # type: ignore[attr-defined]
