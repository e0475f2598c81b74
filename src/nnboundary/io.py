"""Load a model file and a data file for ``nnboundary analyze`` (the CLI calls these).

.. warning::
   A pickled model (``torch.save(model)``) is loaded with ``torch.load(weights_only=False)``,
   which **runs arbitrary code stored in the file**. Only load model files you trust. A
   TorchScript file (``torch.jit.save(torch.jit.script(model), path)``) is loaded without
   unpickling code and is preferred. Data files are loaded without executing code
   (``np.load(allow_pickle=False)``, ``torch.load(weights_only=True)``).
"""

from __future__ import annotations

import os
import warnings
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["DataFile", "load_model_file", "load_data_file", "is_torchscript_file"]


def is_torchscript_file(path: str | os.PathLike[str]) -> bool:
    """True if ``path`` is a TorchScript archive (a zip holding ``code/`` and ``constants.pkl``)."""
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names)


def load_model_file(path: str | os.PathLike[str], *, map_location: str | torch.device = "cpu") -> nn.Module:
    """Load a classifier saved as TorchScript or as a whole pickled module.

    TorchScript is tried first (``torch.jit.load``, no Python code is unpickled). Hooks cannot be
    attached inside compiled code, so a TorchScript model must be an ``nn.Sequential`` chain
    (nested ones are fine); it is rebuilt as an eager ``nn.Sequential`` whose ``Linear`` layers
    are real ``nn.Linear`` modules with the same weights. Otherwise the file is read with
    ``torch.load(weights_only=False)``.

    .. warning::
       Unpickling a whole module **executes code from the file**: only load files you trust, and
       prefer TorchScript. The module's class must also be importable (the same code base).

    Parameters
    ----------
    path : str or PathLike
    map_location : str or torch.device, default="cpu"

    Returns
    -------
    model : nn.Module, in eval mode

    Raises
    ------
    FileNotFoundError
    TypeError
        The file holds a state_dict or another object, not a module, or a TorchScript model
        that is not an ``nn.Sequential`` chain.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"Model file {p} does not exist.")
    if is_torchscript_file(p):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch >= 2.9 deprecates torch.jit
            scripted = torch.jit.load(str(p), map_location=map_location)
        return _unscript(scripted, p).eval()
    else:
        model = torch.load(p, map_location=map_location, weights_only=False)
    if isinstance(model, dict):
        raise TypeError(
            f"{p} holds a dict (a state_dict?), not a model. Build the model in Python and call "
            "load_state_dict, or save the whole model: torch.jit.save(torch.jit.script(model), path) "
            "(preferred) or torch.save(model, path)."
        )
    if not isinstance(model, nn.Module):
        raise TypeError(f"{p} holds a {type(model).__name__}, not a torch.nn.Module.")
    return model.eval()


@dataclass
class DataFile:
    """Arrays read from a data file. X (N, *), y (N,); X_test, y_test optional."""

    X: Any
    y: Any
    X_test: Any = None
    y_test: Any = None


def load_data_file(path: str | os.PathLike[str]) -> DataFile:
    """Read X, y (and optional X_test, y_test) from an ``.npz`` or a ``.pt``/``.pth`` file.

    ``.npz``: ``np.savez(path, X=..., y=..., X_test=..., y_test=...)``, read with
    ``allow_pickle=False``. ``.pt``: a dict of tensors/arrays with the same keys saved with
    ``torch.save``, read with ``weights_only=True`` (no code runs).

    Raises
    ------
    FileNotFoundError
    ValueError
        Unknown suffix, missing X or y (the message lists the keys found), mismatched lengths,
        or only one of X_test / y_test.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"Data file {p} does not exist.")
    suffix = p.suffix.lower()
    if suffix == ".npz":
        with np.load(p, allow_pickle=False) as z:
            d: dict[str, Any] = {k: z[k] for k in z.files}
    elif suffix in (".pt", ".pth"):
        obj = torch.load(p, map_location="cpu", weights_only=True)
        if not isinstance(obj, dict):
            raise ValueError(f"{p} holds a {type(obj).__name__}; save a dict with keys X, y (and X_test, y_test).")
        d = dict(obj)
    else:
        raise ValueError(f"Unsupported data file {p.name!r}: use .npz or .pt with keys X, y (X_test, y_test).")
    missing = [k for k in ("X", "y") if k not in d]
    if missing:
        raise ValueError(f"{p} lacks {missing}; it has keys {sorted(d)}. Save the inputs as X and the labels as y.")
    if ("X_test" in d) != ("y_test" in d):
        raise ValueError(f"{p} has only one of X_test / y_test; save both or neither.")
    for a, b in (("X", "y"), ("X_test", "y_test")):
        if a in d and len(d[a]) != len(d[b]):
            raise ValueError(f"{p}: {a} has {len(d[a])} samples but {b} has {len(d[b])}.")
    return DataFile(X=d["X"], y=d["y"], X_test=d.get("X_test"), y_test=d.get("y_test"))


def _unscript(sm: nn.Module, path: Path) -> nn.Module:
    """Rebuild a scripted ``nn.Sequential`` chain as eager modules (Linear layers become nn.Linear)."""
    kind = getattr(sm, "original_name", type(sm).__name__)
    if kind == "Linear":
        w = sm.weight.detach()
        b = getattr(sm, "bias", None)
        lin = nn.Linear(w.shape[1], w.shape[0], bias=b is not None, device=w.device, dtype=w.dtype)
        with torch.no_grad():
            lin.weight.copy_(w)
            if b is not None:
                lin.bias.copy_(b.detach())
        return lin
    if kind == "Sequential":
        return nn.Sequential(OrderedDict((n, _unscript(c, path)) for n, c in sm.named_children()))
    if not any(True for _ in sm.children()):
        return sm  # a leaf (activation, conv, ...): keep the compiled module, it needs no hook
    raise TypeError(
        f"{path} is a TorchScript {kind} with its own compiled forward(); nnboundary cannot attach the "
        "hook it needs inside compiled code. Script an nn.Sequential instead, or save the Python module "
        "with torch.save(model, path) (trusted files only), or call nnboundary.analyze(model, ...) from Python."
    )
