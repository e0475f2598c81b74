"""DenseNet (Huang et al. 2017) with a low-dimensional transformed layer (``original_code.md`` §2.5).

The authors' CIFAR-10 / MNIST network is DenseNet-40 with growth rate 12, basic (non-bottleneck)
layers and no compression, followed by ``Linear(·, 2) -> ReLU`` (the transformed space) and the head.
``DenseNet(depth=40, in_channels=3, final_pool=4, input_size=32)`` has exactly the 1 018 824 trainable
parameters of the original CIFAR binary checkpoint.

Differences from the original, all deliberate:

* BatchNorm is ordinary ``nn.BatchNorm2d`` (eps 1e-5, running-average momentum 0.1). The authors' final
  version kept an exponential moving average with decay 0.5 (i.e. ``momentum=0.5``) and eps 1e-3 for
  test time; earlier versions used batch statistics even at test time.
* The final pooling is global by default (448 features for both 28×28 and 32×32 inputs). The original
  used a 4×4 VALID average pool (1792 features on CIFAR, 448 on MNIST): pass ``final_pool=4`` and
  ``input_size`` to get it.
* Dropout (keep_prob 1.0 in every run) and the unused L2 regularizer are not modelled.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor, nn

from nnboundary.models._init import (
    check_init,
    init_generator,
    kaiming_,
    reset_norm_,
    torch_default_,
    uniform_scaling_,
)
from nnboundary.models.mlp import BodyHeadClassifier, _check_n_classes, _check_positive_int, make_activation

__all__ = ["DenseNet"]


class _DenseLayer(nn.Module):
    """BN -> ReLU -> Conv3×3(growth, no bias), output concatenated to the input.

    Shape: (N, C, H, W) -> (N, C + growth_rate, H, W)
    """

    def __init__(self, c_in: int, growth_rate: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(c_in)
        self.relu = nn.ReLU()
        self.conv = nn.Conv2d(c_in, growth_rate, 3, padding=1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([x, self.conv(self.relu(self.bn(x)))], dim=1)


def _transition(c_in: int, c_out: int) -> nn.Sequential:
    """BN -> ReLU -> Conv1×1 (no bias) -> AvgPool2d(2). Shape (N, c_in, H, W) -> (N, c_out, H//2, W//2)."""
    return nn.Sequential(
        nn.BatchNorm2d(c_in), nn.ReLU(), nn.Conv2d(c_in, c_out, 1, bias=False), nn.AvgPool2d(2)
    )


class DenseNet(BodyHeadClassifier):
    """DenseNet with three dense blocks, then ``Linear(·, transformed_dim) -> activation`` and the head.

    Layout (DenseNet-40, k = 12, 32×32×3 input)::

        stem     conv3x3(in_channels -> stem_channels, no bias)                  (N, 16, 32, 32)
        block1   L × [BN-ReLU-conv3x3(k)], concatenated; L = (depth - 4) // 3     (N, 160, 32, 32)
        trans1   BN-ReLU-conv1x1(floor(compression·C))-avgpool2                  (N, 160, 16, 16)
        block2, trans2, block3                                                    (N, 448, 8, 8)
        final    BN-ReLU-avgpool (global, or final_pool×final_pool) -> flatten    (N, 448)
        transform  Linear(·, transformed_dim) -> transformed_activation           (N, 2)
        head     Linear(transformed_dim, n_classes)                               (N, K)

    Args:
        depth: network depth; ``(depth - 4)`` must be a positive multiple of 3. Default 40.
        growth_rate: k, channels added per dense layer. Default 12.
        in_channels: 1 (MNIST, 28×28) or 3 (CIFAR, 32×32). Default 3.
        n_classes: K. Default 2.
        transformed_dim: D. Default 2.
        compression: θ in (0, 1]; transitions output ``floor(θ·C)`` channels. Default 1.0 (none).
        stem_channels: output channels of the first convolution. Default 16.
        final_pool: None for global average pooling (default), or the window (= stride) of the
            original's VALID average pool, e.g. 4. Needs ``input_size``.
        input_size: input height (= width) in pixels; required only with ``final_pool``. Default None.
        transformed_activation: activation of the transformed layer. Default ``"relu"``; as for
            :class:`~nnboundary.models.ResNetMNIST`, check a 2-unit ReLU layer with
            :func:`~nnboundary.models.dead_units`.
        init: ``"original"`` (Xavier-uniform convolutions; dense layers U(±sqrt(3/fan_in)) — TF
            ``uniform_unit_scaling(1.0)`` — with bias 0.01; BN (1, 0)), ``"torch"`` or ``"kaiming"``.
            Default ``"original"``. (The digest names Xavier for the stem only; we assume the same
            initialiser for the other convolutions.)
        seed: local-generator seed: same seed, bit-identical parameters; global RNG untouched. Default None.

    Attributes:
        body: ``nn.Sequential`` with children ``stem``, ``block1``, ``trans1``, ``block2``, ``trans2``,
            ``block3``, ``final``, ``transform``; (N, C, H, W) -> (N, D).
        head: ``nn.Linear(D, K)``.

    Shape:
        Input (N, in_channels, H, W), H, W ≥ 4 (≥ 4·final_pool with ``final_pool``);
        features (N, transformed_dim); output (N, n_classes).
    """

    def __init__(
        self,
        depth: int = 40,
        growth_rate: int = 12,
        in_channels: int = 3,
        n_classes: int = 2,
        transformed_dim: int = 2,
        compression: float = 1.0,
        stem_channels: int = 16,
        final_pool: int | None = None,
        input_size: int | None = None,
        transformed_activation: str = "relu",
        init: str = "original",
        seed: int | None = None,
    ) -> None:
        super().__init__()
        _check_positive_int("depth", depth)
        if depth < 7 or (depth - 4) % 3:
            raise ValueError(
                f"depth must be 3·L + 4 with L >= 1 layers per dense block (7, 10, ..., 40, ...), got {depth}."
            )
        if not 0.0 < compression <= 1.0:
            raise ValueError(f"compression must be in (0, 1], got {compression!r} (1.0 = no compression).")
        self.depth = depth
        self.growth_rate = _check_positive_int("growth_rate", growth_rate)
        self.in_channels = _check_positive_int("in_channels", in_channels)
        self.compression = float(compression)
        self.stem_channels = _check_positive_int("stem_channels", stem_channels)
        self.final_pool = None if final_pool is None else _check_positive_int("final_pool", final_pool)
        self.input_size = None if input_size is None else _check_positive_int("input_size", input_size)
        self.transformed_activation = transformed_activation
        self.init = check_init(init)
        d = _check_positive_int("transformed_dim", transformed_dim)
        with init_generator(seed) as g:
            self.body = self._build_body(d)
            self.head = nn.Linear(d, _check_n_classes(n_classes))
            self.reset_parameters(g)

    @property
    def layers_per_block(self) -> int:
        """L = (depth - 4) // 3."""
        return (self.depth - 4) // 3

    def _pooled_cells(self) -> int:
        """Spatial cells left after the final pool: 1 (global) or ``(s - p) // p + 1`` squared."""
        if self.final_pool is None:
            return 1
        if self.input_size is None:
            raise ValueError(
                f"final_pool={self.final_pool} needs input_size (the image side in pixels, e.g. 32 for "
                "CIFAR, 28 for MNIST) to size the transformed layer."
            )
        side = self.input_size // 4  # two 2×2 VALID average pools
        if side < self.final_pool:
            raise ValueError(
                f"After the two transitions a {self.input_size}px input is {side}px, smaller than "
                f"final_pool={self.final_pool}; use a smaller final_pool or final_pool=None (global)."
            )
        return ((side - self.final_pool) // self.final_pool + 1) ** 2

    def _build_body(self, d: int) -> nn.Sequential:
        parts: OrderedDict[str, nn.Module] = OrderedDict(
            stem=nn.Conv2d(self.in_channels, self.stem_channels, 3, padding=1, bias=False)
        )
        c = self.stem_channels
        for b in (1, 2, 3):
            layers = []
            for _ in range(self.layers_per_block):
                layers.append(_DenseLayer(c, self.growth_rate))
                c += self.growth_rate
            parts[f"block{b}"] = nn.Sequential(*layers)
            if b < 3:
                c_out = max(1, int(self.compression * c))
                parts[f"trans{b}"] = _transition(c, c_out)
                c = c_out
        pool = nn.AdaptiveAvgPool2d(1) if self.final_pool is None else nn.AvgPool2d(self.final_pool)
        parts["final"] = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(), pool, nn.Flatten())
        parts["transform"] = nn.Sequential(
            nn.Linear(c * self._pooled_cells(), d), make_activation(self.transformed_activation)
        )
        return nn.Sequential(parts)

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Re-initialise all parameters (and BN running stats) in place with scheme :attr:`init`."""
        for m in self.modules():
            if self.init == "torch":
                torch_default_(m, generator)
            elif self.init == "kaiming":
                kaiming_(m, generator)
            elif isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight, generator=generator)
            elif isinstance(m, nn.BatchNorm2d):
                reset_norm_(m)
            elif isinstance(m, nn.Linear):
                uniform_scaling_(m.weight, 1.0, generator)
                nn.init.constant_(m.bias, 0.01)

    def extra_repr(self) -> str:
        return (
            f"depth={self.depth}, growth_rate={self.growth_rate}, compression={self.compression}, "
            f"final_pool={self.final_pool}, transformed_activation={self.transformed_activation!r}, "
            f"init={self.init!r}"
        )
