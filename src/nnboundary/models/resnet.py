"""The bottleneck ResNet of the MNIST experiments (``original_code.md`` §2.4), in two variants.

``variant="preact"`` (default) is a correct pre-activation bottleneck ResNet (He et al. 2016,
"Identity Mappings in Deep Residual Networks") with the original's layout. ``variant="tflearn"``
reproduces, layer for layer, what tflearn 0.3.2 actually built for the authors, bugs included, for
faithful reproductions (its parameter count is the 321 824 of the original checkpoint).

tflearn quirks that the default ``"preact"`` variant does **not** reproduce:

1. *Missing skip connections* (tflearn ≤ 0.3.2, issue tflearn#721 / PR #889): the residual addition sat
   inside ``if in_channels != out_channels``, so only the 2 width-changing blocks had a skip (an
   avg-pooled, channel-zero-padded identity) and the other 7 blocks were plain conv stacks. We give
   every block a skip: the identity, or a 1×1 projection (stride 2 where the block downsamples).
2. *BatchNorm never in training mode*: the notebooks never set tflearn's training flag, so BN always
   used its moving statistics, which stayed at mean 0 / var 1: BN was a learnable per-channel affine
   map. Ours is ordinary ``nn.BatchNorm2d`` (batch statistics in ``train()``, running ones in ``eval()``).
3. *Strided 1×1 convolution*: tflearn downsampled with the first 1×1 convolution (stride 2, VALID),
   which simply drops 3 of every 4 positions. We put the stride on the 3×3 convolution (ResNet v1.5).
4. *ReLU on the residual branch output and no BN before the last 1×1 convolution*: tflearn applied
   ReLU to the expanding 1×1 convolution (and again after the addition). We use the clean
   pre-activation unit BN-ReLU-conv1×1, BN-ReLU-conv3×3, BN-ReLU-conv1×1, then add.
5. Convolution biases (redundant before BN) are dropped; the unused L2 regularizer is not modelled
   (add weight decay in the optimiser if wanted).

Kept from the original in both variants: the 3×3 stem convolution (no bias) followed by ReLU, the
final BN → ReLU → global average pool, FC 200 ReLU, FC ``transformed_dim`` ReLU, and the head.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from nnboundary.models._init import (
    check_init,
    init_generator,
    kaiming_,
    reset_norm_,
    tf_truncated_normal_,
    torch_default_,
    uniform_scaling_,
    variance_scaling_,
)
from nnboundary.models.mlp import BodyHeadClassifier, _check_n_classes, _check_positive_int, make_activation

__all__ = ["ResNetMNIST", "DEFAULT_STAGES", "VARIANTS"]

#: (bottleneck width, output width, number of blocks) per stage; stages after the first downsample by 2.
#: The original: (3, 16, 64), then (1, 32, 128, downsample) + (2, 32, 128), then the same at 64/256.
DEFAULT_STAGES: tuple[tuple[int, int, int], ...] = ((16, 64, 3), (32, 128, 3), (64, 256, 3))

VARIANTS: tuple[str, ...] = ("preact", "tflearn")


class _FrozenStatsBatchNorm2d(nn.BatchNorm2d):
    """tflearn's BN as the authors ran it: always normalises with running stats that never move.

    The running mean/var stay at 0/1, so this is ``weight * x / sqrt(1 + eps) + bias`` per channel,
    in train and eval mode alike.
    """

    def forward(self, x: Tensor) -> Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)


class _PreActBottleneck(nn.Module):
    """Pre-activation bottleneck unit: BN-ReLU-1×1, BN-ReLU-3×3 (stride), BN-ReLU-1×1, + shortcut.

    The shortcut is the identity, or a 1×1 convolution (with the block's stride) applied to the
    pre-activated input when the shape changes (He et al. 2016b). It needs no BN of its own: its input
    is the output of ``bn1``.

    Shape: (N, c_in, H, W) -> (N, c_out, ceil(H / stride), ceil(W / stride))
    """

    def __init__(self, c_in: int, mid: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, mid, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride=stride, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, c_out, 1, bias=False)
        self.shortcut = nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False) if (stride != 1 or c_in != c_out) else None

    def forward(self, x: Tensor) -> Tensor:
        pre = F.relu(self.bn1(x))
        identity = x if self.shortcut is None else self.shortcut(pre)  # (N, c_out, H', W')
        out = self.conv1(pre)
        out = self.conv2(F.relu(self.bn2(out)))
        out = self.conv3(F.relu(self.bn3(out)))
        return out + identity


class _TFLearnBottleneck(nn.Module):
    """One block of tflearn 0.3.2 ``residual_bottleneck``, bugs included (see module docstring).

    ``r = ReLU(conv1x1_out(conv3x3(ReLU(BN(conv1x1_stride(ReLU(BN(x))))))))``; only when the width changes
    is the identity (2×2 avg-pooled if strided, zero-padded on channels) added, followed by ReLU.
    """

    def __init__(self, c_in: int, mid: int, c_out: int, stride: int) -> None:
        super().__init__()
        if c_in != c_out and (c_out - c_in) % 2:
            raise ValueError(
                f"variant='tflearn' zero-pads the identity symmetrically and needs an even width change, "
                f"got {c_in} -> {c_out}; use even stage widths or variant='preact'."
            )
        self.stride = stride
        self.has_skip = c_in != c_out  # the tflearn bug: no skip when widths match
        self.pad = (c_out - c_in) // 2
        self.bn1 = _FrozenStatsBatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, mid, 1, stride=stride)
        self.bn2 = _FrozenStatsBatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, padding=1)
        self.conv3 = nn.Conv2d(mid, c_out, 1)

    def forward(self, x: Tensor) -> Tensor:
        r = self.conv1(F.relu(self.bn1(x)))
        r = self.conv2(F.relu(self.bn2(r)))
        r = F.relu(self.conv3(r))
        if not self.has_skip:
            return r
        identity = x
        if self.stride > 1:  # TF 'SAME' avg pool == ceil_mode with border windows averaged over valid cells
            identity = F.avg_pool2d(identity, self.stride, self.stride, ceil_mode=True)
        identity = F.pad(identity, (0, 0, 0, 0, self.pad, self.pad))  # (N, c_out, H', W')
        return F.relu(r + identity)


def _check_stages(stages: Sequence[Sequence[int]]) -> tuple[tuple[int, int, int], ...]:
    out = []
    for s in stages:
        if len(s) != 3:
            raise ValueError(f"Each stage is (bottleneck, out_channels, n_blocks); got {tuple(s)!r}.")
        out.append(tuple(_check_positive_int("stage entry", v) for v in s))
    if not out:
        raise ValueError("stages must contain at least one (bottleneck, out_channels, n_blocks) triple.")
    return tuple(out)  # type: ignore[return-value]


class ResNetMNIST(BodyHeadClassifier):
    """Bottleneck ResNet with a ``transformed_dim``-unit last hidden layer (the paper's MNIST net).

    Layout (default arguments reproduce the paper's sizes)::

        stem    conv3x3(in_channels -> width, no bias) -> ReLU                         (N, 64, 28, 28)
        stages  per (b, c, n): n bottleneck blocks b/c; stride 2 in the first block
                of every stage but the first                                           (N, 256, 7, 7)
        final   BN -> ReLU -> global average pool                                      (N, 256)
        fc      Linear(256, fc_width) -> ReLU                                          (N, 200)
        transform  Linear(fc_width, transformed_dim) -> transformed_activation         (N, 2)
        head    Linear(transformed_dim, n_classes)                                     (N, K)

    See the module docstring for the two variants and the tflearn bugs that ``"preact"`` fixes.

    Args:
        n_classes: K. Default 2.
        in_channels: 1 (MNIST) or 3 (CIFAR); any spatial size ≥ 4 works. Default 1.
        transformed_dim: D. Default 2.
        width: stem channels. Default 64.
        stages: ``(bottleneck, out_channels, n_blocks)`` per stage; lists are accepted. Default
            :data:`DEFAULT_STAGES`. A quick profile can use e.g. ``((4, 16, 1), (8, 32, 1))``.
        fc_width: width of the hidden FC layer, or None to go straight from the pooled features to the
            transformed layer. Default 200.
        transformed_activation: activation of the transformed layer (:data:`~nnboundary.models.mlp.ACTIVATIONS`).
            Default ``"relu"`` (non-negative features, as in the paper). A 2-unit ReLU layer is often
            born with a dead unit (about half the units on random inputs, for every init scheme, in
            our checks): check with :func:`~nnboundary.models.dead_units` and change the seed, or use
            e.g. ``"softsign"``.
        variant: ``"preact"`` (correct) or ``"tflearn"`` (the original's buggy graph). Default ``"preact"``.
        init: ``"original"`` (tflearn's: stem U(±sqrt(3/fan_in)); block convs truncated normal
            std sqrt(2.6/fan_in); BN weight N(1, 0.002²), bias 0; FC layers truncated normal std 0.02,
            bias 0; head truncated normal std 0.05, bias 0.01), ``"torch"`` or ``"kaiming"``.
            Default ``"original"``.
        seed: local-generator seed: same seed, bit-identical parameters; global RNG untouched. Default None.

    Attributes:
        body: ``nn.Sequential`` with children ``stem``, ``stages``, ``final``, ``fc`` (if any),
            ``transform``; (N, C, H, W) -> (N, D).
        head: ``nn.Linear(D, K)``.

    Shape:
        Input (N, in_channels, H, W); features (N, transformed_dim); output (N, n_classes).
    """

    def __init__(
        self,
        n_classes: int = 2,
        in_channels: int = 1,
        transformed_dim: int = 2,
        width: int = 64,
        stages: Sequence[Sequence[int]] = DEFAULT_STAGES,
        fc_width: int | None = 200,
        transformed_activation: str = "relu",
        variant: str = "preact",
        init: str = "original",
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"Unknown variant {variant!r}; choose one of {list(VARIANTS)}.")
        self.in_channels = _check_positive_int("in_channels", in_channels)
        self.width = _check_positive_int("width", width)
        self.stages = _check_stages(stages)
        self.fc_width = None if fc_width is None else _check_positive_int("fc_width", fc_width)
        self.transformed_activation = transformed_activation
        self.variant = variant
        self.init = check_init(init)
        d = _check_positive_int("transformed_dim", transformed_dim)
        with init_generator(seed) as g:
            self.body = self._build_body(d)
            self.head = nn.Linear(d, _check_n_classes(n_classes))
            self.reset_parameters(g)

    def _build_body(self, d: int) -> nn.Sequential:
        block = _PreActBottleneck if self.variant == "preact" else _TFLearnBottleneck
        norm = nn.BatchNorm2d if self.variant == "preact" else _FrozenStatsBatchNorm2d
        blocks: list[nn.Module] = []
        c_in = self.width
        for i, (mid, c_out, n_blocks) in enumerate(self.stages):
            for j in range(n_blocks):
                blocks.append(block(c_in, mid, c_out, stride=2 if (i > 0 and j == 0) else 1))
                c_in = c_out
        parts: OrderedDict[str, nn.Module] = OrderedDict(
            stem=nn.Sequential(nn.Conv2d(self.in_channels, self.width, 3, padding=1, bias=False), nn.ReLU()),
            stages=nn.Sequential(*blocks),
            final=nn.Sequential(norm(c_in), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()),  # (N, c_in)
        )
        if self.fc_width is not None:
            parts["fc"] = nn.Sequential(nn.Linear(c_in, self.fc_width), nn.ReLU())
            c_in = self.fc_width
        parts["transform"] = nn.Sequential(nn.Linear(c_in, d), make_activation(self.transformed_activation))
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
                variance_scaling_(m.weight, 2.0, generator)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                reset_norm_(m)
                nn.init.normal_(m.weight, 1.0, 0.002, generator=generator)
            elif isinstance(m, nn.Linear):
                tf_truncated_normal_(m.weight, 0.02, generator)
                nn.init.zeros_(m.bias)
        if self.init == "original":
            uniform_scaling_(self.body.stem[0].weight, 1.0, generator)
            tf_truncated_normal_(self.head.weight, 0.05, generator)
            nn.init.constant_(self.head.bias, 0.01)

    def extra_repr(self) -> str:
        return (
            f"variant={self.variant!r}, width={self.width}, stages={self.stages}, fc_width={self.fc_width}, "
            f"transformed_activation={self.transformed_activation!r}, init={self.init!r}"
        )
