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
import logging
import math
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from torch.utils.data import default_collate

from nnboundary._jsonio import to_jsonable
from nnboundary.device import resolve_device
from nnboundary.models.heads import find_head

from .checkpoint import (CheckpointExistsError, checkpoint_path, latest_checkpoint, list_checkpoints,
                         load_checkpoint, require_keys, save_checkpoint, CHECKPOINT_FORMAT)
from .losses import make_loss
from .optim import make_optimizer
from .schedule import ScheduleSpec, resolve_schedule

__all__ = ["Trainer", "TrainConfig", "fit", "TrainResult", "TrainCallback", "evaluate"]

logger = logging.getLogger(__name__)

LossSpec = Union[str, Callable[[Tensor, Tensor], Tensor]]
OptimizerSpec = Union[str, Callable[..., torch.optim.Optimizer]]
# Settings that must match for a resume to be exact (``steps`` may grow; ``device`` may change).
_RESUME_KEYS = ("loss", "loss_kwargs", "optimizer", "optimizer_kwargs", "lr", "batch_size", "drop_last",
                "seed", "dtype", "train_only_head", "head", "reinit_head", "data", "n_samples")


# ----------------------------------------------------------------------------------------------------
# Callbacks
# ----------------------------------------------------------------------------------------------------
class TrainCallback:
    """The one callback contract of the training loop, like Lightning's ``Callback``: a base class whose hooks
    do nothing. Subclass it and override the hooks you need.

    ``on_start(step, model, *, total_steps)``
        Once before the first update (``step`` = 0, or the resumed step).
    ``wants(step) -> bool``
        Asked after update ``step``, before :meth:`on_step`; default True. Override it so that a callback
        that looks at a few steps costs nothing on the others (the loop reads the batch loss, a device sync,
        only when some callback wants the step). A callback that does not override :meth:`on_step` is
        never asked.
    ``on_step(step, model, *, loss, accuracy)``
        After update ``step``; ``loss``/``accuracy`` (floats) are those of that step's batch before the update.
    ``on_end(step, model, *, result)``
        Once after the last update, with the :class:`TrainResult`.
    ``state_dict()`` / ``load_state_dict(state)``
        Saved in every checkpoint (plain data and arrays: no pickle) under :attr:`state_key`, restored on
        resume; matched by ``state_key``, else by position and class.
    """

    @property
    def state_key(self) -> str:
        """Key of this callback's state in a checkpoint (default: the class name)."""
        return type(self).__qualname__

    def on_start(self, step: int, model: nn.Module, *, total_steps: int) -> None:
        """Called once before the first update."""

    def wants(self, step: int) -> bool:
        """Whether :meth:`on_step` should run after update ``step``."""
        return True

    def on_step(self, step: int, model: nn.Module, *, loss: float, accuracy: float) -> Any:
        """Called after update ``step`` when :meth:`wants` says so."""

    def on_end(self, step: int, model: nn.Module, *, result: TrainResult) -> None:
        """Called once after the last update."""

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs; ``{}`` by default."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output."""


def _check_callbacks(callbacks: Sequence[Any]) -> tuple[TrainCallback, ...]:
    bad = [type(cb).__name__ for cb in callbacks if not isinstance(cb, TrainCallback)]
    if bad:
        raise TypeError(f"Training callbacks must subclass nnboundary.train.TrainCallback; got {bad}. Override "
                        "on_step / on_start / on_end (and state_dict / load_state_dict) in a subclass.")
    return tuple(callbacks)


def _overrides_on_step(cb: TrainCallback) -> bool:
    return type(cb).on_step is not TrainCallback.on_step


def _position_key(cb: TrainCallback, index: int) -> str:
    return f"{index}:{type(cb).__name__}"


def _save_callback_states(callbacks: Sequence[TrainCallback]) -> dict[str, dict[str, Any]]:
    """``{position key: {"state_key": ..., "state": ...}}`` for every callback."""
    return {_position_key(cb, i): {"state_key": cb.state_key, "state": cb.state_dict()}
            for i, cb in enumerate(callbacks)}


