"""Health checks of the transformed space.

A 2-unit ReLU layer often loses a unit for good (it outputs 0 for every input and gets no gradient):
the original CIFAR figure and ``sector_large_transform`` both show one. The features then live on a
line, and the "2-D" picture and its SVM are really 1-D. :func:`dead_units` detects this.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["dead_units"]


@torch.no_grad()
def _model_features(model: nn.Module, X: Tensor | np.ndarray, batch_size: int) -> np.ndarray:
    """Transformed-space features of ``X`` in eval mode, batch by batch. Shape (N, *) -> (N, D).

    Uses ``model.features`` when the model has one, else captures the input of ``model.head`` with a
    forward pre-hook. The model's train/eval mode is restored afterwards.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}.")
    param = next(model.parameters(), None)
    X = torch.as_tensor(X)
    if param is not None and param.is_floating_point():
        X = X.to(device=param.device, dtype=param.dtype)  # also turns raw uint8 images into floats
    captured: list[Tensor] = []
    handle = None
    if callable(getattr(model, "features", None)):
        run = model.features
    elif isinstance(getattr(model, "head", None), nn.Module):
        handle = model.head.register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
        run = model
    else:
        raise TypeError(
            f"{type(model).__name__} has neither a features() method nor a `head` submodule; pass the "
            "feature matrix H of shape (N, D) instead."
        )
    was_training = model.training
    model.eval()
    try:
        chunks = []
        for start in range(0, X.shape[0], batch_size):
            out = run(X[start : start + batch_size])
            chunks.append((captured.pop() if captured else out).flatten(1).cpu())  # (B, D)
    finally:
        model.train(was_training)
        if handle is not None:
            handle.remove()  # never leave a hook on a user's model
    if not chunks:
        raise ValueError("X is empty; pass at least one input.")
    return torch.cat(chunks).double().numpy()  # (N, D)


def dead_units(
    model_or_features: nn.Module | np.ndarray | Tensor,
    X: Tensor | np.ndarray | None = None,
    batch_size: int = 1024,
    *,
    criterion: Literal["constant", "zero"] = "constant",
    atol: float = 0.0,
) -> np.ndarray:
    """Which units of the transformed space carry no information on the given inputs.

    Parameters
    ----------
    model_or_features : nn.Module, or ndarray / Tensor of shape (N, D)
        Either the feature matrix H (rows = samples), or a model with a ``features`` method (all
        :mod:`nnboundary.models` classifiers) or a ``head`` submodule whose input is captured.
    X : Tensor or ndarray of shape (N, *), optional
        Inputs, required when a model is given. The model runs in eval mode, without gradients, on
        its own device and dtype; its train/eval mode is restored. (An untrained BatchNorm model's
        eval mode uses the initial running statistics; to check train-mode features, pass
        ``model.train().features(X)`` instead.)
    batch_size : int, default=1024
        Inputs per forward pass when a model is given.
    criterion : {"constant", "zero"}, default="constant"
        ``"zero"``: a unit is dead if ``|h| <= atol`` on every input (a dead ReLU).
        ``"constant"``: dead if ``max(h) - min(h) <= atol`` (also catches saturated units and
        units stuck at a non-zero value). With a single input every unit is constant.
    atol : float, default=0.0
        Tolerance; 0 means exactly zero / exactly constant.

    Returns
    -------
    dead : ndarray of bool, shape (D,)
        True for dead units. ``dead.sum()`` is how many dimensions the transformed space lost.

    Raises
    ------
    ValueError
        If the features are not 2-D or empty, ``criterion`` is unknown, ``atol`` < 0, or a model is
        given without ``X``.

    Examples
    --------
    >>> dead_units(np.array([[0.0, 1.0], [0.0, 3.0]]))
    array([ True, False])
    """
    if criterion not in ("constant", "zero"):
        raise ValueError(f"criterion must be 'constant' or 'zero', got {criterion!r}.")
    if atol < 0:
        raise ValueError(f"atol must be >= 0, got {atol!r}.")
    if isinstance(model_or_features, nn.Module):
        if X is None:
            raise ValueError("A model was given without inputs: call dead_units(model, X).")
        H = _model_features(model_or_features, X, batch_size)
    else:
        H = np.asarray(
            model_or_features.detach().cpu() if isinstance(model_or_features, Tensor) else model_or_features,
            dtype=np.float64,
        )
    if H.ndim != 2 or H.shape[0] == 0:
        raise ValueError(f"Features must have shape (N, D) with N >= 1, got {H.shape}.")
    if criterion == "zero":
        return np.all(np.abs(H) <= atol, axis=0)  # (D,)
    return (H.max(axis=0) - H.min(axis=0)) <= atol  # (D,)
