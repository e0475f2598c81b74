"""Optional PyTorch Lightning adapter for :class:`~nnboundary.tracking.AlignmentTracker`.

Lightning is an optional extra (``pip install 'nnboundary[lightning]'``). This module imports
without it; ``AlignmentCallback`` is built on first access and raises an ``ImportError`` that
says how to install Lightning when it is missing. Both ``lightning.pytorch`` and the older
``pytorch_lightning`` package are accepted.

Example
-------
>>> from nnboundary.callbacks import AlignmentCallback          # doctest: +SKIP
>>> trainer = L.Trainer(callbacks=[AlignmentCallback(AlignmentTracker(X, y, "runs/x"))])  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

from nnboundary import distributed

__all__ = ["AlignmentCallback", "lightning_available"]

_CACHE: dict[str, type] = {}


def _callback_base() -> type:
    for name in ("lightning.pytorch", "pytorch_lightning"):
        try:
            return importlib.import_module(name).Callback
        except ImportError:
            continue
    raise ImportError(
        "AlignmentCallback needs PyTorch Lightning, which is not installed. Install it with "
        "`pip install 'nnboundary[lightning]'`, or call tracker.step(step, model) from your own loop."
    )


def lightning_available() -> bool:
    """True if ``lightning.pytorch`` or ``pytorch_lightning`` can be imported."""
    try:
        _callback_base()
    except ImportError:
        return False
    return True


def _build() -> type:
    Callback = _callback_base()

    class AlignmentCallback(Callback):  # type: ignore[misc, valid-type]
        """Lightning callback that drives an ``AlignmentTracker`` through its training-callback contract.

        ``on_train_start`` calls ``tracker.on_start`` (the initialisation is evaluated at step 0); after each
        training batch, ``tracker.wants(global_step)`` decides and ``tracker.on_step`` evaluates. It skips the
        sanity check, logs the numbers as ``boundary/<name>``, and saves the tracker's state in checkpoints
        under :attr:`state_key`, which is known before the first evaluation (the tracker's given head and its
        output file), so that ``fit(ckpt_path=...)`` restores it into a fresh tracker.

        Under ``strategy="ddp"`` (one process per device) the hooks run on every rank and the tracker coordinates
        them (see :mod:`nnboundary.tracking`): one evaluation, identical records everywhere, ``metrics.jsonl``
        written by rank 0 and, on resume, rank 0's checkpointed state on every rank. The recorded ``train_loss``
        is the mean of the ranks' batch losses, which is the loss of the global batch when every rank's batch has
        the same size (as ``DistributedSampler`` makes them).

        Parameters
        ----------
        tracker : AlignmentTracker
        log : bool, default=True
            Also send the numeric results to ``pl_module.log_dict``.
        """

        def __init__(self, tracker: Any, *, log: bool = True) -> None:
            super().__init__()
            self.tracker = tracker
            self.log_metrics = log

        @property
        def state_key(self) -> str:
            """``AlignmentCallback{head=<the head given to the tracker, or None>, out=<its jsonl or None>}``:
            the same for the tracker of a resumed run (the tracker's own key names the head it discovered, unknown
            until it evaluates). Two callbacks need different outputs or heads."""
            head = self.tracker.head if isinstance(self.tracker.head, str) else None
            return f"AlignmentCallback{{head={head}, out={self.tracker.path}}}"

        def on_load_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict[str, Any]) -> None:
            """Restore a tracker state saved under another key (an older key, or another output path) when it
            is the checkpoint's only one; under :attr:`state_key` Lightning calls :meth:`load_state_dict`."""
            states = checkpoint.get("callbacks") or {}
            if self.state_key in states:
                return
            found = [k for k in states if isinstance(k, str) and k.startswith(("AlignmentCallback{",
                                                                               "AlignmentTracker{"))]
            if len(found) == 1:
                self.tracker.load_state_dict(states[found[0]])

        def on_train_start(self, trainer: Any, pl_module: Any) -> None:
            total = trainer.max_steps if isinstance(trainer.max_steps, int) and trainer.max_steps > 0 else None
            self.tracker.on_start(int(trainer.global_step), pl_module, total_steps=total)

        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any,
                               batch_idx: int) -> None:
            step = int(trainer.global_step)
            if trainer.sanity_checking or not self.tracker.wants(step):
                return
            loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
            loss = float(loss.detach()) if hasattr(loss, "detach") else None
            losses = distributed.all_gather_objects(loss)  # [loss] in one process
            loss = None if any(v is None for v in losses) else sum(losses) / len(losses)
            row = self.tracker.on_step(step, pl_module, loss=loss, accuracy=None)
            if row is None or not self.log_metrics:
                return
            numbers = {f"boundary/{k}": float(v) for k, v in row.items()
                       if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)}
            pl_module.log_dict(numbers)

        def state_dict(self) -> dict[str, Any]:
            return self.tracker.state_dict()

        def load_state_dict(self, state_dict: dict[str, Any]) -> None:
            self.tracker.load_state_dict(state_dict)

    AlignmentCallback.__module__ = __name__
    return AlignmentCallback


def __getattr__(name: str) -> Any:
    if name == "AlignmentCallback":
        if name not in _CACHE:
            _CACHE[name] = _build()
        return _CACHE[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
