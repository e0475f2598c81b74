"""Weight-initialisation schemes, all driven by an optional ``torch.Generator``.

Every model in :mod:`nnboundary.models` takes ``init`` (one of :data:`INIT_SCHEMES`) and ``seed``:

``"original"``
    The initialisers of the authors' TF1/tflearn code (see ``original_code.md`` §2): for the MLPs a
    truncated normal with std 0.01 and bias 0.1; for the ResNet tflearn's ``variance_scaling`` /
    ``uniform_scaling`` / ``truncated_normal(0.02)``; for the DenseNet Xavier convolutions and
    ``uniform_unit_scaling`` dense layers. Each model's ``reset_parameters`` documents its mapping.
``"torch"``
    PyTorch's own defaults (``nn.Linear.reset_parameters`` etc.), re-implemented here so that they can
    draw from a local generator.
``"kaiming"``
    He-normal weights (fan-in, ReLU gain), zero biases, BatchNorm ``(weight, bias) = (1, 0)``.

TF's ``truncated_normal(stddev=s)`` redraws values outside ``[-2s, 2s]``, so the realised standard
deviation is ``s * 0.8796`` (see :data:`TRUNCATED_STD_FACTOR`); :func:`tf_truncated_normal_` matches
that exactly.

Seeding: :func:`init_generator` gives a local generator for ``seed`` and shields the *global* RNG from
the draws that ``nn.Module`` constructors make for their default init, so building a seeded model leaves
``torch.get_rng_state()`` untouched and the same seed yields bit-identical parameters.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

__all__ = [
    "INIT_SCHEMES",
    "TRUNCATED_STD_FACTOR",
    "check_init",
    "init_generator",
    "tf_truncated_normal_",
    "uniform_scaling_",
    "variance_scaling_",
    "torch_default_",
    "kaiming_",
    "reset_norm_",
]

INIT_SCHEMES: tuple[str, ...] = ("original", "torch", "kaiming")

#: std of a standard normal truncated to [-2, 2]: sqrt(1 - 4 phi(2) / (2 Phi(2) - 1)).
TRUNCATED_STD_FACTOR: float = 0.8796256610342398

_CONV_OR_LINEAR = (nn.Linear, nn.Conv1d, nn.Conv2d)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


def check_init(init: str) -> str:
    """Return ``init`` if it names a scheme, else raise ``ValueError`` listing the schemes."""
    if init not in INIT_SCHEMES:
        raise ValueError(f"Unknown init scheme {init!r}; choose one of {list(INIT_SCHEMES)}.")
    return init


@contextmanager
def init_generator(seed: int | None) -> Iterator[torch.Generator | None]:
    """Yield a CPU generator seeded with ``seed`` (``None`` if ``seed`` is None).

    With a seed, the body runs inside :func:`torch.random.fork_rng`, so draws that module constructors
    make from the global RNG are undone on exit. Without a seed the global RNG is used, as in plain
    PyTorch.

    Raises
    ------
    TypeError
        If ``seed`` is not an int (``bool`` is rejected too).
    """
    if seed is None:
        yield None
        return
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int or None, got {type(seed).__name__} {seed!r}.")
    with torch.random.fork_rng(devices=[]):
        yield torch.Generator().manual_seed(seed)


def _fan_in(weight: Tensor) -> int:
    """Inputs feeding one output unit: ``in_features`` or ``in_channels * prod(kernel_size)``."""
    return int(weight[0].numel())


@torch.no_grad()
def tf_truncated_normal_(t: Tensor, std: float, generator: torch.Generator | None = None) -> Tensor:
    """Fill ``t`` like TF's ``truncated_normal(stddev=std)``: N(0, std²) redrawn outside ±2·std."""
    return nn.init.trunc_normal_(t, 0.0, std, -2.0 * std, 2.0 * std, generator=generator)


@torch.no_grad()
def uniform_scaling_(t: Tensor, factor: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
    """tflearn ``uniform_scaling`` / TF ``uniform_unit_scaling``: U(±factor·sqrt(3 / fan_in))."""
    bound = factor * math.sqrt(3.0 / _fan_in(t))
    return nn.init.uniform_(t, -bound, bound, generator=generator)


@torch.no_grad()
def variance_scaling_(t: Tensor, factor: float = 2.0, generator: torch.Generator | None = None) -> Tensor:
    """tflearn ``variance_scaling`` (TF contrib, FAN_IN, normal): truncated N with std sqrt(1.3·factor/fan_in).

    The 1.3 compensates for the truncation, so the realised std is ≈ sqrt(factor / fan_in) (He init).
    """
    return tf_truncated_normal_(t, math.sqrt(1.3 * factor / _fan_in(t)), generator)


@torch.no_grad()
def reset_norm_(m: nn.Module) -> None:
    """BatchNorm: weight 1, bias 0, running statistics reset (no randomness)."""
    m.reset_parameters()


@torch.no_grad()
def torch_default_(m: nn.Module, generator: torch.Generator | None = None) -> None:
    """PyTorch's default init of one Linear/Conv/BatchNorm module, drawing from ``generator``.

    Same distributions as ``nn.Linear.reset_parameters`` / ``nn.Conv2d.reset_parameters``:
    weight ~ kaiming_uniform(a=sqrt(5)) = U(±1/sqrt(fan_in)), bias ~ U(±1/sqrt(fan_in)).
    Other module types are left alone.
    """
    if isinstance(m, _CONV_OR_LINEAR):
        nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=generator)
        if m.bias is not None:
            bound = 1.0 / math.sqrt(_fan_in(m.weight))
            nn.init.uniform_(m.bias, -bound, bound, generator=generator)
    elif isinstance(m, _NORMS):
        reset_norm_(m)


@torch.no_grad()
def kaiming_(m: nn.Module, generator: torch.Generator | None = None) -> None:
    """He-normal (fan-in, ReLU gain) weights and zero biases; BatchNorm to (1, 0); others untouched."""
    if isinstance(m, _CONV_OR_LINEAR):
        nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu", generator=generator)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, _NORMS):
        reset_norm_(m)
