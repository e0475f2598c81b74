"""Classifiers whose last layer is a linear head on a low-dimensional *transformed space*.

Convention shared by every model here::

    x --body--> h = model.features(x)  (N, D) --model.head: nn.Linear(D, K)--> logits (N, K)

* ``model.head`` is the last module applied and the last ``nn.Linear`` in ``model.modules()``;
* ``model.features(x)`` returns exactly the head's input (what a forward pre-hook on ``head`` sees);
* D (``model.transformed_dim``) is the width of the last hidden layer, 2 for the paper's pictures;
* every constructor takes ``init`` (``"original"`` | ``"torch"`` | ``"kaiming"``) and ``seed``: the same
  seed gives bit-identical parameters without touching the global RNG.

Exception: :class:`AsymmetricMLP` adds a linear skip from the input to one logit,
``logits = head(features(x)) + skip(x)`` (see its docstring).

Models are built from plain config dicts with :func:`build_model`::

    model = build_model("mlp", in_features=2, hidden=[2000, 2], activations="softsign", seed=0)
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Mapping

from torch import nn

from nnboundary.models._init import INIT_SCHEMES
from nnboundary.models._init import tf_truncated_normal_, torch_default_
from nnboundary.models.densenet import DenseNet
from nnboundary.models.diagnostics import dead_units
from nnboundary.models.mlp import (
    ACTIVATIONS,
    MLP,
    AsymmetricMLP,
    BodyHeadClassifier,
    ConvMLP,
    MaskedLinear,
    Square,
    make_activation,
)
from nnboundary.models.resnet import ResNetMNIST

__all__ = [
    "ACTIVATIONS",
    "INIT_SCHEMES",
    "AsymmetricMLP",
    "BodyHeadClassifier",
    "ConvMLP",
    "DenseNet",
    "MLP",
    "MaskedLinear",
    "ResNetMNIST",
    "Square",
    "build_model",
    "dead_units",
    "list_models",
    "make_activation",
    "model_parameters",
    "register_model",
    "tf_truncated_normal_",
    "torch_default_",
]

_MODELS: dict[str, Callable[..., nn.Module]] = {
    "mlp": MLP,
    "conv_mlp": ConvMLP,
    "asym_mlp": AsymmetricMLP,
    "resnet_mnist": ResNetMNIST,
    "densenet": DenseNet,
}


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering a model class or factory under ``name`` for :func:`build_model`.

    Raises
    ------
    ValueError
        If ``name`` is already registered.
    """

    def deco(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _MODELS:
            raise ValueError(f"Model {name!r} is registered twice (second in {factory.__module__}).")
        _MODELS[name] = factory
        return factory

    return deco


def list_models() -> list[str]:
    """Sorted names accepted by :func:`build_model`."""
    return sorted(_MODELS)


def model_parameters(name: str) -> Mapping[str, inspect.Parameter]:
    """The constructor parameters of the model registered as ``name`` (what ``build_model`` accepts)."""
    if name not in _MODELS:
        close = difflib.get_close_matches(str(name), _MODELS, n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(f"Unknown model {name!r}.{hint} Available: {list_models()}.")
    return inspect.signature(_MODELS[name]).parameters


def build_model(name: str, **kwargs: object) -> nn.Module:
    """Build the model registered as ``name`` with constructor keyword arguments ``kwargs``.

    Parameters
    ----------
    name : str
        One of :func:`list_models`: ``"mlp"``, ``"conv_mlp"``, ``"asym_mlp"``, ``"resnet_mnist"``,
        ``"densenet"``.
    **kwargs
        Passed to the constructor; lists (as read from JSON/TOML) are accepted wherever tuples are.

    Returns
    -------
    model : nn.Module

    Raises
    ------
    ValueError
        Unknown ``name`` (close matches are suggested).
    TypeError
        A keyword the constructor does not accept, or a missing required one; the accepted
        keywords are listed.
    """
    model_parameters(name)  # a clear error for an unknown name
    factory = _MODELS[name]
    signature = inspect.signature(factory)
    try:
        signature.bind(**kwargs)
    except TypeError as err:
        raise TypeError(
            f"build_model({name!r}, ...): {err}. Accepted keywords: {list(signature.parameters)}."
        ) from None
    return factory(**kwargs)
