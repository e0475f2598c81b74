"""Optimizers by name, with the original code's defaults and no weight decay.

================  ============================================================================
``"sgd"``         plain gradient descent, ``torch.optim.SGD``
``"momentum"``    heavy ball, momentum 0.9 (TF1 ``MomentumOptimizer`` semantics; not Nesterov)
``"nesterov"``    Nesterov momentum 0.9
``"adam"``        ``torch.optim.Adam``, betas (0.9, 0.999), eps 1e-8 (TF1 defaults)
``"rmsprop"``     ``torch.optim.RMSprop``, decay (``alpha``) 0.9, eps 1e-10 (TF1 defaults)
================  ============================================================================

Weight decay is 0 unless asked for: the implicit-bias theory (and the original runs) have none, and any
decay changes which solution the head converges to. Small differences from TF1 that remain: TF1's Adam
adds ``eps`` without bias correction, and TF1's RMSProp starts its squared average at 1 and puts ``eps``
inside the square root; PyTorch starts at 0 and adds ``eps`` outside.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

import torch

__all__ = ["make_optimizer", "available_optimizers"]

_DEFAULTS: dict[str, tuple[type[torch.optim.Optimizer], dict[str, Any]]] = {
    "sgd": (torch.optim.SGD, {}),
    "momentum": (torch.optim.SGD, {"momentum": 0.9}),
    "nesterov": (torch.optim.SGD, {"momentum": 0.9, "nesterov": True}),
    "adam": (torch.optim.Adam, {"betas": (0.9, 0.999), "eps": 1e-8}),
    "rmsprop": (torch.optim.RMSprop, {"alpha": 0.9, "eps": 1e-10}),
}
_ALIASES = {"gd": "sgd", "heavy_ball": "momentum", "rms_prop": "rmsprop"}


def available_optimizers() -> list[str]:
    """Optimizer names accepted by :func:`make_optimizer`."""
    return sorted(_DEFAULTS)


def make_optimizer(name: str, params: Iterable[torch.Tensor] | Iterable[dict[str, Any]], lr: float,
                   **kwargs: Any) -> torch.optim.Optimizer:
    """Build an optimizer by name.

    Parameters
    ----------
    name : {"sgd", "momentum", "nesterov", "adam", "rmsprop"}
        See the module docstring for the defaults each name sets.
    params : iterable of Tensor or of param-group dicts
        What to optimize, e.g. ``model.parameters()`` or ``head.parameters()``.
    lr : float
        Learning rate, > 0.
    **kwargs
        Passed to the torch optimizer and override the defaults (``momentum=0.99``,
        ``betas=(0.9, 0.99)``, ``weight_decay=1e-4``, ...).

    Returns
    -------
    optimizer : torch.optim.Optimizer

    Raises
    ------
    ValueError
        Unknown name (with suggestions), ``lr <= 0``, or no parameters to optimize.
    """
    if not isinstance(name, str):
        raise TypeError(f"Optimizer name must be a string, got {type(name).__name__}.")
    key = name.lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in _DEFAULTS:
        close = difflib.get_close_matches(key, list(_DEFAULTS), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"Unknown optimizer {name!r}.{hint} Available: {', '.join(available_optimizers())}.")
    if not (isinstance(lr, (int, float)) and lr > 0):
        raise ValueError(f"lr must be a positive number, got {lr!r}.")
    params = list(params)
    if not params:
        raise ValueError(f"No parameters to optimize with {key!r}. Check that the model has trainable "
                         "parameters (requires_grad=True).")
    cls, defaults = _DEFAULTS[key]
    options = {"weight_decay": 0.0, **defaults, **kwargs}
    try:
        return cls(params, lr=float(lr), **options)
    except TypeError as exc:
        raise TypeError(f"Bad keyword for optimizer {key!r} ({cls.__name__}): {exc}") from exc
