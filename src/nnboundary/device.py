"""The one device resolution of nnboundary: a user's ``device=`` argument to a ``torch.device``, or one clear error.

Every layer that runs torch code (training, feature extraction, experiments, applications, the CLI) resolves its
``device`` argument here, so that a machine without CUDA always answers with the same sentence instead of torch's
``AssertionError: Torch not compiled with CUDA enabled``.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["DeviceUnavailableError", "resolve_device"]


class DeviceUnavailableError(ValueError):
    """The asked-for device does not exist on this machine (CUDA / MPS not available, or a GPU index too large)."""


def resolve_device(device: Any = None) -> torch.device:
    """Turn ``device`` into a ``torch.device`` that exists here.

    Parameters
    ----------
    device : None, "auto", str, int or torch.device
        None or "auto": CUDA when torch sees a GPU, else the CPU. A string ("cpu", "cuda", "cuda:1", "mps"), a GPU
        index or a ``torch.device`` is checked against what this machine has.

    Raises
    ------
    DeviceUnavailableError
        When the device is not available here, with what to pass instead.
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise DeviceUnavailableError(f"Unknown device {device!r} ({exc}). Pass 'cpu', 'cuda', 'cuda:N' or 'auto'.") \
            from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceUnavailableError(f"device={str(device)!r}: CUDA is not available on this machine. "
                                         "Pass device='cpu' (or 'auto').")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceUnavailableError(f"device={str(device)!r}: this machine has {torch.cuda.device_count()} "
                                         f"CUDA device(s) (cuda:0..cuda:{torch.cuda.device_count() - 1}).")
    elif dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise DeviceUnavailableError(f"device={str(device)!r}: MPS is not available on this machine. "
                                     "Pass device='cpu' (or 'auto').")
    return dev