def _load_callback_states(callbacks: Sequence[TrainCallback], saved: dict[str, dict[str, Any]], path: Path) -> None:
    """Give each callback its saved state: matched by ``state_key``, else by position and class."""
    by_key = {entry.get("state_key"): entry.get("state") for entry in saved.values() if entry.get("state_key")}
    for i, cb in enumerate(callbacks):
        key, pos = cb.state_key, _position_key(cb, i)
        if key in by_key:
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
    stop_reason : {"budget", "target_loss", "wall_clock"}
        Why the run stopped: it used its ``steps`` budget, its training loss reached ``target_loss``, or it ran
        past ``max_wall_s`` (the last one depends on the machine's speed: not reproducible).
    budget_steps : int
        The step budget (``TrainConfig.steps``, or ``epochs`` times the steps per epoch); ``steps`` is the
        last update actually made (``< budget_steps`` after an early stop).
    stop_loss : float or None
        The training loss that triggered the ``target_loss`` stop (None otherwise).
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
    stop_reason: str = "budget"
    budget_steps: int = 0
    stop_loss: float | None = None

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
# Settings
# ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training run, checked once when it is built (the loop's only validator).

    Parameters
    ----------
    lr : float
        Learning rate (> 0).
    loss : str or callable, default="cross_entropy"
        A name for :func:`~nnboundary.train.make_loss` (float64 logit-gap cross-entropy by default), or a
        callable ``loss(logits (N, K), y (N,)) -> scalar Tensor``.
    optimizer : str or callable, default="sgd"
        A name for :func:`~nnboundary.train.make_optimizer`, or a factory called as
        ``optimizer(params, lr=lr, **optimizer_kwargs)`` (a ``torch.optim`` class works).
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
        The model and the data are moved there (see :func:`nnboundary.device.resolve_device`).
    dtype : {torch.float32, torch.float64, "float32", "float64"}, default=torch.float32
        The model's parameters and the floating inputs are cast to it.
    checkpoint_dir : path-like or None, default=None
        Where to write ``step_*.pt`` checkpoints (tensors + JSON, no pickle); ``None`` writes none.
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
        called as ``reinit_head(head)``. The optimizer is always fresh, so with ``train_only_head=True``
        this is "retrain the last layer from scratch". Skipped on resume.
    head : nn.Module, str or None, default=None
        The head for ``train_only_head``/``reinit_head``; see :func:`nnboundary.models.heads.find_head`.
    loss_kwargs, optimizer_kwargs : dict or None, default=None
        Extra keywords for the loss / optimizer (e.g. ``{"multiclass": "weston_watkins"}``,
        ``{"momentum": 0.99}``).
    on_nonfinite : {"raise", "warn"}, default="raise"
        What to do when a logged loss is NaN or infinite (checked on logged steps only).
    target_loss : float or None, default=None
        Stop early once the full training set's loss is at most this (``stop_reason="target_loss"``); ``steps``
        stays the deterministic budget. Full batch: the loss of update ``t``'s batch (all samples, before the
        update) is checked on every step, and the run ends after update ``t``, so the final loss is at most the
        target for a method whose loss does not rise (checking costs one device sync per step). Minibatches: the
        whole training set is evaluated after each epoch (one extra pass). Not with a DataLoader.
    max_wall_s : float or None, default=None
        Also stop after this many seconds in :meth:`Trainer.fit` (``stop_reason="wall_clock"``). It makes the
        number of steps depend on the machine: the result is not reproducible, and it is reported as such.

    Raises
    ------
    ValueError, TypeError
        A setting out of range or of the wrong kind; the message names it.
    """

    lr: float
    loss: LossSpec = "cross_entropy"
    optimizer: OptimizerSpec = "sgd"
    steps: int | None = None
    epochs: int | None = None
    batch_size: int | None = None
    drop_last: bool = False
    seed: int = 0
    device: Any = "cpu"
    dtype: Any = torch.float32
    checkpoint_dir: str | Path | None = None
    checkpoint_schedule: ScheduleSpec = "log"
    resume: bool = False
    keep_checkpoints: int | None = None
    progress: bool = True
    log_every: int | None = None
    train_only_head: bool = False
    reinit_head: bool | Callable[[nn.Module], None] = False
    head: nn.Module | str | None = None
    loss_kwargs: dict[str, Any] | None = None
    optimizer_kwargs: dict[str, Any] | None = None
    on_nonfinite: str = "raise"
    target_loss: float | None = None
    max_wall_s: float | None = None

    def __post_init__(self) -> None:
        if (self.steps is None) == (self.epochs is None):
            raise ValueError(f"Give exactly one of steps and epochs (got steps={self.steps!r}, "
                             f"epochs={self.epochs!r}).")
        for name in ("steps", "epochs"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ValueError(f"{name} must be a non-negative int, got {value!r}.")
        if isinstance(self.lr, bool) or not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}.")
        if self.batch_size is not None and (isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int)
                                            or self.batch_size < 1):
            raise ValueError(f"batch_size must be None or a positive int, got {self.batch_size!r}.")
        if self.resume and self.checkpoint_dir is None:
            raise ValueError("resume=True needs checkpoint_dir=<the directory of the run to continue>.")
        if self.on_nonfinite not in ("raise", "warn"):
            raise ValueError(f"on_nonfinite must be 'raise' or 'warn', got {self.on_nonfinite!r}.")
        if self.keep_checkpoints is not None and self.keep_checkpoints < 1:
            raise ValueError(f"keep_checkpoints must be None or >= 1, got {self.keep_checkpoints!r}.")
        if self.log_every is not None and self.log_every < 1:
            raise ValueError(f"log_every must be None or >= 1, got {self.log_every!r}.")
        if not (isinstance(self.loss, str) or callable(self.loss)):
            raise TypeError(f"loss must be a name or a callable, got {type(self.loss).__name__}.")
        if not isinstance(self.loss, str) and self.loss_kwargs:
            raise ValueError("loss_kwargs only apply to a loss given by name.")
        if not (isinstance(self.optimizer, str) or callable(self.optimizer)):
            raise TypeError(f"optimizer must be a name or a factory, got {type(self.optimizer).__name__}.")
        for name in ("target_loss", "max_wall_s"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0
                                      or not math.isfinite(value)):
                raise ValueError(f"{name} must be None or a finite number >= 0, got {value!r}.")
        _resolve_dtype(self.dtype)

    def make_loss(self) -> Callable[[Tensor, Tensor], Tensor]:
        loss_fn = make_loss(self.loss, **(self.loss_kwargs or {})) if isinstance(self.loss, str) else self.loss
        if getattr(loss_fn, "reduction", "mean") == "none":
            raise ValueError("Training needs a scalar loss; use reduction='mean' or 'sum'.")
        return loss_fn

    def make_optimizer(self, params: list[nn.Parameter]) -> torch.optim.Optimizer:
        kwargs = self.optimizer_kwargs or {}
        if isinstance(self.optimizer, str):
            return make_optimizer(self.optimizer, params, self.lr, **kwargs)
        return self.optimizer(params, lr=self.lr, **kwargs)

    def describe(self, steps: int, data_info: dict[str, Any], head_name: str | None,
                 device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
        """The JSON settings saved with every checkpoint and result."""
        return to_jsonable({
            "loss": _describe(self.loss), "loss_kwargs": self.loss_kwargs or {},
            "optimizer": _describe(self.optimizer), "optimizer_kwargs": self.optimizer_kwargs or {},
            "lr": float(self.lr), "steps": steps, "batch_size": self.batch_size, "drop_last": self.drop_last,
            "seed": self.seed, "device": str(device), "dtype": str(dtype).replace("torch.", ""),
            "train_only_head": self.train_only_head, "head": head_name,
            "reinit_head": self.reinit_head if isinstance(self.reinit_head, bool) else _describe(self.reinit_head),
            "checkpoint_schedule": _schedule_repr(self.checkpoint_schedule),
            "target_loss": self.target_loss, "max_wall_s": self.max_wall_s,
            **data_info,
        }, default=_describe_setting)


@dataclass
class _RunState:
    """Everything one call of :meth:`Trainer.fit` works with, in one object."""

    model: nn.Module
    loss_fn: Callable[[Tensor, Tensor], Tensor]
    optimizer: torch.optim.Optimizer
    stream: Any
    callbacks: tuple[TrainCallback, ...]
    steps: int
    settings: dict[str, Any]
    device: torch.device
    directory: Path | None
    start: int = 0
    logged: frozenset[int] = frozenset()
    ckpt_steps: frozenset[int] = frozenset()
    history: list[tuple[int, float, float]] = field(default_factory=list)
    written: list[str] = field(default_factory=list)
    eval_batches: Callable[[], Iterable[tuple[Tensor, Tensor]]] | None = None
    t0: float = 0.0
    stop: dict[str, Any] = field(default_factory=lambda: {"reason": "budget", "step": None, "loss": None})


# ----------------------------------------------------------------------------------------------------
# Trainer
# ----------------------------------------------------------------------------------------------------
class Trainer:
    """Train a classifier ``logits = model(x)`` with the settings of a :class:`TrainConfig`, resumably.

    Parameters
    ----------
    config : TrainConfig
    callbacks : sequence of TrainCallback, default=()

    :func:`fit` is the one-call form: ``fit(model, X, y, lr=..., steps=..., callbacks=[...])``.
    """

    def __init__(self, config: TrainConfig, callbacks: Sequence[TrainCallback] = ()) -> None:
        if not isinstance(config, TrainConfig):
            raise TypeError(f"Trainer takes a TrainConfig, got {type(config).__name__}; "
                            "e.g. Trainer(TrainConfig(lr=0.1, steps=100)).")
        self.config = config
        self.callbacks = _check_callbacks(callbacks)

    # -- set-up ------------------------------------------------------------------------------------
    def _prepare_head(self, model: nn.Module, resuming: bool) -> tuple[list[nn.Parameter], str | None]:
        """Pick the trainable parameters, freeze the feature map if asked; returns (params, head name)."""
        cfg = self.config
        if not (cfg.train_only_head or cfg.reinit_head):
            return [p for p in model.parameters() if p.requires_grad], None
        head, name = find_head(model, cfg.head)
        if cfg.reinit_head and not resuming:
            if callable(cfg.reinit_head):
                cfg.reinit_head(head)
            elif callable(getattr(head, "reset_parameters", None)):
                head.reset_parameters()
            else:
                raise ValueError(f"The head {type(head).__name__} has no reset_parameters(); pass "
                                 "reinit_head=<function(head)> instead of True.")
        if not cfg.train_only_head:
            return [p for p in model.parameters() if p.requires_grad], name
        head_ids = {id(p) for p in head.parameters()}
        for p in model.parameters():
            if id(p) not in head_ids:
                p.requires_grad_(False)
        model.eval()          # feature map: no BatchNorm statistics updates, no dropout
        head.train()
        return [p for p in head.parameters() if p.requires_grad], name

    def _prepare_checkpoint_dir(self) -> Path | None:
        if self.config.checkpoint_dir is None:
            return None
        directory = Path(self.config.checkpoint_dir)
        directory.mkdir(parents=True, exist_ok=True)
        existing = list_checkpoints(directory)
        if existing and not self.config.resume:
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
        CheckpointError
            The checkpoint to resume from is not a safe, complete nnboundary checkpoint (nothing in it runs).
        ValueError
            Inconsistent inputs, or a resume whose settings differ from the checkpoint's.
        """
        t0 = time.perf_counter()
        cfg = self.config
        device, dtype = resolve_device(cfg.device), _resolve_dtype(cfg.dtype)
        directory = self._prepare_checkpoint_dir()
        loss_fn = cfg.make_loss()
        stream, data_info, eval_batches = _make_stream(X, y, batch_size=cfg.batch_size, drop_last=cfg.drop_last,
                                                    seed=cfg.seed, device=device, dtype=dtype)
        if cfg.target_loss is not None and eval_batches is None:
            raise ValueError("target_loss needs the whole training set (tensors, arrays or a Dataset), not a "
                             "DataLoader; pass the data itself, or leave target_loss=None.")
        steps = cfg.steps if cfg.steps is not None else cfg.epochs * stream.steps_per_epoch
        model.to(device=device, dtype=dtype)
        modes = {m: m.training for m in model.modules()}
        flags = {p: p.requires_grad for p in model.parameters()}
        try:
            model.train()
            resume_from = latest_checkpoint(directory) if directory is not None and cfg.resume else None
            if cfg.resume and resume_from is None:
                logger.warning("resume=True but %s holds no checkpoint: starting from step 0.", directory)
            params, head_name = self._prepare_head(model, resuming=resume_from is not None)
            run = _RunState(model=model, loss_fn=loss_fn, optimizer=cfg.make_optimizer(params), stream=stream,
                            callbacks=self.callbacks, steps=steps, device=device, directory=directory,
                            settings=cfg.describe(steps, data_info, head_name, device, dtype),
                            eval_batches=eval_batches, t0=t0)
            if resume_from is not None:
                self._restore(run, resume_from)
            run.logged = resolve_schedule("log", steps) | resolve_schedule(cfg.log_every or max(1, steps // 100),
                                                                            steps)
            run.ckpt_steps = resolve_schedule(cfg.checkpoint_schedule, steps) if directory is not None else frozenset()
            for cb in run.callbacks:
                cb.on_start(run.start, model, total_steps=steps)
            last = self._loop(run)
            result = self._finish(run, eval_batches, last, t0)
            for cb in run.callbacks:
                cb.on_end(result.steps, model, result=result)
            return result
        finally:
            for m, flag in modes.items():
                m.training = flag
            for p, flag in flags.items():
                p.requires_grad_(flag)

    def _restore(self, run: _RunState, path: Path) -> None:
        """Load the checkpoint at ``path`` into ``run`` (weights, optimizer, stream, RNG, history, callbacks)."""
        payload = load_checkpoint(path)
        require_keys(payload, ("step", "model", "optimizer", "stream", "rng", "history", "settings"), path)
        self._check_compatible(payload["settings"], run.settings, path)
        start = int(payload["step"])
        if start > run.steps:
            raise ValueError(f"Cannot resume: {path} is at step {start}, beyond steps={run.steps}. Ask for at least "
                             f"{start} steps or use a new checkpoint_dir.")
        run.model.load_state_dict(payload["model"])
        run.optimizer.load_state_dict(payload["optimizer"])
        run.stream.load_state_dict(payload["stream"])
        torch.set_rng_state(payload["rng"]["torch"])
        if run.device.type == "cuda" and payload["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state(payload["rng"]["cuda"], run.device)
        _load_callback_states(run.callbacks, payload.get("callbacks", {}), path)
        logger.info("Resumed from %s (step %d).", path, start)
        run.start, run.history = start, [tuple(h) for h in payload["history"]]
        stop = payload.get("stop") or {}
        target = self.config.target_loss
        if stop.get("reason") == "target_loss" and target is not None and stop.get("loss") is not None \
                and stop["loss"] <= target:        # that run was finished: a resume changes nothing
            run.stop = dict(stop)

    def _save(self, run: _RunState, step: int) -> None:
        rng = {"torch": torch.get_rng_state(),
               "cuda": torch.cuda.get_rng_state(run.device) if run.device.type == "cuda" else None}
        payload = {"format": CHECKPOINT_FORMAT, "step": step, "model": run.model.state_dict(),
                   "optimizer": run.optimizer.state_dict(), "stream": run.stream.state_dict(), "rng": rng,
                   "history": list(run.history), "settings": run.settings,
                   "callbacks": _save_callback_states(run.callbacks), "stop": dict(run.stop)}
        run.written.append(str(save_checkpoint(checkpoint_path(run.directory, step), payload)))
        if self.config.keep_checkpoints is not None:
            for _, old in list_checkpoints(run.directory)[:-self.config.keep_checkpoints]:
                old.unlink(missing_ok=True)

    def _loop(self, run: _RunState) -> tuple[float, float]:
        """The hot loop. Returns the last batch's (loss, accuracy) (nan if no step ran)."""
        model, loss_fn, optimizer, stream, steps = run.model, run.loss_fn, run.optimizer, run.stream, run.steps
        logged, ckpt_steps, history = run.logged, run.ckpt_steps, run.history
        bar = None
        if self.config.progress:
            from tqdm import tqdm

            bar = tqdm(total=steps, initial=run.start, desc="train", unit="step", dynamic_ncols=True)
        steppers = [cb for cb in run.callbacks if _overrides_on_step(cb)]
        needs_closure = bool(getattr(optimizer, "needs_closure", False))
        last = (float("nan"), float("nan"))
        next_draw = time.monotonic()
        if run.stop["reason"] == "target_loss":          # resumed from a run that had already reached its target
            return last
        try:
            for step in range(run.start + 1, steps + 1):
                xb, yb = stream.next()
                logits = model(xb)
                loss = loss_fn(logits, yb)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if needs_closure:
                    optimizer.step(_loss_closure(model, loss_fn, xb, yb, loss))
                else:
                    optimizer.step()
                stop = self._stop_now(run, step, loss)
                # ---- bookkeeping only on scheduled steps: each float() is a device sync ----
                # an early stop's last step reaches every callback (e.g. the tracker's final evaluation)
                active = [cb for cb in steppers if stop is not None or cb.wants(step)] if steppers else steppers
                is_logged = step in logged or stop is not None
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
                if stop is not None:
                    run.stop = stop
                if step in ckpt_steps or (stop is not None and run.directory is not None):
                    self._save(run, step)
                # the bar is redrawn at most twice a second (tqdm.update on every step costs ~50 us)
                if bar is not None and (is_logged or time.monotonic() >= next_draw):
                    bar.update(step - bar.n)
                    next_draw = time.monotonic() + 0.5
                if stop is not None:
                    logger.info("Stopped after step %d of %d: %s.", step, steps, stop["reason"])
                    break
            if bar is not None:
                bar.update((run.stop["step"] or steps) - bar.n)
        finally:
            if bar is not None:
                bar.close()
        return last

    def _stop_now(self, run: _RunState, step: int, loss: Tensor) -> dict[str, Any] | None:
        """The early stop after update ``step`` (``{"reason", "step", "loss"}``), or None to go on.

        ``target_loss``: full batch, ``loss`` (all samples, before the update) is compared (one sync); with
        minibatches the whole training set is evaluated after each epoch. ``max_wall_s``: seconds since
        :meth:`fit` began. Nothing is checked at the budget's last step (the run ends there anyway).
        """
        cfg = self.config
        if step >= run.steps or (cfg.target_loss is None and cfg.max_wall_s is None):
            return None
        if cfg.target_loss is not None:
            value: float | None = None
            if isinstance(run.stream, _FullBatch):
                value = float(loss.detach())
            elif step % run.stream.steps_per_epoch == 0 and run.eval_batches is not None:
                value = _evaluate_batches(run.model, run.eval_batches(), run.loss_fn)[0]
            if value is not None and value <= cfg.target_loss:
                return {"reason": "target_loss", "step": step, "loss": value}
        if cfg.max_wall_s is not None and time.perf_counter() - run.t0 >= cfg.max_wall_s:
            return {"reason": "wall_clock", "step": step, "loss": None}
        return None

    def _check_finite(self, loss_val: float, step: int) -> None:
        if math.isfinite(loss_val):
            return
        msg = (f"The training loss is {loss_val} at step {step}. Lower lr, use loss='cross_entropy' "
               "(float64), or dtype=float64.")
        if self.config.on_nonfinite == "raise":
            raise FloatingPointError(msg)
        warnings.warn(msg, RuntimeWarning, stacklevel=3)

    def _finish(self, run: _RunState, eval_batches: Callable[[], Iterable[tuple[Tensor, Tensor]]] | None,
                last: tuple[float, float], t0: float) -> TrainResult:
        if eval_batches is not None:
            loss_val, acc_val = _evaluate_batches(run.model, eval_batches(), run.loss_fn)
            final_on = "train_set"
        else:
            loss_val, acc_val = last
            final_on = "last_batch"
            if run.start == run.steps and run.history:
                loss_val, acc_val = run.history[-1][1], run.history[-1][2]
        stop = run.stop
        if stop["reason"] == "wall_clock":
            warnings.warn(f"Training stopped by max_wall_s={self.config.max_wall_s} after step {stop['step']} of "
                          f"{run.steps}: the number of steps depends on the machine (not reproducible).",
                          RuntimeWarning, stacklevel=3)
        last_step = stop["step"] if stop["step"] is not None else run.steps
        return TrainResult(final_loss=loss_val, final_accuracy=acc_val, steps=int(last_step),
                           history=list(run.history), wall_time_s=time.perf_counter() - t0, settings=run.settings,
                           start_step=run.start, checkpoints=run.written, final_on=final_on,
                           stop_reason=stop["reason"], budget_steps=run.steps, stop_loss=stop["loss"])


def _loss_closure(model: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor], xb: Tensor, yb: Tensor,
                  current: Tensor) -> Callable[[], Tensor]:
    """``closure()`` for optimizers that re-evaluate the loss: the loss at the current parameters.

    The first call returns ``current`` (already computed for this step); later calls run a forward pass
    without gradient on the same batch. Those extra passes leave the model's buffers as they found them: in
    train mode a BatchNorm layer would otherwise fold every trial step's batch statistics into its running
    mean and variance (and count it in ``num_batches_tracked``), so the running statistics after a step would
    depend on how many tries the line search took. The loss itself is the train-mode loss the gradient was
    taken on. Cost per extra pass: one copy of the buffers (BatchNorm's: 2 values per channel).
    """
    pending = [current.detach()]
    buffers = [b for b in model.buffers() if b is not None]

    def closure() -> Tensor:
        if pending:
            return pending.pop()
        saved = [b.clone() for b in buffers]
        with torch.no_grad():
            loss = loss_fn(model(xb), yb).detach()
            for b, old in zip(buffers, saved):
                b.copy_(old)
        return loss

    return closure


def fit(model: nn.Module, X: Any, y: Any = None, *, callbacks: Sequence[TrainCallback] = (),
        **settings: Any) -> TrainResult:
    """Train ``model`` on ``(X, y)``: ``Trainer(TrainConfig(**settings), callbacks).fit(model, X, y)``.

    ``settings`` are the fields of :class:`TrainConfig` (``lr``, ``steps`` or ``epochs``, ``loss``,
    ``optimizer``, ``batch_size``, ``seed``, ``device``, ``dtype``, ``checkpoint_dir``, ``resume``, ...);
    ``callbacks`` are :class:`TrainCallback` objects.

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
    return Trainer(TrainConfig(**settings), callbacks).fit(model, X, y)
