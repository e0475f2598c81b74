"""Checkpoint files: one ``step_<step>.pt`` per saved step, written atomically.

A checkpoint is a dict (``format`` = :data:`CHECKPOINT_FORMAT`) holding everything an exact resume needs:
``step``, ``model`` and ``optimizer`` state dicts, ``rng`` (the global torch RNG and the trainer's own
shuffling state), ``history``, ``settings`` and the callbacks' state. Files are written to a temporary
name in the same directory and moved into place with :func:`os.replace`, so a crash mid-save never
leaves a half-written ``step_*.pt`` behind.

Checkpoints contain pickled Python objects (callback state may hold numpy arrays): load only files you
wrote yourself.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = [
    "CHECKPOINT_FORMAT",
    "CheckpointExistsError",
    "checkpoint_path",
    "list_checkpoints",
    "latest_checkpoint",
    "save_checkpoint",
    "load_checkpoint",
    "load_weights",
]

CHECKPOINT_FORMAT = 1
_PATTERN = re.compile(r"^step_(\d+)\.pt$")


class CheckpointExistsError(FileExistsError):
    """A run would overwrite checkpoints that already exist (pass ``resume=True`` or use a new directory)."""


def checkpoint_path(directory: str | os.PathLike[str], step: int) -> Path:
    """Path of the checkpoint for ``step`` in ``directory`` (``step_0000000123.pt``)."""
    return Path(directory) / f"step_{int(step):010d}.pt"


def list_checkpoints(directory: str | os.PathLike[str]) -> list[tuple[int, Path]]:
    """All checkpoints in ``directory`` as ``(step, path)`` pairs sorted by step; ``[]`` if none."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for path in directory.iterdir():
        match = _PATTERN.match(path.name)
        if match and path.is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest_checkpoint(directory: str | os.PathLike[str]) -> Path | None:
    """Path of the checkpoint with the highest step in ``directory``, or ``None``."""
    found = list_checkpoints(directory)
    return found[-1][1] if found else None


def save_checkpoint(path: str | os.PathLike[str], payload: dict[str, Any], *, fsync: bool = True) -> Path:
    """Write ``payload`` with :func:`torch.save` to ``path`` atomically (temp file + :func:`os.replace`).

    Parameters
    ----------
    path : path-like
        Final file name; its directory must exist.
    payload : dict
        What to save.
    fsync : bool, default=True
        Flush the file to disk before the rename, so the checkpoint also survives a power cut.

    Returns
    -------
    path : Path
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            torch.save(payload, fh)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` and check its format.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ValueError
        The file is not a checkpoint of a format this version reads.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No checkpoint at {path}. List the available ones with list_checkpoints(dir).")
    payload = torch.load(path, map_location=map_location, weights_only=False)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise ValueError(f"{path} is not an nnboundary checkpoint of format {CHECKPOINT_FORMAT} "
                         f"(found {found!r}). It was written by another tool or version.")
    return payload


def load_weights(model: nn.Module, directory: str | os.PathLike[str], step: int | None = None) -> int:
    """Load the model weights saved at ``step`` (default: the latest) into ``model``.

    Useful for snapshots: the decision boundary at step 1 000, 10 000, ... of a finished run.

    Returns
    -------
    step : int
        The step whose weights were loaded.
    """
    if step is None:
        path = latest_checkpoint(directory)
        if path is None:
            raise FileNotFoundError(f"No checkpoint in {directory}. Train with checkpoint_dir={str(directory)!r}.")
    else:
        path = checkpoint_path(directory, step)
        if not path.is_file():
            steps = [s for s, _ in list_checkpoints(directory)]
            raise FileNotFoundError(f"No checkpoint for step {step} in {directory}; saved steps: {steps}.")
    payload = load_checkpoint(path)
    model.load_state_dict(payload["model"])
    return int(payload["step"])
