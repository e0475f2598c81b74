"""Checkpoint files: one ``step_<step>.pt`` per saved step, written atomically.

A checkpoint is a dict (``format`` = :data:`CHECKPOINT_FORMAT`) holding everything an exact resume needs:
``step``, ``model`` and ``optimizer`` state dicts, ``rng`` (the global torch RNG and the trainer's own
shuffling state), ``history``, ``settings`` and the callbacks' state. Files are written to a temporary
name in the same directory and moved into place with :func:`os.replace`, so a crash mid-save never
leaves a half-written ``step_*.pt`` behind.

No pickle: a checkpoint file holds ``{"format": 2, "meta": <JSON text>, "tensors": {name: Tensor}}`` and is
read with ``torch.load(weights_only=True)``, which builds tensors and plain containers only and never runs
code stored in the file. Everything that is not a tensor (steps, settings, history, callback state) lives in
the JSON text, where a tensor or a numpy array is a reference ``{"__tensor__": name}`` /
``{"__ndarray__": name}``; tuples and dicts with non-string keys (an optimizer's ``state``) are tagged so
they come back as they were. A file that is not such a checkpoint, or whose JSON does not match its tensors,
raises :class:`CheckpointError` before anything is loaded into a model.
"""

from __future__ import annotations

import json
import os
import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = [
    "CHECKPOINT_FORMAT",
    "CheckpointError",
    "CheckpointExistsError",
    "checkpoint_path",
    "list_checkpoints",
    "latest_checkpoint",
    "save_checkpoint",
    "load_checkpoint",
    "load_weights",
    "require_keys",
]

CHECKPOINT_FORMAT = 2
_PATTERN = re.compile(r"^step_(\d+)\.pt$")


class CheckpointExistsError(FileExistsError):
    """A run would overwrite checkpoints that already exist (pass ``resume=True`` or use a new directory)."""


class CheckpointError(ValueError):
    """A file is not a readable nnboundary checkpoint (another tool's file, an old format, or tampered with)."""


# ------------------------------------------------------------------------------------------ encoding
def _encode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """JSON-able tree of ``obj``; tensors and arrays are moved into ``tensors`` and referenced by name."""
    if isinstance(obj, torch.Tensor):
        name = f"t{len(tensors)}"
        tensors[name] = obj.detach().cpu()
        return {"__tensor__": name}
    if isinstance(obj, np.ndarray):
        name = f"t{len(tensors)}"
        tensors[name] = torch.from_numpy(np.ascontiguousarray(obj).copy())
        return {"__ndarray__": name}
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj)
    if obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, tensors) for v in obj]}
    if isinstance(obj, list):
        return [_encode(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj) and not any(k.startswith("__") for k in obj):
            return {k: _encode(v, tensors) for k, v in obj.items()}
        return {"__items__": [[_encode(k, tensors), _encode(v, tensors)] for k, v in obj.items()]}
    raise TypeError(f"Cannot store a {type(obj).__name__} in a checkpoint: only tensors, numpy arrays, numbers, "
                    "strings, None, lists, tuples and dicts are kept (no pickle). Return plain data from "
                    "state_dict().")


def _decode(obj: Any, tensors: dict[str, torch.Tensor], path: Path) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors, path) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if len(obj) == 1:
        (key, value), = obj.items()
        if key in ("__tensor__", "__ndarray__"):
            if not isinstance(value, str) or value not in tensors:
                raise CheckpointError(f"{path} is damaged: its JSON names tensor {value!r}, which the file lacks.")
            return tensors[value] if key == "__tensor__" else tensors[value].numpy()
        if key == "__tuple__":
            return tuple(_decode(v, tensors, path) for v in value)
        if key == "__items__":
            return {_decode_key(k, tensors, path): _decode(v, tensors, path) for k, v in value}
    return {k: _decode(v, tensors, path) for k, v in obj.items()}


def _decode_key(key: Any, tensors: dict[str, torch.Tensor], path: Path) -> Any:
    out = _decode(key, tensors, path)
    return tuple(out) if isinstance(out, list) else out


def encode_checkpoint(payload: dict[str, Any]) -> dict[str, Any]:
    """``{"format", "meta": JSON text, "tensors": {...}}``: what :func:`save_checkpoint` writes."""
    tensors: dict[str, torch.Tensor] = {}
    meta = json.dumps(_encode(payload, tensors), allow_nan=True)
    return {"format": CHECKPOINT_FORMAT, "meta": meta, "tensors": tensors}


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
    """Write ``payload`` (tensors + plain data, see the module docstring) to ``path`` atomically.

    Parameters
    ----------
    path : path-like
        Final file name; its directory must exist.
    payload : dict
        What to save: tensors, numpy arrays, numbers, strings, None, lists, tuples and dicts.
    fsync : bool, default=True
        Flush the file to disk before the rename, so the checkpoint also survives a power cut.

    Returns
    -------
    path : Path
    """
    path = Path(path)
    encoded = encode_checkpoint(payload)  # before the file is opened: a TypeError leaves nothing behind
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            torch.save(encoded, fh)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` without unpickling any code.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    CheckpointError
        The file is not a checkpoint of a format this version reads, holds objects other than tensors
        and plain containers (``torch.load(weights_only=True)`` refuses them: nothing in it runs), or its
        JSON part does not match its tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No checkpoint at {path}. List the available ones with list_checkpoints(dir).")
    try:
        raw = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, TypeError, AttributeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path} is not a safe nnboundary checkpoint: it holds objects that only unpickling "
                              f"code could build, or it is damaged ({first}). Nothing in it was run. Delete it "
                              "(or the run's .partial folder) and start the run over.") from None
    if not isinstance(raw, dict) or raw.get("format") != CHECKPOINT_FORMAT:
        found = raw.get("format") if isinstance(raw, dict) else type(raw).__name__
        raise CheckpointError(f"{path} is not an nnboundary checkpoint of format {CHECKPOINT_FORMAT} "
                              f"(found {found!r}). It was written by another tool or version; start the run over.")
    meta, tensors = raw.get("meta"), raw.get("tensors")
    if not isinstance(meta, str) or not isinstance(tensors, dict) or \
            not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in tensors.items()):
        raise CheckpointError(f"{path} is damaged: it lacks its JSON part or its tensors. Start the run over.")
    try:
        payload = _decode(json.loads(meta), tensors, path)
    except ValueError as err:
        if isinstance(err, CheckpointError):
            raise
        raise CheckpointError(f"{path} is damaged: its JSON part does not parse ({err}).") from None
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path} is damaged: its JSON part is a {type(payload).__name__}, not a dict.")
    return payload


def require_keys(payload: dict[str, Any], keys: tuple[str, ...], path: str | os.PathLike[str]) -> None:
    """Raise :class:`CheckpointError` naming the first of ``keys`` missing from a loaded checkpoint."""
    missing = [k for k in keys if k not in payload]
    if missing:
        raise CheckpointError(f"{path} is damaged or was written by another tool: it has no {missing}. "
                              "Start the run over.")


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
    require_keys(payload, ("step", "model"), path)
    model.load_state_dict(payload["model"])
    return int(payload["step"])
